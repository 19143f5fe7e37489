// The kernel seam: the interface of everything that yields parsed TCP sockets. One
// implementation speaks NETLINK_SOCK_DIAG through libmnl (netlink.hpp), one replays bytes recorded
// from it (replay.hpp), one reads /proc/PID/net/tcp{,6} when sock_diag is not available
// (proc_net.hpp).
#pragma once

#include "conncheck/tcp.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace conncheck::diag {

struct DumpRequest {
    // AF_INET or AF_INET6; AF_UNSPEC (sources that can_target()) asks for both in one walk of
    // the kernel's tables, which a per-family dump walks whole each time.
    std::uint8_t family = 0;
    std::uint32_t states = all_states; // bitmask of state_bit(); the kernel filters for us
    bool want_info = true;             // INET_DIAG_INFO (struct tcp_info)
    bool want_mem = true;              // INET_DIAG_SKMEMINFO
    // Non-empty (sources that can_target()): only sockets created in one of these cgroup v2
    // ids, filtered in the kernel (INET_DIAG_BC_CGROUP_COND). TIME_WAIT and request sockets
    // carry no cgroup and never match.
    std::vector<std::uint64_t> cgroups{};
};

class DumpSink {
public:
    virtual ~DumpSink();
    virtual void on_socket(const SocketRecord& socket) = 0;
    // The kernel flagged the dump interrupted (NLM_F_DUMP_INTR) and the source starts this
    // request again: forget what on_socket delivered since the request began.
    virtual void on_restart() {}
};

// Counts are for the last attempt: a restart starts them again.
struct DumpStats {
    std::uint64_t messages = 0;  // inet_diag_msg replies parsed (a replay counts them before its
                                 // state filter)
    std::uint64_t malformed = 0; // replies too short or with a broken attribute, skipped
    unsigned retries = 0;        // dumps restarted after NLM_F_DUMP_INTR or lost replies
    bool inconsistent = false;   // still interrupted after the last retry
    std::uint64_t gone = 0;      // fetch(): sockets closed (or their 4-tuple reused) meanwhile
};

enum class SourceKind { netlink, replay, proc_net };
// "netlink", "replay" or "proc_net": said in reports.
[[nodiscard]] std::string_view source_name(SourceKind kind);

class SocketSource {
public:
    virtual ~SocketSource();
    // Streams every socket matching `request` to `sink`. Throws conncheck::Error.
    virtual DumpStats dump(const DumpRequest& request, DumpSink& sink) = 0;
    [[nodiscard]] virtual SourceKind kind() const = 0;
    [[nodiscard]] std::string_view name() const { return source_name(kind()); }
    // False where idle times and memory are unknown (/proc/net/tcp).
    [[nodiscard]] virtual bool has_tcp_info() const { return true; }
    // Whether dump() takes AF_UNSPEC and cgroup filters and fetch() answers: the live kernel,
    // not a recording (which holds whole dumps to replay) nor /proc/net/tcp.
    [[nodiscard]] virtual bool can_target() const { return false; }
    // Asks the kernel for each socket again by its 4-tuple, interface and cookie, without a
    // dump (sock_diag's exact request; many to one sendmsg), and streams the answers to `sink`
    // in any order. A socket in the listening table is not found this way: dump those. Sockets
    // that are gone are left out and counted in DumpStats::gone; one that turned into
    // TIME_WAIT meanwhile comes back as TIME_WAIT. Throws Error(source_unavailable) where
    // !can_target().
    virtual DumpStats fetch(std::span<const SocketRecord* const> sockets, bool want_info,
                            bool want_mem, DumpSink& sink);
};

} // namespace conncheck::diag
