// Trend maths of watch mode: least-squares slope, the bounded window, the projection to a limit,
// and how the front end says them.
#include "conncheck/watch/trend.hpp"
#include "human_text.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

using namespace conncheck::watch;
using namespace conncheck::cli;

namespace {

constexpr std::int64_t hour_ms = 3'600'000;

Points line(double start, double per_hour, std::int64_t step_ms, int n, std::int64_t t0 = 0) {
    Points s;
    for (int i = 0; i < n; ++i) {
        const std::int64_t t = t0 + i * step_ms;
        s.push_back({t, start + per_hour * static_cast<double>(t - t0) / hour_ms});
    }
    return s;
}

} // namespace

TEST_CASE("the least-squares slope of a straight line is its rise per hour") {
    const auto s = line(100, 3.1, 1000, 600);
    const auto slope = slope_per_hour(s);
    REQUIRE(slope);
    CHECK(*slope == doctest::Approx(3.1).epsilon(1e-9));
}

TEST_CASE("the slope survives a large time origin (monotonic clocks of long-running hosts)") {
    const auto s = line(10, -0.5, 1000, 600, std::int64_t{400} * 24 * hour_ms);
    const auto slope = slope_per_hour(s);
    REQUIRE(slope);
    CHECK(*slope == doctest::Approx(-0.5).epsilon(1e-9));
}

TEST_CASE("least squares fits through noise: alternating +-1 around a rising line") {
    Points s;
    for (int i = 0; i < 3600; ++i)
        s.push_back({i * 1000LL, 50.0 + 2.0 * i / 3600.0 + (i % 2 == 0 ? 1.0 : -1.0)});
    CHECK(*slope_per_hour(s) == doctest::Approx(2.0).epsilon(0.01));
}

TEST_CASE("no slope from fewer than two samples or from one instant") {
    CHECK_FALSE(slope_per_hour({}));
    CHECK_FALSE(slope_per_hour({{5, 1}}));
    CHECK_FALSE(slope_per_hour({{5, 1}, {5, 9}}));
    CHECK(*slope_per_hour({{0, 0}, {hour_ms, 2}}) == doctest::Approx(2));
}

