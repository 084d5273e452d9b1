// Loading a configuration file: parse it with toml++, read every section, then check the
// rules that span sections. Every problem is collected before anything is thrown, so an
// operator fixes a file in one round instead of one error at a time.
#include "proxy/config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "proxy/config/sections.hpp"

namespace pgf::config {

namespace {

using detail::issue_list;
using detail::table_reader;

unsigned default_workers() {
  unsigned cores = std::thread::hardware_concurrency();
  return std::clamp(cores, 1u, 256u);
}

std::uint32_t line_at(const toml::table& root, std::string_view path) {
  const auto* node = root.at_path(path).node();
  return node == nullptr ? 0 : static_cast<std::uint32_t>(node->source().begin.line);
}

template <typename Settings, typename Read>
void read_section(table_reader& root, std::string_view key, Settings& out, Read read) {
  const auto* table = root.table(key);
  if (table == nullptr) {
    return;
  }
  table_reader section(root.issues(), *table, std::string(key));
  read(section, out);
  section.check_unknown_keys();
}

// Name and priority identify a backend to operators and to the router: both must be unique.
void check_backend_unique(table_reader& reader, const std::vector<backend_config>& earlier,
                          const std::vector<std::uint32_t>& earlier_lines,
                          const backend_config& backend) {
  for (std::size_t i = 0; i < earlier.size(); ++i) {
    const auto& other = earlier[i];
    auto where = " (line " + std::to_string(earlier_lines[i]) + ")";
    if (!backend.name.empty() && other.name == backend.name) {
      reader.error("name", "backend name '" + backend.name + "' is already used" + where);
    }
    if (backend.priority != 0 && other.priority == backend.priority) {
      reader.error("priority", "priority " + std::to_string(backend.priority) +
                                   " is already used by backend '" + other.name + "'" + where);
    }
  }
}

void read_backends(table_reader& root, config& cfg) {
  const auto* list = root.tables("backend");
  if (list == nullptr) {
    if (!root.has("backend")) {
      root.issues().error(0, "backend", "at least one [[backend]] is required");
    }
    return;
  }

  std::vector<std::uint32_t> lines;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const auto& table = *list->get(i)->as_table();
    table_reader reader(root.issues(), table, "backend[" + std::to_string(i) + "]");
    backend_config backend;
    detail::read_backend(reader, backend);
    reader.check_unknown_keys();

    check_backend_unique(reader, cfg.backends, lines, backend);
    cfg.backends.push_back(std::move(backend));
    lines.push_back(static_cast<std::uint32_t>(table.source().begin.line));
  }

