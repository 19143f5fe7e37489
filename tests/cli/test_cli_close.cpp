// `conncheck close` from the command line: bad input gets one line and exit 2, a missing process
// exit 3, and a preview of a process without leaks changes nothing and exits 0.
#include "support.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include <vector>

using namespace testsupport;

namespace {

CommandResult conncheck(std::vector<std::string> args) {
    args.insert(args.begin(), conncheck_bin());
    return run(args, 30s);
}

std::size_t line_count(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

} // namespace

TEST_CASE("close: bad arguments get one line on stderr and exit 2") {
    const std::string self = std::to_string(getpid());
    const std::vector<std::vector<std::string>> bad = {
        {"close", "--close-wait"},                        // no process
        {"close", "--pid", self},                         // no sockets asked for
        {"close", "--pid", self, "--cookie", "38dc4"},    // hex without 0x
        {"close", "--pid", self, "--cookie", "0x1,,0x2"}, // empty item
        {"close", "--pid", self, "--close-wait", "--peer", "example.com:443"},
        {"close", "--pid", self, "--close-wait", "--peer", "10.0.0.1"},
        {"close", "--pid", self, "--close-wait", "--idle", "0"},
        {"close", "--pid", "x1", "--close-wait"},
        {"close", "--pid", self, "--close-wait", "--no-such-flag"},
    };
    for (const auto& args : bad) {
        const auto r = conncheck(args);
        INFO(args.back(), ": ", r.err);
        CHECK(r.exit_code == 2);
        CHECK(line_count(r.err) == 1);
        CHECK(r.out.empty());
    }
}

TEST_CASE("close: a pid that does not exist exits 3") {
    const auto r = conncheck({"close", "--pid", "999999999", "--close-wait"});
    CHECK(r.exit_code == 3);
    CHECK(line_count(r.err) == 1);
    const auto named = conncheck({"close", "--name", "no-such-program-xyz", "--close-wait"});
    CHECK(named.exit_code == 3);
    CHECK(line_count(named.err) == 1);
}

TEST_CASE("close: a process without leaks previews nothing and exits 0") {
    const auto r = conncheck(
        {"close", "--pid", std::to_string(getpid()), "--close-wait", "--stale", "--json"});
    REQUIRE(r.exit_code == 0);
    const auto doc = nlohmann::json::parse(r.out);
    CHECK(doc["mode"] == "preview");
    CHECK(doc["sockets"].empty());
    const auto text =
        conncheck({"close", "--pid", std::to_string(getpid()), "--close-wait", "--stale"});
    CHECK(text.exit_code == 0);
    CHECK(text.out.find("nothing to close") != std::string::npos);
}

TEST_CASE("close --help says what it does and does not do") {
    const auto r = conncheck({"close", "--help"});
    CHECK(r.exit_code == 0);
    for (const char* words : {"ECONNABORTED", "--yes", "CAP_NET_ADMIN", "fd exhaustion",
                              "--close-wait", "--stale", "--cookie", "--peer", "--pid"})
        CHECK_MESSAGE(r.out.find(words) != std::string::npos, words);
}
