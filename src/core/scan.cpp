#include "conncheck/scan.hpp"

#include "conncheck/diag/replay.hpp"
#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/scan/fd_walk.hpp"
#include "conncheck/scan/opener.hpp"
#include "conncheck/scan/other_fds.hpp"
#include "conncheck/scan/sinks.hpp"

#include <algorithm>
#include <array>
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

// States in the kernel's established hash, where an exact request finds a socket by its
// 4-tuple. Listening sockets live in another table, bound-only ones in a third.
constexpr std::uint32_t exact_states =
    state_bit(TcpState::established) | state_bit(TcpState::syn_sent) |
    state_bit(TcpState::syn_recv) | state_bit(TcpState::fin_wait1) |
    state_bit(TcpState::fin_wait2) | state_bit(TcpState::close_wait) |
    state_bit(TcpState::last_ack) | state_bit(TcpState::closing);

// Past this share of the sockets the first dump saw, one dump with extensions costs less than
// an exact request per socket. Measured on scripts/bench-audit's 100,000 sockets: tcp_info and
// socket memory in a dump cost the kernel about 2 us more per socket (every socket it returns),
// an exact request about 4.6 us (only the target's).
constexpr std::uint64_t exact_share_percent = 40;

// Sorts exact requests by cookie and drops repeats: a socket several processes hold is asked
// for once.
void ask_once(std::vector<const SocketRecord*>& exact) {
    std::sort(exact.begin(), exact.end(),
              [](const SocketRecord* a, const SocketRecord* b) { return a->cookie < b->cookie; });
    exact.erase(std::unique(exact.begin(), exact.end(),
                            [](const SocketRecord* a, const SocketRecord* b) {
                                return a->cookie == b->cookie;
                            }),
                exact.end());
}

// Dumps one namespace. TIME_WAIT sockets can only be attributed once the processes' peers and
// listeners are known: the live kernel answers every state of both families in one walk of its
// tables, TIME_WAIT kept aside meanwhile (a walk fewer: 30 ms of 330 at 50,000 sockets). A
// recording holds the live states and TIME_WAIT as separate dumps per family, and its replay
// answers request by request (diag/replay.cpp): those are asked for in that order.
void dump_whole(Snapshot& snapshot, const NetnsGroup& group, const InodeOwners& owners,
                const CookieOwners& known, std::vector<SocketRecord>* unattributed,
                diag::SocketSource& source) {
    constexpr std::array<std::uint8_t, 2> families{AF_INET, AF_INET6};
    LiveSink live(snapshot, owners, group);
    TimeWaitBuffer live_first(live);
    if (source.can_target()) {
        note_dump(snapshot, source.dump({AF_UNSPEC, all_states, true, true, {}}, live_first));
    } else {
        for (std::uint8_t family : families) {
            live.mark();
            note_dump(snapshot, source.dump({family, live_states, true, true, {}}, live));
        }
    }
    for (std::size_t idx : group.processes)
        deduplicate(snapshot.processes[idx].sockets);

    TimeWaitSink tw(snapshot, group, known, unattributed);
    for (const auto& s : live_first.time_wait)
        tw.on_socket(s);
    if (!source.can_target()) {
        for (std::uint8_t family : families) {
            tw.mark();
            note_dump(snapshot,
                      source.dump({family, state_bit(TcpState::time_wait), false, false, {}}, tw));
        }
    }
    finish_group(snapshot, group, live, tw);
}

