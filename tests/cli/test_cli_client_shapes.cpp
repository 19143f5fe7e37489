// Leaks as real clients make them, through the built binary: a keep-alive client whose server
// forgot its connections (sockets TCP closed, still held), and two clients of one server whose
// TIME_WAIT must not be counted for both.
#include "check_support.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace testsupport;
using nlohmann::json;

namespace {

CommandResult conncheck(std::vector<std::string> args) {
    args.insert(args.begin(), conncheck_bin());
    return run(args);
}

json process_of(const json& report, pid_t pid) {
    for (const auto& p : report["processes"])
        if (p["pid"] == pid) return p;
    return json();
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

} // namespace

TEST_CASE("a keep-alive client whose server forgot its connections: held after close everywhere") {
    // 8 connections: the server closes 6 (CLOSE_WAIT at the client, which never closes them),
    // then forgets 4 of those and answers with a reset. The client holds 2 ESTABLISHED,
    // 2 CLOSE_WAIT and 4 sockets TCP has closed.
    Leaky client(8);
    client.close_peer(0, 6);
    client.reset_peer(0, 4);
    const std::string pid = std::to_string(client.pid());

    json audit;
    REQUIRE(wait_until(
        [&] {
            const auto r = conncheck({"--pid", pid, "--json"});
            if (r.exit_code != 0) return false;
            audit = process_of(json::parse(r.out), client.pid());
            return audit["held_after_close"] == 4;
        },
        20s));
    INFO(audit.dump(2));
    CHECK(audit["states"]["close"] == 4);
    CHECK(audit["states"]["close_wait"] == 2);
    CHECK(audit["states"]["established"] == 2);
    CHECK(audit["other_sockets"]["tcp"] == 0);
    CHECK(audit["leaked_sockets"] == 6);
    const auto& findings = audit["findings"];
    const auto held = std::find_if(findings.begin(), findings.end(),
                                   [](const json& f) { return f["kind"] == "held_after_close"; });
    REQUIRE(held != findings.end());
    CHECK((*held)["evidence"]["count"] == 4);

    const auto text = conncheck({"--pid", pid, "--no-color"});
    INFO(text.out);
    CHECK(text.out.find("held_after_close") != std::string::npos);
    CHECK(text.out.find("4 sockets TCP has finished with") != std::string::npos);
    CHECK(text.out.find("(held after TCP finished") != std::string::npos);

    TempDir dir;
    const auto warn = check({"--pid", pid, "--state-file", dir.path() + "/s.json", "-w", "5"});
    INFO(warn.out << warn.err);
    CHECK(warn.exit_code == 1);
    CHECK(warn.out.find("4 held after close (warn 0)") != std::string::npos);
    CHECK(warn.out.find("held_after_close=4;0;10;0;") != std::string::npos);
    CHECK(warn.out.find("leaked=6;;;0;") != std::string::npos);
    const auto crit = check(
        {"--pid", pid, "--state-file", dir.path() + "/s.json", "-w", "5", "--held-critical", "3"});
    CHECK(crit.exit_code == 2);
    CHECK(crit.out.find("4 held after close (crit 3)") != std::string::npos);
    const auto off = check({"--pid", pid, "--state-file", dir.path() + "/s.json", "-w", "5",
                            "--held-warning", "", "--held-critical", ""});
    CHECK(off.exit_code == 0);

    const auto exported = conncheck({"export", "--pid", pid});
    INFO(exported.out);
    CHECK(exported.exit_code == 0);
    CHECK(has_line(exported.out, "conncheck_held_after_close_sockets{process=\"cli_tests\"} 4"));
    CHECK(has_line(exported.out, "conncheck_leaked_sockets{process=\"cli_tests\"} 6"));
    CHECK(has_line(exported.out, "conncheck_tcp_sockets{process=\"cli_tests\",state=\"close\"} 4"));
    CHECK(has_line(exported.out,
                   "conncheck_findings{process=\"cli_tests\",kind=\"held_after_close\"} 1"));

    const auto watched =
        conncheck({"watch", "--pid", pid, "--json", "--count", "2", "--interval", "100ms"});
    INFO(watched.out << watched.err);
    REQUIRE(watched.exit_code == 0);
    const std::string last_line =
        watched.out.substr(watched.out.rfind('\n', watched.out.size() - 2) + 1);
    const auto last = json::parse(last_line);
    CHECK(last["tick"] == 2);
    const auto& p = last["processes"][0];
    CHECK(p["held_after_close"] == 4);
    CHECK(p["leaked"]["count"] == 6);
    CHECK(p["churn"]["closed_total"] == 0);
}

TEST_CASE("two clients of one server: a TIME_WAIT is counted once, as ambiguous, for neither") {
    // Both clients keep one connection to the server; each also closes connections of its own
    // (the leaky one 3, the fixed one 12), which end in TIME_WAIT on the client side. A host-wide
    // audit knows no cookies: whose each TIME_WAIT is cannot be told by the peer.
    const Listener server = listen_loopback(AF_INET);
    const auto client_body = [server](int churn) {
        return [server, churn] {
            ::close(server.fd);
            (void)connect_to(server);
            connect_then_close(server, churn);
        };
    };
    // Both forked before we accept anything: neither inherits the other's server ends.
    Child leaky(client_body(3));
    Child fixed(client_body(12));
    // The clients closed first: our ends see their FIN, we close, theirs go to TIME_WAIT.
    const std::vector<int> kept = close_the_closed(accept_all(server, 17), 15);
    REQUIRE(kept.size() == 2);
    REQUIRE(wait_until([&] { return kernel_time_wait_toward(server) >= 14; }, 20s));
    const std::size_t time_wait = kernel_time_wait_toward(server);

    const auto r = conncheck({"--json"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const json report = json::parse(r.out);
    const json a = process_of(report, leaky.pid());
    const json b = process_of(report, fixed.pid());
    REQUIRE(a.is_object());
    REQUIRE(b.is_object());
    INFO(a.dump(2) << b.dump(2));
    CHECK(a["time_wait_attribution"]["by_peer"] == 0);
    CHECK(b["time_wait_attribution"]["by_peer"] == 0);
    CHECK(report["unattributed"]["time_wait_ambiguous"].get<std::size_t>() >= time_wait);
    for (const auto& p : {a, b})
        for (const auto& f : p["findings"])
            CHECK(f["kind"] != "reconnect_churn");
    const auto text = conncheck({"--no-color"});
    CHECK(text.out.find("ambiguous   TIME_WAIT toward a peer several listed processes talk to") !=
          std::string::npos);

    for (int fd : kept)
        ::close(fd);
    ::close(server.fd);
}
