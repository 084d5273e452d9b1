// Tests for protocol/startup: first packets, their limits and every malformed form.
#include "protocol/startup.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "protocol/messages.hpp"

namespace pgf::protocol {
namespace {

using bytes = std::vector<std::uint8_t>;

void put_uint32(bytes& out, std::uint32_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 24));
  out.push_back(static_cast<std::uint8_t>(value >> 16));
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

// A first packet: length, `code`, then `payload` as given (NULs included).
bytes make_packet(std::uint32_t code, std::string_view payload = {}) {
  bytes out;
  put_uint32(out, static_cast<std::uint32_t>(8 + payload.size()));
  put_uint32(out, code);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

using namespace std::string_literals;

const std::string alice = "user\0alice\0"s;

struct parse_outcome {
  decode_status status;
  first_packet packet;
  std::string reason;
};

parse_outcome parse(const bytes& input) {
  parse_outcome out;
  out.status = parse_first_packet(input, out.packet, out.reason);
  return out;
}

void expect_malformed(const bytes& input, std::string_view reason_part) {
  const parse_outcome out = parse(input);
  EXPECT_EQ(out.status, decode_status::malformed);
  EXPECT_NE(out.reason.find(reason_part), std::string::npos) << "reason: " << out.reason;
}

TEST(StartupTest, FirstPacketLengthNeedsFourBytes) {
  const bytes packet = make_packet(protocol_3_0, alice + '\0');
  std::uint32_t length = 0;
  std::string reason;

  for (std::size_t n = 0; n < 4; ++n) {
    EXPECT_EQ(decode_first_packet_length(bytes_view(packet.data(), n), length, reason),
              decode_status::need_more);
  }
  ASSERT_EQ(decode_first_packet_length(bytes_view(packet.data(), 4), length, reason),
            decode_status::complete);
  EXPECT_EQ(length, packet.size());
}

TEST(StartupTest, RejectsFirstPacketLengthBelowEight) {
  bytes header;
  put_uint32(header, 7);
  std::uint32_t length = 0;
  std::string reason;

  EXPECT_EQ(decode_first_packet_length(header, length, reason), decode_status::malformed);
  EXPECT_NE(reason.find("7"), std::string::npos) << reason;
}

TEST(StartupTest, RejectsStartupPacketLengthOverLimit) {
  bytes header;
  put_uint32(header, 10001);
  std::uint32_t length = 0;
  std::string reason;

  EXPECT_EQ(decode_first_packet_length(header, length, reason), decode_status::malformed);
  EXPECT_NE(reason.find("10001"), std::string::npos) << reason;
}

TEST(StartupTest, RejectsHugeStartupPacketLength) {
  bytes header;
  put_uint32(header, 0xffffffffu);
  std::uint32_t length = 0;
  std::string reason;

  EXPECT_EQ(decode_first_packet_length(header, length, reason), decode_status::malformed);
  EXPECT_NE(reason.find("4294967295"), std::string::npos) << reason;
}

TEST(StartupTest, AcceptsStartupPacketAtLimit) {
  const std::string filler(max_startup_packet_length - 8 - alice.size() - 6, 'x');
  const bytes packet = make_packet(protocol_3_0, alice + "opt\0"s + filler + "\0\0"s);
  ASSERT_EQ(packet.size(), max_startup_packet_length);

  const parse_outcome out = parse(packet);

  EXPECT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.startup.find("opt")->size(), filler.size());
}

TEST(StartupTest, RejectsWholeStartupPacketOverLimit) {
  const std::string filler(max_startup_packet_length - 8 - alice.size() - 5, 'x');
  const bytes packet = make_packet(protocol_3_0, alice + "opt\0"s + filler + "\0\0"s);
  ASSERT_EQ(packet.size(), max_startup_packet_length + 1);

  expect_malformed(packet, "10001");
}

TEST(StartupTest, NeedsMoreUntilDeclaredLengthArrives) {
  const bytes packet = make_packet(protocol_3_0, alice + '\0');

  for (std::size_t n = 0; n < packet.size(); ++n) {
    first_packet out;
    std::string reason;
    EXPECT_EQ(parse_first_packet(bytes_view(packet.data(), n), out, reason),
              decode_status::need_more)
        << n << " bytes";
  }
}

TEST(StartupTest, RejectsBytesBeyondDeclaredLength) {
  bytes packet = make_packet(ssl_request_code);
  packet.push_back('Q');

  expect_malformed(packet, "followed by 1 more");
}

TEST(StartupTest, ParsesSslRequest) {
  const parse_outcome out = parse(make_packet(ssl_request_code));

  EXPECT_EQ(out.status, decode_status::complete);
  EXPECT_EQ(out.packet.kind, packet_kind::ssl_request);
}

TEST(StartupTest, ParsesGssencRequest) {
  const parse_outcome out = parse(make_packet(gssenc_request_code));

  EXPECT_EQ(out.status, decode_status::complete);
  EXPECT_EQ(out.packet.kind, packet_kind::gssenc_request);
}

TEST(StartupTest, RejectsSslRequestWithPayload) {
  expect_malformed(make_packet(ssl_request_code, "abcd"), "SSLRequest must be 8 bytes, got 12");
}

TEST(StartupTest, RejectsGssencRequestWithPayload) {
  expect_malformed(make_packet(gssenc_request_code, "ab"), "GSSENCRequest must be 8 bytes");
}

TEST(StartupTest, ParsesCancelRequest) {
  const parse_outcome out =
      parse(make_packet(cancel_request_code, "\x00\x00\x30\x39\xde\xad\xbe\xef"s));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.kind, packet_kind::cancel_request);
  EXPECT_EQ(out.packet.cancel.process_id, 12345);
  EXPECT_EQ(out.packet.cancel.secret_key, 0xdeadbeefu);
}

