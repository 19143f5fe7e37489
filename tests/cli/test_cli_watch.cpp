// `conncheck watch` off a terminal: its arguments, exit codes, the one-line-per-interval output and
// the JSON lines, against a child holding known loopback sockets.
#include "support.hpp"

#include <csignal>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

using namespace testsupport;
using nlohmann::json;

namespace {

CommandResult watch(std::vector<std::string> args) {
    args.insert(args.begin(), {conncheck_bin(), "watch"});
    return run(args, 30s);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

// A child holding 3 ESTABLISHED connections and 1 in CLOSE_WAIT.
struct Target {
    Listener l = listen_loopback(AF_INET);
    Child child{[this] {
        close(l.fd);
        for (int i = 0; i < 4; ++i)
            (void)connect_to(l);
    }};
    std::vector<int> accepted;
    Target() {
        accepted = accept_all(l, 4);
        close(accepted.back());
        accepted.pop_back();
    }
    ~Target() {
        for (int fd : accepted)
            close(fd);
        close(l.fd);
    }
    [[nodiscard]] std::string pid() const { return std::to_string(child.pid()); }
};

} // namespace

TEST_CASE("watch without a process is a usage error") {
    const auto r = watch({});
    CHECK(r.exit_code == 2);
    CHECK(r.err ==
          "conncheck: watch needs a process: --pid PID, --pidfile FILE, --name NAME, --exe "
          "PATH, --unit UNIT or --cgroup PATH\n");
    CHECK(r.out.empty());
}

TEST_CASE("bad durations are usage errors with one line on stderr") {
    const std::string self = std::to_string(getpid());
    for (const auto& args :
         std::vector<std::vector<std::string>>{{"--interval", "5x"},
                                               {"--interval", "10ms"},
                                               {"--window", "1s", "--interval", "2s"},
                                               {"--window", "30d"}}) {
        std::vector<std::string> a{"--pid", self};
        a.insert(a.end(), args.begin(), args.end());
        const auto r = watch(a);
        CHECK(r.exit_code == 2);
        CHECK(r.err.starts_with("conncheck: "));
        CHECK(lines_of(r.err).size() == 1);
    }
}

TEST_CASE("watching a pid that does not exist exits 3") {
    pid_t unused = 3'999'999;
    while (kill(unused, 0) == 0 || errno != ESRCH)
        --unused;
    const auto r = watch({"--pid", std::to_string(unused)});
    CHECK(r.exit_code == 3);
    CHECK(r.err.starts_with("conncheck: "));
}

TEST_CASE("off a terminal: one line per interval with the counts") {
    Target t;
    // Loopback FINs are processed at once, but poll anyway rather than trust timing.
    CommandResult r;
    REQUIRE(wait_until(
        [&] {
            r = watch({"--pid", t.pid(), "--interval", "100ms", "--count", "3"});
            return r.exit_code == 0 && r.out.find(" close_wait=1 ") != std::string::npos;
        },
        10s, 50ms));
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 3);
    const std::regex shape("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ pid=" + t.pid() +
                           " established=3 close_wait=1 time_wait=0 (.* )?time_wait_exact=0 "
                           "time_wait_by_peer=0 fds=\\d+ fd_limit=\\d+ .* comm=\\S+$");
    for (const auto& line : lines) {
        CHECK(std::regex_match(line, shape));
        CHECK(line.find('\x1b') == std::string::npos);
    }
    CHECK(lines[0].find(" opened_per_min=- ") != std::string::npos); // no rate from one scan
    CHECK(lines[2].find(" opened_per_min=0.0 closed_per_min=0.0 ") != std::string::npos);
    CHECK(r.err.empty());
}

TEST_CASE("--json: one object per interval with the same figures") {
    Target t;
    CommandResult r;
    REQUIRE(wait_until(
        [&] {
            r = watch({"--pid", t.pid(), "--interval", "100ms", "--count", "2", "--json"});
            return r.exit_code == 0 &&
                   r.out.find("\"close_wait\":{\"count\":1") != std::string::npos;
        },
        10s, 50ms));
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 2);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const json j = json::parse(lines[i]);
        CHECK(j["tick"] == i + 1);
        CHECK(j["interval_seconds"] == 0.1);
        CHECK(j["window_seconds"] == 600);
        const auto& p = j["processes"][0];
        CHECK(p["pid"] == t.child.pid());
        CHECK(p["exited"] == false);
        CHECK(p["states"]["established"]["count"] == 3);
        CHECK(p["states"]["close_wait"]["count"] == 1);
        CHECK(p["states"]["time_wait"]["count"] == 0);
        CHECK(p["time_wait"]["exact"] == 0);
        CHECK(p["time_wait"]["by_peer"] == 0);
        CHECK(p["open_fds"].get<int>() >= 4);
        REQUIRE(p["peers"].size() == 1);
        CHECK(p["peers"][0]["total"] == 4);
        CHECK(p["peers"][0]["states"]["close_wait"] == 1);
        CHECK(j["totals"]["states"]["established"]["count"] == 3);
        CHECK(j["watcher"]["tick_ms"].is_number());
    }
    CHECK(json::parse(lines[1])["processes"][0]["states"]["established"]["since_last"] == 0);
}

TEST_CASE("--help names every watch option") {
    const auto r = watch({"--help"});
    CHECK(r.exit_code == 0);
    for (const char* flag : {"--pid", "--pidfile", "--name", "--interval", "--window", "--json",
                             "--idle", "--count", "--no-color", "--source", "--replay"})
        CHECK_MESSAGE(r.out.find(flag) != std::string::npos, flag);
}
