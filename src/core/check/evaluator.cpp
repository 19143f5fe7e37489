#include "conncheck/check/evaluator.hpp"

#include "conncheck/fit.hpp"
#include "conncheck/series.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/core.h>

namespace conncheck::check {

namespace {

using thresholds::Range;

std::string range_text(const std::optional<Range>& r) {
    return r ? r->text : std::string();
}

std::string growth_range(const std::optional<thresholds::GrowthThreshold>& g) {
    return g ? g->as_range() : std::string();
}

// Perfdata labels are read by graphing tools that split on more than '=' and quotes.
std::string perfdata_name(std::string_view comm) {
    std::string out;
    for (const char c : comm) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        out += plain ? c : '_';
    }
    return out.empty() ? std::string("_") : out;
}

std::int64_t difference(std::uint64_t now, std::uint64_t then) {
    return static_cast<std::int64_t>(now) - static_cast<std::int64_t>(then);
}

// The previous run's instances, matched to this run's: the same instance, or the one it
// replaced (a restart); what is left over is gone.
struct Matching {
    std::vector<const statefile::ProcessState*> same;
    std::vector<const statefile::ProcessState*> replaced;
    std::vector<Gone> gone;
};

Matching match(const std::vector<Observed>& observed,
               const std::optional<statefile::State>& previous) {
    std::vector<const statefile::ProcessState*> unmatched;
    if (previous)
        for (const auto& p : previous->processes)
            unmatched.push_back(&p);
    const auto take = [&unmatched](auto predicate) -> const statefile::ProcessState* {
        const auto it = std::find_if(unmatched.begin(), unmatched.end(), predicate);
        if (it == unmatched.end()) return nullptr;
        const auto* found = *it;
        unmatched.erase(it);
        return found;
    };
    Matching m;
    for (const auto& o : observed) {
        const auto& info = o.report.info;
        m.same.push_back(take([&](const statefile::ProcessState* p) {
            return p->pid == info.pid && p->start_ticks == info.start_ticks;
        }));
    }
    // A restart: a new instance where an old one of the same name is gone. With one process on
    // each side the names need not match (an exec may change comm).
    m.replaced.assign(observed.size(), nullptr);
    for (std::size_t i = 0; i < observed.size(); ++i)
        if (m.same[i] == nullptr)
            m.replaced[i] = take([&](const statefile::ProcessState* p) {
                return p->comm == observed[i].report.info.comm;
            });
    if (observed.size() == 1 && m.same[0] == nullptr && m.replaced[0] == nullptr &&
        unmatched.size() == 1) {
        m.replaced[0] = unmatched.front();
        unmatched.clear();
    }
    for (const auto* p : unmatched)
        m.gone.push_back(Gone{p->pid, p->comm});
    return m;
}

class Judge {
public:
    Judge(const Thresholds& t, std::int64_t now_ms) : t_(t), now_ms_(now_ms) {}

