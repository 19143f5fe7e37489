// Selecting processes by name, executable, unit and cgroup: the matching rules, and the finders
// against a fixture /proc tree.
#include "conncheck/select.hpp"

#include "conncheck/error.hpp"

#include "support.hpp"

#include <doctest/doctest.h>
#include <filesystem>
#include <unistd.h>

using namespace conncheck;
namespace fs = std::filesystem;

namespace {

struct FixtureProcess {
    int pid = 0;
    std::string comm;
    std::string cmdline; // NUL-separated, as the kernel shows it
    std::string cgroup;  // the content of /proc/PID/cgroup; none when empty
    std::string exe;     // the target of /proc/PID/exe; none when empty
};

void make_process(const std::string& root, const FixtureProcess& p) {
    const std::string dir = root + "/" + std::to_string(p.pid);
    fs::create_directories(dir);
    testsupport::write_file(dir + "/stat", std::to_string(p.pid) + " (" + p.comm +
                                               ") S 1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 "
                                               "1 0 123456 1000000 100\n");
    testsupport::write_file(dir + "/cmdline", p.cmdline);
    if (!p.cgroup.empty()) testsupport::write_file(dir + "/cgroup", p.cgroup);
    if (!p.exe.empty()) fs::create_symlink(p.exe, dir + "/exe");
}

std::string args(std::initializer_list<std::string_view> list) {
    std::string out;
    for (auto a : list) {
        out += a;
        out += '\0';
    }
    return out;
}

} // namespace

TEST_CASE("program names: argv[0], or the script an interpreter runs") {
    using V = std::vector<std::string_view>;
    CHECK(select::program_names(args({"/usr/sbin/nginx", "-g", "daemon off;"})) == V{"nginx"});
    CHECK(select::program_names(args({"python3", "-u", "/opt/client.py", "--x"})) ==
          V{"python3", "client.py"});
    CHECK(select::program_names(args({"/usr/bin/python3.11", "client.py"})) ==
          V{"python3.11", "client.py"});
    CHECK(select::program_names(args({"bash", "./run.sh"})) == V{"bash", "run.sh"});
    CHECK(select::program_names(args({"tail", "-f", "client.py"})) == V{"tail"});
    CHECK(select::program_names(args({"node"})) == V{"node"});
    CHECK(select::program_names("").empty());
    CHECK(select::is_interpreter("php8.2"));
    CHECK(select::is_interpreter("sh"));
    CHECK_FALSE(select::is_interpreter("tail"));
    CHECK_FALSE(select::is_interpreter("shred"));
}

TEST_CASE("--name is exact: comm or a program name, never a substring") {
    const auto cmd = args({"python3", "/opt/client.py"});
    CHECK(select::name_matches("client.py", "python3", cmd));
    CHECK(select::name_matches("python3", "python3", cmd));
    CHECK_FALSE(select::name_matches("client", "python3", cmd));
    CHECK_FALSE(select::name_matches("client.py", "tail", args({"tail", "-f", "client.py"})));
    CHECK(select::name_matches("collector", "collector", ""));    // a kernel thread's comm
    CHECK(select::name_matches("data-collector", "data-collecto", // comm is cut at 15 bytes
                               args({"/usr/local/bin/data-collector", "--config", "x"})));
    CHECK_FALSE(select::name_matches("", "", ""));
}

TEST_CASE("units and cgroups") {
    CHECK(select::unit_name("nginx") == "nginx.service");
    CHECK(select::unit_name("session-3.scope") == "session-3.scope");
    CHECK(select::unit_name("user.slice") == "user.slice");
    CHECK(select::unit_name("my.app") == "my.app.service");
    CHECK(select::in_unit("/system.slice/nginx.service", "nginx.service"));
    CHECK(select::in_unit("/system.slice/nginx.service/worker", "nginx.service"));
    CHECK(select::in_unit("/user.slice/user-1000.slice/user@1000.service/app.slice/x.service",
                          "x.service"));
    CHECK_FALSE(select::in_unit("/system.slice/nginx.service2", "nginx.service"));
    CHECK_FALSE(select::in_unit("/system.slice/foo-nginx.service", "nginx.service"));
    CHECK(select::within_cgroup("/a/b", "/a"));
    CHECK(select::within_cgroup("/a", "/a/"));
    CHECK_FALSE(select::within_cgroup("/ab", "/a"));
    CHECK(select::within_cgroup("/anything", "/"));

    const proc::Cgroup2Mount unified{"/sys/fs/cgroup", "/"};
    const proc::Cgroup2Mount hybrid{"/sys/fs/cgroup/unified", "/"};
    const proc::Cgroup2Mount nested{"/sys/fs/cgroup", "/lxc/c1"};
    CHECK(select::cgroup_argument("/system.slice/x.service/", unified) ==
          "/system.slice/x.service");
    CHECK(select::cgroup_argument("/sys/fs/cgroup/system.slice/x.service", unified) ==
          "/system.slice/x.service");
    CHECK(select::cgroup_argument("/sys/fs/cgroup/unified/test", hybrid) == "/test");
    CHECK(select::cgroup_argument("/sys/fs/cgroup/unified", hybrid) == "/");
    CHECK(select::cgroup_argument("/sys/fs/cgroup/app", nested) == "/lxc/c1/app");
    CHECK(select::cgroup_argument("/system.slice", std::nullopt) == "/system.slice");
}

