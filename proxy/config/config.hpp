// The proxy's whole configuration as one validated value, loaded from a TOML file.
// Every key, its default and its meaning are documented in conf/pgfailover.toml.
// Loading never logs; errors come back as a list naming file, line and key.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pgf::config {

using duration = std::chrono::milliseconds;

enum class pool_mode { session, transaction };
enum class auth_method { scram_sha_256, md5, password, trust, passthrough };
enum class session_state_policy { pin, reject };
enum class failback_policy { manual, automatic };
enum class client_tls_mode { disable, allow, require };
// libpq's target_session_attrs values.
enum class session_attrs { any, read_write, read_only, primary, standby, prefer_standby };
enum class promote_method { none, sql };

struct listen_address {
  std::string host;    // numeric or a name; "*" or "0.0.0.0" for all
  std::uint16_t port;  // 0 picks a free port
  bool operator==(const listen_address&) const = default;
};

struct proxy_settings {
  listen_address listen{"127.0.0.1", 6432};
  std::optional<std::string> unix_socket_dir;
  unsigned workers = 0;  // 0 = number of cores, resolved by the loader
  pool_mode mode = pool_mode::session;
  auth_method auth = auth_method::scram_sha_256;
  std::uint32_t max_client_connections = 10000;
  duration connect_timeout{5000};
  duration startup_timeout{10000};
  std::uint32_t max_message_size = 1024u * 1024u * 1024u;
  duration shutdown_timeout{30000};
  session_state_policy on_session_state = session_state_policy::pin;
  std::string state_file = "pgfailover.state";
};

struct pool_settings {
  std::uint32_t pool_size = 20;
  std::uint32_t min_idle = 0;
  duration pool_timeout{30000};
  duration server_idle_timeout{600000};
  duration server_lifetime{3600000};
  std::optional<duration> client_idle_timeout;          // unset = off
  std::optional<duration> idle_in_transaction_timeout;  // unset = off
  std::uint32_t max_prepared_statements = 200;
  std::string reset_query = "DISCARD ALL";
};

struct health_settings {
  duration interval{250};
  duration timeout{400};
  std::uint32_t fall = 2;
  std::uint32_t rise = 2;
  std::optional<std::string> user;      // unset = each backend URL's user
  std::optional<std::string> password;  // unset = each backend's password
};

struct failover_settings {
  failback_policy failback = failback_policy::manual;
  duration failback_after{30000};
  session_attrs target_session_attrs = session_attrs::read_write;
  duration startup_wait{2000};
  duration drain_timeout{10000};
  duration pause_timeout{60000};
  std::optional<std::string> on_switch;  // a shell command
  duration hook_timeout{10000};
};

struct admin_settings {
  listen_address listen{"127.0.0.1", 6480};
  std::optional<std::string> token;
};

struct tls_settings {
  std::optional<std::string> cert;
  std::optional<std::string> key;
  std::optional<std::string> ca;
  client_tls_mode client_tls = client_tls_mode::disable;
};

// The parts of a backend URL the proxy uses, as read by libpq's PQconninfoParse.
struct backend_endpoint {
  std::string host;  // one host; a Unix-socket directory when it starts with '/'
  std::uint16_t port = 5432;
  std::optional<std::string> user;
  std::optional<std::string> password;  // from the URL; the `password` key overrides it
  std::optional<std::string> dbname;
  std::string sslmode = "prefer";  // libpq's default; TLS is not supported yet
  std::optional<std::chrono::seconds> connect_timeout;
};

struct backend_config {
  std::string name;
  std::uint32_t priority = 0;  // 1 is preferred; unique
  std::string url;             // as written, for libpq; never logged (may hold a password)
  backend_endpoint endpoint;
  std::optional<std::string> password;
  std::uint32_t max_server_connections = 100;
  std::optional<std::string> ready_query;
  std::map<std::string, std::string> databases;  // client database -> backend database
  promote_method promote = promote_method::none;
  std::optional<std::string> promote_command;
  duration promote_timeout{30000};

  // The password to log in with: the `password` key, else the URL's.
  const std::optional<std::string>& effective_password() const {
    return password ? password : endpoint.password;
  }
};

struct user_backend_override {
  std::optional<std::string> user;
  std::optional<std::string> password;
};

struct user_config {
  std::string name;
  std::string password;
  std::optional<std::uint32_t> pool_size;
  std::map<std::string, user_backend_override> backends;  // by backend name
};

// One problem found in a file: "FILE:LINE: KEY: what is wrong".
struct config_issue {
  std::string file;
  std::uint32_t line = 0;  // 0 when the problem has no single line (a missing section)
  std::string key;         // dotted path: "backend[1].priority", "proxy.listen"
  std::string message;
  std::string to_string() const;
};

struct config {
  std::string source_path;  // the file it was loaded from
  proxy_settings proxy;
  pool_settings pool;
  health_settings health;
  failover_settings failover;
  admin_settings admin;
  tls_settings tls;
  std::vector<backend_config> backends;  // sorted by priority, best first
  std::vector<user_config> users;
  // Things that load but deserve an operator's attention (auth = "trust", a backend reached
  // in plaintext although its URL allows TLS). The caller decides how to show them.
  std::vector<config_issue> warnings;
};

class config_error : public std::runtime_error {
 public:
  explicit config_error(std::vector<config_issue> issues);
  const std::vector<config_issue>& issues() const { return issues_; }

 private:
  std::vector<config_issue> issues_;
};

// Reads, expands ${VAR} and ${VAR:-default}, and validates `path`. Throws config_error
// listing every problem found (not only the first), or returns a complete value.
config load_file(const std::string& path);
// The same from TOML text; `name` stands for the file in messages.
config load_string(std::string_view text, const std::string& name);

// The effective configuration as TOML, secrets (passwords, tokens, URL passwords)
// replaced by "****": what `pgfailover check-config` prints.
std::string describe(const config& cfg);

// Parses "250ms", "2s", "1m", "1h", "1d"; nullopt when malformed.
std::optional<duration> parse_duration(std::string_view text);
// Parses "1024", "64kB", "16MB", "1GB" (powers of 1024, as in PostgreSQL).
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace pgf::config
