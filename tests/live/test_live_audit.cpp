// Real sockets on loopback in known states, audited through the scanner: the counts must be
// exactly what the test built, and a healthy process must get no findings.
#include "conncheck/analysis.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/watch/session.hpp"

#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace conncheck;
using namespace testsupport;

namespace {

analysis::ProcessReport audit(pid_t pid, const analysis::Config& config = {}) {
    scan::Scanner scanner(scan::Config{});
    const auto snapshot = scanner.scan_pids({pid});
    REQUIRE(snapshot.processes.size() == 1);
    return analysis::analyse_process(snapshot.processes.front(), config);
}

bool has_finding(const analysis::ProcessReport& r, analysis::FindingKind kind) {
    return std::any_of(r.findings.begin(), r.findings.end(),
                       [kind](const analysis::Finding& f) { return f.kind == kind; });
}

} // namespace

TEST_CASE("a child holding ESTABLISHED (v4 and v6), CLOSE_WAIT and TIME_WAIT sockets") {
    const Listener main4 = listen_loopback(AF_INET);
    const Listener main6 = listen_loopback(AF_INET6);
    const Listener dropper = listen_loopback(AF_INET);
    Child child([&] {
        close(main4.fd);
        close(main6.fd);
        close(dropper.fd);
        for (int i = 0; i < 3; ++i)
            (void)connect_to(main4);
        (void)connect_to(main6);
        for (int i = 0; i < 2; ++i)
            (void)connect_to(dropper); // the server will close these
        connect_then_close(main4, 2);  // we close first: TIME_WAIT here
    });

    // The server side: closing the dropper's connections leaves the child in CLOSE_WAIT; closing
    // the ones the child already closed (CLOSE_WAIT on our side) moves the child's to TIME_WAIT.
    std::vector<int> keep = close_the_closed(accept_all(main4, 5), 2);
    keep.push_back(accept_from(main6));
    for (int fd : accept_all(dropper, 2))
        close(fd);

    // The TIME_WAIT sockets are the ones the kernel keeps (see kernel_time_wait_toward).
    analysis::ProcessReport r;
    std::size_t time_wait = 0;
    const bool settled = wait_until(
        [&] {
            r = audit(child.pid());
            time_wait = kernel_time_wait_toward(main4);
            return r.states[TcpState::close_wait] == 2 && time_wait >= 1 &&
                   r.states[TcpState::time_wait] == time_wait;
        },
        20s);
    REQUIRE(settled);
    CHECK(r.states[TcpState::established] == 4);
    CHECK(r.states[TcpState::close_wait] == 2);
    CHECK(r.states[TcpState::listen] == 0);
    CHECK(r.time_wait_by_peer == time_wait);
    CHECK(r.time_wait_exact == 0);
    CHECK(r.states.total() == 6 + time_wait);
    CHECK(r.kernel_memory_bytes > 0);
    CHECK(r.info.open_fds >= 6);
    REQUIRE(!r.findings.empty());
    CHECK(r.findings.front().kind == analysis::FindingKind::close_wait);
    CHECK(r.findings.front().count == 2);
    CHECK_FALSE(has_finding(r, analysis::FindingKind::stale_duplicate));
    CHECK_FALSE(has_finding(r, analysis::FindingKind::reconnect_churn));
    const bool v6_seen =
        std::any_of(r.peers.begin(), r.peers.end(), [&](const analysis::PeerRow& p) {
            return p.remote.port == main6.port && p.remote.to_string().front() == '[';
        });
    CHECK(v6_seen);
    for (int fd : keep)
        close(fd);
    for (int fd : {main4.fd, main6.fd, dropper.fd})
        close(fd);
}

TEST_CASE("a healthy process gets no findings") {
    const Listener l = listen_loopback(AF_INET);
    Child child([&] {
        close(l.fd);
        (void)connect_to(l);
        (void)connect_to(l);
    });
    auto accepted = accept_all(l, 2);
    const auto r = audit(child.pid());
    CHECK(r.states[TcpState::established] == 2);
    CHECK(r.states.total() == 2);
    CHECK(r.findings.empty());
    for (int fd : accepted)
        close(fd);
    close(l.fd);
}

