#include "conncheck/ws/address.hpp"

#include "conncheck/error.hpp"

#include <charconv>
#include <fmt/core.h>

namespace conncheck::ws {

namespace {

bool starts_with_ci(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = text[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != prefix[i]) return false;
    }
    return true;
}

bool parse_port(std::string_view text, std::uint16_t& port) {
    if (text.empty() || text.size() > 5) return false;
    unsigned value = 0;
    const auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (err != std::errc() || end != text.data() + text.size() || value > 65535) return false;
    port = static_cast<std::uint16_t>(value);
    return true;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port". Returns false on malformed brackets.
bool split_host_port(std::string_view authority, std::string_view& host, std::string_view& port) {
    port = {};
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return false;
        host = authority.substr(1, close - 1);
        const auto rest = authority.substr(close + 1);
        if (rest.empty()) return true;
        if (rest.front() != ':') return false;
        port = rest.substr(1);
        return true;
    }
    const auto colon = authority.rfind(':');
    if (colon == std::string_view::npos) {
        host = authority;
        return true;
    }
    // Two colons and no brackets: an IPv6 literal someone forgot to bracket.
    if (authority.find(':') != colon) return false;
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    return true;
}

} // namespace

std::string WsUrl::host_header() const {
    const bool default_port = port == (secure ? "443" : "80");
    const bool v6 = host.find(':') != std::string::npos;
    std::string out = v6 ? "[" + host + "]" : host;
    if (!default_port) out += ":" + port;
    return out;
}

WsUrl parse_ws_url(std::string_view url) {
    WsUrl out;
    std::string_view rest;
    if (starts_with_ci(url, "wss://")) {
        out.secure = true;
        rest = url.substr(6);
    } else if (starts_with_ci(url, "ws://")) {
        rest = url.substr(5);
    } else {
        throw Error(Errc::usage,
                    fmt::format("a WebSocket URL starts with ws:// or wss://, not '{}'", url));
    }
    const auto path_at = rest.find_first_of("/?#");
    const auto authority = rest.substr(0, path_at);
    std::string_view target = path_at == std::string_view::npos ? "/" : rest.substr(path_at);
    if (const auto hash = target.find('#'); hash != std::string_view::npos)
        target = target.substr(0, hash);
    if (authority.find('@') != std::string_view::npos)
        throw Error(Errc::usage, "the URL must not carry user information (user@host)");
    std::string_view host;
    std::string_view port;
    if (!split_host_port(authority, host, port) || host.empty())
        throw Error(Errc::usage, fmt::format("the URL has no valid host: '{}'", url));
    std::uint16_t port_number = 0;
    if (!port.empty() && (!parse_port(port, port_number) || port_number == 0))
        throw Error(Errc::usage, fmt::format("the URL has an invalid port '{}'", port));
    for (const char c : target)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            throw Error(Errc::usage,
                        "the URL's path must not contain spaces or control characters");
    out.host = std::string(host);
    out.port = port.empty() ? (out.secure ? "443" : "80") : std::string(port);
    // "ws://host?x=1" asks for "/?x=1".
    out.target.reserve(target.size() + 1);
    if (target.empty() || target.front() == '?') out.target.push_back('/');
    out.target.append(target.data(), target.size());
    return out;
}

ListenAddress parse_listen_address(std::string_view text) {
    std::string_view host;
    std::string_view port;
    ListenAddress out;
    if (!split_host_port(text, host, port) || host.empty() || port.empty() ||
        !parse_port(port, out.port))
        throw Error(Errc::usage,
                    fmt::format("expected HOST:PORT (127.0.0.1:9443, [::1]:0), not '{}'", text));
    out.host = std::string(host);
    return out;
}

std::string join_host_port(std::string_view host, std::uint16_t port) {
    if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

} // namespace conncheck::ws