// The find dump: every socket but bound-only ones, filtered to `cgroups` when there are any
// (cleared when the filter turns out to miss some of the processes' sockets). TIME_WAIT has no
// cgroup (id 0 in the filter), so a filtered dump asks for cgroup 0 as well.
void find_owned(Snapshot& snapshot, const NetnsGroup& group, const InodeOwners& owners,
                diag::SocketSource& source, const proc::ProcFs& procfs,
                const std::vector<proc::FdScan>& fd_scans, PendingOwners& pending,
                std::size_t pending_sockets, std::vector<std::uint64_t>& cgroups, LiveSink& live,
                TimeWaitBuffer& find_sink) {
    // Asked for TCP_BOUND_INACTIVE, the kernel also walks its bind table, where every bound
    // socket is listed, connected ones too: a second walk of the host's sockets (`ss -tan` does
    // not ask for them). Only a process holding a socket the first dump missed needs it.
    constexpr std::uint32_t bound_only = state_bit(TcpState::bound_inactive);
    diag::DumpRequest find{AF_UNSPEC, all_states & ~bound_only, false, false, cgroups};
    if (!cgroups.empty()) find.cgroups.push_back(0);
    PendingSink first(find_sink, pending, pending_sockets);
    note_dump(snapshot, source.dump(find, first));
    first.finish();
    if (!missed_tcp_sockets(snapshot, group, fd_scans, procfs)) return;
    // A bound-only socket carries its cgroup: asked for under the same filter first.
    LiveSink bound(snapshot, owners, group);
    note_dump(snapshot, source.dump({AF_UNSPEC, bound_only, false, false, find.cgroups}, bound));
    if (cgroups.empty() || !missed_tcp_sockets(snapshot, group, fd_scans, procfs)) {
        live.seen_ += bound.seen_;
        live.orphaned_ += bound.orphaned_;
        live.unmatched_ += bound.unmatched_;
        return;
    }
    // Created before the move to the cgroup, or passed from elsewhere: everything, unfiltered.
    bound.on_restart();
    find_sink.on_restart();
    cgroups.clear();
    find.cgroups.clear();
    find.states = all_states;
    note_dump(snapshot, source.dump(find, find_sink));
}

// The chosen processes' sockets at a cost that follows them, not the host: a dump without
// extensions finds them (in the kernel, only their cgroups' sockets when they have cgroups of
// their own; in parallel with the reading of their fd tables, see PendingSink), then the kernel
// fills tcp_info and socket memory for just those, by exact requests or, when they are a large
// share, by one dump. Both families go in one walk of the kernel's tables.
void dump_targeted(Snapshot& snapshot, const NetnsGroup& group, const InodeOwners& owners,
                   const CookieOwners& known, std::vector<SocketRecord>* unattributed,
                   diag::SocketSource& source, const proc::ProcFs& procfs,
                   const std::vector<proc::FdScan>& fd_scans, PendingOwners& pending,
                   std::size_t pending_sockets, std::vector<std::uint64_t> cgroups) {
    LiveSink live(snapshot, owners, group);
    // TIME_WAIT comes in the same walk, kept aside until the live sockets are known.
    TimeWaitBuffer find_sink(live);
    find_owned(snapshot, group, owners, source, procfs, fd_scans, pending, pending_sockets, cgroups,
               live, find_sink);

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
    ask_once(exact);

    RefreshSink refresh(snapshot, group);
    if (!exact.empty()) note_dump(snapshot, source.fetch(exact, true, true, refresh));
    exact = {};
    if (dump_states != 0)
        note_dump(snapshot, source.dump({AF_UNSPEC, dump_states, true, true, cgroups}, refresh));
    const auto closed = refresh.drop_stale();

    TimeWaitSink tw(snapshot, group, known, unattributed, closed);
    for (const auto& s : find_sink.time_wait)
        tw.on_socket(s);
    finish_group(snapshot, group, live, tw);
}

