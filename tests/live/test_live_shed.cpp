// SOCK_DESTROY against the real kernel: a socket is aborted only when both its 4-tuple and its
// cookie match, so a socket that took over the 4-tuple of one that was previewed is left alone.
#include "conncheck/diag/netlink.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/shed.hpp"

#include "support.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
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

// This process's socket on `fd`, as sock_diag reports it.
std::optional<SocketRecord> record_of(int fd) {
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    auto source = diag::open_netlink();
    Collect sink;
    diag::DumpRequest request;
    request.family = AF_INET;
    (void)source->dump(request, sink);
    for (const auto& s : sink.sockets)
        if (s.inode == st.st_ino) return s;
    return std::nullopt;
}

// A client bound to 127.0.0.1:port (0: any), connected to `l`.
int connect_from(const Listener& l, std::uint16_t port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const int one = 1;
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    local.sin_port = htons(port);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
    sockaddr_in remote{};
    remote.sin_family = AF_INET;
    remote.sin_addr.s_addr = htonl(l.addr4);
    remote.sin_port = htons(l.port);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) == 0);
    return fd;
}

// Closes with a reset: no TIME_WAIT keeps the 4-tuple.
void reset_close(int fd) {
    const linger abort_now{1, 0};
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now) == 0);
    close(fd);
}

bool echoes(int client, int server) {
    char byte = 'x';
    if (send(client, &byte, 1, MSG_NOSIGNAL) != 1) return false;
    char got = 0;
    return recv(server, &got, 1, 0) == 1 && got == 'x';
}

} // namespace

TEST_CASE("SOCK_DESTROY with a stale cookie leaves the socket that reuses the 4-tuple alone") {
    if (!privilege::granted(privilege::Access::destroy_sockets)) {
        WARN_MESSAGE(false, "skipped: SOCK_DESTROY needs CAP_NET_ADMIN");
        return;
    }
    const Listener l = listen_loopback(AF_INET);
    const int first = connect_from(l, 0);
    const int first_server = accept_from(l);
    const auto previewed = record_of(first);
    REQUIRE(previewed.has_value());
    const std::uint16_t port = previewed->local.port;
    const auto server_end = record_of(first_server);
    REQUIRE(server_end.has_value());

    // The previewed socket goes; a new one takes the very same 4-tuple.
    reset_close(first);
    // The server's end got the reset: TCP is done with it, it is in no table, and SOCK_DESTROY
    // cannot reach it, while the process still holds it.
    REQUIRE(wait_until([&] { return tcp_state_of(first_server) == TCP_CLOSE; }, 10s));
    auto destroyer = diag::open_destroyer();
    CHECK(destroyer->destroy(*server_end).result == diag::DestroyResult::gone);
    close(first_server);
    const int second = connect_from(l, port);
    const int second_server = accept_from(l);
    const auto now = record_of(second);
    REQUIRE(now.has_value());
    REQUIRE(now->local == previewed->local);
    REQUIRE(now->remote == previewed->remote);
    REQUIRE(now->cookie != previewed->cookie);

    // Linux 6.18 answers ENOENT when the 4-tuple's socket has another cookie (older kernels
    // ESTALE): either way nothing is touched.
    const diag::DestroyAnswer answer = destroyer->destroy(*previewed);
    CHECK((answer.result == diag::DestroyResult::gone ||
           answer.result == diag::DestroyResult::replaced));
    CHECK(tcp_state_of(second) == TCP_ESTABLISHED);
    CHECK(echoes(second, second_server));

    // The same through the whole close path: asked for again by 4-tuple and cookie, not found.
    shed::Request request;
    request.idle_ms = 0;
    shed::Candidate stale{getpid(), 0, *previewed, shed::Reason::cookie, std::nullopt};
    const proc::ProcFs procfs;
    std::vector<shed::Outcome> seen;
    const auto outcomes =
        shed::act(procfs, {stale}, request,
                  [&](const shed::Candidate&, const shed::Outcome& o) { seen.push_back(o); });
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].result == shed::Outcome::Result::gone);
    CHECK(seen.size() == 1);
    CHECK(tcp_state_of(second) == TCP_ESTABLISHED);
    CHECK(echoes(second, second_server));

    // With its own cookie it is aborted: the owner's next write fails with ECONNABORTED, the peer
    // reads a reset.
    shed::Candidate current{getpid(), 0, *now, shed::Reason::cookie, std::nullopt};
    const auto done = shed::act(procfs, {current}, request, nullptr);
    REQUIRE(done.size() == 1);
    CHECK(done[0].result == shed::Outcome::Result::destroyed);
    char byte = 'x';
    CHECK(send(second, &byte, 1, MSG_NOSIGNAL) == -1);
    CHECK(errno == ECONNABORTED);
    char got = 0;
    CHECK(recv(second_server, &got, 1, 0) == -1);
    CHECK(errno == ECONNRESET);
    // TCP is done with it. Bound to its port by the process itself, it stays in the bind table
    // (state CLOSE) until closed: the port is released only where the kernel chose it.
    const auto aborted = record_of(second);
    CHECK((!aborted || aborted->state == TcpState::close));
    CHECK(destroyer->destroy(*now).result == diag::DestroyResult::gone);
    close(second);
    close(second_server);
    close(l.fd);
}

TEST_CASE("a socket that received data since the plan is left alone") {
    if (!privilege::granted(privilege::Access::destroy_sockets)) {
        WARN_MESSAGE(false, "skipped: SOCK_DESTROY needs CAP_NET_ADMIN");
        return;
    }
    const Listener l = listen_loopback(AF_INET);
    const int client = connect_from(l, 0);
    const int server = accept_from(l);
    auto planned = record_of(client);
    REQUIRE(planned.has_value());
    // As a plan made after a silence would have seen it; then data arrives.
    planned->info->last_data_recv_ms = 120'000;
    REQUIRE(echoes(server, client));
    shed::Request request;
    request.idle_ms = 60'000;
    const shed::Candidate c{getpid(), 0, *planned, shed::Reason::cookie, std::nullopt};
    const auto outcomes = shed::act(proc::ProcFs(), {c}, request, nullptr);
    REQUIRE(outcomes.size() == 1);
    CHECK(outcomes[0].result == shed::Outcome::Result::not_selected);
    CHECK(outcomes[0].why == shed::Refusal::received_recently);
    CHECK(tcp_state_of(client) == TCP_ESTABLISHED);
    CHECK(echoes(client, server));
    close(client);
    close(server);
    close(l.fd);
}
