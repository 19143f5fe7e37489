#include "conncheck/proc.hpp"

#include "conncheck/error.hpp"
#include "conncheck/fd.hpp"
#include "conncheck/files.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace conncheck::proc {

namespace {

// A file in /proc read whole with one open; nullopt with errno set when it cannot be read.
std::optional<std::string> read_small_file(const std::string& path) {
    // O_NONBLOCK: a FIFO planted in a --proc-root tree reads as empty instead of hanging.
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
    if (fd.get() < 0) return std::nullopt;
    std::string content;
    char buf[4096];
    while (true) {
        const ssize_t got = ::read(fd.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return std::nullopt; // errno as read() left it: closing keeps it
        if (got == 0) break;
        content.append(buf, static_cast<std::size_t>(got));
        if (content.size() > (1U << 20)) break; // cmdline can be long; 1 MiB is plenty
    }
    return content;
}

std::optional<std::string> read_symlink(const std::string& path) {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
}

template <typename T> std::optional<T> parse_number(std::string_view text) {
    T value{};
    const auto* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc() || ptr != end) return std::nullopt;
    return value;
}

std::string user_name(std::uint32_t uid) {
    passwd pw{};
    passwd* result = nullptr;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof buf, &result) == 0 && result != nullptr)
        return result->pw_name;
    return std::to_string(uid);
}

// /proc/PID/limits: "Max open files            1024                 1048576              files"
FdLimit parse_fd_limit(const std::string& limits) {
    FdLimit limit;
    constexpr std::string_view key = "Max open files";
    const auto at = limits.find(key);
    if (at == std::string::npos) return limit;
    const auto eol = limits.find('\n', at);
    std::string_view line(limits.data() + at + key.size(),
                          (eol == std::string::npos ? limits.size() : eol) - at - key.size());
    std::uint64_t* slots[2] = {&limit.soft, &limit.hard};
    for (auto* slot : slots) {
        while (!line.empty() && line.front() == ' ')
            line.remove_prefix(1);
        const auto end = line.find(' ');
        const auto word = line.substr(0, end);
        if (auto v = parse_number<std::uint64_t>(word)) *slot = *v; // "unlimited" stays 0
        line.remove_prefix(end == std::string_view::npos ? line.size() : end);
    }
    return limit;
}

} // namespace

ProcFs::ProcFs(std::string root) : root_(std::move(root)) {}

std::string ProcFs::path(pid_t pid, std::string_view leaf) const {
    std::string p = root_;
    p += '/';
    p += std::to_string(pid);
    if (!leaf.empty()) {
        p += '/';
        p += leaf;
    }
    return p;
}

bool ProcFs::exists(pid_t pid) const {
    struct stat st {};
    return ::stat(path(pid, "").c_str(), &st) == 0;
}

ProcessInfo ProcFs::read_info(pid_t pid) const {
    ProcessInfo info;
    info.pid = pid;
    auto stat = read_stat(pid);
    if (!stat) throw Error(Errc::no_such_process, "no such process: " + std::to_string(pid));
    info.comm = std::move(stat->comm);
    info.start_ticks = stat->start_ticks;

    if (auto cmdline = read_small_file(path(pid, "cmdline"))) {
        while (!cmdline->empty() && cmdline->back() == '\0')
            cmdline->pop_back();
        std::replace(cmdline->begin(), cmdline->end(), '\0', ' ');
        info.cmdline = std::move(*cmdline);
    }
    struct stat st {};
    if (::stat(path(pid, "").c_str(), &st) == 0) info.uid = st.st_uid;
    info.user = user_name(info.uid);
    info.netns = netns_inode(pid);
    if (auto limits = read_small_file(path(pid, "limits"))) info.fd_limit = parse_fd_limit(*limits);
    return info;
}

FdScan ProcFs::scan_fds(pid_t pid) const {
    const auto fds = list_fds(pid);
    std::vector<std::pair<std::uint64_t, int>> sockets;
    read_socket_links(pid, fds, sockets);
    return fd_scan_of(std::move(sockets), fds.size());
}

namespace {

// The directory /proc/PID/fd, or the error scan_fds throws.
UniqueFd open_fd_dir(const std::string& dir, pid_t pid) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() >= 0) return fd;
    const int err = errno;
    if (err == ENOENT || err == ESRCH)
        throw Error(Errc::no_such_process, "no such process: " + std::to_string(pid));
    throw_errno("cannot read " + dir, err);
}

} // namespace

