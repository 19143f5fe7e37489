// `conncheck check` across runs: growth from the state file, exact TIME_WAIT attribution by
// cookie, the lock against overlapping runs, state files it must refuse without touching them,
// a restarted process behind a pidfile, and the timeout.
#include "check_support.hpp"

#include <cerrno>
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <regex>
#include <string>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace testsupport;

namespace {

// Some process other than us has `path` open: the check under test reached its lock.
bool opened_by_another_process(const std::string& path) {
    for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
        const std::string pid = proc.path().filename();
        if (pid.find_first_not_of("0123456789") != std::string::npos ||
            pid == std::to_string(::getpid()))
            continue;
        std::error_code ec;
        for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", ec)) {
            std::error_code link_ec;
            if (std::filesystem::read_symlink(fd.path(), link_ec) == path) return true;
        }
    }
    return false;
}

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
    base.insert(base.end(), more.begin(), more.end());
    return base;
}

} // namespace

TEST_CASE("check: growth appears on the second run and alerts once it spans long enough") {
    Leaky leaky(6);
    leaky.close_peer(0, 3);
    TempDir dir;
    const std::string state = dir.path() + "/s.json";
    const std::vector<std::string> args{
        "--pid", std::to_string(leaky.pid()), "--state-file", state, "-w", "10", "-c", "20"};
    auto r = check(args);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(status_line(r).find(" in ") == std::string::npos);

    leaky.close_peer(3, 6); // 3 more CLOSE_WAIT, 3 fewer ESTABLISHED
    r = check(with(args, {"--growth-critical", "0.1/h", "-v"}));
    CHECK(r.exit_code == 0); // seconds apart: shown, not rated
    CHECK(std::regex_search(status_line(r),
                            std::regex(R"(CLOSE_WAIT \+3 in [0-9]+ms|CLOSE_WAIT \+3 in [0-9]+s)")));
    CHECK(status_line(r).find("ESTABLISHED -3 in ") != std::string::npos);
    CHECK(r.out.find("rated per hour once the span reaches 10m") != std::string::npos);

    // Age the state by 15 hours, as if the previous run had been then.
    auto doc = nlohmann::json::parse(read_file(state));
    constexpr std::int64_t hours15 = 15LL * 3600 * 1000;
    doc["taken_at_ms"] = doc["taken_at_ms"].get<std::int64_t>() - hours15;
    for (auto& p : doc["processes"])
        for (auto& h : p["history"])
            h["taken_at_ms"] = h["taken_at_ms"].get<std::int64_t>() - hours15;
    write_file(state, doc.dump());
    r = check(with(args, {"--growth-critical", "0.1/h"}));
    CHECK(r.exit_code == 2);
    CHECK(std::regex_search(status_line(r),
                            std::regex(R"(CLOSE_WAIT \+3 in 15h00m: \+0\.20/h \(crit 0\.1/h\))")));
    CHECK(status_line(r).find("close_wait_growth=0.2;;~:0.1;;") != std::string::npos);
    check_perfdata(status_line(r));
}

TEST_CASE("check: TIME_WAIT sockets born from sockets the last run saw are attributed exactly") {
    // Our own process is the target: only here can the test close a socket first.
    Listener listener = listen_loopback(AF_INET);
    std::vector<int> clients;
    std::vector<int> servers;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect_to(listener));
        servers.push_back(accept_from(listener));
    }
    TempDir dir;
    const std::vector<std::string> args{"--pid",
                                        std::to_string(::getpid()),
                                        "--state-file",
                                        dir.path() + "/s.json",
                                        "-w",
                                        "100",
                                        "-c",
                                        "200",
                                        "-v"};
    auto r = check(args);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // The client closes first and ends in TIME_WAIT with inode 0: only its cookie names us.
    for (int i = 0; i < 3; ++i) {
        ::close(clients[static_cast<std::size_t>(i)]);
        const int server = servers[static_cast<std::size_t>(i)];
        REQUIRE(wait_until([&] { return tcp_state_of(server) == TCP_CLOSE_WAIT; },
                           std::chrono::seconds(5)));
        ::close(server);
    }
    const std::regex exact(R"(TIME_WAIT by cookie ([0-9]+))");
    std::string seen;
    CHECK(wait_until(
        [&] {
            r = check(args);
            std::smatch m;
            if (r.exit_code != 0 || !std::regex_search(r.out, m, exact)) return false;
            seen = m[1];
            return seen == "3";
        },
        std::chrono::seconds(10), std::chrono::milliseconds(50)));
    CHECK(seen == "3");
    ::close(listener.fd);
}

