// /proc parsing against a fixture tree the test builds: real symlinks for fd/ and ns/net.
#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan/fd_walk.hpp"

#include "support.hpp"

#include <doctest/doctest.h>
#include <filesystem>
#include <future>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace conncheck;
namespace fs = std::filesystem;

namespace {

void make_process(const std::string& root, int pid, const std::string& comm,
                  const std::string& cmdline, const std::vector<std::string>& fd_links) {
    const std::string dir = root + "/" + std::to_string(pid);
    fs::create_directories(dir + "/fd");
    fs::create_directories(dir + "/ns");
    testsupport::write_file(dir + "/stat", std::to_string(pid) + " (" + comm +
                                               ") S 1 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 "
                                               "123456 1000000 100 18446744073709551615\n");
    testsupport::write_file(dir + "/cmdline", cmdline);
    testsupport::write_file(
        dir + "/limits",
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max cpu time              unlimited            unlimited            seconds   \n"
        "Max open files            1024                 524288               files     \n");
    fs::create_symlink("net:[4026531999]", dir + "/ns/net");
    for (std::size_t i = 0; i < fd_links.size(); ++i)
        fs::create_symlink(fd_links[i], dir + "/fd/" + std::to_string(i));
}

} // namespace

TEST_CASE("read_info parses stat, cmdline, limits and the namespace") {
    testsupport::TempDir tmp;
    make_process(tmp.path(), 4242, "data (coll) ector",
                 std::string("python3\0collector.py\0--x\0", 25), {});
    proc::ProcFs procfs(tmp.path());
    const auto info = procfs.read_info(4242);
    CHECK(info.pid == 4242);
    CHECK(info.comm == "data (coll) ector");
    CHECK(info.cmdline == "python3 collector.py --x");
    CHECK(info.start_ticks == 123456);
    CHECK(info.fd_limit.soft == 1024);
    CHECK(info.fd_limit.hard == 524288);
    CHECK(info.netns == 4026531999ULL);
    CHECK(procfs.exists(4242));
    CHECK_FALSE(procfs.exists(4243));
}

TEST_CASE("scan_fds collects socket inodes only and counts every fd") {
    testsupport::TempDir tmp;
    make_process(tmp.path(), 7, "c", "c",
                 {"/dev/null", "socket:[100]", "socket:[42]", "pipe:[9]", "socket:[100]",
                  "anon_inode:[eventfd]"});
    proc::ProcFs procfs(tmp.path());
    const auto fds = procfs.scan_fds(7);
    CHECK(fds.open_fds == 6);
    CHECK(fds.socket_inodes == std::vector<std::uint64_t>{42, 100});
}

TEST_CASE("a missing process is no_such_process") {
    testsupport::TempDir tmp;
    proc::ProcFs procfs(tmp.path());
    try {
        (void)procfs.read_info(99);
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::no_such_process);
    }
    CHECK_THROWS_AS((void)procfs.scan_fds(99), Error);
}

TEST_CASE("an fd walk reads every process on its own thread, errors as results") {
    testsupport::TempDir tmp;
    make_process(tmp.path(), 7, "c", "c", {"socket:[100]", "/dev/null", "socket:[42]"});
    make_process(tmp.path(), 8, "d", "d", {"pipe:[3]"});
    proc::ProcFs procfs(tmp.path());
    scan::FdWalk walk(procfs, {7, 99, 8});
    auto results = walk.take();
    CHECK(walk.done());
    REQUIRE(results.size() == 3);
    REQUIRE(results[0].fds);
    CHECK(results[0].fds->socket_inodes == std::vector<std::uint64_t>{42, 100});
    CHECK(results[0].fds->open_fds == 3);
    REQUIRE_FALSE(results[1].fds);
    REQUIRE(results[1].error);
    CHECK(results[1].error->code() == Errc::no_such_process);
    REQUIRE(results[2].fds);
    CHECK(results[2].fds->socket_inodes.empty());
    CHECK(results[2].fds->open_fds == 1);
}

