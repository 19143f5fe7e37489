// Selecting processes from the command line: exact names, executables, refused selectors and
// thread ids, and outputs that cannot be written.
#include "support.hpp"

#include <algorithm>
#include <csignal>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace testsupport;
using nlohmann::json;

namespace {

CommandResult conncheck(std::vector<std::string> args) {
    args.insert(args.begin(), conncheck_bin());
    return run(args, 30s);
}

std::size_t line_count(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

// A program run in a process group of its own, killed with the whole group when done (a shell
// script's children included).
class Program {
public:
    explicit Program(std::vector<std::string> argv) {
        std::vector<char*> argp;
        for (auto& a : argv)
            argp.push_back(a.data());
        argp.push_back(nullptr);
        pid_ = fork();
        if (pid_ == 0) {
            setpgid(0, 0);
            const int devnull = open("/dev/null", O_RDWR);
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
            execv(argp[0], argp.data());
            _exit(127);
        }
        setpgid(pid_, pid_);
    }
    ~Program() {
        kill(-pid_, SIGKILL);
        int st = 0;
        waitpid(pid_, &st, 0);
    }
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
};

std::string cmdline_of(pid_t pid) {
    std::string s = read_file("/proc/" + std::to_string(pid) + "/cmdline");
    std::replace(s.begin(), s.end(), '\0', ' ');
    return s;
}

std::vector<pid_t> selected(const CommandResult& r) {
    std::vector<pid_t> pids;
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    if (r.exit_code != 0) return pids;
    const json report = json::parse(r.out);
    for (const auto& p : report["processes"])
        pids.push_back(p["pid"].get<pid_t>());
    return pids;
}

} // namespace

TEST_CASE("empty and malformed selectors are refused with one line") {
    for (const std::vector<std::string>& args : {std::vector<std::string>{"--name", ""},
                                                 {"--name", "bin/collector"},
                                                 {"--pid", "1,,2"},
                                                 {"--pid", "1,"},
                                                 {"--pid", ",1"},
                                                 {"--exe", ""},
                                                 {"--unit", ""},
                                                 {"--unit", "system.slice/x.service"},
                                                 {"--cgroup", ""},
                                                 {"--cgroup", "system.slice"},
                                                 {"watch", "--name", ""},
                                                 {"export", "--name", ""},
                                                 {"export", "--pid", "1", "--job", ""}}) {
        CAPTURE(args);
        const auto r = conncheck(args);
        CHECK(r.exit_code == 2);
        CHECK(line_count(r.err) == 1);
        CHECK(r.err.rfind("conncheck: ", 0) == 0);
        CHECK(r.out.empty());
    }
    const auto r = conncheck({"--pid", "1,,2"});
    CHECK(r.err.find("empty item in '1,,2'") != std::string::npos);
    // check answers UNKNOWN for bad arguments, like every Monitoring Plugin.
    CHECK(conncheck({"check", "--name", ""}).exit_code == 3);
}

TEST_CASE("a thread id is refused, naming its process") {
    std::promise<pid_t> started;
    std::promise<void> done;
    std::thread t([&] {
        started.set_value(gettid());
        done.get_future().wait();
    });
    const pid_t tid = started.get_future().get();
    const std::string me = std::to_string(getpid());
    const auto r = conncheck({"--pid", me + "," + std::to_string(tid), "--json"});
    done.set_value();
    t.join();
    CHECK(r.exit_code == 2);
    CHECK(r.err == "conncheck: " + std::to_string(tid) + " is a thread of process " + me +
                       ": give --pid " + me + "\n");
    CHECK(r.out.empty());
}

TEST_CASE("--name is the program, not a substring of someone's command line") {
    TempDir dir;
    const std::string script = dir.path() + "/client-" + std::to_string(getpid()) + ".sh";
    write_file(script, "sleep 600 & wait\n");
    Program client({"/bin/sh", script});
    Program reader({"/usr/bin/tail", "-f", script});
    REQUIRE(wait_until(
        [&] {
            return cmdline_of(client.pid()).find(script) != std::string::npos &&
                   cmdline_of(reader.pid()).find(script) != std::string::npos;
        },
        10s));
    const std::string name = std::filesystem::path(script).filename();
    CHECK(selected(conncheck({"--name", name, "--json"})) == std::vector<pid_t>{client.pid()});
    // A part of the name is no name.
    const auto part = conncheck({"--name", name.substr(0, name.size() - 3), "--json"});
    CHECK(part.exit_code == 3);
}

TEST_CASE("--exe selects the processes running that file, also once it was replaced") {
    TempDir dir;
    const std::string exe = dir.path() + "/cc-select-sleep";
    std::filesystem::copy_file("/bin/sleep", exe);
    chmod(exe.c_str(), 0755);
    Program a({exe, "600"});
    Program other({"/bin/sleep", "600"});
    REQUIRE(wait_until([&] { return cmdline_of(a.pid()).find("600") != std::string::npos; }, 10s));
    CHECK(selected(conncheck({"--exe", exe, "--json"})) == std::vector<pid_t>{a.pid()});
    CHECK(selected(conncheck({"--exe", dir.path() + "/./cc-select-sleep", "--json"})) ==
          std::vector<pid_t>{a.pid()});
    // An upgrade puts a new file at the path; the running process still counts.
    std::filesystem::remove(exe);
    std::filesystem::copy_file("/bin/sleep", exe);
    CHECK(selected(conncheck({"--exe", exe, "--json"})) == std::vector<pid_t>{a.pid()});
    const auto none = conncheck({"--exe", dir.path() + "/nothing-runs-this"});
    CHECK(none.exit_code == 3);
    CHECK(none.err.find("no process matches executable") != std::string::npos);
}

TEST_CASE("outputs that cannot be written are the user's problem: exit 2, one line") {
    const std::string me = std::to_string(getpid());
    auto r = conncheck({"--pid", me, "--dump-netlink", "/nonexistent/x"});
    CHECK(r.exit_code == 2);
    CHECK(r.err == "conncheck: cannot write /nonexistent/x: No such file or directory\n");

    // A read-only file system: a read-only mount in a mount namespace of its own (root only;
    // a directory without write permission is a permission problem, exit 4, tested elsewhere).
    if (geteuid() != 0) {
        MESSAGE("skipped the read-only textfile directory: needs root for a mount namespace");
        return;
    }
    TempDir dir;
    const std::string ro = dir.path() + "/ro";
    std::filesystem::create_directory(ro);
    r = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c",
             "mount -t tmpfs -o ro tmpfs \"$1\" && exec \"$2\" export --pid \"$3\" "
             "--textfile-dir \"$1\"",
             "sh", ro, conncheck_bin(), me},
            30s);
    CHECK(r.exit_code == 2);
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.find("conncheck: cannot write " + ro + "/conncheck.prom: ") == 0);
    CHECK(r.err.find("Read-only file system") != std::string::npos);
    CHECK(r.err.find("internal error") == std::string::npos);
}

