// Shared helpers for the live and cli suites: run a command, wait for a condition with a deadline,
// open loopback sockets, hold sockets in a child process, make temporary directories.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace testsupport {

using namespace std::chrono_literals;

struct CommandResult {
    int exit_code = -1; // -1: killed after the timeout or by a signal
    std::string out;
    std::string err;
};

// Runs argv (argv[0] a path) with stdin from /dev/null and captures both streams. A command that
// outlives `timeout` is killed and reported with exit_code -1.
CommandResult run(const std::vector<std::string>& argv,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(30'000),
                  const std::vector<std::string>& extra_env = {});

std::string conncheck_bin(); // $CONNCHECK_BIN, set by meson
std::string source_root();   // $CONNCHECK_SOURCE_ROOT

// Polls `condition` until it holds or `timeout` passes: waiting for a state the kernel reaches
// asynchronously, never sleeping a fixed time and hoping.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(5));

struct Listener {
    int fd = -1;
    int family = 0;
    std::uint16_t port = 0;
    std::uint32_t addr4 = 0; // host byte order, AF_INET only
};
// Listens on an ephemeral port of ::1, or of an IPv4 loopback address of its own (127.x.y.z, a
// new one per listener), so TIME_WAIT left toward an earlier test's listener can never be
// attributed by peer endpoint to a later test's process.
Listener listen_loopback(int family, int backlog = 1024);
int connect_to(const Listener& listener); // blocking connect, returns the fd
// Opens `n` connections to `l`, then closes them all (TIME_WAIT here once the far end closes
// too). Not a close after each: past tcp_tw_reuse_delay (1 s), which a loaded machine reaches,
// a later connect() on loopback may take over an earlier one's TIME_WAIT (tcp_tw_reuse=2).
void connect_then_close(const Listener& l, int n);
// An AF_INET6 socket connected to an AF_INET listener through ::ffff:127.x.y.z.
int connect_mapped(const Listener& listener);
std::string
endpoint_string(const Listener& listener); // "127.3.9.17:41234" or "[::1]:41234", as ss prints it
int accept_from(const Listener& listener);
std::vector<int> accept_all(const Listener& listener, std::size_t n); // n connections, in order

// The kernel's state for the socket on fd (via getsockopt TCP_INFO), as the TCP_* number.
int tcp_state_of(int fd);
// Of `accepted` (server ends), waits until `closing` have the client's FIN (it may still be on its
// way when accept() returns), closes those and returns the others. Throws after 20 s.
std::vector<int> close_the_closed(const std::vector<int>& accepted, std::size_t closing);
// TIME_WAIT sockets the kernel holds toward `l` (its own table, through sock_diag). Now and then,
// on loopback, a segment of a connection reaches `l`'s listener after the server's end of it is
// gone; the listener answers with a reset (tcp:tcp_send_reset, reason TCP_FLAGS), and the reset
// ends the client's TIME_WAIT (tcp_rfc1337=0). About one connection in two thousand here: tests
// of TIME_WAIT attribution compare with this, not with how many connections they closed.
std::size_t kernel_time_wait_toward(const Listener& l);

// A forked child that runs `body`, then stays alive until the Child is destroyed or stop() is
// called. `body` gets nothing and must only make system calls (the parent may have threads).
class Child {
public:
    explicit Child(const std::function<void()>& body);
    ~Child();
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    [[nodiscard]] pid_t pid() const { return pid_; }
    void stop(); // SIGKILL and reap; idempotent

private:
    pid_t pid_ = -1;
};

class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    std::string path_;
};

void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

} // namespace testsupport
