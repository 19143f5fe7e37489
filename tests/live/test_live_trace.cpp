// The eBPF probe against the kernel: it loads and verifies here, follows this process's own
// loopback connections through every state, and reports nothing of a process it was not given.
#include "conncheck/diag/netlink.hpp"
#include "conncheck/trace/probe.hpp"
#include "support.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>
#include <vector>

using namespace conncheck;
using namespace testsupport;

namespace {

struct Collected {
    std::vector<trace::Event> events;

    [[nodiscard]] std::vector<trace::Event> of(std::uint64_t connection) const {
        std::vector<trace::Event> out;
        for (const auto& e : events)
            if (e.connection == connection) out.push_back(e);
        return out;
    }
    // The connection opened toward (or accepted from) this remote port.
    [[nodiscard]] const trace::Event* opened(bool accepted, std::uint16_t port) const {
        for (const auto& e : events)
            if (e.kind == trace::EventKind::opened && e.accepted == accepted &&
                (accepted ? e.local.port : e.remote.port) == port)
                return &e;
        return nullptr;
    }
    [[nodiscard]] bool has(std::uint64_t connection, TcpState old_state, TcpState new_state) const {
        return std::any_of(events.begin(), events.end(), [&](const trace::Event& e) {
            return e.connection == connection && e.kind == trace::EventKind::state &&
                   e.old_state == old_state && e.new_state == new_state;
        });
    }
    [[nodiscard]] bool destroyed(std::uint64_t connection) const {
        return std::any_of(events.begin(), events.end(), [&](const trace::Event& e) {
            return e.connection == connection && e.kind == trace::EventKind::destroyed;
        });
    }
};

// Drains the probe until `condition` holds or five seconds pass.
bool collect_until(trace::Probe& probe, Collected& out, const std::function<bool()>& condition) {
    return wait_until(
        [&] {
            pollfd p{probe.wait_fd(), POLLIN, 0};
            ::poll(&p, 1, 20);
            probe.drain([&](const trace::Event& e) { out.events.push_back(e); });
            return condition();
        },
        std::chrono::seconds(5), std::chrono::milliseconds(1));
}

struct TimeWaitCookies : diag::DumpSink {
    std::vector<std::uint64_t> cookies;
    void on_socket(const SocketRecord& s) override { cookies.push_back(s.cookie); }
};

void follow_one_connection(int family) {
    trace::Probe probe({});
    probe.add_target(::getpid());
    const Listener listener = listen_loopback(family);
    Collected got;
    // accept() is followed from the moment the reader sees the target listen.
    REQUIRE(collect_until(probe, got, [&] { return probe.follows_accepts(); }));
    const int client = connect_to(listener);
    const int server = accept_from(listener);

    REQUIRE(collect_until(probe, got, [&] {
        return got.opened(false, listener.port) && got.opened(true, listener.port);
    }));
    const trace::Event dialled = *got.opened(false, listener.port);
    const trace::Event accepted = *got.opened(true, listener.port);
    CHECK(dialled.pid == ::getpid());
    CHECK(dialled.tid == ::gettid());
    CHECK(dialled.remote.family == family);
    CHECK(dialled.new_state == TcpState::syn_sent);
    CHECK(dialled.cookie != 0);
    CHECK(!dialled.stack.empty());
    CHECK(accepted.tid == ::gettid());
    CHECK(accepted.new_state == TcpState::established);
    CHECK(accepted.remote.family == family);
    CHECK(dialled.connection != accepted.connection);
    CHECK(dialled.time_ns <= accepted.time_ns);
    CHECK(got.has(dialled.connection, TcpState::syn_sent, TcpState::established));

    // The server side closes first: the client sees the peer's FIN (CLOSE_WAIT, in softirq), the
    // server's socket ends in TIME_WAIT.
    ::close(server);
    REQUIRE(collect_until(probe, got, [&] {
        return got.has(dialled.connection, TcpState::established, TcpState::close_wait);
    }));
    ::close(client);
    REQUIRE(collect_until(probe, got, [&] {
        return got.destroyed(dialled.connection) && got.destroyed(accepted.connection);
    }));
    CHECK(got.has(dialled.connection, TcpState::close_wait, TcpState::last_ack));
    const auto server_events = got.of(accepted.connection);
    const bool handed =
        std::any_of(server_events.begin(), server_events.end(),
                    [](const trace::Event& e) { return trace::hands_to_time_wait(e); });
    CHECK(handed);
    const auto client_events = got.of(dialled.connection);
    CHECK(std::none_of(client_events.begin(), client_events.end(),
                       [](const trace::Event& e) { return trace::hands_to_time_wait(e); }));
    for (std::size_t i = 1; i < client_events.size(); ++i)
        CHECK(client_events[i - 1].time_ns <= client_events[i].time_ns);

    // The TIME_WAIT socket the kernel keeps carries the cookie the probe reported (assigned at
    // accept time or at the first state change after it).
    std::uint64_t server_cookie = 0;
    for (const auto& e : server_events)
        if (e.cookie != 0) server_cookie = e.cookie;
    REQUIRE(server_cookie != 0);
    TimeWaitCookies tw;
    diag::DumpRequest request;
    request.family = static_cast<std::uint8_t>(family);
    request.states = state_bit(TcpState::time_wait);
    request.want_info = false;
    request.want_mem = false;
    (void)diag::open_netlink()->dump(request, tw);
    CHECK(std::find(tw.cookies.begin(), tw.cookies.end(), server_cookie) != tw.cookies.end());
    ::close(listener.fd);
}

} // namespace