TEST_CASE("a series keeps only its window") {
    Series s(10'000);
    for (int i = 0; i <= 30; ++i)
        s.add(i * 1000LL, i);
    CHECK(s.points().front().t_ms >= 20'000);
    CHECK(s.points().back().t_ms == 30'000);
    CHECK(s.span_ms() <= 10'000);
    CHECK(*s.slope_per_hour() == doctest::Approx(3600));
}

TEST_CASE("a series stays bounded whatever the ratio of window to interval") {
    Series s(600'000, 100); // 10 min, at most ~100 points
    for (int i = 0; i < 60'000; ++i)
        s.add(i * 10LL, 7.0 + i * 0.001); // every 10 ms for 10 min
    CHECK(s.points().size() <= 102);
    // Bucket means keep the slope: 0.001 per 10 ms = 360 per hour.
    CHECK(*s.slope_per_hour() == doctest::Approx(360).epsilon(0.001));
}

TEST_CASE("a sample older than the newest is ignored") {
    Series s(60'000);
    s.add(1000, 1);
    s.add(500, 99);
    REQUIRE(s.points().size() == 1);
    CHECK(s.points().back().value == 1);
}

TEST_CASE("projection: fds growing 3.1/h reach 1024 in about 2 days 4 hours") {
    Series fds(600'000);
    // 10 minutes of history at 1 s, rising 3.1/h, ending 52 h below the limit.
    const double end = 1024 - 3.1 * 52;
    for (int i = 0; i <= 600; ++i)
        fds.add(i * 1000LL, end - 3.1 * (600 - i) / 3600.0);
    const auto p =
        project_to_limit(fds, 1024, {.min_span_ms = 30'000, .min_points = 5, .min_rise = 0.1});
    REQUIRE(p);
    CHECK(p->slope_per_hour == doctest::Approx(3.1).epsilon(1e-6));
    CHECK(describe_projection(*p) == "fds grow 3.1/h: the limit of 1024 is reached in ~2 d 4 h");
}

TEST_CASE("no projection for a flat, falling, short or limitless series") {
    Series flat(600'000);
    Series falling(600'000);
    Series short_history(600'000);
    Series rising(600'000);
    for (int i = 0; i <= 600; ++i) {
        flat.add(i * 1000LL, 100);
        falling.add(i * 1000LL, 500 - i / 10.0);
        rising.add(i * 1000LL, 100 + i / 10.0);
    }
    for (int i = 0; i < 10; ++i)
        short_history.add(i * 1000LL, 100 + i);
    CHECK_FALSE(project_to_limit(flat, 1024));
    CHECK_FALSE(project_to_limit(falling, 1024));
    CHECK_FALSE(project_to_limit(short_history, 1024)); // 9 s of history says nothing
    CHECK_FALSE(project_to_limit(rising, 0));           // unlimited
    CHECK_FALSE(project_to_limit(rising, 120));         // already past: fd_pressure says so
    const auto p = project_to_limit(rising, 1024);
    REQUIRE(p);
    CHECK(p->slope_per_hour == doctest::Approx(360));
    CHECK(p->ms_to_limit == doctest::Approx((1024 - 160) / 360.0 * hour_ms).epsilon(1e-6));
}

TEST_CASE("a rise of less than one fd over the window is noise, not a trend") {
    Series s(600'000);
    for (int i = 0; i <= 600; ++i)
        s.add(i * 1000LL, 100 + (i > 300 ? 0.5 : 0.0));
    CHECK_FALSE(project_to_limit(s, 1024));
}

TEST_CASE("a limit centuries away is not worth a warning") {
    Series s(3'600'000);
    for (int i = 0; i <= 3600; ++i)
        s.add(i * 1000LL, 100 + i / 1800.0); // +2/h
    CHECK_FALSE(project_to_limit(s, 1'000'000));
    CHECK(project_to_limit(s, 1024));
}

TEST_CASE("durations to a limit read like a person would say them") {
    CHECK(approx_duration(30'000) == "under a minute");
    CHECK(approx_duration(45 * 60'000) == "~45 min");
    CHECK(approx_duration(3 * hour_ms + 12 * 60'000) == "~3 h 12 min");
    CHECK(approx_duration(5 * hour_ms) == "~5 h");
    CHECK(approx_duration(52 * hour_ms) == "~2 d 4 h");
    CHECK(approx_duration(48 * hour_ms + 10 * 60'000) == "~2 d");
}

TEST_CASE("slopes print with a sign and one decimal") {
    CHECK(format_slope(1.7) == "+1.7/h");
    CHECK(format_slope(-0.34) == "-0.3/h");
    CHECK(format_slope(0.01) == "0/h");
    CHECK(format_slope(-0.0) == "0/h");
    CHECK(format_slope(120.4) == "+120/h");
    CHECK(format_slope(std::nan("")) == "0/h");
}

TEST_CASE("sparklines scale between the window's minimum and maximum") {
    Points rising;
    for (int i = 0; i < 8; ++i)
        rising.push_back({i * 1000LL, static_cast<double>(i)});
    CHECK(sparkline(rising, 8) == "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588");
    Points flat{{0, 4}, {1000, 4}, {2000, 4}};
    CHECK(sparkline(flat, 10) == "\u2581\u2581\u2581"); // fewer samples than columns: shorter
    Points many;
    for (int i = 0; i < 600; ++i)
        many.push_back({i * 1000LL, i < 300 ? 0.0 : 10.0});
    const std::string s = sparkline(many, 4);
    CHECK(s == "\u2581\u2581\u2588\u2588");
    CHECK(sparkline({}, 10).empty());
}
