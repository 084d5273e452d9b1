// Parses the untyped first packets (StartupMessage, SSLRequest, GSSENCRequest,
// CancelRequest) and decides what the proxy answers about the protocol version.
#include "protocol/startup.hpp"

#include "protocol/messages.hpp"

namespace pgf::protocol {

namespace {

constexpr std::size_t first_packet_header_size = 8;
constexpr std::size_t cancel_request_size = 16;
constexpr std::size_t longest_quoted_name = 64;
constexpr std::string_view protocol_option_prefix = "_pq_.";

// A client-chosen name as it may appear in a reason: reasons reach logs and the client's
// ErrorResponse, so control and non-ASCII bytes are replaced and long names cut.
std::string quoted(std::string_view name) {
  std::string out = "\"";
  for (std::size_t i = 0; i < name.size() && i < longest_quoted_name; ++i) {
    const char c = name[i];
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (name.size() > longest_quoted_name) {
    out += "...";
  }
  return out + "\"";
}

std::string version_text(std::uint32_t code) {
  return std::to_string(code >> 16) + "." + std::to_string(code & 0xffff);
}

decode_status fail(std::string& reason, std::string text) {
  reason = std::move(text);
  return decode_status::malformed;
}

decode_status parse_fixed_request(bytes_view input, packet_kind kind, std::string_view name,
                                  first_packet& out, std::string& reason) {
  if (input.size() != first_packet_header_size) {
    return fail(reason,
                std::string(name) + " must be 8 bytes, got " + std::to_string(input.size()));
  }
  out.kind = kind;
  return decode_status::complete;
}

decode_status parse_cancel_request(bytes_view input, first_packet& out, std::string& reason) {
  if (input.size() != cancel_request_size) {
    return fail(reason, "CancelRequest must be 16 bytes at protocol 3.0, got " +
                            std::to_string(input.size()));
  }
  out.kind = packet_kind::cancel_request;
  out.cancel.process_id = read_int32(input.data() + 8);
  out.cancel.secret_key = static_cast<std::uint32_t>(read_int32(input.data() + 12));
  return decode_status::complete;
}

// Reads the name/value pairs after the version; the list ends with a lone NUL, which
// must be the packet's last byte.
decode_status parse_parameters(bytes_view input, startup_message& msg, std::string& reason) {
  std::size_t offset = first_packet_header_size;
  for (;;) {
    const auto name = read_cstring(input, offset);
    if (!name) {
      return fail(reason, "startup packet is missing its final terminator");
    }
    if (name->empty()) {
      break;
    }

    const auto value = read_cstring(input, offset);
    if (!value) {
      return fail(reason, "startup parameter " + quoted(*name) + " has no value");
    }

    if (name->starts_with(protocol_option_prefix)) {
      msg.protocol_options.emplace_back(*name);
    } else {
      msg.parameters.push_back({std::string(*name), std::string(*value)});
    }
  }

  if (offset != input.size()) {
    return fail(reason, "startup packet has an empty parameter name or bytes after its terminator");
  }
  return decode_status::complete;
}

decode_status parse_startup_message(bytes_view input, std::uint32_t code, startup_message& msg,
                                    std::string& reason) {
  const auto major = static_cast<std::uint16_t>(code >> 16);
  if (major == (cancel_request_code >> 16)) {
    return fail(reason, "unsupported request code " + version_text(code));
  }
  if (major != 3) {
    return fail(reason,
                "unsupported frontend protocol " + version_text(code) + ": server supports 3.0");
  }
  msg.major = major;
  msg.minor = static_cast<std::uint16_t>(code & 0xffff);

  const decode_status status = parse_parameters(input, msg, reason);
  if (status != decode_status::complete) {
    return status;
  }

  const std::string* user = msg.find("user");
  if (user == nullptr) {
    return fail(reason, "startup packet names no \"user\"");
  }
  if (user->empty()) {
    return fail(reason, "startup packet has an empty \"user\"");
  }
  return decode_status::complete;
}

}  // namespace

const std::string* startup_message::find(std::string_view name) const {
  // The last occurrence wins, as when PostgreSQL applies repeated startup parameters.
  for (auto it = parameters.rbegin(); it != parameters.rend(); ++it) {
    if (it->name == name) {
      return &it->value;
    }
  }
  return nullptr;
}

const std::string& startup_message::user() const {
  static const std::string no_user;
  const std::string* value = find("user");
  return value != nullptr ? *value : no_user;
}

std::string_view startup_message::database() const {
  const std::string* value = find("database");
  if (value == nullptr || value->empty()) {
    return user();
  }
  return *value;
}

decode_status decode_first_packet_length(bytes_view input, std::uint32_t& length,
                                         std::string& reason) {
  if (input.size() < 4) {
    return decode_status::need_more;
  }

  length = static_cast<std::uint32_t>(read_int32(input.data()));
  if (length < first_packet_header_size) {
    return fail(reason, "invalid startup packet length " + std::to_string(length) +
                            ": below the minimum of 8");
  }
  if (length > max_startup_packet_length) {
    return fail(reason, "invalid startup packet length " + std::to_string(length) +
                            ": over the limit of " + std::to_string(max_startup_packet_length));
  }
  return decode_status::complete;
}

decode_status parse_first_packet(bytes_view input, first_packet& out, std::string& reason) {
  out = first_packet{};

  std::uint32_t length = 0;
  const decode_status status = decode_first_packet_length(input, length, reason);
  if (status != decode_status::complete) {
    return status;
  }
  if (input.size() < length) {
    return decode_status::need_more;
  }
  if (input.size() > length) {
    return fail(reason, "startup packet of " + std::to_string(length) + " bytes is followed by " +
                            std::to_string(input.size() - length) + " more");
  }

  const auto code = static_cast<std::uint32_t>(read_int32(input.data() + 4));
  switch (code) {
    case ssl_request_code:
      return parse_fixed_request(input, packet_kind::ssl_request, "SSLRequest", out, reason);
    case gssenc_request_code:
      return parse_fixed_request(input, packet_kind::gssenc_request, "GSSENCRequest", out, reason);
    case cancel_request_code:
      return parse_cancel_request(input, out, reason);
    default:
      out.kind = packet_kind::startup;
      return parse_startup_message(input, code, out.startup, reason);
  }
}

version_negotiation negotiate_version(const startup_message& startup) {
  version_negotiation result;
  result.newest_minor = 0;
  result.unsupported_options = startup.protocol_options;
  result.send_negotiate = startup.minor > 0 || !startup.protocol_options.empty();
  return result;
}

}  // namespace pgf::protocol
