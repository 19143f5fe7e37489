// The sock_diag source against the real kernel: sockets this process opens on loopback must come
// back with their states, inodes and cookies; a recording must replay to the same sockets.
#include "conncheck/diag/netlink.hpp"
#include "conncheck/diag/replay.hpp"
#include "conncheck/error.hpp"
#include "conncheck/files.hpp"

#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <sched.h>
#include <set>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace conncheck;
using namespace testsupport;

namespace {

struct Collect final : diag::DumpSink {
    std::vector<SocketRecord> sockets;
    void on_socket(const SocketRecord& s) override { sockets.push_back(s); }
    void on_restart() override { sockets.clear(); }
};

std::vector<SocketRecord> dump(diag::SocketSource& source, int family,
                               std::uint32_t states = all_states) {
    Collect sink;
    diag::DumpRequest request;
    request.family = static_cast<std::uint8_t>(family);
    request.states = states;
    const auto stats = source.dump(request, sink);
    CHECK(stats.malformed == 0);
    CHECK(stats.messages >= sink.sockets.size());
    return sink.sockets;
}

std::uint16_t local_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

std::uint64_t inode_of(int fd) {
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    return st.st_ino;
}

const SocketRecord* find(const std::vector<SocketRecord>& sockets, std::uint16_t local,
                         std::uint16_t remote, TcpState state) {
    const auto it = std::find_if(sockets.begin(), sockets.end(), [&](const SocketRecord& s) {
        return s.local.port == local && s.remote.port == remote && s.state == state;
    });
    return it == sockets.end() ? nullptr : &*it;
}

// A listener, a client and the accepted end, all in this process.
struct Trio {
    Listener listener;
    int client = -1;
    int server = -1;
    explicit Trio(int family) : listener(listen_loopback(family)) {
        client = connect_to(listener);
        server = accept_from(listener);
    }
    ~Trio() {
        if (client >= 0) close(client);
        if (server >= 0) close(server);
        close(listener.fd);
    }
    Trio(const Trio&) = delete;
    Trio& operator=(const Trio&) = delete;
};

bool ipv6_loopback_works() {
    try {
        const Listener l = listen_loopback(AF_INET6);
        close(l.fd);
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

} // namespace

TEST_CASE("our own loopback sockets come back with states, inodes, cookies and tcp_info") {
    auto source = diag::open_netlink();
    CHECK(source->name() == "netlink");
    for (const int family : {AF_INET, AF_INET6}) {
        CAPTURE(family);
        if (family == AF_INET6 && !ipv6_loopback_works()) {
            WARN_MESSAGE(false, "skipped: no IPv6 loopback here");
            continue;
        }
        Trio trio(family);
        const std::uint16_t client_port = local_port(trio.client);
        const auto sockets = dump(*source, family);

        const SocketRecord* listener = find(sockets, trio.listener.port, 0, TcpState::listen);
        const SocketRecord* client =
            find(sockets, client_port, trio.listener.port, TcpState::established);
        const SocketRecord* server =
            find(sockets, trio.listener.port, client_port, TcpState::established);
        REQUIRE(listener != nullptr);
        REQUIRE(client != nullptr);
        REQUIRE(server != nullptr);
        CHECK(listener->inode == inode_of(trio.listener.fd));
        CHECK(client->inode == inode_of(trio.client));
        CHECK(server->inode == inode_of(trio.server));
        CHECK(client->uid == getuid());
        CHECK(client->local.family == family);
        CHECK(client->remote.to_string() == testsupport::endpoint_string(trio.listener));

        const std::set<std::uint64_t> cookies{listener->cookie, client->cookie, server->cookie};
        CHECK(cookies.size() == 3);
        CHECK(cookies.count(0) == 0);
        for (const SocketRecord* s : {listener, client, server}) {
            CHECK(s->info.has_value());
            CHECK(s->mem.has_value());
        }
        CHECK(client->mem->sndbuf > 0);
    }
}

TEST_CASE("the kernel filters states: a LISTEN request returns only LISTEN") {
    auto source = diag::open_netlink();
    Trio trio(AF_INET);
    const auto sockets = dump(*source, AF_INET, state_bit(TcpState::listen));
    CHECK(find(sockets, trio.listener.port, 0, TcpState::listen) != nullptr);
    for (const auto& s : sockets)
        CHECK(s.state == TcpState::listen);
    CHECK(std::none_of(sockets.begin(), sockets.end(), [&](const SocketRecord& s) {
        return s.local.port == local_port(trio.client);
    }));
}

TEST_CASE("a recording replays to the same sockets") {
    TempDir dir;
    const std::string path = dir.path() + "/dump.ccnl";
    Trio trio(AF_INET);
    std::vector<SocketRecord> live;
    auto recording = files::OutputFile::create(path, 0644);
    recording.write(diag::recording_magic);
    recording.commit(false);
    diag::NetlinkOptions options;
    options.record_fd = recording.fd();
    options.record_path = path;
    {
        auto source = diag::open_netlink(options);
        live = dump(*source, AF_INET);
        (void)dump(*source, AF_INET6);
    }
    REQUIRE(read_file(path).rfind(std::string(diag::recording_magic), 0) == 0);
    auto replay = diag::open_replay(path);
    const auto replayed = dump(*replay, AF_INET);
    REQUIRE(replayed.size() == live.size());
    for (std::size_t i = 0; i < live.size(); ++i) {
        CHECK(replayed[i].cookie == live[i].cookie);
        CHECK(replayed[i].inode == live[i].inode);
        CHECK(replayed[i].state == live[i].state);
        CHECK(replayed[i].local == live[i].local);
        CHECK(replayed[i].remote == live[i].remote);
        CHECK(replayed[i].info.has_value() == live[i].info.has_value());
    }
    const auto listening = dump(*replay, AF_INET, state_bit(TcpState::listen));
    CHECK(find(listening, trio.listener.port, 0, TcpState::listen) != nullptr);
    for (const auto& s : listening)
        CHECK(s.state == TcpState::listen);

    // A second source appends to the same recording.
    const auto size_before = read_file(path).size();
    { (void)dump(*diag::open_netlink(options), AF_INET); }
    const std::string grown = read_file(path);
    CHECK(grown.size() > size_before);
    CHECK(grown.find(std::string(diag::recording_magic), 1) == std::string::npos);
}

TEST_CASE("a TIME_WAIT socket keeps the cookie of the live socket it came from") {
    auto source = diag::open_netlink();
    Trio trio(AF_INET);
    const std::uint16_t client_port = local_port(trio.client);
    const auto before = dump(*source, AF_INET);
    const SocketRecord* live = find(before, client_port, trio.listener.port, TcpState::established);
    REQUIRE(live != nullptr);
    const std::uint64_t cookie = live->cookie;

    // The side that closes first ends in TIME_WAIT.
    close(trio.client);
    trio.client = -1;
    REQUIRE(wait_until([&] { return tcp_state_of(trio.server) == 8 /* CLOSE_WAIT */; }, 5s));
    close(trio.server);
    trio.server = -1;

    SocketRecord time_wait;
    REQUIRE(wait_until(
        [&] {
            const auto now = dump(*source, AF_INET, state_bit(TcpState::time_wait));
            const SocketRecord* s = find(now, client_port, trio.listener.port, TcpState::time_wait);
            if (s != nullptr) time_wait = *s;
            return s != nullptr;
        },
        5s));
    CHECK(time_wait.cookie == cookie);
    CHECK(time_wait.inode == 0);
    CHECK(time_wait.timer == 3);
    CHECK(time_wait.expires_ms > 0);
    CHECK(time_wait.expires_ms <= 60'000);
}

TEST_CASE("a source opened in another network namespace sees that namespace") {
    const Listener ours = listen_loopback(AF_INET);
    const std::uint16_t port = ours.port;
    // The child enters a fresh namespace and listens on the same port number there.
    std::unique_ptr<Child> child;
    try {
        child = std::make_unique<Child>([port] {
            if (unshare(CLONE_NEWNET) != 0) _exit(77);
            const int fd = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in sin{};
            sin.sin_family = AF_INET;
            sin.sin_port = htons(port);
            if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
                listen(fd, 8) != 0) {
                _exit(1);
            }
        });
    } catch (const std::exception&) {
        close(ours.fd);
        WARN_MESSAGE(false, "skipped: cannot create a network namespace (needs root)");
        return;
    }
    const std::string ns_path = "/proc/" + std::to_string(child->pid()) + "/ns/net";
    const int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(ns >= 0);
    diag::NetlinkOptions options;
    options.netns_fd = ns;
    auto source = diag::open_netlink(options);
    close(ns); // the source keeps its own reference
    const auto theirs = dump(*source, AF_INET);
    const SocketRecord* listener = find(theirs, port, 0, TcpState::listen);
    REQUIRE(listener != nullptr);
    CHECK(listener->local.address_string() == "0.0.0.0");
    CHECK(listener->inode != inode_of(ours.fd));
    CHECK(theirs.size() == 1);
    // Our own namespace still answers through a default source.
    auto here = diag::open_netlink();
    const auto mine = dump(*here, AF_INET);
    const SocketRecord* own = find(mine, port, 0, TcpState::listen);
    REQUIRE(own != nullptr);
    CHECK(own->inode == inode_of(ours.fd));
    close(ours.fd);
}

TEST_CASE("a file that is not a namespace is an error, not a crash") {
    TempDir dir;
    write_file(dir.path() + "/f", "x");
    const int fd = open((dir.path() + "/f").c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    diag::NetlinkOptions options;
    options.netns_fd = fd;
    try {
        (void)diag::open_netlink(options);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("cannot enter the network namespace") !=
              std::string::npos);
    }
    close(fd);
}

TEST_CASE("a dump abandoned half way (the sink threw) leaves the source usable") {
    auto source = diag::open_netlink();
    Trio trio(AF_INET);
    struct Thrower final : diag::DumpSink {
        void on_socket(const SocketRecord&) override { throw std::runtime_error("stop"); }
    } thrower;
    diag::DumpRequest request;
    request.family = AF_INET;
    CHECK_THROWS_AS((void)source->dump(request, thrower), std::runtime_error);
    // The kernel still holds the first dump on that socket; the next one must not get its replies
    // or EBUSY.
    const auto sockets = dump(*source, AF_INET);
    CHECK(find(sockets, trio.listener.port, 0, TcpState::listen) != nullptr);
}
