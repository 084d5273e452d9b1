// Finds message boundaries in a byte stream of typed messages without copying them.
//
// The relay reads into a fixed buffer and asks the stream, step by step, what the bytes
// at the front are. A message of a type the caller inspects is reported whole once all of
// it is in the buffer (the caller keeps the partial tail until then); every other message
// is reported as it arrives, in pieces, so a 50 MB DataRow never needs a 50 MB buffer.
// Pure code: no I/O, no allocation, never reads past the span it is given.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

#include "protocol/constants.hpp"

namespace pgf::protocol {

using bytes_view = std::span<const std::uint8_t>;

// A set of message type bytes, tested in one load.
class type_set {
 public:
  constexpr type_set() = default;
  constexpr type_set(std::initializer_list<char> types) {
    for (char t : types) {
      bits_[static_cast<std::uint8_t>(t)] = true;
    }
  }
  constexpr bool contains(char type) const { return bits_[static_cast<std::uint8_t>(type)]; }

 private:
  std::array<bool, 256> bits_{};
};

enum class frame_kind {
  whole,      // a complete message of `size` bytes (header included) starts the input
  piece,      // `size` bytes of a message that continues past the input; relay them as-is
  need_more,  // the input ends inside a header or inside a held message: read more
  malformed,  // the header is invalid; `reason` says why. The stream cannot continue.
};

struct frame {
  frame_kind kind = frame_kind::need_more;
  char type = 0;
  // Bytes of the input this step covers (0 for need_more and malformed).
  std::size_t size = 0;
  // For `piece`: true when these bytes begin the message (they include its header).
  bool starts_message = false;
  // For `piece`: true when these bytes end the message.
  bool ends_message = false;
  // The message's full length including the type byte, when known.
  std::size_t message_size = 0;
  std::string_view reason;
};

class frame_stream {
 public:
  // `inspect` lists the types reported whole; `hold_limit` is the largest message the
  // caller can hold whole (its buffer size): a larger inspected message is reported in
  // pieces like any other. `max_message_size` bounds the declared length of any message.
  frame_stream(type_set inspect, std::size_t hold_limit,
               std::uint32_t max_message_size = default_max_message_size);

  // Describes the bytes at the front of `input`. The caller consumes `size` bytes and
  // calls again with the rest; for need_more it keeps the input and reads more.
  frame next(bytes_view input);

  // True between the pieces of one message.
  bool in_message() const { return remaining_ != 0; }
  // The type of the message whose pieces are being relayed (valid when in_message()).
  char current_type() const { return current_type_; }

 private:
  type_set inspect_;
  std::size_t hold_limit_;
  std::uint32_t max_message_size_;
  std::size_t remaining_ = 0;
  std::size_t current_size_ = 0;
  char current_type_ = 0;
};

// Reads a typed message's header from the first 5 bytes of `input` (which must hold them).
// Returns false with `reason` set when the declared length is below 4 or above `max`.
bool decode_header(bytes_view input, std::uint32_t max, char& type, std::uint32_t& length,
                   std::string_view& reason);

}  // namespace pgf::protocol