TEST_CASE("reconnect churn: TIME_WAIT toward the process's peer, attributed by peer endpoint") {
    const Listener l = listen_loopback(AF_INET);
    Child child([&] {
        close(l.fd);
        (void)connect_to(l); // the live connection
        connect_then_close(l, 12);
    });
    const auto accepted = close_the_closed(accept_all(l, 13), 12);
    // Every TIME_WAIT the kernel holds toward the peer is the process's, and at least the
    // finding's 10 of the 12 are there (see kernel_time_wait_toward).
    analysis::ProcessReport r;
    std::size_t in_kernel = 0;
    const bool settled = wait_until(
        [&] {
            r = audit(child.pid());
            in_kernel = kernel_time_wait_toward(l);
            return in_kernel >= 10 && r.states[TcpState::time_wait] == in_kernel;
        },
        20s);
    if (!settled)
        for (const auto& p : r.peers)
            MESSAGE("peer " << p.remote.to_string() << ": established "
                            << p.states[TcpState::established] << ", time_wait "
                            << p.states[TcpState::time_wait]);
    CAPTURE(r.time_wait_exact);
    CAPTURE(r.time_wait_by_peer);
    CAPTURE(in_kernel);
    REQUIRE(settled);
    CHECK(r.time_wait_by_peer == in_kernel);
    CHECK(r.states[TcpState::established] == 1);
    REQUIRE(has_finding(r, analysis::FindingKind::reconnect_churn));
    CHECK(r.findings.front().count == in_kernel);
    for (int fd : accepted)
        close(fd);
    close(l.fd);
}

TEST_CASE("stale duplicates: a silent connection beside a live one to the same peer") {
    const Listener l = listen_loopback(AF_INET);
    const int zombie = connect_to(l);
    const int zombie_server = accept_from(l);
    const int live = connect_to(l);
    const int live_server = accept_from(l);
    analysis::Config config;
    config.idle_ms = 200;
    // Keep the live one talking until the zombie has been silent past the threshold.
    analysis::ProcessReport r;
    const bool found = wait_until(
        [&] {
            const char byte = 'x';
            REQUIRE(write(live_server, &byte, 1) == 1);
            char sink[16];
            REQUIRE(read(live, sink, sizeof sink) == 1);
            r = audit(getpid(), config);
            return has_finding(r, analysis::FindingKind::stale_duplicate);
        },
        20s, 50ms);
    REQUIRE(found);
    for (const auto& f : r.findings) {
        if (f.kind != analysis::FindingKind::stale_duplicate) continue;
        REQUIRE(f.peers.size() == 1);
        CHECK(f.peers[0].remote.port == l.port);
        CHECK(f.count == 1);
    }
    for (int fd : {zombie, zombie_server, live, live_server, l.fd})
        close(fd);
}

TEST_CASE("TIME_WAIT of a socket seen live earlier is attributed exactly by its cookie") {
    const Listener l = listen_loopback(AF_INET);
    const int client = connect_to(l);
    const int server = accept_from(l);
    sockaddr_in local{};
    socklen_t len = sizeof local;
    REQUIRE(getsockname(client, reinterpret_cast<sockaddr*>(&local), &len) == 0);
    const std::uint16_t client_port = ntohs(local.sin_port);

    scan::Scanner scanner(scan::Config{});
    auto first = scanner.scan_pids({getpid()}); // the scanner remembers the cookies it saw
    std::uint64_t cookie = 0;
    for (const auto& s : first.processes.front().sockets)
        if (s.local.port == client_port && s.state == TcpState::established) cookie = s.cookie;
    REQUIRE(cookie != 0);

    close(client);
    REQUIRE(wait_until([&] { return tcp_state_of(server) == TCP_CLOSE_WAIT; }, 20s));
    close(server);
    close(l.fd); // no live peer left: only the cookie can name the owner now

    scan::Snapshot second;
    const SocketRecord* found = nullptr;
    REQUIRE(wait_until(
        [&] {
            second = scanner.scan_pids({getpid()});
            found = nullptr;
            for (const auto& s : second.processes.front().sockets)
                if (s.cookie == cookie) found = &s;
            return found != nullptr && found->state == TcpState::time_wait;
        },
        20s));
    CHECK(found->local.port == client_port);
    CHECK(second.processes.front().time_wait_exact >= 1);
    CHECK(found->inode == 0);
}

