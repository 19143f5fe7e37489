#include "conncheck/tcp.hpp"
#include "conncheck/text.hpp"
#include "human_text.hpp"

#include <array>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

using namespace conncheck;

TEST_CASE("sanitize keeps printable text and UTF-8") {
    CHECK(text::sanitize("collector") == "collector");
    CHECK(text::sanitize("b\xc3\xb6rse") == "b\xc3\xb6rse");
    CHECK(text::sanitize("\xe2\x82\xac 5") == "\xe2\x82\xac 5");
}

TEST_CASE("sanitize escapes control bytes, escape sequences and invalid UTF-8") {
    CHECK(text::sanitize("evil\x1b[2Jname") == "evil\\x1b[2Jname");
    CHECK(text::sanitize(std::string("a\0b", 3)) == "a\\x00b");
    CHECK(text::sanitize("tab\there") == "tab\\x09here");
    CHECK(text::sanitize("\xff\xfe") == "\\xff\\xfe");
    CHECK(text::sanitize("\xc0\xaf") == "\\xc0\\xaf");          // overlong '/'
    CHECK(text::sanitize("\xed\xa0\x80") == "\\xed\\xa0\\x80"); // a surrogate
    CHECK(text::sanitize("\xc2\x9b"
                         "1m") == "\\xc2\\x9b1m");     // C1 CSI
    CHECK(text::sanitize("\xe2\x82") == "\\xe2\\x82"); // cut short
}

TEST_CASE("sanitize escapes bidi controls and invisible code points") {
    CHECK(text::sanitize("evil\xe2\x80\xaetxt.exe") == "evil\\u{202e}txt.exe"); // RLO
    CHECK(text::sanitize("col\xe2\x80\x8blector") == "col\\u{200b}lector");     // ZWSP
    CHECK(text::sanitize("\xef\xbb\xbfname") == "\\u{feff}name");               // BOM
    CHECK(text::sanitize("a\xe2\x81\xa6"
                         "b\xe2\x81\xa9") == "a\\u{2066}b\\u{2069}");          // isolates
    CHECK(text::sanitize("\xe2\x80\x8e\xe2\x80\x8f") == "\\u{200e}\\u{200f}"); // LRM, RLM
    CHECK(text::sanitize("\xd8\x9c") == "\\u{061c}");                          // ALM
    CHECK(text::sanitize("x\xe2\x80\xa8y") == "x\\u{2028}y");                  // LINE SEPARATOR
    CHECK(text::sanitize("\xf3\xa0\x80\x81") == "\\u{e0001}");                 // a tag
    CHECK(text::sanitize("\xc2\xad") == "\\u{00ad}");                          // soft hyphen
    // Visible neighbours stay as they are.
    CHECK(text::sanitize("\xe2\x80\x90\xe2\x80\xa2") ==
          "\xe2\x80\x90\xe2\x80\xa2"); // hyphen, bullet
}

TEST_CASE("sanitize escapes a backslash, so literal escape text is not mistaken for one") {
    CHECK(text::sanitize("\\x1b[2J") == "\\\\x1b[2J");
    CHECK(text::sanitize("\x1b[2J") == "\\x1b[2J");
    CHECK(text::sanitize("\\") == "\\\\");
    CHECK(text::sanitize("a\\u{202e}") == "a\\\\u{202e}");
    CHECK(text::sanitize("\\\\\\", 5) == "\\\\...");
}

TEST_CASE("sanitize cuts to a width with an ellipsis") {
    CHECK(text::sanitize("abcdefghij", 10) == "abcdefghij");
    CHECK(text::sanitize("abcdefghijk", 10) == "abcdefg...");
    CHECK(text::sanitize("\xc3\xb6\xc3\xb6\xc3\xb6\xc3\xb6\xc3\xb6", 4) == "\xc3\xb6...");
    CHECK(text::sanitize("\x1b\x1b\x1b", 6) == "...");
    CHECK(text::sanitize("abcdef", 2) == "");
}