TEST_CASE("fd tables read on several threads, a large one in shares, equal those read whole") {
    testsupport::TempDir tmp;
    std::vector<std::string> many;
    for (int i = 0; i < 2500; ++i)
        many.push_back(i % 3 == 0 ? "pipe:[7]" : "socket:[" + std::to_string(90000 - i) + "]");
    many.push_back("socket:[89999]"); // a second fd of one socket: listed once
    make_process(tmp.path(), 7, "c", "c", many);
    make_process(tmp.path(), 8, "d", "d", {"socket:[5]", "/dev/null"});
    make_process(tmp.path(), 9, "e", "e", {});
    proc::ProcFs procfs(tmp.path());
    const std::vector<pid_t> pids{7, 99, 8, 9};
    for (unsigned threads : {1U, 3U}) {
        CAPTURE(threads);
        const auto results = scan::read_fd_tables(procfs, pids, threads);
        REQUIRE(results.size() == 4);
        for (std::size_t i : {0U, 2U, 3U}) {
            REQUIRE(results[i].fds);
            const auto whole = procfs.scan_fds(pids[i]);
            CHECK(results[i].fds->socket_inodes == whole.socket_inodes);
            CHECK(results[i].fds->socket_fds == whole.socket_fds);
            CHECK(results[i].fds->open_fds == whole.open_fds);
        }
        CHECK(results[0].fds->open_fds == 2501);
        CHECK(results[0].fds->socket_inodes.size() == 1666);
        CHECK(results[2].fds->socket_inodes == std::vector<std::uint64_t>{5});
        CHECK(results[3].fds->open_fds == 0);
        REQUIRE(results[1].error);
        CHECK(results[1].error->code() == Errc::no_such_process);
    }
}

TEST_CASE("open_files reads the first field of sys/fs/file-nr") {
    testsupport::TempDir tmp;
    proc::ProcFs procfs(tmp.path());
    CHECK_FALSE(procfs.open_files());
    fs::create_directories(tmp.path() + "/sys/fs");
    testsupport::write_file(tmp.path() + "/sys/fs/file-nr", "97811\t0\t2466248\n");
    CHECK(procfs.open_files() == std::optional<std::uint64_t>(97811));
    testsupport::write_file(tmp.path() + "/sys/fs/file-nr", "many\t0\t1\n");
    CHECK_FALSE(procfs.open_files());
}

TEST_CASE("list_pids, read_stat and thread_group") {
    testsupport::TempDir tmp;
    make_process(tmp.path(), 10, "collector", "collector --a", {});
    make_process(tmp.path(), 11, "a) b", "x", {});
    make_process(tmp.path(), 12, "sshd", "sshd", {});
    testsupport::write_file(tmp.path() + "/10/status", "Name:\tcollector\nTgid:\t10\nPid:\t10\n");
    testsupport::write_file(tmp.path() + "/11/status", "Name:\ta) b\nTgid:\t10\nPid:\t11\n");
    fs::create_directories(tmp.path() + "/self");
    fs::create_directories(tmp.path() + "/sys");
    proc::ProcFs procfs(tmp.path());
    CHECK(procfs.list_pids() == std::vector<pid_t>{10, 11, 12});
    const auto stat = procfs.read_stat(11);
    REQUIRE(stat.has_value());
    CHECK(stat->comm == "a) b");
    CHECK(stat->ppid == 1);
    CHECK_FALSE(procfs.read_stat(99).has_value());
    CHECK(procfs.thread_group(10) == 10);
    CHECK(procfs.thread_group(11) == 10); // a thread of 10
    CHECK_FALSE(procfs.thread_group(12).has_value());
}

