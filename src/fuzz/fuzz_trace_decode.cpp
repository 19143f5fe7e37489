// libFuzzer harness: arbitrary bytes as one record of trace's eBPF ring buffer. The decoder must
// read nothing outside them, whatever sizes the record claims for its stack and stack bytes.
#include "conncheck/trace/event.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto event = conncheck::trace::decode_event(
        std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size));
    if (!event) return 0;
    std::uint64_t sum = event->cookie + event->pid + event->local.port + event->remote.port;
    for (const auto frame : event->stack)
        sum += frame;
    for (const auto byte : event->stack_bytes)
        sum += byte;
    sum += conncheck::trace::kind_name(event->kind).size() + event->thread.size();
    sum += conncheck::trace::hands_to_time_wait(*event) ? 1 : 0;
    static volatile std::uint64_t sink = 0;
    sink = sink + sum;
    return 0;
}
