#include "conncheck/thresholds.hpp"

#include "conncheck/error.hpp"

#include <charconv>
#include <cmath>
#include <fmt/core.h>

namespace conncheck::thresholds {

namespace {

[[noreturn]] void bad_range(std::string_view text, std::string_view why) {
    throw Error(Errc::usage, fmt::format("invalid threshold range '{}': {} (examples: 10, 10:, "
                                         "~:10, 10:20, @10:20)",
                                         text, why));
}

// A finite decimal number and nothing else ("5", "-1.5", "+2", "0.25").
std::optional<double> parse_number(std::string_view text) {
    if (!text.empty() && text.front() == '+') text.remove_prefix(1);
    if (text.empty() || text.front() == '+') return std::nullopt;
    double value = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value, std::chars_format::fixed);
    if (ec != std::errc{} || ptr != end || !std::isfinite(value)) return std::nullopt;
    return value;
}

} // namespace

bool Range::alerts(double value) const {
    const bool inside = (start_infinite || value >= start) && (end_infinite || value <= end);
    return alert_inside ? inside : !inside;
}

Range parse_range(std::string_view text) {
    Range range;
    range.text = std::string(text);
    std::string_view rest = text;
    if (rest.empty()) bad_range(text, "it is empty");
    if (rest.front() == '@') {
        range.alert_inside = true;
        rest.remove_prefix(1);
        if (rest.empty()) bad_range(text, "nothing after '@'");
    }
    const auto colon = rest.find(':');
    if (colon == std::string_view::npos) {
        const auto end = parse_number(rest);
        if (!end) bad_range(text, "not a number");
        range.end = *end;
        range.end_infinite = false;
    } else {
        const auto start_text = rest.substr(0, colon);
        const auto end_text = rest.substr(colon + 1);
        if (end_text.find(':') != std::string_view::npos) bad_range(text, "more than one ':'");
        if (start_text == "~") {
            range.start_infinite = true;
        } else if (!start_text.empty()) {
            const auto start = parse_number(start_text);
            if (!start) bad_range(text, fmt::format("'{}' is not a number or '~'", start_text));
            range.start = *start;
        }
        if (!end_text.empty()) {
            const auto end = parse_number(end_text);
            if (!end) bad_range(text, fmt::format("'{}' is not a number", end_text));
            range.end = *end;
            range.end_infinite = false;
        }
    }
    if (!range.start_infinite && !range.end_infinite && range.start > range.end)
        bad_range(text, "the start is greater than the end");
    return range;
}

std::string GrowthThreshold::as_range() const {
    return "~:" + format_number(per_hour);
}

GrowthThreshold parse_growth(std::string_view text) {
    constexpr std::string_view suffix = "/h";
    const bool has_suffix = text.size() > suffix.size() && text.ends_with(suffix);
    const auto number =
        has_suffix ? parse_number(text.substr(0, text.size() - suffix.size())) : std::nullopt;
    if (!number || *number < 0)
        throw Error(Errc::usage,
                    fmt::format("invalid growth threshold '{}': expected a number of connections "
                                "per hour such as 5/h or 0.5/h",
                                text));
    return GrowthThreshold{*number, std::string(text)};
}

std::string_view status_name(Status status) {
    switch (status) {
    case Status::ok:
        return "OK";
    case Status::warning:
        return "WARNING";
    case Status::critical:
        return "CRITICAL";
    case Status::unknown:
        return "UNKNOWN";
    }
    return "UNKNOWN";
}

Status worst(Status a, Status b) {
    const auto rank = [](Status s) {
        switch (s) {
        case Status::ok:
            return 0;
        case Status::warning:
            return 1;
        case Status::unknown:
            return 2;
        case Status::critical:
            return 3;
        }
        return 2;
    };
    return rank(a) >= rank(b) ? a : b;
}

Status evaluate(double value, const std::optional<Range>& warning,
                const std::optional<Range>& critical) {
    if (critical && critical->alerts(value)) return Status::critical;
    if (warning && warning->alerts(value)) return Status::warning;
    return Status::ok;
}

std::string format_number(double value, int max_decimals) {
    std::string out = fmt::format("{:.{}f}", value, max_decimals);
    if (out.find('.') != std::string::npos) {
        while (out.back() == '0')
            out.pop_back();
        if (out.back() == '.') out.pop_back();
    }
    if (out == "-0") out = "0";
    return out;
}

std::string perfdata(std::string_view label, double value, std::string_view uom,
                     std::string_view warn, std::string_view crit, std::optional<double> min,
                     std::optional<double> max) {
    std::string quoted;
    const bool needs_quotes = label.find_first_of(" '=") != std::string_view::npos;
    if (needs_quotes) {
        quoted += '\'';
        for (const char c : label) {
            if (c == '\'') quoted += '\''; // a quote inside a label is written twice
            quoted += c;
        }
        quoted += '\'';
    } else {
        quoted = std::string(label);
    }
    return fmt::format("{}={}{};{};{};{};{}", quoted, format_number(value), uom, warn, crit,
                       min ? format_number(*min) : "", max ? format_number(*max) : "");
}

} // namespace conncheck::thresholds
