// The kernel seam of `trace`: loads the eBPF program (src/bpf/trace.bpf.c), tells it which
// processes to follow and hands back their connections' events. Nothing about other processes
// crosses to user space: the program filters in the kernel.
#pragma once

#include "conncheck/trace/event.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace conncheck::trace {

namespace python {
struct Runtime;
}

struct ProbeConfig {
    std::uint32_t max_connections = 65536; // tracked at once; more are counted, not followed
    // Report data resumed after this much silence; 0 never. Only then is the program on
    // sk_data_ready loaded: it runs for every packet any socket on the host receives (TCP, UDP,
    // unix), about 170 ns each here, so nobody pays it who did not ask.
    std::uint64_t silence_ns = 0;
    // Whether any target starts with copied stacks (target_flag::copy_stack). The ring buffer is
    // 2 MiB, or 4 MiB with copies (8.6 KiB a record): a ring much larger than the cache costs
    // each record a cache miss per line written (16 MiB cost a traced connection 2 to 5 us more
    // here). 1 MiB already lost nothing at 10,000 connections/s on idle cores; 2 MiB lost
    // nothing with both cores busy (about 7,000/s), where 1 MiB did.
    bool copies_stacks = false;
};

// What the probe records for a target process (src/bpf/trace_event.h, enum cc_target_flags).
namespace target_flag {
// The registers and 8 KiB of the user stack at each connect, for unwinding from the tables:
// for code without frame pointers, at a few us more per connection (scripts/bench-trace).
inline constexpr std::uint32_t copy_stack = 1;
} // namespace target_flag

struct ProbeCounters {
    std::uint64_t untracked_connections = 0; // opened while max_connections were tracked
    std::uint64_t lost_events = 0;           // the ring buffer was full
    std::uint64_t opened_connections = 0;    // followed since the probe started
    std::uint64_t listens = 0;               // sockets the targets put into LISTEN
};

class Probe {
public:
    // Loads and attaches. Throws Error(source_unavailable) saying why tracing cannot work here:
    // built without eBPF, no kernel BTF, missing CAP_BPF and CAP_PERFMON, or the kernel refused.
    explicit Probe(const ProbeConfig& config);
    ~Probe();
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;

    // Follows the connections `pid` opens from now on: by connect() at once, by accept() once
    // follow_accepts() was called (for a process that already listens) or a target starts
    // listening (drain() then calls it; accepts in the moment before are missed). Following
    // accept() takes a program on every system call's exit, which slows every system call on
    // the host a little: a client that never listens does not pay it.
    // `flags`: what to record beyond the frame-pointer walk (target_flag); add_target() again
    // with other flags changes them for the connections opened from then on.
    void add_target(pid_t pid, std::uint32_t flags = 0);
    void follow_accepts();
    [[nodiscard]] bool follows_accepts() const;
    // Records the CPython frames of the connections target `pid` opens: `runtime` (with offsets)
    // is its interpreter (python::find_runtime()).
    void add_python(pid_t pid, const python::Runtime& runtime);
    // A file descriptor that becomes readable when the ring buffer fills up (for poll()). The
    // kernel does not wake the reader for every event: drain at least every drain_interval.
    // A second: at 100 ms, trace's CPU grew by a fifth at 1,000 connections/s, and a quiet
    // trace woke ten times a second for nothing.
    [[nodiscard]] int wait_fd() const;
    static constexpr std::chrono::milliseconds drain_interval{1000};
    // Hands every waiting event to `sink`, in the order the kernel wrote them; returns how many.
    std::size_t drain(const std::function<void(const Event&)>& sink);
    [[nodiscard]] ProbeCounters counters() const;
    // The connections with a record lost to a full ring buffer (the last 4096): their account
    // has a hole, so they are not judged.
    [[nodiscard]] std::vector<std::uint64_t> incomplete_connections() const;
    // Whether the probe follows received data (ProbeConfig::silence_ns is not 0).
    [[nodiscard]] bool follows_data() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Why tracing cannot work on this machine, or nullopt-like empty string when it can: checked
// before loading anything (built without eBPF, no BTF, missing capabilities).
[[nodiscard]] std::string unavailable_reason();

} // namespace conncheck::trace
