// The check's state file: round trip, refusal of anything suspicious without touching it, atomic
// replacement, the lock, and the growth history.
#include "conncheck/error.hpp"
#include "conncheck/statefile.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <functional>
#include <pwd.h>
#include <string>
#include <sys/file.h>
#include <unistd.h>

using namespace conncheck;
using namespace conncheck::statefile;
using testsupport::read_file;
using testsupport::TempDir;
using testsupport::write_file;

namespace {

State sample_state() {
    State s;
    s.selector = "name-collector";
    s.taken_at_ms = 1'790'000'000'123;
    ProcessState p;
    p.pid = 4242;
    p.start_ticks = 987654;
    p.comm = "coll\x1b[31mector\xff";
    p.states[TcpState::established] = 45;
    p.states[TcpState::close_wait] = 12;
    p.states[TcpState::time_wait] = 40;
    p.stale = 27;
    p.fds = 112;
    p.cookies = {1, 18446744073709551615ULL, 4096};
    p.history = {{1'789'999'000'000, 40, 10, 20, 100}, {1'790'000'000'123, 45, 12, 27, 112}};
    s.processes.push_back(p);
    return s;
}

std::string error_message(const std::function<void()>& f, Errc expected) {
    try {
        f();
    } catch (const Error& e) {
        CHECK(e.code() == expected);
        return e.what();
    }
    FAIL("no error");
    return {};
}

} // namespace

TEST_CASE("state round trip") {
    const State in = sample_state();
    const State out = decode(encode(in), "mem");
    CHECK(out.selector == in.selector);
    CHECK(out.taken_at_ms == in.taken_at_ms);
    REQUIRE(out.processes.size() == 1);
    const auto& p = out.processes[0];
    CHECK(p.pid == 4242);
    CHECK(p.start_ticks == 987654);
    CHECK(p.states[TcpState::established] == 45);
    CHECK(p.states[TcpState::close_wait] == 12);
    CHECK(p.states[TcpState::time_wait] == 40);
    CHECK(p.states[TcpState::listen] == 0);
    CHECK(p.stale == 27);
    CHECK(p.fds == 112);
    CHECK(p.cookies == in.processes[0].cookies);
    REQUIRE(p.history.size() == 2);
    CHECK(p.history[1].close_wait == 12);
    CHECK(p.history[0].taken_at_ms == 1'789'999'000'000);
    // The raw comm survives apart from the invalid byte, replaced rather than thrown on.
    CHECK(p.comm.starts_with("coll\x1b[31mector"));
}

TEST_CASE("garbage, truncated and foreign content is bad_file naming the path") {
    const std::string good = encode(sample_state());
    for (const std::string& bad :
         {std::string(""), std::string("garbage\n"), good.substr(0, good.size() / 2),
          std::string("{\"format\":\"other\",\"version\":1}"), std::string("{\"format\":5}"),
          std::string("{\"format\":\"conncheck-state\",\"version\":\"1\"}"),
          std::string("{\"format\":\"conncheck-state\",\"version\":1,\"selector\":7}"),
          std::string("[1,2,3]"),
          std::string("{\"format\":\"conncheck-state\",\"version\":2,\"selector\":\"x\","
                      "\"taken_at_ms\":1,\"processes\":[]}"),
          std::string("{\"format\":\"conncheck-state\",\"version\":1,\"selector\":\"x\","
                      "\"taken_at_ms\":1,\"processes\":[{\"pid\":-4}]}"),
          // Valid JSON the parser still refuses (no double holds it), and times the growth
          // arithmetic would overflow on.
          std::string("{\"format\":\"conncheck-state\",\"version\":1,\"selector\":\"x\","
                      "\"taken_at_ms\":1e400,\"processes\":[]}"),
          std::string("{\"format\":\"conncheck-state\",\"version\":1,\"selector\":\"x\","
                      "\"taken_at_ms\":-9223372036854775808,\"processes\":[]}"),
          std::string("{\"format\":\"conncheck-state\",\"version\":1,\"selector\":\"x\","
                      "\"taken_at_ms\":18446744073709551615,\"processes\":[]}")}) {
        CAPTURE(bad);
        const auto msg = error_message([&] { (void)decode(bad, "/x/state.json"); }, Errc::bad_file);
        CHECK(msg.find("/x/state.json") != std::string::npos);
    }
}

TEST_CASE("load: missing file is a first run; bad files are refused and left untouched") {
    TempDir dir;
    const std::string path = dir.path() + "/s.json";
    CHECK_FALSE(load(path, "name-collector").has_value());

    save(path, sample_state());
    const auto loaded = load(path, "name-collector");
    REQUIRE(loaded.has_value());
    CHECK(loaded->processes.at(0).pid == 4242);
    // Written for another selector: refused.
    const std::string before = read_file(path);
    auto msg = error_message([&] { (void)load(path, "pid-1"); }, Errc::bad_file);
    CHECK(msg.find("name-collector") != std::string::npos);
    CHECK(read_file(path) == before);

    write_file(path, before.substr(0, before.size() - 10));
    msg = error_message([&] { (void)load(path, "name-collector"); }, Errc::bad_file);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find("JSON") != std::string::npos);
    CHECK(read_file(path) == before.substr(0, before.size() - 10));
}

TEST_CASE("load refuses a symlink and a directory") {
    TempDir dir;
    const std::string real = dir.path() + "/real.json";
    const std::string link = dir.path() + "/link.json";
    save(real, sample_state());
    const std::string before = read_file(real);
    std::filesystem::create_symlink(real, link);
    const auto msg = error_message([&] { (void)load(link, "name-collector"); }, Errc::bad_file);
    CHECK(msg.find("symbolic link") != std::string::npos);
    CHECK(read_file(real) == before);
    CHECK(std::filesystem::is_symlink(link));

    std::filesystem::create_directory(dir.path() + "/d.json");
    (void)error_message([&] { (void)load(dir.path() + "/d.json", "x"); }, Errc::bad_file);
}

