// The engine behind `conncheck prove`: time series of socket counts per collector, their growth
// by least squares and the verdict rule. Pure: no clocks, no terminals; the writers are in
// prove_output, and the sampler (prove_sample) is the only part that reads the kernel.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace conncheck::prove {

struct Sample {
    double t_seconds = 0; // since the collectors were started
    std::uint64_t established = 0;
    std::uint64_t close_wait = 0;
    std::uint64_t time_wait = 0;
    std::uint64_t total = 0; // every TCP socket of the collector, any state
    std::uint64_t kernel_memory_bytes = 0;
    std::uint64_t reconnects = 0; // so far

    // What a leak leaves behind: connections the collector still holds.
    [[nodiscard]] std::uint64_t open() const { return established + close_wait; }
};

enum class Metric { established, close_wait, time_wait, total, kernel_memory_bytes, reconnects };
inline constexpr std::array<Metric, 6> all_metrics{Metric::established,         Metric::close_wait,
                                                   Metric::time_wait,           Metric::total,
                                                   Metric::kernel_memory_bytes, Metric::reconnects};
// "close_wait" (CSV columns, JSON keys)
[[nodiscard]] std::string_view metric_name(Metric m);
// "CLOSE_WAIT", "kernel memory" (table headings)
[[nodiscard]] std::string_view metric_label(Metric m);
[[nodiscard]] double metric_value(const Sample& s, Metric m);

// Slope of a metric over the run, per hour.
[[nodiscard]] double growth_per_hour(const std::vector<Sample>& samples, Metric m);
// Slope of ESTABLISHED + CLOSE_WAIT over the run, per hour.
[[nodiscard]] double open_growth_per_hour(const std::vector<Sample>& samples);

// A collector leaks when, over the run,
//   reconnects >= min_reconnects                      (the faults exercised its reconnect path),
//   final ESTABLISHED + CLOSE_WAIT > open_bound       (it holds more than one connection plus one
//                                                      being replaced), and
//   least-squares rise of ESTABLISHED + CLOSE_WAIT     (slope x sampled time span)
//     > min_rise                                      (the count grows, not a fixed pool).
// It shows no leak when it reconnected at least min_reconnects times and does not meet the rest.
// With fewer reconnects the run proves nothing either way: inconclusive.
// TIME_WAIT is left out: the kernel frees it after 60 s whatever the program does.
struct VerdictRule {
    std::uint64_t min_reconnects = 3;
    std::uint64_t open_bound = 2;
    double min_rise = 2.0;
};

enum class Verdict { leaks, no_leak, inconclusive };
[[nodiscard]] std::string_view verdict_name(Verdict v); // "leaks", "no leak", "inconclusive"

struct Judgement {
    Verdict verdict = Verdict::inconclusive;
    std::uint64_t open_final = 0;
    double open_rise = 0; // least-squares rise of ESTABLISHED + CLOSE_WAIT over the run
    double open_per_hour = 0;
    std::uint64_t reconnects = 0;
    std::string reason; // one line, from numbers only
};
[[nodiscard]] Judgement judge(const std::vector<Sample>& samples, std::uint64_t reconnects,
                              const VerdictRule& rule);

struct CollectorRun {
    std::string key;   // "leaky", "fixed", "command": CSV and JSON
    std::string label; // "leaky", "fixed", "your command": table and chart
    pid_t pid = 0;
    std::uint16_t port = 0; // its simulator's port
    std::vector<Sample> samples;
    std::uint64_t reconnects = 0;          // final figure
    std::string reconnects_source;         // "totals", "log" or "cookies"
    std::uint64_t connections_seen = 0;    // distinct sockets toward its simulator seen in samples
    std::optional<std::uint64_t> messages; // from the collector's totals line
};

struct RunInfo {
    double duration_seconds = 0;
    std::uint64_t fault_after_ms = 0;
    std::uint64_t interval_ms = 0;
    unsigned rate = 0;
    std::string faults;
    std::string command; // sanitized, empty without --cmd
    std::int64_t started_unix = 0;
    bool interrupted = false;
};

struct Report {
    RunInfo run;
    VerdictRule rule;
    std::vector<CollectorRun> collectors;
    std::vector<pid_t> simulator_pids;
    std::uint64_t left_behind = 0; // processes of the run still alive after it stopped them
};

// Without a command: the demonstration held (leaky leaks, fixed shows no leak). With one: the
// command shows no leak.
struct Outcome {
    bool ok = false;
    std::string summary; // one line
};
[[nodiscard]] Outcome decide(const Report& report);

} // namespace conncheck::prove
