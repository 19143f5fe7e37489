// `conncheck check` against child processes with known loopback sockets: each exit code reached
// by choosing thresholds, the perfdata, several processes, hostile process names.
#include "check_support.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

using namespace testsupport;

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
    // The critical process first, then the other one; perfdata labels carry the pid.
    const auto at_leaking =
        line.find("[" + std::to_string(leaking.pid()) + "]: 4 CLOSE_WAIT (crit 3)");
    const auto at_quiet = line.find("[" + std::to_string(quiet.pid()) + "]: 0 CLOSE_WAIT");
    CHECK(at_leaking != std::string::npos);
    CHECK(at_quiet != std::string::npos);
    CHECK(at_leaking < at_quiet);
    CHECK(perf_value(line, "close_wait_" + std::to_string(leaking.pid())) == "4");
    CHECK(perf_value(line, "established_" + std::to_string(quiet.pid())) == "2");
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
