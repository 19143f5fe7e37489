// Churn between watch ticks. A socket keeps its 64-bit cookie from SYN to the end of TIME_WAIT, so
// the cookies of each tick tell which connections opened and closed since the last one. (Who owned
// a TIME_WAIT socket is the scanner's CookieMemory.) Only cookies the kernel still reports are
// kept: memory follows the sockets.
#pragma once

#include "conncheck/scan.hpp"
#include "conncheck/tcp.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

namespace conncheck::watch {

// A remote endpoint as watch groups connections: toward a server, its address and port; for
// connections accepted on one of the process's listening ports, the client's address alone
// (port 0), because every reconnect of that client comes from a new ephemeral port.
struct PeerKey {
    Endpoint remote;
    bool inbound = false;
    friend bool operator==(const PeerKey&, const PeerKey&) = default;
};
struct PeerKeyHash {
    std::size_t operator()(const PeerKey& key) const noexcept;
};
// "10.0.0.5:443", inbound "10.0.0.9 (in)"
[[nodiscard]] std::string peer_label(const PeerKey& key);

struct Churn {
    std::optional<double> opened_per_minute; // nullopt until a second tick
    std::optional<double> closed_per_minute;
    std::int64_t rate_span_ms = 0;  // the span the rates are measured over, at most one minute
    std::uint64_t opened_total = 0; // since the watch started
    std::uint64_t closed_total = 0;
    std::uint64_t short_lived_total = 0; // opened and closed between two ticks
};

struct PeerChurn {
    PeerKey peer;
    double opened_per_minute = 0; // the reconnect rate toward (or from) this peer
    std::uint64_t opened_total = 0;
};

// One process's opens and closes since the last tick, known from connection events
// (ConnectionEvents) rather than from cookies.
struct TickEvents {
    std::vector<PeerKey> opened; // the peer of each connection opened
    std::uint32_t closed = 0;
    std::uint32_t short_lived = 0; // of those closed, opened since the last tick
};

class CookieTracker {
public:
    // A closed socket leaves the process's fd table at once but turns TIME_WAIT only after the
    // peer's FIN (FIN_WAIT2 lasts up to tcp_fin_timeout, 60 s by default); its cookie is kept this
    // long so the TIME_WAIT that follows is still attributed exactly.
    static constexpr std::int64_t default_linger_ms = 120'000;
    explicit CookieTracker(std::int64_t linger_ms = default_linger_ms);

    // One tick: begin_tick, observe every scanned process, end_tick.
    void begin_tick(std::int64_t now_ms);
    // `followed`: cookies of connections whose opens and closes come from add_events instead.
    void observe(const scan::ProcessSnapshot& process,
                 const std::function<bool(std::uint64_t cookie)>& followed = {});
    // This tick's events of an observed process.
    void add_events(pid_t pid, const TickEvents& events);
    void end_tick();
    // The process exited: drop its cookies and figures.
    void forget_process(pid_t pid);

    [[nodiscard]] Churn churn(pid_t pid) const;
    // Peers with connections opened in the last minute, most first.
    [[nodiscard]] std::vector<PeerChurn> peer_churn(pid_t pid) const;
    [[nodiscard]] double peer_opened_per_minute(pid_t pid, const PeerKey& peer) const;
    [[nodiscard]] std::size_t tracked_cookies() const { return sockets_.size(); }
    // The peer key of one of the process's sockets, given its listening ports.
    [[nodiscard]] static PeerKey peer_of(const SocketRecord& socket,
                                         const std::vector<std::uint16_t>& listening_ports);

private:
    using Phase = scan::CookiePhase;
    using Tracked = scan::TrackedCookie;
    struct Event {
        std::int64_t t_ms = 0;
        std::uint32_t opened = 0;
        std::uint32_t closed = 0;
    };
    struct PeerStats {
        std::deque<std::pair<std::int64_t, std::uint32_t>> opens; // (tick time, count)
        std::uint64_t opened_total = 0;
    };
    struct ProcessStats {
        std::int64_t first_tick_ms = 0;
        std::uint32_t ticks = 0;
        Event current;            // this tick's events, appended to `events` in end_tick
        std::deque<Event> events; // the last minute
        Churn totals;
        std::unordered_map<PeerKey, PeerStats, PeerKeyHash> peers;
    };

    void opened(ProcessStats& stats, const PeerKey& peer);

    std::int64_t linger_ms_;
    std::int64_t now_ms_ = 0;
    std::uint64_t tick_ = 0;
    std::unordered_map<std::uint64_t, Tracked> sockets_; // by cookie
    std::unordered_map<pid_t, ProcessStats> processes_;
};

} // namespace conncheck::watch
