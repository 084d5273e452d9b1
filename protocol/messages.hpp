// Builders for the messages the proxy sends itself, and read-only views over the typed
// messages it inspects. Views take a message's body (the bytes after the 5-byte header)
// and return string_views into it; they never allocate and never read past it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/frame_stream.hpp"
#include "protocol/startup.hpp"

namespace pgf::protocol {

using byte_buffer = std::vector<std::uint8_t>;

// ---- builders: each appends one complete message to `out` ----
// A string field ends at its first NUL, if it holds one, so that what is sent always
// parses as the message it claims to be.

struct error_fields {
  std::string_view severity;  // "ERROR", "FATAL", ...
  std::string_view sqlstate;  // five characters
  std::string_view message;
  std::string_view detail;  // omitted when empty
  std::string_view hint;    // omitted when empty
};
void append_error_response(byte_buffer& out, const error_fields& fields);
// NoticeResponse has the same layout as ErrorResponse under type 'N'.
void append_notice_response(byte_buffer& out, const error_fields& fields);

void append_ready_for_query(byte_buffer& out, char transaction_status);
void append_backend_key_data(byte_buffer& out, const cancel_key& key);
void append_parameter_status(byte_buffer& out, std::string_view name, std::string_view value);
void append_authentication(byte_buffer& out, std::int32_t code, bytes_view data = {});
void append_negotiate_protocol_version(byte_buffer& out, std::uint16_t newest_minor,
                                       const std::vector<std::string>& unsupported_options);
// The StartupMessage the proxy sends to a backend, always at protocol 3.0.
void append_startup_message(byte_buffer& out, const std::vector<startup_parameter>& params);
void append_cancel_request(byte_buffer& out, const cancel_key& key);
void append_terminate(byte_buffer& out);
// A typed message with an arbitrary body (the password message, for instance).
void append_message(byte_buffer& out, char type, bytes_view body);

// ---- views over message bodies ----

// Fields of an ErrorResponse or NoticeResponse. Missing fields stay empty. Returns
// false when the body is not a sequence of NUL-terminated fields ending in a NUL.
bool parse_error_fields(bytes_view body, error_fields& out);

// BackendKeyData at protocol 3.0: exactly 8 bytes.
std::optional<cancel_key> parse_backend_key_data(bytes_view body);

// ReadyForQuery: one byte, 'I', 'T' or 'E'.
std::optional<char> parse_ready_for_query(bytes_view body);

// Authentication request code (the first 4 bytes of an 'R' body).
std::optional<std::int32_t> parse_authentication_code(bytes_view body);

struct parameter_status {
  std::string_view name;
  std::string_view value;
};
std::optional<parameter_status> parse_parameter_status(bytes_view body);

// Big-endian helpers for bodies already known to be long enough.
std::int32_t read_int32(const std::uint8_t* p);
void write_int32(std::uint8_t* p, std::int32_t value);

// The NUL-terminated string that starts at `offset` in `body`, without its NUL; moves
// `offset` past the NUL. nullopt (offset unchanged) when no NUL follows inside `body`.
std::optional<std::string_view> read_cstring(bytes_view body, std::size_t& offset);

}  // namespace pgf::protocol
