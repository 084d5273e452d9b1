// Reading and atomically replacing the router's state file (Boost.JSON).
#include "proxy/router/state_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace pgf::router {

namespace json = boost::json;

namespace {

// A state file is a few hundred bytes; anything far larger is not one of ours.
constexpr std::size_t max_state_file_size = 1024 * 1024;

std::string errno_text(int error) {
  return std::error_code(error, std::system_category()).message();
}

[[noreturn]] void fail(const std::string& path, std::string_view what) {
  throw state_file_error(fmt::format(
      "state file {}: {}; it records which backend took writes last, so the proxy will not "
      "guess: repair it, or remove it once you know which backend holds the latest data",
      path, what));
}

// nullopt when the file does not exist.
std::optional<std::string> read_text(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return std::nullopt;
    }
    fail(path, "cannot open: " + errno_text(errno));
  }

  std::string text;
  char buffer[4096];
  while (true) {
    auto n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      int error = errno;
      ::close(fd);
      fail(path, "cannot read: " + errno_text(error));
    }
    if (n == 0) {
      break;
    }
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > max_state_file_size) {
      ::close(fd);
      fail(path, "larger than 1MB");
    }
  }
  ::close(fd);
  return text;
}

std::string read_name(const std::string& path, const json::value& v, std::string_view key) {
  if (!v.is_string() || v.get_string().empty()) {
    fail(path, fmt::format("\"{}\" must hold backend names (non-empty strings)", key));
  }
  return std::string(v.get_string());
}

std::optional<std::string> read_optional_name(const std::string& path, const json::object& root,
                                              std::string_view key) {
  const auto* v = root.if_contains(key);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  return read_name(path, *v, key);
}

std::vector<std::string> read_names(const std::string& path, const json::object& root,
                                    std::string_view key, bool is_required) {
  const auto* v = root.if_contains(key);
  if (v == nullptr && !is_required) {
    return {};
  }
  if (v == nullptr || !v->is_array()) {
    fail(path, fmt::format("\"{}\" must be an array of backend names", key));
  }
  std::vector<std::string> names;
  for (const auto& item : v->get_array()) {
    names.push_back(read_name(path, item, key));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::uint64_t read_epoch(const std::string& path, const json::object& root) {
  const auto* v = root.if_contains("epoch");
  if (v != nullptr && v->is_uint64()) {
    return v->get_uint64();
  }
  if (v != nullptr && v->is_int64() && v->get_int64() >= 0) {
    return static_cast<std::uint64_t>(v->get_int64());
  }
  fail(path, "\"epoch\" must be a non-negative integer");
}

persisted_state parse_state(const std::string& path, const std::string& text) {
  boost::system::error_code ec;
  auto root = json::parse(text, ec);
  if (ec) {
    fail(path, "not valid JSON: " + ec.message());
  }
  if (!root.is_object()) {
    fail(path, "not a JSON object");
  }
  const auto& object = root.get_object();
  if (!object.contains("active")) {
    fail(path, "\"active\" is missing");
  }

  persisted_state state;
  state.epoch = read_epoch(path, object);
  state.active = read_optional_name(path, object, "active");
  state.last_active = read_optional_name(path, object, "last_active");
  state.fenced = read_names(path, object, "fenced", true);
  state.disabled = read_names(path, object, "disabled", false);
  if (state.active && std::binary_search(state.fenced.begin(), state.fenced.end(), *state.active)) {
    fail(path, fmt::format("the active backend {} is also listed as fenced", *state.active));
  }
  if (!state.last_active) {
    state.last_active = state.active;
  }
  return state;
}

std::string iso_time(std::chrono::system_clock::time_point now) {
  auto seconds = std::chrono::floor<std::chrono::seconds>(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now - seconds).count();
  std::time_t t = std::chrono::system_clock::to_time_t(seconds);
  std::tm utc{};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900,
                     utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

json::value optional_name(const std::optional<std::string>& name) {
  return name ? json::value(*name) : json::value(nullptr);
}

json::array names_array(const std::vector<std::string>& names) {
  json::array out;
  for (const auto& n : names) {
    out.emplace_back(n);
  }
  return out;
}

std::optional<std::string> write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return errno_text(errno);
    }
    done += static_cast<std::size_t>(n);
  }
  return std::nullopt;
}

// The rename is durable only once the directory entry is on disk.
std::optional<std::string> sync_directory(const std::string& path) {
  auto dir = std::filesystem::path(path).parent_path();
  std::string name = dir.empty() ? std::string(".") : dir.string();
  int fd = ::open(name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fmt::format("cannot open directory {}: {}", name, errno_text(errno));
  }
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0) {
    return fmt::format("cannot fsync directory {}: {}", name, errno_text(error));
  }
  return std::nullopt;
}

// Writes and syncs `text` to `temp`; on failure the partial file is removed.
std::optional<std::string> write_temp(const std::string& temp, const std::string& text) {
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return fmt::format("cannot create {}: {}", temp, errno_text(errno));
  }
  std::optional<std::string> error;
  if (auto e = write_all(fd, text)) {
    error = fmt::format("cannot write {}: {}", temp, *e);
  } else if (::fsync(fd) != 0) {
    error = fmt::format("cannot fsync {}: {}", temp, errno_text(errno));
  }
  if (::close(fd) != 0 && !error) {
    error = fmt::format("cannot close {}: {}", temp, errno_text(errno));
  }
  if (error) {
    ::unlink(temp.c_str());
  }
  return error;
}

}  // namespace

std::optional<persisted_state> read_state_file(const std::string& path) {
  auto text = read_text(path);
  if (!text) {
    return std::nullopt;
  }
  return parse_state(path, *text);
}

std::string format_state(const persisted_state& state, std::chrono::system_clock::time_point now) {
  json::object root;
  root["epoch"] = state.epoch;
  root["active"] = optional_name(state.active);
  root["last_active"] = optional_name(state.last_active);
  root["fenced"] = names_array(state.fenced);
  root["disabled"] = names_array(state.disabled);
  root["written_at"] = iso_time(now);
  return json::serialize(root) + "\n";
}

std::optional<std::string> write_state_file(const std::string& path, const persisted_state& state,
                                            std::chrono::system_clock::time_point now) {
  std::string temp = path + ".tmp";
  if (auto error = write_temp(temp, format_state(state, now))) {
    return error;
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    auto error = fmt::format("cannot rename {} to {}: {}", temp, path, errno_text(errno));
    ::unlink(temp.c_str());
    return error;
  }
  return sync_directory(path);
}

}  // namespace pgf::router
