#include "conncheck/scan/fd_walk.hpp"

#include <utility>

namespace conncheck::scan {

FdWalk::FdWalk(const proc::ProcFs& procfs, std::vector<pid_t> pids) : results_(pids.size()) {
    thread_ = std::thread([this, &procfs, pids = std::move(pids)] {
        try {
            for (std::size_t i = 0; i < pids.size(); ++i) {
                try {
                    results_[i].fds = procfs.scan_fds(pids[i]);
                } catch (const Error& e) {
                    results_[i].error = e;
                }
            }
        } catch (...) {
            failure_ = std::current_exception();
        }
        done_.store(true, std::memory_order_release);
    });
}

FdWalk::~FdWalk() {
    if (thread_.joinable()) thread_.join();
}

std::vector<FdWalkResult> FdWalk::take() {
    if (thread_.joinable()) thread_.join();
    if (failure_) std::rethrow_exception(failure_);
    return std::move(results_);
}

} // namespace conncheck::scan
