// The built binary: arguments, exit codes, error lines, JSON.
#include "support.hpp"

#include <algorithm>
#include <csignal>
#include <doctest/doctest.h>
#include <grp.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace testsupport;
using nlohmann::json;

namespace {

CommandResult conncheck(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), conncheck_bin());
    return run(args, 30s, env);
}

std::size_t line_count(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// A pid no process has (and nothing will take during the test, in all likelihood).
pid_t unused_pid() {
    for (pid_t pid = 3'999'999; pid > 100'000; --pid)
        if (kill(pid, 0) != 0 && errno == ESRCH) return pid;
    return 3'999'999;
}

// A child holding 2 ESTABLISHED and 1 CLOSE_WAIT sockets, and 2 TIME_WAIT toward its peer.
struct Target {
    Listener l = listen_loopback(AF_INET);
    Listener dropper = listen_loopback(AF_INET);
    Child child{[this] {
        close(l.fd);
        close(dropper.fd);
        (void)connect_to(l);
        (void)connect_to(l);
        (void)connect_to(dropper);
        connect_then_close(l, 2);
    }};
    std::vector<int> server_fds;
    // TIME_WAIT toward `l` at the last audit_json(): the two closes leave two, unless the kernel
    // reset one (see kernel_time_wait_toward).
    std::size_t time_wait = 0;
    Target() {
        server_fds = close_the_closed(accept_all(l, 4), 2); // the child closed two first
        close(accept_from(dropper));
    }
    ~Target() {
        for (int fd : server_fds)
            close(fd);
        close(l.fd);
        close(dropper.fd);
    }
    json audit_json(const std::vector<std::string>& extra = {}) {
        std::vector<std::string> args = {"--pid", std::to_string(child.pid()), "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        json j;
        const bool ok = wait_until(
            [&] {
                const auto r = conncheck(args);
                if (r.exit_code != 0) return false;
                j = json::parse(r.out);
                time_wait = kernel_time_wait_toward(l);
                return j["processes"][0]["states"]["close_wait"] == 1 && time_wait >= 1 &&
                       j["processes"][0]["states"]["time_wait"] == time_wait;
            },
            20s, 20ms);
        REQUIRE(ok);
        return j;
    }
};

} // namespace

TEST_CASE("--version and --help exit 0") {
    auto r = conncheck({"--version"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("0.1.0") != std::string::npos);
    r = conncheck({"--help"});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("--pid") != std::string::npos);
    CHECK(r.out.find("Exit status") != std::string::npos);
}

TEST_CASE("bad pids: one line on stderr and exit 2") {
    for (const std::string bad : {"abc", "0", "12x", "-5", "99999999999"}) {
        CAPTURE(bad);
        const auto r = conncheck({"--pid", bad});
        CHECK(r.exit_code == 2);
        CHECK(line_count(r.err) == 1);
        CHECK(r.err.rfind("conncheck: ", 0) == 0);
        CHECK(r.out.empty());
    }
    const auto r = conncheck({"--pid", "abc"});
    CHECK(r.err ==
          "conncheck: --pid: invalid pid 'abc': expected a positive whole number (see --help)\n");
}

TEST_CASE("a pid that does not exist: exit 3") {
    const pid_t pid = unused_pid();
    const auto r = conncheck({"--pid", std::to_string(pid)});
    CHECK(r.exit_code == 3);
    CHECK(r.err == "conncheck: no such process: " + std::to_string(pid) + "\n");
}

TEST_CASE("pidfiles: unreadable or garbage exit 7, a dead pid exits 3") {
    TempDir tmp;
    auto r = conncheck({"--pidfile", tmp.path() + "/missing.pid"});
    CHECK(r.exit_code == 7);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("missing.pid") != std::string::npos);
    write_file(tmp.path() + "/garbage.pid", "\x1b[31mnope\n");
    r = conncheck({"--pidfile", tmp.path() + "/garbage.pid"});
    CHECK(r.exit_code == 7);
    CHECK(r.err.find('\x1b') == std::string::npos);
    write_file(tmp.path() + "/dead.pid", std::to_string(unused_pid()) + "\n");
    r = conncheck({"--pidfile", tmp.path() + "/dead.pid"});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("not running") != std::string::npos);
}

