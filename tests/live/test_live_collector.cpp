// The exchange simulator and the reference collector on loopback, as child processes of the
// built binary, for every fault kind: the fixed collector reconnects and never holds more than
// one connection; the leaky one piles up CLOSE_WAIT after `fin` and ESTABLISHED after `silent`.
// Socket counts come from /proc/PID/fd joined with /proc/net/tcp{,6} by inode.
#include "support.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <poll.h>
#include <set>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;

namespace {

// A child process (by default the conncheck binary with `args`); stdout read line by line,
// stderr kept in a file.
class Proc {
public:
    Proc(const std::vector<std::string>& args, const std::string& stderr_path,
         const std::vector<std::string>& extra_env = {}, bool conncheck = true) {
        std::vector<std::string> argv;
        if (conncheck) argv.push_back(testsupport::conncheck_bin());
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> argp;
        for (auto& a : argv)
            argp.push_back(a.data());
        argp.push_back(nullptr);
        std::vector<std::string> env(extra_env);
        for (char** e = environ; *e != nullptr; ++e) {
            const std::string entry(*e);
            const bool replaced = std::any_of(extra_env.begin(), extra_env.end(), [&](auto& x) {
                return entry.compare(0, x.find('=') + 1, x, 0, x.find('=') + 1) == 0;
            });
            if (!replaced) env.push_back(entry);
        }
        std::vector<char*> envp;
        for (auto& e : env)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        int out[2];
        REQUIRE(pipe2(out, O_CLOEXEC) == 0);
        const int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        REQUIRE(err >= 0);
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const int devnull = open("/dev/null", O_RDONLY);
            dup2(devnull, 0);
            dup2(out[1], 1);
            dup2(err, 2);
            execvpe(argp[0], argp.data(), envp.data());
            _exit(127);
        }
        close(out[1]);
        close(err);
        out_ = out[0];
        fcntl(out_, F_SETFL, fcntl(out_, F_GETFL) | O_NONBLOCK);
        stderr_path_ = stderr_path;
    }
    ~Proc() {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            reap();
        }
        if (out_ >= 0) close(out_);
    }
    Proc(const Proc&) = delete;
    Proc& operator=(const Proc&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }

    // Reads what is available; returns every complete line so far.
    const std::vector<std::string>& lines() {
        char buf[8192];
        ssize_t got;
        while ((got = read(out_, buf, sizeof buf)) > 0)
            partial_.append(buf, std::size_t(got));
        std::size_t nl;
        while ((nl = partial_.find('\n')) != std::string::npos) {
            lines_.push_back(partial_.substr(0, nl));
            partial_.erase(0, nl + 1);
        }
        return lines_;
    }

    std::optional<std::string> first_line(std::chrono::milliseconds timeout) {
        const bool got = testsupport::wait_until([&] { return !lines().empty(); }, timeout);
        if (!got) return std::nullopt;
        return lines_.front();
    }

    [[nodiscard]] std::size_t count(const std::string& needle) {
        const auto& all = lines();
        return std::size_t(std::count_if(all.begin(), all.end(), [&](const std::string& l) {
            return l.find(needle) != std::string::npos;
        }));
    }

    // SIGTERM and wait; the exit code, or -1 when it had to be killed.
    int terminate(std::chrono::milliseconds timeout) {
        kill(pid_, SIGTERM);
        int status = 0;
        const bool exited = testsupport::wait_until(
            [&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
        if (!exited) return -1;
        pid_ = -1;
        // Collect the rest of stdout: the totals line comes last.
        lines();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

    [[nodiscard]] std::string err() const { return testsupport::read_file(stderr_path_); }

    [[nodiscard]] std::string transcript() {
        std::string out;
        for (const auto& l : lines())
            out += l + "\n";
        return out + "--- stderr ---\n" + err();
    }

private:
    void reap() {
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    std::string partial_;
    std::vector<std::string> lines_;
    std::string stderr_path_;
};

struct SocketCounts {
    int sockets = 0; // inet socket fds (any state, including CLOSE after a reset)
    int established = 0;
    int close_wait = 0;
};

std::set<unsigned long> inodes_in(const std::string& table, int inode_column) {
    std::set<unsigned long> out;
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string field;
        for (int i = 0; i <= inode_column && fields >> field; ++i)
            if (i == inode_column) out.insert(std::stoul(field));
    }
    return out;
}

SocketCounts sockets_of(pid_t pid) {
    std::unordered_map<unsigned long, int> tcp_state; // inode -> TCP_* state
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line;
        std::getline(in, line);
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
            fields >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
                inode;
            if (!inode.empty()) tcp_state[std::stoul(inode)] = std::stoi(state, nullptr, 16);
        }
    }
    // The inodes of sockets that are not TCP: glibc's netlink queries, unix sockets.
    std::set<unsigned long> other = inodes_in("/proc/net/netlink", 9);
    for (const auto i : inodes_in("/proc/net/unix", 6))
        other.insert(i);

    SocketCounts counts;
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return counts;
    while (const dirent* entry = readdir(d)) {
        char target[128] = {};
        const std::string link = dir + "/" + entry->d_name;
        if (readlink(link.c_str(), target, sizeof target - 1) <= 0) continue;
        unsigned long inode = 0;
        if (std::sscanf(target, "socket:[%lu]", &inode) != 1 || other.count(inode) > 0) continue;
        ++counts.sockets;
        const auto it = tcp_state.find(inode);
        if (it == tcp_state.end()) continue;
        if (it->second == 1) ++counts.established;
        if (it->second == 8) ++counts.close_wait;
    }
    closedir(d);
    return counts;
}

