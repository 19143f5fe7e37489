#include "conncheck/watch/trend.hpp"

#include "conncheck/fit.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace conncheck::watch {

namespace {

constexpr double ms_per_hour = 3'600'000.0;

LineFit fit_hours(const Points& samples) {
    if (samples.empty()) return {};
    // Hours since the first sample keep the sums small enough for doubles to stay exact.
    const std::int64_t origin = samples.front().t_ms;
    std::vector<double> hours;
    std::vector<double> values;
    hours.reserve(samples.size());
    values.reserve(samples.size());
    for (const auto& s : samples) {
        hours.push_back(static_cast<double>(s.t_ms - origin) / ms_per_hour);
        values.push_back(s.value);
    }
    return fit_line(hours, values);
}

} // namespace

std::optional<double> slope_per_hour(const Points& samples) {
    if (samples.size() < 2 || samples.front().t_ms == samples.back().t_ms) return std::nullopt;
    return fit_hours(samples).slope;
}

Series::Series(std::int64_t window_ms, std::size_t max_points)
    : window_ms_(std::max<std::int64_t>(window_ms, 1)),
      bucket_ms_(std::max<std::int64_t>(
          1, window_ms_ / static_cast<std::int64_t>(std::max<std::size_t>(max_points, 1)))) {}

void Series::add(std::int64_t t_ms, double value) {
    if (!points_.empty() && t_ms < points_.back().t_ms) return;
    if (!points_.empty() && in_bucket_ > 0 &&
        t_ms / bucket_ms_ == points_.back().t_ms / bucket_ms_) {
        // Running means of time and value: the point stays inside its bucket.
        auto& p = points_.back();
        ++in_bucket_;
        const double k = 1.0 / in_bucket_;
        p.value += (value - p.value) * k;
        p.t_ms += static_cast<std::int64_t>(std::llround(static_cast<double>(t_ms - p.t_ms) * k));
    } else {
        points_.push_back({t_ms, value});
        in_bucket_ = 1;
    }
    while (!points_.empty() && points_.front().t_ms < t_ms - window_ms_)
        points_.pop_front();
}

std::optional<double> Series::slope_per_hour() const {
    return watch::slope_per_hour(points_);
}

LineFit Series::fit() const {
    return fit_hours(points_);
}

std::int64_t Series::span_ms() const {
    return points_.empty() ? 0 : points_.back().t_ms - points_.front().t_ms;
}

std::optional<Projection> project_to_limit(const Series& growth, double current,
                                           std::uint64_t limit, const ProjectionRules& rules) {
    if (limit == 0 || growth.points().size() < rules.min_points) return std::nullopt;
    if (growth.span_ms() < rules.min_span_ms) return std::nullopt;
    const LineFit fit = growth.fit();
    if (!real_growth(fit)) return std::nullopt;
    const double slope = fit.slope;
    if (slope * static_cast<double>(growth.span_ms()) / ms_per_hour < rules.min_rise)
        return std::nullopt;
    const auto lim = static_cast<double>(limit);
    if (current >= lim) return std::nullopt; // already there: the fd_pressure finding says so
    const double ms = (lim - current) / slope * ms_per_hour;
    if (ms > static_cast<double>(rules.max_ms_to_limit)) return std::nullopt;
    return Projection{slope, current, limit, static_cast<std::uint64_t>(std::llround(ms))};
}

std::optional<Projection> project_to_limit(const Series& series, std::uint64_t limit,
                                           const ProjectionRules& rules) {
    if (series.empty()) return std::nullopt;
    return project_to_limit(series, series.points().back().value, limit, rules);
}

} // namespace conncheck::watch
