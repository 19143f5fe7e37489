// Classification and findings on hand-built socket records.
#include "conncheck/analysis.hpp"
#include "conncheck/report_json.hpp"

#include <cstdio>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>

using namespace conncheck;
using analysis::FindingKind;
using analysis::Severity;

namespace {

Endpoint v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port) {
    Endpoint e;
    e.family = AF_INET;
    e.addr = {a, b, c, d};
    e.port = port;
    return e;
}

std::uint64_t next_cookie = 1;

SocketRecord sock(TcpState state, const Endpoint& remote, std::uint32_t idle_ms = 100,
                  std::uint32_t rqueue = 0) {
    SocketRecord s;
    s.state = state;
    s.local = v4(10, 0, 0, 1, static_cast<std::uint16_t>(40000 + next_cookie));
    s.remote = remote;
    s.cookie = next_cookie++;
    s.inode = s.cookie + 1000;
    s.rqueue = rqueue;
    TcpInfoLite info;
    info.last_data_recv_ms = idle_ms;
    s.info = info;
    SkMemInfo mem;
    mem.fwd_alloc = 1000;
    mem.rmem_alloc = rqueue;
    s.mem = mem;
    return s;
}

SocketRecord time_wait(const Endpoint& remote, std::uint32_t expires_ms) {
    SocketRecord s;
    s.state = TcpState::time_wait;
    s.remote = remote;
    s.cookie = next_cookie++;
    s.timer = 3;
    s.expires_ms = expires_ms;
    return s;
}

const Endpoint exchange = v4(1, 2, 3, 4, 9443);
const Endpoint other_exchange = v4(5, 6, 7, 8, 443);

// The document report::write_json() streams for `h`, read back whole.
std::string streamed_json(const analysis::HostReport& h) {
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    report::write_json(f, h);
    std::rewind(f);
    std::string streamed;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;)
        streamed.append(buf, n);
    std::fclose(f);
    return streamed;
}

} // namespace

TEST_CASE("a healthy process gets no findings") {
    scan::ProcessSnapshot p;
    p.info.open_fds = 30;
    p.info.fd_limit.soft = 1024;
    p.sockets = {sock(TcpState::established, exchange, 50),
                 sock(TcpState::established, other_exchange, 80)};
    const auto r = analysis::analyse_process(p, {});
    CHECK(r.findings.empty());
    CHECK(r.states[TcpState::established] == 2);
    CHECK(r.kernel_memory_bytes == 2000);
    CHECK(r.peers.size() == 2);
}

