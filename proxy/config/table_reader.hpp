// Typed reads from one TOML table, each problem recorded with file, line and dotted key
// instead of thrown, so that one run reports everything wrong with a file. Every key asked
// for becomes a known key; whatever is left over is reported as unknown, with a suggestion.
#pragma once

#include <toml++/toml.h>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.hpp"
#include "proxy/config/config_detail.hpp"

namespace pgf::config::detail {

class issue_list {
 public:
  explicit issue_list(std::string file) : file_(std::move(file)) {}

  void error(std::uint32_t line, std::string key, std::string message);
  void warning(std::uint32_t line, std::string key, std::string message);
  bool has_errors() const { return !errors_.empty(); }
  const std::string& file() const { return file_; }

  // In line order; problems without a line (a missing section) come last.
  std::vector<config_issue> take_errors();
  std::vector<config_issue> take_warnings();

 private:
  std::string file_;
  std::vector<config_issue> errors_;
  std::vector<config_issue> warnings_;
};

class table_reader {
 public:
  // `path` is the dotted key of `table` ("proxy", "backend[1]"); empty for the root.
  table_reader(issue_list& issues, const toml::table& table, std::string path);

  issue_list& issues() const { return issues_; }
  std::string key_path(std::string_view key) const;
  // The key's line when it is present, else the table's own (0 for the root).
  std::uint32_t line_of(std::string_view key) const;
  bool has(std::string_view key) const { return table_.contains(key); }

  // Each read leaves `out` untouched (its default) when the key is absent or its value is
  // wrong, and returns true only when it stored a value. Strings are expanded first.
  bool read(std::string_view key, std::string& out);
  bool read(std::string_view key, std::optional<std::string>& out);
  bool read(std::string_view key, std::uint32_t& out, std::uint32_t min, std::uint32_t max);
  bool read(std::string_view key, std::optional<std::uint32_t>& out, std::uint32_t min,
            std::uint32_t max);
  bool read(std::string_view key, duration& out, duration min);
  bool read(std::string_view key, std::optional<duration>& out, duration min);
  bool read(std::string_view key, listen_address& out);
  bool read_size(std::string_view key, std::uint32_t& out, std::uint64_t min, std::uint64_t max);

  template <typename Enum, std::size_t N>
  bool read(std::string_view key, Enum& out, const std::array<enum_name<Enum>, N>& names) {
    auto text = read_string(key);
    if (!text) {
      return false;
    }
    for (const auto& entry : names) {
      if (entry.name == *text) {
        out = entry.value;
        return true;
      }
    }
    std::vector<std::string> spellings;
    for (const auto& entry : names) {
      spellings.emplace_back(entry.name);
    }
    error(key, unknown_value_message(*text, spellings));
    return false;
  }

  // A sub-table, or nullptr when it is absent or not a table (then reported).
  const toml::table* table(std::string_view key);
  // An array of tables ([[backend]]), or nullptr when absent or of another shape (reported).
  const toml::array* tables(std::string_view key);

  void error(std::string_view key, std::string message);
  void warning(std::string_view key, std::string message);
  void missing(std::string_view key);
  // Reports every key of the table that no read asked for. Call after the last read.
  void check_unknown_keys();

 private:
  const toml::node* find(std::string_view key);
  std::optional<std::string> read_string(std::string_view key);
  std::optional<std::int64_t> read_integer(std::string_view key);
  static std::string unknown_value_message(const std::string& value,
                                           const std::vector<std::string>& spellings);

  issue_list& issues_;
  const toml::table& table_;
  std::string path_;
  std::vector<std::string> known_;
};

}  // namespace pgf::config::detail
