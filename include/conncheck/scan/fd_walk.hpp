// Reads the fd tables of the chosen processes on a thread of its own. The readlink per fd and
// the kernel's walk of its socket tables for the find dump take no lock in common, and for a
// process with thousands of sockets each is about a third of an audit: run side by side, the
// audit takes the longer of the two instead of their sum.
#pragma once

#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"

#include <atomic>
#include <exception>
#include <optional>
#include <sys/types.h>
#include <thread>
#include <vector>

namespace conncheck::scan {

struct FdWalkResult {
    std::optional<proc::FdScan> fds; // nullopt: `error` says why
    std::optional<Error> error;
};

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