    // `key` ends the perfdata labels: empty for a single process, else its stable name.
    ProcessVerdict judge(const Observed& o, const statefile::ProcessState* same,
                         const statefile::ProcessState* replaced, bool first_run,
                         std::string_view key) const {
        const analysis::ProcessReport& r = o.report;
        ProcessVerdict v;
        v.report = r;
        if (replaced != nullptr) v.replaced_pid = replaced->pid;
        const auto cw = r.states[TcpState::close_wait] -
                        std::min(r.states[TcpState::close_wait], o.close_wait_young);
        v.close_wait_counted = cw;
        const auto est = r.states[TcpState::established];
        v.close_wait = thresholds::evaluate(static_cast<double>(cw), t_.close_wait_warning,
                                            t_.close_wait_critical);
        v.established = thresholds::evaluate(static_cast<double>(est), t_.established_warning,
                                             t_.established_critical);
        v.stale =
            thresholds::evaluate(static_cast<double>(r.stale), t_.stale_warning, t_.stale_critical);
        const auto limit = r.info.fd_limit.soft;
        const auto fds_warning = fds_range(t_.fds_warning_percent, limit);
        const auto fds_critical = fds_range(t_.fds_critical_percent, limit);
        v.fds =
            thresholds::evaluate(static_cast<double>(r.info.open_fds), fds_warning, fds_critical);
        v.held_after_close =
            thresholds::evaluate(static_cast<double>(r.held_after_close),
                                 t_.held_after_close_warning, t_.held_after_close_critical);
        v.status =
            thresholds::worst(thresholds::worst(thresholds::worst(v.close_wait, v.established),
                                                thresholds::worst(v.stale, v.fds)),
                              v.held_after_close);

        // A count: minimum 0, thresholds as typed.
        const auto count = [&](const char* label, std::uint64_t value,
                               const std::optional<Range>& warn, const std::optional<Range>& crit,
                               std::optional<double> max = std::nullopt) {
            v.perfdata.push_back(Perfdata{label_of(label, key), static_cast<double>(value),
                                          range_text(warn), range_text(crit), 0.0, max});
        };
        count("close_wait", cw, t_.close_wait_warning, t_.close_wait_critical);
        count("established", est, t_.established_warning, t_.established_critical);
        count("time_wait", r.states[TcpState::time_wait], std::nullopt, std::nullopt);
        count("stale", r.stale, t_.stale_warning, t_.stale_critical);
        count("other_sockets", r.other_sockets.total(), std::nullopt, std::nullopt);
        count("held_after_close", r.held_after_close, t_.held_after_close_warning,
              t_.held_after_close_critical);
        count("leaked", analysis::leaked_sockets(r), std::nullopt, std::nullopt);
        count("fds", r.info.open_fds, fds_warning, fds_critical,
              limit == 0 ? std::nullopt : std::optional<double>(static_cast<double>(limit)));

        if (same != nullptr)
            growth(r, *same, key, v);
        else if (replaced != nullptr)
            v.growth.basis = GrowthBasis::restarted;
        else
            v.growth.basis = first_run ? GrowthBasis::first_run : GrowthBasis::new_process;
        return v;
    }

private:
    static std::string label_of(std::string_view base, std::string_view key) {
        return key.empty() ? std::string(base) : fmt::format("{}_{}", base, key);
    }

    CountGrowth rate(std::int64_t delta, double hours, bool rated, bool real) const {
        CountGrowth g;
        g.delta = delta;
        g.per_hour = static_cast<double>(delta) / hours;
        g.real = real;
        if (!rated || !real) return g;
        if (t_.growth_critical && t_.growth_critical->alerts(g.per_hour))
            g.status = Status::critical;
        else if (t_.growth_warning && t_.growth_warning->alerts(g.per_hour))
            g.status = Status::warning;
        return g;
    }

    void growth(const analysis::ProcessReport& r, const statefile::ProcessState& same,
                std::string_view key, ProcessVerdict& v) const {
        Growth& g = v.growth;
        const auto base = statefile::growth_base(same.history, now_ms_);
        if (!base) {
            g.basis = GrowthBasis::no_history;
            return;
        }
        g.span_ms = now_ms_ - base->taken_at_ms;
        g.since_ms = base->taken_at_ms;
        if (g.span_ms <= 0) {
            g.basis = GrowthBasis::clock_moved_back;
            return;
        }
        g.basis = GrowthBasis::measured;
        g.rated = g.span_ms >= min_growth_span_ms;
        const double hours = static_cast<double>(g.span_ms) / 3'600'000.0;
        // The samples since the base, and this run's: with three or more, a count must show
        // real growth along them, not just stand higher now than it did then.
        std::vector<statefile::HistoryEntry> samples;
        for (const auto& h : same.history)
            if (h.taken_at_ms >= base->taken_at_ms && h.taken_at_ms < now_ms_) samples.push_back(h);
        samples.push_back(statefile::HistoryEntry{now_ms_, r.states[TcpState::established],
                                                  r.states[TcpState::close_wait], r.stale,
                                                  r.info.open_fds, r.held_after_close});
        const auto real = [&](auto figure) {
            if (samples.size() < 3) return true;
            std::vector<double> x;
            std::vector<double> y;
            for (const auto& h : samples) {
                x.push_back(static_cast<double>(h.taken_at_ms - base->taken_at_ms) / 3'600'000.0);
                y.push_back(static_cast<double>(figure(h)));
            }
            return real_growth(fit_line(x, y));
        };
        using H = statefile::HistoryEntry;
        const auto leaked = [](const H& h) { return h.close_wait + h.held_after_close + h.stale; };
        g.established = rate(difference(r.states[TcpState::established], base->established), hours,
                             g.rated, real([](const H& h) { return h.established; }));
        g.close_wait = rate(difference(r.states[TcpState::close_wait], base->close_wait), hours,
                            g.rated, real([](const H& h) { return h.close_wait; }));
        g.held_after_close = rate(difference(r.held_after_close, base->held_after_close), hours,
                                  g.rated, real([](const H& h) { return h.held_after_close; }));
        g.leaked = rate(difference(analysis::leaked_sockets(r), leaked(*base)), hours, g.rated,
                        real(leaked));
        g.stale_delta = difference(r.stale, base->stale);
        g.fds_delta = difference(r.info.open_fds, base->fds);
        if (g.rated)
            for (const auto& [label, count] : {std::pair{"established_growth", g.established},
                                               std::pair{"close_wait_growth", g.close_wait},
                                               std::pair{"leaked_growth", g.leaked}})
                v.perfdata.push_back(
                    Perfdata{label_of(label, key), count.per_hour, growth_range(t_.growth_warning),
                             growth_range(t_.growth_critical), std::nullopt, std::nullopt});
        v.status = thresholds::worst(
            v.status,
            thresholds::worst(thresholds::worst(g.established.status, g.close_wait.status),
                              g.leaked.status));
    }