TEST_CASE("the finders over a fixture /proc tree") {
    testsupport::TempDir tmp;
    const std::string root = tmp.path();
    const std::string bin = root + "/bin";
    fs::create_directories(bin);
    testsupport::write_file(bin + "/collector", "");
    testsupport::write_file(bin + "/other", "");
    make_process(root, {10, "collector", args({"collector", "--a"}),
                        "0::/system.slice/collector.service\n", bin + "/collector"});
    make_process(root, {11, "python3", args({"python3", "/opt/data-collector.py"}),
                        "0::/system.slice/collector.service/worker\n", bin + "/other"});
    make_process(
        root, {12, "tail", args({"tail", "-f", "collector"}), "0::/user.slice\n", bin + "/other"});
    make_process(root, {13, "old", args({"old"}), "9:name=systemd:/system.slice/old.service\n",
                        bin + "/collector (deleted)"});
    fs::create_directories(root + "/self");
    proc::ProcFs procfs(root);

    CHECK(select::by_name(procfs, "collector").pids == std::vector<pid_t>{10});
    CHECK(select::by_name(procfs, "data-collector.py").pids == std::vector<pid_t>{11});
    CHECK(select::by_name(procfs, "nginx").pids.empty());

    // The same file, and the link a deleted (upgraded) executable leaves.
    CHECK(select::by_exe(procfs, bin + "/collector").pids == std::vector<pid_t>{10, 13});
    CHECK(select::by_exe(procfs, bin + "/../bin/collector").pids == std::vector<pid_t>{10, 13});
    CHECK(select::by_exe(procfs, bin + "/missing").pids.empty());

    CHECK(select::by_unit(procfs, "collector.service").pids == std::vector<pid_t>{10, 11});
    CHECK(select::by_unit(procfs, "old.service").pids == std::vector<pid_t>{13}); // cgroup v1
    CHECK(select::by_cgroup(procfs, "/system.slice/collector.service").pids ==
          std::vector<pid_t>{10, 11});
    CHECK(select::by_cgroup(procfs, "/system.slice/collector.service/worker").pids ==
          std::vector<pid_t>{11});
    CHECK(select::by_cgroup(procfs, "/system.slice/collector").pids.empty());
}

TEST_CASE("the finders never select the caller") {
    // Run in the real /proc: this test binary's comm and executable.
    proc::ProcFs procfs("/proc");
    const auto exe = procfs.read_link(::getpid(), "exe");
    REQUIRE(exe.has_value());
    CHECK(select::by_exe(procfs, *exe).pids.empty());
    const auto stat = procfs.read_stat(::getpid());
    REQUIRE(stat.has_value());
    const auto mine = select::by_name(procfs, stat->comm).pids;
    CHECK(std::find(mine.begin(), mine.end(), ::getpid()) == mine.end());
}

TEST_CASE("resolve: one call from a plain selection to the processes and what named them") {
    testsupport::TempDir tmp;
    const std::string root = tmp.path();
    make_process(root, {20, "python3", args({"python3", "/srv/app/collector"}),
                        "0::/system.slice/app.service\n", ""});
    make_process(root, {21, "python3", args({"python3", "/srv/app/collector"}),
                        "0::/system.slice/app.service\n", ""});
    make_process(root, {22, "worker", args({"worker"}), "0::/system.slice/app.service\n", ""});
    // 23 matches too, but has exited: a zombie its parent has not reaped.
    make_process(root, {23, "python3", args({"python3", "/srv/app/collector"}), "", ""});
    testsupport::write_file(root + "/23/stat",
                            "23 (python3) Z 1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 "
                            "123456 0 0\n");
    fs::create_directories(root + "/self");
    proc::ProcFs procfs(root);

    select::Selection by_name;
    by_name.name = "collector";
    const auto named = select::resolve(by_name, procfs);
    REQUIRE(named.processes.size() == 2);
    CHECK(named.processes[0].pid == 20);
    CHECK(named.processes[0].name == "collector");
    CHECK(named.processes[1].name == "collector");
    CHECK(named.vanished == 1);
    CHECK(named.pids() == std::vector<pid_t>{20, 21});

    // A process also given by pid keeps the name it was selected by; one given only by pid has
    // none (its comm names it).
    select::Selection mixed;
    mixed.unit = "app";
    mixed.pids = {20};
    const auto both = select::resolve(mixed, procfs);
    REQUIRE(both.processes.size() == 3);
    CHECK(both.processes[0].name == "app");
    select::Selection by_pid;
    by_pid.pids = {22};
    CHECK(select::resolve(by_pid, procfs).processes.at(0).name.empty());

    // A zombie given by pid has exited; a name whose only matches have exited too.
    select::Selection zombie;
    zombie.pids = {23};
    CHECK_THROWS_WITH_AS((void)select::resolve(zombie, procfs),
                         doctest::Contains("process 23 has exited"), Error);
    try {
        (void)select::resolve(zombie, procfs);
    } catch (const Error& e) {
        CHECK(e.code() == Errc::process_exited);
    }
    select::Selection missing;
    missing.pids = {99};
    CHECK_THROWS_WITH_AS((void)select::resolve(missing, procfs), "no such process: 99", Error);
    select::Selection nothing;
    nothing.name = "nginx";
    CHECK_THROWS_WITH_AS((void)select::resolve(nothing, procfs), "no process matches name 'nginx'",
                         Error);

    CHECK(select::key(by_name) == "name-collector");
    CHECK(select::key(mixed) == "pid-20+unit-app.service");
    CHECK(select::key(select::Selection{}) == "host");
    CHECK(select::Selection{}.empty());
    CHECK_FALSE(mixed.empty());
}