TEST_CASE("an IPv4 peer reached through IPv4 and IPv4-mapped IPv6 sockets is one peer") {
    const Listener both = listen_loopback(AF_INET);     // one v4 and one mapped connection
    const Listener churning = listen_loopback(AF_INET); // mapped live, v4 closed first
    Child child([&] {
        close(both.fd);
        close(churning.fd);
        (void)connect_to(both);
        (void)connect_mapped(both);
        (void)connect_mapped(churning);
        connect_then_close(churning, 2); // TIME_WAIT here, toward the mapped socket's peer
    });
    auto kept = accept_all(both, 2);
    for (int fd : close_the_closed(accept_all(churning, 3), 2))
        kept.push_back(fd);
    analysis::ProcessReport r;
    std::size_t time_wait = 0;
    REQUIRE(wait_until(
        [&] {
            r = audit(child.pid());
            time_wait = kernel_time_wait_toward(churning);
            return r.states[TcpState::established] == 3 && time_wait >= 1 &&
                   r.states[TcpState::time_wait] == time_wait;
        },
        20s));
    CHECK(r.time_wait_by_peer == time_wait);
    std::size_t both_rows = 0;
    for (const auto& p : r.peers) {
        if (p.remote.port == both.port) {
            ++both_rows;
            CHECK(p.remote.family == AF_INET);
            CHECK(p.states[TcpState::established] == 2);
            CHECK(p.remote.to_string() == endpoint_string(both));
        }
        if (p.remote.port == churning.port) {
            CHECK(p.states[TcpState::established] == 1);
            CHECK(p.states[TcpState::time_wait] == time_wait);
        }
    }
    CHECK(both_rows == 1);
    CHECK(r.peers.size() == 2);
    for (int fd : kept)
        close(fd);
    close(both.fd);
    close(churning.fd);
}

TEST_CASE("CLOSE_WAIT unread data counts data bytes, not the peer's FIN") {
    const Listener l = listen_loopback(AF_INET);
    Child child([&] {
        close(l.fd);
        (void)connect_to(l); // the server closes without a word
        (void)connect_to(l); // the server sends 5 bytes, then closes
    });
    const int silent = accept_from(l);
    const int talker = accept_from(l);
    REQUIRE(write(talker, "hello", 5) == 5);
    close(silent);
    close(talker);
    analysis::ProcessReport r;
    REQUIRE(wait_until(
        [&] {
            r = audit(child.pid());
            return r.states[TcpState::close_wait] == 2;
        },
        20s));
    REQUIRE(!r.findings.empty());
    const analysis::Finding& f = r.findings.front();
    REQUIRE(f.kind == analysis::FindingKind::close_wait);
    const auto figure = [&f](std::string_view name) {
        for (const auto& [n, v] : f.figures)
            if (n == name) return v;
        FAIL("no figure ", name);
        return -1.0;
    };
    CHECK(figure("unread_bytes") == 5);
    CHECK(figure("sockets_with_unread_data") == 1);
    CHECK(f.summary.find("1 with unread data") != std::string::npos);
    REQUIRE(r.peers.size() == 1);
    CHECK(r.peers.front().unread_bytes == 5);
    close(l.fd);
}

