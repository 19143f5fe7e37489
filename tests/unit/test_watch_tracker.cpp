// Cookie bookkeeping between watch ticks (the scanner's CookieMemory and watch's churn tracker),
// and the Session that turns snapshots into frames. A small fake of scan_pids' contract stands in
// for the kernel: sockets whose inode the process holds, TIME_WAIT attributed exactly by the
// remembered cookies, the rest of TIME_WAIT toward the process's peers by peer.
#include "conncheck/cookie_memory.hpp"
#include "conncheck/watch/session.hpp"
#include "conncheck/watch/tracker.hpp"
#include "human_text.hpp"
#include "watch_output.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <set>
#include <sys/socket.h>

using namespace conncheck;
using namespace conncheck::watch;

namespace {

constexpr pid_t pid = 4242;

Endpoint v4(std::uint8_t d, std::uint16_t port) {
    Endpoint e;
    e.family = AF_INET;
    e.addr = {10, 0, 0, d};
    e.port = port;
    return e;
}

const Endpoint exchange = v4(5, 443);

// A connection of ours toward `remote`, with its cookie and inode.
SocketRecord conn(std::uint64_t cookie, TcpState state, const Endpoint& remote = exchange) {
    SocketRecord s;
    s.state = state;
    s.cookie = cookie;
    s.local = v4(1, static_cast<std::uint16_t>(40000 + cookie));
    s.remote = remote;
    s.inode = state == TcpState::time_wait ? 0 : cookie + 100'000;
    if (state == TcpState::time_wait) {
        s.timer = 3;
        s.expires_ms = 59'000;
    }
    return s;
}

// What scan_pids would return for one process on a host with `host` sockets, given the owners
// its CookieMemory knows.
scan::Snapshot fake_scan(const std::vector<SocketRecord>& host, const std::set<std::uint64_t>& held,
                         const scan::CookieOwners& known, std::uint64_t open_fds = 20,
                         std::uint64_t fd_limit = 1024, std::uint64_t start_ticks = 77) {
    scan::Snapshot snap;
    snap.source = diag::SourceKind::netlink;
    scan::ProcessSnapshot p;
    p.info.pid = pid;
    p.info.comm = "collector";
    p.info.cmdline = "collector --url wss://x";
    p.info.open_fds = open_fds;
    p.info.fd_limit.soft = fd_limit;
    p.info.start_ticks = start_ticks;
    std::set<Endpoint> peers;
    for (const auto& s : host) {
        if (s.inode != 0 && held.contains(s.inode)) {
            p.sockets.push_back(s);
            peers.insert(s.remote);
        }
    }
    for (const auto& s : host) {
        if (s.state != TcpState::time_wait) continue;
        const auto k = known.find(s.cookie);
        if (k != known.end() && k->second == pid) {
            p.sockets.push_back(s);
            ++p.time_wait_exact;
        } else if (peers.contains(s.remote)) {
            p.time_wait_by_peer.push_back(s);
        }
    }
    snap.processes.push_back(std::move(p));
    return snap;
}

std::set<std::uint64_t> inodes_of(const std::vector<SocketRecord>& host) {
    std::set<std::uint64_t> out;
    for (const auto& s : host)
        if (s.inode != 0) out.insert(s.inode);
    return out;
}

// The scanner's side of one tick: the scan, then its cookies remembered for the next.
scan::Snapshot scan_tick(scan::CookieMemory& memory, const std::vector<SocketRecord>& host,
                         std::int64_t now_ms, std::uint64_t open_fds = 20,
                         std::uint64_t fd_limit = 1024, std::uint64_t start_ticks = 77) {
    auto snap = fake_scan(host, inodes_of(host), memory.owners(), open_fds, fd_limit, start_ticks);
    memory.update(snap, now_ms);
    return snap;
}

struct Ticker {
    scan::CookieMemory memory;
    CookieTracker tracker;
    std::int64_t now = 0;
    scan::Snapshot last;
    void tick(const std::vector<SocketRecord>& host, std::int64_t step_ms = 1000) {
        now += step_ms;
        last = scan_tick(memory, host, now);
        tracker.begin_tick(now);
        for (const auto& p : last.processes)
            tracker.observe(p);
        tracker.end_tick();
    }
};

const Row& state_row(const ProcessFrame& p, TcpState state) {
    for (const auto& s : p.states)
        if (s.state == state) return s.row;
    FAIL("no row for state");
    static Row none;
    return none;
}

} // namespace

