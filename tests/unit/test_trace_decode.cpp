// Ring-buffer records as the eBPF program writes them (src/bpf/trace_event.h), decoded.
#include "conncheck/trace/event.hpp"

#include <arpa/inet.h>
#include <cstring>
#include <doctest/doctest.h>
#include <linux/types.h>
#include <memory>
#include <vector>

extern "C" {
#include "trace_event.h"
}

using namespace conncheck;
using namespace conncheck::trace;

namespace {

template <typename T>
std::vector<std::byte> bytes_of(const T& value, std::size_t size = sizeof(T)) {
    std::vector<std::byte> out(size);
    std::memcpy(out.data(), &value, std::min(size, sizeof(T)));
    return out;
}

// A STATE record of connection `id` of process 300, run by its thread `tid`.
cc_event state_record(__u64 id, __u32 tid, __u8 from, __u8 to) {
    cc_event raw{};
    raw.kind = CC_EV_STATE;
    raw.id = id;
    raw.tgid = 300;
    raw.tid = tid;
    raw.flags = CC_FLAG_TASK;
    raw.old_state = from;
    raw.new_state = to;
    return raw;
}

} // namespace

TEST_CASE("an opened record: endpoints, thread, stack and the bytes at the stack pointer") {
    cc_open_event raw{};
    raw.base.time_ns = 123;
    raw.base.id = 7;
    raw.base.cookie = 0xabc;
    raw.base.aux = 0x7ffd0000;
    raw.base.tgid = 42;
    raw.base.tid = 43;
    raw.base.kind = CC_EV_OPENED;
    raw.base.family = AF_INET;
    raw.base.new_state = 2;
    raw.base.local_port = 0;
    raw.base.remote_port = 9443;
    const std::uint8_t remote[4] = {10, 1, 2, 3};
    std::memcpy(raw.base.remote_addr, remote, 4);
    std::strcpy(raw.base.comm, "ws-client");
    raw.base.flags = CC_FLAG_TASK;
    raw.stack_size = 3 * 8;
    raw.stack[0] = 0x1000;
    raw.stack[1] = 0x2000;
    raw.stack[2] = 0x3000;
    raw.stack_bytes_size = CC_STACK_BYTES;
    raw.stack_bytes[0] = 0x5a;

    const auto e = decode_event(bytes_of(raw));
    REQUIRE(e);
    CHECK(e->kind == EventKind::opened);
    CHECK(e->connection == 7);
    CHECK(e->cookie == 0xabc);
    CHECK(e->pid == 42);
    CHECK(e->tid == 43);
    CHECK(e->thread == "ws-client");
    CHECK(e->new_state == TcpState::syn_sent);
    CHECK(e->remote.to_string() == "10.1.2.3:9443");
    CHECK(e->stack == std::vector<std::uint64_t>{0x1000, 0x2000, 0x3000});
    CHECK(e->stack_pointer == 0x7ffd0000);
    CHECK(e->stack_bytes.size() == CC_STACK_BYTES);
    CHECK(e->stack_bytes[0] == 0x5a);
    CHECK(!e->accepted);
}

TEST_CASE("a state change in softirq carries no thread; a failed stack is an error") {
    cc_event raw{};
    raw.kind = CC_EV_STATE;
    raw.family = AF_INET6;
    raw.old_state = 1;
    raw.new_state = 8;
    raw.tid = 99; // whoever ran the softirq: not reported without CC_FLAG_TASK
    const auto e = decode_event(bytes_of(raw, CC_CHANGE_BYTES));
    REQUIRE(e);
    CHECK(e->tid == 0);
    CHECK(e->old_state == TcpState::established);
    CHECK(e->new_state == TcpState::close_wait);

    cc_open_event open{};
    open.base.kind = CC_EV_OPENED;
    open.stack_size = -14;
    open.stack_bytes_size = -14;
    const auto o = decode_event(bytes_of(open));
    REQUIRE(o);
    CHECK(o->stack.empty());
    CHECK(o->stack_error == -14);
    CHECK(o->stack_bytes.empty());
}