TEST(StartupTest, RejectsCancelRequestOfWrongSize) {
  expect_malformed(make_packet(cancel_request_code, "\0\0\0\1"s), "got 12");
  expect_malformed(make_packet(cancel_request_code, std::string(12, '\1')), "got 20");
}

TEST(StartupTest, ParsesStartupMessage) {
  const std::string payload = alice + "database\0app\0application_name\0psql\0\0"s;

  const parse_outcome out = parse(make_packet(protocol_3_0, payload));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  const startup_message& startup = out.packet.startup;
  EXPECT_EQ(out.packet.kind, packet_kind::startup);
  EXPECT_EQ(startup.major, 3);
  EXPECT_EQ(startup.minor, 0);
  ASSERT_EQ(startup.parameters.size(), 3u);
  EXPECT_EQ(startup.parameters[0].name, "user");
  EXPECT_EQ(startup.parameters[1].name, "database");
  EXPECT_EQ(startup.parameters[2].name, "application_name");
  EXPECT_EQ(startup.parameters[2].value, "psql");
  EXPECT_EQ(startup.user(), "alice");
  EXPECT_EQ(startup.database(), "app");
  EXPECT_EQ(startup.find("missing"), nullptr);
  EXPECT_TRUE(startup.protocol_options.empty());
}

TEST(StartupTest, KeepsEmptyParameterValue) {
  const parse_outcome out = parse(make_packet(protocol_3_0, alice + "options\0\0\0"s));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  ASSERT_NE(out.packet.startup.find("options"), nullptr);
  EXPECT_EQ(*out.packet.startup.find("options"), "");
}

TEST(StartupTest, LaterParameterOverridesEarlier) {
  const parse_outcome out =
      parse(make_packet(protocol_3_0, alice + "database\0a\0database\0b\0\0"s));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.startup.database(), "b");
}

TEST(StartupTest, DatabaseDefaultsToUser) {
  const parse_outcome out = parse(make_packet(protocol_3_0, alice + '\0'));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.startup.database(), "alice");
}

