// Builds the messages the proxy sends itself and reads the few it must understand.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
#include "protocol/messages.hpp"

#include <cstring>

namespace pgf::protocol {

namespace {

constexpr std::size_t length_field_size = 4;

void append_int32(byte_buffer& out, std::int32_t value) {
  const std::size_t at = out.size();
  out.resize(at + 4);
  write_int32(out.data() + at, value);
}

void append_uint32(byte_buffer& out, std::uint32_t value) {
  append_int32(out, static_cast<std::int32_t>(value));
}

void append_bytes(byte_buffer& out, bytes_view bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// Appends `text` up to its first NUL, then the NUL that terminates it on the wire.
void append_cstring(byte_buffer& out, std::string_view text) {
  text = text.substr(0, text.find('\0'));
  out.insert(out.end(), text.begin(), text.end());
  out.push_back(0);
}

// Opens a typed message; returns where its length goes once the body is written.
std::size_t begin_message(byte_buffer& out, char type) {
  out.push_back(static_cast<std::uint8_t>(type));
  const std::size_t length_at = out.size();
  out.resize(length_at + length_field_size);
  return length_at;
}

// Writes the length, which counts itself and the body but not the type byte.
void end_message(byte_buffer& out, std::size_t length_at) {
  write_int32(out.data() + length_at, static_cast<std::int32_t>(out.size() - length_at));
}

void append_field(byte_buffer& out, char code, std::string_view value) {
  out.push_back(static_cast<std::uint8_t>(code));
  append_cstring(out, value);
}

void append_fields_message(byte_buffer& out, char type, const error_fields& fields) {
  const std::size_t length_at = begin_message(out, type);
  append_field(out, 'S', fields.severity);
  // 'V' is the severity never translated, which clients since PostgreSQL 9.6 read first.
  append_field(out, 'V', fields.severity);
  append_field(out, 'C', fields.sqlstate);
  append_field(out, 'M', fields.message);
  if (!fields.detail.empty()) {
    append_field(out, 'D', fields.detail);
  }
  if (!fields.hint.empty()) {
    append_field(out, 'H', fields.hint);
  }
  out.push_back(0);
  end_message(out, length_at);
}

// The body length an Authentication request must have, or 0 when it varies.
std::size_t fixed_authentication_size(std::int32_t code) {
  switch (code) {
    case auth_code::ok:
    case auth_code::cleartext_password:
    case auth_code::gss:
    case auth_code::sspi:
      return 4;
    case auth_code::md5_password:
      return 8;  // the code, then a 4-byte salt
    default:
      return 0;
  }
}

}  // namespace

std::int32_t read_int32(const std::uint8_t* p) {
  const std::uint32_t value = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                              (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
  return static_cast<std::int32_t>(value);
}

void write_int32(std::uint8_t* p, std::int32_t value) {
  const auto bits = static_cast<std::uint32_t>(value);
  p[0] = static_cast<std::uint8_t>(bits >> 24);
  p[1] = static_cast<std::uint8_t>(bits >> 16);
  p[2] = static_cast<std::uint8_t>(bits >> 8);
  p[3] = static_cast<std::uint8_t>(bits);
}

std::optional<std::string_view> read_cstring(bytes_view body, std::size_t& offset) {
  if (offset >= body.size()) {
    return std::nullopt;
  }

  const std::uint8_t* begin = body.data() + offset;
  const void* nul = std::memchr(begin, 0, body.size() - offset);
  if (nul == nullptr) {
    return std::nullopt;
  }

  const auto length = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nul) - begin);
  offset += length + 1;
  return std::string_view(reinterpret_cast<const char*>(begin), length);
}

void append_error_response(byte_buffer& out, const error_fields& fields) {
  append_fields_message(out, 'E', fields);
}

void append_notice_response(byte_buffer& out, const error_fields& fields) {
  append_fields_message(out, 'N', fields);
}

void append_ready_for_query(byte_buffer& out, char transaction_status) {
  const std::size_t length_at = begin_message(out, 'Z');
  out.push_back(static_cast<std::uint8_t>(transaction_status));
  end_message(out, length_at);
}

void append_backend_key_data(byte_buffer& out, const cancel_key& key) {
  const std::size_t length_at = begin_message(out, 'K');
  append_int32(out, key.process_id);
  append_uint32(out, key.secret_key);
  end_message(out, length_at);
}

void append_parameter_status(byte_buffer& out, std::string_view name, std::string_view value) {
  const std::size_t length_at = begin_message(out, 'S');
  append_cstring(out, name);
  append_cstring(out, value);
  end_message(out, length_at);
}

void append_authentication(byte_buffer& out, std::int32_t code, bytes_view data) {
  const std::size_t length_at = begin_message(out, 'R');
  append_int32(out, code);
  append_bytes(out, data);
  end_message(out, length_at);
}

void append_negotiate_protocol_version(byte_buffer& out, std::uint16_t newest_minor,
                                       const std::vector<std::string>& unsupported_options) {
  const std::size_t length_at = begin_message(out, 'v');
  // PostgreSQL sends the whole version number here (PG_PROTOCOL(3, minor)), and libpq
  // reads it that way, although the field is described as the newest minor version.
  append_uint32(out, make_version(3, newest_minor));
  append_int32(out, static_cast<std::int32_t>(unsupported_options.size()));
  for (const std::string& option : unsupported_options) {
    append_cstring(out, option);
  }
  end_message(out, length_at);
}

void append_startup_message(byte_buffer& out, const std::vector<startup_parameter>& params) {
  // Untyped: the length opens the packet and counts itself.
  const std::size_t length_at = out.size();
  out.resize(length_at + length_field_size);
  append_uint32(out, protocol_3_0);
  for (const startup_parameter& param : params) {
    append_cstring(out, param.name);
    append_cstring(out, param.value);
  }
  out.push_back(0);
  end_message(out, length_at);
}

void append_cancel_request(byte_buffer& out, const cancel_key& key) {
  append_int32(out, 16);
  append_uint32(out, cancel_request_code);
  append_int32(out, key.process_id);
  append_uint32(out, key.secret_key);
}

void append_terminate(byte_buffer& out) {
  const std::size_t length_at = begin_message(out, 'X');
  end_message(out, length_at);
}

void append_message(byte_buffer& out, char type, bytes_view body) {
  const std::size_t length_at = begin_message(out, type);
  append_bytes(out, body);
  end_message(out, length_at);
}

bool parse_error_fields(bytes_view body, error_fields& out) {
  out = error_fields{};
  std::string_view localized_severity;
  std::size_t offset = 0;
  bool is_terminated = false;
  while (offset < body.size()) {
    const char code = static_cast<char>(body[offset++]);
    if (code == '\0') {
      is_terminated = true;
      break;
    }

    const auto value = read_cstring(body, offset);
    if (!value) {
      out = error_fields{};
      return false;
    }

    switch (code) {
      case 'S':
        localized_severity = *value;
        break;
      case 'V':
        out.severity = *value;
        break;
      case 'C':
        out.sqlstate = *value;
        break;
      case 'M':
        out.message = *value;
        break;
      case 'D':
        out.detail = *value;
        break;
      case 'H':
        out.hint = *value;
        break;
      default:
        break;  // other fields are not needed by the proxy
    }
  }

  // The body must end exactly at the terminating NUL.
  if (!is_terminated || offset != body.size()) {
    out = error_fields{};
    return false;
  }
  if (out.severity.empty()) {
    out.severity = localized_severity;
  }
  return true;
}

std::optional<cancel_key> parse_backend_key_data(bytes_view body) {
  if (body.size() != 8) {
    return std::nullopt;
  }
  return cancel_key{read_int32(body.data()),
                    static_cast<std::uint32_t>(read_int32(body.data() + 4))};
}

std::optional<char> parse_ready_for_query(bytes_view body) {
  if (body.size() != 1) {
    return std::nullopt;
  }

  const char status = static_cast<char>(body[0]);
  if (status != 'I' && status != 'T' && status != 'E') {
    return std::nullopt;
  }
  return status;
}

std::optional<std::int32_t> parse_authentication_code(bytes_view body) {
  if (body.size() < 4) {
    return std::nullopt;
  }

  const std::int32_t code = read_int32(body.data());
  const std::size_t fixed_size = fixed_authentication_size(code);
  if (fixed_size != 0 && body.size() != fixed_size) {
    return std::nullopt;
  }
  // AuthenticationSASL lists mechanism names, each NUL-terminated, then a final NUL.
  const bool ends_in_two_nuls = body.size() >= 7 && body.back() == 0 && body[body.size() - 2] == 0;
  if (code == auth_code::sasl && !ends_in_two_nuls) {
    return std::nullopt;
  }
  return code;
}

std::optional<parameter_status> parse_parameter_status(bytes_view body) {
  std::size_t offset = 0;
  const auto name = read_cstring(body, offset);
  if (!name) {
    return std::nullopt;
  }

  const auto value = read_cstring(body, offset);
  if (!value || offset != body.size()) {
    return std::nullopt;
  }
  return parameter_status{*name, *value};
}

}  // namespace pgf::protocol
