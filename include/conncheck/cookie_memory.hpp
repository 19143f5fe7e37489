// Who held which socket cookie, carried from one scan to the next. A socket keeps its 64-bit
// cookie from SYN to the end of TIME_WAIT, while the kernel clears the inode and uid of a TIME_WAIT
// socket: a cookie seen live in an earlier scan (or an earlier run, through check's state file)
// names the owner of the TIME_WAIT it turns into. Only cookies the scans still report, or that
// closed within the linger time, are kept: memory follows the sockets.
#pragma once

#include <cstdint>
#include <span>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

namespace conncheck::scan {

struct Snapshot;

// Cookie -> the pid that held the live socket.
using CookieOwners = std::unordered_map<std::uint64_t, pid_t>;

// Where a socket seen by a scan is in its life: held by the process, closed by it (the kernel may
// still hold it in FIN_WAIT until the peer's FIN), or in TIME_WAIT.
enum class CookiePhase : std::uint8_t { live, closed, time_wait };
struct TrackedCookie {
    pid_t pid = 0;
    CookiePhase phase = CookiePhase::live;
    std::uint64_t seen = 0;      // the last scan (update, tick) that reported it
    std::int64_t changed_ms = 0; // when it entered `phase`
};

class CookieMemory {
public:
    // A closed socket leaves the process's fd table at once but turns TIME_WAIT only after the
    // peer's FIN (FIN_WAIT2 lasts up to tcp_fin_timeout, 60 s by default); its cookie is kept this
    // long so the TIME_WAIT that follows is still attributed exactly.
    static constexpr std::int64_t default_linger_ms = 120'000;
    explicit CookieMemory(std::int64_t linger_ms = default_linger_ms);

    // After each scan: every socket a scanned process holds (its TIME_WAIT attributed by cookie
    // included) is remembered as that process's. A cookie first seen in another process (a socket
    // shared across fork) stays with that process. A remembered socket that a scanned process no
    // longer holds is closed: kept for the linger time, then forgotten; a TIME_WAIT no longer
    // reported is forgotten at once. TIME_WAIT attributed only by peer is never remembered.
    void update(const Snapshot& snapshot, std::int64_t now_ms);
    // Cookies a process held in an earlier run (check's state file), remembered as closed
    // sockets whose TIME_WAIT may still come.
    void remember(pid_t pid, std::uint64_t start_ticks, std::span<const std::uint64_t> cookies,
                  std::int64_t now_ms);
    // `pid` is (still) the process that started at `start_ticks`: a pid the kernel gave to
    // another process forgets the old one's cookies.
    void note_instance(pid_t pid, std::uint64_t start_ticks);
    // The process exited: forget its cookies.
    void forget_process(pid_t pid);

    // For the next scan: their TIME_WAIT is attributed exactly.
    [[nodiscard]] const CookieOwners& owners() const { return owners_; }
    // The cookies of the sockets the process held in the last update, sorted (what check keeps
    // for its next run).
    [[nodiscard]] std::vector<std::uint64_t> held_by(pid_t pid) const;

private:
    using Phase = CookiePhase;
    using Entry = TrackedCookie;
    void erase(std::unordered_map<std::uint64_t, Entry>::iterator it);

    std::int64_t linger_ms_;
    std::uint64_t updates_ = 0;
    std::unordered_map<std::uint64_t, Entry> entries_; // by cookie
    CookieOwners owners_;
    std::unordered_map<pid_t, std::uint64_t> start_ticks_;
};

} // namespace conncheck::scan
