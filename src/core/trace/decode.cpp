#include "conncheck/trace/event.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <linux/types.h>

extern "C" {
#include "trace_event.h"
}

namespace conncheck::trace {

std::string_view kind_name(EventKind kind) {
    switch (kind) {
    case EventKind::opened:
        return "opened";
    case EventKind::state:
        return "state";
    case EventKind::reset:
        return "reset";
    case EventKind::resumed:
        return "resumed";
    case EventKind::destroyed:
        return "destroyed";
    case EventKind::exit:
        return "exit";
    case EventKind::listen:
        return "listen";
    }
    return "unknown";
}

bool hands_to_time_wait(const Event& event) {
    if (event.kind != EventKind::state || event.new_state != TcpState::close ||
        event.socket_error != 0)
        return false;
    return event.old_state == TcpState::fin_wait1 || event.old_state == TcpState::fin_wait2 ||
           event.old_state == TcpState::closing;
}

namespace {

TcpState to_state(std::uint8_t value) {
    return value < tcp_state_count ? static_cast<TcpState>(value) : TcpState::unknown;
}

Endpoint to_endpoint(std::uint8_t family, const std::uint8_t (&addr)[16], std::uint16_t port) {
    Endpoint e;
    e.family = family;
    e.port = port;
    // The kernel keeps an IPv4 address in the first four bytes; Endpoint wants it there too.
    std::copy(std::begin(addr), std::end(addr), e.addr.begin());
    return e;
}

std::string comm_of(const char (&comm)[16]) {
    return std::string(comm, ::strnlen(comm, sizeof comm));
}

} // namespace

static_assert(offsetof(cc_event, local_addr) == CC_CHANGE_BYTES);

std::optional<Event> decode_event(std::span<const std::byte> record) {
    cc_event raw{};
    if (record.size() < CC_CHANGE_BYTES) return std::nullopt;
    std::memcpy(&raw, record.data(), CC_CHANGE_BYTES);

    Event e;
    switch (raw.kind) {
    case CC_EV_OPENED:
        e.kind = EventKind::opened;
        break;
    case CC_EV_STATE:
        e.kind = EventKind::state;
        break;
    case CC_EV_RESET:
        e.kind = EventKind::reset;
        break;
    case CC_EV_RESUMED:
        e.kind = EventKind::resumed;
        break;
    case CC_EV_DESTROYED:
        e.kind = EventKind::destroyed;
        break;
    case CC_EV_EXIT:
        e.kind = EventKind::exit;
        break;
    case CC_EV_LISTEN:
        e.kind = EventKind::listen;
        break;
    default:
        return std::nullopt;
    }
    // A change record ends where the endpoints and the thread's name would begin, but for a
    // traced socket's new connect(), whose STATE record is whole.
    const bool needs_whole =
        e.kind == EventKind::opened || e.kind == EventKind::listen || e.kind == EventKind::exit;
    const bool whole = needs_whole || record.size() >= sizeof raw;
    if (needs_whole && record.size() < sizeof raw) return std::nullopt;
    if (whole) std::memcpy(&raw, record.data(), sizeof raw);
    e.time_ns = raw.time_ns;
    e.connection = raw.id;
    e.cookie = raw.cookie;
    e.pid = static_cast<pid_t>(raw.tgid);
    if ((raw.flags & CC_FLAG_TASK) != 0) {
        e.tid = static_cast<pid_t>(raw.tid);
        if (whole) e.thread = comm_of(raw.comm);
    }
    e.old_state = to_state(raw.old_state);
    e.new_state = to_state(raw.new_state);
    if (whole && e.kind != EventKind::exit) {
        e.local = to_endpoint(raw.family, raw.local_addr, raw.local_port);
        e.remote = to_endpoint(raw.family, raw.remote_addr, raw.remote_port);
    } else if (!whole) {
        e.local.port = raw.local_port;
    }
    e.accepted = (raw.flags & CC_FLAG_ACCEPTED) != 0;
    e.socket_error = raw.sk_err;
    if (e.kind == EventKind::resumed) e.silence_ns = raw.aux;
    e.destroyed_after = e.kind == EventKind::state && (raw.flags & CC_FLAG_DESTROYED) != 0;

    if (e.kind == EventKind::opened) {
        cc_open_event open{};
        if (record.size() < sizeof open) return std::nullopt;
        std::memcpy(&open, record.data(), sizeof open);
        e.stack_pointer = raw.aux;
        if (open.stack_size < 0) {
            e.stack_error = open.stack_size;
        } else {
            const auto frames = std::min<std::size_t>(
                static_cast<std::size_t>(open.stack_size) / sizeof(__u64), CC_STACK_FRAMES);
            e.stack.assign(open.stack, open.stack + frames);
        }
        if ((raw.flags & CC_FLAG_STACK_COPY) != 0) {
            // Too big to copy whole: read the fixed part, then only the bytes the kernel filled.
            const std::size_t fixed = offsetof(cc_open_copy_event, copy);
            if (record.size() < sizeof(cc_open_copy_event)) return std::nullopt;
            cc_open_copy_event head{};
            std::memcpy(&head, record.data(), fixed);
            e.registers = UserRegisters{head.regs.ip,  head.regs.sp,  head.regs.bp,  head.regs.bx,
                                        head.regs.r12, head.regs.r13, head.regs.r14, head.regs.r15};
            if (head.copy_size < 0) {
                e.copy_error = head.copy_size;
            } else {
                const auto bytes = std::min<std::size_t>(static_cast<std::size_t>(head.copy_size),
                                                         CC_STACK_COPY_BYTES);
                const auto* copy = reinterpret_cast<const std::uint8_t*>(record.data()) + fixed;
                e.stack_bytes.assign(copy, copy + bytes);
            }
        } else if (open.stack_bytes_size > 0) {
            const auto bytes = std::min<std::size_t>(
                static_cast<std::size_t>(open.stack_bytes_size), CC_STACK_BYTES);
            e.stack_bytes.assign(open.stack_bytes, open.stack_bytes + bytes);
        }
        switch (open.py_status) {
        case CC_PY_OK:
            e.python_status = PythonStatus::complete;
            break;
        case CC_PY_TRUNCATED:
            e.python_status = PythonStatus::truncated;
            break;
        case CC_PY_NO_THREAD:
            e.python_status = PythonStatus::no_thread;
            break;
        case CC_PY_THREADS_FAULT:
            e.python_status = PythonStatus::threads_unreadable;
            break;
        case CC_PY_FRAME_FAULT:
            e.python_status = PythonStatus::frame_unreadable;
            break;
        default:
            e.python_status = PythonStatus::none;
            break;
        }
        e.python_thread_state = open.py_tstate;
        const std::size_t py_frames = std::min<std::size_t>(open.py_frames, CC_PY_FRAMES);
        for (std::size_t i = 0; i < py_frames; ++i)
            e.python_frames.push_back(
                {open.py_code[i], open.py_instr[i], ((open.py_entry >> i) & 1U) != 0});
    }
    return e;
}

ChangeCompleter::ChangeCompleter(ThreadNamer name_thread) : name_thread_(std::move(name_thread)) {}

void ChangeCompleter::complete(Event& e) {
    // A whole record: the opened one, or a traced socket's new connect() (decode_event()).
    if (e.local.family != 0 || e.kind == EventKind::exit) {
        if (e.tid != 0) threads_[e.tid] = e.thread;
        if (e.kind != EventKind::exit && e.kind != EventKind::listen)
            endpoints_[e.connection] = {e.local, e.remote};
        return;
    }
    if (e.tid != 0) {
        if (const auto it = threads_.find(e.tid); it != threads_.end()) {
            e.thread = it->second;
        } else {
            e.thread = name_thread_(e.pid, e.tid);
            // A thread gone already is asked again next time rather than kept nameless.
            if (!e.thread.empty()) threads_.emplace(e.tid, e.thread);
        }
    }
    const auto known = endpoints_.find(e.connection);
    if (known == endpoints_.end()) return;
    // SYN_SENT comes before connect() chooses the local port: a later change has it.
    if (e.local.port != 0) known->second.first.port = e.local.port;
    e.local = known->second.first;
    e.remote = known->second.second;
    if (e.kind == EventKind::destroyed || e.destroyed_after) endpoints_.erase(known);
}

void ChangeCompleter::forget_threads() {
    threads_.clear();
}

} // namespace conncheck::trace
