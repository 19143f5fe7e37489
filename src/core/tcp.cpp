#include "conncheck/tcp.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <charconv>
#include <iterator>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>
#include <system_error>

namespace conncheck {

namespace {

struct StateNames {
    std::string_view name;
    std::string_view label;
};

constexpr std::array<StateNames, tcp_state_count> state_names{{
    {"unknown", "UNKNOWN"},
    {"established", "ESTABLISHED"},
    {"syn_sent", "SYN_SENT"},
    {"syn_recv", "SYN_RECV"},
    {"fin_wait1", "FIN_WAIT1"},
    {"fin_wait2", "FIN_WAIT2"},
    {"time_wait", "TIME_WAIT"},
    {"close", "CLOSE"},
    {"close_wait", "CLOSE_WAIT"},
    {"last_ack", "LAST_ACK"},
    {"listen", "LISTEN"},
    {"closing", "CLOSING"},
    {"new_syn_recv", "NEW_SYN_RECV"},
    {"bound_inactive", "BOUND_INACTIVE"},
}};

bool is_v4_mapped(const std::array<std::uint8_t, 16>& a) {
    return std::all_of(a.begin(), a.begin() + 10, [](std::uint8_t b) { return b == 0; }) &&
           a[10] == 0xff && a[11] == 0xff;
}

} // namespace

std::string_view state_name(TcpState s) {
    const auto i = static_cast<std::size_t>(s);
    return i < tcp_state_count ? state_names[i].name : state_names[0].name;
}

std::string_view state_label(TcpState s) {
    const auto i = static_cast<std::size_t>(s);
    return i < tcp_state_count ? state_names[i].label : state_names[0].label;
}

std::optional<TcpState> parse_state(std::string_view text) {
    std::string norm;
    for (char c : text)
        norm += c == '-' ? '_' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (std::size_t i = 1; i < tcp_state_count; ++i)
        if (state_names[i].name == norm) return static_cast<TcpState>(i);
    return std::nullopt;
}

bool Endpoint::is_unspecified() const {
    return port == 0 &&
           std::all_of(addr.begin(), addr.end(), [](std::uint8_t b) { return b == 0; });
}

void Endpoint::append_address(std::string& out) const {
    const bool v4 = family == AF_INET || (family == AF_INET6 && is_v4_mapped(addr));
    if (v4) {
        // inet_ntop formats IPv4 with sprintf.
        const std::uint8_t* octets = addr.data() + (family == AF_INET ? 0 : 12);
        for (int i = 0; i < 4; ++i) {
            if (i != 0) out += '.';
            char digits[4];
            const auto end = std::to_chars(std::begin(digits), std::end(digits), octets[i]).ptr;
            out.append(digits, end);
        }
    } else if (family == AF_INET6) {
        char buf[INET6_ADDRSTRLEN] = {};
        inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
        out += buf;
    } else {
        out += '?';
    }
}

void Endpoint::append_to(std::string& out) const {
    const bool bracket = family == AF_INET6 && !is_v4_mapped(addr);
    if (bracket) out += '[';
    append_address(out);
    if (bracket) out += ']';
    out += ':';
    char digits[6];
    const auto end = std::to_chars(std::begin(digits), std::end(digits), port).ptr;
    out.append(digits, end);
}

std::string Endpoint::address_string() const {
    std::string out;
    append_address(out);
    return out;
}

std::string Endpoint::to_string() const {
    std::string out;
    append_to(out);
    return out;
}

Endpoint canonical_endpoint(const Endpoint& e) {
    if (e.family != AF_INET6 || !is_v4_mapped(e.addr)) return e;
    Endpoint v4;
    v4.family = AF_INET;
    std::copy(e.addr.begin() + 12, e.addr.end(), v4.addr.begin());
    v4.port = e.port;
    return v4;
}

std::optional<Endpoint> parse_endpoint(std::string_view text) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    std::string_view host = text.substr(0, colon);
    const std::string_view port_text = text.substr(colon + 1);
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535)
        return std::nullopt;
    Endpoint e;
    e.port = static_cast<std::uint16_t>(port);
    const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
    const std::string address(bracketed ? host.substr(1, host.size() - 2) : host);
    if (bracketed) {
        if (inet_pton(AF_INET6, address.c_str(), e.addr.data()) != 1) return std::nullopt;
        e.family = AF_INET6;
    } else {
        if (inet_pton(AF_INET, address.c_str(), e.addr.data()) != 1) return std::nullopt;
        e.family = AF_INET;
    }
    return canonical_endpoint(e);
}

std::uint32_t unread_data_bytes(TcpState state, std::uint32_t rqueue) {
    // The FIN is the last sequence number: while anything is unread, so is the FIN.
    const bool fin_received =
        state == TcpState::close_wait || state == TcpState::last_ack || state == TcpState::closing;
    return fin_received && rqueue > 0 ? rqueue - 1 : rqueue;
}

std::size_t EndpointHash::operator()(const Endpoint& e) const noexcept {
    // FNV-1a over the bytes that make the endpoint.
    std::size_t h = 1469598103934665603ULL;
    auto mix = [&h](std::uint8_t b) {
        h ^= b;
        h *= 1099511628211ULL;
    };
    mix(e.family);
    for (auto b : e.addr)
        mix(b);
    mix(static_cast<std::uint8_t>(e.port >> 8));
    mix(static_cast<std::uint8_t>(e.port & 0xff));
    return h;
}

} // namespace conncheck