// The cgroup v2 ids of the group's processes, when every one has a cgroup below the root: a
// filter on the root cgroup would keep every socket.
std::vector<std::uint64_t> own_cgroups(const Snapshot& snapshot, const NetnsGroup& group,
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

// A scan of chosen processes: whether to ask for their sockets alone, and their fd tables,
// which an FdWalk may still be reading while the first dump runs.
struct Chosen {
    const proc::ProcFs& procfs;
    PendingOwners& fds;
    bool targeted;
    std::size_t pending_sockets;
};

// `chosen` is null for a host-wide scan.
void dump_group(Snapshot& snapshot, const NetnsGroup& group, const InodeOwners& owners,
                const CookieOwners& known, bool keep_unattributed, SourceOpener& opener,
                const Chosen* chosen, const std::vector<proc::FdScan>& fd_scans) {
    std::vector<SocketRecord>* unattributed =
        keep_unattributed ? &snapshot.unattributed_time_wait : nullptr;
    auto source = opener.open(group);
    if (snapshot.source && *snapshot.source != source->kind()) snapshot.mixed_sources = true;
    snapshot.source = source->kind();
    snapshot.has_tcp_info = snapshot.has_tcp_info && source->has_tcp_info();
    if (chosen != nullptr && chosen->targeted && source->can_target()) {
        dump_targeted(snapshot, group, owners, known, unattributed, *source, chosen->procfs,
                      fd_scans, chosen->fds, chosen->pending_sockets,
                      own_cgroups(snapshot, group, chosen->procfs));
        return;
    }
    if (chosen != nullptr) chosen->fds.settle();
    dump_whole(snapshot, group, owners, known, unattributed, *source);
}

std::vector<NetnsGroup> group_by_netns(const Snapshot& snapshot) {
    std::vector<NetnsGroup> groups;
    for (std::size_t i = 0; i < snapshot.processes.size(); ++i) {
        const auto& info = snapshot.processes[i].info;
        auto it = std::find_if(groups.begin(), groups.end(),
                               [&](const NetnsGroup& g) { return g.netns == info.netns; });
        if (it == groups.end()) {
            groups.push_back({info.netns, info.pid, {}, false});
            it = std::prev(groups.end());
        }
        it->processes.push_back(i);
    }
    return groups;
}

// The chosen processes' fd tables, read on a thread of their own from construction on.
class ChosenFds : public PendingOwners {
public:
    ChosenFds(const proc::ProcFs& procfs, Snapshot& snapshot)
        : snapshot_(snapshot), walk_(procfs, pids_of(snapshot)) {}
    [[nodiscard]] bool ready() const override { return settled_ || walk_.done(); }
    void settle() override;
    // Whether process `index` has no fd table here (see `errors`).
    [[nodiscard]] bool failed(std::size_t index) const {
        return std::any_of(errors.begin(), errors.end(),
                           [index](const auto& e) { return e.first == index; });
    }
    InodeOwners owners;
    std::vector<proc::FdScan> scans; // parallel to Snapshot::processes once settled
    std::vector<std::pair<std::size_t, Error>> errors; // process index, why its fds are unknown

private:
    static std::vector<pid_t> pids_of(const Snapshot& snapshot) {
        std::vector<pid_t> pids;
        for (const auto& p : snapshot.processes)
            pids.push_back(p.info.pid);
        return pids;
    }
    Snapshot& snapshot_;
    FdWalk walk_;
    bool settled_ = false;
};

// Records which process holds each socket inode, and sizes the process's socket list for them
// now: growing it by doubling during the dump would nearly double the peak memory.
void add_owners(InodeOwners& owners, const proc::FdScan& fds, ProcessSnapshot& process,
                std::size_t index) {
    for (std::uint64_t inode : fds.socket_inodes)
        owners.emplace_back(inode, index);
    process.sockets.reserve(fds.socket_inodes.size());
}

void ChosenFds::settle() {
    if (settled_) return;
    settled_ = true;
    auto results = walk_.take();
    scans.resize(results.size());
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (!results[i].fds) {
            errors.emplace_back(i, std::move(*results[i].error));
            continue;
        }
        auto& p = snapshot_.processes[i];
        p.info.open_fds = results[i].fds->open_fds;
        add_owners(owners, *results[i].fds, p, i);
        scans[i] = std::move(*results[i].fds);
    }
    std::sort(owners.begin(), owners.end());
}

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

} // namespace

std::string source_name(const Snapshot& snapshot) {
    if (snapshot.mixed_sources) return "mixed";
    return snapshot.source ? std::string(diag::source_name(*snapshot.source)) : std::string();
}

bool any_listening(const Snapshot& snapshot) {
    return std::any_of(snapshot.processes.begin(), snapshot.processes.end(), [](const auto& p) {
        return std::any_of(p.sockets.begin(), p.sockets.end(),
                           [](const SocketRecord& s) { return s.state == TcpState::listen; });
    });
}

Scanner::Scanner(Config config) : config_(std::move(config)), procfs_(config_.proc_root) {
    if (config_.record_path.empty()) return;
    // One recording for every dump of every scan: created beside its path and renamed into
    // place at once, so that it grows as watch goes on and a link planted there is refused.
    recording_.emplace(files::OutputFile::create(config_.record_path, 0644));
    recording_->write(diag::recording_magic);
    recording_->commit(false);
}

void Scanner::remember(pid_t pid, std::uint64_t start_ticks,
                       std::span<const std::uint64_t> cookies) {
    memory_.remember(pid, start_ticks, cookies, steady_ms());
}

