// Fitting a straight line to a series: watch's trends, check's growth and prove's verdicts all
// measure growth this one way.
#pragma once

#include <span>

namespace conncheck {

// Least-squares slope of y over x; 0 when there are fewer than two distinct x values.
[[nodiscard]] double least_squares_slope(std::span<const double> x, std::span<const double> y);

} // namespace conncheck
