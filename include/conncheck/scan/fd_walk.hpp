// Reading many processes' fd tables. FdWalk reads the chosen processes' tables on a thread of
// its own: the readlink per fd and the kernel's walk of its socket tables for the find dump take
// no lock in common, and for a process with thousands of sockets each is about a third of an
// audit; run side by side, the audit takes the longer of the two instead of their sum.
#pragma once

#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"

#include <atomic>
#include <exception>
#include <optional>
#include <sys/types.h>
#include <thread>
#include <utility>
#include <vector>

namespace conncheck::scan {

struct FdWalkResult {
    std::optional<proc::FdScan> fds; // nullopt: `error` says why
    std::optional<Error> error;
};

// Reads the fd tables of `pids`, one result per pid in the order given, on up to `threads`
// threads (the caller's among them): first every process's list of fds, then the links in
// shares of at most a thousand, so that one large table keeps every thread busy. A readlink
// costs the kernel the same on each CPU and takes no lock the others wait on (measured: 48,734
// links in 174 ms on one thread, 91 ms on two). Rethrows what failed other than a
// conncheck::Error (those are results).
std::vector<FdWalkResult> read_fd_tables(const proc::ProcFs& procfs, const std::vector<pid_t>& pids,
                                         unsigned threads);

// Every process's fd table in one pass over the kernel's tasks (an eBPF task_file iterator), in
// pid order, the processes without an open file left out: a fraction of a microsecond per fd
// against 3.6 us for a readlink. nullopt where it cannot be had: a build or kernel without
// eBPF, privileges short of both reading every process's fds and loading a tracing program, or
// a pid namespace other than the initial one, whose pids the iterator reports.
std::optional<std::vector<std::pair<pid_t, proc::FdScan>>> kernel_fd_tables();

// Open files on the host (/proc/sys/fs/file-nr) from which loading the iterator costs less than
// it saves. Measured on a 2-CPU VM: loading took 45-50 ms (most of it parsing the kernel's BTF),
// after which each fd cost about 2 us less than a readlink on two threads; an idle host of 2,000
// files took 70 ms with it, 20 without.
inline constexpr std::uint64_t iterator_pays_off = 25'000;

// read_fd_tables() for every process of the host, `pids` as procfs lists them: from
// kernel_fd_tables() on a host of `iterator_from` open files or more, where it can be had; the
// processes it leaves out (kernel threads, zombies, and in some sandboxes processes it is not
// shown) are read from /proc, on every CPU (at most four), and so is everything without the
// iterator. The same tables either way; but a process whose /proc/PID/fd a security module
// refuses even to root, counted as unreadable by /proc, is read by the iterator.
std::vector<FdWalkResult> read_host_fd_tables(const proc::ProcFs& procfs,
                                              const std::vector<pid_t>& pids,
                                              std::uint64_t iterator_from = iterator_pays_off);

class FdWalk {
public:
    // Starts reading at once; `procfs` must outlive the walk.
    FdWalk(const proc::ProcFs& procfs, std::vector<pid_t> pids);
    FdWalk(const FdWalk&) = delete;
    FdWalk& operator=(const FdWalk&) = delete;
    ~FdWalk();

    // Whether take() would return without waiting.
    [[nodiscard]] bool done() const noexcept { return done_.load(std::memory_order_acquire); }
    // Waits for the walk; one result per pid, in the order given. Rethrows what failed other
    // than a conncheck::Error (those are results).
    std::vector<FdWalkResult> take();

private:
    std::vector<FdWalkResult> results_;
    std::exception_ptr failure_;
    std::atomic<bool> done_{false};
    std::thread thread_;
};

} // namespace conncheck::scan
