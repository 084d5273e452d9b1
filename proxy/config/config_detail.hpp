// Pieces shared by the loader and describe(): the spelling of every enum value, environment
// expansion, backend URL reading and the formatting of durations and sizes. Not for use
// outside proxy/config/.
#pragma once

#include <array>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "proxy/config/config.hpp"

namespace pgf::config::detail {

template <typename Enum>
struct enum_name {
  std::string_view name;
  Enum value;
};

inline constexpr std::array<enum_name<pool_mode>, 2> pool_mode_names{{
    {"session", pool_mode::session},
    {"transaction", pool_mode::transaction},
}};

inline constexpr std::array<enum_name<auth_method>, 5> auth_method_names{{
    {"scram-sha-256", auth_method::scram_sha_256},
    {"md5", auth_method::md5},
    {"password", auth_method::password},
    {"trust", auth_method::trust},
    {"passthrough", auth_method::passthrough},
}};

inline constexpr std::array<enum_name<session_state_policy>, 2> session_state_names{{
    {"pin", session_state_policy::pin},
    {"reject", session_state_policy::reject},
}};

inline constexpr std::array<enum_name<failback_policy>, 2> failback_names{{
    {"manual", failback_policy::manual},
    {"auto", failback_policy::automatic},
}};

inline constexpr std::array<enum_name<client_tls_mode>, 3> client_tls_names{{
    {"disable", client_tls_mode::disable},
    {"allow", client_tls_mode::allow},
    {"require", client_tls_mode::require},
}};

inline constexpr std::array<enum_name<session_attrs>, 6> session_attrs_names{{
    {"any", session_attrs::any},
    {"read-write", session_attrs::read_write},
    {"read-only", session_attrs::read_only},
    {"primary", session_attrs::primary},
    {"standby", session_attrs::standby},
    {"prefer-standby", session_attrs::prefer_standby},
}};

// `none` has no spelling: it is what an absent `promote` key means.
inline constexpr std::array<enum_name<promote_method>, 1> promote_names{{
    {"sql", promote_method::sql},
}};

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<enum_name<Enum>, N>& names, Enum value) {
  for (const auto& entry : names) {
    if (entry.value == value) {
      return entry.name;
    }
  }
  return {};
}

// Replaces ${VAR} and ${VAR:-default} with the environment's value and "$$" with "$".
// As in the shell, ":-" also takes the default when VAR is set but empty. A "$" followed by
// anything else stays as written. On failure returns the reason, which never quotes `text`.
struct expand_failure {
  std::string reason;
};
std::variant<std::string, expand_failure> expand_env(std::string_view text);

// What libpq's PQconninfoParse made of a backend URL, or why it cannot be used.
struct url_failure {
  std::string reason;  // never holds the URL or any part of it
};
std::variant<backend_endpoint, url_failure> parse_backend_url(const std::string& url);

// The URL as written when it holds no secret; otherwise every option libpq read from it in
// key=value form, with password and sslpassword shown as "****".
std::string masked_url(const std::string& url);

// "host:port", "[v6]:port" or "*:port"; port 0 is allowed. On failure returns the reason.
std::variant<listen_address, std::string> parse_listen(std::string_view text);

// True for 127.0.0.0/8, ::1 (and its IPv4-mapped form) and "localhost".
bool is_loopback_host(std::string_view host);

// "host:port" or "[v6]:port" for a listen address.
std::string format_listen(const listen_address& address);

// The largest unit that states the value exactly: 2000ms -> "2s", 250ms -> "250ms".
std::string format_duration(duration value);
// The largest 1024-based unit that states the value exactly: "1GB", "64kB", "1000".
std::string format_size(std::uint64_t bytes);

std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word`, when it is close enough to be a likely typo.
std::optional<std::string> closest_match(std::string_view word,
                                         std::span<const std::string> candidates);

}  // namespace pgf::config::detail