TEST_CASE("load refuses a file owned by someone else") {
    if (geteuid() != 0) {
        MESSAGE("skipped: needs root to chown the file to nobody");
        return;
    }
    const passwd* nobody = getpwnam("nobody");
    REQUIRE(nobody != nullptr);
    TempDir dir;
    const std::string path = dir.path() + "/s.json";
    save(path, sample_state());
    REQUIRE(chown(path.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
    const std::string before = read_file(path);
    const auto msg = error_message([&] { (void)load(path, "name-collector"); }, Errc::bad_file);
    CHECK(msg.find("owned by uid") != std::string::npos);
    CHECK(read_file(path) == before);
}

TEST_CASE("save replaces the file atomically and leaves no temporary file") {
    TempDir dir;
    const std::string path = dir.path() + "/sub/dir/s.json";
    make_parent_dirs(path);
    CHECK((std::filesystem::status(dir.path() + "/sub/dir").permissions() &
           std::filesystem::perms::all) == std::filesystem::perms::owner_all);
    State s = sample_state();
    save(path, s);
    s.processes[0].fds = 113;
    save(path, s);
    CHECK(load(path, s.selector)->processes.at(0).fds == 113);
    const auto entries = std::distance(std::filesystem::directory_iterator(dir.path() + "/sub/dir"),
                                       std::filesystem::directory_iterator{});
    CHECK(entries == 1);
    CHECK((std::filesystem::status(path).permissions() & std::filesystem::perms::all) ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
}

TEST_CASE("the lock is exclusive and waits a bounded time") {
    TempDir dir;
    const std::string path = dir.path() + "/s.json";
    {
        const auto held = Lock::acquire(path, std::chrono::milliseconds(0));
        const auto start = std::chrono::steady_clock::now();
        // flock locks belong to the open file description: a second open in this process
        // contends like another process would.
        const auto msg = error_message(
            [&] { (void)Lock::acquire(path, std::chrono::milliseconds(200)); }, Errc::timeout);
        CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(200));
        CHECK(msg.find("locked by another conncheck run") != std::string::npos);
        CHECK(msg.find(path) != std::string::npos);
    }
    // Released on destruction.
    const auto again = Lock::acquire(path, std::chrono::milliseconds(0));
    CHECK(again.path() == path + ".lock");
}

TEST_CASE("default paths") {
    CHECK(default_path("pid-42", 0, "/x", "/home/u") == "/var/lib/conncheck/pid-42.json");
    CHECK(default_path("pid-42", 1000, "/x/state", "/home/u") == "/x/state/conncheck/pid-42.json");
    CHECK(default_path("pid-42", 1000, nullptr, "/home/u") ==
          "/home/u/.local/state/conncheck/pid-42.json");
    // A relative XDG_STATE_HOME is invalid by the spec and ignored.
    CHECK(default_path("pid-42", 1000, "rel", "/home/u") ==
          "/home/u/.local/state/conncheck/pid-42.json");
    CHECK(default_path("pid-42", 1000, "", "/home/u") ==
          "/home/u/.local/state/conncheck/pid-42.json");
    CHECK_THROWS_AS((void)default_path("pid-42", 1000, nullptr, nullptr), Error);
    CHECK(default_path("a/b", 0, nullptr, nullptr) == "/var/lib/conncheck/a_b.json");
    // A systemd unit's StateDirectory= wins over root's and a user's default.
    CHECK(default_path("pid-42", 0, nullptr, nullptr, "/var/lib/conncheck/units") ==
          "/var/lib/conncheck/units/pid-42.json");
    CHECK(default_path("pid-42", 61899, "/x", "/home/u", "/var/lib/a:/var/lib/b") ==
          "/var/lib/a/pid-42.json");
    CHECK(default_path("pid-42", 0, nullptr, nullptr, "") == "/var/lib/conncheck/pid-42.json");
    CHECK(default_path("pid-42", 0, nullptr, nullptr, "rel") == "/var/lib/conncheck/pid-42.json");
}

TEST_CASE("growth history: base within the window, else the previous run") {
    constexpr std::int64_t minute = 60'000;
    std::vector<HistoryEntry> history;
    CHECK_FALSE(growth_base(history, 0).has_value());
    // One run a minute for two hours: the base is the oldest sample within the hour.
    for (std::int64_t t = 0; t <= 120; ++t) {
        HistoryEntry s;
        s.taken_at_ms = t * minute;
        s.established = static_cast<std::uint64_t>(t);
        const auto base = growth_base(history, s.taken_at_ms);
        if (t > 0) {
            REQUIRE(base.has_value());
            CHECK(s.taken_at_ms - base->taken_at_ms <= 60 * minute);
            if (t >= 60) CHECK(s.taken_at_ms - base->taken_at_ms == 60 * minute);
        }
        add_sample(history, s);
    }
    CHECK(history.size() == 61);
    // Runs closer than the spacing add nothing.
    add_sample(history, HistoryEntry{120 * minute + 1000, 0, 0, 0, 0});
    CHECK(history.back().taken_at_ms == 120 * minute);
    // The next run 15 hours later compares with the last sample.
    const auto base = growth_base(history, (120 + 15 * 60) * minute);
    REQUIRE(base.has_value());
    CHECK(base->taken_at_ms == 120 * minute);
    add_sample(history, HistoryEntry{(120 + 15 * 60) * minute, 0, 0, 0, 0});
    CHECK(history.size() == 1);
}
