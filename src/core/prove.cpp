#include "conncheck/prove.hpp"

#include "conncheck/fit.hpp"

#include <algorithm>
#include <charconv>
#include <fmt/core.h>

namespace conncheck::prove {

std::string_view metric_name(Metric m) {
    switch (m) {
    case Metric::established:
        return "established";
    case Metric::close_wait:
        return "close_wait";
    case Metric::time_wait:
        return "time_wait";
    case Metric::total:
        return "total";
    case Metric::kernel_memory_bytes:
        return "kernel_memory_bytes";
    case Metric::reconnects:
        return "reconnects";
    }
    return "unknown";
}

std::string_view metric_label(Metric m) {
    switch (m) {
    case Metric::established:
        return "ESTABLISHED";
    case Metric::close_wait:
        return "CLOSE_WAIT";
    case Metric::time_wait:
        return "TIME_WAIT";
    case Metric::total:
        return "total";
    case Metric::kernel_memory_bytes:
        return "kernel memory";
    case Metric::reconnects:
        return "reconnects";
    }
    return "unknown";
}

double metric_value(const Sample& s, Metric m) {
    switch (m) {
    case Metric::established:
        return static_cast<double>(s.established);
    case Metric::close_wait:
        return static_cast<double>(s.close_wait);
    case Metric::time_wait:
        return static_cast<double>(s.time_wait);
    case Metric::total:
        return static_cast<double>(s.total);
    case Metric::kernel_memory_bytes:
        return static_cast<double>(s.kernel_memory_bytes);
    case Metric::reconnects:
        return static_cast<double>(s.reconnects);
    }
    return 0;
}

namespace {

template <typename F> double slope_of(const std::vector<Sample>& samples, F value) {
    std::vector<double> x;
    std::vector<double> y;
    x.reserve(samples.size());
    y.reserve(samples.size());
    for (const auto& s : samples) {
        x.push_back(s.t_seconds);
        y.push_back(value(s));
    }
    return least_squares_slope(x, y);
}

} // namespace

double growth_per_hour(const std::vector<Sample>& samples, Metric m) {
    return 3600.0 * slope_of(samples, [m](const Sample& s) { return metric_value(s, m); });
}

double open_growth_per_hour(const std::vector<Sample>& samples) {
    return 3600.0 *
           slope_of(samples, [](const Sample& s) { return static_cast<double>(s.open()); });
}

std::string_view verdict_name(Verdict v) {
    switch (v) {
    case Verdict::leaks:
        return "leaks";
    case Verdict::no_leak:
        return "no leak";
    case Verdict::inconclusive:
        return "inconclusive";
    }
    return "inconclusive";
}

Judgement judge(const std::vector<Sample>& samples, std::uint64_t reconnects,
                const VerdictRule& rule) {
    Judgement j;
    j.reconnects = reconnects;
    const double slope =
        slope_of(samples, [](const Sample& s) { return static_cast<double>(s.open()); });
    j.open_per_hour = 3600.0 * slope;
    if (!samples.empty()) {
        j.open_final = samples.back().open();
        j.open_rise = slope * (samples.back().t_seconds - samples.front().t_seconds);
    }
    if (reconnects < rule.min_reconnects) {
        j.verdict = Verdict::inconclusive;
        j.reason = fmt::format("only {} reconnects (at least {} needed): the faults never "
                               "exercised its reconnect path",
                               reconnects, rule.min_reconnects);
        return j;
    }
    const bool above = j.open_final > rule.open_bound;
    const bool rising = j.open_rise > rule.min_rise;
    if (above && rising) {
        j.verdict = Verdict::leaks;
        j.reason = fmt::format("ESTABLISHED+CLOSE_WAIT rose by {:.0f} to {} over {} reconnects",
                               j.open_rise, j.open_final, reconnects);
    } else {
        j.verdict = Verdict::no_leak;
        if (!above)
            j.reason = fmt::format("ESTABLISHED+CLOSE_WAIT {} at the end (bound {}) after {} "
                                   "reconnects",
                                   j.open_final, rule.open_bound, reconnects);
        else
            j.reason =
                fmt::format("ESTABLISHED+CLOSE_WAIT steady at {} (rise {:.1f}, bound {:.0f}) "
                            "over {} reconnects",
                            j.open_final, j.open_rise, rule.min_rise, reconnects);
    }
    return j;
}

Outcome decide(const Report& report) {
    const CollectorRun* leaky = nullptr;
    const CollectorRun* fixed = nullptr;
    const CollectorRun* command = nullptr;
    for (const auto& c : report.collectors) {
        if (c.key == "leaky") leaky = &c;
        if (c.key == "fixed") fixed = &c;
        if (c.key == "command") command = &c;
    }
    Outcome o;
    if (report.run.interrupted) {
        o.summary = "interrupted before the end of the run: nothing proven";
        return o;
    }
    if (command != nullptr) {
        const Judgement j = judge(command->samples, command->reconnects, report.rule);
        o.ok = j.verdict == Verdict::no_leak;
        o.summary = fmt::format("your command: {} ({})", verdict_name(j.verdict), j.reason);
        return o;
    }
    if (leaky == nullptr || fixed == nullptr) {
        o.summary = "missing the leaky or the fixed collector";
        return o;
    }
    const Verdict l = judge(leaky->samples, leaky->reconnects, report.rule).verdict;
    const Verdict f = judge(fixed->samples, fixed->reconnects, report.rule).verdict;
    o.ok = l == Verdict::leaks && f == Verdict::no_leak;
    if (o.ok)
        o.summary = "the demonstration held: the leaky collector leaks, the fixed one does not";
    else
        o.summary = fmt::format("the demonstration did not hold: leaky {}, fixed {}",
                                verdict_name(l), verdict_name(f));
    return o;
}

} // namespace conncheck::prove
