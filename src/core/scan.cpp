#include "conncheck/scan.hpp"

#include "conncheck/diag.hpp"
#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"

#include <algorithm>
#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_set>

namespace conncheck::scan {

namespace {

constexpr std::uint32_t live_states = all_states & ~state_bit(TcpState::time_wait);

// Process `index` into Snapshot::processes holds the socket with this inode. Sorted by inode;
// one inode may be held by several processes (fork, fd passing): each holder gets the socket.
using InodeOwners = std::vector<std::pair<std::uint64_t, std::size_t>>;

struct Group {
    std::uint64_t netns = 0;
    pid_t representative = 0;           // a pid inside the namespace
    std::vector<std::size_t> processes; // indexes into Snapshot::processes
    bool has_unreadable = false;        // some process here hides its fds from us
};

class FdHandle {
public:
    explicit FdHandle(int fd) : fd_(fd) {}
    ~FdHandle() {
        if (fd_ >= 0) ::close(fd_);
    }
    FdHandle(const FdHandle&) = delete;
    FdHandle& operator=(const FdHandle&) = delete;
    [[nodiscard]] int get() const { return fd_; }

private:
    int fd_;
};

// Collects the live (non-TIME_WAIT) sockets the chosen processes hold.
class LiveSink : public diag::DumpSink {
public:
    LiveSink(Snapshot& snapshot, const InodeOwners& owners, const Group& group)
        : snapshot_(snapshot), owners_(owners), group_(group) {
        mark();
    }
    void on_socket(const SocketRecord& s) override {
        ++seen_;
        if (s.inode == 0) {
            ++orphaned_;
            return;
        }
        auto it = std::lower_bound(owners_.begin(), owners_.end(),
                                   std::make_pair(s.inode, std::size_t{0}));
        if (it == owners_.end() || it->first != s.inode) {
            ++unmatched_;
            return;
        }
        for (; it != owners_.end() && it->first == s.inode; ++it)
            snapshot_.processes[it->second].sockets.push_back(s);
    }
    void on_restart() override {
        for (std::size_t i = 0; i < group_.processes.size(); ++i)
            snapshot_.processes[group_.processes[i]].sockets.resize(sizes_[i]);
        seen_ = seen_at_mark_;
        orphaned_ = orphaned_at_mark_;
        unmatched_ = unmatched_at_mark_;
    }
    // Called before each request, so a restart forgets only that request's sockets.
    void mark() {
        sizes_.clear();
        for (std::size_t idx : group_.processes)
            sizes_.push_back(snapshot_.processes[idx].sockets.size());
        seen_at_mark_ = seen_;
        orphaned_at_mark_ = orphaned_;
        unmatched_at_mark_ = unmatched_;
    }
    std::uint64_t seen_ = 0;
    std::uint64_t orphaned_ = 0;
    std::uint64_t unmatched_ = 0;

private:
    Snapshot& snapshot_;
    const InodeOwners& owners_;
    const Group& group_;
    std::vector<std::size_t> sizes_;
    std::uint64_t seen_at_mark_ = 0;
    std::uint64_t orphaned_at_mark_ = 0;
    std::uint64_t unmatched_at_mark_ = 0;
};

// Attributes TIME_WAIT sockets: exactly by cookie when the live socket was seen (in this scan
// or an earlier one), else by peer endpoint or listening port, else not at all.
class TimeWaitSink : public diag::DumpSink {
public:
    // `closed`: cookies of the processes' sockets that were gone when asked for again.
    TimeWaitSink(Snapshot& snapshot, const Group& group, const CookieOwners* known,
                 const std::vector<std::pair<std::uint64_t, std::size_t>>& closed = {})
        : snapshot_(snapshot), group_(group), known_(known), live_cookies_(closed) {
        for (std::size_t idx : group.processes) {
            const auto& p = snapshot.processes[idx];
            pid_index_.emplace(p.info.pid, idx);
            for (const auto& s : p.sockets) {
                if (s.cookie != 0) live_cookies_.emplace_back(s.cookie, idx);
                if (s.state == TcpState::listen) {
                    listeners_.emplace(s.local.port, std::make_pair(s.local, idx));
                } else if (!s.remote.is_unspecified()) {
                    peers_.emplace(s.remote, idx); // first (lowest pid) process wins a shared peer
                }
            }
        }
        std::sort(live_cookies_.begin(), live_cookies_.end());
        mark();
    }
    void on_socket(const SocketRecord& s) override {
        ++seen_;
        if (auto idx = exact_owner(s.cookie)) {
            snapshot_.processes[*idx].sockets.push_back(s);
            ++snapshot_.processes[*idx].time_wait_exact;
            return;
        }
        if (auto it = peers_.find(s.remote); it != peers_.end()) {
            snapshot_.processes[it->second].time_wait_by_peer.push_back(s);
            return;
        }
        auto [lo, hi] = listeners_.equal_range(s.local.port);
        for (auto it = lo; it != hi; ++it) {
            const Endpoint& l = it->second.first;
            const bool wildcard =
                std::all_of(l.addr.begin(), l.addr.end(), [](std::uint8_t b) { return b == 0; });
            if (wildcard || l.addr == s.local.addr) {
                snapshot_.processes[it->second.second].time_wait_by_peer.push_back(s);
                return;
            }
        }
        ++unattributed_;
    }
    void on_restart() override {
        for (std::size_t i = 0; i < group_.processes.size(); ++i) {
            auto& p = snapshot_.processes[group_.processes[i]];
            p.sockets.resize(sizes_[i].sockets);
            p.time_wait_by_peer.resize(sizes_[i].by_peer);
            p.time_wait_exact = sizes_[i].exact;
        }
        seen_ = seen_at_mark_;
        unattributed_ = unattributed_at_mark_;
    }
    void mark() {
        sizes_.clear();
        for (std::size_t idx : group_.processes) {
            const auto& p = snapshot_.processes[idx];
            sizes_.push_back({p.sockets.size(), p.time_wait_by_peer.size(), p.time_wait_exact});
        }
        seen_at_mark_ = seen_;
        unattributed_at_mark_ = unattributed_;
    }
    std::uint64_t seen_ = 0;
    std::uint64_t unattributed_ = 0;

private:
    std::optional<std::size_t> exact_owner(std::uint64_t cookie) const {
        if (cookie == 0) return std::nullopt;
        auto it = std::lower_bound(live_cookies_.begin(), live_cookies_.end(),
                                   std::make_pair(cookie, std::size_t{0}));
        if (it != live_cookies_.end() && it->first == cookie) return it->second;
        if (known_ != nullptr) {
            if (auto k = known_->find(cookie); k != known_->end()) {
                if (auto p = pid_index_.find(k->second); p != pid_index_.end()) return p->second;
            }
        }
        return std::nullopt;
    }
    struct Sizes {
        std::size_t sockets;
        std::size_t by_peer;
        std::uint64_t exact;
    };
    Snapshot& snapshot_;
    const Group& group_;
    const CookieOwners* known_;
    std::unordered_map<pid_t, std::size_t> pid_index_;
    std::vector<std::pair<std::uint64_t, std::size_t>> live_cookies_;
    std::unordered_map<Endpoint, std::size_t, EndpointHash> peers_;
    std::multimap<std::uint16_t, std::pair<Endpoint, std::size_t>> listeners_;
    std::vector<Sizes> sizes_;
    std::uint64_t seen_at_mark_ = 0;
    std::uint64_t unattributed_at_mark_ = 0;
};

// A socket reported twice (dumps are not atomic) or seen live and then in TIME_WAIT: keep the
// last report of each cookie, which is the newest state.
void deduplicate(std::vector<SocketRecord>& sockets) {
    std::stable_sort(
        sockets.begin(), sockets.end(),
        [](const SocketRecord& a, const SocketRecord& b) { return a.cookie < b.cookie; });
    // Compact in place: a second vector would double the peak for a process with many sockets.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < sockets.size(); ++i) {
        const bool superseded = sockets[i].cookie != 0 && i + 1 < sockets.size() &&
                                sockets[i + 1].cookie == sockets[i].cookie;
        if (superseded) continue;
        if (kept != i) sockets[kept] = std::move(sockets[i]);
        ++kept;
    }
    sockets.resize(kept);
}

class SourceOpener {
public:
    SourceOpener(const Config& config, const proc::ProcFs& procfs, Snapshot& snapshot)
        : config_(config), procfs_(procfs), snapshot_(snapshot), self_netns_(procfs.self_netns()) {}

