// What the kernel reports about the traced processes' connections, as plain data: decoded from the
// eBPF ring buffer by decode_event(), built by hand in tests.
#pragma once

#include "conncheck/tcp.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace conncheck::trace {

enum class EventKind : std::uint8_t {
    opened,    // connect() reached SYN_SENT, or accept() returned the socket
    state,     // a TCP state change
    reset,     // a RST arrived
    resumed,   // data arrived after at least the configured silence
    destroyed, // the kernel freed the socket
    exit,      // the last thread of a traced process is exiting
    listen,    // a traced process started listening (local endpoint); its accepts are followed
};

// "opened", "state", ... (JSON "type" values).
[[nodiscard]] std::string_view kind_name(EventKind kind);

// What the kernel found of the opening thread's CPython frames (src/bpf/trace_event.h).
enum class PythonStatus : std::uint8_t {
    none,               // not a CPython target with known offsets
    complete,           // the whole frame chain
    truncated,          // the chain goes on beyond the frames recorded
    no_thread,          // no thread state has this thread's id
    threads_unreadable, // the interpreter's thread list could not be read
    frame_unreadable,   // a frame could not be read: the ones before it are there
};

// One frame of CPython's chain: its code object and last instruction, as the kernel read them.
struct PythonFrameRef {
    std::uint64_t code = 0;
    std::uint64_t instruction = 0; // prev_instr: the address of a code unit
    bool entry = false;            // where a call of the evaluation loop began
    friend bool operator==(const PythonFrameRef&, const PythonFrameRef&) = default;
};

// The user registers at the system call that unwinding from the tables starts from (x86-64).
struct UserRegisters {
    std::uint64_t ip = 0;
    std::uint64_t sp = 0;
    std::uint64_t bp = 0;
    std::uint64_t bx = 0;
    std::uint64_t r12 = 0;
    std::uint64_t r13 = 0;
    std::uint64_t r14 = 0;
    std::uint64_t r15 = 0;
    friend bool operator==(const UserRegisters&, const UserRegisters&) = default;
};

struct Event {
    EventKind kind = EventKind::state;
    std::uint64_t time_ns = 0;    // CLOCK_MONOTONIC
    std::uint64_t connection = 0; // numbers this trace's connections from 1; 0 for exit, listen
    std::uint64_t cookie = 0;     // 0 while the kernel has assigned none
    pid_t pid = 0;                // the process holding the socket
    pid_t tid = 0;                // the thread that ran the event; 0 in softirq or another task
    std::string thread;           // that thread's comm, raw: sanitize before printing
    TcpState old_state = TcpState::unknown;
    TcpState new_state = TcpState::unknown;
    Endpoint local;
    Endpoint remote;
    bool accepted = false;        // opened by accept()
    int socket_error = 0;         // sk_err: ECONNRESET, ETIMEDOUT...
    std::uint64_t silence_ns = 0; // resumed: how long no data had arrived
    // state: the kernel destroyed the socket right after this change (an orphaned socket
    // reaching CLOSE); one record says both, and Probe hands on a destroyed event after it.
    bool destroyed_after = false;

    // opened only: the user stack at the system call, innermost first (frame-pointer walk),
    // the stack pointer and the bytes at it; stack_error is a negative errno when there is none.
    std::vector<std::uint64_t> stack;
    std::uint64_t stack_pointer = 0;
    std::vector<std::uint8_t> stack_bytes;
    int stack_error = 0;
    // For a target whose stack is copied (no frame pointers): the registers, and stack_bytes
    // holds the copy (up to 8 KiB from the stack pointer); copy_error a negative errno when
    // the copy failed.
    std::optional<UserRegisters> registers;
    int copy_error = 0;
    // opened only: the opening thread's CPython frames, innermost first.
    PythonStatus python_status = PythonStatus::none;
    std::uint64_t python_thread_state = 0;
    std::vector<PythonFrameRef> python_frames;
};

// TIME_WAIT is not a state change of the socket itself: the kernel hands the connection to a
// TIME_WAIT socket (same cookie) and moves the original to CLOSE. This is that move: from
// FIN_WAIT1, FIN_WAIT2 or CLOSING to CLOSE without a socket error.
[[nodiscard]] bool hands_to_time_wait(const Event& event);
// Linux's TCP_TIMEWAIT_LEN.
inline constexpr std::uint64_t time_wait_ns = 60'000'000'000ULL;

// Decodes one ring-buffer record (struct cc_event or cc_open_event, src/bpf/trace_event.h).
// nullopt when it is too short for its kind or the kind is unknown. A change record (state,
// reset, resumed, destroyed) carries the local port but neither the addresses, the remote port
// nor the thread's name: ChangeCompleter adds them.
[[nodiscard]] std::optional<Event> decode_event(std::span<const std::byte> record);

// Completes decoded change records, which the kernel keeps short (each byte it writes costs the
// traced connection): the endpoints from the connection's opened record (or a later whole
// record of a new connect()), the local port where the change record has one, and the thread's
// name from its last whole record (opened, listen, exit) or else from `name_thread`, remembered
// until forget_threads(). Records go through in ring order; a connection is forgotten once
// destroyed.
class ChangeCompleter {
public:
    // The name of thread `tid` of process `pid`, "" when it is gone.
    using ThreadNamer = std::function<std::string(pid_t pid, pid_t tid)>;
    explicit ChangeCompleter(ThreadNamer name_thread);
    void complete(Event& event);
    // Names are kept for one drain of the ring buffer: threads come and go, and rename
    // themselves, and their ids are reused.
    void forget_threads();

private:
    ThreadNamer name_thread_;
    std::unordered_map<std::uint64_t, std::pair<Endpoint, Endpoint>> endpoints_;
    std::unordered_map<pid_t, std::string> threads_;
};

} // namespace conncheck::trace
