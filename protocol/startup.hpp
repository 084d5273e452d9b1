// The untyped first packets a client may send: StartupMessage, SSLRequest, GSSENCRequest
// and CancelRequest, and the protocol-version negotiation that follows a StartupMessage.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
// Pure code: the caller reads the bytes; nothing here touches a socket.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/frame_stream.hpp"

namespace pgf::protocol {

enum class decode_status { complete, need_more, malformed };

enum class packet_kind { startup, ssl_request, gssenc_request, cancel_request };

struct startup_parameter {
  std::string name;
  std::string value;
};

struct startup_message {
  std::uint16_t major = 3;
  std::uint16_t minor = 0;
  // Every name/value pair except protocol options, in the client's order.
  std::vector<startup_parameter> parameters;
  // Names of the `_pq_.` protocol options the client asked for; none is supported yet.
  std::vector<std::string> protocol_options;

  // The value of parameter `name`, or nullptr.
  const std::string* find(std::string_view name) const;
  const std::string& user() const;    // validated non-empty by the parser
  std::string_view database() const;  // defaults to the user name, as in PostgreSQL
};

struct cancel_key {
  std::int32_t process_id = 0;
  std::uint32_t secret_key = 0;
  bool operator==(const cancel_key&) const = default;
};

struct first_packet {
  packet_kind kind = packet_kind::startup;
  startup_message startup;  // for packet_kind::startup
  cancel_key cancel;        // for packet_kind::cancel_request
};

// Checks the 4-byte length that opens every first packet. `need_more` until 4 bytes are
// given; `malformed` when the length is under 8 or over max_startup_packet_length.
decode_status decode_first_packet_length(bytes_view input, std::uint32_t& length,
                                         std::string& reason);

// Parses one whole first packet (length prefix included; input.size() must equal the
// length). Rejects: unknown request codes, protocol major versions other than 3, missing
// terminator, parameters without a value, an empty or missing `user`.
decode_status parse_first_packet(bytes_view input, first_packet& out, std::string& reason);

// What the proxy must answer to a StartupMessage before authentication begins: a
// NegotiateProtocolVersion when the client asked for a minor version above 0 or for
// protocol options. Backends are always opened at 3.0, whatever the client asked for.
struct version_negotiation {
  bool send_negotiate = false;
  std::uint16_t newest_minor = 0;
  std::vector<std::string> unsupported_options;
};
version_negotiation negotiate_version(const startup_message& startup);

}  // namespace pgf::protocol