std::vector<int> ProcFs::list_fds(pid_t pid) const {
    const std::string dir = path(pid, "fd");
    UniqueFd fd = open_fd_dir(dir, pid);
    const std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(fd.get()), ::closedir);
    if (!d) throw_errno("cannot read " + dir, errno);
    (void)fd.release(); // closedir closes it
    std::vector<int> fds;
    while (dirent* e = ::readdir(d.get())) {
        if (e->d_name[0] == '.') continue;
        if (auto n = parse_number<int>(e->d_name)) fds.push_back(*n);
    }
    return fds;
}

void ProcFs::read_socket_links(pid_t pid, std::span<const int> fds,
                               std::vector<std::pair<std::uint64_t, int>>& sockets) const {
    const std::string dir = path(pid, "fd");
    const UniqueFd dir_fd = open_fd_dir(dir, pid);
    char name[16];
    char buf[64];
    for (int fd : fds) {
        const auto [end, ec] = std::to_chars(name, name + sizeof name - 1, fd);
        *end = '\0';
        const ssize_t n = ::readlinkat(dir_fd.get(), name, buf, sizeof buf);
        if (n < 0 && (errno == EACCES || errno == EPERM)) {
            // Listing the directory can succeed where reading the links is refused (ptrace
            // access mode checks, LSMs): a partial list would be a silently wrong answer.
            throw_errno("cannot read the links in " + dir, errno);
        }
        if (n <= 0) continue; // closed since it was listed: a race, not an error
        if (auto inode = parse_socket_link(std::string_view(buf, static_cast<std::size_t>(n))))
            sockets.emplace_back(*inode, fd);
    }
}

FdScan fd_scan_of(std::vector<std::pair<std::uint64_t, int>> sockets, std::uint64_t open_fds) {
    FdScan scan;
    scan.open_fds = open_fds;
    std::sort(sockets.begin(), sockets.end());
    scan.socket_inodes.reserve(sockets.size());
    scan.socket_fds.reserve(sockets.size());
    for (const auto& [inode, fd] : sockets) {
        if (!scan.socket_inodes.empty() && scan.socket_inodes.back() == inode) continue;
        scan.socket_inodes.push_back(inode);
        scan.socket_fds.push_back(fd);
    }
    return scan;
}

