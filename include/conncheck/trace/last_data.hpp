// When data last arrived on the connections a trace followed, asked of the kernel once at the end
// (tcp_info's tcpi_last_data_recv, from a scan of the processes) instead of followed packet by
// packet: a program on sk_data_ready would run for every packet any socket on the host receives.
#pragma once

#include "conncheck/scan.hpp"
#include "conncheck/trace/ledger.hpp"

#include <cstdint>
#include <vector>

namespace conncheck::trace {

struct LastData {
    std::uint64_t connection = 0;
    std::uint64_t time_ns = 0; // CLOCK_MONOTONIC
};

// The kernel counts idle time in whole ticks (4 ms at HZ=250, 10 ms at HZ=100): each time given
// is this much earlier than the idle time alone says, so never later than the truth. A zombie is
// a connection that fell silent before its successor opened; erring late would miss one that
// received its last bytes just before the reconnect.
inline constexpr std::uint64_t idle_tick_slack_ns = 10'000'000;

// The ledger's held connections found in `snapshot`, by cookie, or by their endpoints where the
// trace learned no cookie, with the time data last arrived: `scan_start_ns` (taken before the
// scan began) less the socket's idle time and idle_tick_slack_ns. Sockets without tcp_info give
// nothing.
[[nodiscard]] std::vector<LastData>
last_data_times(const Ledger& ledger, const scan::Snapshot& snapshot, std::uint64_t scan_start_ns);

} // namespace conncheck::trace
