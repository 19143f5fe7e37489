// One row of watch's screen, measured in display columns: UTF-8 text, wide and combining
// characters, styles only when colour is on.
#pragma once

#include <string>
#include <string_view>

namespace conncheck::cli::screen {

// Display columns of UTF-8 text (wide East Asian characters count two, combining marks zero).
[[nodiscard]] int display_width(std::string_view utf8);

// Text past `max` columns is dropped.
class Line {
public:
    Line(int max, bool color) : max_(max), color_(color) {}
    Line& add(std::string_view s, const char* style = nullptr);
    Line& pad_to(int col);
    // `s` right-aligned in a cell that ends at column `end`.
    Line& right(std::string_view s, int end, const char* style = nullptr);
    [[nodiscard]] int cols() const { return cols_; }
    [[nodiscard]] std::string take() { return std::move(bytes_); }

private:
    int max_;
    bool color_;
    int cols_ = 0;
    std::string bytes_;
};

} // namespace conncheck::cli::screen
