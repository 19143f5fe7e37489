#include "table.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

using namespace conncheck::cli::table;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

std::size_t longest(const std::string& text) {
    std::size_t n = 0;
    for (const auto& l : lines_of(text))
        n = std::max(n, l.size());
    return n;
}

const std::vector<Column> peer_columns{
    {"PEER", "", Align::left, 0, true},
    {"ESTAB", "", Align::right, 0, false},
    {"CLOSE_WAIT", "CLOSE_W", Align::right, 0, false},
    {"TIME_WAIT", "TIME_W", Align::right, 3, false},
    {"OTHER", "", Align::right, 1, false},
    {"IDLE", "", Align::right, 4, false},
    {"UNREAD", "", Align::right, 2, false},
};
const std::vector<std::vector<std::string>> peer_rows{
    {"[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443", "30", "12", "40", "0", "1m07s-8m12s", "0 B"},
    {"127.0.0.1:8080", "1", "0", "0", "0", "3s", "512 B"},
};

} // namespace

TEST_CASE("a table that fits is printed whole, aligned, without trailing blanks") {
    const std::string out = render(peer_columns, peer_rows, Layout{200, true, "  "});
    const auto lines = lines_of(out);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].starts_with("  PEER"));
    CHECK(lines[0].find("CLOSE_WAIT") != std::string::npos);
    CHECK(lines[0].find("UNREAD") != std::string::npos);
    for (const auto& l : lines) {
        CHECK(l.back() != ' ');
        CHECK(l.size() == lines[0].size());
    }
    // Right-aligned columns end where their headers end.
    CHECK(lines[1].find("1m07s-8m12s") + 11 == lines[0].find("UNREAD") - 1);
}

TEST_CASE("narrow terminals drop columns in the stated order, then cut the peer") {
    const std::string full = render(peer_columns, peer_rows, Layout{200, true, "  "});
    for (int width : {100, 90, 80, 70, 60, 50, 40}) {
        CAPTURE(width);
        const std::string out = render(peer_columns, peer_rows, Layout{width, true, "  "});
        CHECK(longest(out) <= static_cast<std::size_t>(width));
        const std::string head = lines_of(out)[0];
        // Never dropped.
        CHECK(head.find("PEER") != std::string::npos);
        CHECK(head.find("ESTAB") != std::string::npos);
        CHECK(head.find("CLOSE_W") != std::string::npos);
        // Dropped in order: a later one only once the earlier ones are gone.
        const bool other = head.find("OTHER") != std::string::npos;
        const bool unread = head.find("UNREAD") != std::string::npos;
        const bool time_wait = head.find("TIME_W") != std::string::npos;
        const bool idle = head.find("IDLE") != std::string::npos;
        if (other) CHECK(unread);
        if (unread) CHECK(time_wait);
        if (time_wait) CHECK(idle);
        // A cell is shown whole or not at all: "1m07s-8m12s" is never split.
        if (idle) CHECK(out.find("1m07s-8m12s") != std::string::npos);
    }
    const std::string at40 = render(peer_columns, peer_rows, Layout{40, true, "  "});
    CHECK(at40.find("...") != std::string::npos); // the long IPv6 peer was cut
    CHECK(at40.find("127.0.0.1:8080") != std::string::npos);
}

TEST_CASE("off a terminal the layout does not depend on the width") {
    const std::string at40 = render(peer_columns, peer_rows, Layout{40, false, "  "});
    const std::string at200 = render(peer_columns, peer_rows, Layout{200, false, "  "});
    CHECK(at40 == at200);
    CHECK(at40.find("CLOSE_WAIT") != std::string::npos);
    CHECK(at40.find("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443") != std::string::npos);
}

TEST_CASE("prose wraps at word boundaries with a hanging indent") {
    const std::string text = "CLOSE_WAIT connections have been idle 1m07s-8m12s: the process "
                             "never closed them after the peer did";
    const std::string out = wrap("  WARNING  close_wait       ", 28, text, 60, 28);
    const auto lines = lines_of(out);
    REQUIRE(lines.size() >= 2);
    std::string words;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        CHECK(lines[i].size() <= 60);
        if (i > 0) CHECK(lines[i].starts_with(std::string(28, ' ')));
        if (i > 0) CHECK(lines[i][28] != ' ');
        words += (i ? " " : "") + lines[i].substr(28);
    }
    CHECK(words == text); // nothing lost, no word split
    // A word longer than the line overflows on its own line rather than being broken.
    const std::string long_word = wrap("", 0, "a " + std::string(30, 'x') + " b", 20, 2);
    CHECK(long_word == "a\n  " + std::string(30, 'x') + "\n  b\n");
}
