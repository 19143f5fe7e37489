// The state of one `conncheck watch` run: per process, the history of every figure over the
// window, the cookie tracker and the last analysis. Fed one snapshot per tick; yields Frames.
// No clocks or terminals here: the caller passes the times in.
#pragma once

#include "conncheck/analysis.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/trace/event.hpp"
#include "conncheck/watch/events.hpp"
#include "conncheck/watch/frame.hpp"
#include "conncheck/watch/tracker.hpp"
#include "conncheck/watch/trend.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

namespace conncheck::watch {

struct Options {
    std::int64_t interval_ms = 1000;
    std::int64_t window_ms = 600'000;
    analysis::Config analysis;
    ProjectionRules projection;
    // A slope over less history than this (or half the window, if shorter) is noise, not shown.
    std::int64_t min_slope_span_ms = 60'000;
    // The watched processes' connection events arrive through add_event(), from before the first
    // update(): churn, TIME_WAIT and ages of the connections they open are exact.
    bool events = false;
};

struct FrameOptions {
    std::size_t spark_points = 0; // fill Row::spark with at most this many points; 0: none
    PeerSort peer_sort = PeerSort::count;
    std::size_t max_peers = 20;
};

class Session {
public:
    explicit Session(Options options);

    // One tick. `now_ms` is monotonic, `unix_seconds` the wall clock for display. Every process
    // in the snapshot is observed; a watched pid missing from it is left as it was.
    void update(const scan::Snapshot& snapshot, std::int64_t now_ms, std::int64_t unix_seconds);
    // One connection event, in the kernel's order; `t_ms` on the clock update() is given.
    void add_event(const trace::Event& event, std::int64_t t_ms) { events_.add(event, t_ms); }
    // Some events were lost: a TIME_WAIT nobody saw open may still be the process's.
    void events_incomplete() { events_.set_incomplete(); }
    // The process is gone: keep its last figures, drop its churn.
    void process_exited(pid_t pid, std::int64_t now_ms);

    [[nodiscard]] Frame frame(const FrameOptions& options = {}) const;
    [[nodiscard]] std::uint64_t ticks() const { return tick_; }
    // Watched processes not known to have exited, by pid.
    [[nodiscard]] std::vector<pid_t> running() const;
    [[nodiscard]] const CookieTracker& tracker() const { return tracker_; }

private:
    struct Figure {
        explicit Figure(std::int64_t window_ms) : series(window_ms) {}
        Series series;
        double first = 0;
        double previous = 0;
        double current = 0;
        bool started = false;
        void add(std::int64_t now_ms, double value);
    };
    struct History {
        ProcessFrame last; // the figures of the latest tick, kept when the process exits
        analysis::StateCounts counts;
        std::map<TcpState, Figure> states; // only states seen so far
        std::optional<Figure> fds;         // also the clock that backfills a state seen late
        std::optional<Figure> leaked;      // analysis::leaked_sockets(), what projections follow
        std::uint64_t start_ticks = 0;
    };

    void observe(const scan::ProcessSnapshot& process, std::int64_t now_ms);
    void add_ages(std::vector<PeerFrame>& peers, const scan::ProcessSnapshot& process) const;
    [[nodiscard]] Row make_row(const Figure& figure, const FrameOptions& options) const;
    Figure& state_figure(std::map<TcpState, Figure>& figures, TcpState state,
                         const Figure& clock) const;

    Options options_;
    CookieTracker tracker_;
    ConnectionEvents events_;
    std::map<pid_t, History> processes_; // ordered by pid: stable output
    std::map<TcpState, Figure> totals_;
    std::optional<Figure> total_fds_;
    std::int64_t first_ms_ = 0;
    std::int64_t now_ms_ = 0;
    std::int64_t unix_seconds_ = 0;
    std::uint64_t tick_ = 0;
    std::string source_;
    bool has_tcp_info_ = true;
    bool has_cookies_ = true;
    std::vector<std::string> warnings_;
};

// The states a watch always shows, whether or not they occur.
[[nodiscard]] bool always_shown(TcpState state);

} // namespace conncheck::watch