Snapshot Scanner::scan_pids(const std::vector<pid_t>& pids, bool quiet) {
    if (quiet && keep_last_walk_)
        if (auto rescanned = rescan(pids)) return std::move(*rescanned);
    Snapshot snapshot;
    snapshot.taken_at = std::chrono::system_clock::now();
    for (pid_t pid : pids) {
        if (std::any_of(snapshot.processes.begin(), snapshot.processes.end(),
                        [pid](const ProcessSnapshot& p) { return p.info.pid == pid; }))
            continue;
        ProcessSnapshot p;
        p.info = procfs_.read_info(pid);
        memory_.note_instance(pid, p.info.start_ticks);
        snapshot.processes.push_back(std::move(p));
    }
    ChosenFds fds(procfs_, snapshot);
    const Chosen chosen{procfs_, fds, config_.targeted, config_.pending_sockets};

    SourceOpener opener(config_, procfs_, snapshot, recording_fd());
    std::vector<std::uint64_t> dumped{procfs_.self_netns()};
    std::vector<std::size_t> failed; // processes whose fds or namespace we could not read
    for (const NetnsGroup& group : group_by_netns(snapshot)) {
        // Once the walk is over, a namespace where no fd table could be read needs no dump.
        if (fds.ready()) {
            fds.settle();
            if (std::all_of(group.processes.begin(), group.processes.end(),
                            [&](std::size_t idx) { return fds.failed(idx); }))
                continue;
        }
        dumped.push_back(group.netns);
        try {
            dump_group(snapshot, group, fds.owners, memory_.owners(),
                       config_.keep_unattributed_time_wait, opener, &chosen, fds.scans);
        } catch (const Error& e) {
            if (e.code() != Errc::permission_denied) throw;
            fds.settle();
            for (std::size_t idx : group.processes) {
                if (fds.failed(idx)) continue; // that reason comes first, below
                const auto& info = snapshot.processes[idx].info;
                snapshot.unreadable.push_back({info.pid, info.comm, e.code(), e.what()});
                failed.push_back(idx);
            }
        }
    }
    fds.settle();
    for (const auto& [idx, e] : fds.errors) {
        const auto& info = snapshot.processes[idx].info;
        if (e.code() == Errc::no_such_process)
            throw Error(Errc::process_exited,
                        "process " + std::to_string(info.pid) + " exited during the audit");
        if (e.code() != Errc::permission_denied) throw e;
        snapshot.unreadable.push_back({info.pid, info.comm, e.code(), e.what()});
        failed.push_back(idx);
    }
    std::vector<proc::FdScan>& fd_scans = fds.scans;
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
                !snapshot.mixed_sources && snapshot.source == diag::SourceKind::netlink
                    ? TcpSearch::search
                    : TcpSearch::none,
                dumped, closed_tcp_);
    note_sightings(snapshot);

    for (const auto& p : snapshot.processes)
        if (config_.replay_path.empty() && !procfs_.exists(p.info.pid))
            throw Error(Errc::process_exited,
                        "process " + std::to_string(p.info.pid) + " exited during the audit");
    // A socket the processes closed that the kernel still drains turns to TIME_WAIT or goes
    // without their fds changing: known by the cookies the memory has before this scan.
    const bool draining = std::any_of(
        snapshot.orphan_cookies.begin(), snapshot.orphan_cookies.end(), [&](std::uint64_t c) {
            const auto owner = memory_.owners().find(c);
            return owner != memory_.owners().end() &&
                   std::any_of(
                       snapshot.processes.begin(), snapshot.processes.end(),
                       [&](const ProcessSnapshot& p) { return p.info.pid == owner->second; });
        });
    memory_.update(snapshot, steady_ms());
    if (keep_last_walk_) keep_walk(snapshot, fd_scans, draining);
    return snapshot;
}

void Scanner::note_sightings(Snapshot& snapshot) {
    std::unordered_map<std::uint64_t, Sighting> next;
    for (auto& p : snapshot.processes) {
        for (const auto& s : p.sockets)
            if (s.inode != 0 && s.state != TcpState::listen && s.state != TcpState::time_wait)
                next[s.inode] = Sighting{s.cookie, s.remote, s.state, {}};
        for (auto& h : p.held_after_close) {
            Sighting seen;
            if (const auto it = sightings_.find(h.inode); it != sightings_.end()) seen = it->second;
            if (seen.first_seen_closed == std::chrono::system_clock::time_point{})
                seen.first_seen_closed = snapshot.taken_at;
            h.cookie = seen.cookie;
            h.remote = seen.remote;
            h.last_state = seen.state;
            h.closed_for_ms = static_cast<std::uint64_t>(
                std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(
                                              snapshot.taken_at - seen.first_seen_closed)
                                              .count()));
            next[h.inode] = seen;
        }
    }
    sightings_ = std::move(next);
}

