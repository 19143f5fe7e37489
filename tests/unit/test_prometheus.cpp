// Prometheus exposition: names, labels and escaping, and a textfile that is never seen
// half-written.
#include "conncheck/error.hpp"
#include "conncheck/prometheus.hpp"
#include "support.hpp"

#include <atomic>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

using namespace conncheck;
using namespace conncheck::prometheus;

namespace {

analysis::ProcessReport report(pid_t pid, std::string comm, std::uint64_t fds) {
    analysis::ProcessReport r;
    r.info.pid = pid;
    r.info.comm = std::move(comm);
    r.info.open_fds = fds;
    r.info.fd_limit.soft = 1024;
    r.states[TcpState::established] = 45;
    r.states[TcpState::close_wait] = 12;
    r.states[TcpState::time_wait] = 40;
    r.stale = 27;
    r.kernel_memory_bytes = 65536;
    analysis::Finding f;
    f.kind = analysis::FindingKind::close_wait;
    r.findings.push_back(f);
    return r;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

bool has_line(const std::string& text, const std::string& line) {
    for (const auto& l : lines_of(text))
        if (l == line) return true;
    return false;
}

// Every line is a HELP/TYPE comment or `name{labels} value`: what a scraper would accept.
const std::regex sample_line(
    R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? -?[0-9]+(\.[0-9]+)?$)re");
const std::regex comment_line(R"(^# (HELP|TYPE) conncheck_[a-z_]+ .+$)");

bool parses(const std::string& text, std::size_t* samples = nullptr) {
    if (text.empty() || text.back() != '\n') return false;
    std::size_t n = 0;
    for (const auto& l : lines_of(text)) {
        if (std::regex_match(l, comment_line)) continue;
        if (!std::regex_match(l, sample_line)) return false;
        ++n;
    }
    if (samples != nullptr) *samples = n;
    return true;
}

} // namespace

TEST_CASE("exposition: families, labels and values") {
    RenderOptions options;
    options.run_at =
        std::chrono::system_clock::time_point(std::chrono::milliseconds(1'790'000'000'250));
    const std::string out = render({report(4242, "collector", 112)}, options);
    CHECK(parses(out));
    CHECK(has_line(out, "# TYPE conncheck_up gauge"));
    CHECK(has_line(out, "conncheck_up 1"));
    CHECK(has_line(out, "conncheck_last_run_timestamp_seconds 1790000000.250"));
    CHECK(has_line(out, "conncheck_processes 1"));
    CHECK(has_line(out, R"(conncheck_tcp_sockets{process="collector",state="close_wait"} 12)"));
    CHECK(has_line(out, R"(conncheck_tcp_sockets{process="collector",state="established"} 45)"));
    CHECK(has_line(out, R"(conncheck_tcp_sockets{process="collector",state="listen"} 0)"));
    CHECK(has_line(out, R"(conncheck_stale_connections{process="collector"} 27)"));
    CHECK(has_line(out, R"(conncheck_tcp_sockets{process="collector",state="time_wait"} 40)"));
    CHECK(has_line(out, R"(conncheck_process_pid{process="collector"} 4242)"));
    // The TIME_WAIT count is conncheck_tcp_sockets{state="time_wait"}, not a second family.
    CHECK(out.find("closes_per_minute") == std::string::npos);
    CHECK(has_line(out, R"(conncheck_open_fds{process="collector"} 112)"));
    CHECK(has_line(out, R"(conncheck_fd_limit{process="collector"} 1024)"));
    CHECK(has_line(out, R"(conncheck_socket_memory_bytes{process="collector"} 65536)"));
    CHECK(has_line(out, R"(conncheck_findings{process="collector",kind="close_wait"} 1)"));
    CHECK(has_line(out, R"(conncheck_findings{process="collector",kind="fd_pressure"} 0)"));
    // Few labels: nothing per connection, no timestamps after the value.
    for (const char* label : {"port=", "peer=", "remote=", "local=", "address="}) {
        CAPTURE(label);
        CHECK(out.find(label) == std::string::npos);
    }
    // Every family has HELP and TYPE, and every sample belongs to a declared family.
    std::size_t help = 0;
    std::size_t type = 0;
    for (const auto& l : lines_of(out)) {
        help += l.starts_with("# HELP ");
        type += l.starts_with("# TYPE ");
    }
    CHECK(help == type);
    CHECK(help == 14);
}

TEST_CASE("exposition: an unlimited fd limit is left out, and up 0 has no process series") {
    auto r = report(7, "x", 3);
    r.info.fd_limit.soft = 0;
    const std::string out = render({r}, {});
    CHECK(out.find("conncheck_fd_limit{") == std::string::npos);
    RenderOptions down;
    down.up = false;
    down.target = "web-1";
    const std::string none = render({}, down);
    CHECK(parses(none));
    CHECK(has_line(none, R"(conncheck_up{target="web-1"} 0)"));
    CHECK(none.find("conncheck_tcp_sockets") == std::string::npos);
}

TEST_CASE("label values: process names are sanitized and escaped") {
    CHECK(escape_label_value(R"(a"b\c)") == R"(a\"b\\c)");
    CHECK(escape_label_value("a\nb") == "a\\nb");
    const std::string out = render({report(1, "ev\"il\\\n\x1b[2J", 1)}, {});
    CHECK(parses(out));
    CHECK(out.find('\x1b') == std::string::npos);
    // The literal backslash is escaped by the sanitizer (\\) and then by the format (\\\\),
    // so it cannot merge with the \x0a the sanitizer wrote for the newline.
    CHECK(out.find(R"(process="ev\"il\\\\\\x0a\\x1b[2J")") != std::string::npos);
    // Bidi overrides and zero-width characters never reach a label raw.
    const std::string bidi = render({report(2,
                                            "coll\xe2\x80\x8b"
                                            "ector\xe2\x80\xae",
                                            1)},
                                    {});
    CHECK(parses(bidi));
    CHECK(bidi.find("\xe2\x80") == std::string::npos);
    CHECK(bidi.find(R"(process="coll\\u{200b}ector\\u{202e}")") != std::string::npos);
}

TEST_CASE("socket fds in no TCP state and unreadable processes are exported") {
    auto r = report(4242, "collector", 112);
    r.other_sockets.tcp = 9;
    r.other_sockets.unix_domain = 2;
    RenderOptions options;
    options.unreadable_processes = 1;
    const std::string out = render({r}, options);
    CHECK(parses(out));
    CHECK(has_line(out, "conncheck_unreadable_processes 1"));
    CHECK(has_line(out, R"(conncheck_other_sockets{process="collector",kind="tcp"} 9)"));
    CHECK(has_line(out, R"(conncheck_other_sockets{process="collector",kind="udp"} 0)"));
    CHECK(has_line(out, R"(conncheck_other_sockets{process="collector",kind="unix"} 2)"));
    CHECK(has_line(out, R"(conncheck_other_sockets{process="collector",kind="other"} 0)"));
}

TEST_CASE("targets name the file and label every series") {
    CHECK(textfile_name("") == "conncheck.prom");
    CHECK(textfile_name("web") == "conncheck_web.prom");
    CHECK(valid_target("web-1.prod_a"));
    CHECK_FALSE(valid_target(""));
    CHECK_FALSE(valid_target("a/b"));
    CHECK_FALSE(valid_target("a b"));
    CHECK_FALSE(valid_target(std::string(65, 'a')));
    RenderOptions options;
    options.target = "web";
    const std::string out = render({report(5, "c", 1)}, options);
    for (const auto& l : lines_of(out))
        if (!l.starts_with("#")) CHECK(l.find("{target=\"web\"") != std::string::npos);
}

TEST_CASE("the textfile is never seen half-written: a reader polls during 1,000 writes") {
    testsupport::TempDir dir;
    const std::string path = dir.path() + "/conncheck.prom";
    // Large enough (~200 KiB) that a plain rewrite in place would be caught mid-way.
    const auto content_for = [](int version) {
        std::vector<analysis::ProcessReport> processes;
        for (int i = 0; i < 100; ++i)
            processes.push_back(report(1000 + i, "worker", static_cast<std::uint64_t>(version)));
        RenderOptions options;
        options.run_at = std::chrono::system_clock::time_point(std::chrono::seconds(version));
        return render(processes, options);
    };
    const std::string first = content_for(0);
    const std::string last_line = lines_of(first).back();
    std::size_t expected_samples = 0;
    REQUIRE(parses(first, &expected_samples));

    std::atomic<bool> done{false};
    std::atomic<int> reads{0};
    std::atomic<int> bad{0};
    std::string bad_example;
    std::thread reader([&] {
        const std::regex fds_line(R"(^conncheck_open_fds\{.*\} ([0-9]+)$)");
        const std::regex time_line(R"(^conncheck_last_run_timestamp_seconds ([0-9]+)\.000$)");
        while (!done.load()) {
            std::ifstream f(path, std::ios::binary);
            if (!f) continue; // before the first rename
            std::ostringstream ss;
            ss << f.rdbuf();
            const std::string text = ss.str();
            ++reads;
            std::size_t samples = 0;
            bool ok = parses(text, &samples) && samples == expected_samples &&
                      lines_of(text).back() == last_line;
            // One version throughout: every open_fds value equals the run's timestamp.
            std::string version;
            for (const auto& l : lines_of(text)) {
                std::smatch m;
                if (std::regex_match(l, m, time_line)) version = m[1];
                if (std::regex_match(l, m, fds_line) && m[1] != version) ok = false;
            }
            if (!ok && bad++ == 0) bad_example = text.substr(0, 300);
        }
    });
    for (int version = 0; version < 1000; ++version)
        write_textfile(dir.path(), "conncheck.prom", content_for(version));
    done = true;
    reader.join();
    INFO("first bad read: " << bad_example);
    CHECK(bad.load() == 0);
    CHECK(reads.load() > 10);
    MESSAGE("reader saw " << reads.load() << " complete files during 1000 writes");
    // Only the final file is left: no temporaries.
    const auto entries = std::distance(std::filesystem::directory_iterator(dir.path()),
                                       std::filesystem::directory_iterator{});
    CHECK(entries == 1);
}

TEST_CASE("write_textfile into a missing directory is an io error naming it") {
    CHECK_THROWS_WITH_AS(write_textfile("/nonexistent/dir", "conncheck.prom", "x\n"),
                         doctest::Contains("/nonexistent/dir/conncheck.prom"), Error);
}

TEST_CASE("a process is labelled by the name it was selected by, uniquely") {
    RenderOptions options;
    options.selected_as = {{20, "collector"}, {21, "collector"}};
    const std::string text = render(
        {report(20, "python3", 1), report(21, "python3", 2), report(22, "worker", 3)}, options);
    CHECK(text.find("conncheck_open_fds{process=\"collector\"}") != std::string::npos);
    CHECK(text.find("conncheck_open_fds{process=\"collector_2\"}") != std::string::npos);
    CHECK(text.find("conncheck_open_fds{process=\"worker\"}") != std::string::npos);
    CHECK(text.find("python3") == std::string::npos);
}

TEST_CASE("series never carry the pid: a restart continues them, namesakes are numbered") {
    const std::string before = render({report(4242, "collector", 10)}, {});
    const std::string after = render({report(5151, "collector", 10)}, {});
    // Everything but the pid's own value is the same series with the same values.
    const auto without_pid = [](const std::string& text) {
        std::string out;
        for (const auto& l : lines_of(text))
            if (!l.starts_with("conncheck_process_pid{") &&
                !l.starts_with("conncheck_last_run_timestamp_seconds "))
                out += l + "\n";
        return out;
    };
    CHECK(without_pid(before) == without_pid(after));
    CHECK(has_line(after, R"(conncheck_process_pid{process="collector"} 5151)"));
    for (const auto& l : lines_of(before)) {
        CAPTURE(l);
        CHECK(l.find("pid=") == std::string::npos);
        const bool pid_value = l.starts_with("conncheck_process_pid{");
        CHECK((l.find("4242") == std::string::npos || pid_value));
    }

    auto older = report(900, "worker", 1);
    older.info.start_ticks = 10;
    auto newer = report(100, "worker", 2);
    newer.info.start_ticks = 20;
    const std::string two = render({newer, older}, {});
    CHECK(parses(two));
    CHECK(has_line(two, R"(conncheck_open_fds{process="worker"} 1)"));
    CHECK(has_line(two, R"(conncheck_open_fds{process="worker_2"} 2)"));
    CHECK(has_line(two, R"(conncheck_process_pid{process="worker_2"} 100)"));
}

TEST_CASE("sockets held after close and the leak's total are exported") {
    auto r = report(4242, "collector", 112);
    r.held_after_close = 7;
    r.states[conncheck::TcpState::close] = 7;
    const std::string out = render({r}, {});
    CHECK(parses(out));
    CHECK(has_line(out, R"(conncheck_held_after_close_sockets{process="collector"} 7)"));
    CHECK(has_line(out, R"(conncheck_tcp_sockets{process="collector",state="close"} 7)"));
    // 12 CLOSE_WAIT + 7 held after close + 27 stale.
    CHECK(has_line(out, R"(conncheck_leaked_sockets{process="collector"} 46)"));
    CHECK(has_line(out, R"(conncheck_findings{process="collector",kind="held_after_close"} 0)"));
}
