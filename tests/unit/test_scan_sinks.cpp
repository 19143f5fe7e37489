// The scanner's sinks: the find dump's holding stage (sockets wait, compactly, until the fd
// walk is over, and then reach the next sink unchanged and in order) and deduplication.
#include "conncheck/scan/sinks.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <random>
#include <unistd.h>
#include <vector>

using namespace conncheck;

namespace {

class FakeOwners : public scan::PendingOwners {
public:
    [[nodiscard]] bool ready() const override { return done; }
    void settle() override {
        ++settles;
        done = true;
    }
    bool done = false;
    int settles = 0;
};

struct Recorder : diag::DumpSink {
    void on_socket(const SocketRecord& s) override { got.push_back(s); }
    void on_restart() override { ++restarts; }
    std::vector<SocketRecord> got;
    int restarts = 0;
};

Endpoint endpoint(std::uint8_t family, std::initializer_list<std::uint8_t> addr,
                  std::uint16_t port) {
    Endpoint e;
    e.family = family;
    std::copy(addr.begin(), addr.end(), e.addr.begin());
    e.port = port;
    return e;
}

// Every field a find dump fills differs from its default and from the other sockets'.
SocketRecord socket(std::uint64_t n, std::uint8_t family, TcpState state = TcpState::established) {
    SocketRecord s;
    s.state = state;
    s.timer = static_cast<std::uint8_t>(n % 5);
    s.expires_ms = static_cast<std::uint32_t>(1000 + n);
    s.rqueue = static_cast<std::uint32_t>(2000 + n);
    s.wqueue = static_cast<std::uint32_t>(3000 + n);
    s.uid = static_cast<std::uint32_t>(4000 + n);
    s.inode = state == TcpState::time_wait ? 0 : 5000 + n;
    s.cookie = 6000 + n;
    s.interface = static_cast<std::uint32_t>(n);
    const auto b = static_cast<std::uint8_t>(n);
    if (family == AF_INET) {
        s.local = endpoint(AF_INET, {127, 0, 0, b}, static_cast<std::uint16_t>(40000 + n));
        s.remote = endpoint(AF_INET, {10, 1, 2, b}, 443);
    } else {
        s.local = endpoint(AF_INET6, {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b},
                           static_cast<std::uint16_t>(40000 + n));
        s.remote =
            endpoint(AF_INET6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b}, 8443);
    }
    return s;
}

void check_same(const SocketRecord& a, const SocketRecord& b) {
    CHECK(a.state == b.state);
    CHECK(a.timer == b.timer);
    CHECK(a.expires_ms == b.expires_ms);
    CHECK(a.rqueue == b.rqueue);
    CHECK(a.wqueue == b.wqueue);
    CHECK(a.uid == b.uid);
    CHECK(a.inode == b.inode);
    CHECK(a.cookie == b.cookie);
    CHECK(a.interface == b.interface);
    CHECK(a.local == b.local);
    CHECK(a.remote == b.remote);
    CHECK(a.info.has_value() == b.info.has_value());
    CHECK(a.mem.has_value() == b.mem.has_value());
}

} // namespace

TEST_CASE("held sockets pass on unchanged once the owners are known, each family in order") {
    FakeOwners owners;
    Recorder next;
    scan::PendingSink sink(next, owners, 100);
    const std::vector<SocketRecord> in{socket(1, AF_INET), socket(2, AF_INET6), socket(3, AF_INET),
                                       socket(4, AF_INET, TcpState::time_wait),
                                       socket(5, AF_INET6)};
    for (const auto& s : in)
        sink.on_socket(s);
    // Only the TIME_WAIT socket, which has no inode and so no owner, passed at once.
    REQUIRE(next.got.size() == 1);
    check_same(next.got[0], in[3]);
    CHECK(sink.held() == 4);
    CHECK(owners.settles == 0);

    owners.done = true; // the walk ended: the next socket passes everything on
    const SocketRecord last = socket(6, AF_INET);
    sink.on_socket(last);
    CHECK(owners.settles == 1);
    CHECK(sink.held() == 0);
    REQUIRE(next.got.size() == 6);
    check_same(next.got[1], in[0]);
    check_same(next.got[2], in[2]);
    check_same(next.got[3], in[1]);
    check_same(next.got[4], in[4]);
    check_same(next.got[5], last);
    sink.finish();
    CHECK(owners.settles == 1);
    CHECK(next.got.size() == 6);
}

