#include "conncheck/scan/sinks.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <sys/mman.h>
#include <unistd.h>

namespace conncheck::scan {

TimeWaitSink::TimeWaitSink(Snapshot& snapshot, const NetnsGroup& group, const CookieOwners& known,
                           std::vector<SocketRecord>* unattributed,
                           const std::vector<std::pair<std::uint64_t, std::size_t>>& closed)
    : snapshot_(snapshot), group_(group), known_(known), unattributed_list_(unattributed),
      live_cookies_(closed) {
    for (std::size_t idx : group.processes) {
        const auto& p = snapshot.processes[idx];
        pid_index_.emplace(p.info.pid, idx);
        for (const auto& s : p.sockets) {
            if (s.cookie != 0) live_cookies_.emplace_back(s.cookie, idx);
            if (s.state == TcpState::listen) {
                listeners_.emplace(s.local.port, std::make_pair(s.local, idx));
            } else if (!s.remote.is_unspecified()) {
                // A peer several processes talk to names none of them.
                const auto [it, inserted] = peers_.emplace(s.remote, idx);
                if (!inserted && it->second != idx) it->second = ambiguous;
            }
        }
    }
    std::sort(live_cookies_.begin(), live_cookies_.end());
    mark();
}

void TimeWaitSink::on_socket(const SocketRecord& s) {
    ++seen_;
    if (auto idx = exact_owner(s.cookie)) {
        snapshot_.processes[*idx].sockets.push_back(s);
        ++snapshot_.processes[*idx].time_wait_exact;
        return;
    }
    // By peer endpoint or listening port: only when exactly one scanned process fits. A guess
    // between several would count one closed connection for each of them, or for the wrong one.
    std::optional<std::size_t> owner;
    bool several = false;
    const auto candidate = [&](std::size_t idx) {
        if (idx == ambiguous || (owner && *owner != idx))
            several = true;
        else
            owner = idx;
    };
    if (auto it = peers_.find(s.remote); it != peers_.end()) candidate(it->second);
    auto [lo, hi] = listeners_.equal_range(s.local.port);
    for (auto it = lo; it != hi; ++it) {
        const Endpoint& l = it->second.first;
        const bool wildcard =
            std::all_of(l.addr.begin(), l.addr.end(), [](std::uint8_t b) { return b == 0; });
        if (wildcard || l.addr == s.local.addr) candidate(it->second.second);
    }
    if (several) {
        ++ambiguous_;
        return;
    }
    if (owner) {
        snapshot_.processes[*owner].time_wait_by_peer.push_back(s);
        return;
    }
    ++unattributed_;
    if (unattributed_list_ != nullptr) unattributed_list_->push_back(s);
}

std::optional<std::size_t> TimeWaitSink::exact_owner(std::uint64_t cookie) const {
    if (cookie == 0) return std::nullopt;
    auto it = std::lower_bound(live_cookies_.begin(), live_cookies_.end(),
                               std::make_pair(cookie, std::size_t{0}));
    if (it != live_cookies_.end() && it->first == cookie) return it->second;
    if (auto k = known_.find(cookie); k != known_.end()) {
        if (auto p = pid_index_.find(k->second); p != pid_index_.end()) return p->second;
    }
    return std::nullopt;
}

void RefreshSink::on_socket(const SocketRecord& s) {
    if (s.cookie == 0) return;
    for (std::size_t i = 0; i < group_.processes.size(); ++i) {
        auto& sockets = snapshot_.processes[group_.processes[i]].sockets;
        auto it =
            std::lower_bound(sockets.begin(), sockets.end(), s.cookie,
                             [](const SocketRecord& r, std::uint64_t c) { return r.cookie < c; });
        if (it == sockets.end() || it->cookie != s.cookie) continue;
        *it = s;
        refreshed_[i][static_cast<std::size_t>(it - sockets.begin())] = 1;
    }
}

std::vector<std::pair<std::uint64_t, std::size_t>> RefreshSink::drop_stale() {
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

PendingOwners::~PendingOwners() = default;

namespace {

// IPv4 endpoints keep their address in the first 4 of the 16 bytes, the rest zero.
bool fits(const Endpoint& e, std::size_t bytes) {
    return std::all_of(e.addr.begin() + static_cast<std::ptrdiff_t>(bytes), e.addr.end(),
                       [](std::uint8_t b) { return b == 0; });
}

template <std::size_t N> PendingSink::Held<N> hold(const SocketRecord& s) {
    PendingSink::Held<N> h{};
    h.cookie = s.cookie;
    h.inode = s.inode;
    h.expires_ms = s.expires_ms;
    h.rqueue = s.rqueue;
    h.wqueue = s.wqueue;
    h.uid = s.uid;
    h.interface = s.interface;
    h.local_port = s.local.port;
    h.remote_port = s.remote.port;
    h.state = s.state;
    h.timer = s.timer;
    h.local_family = s.local.family;
    h.remote_family = s.remote.family;
    std::copy_n(s.local.addr.begin(), N, h.local_addr.begin());
    std::copy_n(s.remote.addr.begin(), N, h.remote_addr.begin());
    return h;
}

// Copies `h` into slot `count` of `buffer`; false when the buffer cannot be mapped.
template <class H> bool keep(PageBuffer& buffer, std::size_t& count, const H& h) {
    std::byte* base = buffer.data();
    if (base == nullptr) return false;
    std::memcpy(base + count * sizeof h, &h, sizeof h);
    ++count;
    return true;
}

template <std::size_t N> SocketRecord release(const PendingSink::Held<N>& h) {
    SocketRecord s;
    s.state = h.state;
    s.timer = h.timer;
    s.expires_ms = h.expires_ms;
    s.rqueue = h.rqueue;
    s.wqueue = h.wqueue;
    s.uid = h.uid;
    s.inode = h.inode;
    s.cookie = h.cookie;
    s.interface = h.interface;
    s.local.family = h.local_family;
    s.local.port = h.local_port;
    std::copy_n(h.local_addr.begin(), N, s.local.addr.begin());
    s.remote.family = h.remote_family;
    s.remote.port = h.remote_port;
    std::copy_n(h.remote_addr.begin(), N, s.remote.addr.begin());
    return s;
}

} // namespace

PageBuffer::~PageBuffer() {
    if (base_ != nullptr) ::munmap(base_, bytes_);
}

std::byte* PageBuffer::data() {
    if (base_ == nullptr && bytes_ > 0) {
        void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) base_ = static_cast<std::byte*>(p);
    }
    return base_;
}

void PageBuffer::release_front(std::size_t offset) {
    static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t end = std::min(offset, bytes_) / page * page;
    if (base_ == nullptr || end <= released_) return;
    ::madvise(base_ + released_, end - released_, MADV_DONTNEED);
    released_ = end;
}

PendingSink::PendingSink(diag::DumpSink& next, PendingOwners& owners, std::size_t capacity)
    : next_(next), owners_(owners), capacity_(capacity), buffer4_(capacity * sizeof(Held<4>)),
      buffer16_(capacity * sizeof(Held<16>)) {}

void PendingSink::on_socket(const SocketRecord& s) {
    if (!settled_ && s.inode != 0) {
        const bool plain = !s.info && !s.mem;
        if (plain && held() < capacity_ && !owners_.ready()) {
            if (fits(s.local, 4) && fits(s.remote, 4) ? keep(buffer4_, held4_, hold<4>(s))
                                                      : keep(buffer16_, held16_, hold<16>(s)))
                return;
        }
        pass_held();
    }
    next_.on_socket(s);
}

void PendingSink::on_restart() {
    held4_ = 0;
    held16_ = 0;
    next_.on_restart();
}

void PendingSink::finish() {
    if (!settled_) pass_held();
}

template <std::size_t N> void PendingSink::pass(PageBuffer& buffer, std::size_t count) {
    const std::byte* base = buffer.data();
    for (std::size_t i = 0; i < count; ++i) {
        Held<N> h;
        std::memcpy(&h, base + i * sizeof h, sizeof h);
        next_.on_socket(release(h));
        if (i % 1024 == 1023) buffer.release_front((i + 1) * sizeof(Held<N>));
    }
    buffer.release_front(count * sizeof(Held<N>));
}

void PendingSink::pass_held() {
    owners_.settle();
    settled_ = true;
    // Within a family the dump's order stays, and a socket reported twice has one family:
    // deduplicate() still sees its reports in order.
    pass<4>(buffer4_, held4_);
    pass<16>(buffer16_, held16_);
    held4_ = 0;
    held16_ = 0;
}

// A socket reported twice (dumps are not atomic) or seen live and then in TIME_WAIT: keep the
// last report of each cookie, which is the newest state. Sorted through an index of 4 bytes a
// record and moved into place along the permutation's cycles: std::stable_sort's buffer would
// be half the records, the largest allocation of an audit of a process with many sockets.
void deduplicate(std::vector<SocketRecord>& sockets) {
    const std::size_t n = sockets.size();
    std::vector<std::uint32_t> order(n);
    std::iota(order.begin(), order.end(), std::uint32_t{0});
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
        const std::uint64_t ca = sockets[a].cookie;
        const std::uint64_t cb = sockets[b].cookie;
        return ca != cb ? ca < cb : a < b;
    });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t cookie = sockets[order[i]].cookie;
        const bool superseded = cookie != 0 && i + 1 < n && sockets[order[i + 1]].cookie == cookie;
        if (!superseded) order[kept++] = order[i];
    }
    order.resize(kept);
    // Position i takes the record at order[i]: chains that start where a record nobody takes
    // lies (overwritten first), then cycles (one record set aside to close each).
    std::vector<char> taken(n, 0);
    std::vector<char> done(kept, 0);
    for (std::size_t i = 0; i < kept; ++i)
        taken[order[i]] = 1;
    for (std::size_t head = 0; head < kept; ++head) {
        if (taken[head] != 0) continue;
        for (std::size_t at = head;;) {
            const std::size_t from = order[at];
            sockets[at] = std::move(sockets[from]);
            done[at] = 1;
            if (from >= kept) break;
            at = from;
        }
    }
    for (std::size_t start = 0; start < kept; ++start) {
        if (done[start] != 0 || order[start] == start) continue;
        SocketRecord first = std::move(sockets[start]);
        for (std::size_t at = start;;) {
            const std::size_t from = order[at];
            done[at] = 1;
            if (from == start) {
                sockets[at] = std::move(first);
                break;
            }
            sockets[at] = std::move(sockets[from]);
            at = from;
        }
    }
    sockets.resize(kept);
}

