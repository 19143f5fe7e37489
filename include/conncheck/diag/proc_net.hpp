// The fallback socket source: /proc/PID/net/tcp{,6} where sock_diag is not available. No idle
// times, no socket memory, no cookies.
#pragma once

#include "conncheck/diag/source.hpp"
#include "conncheck/tcp.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace conncheck::diag {

// /proc/PID/net/tcp and tcp6 (the namespace of PID), or /proc/net/* for pid 0.
[[nodiscard]] std::unique_ptr<SocketSource> open_proc_net(const std::string& proc_root, pid_t pid);

// One line of /proc/net/tcp or tcp6; nullopt for the header or a malformed line.
[[nodiscard]] std::optional<SocketRecord> parse_proc_net_line(std::string_view line,
                                                              std::uint8_t family);

} // namespace conncheck::diag
