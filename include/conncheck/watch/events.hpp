// Watch fed by the kernel's connection events (the probe of `conncheck trace`): every connection
// the watched processes open from the start is seen opening and ending, so its open, its close
// and its TIME_WAIT count exactly, even when it lives less than a tick, and its age is known.
// Connections from before the watch are still followed by their cookies (CookieTracker).
// Pure logic: the caller drains the probe and passes each event with its time on watch's clock.
#pragma once

#include "conncheck/scan.hpp"
#include "conncheck/trace/event.hpp"
#include "conncheck/watch/tracker.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <sys/types.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace conncheck::watch {

struct FollowedConnection {
    pid_t pid = 0;
    std::uint64_t cookie = 0; // 0 until an event or a scan tells it
    Endpoint local;           // canonical_endpoint()
    Endpoint remote;
    PeerKey peer;
    std::int64_t opened_ms = 0;
    std::optional<std::int64_t> ended_ms;
    bool time_wait = false; // handed to a TIME_WAIT socket (same cookie)
    std::uint64_t batch = 0;
};

class ConnectionEvents {
public:
    // An ended connection is remembered this long, so the TIME_WAIT socket it left (60 s) and a
    // scan that still saw it are matched to it.
    static constexpr std::int64_t linger_ms = 120'000;

    // Events in the order the kernel wrote them; `t_ms` is the event's time on watch's clock.
    void add(const trace::Event& event, std::int64_t t_ms);
    // Opens and closes per process since the last call.
    [[nodiscard]] std::unordered_map<pid_t, TickEvents> take_tick();
    // Events were lost (ring buffer full) or connections not followed (too many at once): from
    // now on a TIME_WAIT nobody saw open may still be the process's.
    void set_incomplete() { complete_ = false; }

    // The followed connection behind a scanned socket: by cookie, else by its endpoints (an
    // accepted socket has no cookie until something asks the kernel for it, and a TIME_WAIT
    // socket may get a cookie of its own). A match by endpoints learns the cookie.
    const FollowedConnection* identify(pid_t pid, const SocketRecord& socket);
    [[nodiscard]] const FollowedConnection* find(std::uint64_t cookie) const;
    [[nodiscard]] bool follows(std::uint64_t cookie) const { return find(cookie) != nullptr; }

    // The process's snapshot with TIME_WAIT corrected, nullopt when it needs none: a by-peer
    // TIME_WAIT of a connection seen opening is the process's (moved to `sockets`, exact); one
    // that nobody saw opening and that closed after `since_ms` belongs to another process
    // (dropped), as long as no event was lost. Learns the cookies of the process's sockets.
    [[nodiscard]] std::optional<scan::ProcessSnapshot>
    attribute(const scan::ProcessSnapshot& process, std::int64_t now_ms, std::int64_t since_ms);

    void forget_process(pid_t pid);
    // Drops connections ended more than linger_ms ago.
    void prune(std::int64_t now_ms);
    [[nodiscard]] std::size_t size() const { return connections_.size(); }

private:
    void learn_cookie(std::uint64_t id, FollowedConnection& c, std::uint64_t cookie);
    void ended(FollowedConnection& c, std::int64_t t_ms);

    std::map<std::uint64_t, FollowedConnection> connections_; // by the probe's connection number
    std::unordered_map<std::uint64_t, std::uint64_t> by_cookie_;
    std::map<std::pair<Endpoint, Endpoint>, std::uint64_t> by_endpoints_; // (local, remote)
    std::unordered_map<pid_t, TickEvents> tick_;
    std::uint64_t batch_ = 0;
    bool complete_ = true;
};

} // namespace conncheck::watch