TEST_CASE("socket fds in no TCP state are counted (UDP, unix); closed TCP is held after close") {
    const Listener l = listen_loopback(AF_INET);
    // The baseline inherits what the leaky child inherits from this process: only the
    // difference is the child's doing.
    Child baseline([&] { close(l.fd); });
    Child leaky([&] {
        close(l.fd);
        (void)connect_to(l);                   // ESTABLISHED
        (void)connect_to(l);                   // reset by the server: closed, still an fd
        (void)socket(AF_INET, SOCK_STREAM, 0); // never connected
        (void)socket(AF_INET6, SOCK_DGRAM, 0); // UDP
        int pair[2];
        (void)socketpair(AF_UNIX, SOCK_STREAM, 0, pair); // two unix sockets
    });
    const int kept = accept_from(l);
    const int reset = accept_from(l);
    const linger abort_on_close{1, 0};
    REQUIRE(setsockopt(reset, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) == 0);
    close(reset); // an RST: the child's socket goes to CLOSE and leaves the kernel's tables

    const auto base = audit(baseline.pid());
    const auto before = base.other_sockets;
    analysis::ProcessReport r;
    REQUIRE(wait_until(
        [&] {
            r = audit(leaky.pid());
            return r.held_after_close == base.held_after_close + 2;
        },
        20s));
    CHECK(r.states[TcpState::established] == 1);
    CHECK(r.states[TcpState::close] == base.states[TcpState::close] + 2);
    CHECK(r.other_sockets.tcp == before.tcp);
    CHECK(r.other_sockets.udp == before.udp + 1);
    CHECK(r.other_sockets.unix_domain == before.unix_domain + 2);
    CHECK(r.other_sockets.other == before.other);
    CHECK(r.other_sockets.total() == before.total() + 3);
    CHECK(r.other_netns_sockets == 0);
    const auto held = std::find_if(r.findings.begin(), r.findings.end(), [](const auto& f) {
        return f.kind == analysis::FindingKind::held_after_close;
    });
    REQUIRE(held != r.findings.end());
    CHECK(held->count == r.held_after_close);
    close(kept);
    close(l.fd);
}

TEST_CASE("a keep-alive client reset while watched: held after close, its peer, never a close") {
    // The client's connections get our FIN (CLOSE_WAIT, never closed), then we forget them: an
    // abortive close sends the reset a forgotten connection's keep-alive probe would get.
    const Listener l = listen_loopback(AF_INET);
    Child client([&] {
        close(l.fd);
        for (int i = 0; i < 3; ++i)
            (void)connect_to(l);
    });
    std::vector<int> ends = accept_all(l, 3);
    for (int fd : ends) {
        REQUIRE(shutdown(fd, SHUT_WR) == 0);
        REQUIRE(wait_until([&] { return tcp_state_of(fd) == TCP_FIN_WAIT2; }, 5s));
    }
    scan::Scanner scanner(scan::Config{});
    watch::Session session(watch::Options{});
    std::int64_t now_ms = 0;
    const auto tick = [&] {
        const auto snapshot = scanner.scan_pids({client.pid()});
        now_ms += 1000;
        session.update(snapshot, now_ms, 1'792'000'000 + now_ms / 1000);
        return snapshot.processes.at(0);
    };
    const auto before = tick();
    REQUIRE(std::count_if(before.sockets.begin(), before.sockets.end(),
                          [](const auto& s) { return s.state == TcpState::close_wait; }) == 3);

    const linger abort_now{1, 0};
    for (int fd : {ends[0], ends[1]}) {
        REQUIRE(setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) == 0);
        close(fd);
    }
    scan::ProcessSnapshot after;
    REQUIRE(wait_until(
        [&] {
            after = tick();
            return after.held_after_close.size() == 2;
        },
        10s));
    for (const auto& h : after.held_after_close) {
        CHECK(h.cookie != 0);
        REQUIRE(h.remote);
        CHECK(h.remote->port == l.port);
        CHECK(h.last_state == TcpState::close_wait);
        CHECK(h.fd >= 0);
    }
    const auto later = tick();
    REQUIRE(later.held_after_close.size() == 2);
    CHECK(later.held_after_close[0].closed_for_ms > 0);

    const auto r = analysis::analyse_process(later, {});
    CHECK(r.held_after_close == 2);
    CHECK(r.states[TcpState::close_wait] == 1);
    CHECK(analysis::leaked_sockets(r) == 3);
    const auto held = std::find_if(r.findings.begin(), r.findings.end(), [](const auto& f) {
        return f.kind == analysis::FindingKind::held_after_close;
    });
    REQUIRE(held != r.findings.end());
    REQUIRE(held->peers.size() == 1);
    CHECK(held->peers[0].count == 2);
    CHECK(held->summary.find("2 of them seen in CLOSE_WAIT before") != std::string::npos);

    const auto frame = session.frame();
    REQUIRE(frame.processes.size() == 1);
    CHECK(frame.processes[0].held_after_close == 2);
    CHECK(frame.processes[0].leaked.current == 3);
    CHECK(frame.processes[0].churn.closed_total == 0); // the client never called close()
    close(ends[2]);
    close(l.fd);
}
