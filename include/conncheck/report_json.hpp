// The documented JSON form of a report ("schema": 1). See man/conncheck.1.scd, JSON OUTPUT.
#pragma once

#include "conncheck/analysis.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace conncheck::report {

inline constexpr int json_schema = 1;

[[nodiscard]] nlohmann::json to_json(const analysis::ProcessReport& report);
[[nodiscard]] nlohmann::json to_json(const analysis::HostReport& report);
// The same document as to_json(report).dump(2), written as it is made: one process, and one of
// its peers, at a time, so a host-wide report never exists twice in memory.
void write_json(std::FILE* out, const analysis::HostReport& report);
[[nodiscard]] nlohmann::json to_json(const Endpoint& endpoint); // "1.2.3.4:9443"
[[nodiscard]] nlohmann::json
states_json(const analysis::StateCounts& states); // every state, 0s too
// {"total", "tcp", "udp", "unix", "other"}: socket fds in no TCP state.
[[nodiscard]] nlohmann::json other_sockets_json(const scan::OtherSockets& other);

} // namespace conncheck::report
