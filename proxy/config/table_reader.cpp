// Typed, located reads from TOML tables, and the "did you mean" suggestion for typos.
// Messages never quote a string value: it may be a password or expand to one.
#include "proxy/config/table_reader.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

namespace pgf::config::detail {

namespace {

constexpr std::string_view duration_hint =
    "expected a duration string like \"250ms\" (a whole number with a unit: ms, s, m, h, d)";
constexpr std::string_view size_hint =
    "expected a size like \"64kB\" (units kB, MB, GB, powers of 1024) or a number of bytes";

std::uint32_t line_of_node(const toml::node& node) {
  return static_cast<std::uint32_t>(node.source().begin.line);
}

std::string range_message(std::int64_t min, std::int64_t max) {
  if (max == std::numeric_limits<std::uint32_t>::max()) {
    return "must be at least " + std::to_string(min);
  }
  return "must be between " + std::to_string(min) + " and " + std::to_string(max);
}

std::optional<std::int64_t> parse_integer(std::string_view text) {
  std::int64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [rest, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || rest != end) {
    return std::nullopt;
  }
  return value;
}

void sort_by_line(std::vector<config_issue>& issues) {
  std::stable_sort(issues.begin(), issues.end(), [](const auto& a, const auto& b) {
    auto rank = [](std::uint32_t line) {
      return line == 0 ? std::numeric_limits<std::uint32_t>::max() : line;
    };
    return rank(a.line) < rank(b.line);
  });
}

}  // namespace

void issue_list::error(std::uint32_t line, std::string key, std::string message) {
  errors_.push_back({file_, line, std::move(key), std::move(message)});
}

void issue_list::warning(std::uint32_t line, std::string key, std::string message) {
  warnings_.push_back({file_, line, std::move(key), std::move(message)});
}

std::vector<config_issue> issue_list::take_errors() {
  sort_by_line(errors_);
  return std::move(errors_);
}

std::vector<config_issue> issue_list::take_warnings() {
  sort_by_line(warnings_);
  return std::move(warnings_);
}

table_reader::table_reader(issue_list& issues, const toml::table& table, std::string path)
    : issues_(issues), table_(table), path_(std::move(path)) {}

std::string table_reader::key_path(std::string_view key) const {
  if (path_.empty()) {
    return std::string(key);
  }
  return path_ + "." + std::string(key);
}

std::uint32_t table_reader::line_of(std::string_view key) const {
  if (const auto* node = table_.get(key)) {
    return line_of_node(*node);
  }
  return path_.empty() ? 0 : line_of_node(table_);
}

void table_reader::error(std::string_view key, std::string message) {
  issues_.error(line_of(key), key_path(key), std::move(message));
}

void table_reader::warning(std::string_view key, std::string message) {
  issues_.warning(line_of(key), key_path(key), std::move(message));
}

void table_reader::missing(std::string_view key) {
  error(key, "missing required key '" + std::string(key) + "'");
}

const toml::node* table_reader::find(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
    known_.emplace_back(key);
  }
  return table_.get(key);
}

std::optional<std::string> table_reader::read_string(std::string_view key) {
  const auto* node = find(key);
  if (node == nullptr) {
    return std::nullopt;
  }
  const auto* text = node->as_string();
  if (text == nullptr) {
    error(key, "expected a string");
    return std::nullopt;
  }

  auto expanded = expand_env(text->get());
  if (auto* failure = std::get_if<expand_failure>(&expanded)) {
    error(key, failure->reason);
    return std::nullopt;
  }
  return std::get<std::string>(std::move(expanded));
}

// An integer, or a string that expands to one, so that "${WORKERS:-4}" works too.
std::optional<std::int64_t> table_reader::read_integer(std::string_view key) {
  const auto* node = table_.get(key);
  if (node != nullptr && node->is_string()) {
    auto text = read_string(key);
    if (!text) {
      return std::nullopt;
    }
    auto value = parse_integer(*text);
    if (!value) {
      error(key, "expected an integer");
    }
    return value;
  }

  node = find(key);
  if (node == nullptr) {
    return std::nullopt;
  }
  if (const auto* integer = node->as_integer()) {
    return integer->get();
  }
  error(key, "expected an integer");
  return std::nullopt;
}

bool table_reader::read(std::string_view key, std::string& out) {
  auto text = read_string(key);
  if (text) {
    out = std::move(*text);
  }
  return text.has_value();
}

bool table_reader::read(std::string_view key, std::optional<std::string>& out) {
  auto text = read_string(key);
  if (text) {
    out = std::move(*text);
  }
  return text.has_value();
}

bool table_reader::read(std::string_view key, std::uint32_t& out, std::uint32_t min,
                        std::uint32_t max) {
  auto value = read_integer(key);
  if (!value) {
    return false;
  }
  if (*value < min || *value > max) {
    error(key, range_message(min, max));
    return false;
  }
  out = static_cast<std::uint32_t>(*value);
  return true;
}

