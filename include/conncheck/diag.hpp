// The kernel seam: everything that yields parsed TCP sockets. One implementation speaks
// NETLINK_SOCK_DIAG through libmnl, one replays bytes recorded from it, one reads
// /proc/PID/net/tcp{,6} when sock_diag is not available.
#pragma once

#include "conncheck/tcp.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

struct nlmsghdr;

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
    virtual ~DumpSink() = default;
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

class SocketSource {
public:
    virtual ~SocketSource() = default;
    // Streams every socket matching `request` to `sink`. Throws conncheck::Error.
    virtual DumpStats dump(const DumpRequest& request, DumpSink& sink) = 0;
    // "netlink", "replay" or "proc_net": said in reports.
    [[nodiscard]] virtual std::string_view name() const = 0;
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

struct NetlinkOptions {
    int netns_fd = -1;        // open fd of /proc/PID/ns/net to dump that namespace, -1 for ours
    std::string record_path;  // append every reply datagram here (replayable), empty for none
    unsigned max_retries = 3; // for NLM_F_DUMP_INTR and recv() ENOBUFS
};

// Throws Error(source_unavailable) when the kernel has no sock_diag for TCP, and
// Error(permission_denied) when the namespace cannot be entered.
[[nodiscard]] std::unique_ptr<SocketSource> open_netlink(const NetlinkOptions& options = {});
// Replays a file written through NetlinkOptions::record_path. Throws Error(bad_file) from here
// when the file is unreadable, not a recording or truncated. Each family is answered with the
// first dump recorded for it (and that dump's retries, as they happened), filtered to the
// requested states and extensions here: record one dump of all states per family.
[[nodiscard]] std::unique_ptr<SocketSource> open_replay(const std::string& path);
// /proc/PID/net/tcp and tcp6 (the namespace of PID), or /proc/net/* for pid 0.
[[nodiscard]] std::unique_ptr<SocketSource> open_proc_net(const std::string& proc_root, pid_t pid);

// --- pure parsing, exposed for tests and fuzzing ---

// One SOCK_DIAG_BY_FAMILY reply, at any alignment; the caller guarantees nlmsg_len bytes are
// readable. False when it is too short to be an inet_diag_msg, is not AF_INET/AF_INET6, or an
// attribute overruns it. tcp_info is copied by the attribute's length and the rest left zero.
[[nodiscard]] bool parse_inet_diag(const nlmsghdr* message, SocketRecord& out);

enum class ChunkStatus { more, done, error };
struct ChunkResult {
    ChunkStatus status = ChunkStatus::more;
    int error = 0;            // errno carried by NLMSG_ERROR or NLMSG_DONE, positive; EPROTO
                              // for a wrong sequence number, ESRCH for a wrong port id
    bool interrupted = false; // some message carried NLM_F_DUMP_INTR
};
// Runs one received datagram through the same callbacks the live source uses (mnl_cb_run2 with
// our own NLMSG_DONE handler). seq/portid 0 accept any.
ChunkResult parse_chunk(const void* data, std::size_t size, std::uint32_t seq, std::uint32_t portid,
                        DumpSink& sink, DumpStats& stats);

// One line of /proc/net/tcp or tcp6; nullopt for the header or a malformed line.
[[nodiscard]] std::optional<SocketRecord> parse_proc_net_line(std::string_view line,
                                                              std::uint8_t family);

// Recording file: "CCNLDUMP1\n", then per datagram a little-endian u32 family, u32 length and
// the bytes exactly as recv() returned them. Where recv() lost replies (ENOBUFS) the recorder
// writes an NLMSG_DONE flagged NLM_F_DUMP_INTR, so a replay restarts where the live dump did.
inline constexpr std::string_view recording_magic = "CCNLDUMP1\n";

} // namespace conncheck::diag
