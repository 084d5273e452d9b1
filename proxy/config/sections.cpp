// Each section of the file read into its settings, with the ranges that
// conf/pgfailover.toml documents. Absent keys keep the defaults written in config.hpp.
#include "proxy/config/sections.hpp"

#include <algorithm>
#include <limits>

namespace pgf::config::detail {

namespace {

constexpr std::uint32_t no_limit = std::numeric_limits<std::uint32_t>::max();
constexpr duration positive{1};
constexpr duration zero_or_more{0};
constexpr std::uint64_t min_message_size = 1024;
constexpr std::uint64_t max_message_size = 1024ull * 1024 * 1024;

void read_non_empty(table_reader& reader, std::string_view key, std::string& out) {
  std::string value;
  if (!reader.read(key, value)) {
    return;
  }
  if (value.empty()) {
    reader.error(key, "must not be empty");
    return;
  }
  out = std::move(value);
}

void read_non_empty(table_reader& reader, std::string_view key, std::optional<std::string>& out) {
  std::string value;
  if (!reader.has(key)) {
    reader.read(key, value);
    return;
  }
  read_non_empty(reader, key, value);
  if (!value.empty()) {
    out = std::move(value);
  }
}

bool is_backend_name(std::string_view name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

void read_backend_name(table_reader& reader, backend_config& out) {
  if (!reader.has("name")) {
    reader.read("name", out.name);
    reader.missing("name");
    return;
  }

  std::string name;
  read_non_empty(reader, "name", name);
  if (!name.empty() && !is_backend_name(name)) {
    // The name appears in admin URLs, metric labels and TOML table headers.
    reader.error("name", "a backend name may hold only letters, digits, '-' and '_'");
    return;
  }
  out.name = std::move(name);
}

void read_backend_url(table_reader& reader, backend_config& out) {
  if (!reader.has("url")) {
    reader.read("url", out.url);
    reader.missing("url");
    return;
  }

  std::string url;
  read_non_empty(reader, "url", url);
  if (url.empty()) {
    return;
  }
  auto endpoint = parse_backend_url(url);
  if (auto* failure = std::get_if<url_failure>(&endpoint)) {
    reader.error("url", failure->reason);
    return;
  }
  out.url = std::move(url);
  out.endpoint = std::get<backend_endpoint>(std::move(endpoint));

  if (out.endpoint.sslmode != "disable") {
    reader.warning("url", "sslmode=" + out.endpoint.sslmode +
                              " connects in plaintext: the proxy never asks a backend for TLS "
                              "yet (say sslmode=disable to make that explicit)");
  }
}

void read_databases(table_reader& reader, backend_config& out) {
  const auto* table = reader.table("databases");
  if (table == nullptr) {
    return;
  }

  table_reader databases(reader.issues(), *table, reader.key_path("databases"));
  for (const auto& [client_name, node] : *table) {
    std::string backend_name;
    read_non_empty(databases, client_name.str(), backend_name);
    if (!backend_name.empty()) {
      out.databases.emplace(client_name.str(), std::move(backend_name));
    }
  }
  databases.check_unknown_keys();
}

void read_promotion(table_reader& reader, backend_config& out) {
  reader.read("promote", out.promote, promote_names);
  read_non_empty(reader, "promote_command", out.promote_command);
  reader.read("promote_timeout", out.promote_timeout, positive);

  if (out.promote != promote_method::none && out.promote_command) {
    reader.error("promote_command", "set either promote or promote_command, not both");
  }
}

void read_user_backend(table_reader& reader, const std::string& name,
                       const std::vector<std::string>& backend_names,
                       std::map<std::string, user_backend_override>& out) {
  const auto* table = reader.table(name);
  if (table == nullptr) {
    return;
  }

  table_reader override_reader(reader.issues(), *table, reader.key_path(name));
  user_backend_override entry;
  read_non_empty(override_reader, "user", entry.user);
  override_reader.read("password", entry.password);
  override_reader.check_unknown_keys();

  if (std::find(backend_names.begin(), backend_names.end(), name) == backend_names.end()) {
    std::string message = "no [[backend]] is named '" + name + "'";
    if (auto suggestion = closest_match(name, backend_names)) {
      message += "; did you mean '" + *suggestion + "'?";
    }
    reader.error(name, std::move(message));
    return;
  }
  out.emplace(name, std::move(entry));
}

}  // namespace

void read_proxy(table_reader& reader, proxy_settings& out) {
  reader.read("listen", out.listen);
  read_non_empty(reader, "unix_socket_dir", out.unix_socket_dir);
  std::uint32_t workers = out.workers;
  if (reader.read("workers", workers, 1, 256)) {
    out.workers = workers;
  }
  reader.read("pool_mode", out.mode, pool_mode_names);
  reader.read("auth", out.auth, auth_method_names);

  reader.read("max_client_connections", out.max_client_connections, 1, no_limit);
  reader.read("connect_timeout", out.connect_timeout, positive);
  reader.read("startup_timeout", out.startup_timeout, positive);
  reader.read_size("max_message_size", out.max_message_size, min_message_size, max_message_size);
  reader.read("shutdown_timeout", out.shutdown_timeout, positive);
  reader.read("on_session_state", out.on_session_state, session_state_names);
  read_non_empty(reader, "state_file", out.state_file);
}

void read_pool(table_reader& reader, pool_settings& out) {
  reader.read("pool_size", out.pool_size, 1, no_limit);
  reader.read("min_idle", out.min_idle, 0, no_limit);
  reader.read("pool_timeout", out.pool_timeout, positive);
  reader.read("server_idle_timeout", out.server_idle_timeout, positive);
  reader.read("server_lifetime", out.server_lifetime, positive);
  reader.read("client_idle_timeout", out.client_idle_timeout, positive);
  reader.read("idle_in_transaction_timeout", out.idle_in_transaction_timeout, positive);
  reader.read("max_prepared_statements", out.max_prepared_statements, 0, no_limit);
  // Empty is allowed: no reset at all, for servers where DISCARD ALL is not permitted.
  reader.read("reset_query", out.reset_query);

  if (out.min_idle > out.pool_size) {
    reader.error("min_idle", "must not exceed pool_size (" + std::to_string(out.pool_size) + ")");
  }
}

void read_health(table_reader& reader, health_settings& out) {
  reader.read("interval", out.interval, positive);
  reader.read("timeout", out.timeout, positive);
  reader.read("fall", out.fall, 1, no_limit);
  reader.read("rise", out.rise, 1, no_limit);
  read_non_empty(reader, "user", out.user);
  reader.read("password", out.password);
}

void read_failover(table_reader& reader, failover_settings& out) {
  reader.read("failback", out.failback, failback_names);
  reader.read("failback_after", out.failback_after, zero_or_more);
  reader.read("target_session_attrs", out.target_session_attrs, session_attrs_names);
  reader.read("startup_wait", out.startup_wait, zero_or_more);
  reader.read("drain_timeout", out.drain_timeout, positive);
  reader.read("pause_timeout", out.pause_timeout, positive);
  read_non_empty(reader, "on_switch", out.on_switch);
  reader.read("hook_timeout", out.hook_timeout, positive);
}

void read_admin(table_reader& reader, admin_settings& out) {
  reader.read("listen", out.listen);
  read_non_empty(reader, "token", out.token);
}

void read_tls(table_reader& reader, tls_settings& out) {
  read_non_empty(reader, "cert", out.cert);
  read_non_empty(reader, "key", out.key);
  read_non_empty(reader, "ca", out.ca);
  reader.read("client_tls", out.client_tls, client_tls_names);
}

void read_backend(table_reader& reader, backend_config& out) {
  read_backend_name(reader, out);
  if (!reader.has("priority")) {
    reader.missing("priority");
  }
  reader.read("priority", out.priority, 1, no_limit);
  read_backend_url(reader, out);

  reader.read("password", out.password);
  reader.read("max_server_connections", out.max_server_connections, 1, no_limit);
  read_non_empty(reader, "ready_query", out.ready_query);
  read_databases(reader, out);
  read_promotion(reader, out);
}

void read_user(table_reader& reader, const std::vector<std::string>& backend_names,
               user_config& out) {
  if (!reader.has("name")) {
    reader.missing("name");
  }
  read_non_empty(reader, "name", out.name);
  if (!reader.has("password")) {
    reader.missing("password");
  }
  read_non_empty(reader, "password", out.password);
  reader.read("pool_size", out.pool_size, 1, no_limit);

  const auto* backends = reader.table("backends");
  if (backends == nullptr) {
    return;
  }
  table_reader overrides(reader.issues(), *backends, reader.key_path("backends"));
  for (const auto& [name, node] : *backends) {
    read_user_backend(overrides, std::string(name.str()), backend_names, out.backends);
  }
  overrides.check_unknown_keys();
}

}  // namespace pgf::config::detail
