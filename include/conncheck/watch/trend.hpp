// Trend maths for watch mode: a bounded window of samples, the least-squares slope over it and the
// projection of when a growing count reaches a limit. Pure: times are passed in, never read.
#pragma once

#include "conncheck/fit.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

namespace conncheck::watch {

struct Point {
    std::int64_t t_ms = 0; // monotonic milliseconds, any origin
    double value = 0;
};

using Points = std::deque<Point>; // oldest first

// Least-squares slope of value over time, in units per hour. nullopt with fewer than two
// samples or when they all share one time.
[[nodiscard]] std::optional<double> slope_per_hour(const Points& samples);

// The samples of one figure over the last `window_ms`. Memory is bounded whatever the ratio of
// window to interval: samples closer together than window / max_points share one averaged point.
class Series {
public:
    static constexpr std::size_t default_max_points = 2000;
    explicit Series(std::int64_t window_ms, std::size_t max_points = default_max_points);

    // Times must not go backwards; a sample older than the newest is ignored.
    void add(std::int64_t t_ms, double value);
    [[nodiscard]] const Points& points() const { return points_; }
    [[nodiscard]] bool empty() const { return points_.empty(); }
    [[nodiscard]] std::optional<double> slope_per_hour() const;
    // The line through the window, x in hours since the oldest point.
    [[nodiscard]] LineFit fit() const;
    // Milliseconds between the oldest and the newest point.
    [[nodiscard]] std::int64_t span_ms() const;
    [[nodiscard]] std::int64_t window_ms() const { return window_ms_; }

private:
    std::int64_t window_ms_;
    std::int64_t bucket_ms_;
    Points points_;
    std::uint32_t in_bucket_ = 0; // samples averaged into the newest point
};

// A growing count and when it reaches its limit at this slope.
struct Projection {
    double slope_per_hour = 0;
    double current = 0;
    std::uint64_t limit = 0;
    std::uint64_t ms_to_limit = 0;
};

struct ProjectionRules {
    std::int64_t min_span_ms = 60'000; // a shorter history says nothing about a trend
    std::size_t min_points = 5;
    double min_rise = 1.0; // the fitted line must rise at least this much over the span
    std::uint64_t max_ms_to_limit = 365ULL * 24 * 3600 * 1000; // further away is no warning
};

// When a count now at `current` reaches `limit` (0: no limit) if it keeps growing as `growth`
// did over its window. Only real growth projects (real_growth(): a significant slope that rises
// beyond the series' own scatter), over at least rules.min_span_ms: a bounded, fluctuating
// series never does. watch passes the open fds as `current` and the leaked sockets as `growth`.
[[nodiscard]] std::optional<Projection> project_to_limit(const Series& growth, double current,
                                                         std::uint64_t limit,
                                                         const ProjectionRules& rules = {});
// The same for a series that is its own count (`current` is its newest value).
[[nodiscard]] std::optional<Projection> project_to_limit(const Series& series, std::uint64_t limit,
                                                         const ProjectionRules& rules = {});
} // namespace conncheck::watch
