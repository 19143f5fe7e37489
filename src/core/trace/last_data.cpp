#include "conncheck/trace/last_data.hpp"

#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

namespace conncheck::trace {

std::vector<LastData> last_data_times(const Ledger& ledger, const scan::Snapshot& snapshot,
                                      std::uint64_t scan_start_ns) {
    std::unordered_map<std::uint64_t, std::uint32_t> by_cookie;
    std::map<std::pair<Endpoint, Endpoint>, std::uint32_t> by_endpoints;
    for (const auto& process : snapshot.processes)
        for (const auto& s : process.sockets) {
            if (!s.info) continue;
            if (s.cookie != 0) by_cookie.emplace(s.cookie, s.info->last_data_recv_ms);
            by_endpoints.emplace(std::pair{s.local, s.remote}, s.info->last_data_recv_ms);
        }

    std::vector<LastData> out;
    for (const auto& [id, c] : ledger.connections()) {
        if (!c.held() || c.closed_by_exit) continue;
        std::optional<std::uint32_t> idle_ms;
        if (const auto it = by_cookie.find(c.cookie); c.cookie != 0 && it != by_cookie.end())
            idle_ms = it->second;
        else if (const auto e =
                     by_endpoints.find({canonical_endpoint(c.local), canonical_endpoint(c.remote)});
                 c.cookie == 0 && e != by_endpoints.end())
            idle_ms = e->second;
        if (!idle_ms) continue;
        const std::uint64_t back = std::uint64_t{*idle_ms} * 1'000'000 + idle_tick_slack_ns;
        out.push_back({id, scan_start_ns > back ? scan_start_ns - back : 0});
    }
    return out;
}

} // namespace conncheck::trace