TEST_CASE("a full hold waits for the owners instead of growing") {
    FakeOwners owners;
    Recorder next;
    scan::PendingSink sink(next, owners, 2);
    sink.on_socket(socket(1, AF_INET));
    sink.on_socket(socket(2, AF_INET6));
    CHECK(next.got.empty());
    sink.on_socket(socket(3, AF_INET));
    CHECK(owners.settles == 1);
    REQUIRE(next.got.size() == 3);
    CHECK(next.got[0].cookie == 6001);
    CHECK(next.got[1].cookie == 6002);
    CHECK(next.got[2].cookie == 6003);

    FakeOwners none;
    Recorder direct;
    scan::PendingSink unbuffered(direct, none, 0);
    unbuffered.on_socket(socket(7, AF_INET));
    CHECK(none.settles == 1);
    REQUIRE(direct.got.size() == 1);
    check_same(direct.got[0], socket(7, AF_INET));
}

TEST_CASE("the end of the dump passes on what is held, and a restart forgets it") {
    FakeOwners owners;
    Recorder next;
    scan::PendingSink sink(next, owners, 1000);
    for (std::uint64_t n = 0; n < 300; ++n) // more than a page of held sockets
        sink.on_socket(socket(n, n % 3 == 0 ? AF_INET6 : AF_INET));
    sink.on_restart();
    CHECK(next.restarts == 1);
    CHECK(sink.held() == 0);
    for (std::uint64_t n = 300; n < 600; ++n)
        sink.on_socket(socket(n, n % 3 == 0 ? AF_INET6 : AF_INET));
    CHECK(next.got.empty());
    sink.finish();
    CHECK(owners.settles == 1);
    REQUIRE(next.got.size() == 300);
    std::size_t v4 = 0;
    for (std::uint64_t n = 300; n < 600; ++n)
        if (n % 3 != 0) check_same(next.got[v4++], socket(n, AF_INET));
    for (std::uint64_t n = 300; n < 600; ++n)
        if (n % 3 == 0) check_same(next.got[v4++], socket(n, AF_INET6));
}

TEST_CASE("page buffers give back whole pages only") {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    scan::PageBuffer buffer(3 * page + 100);
    std::byte* p = buffer.data();
    REQUIRE(p != nullptr);
    CHECK(buffer.data() == p);
    for (std::size_t i = 0; i < 3 * page + 100; ++i)
        p[i] = std::byte{0x5a};
    buffer.release_front(page + 10); // the first page goes, the second stays
    CHECK(p[0] == std::byte{0});
    CHECK(p[page - 1] == std::byte{0});
    CHECK(p[page] == std::byte{0x5a});
    CHECK(p[3 * page + 99] == std::byte{0x5a});
}

TEST_CASE("deduplicate keeps the last report of each cookie, sorted, and every cookie-less one") {
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        std::vector<SocketRecord> sockets(rng() % 60);
        const std::uint64_t cookies = 1 + rng() % 40; // few cookies: many repeats
        for (std::size_t i = 0; i < sockets.size(); ++i) {
            sockets[i].cookie = rng() % 4 == 0 ? 0 : 1 + rng() % cookies;
            sockets[i].inode = i; // the report's place in the dump
        }
        // What deduplicate() promises, the plain way.
        std::vector<SocketRecord> expected = sockets;
        std::stable_sort(expected.begin(), expected.end(),
                         [](const auto& a, const auto& b) { return a.cookie < b.cookie; });
        std::vector<SocketRecord> want;
        for (std::size_t i = 0; i < expected.size(); ++i)
            if (expected[i].cookie == 0 || i + 1 == expected.size() ||
                expected[i + 1].cookie != expected[i].cookie)
                want.push_back(expected[i]);

        scan::deduplicate(sockets);
        REQUIRE(sockets.size() == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            CHECK(sockets[i].cookie == want[i].cookie);
            CHECK(sockets[i].inode == want[i].inode);
        }
    }
}

