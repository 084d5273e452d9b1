// Turns libpq's multi-line, host-prefixed error messages into one short reason.
#include "health/failure_reason.hpp"

#include <array>
#include <cctype>
#include <utility>

#include <fmt/format.h>

namespace pgf::health {

namespace {

// Socket-level texts (strerror, libpq's own) and the short form operators read.
constexpr std::array<std::pair<std::string_view, std::string_view>, 5> known_socket_errors{{
    {"Connection refused", "connection refused"},
    {"Connection reset by peer", "connection reset"},
    {"server closed the connection unexpectedly", "server closed the connection"},
    {"Broken pipe", "server closed the connection"},
    {"Connection timed out", "connection timed out"},
}};

constexpr std::array<std::string_view, 3> severities{"FATAL:", "ERROR:", "PANIC:"};

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0) {
    text.remove_prefix(1);
  }
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0) {
    text.remove_suffix(1);
  }
  return text;
}

// libpq 14+ opens each connection attempt's message with where it tried to connect.
std::string_view strip_preamble(std::string_view line) {
  constexpr std::string_view preamble = "connection to server ";
  constexpr std::string_view failed = " failed:";
  if (!line.starts_with(preamble)) {
    return line;
  }
  std::size_t end = line.find(failed);
  if (end == std::string_view::npos) {
    return line;
  }
  return trim(line.substr(end + failed.size()));
}

std::string_view strip_severity(std::string_view line) {
  for (std::string_view severity : severities) {
    if (line.starts_with(severity)) {
      return trim(line.substr(severity.size()));
    }
  }
  return line;
}

// The first line that still says something once preamble and severity are gone: a FATAL
// from the server follows the preamble on the same line, a socket error may too.
std::string_view first_meaningful_line(std::string_view message) {
  while (!message.empty()) {
    std::size_t end = message.find('\n');
    std::string_view line = trim(message.substr(0, end));
    line = strip_severity(strip_preamble(line));
    if (!line.empty()) {
      return line;
    }
    if (end == std::string_view::npos) {
      break;
    }
    message.remove_prefix(end + 1);
  }
  return {};
}

// strerror texts start with a capital; the rest of our reasons do not. "SSL ..." stays.
void lower_first_letter(std::string& text) {
  if (text.size() < 2) {
    return;
  }
  auto first = static_cast<unsigned char>(text[0]);
  auto second = static_cast<unsigned char>(text[1]);
  if (std::isupper(first) != 0 && std::islower(second) != 0) {
    text[0] = static_cast<char>(std::tolower(first));
  }
}

}  // namespace

std::string describe_libpq_error(std::string_view message) {
  std::string_view line = first_meaningful_line(message);
  if (line.empty()) {
    return "unknown libpq error";
  }

  for (const auto& [text, reason] : known_socket_errors) {
    if (line.find(text) != std::string_view::npos) {
      return std::string(reason);
    }
  }

  std::string reason(line);
  lower_first_letter(reason);
  return reason;
}

std::string timeout_reason(std::chrono::milliseconds timeout, std::string_view stage) {
  return fmt::format("timeout after {}ms {}", timeout.count(), stage);
}

}  // namespace pgf::health
