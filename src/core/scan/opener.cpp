#include "conncheck/scan/opener.hpp"

#include "conncheck/diag/netlink.hpp"
#include "conncheck/diag/proc_net.hpp"
#include "conncheck/diag/replay.hpp"
#include "conncheck/error.hpp"
#include "conncheck/fd.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>

namespace conncheck::scan {

SourceOpener::SourceOpener(const Config& config, const proc::ProcFs& procfs, Snapshot& snapshot,
                           int record_fd)
    : config_(config), procfs_(procfs), snapshot_(snapshot), self_netns_(procfs.self_netns()),
      record_fd_(record_fd) {}

std::unique_ptr<diag::SocketSource> SourceOpener::open(const NetnsGroup& group) {
    if (!config_.replay_path.empty()) return diag::open_replay(config_.replay_path);
    if (config_.source == SourcePreference::proc_net) return proc_net(group);
    try {
        diag::NetlinkOptions options;
        options.record_fd = record_fd_;
        options.record_path = config_.record_path;
        if (group.netns == 0 || group.netns == self_netns_) return diag::open_netlink(options);
        const std::string ns_path = procfs_.path(group.representative, "ns/net");
        // O_NONBLOCK: a FIFO planted in a --proc-root tree fails setns() instead of hanging.
        UniqueFd ns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
        if (ns.get() < 0) throw_errno("cannot open " + ns_path, errno);
        options.netns_fd = ns.get();
        return diag::open_netlink(options);
    } catch (const Error& e) {
        const bool may_fall_back =
            config_.source == SourcePreference::automatic &&
            (e.code() == Errc::source_unavailable || e.code() == Errc::permission_denied);
        if (!may_fall_back) throw;
        snapshot_.warnings.push_back(std::string(e.what()) + "; read " +
                                     procfs_.path(group.representative, "net/tcp") +
                                     " instead (no idle times or socket memory)");
        return proc_net(group);
    }
}

std::unique_ptr<diag::SocketSource> SourceOpener::proc_net(const NetnsGroup& group) {
    return diag::open_proc_net(procfs_.root(), group.representative);
}

} // namespace conncheck::scan
