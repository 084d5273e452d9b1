// Tests for protocol/frame_stream: boundaries under every read pattern a socket can give.
#include "protocol/frame_stream.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace pgf::protocol {
namespace {

using bytes = std::vector<std::uint8_t>;

// A typed message whose body is `body_size` bytes counting up from `seed`.
bytes make_message(char type, std::size_t body_size, std::uint8_t seed = 0) {
  const std::size_t length = body_size + 4;
  bytes out{static_cast<std::uint8_t>(type), static_cast<std::uint8_t>(length >> 24),
            static_cast<std::uint8_t>(length >> 16), static_cast<std::uint8_t>(length >> 8),
            static_cast<std::uint8_t>(length)};
  for (std::size_t i = 0; i < body_size; ++i) {
    out.push_back(static_cast<std::uint8_t>(seed + i));
  }
  return out;
}

bytes make_header(char type, std::uint32_t length) {
  return {static_cast<std::uint8_t>(type), static_cast<std::uint8_t>(length >> 24),
          static_cast<std::uint8_t>(length >> 16), static_cast<std::uint8_t>(length >> 8),
          static_cast<std::uint8_t>(length)};
}

bytes concat(const std::vector<bytes>& parts) {
  bytes out;
  for (const bytes& part : parts) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

struct relayed_message {
  char type = 0;
  bytes data;
  bool was_whole = false;
};

// Plays the relay: reads from `source` into a buffer of `capacity` bytes in reads whose
// sizes `next_read` chooses, and reassembles what the stream reports. Any broken
// invariant is a test failure.
std::vector<relayed_message> relay(frame_stream& stream, const bytes& source, std::size_t capacity,
                                   const std::function<std::size_t()>& next_read) {
  std::vector<relayed_message> out;
  bytes pending;
  relayed_message current;
  std::size_t read_at = 0;
  while (read_at < source.size()) {
    const std::size_t room = capacity - pending.size();
    EXPECT_GT(room, 0u) << "the stream asked to hold more than the buffer holds";
    if (room == 0) {
      return out;
    }
    const std::size_t n = std::min({next_read(), room, source.size() - read_at});
    pending.insert(pending.end(), source.begin() + read_at, source.begin() + read_at + n);
    read_at += n;

    for (;;) {
      const frame f = stream.next(pending);
      if (f.kind == frame_kind::need_more) {
        break;
      }
      EXPECT_NE(f.kind, frame_kind::malformed) << f.reason;
      if (f.kind == frame_kind::malformed) {
        return out;
      }
      EXPECT_GT(f.size, 0u);
      EXPECT_LE(f.size, pending.size());
      if (f.kind == frame_kind::whole) {
        EXPECT_EQ(f.size, f.message_size);
        out.push_back({f.type, bytes(pending.begin(), pending.begin() + f.size), true});
      } else {
        EXPECT_EQ(f.starts_message, current.data.empty());
        current.type = f.type;
        current.data.insert(current.data.end(), pending.begin(), pending.begin() + f.size);
        EXPECT_LE(current.data.size(), f.message_size);
        if (f.ends_message) {
          EXPECT_EQ(current.data.size(), f.message_size);
          out.push_back(std::move(current));
          current = relayed_message{};
        }
      }
      pending.erase(pending.begin(), pending.begin() + f.size);
    }
  }
  EXPECT_TRUE(pending.empty());
  EXPECT_FALSE(stream.in_message());
  return out;
}

std::function<std::size_t()> reads_of(std::size_t n) {
  return [n] { return n; };
}

void expect_same_messages(const std::vector<relayed_message>& got,
                          const std::vector<bytes>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].type, static_cast<char>(expected[i][0])) << "message " << i;
    EXPECT_EQ(got[i].data, expected[i]) << "message " << i;
  }
}

// A stream like a backend's answer to a query: inspected and relayed types, empty and
// longer bodies.
std::vector<bytes> sample_messages() {
  return {make_message('1', 0),     make_message('T', 40, 1), make_message('D', 120, 2),
          make_message('D', 1, 3),  make_message('C', 13, 4), make_message('E', 70, 5),
          make_message('Z', 1, 'I')};
}

const type_set inspected{'Z', 'E', 'C'};

TEST(FrameStreamTest, NeedsMoreOnEmptyBuffer) {
  frame_stream stream(inspected, 1024);

  const frame f = stream.next({});

  EXPECT_EQ(f.kind, frame_kind::need_more);
  EXPECT_EQ(f.size, 0u);
  EXPECT_FALSE(stream.in_message());
}

TEST(FrameStreamTest, WaitsForFullHeader) {
  frame_stream stream(inspected, 1024);
  const bytes message = make_message('D', 10);

  for (std::size_t n = 1; n < header_size; ++n) {
    const frame f = stream.next(bytes_view(message.data(), n));
    EXPECT_EQ(f.kind, frame_kind::need_more) << n << " bytes";
    EXPECT_EQ(f.size, 0u);
  }
  EXPECT_FALSE(stream.in_message());
}