std::optional<std::string> ProcFs::socket_protocol(pid_t pid, int fd) const {
    const std::string link = path(pid, "fd/" + std::to_string(fd));
    char buf[64];
    const ssize_t n = ::getxattr(link.c_str(), "system.sockprotoname", buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    std::string name(buf, static_cast<std::size_t>(n));
    while (!name.empty() && name.back() == '\0')
        name.pop_back();
    return name;
}

SocketKind socket_kind(std::string_view protocol_name) {
    const auto starts = [&](std::string_view prefix) {
        return protocol_name.substr(0, prefix.size()) == prefix;
    };
    if (protocol_name == "TCP" || protocol_name == "TCPv6") return SocketKind::tcp;
    if (starts("UDP")) return SocketKind::udp;
    if (starts("UNIX")) return SocketKind::unix_domain;
    return SocketKind::other;
}

std::vector<pid_t> ProcFs::list_pids() const {
    std::vector<pid_t> pids;
    DIR* d = ::opendir(root_.c_str());
    if (d == nullptr) throw_errno("cannot read " + root_, errno);
    while (dirent* e = ::readdir(d))
        if (auto pid = parse_pid(e->d_name)) pids.push_back(*pid);
    ::closedir(d);
    std::sort(pids.begin(), pids.end());
    return pids;
}

std::optional<Stat> ProcFs::read_stat(pid_t pid) const {
    const auto text = read_small_file(path(pid, "stat"));
    if (!text) return std::nullopt;
    return parse_stat(*text);
}

bool ProcFs::is_running(pid_t pid) const {
    const auto stat = read_stat(pid);
    return stat && stat->state != 'Z' && stat->state != 'X' && stat->state != 'x';
}

std::vector<pid_t> ProcFs::descendants(pid_t root) const {
    std::unordered_map<pid_t, pid_t> parent;
    for (pid_t pid : list_pids()) {
        // A zombie holds no files any more; it only waits to be reaped.
        if (const auto stat = read_stat(pid); stat && stat->state != 'Z')
            parent.emplace(pid, stat->ppid);
    }
    return descendants_of(root, parent);
}

std::optional<std::uint64_t> ProcFs::open_files() const {
    const auto text = read_small_file(root_ + "/sys/fs/file-nr");
    if (!text) return std::nullopt;
    return parse_number<std::uint64_t>(std::string_view(*text).substr(0, text->find('\t')));
}

std::optional<std::string> ProcFs::read(pid_t pid, std::string_view leaf) const {
    return read_small_file(path(pid, leaf));
}

std::optional<std::string> ProcFs::read_link(pid_t pid, std::string_view leaf) const {
    return read_symlink(path(pid, leaf));
}

std::optional<pid_t> ProcFs::thread_group(pid_t pid) const {
    auto status = read(pid, "status");
    if (!status) return std::nullopt;
    constexpr std::string_view key = "\nTgid:";
    const auto at = status->find(key);
    if (at == std::string::npos) return std::nullopt;
    std::string_view value(status->data() + at + key.size(), status->size() - at - key.size());
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
    return parse_number<pid_t>(value.substr(0, value.find('\n')));
}

std::uint64_t ProcFs::netns_inode(pid_t pid) const {
    auto link = read_symlink(path(pid, "ns/net"));
    return link ? parse_ns_link(*link) : 0;
}

std::uint64_t ProcFs::self_netns() const {
    auto link = read_symlink(root_ + "/self/ns/net");
    return link ? parse_ns_link(*link) : netns_inode(::getpid());
}

std::optional<Cgroup> ProcFs::cgroup(pid_t pid) const {
    auto content = read_small_file(path(pid, "cgroup"));
    if (!content) return std::nullopt;
    auto cgroup_path = parse_cgroup2_path(*content);
    if (!cgroup_path) return std::nullopt;
    Cgroup cg;
    cg.path = std::move(*cgroup_path);
    auto mount = cgroup2_mount();
    if (!mount) return cg;
    // A path outside the mount's root ("/.." from another cgroup namespace, or beside a
    // bind-mounted subtree) has no directory here.
    std::string_view rel(cg.path);
    if (mount->root != "/") {
        if (rel.substr(0, mount->root.size()) != mount->root ||
            (rel.size() > mount->root.size() && rel[mount->root.size()] != '/'))
            return cg;
        rel.remove_prefix(mount->root.size());
    }
    if (rel.find("/..") != std::string_view::npos) return cg;
    std::string dir = mount->mount_point;
    if (!rel.empty() && rel != "/") dir += rel;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return cg;
    cg.directory = std::move(dir);
    cg.id = st.st_ino; // kernfs numbers its inodes by cgroup id
    return cg;
}

std::optional<Cgroup2Mount> ProcFs::cgroup2_mount() const {
    auto mountinfo = read_small_file(root_ + "/self/mountinfo");
    return mountinfo ? parse_cgroup2_mount(*mountinfo) : std::nullopt;
}

std::optional<std::string> parse_cgroup2_path(std::string_view content) {
    // One "hierarchy-id:controllers:path" line per hierarchy; cgroup v2 is "0::path".
    while (!content.empty()) {
        const auto eol = content.find('\n');
        const std::string_view line = content.substr(0, eol);
        content.remove_prefix(eol == std::string_view::npos ? content.size() : eol + 1);
        if (line.substr(0, 3) == "0::" && line.size() > 3 && line[3] == '/')
            return std::string(line.substr(3));
    }
    return std::nullopt;
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view field) {
    std::string out;
    out.reserve(field.size());
    const auto octal = [&](std::size_t k) { return field[k] >= '0' && field[k] <= '7'; };
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size() && octal(i + 1) && octal(i + 2) &&
            octal(i + 3)) {
            out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                     (field[i + 3] - '0'));
            i += 3;
            continue;
        }
        out += field[i];
    }
    return out;
}

} // namespace

