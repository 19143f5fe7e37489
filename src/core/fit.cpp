#include "conncheck/fit.hpp"

#include <algorithm>

namespace conncheck {

double least_squares_slope(std::span<const double> x, std::span<const double> y) {
    const std::size_t n = std::min(x.size(), y.size());
    if (n < 2) return 0;
    double mean_x = 0;
    double mean_y = 0;
    for (std::size_t i = 0; i < n; ++i) {
        mean_x += x[i];
        mean_y += y[i];
    }
    mean_x /= static_cast<double>(n);
    mean_y /= static_cast<double>(n);
    // Centred sums: the raw-sum formula loses precision when x is large compared to its spread.
    double sxx = 0;
    double sxy = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double dx = x[i] - mean_x;
        sxx += dx * dx;
        sxy += dx * (y[i] - mean_y);
    }
    if (sxx <= 0) return 0;
    return sxy / sxx;
}

} // namespace conncheck
