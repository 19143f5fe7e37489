// The process `trace` is tested against: built with frame pointers, it opens connections from
// functions with known names and leaves behind exactly what the test expects to be reported.
//   trace_target GO_FIFO
// forks its peer (three loopback listeners, not traced), prints "ready", waits for a line on
// GO_FIFO, then:
//   leak_to_closing_peer()    x3: the peer closes at once, these are never closed (CLOSE_WAIT)
//   reconnect_without_close() x3, 1.2 s apart, to a peer that stays silent: the first two are
//                              abandoned when the next opens (zombies), the last is current
//   fetch_and_close()         x4: closed here first, each leaves a TIME_WAIT socket
// prints "done" and waits to be killed.
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    return a;
}

int listen_any(std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = loopback(0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd, 64) != 0)
        die("listen");
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    return fd;
}

// The peer: closes what arrives on `closer`, holds silently what arrives on `silent` and `polite`
// (the client closes those).
[[noreturn]] void run_peer(int closer, int silent, int polite) {
    std::vector<int> held;
    pollfd fds[3] = {{closer, POLLIN, 0}, {silent, POLLIN, 0}, {polite, POLLIN, 0}};
    for (;;) {
        if (::poll(fds, 3, -1) < 0 && errno != EINTR) die("poll");
        for (auto& p : fds) {
            if (!(p.revents & POLLIN)) continue;
            const int c = ::accept(p.fd, nullptr, nullptr);
            if (c < 0) continue;
            if (p.fd == closer)
                ::close(c);
            else
                held.push_back(c);
        }
    }
}

int tcp_state(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len);
    return info.tcpi_state;
}

// Each opener calls connect() itself, so each is the call site of its own connections; each
// names itself in `opener` so that no two have the same code (identical functions get merged).
volatile const char* opener = nullptr;

__attribute__((noinline)) int leak_to_closing_peer(std::uint16_t port) {
    opener = __func__;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die("connect");
    return fd;
}

__attribute__((noinline)) int reconnect_without_close(std::uint16_t port) {
    opener = __func__;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die("connect");
    return fd;
}

__attribute__((noinline)) void fetch_and_close(std::uint16_t port) {
    opener = __func__;
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) die("connect");
    ::close(fd);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: trace_target GO_FIFO\n");
        return 2;
    }
    std::uint16_t closer_port = 0;
    std::uint16_t silent_port = 0;
    std::uint16_t polite_port = 0;
    const int closer = listen_any(closer_port);
    const int silent = listen_any(silent_port);
    const int polite = listen_any(polite_port);
    const pid_t peer = ::fork();
    if (peer < 0) die("fork");
    if (peer == 0) run_peer(closer, silent, polite);
    ::close(closer);
    ::close(silent);
    ::close(polite);

    std::printf("ready closer=%u silent=%u polite=%u peer=%d\n", closer_port, silent_port,
                polite_port, static_cast<int>(peer));
    std::fflush(stdout);
    char line[16];
    FILE* go = std::fopen(argv[1], "r");
    if (!go || !std::fgets(line, sizeof line, go)) die("waiting for go");
    std::fclose(go);

    std::vector<int> kept;
    for (int i = 0; i < 3; ++i)
        kept.push_back(leak_to_closing_peer(closer_port));
    for (int i = 0; i < 3; ++i) {
        if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        kept.push_back(reconnect_without_close(silent_port));
    }
    for (int i = 0; i < 4; ++i)
        fetch_and_close(polite_port);
    // The peer's FINs have arrived once every leaked socket is in CLOSE_WAIT.
    for (int i = 0; i < 3; ++i)
        while (tcp_state(kept[static_cast<std::size_t>(i)]) != TCP_CLOSE_WAIT)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // The last zombie must have been silent for the test's --silence (1 s) when the trace ends.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    std::printf("done\n");
    std::fflush(stdout);
    for (;;)
        ::pause();
}
