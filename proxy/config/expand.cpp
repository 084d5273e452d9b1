// ${VAR} and ${VAR:-default} in string values, read from the process environment. It runs on
// each value after TOML parsing, so line numbers always refer to the file as written and a
// variable's value can never change the file's structure.
#include <cstdlib>

#include "proxy/config/config_detail.hpp"

namespace pgf::config::detail {

namespace {

bool is_variable_name(std::string_view name) {
  if (name.empty() || (name.front() >= '0' && name.front() <= '9')) {
    return false;
  }
  for (char c : name) {
    bool is_word =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!is_word) {
      return false;
    }
  }
  return true;
}

// The text of one "${...}" body: "NAME" or "NAME:-default".
std::variant<std::string, expand_failure> substitute(std::string_view body) {
  auto separator = body.find(":-");
  auto name = body.substr(0, separator);
  std::optional<std::string_view> fallback;
  if (separator != std::string_view::npos) {
    fallback = body.substr(separator + 2);
  }

  // The body is not quoted in the message: a default may be a secret.
  if (!is_variable_name(name)) {
    return expand_failure{
        "a \"${...}\" needs a variable name of letters, digits and '_', optionally followed "
        "by \":-default\""};
  }

  std::string key(name);
  const char* value = std::getenv(key.c_str());
  if (value != nullptr && (*value != '\0' || !fallback)) {
    return std::string(value);
  }
  if (fallback) {
    return std::string(*fallback);
  }
  return expand_failure{"environment variable '" + key + "' is not set and has no default"};
}

}  // namespace

std::variant<std::string, expand_failure> expand_env(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    char next = i + 1 < text.size() ? text[i + 1] : '\0';
    if (text[i] != '$' || (next != '$' && next != '{')) {
      out += text[i++];
      continue;
    }

    if (next == '$') {
      out += '$';
      i += 2;
      continue;
    }

    auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return expand_failure{"a \"${\" has no closing \"}\" (write \"$$\" for a literal \"$\")"};
    }
    auto value = substitute(text.substr(i + 2, close - i - 2));
    if (auto* failure = std::get_if<expand_failure>(&value)) {
      return *failure;
    }
    out += std::get<std::string>(value);
    i = close + 1;
  }
  return out;
}

}  // namespace pgf::config::detail
