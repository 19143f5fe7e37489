#include "human_text.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <fmt/core.h>
#include <iterator>
#include <vector>

namespace conncheck::cli {

std::string human_bytes(std::uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    static constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes) / 1024.0;
    std::size_t unit = 0;
    while (value >= 1024.0 && unit + 1 < std::size(units)) {
        value /= 1024.0;
        ++unit;
    }
    return fmt::format("{:.1f} {}", value, units[unit]);
}

std::string human_duration_ms(std::uint64_t ms) {
    if (ms < 1000) return fmt::format("{}ms", ms);
    const std::uint64_t s = ms / 1000;
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
    return fmt::format("{}d{}h", s / 86400, (s % 86400) / 3600);
}

std::string format_slope(double per_hour) {
    if (!std::isfinite(per_hour) || std::fabs(per_hour) < 0.05) return "0/h";
    if (std::fabs(per_hour) < 9.95) return fmt::format("{:+.1f}/h", per_hour);
    return fmt::format("{:+.0f}/h", per_hour);
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

std::string describe_projection(const watch::Projection& p, const std::string& what) {
    const double shown = p.slope_per_hour < 9.95 ? std::round(p.slope_per_hour * 10) / 10
                                                 : std::round(p.slope_per_hour);
    return fmt::format("{} grow {}/h: the limit of {} is reached in {}", what, shown, p.limit,
                       approx_duration(p.ms_to_limit));
}

std::string sparkline(const watch::Points& samples, std::size_t width) {
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

} // namespace conncheck::cli