TEST_CASE("a socket watch saw ESTABLISHED is attributed exactly once it is TIME_WAIT") {
    Ticker t;
    t.tick({conn(1, TcpState::established), conn(2, TcpState::established)});
    REQUIRE(t.memory.owners().contains(1));
    CHECK(t.memory.owners().at(1) == pid);

    // Cookie 1 closed actively: inode gone, cookie kept by the TIME_WAIT socket.
    t.tick({conn(1, TcpState::time_wait), conn(2, TcpState::established)});
    const auto& p = t.last.processes.front();
    CHECK(p.time_wait_exact == 1);
    CHECK(p.time_wait_by_peer.empty());
    const auto churn = t.tracker.churn(pid);
    CHECK(churn.closed_total == 1);
    CHECK(churn.opened_total == 0);
    // It stays exact on later ticks, and is forgotten when the kernel drops it.
    t.tick({conn(1, TcpState::time_wait), conn(2, TcpState::established)});
    CHECK(t.last.processes.front().time_wait_exact == 1);
    CHECK(t.tracker.churn(pid).closed_total == 1);
    t.tick({conn(2, TcpState::established)});
    CHECK_FALSE(t.memory.owners().contains(1));
    CHECK(t.tracker.tracked_cookies() == 1);
}

TEST_CASE("a TIME_WAIT whose live socket watch never saw is attributed by peer only") {
    Ticker t;
    t.tick({conn(2, TcpState::established)});
    // Cookie 3 opened and closed between the ticks.
    t.tick({conn(2, TcpState::established), conn(3, TcpState::time_wait)});
    const auto& p = t.last.processes.front();
    CHECK(p.time_wait_exact == 0);
    REQUIRE(p.time_wait_by_peer.size() == 1);
    CHECK_FALSE(t.memory.owners().contains(3)); // a guess is never handed on as an owner
    const auto churn = t.tracker.churn(pid);
    CHECK(churn.opened_total == 1);
    CHECK(churn.closed_total == 1);
    CHECK(churn.short_lived_total == 1);
    // Seen again next tick: the same close, not another one.
    t.tick({conn(2, TcpState::established), conn(3, TcpState::time_wait)});
    CHECK(t.tracker.churn(pid).closed_total == 1);
}

TEST_CASE("TIME_WAIT present at the first tick is baseline, not churn") {
    Ticker t;
    t.tick({conn(2, TcpState::established), conn(3, TcpState::time_wait)});
    CHECK(t.last.processes.front().time_wait_by_peer.size() == 1);
    const auto churn = t.tracker.churn(pid);
    CHECK(churn.opened_total == 0);
    CHECK(churn.closed_total == 0);
    CHECK_FALSE(churn.opened_per_minute); // no rate from a single tick
}

TEST_CASE("a closed socket that turns TIME_WAIT later is one close, still attributed exactly") {
    Ticker t;
    t.tick({conn(1, TcpState::established), conn(2, TcpState::established)});
    // Closed by the process, waiting in FIN_WAIT2 for the peer: no inode, not reported as ours.
    t.tick({conn(2, TcpState::established)});
    CHECK(t.tracker.churn(pid).closed_total == 1);
    CHECK(t.memory.owners().contains(1)); // kept for the TIME_WAIT to come
    t.tick({conn(1, TcpState::time_wait), conn(2, TcpState::established)});
    CHECK(t.last.processes.front().time_wait_exact == 1);
    CHECK(t.tracker.churn(pid).closed_total == 1);
}

TEST_CASE("a closed socket that never comes back is forgotten after the linger time") {
    scan::CookieMemory memory(5000);
    CookieTracker tracker(5000);
    std::int64_t now = 0;
    auto tick = [&](const std::vector<SocketRecord>& host) {
        now += 1000;
        const auto snap = scan_tick(memory, host, now);
        tracker.begin_tick(now);
        tracker.observe(snap.processes.front());
        tracker.end_tick();
    };
    tick({conn(1, TcpState::established), conn(2, TcpState::established)});
    tick({conn(2, TcpState::established)});
    CHECK(memory.owners().contains(1));
    for (int i = 0; i < 5; ++i)
        tick({conn(2, TcpState::established)});
    CHECK(memory.owners().contains(1));
    tick({conn(2, TcpState::established)});
    CHECK_FALSE(memory.owners().contains(1));
    CHECK(tracker.tracked_cookies() == 1);
}

