// Fitting a straight line to a series: watch's trends, check's growth and prove's verdicts all
// measure growth this one way, and judge whether it is real growth or noise this one way.
#pragma once

#include <cstddef>
#include <span>

namespace conncheck {

struct LineFit {
    std::size_t n = 0;
    double slope = 0;
    double slope_stderr = 0; // standard error of the slope; 0 with fewer than three points
    double span = 0;         // largest x minus smallest x
    // Largest minus smallest residual: the band the values scatter in around the line.
    double residual_range = 0;
};

// Least-squares fit of y over x; slope 0 when there are fewer than two distinct x values.
[[nodiscard]] LineFit fit_line(std::span<const double> x, std::span<const double> y);
// fit_line(x, y).slope.
[[nodiscard]] double least_squares_slope(std::span<const double> x, std::span<const double> y);

// Growth a bounded, fluctuating series does not show: at least three points, a rising slope
// at least `min_t` standard errors above zero (a t-test on the fit), and a fitted rise over the
// span more than three times the band the values scatter in around the line. Noise within fixed
// bounds, even one drifting from its low to its high, fails the last test; a leak passes both
// once it has outgrown its own noise.
inline constexpr double growth_min_t = 4.0;
[[nodiscard]] bool real_growth(const LineFit& fit, double min_t = growth_min_t);

} // namespace conncheck
