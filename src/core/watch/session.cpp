#include "conncheck/watch/session.hpp"

#include "conncheck/text.hpp"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace conncheck::watch {

namespace {

constexpr std::size_t comm_width = 32;
constexpr std::size_t cmdline_width = 200;

// The window reduced to at most `points` points, each the mean of an equal span of time.
Points reduce(const Points& samples, std::size_t points) {
    if (samples.size() <= points || points == 0) return samples;
    Points out;
    const std::int64_t t0 = samples.front().t_ms;
    const double span = static_cast<double>(samples.back().t_ms - t0) + 1.0;
    std::size_t bucket = 0;
    double sum_v = 0;
    double sum_t = 0;
    std::size_t n = 0;
    auto flush = [&] {
        if (n == 0) return;
        out.push_back({static_cast<std::int64_t>(sum_t / static_cast<double>(n)),
                       sum_v / static_cast<double>(n)});
        sum_v = sum_t = 0;
        n = 0;
    };
    for (const auto& s : samples) {
        const auto b = static_cast<std::size_t>(static_cast<double>(s.t_ms - t0) / span *
                                                static_cast<double>(points));
        if (b != bucket) {
            flush();
            bucket = b;
        }
        sum_v += s.value;
        sum_t += static_cast<double>(s.t_ms);
        ++n;
    }
    flush();
    return out;
}

std::vector<PeerFrame> peer_table(const scan::ProcessSnapshot& process) {
    std::vector<std::uint16_t> listening;
    for (const auto& s : process.sockets)
        if (s.state == TcpState::listen) listening.push_back(s.local.port);
    std::unordered_map<PeerKey, PeerFrame, PeerKeyHash> peers;
    auto add = [&](const SocketRecord& s) {
        if (s.state == TcpState::listen) return;
        const PeerKey key = CookieTracker::peer_of(s, listening);
        auto& p = peers[key];
        p.key = key;
        ++p.states[s.state];
        ++p.total;
        if (s.state != TcpState::time_wait) p.unread_bytes += s.rqueue;
        if (s.info && (s.state == TcpState::established || s.state == TcpState::close_wait)) {
            const std::uint32_t idle = s.info->last_data_recv_ms;
            p.idle_min_ms = std::min(p.idle_min_ms.value_or(idle), idle);
            p.idle_max_ms = std::max(p.idle_max_ms.value_or(idle), idle);
        }
    };
    for (const auto& s : process.sockets)
        add(s);
    for (const auto& s : process.time_wait_by_peer)
        add(s);
    std::vector<PeerFrame> out;
    out.reserve(peers.size());
    for (auto& [key, p] : peers) {
        p.label = text::sanitize(peer_label(key));
        out.push_back(std::move(p));
    }
    return out;
}

// ESTABLISHED, CLOSE_WAIT and TIME_WAIT first (the leak story), then the kernel's order.
void order_states(std::vector<StateRow>& rows) {
    auto rank = [](TcpState s) {
        switch (s) {
        case TcpState::established:
            return 0;
        case TcpState::close_wait:
            return 1;
        case TcpState::time_wait:
            return 2;
        default:
            return 3 + static_cast<int>(s);
        }
    };
    std::sort(rows.begin(), rows.end(),
              [&](const StateRow& a, const StateRow& b) { return rank(a.state) < rank(b.state); });
}

} // namespace

bool always_shown(TcpState state) {
    return state == TcpState::established || state == TcpState::close_wait ||
           state == TcpState::time_wait;
}

void Session::Figure::add(std::int64_t now_ms, double value) {
    if (!started) {
        first = value;
        current = value;
        started = true;
    }
    previous = current;
    current = value;
    series.add(now_ms, value);
}

Session::Session(Options options) : options_(std::move(options)) {}

Session::Figure& Session::state_figure(std::map<TcpState, Figure>& figures, TcpState state,
                                       const Figure& clock) const {
    auto it = figures.find(state);
    if (it != figures.end()) return it->second;
    it = figures.emplace(state, Figure(options_.window_ms)).first;
    auto& f = it->second;
    // A state seen for the first time was at zero on every earlier tick.
    if (clock.started) {
        for (const auto& p : clock.series.points())
            f.series.add(p.t_ms, 0);
        f.started = true;
    }
    return f;
}

