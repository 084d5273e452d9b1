// Cost of finding message boundaries on the relay path, and proof that it allocates nothing.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "protocol/frame_stream.hpp"

namespace {

// Every allocation in the process goes through here, so a benchmark can count its own.
std::uint64_t allocation_count = 0;

void* counted_allocate(std::size_t size) {
  ++allocation_count;
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) {
  return counted_allocate(size);
}
void* operator new[](std::size_t size) {
  return counted_allocate(size);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

namespace pp = pgf::protocol;

// The types a transaction-mode relay inspects on the server side.
const pp::type_set server_inspected{'Z', 'E', 'S', 'K', 'R', 'G', 'H', 'W'};

void append_message(std::vector<std::uint8_t>& out, char type, std::size_t body_size) {
  const auto length = static_cast<std::uint32_t>(body_size + 4);
  out.push_back(static_cast<std::uint8_t>(type));
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(length >> shift));
  }
  out.insert(out.end(), body_size, std::uint8_t{'x'});
}

// Walks `input` as one read, returning the number of messages it ends.
std::size_t scan(pp::frame_stream& stream, pp::bytes_view input) {
  std::size_t messages = 0;
  while (!input.empty()) {
    const pp::frame f = stream.next(input);
    if (f.kind == pp::frame_kind::need_more || f.kind == pp::frame_kind::malformed) {
      break;
    }
    messages += f.kind == pp::frame_kind::whole || f.ends_message;
    input = input.subspan(f.size);
  }
  return messages;
}

void report(benchmark::State& state, std::uint64_t messages, std::uint64_t bytes,
            std::uint64_t allocations) {
  state.SetItemsProcessed(static_cast<std::int64_t>(messages));
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["allocs_per_msg"] =
      messages == 0 ? 0.0 : static_cast<double>(allocations) / static_cast<double>(messages);
}

// A read buffer full of DataRows of `range(0)` body bytes, as a SELECT answer streams in.
void BM_FrameStreamSmallMessages(benchmark::State& state) {
  const auto body_size = static_cast<std::size_t>(state.range(0));
  std::vector<std::uint8_t> buffer;
  while (buffer.size() + body_size + pp::header_size <= 64 * 1024) {
    append_message(buffer, 'D', body_size);
  }
  pp::frame_stream stream(server_inspected, buffer.size());

  std::uint64_t messages = 0;
  std::uint64_t allocations = 0;
  for (auto _ : state) {
    const std::uint64_t before = allocation_count;
    messages += scan(stream, buffer);
    allocations += allocation_count - before;
  }

  report(state, messages, state.iterations() * buffer.size(), allocations);
}
BENCHMARK(BM_FrameStreamSmallMessages)->Arg(60)->Arg(200);

// One DataRow of `range(0)` bytes relayed through a 16 KB read buffer, read by read.
void BM_FrameStreamLargeMessagePieces(benchmark::State& state) {
  constexpr std::size_t read_size = 16 * 1024;
  std::vector<std::uint8_t> message;
  append_message(message, 'D', static_cast<std::size_t>(state.range(0)));
  pp::frame_stream stream(server_inspected, read_size);

  std::uint64_t messages = 0;
  std::uint64_t allocations = 0;
  for (auto _ : state) {
    const std::uint64_t before = allocation_count;
    for (std::size_t at = 0; at < message.size(); at += read_size) {
      const pp::bytes_view read(message.data() + at, std::min(read_size, message.size() - at));
      messages += scan(stream, read);
    }
    allocations += allocation_count - before;
  }

  report(state, messages, state.iterations() * message.size(), allocations);
}
BENCHMARK(BM_FrameStreamLargeMessagePieces)->Arg(1 << 20)->Arg(64 << 20);

}  // namespace

BENCHMARK_MAIN();
