// The effective configuration as TOML, in the order of conf/pgfailover.toml: every key with
// its value, defaults included, and unset keys as comments. Secrets never appear: passwords,
// tokens and passwords inside backend URLs are all written as "****". The output loads again.
#include <toml++/toml.h>

#include <sstream>

#include "proxy/config/config.hpp"
#include "proxy/config/config_detail.hpp"

namespace pgf::config {

namespace {

using detail::format_duration;
using detail::name_of;

constexpr std::string_view mask = "****";

std::string quote(std::string_view text) {
  std::ostringstream out;
  out << toml::toml_formatter{toml::value<std::string>(std::string(text)),
                              toml::format_flags::none};
  return out.str();
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) {
    return false;
  }
  for (char c : key) {
    bool is_bare = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_';
    if (!is_bare) {
      return false;
    }
  }
  return true;
}

std::string toml_key(std::string_view key) {
  return is_bare_key(key) ? std::string(key) : quote(key);
}

class toml_writer {
 public:
  void header(std::string_view line) { text_ += std::string(line) + "\n"; }

  void section(std::string_view name) { text_ += "\n[" + std::string(name) + "]\n"; }

  void array_section(std::string_view name) { text_ += "\n[[" + std::string(name) + "]]\n"; }

  void raw(std::string_view key, std::string_view value) {
    text_ += toml_key(key) + " = " + std::string(value) + "\n";
  }

  void text(std::string_view key, std::string_view value) { raw(key, quote(value)); }

  void number(std::string_view key, std::uint64_t value) { raw(key, std::to_string(value)); }

  void time(std::string_view key, duration value) { text(key, format_duration(value)); }

  void unset(std::string_view key, std::string_view meaning) {
    text_ += "# " + std::string(key) + " is unset: " + std::string(meaning) + "\n";
  }

  void text(std::string_view key, const std::optional<std::string>& value,
            std::string_view meaning) {
    if (value) {
      text(key, *value);
    } else {
      unset(key, meaning);
    }
  }

  void time(std::string_view key, const std::optional<duration>& value) {
    if (value) {
      time(key, *value);
    } else {
      unset(key, "off");
    }
  }

  void secret(std::string_view key, const std::optional<std::string>& value,
              std::string_view meaning) {
    if (value) {
      text(key, mask);
    } else {
      unset(key, meaning);
    }
  }

  std::string take() { return std::move(text_); }

 private:
  std::string text_;
};

void write_proxy(toml_writer& out, const proxy_settings& proxy) {
  out.section("proxy");
  out.text("listen", detail::format_listen(proxy.listen));
  out.text("unix_socket_dir", proxy.unix_socket_dir, "TCP only");
  out.number("workers", proxy.workers);
  out.text("pool_mode", name_of(detail::pool_mode_names, proxy.mode));
  out.text("auth", name_of(detail::auth_method_names, proxy.auth));
  out.number("max_client_connections", proxy.max_client_connections);
  out.time("connect_timeout", proxy.connect_timeout);
  out.time("startup_timeout", proxy.startup_timeout);
  out.text("max_message_size", detail::format_size(proxy.max_message_size));
  out.time("shutdown_timeout", proxy.shutdown_timeout);
  out.text("on_session_state", name_of(detail::session_state_names, proxy.on_session_state));
  out.text("state_file", proxy.state_file);
}

void write_pool(toml_writer& out, const pool_settings& pool) {
  out.section("pool");
  out.number("pool_size", pool.pool_size);
  out.number("min_idle", pool.min_idle);
  out.time("pool_timeout", pool.pool_timeout);
  out.time("server_idle_timeout", pool.server_idle_timeout);
  out.time("server_lifetime", pool.server_lifetime);
  out.time("client_idle_timeout", pool.client_idle_timeout);
  out.time("idle_in_transaction_timeout", pool.idle_in_transaction_timeout);
  out.number("max_prepared_statements", pool.max_prepared_statements);
  out.text("reset_query", pool.reset_query);
}

void write_health(toml_writer& out, const health_settings& health) {
  out.section("health");
  out.time("interval", health.interval);
  out.time("timeout", health.timeout);
  out.number("fall", health.fall);
  out.number("rise", health.rise);
  out.text("user", health.user, "each backend URL's user");
  out.secret("password", health.password, "each backend's password");
}

void write_failover(toml_writer& out, const failover_settings& failover) {
  out.section("failover");
  out.text("failback", name_of(detail::failback_names, failover.failback));
  out.time("failback_after", failover.failback_after);
  out.text("target_session_attrs",
           name_of(detail::session_attrs_names, failover.target_session_attrs));
  out.time("startup_wait", failover.startup_wait);
  out.time("drain_timeout", failover.drain_timeout);
  out.time("pause_timeout", failover.pause_timeout);
  out.text("on_switch", failover.on_switch, "no command runs");
  out.time("hook_timeout", failover.hook_timeout);
}

void write_admin_and_tls(toml_writer& out, const admin_settings& admin, const tls_settings& tls) {
  out.section("admin");
  out.text("listen", detail::format_listen(admin.listen));
  out.secret("token", admin.token, "no token");

  out.section("tls");
  out.text("cert", tls.cert, "none");
  out.text("key", tls.key, "none");
  out.text("ca", tls.ca, "none");
  out.text("client_tls", name_of(detail::client_tls_names, tls.client_tls));
}

std::string inline_table(const std::map<std::string, std::string>& entries) {
  if (entries.empty()) {
    return "{}";
  }
  std::string text = "{ ";
  for (const auto& [key, value] : entries) {
    text += (text.size() > 2 ? ", " : "") + toml_key(key) + " = " + quote(value);
  }
  return text + " }";
}

void write_backend(toml_writer& out, const backend_config& backend) {
  out.array_section("backend");
  out.text("name", backend.name);
  out.number("priority", backend.priority);
  out.text("url", detail::masked_url(backend.url));
  out.secret("password", backend.password, "the URL's, if any");
  out.number("max_server_connections", backend.max_server_connections);
  out.text("ready_query", backend.ready_query, "none");
  out.raw("databases", inline_table(backend.databases));

  if (backend.promote == promote_method::none) {
    out.unset("promote", "never promoted by SQL");
  } else {
    out.text("promote", name_of(detail::promote_names, backend.promote));
  }
  out.text("promote_command", backend.promote_command, "none");
  out.time("promote_timeout", backend.promote_timeout);
}

void write_user(toml_writer& out, const user_config& user) {
  out.array_section("user");
  out.text("name", user.name);
  out.text("password", mask);
  if (user.pool_size) {
    out.number("pool_size", *user.pool_size);
  } else {
    out.unset("pool_size", "[pool].pool_size applies");
  }

  for (const auto& [backend, login] : user.backends) {
    out.section("user.backends." + toml_key(backend));
    out.text("user", login.user, "the user's own name");
    out.secret("password", login.password, "the user's own password");
  }
}

}  // namespace

std::string describe(const config& cfg) {
  toml_writer out;
  out.header("# Effective configuration of " + quote(cfg.source_path) +
             "; secrets are shown as \"" + std::string(mask) + "\".");
  write_proxy(out, cfg.proxy);
  write_pool(out, cfg.pool);
  write_health(out, cfg.health);
  write_failover(out, cfg.failover);
  write_admin_and_tls(out, cfg.admin, cfg.tls);
  for (const auto& backend : cfg.backends) {
    write_backend(out, backend);
  }
  for (const auto& user : cfg.users) {
    write_user(out, user);
  }
  return out.take();
}

}  // namespace pgf::config
