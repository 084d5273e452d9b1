// Shared by the configuration tests: load a text and look at what it reported.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.hpp"

namespace pgf::config::testing {

// The problems `text` is refused for; a test failure when it loads.
inline std::vector<config_issue> issues_of(std::string_view text) {
  try {
    load_string(text, "test.toml");
  } catch (const config_error& error) {
    return error.issues();
  }
  ADD_FAILURE() << "the text loaded without errors:\n" << text;
  return {};
}

inline std::string joined(const std::vector<config_issue>& issues) {
  std::string text;
  for (const auto& issue : issues) {
    text += issue.to_string() + "\n";
  }
  return text;
}

// The single problem `text` is refused for, as "file:line: key: message".
inline std::string only_issue(std::string_view text) {
  auto issues = issues_of(text);
  EXPECT_EQ(issues.size(), 1u) << joined(issues);
  return issues.empty() ? std::string() : issues.front().to_string();
}

// A backend section that loads, for tests about other sections.
inline constexpr std::string_view local_backend = R"(
[[backend]]
name = "local"
priority = 1
url = "postgresql://app@127.0.0.1:5432/app?sslmode=disable"
)";

// Sets an environment variable for one test and restores the previous state after it.
class scoped_env {
 public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
    }
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~scoped_env() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace pgf::config::testing
