// Tests for protocol/messages: builders byte for byte, views on good and bad bodies.
#include "protocol/messages.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pgf::protocol {
namespace {

using namespace std::string_literals;

// Bytes from a string literal that may hold NULs.
byte_buffer to_bytes(const std::string& text) {
  return byte_buffer(text.begin(), text.end());
}

bytes_view body_of(const byte_buffer& message) {
  return bytes_view(message).subspan(header_size);
}

TEST(MessagesTest, ErrorResponseMatchesHandBuiltBytes) {
  byte_buffer out;
  append_error_response(out, {"FATAL", "08P01", "bad startup", "length 3", ""});

  // 'E', length 49, then S, V, C, M and D fields and the terminating NUL.
  const byte_buffer expected = {'E', 0,   0,   0,   49,  'S', 'F', 'A', 'T', 'A', 'L', 0,   'V',
                                'F', 'A', 'T', 'A', 'L', 0,   'C', '0', '8', 'P', '0', '1', 0,
                                'M', 'b', 'a', 'd', ' ', 's', 't', 'a', 'r', 't', 'u', 'p', 0,
                                'D', 'l', 'e', 'n', 'g', 't', 'h', ' ', '3', 0,   0};
  EXPECT_EQ(out, expected);
}

TEST(MessagesTest, ErrorResponseCarriesHint) {
  byte_buffer out;
  append_error_response(out, {"ERROR", "57P03", "m", "", "h"});

  const byte_buffer expected = to_bytes("E\0\0\0\x20SERROR\0VERROR\0C57P03\0Mm\0Hh\0\0"s);
  EXPECT_EQ(out, expected);
}

TEST(MessagesTest, NoticeResponseUsesTypeN) {
  byte_buffer notice;
  byte_buffer error;
  const error_fields fields{"WARNING", "01000", "careful", "", ""};

  append_notice_response(notice, fields);
  append_error_response(error, fields);

  ASSERT_EQ(notice.size(), error.size());
  EXPECT_EQ(notice[0], 'N');
  EXPECT_TRUE(std::equal(notice.begin() + 1, notice.end(), error.begin() + 1));
}

TEST(MessagesTest, ReadyForQueryBytes) {
  byte_buffer out;
  append_ready_for_query(out, 'T');

  EXPECT_EQ(out, (byte_buffer{'Z', 0, 0, 0, 5, 'T'}));
}

TEST(MessagesTest, BackendKeyDataBytes) {
  byte_buffer out;
  append_backend_key_data(out, {0x01020304, 0xdeadbeefu});

  EXPECT_EQ(out, (byte_buffer{'K', 0, 0, 0, 12, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef}));
}

TEST(MessagesTest, ParameterStatusBytes) {
  byte_buffer out;
  append_parameter_status(out, "TimeZone", "UTC");

  EXPECT_EQ(out, to_bytes("S\0\0\0\x11TimeZone\0UTC\0"s));
}

TEST(MessagesTest, AuthenticationOkBytes) {
  byte_buffer out;
  append_authentication(out, auth_code::ok);

  EXPECT_EQ(out, (byte_buffer{'R', 0, 0, 0, 8, 0, 0, 0, 0}));
}

TEST(MessagesTest, AuthenticationMd5Bytes) {
  const byte_buffer salt = {0xa1, 0xb2, 0xc3, 0xd4};
  byte_buffer out;
  append_authentication(out, auth_code::md5_password, salt);

  EXPECT_EQ(out, (byte_buffer{'R', 0, 0, 0, 12, 0, 0, 0, 5, 0xa1, 0xb2, 0xc3, 0xd4}));
}

// PostgreSQL writes the full version number, PG_PROTOCOL(3, minor), into the first field.
TEST(MessagesTest, NegotiateProtocolVersionBytes) {
  byte_buffer out;
  append_negotiate_protocol_version(out, 0, {"_pq_.a", "_pq_.bc"});

  EXPECT_EQ(out, to_bytes("v\0\0\0\x1b\0\x03\0\0\0\0\0\x02_pq_.a\0_pq_.bc\0"s));
}

TEST(MessagesTest, NegotiateProtocolVersionWithoutOptions) {
  byte_buffer out;
  append_negotiate_protocol_version(out, 2, {});

  EXPECT_EQ(out, (byte_buffer{'v', 0, 0, 0, 12, 0, 3, 0, 2, 0, 0, 0, 0}));
}

TEST(MessagesTest, StartupMessageBytes) {
  byte_buffer out;
  append_startup_message(out, {{"user", "a"}});

  EXPECT_EQ(out, (byte_buffer{0, 0, 0, 16, 0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0}));
}

TEST(MessagesTest, CancelRequestBytes) {
  byte_buffer out;
  append_cancel_request(out, {7, 0xfffffffeu});

  EXPECT_EQ(out,
            (byte_buffer{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe}));
}

TEST(MessagesTest, TerminateBytes) {
  byte_buffer out;
  append_terminate(out);

  EXPECT_EQ(out, (byte_buffer{'X', 0, 0, 0, 4}));
}

TEST(MessagesTest, ArbitraryMessageBytes) {
  const byte_buffer body = to_bytes("secret\0"s);
  byte_buffer out;
  append_message(out, 'p', body);

  EXPECT_EQ(out, to_bytes("p\0\0\0\x0bsecret\0"s));
}

TEST(MessagesTest, BuildersAppendAfterExistingBytes) {
  byte_buffer out = {1, 2, 3};
  append_ready_for_query(out, 'I');
  append_terminate(out);

  EXPECT_EQ(out, (byte_buffer{1, 2, 3, 'Z', 0, 0, 0, 5, 'I', 'X', 0, 0, 0, 4}));
}

TEST(MessagesTest, FieldEndsAtEmbeddedNul) {
  byte_buffer out;
  append_parameter_status(out, "a\0b"s, "c");

  EXPECT_EQ(out, to_bytes("S\0\0\0\x08\x61\0c\0"s));
}

TEST(MessagesTest, ErrorFieldsRoundTrip) {
  byte_buffer out;
  append_error_response(out, {"FATAL", "28P01", "password authentication failed", "d", "h"});
  error_fields fields;

  ASSERT_TRUE(parse_error_fields(body_of(out), fields));

  EXPECT_EQ(fields.severity, "FATAL");
  EXPECT_EQ(fields.sqlstate, "28P01");
  EXPECT_EQ(fields.message, "password authentication failed");
  EXPECT_EQ(fields.detail, "d");
  EXPECT_EQ(fields.hint, "h");
}

TEST(MessagesTest, ErrorFieldsPreferUntranslatedSeverity) {
  const byte_buffer body = to_bytes("SFATAL-LOCALISED\0VFATAL\0C3D000\0Mno db\0Fpostinit.c\0\0"s);
  error_fields fields;

  ASSERT_TRUE(parse_error_fields(body, fields));

  EXPECT_EQ(fields.severity, "FATAL");
  EXPECT_EQ(fields.sqlstate, "3D000");
  EXPECT_EQ(fields.message, "no db");
  EXPECT_TRUE(fields.detail.empty());
}

TEST(MessagesTest, ErrorFieldsFallBackToLocalisedSeverity) {
  const byte_buffer body = to_bytes("SERROR\0C42P01\0Mx\0\0"s);
  error_fields fields;

  ASSERT_TRUE(parse_error_fields(body, fields));

  EXPECT_EQ(fields.severity, "ERROR");
}

TEST(MessagesTest, ErrorFieldsAcceptLoneTerminator) {
  error_fields fields;

  EXPECT_TRUE(parse_error_fields(to_bytes("\0"s), fields));
  EXPECT_TRUE(fields.message.empty());
}

TEST(MessagesTest, ErrorFieldsRejectMalformedBodies) {
  const std::vector<std::string> bodies = {
      ""s,                 // no terminator at all
      "SERROR\0"s,         // the last field's NUL is not the terminator
      "SERROR\0Mmsg"s,     // unterminated value
      "SERROR\0\0extra"s,  // bytes after the terminator
      "S"s,                // a code without a value
  };
  for (const std::string& body : bodies) {
    error_fields fields;
    EXPECT_FALSE(parse_error_fields(to_bytes(body), fields)) << testing::PrintToString(body);
    EXPECT_TRUE(fields.severity.empty());
  }
}

TEST(MessagesTest, BackendKeyDataRoundTrips) {
  byte_buffer out;
  const cancel_key key{-5, 0x89abcdefu};
  append_backend_key_data(out, key);

  EXPECT_EQ(parse_backend_key_data(body_of(out)), key);
}

TEST(MessagesTest, BackendKeyDataNeedsExactlyEightBytes) {
  const byte_buffer body(9, 1);

  EXPECT_FALSE(parse_backend_key_data(bytes_view(body.data(), 7)));
  EXPECT_FALSE(parse_backend_key_data(body));
}

TEST(MessagesTest, ReadyForQueryRoundTrips) {
  for (char status : {'I', 'T', 'E'}) {
    byte_buffer out;
    append_ready_for_query(out, status);

    EXPECT_EQ(parse_ready_for_query(body_of(out)), status);
  }
}

TEST(MessagesTest, ReadyForQueryRejectsBadBodies) {
  EXPECT_FALSE(parse_ready_for_query(to_bytes("X")));
  EXPECT_FALSE(parse_ready_for_query(to_bytes("")));
  EXPECT_FALSE(parse_ready_for_query(to_bytes("II")));
}

TEST(MessagesTest, AuthenticationCodeRoundTrips) {
  byte_buffer out;
  append_authentication(out, auth_code::sasl, to_bytes("SCRAM-SHA-256\0\0"s));

  EXPECT_EQ(parse_authentication_code(body_of(out)), auth_code::sasl);
}

TEST(MessagesTest, AuthenticationCodeChecksLengthPerCode) {
  EXPECT_EQ(parse_authentication_code(to_bytes("\0\0\0\0"s)), auth_code::ok);
  EXPECT_FALSE(parse_authentication_code(to_bytes("\0\0\0\0x"s)));
  EXPECT_EQ(parse_authentication_code(to_bytes("\0\0\0\x05salt"s)), auth_code::md5_password);
  EXPECT_FALSE(parse_authentication_code(to_bytes("\0\0\0\x05sal"s)));
  EXPECT_FALSE(parse_authentication_code(to_bytes("\0\0\0\x0aSCRAM-SHA-256\0"s)));
  EXPECT_FALSE(parse_authentication_code(to_bytes("\0\0\0\x0a\0"s)));
  EXPECT_EQ(parse_authentication_code(to_bytes("\0\0\0\x0br=abc,s=xyz,i=4096"s)),
            auth_code::sasl_continue);
  EXPECT_FALSE(parse_authentication_code(to_bytes("\0\0\0"s)));
}

TEST(MessagesTest, ParameterStatusRoundTrips) {
  byte_buffer out;
  append_parameter_status(out, "server_version", "15.6");

  const auto status = parse_parameter_status(body_of(out));

  ASSERT_TRUE(status);
  EXPECT_EQ(status->name, "server_version");
  EXPECT_EQ(status->value, "15.6");
}

TEST(MessagesTest, ParameterStatusRejectsBadBodies) {
  EXPECT_FALSE(parse_parameter_status(to_bytes("")));
  EXPECT_FALSE(parse_parameter_status(to_bytes("name\0"s)));
  EXPECT_FALSE(parse_parameter_status(to_bytes("name\0value"s)));
  EXPECT_FALSE(parse_parameter_status(to_bytes("name\0value\0x"s)));
}

TEST(MessagesTest, Int32RoundTripsBigEndian) {
  std::uint8_t buffer[4];
  write_int32(buffer, -2);

  EXPECT_EQ(buffer[0], 0xff);
  EXPECT_EQ(buffer[3], 0xfe);
  EXPECT_EQ(read_int32(buffer), -2);
}

TEST(MessagesTest, ReadCstringAdvancesPastNul) {
  const byte_buffer body = to_bytes("ab\0\0c"s);
  std::size_t offset = 0;

  EXPECT_EQ(read_cstring(body, offset), "ab");
  EXPECT_EQ(offset, 3u);
  EXPECT_EQ(read_cstring(body, offset), "");
  EXPECT_EQ(offset, 4u);
  EXPECT_FALSE(read_cstring(body, offset));
  EXPECT_EQ(offset, 4u);
  offset = 5;
  EXPECT_FALSE(read_cstring(body, offset));
}

// What the builders write, the frame stream delimits and the views read back.
TEST(MessagesTest, BuiltStreamFramesAndParses) {
  byte_buffer stream_bytes;
  append_authentication(stream_bytes, auth_code::ok);
  append_parameter_status(stream_bytes, "client_encoding", "UTF8");
  append_backend_key_data(stream_bytes, {99, 1234});
  append_notice_response(stream_bytes, {"NOTICE", "00000", "hello", "", ""});
  append_ready_for_query(stream_bytes, 'I');
  frame_stream stream({'R', 'S', 'K', 'N', 'Z'}, 1024);

  std::vector<char> types;
  bytes_view rest(stream_bytes);
  while (!rest.empty()) {
    const frame f = stream.next(rest);
    ASSERT_EQ(f.kind, frame_kind::whole);
    const bytes_view body = rest.subspan(header_size, f.size - header_size);
    types.push_back(f.type);
    if (f.type == 'R') {
      EXPECT_EQ(parse_authentication_code(body), auth_code::ok);
    } else if (f.type == 'S') {
      EXPECT_EQ(parse_parameter_status(body)->value, "UTF8");
    } else if (f.type == 'K') {
      EXPECT_EQ(parse_backend_key_data(body), (cancel_key{99, 1234}));
    } else if (f.type == 'N') {
      error_fields fields;
      EXPECT_TRUE(parse_error_fields(body, fields));
      EXPECT_EQ(fields.message, "hello");
    } else if (f.type == 'Z') {
      EXPECT_EQ(parse_ready_for_query(body), 'I');
    }
    rest = rest.subspan(f.size);
  }

  EXPECT_EQ(types, (std::vector<char>{'R', 'S', 'K', 'N', 'Z'}));
}

}  // namespace
}  // namespace pgf::protocol