TEST_CASE("check: an overlapping run refuses after the timeout, or waits for the lock") {
    Leaky leaky(2);
    TempDir dir;
    const std::string state = dir.path() + "/s.json";
    const int held = ::open((state + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(held >= 0);
    REQUIRE(::flock(held, LOCK_EX) == 0);
    const std::vector<std::string> args{"--pid", std::to_string(leaky.pid()), "--state-file",
                                        state};

    const auto start = std::chrono::steady_clock::now();
    auto r = check(with(args, {"-t", "1s"}));
    const auto took = std::chrono::steady_clock::now() - start;
    INFO(r.out << r.err);
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - state file " + state +
                                     " is locked by another conncheck run"));
    CHECK(took >= std::chrono::milliseconds(500));
    CHECK(took < std::chrono::seconds(5));
    CHECK_FALSE(std::filesystem::exists(state));

    CommandResult waited;
    std::thread overlapping([&] { waited = check(with(args, {"-t", "20s"})); });
    const bool reached = wait_until([&] { return opened_by_another_process(state + ".lock"); },
                                    std::chrono::seconds(10), std::chrono::milliseconds(20));
    ::flock(held, LOCK_UN);
    overlapping.join();
    ::close(held);
    CHECK(reached);
    INFO(waited.out << waited.err);
    CHECK(waited.exit_code == 0);
    CHECK(status_line(waited).starts_with("CONNCHECK OK - "));
    CHECK(std::filesystem::exists(state));
}

TEST_CASE("check: bad state files are UNKNOWN with the path and left untouched") {
    Leaky leaky(1);
    TempDir dir;
    const std::string state = dir.path() + "/s.json";
    const std::vector<std::string> args{"--pid", std::to_string(leaky.pid()), "--state-file",
                                        state};
    REQUIRE(check(args).exit_code == 0);
    const std::string good = read_file(state);

    const std::string garbage("\x00\xff{not json", 12);
    const std::string other_selector = std::regex_replace(
        good, std::regex("\"selector\": *\"[^\"]*\""), "\"selector\": \"pid-1\"");
    for (const auto& bad : {good.substr(0, good.size() / 2), garbage, std::string(),
                            std::string("{\"format\": \"something-else\"}\n"), other_selector}) {
        CAPTURE(bad.substr(0, 40));
        write_file(state, bad);
        const auto r = check(args);
        CHECK(r.exit_code == 3);
        CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - state file " + state + " "));
        CHECK(read_file(state) == bad);
    }

    const std::string real = dir.path() + "/real.json";
    const std::string link = dir.path() + "/link.json";
    write_file(real, good);
    std::filesystem::create_symlink(real, link);
    auto r = check({"--pid", std::to_string(leaky.pid()), "--state-file", link});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).find("is a symbolic link") != std::string::npos);
    CHECK(read_file(real) == good);
    CHECK(std::filesystem::is_symlink(link));

    if (::geteuid() != 0) {
        MESSAGE("skipped the foreign-owner case: needs root to chown the file to nobody");
        return;
    }
    const passwd* nobody = ::getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    write_file(state, good);
    REQUIRE(::chown(state.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
    r = check(args);
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).find("is owned by uid " + std::to_string(nobody->pw_uid)) !=
          std::string::npos);
    CHECK(read_file(state) == good);
    struct stat st {};
    REQUIRE(::stat(state.c_str(), &st) == 0);
    CHECK(st.st_uid == nobody->pw_uid);
}

