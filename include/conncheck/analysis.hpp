// Classification and findings: pure functions over a snapshot. No I/O, no clocks read here.
#pragma once

#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/tcp.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace conncheck::analysis {

struct StateCounts {
    std::array<std::uint64_t, tcp_state_count> n{};
    std::uint64_t& operator[](TcpState s) { return n[static_cast<std::size_t>(s)]; }
    std::uint64_t operator[](TcpState s) const { return n[static_cast<std::size_t>(s)]; }
    [[nodiscard]] std::uint64_t total() const;
};

struct Config {
    std::uint32_t idle_ms = 60'000;      // a connection silent this long is stale
    std::uint32_t churn_per_minute = 10; // TIME_WAIT toward one peer in 60 s that is churn
    std::uint64_t close_wait_critical = 10;
    double fd_warning_ratio = 0.80;
    double fd_critical_ratio = 0.95;
    // How the front end lets people change idle_ms ("--idle"), named in advice; empty: none.
    std::string idle_setting;
};

enum class Severity { info, warning, critical };
// held_after_close: TCP sockets in state CLOSE (reset, timed out, never connected) that the
// process still holds; a leak of the same kind as close_wait (scan::HeldAfterClose).
enum class FindingKind {
    close_wait,
    stale_duplicate,
    reconnect_churn,
    fd_pressure,
    held_after_close
};
[[nodiscard]] std::string_view severity_name(Severity s);
[[nodiscard]] std::string_view kind_name(FindingKind k);

struct PeerEvidence {
    Endpoint remote;
    std::uint64_t count = 0;
    std::optional<std::uint32_t> idle_min_ms; // tcpi_last_data_recv range, when known
    std::optional<std::uint32_t> idle_max_ms;
    std::uint64_t unread_bytes = 0;
};

struct Finding {
    FindingKind kind{};
    Severity severity = Severity::warning;
    std::uint64_t count = 0; // sockets (or fds) the finding is about
    std::string summary;     // one line, no data from other processes in it
    std::string advice;      // one line
    std::vector<PeerEvidence> peers;
    // Kind-specific numbers, snake_case names: "unread_bytes", "idle_max_seconds",
    // "closes_last_minute", "open_fds", "fd_limit", ...
    std::vector<std::pair<std::string, double>> figures;
};

struct PeerRow {
    Endpoint remote;
    StateCounts states; // time_wait counts the TIME_WAIT attributed to this peer
    std::optional<std::uint32_t> idle_min_ms;
    std::optional<std::uint32_t> idle_max_ms;
    std::uint64_t unread_bytes = 0;
};

struct ProcessReport {
    proc::ProcessInfo info;
    StateCounts states; // TIME_WAIT includes exact and by-peer attribution
    std::uint64_t kernel_memory_bytes = 0;
    std::uint64_t time_wait_exact = 0;
    std::uint64_t time_wait_by_peer = 0;
    std::uint64_t stale = 0; // stale duplicate connections
    // TCP sockets in state CLOSE the process holds (states[TcpState::close], which counts them):
    // those the kernel's tables no longer list (scan::HeldAfterClose) and those still bound.
    std::uint64_t held_after_close = 0;
    scan::OtherSockets other_sockets;      // socket fds in no dump and in no TCP state
    std::uint64_t other_netns_sockets = 0; // of `states`, found in another network namespace
    std::vector<PeerRow> peers;
    std::vector<Finding> findings; // most severe first
    bool exited = false;
};

struct HostReport {
    bool host_wide = false;
    std::vector<ProcessReport>
        processes; // host-wide: ranked, processes without TCP sockets dropped
    scan::Unattributed unattributed;
    std::vector<std::string> warnings;
    std::string source;
    bool has_tcp_info = true;
    std::uint64_t sockets_seen = 0;
    std::uint64_t unreadable_processes = 0;
    std::uint64_t vanished_processes = 0;
    std::vector<scan::UnreadableProcess> unreadable; // chosen but not read: a partial result
    std::chrono::system_clock::time_point taken_at{};
};

// An ESTABLISHED connection that received nothing for over the idle threshold while another
// connection to the same peer received data within it: the reconnect that left the old one open.
struct StaleConnection {
    const SocketRecord* socket = nullptr;
    const SocketRecord* live = nullptr; // the sibling that received data most recently
};
// Every stale connection among `sockets` (one process's), grouped by peer.
[[nodiscard]] std::vector<StaleConnection>
stale_duplicates(const std::vector<SocketRecord>& sockets, std::uint32_t idle_ms);

// The individual detectors, each testable on hand-built records.
[[nodiscard]] std::optional<Finding> find_close_wait(const std::vector<SocketRecord>& sockets,
                                                     const Config& config);
// Finding::count is the number of stale connections.
[[nodiscard]] std::optional<Finding> find_stale_duplicates(const std::vector<SocketRecord>& sockets,
                                                           const Config& config);
[[nodiscard]] std::optional<Finding>
find_reconnect_churn(const std::vector<SocketRecord>& time_wait, const Config& config);
[[nodiscard]] std::optional<Finding> find_fd_pressure(const proc::ProcessInfo& info,
                                                      const Config& config);
// `sockets`: the process's records (those in state CLOSE are still bound); `held`: the closed
// sockets no table lists.
[[nodiscard]] std::optional<Finding>
find_held_after_close(const std::vector<SocketRecord>& sockets,
                      const std::vector<scan::HeldAfterClose>& held, const Config& config);

// The sockets a process leaked, the figure growth and projections follow: CLOSE_WAIT, held
// after close, and stale duplicate (zombie) connections.
[[nodiscard]] std::uint64_t leaked_sockets(const ProcessReport& report);

[[nodiscard]] ProcessReport analyse_process(const scan::ProcessSnapshot& snapshot,
                                            const Config& config);
[[nodiscard]] HostReport analyse(const scan::Snapshot& snapshot, const Config& config,
                                 bool host_wide);

} // namespace conncheck::analysis
