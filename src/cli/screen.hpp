// The full-screen view of `conncheck watch`: drawing a Frame into a terminal of a given size.
// Pure: it returns the bytes, terminal.hpp writes them.
#pragma once

#include "conncheck/watch/frame.hpp"

#include <cstddef>
#include <string>

namespace conncheck::cli::screen {

struct Size {
    int cols = 80;
    int rows = 24;
};
inline constexpr Size minimum_size{60, 14};
// History points kept per sparkline: more than its widest (120 columns), so a wide terminal
// still averages several samples into each column.
inline constexpr std::size_t spark_points = 160;

struct ViewState {
    watch::PeerSort sort = watch::PeerSort::count;
    bool paused = false;
    bool color = false;
};

// One whole frame as the bytes to write at once: cursor home, every row overwritten and cleared
// to its end, the rest of the screen cleared. Rows never reach the last column, so nothing wraps.
// A terminal smaller than minimum_size gets a one-line notice instead.
[[nodiscard]] std::string render(const watch::Frame& frame, const ViewState& view, Size size);

} // namespace conncheck::cli::screen