    const Thresholds& t_;
    std::int64_t now_ms_;
};

statefile::ProcessState next_state(const Observed& o, const statefile::ProcessState* same,
                                   std::int64_t now_ms) {
    const auto& r = o.report;
    statefile::ProcessState state;
    state.pid = r.info.pid;
    state.start_ticks = r.info.start_ticks;
    state.comm = r.info.comm;
    state.states = r.states;
    state.stale = r.stale;
    state.fds = r.info.open_fds;
    state.cookies = o.cookies;
    if (same != nullptr) state.history = same->history;
    statefile::add_sample(state.history,
                          statefile::HistoryEntry{now_ms, r.states[TcpState::established],
                                                  r.states[TcpState::close_wait], r.stale,
                                                  r.info.open_fds, r.held_after_close});
    return state;
}

} // namespace

std::vector<std::uint64_t> cookies_of(const scan::ProcessSnapshot& process) {
    std::vector<std::uint64_t> cookies;
    for (const auto& s : process.sockets)
        if (s.cookie != 0) cookies.push_back(s.cookie);
    return cookies;
}

std::uint64_t young_close_wait(const scan::ProcessSnapshot& process, std::uint32_t min_age_ms) {
    if (min_age_ms == 0) return 0;
    return static_cast<std::uint64_t>(
        std::count_if(process.sockets.begin(), process.sockets.end(), [&](const SocketRecord& s) {
            return s.state == TcpState::close_wait && s.info &&
                   std::min(s.info->last_data_recv_ms, s.info->last_ack_recv_ms) < min_age_ms;
        }));
}

std::optional<Range> fds_range(std::optional<double> percent, std::uint64_t limit) {
    if (!percent || limit == 0) return std::nullopt;
    const double allowed = std::ceil(static_cast<double>(limit) * *percent / 100.0 - 1e-9) - 1.0;
    return thresholds::parse_range(thresholds::format_number(std::max(allowed, 0.0), 0));
}

Verdict evaluate(const std::vector<Observed>& observed,
                 const std::optional<statefile::State>& previous, const Thresholds& thresholds,
                 const Run& run) {
    const Matching m = match(observed, previous);
    const Judge judge(thresholds, run.now_ms);
    // With several processes each label ends in the process's name, not its pid: a restart
    // continues the graphs.
    std::vector<std::string> keys(observed.size());
    if (observed.size() > 1) {
        std::vector<const proc::ProcessInfo*> infos;
        for (const auto& o : observed)
            infos.push_back(&o.report.info);
        keys = series::stable_names(infos, perfdata_name);
    }
    Verdict v;
    v.gone = m.gone;
    v.next.selector = run.selector;
    v.next.taken_at_ms = run.now_ms;
    for (std::size_t i = 0; i < observed.size(); ++i) {
        v.processes.push_back(
            judge.judge(observed[i], m.same[i], m.replaced[i], !previous.has_value(), keys[i]));
        v.status = thresholds::worst(v.status, v.processes.back().status);
        v.next.processes.push_back(next_state(observed[i], m.same[i], run.now_ms));
    }
    return v;
}

} // namespace conncheck::check