TEST(StartupTest, EmptyDatabaseDefaultsToUser) {
  const parse_outcome out = parse(make_packet(protocol_3_0, alice + "database\0\0\0"s));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.startup.database(), "alice");
}

TEST(StartupTest, AcceptsAnyMinorVersion) {
  for (std::uint16_t minor : {1, 2, 9999, 0xffff}) {
    const parse_outcome out = parse(make_packet(make_version(3, minor), alice + '\0'));

    ASSERT_EQ(out.status, decode_status::complete) << out.reason;
    EXPECT_EQ(out.packet.startup.minor, minor);
  }
}

TEST(StartupTest, RejectsProtocolTwo) {
  const parse_outcome out = parse(make_packet(make_version(2, 0), alice + '\0'));

  EXPECT_EQ(out.status, decode_status::malformed);
  EXPECT_EQ(out.reason, "unsupported frontend protocol 2.0: server supports 3.0");
}

TEST(StartupTest, RejectsProtocolFour) {
  const parse_outcome out = parse(make_packet(make_version(4, 1), alice + '\0'));

  EXPECT_EQ(out.status, decode_status::malformed);
  EXPECT_EQ(out.reason, "unsupported frontend protocol 4.1: server supports 3.0");
}

TEST(StartupTest, RejectsUnknownRequestCode) {
  expect_malformed(make_packet(make_version(1234, 5681)), "unsupported request code 1234.5681");
}

TEST(StartupTest, SeparatesProtocolOptions) {
  const std::string payload = alice + "_pq_.compression\0on\0_pq_.x\0\0application_name\0a\0\0"s;

  const parse_outcome out = parse(make_packet(make_version(3, 0), payload));

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  const startup_message& startup = out.packet.startup;
  EXPECT_EQ(startup.protocol_options, (std::vector<std::string>{"_pq_.compression", "_pq_.x"}));
  ASSERT_EQ(startup.parameters.size(), 2u);
  EXPECT_EQ(startup.find("_pq_.compression"), nullptr);
}

TEST(StartupTest, RejectsParameterWithoutValue) {
  expect_malformed(make_packet(protocol_3_0, alice + "application_name\0"s),
                   "startup parameter \"application_name\" has no value");
}

TEST(StartupTest, RejectsUnterminatedValue) {
  expect_malformed(make_packet(protocol_3_0, "user\0ali"s), "\"user\" has no value");
}

TEST(StartupTest, RejectsMissingFinalTerminator) {
  expect_malformed(make_packet(protocol_3_0, alice), "missing its final terminator");
}

TEST(StartupTest, RejectsUnterminatedName) {
  expect_malformed(make_packet(protocol_3_0, alice + "datab"), "missing its final terminator");
}

TEST(StartupTest, RejectsPacketWithoutParameters) {
  expect_malformed(make_packet(protocol_3_0), "missing its final terminator");
}

TEST(StartupTest, RejectsEmptyName) {
  expect_malformed(make_packet(protocol_3_0, alice + "\0database\0db\0\0"s),
                   "empty parameter name or bytes after its terminator");
}

TEST(StartupTest, RejectsBytesAfterTerminator) {
  expect_malformed(make_packet(protocol_3_0, alice + "\0xyz"s),
                   "empty parameter name or bytes after its terminator");
}

TEST(StartupTest, RejectsMissingUser) {
  expect_malformed(make_packet(protocol_3_0, "database\0db\0\0"s), "names no \"user\"");
  expect_malformed(make_packet(protocol_3_0, "\0"s), "names no \"user\"");
}

TEST(StartupTest, RejectsEmptyUser) {
  expect_malformed(make_packet(protocol_3_0, "user\0\0\0"s), "empty \"user\"");
}

