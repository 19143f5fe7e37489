// Watch fed by connection events (ConnectionEvents inside a Session): hand-built trace events and
// snapshots, no BPF. Connections seen opening count exactly, however short their life, and are
// not counted a second time by their cookies; their TIME_WAIT is the process's; a by-peer
// TIME_WAIT nobody saw opening is another process's; each peer shows its oldest connection's age.
#include "conncheck/watch/events.hpp"
#include "conncheck/watch/session.hpp"
#include "watch_output.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>

using namespace conncheck;
using namespace conncheck::watch;

namespace {

constexpr pid_t pid = 4242;
constexpr std::uint16_t listen_port = 8080;

Endpoint v4(std::uint8_t d, std::uint16_t port) {
    Endpoint e;
    e.family = AF_INET;
    e.addr = {10, 0, 0, d};
    e.port = port;
    return e;
}

const Endpoint exchange = v4(5, 443);
const Endpoint client = v4(9, 0);

Endpoint local_of(std::uint64_t id) {
    return v4(1, static_cast<std::uint16_t>(40000 + id));
}

trace::Event opened(std::uint64_t id, std::uint64_t cookie, Endpoint remote = exchange) {
    trace::Event e;
    e.kind = trace::EventKind::opened;
    e.connection = id;
    e.cookie = cookie;
    e.pid = pid;
    e.tid = pid;
    e.local = local_of(id);
    e.remote = remote;
    e.new_state = TcpState::syn_sent;
    return e;
}

trace::Event accepted(std::uint64_t id, std::uint16_t client_port) {
    trace::Event e;
    e.kind = trace::EventKind::opened;
    e.connection = id;
    e.pid = pid;
    e.tid = pid;
    e.local = v4(1, listen_port);
    e.remote = v4(9, client_port);
    e.accepted = true;
    e.new_state = TcpState::established;
    return e; // no cookie: nothing asked the kernel for one yet
}

trace::Event change(std::uint64_t id, std::uint64_t cookie, TcpState from, TcpState to) {
    trace::Event e;
    e.kind = trace::EventKind::state;
    e.connection = id;
    e.cookie = cookie;
    e.pid = pid;
    e.local = local_of(id);
    e.remote = exchange;
    e.old_state = from;
    e.new_state = to;
    return e;
}

// The connection closed here first and was handed to a TIME_WAIT socket.
void close_to_time_wait(Session& s, std::uint64_t id, std::uint64_t cookie, std::int64_t t_ms) {
    auto fin = change(id, cookie, TcpState::established, TcpState::fin_wait1);
    fin.tid = pid;
    s.add_event(fin, t_ms);
    s.add_event(change(id, cookie, TcpState::fin_wait1, TcpState::fin_wait2), t_ms);
    s.add_event(change(id, cookie, TcpState::fin_wait2, TcpState::close), t_ms);
}

SocketRecord live(std::uint64_t id, std::uint64_t cookie, Endpoint remote = exchange) {
    SocketRecord s;
    s.state = TcpState::established;
    s.cookie = cookie;
    s.inode = 100'000 + cookie;
    s.local = local_of(id);
    s.remote = remote;
    return s;
}

SocketRecord time_wait(std::uint64_t id, std::uint64_t cookie, std::uint32_t expires_ms) {
    SocketRecord s = live(id, cookie);
    s.state = TcpState::time_wait;
    s.inode = 0;
    s.timer = 3;
    s.expires_ms = expires_ms;
    return s;
}

scan::Snapshot snapshot(std::vector<SocketRecord> sockets,
                        std::vector<SocketRecord> time_wait_by_peer = {}) {
    scan::Snapshot snap;
    snap.source = diag::SourceKind::netlink;
    scan::ProcessSnapshot p;
    p.info.pid = pid;
    p.info.comm = "collector";
    p.info.open_fds = 20;
    p.info.start_ticks = 77;
    p.sockets = std::move(sockets);
    p.time_wait_by_peer = std::move(time_wait_by_peer);
    snap.processes.push_back(std::move(p));
    return snap;
}

Session events_session(bool events = true) {
    Options o;
    o.events = events;
    return Session(o);
}

const ProcessFrame& only(const Frame& f) {
    REQUIRE(f.processes.size() == 1);
    return f.processes[0];
}

const PeerFrame* peer(const ProcessFrame& p, const PeerKey& key) {
    for (const auto& peer : p.peers)
        if (peer.key == key) return &peer;
    return nullptr;
}

} // namespace

