// Numbers fixed by the PostgreSQL v3 wire protocol, and the proxy's own limits on them.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
#pragma once

#include <cstddef>
#include <cstdint>

namespace pgf::protocol {

// First-packet codes: the "version" field of an untyped packet.
constexpr std::uint32_t ssl_request_code = 80877103;     // 1234.5679
constexpr std::uint32_t gssenc_request_code = 80877104;  // 1234.5680
constexpr std::uint32_t cancel_request_code = 80877102;  // 1234.5678

constexpr std::uint32_t make_version(std::uint16_t major, std::uint16_t minor) {
  return (std::uint32_t{major} << 16) | minor;
}
constexpr std::uint32_t protocol_3_0 = make_version(3, 0);

// PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH).
constexpr std::size_t max_startup_packet_length = 10000;
// PostgreSQL's own ceiling for one message (PQ_LARGE_MESSAGE_LIMIT is 1 GB - 1).
constexpr std::uint32_t default_max_message_size = 1024u * 1024u * 1024u;

// A typed message: one type byte, then a 4-byte length that counts itself.
constexpr std::size_t header_size = 5;
constexpr std::uint32_t min_message_length = 4;

// Authentication request codes carried in 'R' messages.
namespace auth_code {
constexpr std::int32_t ok = 0;
constexpr std::int32_t cleartext_password = 3;
constexpr std::int32_t md5_password = 5;
constexpr std::int32_t gss = 7;
constexpr std::int32_t gss_continue = 8;
constexpr std::int32_t sspi = 9;
constexpr std::int32_t sasl = 10;
constexpr std::int32_t sasl_continue = 11;
constexpr std::int32_t sasl_final = 12;
}  // namespace auth_code

// SQLSTATEs the proxy itself sends.
namespace sqlstate {
constexpr const char* protocol_violation = "08P01";
constexpr const char* connection_failure = "08006";
constexpr const char* cannot_connect_now = "57P03";
constexpr const char* admin_shutdown = "57P01";
constexpr const char* too_many_connections = "53300";
constexpr const char* feature_not_supported = "0A000";
constexpr const char* invalid_authorization = "28000";
constexpr const char* invalid_password = "28P01";
}  // namespace sqlstate

}  // namespace pgf::protocol