// Keeps the processes for rescan() when nothing about them can change unseen: every socket
// they hold is a connected TCP socket of theirs that an exact request finds again, and nothing
// of theirs changes without their fds changing (TIME_WAIT, sockets they closed that the kernel
// still drains, TCP sockets in no table or in another namespace).
void Scanner::keep_walk(const Snapshot& snapshot, const std::vector<proc::FdScan>& fd_scans,
                        bool draining) {
    last_walk_.clear();
    const bool live = !draining && config_.replay_path.empty() && config_.record_path.empty() &&
                      !snapshot.mixed_sources && snapshot.source == diag::SourceKind::netlink &&
                      snapshot.warnings.empty() && snapshot.unreadable.empty();
    if (!live) return;
    std::vector<Walked> kept;
    for (std::size_t i = 0; i < snapshot.processes.size(); ++i) {
        const ProcessSnapshot& p = snapshot.processes[i];
        const auto& inodes = fd_scans[i].socket_inodes;
        const bool settled =
            p.time_wait_by_peer.empty() && p.time_wait_exact == 0 && p.other_sockets.tcp == 0 &&
            p.held_after_close.empty() && p.other_netns_sockets == 0 &&
            std::all_of(p.sockets.begin(), p.sockets.end(), [&](const SocketRecord& s) {
                return (state_bit(s.state) & exact_states) != 0 && s.cookie != 0 &&
                       std::binary_search(inodes.begin(), inodes.end(), s.inode);
            });
        if (!settled) return;
        kept.push_back({p, inodes});
    }
    last_walk_ = std::move(kept);
}

// The processes as keep_walk() kept them, their sockets asked for again by cookie; nullopt
// when anything differs (then a full scan finds out what, and reports errors as it does).
std::optional<Snapshot> Scanner::rescan(const std::vector<pid_t>& pids) {
    if (last_walk_.empty()) return std::nullopt;
    Snapshot snapshot;
    snapshot.taken_at = std::chrono::system_clock::now();
    snapshot.walked = false;
    for (pid_t pid : pids) {
        const auto same_pid = [pid](const ProcessSnapshot& p) { return p.info.pid == pid; };
        if (std::any_of(snapshot.processes.begin(), snapshot.processes.end(), same_pid)) continue;
        const auto kept = std::find_if(last_walk_.begin(), last_walk_.end(),
                                       [&](const Walked& w) { return same_pid(w.process); });
        if (kept == last_walk_.end()) return std::nullopt;
        ProcessSnapshot p = kept->process;
        try {
            p.info = procfs_.read_info(pid);
            if (p.info.start_ticks != kept->process.info.start_ticks ||
                p.info.netns != kept->process.info.netns)
                return std::nullopt;
            const proc::FdScan fds = procfs_.scan_fds(pid);
            if (fds.socket_inodes != kept->inodes) return std::nullopt;
            p.info.open_fds = fds.open_fds;
        } catch (const Error&) {
            return std::nullopt;
        }
        snapshot.processes.push_back(std::move(p));
    }
    SourceOpener opener(config_, procfs_, snapshot, recording_fd());
    for (const NetnsGroup& group : group_by_netns(snapshot)) {
        auto source = opener.open(group);
        if (!snapshot.warnings.empty() || !source->can_target()) return std::nullopt;
        std::vector<const SocketRecord*> exact;
        for (std::size_t idx : group.processes) {
            auto& sockets = snapshot.processes[idx].sockets;
            deduplicate(sockets); // sorted by cookie, as RefreshSink needs
            for (const auto& s : sockets)
                exact.push_back(&s);
        }
        ask_once(exact);
        RefreshSink refresh(snapshot, group);
        note_dump(snapshot, source->fetch(exact, true, true, refresh));
        if (!refresh.drop_stale().empty()) return std::nullopt;
        snapshot.source = source->kind();
        snapshot.has_tcp_info = source->has_tcp_info();
    }
    for (const auto& p : snapshot.processes)
        if (!procfs_.exists(p.info.pid)) return std::nullopt;
    memory_.update(snapshot, steady_ms());
    return snapshot;
}

