// `trace --json`: one object per event, one per line, and the ledger last ("type": "ledger").
// Times are UTC wall-clock strings with milliseconds; the kernel's monotonic timestamps are turned
// into them with one offset taken when the trace starts.
#pragma once

#include "conncheck/trace/event.hpp"
#include "conncheck/trace/ledger.hpp"
#include "conncheck/trace/probe.hpp"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace conncheck::trace {

// CLOCK_REALTIME minus CLOCK_MONOTONIC now, in ns.
[[nodiscard]] std::int64_t wall_clock_offset_ns();
// "2026-11-28T09:40:11.203Z" for a CLOCK_MONOTONIC time.
[[nodiscard]] std::string wall_time(std::uint64_t monotonic_ns, std::int64_t offset_ns);

// wall_time() for a stream of times: the date and time of day are worked out once a second.
class WallClock {
public:
    explicit WallClock(std::int64_t offset_ns) : offset_(offset_ns) {}
    void append(std::string& out, std::uint64_t monotonic_ns);

private:
    std::int64_t offset_;
    std::int64_t second_ = std::numeric_limits<std::int64_t>::min();
    char prefix_[19] = {}; // "2026-11-28T09:40:11"
};

// {"text", "origin", "trust", "address", "function", "file", "line", "module"}: texts from the
// target sanitized, unknown ones null.
[[nodiscard]] nlohmann::json frame_json(const Frame& frame);
// {"frames": [...], "complete", "stops": why it ends (null when complete), "note"}.
[[nodiscard]] nlohmann::json call_site_json(const CallSite& site);
// trace --json's event lines, appended to a buffer the caller writes out in one piece: trace
// prints thousands a second.
class EventJsonWriter {
public:
    explicit EventJsonWriter(std::int64_t offset_ns) : clock_(offset_ns) {}
    // One event as one line of JSON, with its newline. `site` is used for opened events only.
    void append(std::string& out, const Event& event, const CallSite& site);

private:
    WallClock clock_;
};
// One event's line without the newline.
[[nodiscard]] std::string event_json(const Event& event, const CallSite& site,
                                     std::int64_t offset_ns);
[[nodiscard]] nlohmann::json ledger_json(const LedgerReport& report, const ProbeCounters& counters,
                                         std::int64_t offset_ns);

} // namespace conncheck::trace
