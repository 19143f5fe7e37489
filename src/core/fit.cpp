#include "conncheck/fit.hpp"

#include <algorithm>
#include <cmath>

namespace conncheck {

LineFit fit_line(std::span<const double> x, std::span<const double> y) {
    LineFit fit;
    const std::size_t n = std::min(x.size(), y.size());
    fit.n = n;
    if (n < 2) return fit;
    double mean_x = 0;
    double mean_y = 0;
    double min_x = x[0];
    double max_x = x[0];
    for (std::size_t i = 0; i < n; ++i) {
        mean_x += x[i];
        mean_y += y[i];
        min_x = std::min(min_x, x[i]);
        max_x = std::max(max_x, x[i]);
    }
    fit.span = max_x - min_x;
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
    if (sxx <= 0) return fit;
    fit.slope = sxy / sxx;
    double ssr = 0;
    double lo = 0;
    double hi = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double r = y[i] - (mean_y + fit.slope * (x[i] - mean_x));
        ssr += r * r;
        lo = i == 0 ? r : std::min(lo, r);
        hi = i == 0 ? r : std::max(hi, r);
    }
    fit.residual_range = hi - lo;
    if (n > 2) fit.slope_stderr = std::sqrt(ssr / static_cast<double>(n - 2) / sxx);
    return fit;
}

double least_squares_slope(std::span<const double> x, std::span<const double> y) {
    return fit_line(x, y).slope;
}

bool real_growth(const LineFit& fit, double min_t) {
    if (fit.n < 3 || fit.slope <= 0) return false;
    // A perfect line has no error: any rise on it is real.
    if (fit.slope < min_t * fit.slope_stderr) return false;
    // Three times the band: a bounded random walk (a pool drifting from its low to its high for
    // minutes) rises past its band in one window of twenty and past twice it now and then;
    // not past three times it in any of the walks tried. Rounding noise on a perfect line must
    // not make its rise look smaller than its scatter.
    return fit.slope * fit.span > 3 * fit.residual_range * (1 + 1e-9);
}

} // namespace conncheck