struct Sim {
    Proc proc;
    std::string url;

    Sim(const std::string& faults, const std::string& fault_after, const std::string& log)
        : proc({"exchange-sim", "--listen", "127.0.0.1:0", "--rate", "50", "--fault-after",
                fault_after, "--faults", faults},
               log) {
        const auto first = proc.first_line(10s);
        REQUIRE_MESSAGE(first.has_value(), proc.transcript());
        const std::string prefix = "exchange-sim listening on 127.0.0.1:";
        REQUIRE_MESSAGE(first->rfind(prefix, 0) == 0, *first);
        url = "ws://127.0.0.1:" + first->substr(prefix.size()) + "/ws/btcusdt@trade";
    }
};

std::vector<std::string> collector_args(const std::string& url, bool leaky) {
    std::vector<std::string> args{
        "collector", "--url",       url,     "--heartbeat-timeout", "400ms", "--reconnect-delay",
        "20ms",      "--max-delay", "100ms", "--close-timeout",     "200ms", "--min-lifetime",
        "10s"};
    if (leaky) args.push_back("--leaky");
    return args;
}

const char* expected_reason(const std::string& fault) {
    if (fault == "silent") return "reason=heartbeat-timeout";
    if (fault == "fin") return "reason=eof";
    if (fault == "close") return "reason=close";
    return "reason=error";
}

} // namespace

TEST_CASE("the fixed collector reconnects after every fault and holds at most one connection") {
    for (const std::string fault : {"silent", "fin", "close", "rst"}) {
        CAPTURE(fault);
        testsupport::TempDir tmp;
        Sim sim(fault, "150ms", tmp.path() + "/sim.err");
        Proc collector(collector_args(sim.url, false), tmp.path() + "/collector.err");

        int most = 0;
        SocketCounts last;
        const bool cycled = testsupport::wait_until(
            [&] {
                last = sockets_of(collector.pid());
                most = std::max(most, last.sockets);
                return collector.count(" reconnect n=") >= 3 && last.established == 1 &&
                       last.sockets == 1;
            },
            20s);
        CHECK_MESSAGE(cycled, collector.transcript());
        CHECK_MESSAGE(most <= 1, collector.transcript());
        CHECK(last.close_wait == 0);
        CHECK_MESSAGE(collector.count(expected_reason(fault)) >= 3, collector.transcript());
        CHECK(collector.count(" connect n=1 peer=127.0.0.1:") == 1);
        for (const auto& line : collector.lines())
            if (line.find(" reconnect n=") != std::string::npos)
                CHECK_MESSAGE(line.find(" open=0") != std::string::npos, line);

        CHECK(collector.terminate(10s) == 0);
        const auto& lines = collector.lines();
        REQUIRE_FALSE(lines.empty());
        CHECK_MESSAGE(lines.back().rfind("totals messages=", 0) == 0, lines.back());
        const bool at_most_one = lines.back().find(" open_connections=1") != std::string::npos ||
                                 lines.back().find(" open_connections=0") != std::string::npos;
        CHECK_MESSAGE(at_most_one, lines.back());
        CHECK(collector.err().empty());
        CHECK(sim.proc.terminate(10s) == 0);
    }
}

