// Logging set-up: one stderr sink shared by every thread.
#include "proxy/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace pgf {

bool parse_log_level(std::string_view text, spdlog::level::level_enum& out) {
  for (auto level : {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                     spdlog::level::warn, spdlog::level::err}) {
    auto name = spdlog::level::to_string_view(level);
    if (text == std::string_view(name.data(), name.size())) {
      out = level;
      return true;
    }
  }
  if (text == "error") {
    out = spdlog::level::err;
    return true;
  }
  return false;
}

void init_logging(std::string_view level) {
  auto logger = spdlog::stderr_logger_mt("pgfailover");
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  spdlog::level::level_enum parsed = spdlog::level::info;
  parse_log_level(level, parsed);
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

}  // namespace pgf
