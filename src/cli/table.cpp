#include "table.hpp"

#include "screen_line.hpp"

#include <algorithm>
#include <numeric>

namespace conncheck::cli::table {

namespace {

int cols_of(std::string_view s) {
    return screen::display_width(s);
}

// The longest prefix of `s` that fits `max` columns, then "...".
std::string cut(const std::string& s, int max) {
    if (cols_of(s) <= max) return s;
    if (max <= 3) return std::string(static_cast<std::size_t>(std::max(max, 0)), '.');
    std::string out;
    int used = 0;
    for (std::size_t i = 0; i < s.size();) {
        std::size_t len = 1;
        while (i + len < s.size() && (static_cast<unsigned char>(s[i + len]) & 0xc0U) == 0x80U)
            ++len;
        const int w = cols_of(std::string_view(s).substr(i, len));
        if (used + w > max - 3) break;
        out.append(s, i, len);
        used += w;
        i += len;
    }
    return out + "...";
}

std::string pad(const std::string& s, int width, Align align) {
    const int fill = std::max(0, width - cols_of(s));
    const std::string spaces(static_cast<std::size_t>(fill), ' ');
    return align == Align::left ? s + spaces : spaces + s;
}

} // namespace

std::string render(const std::vector<Column>& columns,
                   const std::vector<std::vector<std::string>>& rows, const Layout& layout) {
    const std::size_t n = columns.size();
    std::vector<bool> shown(n, true);
    std::vector<std::string> headers(n);
    std::vector<int> widths(n, 0);
    const auto measure = [&](bool short_headers) {
        for (std::size_t c = 0; c < n; ++c) {
            headers[c] = short_headers && !columns[c].short_header.empty() ? columns[c].short_header
                                                                           : columns[c].header;
            widths[c] = cols_of(headers[c]);
            for (const auto& row : rows)
                if (c < row.size()) widths[c] = std::max(widths[c], cols_of(row[c]));
        }
    };
    // A left-aligned column is followed by two spaces, so that it does not run into the figures.
    const auto total = [&] {
        int sum = cols_of(layout.indent);
        bool first = true;
        for (std::size_t c = 0; c < n; ++c) {
            if (!shown[c]) continue;
            if (!first) sum += 1;
            first = false;
            sum += widths[c] + (columns[c].align == Align::left && c + 1 < n ? 1 : 0);
        }
        return sum;
    };
    measure(false);
    if (layout.fit && total() > layout.width) {
        measure(true);
        std::vector<std::size_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
            return columns[a].drop_order < columns[b].drop_order;
        });
        for (std::size_t c : order) {
            if (total() <= layout.width) break;
            if (columns[c].drop_order > 0) shown[c] = false;
        }
        for (std::size_t c = 0; c < n && total() > layout.width; ++c)
            if (shown[c] && columns[c].shrinkable)
                widths[c] = std::max(cols_of(headers[c]),
                                     std::max(8, widths[c] - (total() - layout.width)));
    }
    std::string out;
    const auto line = [&](const auto& cell) {
        std::string text = layout.indent;
        bool first = true;
        for (std::size_t c = 0; c < n; ++c) {
            if (!shown[c]) continue;
            if (!first) text += ' ';
            first = false;
            text += pad(cut(cell(c), widths[c]), widths[c], columns[c].align);
            if (columns[c].align == Align::left && c + 1 < n) text += ' ';
        }
        while (!text.empty() && text.back() == ' ')
            text.pop_back();
        out += text + '\n';
    };
    line([&](std::size_t c) { return headers[c]; });
    for (const auto& row : rows)
        line([&](std::size_t c) { return c < row.size() ? row[c] : std::string(); });
    return out;
}

std::string wrap(std::string_view lead, int lead_cols, std::string_view text, int width, int hang) {
    std::string out(lead);
    int used = lead_cols;
    bool line_empty = true;
    const std::string indent(static_cast<std::size_t>(std::max(hang, 0)), ' ');
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && text[i] == ' ')
            ++i;
        if (i >= text.size()) break;
        const std::size_t end = std::min(text.find(' ', i), text.size());
        const std::string_view word = text.substr(i, end - i);
        const int w = cols_of(word);
        if (!line_empty && used + 1 + w > width) {
            out += '\n' + indent;
            used = hang;
            line_empty = true;
        }
        if (!line_empty) {
            out += ' ';
            ++used;
        }
        out += word;
        used += w;
        line_empty = false;
        i = end;
    }
    return out + '\n';
}

} // namespace conncheck::cli::table
