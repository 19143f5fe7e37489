// `conncheck check` against child processes with known loopback sockets: each exit code reached
// by choosing thresholds, the perfdata, several processes, hostile process names.
#include "check_support.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <filesystem>
#include <fmt/core.h>
#include <regex>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

using namespace testsupport;

namespace {

std::vector<std::string> with_args(std::vector<std::string> base,
                                   const std::vector<std::string>& more) {
    base.insert(base.end(), more.begin(), more.end());
    return base;
}

} // namespace

TEST_CASE("check: every exit code from thresholds alone, and the perfdata") {
    Leaky leaky(6);
    leaky.close_peer(0, 3); // 3 CLOSE_WAIT, 3 ESTABLISHED
    TempDir dir;
    const std::string pid = std::to_string(leaky.pid());
    const auto run_with = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{"--pid", pid, "--state-file", dir.path() + "/s.json"};
        args.insert(args.end(), extra.begin(), extra.end());
        return check(args);
    };

    auto r = run_with({"-w", "5", "-c", "10"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(status_line(r).starts_with("CONNCHECK OK - "));
    CHECK(status_line(r).find("[" + std::to_string(leaky.pid()) + "]: ") != std::string::npos);
    check_perfdata(status_line(r));
    CHECK(perf_value(status_line(r), "close_wait") == "3");
    CHECK(perf_value(status_line(r), "established") == "3");
    CHECK(status_line(r).find("close_wait=3;5;10;0;") != std::string::npos);
    // The fd thresholds, 80% and 95% of the soft limit by default, as fd counts.
    CHECK(std::regex_search(status_line(r), std::regex(R"( fds=[0-9]+;[0-9]+;[0-9]+;0;[0-9]+$)")));
    r = run_with({"-w", "5", "-c", "10", "--fds-warning", "", "--fds-critical", ""});
    CHECK(r.exit_code == 0);
    CHECK(std::regex_search(status_line(r), std::regex(R"( fds=[0-9]+;;;0;[0-9]+$)")));

    r = run_with({}); // the defaults: -w 0 -c 10
    CHECK(r.exit_code == 1);
    CHECK(status_line(r).starts_with("CONNCHECK WARNING - "));
    CHECK(status_line(r).find("3 CLOSE_WAIT (warn 0)") != std::string::npos);

    r = run_with({"-c", "2"});
    CHECK(r.exit_code == 2);
    CHECK(status_line(r).starts_with("CONNCHECK CRITICAL - "));
    CHECK(status_line(r).find("3 CLOSE_WAIT (crit 2)") != std::string::npos);
    check_perfdata(status_line(r));

    r = run_with({"-w", "10", "-c", "20", "--established-critical", "@3:5"});
    CHECK(r.exit_code == 2);
    CHECK(status_line(r).find("3 ESTABLISHED (crit @3:5)") != std::string::npos);

    r = run_with({"-w", "10", "-c", "20", "--stale-warning", "@0"});
    CHECK(r.exit_code == 1);
    CHECK(status_line(r).find("0 stale (warn @0)") != std::string::npos);

    r = run_with({"-w", "10", "-c", "20", "--established-warning", ""});
    CHECK(r.exit_code == 0);

    r = run_with({"-w", "1:x"});
    CHECK(r.exit_code == 3);
    CHECK(
        status_line(r).starts_with("CONNCHECK UNKNOWN - --warning: invalid threshold range '1:x'"));

    r = run_with({"--growth-warning", "5"});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).find("--growth-warning") != std::string::npos);

    r = run_with({"-t", "soon"});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - --timeout"));

    r = run_with({"--no-such-flag"}); // CLI11's own parse error: UNKNOWN too
    CHECK(r.exit_code == 3);

    r = check({"--state-file", dir.path() + "/s.json"});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - check needs"));

    r = run_with({"-v", "-w", "5"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("\nstate file " + dir.path() + "/s.json, previous run") != std::string::npos);
    CHECK(r.out.find("3 CLOSE_WAIT") != std::string::npos);
}

