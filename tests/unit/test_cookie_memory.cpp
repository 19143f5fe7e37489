// The scanner's memory of who held which socket cookie, fed hand-built snapshots.
#include "conncheck/cookie_memory.hpp"
#include "conncheck/scan.hpp"

#include <doctest/doctest.h>
#include <vector>

using namespace conncheck;
using scan::CookieMemory;

namespace {

SocketRecord socket(std::uint64_t cookie, TcpState state) {
    SocketRecord s;
    s.cookie = cookie;
    s.state = state;
    s.inode = state == TcpState::time_wait ? 0 : cookie + 1000;
    return s;
}

scan::ProcessSnapshot process(pid_t pid, std::uint64_t start_ticks,
                              std::vector<SocketRecord> sockets) {
    scan::ProcessSnapshot p;
    p.info.pid = pid;
    p.info.start_ticks = start_ticks;
    p.sockets = std::move(sockets);
    return p;
}

scan::Snapshot snapshot(std::vector<scan::ProcessSnapshot> processes) {
    scan::Snapshot s;
    s.processes = std::move(processes);
    return s;
}

} // namespace

TEST_CASE("the sockets a process held in the last scan, listeners left out") {
    CookieMemory memory;
    memory.update(snapshot({process(10, 5,
                                    {socket(1, TcpState::established), socket(2, TcpState::listen),
                                     socket(3, TcpState::time_wait)})}),
                  0);
    CHECK(memory.held_by(10) == std::vector<std::uint64_t>{1, 3});
    CHECK(memory.owners().at(1) == 10);
    CHECK_FALSE(memory.owners().contains(2)); // a listener never turns TIME_WAIT
    // Closed since: still an owner for the linger time, no longer held.
    memory.update(snapshot({process(10, 5, {socket(3, TcpState::time_wait)})}), 1000);
    CHECK(memory.held_by(10) == std::vector<std::uint64_t>{3});
    CHECK(memory.owners().contains(1));
}

TEST_CASE("cookies from an earlier run belong to the same instance only") {
    CookieMemory memory;
    const std::vector<std::uint64_t> cookies{7, 8};
    memory.remember(10, 5, cookies, 0);
    memory.remember(11, 6, cookies, 0); // a cookie already remembered stays with its first owner
    CHECK(memory.owners().at(7) == 10);
    CHECK(memory.held_by(10).empty()); // remembered, not seen by a scan
    memory.note_instance(10, 5);
    CHECK(memory.owners().contains(8));
    // The kernel gave pid 10 to another process: the old one's cookies are not its.
    memory.note_instance(10, 99);
    CHECK_FALSE(memory.owners().contains(7));
    CHECK_FALSE(memory.owners().contains(8));
}

TEST_CASE("a socket shared across fork stays with the process it was first seen in") {
    CookieMemory memory;
    memory.update(snapshot({process(10, 5, {socket(1, TcpState::established)})}), 0);
    memory.update(snapshot({process(10, 5, {socket(1, TcpState::established)}),
                            process(20, 6, {socket(1, TcpState::established)})}),
                  1000);
    CHECK(memory.owners().at(1) == 10);
    memory.forget_process(10);
    CHECK(memory.owners().empty());
}