TEST_CASE("the leaky collector piles up CLOSE_WAIT after fin and ESTABLISHED after silent") {
    for (const std::string fault : {"fin", "silent"}) {
        CAPTURE(fault);
        testsupport::TempDir tmp;
        Sim sim(fault, "100ms", tmp.path() + "/sim.err");
        Proc collector(collector_args(sim.url, true), tmp.path() + "/collector.err");

        SocketCounts last;
        const bool piled = testsupport::wait_until(
            [&] {
                last = sockets_of(collector.pid());
                return fault == "fin" ? last.close_wait >= 4 : last.established >= 5;
            },
            20s);
        CHECK_MESSAGE(piled, collector.transcript());
        if (fault == "fin") CHECK(last.established <= 1);
        CHECK(last.sockets >= 4);
        CHECK(collector.count(" open=3") >= 1); // the reconnect lines show the pile growing

        CHECK(collector.terminate(10s) == 0);
        const std::string& totals = collector.lines().back();
        CHECK_MESSAGE(totals.rfind("totals ", 0) == 0, totals);
        const auto at = totals.find("open_connections=");
        REQUIRE(at != std::string::npos);
        CHECK(std::stoi(totals.substr(at + 17)) >= 4);
        CHECK(sim.proc.terminate(10s) == 0);
    }
}

TEST_CASE("collector and exchange-sim reject bad values with one line and exit 2") {
    const std::string bin = testsupport::conncheck_bin();
    const std::vector<std::vector<std::string>> cases{
        {bin, "collector"},
        {bin, "collector", "--url", "http://127.0.0.1:1/"},
        {bin, "collector", "--url", "ws://127.0.0.1:1/", "--heartbeat-timeout", "soon"},
        {bin, "collector", "--url", "ws://127.0.0.1:1/", "--heartbeat-timeout", "0"},
        {bin, "collector", "--url", "ws://127.0.0.1:1/", "--backoff", "0.5"},
        {bin, "collector", "--url", "ws://127.0.0.1:1/", "--jitter", "decorrelated"},
        {bin, "exchange-sim", "--listen", "127.0.0.1"},
        {bin, "exchange-sim", "--listen", "127.0.0.1:0", "--faults", "fin,boom"},
        {bin, "exchange-sim", "--listen", "127.0.0.1:0", "--rate", "0"},
        {bin, "exchange-sim", "--listen", "127.0.0.1:0", "--fault-after", "-1s"},
    };
    for (const auto& argv : cases) {
        CAPTURE(argv[argv.size() - 1]);
        const auto r = testsupport::run(argv, 10s);
        CHECK(r.exit_code == 2);
        CHECK(r.out.empty());
        CHECK_MESSAGE(r.err.rfind("conncheck: ", 0) == 0, r.err);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}

TEST_CASE("wss:// verifies the certificate and the host name unless --insecure") {
    testsupport::TempDir tmp;
    const std::string cert = tmp.path() + "/cert.pem";
    const std::string key = tmp.path() + "/key.pem";
    const auto made =
        testsupport::run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                          "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                          "-addext", "subjectAltName=DNS:localhost"},
                         30s);
    if (made.exit_code != 0) {
        MESSAGE("SKIPPED: cannot make a certificate with /usr/bin/openssl: " << made.err);
        return;
    }
    // A TLS server that is no WebSocket server: getting as far as the upgrade means TLS passed.
    Proc server({"/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key",
                 key, "-www"},
                tmp.path() + "/server.err", {}, false);
    std::string port;
    REQUIRE(testsupport::wait_until(
        [&] {
            for (const auto& line : server.lines())
                if (line.rfind("ACCEPT 127.0.0.1:", 0) == 0) port = line.substr(17);
            return !port.empty();
        },
        10s));

    struct Case {
        std::string host;
        bool trusted;  // the test certificate is the trust store
        bool insecure; // --insecure
        std::string expected;
    };
    const std::vector<Case> cases{
        {"localhost", false, false, "TLS handshake: certificate verify failed (self-signed"},
        {"localhost", true, false, "reason=error detail=WebSocket handshake:"},
        {"127.0.0.1", true, false, "TLS handshake: certificate verify failed (IP address mismatch"},
        {"127.0.0.1", false, true, "reason=error detail=WebSocket handshake:"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.host);
        CAPTURE(c.trusted);
        std::vector<std::string> args{"collector", "--url", "wss://" + c.host + ":" + port + "/ws",
                                      "--reconnect-delay", "10s"};
        if (c.insecure) args.push_back("--insecure");
        std::vector<std::string> env;
        if (c.trusted) env.push_back("SSL_CERT_FILE=" + cert);
        Proc collector(args, tmp.path() + "/collector.err", env);
        CHECK_MESSAGE(
            testsupport::wait_until([&] { return collector.count(" disconnect n=1 ") == 1; }, 10s),
            collector.transcript());
        CHECK_MESSAGE(collector.count(c.expected) == 1, collector.transcript());
        CHECK(collector.terminate(10s) == 0);
    }
}