TEST_CASE("an option of the audit before a subcommand is refused, never dropped") {
    const std::string me = std::to_string(getpid());
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"--pid", me, "check"},
          {"--json", "check", "--pid", me},
          {"--json", "export", "--pid", me},
          {"--name", "collector", "watch", "--pid", me, "--count", "1"},
          {"--no-color", "watch", "--pid", me, "--count", "1"}}) {
        CAPTURE(args);
        const auto r = conncheck(args);
        // check answers as a plugin: its status line on stdout, exit 3 (UNKNOWN).
        const bool plugin = args[2] == "check" || args[1] == "check";
        CHECK(r.exit_code == (plugin ? 3 : 2));
        const std::string& said = plugin ? r.out : r.err;
        CHECK(line_count(said) == 1);
        CHECK(said.find("the subcommand") != std::string::npos);
    }
    const auto r = conncheck({"--pid", me, "check"});
    CHECK(r.out.find("--pid") != std::string::npos);
}

TEST_CASE("export labels each process with the name it was selected by, uniquely") {
    TempDir dir;
    const std::string name = "collector-" + std::to_string(getpid());
    const std::string script = dir.path() + "/" + name;
    write_file(script, "import time\ntime.sleep(600)\n");
    Program first({"/usr/bin/python3", script});
    Program second({"/usr/bin/python3", script});
    REQUIRE(wait_until(
        [&] {
            return cmdline_of(first.pid()).find(script) != std::string::npos &&
                   cmdline_of(second.pid()).find(script) != std::string::npos;
        },
        10s));
    const auto r = conncheck({"export", "--name", name});
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find("conncheck_open_fds{process=\"" + name + "\"}") != std::string::npos);
    CHECK(r.out.find("conncheck_open_fds{process=\"" + name + "_2\"}") != std::string::npos);
    CHECK(r.out.find("process=\"python3") == std::string::npos);
    // Selected by pid, a process is named by its comm.
    const auto by_pid = conncheck({"export", "--pid", std::to_string(first.pid())});
    CHECK(by_pid.out.find("conncheck_open_fds{process=\"python3\"}") != std::string::npos);
}

TEST_CASE("a process that exits during an audit of several is counted, the others reported") {
    TempDir dir;
    // A service whose workers live 100 ms and come and go all the time: one exits every 10 ms,
    // about ten are there at any moment.
    const std::string name = "forker-svc-" + std::to_string(getpid()) + ".py";
    const std::string script = dir.path() + "/" + name;
    write_file(script, "import os, time\n"
                       "deadline = time.monotonic() + 120\n"
                       "while time.monotonic() < deadline:\n"
                       "    if os.fork() == 0:\n"
                       "        time.sleep(0.1)\n"
                       "        os._exit(0)\n"
                       "    time.sleep(0.01)\n"
                       "    try:\n"
                       "        while os.waitpid(-1, os.WNOHANG)[0] != 0:\n"
                       "            pass\n"
                       "    except ChildProcessError:\n"
                       "        pass\n");
    Program service({"/usr/bin/python3", script});
    REQUIRE(wait_until(
        [&] {
            return selected(conncheck({"--name", name, "--json"})).size() > 2;
        },
        10s));
    for (int i = 0; i < 15; ++i) {
        const auto audit = conncheck({"--name", name, "--json"});
        CHECK_MESSAGE(audit.exit_code == 0, audit.err);
        if (audit.exit_code == 0) CHECK(json::parse(audit.out)["processes"].size() >= 1);
        const auto exported = conncheck({"export", "--name", name});
        CHECK_MESSAGE(exported.exit_code == 0, exported.err);
    }
}
