// Sampling the collectors of a prove run through the core: one scan per tick for all of them,
// cookies remembered between ticks so that TIME_WAIT is attributed exactly.
#pragma once

#include "conncheck/analysis.hpp"
#include "conncheck/prove.hpp"
#include "conncheck/scan.hpp"

#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

namespace conncheck::prove {

// The processes of one collector (a reference collector is one pid; a command is its process
// tree) and the port of its own simulator.
struct CollectorProcesses {
    std::vector<pid_t> pids;
    std::uint16_t sim_port = 0;
};

// One socket list per collector: a socket several of its processes hold (fork, fd passing)
// counted once, by cookie.
[[nodiscard]] scan::ProcessSnapshot
merge_snapshots(const std::vector<const scan::ProcessSnapshot*>& parts);
// The counts of a merged snapshot, as analysis::analyse_process reports them. t_seconds and
// reconnects are left for the caller.
[[nodiscard]] Sample sample_from(const analysis::ProcessReport& report);

// TIME_WAIT sockets toward 127.0.0.1:port (or ::ffff:127.0.0.1:port) not already in `snapshot`
// (by cookie), added to its time_wait_by_peer. A collector's simulator serves only that
// collector, so such a socket is the collector's, even when no live socket of it is left to
// match the peer and its cookie was never seen live between two samples.
void add_time_wait_toward(scan::ProcessSnapshot& snapshot,
                          const std::vector<SocketRecord>& time_wait, std::uint16_t port);

class Sampler {
public:
    Sampler(scan::Config scan_config, std::size_t groups);
    // One Sample per group (nullopt where none of its processes could be scanned this tick).
    // Processes that exit during the scan are dropped and the scan retried; other errors
    // (permission, no socket source) are thrown as conncheck::Error. The scanner remembers the
    // cookies of live sockets between ticks, so their TIME_WAIT is attributed exactly.
    [[nodiscard]] std::vector<std::optional<Sample>>
    sample(const std::vector<CollectorProcesses>& groups);
    // Distinct sockets toward the group's simulator port seen so far (each one a connection).
    [[nodiscard]] std::uint64_t connections_seen(std::size_t group) const;
    [[nodiscard]] const proc::ProcFs& procfs() const { return scanner_.procfs(); }

private:
    scan::Scanner scanner_;
    analysis::Config analysis_config_;
    std::vector<std::unordered_set<std::uint64_t>> seen_;
};

} // namespace conncheck::prove
