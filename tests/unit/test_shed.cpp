// Which sockets `close` may abort: the selection rules on hand-built snapshots, and the re-check
// made right before each abort.
#include "conncheck/diag/requests.hpp"
#include "conncheck/shed.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>
#include <doctest/doctest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

using namespace conncheck;
using shed::Reason;
using shed::Refusal;

namespace {

Endpoint v4(std::uint8_t d, std::uint16_t port) {
    Endpoint e;
    e.family = AF_INET;
    e.addr = {10, 0, 0, d};
    e.port = port;
    return e;
}

std::uint64_t next_cookie = 0x1000;

SocketRecord sock(TcpState state, const Endpoint& remote, std::uint32_t idle_ms) {
    SocketRecord s;
    s.state = state;
    s.cookie = next_cookie++;
    s.inode = s.cookie + 5000;
    s.local = v4(1, static_cast<std::uint16_t>(s.cookie & 0xffff));
    s.remote = remote;
    TcpInfoLite info;
    info.last_data_recv_ms = idle_ms;
    s.info = info;
    s.mem = SkMemInfo{};
    return s;
}

const Endpoint exchange = v4(2, 443);
const Endpoint database = v4(3, 5432);

scan::ProcessSnapshot process(pid_t pid, std::vector<SocketRecord> sockets) {
    scan::ProcessSnapshot p;
    p.info.pid = pid;
    p.info.netns = 4026531840;
    p.sockets = std::move(sockets);
    return p;
}

std::vector<std::uint64_t> cookies(const shed::Plan& plan) {
    std::vector<std::uint64_t> out;
    for (const auto& c : plan.selected)
        out.push_back(c.socket.cookie);
    return out;
}

// A socket TCP has finished with, still held by an fd.
scan::HeldAfterClose held(std::uint64_t inode) {
    scan::HeldAfterClose h;
    h.inode = inode;
    return h;
}

} // namespace