TEST_CASE("connections seen opening count exactly, even those that live less than a tick") {
    Session s = events_session();
    s.update(snapshot({live(1, 0x11)}), 0, 0); // #1 is from before the watch
    s.add_event(opened(2, 0x12), 200);         // stays open
    s.add_event(opened(3, 0x13), 300);         // opens and closes between two scans
    close_to_time_wait(s, 3, 0x13, 400);
    s.add_event(opened(4, 0x14), 500); // refused, then closed: the close alone, no TIME_WAIT
    s.add_event(change(4, 0x14, TcpState::syn_sent, TcpState::close), 600);
    auto freed = change(4, 0x14, TcpState::close, TcpState::close);
    freed.kind = trace::EventKind::destroyed;
    s.add_event(freed, 650);
    s.update(snapshot({live(1, 0x11), live(2, 0x12)}, {time_wait(3, 0x13, 59'600)}), 1000, 1);

    const Frame f = s.frame();
    const auto& p = only(f);
    CHECK(p.churn.opened_total == 3); // #2 is not counted again by its cookie
    CHECK(p.churn.closed_total == 2);
    CHECK(p.churn.short_lived_total == 2);
    REQUIRE(p.churn.opened_per_minute);
    CHECK(*p.churn.opened_per_minute == doctest::Approx(180.0));
    CHECK(p.time_wait_exact == 1); // the scanner guessed by peer; the events know
    CHECK(p.time_wait_by_peer == 0);
    CHECK(f.events);

    // The connection from before the watch closes: the cookies see that one.
    s.update(snapshot({live(2, 0x12)}), 2000, 2);
    CHECK(only(s.frame()).churn.closed_total == 3);
    CHECK(only(s.frame()).churn.opened_total == 3);
}

TEST_CASE("an accepted connection without a cookie is matched to its socket by its endpoints") {
    Session s = events_session();
    SocketRecord listener;
    listener.state = TcpState::listen;
    listener.local = v4(1, listen_port);
    listener.inode = 1;
    s.update(snapshot({listener}), 0, 0);
    s.add_event(accepted(7, 50'001), 100);
    SocketRecord server;
    server.state = TcpState::established;
    server.cookie = 0x77; // the scan asked the kernel, which gave the socket one
    server.inode = 2;
    server.local = v4(1, listen_port);
    server.remote = v4(9, 50'001);
    s.update(snapshot({listener, server}), 1000, 1);
    s.update(snapshot({listener, server}), 5000, 5);

    const Frame f = s.frame();
    const auto& p = only(f);
    CHECK(p.churn.opened_total == 1);
    const auto* from = peer(p, PeerKey{client, true});
    REQUIRE(from != nullptr);
    REQUIRE(from->oldest_age_ms);
    CHECK(*from->oldest_age_ms == 4900);
    CHECK_FALSE(from->oldest_predates_watch);
}

TEST_CASE("each peer shows its oldest connection, or that one predates the watch") {
    const Endpoint other = v4(6, 443);
    Session s = events_session();
    s.update(snapshot({live(1, 0x11)}), 0, 0);
    s.add_event(opened(2, 0x12), 1000);
    s.add_event(opened(3, 0x13, other), 2000);
    s.add_event(opened(4, 0x14, other), 3000);
    s.update(snapshot({live(1, 0x11), live(2, 0x12), live(3, 0x13, other), live(4, 0x14, other)}),
             10'000, 10);

    const Frame f = s.frame();
    const auto& p = only(f);
    const auto* old = peer(p, PeerKey{exchange, false});
    REQUIRE(old != nullptr);
    CHECK(old->oldest_predates_watch);
    CHECK(old->oldest_age_ms == 10'000); // at least the watch's age
    const auto* fresh = peer(p, PeerKey{other, false});
    REQUIRE(fresh != nullptr);
    CHECK_FALSE(fresh->oldest_predates_watch);
    CHECK(fresh->oldest_age_ms == 8'000);
}

TEST_CASE("a by-peer TIME_WAIT nobody saw opening belongs to another process once watched") {
    Session s = events_session();
    const SocketRecord before = time_wait(8, 0x18, 30'000); // closed 30 s before the first scan
    s.update(snapshot({live(1, 0x11)}, {before}), 100'000, 0);
    // Closed 5 s ago, after the watch began, and never seen opening here: another process's.
    const SocketRecord foreign = time_wait(9, 0x19, 55'000);
    s.update(snapshot({live(1, 0x11)}, {before, foreign}), 110'000, 10);
    const ProcessFrame p = only(s.frame());
    CHECK(p.time_wait_by_peer == 1);
    CHECK(p.churn.closed_total == 0);

    // Once events were lost, it may be the process's after all.
    s.events_incomplete();
    s.update(snapshot({live(1, 0x11)}, {before, foreign}), 111'000, 11);
    CHECK(only(s.frame()).time_wait_by_peer == 2);
}

TEST_CASE("without events, watch polls as before: by-peer TIME_WAIT and no ages") {
    Session s = events_session(false);
    s.add_event(opened(2, 0x12), 200); // ignored: the session was not told events would come
    s.update(snapshot({live(1, 0x11)}), 0, 0);
    s.update(snapshot({live(1, 0x11), live(2, 0x12)}, {time_wait(3, 0x13, 59'600)}), 1000, 1);
    const Frame f = s.frame();
    CHECK_FALSE(f.events);
    const auto& p = only(f);
    CHECK(p.churn.opened_total == 2); // #2 by its cookie, #3 by its TIME_WAIT
    CHECK(p.time_wait_by_peer == 1);
    CHECK(p.time_wait_exact == 0);
    for (const auto& peer : p.peers)
        CHECK_FALSE(peer.oldest_age_ms);
}

TEST_CASE("ended connections are forgotten after the linger time, and with their process") {
    ConnectionEvents events;
    auto o = opened(1, 0x11);
    events.add(o, 0);
    // A reset: TCP is done with it, the process still holds it.
    events.add(change(1, 0x11, TcpState::established, TcpState::close), 1000);
    events.add(opened(2, 0x12), 1000);
    CHECK(events.size() == 2);
    events.prune(1000 + ConnectionEvents::linger_ms + 1);
    CHECK(events.size() == 2);
    CHECK(events.follows(0x11));
    auto freed = change(1, 0x11, TcpState::close, TcpState::close);
    freed.kind = trace::EventKind::destroyed; // the process lets go of it at last
    events.add(freed, 2000);
    events.prune(2000 + ConnectionEvents::linger_ms + 1);
    CHECK(events.size() == 1);
    CHECK_FALSE(events.follows(0x11));
    CHECK(events.follows(0x12));
    events.forget_process(pid);
    CHECK(events.size() == 0);
    const auto tick = events.take_tick();
    CHECK(tick.empty());
}

TEST_CASE("the JSON and the log lines say events, or polling and why, and the peers' ages") {
    Session s = events_session();
    s.update(snapshot({live(1, 0x11)}), 0, 0);
    s.add_event(opened(2, 0x12, v4(6, 443)), 500);
    s.update(snapshot({live(1, 0x11), live(2, 0x12, v4(6, 443))}), 2000, 2);
    Frame f = s.frame();
    auto j = cli::to_json(f);
    CHECK(j["tracking"] == "events");
    CHECK(j["polling_reason"].is_null());
    for (const auto& peer : j["processes"][0]["peers"]) {
        const bool before = peer["remote"] == "10.0.0.5:443";
        CHECK(peer["oldest_predates_watch"] == before);
        CHECK(peer["oldest_age_seconds"] == (before ? 2.0 : 1.5));
    }
    CHECK(cli::to_lines(f)[0].find(" tracking=events comm=") != std::string::npos);

    f.events = false;
    f.polling_reason = "eBPF tracing needs CAP_BPF and CAP_PERFMON (or root)";
    j = cli::to_json(f);
    CHECK(j["tracking"] == "polling");
    CHECK(j["polling_reason"] == f.polling_reason);
    CHECK(cli::tracking_text(f) == "polling (" + f.polling_reason + ")");
    CHECK(cli::to_lines(f)[0].find(" tracking=polling polling_reason=eBPF\\x20tracing\\x20") !=
          std::string::npos);
}