TEST_CASE("thread_group of a real thread is its process") {
    proc::ProcFs procfs("/proc");
    std::promise<pid_t> started;
    std::promise<void> done;
    std::thread t([&] {
        started.set_value(::gettid());
        done.get_future().wait();
    });
    const pid_t tid = started.get_future().get();
    CHECK(tid != ::getpid());
    CHECK(procfs.thread_group(tid) == ::getpid());
    CHECK(procfs.thread_group(::getpid()) == ::getpid());
    done.set_value();
    t.join();
}

TEST_CASE("parse_pid is strict") {
    CHECK(proc::parse_pid("4242") == 4242);
    CHECK_FALSE(proc::parse_pid("0").has_value());
    CHECK_FALSE(proc::parse_pid("-1").has_value());
    CHECK_FALSE(proc::parse_pid("042").has_value());
    CHECK_FALSE(proc::parse_pid("12abc").has_value());
    CHECK_FALSE(proc::parse_pid("").has_value());
    CHECK_FALSE(proc::parse_pid("99999999999").has_value());
    CHECK_FALSE(proc::parse_pid(" 1").has_value());
}

TEST_CASE("links and pidfiles") {
    CHECK(proc::parse_socket_link("socket:[12345]") == 12345U);
    CHECK_FALSE(proc::parse_socket_link("socket:[]").has_value());
    CHECK_FALSE(proc::parse_socket_link("pipe:[1]").has_value());
    CHECK(proc::parse_ns_link("net:[4026531840]") == 4026531840ULL);
    CHECK(proc::parse_ns_link("mnt:[1]") == 0);

    testsupport::TempDir tmp;
    testsupport::write_file(tmp.path() + "/ok.pid", "4242\n");
    testsupport::write_file(tmp.path() + "/bad.pid", "not a pid\n");
    CHECK(proc::read_pidfile(tmp.path() + "/ok.pid") == 4242);
    try {
        (void)proc::read_pidfile(tmp.path() + "/bad.pid");
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::bad_file);
    }
    CHECK_THROWS_AS((void)proc::read_pidfile(tmp.path() + "/missing.pid"), Error);
}

TEST_CASE("parse_cgroup2_path takes the cgroup v2 line") {
    CHECK(proc::parse_cgroup2_path("0::/system.slice/nginx.service\n") ==
          "/system.slice/nginx.service");
    CHECK(proc::parse_cgroup2_path("9:name=systemd:/\n4:memory:/x\n0::/user.slice\n") ==
          "/user.slice");
    CHECK(proc::parse_cgroup2_path("0::/") == "/");
    CHECK_FALSE(proc::parse_cgroup2_path("4:memory:/x\n1:cpu:/\n").has_value());
    CHECK_FALSE(proc::parse_cgroup2_path("").has_value());
    CHECK_FALSE(proc::parse_cgroup2_path("0::\n").has_value());
}