TEST_CASE("close_wait: every CLOSE_WAIT is a leak, with idle range and unread data") {
    std::vector<SocketRecord> s = {sock(TcpState::close_wait, exchange, 5'000, 0),
                                   sock(TcpState::close_wait, exchange, 90'000, 120),
                                   sock(TcpState::established, exchange, 10)};
    const auto f = analysis::find_close_wait(s, {});
    REQUIRE(f.has_value());
    CHECK(f->count == 2);
    CHECK(f->severity == Severity::warning);
    REQUIRE(f->peers.size() == 1);
    CHECK(f->peers[0].idle_min_ms == 5'000U);
    CHECK(f->peers[0].idle_max_ms == 90'000U);
    CHECK(f->peers[0].unread_bytes == 120);
    CHECK(f->summary.find("2 sockets in CLOSE_WAIT") != std::string::npos);
    CHECK(f->summary.find("1 with unread data") != std::string::npos);

    std::vector<SocketRecord> many;
    for (int i = 0; i < 10; ++i)
        many.push_back(sock(TcpState::close_wait, exchange));
    CHECK(analysis::find_close_wait(many, {})->severity == Severity::critical);
    CHECK_FALSE(analysis::find_close_wait({sock(TcpState::established, exchange)}, {}).has_value());
}

TEST_CASE("stale_duplicate: silent siblings of a live connection to the same peer") {
    analysis::Config config;
    config.idle_ms = 60'000;
    std::vector<SocketRecord> s = {
        sock(TcpState::established, exchange, 200),           // live
        sock(TcpState::established, exchange, 3'600'000),     // zombie
        sock(TcpState::established, exchange, 61'000),        // zombie
        sock(TcpState::established, exchange, 60'000),        // exactly at the threshold: not stale
        sock(TcpState::established, other_exchange, 999'999), // alone: quiet, not a duplicate
    };
    const auto f = analysis::find_stale_duplicates(s, config);
    REQUIRE(f.has_value());
    CHECK(f->count == 2);
    REQUIRE(f->peers.size() == 1);
    CHECK(f->peers[0].remote == exchange);
    CHECK(f->peers[0].idle_min_ms == 61'000U);
}

TEST_CASE("stale_duplicate needs a live sibling") {
    std::vector<SocketRecord> all_silent = {sock(TcpState::established, exchange, 100'000),
                                            sock(TcpState::established, exchange, 200'000)};
    CHECK_FALSE(analysis::find_stale_duplicates(all_silent, {}).has_value());
    SocketRecord no_info = sock(TcpState::established, exchange, 100'000);
    no_info.info.reset();
    CHECK_FALSE(
        analysis::find_stale_duplicates({sock(TcpState::established, exchange, 1), no_info}, {})
            .has_value());
}

TEST_CASE("reconnect_churn: TIME_WAIT per peer with the close times from idiag_expires") {
    std::vector<SocketRecord> tw;
    for (std::uint32_t i = 0; i < 38; ++i)
        tw.push_back(time_wait(exchange, 58'000 - i * 1'500));
    for (std::uint32_t i = 0; i < 3; ++i)
        tw.push_back(time_wait(other_exchange, 30'000));
    const auto f = analysis::find_reconnect_churn(tw, {});
    REQUIRE(f.has_value());
    CHECK(f->count == 38); // the quiet peer is below the threshold
    REQUIRE(f->peers.size() == 1);
    CHECK(f->summary.find("38 connections to 1.2.3.4:9443 closed in the last 60 s") !=
          std::string::npos);
    // expires 58 s -> closed 2 s ago; expires 2.5 s -> closed 57.5 s ago
    bool saw_newest = false;
    for (const auto& [name, value] : f->figures) {
        if (name == "closed_newest_seconds_ago") {
            CHECK(value == doctest::Approx(2.0));
            saw_newest = true;
        }
        if (name == "closed_oldest_seconds_ago") CHECK(value == doctest::Approx(57.5));
    }
    CHECK(saw_newest);

    std::vector<SocketRecord> few(tw.begin(), tw.begin() + 9);
    CHECK_FALSE(analysis::find_reconnect_churn(few, {}).has_value());
}

TEST_CASE("fd_pressure at 80% and 95% of the soft limit") {
    proc::ProcessInfo info;
    info.fd_limit.soft = 1000;
    info.open_fds = 799;
    CHECK_FALSE(analysis::find_fd_pressure(info, {}).has_value());
    info.open_fds = 800;
    CHECK(analysis::find_fd_pressure(info, {})->severity == Severity::warning);
    info.open_fds = 950;
    CHECK(analysis::find_fd_pressure(info, {})->severity == Severity::critical);
    info.fd_limit.soft = 0; // unlimited
    CHECK_FALSE(analysis::find_fd_pressure(info, {}).has_value());
}

TEST_CASE("the incident: states, peers, findings ordered by severity") {
    scan::ProcessSnapshot p;
    p.info.pid = 4242;
    p.info.comm = "collector";
    p.info.open_fds = 112;
    p.info.fd_limit.soft = 1024;
    for (int i = 0; i < 18; ++i)
        p.sockets.push_back(sock(TcpState::established, other_exchange, 100));
    p.sockets.push_back(sock(TcpState::established, exchange, 100));
    for (int i = 0; i < 26; ++i)
        p.sockets.push_back(sock(TcpState::established, exchange, 7'200'000));
    for (int i = 0; i < 12; ++i)
        p.sockets.push_back(sock(TcpState::close_wait, exchange, 3'000'000, 64));
    for (int i = 0; i < 40; ++i)
        p.time_wait_by_peer.push_back(
            time_wait(exchange, 1'000 + 1'400 * static_cast<std::uint32_t>(i)));
    const auto r = analysis::analyse_process(p, {});
    CHECK(r.states[TcpState::established] == 45);
    CHECK(r.states[TcpState::close_wait] == 12);
    CHECK(r.states[TcpState::time_wait] == 40);
    CHECK(r.states.total() == 97);
    CHECK(r.time_wait_by_peer == 40);
    CHECK(r.stale == 26);
    REQUIRE(r.findings.size() == 3);
    CHECK(r.findings[0].kind == FindingKind::close_wait);
    CHECK(r.findings[0].severity == Severity::critical);
    REQUIRE(r.peers.size() == 2);
    CHECK(r.peers[0].remote == exchange);
    CHECK(r.peers[0].states[TcpState::time_wait] == 40);
    CHECK(r.peers[0].unread_bytes == 12 * 64);

    const auto j = report::to_json(r);
    CHECK(j["states"]["close_wait"] == 12);
    CHECK(j["states"]["fin_wait2"] == 0);
    CHECK(j["stale_duplicates"] == 26);
    CHECK(j["findings"][0]["kind"] == "close_wait");
    CHECK(j["findings"][0]["evidence"]["count"] == 12);
    CHECK(j["peers"][0]["remote"] == "1.2.3.4:9443");
    CHECK(j["fds"]["soft_limit"] == 1024);
}

TEST_CASE("host-wide ranking: CLOSE_WAIT, then stale, then ESTABLISHED; empty processes dropped") {
    scan::Snapshot snap;
    auto add = [&](pid_t pid, int est, int cw) {
        scan::ProcessSnapshot p;
        p.info.pid = pid;
        for (int i = 0; i < est; ++i)
            p.sockets.push_back(
                sock(TcpState::established, v4(9, 9, 9, static_cast<std::uint8_t>(i), 1)));
        for (int i = 0; i < cw; ++i)
            p.sockets.push_back(sock(TcpState::close_wait, exchange));
        snap.processes.push_back(p);
    };
    add(1, 50, 0);
    add(2, 1, 3);
    add(3, 0, 0);
    add(4, 70, 0);
    const auto h = analysis::analyse(snap, {}, true);
    REQUIRE(h.processes.size() == 3);
    CHECK(h.processes[0].info.pid == 2);
    CHECK(h.processes[1].info.pid == 4);
    CHECK(h.processes[2].info.pid == 1);
    const auto j = report::to_json(h);
    CHECK(j["schema"] == 1);
    CHECK(j["processes"].size() == 3);

    // The streamed document is the same text, byte for byte.
    CHECK(streamed_json(h) == j.dump(2) + "\n");
    const analysis::HostReport empty;
    CHECK(streamed_json(empty) == report::to_json(empty).dump(2) + "\n");
}

TEST_CASE("streamed peer rows print idle seconds and addresses as the JSON tree does") {
    analysis::HostReport h;
    analysis::ProcessReport r;
    r.info.pid = 7;
    const std::optional<std::uint32_t> idles[] = {
        std::nullopt, 0U, 1U, 10U, 999U, 1000U, 1500U, 60010U, 123456789U, 4294967295U};
    std::uint8_t n = 0;
    for (const auto& idle : idles) {
        analysis::PeerRow row;
        row.remote = v4(10, 0, 0, ++n, 443);
        row.states[TcpState::established] = n;
        row.states[TcpState::close_wait] = 2;
        row.states[TcpState::syn_sent] = 1;
        row.idle_min_ms = idle ? std::optional<std::uint32_t>(*idle / 3) : std::nullopt;
        row.idle_max_ms = idle;
        row.unread_bytes = 1000U * n;
        r.peers.push_back(row);
    }
    analysis::PeerRow v6_row;
    v6_row.remote.family = AF_INET6;
    v6_row.remote.addr[15] = 1;
    v6_row.remote.port = 8443;
    r.peers.push_back(v6_row);
    h.processes.push_back(r);

    const std::string streamed = streamed_json(h);
    CHECK(streamed == report::to_json(h).dump(2) + "\n");
    CHECK(streamed.find("\"idle_max_seconds\": 1.5,") != std::string::npos);
    CHECK(streamed.find("\"remote\": \"[::1]:8443\"") != std::string::npos);
}

TEST_CASE("JSON never carries raw control bytes or invalid UTF-8 from a process") {
    scan::ProcessSnapshot p;
    p.info.comm = "evil\x1b]0;pwned\x07";
    p.info.cmdline = "\xff\xfe";
    const auto j = report::to_json(analysis::analyse_process(p, {}));
    const std::string dumped = j.dump(); // throws on invalid UTF-8
    CHECK(dumped.find('\x1b') == std::string::npos);
    CHECK(j["comm"] == "evil\\x1b]0;pwned\\x07");
}

TEST_CASE("held_after_close: TCP sockets in CLOSE still held are a leak, with the peers known") {
    const auto server = v4(10, 0, 0, 5, 8080);
    scan::ProcessSnapshot p;
    p.info.pid = 4242;
    p.sockets.push_back(sock(TcpState::established, server));
    p.sockets.push_back(sock(TcpState::close_wait, server));
    // One bound to an explicit port is still listed by the kernel, in state CLOSE.
    p.sockets.push_back(sock(TcpState::close, server));
    // Three gone from the tables: two seen live before (one in CLOSE_WAIT), one never.
    scan::HeldAfterClose a;
    a.inode = 900;
    a.fd = 9;
    a.cookie = 77;
    a.remote = server;
    a.last_state = TcpState::close_wait;
    a.closed_for_ms = 42'000;
    scan::HeldAfterClose b = a;
    b.inode = 901;
    b.last_state = TcpState::established;
    b.closed_for_ms = 0;
    scan::HeldAfterClose c;
    c.inode = 902;
    p.held_after_close = {a, b, c};

    analysis::Config config;
    const auto r = analysis::analyse_process(p, config);
    CHECK(r.held_after_close == 4);
    CHECK(r.states[TcpState::close] == 4);
    CHECK(analysis::leaked_sockets(r) == 5); // 1 CLOSE_WAIT + 4 held
    REQUIRE(r.findings.size() == 2);
    const analysis::Finding* f = &r.findings[0];
    for (const auto& finding : r.findings)
        if (finding.kind == FindingKind::held_after_close) f = &finding;
    REQUIRE(f->kind == FindingKind::held_after_close);
    CHECK(f->count == 4);
    CHECK(f->severity == Severity::warning);
    REQUIRE(f->peers.size() == 1);
    CHECK(f->peers[0].remote == server);
    CHECK(f->peers[0].count == 3); // the bound one and the two seen before
    CHECK(f->summary.find("4 sockets") != std::string::npos);
    CHECK(f->summary.find("1 of them seen in CLOSE_WAIT before") != std::string::npos);
    CHECK(f->summary.find("closed for 42s at least") != std::string::npos);
    CHECK(analysis::kind_name(f->kind) == "held_after_close");

    // As many as the CLOSE_WAIT critical threshold: critical.
    for (std::uint64_t i = 0; i < 10; ++i) {
        scan::HeldAfterClose h;
        h.inode = 1000 + i;
        p.held_after_close.push_back(h);
    }
    const auto many = analysis::find_held_after_close(p.sockets, p.held_after_close, config);
    REQUIRE(many);
    CHECK(many->severity == Severity::critical);
    CHECK_FALSE(analysis::find_held_after_close({}, {}, config));
}
