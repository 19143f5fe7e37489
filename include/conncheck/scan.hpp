// Joins the kernel's sockets with processes: one snapshot per call. For chosen pids it reads only
// those pids' fds and keeps only their sockets, so memory follows the target, not the host.
#pragma once

#include "conncheck/cookie_memory.hpp"
#include "conncheck/diag/source.hpp"
#include "conncheck/error.hpp"
#include "conncheck/files.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/tcp.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace conncheck::scan {

// The socket source the front end asks for; Config::replay_path overrides it.
enum class SourcePreference { automatic, netlink, proc_net };

struct Config {
    std::string proc_root = "/proc";
    std::string replay_path; // non-empty: sockets come from this recording, not the kernel
    std::string record_path; // non-empty: record the netlink replies here (--dump-netlink)
    SourcePreference source = SourcePreference::automatic;
    // For chosen pids, ask the kernel for their sockets only (see Scanner::scan_pids); false
    // dumps the whole tables, as a recording always does.
    bool targeted = true;
    // Sockets the targeted scan's first dump may hold (56 bytes each for IPv4) while the chosen
    // processes' fd tables are still being read (scan::PendingSink); past it, it waits.
    std::size_t pending_sockets = 65536;
    // Keep the TIME_WAIT sockets no scanned process could be given in
    // Snapshot::unattributed_time_wait (prove: a simulator's port names the collector).
    bool keep_unattributed_time_wait = false;
};

// Socket fds of a process that no TCP socket of any dump accounts for, by protocol: a leaked
// fd is a leaked fd whatever it holds. One socket held by several fds counts once.
struct OtherSockets {
    std::uint64_t tcp = 0; // TCP sockets in no dump that may live in a network namespace we could
                           // not dump, or whose tables came from a recording: closed or elsewhere
    std::uint64_t udp = 0;
    std::uint64_t unix_domain = 0;
    std::uint64_t other = 0; // netlink, packet, raw, ...
    [[nodiscard]] std::uint64_t total() const { return tcp + udp + unix_domain + other; }
};

// A TCP socket the process still holds after TCP finished with it: reset by the peer, timed out
// (keep-alive or retransmissions), or never connected. Its state is CLOSE and the kernel's tables
// no longer list it (one bound to an explicit port stays listed, as a CLOSE record in `sockets`).
// Like CLOSE_WAIT it is a file descriptor held for nothing until the process calls close().
struct HeldAfterClose {
    std::uint64_t inode = 0;
    int fd = -1; // an fd of the process that holds it
    // What an earlier scan of the same Scanner saw of it while it was live (watch, prove):
    // cookie 0 and no remote when it was never seen so.
    std::uint64_t cookie = 0;
    std::optional<Endpoint> remote;
    TcpState last_state = TcpState::unknown; // its state then
    // How long scans of the same Scanner have found it closed: 0 when this one is the first.
    std::uint64_t closed_for_ms = 0;
};

struct ProcessSnapshot {
    proc::ProcessInfo info;
    // Sockets whose inode one of the process's fds holds, plus TIME_WAIT sockets attributed by
    // cookie through the scanner's CookieMemory. Unique by cookie.
    std::vector<SocketRecord> sockets;
    // TIME_WAIT sockets toward one of the process's peers, or to one of its listening ports,
    // whose owner is not known exactly.
    std::vector<SocketRecord> time_wait_by_peer;
    std::uint64_t time_wait_exact = 0; // how many of `sockets` are TIME_WAIT by cookie
    OtherSockets other_sockets;
    std::vector<HeldAfterClose> held_after_close; // by inode
    // How many of `sockets` were found in another network namespace than the process's own
    // (received over a unix socket, or created before a setns()).
    std::uint64_t other_netns_sockets = 0;
    bool exited = false; // gone before the scan finished (host-wide scans only)
};

struct Unattributed {
    std::uint64_t time_wait = 0;  // no owner in the kernel, not toward any scanned process's peers
    std::uint64_t orphaned = 0;   // inode 0 in another state: closed by the process, still draining
    std::uint64_t permission = 0; // held by processes whose fds we may not read
    std::uint64_t unknown = 0;    // an inode no readable process holds (exited meanwhile)
    // TIME_WAIT toward a peer (or to a listening port) of several scanned processes, whose
    // owner is not known exactly: counted here once, for none of them.
    std::uint64_t time_wait_ambiguous = 0;
};

// A chosen process whose sockets could not be read: its fds (a ptrace restriction, another
// user's process) or its network namespace. The scan goes on with the others.
struct UnreadableProcess {
    pid_t pid = 0;
    std::string comm; // raw, as the process set it; empty when /proc/PID/stat was unreadable too
    Errc code = Errc::permission_denied;
    std::string reason; // "cannot read /proc/42/fd: Permission denied (run as root ...)"
};

struct Snapshot {
    std::chrono::system_clock::time_point taken_at{};
    std::vector<ProcessSnapshot> processes;
    Unattributed unattributed;         // filled by host-wide scans
    std::vector<std::string> warnings; // interrupted dump, fallback source, unreadable processes
    std::optional<diag::SourceKind> source; // of every dump, unless mixed_sources
    bool mixed_sources = false;             // namespaces read from different sources
    bool has_tcp_info = true;               // false: idle times and memory unknown
    std::uint64_t sockets_seen = 0;         // every socket the dumps delivered
    std::uint64_t unreadable_processes = 0; // host-wide: fds we may not read
    std::uint64_t vanished_processes = 0;   // host-wide: exited during the scan, skipped
    // With Config::keep_unattributed_time_wait: the TIME_WAIT sockets counted in
    // unattributed.time_wait.
    std::vector<SocketRecord> unattributed_time_wait;
    // Chosen processes (scan_pids) that could not be read, in pid order: `processes` holds the
    // rest, so a non-empty list means a partial result.
    std::vector<UnreadableProcess> unreadable;
    // Cookies of the live sockets no process holds: closed, and still draining in the kernel.
    std::vector<std::uint64_t> orphan_cookies;
    // False when a quiet scan_pids() asked for the processes' sockets without walking the
    // kernel's tables.
    bool walked = true;
};

