// For the check and export tests: a child process holding known loopback connections, and
// helpers to run `conncheck check` and read its plugin output.
#pragma once

#include "support.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <regex>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace testsupport {

// A child holding `n` connections to a listener of ours; close_peer() makes some of them
// CLOSE_WAIT by sending our FIN. With accept_now false the connections wait in the backlog until
// accept_all(): fork every child first, so no child inherits another one's accepted sockets.
class Leaky {
public:
    explicit Leaky(int n, bool accept_now = true, const std::string& comm = {})
        : listener_(listen_loopback(AF_INET)), n_(n) {
        const Listener l = listener_;
        char name[16] = {};
        comm.copy(name, sizeof name - 1);
        child_ = std::make_unique<Child>([l, n, name] {
            if (name[0] != '\0') ::prctl(PR_SET_NAME, name, 0, 0, 0);
            for (int i = 0; i < n; ++i)
                (void)connect_to(l);
        });
        if (accept_now) accept_all();
    }
    void accept_all() {
        while (accepted_.size() < static_cast<std::size_t>(n_))
            accepted_.push_back(accept_from(listener_));
    }
    ~Leaky() {
        child_.reset();
        for (const int fd : accepted_)
            ::close(fd);
        ::close(listener_.fd);
    }
    Leaky(const Leaky&) = delete;
    Leaky& operator=(const Leaky&) = delete;

    // Our FIN puts the child's socket in CLOSE_WAIT; our side reaching FIN_WAIT2 means the child's
    // kernel acknowledged it, so the child's socket is there already.
    void close_peer(std::size_t from, std::size_t to) {
        for (std::size_t i = from; i < to; ++i) {
            REQUIRE(::shutdown(accepted_.at(i), SHUT_WR) == 0);
            REQUIRE(wait_until([&] { return tcp_state_of(accepted_[i]) == TCP_FIN_WAIT2; },
                               std::chrono::seconds(5)));
        }
    }
    // The server forgets connections [from, to): an abortive close (SO_LINGER 0) sends a RST, as
    // a server that no longer knows a connection answers the next keep-alive probe. The child's
    // socket goes to CLOSE and leaves the kernel's tables while the child still holds its fd.
    void reset_peer(std::size_t from, std::size_t to) {
        const linger abort_now{1, 0};
        for (std::size_t i = from; i < to; ++i) {
            REQUIRE(::setsockopt(accepted_.at(i), SOL_SOCKET, SO_LINGER, &abort_now,
                                 sizeof abort_now) == 0);
            ::close(accepted_[i]);
            accepted_[i] = ::open("/dev/null", O_RDONLY | O_CLOEXEC); // keeps the indexes
        }
    }
    // One byte to the child's i-th connection: it has received data just now.
    void send_to(std::size_t i) { REQUIRE(::send(accepted_.at(i), "x", 1, 0) == 1); }
    [[nodiscard]] pid_t pid() const { return child_->pid(); }
    void stop() { child_->stop(); }

private:
    Listener listener_;
    std::unique_ptr<Child> child_;
    int n_ = 0;
    std::vector<int> accepted_;
};

inline CommandResult check(const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::vector<std::string> argv{conncheck_bin(), "check"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, timeout);
}

inline std::string status_line(const CommandResult& r) {
    return r.out.substr(0, r.out.find('\n'));
}

// `label=value;warn;crit;min;max`, value a number, thresholds empty or in range syntax.
inline void check_perfdata(const std::string& line) {
    const auto bar = line.find(" | ");
    REQUIRE(bar != std::string::npos);
    static const std::regex item(
        R"(^[a-z_0-9]+=-?[0-9]+(\.[0-9]+)?;(@?(~|-?[0-9.]+)?:?(-?[0-9.]+)?)?;(@?(~|-?[0-9.]+)?:?(-?[0-9.]+)?)?;(-?[0-9.]+)?;(-?[0-9.]+)?$)");
    std::istringstream in(line.substr(bar + 3));
    int items = 0;
    for (std::string token; in >> token; ++items) {
        CAPTURE(token);
        CHECK(std::regex_match(token, item));
    }
    CHECK(items >= 5);
}

inline std::string perf_value(const std::string& line, const std::string& label) {
    const std::regex re("[ |]" + label + "=([-0-9.]+);");
    std::smatch m;
    return std::regex_search(line, m, re) ? m[1].str() : std::string("missing");
}

} // namespace testsupport
