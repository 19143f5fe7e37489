// Reading processes from a /proc tree. The root is a constructor argument so tests can point it at
// a fixture tree. Nothing here is sanitized: callers sanitize before printing.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace conncheck::proc {

struct FdLimit {
    std::uint64_t soft = 0; // 0 = unlimited or unknown
    std::uint64_t hard = 0;
};

struct ProcessInfo {
    pid_t pid = 0;
    std::string comm;    // raw, as the process set it
    std::string cmdline; // raw, arguments joined by single spaces; empty for kernel threads
    std::uint32_t uid = 0;
    std::string user;              // name for uid, or the number
    std::uint64_t netns = 0;       // inode of /proc/PID/ns/net, 0 when unreadable
    std::uint64_t start_ticks = 0; // stat field 22: tells a restarted process from the old pid
    std::uint64_t open_fds = 0;    // filled by scan_fds
    FdLimit fd_limit;
};

// A process's cgroup v2 membership.
struct Cgroup {
    std::string path;      // as /proc/PID/cgroup shows it: "/system.slice/nginx.service"
    std::string directory; // that cgroup's directory under the cgroup2 mount, empty when unknown
    std::uint64_t id = 0;  // inode of `directory`: the id sockets carry (INET_DIAG_BC_CGROUP_COND,
                           // bpf_get_current_cgroup_id); 0 when unknown
};

struct Cgroup2Mount {
    std::string mount_point; // "/sys/fs/cgroup", or "/sys/fs/cgroup/unified" on a hybrid layout
    std::string root;        // the cgroup shown at mount_point: "/" unless bind-mounted deeper
};

// The fields of /proc/PID/stat that conncheck reads.
struct Stat {
    std::string comm; // raw, as the process set it
    char state = '?'; // 'R', 'S', 'Z', ...
    pid_t ppid = 0;
    pid_t pgrp = 0;
    std::uint64_t start_ticks = 0; // field 22, 0 when absent
};

struct FdScan {
    std::vector<std::uint64_t> socket_inodes; // sorted, unique
    std::vector<int> socket_fds; // socket_fds[i] is an fd number holding socket_inodes[i]
    std::uint64_t open_fds = 0;
};

// An FdScan of `open_fds` fds, from the (inode, fd) pairs of its sockets in any order.
[[nodiscard]] FdScan fd_scan_of(std::vector<std::pair<std::uint64_t, int>> sockets,
                                std::uint64_t open_fds);

// What kind of socket an fd holds, from its protocol name.
enum class SocketKind { tcp, udp, unix_domain, other };
// "TCP", "TCPv6" -> tcp; "UDP", "UDPv6", "UDP-Lite" -> udp; "UNIX", "UNIX-STREAM" -> unix_domain.
[[nodiscard]] SocketKind socket_kind(std::string_view protocol_name);

class ProcFs {
public:
    explicit ProcFs(std::string root = "/proc");
    [[nodiscard]] const std::string& root() const { return root_; }