void note_dump(Snapshot& snapshot, const diag::DumpStats& stats) {
    if (stats.inconsistent)
        snapshot.warnings.push_back("the kernel's socket table kept changing during the dump (" +
                                    std::to_string(stats.retries) +
                                    " retries): counts may be off by the sockets that changed");
    if (stats.malformed > 0)
        snapshot.warnings.push_back(std::to_string(stats.malformed) +
                                    " malformed sock_diag replies skipped");
}

// Whether a process holds TCP sockets the first dump did not return: created before it moved
// to its cgroup, passed from another process, bound but inactive, or not yet in any kernel
// table. Only the fds of the sockets not found are looked at (their protocol), not the whole
// fd table again.
bool missed_tcp_sockets(const Snapshot& snapshot, const NetnsGroup& group,
                        const std::vector<proc::FdScan>& fd_scans, const proc::ProcFs& procfs) {
    for (std::size_t idx : group.processes) {
        if (idx >= fd_scans.size()) continue;
        const auto& p = snapshot.processes[idx];
        const auto& fds = fd_scans[idx];
        std::vector<std::uint64_t> found;
        found.reserve(p.sockets.size());
        for (const auto& s : p.sockets)
            found.push_back(s.inode);
        std::sort(found.begin(), found.end());
        found.erase(std::unique(found.begin(), found.end()), found.end());
        // Every socket found holds one of the process's inodes.
        if (found.size() >= fds.socket_inodes.size()) continue;
        for (std::size_t i = 0; i < fds.socket_inodes.size() && i < fds.socket_fds.size(); ++i) {
            if (std::binary_search(found.begin(), found.end(), fds.socket_inodes[i])) continue;
            const auto protocol = procfs.socket_protocol(p.info.pid, fds.socket_fds[i]);
            if (protocol && proc::socket_kind(*protocol) == proc::SocketKind::tcp) return true;
        }
    }
    return false;
}

void finish_group(Snapshot& snapshot, const NetnsGroup& group, const LiveSink& live,
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
    snapshot.unattributed.time_wait_ambiguous += tw.ambiguous_;
    snapshot.unattributed.orphaned += live.orphaned_;
    if (group.has_unreadable)
        snapshot.unattributed.permission += live.unmatched_;
    else
        snapshot.unattributed.unknown += live.unmatched_;
}

} // namespace conncheck::scan