    std::unique_ptr<diag::SocketSource> open(const Group& group) {
        if (!config_.replay_path.empty()) return diag::open_replay(config_.replay_path);
        if (config_.source == SourceKind::proc_net) return proc_net(group);
        try {
            diag::NetlinkOptions options;
            options.record_path = config_.record_path;
            if (group.netns == 0 || group.netns == self_netns_) return diag::open_netlink(options);
            const std::string ns_path = procfs_.path(group.representative, "ns/net");
            FdHandle ns(::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
            if (ns.get() < 0) throw_errno("cannot open " + ns_path, errno);
            options.netns_fd = ns.get();
            return diag::open_netlink(options);
        } catch (const Error& e) {
            const bool may_fall_back =
                config_.source == SourceKind::automatic &&
                (e.code() == Errc::source_unavailable || e.code() == Errc::permission_denied);
            if (!may_fall_back) throw;
            snapshot_.warnings.push_back(std::string(e.what()) + "; read " +
                                         procfs_.path(group.representative, "net/tcp") +
                                         " instead (no idle times or socket memory)");
            return proc_net(group);
        }
    }

private:
    std::unique_ptr<diag::SocketSource> proc_net(const Group& group) {
        return diag::open_proc_net(procfs_.root(), group.representative);
    }
    const Config& config_;
    const proc::ProcFs& procfs_;
    Snapshot& snapshot_;
    std::uint64_t self_netns_;
};

void note_dump(Snapshot& snapshot, const diag::DumpStats& stats) {
    if (stats.inconsistent)
        snapshot.warnings.push_back("the kernel's socket table kept changing during the dump (" +
                                    std::to_string(stats.retries) +
                                    " retries): counts may be off by the sockets that changed");
    if (stats.malformed > 0)
        snapshot.warnings.push_back(std::to_string(stats.malformed) +
                                    " malformed sock_diag replies skipped");
}

// States in the kernel's established hash, where an exact request finds a socket by its
// 4-tuple. Listening sockets live in another table, bound-only ones in a third.
constexpr std::uint32_t exact_states =
    state_bit(TcpState::established) | state_bit(TcpState::syn_sent) |
    state_bit(TcpState::syn_recv) | state_bit(TcpState::fin_wait1) |
    state_bit(TcpState::fin_wait2) | state_bit(TcpState::close_wait) |
    state_bit(TcpState::last_ack) | state_bit(TcpState::closing);

// Past this share of the sockets the first dump saw, one dump with extensions costs less than
// an exact request per socket. Measured with scripts/bench-audit: for 17,000 of 97,000 sockets
// exact requests took a quarter less CPU than the dump.
constexpr std::uint64_t exact_share_percent = 40;

// Replaces the processes' records (sorted by cookie) with the kernel's fuller answers.
class RefreshSink : public diag::DumpSink {
public:
    RefreshSink(Snapshot& snapshot, const Group& group) : snapshot_(snapshot), group_(group) {
        for (std::size_t idx : group.processes)
            refreshed_.emplace_back(snapshot.processes[idx].sockets.size(), 0);
    }
    void on_socket(const SocketRecord& s) override {
        if (s.cookie == 0) return;
        for (std::size_t i = 0; i < group_.processes.size(); ++i) {
            auto& sockets = snapshot_.processes[group_.processes[i]].sockets;
            auto it = std::lower_bound(
                sockets.begin(), sockets.end(), s.cookie,
                [](const SocketRecord& r, std::uint64_t c) { return r.cookie < c; });
            if (it == sockets.end() || it->cookie != s.cookie) continue;
            *it = s;
            refreshed_[i][static_cast<std::size_t>(it - sockets.begin())] = 1;
        }
    }
    void on_restart() override {
        for (auto& flags : refreshed_)
            std::fill(flags.begin(), flags.end(), 0);
    }
    // Drops the records no answer refreshed (closed meanwhile) and returns their cookies.
    std::vector<std::pair<std::uint64_t, std::size_t>> drop_stale() {
        std::vector<std::pair<std::uint64_t, std::size_t>> closed;
        for (std::size_t i = 0; i < group_.processes.size(); ++i) {
            auto& sockets = snapshot_.processes[group_.processes[i]].sockets;
            std::size_t kept = 0;
            for (std::size_t k = 0; k < sockets.size(); ++k) {
                if (refreshed_[i][k] == 0) {
                    closed.emplace_back(sockets[k].cookie, group_.processes[i]);
                    continue;
                }
                if (kept != k) sockets[kept] = std::move(sockets[k]);
                ++kept;
            }
            sockets.resize(kept);
        }
        return closed;
    }

private:
    Snapshot& snapshot_;
    const Group& group_;
    std::vector<std::vector<char>> refreshed_;
};

// Passes live sockets on and keeps TIME_WAIT ones for later.
class TimeWaitBuffer : public diag::DumpSink {
public:
    explicit TimeWaitBuffer(diag::DumpSink& live) : live_(live) {}
    void on_socket(const SocketRecord& s) override {
        if (s.state == TcpState::time_wait)
            time_wait.push_back(s);
        else
            live_.on_socket(s);
    }
    void on_restart() override {
        time_wait.clear();
        live_.on_restart();
    }
    std::vector<SocketRecord> time_wait;

private:
    diag::DumpSink& live_;
};

// Whether a process holds TCP sockets the first dump did not return: created before it moved
// to its cgroup, passed from another process, or not yet in any kernel table.
bool missed_tcp_sockets(const Snapshot& snapshot, const Group& group, const InodeOwners& owners,
                        const proc::ProcFs& procfs) {
    for (std::size_t idx : group.processes) {
        const auto& p = snapshot.processes[idx];
        std::vector<std::uint64_t> found;
        found.reserve(p.sockets.size());
        for (const auto& s : p.sockets)
            found.push_back(s.inode);
        std::sort(found.begin(), found.end());
        std::vector<std::uint64_t> missing;
        for (const auto& [inode, holder] : owners)
            if (holder == idx && !std::binary_search(found.begin(), found.end(), inode))
                missing.push_back(inode);
        if (!procfs.tcp_socket_inodes(p.info.pid, missing).empty()) return true;
    }
    return false;
}

void finish_group(Snapshot& snapshot, const Group& group, const LiveSink& live,
                  const TimeWaitSink& tw) {
    for (std::size_t idx : group.processes) {
        auto& p = snapshot.processes[idx];
        deduplicate(p.sockets);
        // A TIME_WAIT that was live in this scan is counted exactly once, as TIME_WAIT.
        p.time_wait_exact = static_cast<std::uint64_t>(
            std::count_if(p.sockets.begin(), p.sockets.end(),
                          [](const SocketRecord& s) { return s.state == TcpState::time_wait; }));
    }
    snapshot.sockets_seen += live.seen_ + tw.seen_;
    snapshot.unattributed.time_wait += tw.unattributed_;
    snapshot.unattributed.orphaned += live.orphaned_;
    if (group.has_unreadable)
        snapshot.unattributed.permission += live.unmatched_;
    else
        snapshot.unattributed.unknown += live.unmatched_;
}

// Dumps one namespace: live sockets first, then TIME_WAIT, which can only be attributed once
// the processes' peers and listeners are known. Asking the kernel for the two state sets
// separately costs the same as one dump and keeps memory to the chosen processes.
void dump_whole(Snapshot& snapshot, const Group& group, const InodeOwners& owners,
                const CookieOwners* known, diag::SocketSource& source) {
    // The kernel walks its whole tables for each dump: the live kernel answers both families
    // in one walk.
    std::vector<std::uint8_t> families{AF_INET, AF_INET6};
    if (source.can_target()) families = {AF_UNSPEC};
    LiveSink live(snapshot, owners, group);
    for (std::uint8_t family : families) {
        live.mark();
        note_dump(snapshot, source.dump({family, live_states, true, true, {}}, live));
    }
    for (std::size_t idx : group.processes)
        deduplicate(snapshot.processes[idx].sockets);

    TimeWaitSink tw(snapshot, group, known);
    for (std::uint8_t family : families) {
        tw.mark();
        note_dump(snapshot,
                  source.dump({family, state_bit(TcpState::time_wait), false, false, {}}, tw));
    }
    finish_group(snapshot, group, live, tw);
}

// The chosen processes' sockets at a cost that follows them, not the host: a dump without
// extensions finds them (in the kernel, only their cgroups' sockets when they have cgroups of
// their own), then the kernel fills tcp_info and socket memory for just those, by exact
// requests or, when they are a large share, by one dump. Both families go in one walk of the
// kernel's tables.
void dump_targeted(Snapshot& snapshot, const Group& group, const InodeOwners& owners,
                   const CookieOwners* known, diag::SocketSource& source,
                   const proc::ProcFs& procfs, std::vector<std::uint64_t> cgroups) {
    LiveSink live(snapshot, owners, group);
    // TIME_WAIT comes in the same walk, kept aside until the live sockets are known. It has no
    // cgroup (id 0 in the filter), so a filtered dump asks for cgroup 0 as well.
    TimeWaitBuffer find_sink(live);
    diag::DumpRequest find{AF_UNSPEC, live_states | state_bit(TcpState::time_wait), false, false,
                           cgroups};
    if (!cgroups.empty()) find.cgroups.push_back(0);
    note_dump(snapshot, source.dump(find, find_sink));
    if (!cgroups.empty() && missed_tcp_sockets(snapshot, group, owners, procfs)) {
        find_sink.on_restart();
        cgroups.clear();
        find.cgroups.clear();
        note_dump(snapshot, source.dump(find, find_sink));
    }

    // Pointers, not copies: for a process with many sockets a copy would double the peak.
    std::vector<const SocketRecord*> exact;
    std::uint32_t dump_states = 0;
    std::uint64_t held = 0;
    for (std::size_t idx : group.processes) {
        auto& sockets = snapshot.processes[idx].sockets;
        deduplicate(sockets); // sorted by cookie, as RefreshSink needs
        held += sockets.size();
        for (const auto& s : sockets) {
            if ((state_bit(s.state) & exact_states) != 0 && s.cookie != 0)
                exact.push_back(&s);
            else
                dump_states |= state_bit(s.state);
        }
        // A socket bound but neither listening nor connected reports state CLOSE, and the
        // kernel lists those only when asked for TCP_BOUND_INACTIVE.
        if ((dump_states & state_bit(TcpState::close)) != 0)
            dump_states |= state_bit(TcpState::bound_inactive);
    }
    if (held * 100 > live.seen_ * exact_share_percent) {
        for (const auto* s : exact)
            dump_states |= state_bit(s->state);
        exact.clear();
    }
    // A socket several processes hold is asked for once.
    std::sort(exact.begin(), exact.end(),
              [](const SocketRecord* a, const SocketRecord* b) { return a->cookie < b->cookie; });
    exact.erase(std::unique(exact.begin(), exact.end(),
                            [](const SocketRecord* a, const SocketRecord* b) {
                                return a->cookie == b->cookie;
                            }),
                exact.end());

    RefreshSink refresh(snapshot, group);
    if (!exact.empty()) note_dump(snapshot, source.fetch(exact, true, true, refresh));
    exact = {};
    if (dump_states != 0)
        note_dump(snapshot, source.dump({AF_UNSPEC, dump_states, true, true, cgroups}, refresh));
    const auto closed = refresh.drop_stale();

    TimeWaitSink tw(snapshot, group, known, closed);
    for (const auto& s : find_sink.time_wait)
        tw.on_socket(s);
    finish_group(snapshot, group, live, tw);
}

// The cgroup v2 ids of the group's processes, when every one has a cgroup below the root: a
// filter on the root cgroup would keep every socket.
std::vector<std::uint64_t> own_cgroups(const Snapshot& snapshot, const Group& group,
                                       const proc::ProcFs& procfs) {
    std::vector<std::uint64_t> ids;
    for (std::size_t idx : group.processes) {
        const auto cg = procfs.cgroup(snapshot.processes[idx].info.pid);
        if (!cg || cg->id == 0 || cg->path == "/") return {};
        ids.push_back(cg->id);
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
}

void dump_group(Snapshot& snapshot, const Group& group, const InodeOwners& owners,
                const CookieOwners* known, SourceOpener& opener, const proc::ProcFs* targeted) {
    auto source = opener.open(group);
    if (snapshot.source.empty() || snapshot.source == source->name())
        snapshot.source = std::string(source->name());
    else
        snapshot.source = "mixed";
    snapshot.has_tcp_info = snapshot.has_tcp_info && source->has_tcp_info();
    if (targeted != nullptr && source->can_target())
        dump_targeted(snapshot, group, owners, known, *source, *targeted,
                      own_cgroups(snapshot, group, *targeted));
    else
        dump_whole(snapshot, group, owners, known, *source);
}

std::vector<Group> group_by_netns(const Snapshot& snapshot) {
    std::vector<Group> groups;
    for (std::size_t i = 0; i < snapshot.processes.size(); ++i) {
        const auto& info = snapshot.processes[i].info;
        auto it = std::find_if(groups.begin(), groups.end(),
                               [&](const Group& g) { return g.netns == info.netns; });
        if (it == groups.end()) {
            groups.push_back({info.netns, info.pid, {}, false});
            it = std::prev(groups.end());
        }
        it->processes.push_back(i);
    }
    return groups;
}

// Records which process holds each socket inode, and sizes the process's socket list for them
// now: growing it by doubling during the dump would nearly double the peak memory.
void add_owners(InodeOwners& owners, const proc::FdScan& fds, ProcessSnapshot& process,
                std::size_t index) {
    for (std::uint64_t inode : fds.socket_inodes)
        owners.emplace_back(inode, index);
    process.sockets.reserve(fds.socket_inodes.size());
}

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
        FdHandle fd(::open(ns.path.c_str(), O_RDONLY | O_CLOEXEC));
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
        Group group{ns.inode, 0, {}, false};
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

// Counts the socket fds of each process that no dump accounted for, by protocol. TCP ones are
// first looked for in the host's other namespaces when `search` allows it.
// `closed` holds the inodes an earlier scan searched every namespace for in vain; on return, those
// of this scan.
void account_fds(Snapshot& snapshot, const std::vector<proc::FdScan>& fd_scans,
                 const proc::ProcFs& procfs, bool search, const std::vector<std::uint64_t>& dumped,
                 std::vector<std::uint64_t>& closed) {
    std::vector<std::uint64_t> still_closed;
    InodeOwners tcp_pending;
    for (std::size_t i = 0; i < snapshot.processes.size() && i < fd_scans.size(); ++i) {
        auto& p = snapshot.processes[i];
        for (const auto& [inode, fd] : unaccounted(fd_scans[i], p.sockets)) {
            const auto protocol = procfs.socket_protocol(p.info.pid, fd);
            if (!protocol) continue; // closed since we listed it
            switch (proc::socket_kind(*protocol)) {
            case proc::SocketKind::tcp:
                if (std::binary_search(closed.begin(), closed.end(), inode)) {
                    ++p.other_sockets.tcp;
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
    if (search && !tcp_pending.empty())
        unsearched = search_other_namespaces(snapshot, tcp_pending, dumped, procfs);
    for (const auto& [inode, idx] : tcp_pending) {
        ++snapshot.processes[idx].other_sockets.tcp;
        if (search && unsearched == 0) still_closed.push_back(inode);
    }
    std::sort(still_closed.begin(), still_closed.end());
    still_closed.erase(std::unique(still_closed.begin(), still_closed.end()), still_closed.end());
    closed = std::move(still_closed);
    if (unsearched > 0 && !tcp_pending.empty())
        snapshot.warnings.push_back(
            std::to_string(tcp_pending.size()) +
            " TCP socket fds are in no dump: closed, or in one of " + std::to_string(unsearched) +
            " network namespaces that could not be entered (run as root to search them)");
}

} // namespace

Scanner::Scanner(Config config) : config_(std::move(config)), procfs_(config_.proc_root) {}

Snapshot Scanner::scan_pids(const std::vector<pid_t>& pids, const CookieOwners* known) {
    Snapshot snapshot;
    snapshot.taken_at = std::chrono::system_clock::now();
    InodeOwners owners;
    std::vector<proc::FdScan> fd_scans; // parallel to snapshot.processes
    for (pid_t pid : pids) {
        if (std::any_of(snapshot.processes.begin(), snapshot.processes.end(),
                        [pid](const ProcessSnapshot& p) { return p.info.pid == pid; }))
            continue;
        if (std::any_of(snapshot.unreadable.begin(), snapshot.unreadable.end(),
                        [pid](const UnreadableProcess& u) { return u.pid == pid; }))
            continue;
        ProcessSnapshot p;
        p.info = procfs_.read_info(pid);
        proc::FdScan fds;
        try {
            fds = procfs_.scan_fds(pid);
        } catch (const Error& e) {
            if (e.code() == Errc::no_such_process)
                throw Error(Errc::process_exited,
                            "process " + std::to_string(pid) + " exited during the audit");
            if (e.code() != Errc::permission_denied) throw;
            snapshot.unreadable.push_back({pid, p.info.comm, e.code(), e.what()});
            continue;
        }
        p.info.open_fds = fds.open_fds;
        add_owners(owners, fds, p, snapshot.processes.size());
        snapshot.processes.push_back(std::move(p));
        fd_scans.push_back(std::move(fds));
    }
    std::sort(owners.begin(), owners.end());

    SourceOpener opener(config_, procfs_, snapshot);
    std::vector<std::uint64_t> dumped{procfs_.self_netns()};
    std::vector<std::size_t> failed; // indexes of processes whose namespace we could not read
    for (const Group& group : group_by_netns(snapshot)) {
        dumped.push_back(group.netns);
        try {
            dump_group(snapshot, group, owners, known, opener,
                       config_.targeted ? &procfs_ : nullptr);
        } catch (const Error& e) {
            if (e.code() != Errc::permission_denied) throw;
            for (std::size_t idx : group.processes) {
                const auto& info = snapshot.processes[idx].info;
                snapshot.unreadable.push_back({info.pid, info.comm, e.code(), e.what()});
                failed.push_back(idx);
            }
        }
    }
    std::sort(failed.begin(), failed.end());
    for (auto it = failed.rbegin(); it != failed.rend(); ++it) {
        snapshot.processes.erase(snapshot.processes.begin() + static_cast<std::ptrdiff_t>(*it));
        fd_scans.erase(fd_scans.begin() + static_cast<std::ptrdiff_t>(*it));
    }
    std::sort(snapshot.unreadable.begin(), snapshot.unreadable.end(),
              [](const UnreadableProcess& a, const UnreadableProcess& b) { return a.pid < b.pid; });
    // Nothing read at all is no partial result: the caller gets the reason as an error.
    if (snapshot.processes.empty() && !snapshot.unreadable.empty())
        throw Error(snapshot.unreadable.front().code, snapshot.unreadable.front().reason);
    account_fds(snapshot, fd_scans, procfs_,
                config_.replay_path.empty() && snapshot.source == "netlink", dumped, closed_tcp_);

    for (const auto& p : snapshot.processes)
        if (config_.replay_path.empty() && !procfs_.exists(p.info.pid))
            throw Error(Errc::process_exited,
                        "process " + std::to_string(p.info.pid) + " exited during the audit");
    return snapshot;
}

Snapshot Scanner::scan_host(const CookieOwners* known) {
    Snapshot snapshot;
    snapshot.taken_at = std::chrono::system_clock::now();
    InodeOwners owners;
    std::vector<std::uint64_t> unreadable_netns;
    std::vector<proc::FdScan> fd_scans; // parallel to snapshot.processes
    for (pid_t pid : procfs_.list_pids()) {
        ProcessSnapshot p;
        try {
            p.info = procfs_.read_info(pid);
            proc::FdScan fds = procfs_.scan_fds(pid);
            if (fds.socket_inodes.empty()) continue;
            p.info.open_fds = fds.open_fds;
            add_owners(owners, fds, p, snapshot.processes.size());
            fd_scans.push_back(std::move(fds));
        } catch (const Error& e) {
            if (e.code() == Errc::permission_denied) {
                ++snapshot.unreadable_processes;
                unreadable_netns.push_back(p.info.netns);
            } else {
                ++snapshot.vanished_processes;
            }
            continue;
        }
        snapshot.processes.push_back(std::move(p));
    }
    std::sort(owners.begin(), owners.end());
    if (snapshot.unreadable_processes > 0)
        snapshot.warnings.push_back(std::to_string(snapshot.unreadable_processes) +
                                    " processes hide their file descriptors from us: their "
                                    "sockets are counted as unattributed (" +
                                    privilege::hint(privilege::Access::process_fds) + ")");

    SourceOpener opener(config_, procfs_, snapshot);
    auto groups = group_by_netns(snapshot);
    if (groups.empty()) groups.push_back({procfs_.self_netns(), ::getpid(), {}, false});
    for (Group& group : groups) {
        group.has_unreadable =
            std::find(unreadable_netns.begin(), unreadable_netns.end(), group.netns) !=
                unreadable_netns.end() ||
            (group.netns == procfs_.self_netns() && snapshot.unreadable_processes > 0);
        try {
            dump_group(snapshot, group, owners, known, opener, nullptr);
        } catch (const Error& e) {
            // One namespace we cannot read must not hide the others.
            if (groups.size() == 1) throw;
            snapshot.warnings.push_back(e.what());
        }
    }
    // Host-wide every process's namespace was dumped already: no search, only the counts.
    std::vector<std::uint64_t> no_search;
    account_fds(snapshot, fd_scans, procfs_, false, {}, no_search);
    for (auto& p : snapshot.processes)
        if (config_.replay_path.empty() && !procfs_.exists(p.info.pid)) p.exited = true;
    return snapshot;
}

} // namespace conncheck::scan
