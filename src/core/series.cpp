#include "conncheck/series.hpp"

#include <algorithm>
#include <fmt/core.h>
#include <numeric>
#include <set>
#include <tuple>

namespace conncheck::series {

std::vector<std::string> stable_names(const std::vector<const proc::ProcessInfo*>& processes,
                                      const std::function<std::string(std::string_view)>& clean) {
    std::vector<std::string> base;
    base.reserve(processes.size());
    for (const auto* p : processes)
        base.push_back(clean(p->comm));
    std::vector<std::size_t> order(processes.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return std::tie(base[a], processes[a]->start_ticks, processes[a]->pid) <
               std::tie(base[b], processes[b]->start_ticks, processes[b]->pid);
    });
    // The plain names first, so that a process whose comm happens to be "x_2" keeps it.
    std::set<std::string> taken(base.begin(), base.end());
    std::vector<std::string> names(processes.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        const std::size_t at = order[i];
        if (i == 0 || base[order[i - 1]] != base[at]) {
            names[at] = base[at];
            continue;
        }
        for (int n = 2;; ++n) {
            auto candidate = fmt::format("{}_{}", base[at], n);
            if (taken.insert(candidate).second) {
                names[at] = std::move(candidate);
                break;
            }
        }
    }
    return names;
}

} // namespace conncheck::series