TEST(FrameStreamTest, ReportsCompleteMessageWhole) {
  frame_stream stream(inspected, 1024);
  const bytes message = make_message('Z', 1, 'I');

  const frame f = stream.next(message);

  EXPECT_EQ(f.kind, frame_kind::whole);
  EXPECT_EQ(f.type, 'Z');
  EXPECT_EQ(f.size, 6u);
  EXPECT_EQ(f.message_size, 6u);
}

TEST(FrameStreamTest, ReportsCompleteUninspectedMessageWhole) {
  frame_stream stream(inspected, 16);
  const bytes message = make_message('D', 100);

  const frame f = stream.next(message);

  EXPECT_EQ(f.kind, frame_kind::whole);
  EXPECT_EQ(f.type, 'D');
  EXPECT_EQ(f.size, message.size());
  EXPECT_FALSE(stream.in_message());
}

TEST(FrameStreamTest, AcceptsEmptyBody) {
  frame_stream stream(inspected, 1024);
  const bytes sync = make_header('S', 4);

  const frame f = stream.next(sync);

  EXPECT_EQ(f.kind, frame_kind::whole);
  EXPECT_EQ(f.size, 5u);
}

TEST(FrameStreamTest, DecodesTwoMessagesFromOneRead) {
  frame_stream stream(inspected, 1024);
  const bytes first = make_message('C', 13);
  const bytes second = make_message('Z', 1, 'T');
  const bytes input = concat({first, second});

  const frame a = stream.next(input);
  const frame b = stream.next(bytes_view(input).subspan(a.size));

  EXPECT_EQ(a.kind, frame_kind::whole);
  EXPECT_EQ(a.type, 'C');
  EXPECT_EQ(a.size, first.size());
  EXPECT_EQ(b.kind, frame_kind::whole);
  EXPECT_EQ(b.type, 'Z');
  EXPECT_EQ(b.size, second.size());
  EXPECT_EQ(a.size + b.size, input.size());
}

TEST(FrameStreamTest, RejectsHeaderLengthThree) {
  frame_stream stream(inspected, 1024);
  const bytes header = make_header('D', 3);

  const frame f = stream.next(header);

  EXPECT_EQ(f.kind, frame_kind::malformed);
  EXPECT_EQ(f.size, 0u);
  EXPECT_FALSE(f.reason.empty());
}

TEST(FrameStreamTest, RejectsHeaderLengthZero) {
  frame_stream stream(inspected, 1024);
  const bytes header = make_header('D', 0);

  EXPECT_EQ(stream.next(header).kind, frame_kind::malformed);
}

TEST(FrameStreamTest, RejectsLengthOverLimit) {
  frame_stream stream(inspected, 1024, 100);
  const bytes header = make_header('D', 101);

  const frame f = stream.next(header);

  EXPECT_EQ(f.kind, frame_kind::malformed);
  EXPECT_NE(f.reason.find("max_message_size"), std::string_view::npos);
}

TEST(FrameStreamTest, AcceptsLengthAtLimit) {
  frame_stream stream(inspected, 1024, 100);
  const bytes header = make_header('D', 100);

  const frame f = stream.next(header);

  EXPECT_EQ(f.kind, frame_kind::piece);
  EXPECT_EQ(f.message_size, 101u);
}

TEST(FrameStreamTest, RejectsLengthOverDefaultLimit) {
  frame_stream stream(inspected, 1024);
  const bytes header = make_header('D', default_max_message_size + 1);

  EXPECT_EQ(stream.next(header).kind, frame_kind::malformed);
}

TEST(FrameStreamTest, RejectsLargestDeclaredLength) {
  frame_stream stream(inspected, 1024);
  const bytes header = make_header('D', 0xffffffffu);

  EXPECT_EQ(stream.next(header).kind, frame_kind::malformed);
}

TEST(FrameStreamTest, HoldsInspectedMessageUntilComplete) {
  frame_stream stream(inspected, 1024);
  const bytes message = make_message('E', 50);

  for (std::size_t n = header_size; n < message.size(); ++n) {
    const frame f = stream.next(bytes_view(message.data(), n));
    ASSERT_EQ(f.kind, frame_kind::need_more) << n << " bytes";
    EXPECT_EQ(f.type, 'E');
    EXPECT_EQ(f.message_size, message.size());
    EXPECT_FALSE(stream.in_message());
  }
  const frame f = stream.next(message);

  EXPECT_EQ(f.kind, frame_kind::whole);
  EXPECT_EQ(f.size, message.size());
}

