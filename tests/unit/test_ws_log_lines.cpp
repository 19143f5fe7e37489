// The collector's and the simulator's lines, printed and read back by the same definitions.
#include "conncheck/ws/log_lines.hpp"

#include <doctest/doctest.h>

using namespace conncheck::ws;

TEST_CASE("collector lines: each event printed, the ones prove counts read back") {
    CollectorEvent e;
    e.at = std::chrono::system_clock::time_point(std::chrono::seconds(1'792'574'640));
    e.kind = CollectorEvent::Kind::reconnect;
    e.n = 7;
    e.delay_ms = 20;
    e.open = 3;
    const std::string reconnect = format_event(e);
    CHECK(reconnect == "2026-10-21T09:24:00Z reconnect n=7 delay_ms=20 open=3");
    CHECK(parse_collector_line(reconnect).kind == CollectorLine::Kind::reconnect);

    e.kind = CollectorEvent::Kind::connect;
    e.peer = "127.0.0.1:9443\x1b[2J";
    const std::string connect = format_event(e);
    CHECK(connect.find('\x1b') == std::string::npos); // from the kernel, sanitized all the same
    CHECK(parse_collector_line(connect).kind == CollectorLine::Kind::other);

    e.kind = CollectorEvent::Kind::disconnect;
    e.reason = EndReason::eof;
    e.detail = "peer said reconnect n=1"; // text from the peer never counts as a reconnect
    const std::string disconnect = format_event(e);
    CHECK(disconnect.starts_with("2026-10-21T09:24:00Z disconnect n=7 reason=eof detail="));
    CHECK(parse_collector_line(disconnect).kind == CollectorLine::Kind::other);

    const std::string totals = format_totals({123, 45, 2});
    CHECK(totals == "totals messages=123 reconnects=45 open_connections=2");
    const CollectorLine t = parse_collector_line(totals);
    CHECK(t.kind == CollectorLine::Kind::totals);
    CHECK(t.messages == 123U);
    CHECK(t.reconnects == 45U);
    CHECK_FALSE(parse_collector_line("totals messages=x").messages);
}

TEST_CASE("the simulator's listening line gives its port back") {
    CHECK(parse_listening_port(format_listening("127.0.0.1:40123")) == 40123);
    CHECK(parse_listening_port(format_listening("[::1]:9443")) == 9443);
    CHECK_FALSE(parse_listening_port(format_listening("127.0.0.1:0")));
    CHECK_FALSE(parse_listening_port(format_listening("127.0.0.1:70000")));
    CHECK_FALSE(parse_listening_port("exchange-sim: served 3 connections"));
    CHECK_FALSE(parse_listening_port(""));
}