TEST_CASE("check: a process that is gone is UNKNOWN") {
    pid_t gone = 0;
    {
        Leaky leaky(1);
        gone = leaky.pid();
        leaky.stop();
    }
    TempDir dir;
    const auto r = check({"--pid", std::to_string(gone), "--state-file", dir.path() + "/s.json"});
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - "));
    CHECK(status_line(r).find(std::to_string(gone)) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() + "/s.json"));
}

TEST_CASE("check: several processes, the worst state wins and each is named") {
    // Fork both children before accepting, so neither holds the other's accepted sockets.
    Leaky quiet(2, false);
    Leaky leaking(4, false);
    quiet.accept_all();
    leaking.accept_all();
    leaking.close_peer(0, 4);
    TempDir dir;
    const auto r =
        check({"--pid", std::to_string(quiet.pid()) + "," + std::to_string(leaking.pid()),
               "--state-file", dir.path() + "/s.json", "-w", "1", "-c", "3"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 2);
    const std::string line = status_line(r);
    CHECK(line.starts_with("CONNCHECK CRITICAL - "));
    // The critical process first, then the other one; perfdata labels carry the process's name
    // (both are cli_tests: the older one plain, the next _2), never its pid.
    const auto at_leaking =
        line.find("[" + std::to_string(leaking.pid()) + "]: 4 CLOSE_WAIT (crit 3)");
    const auto at_quiet = line.find("[" + std::to_string(quiet.pid()) + "]: 0 CLOSE_WAIT");
    CHECK(at_leaking != std::string::npos);
    CHECK(at_quiet != std::string::npos);
    CHECK(at_leaking < at_quiet);
    CHECK(perf_value(line, "close_wait_cli_tests_2") == "4");
    CHECK(perf_value(line, "established_cli_tests") == "2");
    CHECK(line.substr(line.find(" | ")).find(std::to_string(leaking.pid())) == std::string::npos);
    CHECK(line.substr(line.find(" | ")).find(std::to_string(quiet.pid())) == std::string::npos);
    check_perfdata(line);
}

TEST_CASE("check: a process name cannot break the plugin line") {
    Leaky leaky(1, true, "ev|il\x1b[31m\n");
    TempDir dir;
    const auto r =
        check({"--pid", std::to_string(leaky.pid()), "--state-file", dir.path() + "/s.json", "-v"});
    INFO(r.out);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find('\x1b') == std::string::npos);
    const std::string line = status_line(r);
    // One '|' only: the one before the perfdata.
    CHECK(std::count(line.begin(), line.end(), '|') == 1);
    CHECK(line.find("ev\\x7cil\\x1b[31m\\x0a[") != std::string::npos);
}

TEST_CASE("check: open fds near the soft limit raise the state, with warn and crit in perfdata") {
    Leaky leaky(20);
    TempDir dir;
    const std::string pid = std::to_string(leaky.pid());
    const std::vector<std::string> base{"--pid", pid,  "--state-file", dir.path() + "/s.json",
                                        "-w",    "10", "-c",           "20"};
    auto r = check(base);
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    std::smatch m;
    REQUIRE(std::regex_search(r.out, m, std::regex(R"( fds=([0-9]+);)")));
    const auto fds = std::stoull(m[1]);
    // A soft limit that puts the process at 80-95% of it: 27 of 30 with 20 connections.
    const rlimit limit{fds * 100 / 90 + 1, fds * 100 / 90 + 1};
    REQUIRE(::prlimit(leaky.pid(), RLIMIT_NOFILE, &limit, nullptr) == 0);
    const double percent = 100.0 * static_cast<double>(fds) / static_cast<double>(limit.rlim_cur);
    REQUIRE(percent >= 80);
    REQUIRE(percent < 95);

    r = check(base);
    CHECK(r.exit_code == 1);
    CHECK(status_line(r).starts_with("CONNCHECK WARNING - "));
    CHECK(status_line(r).find(fmt::format("{} of {} fds (warn 80%)", fds, limit.rlim_cur)) !=
          std::string::npos);
    check_perfdata(status_line(r));
    CHECK(std::regex_search(status_line(r), std::regex(R"( fds=[0-9]+;[0-9]+;[0-9]+;0;[0-9]+$)")));

    r = check(with_args(base, {"--fds-critical", "85"}));
    CHECK(r.exit_code == 2);
    CHECK(status_line(r).find("fds (crit 85%)") != std::string::npos);
    r = check(with_args(base, {"--fds-warning", "", "--fds-critical", ""}));
    CHECK(r.exit_code == 0);
    r = check(with_args(base, {"--fds-warning", "0"}));
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - --fds-warning: '0' is not a percentage"));
}