TEST_CASE("--name with no match exits 3") {
    const auto r = conncheck({"--name", "no-such-process-conncheck-xyz"});
    CHECK(r.exit_code == 3);
    CHECK(r.err == "conncheck: no process matches name 'no-such-process-conncheck-xyz'\n");
}

TEST_CASE("unknown flags and bad values exit 2 with one line") {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"--bogus"},
                                                 {"--idle", "0"},
                                                 {"--idle", "soon"},
                                                 {"--source", "magic"}}) {
        const auto r = conncheck(args);
        CHECK(r.exit_code == 2);
        CHECK(line_count(r.err) == 1);
    }
}

TEST_CASE("--pid --json carries the documented fields") {
    Target t;
    const json j = t.audit_json();
    CHECK(j["schema"] == 1);
    CHECK(j["host_wide"] == false);
    CHECK(j["source"] == "netlink");
    const json& p = j["processes"][0];
    CHECK(p["pid"] == t.child.pid());
    CHECK(p["states"]["established"] == 2);
    CHECK(p["states"]["close_wait"] == 1);
    CHECK(p["states"]["time_wait"] == t.time_wait);
    CHECK(p["time_wait_attribution"]["by_peer"] == t.time_wait);
    CHECK(p["sockets"] == 3 + t.time_wait);
    CHECK(p["fds"]["open"].is_number());
    CHECK(p["kernel_memory_bytes"].is_number());
    CHECK(p["netns"].is_number());
    REQUIRE(p["findings"].size() == 1);
    CHECK(p["findings"][0]["kind"] == "close_wait");
    CHECK(p["findings"][0]["severity"] == "warning");
    CHECK(p["findings"][0]["evidence"]["count"] == 1);
    CHECK(p["findings"][0]["advice"].is_string());
    CHECK(p["peers"].size() == 2);
    CHECK(p["other_sockets"]["total"].is_number());
    CHECK(p["other_netns_sockets"] == 0);
    CHECK(j["unreadable"] == json::array());
}

TEST_CASE("the table names states, peers and findings, without escapes when not a terminal") {
    Target t;
    (void)t.audit_json();
    const auto r = conncheck({"--pid", std::to_string(t.child.pid())});
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("CLOSE_WAIT") != std::string::npos);
    CHECK(r.out.find("close_wait") != std::string::npos);
    CHECK(r.out.find(endpoint_string(t.dropper)) != std::string::npos);
    CHECK(r.out.find('\x1b') == std::string::npos);
}

TEST_CASE("off a terminal the table keeps one layout, within 80 columns, whatever COLUMNS says") {
    Target t;
    (void)t.audit_json();
    const std::string pid = std::to_string(t.child.pid());
    const auto narrow = conncheck({"--pid", pid}, {"COLUMNS=40"});
    const auto wide = conncheck({"--pid", pid}, {"COLUMNS=250"});
    REQUIRE(narrow.exit_code == 0);
    REQUIRE(wide.exit_code == 0);
    // Every column is there, under its full header.
    const std::size_t head = narrow.out.find("  PEER");
    REQUIRE(head != std::string::npos);
    const std::string header = narrow.out.substr(head, narrow.out.find('\n', head) - head);
    for (const char* column : {"ESTAB", "CLOSE_WAIT", "TIME_WAIT", "OTHER", "IDLE", "UNREAD"})
        CHECK(header.find(column) != std::string::npos);
    // The same lines both times, except for the timestamp and the idle times, which move.
    CHECK(line_count(narrow.out) == line_count(wide.out));
    std::istringstream lines(narrow.out);
    for (std::string line; std::getline(lines, line);) {
        CAPTURE(line);
        CHECK(line.size() <= 80);
    }
    // A finding's text is wrapped between words, continued under its first word.
    const std::size_t finding = narrow.out.find("close_wait  ");
    REQUIRE(finding != std::string::npos);
    const std::size_t next = narrow.out.find('\n', finding);
    CHECK(narrow.out.compare(next + 1, 28, std::string(28, ' ')) == 0);
    CHECK(narrow.out[next + 29] != ' ');
}