bool table_reader::read(std::string_view key, std::optional<std::uint32_t>& out, std::uint32_t min,
                        std::uint32_t max) {
  std::uint32_t value = 0;
  if (!read(key, value, min, max)) {
    return false;
  }
  out = value;
  return true;
}

bool table_reader::read(std::string_view key, duration& out, duration min) {
  std::optional<duration> value;
  if (!read(key, value, min)) {
    return false;
  }
  out = *value;
  return true;
}

bool table_reader::read(std::string_view key, std::optional<duration>& out, duration min) {
  const auto* node = table_.get(key);
  if (node != nullptr && !node->is_string()) {
    find(key);
    error(key, std::string(duration_hint));
    return false;
  }

  auto text = read_string(key);
  if (!text) {
    return false;
  }
  auto value = parse_duration(*text);
  if (!value) {
    error(key, std::string(duration_hint));
    return false;
  }
  if (*value < min) {
    error(key, min == duration(1) ? std::string("must be more than 0")
                                  : "must be at least " + format_duration(min));
    return false;
  }
  out = *value;
  return true;
}

bool table_reader::read(std::string_view key, listen_address& out) {
  auto text = read_string(key);
  if (!text) {
    return false;
  }
  auto address = parse_listen(*text);
  if (auto* reason = std::get_if<std::string>(&address)) {
    error(key, *reason);
    return false;
  }
  out = std::get<listen_address>(std::move(address));
  return true;
}

bool table_reader::read_size(std::string_view key, std::uint32_t& out, std::uint64_t min,
                             std::uint64_t max) {
  const auto* node = find(key);
  if (node == nullptr) {
    return false;
  }

  std::optional<std::uint64_t> bytes;
  if (const auto* integer = node->as_integer(); integer != nullptr && integer->get() >= 0) {
    bytes = static_cast<std::uint64_t>(integer->get());
  } else if (node->is_string()) {
    auto text = read_string(key);
    if (!text) {
      return false;
    }
    bytes = parse_size(*text);
  }

  if (!bytes) {
    error(key, std::string(size_hint));
    return false;
  }
  if (*bytes < min || *bytes > max) {
    error(key, "must be between " + format_size(min) + " and " + format_size(max));
    return false;
  }
  out = static_cast<std::uint32_t>(*bytes);
  return true;
}

const toml::table* table_reader::table(std::string_view key) {
  const auto* node = find(key);
  if (node == nullptr) {
    return nullptr;
  }
  const auto* table = node->as_table();
  if (table == nullptr) {
    error(key, "expected a table, as in [" + key_path(key) + "]");
  }
  return table;
}

const toml::array* table_reader::tables(std::string_view key) {
  const auto* node = find(key);
  if (node == nullptr) {
    return nullptr;
  }
  const auto* array = node->as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    error(key, "expected one or more [[" + key_path(key) + "]] sections");
    return nullptr;
  }
  return array;
}

void table_reader::check_unknown_keys() {
  for (const auto& [key, node] : table_) {
    if (std::find(known_.begin(), known_.end(), key.str()) != known_.end()) {
      continue;
    }
    std::string message = "unknown key '" + std::string(key.str()) + "'";
    if (auto suggestion = closest_match(key.str(), known_)) {
      message += "; did you mean '" + *suggestion + "'?";
    }
    issues_.error(static_cast<std::uint32_t>(key.source().begin.line), key_path(key.str()),
                  std::move(message));
  }
}

std::string table_reader::unknown_value_message(const std::string& value,
                                                const std::vector<std::string>& spellings) {
  std::string message = "unknown value \"" + value + "\"";
  if (auto suggestion = closest_match(value, spellings)) {
    message += "; did you mean \"" + *suggestion + "\"?";
    return message;
  }
  message += "; expected one of ";
  for (std::size_t i = 0; i < spellings.size(); ++i) {
    message += (i == 0 ? "\"" : ", \"") + spellings[i] + "\"";
  }
  return message;
}

// Optimal string alignment distance: Levenshtein plus the swap of two neighbours, the most
// common typo in a key ("nmae").
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) {
    d[i][0] = i;
  }
  for (std::size_t j = 0; j <= b.size(); ++j) {
    d[0][j] = j;
  }

  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::optional<std::string> closest_match(std::string_view word,
                                         std::span<const std::string> candidates) {
  // A third of the word's length, at least one: "priorty" -> "priority" is a typo. A
  // suggestion that rewrites a whole word ("b" -> "a") is noise, so it is never made.
  std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
  std::optional<std::string> best;
  std::size_t best_distance = limit + 1;
  for (const auto& candidate : candidates) {
    auto distance = edit_distance(word, candidate);
    bool rewrites_all = distance >= word.size() || distance >= candidate.size();
    if (distance < best_distance && !rewrites_all) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace pgf::config::detail
