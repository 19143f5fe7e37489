// Parsing of collector URLs, simulator listen addresses and fault lists; the trade message shape.
#include "conncheck/error.hpp"
#include "conncheck/ws/address.hpp"
#include "conncheck/ws/collector.hpp"
#include "conncheck/ws/exchange_sim.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <vector>

using namespace conncheck::ws;

TEST_CASE("ws and wss URLs") {
    const WsUrl a = parse_ws_url("ws://127.0.0.1:9443/ws/btcusdt@trade");
    CHECK_FALSE(a.secure);
    CHECK(a.host == "127.0.0.1");
    CHECK(a.port == "9443");
    CHECK(a.target == "/ws/btcusdt@trade");
    CHECK(a.host_header() == "127.0.0.1:9443");

    const WsUrl b = parse_ws_url("wss://stream.example.com/ws?streams=a/b#frag");
    CHECK(b.secure);
    CHECK(b.host == "stream.example.com");
    CHECK(b.port == "443");
    CHECK(b.target == "/ws?streams=a/b");
    CHECK(b.host_header() == "stream.example.com");

    const WsUrl c = parse_ws_url("WS://[::1]:8080");
    CHECK(c.host == "::1");
    CHECK(c.port == "8080");
    CHECK(c.target == "/");
    CHECK(c.host_header() == "[::1]:8080");

    CHECK(parse_ws_url("ws://h?x=1").target == "/?x=1");
    CHECK(parse_ws_url("ws://h:80/").host_header() == "h");
}

TEST_CASE("bad URLs are usage errors") {
    for (const char* bad : {"http://x/", "x", "ws://", "ws://:80/", "ws://h:0/", "ws://h:99999/",
                            "ws://h:x/", "ws://::1/", "ws://[::1/", "ws://u@h/", "ws://h/a b"}) {
        CAPTURE(bad);
        try {
            (void)parse_ws_url(bad);
            FAIL("accepted");
        } catch (const conncheck::Error& e) {
            CHECK(e.code() == conncheck::Errc::usage);
        }
    }
}

TEST_CASE("listen addresses") {
    const ListenAddress a = parse_listen_address("127.0.0.1:9443");
    CHECK(a.host == "127.0.0.1");
    CHECK(a.port == 9443);
    const ListenAddress b = parse_listen_address("[::1]:0");
    CHECK(b.host == "::1");
    CHECK(b.port == 0);
    for (const char* bad : {"127.0.0.1", ":80", "h:70000", "h:", "::1:80", "[::1]"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS((void)parse_listen_address(bad), conncheck::Error);
    }
    CHECK(join_host_port("::1", 80) == "[::1]:80");
    CHECK(join_host_port("10.0.0.1", 80) == "10.0.0.1:80");
}

TEST_CASE("fault lists") {
    CHECK(parse_faults("silent,fin,close,rst") ==
          std::vector<Fault>{Fault::silent, Fault::fin, Fault::close, Fault::rst});
    CHECK(parse_faults("fin") == std::vector<Fault>{Fault::fin});
    CHECK(parse_faults("rst,rst") == std::vector<Fault>{Fault::rst, Fault::rst});
    for (const char* bad : {"", "fin,", ",fin", "FIN", "fin,boom", "fin close"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS((void)parse_faults(bad), conncheck::Error);
    }
    CHECK(std::string(fault_name(Fault::rst)) == "rst");
    CHECK(std::string(end_reason_name(EndReason::heartbeat_timeout)) == "heartbeat-timeout");
}

TEST_CASE("a trade message is the JSON a market-data collector expects") {
    const auto j = nlohmann::json::parse(trade_json(64123.456, 0.0123, 1700000000123));
    CHECK(j["e"] == "trade");
    CHECK(j["s"] == "BTCUSDT");
    CHECK(j["p"] == "64123.46");
    CHECK(j["q"] == "0.0123");
    CHECK(j["T"] == 1700000000123);
}
