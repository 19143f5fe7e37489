// A small XML well-formedness check for the SVG that `prove --svg` writes: one root element,
// properly nested and matching tags, quoted attributes without duplicates, only the predefined
// or numeric entities, no '<' in text or attribute values. Enough for our own output; not a
// general parser (no DTDs, CDATA or processing instructions other than the declaration).
#pragma once

#include <cctype>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace xmlcheck {

// Empty when well-formed, else what is wrong and where.
inline std::string problem(std::string_view doc) {
    std::size_t i = 0;
    const auto at = [&](const std::string& what) {
        return what + " at offset " + std::to_string(i);
    };
    const auto name_char = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ':' ||
               c == '.';
    };
    const auto skip_space = [&] {
        while (i < doc.size() && std::isspace(static_cast<unsigned char>(doc[i])))
            ++i;
    };
    const auto read_name = [&]() -> std::string {
        const std::size_t start = i;
        if (i >= doc.size() || !(std::isalpha(static_cast<unsigned char>(doc[i])) || doc[i] == '_'))
            return {};
        while (i < doc.size() && name_char(doc[i]))
            ++i;
        return std::string(doc.substr(start, i - start));
    };
    // At '&': a predefined entity or a character reference.
    const auto entity = [&]() -> bool {
        const auto end = doc.find(';', i);
        if (end == std::string_view::npos || end - i > 10) return false;
        const std::string_view e = doc.substr(i + 1, end - i - 1);
        bool ok = e == "amp" || e == "lt" || e == "gt" || e == "quot" || e == "apos";
        if (!ok && e.size() > 1 && e[0] == '#') {
            ok = true;
            const bool hex = e[1] == 'x';
            for (std::size_t k = hex ? 2 : 1; k < e.size(); ++k)
                ok = ok && (hex ? std::isxdigit(static_cast<unsigned char>(e[k]))
                                : std::isdigit(static_cast<unsigned char>(e[k])));
            ok = ok && e.size() > (hex ? 2U : 1U);
        }
        if (ok) i = end + 1;
        return ok;
    };

    if (doc.substr(0, 5) == "<?xml") {
        const auto end = doc.find("?>");
        if (end == std::string_view::npos) return "unterminated XML declaration";
        i = end + 2;
    }
    std::vector<std::string> open;
    bool root_seen = false;
    while (i < doc.size()) {
        if (doc[i] != '<') {
            if (open.empty() && !std::isspace(static_cast<unsigned char>(doc[i])))
                return at("text outside the root element");
            if (doc[i] == '&') {
                if (!entity()) return at("bad entity");
                continue;
            }
            if (doc[i] == '>') return at("stray '>'");
            ++i;
            continue;
        }
        if (doc.substr(i, 4) == "<!--") {
            const auto end = doc.find("-->", i + 4);
            if (end == std::string_view::npos) return at("unterminated comment");
            i = end + 3;
            continue;
        }
        if (doc.substr(i, 2) == "</") {
            i += 2;
            const std::string name = read_name();
            skip_space();
            if (i >= doc.size() || doc[i] != '>') return at("bad end tag");
            ++i;
            if (open.empty() || open.back() != name)
                return at("end tag </" + name + "> does not match");
            open.pop_back();
            continue;
        }
        ++i;
        if (open.empty() && root_seen) return at("second root element");
        const std::string name = read_name();
        if (name.empty()) return at("bad tag name");
        std::set<std::string> attributes;
        for (;;) {
            const std::size_t before = i;
            skip_space();
            if (i >= doc.size()) return at("unterminated tag");
            if (doc[i] == '>') {
                ++i;
                open.push_back(name);
                break;
            }
            if (doc.substr(i, 2) == "/>") {
                i += 2;
                break;
            }
            if (before == i) return at("attributes need white space between them");
            const std::string attr = read_name();
            if (attr.empty()) return at("bad attribute name");
            if (!attributes.insert(attr).second) return at("duplicate attribute " + attr);
            skip_space();
            if (i >= doc.size() || doc[i] != '=') return at("attribute without '='");
            ++i;
            skip_space();
            if (i >= doc.size() || (doc[i] != '"' && doc[i] != '\'')) return at("unquoted value");
            const char quote = doc[i++];
            while (i < doc.size() && doc[i] != quote) {
                if (doc[i] == '<') return at("'<' in an attribute value");
                if (doc[i] == '&') {
                    if (!entity()) return at("bad entity in an attribute value");
                    continue;
                }
                ++i;
            }
            if (i >= doc.size()) return at("unterminated attribute value");
            ++i;
        }
        root_seen = true;
    }
    if (!open.empty()) return "unclosed element <" + open.back() + ">";
    if (!root_seen) return "no root element";
    return {};
}

} // namespace xmlcheck