void Session::update(const scan::Snapshot& snapshot, std::int64_t now_ms,
                     std::int64_t unix_seconds) {
    if (tick_ == 0) first_ms_ = now_ms;
    ++tick_;
    now_ms_ = now_ms;
    unix_seconds_ = unix_seconds;
    source_ = scan::source_name(snapshot);
    has_tcp_info_ = snapshot.has_tcp_info;
    has_cookies_ = snapshot.mixed_sources || snapshot.source != diag::SourceKind::proc_net;
    warnings_ = snapshot.warnings;

    tracker_.begin_tick(now_ms);
    const auto events = events_.take_tick();
    const auto followed = [this](std::uint64_t cookie) { return events_.follows(cookie); };
    for (const auto& p : snapshot.processes) {
        const auto known = processes_.find(p.info.pid);
        const bool replaced = known != processes_.end() && known->second.start_ticks != 0 &&
                              p.info.start_ticks != 0 &&
                              known->second.start_ticks != p.info.start_ticks;
        if (p.exited || replaced) {
            process_exited(p.info.pid, now_ms);
            continue;
        }
        if (known != processes_.end() && known->second.last.exited) continue;
        if (!options_.events) {
            tracker_.observe(p);
            observe(p, now_ms);
            continue;
        }
        const auto attributed = events_.attribute(p, now_ms, first_ms_);
        const scan::ProcessSnapshot& seen = attributed ? *attributed : p;
        tracker_.observe(seen, followed);
        if (const auto e = events.find(p.info.pid); e != events.end())
            tracker_.add_events(p.info.pid, e->second);
        observe(seen, now_ms);
    }
    tracker_.end_tick();
    events_.prune(now_ms);
    // Rates include this tick's opens and closes, counted by end_tick.
    for (const auto& p : snapshot.processes) {
        auto it = processes_.find(p.info.pid);
        if (it == processes_.end() || it->second.last.exited) continue;
        auto& last = it->second.last;
        last.churn = tracker_.churn(p.info.pid);
        for (auto& peer : last.peers)
            peer.opened_per_minute = tracker_.peer_opened_per_minute(p.info.pid, peer.key);
    }

    analysis::StateCounts sum;
    std::uint64_t fds = 0;
    for (const auto& [pid, h] : processes_) {
        if (h.last.exited) continue;
        for (std::size_t i = 0; i < tcp_state_count; ++i)
            sum.n[i] += h.counts.n[i];
        fds += h.last.open_fds;
    }
    if (!total_fds_) total_fds_.emplace(options_.window_ms);
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto state = static_cast<TcpState>(i);
        if (sum[state] == 0 && !always_shown(state) && !totals_.contains(state)) continue;
        state_figure(totals_, state, *total_fds_).add(now_ms, static_cast<double>(sum[state]));
    }
    total_fds_->add(now_ms, static_cast<double>(fds));
}

void Session::observe(const scan::ProcessSnapshot& process, std::int64_t now_ms) {
    const auto report = analysis::analyse_process(process, options_.analysis);
    auto& h = processes_[process.info.pid];
    if (h.start_ticks == 0) h.start_ticks = process.info.start_ticks;
    auto& last = h.last;
    last.pid = process.info.pid;
    last.comm = text::sanitize(process.info.comm, comm_width);
    last.cmdline = text::sanitize(process.info.cmdline, cmdline_width);
    last.open_fds = process.info.open_fds;
    last.fd_limit = process.info.fd_limit.soft;
    last.kernel_memory_bytes = report.kernel_memory_bytes;
    last.time_wait_exact = report.time_wait_exact;
    last.time_wait_by_peer = report.time_wait_by_peer;
    last.other_sockets = report.other_sockets;
    last.held_after_close = report.held_after_close;
    last.other_netns_sockets = report.other_netns_sockets;
    last.findings = report.findings;

    h.counts = report.states;
    if (!h.fds) h.fds.emplace(options_.window_ms);
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto state = static_cast<TcpState>(i);
        const std::uint64_t n = report.states[state];
        if (n == 0 && !always_shown(state) && !h.states.contains(state)) continue;
        state_figure(h.states, state, *h.fds).add(now_ms, static_cast<double>(n));
    }
    h.fds->add(now_ms, static_cast<double>(process.info.open_fds));
    if (!h.leaked) h.leaked.emplace(options_.window_ms);
    h.leaked->add(now_ms, static_cast<double>(analysis::leaked_sockets(report)));

    last.peers = peer_table(process);
    last.peers_total = last.peers.size();
    if (options_.events) add_ages(last.peers, process);
    // The projection needs as much history as a trend row does before it says anything.
    ProjectionRules rules = options_.projection;
    rules.min_span_ms = std::min(rules.min_span_ms, options_.window_ms / 2);
    last.fd_projection = project_to_limit(
        h.leaked->series, static_cast<double>(process.info.open_fds), last.fd_limit, rules);
}

