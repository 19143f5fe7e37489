// `conncheck prove` end to end: the real collectors and simulators, a few seconds each.
#include "../unit/xml_check.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/prove_sample.hpp"
#include "support.hpp"

#include <csignal>
#include <cstdlib>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace testsupport;
using nlohmann::json;

namespace {

bool gone(pid_t pid) {
    return !std::filesystem::exists("/proc/" + std::to_string(pid));
}

std::vector<pid_t> run_pids(const json& j) {
    std::vector<pid_t> pids;
    for (const auto& c : j["collectors"])
        pids.push_back(c["pid"].get<pid_t>());
    for (const auto& p : j["simulator_pids"])
        pids.push_back(p.get<pid_t>());
    return pids;
}

// Splits "ws://127.0.0.1:PORT/..." in bash and talks raw TCP through /dev/tcp.
constexpr const char* script_head = "#!/bin/bash\n"
                                    "url=$1; hp=${url#ws://}; hp=${hp%%/*}\n"
                                    "host=${hp%:*}; port=${hp##*:}\n";

// Opens a connection every 100 ms and never closes one: a leak.
constexpr const char* leaky_body = "while true; do\n"
                                   "  exec {fd}<>\"/dev/tcp/$host/$port\" || exit 3\n"
                                   "  sleep 0.1\n"
                                   "done\n";

// Holds one connection, replaced every 300 ms: the old one closed first.
constexpr const char* tidy_body = "while true; do\n"
                                  "  exec 3<>\"/dev/tcp/$host/$port\" || exit 3\n"
                                  "  sleep 0.3\n"
                                  "  exec 3<&-\n"
                                  "done\n";

// Starts prove in the background; stdout to `out`, stderr to /dev/null.
pid_t spawn_prove(const std::vector<std::string>& args, const std::string& out) {
    std::vector<std::string> argv{conncheck_bin(), "prove"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> argp;
    for (auto& a : argv)
        argp.push_back(a.data());
    argp.push_back(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
        const int devnull = open("/dev/null", O_RDWR);
        const int file = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(devnull, 0);
        dup2(file, 1);
        dup2(devnull, 2);
        execv(argp[0], argp.data());
        _exit(127);
    }
    return pid;
}

std::vector<pid_t> tree_of(pid_t pid) {
    return conncheck::proc::ProcFs("/proc").descendants(pid);
}

} // namespace

TEST_CASE("prove: the leaky collector leaks, the fixed one does not; files and JSON") {
    TempDir dir;
    const std::string svg = dir.path() + "/run.svg";
    const std::string csv = dir.path() + "/run.csv";
    const auto r =
        run({conncheck_bin(), "prove", "--duration", "5s", "--json", "--svg", svg, "--csv", csv},
            std::chrono::seconds(40));
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    const json j = json::parse(r.out);
    CHECK(j["ok"] == true);
    REQUIRE(j["collectors"].size() == 2);
    const auto& leaky = j["collectors"][0];
    const auto& fixed = j["collectors"][1];
    CHECK(leaky["key"] == "leaky");
    CHECK(leaky["verdict"] == "leaks");
    CHECK(fixed["verdict"] == "no leak");
    CHECK(leaky["open_final"].get<int>() > 2);
    CHECK(leaky["open_final"].get<int>() > fixed["open_final"].get<int>());
    CHECK(leaky["growth_per_hour"]["open"].get<double>() > 0);
    CHECK(fixed["open_final"].get<int>() <= 2);
    CHECK(leaky["reconnects"].get<int>() >= 10);
    CHECK(fixed["reconnects"].get<int>() >= 10);
    // How many samples fit in 5 s depends on the machine's load: the verdicts above say there
    // were enough; here, that every one reached the CSV.
    const int leaky_samples = leaky["series"]["samples"].get<int>();
    const int fixed_samples = fixed["series"]["samples"].get<int>();
    CHECK(leaky_samples >= 2);
    CHECK(j["left_behind"] == 0);

    // Every child was stopped and reaped before prove exited.
    for (pid_t pid : run_pids(j))
        CHECK_MESSAGE(gone(pid), "pid " << pid << " is still there");

    const std::string svg_text = read_file(svg);
    CHECK(xmlcheck::problem(svg_text).empty());
    CHECK(svg_text.find("<svg") != std::string::npos);
    const std::string csv_text = read_file(csv);
    CHECK(csv_text.rfind("t_seconds,collector,established,close_wait,time_wait,total,"
                         "kernel_memory_bytes,reconnects\n",
                         0) == 0);
    const auto rows_of = [&](const std::string& key) {
        int rows = 0;
        for (std::size_t at = 0; (at = csv_text.find("," + key + ",", at)) != std::string::npos;
             ++at)
            ++rows;
        return rows;
    };
    CHECK(rows_of("leaky") == leaky_samples);
    CHECK(rows_of("fixed") == fixed_samples);
}

TEST_CASE("prove --cmd: a command that leaks exits 1, a tidy one exits 0") {
    TempDir dir;
    const std::string leaky = dir.path() + "/leaky.sh";
    const std::string tidy = dir.path() + "/tidy.sh";
    write_file(leaky, std::string(script_head) + leaky_body);
    write_file(tidy, std::string(script_head) + tidy_body);

    const auto bad = run({conncheck_bin(), "prove", "--duration", "4s", "--json", "--cmd",
                          "bash " + leaky + " {url}"},
                         std::chrono::seconds(40));
    INFO("stderr: " << bad.err);
    CHECK(bad.exit_code == 1);
    const json jb = json::parse(bad.out);
    REQUIRE(jb["collectors"].size() == 3);
    CHECK(jb["collectors"][2]["key"] == "command");
    CHECK(jb["collectors"][2]["verdict"] == "leaks");
    CHECK(jb["collectors"][2]["reconnects_source"] == "cookies");
    CHECK(jb["run"]["command"].get<std::string>().find("{url}") != std::string::npos);
    for (pid_t pid : run_pids(jb))
        CHECK(gone(pid));

    const auto good =
        run({conncheck_bin(), "prove", "--duration", "4s", "--cmd", "bash " + tidy + " {url}"},
            std::chrono::seconds(40));
    INFO("stderr: " << good.err);
    CHECK(good.exit_code == 0);
    CHECK(good.out.find("your command") != std::string::npos);
    CHECK(good.out.find("ESTABLISHED") != std::string::npos);
    CHECK(good.out.find("growth per hour") != std::string::npos);
}

TEST_CASE("prove: bad arguments exit 2 with one line") {
    for (const std::vector<std::string>& args : {
             std::vector<std::string>{"--duration", "abc"},
             std::vector<std::string>{"--duration", "0.5s"},
             std::vector<std::string>{"--faults", "silent,bogus"},
             std::vector<std::string>{"--faults", ""},
             std::vector<std::string>{"--cmd", "echo no placeholder"},
             std::vector<std::string>{"--interval", "10ms"},
             std::vector<std::string>{"--rate", "0"},
             std::vector<std::string>{"--svg", "/nonexistent/dir/x.svg"},
         }) {
        std::vector<std::string> argv{conncheck_bin(), "prove"};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto r = run(argv, std::chrono::seconds(10));
        INFO(args[0] << " " << args[1] << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("conncheck: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}

TEST_CASE("prove: a command that exits early fails the run") {
    const auto r = run({conncheck_bin(), "prove", "--duration", "5s", "--cmd", "exit 4 # {url}"},
                       std::chrono::seconds(30));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("your command exited with status 4") != std::string::npos);
}

TEST_CASE("prove: SIGINT and SIGKILL leave no process behind") {
    // Orphans come to this process, so that it can reap them and /proc forgets them.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const auto reap = [] {
        int st = 0;
        while (waitpid(-1, &st, WNOHANG) > 0) {
        }
    };
    const std::string cmd = "sleep 300 & sleep 300; : {url}";
    TempDir dir;
    const std::string out = dir.path() + "/out.txt";
    for (const int signo : {SIGINT, SIGKILL}) {
        CAPTURE(signo);
        const pid_t prove = spawn_prove({"--duration", "60s", "--cmd", cmd}, out);
        REQUIRE(prove > 0);
        std::vector<pid_t> tree;
        // Two simulators and collectors each, plus the command's guard, shell and two sleeps.
        CHECK(wait_until(
            [&] {
                tree = tree_of(prove);
                return tree.size() >= 9;
            },
            std::chrono::seconds(15)));
        kill(prove, signo);
        int status = 0;
        CHECK(wait_until([&] { return waitpid(prove, &status, WNOHANG) == prove; },
                         std::chrono::seconds(10)));
        if (signo == SIGINT) {
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 130);
            // The counts so far, marked as such.
            CHECK(read_file(out).find("interrupted after") != std::string::npos);
        }
        CHECK(wait_until(
            [&] {
                reap();
                return std::all_of(tree.begin(), tree.end(), gone);
            },
            std::chrono::seconds(10)));
        for (pid_t pid : tree)
            CHECK_MESSAGE(gone(pid), "pid " << pid << " outlived prove");
    }
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    reap();
}

TEST_CASE("prove: SIGKILL also stops a daemon the command started in a session of its own") {
    // Orphans come to this process, so that a daemon that outlived prove is ours to kill.
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const auto reap = [] {
        int st = 0;
        while (waitpid(-1, &st, WNOHANG) > 0) {
        }
    };
    TempDir dir;
    const std::string pidfile = dir.path() + "/daemon.pid";
    // setsid leaves the command's process group and session: no signal to the group reaches it.
    const std::string cmd =
        "setsid sh -c 'echo $$ > " + pidfile + "; exec sleep 300' & sleep 300; : {url}";
    const pid_t prove = spawn_prove({"--duration", "60s", "--cmd", cmd}, dir.path() + "/out.txt");
    REQUIRE(prove > 0);
    pid_t daemon = 0;
    const bool started = wait_until(
        [&] {
            if (!std::filesystem::exists(pidfile)) return false;
            daemon = static_cast<pid_t>(std::atoi(read_file(pidfile).c_str()));
            if (daemon <= 0 || gone(daemon)) return false;
            const std::string comm = read_file("/proc/" + std::to_string(daemon) + "/comm");
            return comm == "sleep\n";
        },
        std::chrono::seconds(15));
    CHECK(started);
    if (started) {
        CHECK(getsid(daemon) == daemon);
        kill(prove, SIGKILL);
        CHECK(wait_until([&] { return waitpid(prove, nullptr, WNOHANG) == prove; },
                         std::chrono::seconds(10)));
        CHECK_MESSAGE(wait_until(
                          [&] {
                              reap();
                              return gone(daemon);
                          },
                          std::chrono::seconds(10)),
                      "the setsid daemon " << daemon << " outlived prove");
        if (!gone(daemon)) kill(daemon, SIGKILL); // ours: it came to us as an orphan
    } else {
        kill(prove, SIGKILL);
    }
    waitpid(prove, nullptr, 0);
    CHECK(wait_until(
        [&] {
            reap();
            return daemon <= 0 || gone(daemon);
        },
        std::chrono::seconds(10)));
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    reap();
}