    // comm, cmdline, uid, netns, start time, limits. Throws Error(no_such_process).
    [[nodiscard]] ProcessInfo read_info(pid_t pid) const;
    // nullopt when the process is gone (or its stat is malformed).
    [[nodiscard]] std::optional<Stat> read_stat(pid_t pid) const;
    // Its stat is readable and it is not a zombie: an exited process its parent has not reaped
    // keeps its /proc entry but no files.
    [[nodiscard]] bool is_running(pid_t pid) const;
    // Every running process below `root` in the process tree (root excluded), sorted.
    [[nodiscard]] std::vector<pid_t> descendants(pid_t root) const;
    // Reads only /proc/PID/fd: list_fds(), then read_socket_links() for all of them. Throws
    // Error(no_such_process) or Error(permission_denied).
    [[nodiscard]] FdScan scan_fds(pid_t pid) const;
    // The fd numbers listed in /proc/PID/fd, in the directory's order. Throws like scan_fds.
    [[nodiscard]] std::vector<int> list_fds(pid_t pid) const;
    // Appends (inode, fd) for each of `fds` that holds a socket; an fd closed since it was
    // listed is skipped. Throws like scan_fds, also when the links alone are refused.
    void read_socket_links(pid_t pid, std::span<const int> fds,
                           std::vector<std::pair<std::uint64_t, int>>& sockets) const;
    // The protocol of the socket behind /proc/PID/fd/FD ("TCP", "UDPv6", "UNIX-STREAM", ...),
    // from sockfs's "system.sockprotoname" attribute; nullopt when it cannot be read (the fd was
    // closed meanwhile). Resolving the link holds no reference to the open file, so a close()
    // by the process is never delayed by it.
    [[nodiscard]] std::optional<std::string> socket_protocol(pid_t pid, int fd) const;
    [[nodiscard]] std::vector<pid_t> list_pids() const;
    // The files open on the whole host (the first field of root/sys/fs/file-nr), nullopt when
    // unreadable.
    [[nodiscard]] std::optional<std::uint64_t> open_files() const;
    // root/PID/leaf read whole (at most 1 MiB) or the target of the link root/PID/leaf, raw;
    // nullopt with errno set when it cannot be read.
    [[nodiscard]] std::optional<std::string> read(pid_t pid, std::string_view leaf) const;
    [[nodiscard]] std::optional<std::string> read_link(pid_t pid, std::string_view leaf) const;
    // The process a thread id belongs to (Tgid in /proc/PID/status): the pid itself for a
    // process, another pid for a thread. nullopt when unreadable.
    [[nodiscard]] std::optional<pid_t> thread_group(pid_t pid) const;
    [[nodiscard]] std::uint64_t netns_inode(pid_t pid) const; // 0 when unreadable
    [[nodiscard]] std::uint64_t self_netns() const;
    // The process's cgroup v2 path, directory and id. nullopt when it has no cgroup v2 line (a
    // cgroup v1 only host) or is gone. Without a cgroup2 mount the directory and id stay empty.
    [[nodiscard]] std::optional<Cgroup> cgroup(pid_t pid) const;
    // Where cgroup2 is mounted, from root/self/mountinfo. nullopt when it is not mounted.
    [[nodiscard]] std::optional<Cgroup2Mount> cgroup2_mount() const;
    [[nodiscard]] std::string path(pid_t pid, std::string_view leaf) const; // root/PID/leaf
    [[nodiscard]] bool exists(pid_t pid) const;

private:
    std::string root_;
};

// "4242 (name) S 1 4242 ..."; the name may hold spaces and parentheses. nullopt when the state,
// ppid or pgrp is missing or malformed.
[[nodiscard]] std::optional<Stat> parse_stat(std::string_view text);
// Every pid whose parent chain reaches `root`, root excluded, sorted. Cycles (a table read while
// processes come and go) end the walk.
[[nodiscard]] std::vector<pid_t> descendants_of(pid_t root,
                                                const std::unordered_map<pid_t, pid_t>& parent);

// A strictly positive decimal pid that fits pid_t, nothing else.
[[nodiscard]] std::optional<pid_t> parse_pid(std::string_view text);
// Throws Error(bad_file) naming the path and what is wrong with it.
[[nodiscard]] pid_t read_pidfile(const std::string& path);
// "net:[4026531840]" -> 4026531840, 0 when it is not of that form.
[[nodiscard]] std::uint64_t parse_ns_link(std::string_view link);
// The "0::PATH" line of /proc/PID/cgroup -> PATH; nullopt when there is none.
[[nodiscard]] std::optional<std::string> parse_cgroup2_path(std::string_view proc_pid_cgroup);
// The mount point of the first cgroup2 file system in a mountinfo text (octal escapes decoded)
// and the cgroup path it is rooted at.
[[nodiscard]] std::optional<Cgroup2Mount> parse_cgroup2_mount(std::string_view mountinfo);
// "socket:[12345]" -> 12345, nullopt otherwise.
[[nodiscard]] std::optional<std::uint64_t> parse_socket_link(std::string_view link);

} // namespace conncheck::proc
