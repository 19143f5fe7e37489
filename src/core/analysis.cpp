#include "conncheck/analysis.hpp"

#include <algorithm>
#include <fmt/core.h>
#include <map>
#include <numeric>
#include <unordered_map>

namespace conncheck::analysis {

namespace {

// Linux keeps a socket in TIME_WAIT for a fixed TCP_TIMEWAIT_LEN of 60 s; idiag_expires is the
// time left, so the socket closed (60 s - expires) ago.
constexpr std::uint32_t time_wait_len_ms = 60'000;

void widen(std::optional<std::uint32_t>& lo, std::optional<std::uint32_t>& hi, std::uint32_t v) {
    lo = lo ? std::min(*lo, v) : v;
    hi = hi ? std::max(*hi, v) : v;
}

double seconds(std::uint32_t ms) {
    return static_cast<double>(ms) / 1000.0;
}

// Groups sockets by remote endpoint into PeerEvidence, biggest group first.
std::vector<PeerEvidence> by_peer(const std::vector<const SocketRecord*>& sockets) {
    std::map<Endpoint, PeerEvidence> groups;
    for (const SocketRecord* s : sockets) {
        auto& g = groups[s->remote];
        g.remote = s->remote;
        ++g.count;
        g.unread_bytes += s->rqueue;
        if (s->info) widen(g.idle_min_ms, g.idle_max_ms, s->info->last_data_recv_ms);
    }
    std::vector<PeerEvidence> out;
    for (auto& [_, g] : groups)
        out.push_back(std::move(g));
    std::stable_sort(out.begin(), out.end(), [](const PeerEvidence& a, const PeerEvidence& b) {
        return a.count > b.count;
    });
    return out;
}

std::string plural(std::uint64_t n, std::string_view one, std::string_view many) {
    return fmt::format("{} {}", n, n == 1 ? one : many);
}

} // namespace

std::uint64_t StateCounts::total() const {
    return std::accumulate(n.begin(), n.end(), std::uint64_t{0});
}

std::string_view severity_name(Severity s) {
    switch (s) {
    case Severity::info:
        return "info";
    case Severity::warning:
        return "warning";
    case Severity::critical:
        return "critical";
    }
    return "unknown";
}

std::string_view kind_name(FindingKind k) {
    switch (k) {
    case FindingKind::close_wait:
        return "close_wait";
    case FindingKind::stale_duplicate:
        return "stale_duplicate";
    case FindingKind::reconnect_churn:
        return "reconnect_churn";
    case FindingKind::fd_pressure:
        return "fd_pressure";
    case FindingKind::held_after_close:
        return "held_after_close";
    }
    return "unknown";
}

std::optional<Finding> find_close_wait(const std::vector<SocketRecord>& sockets,
                                       const Config& config) {
    std::vector<const SocketRecord*> waiting;
    for (const auto& s : sockets)
        if (s.state == TcpState::close_wait) waiting.push_back(&s);
    if (waiting.empty()) return std::nullopt;

    Finding f;
    f.kind = FindingKind::close_wait;
    f.count = waiting.size();
    f.severity = f.count >= config.close_wait_critical ? Severity::critical : Severity::warning;
    f.peers = by_peer(waiting);
    std::uint64_t unread = 0;
    std::uint64_t with_unread = 0;
    std::optional<std::uint32_t> idle_min;
    std::optional<std::uint32_t> idle_max;
    for (const SocketRecord* s : waiting) {
        unread += s->rqueue;
        with_unread += s->rqueue > 0 ? 1 : 0;
        if (s->info) widen(idle_min, idle_max, s->info->last_data_recv_ms);
    }
    f.summary =
        fmt::format("{} in CLOSE_WAIT: the peer closed and this process never called close()",
                    plural(f.count, "socket", "sockets"));
    if (idle_max)
        f.summary +=
            fmt::format(", idle {:.0f}s to {:.0f}s", seconds(*idle_min), seconds(*idle_max));
    if (with_unread > 0) f.summary += fmt::format(", {} with unread data", with_unread);
    f.advice =
        "Close the socket when a read returns EOF or the stream fails; every CLOSE_WAIT is a "
        "leaked file descriptor.";
    f.figures.emplace_back("unread_bytes", static_cast<double>(unread));
    f.figures.emplace_back("sockets_with_unread_data", static_cast<double>(with_unread));
    if (idle_max) {
        f.figures.emplace_back("idle_min_seconds", seconds(*idle_min));
        f.figures.emplace_back("idle_max_seconds", seconds(*idle_max));
    }
    return f;
}

std::vector<StaleConnection> stale_duplicates(const std::vector<SocketRecord>& sockets,
                                              std::uint32_t idle_ms) {
    std::map<Endpoint, std::vector<const SocketRecord*>> by_remote;
    for (const auto& s : sockets)
        if (s.state == TcpState::established && s.info) by_remote[s.remote].push_back(&s);

    std::vector<StaleConnection> stale;
    for (const auto& [remote, group] : by_remote) {
        if (group.size() < 2) continue;
        const SocketRecord* live = nullptr;
        for (const SocketRecord* s : group)
            if (s->info->last_data_recv_ms <= idle_ms &&
                (live == nullptr || s->info->last_data_recv_ms < live->info->last_data_recv_ms))
                live = s;
        if (live == nullptr) continue;
        for (const SocketRecord* s : group)
            if (s->info->last_data_recv_ms > idle_ms) stale.push_back({s, live});
    }
    return stale;
}

std::optional<Finding> find_stale_duplicates(const std::vector<SocketRecord>& sockets,
                                             const Config& config) {
    std::vector<const SocketRecord*> stale;
    std::vector<const SocketRecord*> live_peers;
    for (const StaleConnection& c : stale_duplicates(sockets, config.idle_ms)) {
        stale.push_back(c.socket);
        if (std::find(live_peers.begin(), live_peers.end(), c.live) == live_peers.end())
            live_peers.push_back(c.live);
    }
    const std::uint64_t peers_live = live_peers.size();
    if (stale.empty()) return std::nullopt;

    Finding f;
    f.kind = FindingKind::stale_duplicate;
    f.count = stale.size();
    f.severity = Severity::warning;
    f.peers = by_peer(stale);
    const PeerEvidence& top = f.peers.front();
    f.summary = fmt::format(
        "{} ESTABLISHED received nothing for over {}s while a newer connection to the same peer is "
        "live (top: {} to {})",
        plural(f.count, "connection", "connections"), config.idle_ms / 1000, top.count,
        top.remote.to_string());
    f.advice =
        fmt::format("A reconnect left the old connection open: close it before "
                    "reconnecting (if these are an idle connection pool, raise {}).",
                    config.idle_setting.empty() ? "the idle threshold" : config.idle_setting);
    f.figures.emplace_back("peers", static_cast<double>(peers_live));
    f.figures.emplace_back("idle_threshold_seconds", seconds(config.idle_ms));
    return f;
}

std::optional<Finding> find_reconnect_churn(const std::vector<SocketRecord>& time_wait,
                                            const Config& config) {
    std::vector<const SocketRecord*> closed;
    for (const auto& s : time_wait)
        if (s.state == TcpState::time_wait) closed.push_back(&s);
    std::vector<PeerEvidence> peers = by_peer(closed);
    std::erase_if(peers, [&](const PeerEvidence& p) { return p.count < config.churn_per_minute; });
    if (peers.empty()) return std::nullopt;

    Finding f;
    f.kind = FindingKind::reconnect_churn;
    f.severity = Severity::warning;
    std::uint32_t newest_ms = time_wait_len_ms;
    std::uint32_t oldest_ms = 0;
    for (const SocketRecord* s : closed) {
        const std::uint32_t ago = time_wait_len_ms - std::min(s->expires_ms, time_wait_len_ms);
        newest_ms = std::min(newest_ms, ago);
        oldest_ms = std::max(oldest_ms, ago);
    }
    for (auto& p : peers) {
        f.count += p.count;
        p.idle_min_ms.reset(); // TIME_WAIT sockets carry no tcp_info
        p.idle_max_ms.reset();
    }
    f.peers = std::move(peers);
    const PeerEvidence& top = f.peers.front();
    f.summary = fmt::format("{} to {} closed in the last 60 s (TIME_WAIT: {:.0f}s to {:.0f}s ago)",
                            plural(top.count, "connection", "connections"), top.remote.to_string(),
                            seconds(newest_ms), seconds(oldest_ms));
    if (f.peers.size() > 1) f.summary += fmt::format(", and {} more peers", f.peers.size() - 1);
    f.advice = "The process reconnects every few seconds: find why the streams die, and back off "
               "with jitter between attempts.";
    f.figures.emplace_back("closes_last_minute", static_cast<double>(f.count));
    f.figures.emplace_back("closed_newest_seconds_ago", seconds(newest_ms));
    f.figures.emplace_back("closed_oldest_seconds_ago", seconds(oldest_ms));
    return f;
}

std::optional<Finding> find_fd_pressure(const proc::ProcessInfo& info, const Config& config) {
    const std::uint64_t limit = info.fd_limit.soft;
    if (limit == 0) return std::nullopt;
    const double ratio = static_cast<double>(info.open_fds) / static_cast<double>(limit);
    if (ratio < config.fd_warning_ratio) return std::nullopt;
    Finding f;
    f.kind = FindingKind::fd_pressure;
    f.severity = ratio >= config.fd_critical_ratio ? Severity::critical : Severity::warning;
    f.count = info.open_fds;
    f.summary = fmt::format("{} of {} file descriptors open ({:.0f}% of the soft limit)",
                            info.open_fds, limit, ratio * 100.0);
    f.advice = "At the limit every accept(), connect() and open() fails with EMFILE: find the leak "
               "before raising the limit.";
    f.figures.emplace_back("open_fds", static_cast<double>(info.open_fds));
    f.figures.emplace_back("fd_limit", static_cast<double>(limit));
    f.figures.emplace_back("ratio", ratio);
    return f;
}

std::optional<Finding> find_held_after_close(const std::vector<SocketRecord>& sockets,
                                             const std::vector<scan::HeldAfterClose>& held,
                                             const Config& config) {
    std::vector<const SocketRecord*> bound;
    for (const auto& s : sockets)
        if (s.state == TcpState::close) bound.push_back(&s);
    if (bound.empty() && held.empty()) return std::nullopt;

    Finding f;
    f.kind = FindingKind::held_after_close;
    f.count = bound.size() + held.size();
    f.severity = f.count >= config.close_wait_critical ? Severity::critical : Severity::warning;
    // Peers where known: a bound record still has its remote (unspecified if it never
    // connected); a socket gone from the tables has the one an earlier scan saw.
    std::vector<SocketRecord> known;
    std::uint64_t were_close_wait = 0;
    std::uint64_t closed_for_max_ms = 0;
    for (const SocketRecord* s : bound)
        if (!s->remote.is_unspecified()) known.push_back(*s);
    for (const auto& h : held) {
        if (h.last_state == TcpState::close_wait) ++were_close_wait;
        closed_for_max_ms = std::max(closed_for_max_ms, h.closed_for_ms);
        if (!h.remote) continue;
        SocketRecord r;
        r.remote = *h.remote;
        known.push_back(r);
    }
    std::vector<const SocketRecord*> with_peer;
    for (const auto& r : known)
        with_peer.push_back(&r);
    f.peers = by_peer(with_peer);
    for (auto& p : f.peers) {
        p.idle_min_ms.reset();
        p.idle_max_ms.reset();
        p.unread_bytes = 0;
    }
    f.summary = fmt::format("{} TCP has finished with (state CLOSE: reset by the peer, timed "
                            "out or never connected) still held by this process",
                            plural(f.count, "socket", "sockets"));
    if (were_close_wait > 0)
        f.summary += fmt::format(", {} of them seen in CLOSE_WAIT before", were_close_wait);
    if (closed_for_max_ms > 0)
        f.summary += fmt::format(", closed for {:.0f}s at least",
                                 static_cast<double>(closed_for_max_ms) / 1000.0);
    f.advice = "Close the socket when a read or write fails (ECONNRESET, ETIMEDOUT, EPIPE): "
               "TCP is done with it, and its file descriptor is leaked like a CLOSE_WAIT.";
    f.figures.emplace_back("peers_known", static_cast<double>(known.size()));
    f.figures.emplace_back("still_bound", static_cast<double>(bound.size()));
    f.figures.emplace_back("were_close_wait", static_cast<double>(were_close_wait));
    if (closed_for_max_ms > 0)
        f.figures.emplace_back("closed_for_max_seconds",
                               static_cast<double>(closed_for_max_ms) / 1000.0);
    return f;
}

std::uint64_t leaked_sockets(const ProcessReport& report) {
    return report.states[TcpState::close_wait] + report.states[TcpState::close] + report.stale;
}

ProcessReport analyse_process(const scan::ProcessSnapshot& snapshot, const Config& config) {
    ProcessReport r;
    r.info = snapshot.info;
    r.exited = snapshot.exited;
    r.time_wait_exact = snapshot.time_wait_exact;
    r.time_wait_by_peer = snapshot.time_wait_by_peer.size();
    r.other_sockets = snapshot.other_sockets;
    r.other_netns_sockets = snapshot.other_netns_sockets;

    std::unordered_map<Endpoint, PeerRow, EndpointHash> peers;
    auto peer_row = [&peers](const Endpoint& remote) -> PeerRow& {
        auto& row = peers[remote];
        row.remote = remote;
        return row;
    };
    for (const auto& s : snapshot.sockets) {
        ++r.states[s.state];
        if (s.mem) r.kernel_memory_bytes += s.mem->charged_bytes();
        if (s.state == TcpState::listen || s.remote.is_unspecified()) continue;
        PeerRow& row = peer_row(s.remote);
        ++row.states[s.state];
        row.unread_bytes += s.rqueue;
        if (s.info && (s.state == TcpState::established || s.state == TcpState::close_wait))
            widen(row.idle_min_ms, row.idle_max_ms, s.info->last_data_recv_ms);
    }
    for (const auto& s : snapshot.time_wait_by_peer) {
        ++r.states[TcpState::time_wait];
        ++peer_row(s.remote).states[TcpState::time_wait];
    }
    for (const auto& h : snapshot.held_after_close) {
        ++r.states[TcpState::close];
        if (h.remote) ++peer_row(*h.remote).states[TcpState::close];
    }
    r.held_after_close = r.states[TcpState::close];
    // Most sockets first, ties by address: a host-wide audit has a row per connection of a
    // process that talks to thousands of peers, so the totals are counted once, not per compare.
    std::vector<std::pair<std::uint64_t, PeerRow*>> order;
    order.reserve(peers.size());
    for (auto& [_, row] : peers)
        order.emplace_back(row.states.total(), &row);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        if (a.first != b.first) return a.first > b.first;
        return a.second->remote < b.second->remote;
    });
    r.peers.reserve(order.size());
    for (const auto& [_, row] : order)
        r.peers.push_back(std::move(*row));

    std::vector<SocketRecord> time_wait = snapshot.time_wait_by_peer;
    for (const auto& s : snapshot.sockets)
        if (s.state == TcpState::time_wait) time_wait.push_back(s);

    for (auto f : {find_close_wait(snapshot.sockets, config),
                   find_stale_duplicates(snapshot.sockets, config),
                   find_reconnect_churn(time_wait, config), find_fd_pressure(snapshot.info, config),
                   find_held_after_close(snapshot.sockets, snapshot.held_after_close, config)}) {
        if (!f) continue;
        if (f->kind == FindingKind::stale_duplicate) r.stale = f->count;
        r.findings.push_back(std::move(*f));
    }
    std::stable_sort(r.findings.begin(), r.findings.end(), [](const Finding& a, const Finding& b) {
        return static_cast<int>(a.severity) > static_cast<int>(b.severity);
    });
    return r;
}

