// Durations ("250ms", "2s") and sizes ("64kB", "1GB") as written in the configuration file,
// in both directions. Units are always required for durations: a bare "30" is a mistake
// waiting to happen (seconds? milliseconds?), so it is refused.
#include <array>
#include <charconv>
#include <limits>

#include "proxy/config/config.hpp"
#include "proxy/config/config_detail.hpp"

namespace pgf::config {

namespace {

struct unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Longest suffix first where one is the tail of another ("ms" before "s").
constexpr std::array<unit, 5> duration_units{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
}};

// PostgreSQL's memory units, which are powers of 1024 despite their names.
constexpr std::array<unit, 5> size_units{{
    {"B", 1},
    {"kB", 1024},
    {"MB", 1024 * 1024},
    {"GB", 1024ull * 1024 * 1024},
    {"TB", 1024ull * 1024 * 1024 * 1024},
}};

// Splits "250ms" into 250 and "ms"; nullopt unless it starts with at least one digit.
std::optional<std::pair<std::uint64_t, std::string_view>> split_number(std::string_view text) {
  std::uint64_t number = 0;
  const auto* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(text.data(), end, number);
  if (error != std::errc{} || rest == text.data()) {
    return std::nullopt;
  }
  return std::pair{number, std::string_view(rest, end - rest)};
}

std::optional<std::uint64_t> scale(std::uint64_t number, std::uint64_t factor) {
  if (number > std::numeric_limits<std::uint64_t>::max() / factor) {
    return std::nullopt;
  }
  return number * factor;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) {
  auto split = split_number(text);
  if (!split) {
    return std::nullopt;
  }

  for (const auto& [suffix, factor] : duration_units) {
    if (split->second != suffix) {
      continue;
    }
    auto millis = scale(split->first, factor);
    if (!millis || *millis > static_cast<std::uint64_t>(duration::max().count())) {
      return std::nullopt;
    }
    return duration(static_cast<duration::rep>(*millis));
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  auto split = split_number(text);
  if (!split) {
    return std::nullopt;
  }

  if (split->second.empty()) {
    return split->first;
  }
  for (const auto& [suffix, factor] : size_units) {
    if (split->second == suffix) {
      return scale(split->first, factor);
    }
  }
  return std::nullopt;
}

namespace detail {

std::string format_duration(duration value) {
  auto millis = static_cast<std::uint64_t>(value.count());
  for (auto it = duration_units.rbegin(); it != duration_units.rend(); ++it) {
    if (millis != 0 && millis % it->factor == 0) {
      return std::to_string(millis / it->factor) + std::string(it->suffix);
    }
  }
  return std::to_string(millis) + "ms";
}

std::string format_size(std::uint64_t bytes) {
  for (auto it = size_units.rbegin(); it != size_units.rend(); ++it) {
    if (it->factor > 1 && bytes != 0 && bytes % it->factor == 0) {
      return std::to_string(bytes / it->factor) + std::string(it->suffix);
    }
  }
  return std::to_string(bytes);
}

}  // namespace detail

}  // namespace pgf::config
