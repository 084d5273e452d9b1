// Message boundaries in a stream of typed v3 messages: whole messages, pieces of large
// ones, and the held tail of an inspected message that is still arriving.
#include "protocol/frame_stream.hpp"

#include <algorithm>

namespace pgf::protocol {

namespace {

std::uint32_t load_uint32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

frame make_piece(char type, std::size_t size, bool starts, bool ends, std::size_t message_size) {
  frame f;
  f.kind = frame_kind::piece;
  f.type = type;
  f.size = size;
  f.starts_message = starts;
  f.ends_message = ends;
  f.message_size = message_size;
  return f;
}

}  // namespace

bool decode_header(bytes_view input, std::uint32_t max, char& type, std::uint32_t& length,
                   std::string_view& reason) {
  if (input.size() < header_size) {
    reason = "incomplete message header";
    return false;
  }

  type = static_cast<char>(input[0]);
  length = load_uint32(input.data() + 1);
  if (length < min_message_length) {
    reason = "invalid message length: below the 4 bytes of the length itself";
    return false;
  }
  if (length > max) {
    reason = "invalid message length: over max_message_size";
    return false;
  }
  return true;
}

frame_stream::frame_stream(type_set inspect, std::size_t hold_limit, std::uint32_t max_message_size)
    : inspect_(inspect), hold_limit_(hold_limit), max_message_size_(max_message_size) {}

frame frame_stream::next(bytes_view input) {
  if (in_message()) {
    if (input.empty()) {
      return frame{};
    }
    const std::size_t size = std::min(remaining_, input.size());
    remaining_ -= size;
    return make_piece(current_type_, size, false, remaining_ == 0, current_size_);
  }

  if (input.size() < header_size) {
    return frame{};
  }

  frame f;
  std::uint32_t length = 0;
  if (!decode_header(input, max_message_size_, f.type, length, f.reason)) {
    f.kind = frame_kind::malformed;
    return f;
  }

  // The type byte is not counted by the length field.
  const std::size_t total = std::size_t{length} + 1;
  f.message_size = total;
  if (total <= input.size()) {
    f.kind = frame_kind::whole;
    f.size = total;
    return f;
  }
  if (inspect_.contains(f.type) && total <= hold_limit_) {
    return f;
  }

  current_type_ = f.type;
  current_size_ = total;
  remaining_ = total - input.size();
  return make_piece(f.type, input.size(), true, false, total);
}

}  // namespace pgf::protocol
