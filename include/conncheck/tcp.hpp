// Plain data for one TCP socket as the kernel reports it, independent of where it came from
// (a live netlink dump, a recording, or /proc/net/tcp).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace conncheck {

// Values are the kernel's TCP_* numbers (include/net/tcp_states.h), so they index bitmasks.
enum class TcpState : std::uint8_t {
    unknown = 0,
    established = 1,
    syn_sent = 2,
    syn_recv = 3,
    fin_wait1 = 4,
    fin_wait2 = 5,
    time_wait = 6,
    close = 7,
    close_wait = 8,
    last_ack = 9,
    listen = 10,
    closing = 11,
    new_syn_recv = 12,
    bound_inactive = 13,
};
inline constexpr std::size_t tcp_state_count = 14;

// "close_wait" (JSON keys, Prometheus label values).
[[nodiscard]] std::string_view state_name(TcpState s);
// "CLOSE_WAIT" (what ss and the incident report say).
[[nodiscard]] std::string_view state_label(TcpState s);
// Accepts either spelling, case-insensitive, '-' or '_'.
[[nodiscard]] std::optional<TcpState> parse_state(std::string_view text);
[[nodiscard]] constexpr std::uint32_t state_bit(TcpState s) {
    return 1U << static_cast<unsigned>(s);
}
inline constexpr std::uint32_t all_states = (1U << tcp_state_count) - 2; // bit 0 is not a state

struct Endpoint {
    std::uint8_t family = 0; // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> addr{};
    std::uint16_t port = 0; // host byte order

    [[nodiscard]] bool is_unspecified() const;
    // "1.2.3.4:9443", "[::1]:9443"; an IPv4-mapped IPv6 address prints as IPv4.
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] std::string address_string() const;
    // The same texts, appended: trace writes thousands a second.
    void append_to(std::string& out) const;
    void append_address(std::string& out) const;
    friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
};

// Endpoints are stored canonical: an IPv4-mapped IPv6 address (::ffff:a.b.c.d, an AF_INET6
// socket talking IPv4) becomes the AF_INET endpoint it is, so that a peer reached through both
// families is one peer (one row, one key for TIME_WAIT attribution). Every parser calls this.
[[nodiscard]] Endpoint canonical_endpoint(const Endpoint& e);

// "1.2.3.4:443", "[2001:db8::1]:443", "[::ffff:1.2.3.4]:443" (canonical); nullopt for anything
// else: a host name, a missing or zero port, an unbracketed IPv6 address.
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text);

struct EndpointHash {
    std::size_t operator()(const Endpoint& e) const noexcept;
};

// The subset of struct tcp_info we use. All "ms since" values are milliseconds.
struct TcpInfoLite {
    std::uint32_t last_data_sent_ms = 0;
    std::uint32_t last_data_recv_ms = 0;
    std::uint32_t last_ack_recv_ms = 0;
    std::uint32_t rtt_us = 0;
    std::uint32_t retransmits = 0;
    std::uint32_t total_retrans = 0;
    std::uint32_t unacked = 0;
    std::uint64_t bytes_received = 0;
    std::uint64_t bytes_acked = 0;
};

// INET_DIAG_SKMEMINFO, SK_MEMINFO_* order. Slots beyond what the kernel sent stay 0.
struct SkMemInfo {
    std::uint32_t rmem_alloc = 0;
    std::uint32_t rcvbuf = 0;
    std::uint32_t wmem_alloc = 0;
    std::uint32_t sndbuf = 0;
    std::uint32_t fwd_alloc = 0;
    std::uint32_t wmem_queued = 0;
    std::uint32_t optmem = 0;
    std::uint32_t backlog = 0;
    std::uint32_t drops = 0;

    // Buffer memory charged to the socket: rmem_alloc + wmem_queued + fwd_alloc + optmem.
    // It does not include struct sock itself.
    [[nodiscard]] std::uint64_t charged_bytes() const {
        return std::uint64_t{rmem_alloc} + wmem_queued + fwd_alloc + optmem;
    }
};

// Data bytes waiting to be read, from idiag_rqueue (or /proc/net/tcp's rx_queue), which is
// rcv_nxt - copied_seq: once the peer's FIN arrived (CLOSE_WAIT, LAST_ACK, CLOSING) it counts
// the FIN as one byte until the process reads the end of the stream. Every parser calls this.
[[nodiscard]] std::uint32_t unread_data_bytes(TcpState state, std::uint32_t rqueue);

struct SocketRecord {
    TcpState state = TcpState::unknown;
    std::uint8_t timer = 0; // 0 off, 1 retransmit, 2 keepalive, 3 timewait, 4 zero-window probe
    std::uint32_t expires_ms = 0; // time left on `timer`
    std::uint32_t rqueue = 0;     // unread data bytes, FIN excluded (LISTEN: accept backlog)
    std::uint32_t wqueue = 0;     // unacked bytes (LISTEN: max backlog)
    std::uint32_t uid = 0;
    std::uint64_t inode = 0;     // 0 for TIME_WAIT, request and orphaned sockets
    std::uint64_t cookie = 0;    // 0 when the source has none (/proc/net/tcp)
    std::uint32_t interface = 0; // idiag_if: the device the socket is bound to, 0 for none
    Endpoint local;              // canonical_endpoint()
    Endpoint remote;             // canonical_endpoint()
    std::optional<TcpInfoLite> info;
    std::optional<SkMemInfo> mem;
};

} // namespace conncheck
