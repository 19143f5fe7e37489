#include "conncheck/watch/events.hpp"

#include "conncheck/trace/ledger.hpp"

#include <algorithm>

namespace conncheck::watch {

namespace {

// TCP_TIMEWAIT_LEN in ms.
constexpr std::int64_t time_wait_ms = static_cast<std::int64_t>(trace::time_wait_ns / 1'000'000);
// A scan's view of a TIME_WAIT's age is good to the tick; a close this near the start may be one
// of the connections from before the watch, closed while the first scan ran.
constexpr std::int64_t start_slack_ms = 1'000;

// The connection is over for the process: it closed it, or the socket is destroyed. A reset or
// a timeout takes TCP to CLOSE while the process still holds the socket: no close until the
// process lets go of it (tcp_destroy_sock then).
bool ends(const trace::Event& e) {
    if (e.kind == trace::EventKind::destroyed) return true;
    return trace::closes_here(e);
}

} // namespace

void ConnectionEvents::learn_cookie(std::uint64_t id, FollowedConnection& c, std::uint64_t cookie) {
    if (cookie == 0 || c.cookie == cookie) return;
    // A TIME_WAIT socket made before the kernel gave the connection a cookie has its own: both
    // name the connection.
    if (c.cookie == 0) c.cookie = cookie;
    by_cookie_[cookie] = id;
}

void ConnectionEvents::ended(FollowedConnection& c, std::int64_t t_ms) {
    if (c.ended_ms) return;
    c.ended_ms = t_ms;
    auto& tick = tick_[c.pid];
    ++tick.closed;
    if (c.batch == batch_) ++tick.short_lived;
}

void ConnectionEvents::add(const trace::Event& e, std::int64_t t_ms) {
    if (e.kind == trace::EventKind::exit) return;
    if (e.kind == trace::EventKind::opened) {
        FollowedConnection c;
        c.pid = e.pid;
        c.local = canonical_endpoint(e.local);
        c.remote = canonical_endpoint(e.remote);
        c.peer = PeerKey{c.remote, e.accepted};
        if (e.accepted) c.peer.remote.port = 0;
        c.opened_ms = t_ms;
        c.batch = batch_;
        auto& stored = connections_.insert_or_assign(e.connection, c).first->second;
        learn_cookie(e.connection, stored, e.cookie);
        // connect() reports SYN_SENT before the local port is chosen: indexed once it is known.
        if (c.local.port != 0) by_endpoints_[{c.local, c.remote}] = e.connection;
        tick_[c.pid].opened.push_back(c.peer);
        return;
    }
    const auto it = connections_.find(e.connection);
    if (it == connections_.end()) return; // opened before the watch, or not followed
    FollowedConnection& c = it->second;
    learn_cookie(e.connection, c, e.cookie);
    if (c.local.port == 0 && e.local.port != 0) {
        c.local = canonical_endpoint(e.local);
        by_endpoints_[{c.local, c.remote}] = e.connection;
    }
    if (trace::hands_to_time_wait(e)) c.time_wait = true;
    if (ends(e)) ended(c, t_ms);
}

std::unordered_map<pid_t, TickEvents> ConnectionEvents::take_tick() {
    ++batch_;
    return std::exchange(tick_, {});
}

const FollowedConnection* ConnectionEvents::find(std::uint64_t cookie) const {
    if (cookie == 0) return nullptr;
    const auto it = by_cookie_.find(cookie);
    if (it == by_cookie_.end()) return nullptr;
    const auto c = connections_.find(it->second);
    return c == connections_.end() ? nullptr : &c->second;
}

const FollowedConnection* ConnectionEvents::identify(pid_t pid, const SocketRecord& socket) {
    if (const auto* c = find(socket.cookie)) return c->pid == pid ? c : nullptr;
    const auto it = by_endpoints_.find({socket.local, socket.remote});
    if (it == by_endpoints_.end()) return nullptr;
    const auto c = connections_.find(it->second);
    if (c == connections_.end() || c->second.pid != pid) return nullptr;
    learn_cookie(it->second, c->second, socket.cookie);
    return &c->second;
}

std::optional<scan::ProcessSnapshot>
ConnectionEvents::attribute(const scan::ProcessSnapshot& process, std::int64_t now_ms,
                            std::int64_t since_ms) {
    // Sockets held since before the watch stay as they are; identify() learns the cookies of
    // accepted connections so that the cookie tracker leaves them to the events.
    for (const auto& s : process.sockets)
        identify(process.info.pid, s);
    std::vector<SocketRecord> ours;
    std::vector<SocketRecord> by_peer;
    for (const auto& s : process.time_wait_by_peer) {
        if (identify(process.info.pid, s) != nullptr) {
            ours.push_back(s);
            continue;
        }
        // Linux keeps TIME_WAIT a fixed 60 s: the time left tells when the connection closed.
        const std::int64_t closed_ms = now_ms - (time_wait_ms - s.expires_ms);
        if (complete_ && closed_ms > since_ms + start_slack_ms) continue;
        by_peer.push_back(s);
    }
    if (by_peer.size() == process.time_wait_by_peer.size()) return std::nullopt;
    scan::ProcessSnapshot out = process;
    out.sockets.insert(out.sockets.end(), ours.begin(), ours.end());
    out.time_wait_exact += ours.size();
    out.time_wait_by_peer = std::move(by_peer);
    return out;
}

void ConnectionEvents::forget_process(pid_t pid) {
    for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->second.pid == pid)
            it = connections_.erase(it);
        else
            ++it;
    }
    std::erase_if(by_cookie_, [&](const auto& kv) { return !connections_.contains(kv.second); });
    std::erase_if(by_endpoints_, [&](const auto& kv) { return !connections_.contains(kv.second); });
    tick_.erase(pid);
}

void ConnectionEvents::prune(std::int64_t now_ms) {
    bool dropped = false;
    for (auto it = connections_.begin(); it != connections_.end();) {
        const auto& ended_ms = it->second.ended_ms;
        if (ended_ms && now_ms - *ended_ms > linger_ms) {
            it = connections_.erase(it);
            dropped = true;
        } else {
            ++it;
        }
    }
    if (!dropped) return;
    std::erase_if(by_cookie_, [&](const auto& kv) { return !connections_.contains(kv.second); });
    std::erase_if(by_endpoints_, [&](const auto& kv) { return !connections_.contains(kv.second); });
}

} // namespace conncheck::watch