TEST_CASE("check: stale connections warn by default, with --idle as in the audit") {
    Leaky leaky(6);
    TempDir dir;
    const std::vector<std::string> base{"--pid",        std::to_string(leaky.pid()),
                                        "--state-file", dir.path() + "/s.json",
                                        "-w",           "10",
                                        "-c",           "20"};
    // Five connections silent for over 2 s while a sixth to the same peer just received data:
    // five stale duplicates. Only the silent ones' age is waited for; the live one is fresh.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    leaky.send_to(0);
    auto r = check(with_args(base, {"--idle", "2"}));
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(status_line(r).find("5 stale (warn 0)") != std::string::npos);
    CHECK(perf_value(status_line(r), "stale") == "5");
    CHECK(status_line(r).find("stale=5;0;10;0;") != std::string::npos);

    r = check(base); // the default --idle 60: nothing is stale yet
    CHECK(r.exit_code == 0);
    CHECK(perf_value(status_line(r), "stale") == "0");

    r = check(with_args(base, {"--idle", "0"}));
    CHECK(r.exit_code == 3);

    const auto exported =
        run({conncheck_bin(), "export", "--pid", std::to_string(leaky.pid()), "--idle", "2"});
    CHECK(exported.exit_code == 0);
    CHECK(std::regex_search(exported.out,
                            std::regex(R"(\nconncheck_stale_connections\{[^}]*\} 5\n)")));
}

TEST_CASE("check: --close-wait-min-age leaves a CLOSE_WAIT the peer has just closed uncounted") {
    Leaky leaky(4);
    leaky.close_peer(0, 3);
    TempDir dir;
    const std::vector<std::string> base{"--pid", std::to_string(leaky.pid()), "--state-file",
                                        dir.path() + "/s.json"};
    auto r = check(base);
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(status_line(r).find("3 CLOSE_WAIT (warn 0)") != std::string::npos);

    r = check(with_args(base, {"--close-wait-min-age", "1h"}));
    CHECK(r.exit_code == 0);
    CHECK(status_line(r).find("0 CLOSE_WAIT, 3 CLOSE_WAIT too recent to count") !=
          std::string::npos);
    CHECK(perf_value(status_line(r), "close_wait") == "0");

    r = check(with_args(base, {"--close-wait-min-age", "soon"}));
    CHECK(r.exit_code == 3);
    CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - --close-wait-min-age"));
}

TEST_CASE("check: bad arguments are the UNKNOWN line on stdout, where monitoring looks") {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"--no-such-flag"},
                                                 {"--pid", "1", "--idle", "0"},
                                                 {"-w"},
                                                 {"--pid", "1", "--fds-warning", "x", "extra"}}) {
        CAPTURE(args.front());
        const auto r = check(args);
        CHECK(r.exit_code == 3);
        CHECK(status_line(r).starts_with("CONNCHECK UNKNOWN - "));
        CHECK(r.out == status_line(r) + "\n");
    }
}

TEST_CASE("-V prints the version on every subcommand") {
    const std::string help = run({conncheck_bin(), "--help"}).out;
    for (const std::string sub :
         {"", "check", "export", "watch", "prove", "collector", "exchange-sim", "trace"}) {
        CAPTURE(sub);
        if (!sub.empty() && help.find("  " + sub + " ") == std::string::npos) continue; // not built
        std::vector<std::string> argv{conncheck_bin()};
        if (!sub.empty()) argv.push_back(sub);
        argv.push_back("-V");
        const auto r = run(argv);
        CHECK(r.exit_code == 0);
        CHECK(r.out == "conncheck 0.1.0\n");
    }
}
