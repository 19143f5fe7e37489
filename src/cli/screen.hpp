// The full-screen view of `conncheck watch`: drawing a Frame into a terminal of a given size.
// Pure: it returns the bytes, terminal.hpp writes them.
#pragma once

#include "conncheck/watch/frame.hpp"

#include <string>
#include <string_view>

namespace conncheck::cli::screen {

struct Size {
    int cols = 80;
    int rows = 24;
};
inline constexpr Size minimum_size{60, 14};

struct ViewState {
    watch::PeerSort sort = watch::PeerSort::count;
    bool paused = false;
    bool color = false;
};

// One whole frame as the bytes to write at once: cursor home, every row overwritten and cleared
// to its end, the rest of the screen cleared. Rows never reach the last column, so nothing wraps.
// A terminal smaller than minimum_size gets a one-line notice instead.
[[nodiscard]] std::string render(const watch::Frame& frame, const ViewState& view, Size size);

// Display columns of UTF-8 text (wide East Asian characters count two, combining marks zero).
[[nodiscard]] int display_width(std::string_view utf8);

} // namespace conncheck::cli::screen