TEST_CASE("opened and closed per minute, and the reconnect rate toward each peer") {
    Ticker t;
    const Endpoint flaky = v4(9, 8443);
    std::vector<SocketRecord> host{conn(1, TcpState::established)};
    t.tick(host);
    std::uint64_t cookie = 100;
    // For 30 s: each second one connection to `flaky` opens and the previous one closes.
    for (int i = 0; i < 30; ++i) {
        host = {conn(1, TcpState::established), conn(cookie, TcpState::established, flaky)};
        if (cookie > 100) host.push_back(conn(cookie - 1, TcpState::time_wait, flaky));
        ++cookie;
        t.tick(host);
    }
    auto churn = t.tracker.churn(pid);
    CHECK(churn.opened_total == 30);
    CHECK(churn.closed_total == 29);
    CHECK(churn.rate_span_ms == 30'000);
    REQUIRE(churn.opened_per_minute);
    CHECK(*churn.opened_per_minute == doctest::Approx(60)); // 30 in 30 s
    CHECK(*churn.closed_per_minute == doctest::Approx(58));
    const auto peers = t.tracker.peer_churn(pid);
    REQUIRE(peers.size() == 1);
    CHECK(peers.front().peer.remote == flaky);
    CHECK(peers.front().opened_per_minute == doctest::Approx(60));
    // Quiet for a minute and a half: rates fall to zero and the peer is forgotten.
    for (int i = 0; i < 90; ++i)
        t.tick({conn(1, TcpState::established)});
    churn = t.tracker.churn(pid);
    CHECK(*churn.opened_per_minute == 0);
    CHECK(churn.opened_total == 30);
    CHECK(t.tracker.peer_churn(pid).empty());
}

TEST_CASE("connections accepted on a listening port group by client address") {
    SocketRecord listener;
    listener.state = TcpState::listen;
    listener.local = v4(1, 8080);
    SocketRecord accepted = conn(5, TcpState::established, v4(7, 51234));
    accepted.local = v4(1, 8080);
    const PeerKey key = CookieTracker::peer_of(accepted, {8080});
    CHECK(key.inbound);
    CHECK(key.remote.port == 0);
    CHECK(peer_label(key) == "10.0.0.7 (in)");
    CHECK_FALSE(CookieTracker::peer_of(conn(6, TcpState::established), {8080}).inbound);
}

TEST_CASE("memory stays flat: 10,000 ticks of churn keep only the sockets the kernel has") {
    Ticker t;
    std::vector<SocketRecord> host;
    std::uint64_t cookie = 1;
    std::size_t peak = 0;
    std::deque<std::pair<int, SocketRecord>> time_wait; // (tick it expires, socket)
    std::vector<SocketRecord> live;
    for (int i = 0; i < 20; ++i)
        live.push_back(conn(cookie++, TcpState::established));
    for (int tick = 0; tick < 10'000; ++tick) {
        // 5 close actively (TIME_WAIT for 60 ticks), 5 new ones open.
        for (int k = 0; k < 5; ++k) {
            SocketRecord closed = live.front();
            live.erase(live.begin());
            closed.state = TcpState::time_wait;
            closed.inode = 0;
            time_wait.emplace_back(tick + 60, closed);
            live.push_back(conn(cookie++, TcpState::established,
                                v4(static_cast<std::uint8_t>(tick % 200), 443)));
        }
        while (!time_wait.empty() && time_wait.front().first <= tick)
            time_wait.pop_front();
        host = live;
        for (const auto& [expires, s] : time_wait)
            host.push_back(s);
        t.tick(host);
        peak = std::max(peak, t.tracker.tracked_cookies());
        if (tick > 100) CHECK(t.last.processes.front().time_wait_exact == time_wait.size());
    }
    CHECK(peak <= 20 + 5 * 61);
    CHECK(t.memory.owners().size() <= 20 + 5 * 61);
    CHECK(t.tracker.churn(pid).closed_total == 5 * 10'000);
}

TEST_CASE("a session shows rows per state with changes, trend and the fd projection") {
    Options o;
    o.interval_ms = 1000;
    o.window_ms = 600'000;
    Session session(o);
    scan::CookieMemory memory;
    std::vector<SocketRecord> host;
    std::uint64_t cookie = 1;
    std::uint64_t fds = 100;
    for (int i = 0; i < 5; ++i)
        host.push_back(conn(cookie++, TcpState::established));
    for (int tick = 0; tick <= 600; ++tick) {
        if (tick > 0 && tick % 60 == 0) {
            host.push_back(conn(cookie++, TcpState::close_wait)); // one more leaked every minute
            fds += 10;
        }
        const auto snap = scan_tick(memory, host, tick * 1000LL, fds, 1024);
        session.update(snap, tick * 1000LL, 1'792'000'000 + tick);
    }
    FrameOptions fo;
    fo.spark_points = 160;
    const Frame f = session.frame(fo);
    REQUIRE(f.processes.size() == 1);
    const auto& p = f.processes.front();
    CHECK(p.comm == "collector");
    CHECK(state_row(p, TcpState::established).current == 5);
    const auto& cw = state_row(p, TcpState::close_wait);
    CHECK(cw.current == 10);
    CHECK(cw.since_start == 10);
    CHECK(cw.since_last == 1);
    REQUIRE(cw.slope_per_hour);
    CHECK(*cw.slope_per_hour == doctest::Approx(60).epsilon(0.05));
    CHECK_FALSE(cw.spark.empty());
    CHECK(state_row(p, TcpState::time_wait).current == 0); // always shown
    CHECK(p.fds.current == 200);
    // The projection follows the leaked sockets (one CLOSE_WAIT a minute), from the open fds.
    CHECK(p.leaked.current == 10);
    REQUIRE(p.fd_projection);
    CHECK(p.fd_projection->current == 200);
    const std::string projection = cli::describe_projection(*p.fd_projection, "leaked sockets");
    INFO(projection);
    CHECK(projection.starts_with("leaked sockets grow 59/h"));
    CHECK(projection.find("the limit of 1024 is reached in ~") != std::string::npos);
    CHECK(f.uptime_ms == 600'000);
}

TEST_CASE("a state seen late is backfilled with zeros, so its trend starts from nothing") {
    Session session(Options{});
    scan::CookieMemory memory;
    std::vector<SocketRecord> host{conn(1, TcpState::established)};
    for (int tick = 0; tick < 120; ++tick) {
        if (tick == 100) host.push_back(conn(2, TcpState::syn_sent));
        session.update(scan_tick(memory, host, tick * 1000LL), tick * 1000LL, 0);
    }
    const auto f = session.frame();
    const auto& row = state_row(f.processes.front(), TcpState::syn_sent);
    CHECK(row.current == 1);
    CHECK(row.since_start == 1);
}

TEST_CASE("an exited process keeps its last figures; a reused pid counts as exited") {
    Session session(Options{});
    scan::CookieMemory memory;
    std::vector<SocketRecord> host{conn(1, TcpState::established), conn(2, TcpState::close_wait)};
    session.update(scan_tick(memory, host, 0), 0, 0);
    session.update(scan_tick(memory, host, 1000), 1000, 1);
    session.process_exited(pid, 2000);
    CHECK_FALSE(memory.owners().empty());
    memory.forget_process(pid); // what the scanner does for an exited process
    auto f = session.frame();
    REQUIRE(f.processes.size() == 1);
    CHECK(f.processes.front().exited);
    CHECK(f.processes.front().exited_after_ms == 2000);
    CHECK(state_row(f.processes.front(), TcpState::close_wait).current == 1);
    CHECK(session.running().empty());
    CHECK(memory.owners().empty());
    const auto lines = cli::to_lines(f);
    REQUIRE(lines.size() == 1);
    CHECK(lines.front().find(
              " pid=4242 exited=1 exited_after_seconds=2 established=1 close_wait=1 ") !=
          std::string::npos);

    Session other(Options{});
    scan::CookieMemory other_memory;
    other.update(scan_tick(other_memory, host, 0, 20, 1024, 77), 0, 0);
    other.update(scan_tick(other_memory, host, 1000, 20, 1024, 99), 1000, 1);
    CHECK(other.running().empty());
}

TEST_CASE("log lines and JSON lines carry the same counts") {
    Session session(Options{});
    scan::CookieMemory memory;
    std::vector<SocketRecord> host{conn(1, TcpState::established), conn(2, TcpState::established),
                                   conn(3, TcpState::close_wait)};
    session.update(scan_tick(memory, host, 0), 0, 1'792'574'640);
    host = {conn(1, TcpState::time_wait), conn(2, TcpState::established),
            conn(3, TcpState::close_wait), conn(9, TcpState::time_wait)};
    session.update(scan_tick(memory, host, 1000), 1000, 1'792'574'641);
    const auto f = session.frame();

    const auto lines = cli::to_lines(f);
    REQUIRE(lines.size() == 1);
    INFO(lines.front());
    CHECK(lines.front().starts_with(
        "2026-10-21T09:24:01Z pid=4242 established=1 close_wait=1 time_wait=2 "));
    CHECK(lines.front().find(" time_wait_exact=1 time_wait_by_peer=1 ") != std::string::npos);
    CHECK(lines.front().find(" comm=collector") != std::string::npos);
    CHECK(lines.front().find(" closed_per_min=120.0 ") != std::string::npos); // 2 in 1 s
    CHECK(lines.front().find('\x1b') == std::string::npos);

    const auto j = nlohmann::json::parse(cli::to_json(f).dump());
    CHECK(j["time"] == "2026-10-21T09:24:01Z");
    const auto& p = j["processes"][0];
    CHECK(p["pid"] == pid);
    CHECK(p["states"]["established"]["count"] == 1);
    CHECK(p["states"]["established"]["since_last"] == -1);
    CHECK(p["states"]["close_wait"]["count"] == 1);
    CHECK(p["states"]["time_wait"]["count"] == 2);
    CHECK(p["time_wait"]["exact"] == 1);
    CHECK(p["time_wait"]["by_peer"] == 1);
    CHECK(p["churn"]["closed_total"] == 2);
    CHECK(p["peers"][0]["remote"] == "10.0.0.5:443");
    CHECK(j["totals"]["states"]["close_wait"]["count"] == 1);
}

TEST_CASE("strings from the watched process are sanitized in every output") {
    Session session(Options{});
    auto snap = fake_scan({conn(1, TcpState::established)}, {100'001}, scan::CookieOwners{});
    snap.processes.front().info.comm = "evil\x1b[2Jname";
    snap.processes.front().info.cmdline = "x \x1b]0;title\x07 y";
    session.update(snap, 0, 0);
    const auto f = session.frame();
    CHECK(f.processes.front().comm.find('\x1b') == std::string::npos);
    CHECK(f.processes.front().cmdline.find('\x1b') == std::string::npos);
    CHECK(f.processes.front().cmdline.find('\x07') == std::string::npos);
    for (const auto& line : cli::to_lines(f))
        CHECK(line.find('\x1b') == std::string::npos);
    CHECK(cli::to_json(f).dump().find('\x1b') == std::string::npos);
}

TEST_CASE("the peer sort cycles through every key") {
    PeerSort s = PeerSort::count;
    std::set<std::string_view> names;
    for (int i = 0; i < 5; ++i) {
        names.insert(peer_sort_name(s));
        s = next_peer_sort(s);
    }
    CHECK(s == PeerSort::count);
    CHECK(names.size() == 5);
    std::vector<PeerFrame> peers(3);
    peers[0].label = "a";
    peers[0].total = 1;
    peers[1].label = "b";
    peers[1].total = 5;
    peers[2].label = "c";
    peers[2].total = 2;
    peers[2].states[TcpState::close_wait] = 2;
    sort_peers(peers, PeerSort::count);
    CHECK(peers[0].label == "b");
    sort_peers(peers, PeerSort::close_wait);
    CHECK(peers[0].label == "c");
}

namespace {

// A bounded random walk: one step in ten, up or down, never past lo or hi. A healthy pool
// drifts like this, for minutes one way, which a slope alone takes for growth.
struct Walk {
    std::uint32_t state;
    std::uint64_t value;
    std::uint64_t next(std::uint64_t lo, std::uint64_t hi) {
        state = state * 1103515245U + 12345U;
        const auto r = (state >> 16) % 20;
        if (r == 0 && value < hi) ++value;
        if (r == 1 && value > lo) --value;
        return value;
    }
};

} // namespace

TEST_CASE("a bounded, fluctuating process never gets an fd projection") {
    // A healthy keep-alive server: ESTABLISHED drifts between 10 and 15, and a client with a
    // timeout holds 2 to 10 CLOSE_WAIT for a few seconds each. An hour at one tick a second,
    // the default 10-minute window: at no tick may an ETA appear, while a rising fit alone (the
    // old rule: a positive slope over a minute, rising at least one fd) would have given many.
    for (std::uint32_t seed : {1U, 2U, 3U}) {
        CAPTURE(seed);
        Options o;
        Session session(o);
        scan::CookieMemory memory;
        Walk est_walk{seed, 12};
        Walk cw_walk{seed * 7919U, 6};
        std::uint64_t cookie = 1;
        std::vector<SocketRecord> est;
        std::vector<SocketRecord> cw;
        int projected = 0;
        int rising = 0;
        for (int tick = 0; tick <= 3600; ++tick) {
            const auto want_est = est_walk.next(10, 15);
            const auto want_cw = cw_walk.next(2, 10);
            while (est.size() < want_est)
                est.push_back(conn(cookie++, TcpState::established, v4(7, 80)));
            while (est.size() > want_est)
                est.erase(est.begin());
            while (cw.size() < want_cw)
                cw.push_back(conn(cookie++, TcpState::close_wait, v4(8, 80)));
            while (cw.size() > want_cw)
                cw.erase(cw.begin());
            std::vector<SocketRecord> host = est;
            host.insert(host.end(), cw.begin(), cw.end());
            const auto snap =
                scan_tick(memory, host, tick * 1000LL, 20 + want_est + want_cw, 20000);
            session.update(snap, tick * 1000LL, 1'792'000'000 + tick);
            const auto frame = session.frame();
            const auto& p = frame.processes.front();
            if (p.fd_projection) ++projected;
            if (tick >= 60 && p.fds.slope_per_hour &&
                *p.fds.slope_per_hour * std::min(tick, 600) / 3600.0 >= 1)
                ++rising;
        }
        CHECK(projected == 0);
        CHECK(rising > 100);
    }
}

TEST_CASE("a keep-alive client: CLOSE_WAIT levels off, held after close grows, no close counted") {
    // The server resets the oldest CLOSE_WAIT each tick once there are 5: CLOSE_WAIT stays at 5,
    // the sockets TCP closed pile up in the process, and the leak's total goes on growing.
    Options o;
    o.window_ms = 120'000;
    Session session(o);
    scan::CookieMemory memory;
    std::vector<SocketRecord> host;
    std::vector<scan::HeldAfterClose> held;
    std::uint64_t cookie = 1;
    for (int tick = 0; tick <= 120; ++tick) {
        host.push_back(conn(cookie++, TcpState::close_wait));
        if (host.size() > 5) {
            scan::HeldAfterClose h;
            h.inode = host.front().inode;
            h.cookie = host.front().cookie;
            h.remote = host.front().remote;
            h.last_state = TcpState::close_wait;
            held.push_back(h);
            host.erase(host.begin());
        }
        auto snap = scan_tick(memory, host, tick * 1000LL, 20 + host.size() + held.size(), 20000);
        snap.processes.front().held_after_close = held;
        session.update(snap, tick * 1000LL, 1'792'000'000 + tick);
    }
    const Frame f = session.frame();
    const auto& p = f.processes.front();
    CHECK(state_row(p, TcpState::close_wait).current == 5);
    CHECK(state_row(p, TcpState::close).current == 116);
    CHECK(p.held_after_close == 116);
    CHECK(p.leaked.current == 121);
    REQUIRE(p.leaked.slope_per_hour);
    CHECK(*p.leaked.slope_per_hour == doctest::Approx(3600).epsilon(0.01));
    CHECK(p.churn.closed_total == 0); // the process never called close()
    REQUIRE(p.fd_projection);
    bool found = false;
    for (const auto& finding : p.findings)
        found = found || finding.kind == analysis::FindingKind::held_after_close;
    CHECK(found);
    const auto line = cli::to_lines(f).front();
    CHECK(line.find(" close=116") != std::string::npos);
    CHECK(line.find(" held_after_close=116 leaked=121") != std::string::npos);
}
