// What watch shows after one tick, as plain data: the screen, the log line and the JSON line are
// three renderings of the same Frame, all in the front end. Every string in it is already
// sanitized.
#pragma once

#include "conncheck/analysis.hpp"
#include "conncheck/tcp.hpp"
#include "conncheck/watch/tracker.hpp"
#include "conncheck/watch/trend.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace conncheck::watch {

struct Row {
    std::uint64_t current = 0;
    std::int64_t since_last = 0;          // change since the previous tick
    std::int64_t since_start = 0;         // change since the first tick
    std::optional<double> slope_per_hour; // least squares over the window
    Points spark; // the window reduced to a few points, for a sparkline; empty if not asked for
};

struct StateRow {
    TcpState state = TcpState::unknown;
    Row row;
};

struct PeerFrame {
    PeerKey key;
    std::string label; // "10.0.0.5:443", "10.0.0.9 (in)"
    analysis::StateCounts states;
    std::uint64_t total = 0;
    std::optional<std::uint32_t> idle_min_ms; // since data was last received, live sockets only
    std::optional<std::uint32_t> idle_max_ms;
    std::uint64_t unread_bytes = 0;
    double opened_per_minute = 0; // reconnects toward (or accepts from) this peer
    // Age of the oldest live connection, with connection events only. When one was open before
    // the watch began, its age is not known: the watch's age, a lower bound.
    std::optional<std::int64_t> oldest_age_ms;
    bool oldest_predates_watch = false;
};

struct ProcessFrame {
    pid_t pid = 0;
    std::string comm;    // sanitized
    std::string cmdline; // sanitized, cut
    bool exited = false;
    std::int64_t exited_after_ms = 0; // watch uptime when it was found gone
    std::uint64_t open_fds = 0;
    std::uint64_t fd_limit = 0; // soft limit, 0 unknown
    std::uint64_t kernel_memory_bytes = 0;
    std::vector<StateRow> states; // ESTABLISHED, CLOSE_WAIT, TIME_WAIT and any state seen
    Row fds;
    // CLOSE_WAIT + held after close + stale duplicates (analysis::leaked_sockets): the leak's
    // total, whatever shape it takes; the fd projection follows its growth.
    Row leaked;
    std::uint64_t held_after_close = 0;  // TCP sockets in state CLOSE still held (states' CLOSE)
    std::uint64_t time_wait_exact = 0;   // owner known by the cookie of a socket seen live
    std::uint64_t time_wait_by_peer = 0; // owner guessed from the remote endpoint
    scan::OtherSockets other_sockets;    // socket fds in no TCP state
    std::uint64_t other_netns_sockets = 0;
    Churn churn;
    std::vector<PeerFrame> peers;            // sorted by the frame's peer sort, cut to its limit
    std::size_t peers_total = 0;             // before the cut
    std::vector<analysis::Finding> findings; // most severe first
    // When the open fds reach their limit if the leaked sockets go on growing as they did:
    // only for real growth (see project_to_limit).
    std::optional<Projection> fd_projection;
};

struct Frame {
    std::int64_t unix_seconds = 0;
    std::int64_t uptime_ms = 0; // since the first tick
    std::uint64_t tick = 0;
    std::int64_t interval_ms = 0;
    std::int64_t window_ms = 0;
    std::string source;      // "netlink", "proc_net", "replay"
    bool has_cookies = true; // false: no exact TIME_WAIT, no churn (proc_net has no cookies)
    bool has_tcp_info = true;
    // Connection events (exact churn, TIME_WAIT and ages), or polling alone, and why.
    bool events = false;
    std::string polling_reason; // sanitized; filled in by the front end that tried to start them
    std::vector<std::string> warnings;
    std::vector<ProcessFrame> processes;
    std::vector<StateRow> totals; // summed over the processes still running
    Row fds_total;
    std::uint64_t open_fds_total = 0;
    std::uint64_t kernel_memory_total = 0;
    std::size_t tracked_cookies = 0;
    // The watcher's own cost, filled in by the front end that measures it.
    std::optional<double> tick_ms;
    std::optional<double> cpu_percent;
};

enum class PeerSort { count, close_wait, time_wait, idle, reconnects };
[[nodiscard]] std::string_view peer_sort_name(PeerSort sort);
[[nodiscard]] PeerSort next_peer_sort(PeerSort sort);
void sort_peers(std::vector<PeerFrame>& peers, PeerSort sort);

} // namespace conncheck::watch