TEST_CASE("durations parse with units and reject garbage") {
    std::uint64_t ms = 0;
    CHECK((text::parse_duration_ms("250ms", ms) && ms == 250));
    CHECK((text::parse_duration_ms("1.5s", ms) && ms == 1500));
    CHECK((text::parse_duration_ms("10m", ms) && ms == 600'000));
    CHECK((text::parse_duration_ms("2h", ms) && ms == 7'200'000));
    CHECK((text::parse_duration_ms("60", ms) && ms == 60'000));
    CHECK_FALSE(text::parse_duration_ms("", ms));
    CHECK_FALSE(text::parse_duration_ms("s", ms));
    CHECK_FALSE(text::parse_duration_ms("-1s", ms));
    CHECK_FALSE(text::parse_duration_ms("1.2.3s", ms));
    CHECK_FALSE(text::parse_duration_ms("5 parsecs", ms));
}

TEST_CASE("human-readable figures") {
    CHECK(cli::human_bytes(512) == "512 B");
    CHECK(cli::human_bytes(1536) == "1.5 KiB");
    CHECK(cli::human_bytes(3 * 1024 * 1024) == "3.0 MiB");
    CHECK(cli::human_duration_ms(850) == "850ms");
    CHECK(cli::human_duration_ms(45'000) == "45s");
    CHECK(cli::human_duration_ms(192'000) == "3m12s");
    CHECK(cli::human_duration_ms((2 * 86400 + 4 * 3600) * 1000ULL) == "2d4h");
    CHECK(text::iso8601_utc(1'761'038'640) == "2025-10-21T09:24:00Z");
}

TEST_CASE("state names round-trip") {
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto s = static_cast<TcpState>(i);
        CHECK(parse_state(state_name(s)) == s);
        CHECK(parse_state(state_label(s)) == s);
    }
    CHECK(parse_state("close-wait") == TcpState::close_wait);
    CHECK_FALSE(parse_state("half_open").has_value());
    CHECK(state_bit(TcpState::established) == 2U);
}

namespace {

Endpoint endpoint(std::uint8_t family, std::array<std::uint8_t, 16> addr, std::uint16_t port) {
    Endpoint e;
    e.family = family;
    e.addr = addr;
    e.port = port;
    return e;
}

} // namespace

TEST_CASE("endpoints print like ss: IPv4, IPv4-mapped, IPv6, every octet and port width") {
    const Endpoint v4 = endpoint(AF_INET, {1, 2, 3, 4}, 9443);
    CHECK(v4.to_string() == "1.2.3.4:9443");
    const Endpoint v6 = endpoint(AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 443);
    CHECK(v6.to_string() == "[::1]:443");
    CHECK(endpoint(AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1}, 80)
              .to_string() == "127.0.0.1:80");
    CHECK(EndpointHash{}(v4) != EndpointHash{}(v6));

    CHECK(endpoint(AF_INET, {0, 0, 0, 0}, 0).to_string() == "0.0.0.0:0");
    CHECK(endpoint(AF_INET, {255, 10, 100, 9}, 65535).to_string() == "255.10.100.9:65535");
    CHECK(endpoint(AF_INET, {127, 0, 0, 1}, 80).address_string() == "127.0.0.1");
    CHECK(endpoint(AF_INET6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 20}, 443)
              .to_string() == "192.168.1.20:443");
    const Endpoint doc =
        endpoint(AF_INET6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 9443);
    CHECK(doc.to_string() == "[2001:db8::1]:9443");
    CHECK(doc.address_string() == "2001:db8::1");
    CHECK(Endpoint{}.to_string() == "?:0");
    std::string appended = "x=";
    endpoint(AF_INET, {10, 1, 2, 3}, 7).append_to(appended);
    CHECK(appended == "x=10.1.2.3:7");
}

TEST_CASE("is_plain: exactly the texts sanitize leaves as they are") {
    std::string every_byte;
    for (int c = 0; c < 256; ++c)
        every_byte += static_cast<char>(c);
    for (std::size_t i = 0; i < every_byte.size(); ++i) {
        const std::string one = "a" + every_byte.substr(i, 1) + "z";
        CAPTURE(i);
        if (text::is_plain(one)) CHECK(text::sanitize(one) == one);
    }
    CHECK(text::is_plain("collector-7 (main)"));
    CHECK(text::is_plain(""));
    CHECK_FALSE(text::is_plain("a\\b"));
    CHECK_FALSE(text::is_plain("b\xc3\xb6rse")); // kept by sanitize, but not plain ASCII
    CHECK_FALSE(text::is_plain("evil\x1b[2J"));
    CHECK_FALSE(text::is_plain("del\x7f"));
}

TEST_CASE("one_line: a message is one line without control bytes, its backslashes kept") {
    CHECK(text::one_line("cannot read pidfile /tmp/no\nsuch: No such file or directory") ==
          "cannot read pidfile /tmp/no\\x0asuch: No such file or directory");
    CHECK(text::one_line("\x1b]0;PWN\a\x1b[2J") == "\\x1b]0;PWN\\x07\\x1b[2J");
    CHECK(text::one_line("\xff\xfe\x80") == "\\xff\\xfe\\x80");
    // A part sanitized before is not escaped twice.
    const std::string part = text::sanitize("\x1b[2J");
    CHECK(text::one_line("no process matches name '" + part + "'") ==
          "no process matches name '\\x1b[2J'");
    CHECK(text::one_line("caf\xc3\xa9") == "caf\xc3\xa9");
}