// The age of each peer's oldest live connection: exact for the ones seen opening, at least the
// watch's age for the others.
void Session::add_ages(std::vector<PeerFrame>& peers, const scan::ProcessSnapshot& process) const {
    std::vector<std::uint16_t> listening;
    for (const auto& s : process.sockets)
        if (s.state == TcpState::listen) listening.push_back(s.local.port);
    const std::int64_t watched_ms = now_ms_ - first_ms_;
    struct Oldest {
        std::int64_t age_ms = 0;
        bool predates = false;
    };
    std::unordered_map<PeerKey, Oldest, PeerKeyHash> oldest;
    for (const auto& s : process.sockets) {
        if (s.state == TcpState::listen || s.state == TcpState::time_wait) continue;
        const auto* c = events_.find(s.cookie);
        auto& o = oldest[CookieTracker::peer_of(s, listening)];
        if (!c) o.predates = true;
        o.age_ms = std::max(o.age_ms, c ? now_ms_ - c->opened_ms : watched_ms);
    }
    for (auto& p : peers) {
        const auto it = oldest.find(p.key);
        if (it == oldest.end()) continue;
        p.oldest_age_ms = it->second.age_ms;
        p.oldest_predates_watch = it->second.predates;
    }
}

void Session::process_exited(pid_t pid, std::int64_t now_ms) {
    tracker_.forget_process(pid);
    events_.forget_process(pid);
    auto& h = processes_[pid];
    if (h.last.exited) return;
    h.last.pid = pid;
    h.last.exited = true;
    h.last.exited_after_ms = tick_ == 0 ? 0 : now_ms - first_ms_;
    h.last.fd_projection.reset();
}

std::vector<pid_t> Session::running() const {
    std::vector<pid_t> out;
    for (const auto& [pid, h] : processes_)
        if (!h.last.exited) out.push_back(pid);
    return out;
}

Row Session::make_row(const Figure& figure, const FrameOptions& options) const {
    Row row;
    row.current = static_cast<std::uint64_t>(figure.current);
    row.since_last = static_cast<std::int64_t>(figure.current - figure.previous);
    row.since_start = static_cast<std::int64_t>(figure.current - figure.first);
    const std::int64_t min_span = std::min(options_.min_slope_span_ms, options_.window_ms / 2);
    if (figure.series.span_ms() >= min_span) row.slope_per_hour = figure.series.slope_per_hour();
    if (options.spark_points > 0) row.spark = reduce(figure.series.points(), options.spark_points);
    return row;
}

Frame Session::frame(const FrameOptions& options) const {
    Frame f;
    f.unix_seconds = unix_seconds_;
    f.uptime_ms = tick_ == 0 ? 0 : now_ms_ - first_ms_;
    f.tick = tick_;
    f.interval_ms = options_.interval_ms;
    f.window_ms = options_.window_ms;
    f.source = source_;
    f.has_cookies = has_cookies_;
    f.has_tcp_info = has_tcp_info_;
    f.events = options_.events;
    f.warnings = warnings_;
    f.tracked_cookies = tracker_.tracked_cookies();
    for (const auto& [pid, h] : processes_) {
        ProcessFrame p = h.last;
        for (const auto& [state, figure] : h.states)
            p.states.push_back({state, make_row(figure, options)});
        order_states(p.states);
        if (h.fds) p.fds = make_row(*h.fds, options);
        if (h.leaked) p.leaked = make_row(*h.leaked, options);
        sort_peers(p.peers, options.peer_sort);
        if (p.peers.size() > options.max_peers) p.peers.resize(options.max_peers);
        if (!p.exited) {
            f.open_fds_total += p.open_fds;
            f.kernel_memory_total += p.kernel_memory_bytes;
        }
        f.processes.push_back(std::move(p));
    }
    for (const auto& [state, figure] : totals_)
        f.totals.push_back({state, make_row(figure, options)});
    order_states(f.totals);
    if (total_fds_) f.fds_total = make_row(*total_fds_, options);
    return f;
}

} // namespace conncheck::watch