namespace {

SocketRecord client(std::uint64_t cookie, std::uint64_t inode, const Endpoint& remote,
                    std::uint16_t local_port, TcpState state = TcpState::established) {
    SocketRecord s;
    s.state = state;
    s.cookie = cookie;
    s.inode = state == TcpState::time_wait ? 0 : inode;
    s.local = endpoint(AF_INET, {127, 0, 0, 1}, local_port);
    s.remote = remote;
    return s;
}

} // namespace

TEST_CASE("a TIME_WAIT toward a peer two scanned processes talk to is counted once, for neither") {
    const Endpoint server = endpoint(AF_INET, {127, 0, 0, 1}, 48091);
    const Endpoint other = endpoint(AF_INET, {127, 0, 0, 1}, 48092);
    scan::Snapshot snapshot;
    snapshot.processes.resize(2);
    snapshot.processes[0].info.pid = 100;
    snapshot.processes[1].info.pid = 200;
    snapshot.processes[0].sockets = {client(1, 11, server, 50001), client(2, 12, other, 50002)};
    snapshot.processes[1].sockets = {client(3, 13, server, 50003)};
    scan::NetnsGroup group{1, 100, {0, 1}, false};
    const scan::CookieOwners known{{7, 200}}; // an earlier scan saw cookie 7 live in pid 200
    scan::TimeWaitSink tw(snapshot, group, known, nullptr);
    tw.on_socket(client(5, 0, server, 50005, TcpState::time_wait)); // whose? both talk to it
    tw.on_socket(client(6, 0, server, 50006, TcpState::time_wait));
    tw.on_socket(client(7, 0, server, 50007, TcpState::time_wait)); // known by cookie: exact
    tw.on_socket(client(8, 0, other, 50008, TcpState::time_wait));  // only pid 100 talks to it
    scan::LiveSink live(snapshot, {}, group);
    scan::finish_group(snapshot, group, live, tw);

    CHECK(snapshot.unattributed.time_wait_ambiguous == 2);
    CHECK(snapshot.unattributed.time_wait == 0);
    CHECK(snapshot.processes[0].time_wait_by_peer.size() == 1);
    CHECK(snapshot.processes[0].time_wait_by_peer[0].cookie == 8);
    CHECK(snapshot.processes[1].time_wait_by_peer.empty());
    CHECK(snapshot.processes[1].time_wait_exact == 1);
    CHECK(snapshot.processes[0].time_wait_exact == 0);
}

TEST_CASE("a TIME_WAIT on a port two processes listen on is ambiguous; on one, it is that one's") {
    const Endpoint any = endpoint(AF_INET, {0, 0, 0, 0}, 8080);
    scan::Snapshot snapshot;
    snapshot.processes.resize(3);
    for (std::size_t i = 0; i < 3; ++i)
        snapshot.processes[i].info.pid = static_cast<pid_t>(100 + i);
    auto listener = [&](std::uint64_t cookie, std::uint16_t port) {
        SocketRecord s;
        s.state = TcpState::listen;
        s.cookie = cookie;
        s.inode = cookie + 100;
        s.local = any;
        s.local.port = port;
        return s;
    };
    // Two workers share a listening port (SO_REUSEPORT); a third listens alone.
    snapshot.processes[0].sockets = {listener(1, 8080)};
    snapshot.processes[1].sockets = {listener(2, 8080)};
    snapshot.processes[2].sockets = {listener(3, 9090)};
    scan::NetnsGroup group{1, 100, {0, 1, 2}, false};
    const scan::CookieOwners known;
    scan::TimeWaitSink tw(snapshot, group, known, nullptr);
    const Endpoint visitor = endpoint(AF_INET, {10, 0, 0, 9}, 33333);
    SocketRecord shared = client(10, 0, visitor, 8080, TcpState::time_wait);
    SocketRecord alone = client(11, 0, visitor, 9090, TcpState::time_wait);
    tw.on_socket(shared);
    tw.on_socket(alone);
    CHECK(tw.ambiguous_ == 1);
    CHECK(snapshot.processes[0].time_wait_by_peer.empty());
    CHECK(snapshot.processes[1].time_wait_by_peer.empty());
    CHECK(snapshot.processes[2].time_wait_by_peer.size() == 1);
}
