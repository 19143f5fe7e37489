#include "conncheck/scan/other_fds.hpp"

#include "conncheck/diag/netlink.hpp"
#include "conncheck/fd.hpp"
#include "conncheck/scan/sinks.hpp"

#include <algorithm>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <netinet/in.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_set>

namespace conncheck::scan {

namespace {

// The socket inodes of `fds` that no record in `sockets` has, each with an fd that holds it.
std::vector<std::pair<std::uint64_t, int>> unaccounted(const proc::FdScan& fds,
                                                       const std::vector<SocketRecord>& sockets) {
    std::vector<std::uint64_t> seen;
    seen.reserve(sockets.size());
    for (const auto& s : sockets)
        if (s.inode != 0) seen.push_back(s.inode);
    std::sort(seen.begin(), seen.end());
    std::vector<std::pair<std::uint64_t, int>> out;
    for (std::size_t i = 0; i < fds.socket_inodes.size() && i < fds.socket_fds.size(); ++i)
        if (!std::binary_search(seen.begin(), seen.end(), fds.socket_inodes[i]))
            out.emplace_back(fds.socket_inodes[i], fds.socket_fds[i]);
    return out;
}

struct NamespacePath {
    std::uint64_t inode = 0;
    std::string path;
};

// Every network namespace the host has that we can name: the one of each process, and those
// `ip netns add` keeps alive under /run/netns with no process in them.
std::vector<NamespacePath> host_namespaces(const proc::ProcFs& procfs) {
    std::vector<NamespacePath> out;
    std::unordered_set<std::uint64_t> seen;
    const auto add = [&](std::uint64_t inode, std::string path) {
        if (inode != 0 && seen.insert(inode).second) out.push_back({inode, std::move(path)});
    };
    for (pid_t pid : procfs.list_pids())
        add(procfs.netns_inode(pid), procfs.path(pid, "ns/net"));
    if (DIR* d = ::opendir("/run/netns")) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.') continue;
            std::string path = std::string("/run/netns/") + e->d_name;
            struct stat st {};
            if (::stat(path.c_str(), &st) == 0) add(st.st_ino, std::move(path));
        }
        ::closedir(d);
    }
    return out;
}

// TCP sockets a process holds that its own namespace's dump does not list were received from
// another namespace (SCM_RIGHTS) or created before a setns(), or are closed. The socket itself
// could say which namespace it belongs to (ioctl SIOCGSKNS), but only through a duplicate of the
// process's fd (pidfd_getfd): the kernel releases a socket, sending its FIN or RST and freeing
// its port, when the last reference to its file goes, so a close() by the process while we held
// the duplicate would not close the connection until we let go. Instead the host's other
// namespaces are dumped and the inodes matched: costly only when such fds exist. Found sockets
// move from `pending` into their process's sockets; returns how many namespaces could not be
// entered (entering one takes CAP_SYS_ADMIN).
std::size_t search_other_namespaces(Snapshot& snapshot, InodeOwners& pending,
                                    const std::vector<std::uint64_t>& dumped,
                                    const proc::ProcFs& procfs) {
    std::size_t unsearched = 0;
    for (const NamespacePath& ns : host_namespaces(procfs)) {
        if (pending.empty()) break;
        if (std::find(dumped.begin(), dumped.end(), ns.inode) != dumped.end()) continue;
        UniqueFd fd(::open(ns.path.c_str(), O_RDONLY | O_CLOEXEC));
        if (fd.get() < 0) {
            ++unsearched;
            continue;
        }
        std::unique_ptr<diag::SocketSource> source;
        try {
            diag::NetlinkOptions options;
            options.netns_fd = fd.get();
            source = diag::open_netlink(options);
        } catch (const Error&) {
            ++unsearched;
            continue;
        }
        NetnsGroup group{ns.inode, 0, {}, false};
        for (const auto& [inode, idx] : pending)
            if (group.processes.empty() || group.processes.back() != idx)
                group.processes.push_back(idx);
        std::sort(group.processes.begin(), group.processes.end());
        group.processes.erase(std::unique(group.processes.begin(), group.processes.end()),
                              group.processes.end());
        LiveSink live(snapshot, pending, group);
        for (std::uint8_t family : {std::uint8_t{AF_INET}, std::uint8_t{AF_INET6}}) {
            live.mark();
            note_dump(snapshot, source->dump({family, live_states, true, true}, live));
        }
        std::vector<std::uint64_t> found;
        for (std::size_t idx : group.processes) {
            auto& p = snapshot.processes[idx];
            deduplicate(p.sockets);
            for (const auto& s : p.sockets) {
                const auto it =
                    std::lower_bound(pending.begin(), pending.end(), std::make_pair(s.inode, idx));
                if (s.inode != 0 && it != pending.end() && *it == std::make_pair(s.inode, idx)) {
                    ++p.other_netns_sockets;
                    found.push_back(s.inode);
                }
            }
        }
        std::sort(found.begin(), found.end());
        std::erase_if(pending, [&](const auto& entry) {
            return std::binary_search(found.begin(), found.end(), entry.first);
        });
    }
    return unsearched;
}

} // namespace

