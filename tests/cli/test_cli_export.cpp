// `conncheck export`: the exposition of a child with known sockets, conncheck_up 0 for a target
// that is gone, and the textfile written where node_exporter reads it. promtool lints the same
// output in tests/scripts/check_prometheus.sh.
#include "check_support.hpp"

#include <doctest/doctest.h>
#include <filesystem>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace testsupport;

namespace {

CommandResult export_cmd(const std::vector<std::string>& args) {
    std::vector<std::string> argv{conncheck_bin(), "export"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

} // namespace

TEST_CASE("export: sockets by state of a known process") {
    Leaky leaky(5);
    leaky.close_peer(0, 2);
    const std::string pid = std::to_string(leaky.pid());
    const auto r = export_cmd({"--pid", pid});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(has_line(r.out, "conncheck_up 1"));
    CHECK(has_line(r.out, "conncheck_processes 1"));
    // Keyed by name: a restarted process continues its series. The pid is a value.
    const std::string labels = "{process=\"cli_tests\"";
    CHECK(has_line(r.out, "conncheck_process_pid" + labels + "} " + pid));
    CHECK(r.out.find("pid=") == std::string::npos);
    CHECK(has_line(r.out, "conncheck_tcp_sockets" + labels + ",state=\"close_wait\"} 2"));
    CHECK(has_line(r.out, "conncheck_tcp_sockets" + labels + ",state=\"established\"} 3"));
    CHECK(r.out.find("conncheck_open_fds" + labels + "} ") != std::string::npos);
    CHECK(r.out.find("conncheck_findings" + labels + ",kind=\"close_wait\"} ") !=
          std::string::npos);
    CHECK(r.out.find("# TYPE conncheck_last_run_timestamp_seconds gauge\n") != std::string::npos);
}

TEST_CASE("export: a target that cannot be scanned is conncheck_up 0 and an exit status") {
    pid_t gone = 0;
    {
        Leaky leaky(1);
        gone = leaky.pid();
        leaky.stop();
    }
    const auto r = export_cmd({"--pid", std::to_string(gone), "--job", "collector"});
    CHECK(r.exit_code == 3);
    CHECK(has_line(r.out, "conncheck_up{target=\"collector\"} 0"));
    CHECK(r.out.find("conncheck_tcp_sockets") == std::string::npos);
    CHECK(r.err.find("conncheck: no such process") != std::string::npos);
}

TEST_CASE("export: the textfile, named by --job, readable by node_exporter") {
    Leaky leaky(1);
    TempDir dir;
    auto r = export_cmd({"--pid", std::to_string(leaky.pid()), "--textfile-dir", dir.path()});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.empty());
    const std::string plain = read_file(dir.path() + "/conncheck.prom");
    CHECK(has_line(plain, "conncheck_up 1"));
    struct stat st {};
    REQUIRE(::stat((dir.path() + "/conncheck.prom").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);

    r = export_cmd(
        {"--pid", std::to_string(leaky.pid()), "--textfile-dir", dir.path(), "--job", "web-1"});
    CHECK(r.exit_code == 0);
    const std::string named = read_file(dir.path() + "/conncheck_web-1.prom");
    CHECK(has_line(named, "conncheck_up{target=\"web-1\"} 1"));
    // Nothing else was left in the directory: no temporary files.
    const auto entries = std::distance(std::filesystem::directory_iterator(dir.path()),
                                       std::filesystem::directory_iterator{});
    CHECK(entries == 2);
}

TEST_CASE("export: bad arguments") {
    Leaky leaky(1);
    const std::string pid = std::to_string(leaky.pid());
    auto r = export_cmd({"--pid", pid, "--job", "a/b"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--job") != std::string::npos);
    r = export_cmd({"--pid", pid, "--textfile-dir", "/nonexistent/textfiles"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("/nonexistent/textfiles") != std::string::npos);
    r = export_cmd({});
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
}
