// Numbers in words and glyphs for people (the screen, the tables, the log lines, check's status
// line): the core returns sizes, durations, slopes and projections as numbers, these say them.
#pragma once

#include "conncheck/watch/trend.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace conncheck::cli {

// "512 B", "1.5 KiB", "2.0 MiB"
[[nodiscard]] std::string human_bytes(std::uint64_t bytes);
// "850ms", "45s", "3m12s", "5h03m", "2d4h"
[[nodiscard]] std::string human_duration_ms(std::uint64_t ms);
// "+1.7/h", "-0.3/h", "0/h", "+120/h"
[[nodiscard]] std::string format_slope(double per_hour);
// "~2 d 4 h", "~3 h 12 min", "~45 min", "under a minute"
[[nodiscard]] std::string approx_duration(std::uint64_t ms);
// "fds grow 3.1/h: the limit of 1024 is reached in ~2 d 4 h"
[[nodiscard]] std::string describe_projection(const watch::Projection& projection,
                                              const std::string& what = "fds");
// One block character (U+2581..U+2588) per column: the samples split into `width` equal spans of
// time, each shown by its mean, scaled between the window's minimum and maximum. A flat series is
// a row of the lowest block. Fewer samples than columns give a shorter line.
[[nodiscard]] std::string sparkline(const watch::Points& samples, std::size_t width);

} // namespace conncheck::cli