TEST_CASE("parse_cgroup2_mount finds unified, hybrid and escaped mounts") {
    const auto unified = proc::parse_cgroup2_mount(
        "22 1 0:21 / /sys rw - sysfs sysfs rw\n"
        "26 22 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
    REQUIRE(unified.has_value());
    CHECK(unified->mount_point == "/sys/fs/cgroup");
    CHECK(unified->root == "/");

    const auto hybrid = proc::parse_cgroup2_mount(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    REQUIRE(hybrid.has_value());
    CHECK(hybrid->mount_point == "/sys/fs/cgroup/unified");

    const auto escaped =
        proc::parse_cgroup2_mount("50 1 0:40 /lxc/c\\0401 /mnt/my\\040cg rw - cgroup2 none rw\n");
    REQUIRE(escaped.has_value());
    CHECK(escaped->mount_point == "/mnt/my cg");
    CHECK(escaped->root == "/lxc/c 1");

    CHECK_FALSE(proc::parse_cgroup2_mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw\n")
                    .has_value());
    CHECK_FALSE(proc::parse_cgroup2_mount("41 31 0:38 / /x rw cgroup2 cgroup2 rw\n").has_value());
    CHECK_FALSE(proc::parse_cgroup2_mount("").has_value());
}

TEST_CASE("ProcFs::cgroup joins the process's path with the cgroup2 mount") {
    testsupport::TempDir tmp;
    const std::string proc_root = tmp.path() + "/proc";
    const std::string mount = tmp.path() + "/cgroup";
    fs::create_directories(mount + "/system.slice/app.service");
    fs::create_directories(proc_root + "/self");
    testsupport::write_file(proc_root + "/self/mountinfo",
                            "41 31 0:38 / " + mount + " rw,relatime - cgroup2 cgroup2 rw\n");
    make_process(proc_root, 10, "app", "app", {});
    testsupport::write_file(proc_root + "/10/cgroup", "1:cpu:/\n0::/system.slice/app.service\n");
    make_process(proc_root, 11, "old", "old", {});
    testsupport::write_file(proc_root + "/11/cgroup", "1:cpu:/\n");
    make_process(proc_root, 12, "gone", "gone", {});
    testsupport::write_file(proc_root + "/12/cgroup", "0::/system.slice/removed.service\n");
    make_process(proc_root, 13, "root", "root", {});
    testsupport::write_file(proc_root + "/13/cgroup", "0::/\n");

    proc::ProcFs procfs(proc_root);
    const auto cg = procfs.cgroup(10);
    REQUIRE(cg.has_value());
    CHECK(cg->path == "/system.slice/app.service");
    CHECK(cg->directory == mount + "/system.slice/app.service");
    struct stat st {};
    REQUIRE(::stat((mount + "/system.slice/app.service").c_str(), &st) == 0);
    CHECK(cg->id == st.st_ino);

    CHECK_FALSE(procfs.cgroup(11).has_value()); // cgroup v1 only
    CHECK_FALSE(procfs.cgroup(99).has_value()); // no such process

    const auto removed = procfs.cgroup(12);
    REQUIRE(removed.has_value());
    CHECK(removed->directory.empty());
    CHECK(removed->id == 0);

    const auto top = procfs.cgroup(13);
    REQUIRE(top.has_value());
    CHECK(top->directory == mount);
    REQUIRE(::stat(mount.c_str(), &st) == 0);
    CHECK(top->id == st.st_ino);
}

TEST_CASE("/proc/PID/stat parents") {
    const auto a = proc::parse_stat("4242 (sh) S 17 4242 4242 0 -1 4194560 ...");
    REQUIRE(a);
    CHECK(a->state == 'S');
    CHECK(a->ppid == 17);
    CHECK(a->pgrp == 4242);
    const auto b = proc::parse_stat("7 (a) b) (c) Z 1 9 9 0");
    REQUIRE(b);
    CHECK(b->state == 'Z');
    CHECK(b->ppid == 1);
    CHECK(b->pgrp == 9);
    CHECK_FALSE(proc::parse_stat("7 (noclose S 1 2"));
    CHECK_FALSE(proc::parse_stat("7 (x) S"));
    CHECK_FALSE(proc::parse_stat("7 (x) S x 2"));
    CHECK_FALSE(proc::parse_stat(""));
}

TEST_CASE("descendants of a process") {
    // 10 -> 11 -> 12, 10 -> 13, 20 -> 21; 30 <-> 31 a cycle from a racy read.
    const std::unordered_map<pid_t, pid_t> parent{{10, 1}, {11, 10}, {12, 11}, {13, 10},
                                                  {20, 1}, {21, 20}, {30, 31}, {31, 30}};
    CHECK(proc::descendants_of(10, parent) == std::vector<pid_t>{11, 12, 13});
    CHECK(proc::descendants_of(11, parent) == std::vector<pid_t>{12});
    CHECK(proc::descendants_of(12, parent).empty());
    CHECK(proc::descendants_of(99, parent).empty());
    CHECK(proc::descendants_of(30, parent) == std::vector<pid_t>{31});
}