  std::stable_sort(cfg.backends.begin(), cfg.backends.end(),
                   [](const auto& a, const auto& b) { return a.priority < b.priority; });
}

void read_users(table_reader& root, config& cfg) {
  const auto* list = root.tables("user");
  if (list == nullptr) {
    return;
  }

  std::vector<std::string> backend_names;
  for (const auto& backend : cfg.backends) {
    backend_names.push_back(backend.name);
  }
  for (std::size_t i = 0; i < list->size(); ++i) {
    table_reader reader(root.issues(), *list->get(i)->as_table(),
                        "user[" + std::to_string(i) + "]");
    user_config user;
    detail::read_user(reader, backend_names, user);
    reader.check_unknown_keys();

    auto same_name = [&](const user_config& other) { return other.name == user.name; };
    if (!user.name.empty() && std::any_of(cfg.users.begin(), cfg.users.end(), same_name)) {
      reader.error("name", "user '" + user.name + "' is defined twice");
    }
    cfg.users.push_back(std::move(user));
  }
}

void check_auth(const toml::table& root, const config& cfg, issue_list& issues) {
  auto auth = cfg.proxy.auth;
  auto name = "auth = \"" + std::string(detail::name_of(detail::auth_method_names, auth)) + "\"";
  if (auth == auth_method::passthrough && cfg.proxy.mode != pool_mode::session) {
    issues.error(line_at(root, "proxy.pool_mode"), "proxy.pool_mode",
                 name + " requires pool_mode = \"session\"");
  }

  // Clear-text passwords are accepted only over TLS, and clients cannot use TLS yet.
  if (auth == auth_method::password) {
    issues.error(line_at(root, "proxy.auth"), "proxy.auth",
                 name + " needs client TLS, which is not supported yet; use scram-sha-256 or md5");
  }
  if (auth == auth_method::trust) {
    issues.warning(line_at(root, "proxy.auth"), "proxy.auth",
                   name + " lets every client in without a password; use it only locally");
  }

  bool needs_users = auth != auth_method::passthrough && auth != auth_method::trust;
  if (needs_users && cfg.users.empty()) {
    issues.error(line_at(root, "proxy.auth"), "user",
                 name + " needs at least one [[user]] (or auth = \"passthrough\")");
  }
}

void check_admin(const toml::table& root, const config& cfg, issue_list& issues) {
  if (cfg.admin.token || detail::is_loopback_host(cfg.admin.listen.host)) {
    return;
  }
  issues.error(line_at(root, "admin.listen"), "admin.listen",
               "refusing a non-loopback admin address without a token; set admin.token");
}

void check_tls(const toml::table& root, const config& cfg, issue_list& issues) {
  if (cfg.tls.client_tls == client_tls_mode::disable) {
    return;
  }
  auto line = line_at(root, "tls.client_tls");
  if (!cfg.tls.cert || !cfg.tls.key) {
    issues.error(line, "tls.client_tls",
                 "client_tls other than \"disable\" needs tls.cert and tls.key");
  }
  // Limitation: the listener does not terminate TLS yet, so no client could ever connect.
  issues.error(line, "tls.client_tls",
               "client TLS is not supported yet; use client_tls = \"disable\"");
}

config read_config(const toml::table& root, issue_list& issues) {
  config cfg;
  cfg.proxy.workers = default_workers();

  table_reader reader(issues, root, "");
  read_section(reader, "proxy", cfg.proxy, detail::read_proxy);
  read_section(reader, "pool", cfg.pool, detail::read_pool);
  read_section(reader, "health", cfg.health, detail::read_health);
  read_section(reader, "failover", cfg.failover, detail::read_failover);
  read_section(reader, "admin", cfg.admin, detail::read_admin);
  read_section(reader, "tls", cfg.tls, detail::read_tls);
  read_backends(reader, cfg);
  read_users(reader, cfg);
  reader.check_unknown_keys();

  check_auth(root, cfg, issues);
  check_admin(root, cfg, issues);
  check_tls(root, cfg, issues);
  return cfg;
}

std::string join(const std::vector<config_issue>& issues) {
  std::string text;
  for (const auto& issue : issues) {
    text += (text.empty() ? "" : "\n") + issue.to_string();
  }
  return text;
}

}  // namespace

std::string config_issue::to_string() const {
  std::string text = file;
  if (line != 0) {
    text += ":" + std::to_string(line);
  }
  if (!key.empty()) {
    text += ": " + key;
  }
  return text + ": " + message;
}

config_error::config_error(std::vector<config_issue> issues)
    : std::runtime_error(join(issues)), issues_(std::move(issues)) {}

config load_string(std::string_view text, const std::string& name) {
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(name));
  } catch (const toml::parse_error& error) {
    auto line = static_cast<std::uint32_t>(error.source().begin.line);
    throw config_error({{name, line, "", std::string(error.description())}});
  }

  issue_list issues(name);
  config cfg = read_config(root, issues);
  if (issues.has_errors()) {
    throw config_error(issues.take_errors());
  }
  cfg.source_path = name;
  cfg.warnings = issues.take_warnings();
  return cfg;
}

config load_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    auto reason = std::string("cannot open the file: ") + std::strerror(errno);
    throw config_error({{path, 0, "", std::move(reason)}});
  }

  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) {
    throw config_error({{path, 0, "", "cannot read the file"}});
  }
  return load_string(text.str(), path);
}

}  // namespace pgf::config