TEST(FrameStreamTest, HoldsInspectedMessageExactlyAtHoldLimit) {
  const bytes message = make_message('E', 59);
  frame_stream stream(inspected, message.size());

  const frame f = stream.next(bytes_view(message.data(), 20));

  EXPECT_EQ(f.kind, frame_kind::need_more);
}

TEST(FrameStreamTest, StreamsUninspectedMessageAsItArrives) {
  frame_stream stream(inspected, 1024);
  const bytes message = make_message('D', 50);

  const frame f = stream.next(bytes_view(message.data(), 20));

  EXPECT_EQ(f.kind, frame_kind::piece);
  EXPECT_EQ(f.type, 'D');
  EXPECT_EQ(f.size, 20u);
  EXPECT_TRUE(f.starts_message);
  EXPECT_FALSE(f.ends_message);
  EXPECT_EQ(f.message_size, message.size());
  EXPECT_TRUE(stream.in_message());
  EXPECT_EQ(stream.current_type(), 'D');
}

TEST(FrameStreamTest, StreamsInspectedMessageLargerThanHoldLimit) {
  frame_stream stream(inspected, 64);
  const bytes message = make_message('E', 200, 9);

  const frame first = stream.next(bytes_view(message.data(), 64));
  const frame rest = stream.next(bytes_view(message).subspan(64));

  EXPECT_EQ(first.kind, frame_kind::piece);
  EXPECT_TRUE(first.starts_message);
  EXPECT_FALSE(first.ends_message);
  EXPECT_EQ(first.size, 64u);
  EXPECT_EQ(first.message_size, message.size());
  EXPECT_EQ(rest.kind, frame_kind::piece);
  EXPECT_EQ(rest.type, 'E');
  EXPECT_FALSE(rest.starts_message);
  EXPECT_TRUE(rest.ends_message);
  EXPECT_EQ(rest.size, message.size() - 64);
  EXPECT_EQ(rest.message_size, message.size());
  EXPECT_FALSE(stream.in_message());
}

TEST(FrameStreamTest, PieceStopsAtMessageEnd) {
  frame_stream stream(inspected, 1024);
  const bytes big = make_message('D', 30);
  const bytes next = make_message('Z', 1, 'I');
  const bytes input = concat({big, next});

  const frame first = stream.next(bytes_view(input.data(), 10));
  const bytes_view after = bytes_view(input).subspan(first.size);
  const frame second = stream.next(after);
  const frame third = stream.next(after.subspan(second.size));

  EXPECT_EQ(second.kind, frame_kind::piece);
  EXPECT_EQ(second.size, big.size() - 10);
  EXPECT_TRUE(second.ends_message);
  EXPECT_EQ(third.kind, frame_kind::whole);
  EXPECT_EQ(third.type, 'Z');
  EXPECT_EQ(third.size, next.size());
}

TEST(FrameStreamTest, NeedsMoreOnEmptyInputMidMessage) {
  frame_stream stream(inspected, 1024);
  const bytes message = make_message('D', 30);
  stream.next(bytes_view(message.data(), 10));

  const frame f = stream.next({});

  EXPECT_EQ(f.kind, frame_kind::need_more);
  EXPECT_EQ(f.size, 0u);
  EXPECT_TRUE(stream.in_message());
}

TEST(FrameStreamTest, TreatsMidMessageBytesAsPayloadNotHeader) {
  frame_stream stream(inspected, 1024);
  const bytes header = make_header('D', 4 + 5);
  // The body looks like a header of an absurd length; it must be relayed as payload.
  const bytes body = make_header('X', 0xffffffffu);
  stream.next(header);

  const frame f = stream.next(body);

  EXPECT_EQ(f.kind, frame_kind::piece);
  EXPECT_EQ(f.size, 5u);
  EXPECT_TRUE(f.ends_message);
}

TEST(FrameStreamTest, FeedsOneByteAtATime) {
  const std::vector<bytes> messages = sample_messages();
  frame_stream stream(inspected, 1024);

  const auto got = relay(stream, concat(messages), 1024, reads_of(1));

  expect_same_messages(got, messages);
}

TEST(FrameStreamTest, ReassemblesAtEverySplitOffset) {
  const std::vector<bytes> messages = sample_messages();
  const bytes input = concat(messages);

  for (std::size_t split = 0; split <= input.size(); ++split) {
    frame_stream stream(inspected, 1024);
    bool is_first = true;
    const auto split_reads = [&] {
      const std::size_t n = is_first ? split : input.size();
      is_first = false;
      return n;
    };

    const auto got = relay(stream, input, input.size(), split_reads);

    SCOPED_TRACE(split);
    expect_same_messages(got, messages);
    for (const relayed_message& m : got) {
      if (inspected.contains(m.type)) {
        EXPECT_TRUE(m.was_whole) << "inspected type " << m.type;
      }
    }
  }
}

