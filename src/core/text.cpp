#include "conncheck/text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fmt/core.h>

namespace conncheck::text {

namespace {

// Length of the well-formed UTF-8 sequence at s[i], 0 when it is not one (RFC 3629: no
// overlongs, no surrogates, nothing above U+10FFFF).
std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        len = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        len = 3;
        if (b0 == 0xe0) lo = 0xa0;
        if (b0 == 0xed) hi = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        len = 4;
        if (b0 == 0xf0) lo = 0x90;
        if (b0 == 0xf4) hi = 0x8f;
    } else {
        return 0;
    }
    if (i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        const unsigned char min = k == 1 ? lo : 0x80;
        const unsigned char max = k == 1 ? hi : 0xbf;
        if (b < min || b > max) return 0;
    }
    // C1 control characters U+0080..U+009F are encoded as C2 80..C2 9F: treat as controls.
    if (len == 2 && b0 == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) return 0;
    return len;
}

char32_t decode_utf8(std::string_view s, std::size_t i, std::size_t len) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    char32_t cp = len == 2 ? (b0 & 0x1fU) : len == 3 ? (b0 & 0x0fU) : (b0 & 0x07U);
    for (std::size_t k = 1; k < len; ++k)
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3fU);
    return cp;
}

// Code points a terminal draws as nothing, or that reorder what follows them: bidi
// embeddings, overrides, isolates and marks (a U+202E in a process name prints the rest of the
// line backwards), zero-width spaces and joiners, line and paragraph separators, fillers that
// render blank, variation selectors and tag characters. Shown escaped, they cannot disguise a
// name as another.
bool invisible(char32_t cp) {
    struct Span {
        char32_t first;
        char32_t last;
    };
    static constexpr Span spans[] = {
        {0x00ad, 0x00ad},   {0x034f, 0x034f}, {0x061c, 0x061c},   {0x115f, 0x1160},
        {0x17b4, 0x17b5},   {0x180b, 0x180f}, {0x200b, 0x200f},   {0x2028, 0x202e},
        {0x2060, 0x206f},   {0x3164, 0x3164}, {0xfe00, 0xfe0f},   {0xfeff, 0xfeff},
        {0xffa0, 0xffa0},   {0xfff9, 0xfffb}, {0x1d173, 0x1d17a}, {0xe0000, 0xe007f},
        {0xe0100, 0xe01ef},
    };
    for (const Span& span : spans)
        if (cp >= span.first && cp <= span.last) return true;
    return false;
}

} // namespace

bool is_plain(std::string_view raw) {
    return std::all_of(raw.begin(), raw.end(),
                       [](char c) { return c >= 0x20 && c < 0x7f && c != '\\'; });
}

namespace {

std::string clean(std::string_view raw, std::size_t max_width, bool escape_backslash) {
    // Each visible piece is one column: an ASCII character or one UTF-8 character; an escape
    // takes as many columns as it has characters.
    std::string out;
    out.reserve(raw.size());
    std::size_t width = 0;
    std::size_t kept_bytes = 0; // bytes of `out` that still fit with room for "..."
    bool cut = false;
    for (std::size_t i = 0; i < raw.size();) {
        const auto c = static_cast<unsigned char>(raw[i]);
        std::size_t consumed = 1;
        std::size_t columns = 1;
        if (c == '\\' && escape_backslash) {
            // Escaped itself, so that the text "\x1b" never reads as a sanitized ESC.
            out += "\\\\";
            columns = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else if (c >= 0x80 && (consumed = utf8_length(raw, i)) > 0) {
            const char32_t cp = decode_utf8(raw, i, consumed);
            if (invisible(cp)) {
                const std::string escaped =
                    fmt::format("\\u{{{:04x}}}", static_cast<std::uint32_t>(cp));
                out += escaped;
                columns = escaped.size();
            } else {
                out.append(raw.substr(i, consumed));
            }
        } else {
            consumed = 1;
            columns = 4;
            out += fmt::format("\\x{:02x}", c);
        }
        i += consumed;
        width += columns;
        if (max_width != std::string::npos && max_width >= 3 && width + 3 <= max_width)
            kept_bytes = out.size();
        if (max_width != std::string::npos && width > max_width) {
            cut = true;
            break;
        }
    }
    if (cut) {
        out.resize(kept_bytes);
        if (max_width >= 3) out += "...";
    }
    return out;
}

} // namespace

std::string sanitize(std::string_view raw, std::size_t max_width) {
    return clean(raw, max_width, true);
}

std::string one_line(std::string_view message) {
    return clean(message, std::string::npos, false);
}

bool parse_duration_ms(std::string_view text, std::uint64_t& out_ms) {
    if (text.empty()) return false;
    std::size_t split = 0;
    while (split < text.size() &&
           ((text[split] >= '0' && text[split] <= '9') || text[split] == '.'))
        ++split;
    if (split == 0) return false;
    const std::string number(text.substr(0, split));
    const std::string_view unit = text.substr(split);
    double value = 0;
    try {
        std::size_t used = 0;
        value = std::stod(number, &used);
        if (used != number.size()) return false;
    } catch (const std::exception&) {
        return false;
    }
    double factor = 0;
    if (unit.empty() || unit == "s")
        factor = 1000;
    else if (unit == "ms")
        factor = 1;
    else if (unit == "m" || unit == "min")
        factor = 60'000;
    else if (unit == "h")
        factor = 3'600'000;
    else if (unit == "d")
        factor = 86'400'000;
    else
        return false;
    const double ms = value * factor;
    if (!std::isfinite(ms) || ms < 0 || ms > 1e15) return false;
    out_ms = static_cast<std::uint64_t>(std::llround(ms));
    return true;
}

std::string iso8601_utc(std::int64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

} // namespace conncheck::text