RunningScan Scanner::scan_running(const std::vector<pid_t>& pids, bool quiet) {
    RunningScan result;
    std::vector<pid_t> running = pids;
    const auto drop_exited = [&] {
        std::erase_if(running, [&](pid_t pid) {
            if (procfs_.is_running(pid)) return false;
            result.exited.push_back(pid);
            memory_.forget_process(pid);
            return true;
        });
    };
    drop_exited();
    for (int attempt = 0; attempt < 4 && !running.empty(); ++attempt) {
        try {
            result.snapshot = scan_pids(running, quiet);
            break;
        } catch (const Error& e) {
            if (e.code() != Errc::no_such_process && e.code() != Errc::process_exited) throw;
            drop_exited();
        }
    }
    return result;
}

Snapshot Scanner::scan_host() {
    Snapshot snapshot;
    snapshot.taken_at = std::chrono::system_clock::now();
    InodeOwners owners;
    std::vector<std::uint64_t> unreadable_netns;
    std::vector<proc::FdScan> fd_scans; // parallel to snapshot.processes
    // Every fd is read before the dump: a socket it names that no dump returns is then closed
    // (held after close), never one opened after the dump passed its bucket.
    const auto pids = procfs_.list_pids();
    auto tables = read_host_fd_tables(procfs_, pids);
    for (std::size_t i = 0; i < pids.size(); ++i) {
        auto& table = tables[i];
        if (table.fds && table.fds->socket_inodes.empty()) continue;
        ProcessSnapshot p;
        try {
            p.info = procfs_.read_info(pids[i]);
            if (!table.fds) throw *table.error;
        } catch (const Error& e) {
            if (e.code() == Errc::permission_denied) {
                ++snapshot.unreadable_processes;
                unreadable_netns.push_back(p.info.netns);
            } else {
                ++snapshot.vanished_processes;
            }
            continue;
        }
        p.info.open_fds = table.fds->open_fds;
        add_owners(owners, *table.fds, p, snapshot.processes.size());
        fd_scans.push_back(std::move(*table.fds));
        snapshot.processes.push_back(std::move(p));
    }
    std::sort(owners.begin(), owners.end());
    if (snapshot.unreadable_processes > 0)
        snapshot.warnings.push_back(std::to_string(snapshot.unreadable_processes) +
                                    " processes hide their file descriptors from us: their "
                                    "sockets are counted as unattributed (" +
                                    privilege::hint(privilege::Access::process_fds) + ")");

    SourceOpener opener(config_, procfs_, snapshot, recording_fd());
    const CookieOwners no_cookies;
    auto groups = group_by_netns(snapshot);
    if (groups.empty()) groups.push_back({procfs_.self_netns(), ::getpid(), {}, false});
    bool all_dumped = true;
    for (NetnsGroup& group : groups) {
        group.has_unreadable =
            std::find(unreadable_netns.begin(), unreadable_netns.end(), group.netns) !=
                unreadable_netns.end() ||
            (group.netns == procfs_.self_netns() && snapshot.unreadable_processes > 0);
        try {
            dump_group(snapshot, group, owners, no_cookies, config_.keep_unattributed_time_wait,
                       opener, nullptr, fd_scans);
        } catch (const Error& e) {
            // One namespace we cannot read must not hide the others.
            if (groups.size() == 1) throw;
            snapshot.warnings.push_back(e.what());
            all_dumped = false;
        }
    }
    // Host-wide every process's namespace was dumped already: a TCP socket in no dump is closed
    // (unless it came from a namespace no process lives in, which only a search would find).
    std::vector<std::uint64_t> no_search;
    const bool live = config_.replay_path.empty() && snapshot.source &&
                      *snapshot.source != diag::SourceKind::replay && all_dumped;
    account_fds(snapshot, fd_scans, procfs_, live ? TcpSearch::dumped : TcpSearch::none, {},
                no_search);
    for (auto& p : snapshot.processes)
        if (config_.replay_path.empty() && !procfs_.exists(p.info.pid)) p.exited = true;
    return snapshot;
}

} // namespace conncheck::scan