TEST(FrameStreamTest, ReassemblesAtEveryPairOfSplitOffsets) {
  const std::vector<bytes> messages = {make_message('D', 7), make_message('Z', 1, 'I'),
                                       make_message('1', 0), make_message('E', 12)};
  const bytes input = concat(messages);

  for (std::size_t a = 0; a <= input.size(); ++a) {
    for (std::size_t b = a; b <= input.size(); ++b) {
      frame_stream stream(inspected, 1024);
      const std::vector<std::size_t> sizes = {a, b - a, input.size()};
      std::size_t read = 0;
      const auto reads = [&] { return sizes[std::min(read++, sizes.size() - 1)]; };

      const auto got = relay(stream, input, input.size(), reads);

      SCOPED_TRACE(testing::Message() << "splits " << a << ", " << b);
      expect_same_messages(got, messages);
    }
  }
}

TEST(FrameStreamTest, StreamsLargeMessageThroughSmallHoldLimit) {
  constexpr std::size_t buffer = 256;
  const std::vector<bytes> messages = {make_message('D', 100000, 7), make_message('Z', 1, 'I')};
  frame_stream stream(inspected, buffer);

  const auto got = relay(stream, concat(messages), buffer, reads_of(buffer));

  expect_same_messages(got, messages);
  EXPECT_FALSE(got[0].was_whole);
  EXPECT_TRUE(got[1].was_whole);
}

TEST(FrameStreamTest, StreamsLargeInspectedMessageThroughSmallHoldLimit) {
  constexpr std::size_t buffer = 64;
  const std::vector<bytes> messages = {make_message('E', 1000, 3), make_message('C', 20, 1),
                                       make_message('Z', 1, 'E')};
  frame_stream stream(inspected, buffer);

  const auto got = relay(stream, concat(messages), buffer, reads_of(7));

  expect_same_messages(got, messages);
  EXPECT_FALSE(got[0].was_whole);
  EXPECT_TRUE(got[1].was_whole);
  EXPECT_TRUE(got[2].was_whole);
}

TEST(FrameStreamTest, DecodeHeaderReadsTypeAndLength) {
  const bytes header = make_header('T', 0x01020304);
  char type = 0;
  std::uint32_t length = 0;
  std::string_view reason;

  ASSERT_TRUE(decode_header(header, default_max_message_size, type, length, reason));

  EXPECT_EQ(type, 'T');
  EXPECT_EQ(length, 0x01020304u);
}

TEST(FrameStreamTest, DecodeHeaderRejectsShortInput) {
  const bytes header = make_header('T', 8);
  char type = 0;
  std::uint32_t length = 0;
  std::string_view reason;

  EXPECT_FALSE(decode_header(bytes_view(header.data(), 4), 100, type, length, reason));
  EXPECT_FALSE(reason.empty());
}

// Whatever the bytes, every step stays inside its input and the steps add up.
TEST(FrameStreamTest, RandomBytesNeverReportSizesBeyondInput) {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 5000; ++round) {
    bytes input(std::uniform_int_distribution<std::size_t>(0, 400)(rng));
    for (auto& b : input) {
      b = static_cast<std::uint8_t>(byte(rng));
    }
    // Small lengths now and then, so that headers are valid and messages span reads.
    if (input.size() >= 5 && round % 2 == 0) {
      input[1] = 0;
      input[2] = 0;
      input[3] = static_cast<std::uint8_t>(byte(rng) % 2);
    }
    const std::size_t hold_limit = std::uniform_int_distribution<std::size_t>(0, 300)(rng);
    const auto max = static_cast<std::uint32_t>(std::uniform_int_distribution<int>(0, 500)(rng));
    frame_stream stream({'D', 'Z', static_cast<char>(byte(rng))}, hold_limit, max);

    std::size_t offset = 0;
    std::size_t read_end = 0;
    for (int step = 0; step < 2000 && offset < input.size(); ++step) {
      read_end = std::min(input.size(), read_end + 1 + rng() % 64);
      const bytes_view view(input.data() + offset, read_end - offset);
      const frame f = stream.next(view);
      ASSERT_LE(f.size, view.size());
      if (f.kind == frame_kind::malformed) {
        ASSERT_FALSE(f.reason.empty());
        break;
      }
      if (f.kind == frame_kind::whole) {
        ASSERT_EQ(f.size, f.message_size);
        ASSERT_LE(f.message_size, std::size_t{max} + 1);
      }
      if (f.kind == frame_kind::piece) {
        ASSERT_GT(f.size, 0u);
        ASSERT_LE(f.message_size, std::size_t{max} + 1);
      }
      if (f.kind == frame_kind::need_more && read_end == input.size()) {
        break;
      }
      offset += f.size;
    }
    ASSERT_LE(offset, input.size());
  }
}

}  // namespace
}  // namespace pgf::protocol
