#include "support.hpp"

#include "conncheck/diag/netlink.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace testsupport {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

} // namespace

CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                  const std::vector<std::string>& extra_env) {
    int out_pipe[2];
    int err_pipe[2];
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) fail("pipe2");
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e)
        env_storage.emplace_back(*e);
    for (const auto& e : extra_env)
        env_storage.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_storage)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = argv;
    std::vector<char*> argp;
    for (auto& a : args)
        argp.push_back(a.data());
    argp.push_back(nullptr);

    const pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        const int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(out_pipe[1], 1);
        dup2(err_pipe[1], 2);
        execve(argp[0], argp.data(), envp.data());
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    CommandResult result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_streams = 2;
    bool killed = false;
    while (open_streams > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            break;
        }
        const int n = poll(fds, 2, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            char buf[65536];
            const ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got > 0) {
                (i == 0 ? result.out : result.err).append(buf, static_cast<std::size_t>(got));
            } else {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_streams;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) close(f.fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!killed && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
    return result;
}

std::string conncheck_bin() {
    const char* bin = std::getenv("CONNCHECK_BIN");
    if (bin == nullptr)
        throw std::runtime_error("CONNCHECK_BIN is not set (run through meson test)");
    return bin;
}

std::string source_root() {
    const char* root = std::getenv("CONNCHECK_SOURCE_ROOT");
    if (root == nullptr) throw std::runtime_error("CONNCHECK_SOURCE_ROOT is not set");
    return root;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll_every) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(poll_every);
    }
}

namespace {

std::uint32_t next_loopback_address() {
    // 127.0.0.0/8 is all loopback on Linux; start from the pid so concurrent test processes differ.
    static std::uint32_t counter = static_cast<std::uint32_t>(getpid()) * 7919U;
    const std::uint32_t n = counter++ % (250U * 250U * 250U);
    return (127U << 24) | ((n / 62500U + 1U) << 16) | (((n / 250U) % 250U + 1U) << 8) |
           (n % 250U + 1U);
}

} // namespace

Listener listen_loopback(int family, int backlog) {
    Listener l;
    l.family = family;
    if (family == AF_INET) l.addr4 = next_loopback_address();
    l.fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l.fd < 0) fail("socket");
    const int one = 1;
    setsockopt(l.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(l.addr4);
        len = sizeof(sockaddr_in);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(sockaddr_in6);
    }
    if (bind(l.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) fail("bind");
    if (listen(l.fd, backlog) != 0) fail("listen");
    if (getsockname(l.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) fail("getsockname");
    l.port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return l;
}

void connect_then_close(const Listener& l, int n) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i)
        fds.push_back(connect_to(l));
    for (int fd : fds)
        close(fd);
}

int connect_to(const Listener& l) {
    const int fd = socket(l.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (l.family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(l.addr4);
        sin->sin_port = htons(l.port);
        len = sizeof(sockaddr_in);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        sin6->sin6_port = htons(l.port);
        len = sizeof(sockaddr_in6);
    }
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) fail("connect");
    return fd;
}

int connect_mapped(const Listener& l) {
    if (l.family != AF_INET) fail("connect_mapped needs an IPv4 listener");
    const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr.s6_addr[10] = 0xff;
    sin6.sin6_addr.s6_addr[11] = 0xff;
    const std::uint32_t addr = htonl(l.addr4);
    std::memcpy(&sin6.sin6_addr.s6_addr[12], &addr, 4);
    sin6.sin6_port = htons(l.port);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6) != 0) fail("connect");
    return fd;
}

std::string endpoint_string(const Listener& l) {
    if (l.family == AF_INET6) return "[::1]:" + std::to_string(l.port);
    in_addr a{};
    a.s_addr = htonl(l.addr4);
    char buf[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &a, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(l.port);
}

int accept_from(const Listener& l) {
    const int fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) fail("accept4");
    return fd;
}

std::vector<int> close_the_closed(const std::vector<int>& accepted, std::size_t closing) {
    const auto closed = [](int fd) { return tcp_state_of(fd) == TCP_CLOSE_WAIT; };
    if (!wait_until(
            [&] {
                return static_cast<std::size_t>(
                           std::count_if(accepted.begin(), accepted.end(), closed)) == closing;
            },
            std::chrono::seconds(20), std::chrono::milliseconds(5)))
        throw std::runtime_error("the peer's FINs did not arrive");
    std::vector<int> kept;
    for (int fd : accepted) {
        if (closed(fd))
            close(fd);
        else
            kept.push_back(fd);
    }
    return kept;
}

std::size_t kernel_time_wait_toward(const Listener& l) {
    struct Count : conncheck::diag::DumpSink {
        std::string peer;
        std::size_t n = 0;
        void on_socket(const conncheck::SocketRecord& s) override {
            if (s.remote.to_string() == peer) ++n;
        }
    } count;
    count.peer = endpoint_string(l);
    conncheck::diag::DumpRequest request;
    request.family = static_cast<std::uint8_t>(l.family);
    request.states = conncheck::state_bit(conncheck::TcpState::time_wait);
    request.want_info = false;
    request.want_mem = false;
    (void)conncheck::diag::open_netlink()->dump(request, count);
    return count.n;
}

std::vector<int> accept_all(const Listener& l, std::size_t n) {
    std::vector<int> fds;
    for (std::size_t i = 0; i < n; ++i)
        fds.push_back(accept_from(l));
    return fds;
}

int tcp_state_of(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
    return info.tcpi_state;
}

Child::Child(const std::function<void()>& body) {
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) fail("pipe2");
    pid_ = fork();
    if (pid_ < 0) fail("fork");
    if (pid_ == 0) {
        close(ready[0]);
        body();
        const char byte = 1;
        if (write(ready[1], &byte, 1) != 1) _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    char byte = 0;
    ssize_t got;
    do {
        got = read(ready[0], &byte, 1);
    } while (got < 0 && errno == EINTR);
    close(ready[0]);
    if (got != 1) {
        stop();
        throw std::runtime_error("child process failed before it was ready");
    }
}

Child::~Child() {
    stop();
}

void Child::stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
}

TempDir::TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "conncheck-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp");
    path_ = tmpl;
}

TempDir::~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& content) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + path);
    f << content;
}

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

} // namespace testsupport
