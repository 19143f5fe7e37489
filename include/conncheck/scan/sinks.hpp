// The scanner's pieces: which processes hold which inodes, and the sinks that sort a dump's
// sockets into the chosen processes (live ones by inode, TIME_WAIT by cookie or peer).
#pragma once

#include "conncheck/cookie_memory.hpp"
#include "conncheck/diag/source.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/tcp.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

namespace conncheck::scan {

constexpr std::uint32_t live_states = all_states & ~state_bit(TcpState::time_wait);

// Process `index` into Snapshot::processes holds the socket with this inode. Sorted by inode;
// one inode may be held by several processes (fork, fd passing): each holder gets the socket.
using InodeOwners = std::vector<std::pair<std::uint64_t, std::size_t>>;

struct NetnsGroup {
    std::uint64_t netns = 0;
    pid_t representative = 0;           // a pid inside the namespace
    std::vector<std::size_t> processes; // indexes into Snapshot::processes
    bool has_unreadable = false;        // some process here hides its fds from us
};

// Collects the live (non-TIME_WAIT) sockets the chosen processes hold.
class LiveSink : public diag::DumpSink {
public:
    LiveSink(Snapshot& snapshot, const InodeOwners& owners, const NetnsGroup& group)
        : snapshot_(snapshot), owners_(owners), group_(group) {
        mark();
    }
    void on_socket(const SocketRecord& s) override {
        ++seen_;
        if (s.inode == 0) {
            ++orphaned_;
            if (s.cookie != 0) snapshot_.orphan_cookies.push_back(s.cookie);
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
        snapshot_.orphan_cookies.resize(orphan_cookies_at_mark_);
        seen_ = seen_at_mark_;
        orphaned_ = orphaned_at_mark_;
        unmatched_ = unmatched_at_mark_;
    }
    // Called before each request, so a restart forgets only that request's sockets.
    void mark() {
        sizes_.clear();
        for (std::size_t idx : group_.processes)
            sizes_.push_back(snapshot_.processes[idx].sockets.size());
        orphan_cookies_at_mark_ = snapshot_.orphan_cookies.size();
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
    const NetnsGroup& group_;
    std::vector<std::size_t> sizes_;
    std::size_t orphan_cookies_at_mark_ = 0;
    std::uint64_t seen_at_mark_ = 0;
    std::uint64_t orphaned_at_mark_ = 0;
    std::uint64_t unmatched_at_mark_ = 0;
};

// Attributes TIME_WAIT sockets: exactly by cookie when the live socket was seen (in this scan
// or an earlier one), else by peer endpoint or listening port when one process alone fits, else
// not at all (ambiguous when several fit).
class TimeWaitSink : public diag::DumpSink {
public:
    // `unattributed`: where to keep the sockets no process could be given, or null.
    // `closed`: cookies of the processes' sockets that were gone when asked for again.
    TimeWaitSink(Snapshot& snapshot, const NetnsGroup& group, const CookieOwners& known,
                 std::vector<SocketRecord>* unattributed,
                 const std::vector<std::pair<std::uint64_t, std::size_t>>& closed = {});
    void on_socket(const SocketRecord& s) override;
    void on_restart() override {
        for (std::size_t i = 0; i < group_.processes.size(); ++i) {
            auto& p = snapshot_.processes[group_.processes[i]];
            p.sockets.resize(sizes_[i].sockets);
            p.time_wait_by_peer.resize(sizes_[i].by_peer);
            p.time_wait_exact = sizes_[i].exact;
        }
        seen_ = seen_at_mark_;
        unattributed_ = unattributed_at_mark_;
        ambiguous_ = ambiguous_at_mark_;
        if (unattributed_list_ != nullptr) unattributed_list_->resize(list_at_mark_);
    }
    void mark() {
        sizes_.clear();
        for (std::size_t idx : group_.processes) {
            const auto& p = snapshot_.processes[idx];
            sizes_.push_back({p.sockets.size(), p.time_wait_by_peer.size(), p.time_wait_exact});
        }
        seen_at_mark_ = seen_;
        unattributed_at_mark_ = unattributed_;
        ambiguous_at_mark_ = ambiguous_;
        list_at_mark_ = unattributed_list_ != nullptr ? unattributed_list_->size() : 0;
    }
    std::uint64_t seen_ = 0;
    std::uint64_t unattributed_ = 0;
    std::uint64_t ambiguous_ = 0; // by peer, several processes fit: counted for none

private:
    static constexpr std::size_t ambiguous = static_cast<std::size_t>(-1);
    [[nodiscard]] std::optional<std::size_t> exact_owner(std::uint64_t cookie) const;
    struct Sizes {
        std::size_t sockets;
        std::size_t by_peer;
        std::uint64_t exact;
    };
    Snapshot& snapshot_;
    const NetnsGroup& group_;
    const CookieOwners& known_;
    std::vector<SocketRecord>* unattributed_list_;
    std::unordered_map<pid_t, std::size_t> pid_index_;
    std::vector<std::pair<std::uint64_t, std::size_t>> live_cookies_;
    std::unordered_map<Endpoint, std::size_t, EndpointHash> peers_;
    std::multimap<std::uint16_t, std::pair<Endpoint, std::size_t>> listeners_;
    std::vector<Sizes> sizes_;
    std::uint64_t seen_at_mark_ = 0;
    std::uint64_t unattributed_at_mark_ = 0;
    std::uint64_t ambiguous_at_mark_ = 0;
    std::size_t list_at_mark_ = 0;
};

// Replaces the processes' records (sorted by cookie) with the kernel's fuller answers.
class RefreshSink : public diag::DumpSink {
public:
    RefreshSink(Snapshot& snapshot, const NetnsGroup& group) : snapshot_(snapshot), group_(group) {
        for (std::size_t idx : group.processes)
            refreshed_.emplace_back(snapshot.processes[idx].sockets.size(), 0);
    }
    void on_socket(const SocketRecord& s) override;
    void on_restart() override {
        for (auto& flags : refreshed_)
            std::fill(flags.begin(), flags.end(), 0);
    }
    // Drops the records no answer refreshed (closed meanwhile) and returns their cookies.
    std::vector<std::pair<std::uint64_t, std::size_t>> drop_stale();

private:
    Snapshot& snapshot_;
    const NetnsGroup& group_;
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

// Who holds which inode, known once the fd walk ends (scan/fd_walk.hpp).
class PendingOwners {
public:
    virtual ~PendingOwners();
    [[nodiscard]] virtual bool ready() const = 0;
    // Waits for the walk, if it still runs, and fills in the owners the live sink reads.
    virtual void settle() = 0;
};

// Anonymous memory for up to `bytes`, mapped on first use: unused capacity costs address space
// only, and release_front() gives pages already read back to the kernel at once.
class PageBuffer {
public:
    explicit PageBuffer(std::size_t bytes) : bytes_(bytes) {}
    PageBuffer(const PageBuffer&) = delete;
    PageBuffer& operator=(const PageBuffer&) = delete;
    ~PageBuffer();
    // The memory, or null when it cannot be mapped.
    [[nodiscard]] std::byte* data();
    // Returns the whole pages below `offset` to the kernel; they read as zero afterwards.
    void release_front(std::size_t offset);

private:
    std::size_t bytes_;
    std::byte* base_ = nullptr;
    std::size_t released_ = 0;
};

// The find dump's first stop while the fd walk may still run: a socket with an inode is held,
// compactly, until the walk has said whose it is; then the held ones and every later one pass
// on. Past `capacity` held sockets it waits for the walk instead: memory stays bounded
// whatever the size of the host, and the held sockets' pages go back as they pass on, before
// the processes' own records grow. Sockets without an inode (TIME_WAIT, orphans) pass at once.
class PendingSink : public diag::DumpSink {
public:
    PendingSink(diag::DumpSink& next, PendingOwners& owners, std::size_t capacity);
    void on_socket(const SocketRecord& s) override;
    void on_restart() override;
    // After the dump: settles and passes on what is still held.
    void finish();
    // A find-dump record without tcp_info and memory (the find dump asks for neither), its
    // addresses in AddrBytes each: 4 for IPv4, a third of a SocketRecord.
    template <std::size_t AddrBytes> struct Held {
        std::uint64_t cookie;
        std::uint64_t inode;
        std::uint32_t expires_ms;
        std::uint32_t rqueue;
        std::uint32_t wqueue;
        std::uint32_t uid;
        std::uint32_t interface;
        std::uint16_t local_port;
        std::uint16_t remote_port;
        TcpState state;
        std::uint8_t timer;
        std::uint8_t local_family;
        std::uint8_t remote_family;
        std::array<std::uint8_t, AddrBytes> local_addr;
        std::array<std::uint8_t, AddrBytes> remote_addr;
    };
    [[nodiscard]] std::size_t held() const { return held4_ + held16_; }

private:
    void pass_held();
    template <std::size_t N> void pass(PageBuffer& buffer, std::size_t count);
    diag::DumpSink& next_;
    PendingOwners& owners_;
    std::size_t capacity_;
    bool settled_ = false;
    PageBuffer buffer4_;
    PageBuffer buffer16_;
    std::size_t held4_ = 0;
    std::size_t held16_ = 0;
};

// A socket reported twice (dumps are not atomic) or seen live and then in TIME_WAIT: keep the
// last report of each cookie, which is the newest state.
void deduplicate(std::vector<SocketRecord>& sockets);

void note_dump(Snapshot& snapshot, const diag::DumpStats& stats);

// Whether a process holds TCP sockets the first dump did not return: created before it moved
// to its cgroup, passed from another process, bound but inactive, or not yet in any kernel
// table. `fd_scans` is parallel to Snapshot::processes.
bool missed_tcp_sockets(const Snapshot& snapshot, const NetnsGroup& group,
                        const std::vector<proc::FdScan>& fd_scans, const proc::ProcFs& procfs);

// Deduplicates the group's sockets and adds what the sinks counted to the snapshot.
void finish_group(Snapshot& snapshot, const NetnsGroup& group, const LiveSink& live,
                  const TimeWaitSink& tw);

} // namespace conncheck::scan