TEST_CASE("check: a restarted process behind a pidfile is said, not taken for growth") {
    TempDir dir;
    const std::string pidfile = dir.path() + "/collector.pid";
    const std::vector<std::string> args{
        "--pidfile", pidfile, "--state-file", dir.path() + "/s.json", "-w", "10", "-c", "20", "-v"};
    pid_t first = 0;
    {
        Leaky before(4);
        first = before.pid();
        write_file(pidfile, std::to_string(first) + "\n");
        const auto r = check(args);
        INFO(r.out << r.err);
        REQUIRE(r.exit_code == 0);
    }
    Leaky after(1);
    write_file(pidfile, std::to_string(after.pid()) + "\n");
    const auto r = check(args);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(status_line(r).find("[" + std::to_string(after.pid()) +
                              "]: restarted since the last run (was pid " + std::to_string(first) +
                              ")") != std::string::npos);
    CHECK(status_line(r).find("ESTABLISHED -3") == std::string::npos);
    CHECK(r.out.find("the process restarted since the last run") != std::string::npos);
}

TEST_CASE("check: a timeout is UNKNOWN") {
    // Nothing conncheck opens may block any more (a FIFO is refused), so the timer is made to
    // fire during an ordinary run: 1 ms against a process with thousands of fds to walk, which
    // takes far longer than that. Only the timer can end the check with this line.
    Child many_fds([] {
        for (int i = 0; i < 5000; ++i)
            (void)::dup(0);
    });
    TempDir dir;
    const auto start = std::chrono::steady_clock::now();
    const auto r = check({"--pid", std::to_string(many_fds.pid()), "--state-file",
                          dir.path() + "/s.json", "-t", "1ms"},
                         std::chrono::seconds(20));
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.exit_code == 3);
    CHECK(r.out == "CONNCHECK UNKNOWN - timed out after 1ms (-t/--timeout)\n");
    CHECK(took < std::chrono::seconds(5));
}

TEST_CASE("check: --state-file in a directory that does not exist creates nothing") {
    Leaky leaky(1);
    TempDir dir;
    const std::string missing = dir.path() + "/no/such/dir";
    const auto r =
        check({"--pid", std::to_string(leaky.pid()), "--state-file", missing + "/s.json"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - "));
    CHECK(status_line(r).find(missing) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() + "/no"));
}

TEST_CASE("check: a state file it refuses gets no lock file beside it") {
    Leaky leaky(1);
    TempDir dir;
    const std::string state = dir.path() + "/s.json";
    write_file(state, "{not json");
    auto r = check({"--pid", std::to_string(leaky.pid()), "--state-file", state});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - state file " + state + " "));
    CHECK_FALSE(std::filesystem::exists(state + ".lock"));

    const std::string link = dir.path() + "/link.json";
    std::filesystem::create_symlink(state, link);
    r = check({"--pid", std::to_string(leaky.pid()), "--state-file", link});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).find("is a symbolic link") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(link + ".lock"));
}

TEST_CASE("check: temporary files a killed run left behind are removed by the next run") {
    Leaky leaky(1);
    TempDir dir;
    const std::string state = dir.path() + "/s.json";
    const std::vector<std::string> args{"--pid", std::to_string(leaky.pid()), "--state-file",
                                        state};
    REQUIRE(check(args).exit_code == 0);
    // What a run killed between mkostemp() and rename() leaves, and files that are not ours.
    write_file(dir.path() + "/.s.json.tmp.Ab12Cd", "{\"half\":");
    write_file(dir.path() + "/.s.json.tmp.zzzzzz", "");
    write_file(dir.path() + "/.other.json.tmp.Ab12Cd", "");
    write_file(dir.path() + "/.s.json.tmp.toolong1", "");
    REQUIRE(check(args).exit_code == 0);
    CHECK_FALSE(std::filesystem::exists(dir.path() + "/.s.json.tmp.Ab12Cd"));
    CHECK_FALSE(std::filesystem::exists(dir.path() + "/.s.json.tmp.zzzzzz"));
    CHECK(std::filesystem::exists(dir.path() + "/.other.json.tmp.Ab12Cd"));
    CHECK(std::filesystem::exists(dir.path() + "/.s.json.tmp.toolong1"));
    CHECK(std::filesystem::exists(state));
}
