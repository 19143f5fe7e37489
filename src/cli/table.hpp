// Text for a terminal of a given width: a table whose columns are dropped in a stated order (then
// its one shrinkable column cut) until it fits, and prose wrapped at word boundaries with a
// hanging indent. Cells are already sanitized; widths are display columns.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace conncheck::cli::table {

enum class Align { left, right };

struct Column {
    std::string header;
    std::string short_header; // tried before any column is dropped; empty: the header
    Align align = Align::right;
    int drop_order = 0;      // 0: always shown; otherwise 1 goes first, then 2, ...
    bool shrinkable = false; // cut (its cells end in "...") when dropping is not enough
};

struct Layout {
    int width = 80;
    // A terminal fits the table to `width`. Off a terminal every column stays, with its full
    // header and whole cells, whatever the width: a layout scripts can rely on.
    bool fit = true;
    std::string indent = "  ";
};

// The header line and one line per row, each ending in '\n'. Rows shorter than the columns are
// padded with empty cells.
[[nodiscard]] std::string render(const std::vector<Column>& columns,
                                 const std::vector<std::vector<std::string>>& rows,
                                 const Layout& layout);

// `lead` (e.g. "  WARNING  close_wait       ") followed by `text` wrapped to `width` columns at
// spaces; continuation lines start with `hang` spaces. A word longer than a line is never split:
// it overflows on a line of its own. Each line ends in '\n'. `lead_cols` is the display width of
// `lead` (which may hold colour escapes).
[[nodiscard]] std::string wrap(std::string_view lead, int lead_cols, std::string_view text,
                               int width, int hang);

} // namespace conncheck::cli::table
