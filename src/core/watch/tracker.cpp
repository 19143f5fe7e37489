#include "conncheck/watch/tracker.hpp"

#include <algorithm>
#include <functional>
#include <string>

namespace conncheck::watch {

namespace {

constexpr std::int64_t minute_ms = 60'000;

} // namespace

std::size_t PeerKeyHash::operator()(const PeerKey& key) const noexcept {
    return EndpointHash{}(key.remote) ^ (key.inbound ? 0x9e3779b97f4a7c15ULL : 0);
}

std::string peer_label(const PeerKey& key) {
    if (key.inbound) return key.remote.address_string() + " (in)";
    return key.remote.to_string();
}

PeerKey CookieTracker::peer_of(const SocketRecord& socket,
                               const std::vector<std::uint16_t>& listening_ports) {
    PeerKey key{socket.remote, false};
    if (std::find(listening_ports.begin(), listening_ports.end(), socket.local.port) !=
        listening_ports.end()) {
        key.inbound = true;
        key.remote.port = 0;
    }
    return key;
}

CookieTracker::CookieTracker(std::int64_t linger_ms) : linger_ms_(linger_ms) {}

void CookieTracker::begin_tick(std::int64_t now_ms) {
    now_ms_ = now_ms;
    ++tick_;
}

void CookieTracker::opened(ProcessStats& stats, const PeerKey& peer) {
    ++stats.current.opened;
    ++stats.totals.opened_total;
    auto& p = stats.peers[peer];
    if (p.opens.empty() || p.opens.back().first != now_ms_) p.opens.emplace_back(now_ms_, 0);
    ++p.opens.back().second;
    ++p.opened_total;
}

void CookieTracker::observe(const scan::ProcessSnapshot& process,
                            const std::function<bool(std::uint64_t cookie)>& followed) {
    const pid_t pid = process.info.pid;
    auto& stats = processes_[pid];
    const bool baseline = stats.ticks == 0;
    if (baseline) stats.first_tick_ms = now_ms_;
    stats.current = Event{now_ms_, 0, 0};

    std::vector<std::uint16_t> listening;
    for (const auto& s : process.sockets)
        if (s.state == TcpState::listen) listening.push_back(s.local.port);

    // Sockets the process holds, and TIME_WAIT the scan attributed to it by cookie.
    for (const auto& s : process.sockets) {
        if (s.cookie == 0 || s.state == TcpState::listen) continue;
        if (followed && followed(s.cookie)) continue;
        const bool tw = s.state == TcpState::time_wait;
        auto [it, inserted] = sockets_.try_emplace(s.cookie);
        auto& t = it->second;
        if (inserted) {
            t.pid = pid;
            t.changed_ms = now_ms_;
            t.phase = tw ? Phase::time_wait : Phase::live;
            if (!baseline) {
                opened(stats, peer_of(s, listening));
                if (tw) {
                    ++stats.current.closed;
                    ++stats.totals.closed_total;
                    ++stats.totals.short_lived_total;
                }
            }
        } else if (t.pid == pid) {
            if (tw && t.phase == Phase::live) {
                ++stats.current.closed;
                ++stats.totals.closed_total;
            }
            if (tw && t.phase != Phase::time_wait) t.changed_ms = now_ms_;
            if (!tw && t.phase != Phase::live) t.changed_ms = now_ms_;
            t.phase = tw ? Phase::time_wait : Phase::live;
        }
        // A cookie first seen in another watched process (a socket shared across fork) stays
        // with that process.
        t.seen = tick_;
    }

    // A socket TCP has closed (a reset) that the process still holds left the kernel's tables
    // but not the process: not a close.
    for (const auto& h : process.held_after_close) {
        if (h.cookie == 0) continue;
        if (auto it = sockets_.find(h.cookie); it != sockets_.end() && it->second.pid == pid)
            it->second.seen = tick_;
    }

    // TIME_WAIT toward the process's peers whose live socket watch never saw: a connection that
    // opened and closed between two ticks, or one from before the watch began.
    for (const auto& s : process.time_wait_by_peer) {
        if (s.cookie == 0 || (followed && followed(s.cookie))) continue;
        auto [it, inserted] = sockets_.try_emplace(s.cookie);
        auto& t = it->second;
        if (inserted) {
            t.pid = pid;
            t.phase = Phase::time_wait;
            t.changed_ms = now_ms_;
            if (!baseline) {
                opened(stats, peer_of(s, listening));
                ++stats.current.closed;
                ++stats.totals.closed_total;
                ++stats.totals.short_lived_total;
            }
        }
        t.seen = tick_;
    }
    ++stats.ticks;
}

void CookieTracker::add_events(pid_t pid, const TickEvents& events) {
    const auto it = processes_.find(pid);
    if (it == processes_.end()) return;
    auto& stats = it->second;
    for (const auto& peer : events.opened)
        opened(stats, peer);
    stats.current.closed += events.closed;
    stats.totals.closed_total += events.closed;
    stats.totals.short_lived_total += events.short_lived;
}

void CookieTracker::end_tick() {
    for (auto it = sockets_.begin(); it != sockets_.end();) {
        auto& t = it->second;
        const auto owner = processes_.find(t.pid);
        // Only processes scanned this tick can have lost a socket.
        const bool scanned = owner != processes_.end() && owner->second.current.t_ms == now_ms_;
        if (t.seen == tick_ || !scanned) {
            ++it;
            continue;
        }
        if (t.phase == Phase::live) {
            // Gone from the process: closed. It may come back as TIME_WAIT once the peer's FIN
            // arrives; that is the same close, not a second one.
            ++owner->second.current.closed;
            ++owner->second.totals.closed_total;
            t.phase = Phase::closed;
            t.changed_ms = now_ms_;
            ++it;
            continue;
        }
        if (t.phase == Phase::closed && now_ms_ - t.changed_ms <= linger_ms_) {
            ++it;
            continue;
        }
        it = sockets_.erase(it);
    }
    for (auto& [pid, stats] : processes_) {
        if (stats.current.t_ms != now_ms_) continue;
        if (stats.current.opened > 0 || stats.current.closed > 0)
            stats.events.push_back(stats.current);
        while (!stats.events.empty() && stats.events.front().t_ms <= now_ms_ - minute_ms)
            stats.events.pop_front();
        for (auto p = stats.peers.begin(); p != stats.peers.end();) {
            auto& opens = p->second.opens;
            while (!opens.empty() && opens.front().first <= now_ms_ - minute_ms)
                opens.pop_front();
            if (opens.empty())
                p = stats.peers.erase(p);
            else
                ++p;
        }
    }
}

void CookieTracker::forget_process(pid_t pid) {
    for (auto it = sockets_.begin(); it != sockets_.end();) {
        if (it->second.pid == pid) {
            it = sockets_.erase(it);
        } else {
            ++it;
        }
    }
    processes_.erase(pid);
}

Churn CookieTracker::churn(pid_t pid) const {
    const auto it = processes_.find(pid);
    if (it == processes_.end()) return {};
    const auto& stats = it->second;
    Churn c = stats.totals;
    const std::int64_t span = std::min(minute_ms, now_ms_ - stats.first_tick_ms);
    c.rate_span_ms = std::max<std::int64_t>(span, 0);
    if (span <= 0) return c;
    std::uint64_t opened = 0;
    std::uint64_t closed = 0;
    for (const auto& e : stats.events) {
        opened += e.opened;
        closed += e.closed;
    }
    const double scale = static_cast<double>(minute_ms) / static_cast<double>(span);
    c.opened_per_minute = static_cast<double>(opened) * scale;
    c.closed_per_minute = static_cast<double>(closed) * scale;
    return c;
}

double CookieTracker::peer_opened_per_minute(pid_t pid, const PeerKey& peer) const {
    const auto it = processes_.find(pid);
    if (it == processes_.end()) return 0;
    const auto p = it->second.peers.find(peer);
    const std::int64_t span = std::min(minute_ms, now_ms_ - it->second.first_tick_ms);
    if (p == it->second.peers.end() || span <= 0) return 0;
    std::uint64_t n = 0;
    for (const auto& [t, count] : p->second.opens)
        n += count;
    return static_cast<double>(n) * static_cast<double>(minute_ms) / static_cast<double>(span);
}

std::vector<PeerChurn> CookieTracker::peer_churn(pid_t pid) const {
    std::vector<PeerChurn> out;
    const auto it = processes_.find(pid);
    if (it == processes_.end()) return out;
    for (const auto& [key, stats] : it->second.peers)
        out.push_back({key, peer_opened_per_minute(pid, key), stats.opened_total});
    std::sort(out.begin(), out.end(), [](const PeerChurn& a, const PeerChurn& b) {
        if (a.opened_per_minute != b.opened_per_minute)
            return a.opened_per_minute > b.opened_per_minute;
        return a.peer.remote < b.peer.remote;
    });
    return out;
}

} // namespace conncheck::watch
