// libFuzzer target for protocol/startup and the message views: arbitrary bytes as a first
// packet and as message bodies; aborts when a result breaks the codec's contract.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "protocol/messages.hpp"
#include "protocol/startup.hpp"

namespace {

namespace pp = pgf::protocol;

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "startup invariant violated: %s\n", what);
    std::abort();
  }
}

bool inside(std::string_view part, pp::bytes_view whole) {
  const auto* begin = reinterpret_cast<const char*>(whole.data());
  return part.empty() ||
         (part.data() >= begin && part.data() + part.size() <= begin + whole.size());
}

void check_length(pp::bytes_view input) {
  std::uint32_t length = 0;
  std::string reason;
  const pp::decode_status status = pp::decode_first_packet_length(input, length, reason);
  if (status == pp::decode_status::need_more) {
    check(input.size() < 4, "need_more with a whole length");
  } else if (status == pp::decode_status::malformed) {
    check(!reason.empty(), "malformed length without a reason");
  } else {
    check(length >= 8 && length <= pp::max_startup_packet_length, "length outside limits");
  }
}

// A parsed StartupMessage at 3.0 without protocol options, rebuilt, gives the same bytes.
void check_startup(const pp::startup_message& startup, pp::bytes_view input) {
  check(startup.major == 3, "accepted a major version other than 3");
  check(!startup.user().empty(), "accepted an empty user");
  for (const pp::startup_parameter& param : startup.parameters) {
    check(!param.name.empty() && !param.name.starts_with("_pq_."), "bad parameter name");
  }
  for (const std::string& option : startup.protocol_options) {
    check(option.starts_with("_pq_."), "protocol option without its prefix");
  }
  if (startup.minor == 0 && startup.protocol_options.empty()) {
    pp::byte_buffer rebuilt;
    pp::append_startup_message(rebuilt, startup.parameters);
    check(pp::bytes_view(rebuilt).size() == input.size() &&
              std::equal(rebuilt.begin(), rebuilt.end(), input.begin()),
          "rebuilt StartupMessage differs");
  }
  const pp::version_negotiation n = pp::negotiate_version(startup);
  check(n.send_negotiate == (startup.minor > 0 || !startup.protocol_options.empty()),
        "negotiation decision");
}

void check_first_packet(pp::bytes_view input) {
  pp::first_packet packet;
  std::string reason;
  const pp::decode_status status = pp::parse_first_packet(input, packet, reason);
  if (status == pp::decode_status::malformed) {
    check(!reason.empty(), "malformed packet without a reason");
    return;
  }
  if (status == pp::decode_status::need_more) {
    return;
  }

  check(input.size() >= 8 && input.size() <= pp::max_startup_packet_length, "size outside limits");
  switch (packet.kind) {
    case pp::packet_kind::startup:
      check_startup(packet.startup, input);
      break;
    case pp::packet_kind::ssl_request:
    case pp::packet_kind::gssenc_request:
      check(input.size() == 8, "8-byte request of another size");
      break;
    case pp::packet_kind::cancel_request: {
      pp::byte_buffer rebuilt;
      pp::append_cancel_request(rebuilt, packet.cancel);
      check(std::equal(rebuilt.begin(), rebuilt.end(), input.begin(), input.end()),
            "rebuilt CancelRequest differs");
      break;
    }
  }
}

void check_views(pp::bytes_view body) {
  pp::error_fields fields;
  if (pp::parse_error_fields(body, fields)) {
    check(inside(fields.severity, body) && inside(fields.sqlstate, body) &&
              inside(fields.message, body) && inside(fields.detail, body) &&
              inside(fields.hint, body),
          "error field outside the body");
  }
  if (const auto status = pp::parse_parameter_status(body)) {
    check(inside(status->name, body) && inside(status->value, body), "parameter outside body");
    check(status->name.size() + status->value.size() + 2 == body.size(), "parameter size");
  }
  if (const auto ready = pp::parse_ready_for_query(body)) {
    check(body.size() == 1, "ReadyForQuery size");
  }
  if (pp::parse_backend_key_data(body)) {
    check(body.size() == 8, "BackendKeyData size");
  }
  if (pp::parse_authentication_code(body)) {
    check(body.size() >= 4, "Authentication size");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const pp::bytes_view input(data, size);
  check_length(input);
  check_first_packet(input);
  check_views(input);
  return 0;
}