TEST_CASE("--source proc falls back to /proc/net/tcp and says so") {
    Target t;
    (void)t.audit_json();
    const json j = t.audit_json({"--source", "proc"});
    CHECK(j["source"] == "proc_net");
    CHECK(j["tcp_info"] == false);
    CHECK(j["processes"][0]["states"]["established"] == 2);
}

TEST_CASE("--dump-netlink records what --replay reads back") {
    Target t;
    TempDir tmp;
    const std::string rec = tmp.path() + "/dump.bin";
    const json live = t.audit_json({"--dump-netlink", rec});
    const json replayed = t.audit_json({"--replay", rec});
    CHECK(replayed["source"] == "replay");
    CHECK(replayed["processes"][0]["states"] == live["processes"][0]["states"]);
    CHECK(replayed["processes"][0]["states"]["time_wait"] == t.time_wait);
    write_file(tmp.path() + "/garbage.bin", "definitely not a recording");
    const auto r = conncheck(
        {"--pid", std::to_string(t.child.pid()), "--replay", tmp.path() + "/garbage.bin"});
    CHECK(r.exit_code == 7);
    CHECK(line_count(r.err) == 1);
}

TEST_CASE("--replay of a file that never ends exits 7 with one line") {
    const std::string self = std::to_string(getpid());
    for (const char* endless : {"/dev/zero", "/dev/urandom"}) {
        const auto r = conncheck({"--pid", self, "--replay", endless});
        CHECK(r.exit_code == 7);
        CHECK(line_count(r.err) == 1);
        CHECK(r.err.find("is not a regular file") != std::string::npos);
    }
    // Every subcommand that scans: one line, its documented code (check: UNKNOWN).
    for (const std::string sub : {"watch", "check", "export"}) {
        std::vector<std::string> args = {sub, "--pid", self, "--replay", "/dev/zero"};
        if (sub == "watch") args.insert(args.end(), {"--count", "1"});
        const auto r = conncheck(args);
        INFO(sub);
        CHECK(r.exit_code == (sub == "check" ? 3 : 7));
        // check: the plugin line on stdout; export: conncheck_up 0 on stdout, the reason on
        // stderr; watch: the reason on stderr.
        CHECK(line_count(sub == "check" ? r.out : r.err) == 1);
        if (sub == "export") CHECK(r.out.find("\nconncheck_up 0\n") != std::string::npos);
        CHECK((r.out + r.err).find("recording /dev/zero is not a regular file") !=
              std::string::npos);
    }
}

TEST_CASE("host-wide JSON lists the child and the unattributed counts") {
    Target t;
    (void)t.audit_json();
    const auto r = conncheck({"--json"});
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    CHECK(j["host_wide"] == true);
    bool found = false;
    for (const auto& p : j["processes"])
        if (p["pid"] == t.child.pid()) {
            found = true;
            CHECK(p["states"]["close_wait"] == 1);
        }
    CHECK(found);
    CHECK(j["unattributed"]["time_wait"].is_number());
    CHECK(j["unattributed"]["permission"].is_number());
}

TEST_CASE("permission denied names the fix and exits 4") {
    if (geteuid() != 0) {
        MESSAGE("skipped: only root can drop to another user here");
        return;
    }
    Target t;
    const auto r = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        conncheck_bin(), "--pid", std::to_string(t.child.pid())},
                       30s);
    CHECK(r.exit_code == 4);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("Permission denied") != std::string::npos);
    // nobody without capabilities: both that another user's /proc/PID/fd takes (conncheck(1),
    // PRIVILEGES), and no advice to run as root.
    CHECK(r.err.find("(needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH)") != std::string::npos);
    CHECK(r.err.find("run as root") == std::string::npos);
}

