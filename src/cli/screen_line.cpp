#include "screen_line.hpp"

#include "ansi.hpp"

#include <cstdint>

namespace conncheck::cli::screen {

namespace {

std::uint32_t decode(std::string_view s, std::size_t& i) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    std::uint32_t cp = extra == 0   ? c
                       : extra == 1 ? (c & 0x1fU)
                       : extra == 2 ? (c & 0x0fU)
                                    : (c & 0x07U);
    ++i;
    for (; extra > 0 && i < s.size(); --extra, ++i)
        cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3fU);
    return cp;
}

int code_point_width(std::uint32_t cp) {
    if (cp < 0x20 || cp == 0x7f) return 0;
    if ((cp >= 0x0300 && cp <= 0x036f) || (cp >= 0x1ab0 && cp <= 0x1aff) ||
        (cp >= 0x1dc0 && cp <= 0x1dff) || (cp >= 0x200b && cp <= 0x200f) ||
        (cp >= 0x20d0 && cp <= 0x20ff) || (cp >= 0xfe00 && cp <= 0xfe0f) ||
        (cp >= 0xfe20 && cp <= 0xfe2f))
        return 0;
    if ((cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf && cp != 0x303f) ||
        (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
        (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
        (cp >= 0x1f900 && cp <= 0x1f9ff) || (cp >= 0x20000 && cp <= 0x3fffd))
        return 2;
    return 1;
}

} // namespace

int display_width(std::string_view utf8) {
    int w = 0;
    std::size_t i = 0;
    while (i < utf8.size())
        w += code_point_width(decode(utf8, i));
    return w;
}

Line& Line::add(std::string_view s, const char* style) {
    std::string part;
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t start = i;
        const int w = code_point_width(decode(s, i));
        if (cols_ + w > max_) {
            i = s.size();
            break;
        }
        cols_ += w;
        part.append(s.substr(start, i - start));
    }
    if (part.empty()) return *this;
    if (style != nullptr && color_) {
        bytes_ += style;
        bytes_ += part;
        bytes_ += ansi::reset;
    } else {
        bytes_ += part;
    }
    return *this;
}

Line& Line::pad_to(int col) {
    if (col > cols_) add(std::string(static_cast<std::size_t>(col - cols_), ' '));
    return *this;
}

Line& Line::right(std::string_view s, int end, const char* style) {
    pad_to(end - display_width(s));
    return add(s, style);
}

} // namespace conncheck::cli::screen
