// The socket source for one network namespace: netlink inside it, a recording, or
// /proc/PID/net/tcp when netlink is unavailable and the configuration allows the fallback.
#pragma once

#include "conncheck/diag/source.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/scan/sinks.hpp"

#include <cstdint>
#include <memory>

namespace conncheck::scan {

class SourceOpener {
public:
    // `record_fd`: the open --dump-netlink recording netlink sources append to, or -1.
    SourceOpener(const Config& config, const proc::ProcFs& procfs, Snapshot& snapshot,
                 int record_fd);
    // A fallback is noted in the snapshot's warnings.
    std::unique_ptr<diag::SocketSource> open(const NetnsGroup& group);

private:
    std::unique_ptr<diag::SocketSource> proc_net(const NetnsGroup& group);
    const Config& config_;
    const proc::ProcFs& procfs_;
    Snapshot& snapshot_;
    std::uint64_t self_netns_;
    int record_fd_;
};

} // namespace conncheck::scan