// Run as nobody: `readable` is nobody's own process, `unreadable` root's. The audit, watch,
// export and check report the first and name the second instead of giving up.
TEST_CASE("one unreadable process of several: a partial result, exit 8, the others reported") {
    if (geteuid() != 0) {
        MESSAGE("skipped: only root can drop to another user here");
        return;
    }
    const Listener l = listen_loopback(AF_INET);
    Child nobodys([&] {
        close(l.fd);
        (void)connect_to(l);
        (void)connect_to(l);
        if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0)
            _exit(1);
        // A change of uid clears the dumpable flag; set it again so that its owner may read
        // its fds, as for any process nobody had started itself.
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    });
    const int s1 = accept_from(l);
    const int s2 = accept_from(l);
    Target root_owned; // after nobody's child, which must not inherit its sockets
    TempDir tmp;
    REQUIRE(chmod(tmp.path().c_str(), 0777) == 0);
    const std::string a = std::to_string(root_owned.child.pid());
    const std::string b = std::to_string(nobodys.pid());
    const auto as_nobody = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                   "--clear-groups", conncheck_bin()});
        return run(args, 30s);
    };

    auto r = as_nobody({"--pid", a + "," + b, "--json"});
    CHECK(r.exit_code == 8);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("partial result: 1 of 2 selected processes could not be read: pid " + a) !=
          std::string::npos);
    CHECK(r.err.find("Permission denied") != std::string::npos);
    const json j = json::parse(r.out);
    REQUIRE(j["processes"].size() == 1);
    CHECK(j["processes"][0]["pid"] == nobodys.pid());
    CHECK(j["processes"][0]["states"]["established"] == 2);
    REQUIRE(j["unreadable"].size() == 1);
    CHECK(j["unreadable"][0]["pid"] == root_owned.child.pid());
    CHECK(j["unreadable"][0]["reason"].get<std::string>().find("/fd: Permission denied") !=
          std::string::npos);

    r = as_nobody({"--pid", a + "," + b});
    CHECK(r.exit_code == 8);
    CHECK(r.out.find("pid " + b) != std::string::npos);
    CHECK(r.out.find("NOT READ (1 of 2 selected processes: this report is partial)") !=
          std::string::npos);

    r = as_nobody({"export", "--pid", a + "," + b});
    CHECK(r.exit_code == 8);
    CHECK(r.out.find("conncheck_up 1") != std::string::npos);
    CHECK(r.out.find("conncheck_unreadable_processes 1") != std::string::npos);
    CHECK(std::regex_search(
        r.out, std::regex("conncheck_process_pid\\{process=\"[^\"]*\"\\} " + b + "\n")));
    CHECK(r.out.find(",state=\"established\"} 2\n") != std::string::npos);
    CHECK(line_count(r.err) == 1);

    r = as_nobody({"watch", "--pid", a + "," + b, "--count", "1"});
    CHECK(r.exit_code == 8);
    CHECK(r.out.find("pid=" + b + " established=2") != std::string::npos);
    CHECK(r.err.find("pid " + a) != std::string::npos);

    r = as_nobody({"check", "--pid", a + "," + b, "--state-file", tmp.path() + "/state.json"});
    CHECK(r.exit_code != 3); // UNKNOWN only when nothing could be read
    CHECK(r.out.find("[" + b + "]: ") != std::string::npos);
    CHECK(r.out.find("[" + a + "]: not read") != std::string::npos);
    CHECK(std::regex_search(r.out, std::regex(" other_sockets=[0-9]+;;;0; ")));

    // Nothing readable at all is still the error it was.
    r = as_nobody({"--pid", a});
    CHECK(r.exit_code == 4);
    CHECK(line_count(r.err) == 1);
    close(s1);
    close(s2);
    close(l.fd);
}

TEST_CASE("--name never matches conncheck's own shell") {
    // The shell's command line contains the name; only the real holder may match.
    const auto r =
        run({"/bin/sh", "-c", conncheck_bin() + " --name no-such-process-conncheck-shell; exit $?"},
            30s);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("no process matches") != std::string::npos);
}
