#include "conncheck/cookie_memory.hpp"

#include "conncheck/scan.hpp"

#include <algorithm>
#include <unordered_set>

namespace conncheck::scan {

CookieMemory::CookieMemory(std::int64_t linger_ms) : linger_ms_(linger_ms) {}

void CookieMemory::erase(std::unordered_map<std::uint64_t, Entry>::iterator it) {
    owners_.erase(it->first);
    entries_.erase(it);
}

void CookieMemory::update(const Snapshot& snapshot, std::int64_t now_ms) {
    ++updates_;
    std::unordered_set<pid_t> scanned;
    for (const auto& process : snapshot.processes) {
        const pid_t pid = process.info.pid;
        note_instance(pid, process.info.start_ticks);
        scanned.insert(pid);
        for (const auto& s : process.sockets) {
            if (s.cookie == 0 || s.state == TcpState::listen) continue;
            const Phase phase = s.state == TcpState::time_wait ? Phase::time_wait : Phase::live;
            auto [it, inserted] = entries_.try_emplace(s.cookie);
            Entry& e = it->second;
            if (inserted) {
                e.pid = pid;
                e.phase = phase;
                e.changed_ms = now_ms;
                owners_[s.cookie] = pid;
            } else if (e.pid == pid && e.phase != phase) {
                e.phase = phase;
                e.changed_ms = now_ms;
            }
            e.seen = updates_;
        }
    }
    for (auto it = entries_.begin(); it != entries_.end();) {
        Entry& e = it->second;
        // Only a process scanned this time can have lost a socket.
        if (e.seen == updates_ || !scanned.contains(e.pid)) {
            ++it;
            continue;
        }
        if (e.phase == Phase::live) {
            // Gone from the process: closed. It may come back as TIME_WAIT once the peer's FIN
            // arrives.
            e.phase = Phase::closed;
            e.changed_ms = now_ms;
            ++it;
        } else if (e.phase == Phase::closed && now_ms - e.changed_ms <= linger_ms_) {
            ++it;
        } else {
            auto gone = it++;
            erase(gone);
        }
    }
}

void CookieMemory::remember(pid_t pid, std::uint64_t start_ticks,
                            std::span<const std::uint64_t> cookies, std::int64_t now_ms) {
    note_instance(pid, start_ticks);
    for (const std::uint64_t cookie : cookies) {
        if (cookie == 0) continue;
        auto [it, inserted] = entries_.try_emplace(cookie);
        if (!inserted) continue;
        it->second = Entry{pid, Phase::closed, 0, now_ms};
        owners_[cookie] = pid;
    }
}

void CookieMemory::note_instance(pid_t pid, std::uint64_t start_ticks) {
    auto [it, inserted] = start_ticks_.try_emplace(pid, start_ticks);
    if (inserted || it->second == start_ticks) return;
    forget_process(pid);
    start_ticks_.emplace(pid, start_ticks);
}

void CookieMemory::forget_process(pid_t pid) {
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second.pid == pid) {
            auto gone = it++;
            erase(gone);
        } else {
            ++it;
        }
    }
    start_ticks_.erase(pid);
}

std::vector<std::uint64_t> CookieMemory::held_by(pid_t pid) const {
    std::vector<std::uint64_t> out;
    for (const auto& [cookie, e] : entries_)
        if (e.pid == pid && e.seen == updates_ && updates_ > 0) out.push_back(cookie);
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace conncheck::scan