TEST_CASE("short records, unknown kinds and out-of-range sizes are refused or clamped") {
    cc_event raw{};
    raw.kind = CC_EV_DESTROYED;
    CHECK(!decode_event(bytes_of(raw, CC_CHANGE_BYTES - 1)));
    CHECK(decode_event(bytes_of(raw, CC_CHANGE_BYTES)));
    for (const __u8 kind : {CC_EV_LISTEN, CC_EV_EXIT}) { // these carry endpoints or a name
        raw.kind = kind;
        CHECK(!decode_event(bytes_of(raw, CC_CHANGE_BYTES)));
        CHECK(!decode_event(bytes_of(raw, sizeof raw - 1)));
        CHECK(decode_event(bytes_of(raw)));
    }
    raw.kind = 200;
    CHECK(!decode_event(bytes_of(raw)));
    raw.kind = CC_EV_OPENED; // an opened record needs the stack part too
    CHECK(!decode_event(bytes_of(raw)));
    raw.kind = CC_EV_STATE;
    raw.new_state = 77;
    CHECK(decode_event(bytes_of(raw))->new_state == TcpState::unknown);

    cc_open_event open{};
    open.base.kind = CC_EV_OPENED;
    open.stack_size = 1 << 30;
    open.stack_bytes_size = 1 << 30;
    const auto o = decode_event(bytes_of(open));
    REQUIRE(o);
    CHECK(o->stack.size() == CC_STACK_FRAMES);
    CHECK(o->stack_bytes.size() == CC_STACK_BYTES);
}

TEST_CASE("TIME_WAIT hand-off: FIN_WAIT1/2 or CLOSING to CLOSE, without a socket error") {
    Event e;
    e.kind = EventKind::state;
    e.new_state = TcpState::close;
    for (auto from : {TcpState::fin_wait1, TcpState::fin_wait2, TcpState::closing}) {
        e.old_state = from;
        CHECK(hands_to_time_wait(e));
    }
    e.socket_error = 104;
    CHECK(!hands_to_time_wait(e));
    e.socket_error = 0;
    e.old_state = TcpState::last_ack;
    CHECK(!hands_to_time_wait(e));
}

TEST_CASE("an opened record with the stack copied: registers, and only the bytes filled") {
    auto raw = std::make_unique<cc_open_copy_event>();
    raw->open.base.kind = CC_EV_OPENED;
    raw->open.base.id = 9;
    raw->open.base.tgid = 42;
    raw->open.base.flags = CC_FLAG_TASK | CC_FLAG_STACK_COPY;
    raw->open.base.aux = 0x7ffd1000;
    raw->open.stack_size = 8;
    raw->open.stack[0] = 0x401000;
    raw->regs = {0x401000, 0x7ffd1000, 0x7ffd1100, 3, 12, 13, 14, 15};
    raw->copy_size = 300;
    raw->copy[0] = 0x11;
    raw->copy[299] = 0x22;
    raw->copy[300] = 0x33; // beyond what the kernel filled

    const auto e = decode_event(bytes_of(*raw));
    REQUIRE(e);
    REQUIRE(e->registers);
    CHECK(e->registers->ip == 0x401000);
    CHECK(e->registers->sp == 0x7ffd1000);
    CHECK(e->registers->bp == 0x7ffd1100);
    CHECK(e->registers->r15 == 15);
    CHECK(e->stack == std::vector<std::uint64_t>{0x401000});
    REQUIRE(e->stack_bytes.size() == 300);
    CHECK(e->stack_bytes[0] == 0x11);
    CHECK(e->stack_bytes[299] == 0x22);

    raw->copy_size = -14; // EFAULT: the stack could not be read
    const auto failed = decode_event(bytes_of(*raw));
    REQUIRE(failed);
    CHECK(failed->copy_error == -14);
    CHECK(failed->stack_bytes.empty());
    // A record cut short is no event.
    CHECK_FALSE(decode_event(bytes_of(*raw, sizeof(cc_open_copy_event) - 1)));
}

TEST_CASE("a state record of an orphan that the kernel destroyed at once says so") {
    cc_event raw{};
    raw.kind = CC_EV_STATE;
    raw.id = 4;
    raw.old_state = 9; // LAST_ACK
    raw.new_state = 7; // CLOSE
    raw.flags = CC_FLAG_DESTROYED;
    const auto e = decode_event(bytes_of(raw));
    REQUIRE(e);
    CHECK(e->kind == EventKind::state);
    CHECK(e->destroyed_after);
    raw.flags = 0;
    CHECK_FALSE(decode_event(bytes_of(raw))->destroyed_after);
}