void account_fds(Snapshot& snapshot, const std::vector<proc::FdScan>& fd_scans,
                 const proc::ProcFs& procfs, TcpSearch search,
                 const std::vector<std::uint64_t>& dumped, std::vector<std::uint64_t>& closed) {
    std::vector<std::uint64_t> still_closed;
    InodeOwners tcp_pending;
    std::vector<std::vector<std::pair<std::uint64_t, int>>> tcp_fds(snapshot.processes.size());
    const auto held_closed = [&](std::size_t idx, std::uint64_t inode) {
        const auto& fds = tcp_fds[idx];
        const auto it = std::lower_bound(fds.begin(), fds.end(), std::make_pair(inode, -1));
        HeldAfterClose h;
        h.inode = inode;
        if (it != fds.end() && it->first == inode) h.fd = it->second;
        snapshot.processes[idx].held_after_close.push_back(h);
    };
    for (std::size_t i = 0; i < snapshot.processes.size() && i < fd_scans.size(); ++i) {
        auto& p = snapshot.processes[i];
        for (const auto& [inode, fd] : unaccounted(fd_scans[i], p.sockets)) {
            const auto protocol = procfs.socket_protocol(p.info.pid, fd);
            if (!protocol) continue; // closed since we listed it
            switch (proc::socket_kind(*protocol)) {
            case proc::SocketKind::tcp:
                tcp_fds[i].emplace_back(inode, fd);
                if (search == TcpSearch::dumped ||
                    std::binary_search(closed.begin(), closed.end(), inode)) {
                    held_closed(i, inode);
                    still_closed.push_back(inode);
                } else {
                    tcp_pending.emplace_back(inode, i);
                }
                break;
            case proc::SocketKind::udp:
                ++p.other_sockets.udp;
                break;
            case proc::SocketKind::unix_domain:
                ++p.other_sockets.unix_domain;
                break;
            case proc::SocketKind::other:
                ++p.other_sockets.other;
                break;
            }
        }
    }
    std::sort(tcp_pending.begin(), tcp_pending.end());
    std::size_t unsearched = 0;
    if (search == TcpSearch::search && !tcp_pending.empty())
        unsearched = search_other_namespaces(snapshot, tcp_pending, dumped, procfs);
    // Found in no namespace: TCP has finished with it, the process has not.
    const bool known_closed = search == TcpSearch::search && unsearched == 0;
    for (const auto& [inode, idx] : tcp_pending) {
        if (known_closed) {
            held_closed(idx, inode);
            still_closed.push_back(inode);
        } else {
            ++snapshot.processes[idx].other_sockets.tcp;
        }
    }
    for (auto& p : snapshot.processes)
        std::sort(
            p.held_after_close.begin(), p.held_after_close.end(),
            [](const HeldAfterClose& a, const HeldAfterClose& b) { return a.inode < b.inode; });
    std::sort(still_closed.begin(), still_closed.end());
    still_closed.erase(std::unique(still_closed.begin(), still_closed.end()), still_closed.end());
    if (search != TcpSearch::none) closed = std::move(still_closed);
    if (unsearched > 0 && !tcp_pending.empty())
        snapshot.warnings.push_back(
            std::to_string(tcp_pending.size()) +
            " TCP socket fds are in no dump: closed, or in one of " + std::to_string(unsearched) +
            " network namespaces that could not be entered (entering one takes CAP_SYS_ADMIN)");
}

} // namespace conncheck::scan
