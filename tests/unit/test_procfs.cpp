// /proc parsing against a fixture tree the test builds: real symlinks for fd/ and ns/net.
#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"

#include "support.hpp"

#include <doctest/doctest.h>
#include <filesystem>
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

TEST_CASE("list_pids and find_by_name") {
    testsupport::TempDir tmp;
    make_process(tmp.path(), 10, "collector", "collector --a", {});
    make_process(tmp.path(), 11, "python3", std::string("python3\0/opt/data-collector.py\0", 31),
                 {});
    make_process(tmp.path(), 12, "sshd", "sshd", {});
    fs::create_directories(tmp.path() + "/self");
    fs::create_directories(tmp.path() + "/sys");
    proc::ProcFs procfs(tmp.path());
    CHECK(procfs.list_pids() == std::vector<pid_t>{10, 11, 12});
    CHECK(procfs.find_by_name("collector") == std::vector<pid_t>{10, 11});
    CHECK(procfs.find_by_name("sshd") == std::vector<pid_t>{12});
    CHECK(procfs.find_by_name("nginx").empty());
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
