// `conncheck watch --json` against a child holding known loopback sockets: the counts follow what
// the test does to the sockets while watch runs, TIME_WAIT is attributed exactly when watch saw
// the live socket and by peer when it did not, and watch exits 0 once the child is gone.
#include "support.hpp"

#include <cerrno>
#include <csignal>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace testsupport;
using nlohmann::json;

namespace {

// `conncheck watch ...` with stdout read line by line while it runs.
class WatchRun {
public:
    explicit WatchRun(const std::vector<std::string>& args) {
        int out[2];
        REQUIRE(pipe2(out, O_CLOEXEC) == 0);
        std::vector<std::string> argv{conncheck_bin(), "watch"};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> argp;
        for (auto& a : argv)
            argp.push_back(a.data());
        argp.push_back(nullptr);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int devnull = open("/dev/null", O_RDONLY);
            dup2(devnull, 0);
            dup2(out[1], 1);
            execv(argp[0], argp.data());
            _exit(127);
        }
        close(out[1]);
        fd_ = out[0];
    }
    ~WatchRun() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (fd_ >= 0) close(fd_);
    }
    WatchRun(const WatchRun&) = delete;
    WatchRun& operator=(const WatchRun&) = delete;

    // Reads JSON lines until one satisfies `want`; false at the deadline or the end of output.
    bool until(const std::function<bool(const json&)>& want, std::chrono::milliseconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (true) {
            while (next_line()) {
                const json j = json::parse(lines_.back()); // throws on a line that is not JSON
                if (want(j)) return true;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || eof_) return false;
            pollfd p{fd_, POLLIN, 0};
            poll(&p, 1, static_cast<int>(left.count()));
            char buf[65536];
            const ssize_t n = read(fd_, buf, sizeof buf);
            if (n > 0)
                pending_.append(buf, static_cast<std::size_t>(n));
            else if (n == 0)
                eof_ = true;
        }
    }
    // Exit status once it ends by itself, -1 if it does not within `timeout`.
    int exit_code(std::chrono::milliseconds timeout) {
        int status = 0;
        const bool ended =
            wait_until([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
        if (!ended) return -1;
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    [[nodiscard]] const std::vector<std::string>& lines() const { return lines_; }

private:
    bool next_line() {
        const auto nl = pending_.find('\n');
        if (nl == std::string::npos) return false;
        lines_.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
        return true;
    }
    pid_t pid_ = -1;
    int fd_ = -1;
    bool eof_ = false;
    std::string pending_;
    std::vector<std::string> lines_;
};

std::uint64_t count(const json& line, const char* state) {
    return line["processes"][0]["states"][state]["count"].get<std::uint64_t>();
}

// Closes the socket the child was told to close on SIGUSR1 (async-signal-safe: close only).
int g_close_on_usr1 = -1;
extern "C" void close_on_usr1(int) {
    close(g_close_on_usr1);
}

void wait_for_eof(int fd) {
    char byte;
    while (read(fd, &byte, 1) > 0) {
    }
}

} // namespace

TEST_CASE("watch --json follows a child's sockets while their peers close them") {
    Listener l = listen_loopback(AF_INET);
    Child child([&] {
        close(l.fd);
        for (int i = 0; i < 6; ++i)
            (void)connect_to(l);
    });
    std::vector<int> accepted;
    for (int i = 0; i < 6; ++i)
        accepted.push_back(accept_from(l));

    WatchRun watch({"--pid", std::to_string(child.pid()), "--interval", "100ms", "--json"});
    CHECK(watch.until(
        [](const json& j) { return count(j, "established") == 6 && count(j, "close_wait") == 0; },
        10s));
    // The test closes two connections from its side: the child, which never calls close(),
    // keeps them in CLOSE_WAIT.
    close(accepted[0]);
    close(accepted[1]);
    CHECK(watch.until(
        [](const json& j) {
            const auto& p = j["processes"][0];
            return count(j, "close_wait") == 2 && count(j, "established") == 4 &&
                   p["states"]["close_wait"]["since_start"] == 2 && p["pid"].is_number() &&
                   !p["exited"].get<bool>();
        },
        10s));
    const pid_t pid = child.pid();
    child.stop();
    CHECK(watch.until(
        [pid](const json& j) {
            const auto& p = j["processes"][0];
            return p["pid"] == pid && p["exited"].get<bool>() &&
                   p["states"]["close_wait"]["count"] == 2;
        },
        10s));
    CHECK(watch.exit_code(10s) == 0);
    for (const auto& line : watch.lines())
        CHECK(line.find('\x1b') == std::string::npos);
    for (int fd : accepted)
        close(fd);
    close(l.fd);
}

TEST_CASE("TIME_WAIT of a socket watch saw live is exact; one it never saw is by peer") {
    Listener l = listen_loopback(AF_INET);
    Child child([&] {
        close(l.fd);
        (void)connect_to(l); // stays open: the listener is one of the child's peers
        const int early = connect_to(l);
        g_close_on_usr1 = connect_to(l); // closed by the child while watch runs
        // Closed after the last connect (see connect_then_close), before watch starts: its
        // TIME_WAIT was never seen live.
        close(early);
        struct sigaction sa {};
        sa.sa_handler = close_on_usr1;
        sigaction(SIGUSR1, &sa, nullptr);
    });
    const int keep = accept_from(l);
    const int early = accept_from(l);
    const int late = accept_from(l);
    // The child closed first; once its FIN is read, closing our end leaves its socket in TIME_WAIT.
    wait_for_eof(early);
    close(early);

    WatchRun watch({"--pid", std::to_string(child.pid()), "--interval", "100ms", "--json"});
    CHECK(watch.until(
        [](const json& j) {
            const auto& tw = j["processes"][0]["time_wait"];
            return count(j, "established") == 2 && tw["by_peer"] == 1 && tw["exact"] == 0;
        },
        10s));
    kill(child.pid(), SIGUSR1);
    wait_for_eof(late);
    close(late);
    CHECK(watch.until(
        [](const json& j) {
            const auto& p = j["processes"][0];
            return count(j, "established") == 1 && count(j, "time_wait") == 2 &&
                   p["time_wait"]["exact"] == 1 && p["time_wait"]["by_peer"] == 1 &&
                   p["churn"]["closed_total"] == 1;
        },
        10s));
    child.stop();
    CHECK(watch.exit_code(10s) == 0);
    close(keep);
    close(l.fd);
}