std::optional<Cgroup2Mount> parse_cgroup2_mount(std::string_view mountinfo) {
    // "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw": id, parent,
    // major:minor, root, mount point, options, optional fields up to "-", then the fs type.
    while (!mountinfo.empty()) {
        const auto eol = mountinfo.find('\n');
        std::string_view line = mountinfo.substr(0, eol);
        mountinfo.remove_prefix(eol == std::string_view::npos ? mountinfo.size() : eol + 1);
        std::vector<std::string_view> fields;
        while (!line.empty()) {
            const auto end = line.find(' ');
            if (end != 0) fields.push_back(line.substr(0, end));
            line.remove_prefix(end == std::string_view::npos ? line.size() : end + 1);
        }
        const auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
        if (fields.size() < 5 || dash == fields.end() || dash - fields.begin() < 6 ||
            dash + 1 == fields.end() || *(dash + 1) != "cgroup2")
            continue;
        return Cgroup2Mount{unescape_mountinfo(fields[4]), unescape_mountinfo(fields[3])};
    }
    return std::nullopt;
}

std::optional<Stat> parse_stat(std::string_view text) {
    // The name is between the first '(' and the last ')': it can hold both itself.
    const auto open = text.find('(');
    const auto close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
        close + 2 >= text.size())
        return std::nullopt;
    Stat stat;
    stat.comm = std::string(text.substr(open + 1, close - open - 1));
    // Fields after the name, from field 3 (state) on; starttime is field 22.
    std::string_view rest = text.substr(close + 2);
    int field = 3;
    for (; field <= 22 && !rest.empty(); ++field) {
        const auto end = rest.find(' ');
        const std::string_view word = rest.substr(0, end);
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (field == 3) {
            if (word.size() != 1) return std::nullopt;
            stat.state = word.front();
        } else if (field == 4 || field == 5) {
            const auto value = parse_number<pid_t>(word);
            if (!value) return std::nullopt;
            (field == 4 ? stat.ppid : stat.pgrp) = *value;
        } else if (field == 22) {
            stat.start_ticks = parse_number<std::uint64_t>(word).value_or(0);
        }
    }
    if (field <= 5) return std::nullopt; // no ppid or pgrp
    return stat;
}

std::vector<pid_t> descendants_of(pid_t root, const std::unordered_map<pid_t, pid_t>& parent) {
    std::vector<pid_t> out;
    for (const auto& [pid, ppid] : parent) {
        if (pid == root) continue;
        pid_t p = ppid;
        // Bounded walk: a table read while processes come and go can hold a cycle.
        for (std::size_t depth = 0; p > 0 && depth < parent.size(); ++depth) {
            if (p == root) {
                out.push_back(pid);
                break;
            }
            const auto it = parent.find(p);
            if (it == parent.end()) break;
            p = it->second;
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::optional<pid_t> parse_pid(std::string_view text) {
    if (text.empty() || text.size() > 10 || text.front() == '0') return std::nullopt;
    for (char c : text)
        if (c < '0' || c > '9') return std::nullopt;
    auto value = parse_number<long long>(text);
    if (!value || *value <= 0 || *value > INT_MAX) return std::nullopt;
    return static_cast<pid_t>(*value);
}

pid_t read_pidfile(const std::string& path) {
    const std::string content = files::read_input(path, "pidfile", 4096);
    std::string_view text(content);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
        text.remove_suffix(1);
    while (!text.empty() && text.front() == ' ')
        text.remove_prefix(1);
    auto pid = parse_pid(text);
    if (!pid) throw Error(Errc::bad_file, "pidfile " + path + " does not hold a pid");
    return *pid;
}

std::uint64_t parse_ns_link(std::string_view link) {
    constexpr std::string_view prefix = "net:[";
    if (link.substr(0, prefix.size()) != prefix || link.empty() || link.back() != ']') return 0;
    return parse_number<std::uint64_t>(link.substr(prefix.size(), link.size() - prefix.size() - 1))
        .value_or(0);
}

std::optional<std::uint64_t> parse_socket_link(std::string_view link) {
    constexpr std::string_view prefix = "socket:[";
    if (link.size() <= prefix.size() + 1 || link.substr(0, prefix.size()) != prefix ||
        link.back() != ']')
        return std::nullopt;
    return parse_number<std::uint64_t>(link.substr(prefix.size(), link.size() - prefix.size() - 1));
}

} // namespace conncheck::proc