// "netlink", "replay", "proc_net", "mixed" ("" before any dump).
[[nodiscard]] std::string source_name(const Snapshot& snapshot);
// Whether a scanned process holds a listening socket.
[[nodiscard]] bool any_listening(const Snapshot& snapshot);

struct RunningScan {
    std::optional<Snapshot> snapshot; // nullopt when no process was left to scan
    std::vector<pid_t> exited;        // dropped: exited before or during the scan
};

class Scanner {
public:
    // Creates Config::record_path at once (files::OutputFile: a link or a non-regular file there
    // is refused with Error(usage)).
    explicit Scanner(Config config);
    // Throws Error(no_such_process) for a pid that does not exist, Error(process_exited) for one
    // that vanished during the scan. A process whose fds or namespace may not be read goes to
    // Snapshot::unreadable and the others are scanned; only when no chosen process could be read
    // is the first one's Error(permission_denied) thrown.
    // From the live kernel it costs what the processes hold, not what the host holds: a dump
    // without extensions finds their sockets (filtered in the kernel to their cgroups when each
    // has a cgroup v2 of its own), then tcp_info and socket memory are asked for just those.
    // sockets_seen and unattributed then count only what the kernel returned.
    // TIME_WAIT is attributed exactly by the cookies earlier scans remembered, and this scan's
    // sockets are remembered for the next.
    // Even for a process in a cgroup of its own, that first dump walks the whole tables: the
    // kernel filters sockets one by one. `quiet` is the caller's word that none of the processes
    // opened, accepted or listened on a socket since the previous scan began (it follows their
    // connection events and lost none). After keep_last_walk(true), when each process then
    // holds the very socket fds the last walk found, all connected TCP sockets (in the kernel's
    // established table), and that walk gave it no TIME_WAIT, draining or unlisted TCP socket,
    // nothing else can have changed but those sockets' states: they are asked for by cookie
    // alone, without a walk. One not found so (reset, closed meanwhile) makes it a full scan.
    [[nodiscard]] Snapshot scan_pids(const std::vector<pid_t>& pids, bool quiet = false);
    // Scans those of `pids` still running. One that exits before or during the scan (a zombie
    // has exited) is dropped, listed in `exited` and forgotten, and the rest scanned again, a
    // bounded number of times. Other errors are thrown as by scan_pids.
    [[nodiscard]] RunningScan scan_running(const std::vector<pid_t>& pids, bool quiet = false);
    // Every process; races and permission problems are counted, not thrown. Neither uses nor
    // feeds the cookie memory: a host-wide scan is a one-off.
    [[nodiscard]] Snapshot scan_host();

    // Cookies a process held in an earlier run (check's state file) and its start time.
    void remember(pid_t pid, std::uint64_t start_ticks, std::span<const std::uint64_t> cookies);
    [[nodiscard]] const CookieMemory& cookies() const { return memory_; }
    // Keep what the last scan that walked the kernel's tables found, for quiet scans (watch,
    // following the processes' connection events): a copy of the processes' sockets.
    void keep_last_walk(bool keep) {
        keep_last_walk_ = keep;
        if (!keep) last_walk_.clear();
    }
    [[nodiscard]] const proc::ProcFs& procfs() const { return procfs_; }

private:
    // A process as the last walk found it, with the socket inodes of its fds then.
    struct Walked {
        ProcessSnapshot process;
        std::vector<std::uint64_t> inodes;
    };
    [[nodiscard]] std::optional<Snapshot> rescan(const std::vector<pid_t>& pids);
    void keep_walk(const Snapshot& snapshot, const std::vector<proc::FdScan>& fd_scans,
                   bool draining);

    [[nodiscard]] int recording_fd() const { return recording_ ? recording_->fd() : -1; }

    Config config_;
    proc::ProcFs procfs_;
    std::optional<files::OutputFile> recording_; // --dump-netlink
    CookieMemory memory_;
    // TCP socket inodes that the last scan looked for in every namespace of the host and found
    // in none (closed sockets): a closed socket stays closed, so the next scan (watch, prove)
    // does not search again for them.
    std::vector<std::uint64_t> closed_tcp_;
    // What the last scan saw of each TCP socket the chosen processes hold, by inode: a socket
    // that turns CLOSE vanishes from the kernel's tables, and this is then all that says where
    // it led and since when it is closed. Only inodes still held are kept.
    struct Sighting {
        std::uint64_t cookie = 0;
        std::optional<Endpoint> remote;
        TcpState state = TcpState::unknown;
        std::chrono::system_clock::time_point first_seen_closed{};
    };
    void note_sightings(Snapshot& snapshot);
    std::unordered_map<std::uint64_t, Sighting> sightings_;
    bool keep_last_walk_ = false;
    std::vector<Walked> last_walk_; // empty when the last walk leaves nothing to rescan
};

} // namespace conncheck::scan
