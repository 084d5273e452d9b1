// pgfailover's command line: run the proxy, check a configuration file, and `ctl`, the
// operator's client for a running proxy's admin API.
#include <cstdio>
#include <iostream>
#include <string>
#include <variant>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "proxy/config/config.hpp"
#include "proxy/ctl/ctl.hpp"
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

namespace ctl = pgf::ctl;

// What `pgfailover ctl ...` was given; CLI11 fills it in.
struct ctl_choices {
  ctl::options options;
  ctl::command command;
  std::string timeout_text = "60s";
  std::string token;
};

CLI::Validator admin_address_check() {
  return CLI::Validator(
      [](std::string& text) {
        auto parsed = ctl::parse_admin_address(text);
        auto* problem = std::get_if<std::string>(&parsed);
        return problem ? *problem : std::string();
      },
      "");
}

CLI::Validator timeout_check() {
  return CLI::Validator(
      [](std::string& text) {
        if (ctl::parse_timeout(text)) {
          return std::string();
        }
        return std::string("expected a duration: 30s, 500ms, 2m or plain seconds, at most 1d");
      },
      "");
}

CLI::Validator backend_name_check() {
  return CLI::Validator(
      [](std::string& text) {
        return ctl::is_backend_name(text)
                   ? std::string()
                   : std::string("a backend name holds only letters, digits, '-' and '_'");
      },
      "");
}

// One action under `ctl`. Options given after it (`ctl status --json`) fall through to ctl.
CLI::App* add_ctl_action(CLI::App& ctl_app, ctl_choices& out, const std::string& name,
                         const std::string& help, ctl::command_kind kind) {
  auto* sub = ctl_app.add_subcommand(name, help);
  sub->fallthrough();
  sub->parse_complete_callback([&out, kind] { out.command.kind = kind; });
  return sub;
}

void add_reason(CLI::App& sub, ctl_choices& out) {
  sub.add_option("--reason", out.command.reason, "Why, for the log and the event list");
}

CLI::App* add_ctl(CLI::App& app, ctl_choices& out) {
  auto* ctl_app = app.add_subcommand("ctl", "Show or change a running proxy through its admin API");
  ctl_app->require_subcommand(1);
  ctl_app
      ->add_option("--admin", out.options.admin,
                   "Admin API address: host:port, http://host:port or [::1]:port")
      ->type_name("ADDR")
      ->envname("PGFAILOVER_ADMIN")
      ->capture_default_str()
      ->check(admin_address_check());
  ctl_app->add_option("--token", out.token, "Admin token, sent as a Bearer token")
      ->type_name("TOKEN")
      ->envname("PGFAILOVER_TOKEN");
  ctl_app->add_flag("--json", out.options.is_json, "Print the server's JSON answer as it is");
  ctl_app
      ->add_option("--timeout", out.timeout_text,
                   "How long to wait for the answer: 30s, 500ms, 2m or seconds")
      ->type_name("DURATION")
      ->capture_default_str()
      ->check(timeout_check());

  using kind = ctl::command_kind;
  add_ctl_action(*ctl_app, out, "status", "Show the active backend and every backend's state",
                 kind::status);
  add_ctl_action(*ctl_app, out, "events", "List recent switches and state changes, oldest first",
                 kind::events);

  auto* switchover =
      add_ctl_action(*ctl_app, out, "switchover",
                     "Switch to backend NAME, draining transactions first", kind::switchover);
  switchover->add_option("name", out.command.backend, "Target backend")->required();
  switchover->add_flag("--force", out.command.force, "Switch without waiting for the drain");
  add_reason(*switchover, out);

  auto* disable = add_ctl_action(*ctl_app, out, "disable",
                                 "Take backend NAME out of routing until enabled", kind::disable);
  disable->add_option("name", out.command.backend, "Backend")
      ->required()
      ->check(backend_name_check());
  disable->add_flag("--force", out.command.force,
                    "Also when no other backend can take over, and without a drain");
  add_reason(*disable, out);
  auto* enable = add_ctl_action(*ctl_app, out, "enable",
                                "Return backend NAME to routing and unfence it", kind::enable);
  enable->add_option("name", out.command.backend, "Backend")
      ->required()
      ->check(backend_name_check());
  add_reason(*enable, out);

  add_reason(*add_ctl_action(*ctl_app, out, "pause", "Hold new transactions", kind::pause), out);
  add_reason(*add_ctl_action(*ctl_app, out, "resume", "Release held transactions", kind::resume),
             out);
  add_reason(
      *add_ctl_action(*ctl_app, out, "reload", "Reread the configuration file", kind::reload), out);
  return ctl_app;
}

int run_ctl(ctl_choices& choices) {
  // The validator has accepted the text already.
  choices.options.timeout = ctl::parse_timeout(choices.timeout_text).value_or(ctl::default_timeout);
  if (!choices.token.empty()) {
    choices.options.token = std::move(choices.token);
  }
  return ctl::run(choices.options, choices.command);
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

  ctl_choices ctl_args;
  auto* ctl_app = add_ctl(app, ctl_args);

  CLI11_PARSE(app, argc, argv);
  if (*run) {
    return run_proxy(config_path, log_level);
  }
  if (*ctl_app) {
    return run_ctl(ctl_args);
  }
  return check_config(check_path);
}
