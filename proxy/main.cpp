// pgfailover's command line: run the proxy, check a configuration file.
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "proxy/config/config.hpp"
#include "proxy/log.hpp"
#include "proxy/server.hpp"

namespace {

int run_proxy(const std::string& path, const std::string& level) {
  pgf::init_logging(level);
  pgf::config::config cfg;
  try {
    cfg = pgf::config::load_file(path);
  } catch (const pgf::config::config_error& e) {
    for (const auto& issue : e.issues()) {
      spdlog::error("config_invalid {}", issue.to_string());
    }
    return 1;
  }
  try {
    pgf::server server(std::move(cfg));
    return server.run();
  } catch (const std::exception& e) {
    spdlog::error("start_failed error={:?}", e.what());
    return 1;
  }
}

int check_config(const std::string& path) {
  try {
    auto cfg = pgf::config::load_file(path);
    std::cout << pgf::config::describe(cfg);
    return 0;
  } catch (const pgf::config::config_error& e) {
    for (const auto& issue : e.issues()) {
      std::cerr << issue.to_string() << '\n';
    }
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pgfailover: a PostgreSQL failover proxy"};
  app.require_subcommand(1);

  std::string config_path;
  std::string log_level = "info";
  auto* run = app.add_subcommand("run", "Run the proxy");
  run->add_option("-c,--config", config_path, "Configuration file")->required();
  run->add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  std::string check_path;
  auto* check = app.add_subcommand("check-config", "Validate a configuration file and print it");
  check->add_option("file", check_path, "Configuration file")->required();

  CLI11_PARSE(app, argc, argv);
  if (*run) {
    return run_proxy(config_path, log_level);
  }
  return check_config(check_path);
}