TEST_CASE("--close-wait selects the silent CLOSE_WAIT sockets and nothing else") {
    const auto waiting = sock(TcpState::close_wait, exchange, 120'000);
    const auto fresh_wait = sock(TcpState::close_wait, exchange, 2'000);
    const auto healthy = sock(TcpState::established, exchange, 100);
    const auto idle_alone = sock(TcpState::established, database, 500'000);
    auto listener = sock(TcpState::listen, Endpoint{AF_INET, {}, 0}, 900'000);
    const auto p = process(42, {waiting, fresh_wait, healthy, idle_alone, listener});
    shed::Request r;
    r.close_wait = true;
    r.idle_ms = 60'000;
    const auto plan = shed::plan({p}, r);
    REQUIRE(plan.selected.size() == 1);
    CHECK(plan.selected[0].socket.cookie == waiting.cookie);
    CHECK(plan.selected[0].reason == Reason::close_wait);
    CHECK(plan.selected[0].pid == 42);
    CHECK(plan.selected[0].netns == 4026531840);
    CHECK(plan.refused.empty());
}

TEST_CASE("nothing asked for selects nothing, and still counts what only close() releases") {
    auto p = process(42, {sock(TcpState::close_wait, exchange, 900'000)});
    p.held_after_close = {held(1001), held(1002)};
    const auto plan = shed::plan({p}, shed::Request{});
    CHECK(plan.selected.empty());
    REQUIRE(plan.held_after_close.size() == 1);
    CHECK(plan.held_after_close[0].count == 2);
}

TEST_CASE("--stale selects zombies only where another connection to the same peer is live") {
    const auto zombie = sock(TcpState::established, exchange, 400'000);
    const auto zombie2 = sock(TcpState::established, exchange, 300'000);
    const auto live = sock(TcpState::established, exchange, 50);
    // Silent too, but no live connection to this peer: an idle pool, not a leak.
    const auto pool_a = sock(TcpState::established, database, 400'000);
    const auto pool_b = sock(TcpState::established, database, 400'000);
    const auto p = process(7, {zombie, live, zombie2, pool_a, pool_b});
    shed::Request r;
    r.stale = true;
    r.idle_ms = 300'000;
    const auto plan = shed::plan({p}, r);
    // zombie2 is silent exactly --idle: not over it.
    CHECK(cookies(plan) == std::vector<std::uint64_t>{zombie.cookie});
    r.idle_ms = 299'000;
    const auto wider = shed::plan({p}, r);
    REQUIRE(wider.selected.size() == 2);
    for (const auto& c : wider.selected) {
        CHECK(c.reason == Reason::stale);
        REQUIRE(c.live.has_value());
        CHECK(c.live->cookie == live.cookie);
    }
}

TEST_CASE("--peer narrows the selection to connections toward it") {
    const auto to_exchange = sock(TcpState::close_wait, exchange, 90'000);
    const auto to_database = sock(TcpState::close_wait, database, 90'000);
    shed::Request r;
    r.close_wait = true;
    r.peers = {database};
    const auto plan = shed::plan({process(1, {to_exchange, to_database})}, r);
    CHECK(cookies(plan) == std::vector<std::uint64_t>{to_database.cookie});
}

TEST_CASE("--cookie names exact sockets, each still under the rules, and says why not") {
    const auto zombie = sock(TcpState::established, exchange, 900'000);
    const auto busy = sock(TcpState::established, exchange, 10);
    const auto listener = sock(TcpState::listen, Endpoint{AF_INET, {}, 0}, 900'000);
    auto time_wait = sock(TcpState::time_wait, exchange, 900'000);
    time_wait.inode = 0; // attributed by cookie, held by no fd
    time_wait.info.reset();
    const auto p = process(9, {zombie, busy, listener, time_wait});
    shed::Request r;
    r.cookies = {busy.cookie, 0xdead, zombie.cookie, listener.cookie, time_wait.cookie};
    const auto plan = shed::plan({p}, r);
    REQUIRE(plan.selected.size() == 1);
    CHECK(plan.selected[0].socket.cookie == zombie.cookie);
    CHECK(plan.selected[0].reason == Reason::cookie);
    REQUIRE(plan.refused.size() == 4);
    CHECK(plan.refused[0].cookie == busy.cookie);
    CHECK(plan.refused[0].why == Refusal::received_recently);
    CHECK(plan.refused[0].pid == 9);
    CHECK(plan.refused[1].cookie == 0xdead);
    CHECK(plan.refused[1].why == Refusal::not_found);
    CHECK(plan.refused[2].why == Refusal::listening);
    CHECK(plan.refused[3].why == Refusal::not_held);
}

TEST_CASE("--cookie with a finding keeps only the named sockets that the finding selects") {
    const auto waiting = sock(TcpState::close_wait, exchange, 900'000);
    const auto waiting_other = sock(TcpState::close_wait, exchange, 900'000);
    const auto zombie = sock(TcpState::established, database, 900'000);
    shed::Request r;
    r.close_wait = true;
    r.cookies = {waiting.cookie, zombie.cookie};
    const auto plan = shed::plan({process(3, {waiting, waiting_other, zombie})}, r);
    CHECK(cookies(plan) == std::vector<std::uint64_t>{waiting.cookie});
    REQUIRE(plan.refused.size() == 1);
    CHECK(plan.refused[0].why == Refusal::other_finding);
}

TEST_CASE("never another process's socket, never one without an idle time, a shared one once") {
    auto shared = sock(TcpState::close_wait, exchange, 900'000);
    auto unknown_idle = sock(TcpState::close_wait, exchange, 900'000);
    unknown_idle.info.reset();
    const auto mine = sock(TcpState::close_wait, database, 900'000);
    shed::Request r;
    r.close_wait = true;
    const auto plan =
        shed::plan({process(1, {shared, unknown_idle}), process(2, {shared, mine})}, r);
    // The shared socket is listed once, under the first process that holds it.
    REQUIRE(plan.selected.size() == 2);
    CHECK(plan.selected[0].pid == 1);
    CHECK(plan.selected[0].socket.cookie == shared.cookie);
    CHECK(plan.selected[1].pid == 2);
    CHECK(plan.selected[1].socket.cookie == mine.cookie);
    // Sockets of processes that were not selected are not in the snapshot at all: only what
    // the chosen processes' fds hold can be chosen.
    r.cookies = {unknown_idle.cookie};
    const auto named = shed::plan({process(1, {unknown_idle})}, r);
    CHECK(named.selected.empty());
    REQUIRE(named.refused.size() == 1);
    CHECK(named.refused[0].why == Refusal::idle_unknown);
}

TEST_CASE("sockets TCP has finished with are reported, never selected") {
    auto p = process(5, {sock(TcpState::close_wait, exchange, 900'000)});
    p.held_after_close = {held(2001), held(2002), held(2003)};
    shed::Request r;
    r.close_wait = true;
    const auto plan = shed::plan({p}, r);
    CHECK(plan.selected.size() == 1);
    REQUIRE(plan.held_after_close.size() == 1);
    CHECK(plan.held_after_close[0].pid == 5);
    CHECK(plan.held_after_close[0].count == 3);
}

TEST_CASE("the re-check before the abort refuses a socket that changed") {
    const auto waiting = sock(TcpState::close_wait, exchange, 900'000);
    const auto zombie = sock(TcpState::established, exchange, 900'000);
    const auto live = sock(TcpState::established, exchange, 20);
    shed::Request r;
    r.close_wait = true;
    r.stale = true;
    const auto plan = shed::plan({process(8, {waiting, zombie, live})}, r);
    REQUIRE(plan.selected.size() == 2);
    const auto& cw = plan.selected[0];
    const auto& st = plan.selected[1];
    REQUIRE(cw.reason == Reason::close_wait);
    REQUIRE(st.reason == Reason::stale);

    CHECK_FALSE(shed::recheck(cw, waiting, nullptr, r).has_value());
    auto read_now = waiting;
    read_now.info->last_data_recv_ms = 5;
    CHECK(shed::recheck(cw, read_now, nullptr, r) == Refusal::received_recently);
    auto last_ack = waiting;
    last_ack.state = TcpState::last_ack;
    CHECK(shed::recheck(cw, last_ack, nullptr, r) == Refusal::changed);
    auto other = waiting;
    other.inode += 1;
    CHECK(shed::recheck(cw, other, nullptr, r) == Refusal::not_held);

    CHECK_FALSE(shed::recheck(st, zombie, &live, r).has_value());
    CHECK(shed::recheck(st, zombie, nullptr, r) == Refusal::no_live_sibling);
    auto live_silent = live;
    live_silent.info->last_data_recv_ms = 900'000;
    CHECK(shed::recheck(st, zombie, &live_silent, r) == Refusal::no_live_sibling);
    auto woke = zombie;
    woke.info->last_data_recv_ms = 1;
    CHECK(shed::recheck(st, woke, &live, r) == Refusal::received_recently);
}

TEST_CASE("cookies as people copy them") {
    CHECK(shed::parse_cookie("0x38dc4") == 0x38dc4U);
    CHECK(shed::parse_cookie("0X38DC4") == 0x38dc4U);
    CHECK(shed::parse_cookie("sk:38dc4") == 0x38dc4U);
    CHECK(shed::parse_cookie("232900") == 232900U);
    CHECK(shed::parse_cookie("0xffffffffffffffff") == 0xffffffffffffffffULL);
    CHECK_FALSE(shed::parse_cookie("").has_value());
    CHECK_FALSE(shed::parse_cookie("0x").has_value());
    CHECK_FALSE(shed::parse_cookie("0").has_value());
    CHECK_FALSE(shed::parse_cookie("38dc4").has_value());
    CHECK_FALSE(shed::parse_cookie("0x1ffffffffffffffff").has_value());
    CHECK_FALSE(shed::parse_cookie("-1").has_value());
    CHECK_FALSE(shed::parse_cookie("0x38dc4 ").has_value());
}

TEST_CASE("--peer endpoints as people type them") {
    const auto a = parse_endpoint("10.0.0.2:443");
    REQUIRE(a.has_value());
    CHECK(*a == exchange);
    const auto mapped = parse_endpoint("[::ffff:10.0.0.2]:443");
    REQUIRE(mapped.has_value());
    CHECK(*mapped == exchange);
    const auto v6 = parse_endpoint("[2001:db8::1]:8443");
    REQUIRE(v6.has_value());
    CHECK(v6->family == AF_INET6);
    CHECK(v6->to_string() == "[2001:db8::1]:8443");
    CHECK_FALSE(parse_endpoint("10.0.0.2").has_value());
    CHECK_FALSE(parse_endpoint("10.0.0.2:0").has_value());
    CHECK_FALSE(parse_endpoint("10.0.0.2:65536").has_value());
    CHECK_FALSE(parse_endpoint("2001:db8::1:443").has_value());
    CHECK_FALSE(parse_endpoint("example.com:443").has_value());
    CHECK_FALSE(parse_endpoint(":443").has_value());
}

TEST_CASE("the SOCK_DESTROY request names the socket by 4-tuple, interface and cookie") {
    SocketRecord s = sock(TcpState::close_wait, exchange, 900'000);
    s.cookie = 0x1122334455667788ULL;
    s.interface = 3;
    std::vector<std::uint32_t> out;
    diag::append_destroy_request(out, s, 77);
    REQUIRE(out.size() * 4 == NLMSG_LENGTH(sizeof(inet_diag_req_v2)));
    nlmsghdr header{};
    std::memcpy(&header, out.data(), sizeof header);
    CHECK(header.nlmsg_type == SOCK_DESTROY);
    CHECK(header.nlmsg_flags == (NLM_F_REQUEST | NLM_F_ACK));
    CHECK(header.nlmsg_seq == 77);
    inet_diag_req_v2 req{};
    std::memcpy(&req, reinterpret_cast<const unsigned char*>(out.data()) + NLMSG_HDRLEN,
                sizeof req);
    CHECK(req.sdiag_family == AF_INET);
    CHECK(req.sdiag_protocol == IPPROTO_TCP);
    CHECK(ntohs(req.id.idiag_sport) == s.local.port);
    CHECK(ntohs(req.id.idiag_dport) == 443);
    CHECK(std::memcmp(req.id.idiag_dst, exchange.addr.data(), 4) == 0);
    CHECK(req.id.idiag_if == 3);
    CHECK(req.id.idiag_cookie[0] == 0x55667788U);
    CHECK(req.id.idiag_cookie[1] == 0x11223344U);
}
