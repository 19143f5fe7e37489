#include "watch_events.hpp"

#include "conncheck/error.hpp"

#include <fmt/core.h>

namespace conncheck::cli {

std::string events_off_reason(bool no_events, const SourceOptions& source) {
    if (no_events) return "turned off with --no-events";
    if (!source.replay.empty()) return "replaying recorded dumps";
    if (source.proc_root != "/proc") return "--proc-root is not the live /proc";
    return {};
}

EventFeed::EventFeed(const std::string& off_reason, const std::vector<pid_t>& pids)
    : reason_(off_reason) {
    if (!reason_.empty()) return;
    try {
        probe_.emplace(trace::ProbeConfig{}); // idle times come from tcp_info, not from events
        for (const pid_t pid : pids)
            probe_->add_target(pid);
    } catch (const Error& e) {
        probe_.reset();
        reason_ = e.what();
    }
}

void EventFeed::drain(watch::Session& session, std::chrono::steady_clock::time_point start) {
    if (!probe_) return;
    // steady_clock is CLOCK_MONOTONIC, the clock the probe stamps events with.
    const std::int64_t start_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(start.time_since_epoch()).count();
    probe_->drain([&](const trace::Event& e) {
        session.add_event(e, static_cast<std::int64_t>(e.time_ns / 1'000'000) - start_ms);
    });
    const auto counters = probe_->counters();
    if (!incomplete_ && (counters.lost_events != 0 || counters.untracked_connections != 0)) {
        incomplete_ = true;
        session.events_incomplete();
    }
}

void EventFeed::note_scan(const scan::Snapshot& snapshot) {
    if (probe_ && !probe_->follows_accepts() && scan::any_listening(snapshot))
        probe_->follow_accepts();
}

bool EventFeed::quiet_since_last_scan() {
    if (!probe_) return false;
    const auto now = probe_->counters();
    const bool quiet = at_last_scan_ && now.lost_events == 0 && now.untracked_connections == 0 &&
                       now.opened_connections == at_last_scan_->opened_connections &&
                       now.listens == at_last_scan_->listens;
    at_last_scan_ = now;
    return quiet;
}

std::string EventFeed::losses() const {
    if (!probe_) return {};
    const auto counters = probe_->counters();
    if (counters.lost_events == 0 && counters.untracked_connections == 0) return {};
    return fmt::format("connection events incomplete: {} lost (ring buffer full), {} "
                       "connections not followed (too many at once); their churn is counted by "
                       "cookie, their TIME_WAIT may be by peer",
                       counters.lost_events, counters.untracked_connections);
}

} // namespace conncheck::cli
