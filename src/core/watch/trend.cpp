#include "conncheck/watch/trend.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/core.h>
#include <vector>

namespace conncheck::watch {

namespace {

constexpr double ms_per_hour = 3'600'000.0;

} // namespace

std::optional<double> slope_per_hour(const Samples& samples) {
    if (samples.size() < 2) return std::nullopt;
    // Times relative to the first sample keep the sums small enough for doubles to stay exact.
    const std::int64_t origin = samples.front().t_ms;
    double mean_x = 0;
    double mean_y = 0;
    for (const auto& s : samples) {
        mean_x += static_cast<double>(s.t_ms - origin) / ms_per_hour;
        mean_y += s.value;
    }
    const auto n = static_cast<double>(samples.size());
    mean_x /= n;
    mean_y /= n;
    double sxy = 0;
    double sxx = 0;
    for (const auto& s : samples) {
        const double dx = static_cast<double>(s.t_ms - origin) / ms_per_hour - mean_x;
        sxy += dx * (s.value - mean_y);
        sxx += dx * dx;
    }
    if (sxx <= 0) return std::nullopt;
    return sxy / sxx;
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

std::int64_t Series::span_ms() const {
    return points_.empty() ? 0 : points_.back().t_ms - points_.front().t_ms;
}

std::optional<Projection> project_to_limit(const Series& series, std::uint64_t limit,
                                           const ProjectionRules& rules) {
    if (limit == 0 || series.points().size() < rules.min_points) return std::nullopt;
    if (series.span_ms() < rules.min_span_ms) return std::nullopt;
    const auto slope = series.slope_per_hour();
    if (!slope || *slope <= 0) return std::nullopt;
    if (*slope * static_cast<double>(series.span_ms()) / ms_per_hour < rules.min_rise)
        return std::nullopt;
    const double current = series.points().back().value;
    const auto lim = static_cast<double>(limit);
    if (current >= lim) return std::nullopt; // already there: the fd_pressure finding says so
    const double ms = (lim - current) / *slope * ms_per_hour;
    if (ms > static_cast<double>(rules.max_ms_to_limit)) return std::nullopt;
    return Projection{*slope, current, limit, static_cast<std::uint64_t>(std::llround(ms))};
}

std::string approx_duration(std::uint64_t ms) {
    constexpr std::uint64_t minute = 60'000;
    constexpr std::uint64_t hour = 60 * minute;
    constexpr std::uint64_t day = 24 * hour;
    if (ms < minute) return "under a minute";
    if (ms < hour)
        return fmt::format("~{} min", std::max<std::uint64_t>(1, (ms + minute / 2) / minute));
    if (ms < day) {
        const std::uint64_t minutes = (ms + minute / 2) / minute;
        if (minutes % 60 == 0) return fmt::format("~{} h", minutes / 60);
        return fmt::format("~{} h {} min", minutes / 60, minutes % 60);
    }
    const std::uint64_t hours = (ms + hour / 2) / hour;
    if (hours % 24 == 0) return fmt::format("~{} d", hours / 24);
    return fmt::format("~{} d {} h", hours / 24, hours % 24);
}

std::string format_slope(double per_hour) {
    if (!std::isfinite(per_hour) || std::fabs(per_hour) < 0.05) return "0/h";
    if (std::fabs(per_hour) < 9.95) return fmt::format("{:+.1f}/h", per_hour);
    return fmt::format("{:+.0f}/h", per_hour);
}

std::string describe_projection(const Projection& p, const std::string& what) {
    const double shown = p.slope_per_hour < 9.95 ? std::round(p.slope_per_hour * 10) / 10
                                                 : std::round(p.slope_per_hour);
    return fmt::format("{} grow {}/h: the limit of {} is reached in {}", what, shown, p.limit,
                       approx_duration(p.ms_to_limit));
}

std::string sparkline(const Samples& samples, std::size_t width) {
    static constexpr std::array<const char*, 8> blocks = {"\u2581", "\u2582", "\u2583", "\u2584",
                                                          "\u2585", "\u2586", "\u2587", "\u2588"};
    if (samples.empty() || width == 0) return {};
    std::vector<double> columns;
    if (samples.size() <= width) {
        for (const auto& s : samples)
            columns.push_back(s.value);
    } else {
        const std::int64_t t0 = samples.front().t_ms;
        const double span = static_cast<double>(samples.back().t_ms - t0) + 1.0;
        std::vector<double> sum(width, 0.0);
        std::vector<std::size_t> count(width, 0);
        for (const auto& s : samples) {
            auto col = static_cast<std::size_t>(static_cast<double>(s.t_ms - t0) / span *
                                                static_cast<double>(width));
            col = std::min(col, width - 1);
            sum[col] += s.value;
            ++count[col];
        }
        double last = samples.front().value;
        for (std::size_t i = 0; i < width; ++i) {
            if (count[i] > 0) last = sum[i] / static_cast<double>(count[i]);
            columns.push_back(last); // a column without samples repeats the one before
        }
    }
    const auto [lo, hi] = std::minmax_element(columns.begin(), columns.end());
    const double low = *lo;
    const double range = *hi - *lo;
    std::string out;
    out.reserve(columns.size() * 3);
    for (const double v : columns) {
        std::size_t level = 0;
        if (range > 0) level = static_cast<std::size_t>(std::lround((v - low) / range * 7.0));
        out += blocks[std::min<std::size_t>(level, 7)];
    }
    return out;
}

} // namespace conncheck::watch
