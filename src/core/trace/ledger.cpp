#include "conncheck/trace/ledger.hpp"

#include <algorithm>
#include <netinet/in.h>
#include <tuple>
#include <utility>

namespace conncheck::trace {

std::string_view leak_name(LeakKind kind) {
    switch (kind) {
    case LeakKind::close_wait:
        return "close_wait";
    case LeakKind::zombie:
        return "zombie";
    case LeakKind::reset:
        return "reset";
    }
    return "unknown";
}

bool Connection::held() const {
    if (closed_by_exit) return true;
    return !closed_here_ns && !destroyed_ns;
}

bool closes_here(const Event& e) {
    if (e.kind != EventKind::state) return false;
    if (e.new_state == TcpState::fin_wait1 || e.new_state == TcpState::last_ack) return true;
    // close() with unread data, or shutdown-less abort: straight to CLOSE in the process's own
    // thread, with no error (a RST from the peer sets one).
    return e.new_state == TcpState::close && e.tid != 0 && e.socket_error == 0 &&
           (e.old_state == TcpState::established || e.old_state == TcpState::close_wait ||
            e.old_state == TcpState::syn_sent);
}

PeerKey peer_of(const Connection& c) {
    PeerKey key{canonical_endpoint(c.remote), c.accepted};
    if (c.accepted) key.endpoint.port = 0;
    return key;
}

Ledger::Ledger(std::uint64_t start_ns, LedgerConfig config)
    : start_ns_(start_ns), config_(config) {}

void Ledger::add(const Event& e, CallSite site) {
    if (e.kind == EventKind::exit) {
        exited_.emplace(e.pid, e.time_ns);
        return;
    }
    if (e.kind == EventKind::listen) return; // a listener is no connection
    if (e.kind == EventKind::opened) {
        Connection c;
        c.id = e.connection;
        c.cookie = e.cookie;
        c.pid = e.pid;
        c.tid = e.tid;
        c.thread = e.thread;
        c.local = e.local;
        c.remote = e.remote;
        c.accepted = e.accepted;
        c.call_site = std::move(site);
        c.state = e.new_state;
        c.opened_ns = e.time_ns;
        c.last_data_ns = e.time_ns;
        if (e.new_state == TcpState::close_wait) c.peer_closed_ns = e.time_ns;
        connections_.insert_or_assign(c.id, std::move(c));
        return;
    }
    const auto it = connections_.find(e.connection);
    if (it == connections_.end()) {
        ++unknown_events_;
        return;
    }
    Connection& c = it->second;
    if (c.cookie == 0) c.cookie = e.cookie;
    // connect() learns its local port after SYN_SENT was reported.
    if (c.local.port == 0) c.local = e.local;
    const auto exit = exited_.find(c.pid);
    if (exit != exited_.end() && e.time_ns >= exit->second) {
        // What the kernel does to the sockets of an exiting process is not the process's doing:
        // the ledger keeps the state they were held in.
        if (c.held()) c.closed_by_exit = true;
        return;
    }
    switch (e.kind) {
    case EventKind::state:
        c.state = e.new_state;
        if (e.new_state == TcpState::close_wait && !c.peer_closed_ns) c.peer_closed_ns = e.time_ns;
        if (!c.closed_here_ns && closes_here(e)) c.closed_here_ns = e.time_ns;
        if (hands_to_time_wait(e) && !c.reset_ns) {
            c.time_wait_ns = e.time_ns;
            c.state = TcpState::time_wait;
        }
        break;
    case EventKind::reset:
        c.reset_ns = e.time_ns;
        break;
    case EventKind::resumed:
        c.last_data_ns = std::max(c.last_data_ns, e.time_ns);
        break;
    case EventKind::destroyed:
        c.destroyed_ns = e.time_ns;
        break;
    case EventKind::opened:
    case EventKind::exit:
    case EventKind::listen:
        break;
    }
}

void Ledger::note_last_data(std::uint64_t connection, std::uint64_t time_ns) {
    const auto it = connections_.find(connection);
    if (it == connections_.end()) return;
    it->second.last_data_ns = std::max(it->second.last_data_ns, time_ns);
    it->second.last_data_known = true;
}

void Ledger::note_incomplete(std::uint64_t connection) {
    if (const auto it = connections_.find(connection); it != connections_.end())
        it->second.incomplete = true;
}

const Connection* Ledger::find(std::uint64_t connection) const {
    const auto it = connections_.find(connection);
    return it == connections_.end() ? nullptr : &it->second;
}

std::vector<LeakGroup> Ledger::leak_groups(std::uint64_t end_ns) const {
    // Opens per peer, oldest first, to find successors and reconnect intervals.
    std::map<std::pair<pid_t, PeerKey>, std::vector<const Connection*>> by_peer;
    for (const auto& [id, c] : connections_)
        by_peer[{c.pid, peer_of(c)}].push_back(&c);
    for (auto& [key, list] : by_peer)
        std::sort(list.begin(), list.end(), [](const Connection* a, const Connection* b) {
            return std::tie(a->opened_ns, a->id) < std::tie(b->opened_ns, b->id);
        });

    std::vector<LeakGroup> out;
    std::map<std::tuple<std::optional<Frame>, CallSite, std::string, PeerKey>, LeakGroup> groups;
    // A named reference, not a structured binding: lambdas below capture it (clang 14).
    for (const auto& entry : connections_) {
        const Connection& c = entry.second;
        if (!c.held() || c.incomplete) continue;
        std::optional<Leak> leak;
        if (c.state == TcpState::close_wait && c.peer_closed_ns) {
            leak = Leak{LeakKind::close_wait, c, *c.peer_closed_ns, 0, 0, 0};
        } else if (c.state == TcpState::close && c.reset_ns) {
            leak = Leak{LeakKind::reset, c, *c.reset_ns, 0, 0, 0};
        } else if (c.state == TcpState::established && !c.reset_ns && c.last_data_known &&
                   end_ns >= c.last_data_ns + config_.zombie_silence_ns) {
            const auto& peers = by_peer[{c.pid, peer_of(c)}];
            const auto successor =
                std::find_if(peers.begin(), peers.end(), [&](const Connection* s) {
                    return s->id != c.id && s->opened_ns > c.opened_ns &&
                           s->opened_ns >= c.last_data_ns;
                });
            if (successor != peers.end())
                leak = Leak{LeakKind::zombie,     c,
                            c.last_data_ns,       (*successor)->id,
                            (*successor)->cookie, (*successor)->opened_ns};
        }
        if (!leak) continue;
        const PeerKey peer = peer_of(c);
        const std::optional<std::size_t> user = first_user_frame(c.call_site);
        LeakGroup& g = user ? groups[{c.call_site.frames[*user], {}, c.thread, peer}]
                            : groups[{std::nullopt, c.call_site, c.thread, peer}];
        if (g.leaks.empty()) {
            g.call_site = c.call_site;
            g.user_frame = user;
        }
        g.thread = c.thread;
        g.peer = peer;
        g.leaks.push_back(std::move(*leak));
    }
    for (auto& [key, g] : groups) {
        std::sort(g.leaks.begin(), g.leaks.end(), [](const Leak& a, const Leak& b) {
            return std::tie(a.connection.opened_ns, a.connection.id) <
                   std::tie(b.connection.opened_ns, b.connection.id);
        });
        out.push_back(std::move(g));
    }
    std::stable_sort(out.begin(), out.end(), [](const LeakGroup& a, const LeakGroup& b) {
        return a.leaks.size() > b.leaks.size();
    });

    return out;
}

std::vector<PeerSummary> Ledger::peer_summaries(std::uint64_t end_ns) const {
    std::vector<PeerSummary> out;
    const double minutes =
        static_cast<double>(std::max<std::uint64_t>(end_ns - std::min(end_ns, start_ns_), 1)) /
        60e9;
    std::map<PeerKey, PeerSummary> peers;
    std::map<PeerKey, std::vector<std::uint64_t>> opens;
    for (const auto& [id, c] : connections_) {
        const PeerKey key = peer_of(c);
        PeerSummary& p = peers[key];
        p.peer = key;
        ++p.opened;
        opens[key].push_back(c.opened_ns);
        if (c.held()) {
            ++p.held;
            if (!p.oldest_held_opened_ns || c.opened_ns < *p.oldest_held_opened_ns)
                p.oldest_held_opened_ns = c.opened_ns;
        } else {
            ++p.ended;
        }
        if (c.time_wait_ns) {
            ++p.time_wait_handed;
            if (*c.time_wait_ns + time_wait_ns > end_ns) ++p.time_wait_now;
        }
    }
    for (auto& [key, p] : peers) {
        p.opens_per_minute = static_cast<double>(p.opened) / minutes;
        p.ends_per_minute = static_cast<double>(p.ended) / minutes;
        auto& times = opens[key];
        std::sort(times.begin(), times.end());
        if (times.size() >= 2) {
            std::vector<std::uint64_t> gaps;
            for (std::size_t i = 1; i < times.size(); ++i)
                gaps.push_back(times[i] - times[i - 1]);
            std::sort(gaps.begin(), gaps.end());
            p.reconnect_min_ns = gaps.front();
            p.reconnect_median_ns = gaps[gaps.size() / 2];
            p.reconnect_max_ns = gaps.back();
        }
        out.push_back(p);
    }
    std::stable_sort(out.begin(), out.end(), [](const PeerSummary& a, const PeerSummary& b) {
        return a.opened > b.opened;
    });
    return out;
}

LedgerReport Ledger::report(std::uint64_t end_ns) const {
    LedgerReport r;
    r.start_ns = start_ns_;
    r.end_ns = end_ns;
    r.exited = exited_;
    r.unknown_events = unknown_events_;
    r.connections = connections_.size();
    for (const auto& [id, c] : connections_) {
        if (c.incomplete) r.incomplete.push_back(id);
        if (!c.held()) continue;
        ++r.held;
        if (c.state == TcpState::established && !c.reset_ns && !c.last_data_known)
            ++r.last_data_unknown;
    }
    r.groups = leak_groups(end_ns);
    r.peers = peer_summaries(end_ns);
    return r;
}

} // namespace conncheck::trace
