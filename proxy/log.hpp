// Logging set-up and the per-connection context that prefixes a session's lines.
// Lines read `EVENT key=value ...`: the event name first, then the fields an operator
// greps for. A session builds its fields once and passes them to every line it writes.
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace pgf {

// Installs the process-wide stderr logger with the project's line format.
void init_logging(std::string_view level);

// Parses "trace", "debug", "info", "warn", "error"; false when unknown.
bool parse_log_level(std::string_view text, spdlog::level::level_enum& out);

}  // namespace pgf
