// The judgement of one `conncheck check` run: the processes' reports against the thresholds and
// against what the previous run saw (growth, restarts), and the state the next run starts from.
// No I/O and no clocks here: the caller passes the time in and words the result.
#pragma once

#include "conncheck/analysis.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/statefile.hpp"
#include "conncheck/thresholds.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace conncheck::check {

using thresholds::Status;

struct Thresholds {
    std::optional<thresholds::Range> close_wait_warning;
    std::optional<thresholds::Range> close_wait_critical;
    std::optional<thresholds::Range> established_warning;
    std::optional<thresholds::Range> established_critical;
    std::optional<thresholds::Range> stale_warning;
    std::optional<thresholds::Range> stale_critical;
    std::optional<thresholds::GrowthThreshold> growth_warning;
    std::optional<thresholds::GrowthThreshold> growth_critical;
    // Percent of the soft RLIMIT_NOFILE, above 0 and at most 100: raised when the open fds reach
    // it, as the audit's fd_pressure finding is.
    std::optional<double> fds_warning_percent;
    std::optional<double> fds_critical_percent;
    // TCP sockets in state CLOSE the process still holds (analysis::ProcessReport::
    // held_after_close), a leak like CLOSE_WAIT.
    std::optional<thresholds::Range> held_after_close_warning;
    std::optional<thresholds::Range> held_after_close_critical;
};

// The fd count a percentage of `limit` allows before it alerts, as a threshold range: the
// largest count below the percentage ("23" for 80% of 30, since 24 is 80%). nullopt without a
// limit or a percentage.
[[nodiscard]] std::optional<thresholds::Range> fds_range(std::optional<double> percent,
                                                         std::uint64_t limit);

// Shorter spans turn one connection more or less into a rate of dozens per hour: growth is shown
// from the second run on, but only rated (and alerted on) over at least this long.
inline constexpr std::int64_t min_growth_span_ms = 10 * 60 * 1000;

// What one process held in this run: its report and the cookies of its sockets, which the next
// run needs to attribute the TIME_WAIT these sockets leave behind.
struct Observed {
    analysis::ProcessReport report;
    std::vector<std::uint64_t> cookies;
    // CLOSE_WAIT sockets the peer closed too recently to count (see young_close_wait).
    std::uint64_t close_wait_young = 0;
};

// The cookies of every socket the snapshot attributed to the process.
[[nodiscard]] std::vector<std::uint64_t> cookies_of(const scan::ProcessSnapshot& process);

// CLOSE_WAIT sockets of the process that heard from their peer (data or an ACK, the FIN's
// included) less than `min_age_ms` ago: a pool whose server has just closed idle keep-alives
// has not leaked them yet. Sockets without tcp_info are old enough.
[[nodiscard]] std::uint64_t young_close_wait(const scan::ProcessSnapshot& process,
                                             std::uint32_t min_age_ms);

// Why growth was or was not measured for a process.
enum class GrowthBasis {
    measured,         // Growth::span_ms is set
    no_history,       // the same instance, but no earlier sample to compare with
    clock_moved_back, // the earliest usable sample is not older than now
    first_run,        // no state file yet
    new_process,      // an instance the previous run did not see
    restarted,        // an instance that replaced one the previous run saw
};

struct CountGrowth {
    std::int64_t delta = 0;
    double per_hour = 0; // meaningful when Growth::rated
    // With three samples or more in the history: whether they show real growth (real_growth()
    // on the line through them), not a bounded count that happens to stand higher now.
    bool real = true;
    Status status = Status::ok; // OK unless rated, real and over a growth threshold
};

struct Growth {
    GrowthBasis basis = GrowthBasis::first_run;
    std::int64_t span_ms = 0;
    std::int64_t since_ms = 0; // Unix time of the sample compared with
    bool rated = false;        // span_ms >= min_growth_span_ms
    CountGrowth established;
    CountGrowth close_wait;
    CountGrowth held_after_close;
    CountGrowth leaked; // analysis::leaked_sockets(): CLOSE_WAIT + held after close + stale
    std::int64_t stale_delta = 0;
    std::int64_t fds_delta = 0;
};

// One perfdata item, its thresholds in range syntax as typed ("" for none).
struct Perfdata {
    std::string label;
    double value = 0;
    std::string warn;
    std::string crit;
    std::optional<double> min;
    std::optional<double> max;
};

struct ProcessVerdict {
    analysis::ProcessReport report;
    Status status = Status::ok;
    Status close_wait = Status::ok;
    Status established = Status::ok;
    Status stale = Status::ok;
    Status fds = Status::ok;
    Status held_after_close = Status::ok;
    std::uint64_t close_wait_counted = 0; // CLOSE_WAIT old enough to count
    // Set when this instance replaced one the previous run saw: that one's pid (may be the same).
    std::optional<pid_t> replaced_pid;
    Growth growth;
    std::vector<Perfdata> perfdata;
};

// An instance the previous run saw that this run did not match.
struct Gone {
    pid_t pid = 0;
    std::string comm; // raw
};

struct Verdict {
    Status status = Status::ok;            // the worst of the processes'
    std::vector<ProcessVerdict> processes; // in the order observed
    std::vector<Gone> gone;
    statefile::State next;
};

struct Run {
    std::string selector;    // the selector key the state file is written for
    std::int64_t now_ms = 0; // Unix time of the scan
};

[[nodiscard]] Verdict evaluate(const std::vector<Observed>& observed,
                               const std::optional<statefile::State>& previous,
                               const Thresholds& thresholds, const Run& run);

} // namespace conncheck::check