TEST(StartupTest, ReasonShowsNameWithoutControlBytes) {
  const std::string name = "bad\nname\x01" + std::string(100, 'n');

  const parse_outcome out = parse(make_packet(protocol_3_0, name + '\0'));

  EXPECT_EQ(out.status, decode_status::malformed);
  EXPECT_EQ(out.reason.find('\n'), std::string::npos);
  EXPECT_EQ(out.reason.find('\x01'), std::string::npos);
  EXPECT_NE(out.reason.find("\"bad?name?nnn"), std::string::npos) << out.reason;
  EXPECT_LT(out.reason.size(), 120u);
}

TEST(StartupTest, NoNegotiationAtThreeZero) {
  startup_message startup;
  startup.minor = 0;

  const version_negotiation n = negotiate_version(startup);

  EXPECT_FALSE(n.send_negotiate);
  EXPECT_TRUE(n.unsupported_options.empty());
}

TEST(StartupTest, NegotiatesMinorAboveZero) {
  startup_message startup;
  startup.minor = 2;

  const version_negotiation n = negotiate_version(startup);

  EXPECT_TRUE(n.send_negotiate);
  EXPECT_EQ(n.newest_minor, 0);
  EXPECT_TRUE(n.unsupported_options.empty());
}

TEST(StartupTest, NegotiatesProtocolOptions) {
  startup_message startup;
  startup.protocol_options = {"_pq_.a", "_pq_.b"};

  const version_negotiation n = negotiate_version(startup);

  EXPECT_TRUE(n.send_negotiate);
  EXPECT_EQ(n.newest_minor, 0);
  EXPECT_EQ(n.unsupported_options, startup.protocol_options);
}

TEST(StartupTest, StartupMessageRoundTrips) {
  const std::vector<startup_parameter> params = {
      {"user", "bob"}, {"database", "shop"}, {"client_encoding", "UTF8"}};
  byte_buffer packet;
  append_startup_message(packet, params);

  const parse_outcome out = parse(packet);

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.startup.major, 3);
  EXPECT_EQ(out.packet.startup.minor, 0);
  ASSERT_EQ(out.packet.startup.parameters.size(), params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(out.packet.startup.parameters[i].name, params[i].name);
    EXPECT_EQ(out.packet.startup.parameters[i].value, params[i].value);
  }
}

TEST(StartupTest, CancelRequestRoundTrips) {
  const cancel_key key{-42, 0x80000001u};
  byte_buffer packet;
  append_cancel_request(packet, key);

  const parse_outcome out = parse(packet);

  ASSERT_EQ(out.status, decode_status::complete) << out.reason;
  EXPECT_EQ(out.packet.kind, packet_kind::cancel_request);
  EXPECT_EQ(out.packet.cancel, key);
}

// Random first packets are answered with a status, never a crash or an overread.
TEST(StartupTest, RandomPacketsNeverCrash) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255);
  int complete = 0;
  for (int round = 0; round < 20000; ++round) {
    bytes payload(std::uniform_int_distribution<std::size_t>(0, 40)(rng));
    for (auto& b : payload) {
      // Mostly letters and NULs, so that some packets parse.
      const int r = byte(rng);
      b = static_cast<std::uint8_t>(r < 64 ? 0 : r < 200 ? 'a' + r % 4 : r);
    }
    const std::string text(payload.begin(), payload.end());
    const std::uint32_t code = round % 3 == 0 ? static_cast<std::uint32_t>(rng()) : protocol_3_0;
    const parse_outcome out = parse(make_packet(code, round % 5 == 0 ? text : "user\0"s + text));

    if (out.status == decode_status::complete) {
      ++complete;
      if (out.packet.kind == packet_kind::startup) {
        EXPECT_FALSE(out.packet.startup.user().empty());
      }
    } else {
      EXPECT_EQ(out.status, decode_status::malformed);
      EXPECT_FALSE(out.reason.empty());
    }
  }
  EXPECT_GT(complete, 0);
}

}  // namespace
}  // namespace pgf::protocol