HostReport analyse(const scan::Snapshot& snapshot, const Config& config, bool host_wide) {
    HostReport h;
    h.host_wide = host_wide;
    h.unattributed = snapshot.unattributed;
    h.warnings = snapshot.warnings;
    h.source = scan::source_name(snapshot);
    h.has_tcp_info = snapshot.has_tcp_info;
    h.sockets_seen = snapshot.sockets_seen;
    h.unreadable_processes = snapshot.unreadable_processes;
    h.vanished_processes = snapshot.vanished_processes;
    h.unreadable = snapshot.unreadable;
    h.taken_at = snapshot.taken_at;
    for (const auto& p : snapshot.processes) {
        ProcessReport r = analyse_process(p, config);
        if (host_wide && r.states.total() == 0) continue;
        h.processes.push_back(std::move(r));
    }
    if (host_wide) {
        std::stable_sort(h.processes.begin(), h.processes.end(),
                         [](const ProcessReport& a, const ProcessReport& b) {
                             const auto key = [](const ProcessReport& r) {
                                 return std::make_tuple(r.states[TcpState::close_wait] +
                                                            r.held_after_close,
                                                        r.stale, r.states[TcpState::established]);
                             };
                             return key(a) > key(b);
                         });
    }
    return h;
}

} // namespace conncheck::analysis