TEST_CASE(
    "a change record is completed from its connection's opened record and the thread's name") {
    cc_event raw = state_record(7, 301, 2, 1); // SYN_SENT to ESTABLISHED
    raw.local_port = 40001;
    auto change = decode_event(bytes_of(raw, CC_CHANGE_BYTES));
    REQUIRE(change);
    CHECK(change->local.port == 40001);
    CHECK(change->local.family == 0);
    CHECK(change->remote.port == 0);
    CHECK(change->thread.empty());

    std::vector<std::pair<pid_t, pid_t>> asked;
    ChangeCompleter completer([&](pid_t pid, pid_t tid) {
        asked.emplace_back(pid, tid);
        return std::string("closer");
    });
    Event opened;
    opened.kind = EventKind::opened;
    opened.connection = 7;
    opened.pid = 300;
    opened.tid = 302;
    opened.thread = "dialer";
    opened.local = *parse_endpoint("127.0.0.1:1");
    opened.local.port = 0; // SYN_SENT: connect() has not chosen one yet
    opened.remote = *parse_endpoint("127.0.0.1:443");
    completer.complete(opened);

    const Event decoded = *change;
    completer.complete(*change);
    CHECK(change->local == *parse_endpoint("127.0.0.1:40001"));
    CHECK(change->remote == *parse_endpoint("127.0.0.1:443"));
    CHECK(change->thread == "closer"); // thread 301 was in no whole record: asked once
    Event again = decoded;
    again.local.port = 0; // the kernel clears the port once the socket is unhashed
    completer.complete(again);
    CHECK(again.thread == "closer");
    CHECK(again.local.port == 40001);
    CHECK(asked == std::vector<std::pair<pid_t, pid_t>>{{300, 301}});

    Event by_opener = decoded; // the opening thread is named as its opened record named it
    by_opener.tid = 302;
    completer.complete(by_opener);
    CHECK(by_opener.thread == "dialer");

    Event softirq = decoded;
    softirq.tid = 0;
    softirq.kind = EventKind::destroyed;
    completer.complete(softirq);
    CHECK(softirq.thread.empty());
    CHECK(softirq.remote.port == 443);
    Event late = decoded; // destroyed: the connection is forgotten
    completer.complete(late);
    CHECK(late.remote.family == 0);
    CHECK(late.remote.port == 0);

    // Names last one drain: thread 301 is asked again.
    completer.forget_threads();
    Event next = decoded;
    completer.complete(next);
    CHECK(next.thread == "closer");
    CHECK(asked.size() == 2);
}

TEST_CASE("a traced socket's new connect() is a whole state record, and its peer is kept") {
    ChangeCompleter completer([](pid_t, pid_t) { return std::string(); });
    Event opened;
    opened.kind = EventKind::opened;
    opened.connection = 9;
    opened.pid = 300;
    opened.local = *parse_endpoint("127.0.0.1:1");
    opened.remote = *parse_endpoint("127.0.0.1:443");
    completer.complete(opened);

    cc_event raw = state_record(9, 303, 7, 2); // CLOSE (the first connect() failed) to SYN_SENT
    raw.family = AF_INET;
    raw.remote_port = 8443;
    const std::uint32_t loopback = htonl(INADDR_LOOPBACK);
    std::memcpy(raw.local_addr, &loopback, 4);
    std::memcpy(raw.remote_addr, &loopback, 4);
    std::strcpy(raw.comm, "redialer");
    auto again = decode_event(bytes_of(raw));
    REQUIRE(again);
    CHECK(again->thread == "redialer");
    completer.complete(*again);
    CHECK(again->remote == *parse_endpoint("127.0.0.1:8443"));

    raw.family = 0; // the next change record: short, completed with the new peer
    raw.new_state = 1;
    raw.local_port = 40002;
    auto established = decode_event(bytes_of(raw, CC_CHANGE_BYTES));
    REQUIRE(established);
    completer.complete(*established);
    CHECK(established->remote == *parse_endpoint("127.0.0.1:8443"));
    CHECK(established->local == *parse_endpoint("127.0.0.1:40002"));
    CHECK(established->thread == "redialer"); // named by the whole record, /proc not asked
}
