// Monitoring Plugins threshold ranges and plugin status, as Nagios, Icinga and Zabbix agents read
// them (https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace conncheck::thresholds {

// `10` alerts outside 0..10, `10:` below 10, `~:10` above 10, `10:20` outside 10..20, `@10:20`
// inside 10..20. Both ends are inclusive: 10 does not alert for `10`, it does for `@10:20`.
struct Range {
    double start = 0;
    double end = 0;
    bool start_infinite = false; // `~:`
    bool end_infinite = true;    // `10:`
    bool alert_inside = false;   // `@`
    std::string text;            // as typed, repeated in perfdata

    [[nodiscard]] bool alerts(double value) const;
};

// Throws Error(usage) naming the text and what is wrong with it.
[[nodiscard]] Range parse_range(std::string_view text);

// A growth threshold `N/h`: alerts when a count grows faster than N per hour.
struct GrowthThreshold {
    double per_hour = 0;
    std::string text; // as typed: "1.5/h"

    [[nodiscard]] bool alerts(double rate_per_hour) const { return rate_per_hour > per_hour; }
    // The same threshold in range syntax for perfdata: "~:1.5".
    [[nodiscard]] std::string as_range() const;
};

// Throws Error(usage) for anything but a non-negative number followed by "/h".
[[nodiscard]] GrowthThreshold parse_growth(std::string_view text);

// Plugin states; the numbers are the exit codes.
enum class Status { ok = 0, warning = 1, critical = 2, unknown = 3 };

// "OK", "WARNING", "CRITICAL", "UNKNOWN"
[[nodiscard]] std::string_view status_name(Status status);
// The more severe of two: CRITICAL > UNKNOWN > WARNING > OK (Icinga 2's order: a known
// CRITICAL is never hidden behind an UNKNOWN).
[[nodiscard]] Status worst(Status a, Status b);

// CRITICAL when `critical` alerts, else WARNING when `warning` alerts, else OK.
[[nodiscard]] Status evaluate(double value, const std::optional<Range>& warning,
                              const std::optional<Range>& critical);

// One perfdata item: `label=value[uom];[warn];[crit];[min];[max]`. The label is quoted when it
// holds a space or a quote; an unset min or max stays empty.
[[nodiscard]] std::string perfdata(std::string_view label, double value, std::string_view uom,
                                   std::string_view warn, std::string_view crit,
                                   std::optional<double> min, std::optional<double> max);

// A number as perfdata and plugin text print it: no exponent, no trailing zeros ("12", "1.7").
[[nodiscard]] std::string format_number(double value, int max_decimals = 3);

} // namespace conncheck::thresholds
