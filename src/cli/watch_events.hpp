// The connection events behind `conncheck watch`: trace's probe, started when this machine and
// these options allow, drained without blocking into the watch Session. When it cannot start,
// watch polls as it always did, and says why.
#pragma once

#include "common.hpp"

#include "conncheck/scan.hpp"
#include "conncheck/trace/probe.hpp"
#include "conncheck/watch/session.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace conncheck::cli {

// Why these options leave watch polling: --no-events, or sockets that are not this machine's
// live ones (a recording, a fixture /proc). Empty when events may be tried.
[[nodiscard]] std::string events_off_reason(bool no_events, const SourceOptions& source);

class EventFeed {
public:
    // Follows the connections `pids` open from now on, unless `off_reason` already says why not.
    EventFeed(const std::string& off_reason, const std::vector<pid_t>& pids);

    [[nodiscard]] bool active() const { return probe_.has_value(); }
    // Why watch polls: what stopped the probe from starting. Empty while active.
    [[nodiscard]] const std::string& polling_reason() const { return reason_; }
    // Readable when the ring buffer fills up between ticks; -1 when not active.
    [[nodiscard]] int wait_fd() const { return probe_ ? probe_->wait_fd() : -1; }
    // Hands every waiting event to the session, on watch's clock (ms since `start`). Never
    // blocks: the probe only reads what the kernel has already written.
    void drain(watch::Session& session, std::chrono::steady_clock::time_point start);
    // Follows accept() too once a watched process listens (trace::Probe::follow_accepts): from
    // the first scan that shows a listener, or the probe's own listen event, whichever is first.
    void note_scan(const scan::Snapshot& snapshot);
    // Whether, as far as the kernel has told, the processes opened, accepted and listened on
    // nothing since the previous call, without losing an event: then a scan may do without a
    // walk of the kernel's tables (scan::Scanner::scan_pids, quiet). Call it as a scan begins.
    [[nodiscard]] bool quiet_since_last_scan();
    // What the kernel could not follow or report, for the frame's warnings; empty when nothing.
    [[nodiscard]] std::string losses() const;

private:
    std::optional<trace::Probe> probe_;
    std::string reason_;
    bool incomplete_ = false;
    std::optional<trace::ProbeCounters> at_last_scan_;
};

} // namespace conncheck::cli
