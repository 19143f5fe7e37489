#include "conncheck/scan/fd_walk.hpp"

#include <algorithm>
#include <cstdint>
#include <sched.h>
#include <system_error>
#include <utility>

namespace conncheck::scan {

namespace {

// Calls work(i) for every i below `items` on `threads` threads, the caller's among them.
// Rethrows the first exception any call let escape, once every thread has stopped.
template <typename Work> void share_out(std::size_t items, unsigned threads, Work work) {
    std::atomic<std::size_t> next{0};
    std::exception_ptr failure;
    std::atomic<bool> failed{false};
    const auto run = [&] {
        try {
            for (std::size_t i = next++; i < items && !failed.load(); i = next++)
                work(i);
        } catch (...) {
            if (!failed.exchange(true)) failure = std::current_exception();
        }
    };
    std::vector<std::thread> helpers;
    const auto extra = std::min<std::size_t>(threads, items) - std::min<std::size_t>(1, items);
    helpers.reserve(extra);
    try {
        for (std::size_t t = 0; t < extra; ++t)
            helpers.emplace_back(run);
    } catch (const std::system_error&) {
        // No thread to be had (RLIMIT_NPROC, a cgroup's pids.max): fewer do the work.
    }
    run();
    for (auto& h : helpers)
        h.join();
    if (failure) std::rethrow_exception(failure);
}

constexpr std::size_t links_per_share = 1024;

} // namespace

std::vector<FdWalkResult> read_fd_tables(const proc::ProcFs& procfs, const std::vector<pid_t>& pids,
                                         unsigned threads) {
    threads = std::max(threads, 1U);
    std::vector<FdWalkResult> results(pids.size());
    std::vector<std::vector<int>> lists(pids.size());
    share_out(pids.size(), threads, [&](std::size_t i) {
        try {
            lists[i] = procfs.list_fds(pids[i]);
        } catch (const Error& e) {
            results[i].error = e;
        }
    });

    struct Share {
        std::size_t process;
        std::span<const int> fds;
        std::vector<std::pair<std::uint64_t, int>> sockets;
        std::optional<Error> error;
    };
    // On one thread a table is one share: its links are gathered without a copy.
    const std::size_t per_share = threads > 1 ? links_per_share : SIZE_MAX;
    std::vector<Share> shares;
    for (std::size_t i = 0; i < pids.size(); ++i) {
        if (results[i].error) continue;
        const std::span<const int> all(lists[i]);
        std::size_t at = 0;
        do {
            const auto n = std::min(per_share, all.size() - at);
            shares.push_back({i, all.subspan(at, n), {}, {}});
            at += n;
        } while (at < all.size());
    }
    share_out(shares.size(), threads, [&](std::size_t k) {
        Share& share = shares[k];
        try {
            procfs.read_socket_links(pids[share.process], share.fds, share.sockets);
        } catch (const Error& e) {
            share.error = e;
        }
    });

    // Shares are in process order: gather each process's, then its first error wins.
    for (std::size_t k = 0; k < shares.size();) {
        const std::size_t i = shares[k].process;
        std::optional<Error> error;
        auto sockets = std::move(shares[k].sockets);
        for (; k < shares.size() && shares[k].process == i; ++k) {
            if (shares[k].error && !error) error = std::move(shares[k].error);
            sockets.insert(sockets.end(), shares[k].sockets.begin(), shares[k].sockets.end());
            shares[k].sockets = {};
        }
        if (error)
            results[i].error = std::move(error);
        else
            results[i].fds = proc::fd_scan_of(std::move(sockets), lists[i].size());
    }
    return results;
}

std::vector<FdWalkResult> read_host_fd_tables(const proc::ProcFs& procfs,
                                              const std::vector<pid_t>& pids,
                                              std::uint64_t iterator_from) {
    std::vector<FdWalkResult> results(pids.size());
    std::vector<pid_t> rest;
    std::vector<std::size_t> rest_at;
    auto kernel = procfs.root() == "/proc" && procfs.open_files().value_or(0) >= iterator_from
                      ? kernel_fd_tables()
                      : std::nullopt;
    auto seen = kernel ? kernel->begin() : decltype(kernel->begin()){};
    for (std::size_t i = 0; i < pids.size(); ++i) {
        if (kernel) {
            seen = std::lower_bound(seen, kernel->end(), pids[i],
                                    [](const auto& table, pid_t pid) { return table.first < pid; });
            if (seen != kernel->end() && seen->first == pids[i]) {
                results[i].fds = std::move(seen->second);
                continue;
            }
        }
        rest.push_back(pids[i]);
        rest_at.push_back(i);
    }
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    const int cpu_count = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    auto read = read_fd_tables(procfs, rest, static_cast<unsigned>(std::clamp(cpu_count, 1, 4)));
    for (std::size_t k = 0; k < rest.size(); ++k)
        results[rest_at[k]] = std::move(read[k]);
    return results;
}

FdWalk::FdWalk(const proc::ProcFs& procfs, std::vector<pid_t> pids) {
    thread_ = std::thread([this, &procfs, pids = std::move(pids)] {
        try {
            results_ = read_fd_tables(procfs, pids, 1);
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
