// libFuzzer target for protocol::frame_stream: plays a relay over arbitrary bytes and
// aborts when a step breaks the stream's contract.
//
// Input layout: byte 0 picks hold_limit (x4), byte 1 max_message_size (x16; 255 = default),
// byte 2 bounds the read sizes, byte 3 selects inspected types; the rest is the stream.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "protocol/frame_stream.hpp"

namespace {

namespace pp = pgf::protocol;

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "frame_stream invariant violated: %s\n", what);
    std::abort();
  }
}

struct config {
  std::size_t hold_limit = 0;
  std::uint32_t max_message_size = 0;
  std::uint32_t read_bound = 1;
  pp::type_set inspect;
};

config read_config(const std::uint8_t* data) {
  constexpr char candidates[8] = {'Z', 'E', 'C', 'T', 'D', 'R', 'S', 'K'};
  config c;
  c.hold_limit = std::size_t{data[0]} * 4;
  c.max_message_size = data[1] == 255 ? pp::default_max_message_size : data[1] * 16u;
  c.read_bound = 1u + data[2];

  char chosen[8] = {};
  std::size_t n = 0;
  for (int i = 0; i < 8; ++i) {
    if ((data[3] >> i) & 1) {
      chosen[n++] = candidates[i];
    }
  }
  if (n > 0) {
    // Unused slots repeat the first choice: the set takes a fixed-size list.
    std::fill(chosen + n, chosen + 8, chosen[0]);
    c.inspect = pp::type_set{chosen[0], chosen[1], chosen[2], chosen[3],
                             chosen[4], chosen[5], chosen[6], chosen[7]};
  }
  return c;
}

std::uint64_t declared_total(const std::vector<std::uint8_t>& pending) {
  const std::uint32_t length = (std::uint32_t{pending[1]} << 24) |
                               (std::uint32_t{pending[2]} << 16) |
                               (std::uint32_t{pending[3]} << 8) | std::uint32_t{pending[4]};
  return std::uint64_t{length} + 1;
}

// What the relay knows between steps, to check each step against.
struct relay_state {
  std::vector<std::uint8_t> pending;
  std::size_t consumed = 0;
  std::size_t message_done = 0;  // bytes of the current pieced message relayed so far
  std::size_t message_total = 0;
};

void check_need_more(const pp::frame& f, bool was_in_message, const config& c,
                     const relay_state& s) {
  const std::size_t available = s.pending.size();
  check(f.size == 0, "need_more covers bytes");
  if (was_in_message) {
    check(available == 0, "need_more mid-message with bytes available");
  } else if (available >= pp::header_size) {
    check(c.inspect.contains(static_cast<char>(s.pending[0])), "held an uninspected type");
    check(f.message_size == declared_total(s.pending), "held size is not length + 1");
    check(f.message_size <= c.hold_limit, "held a message over hold_limit");
    check(f.message_size > available, "held a message that is complete");
  }
}

void check_malformed(const pp::frame& f, bool was_in_message, const config& c,
                     const relay_state& s) {
  check(f.size == 0 && !f.reason.empty(), "malformed without a reason");
  check(!was_in_message, "malformed reported mid-message");
  const std::uint64_t total = declared_total(s.pending);
  check(total < 5 || total > std::uint64_t{c.max_message_size} + 1, "rejected a valid length");
}

void check_whole(const pp::frame& f, bool was_in_message, const relay_state& s) {
  check(!was_in_message, "whole message reported mid-message");
  check(f.size == f.message_size, "whole size differs from message size");
  check(f.message_size == declared_total(s.pending), "whole size is not length + 1");
  check(f.type == static_cast<char>(s.pending[0]), "whole type is not the first byte");
}

void check_piece(const pp::frame& f, bool was_in_message, const pp::frame_stream& stream,
                 const config& c, relay_state& s) {
  check(f.size > 0, "empty piece");
  if (f.starts_message) {
    check(!was_in_message, "a second start inside a message");
    check(f.message_size == declared_total(s.pending), "piece size is not length + 1");
    check(f.size == s.pending.size() && f.size < f.message_size,
          "first piece of a complete message");
    check(f.message_size <= std::uint64_t{c.max_message_size} + 1, "over max_message_size");
    s.message_done = 0;
    s.message_total = f.message_size;
  } else {
    check(was_in_message, "a continuing piece outside a message");
    check(f.message_size == s.message_total, "message size changed between pieces");
  }

  s.message_done += f.size;
  check(s.message_done <= s.message_total, "pieces exceed the message");
  check(f.ends_message == (s.message_done == s.message_total), "ends_message is wrong");
  check(stream.in_message() == !f.ends_message, "in_message disagrees with the piece");
}

// Checks one step; returns false when the stream has failed and the relay must stop.
bool check_step(const pp::frame& f, bool was_in_message, const pp::frame_stream& stream,
                const config& c, relay_state& s) {
  check(f.size <= s.pending.size(), "step larger than its input");
  if (!was_in_message && f.kind != pp::frame_kind::need_more) {
    check(s.pending.size() >= pp::header_size, "a step before the header is complete");
  }

  switch (f.kind) {
    case pp::frame_kind::need_more:
      check_need_more(f, was_in_message, c, s);
      return true;
    case pp::frame_kind::malformed:
      check_malformed(f, was_in_message, c, s);
      return false;
    case pp::frame_kind::whole:
      check_whole(f, was_in_message, s);
      return true;
    case pp::frame_kind::piece:
      check_piece(f, was_in_message, stream, c, s);
      return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 4) {
    return 0;
  }
  const config c = read_config(data);
  const std::uint8_t* stream_bytes = data + 4;
  const std::size_t stream_size = size - 4;
  const std::size_t capacity = std::max(c.hold_limit, pp::header_size);
  pp::frame_stream stream(c.inspect, c.hold_limit, c.max_message_size);

  relay_state s;
  std::size_t read_at = 0;
  std::uint32_t lcg = data[2];
  while (read_at < stream_size) {
    lcg = lcg * 1103515245u + 12345u;
    const std::size_t room = capacity - s.pending.size();
    check(room > 0, "the stream held more than the buffer");
    const std::size_t n =
        std::min({std::size_t{1 + (lcg >> 8) % c.read_bound}, room, stream_size - read_at});
    s.pending.insert(s.pending.end(), stream_bytes + read_at, stream_bytes + read_at + n);
    read_at += n;

    for (;;) {
      const bool was_in_message = stream.in_message();
      const pp::frame f = stream.next(s.pending);
      if (!check_step(f, was_in_message, stream, c, s)) {
        return 0;
      }
      if (f.kind == pp::frame_kind::need_more) {
        break;
      }
      s.consumed += f.size;
      s.pending.erase(s.pending.begin(), s.pending.begin() + static_cast<long>(f.size));
    }
  }

  check(s.consumed + s.pending.size() == stream_size, "steps do not add up to the input");
  return 0;
}
