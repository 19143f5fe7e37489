// The live socket source: NETLINK_SOCK_DIAG through libmnl, optionally in another network
// namespace, optionally recording every reply for replay.
#pragma once

#include "conncheck/diag/source.hpp"

#include <memory>
#include <string>

namespace conncheck::diag {

struct NetlinkOptions {
    int netns_fd = -1;        // open fd of /proc/PID/ns/net to dump that namespace, -1 for ours
    int record_fd = -1;       // append every reply datagram to this open recording (replayable,
                              // after its magic), -1 for none; borrowed, not closed
    std::string record_path;  // the recording's name, for messages
    unsigned max_retries = 3; // for NLM_F_DUMP_INTR and recv() ENOBUFS
};

// Throws Error(source_unavailable) when the kernel has no sock_diag for TCP, and
// Error(permission_denied) when the namespace cannot be entered.
[[nodiscard]] std::unique_ptr<SocketSource> open_netlink(const NetlinkOptions& options = {});

} // namespace conncheck::diag