TEST_CASE("the probe loads here and follows an IPv4 connection from connect to destruction") {
    follow_one_connection(AF_INET);
}

TEST_CASE("the probe follows an IPv6 connection") {
    follow_one_connection(AF_INET6);
}

TEST_CASE("another process's connections never reach user space") {
    trace::Probe probe({});
    probe.add_target(::getpid());
    const Listener listener = listen_loopback(AF_INET);
    Collected got;
    REQUIRE(collect_until(probe, got, [&] { return probe.follows_accepts(); }));
    Child other([&] {
        for (int i = 0; i < 20; ++i)
            ::close(connect_to(listener));
    });
    const std::vector<int> accepted = accept_all(listener, 20);
    // One connection of ours afterwards: once it is seen, anything of the child's would have been.
    const int mine = connect_to(listener);
    REQUIRE(collect_until(probe, got, [&] { return got.opened(false, listener.port) != nullptr; }));
    for (const auto& e : got.events)
        CHECK(e.pid == ::getpid());
    // Our accept() calls are ours: they are the 20 accepted connections, the child's are not.
    CHECK(std::count_if(got.events.begin(), got.events.end(), [](const trace::Event& e) {
              return e.kind == trace::EventKind::opened && !e.accepted;
          }) == 1);
    CHECK(std::count_if(got.events.begin(), got.events.end(), [](const trace::Event& e) {
              return e.kind == trace::EventKind::opened && e.accepted;
          }) == 20);
    ::close(mine);
    for (int fd : accepted)
        ::close(fd);
    ::close(listener.fd);
}

namespace {

// Resumed-data events need a program on sk_data_ready, which runs for every packet the host
// receives: loaded only when asked for.
void data_after_silence(std::uint64_t silence_ns) {
    trace::ProbeConfig config;
    config.silence_ns = silence_ns;
    trace::Probe probe(config);
    CHECK(probe.follows_data() == (silence_ns != 0));
    probe.add_target(::getpid());
    const Listener listener = listen_loopback(AF_INET);
    const int client = connect_to(listener);
    const int server = accept_from(listener);
    Collected got;
    REQUIRE(collect_until(probe, got, [&] { return got.opened(false, listener.port); }));
    const std::uint64_t connection = got.opened(false, listener.port)->connection;
    // Silent for at least 100 ms, then one byte.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(::send(server, "x", 1, 0) == 1);
    char byte = 0;
    REQUIRE(::recv(client, &byte, 1, 0) == 1);
    ::close(server);
    ::close(client);
    REQUIRE(collect_until(probe, got, [&] { return got.destroyed(connection); }));
    std::vector<trace::Event> resumed;
    for (const auto& e : got.of(connection))
        if (e.kind == trace::EventKind::resumed) resumed.push_back(e);
    if (silence_ns == 0) {
        CHECK(resumed.empty());
    } else {
        REQUIRE(!resumed.empty());
        CHECK(resumed.front().silence_ns >= 100'000'000ULL);
    }
    ::close(listener.fd);
}

} // namespace

TEST_CASE("data after silence is reported only when asked for") {
    data_after_silence(0);
    data_after_silence(50'000'000ULL);
}

int main(int argc, char** argv) {
    // Without eBPF here (a build without it, no BTF, no CAP_BPF) there is nothing to test: skip.
    // CI, where eBPF works, sets CONNCHECK_REQUIRE_BPF: there a missing probe is a failure.
    if (const std::string reason = trace::unavailable_reason(); !reason.empty()) {
        const bool required = std::getenv("CONNCHECK_REQUIRE_BPF") != nullptr;
        std::fprintf(stderr, "%s: %s\n", required ? "FAIL" : "skipped", reason.c_str());
        return required ? 1 : 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
