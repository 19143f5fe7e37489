// Parsing of the addresses the collector and the simulator are given: a ws:// or wss:// URL and a
// HOST:PORT to listen on. Pure; bad input throws conncheck::Error(Errc::usage).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace conncheck::ws {

struct WsUrl {
    bool secure = false; // wss://
    std::string host;    // without the brackets of an IPv6 literal
    std::string port;    // "80"/"443" when the URL names none
    std::string target;  // path and query, at least "/"
    // What the Host header says: the port is left out when it is the scheme's default.
    [[nodiscard]] std::string host_header() const;
};

[[nodiscard]] WsUrl parse_ws_url(std::string_view url);

struct ListenAddress {
    std::string host; // without brackets
    std::uint16_t port = 0;
};

// "127.0.0.1:9443", "[::1]:0", "localhost:9443".
[[nodiscard]] ListenAddress parse_listen_address(std::string_view text);

// "127.0.0.1:9443", "[::1]:9443": an address and a port the way people type them.
[[nodiscard]] std::string join_host_port(std::string_view host, std::uint16_t port);

} // namespace conncheck::ws
