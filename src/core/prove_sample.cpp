#include "conncheck/prove_sample.hpp"

#include <algorithm>
#include <iterator>
#include <netinet/in.h>
#include <unordered_map>

namespace conncheck::prove {

scan::ProcessSnapshot merge_snapshots(const std::vector<const scan::ProcessSnapshot*>& parts) {
    scan::ProcessSnapshot merged;
    if (parts.empty()) return merged;
    merged.info = parts.front()->info;
    merged.exited = true;
    std::unordered_set<std::uint64_t> cookies;
    std::unordered_set<std::uint64_t> inodes;
    for (const auto* part : parts) {
        merged.exited = merged.exited && part->exited;
        for (const auto& s : part->sockets) {
            // Without a cookie (/proc/net/tcp) the inode is the identity of a live socket.
            const bool fresh = s.cookie != 0  ? cookies.insert(s.cookie).second
                               : s.inode != 0 ? inodes.insert(s.inode).second
                                              : true;
            if (fresh) merged.sockets.push_back(s);
        }
    }
    std::unordered_set<std::uint64_t> held;
    for (const auto* part : parts)
        for (const auto& h : part->held_after_close)
            if (held.insert(h.inode).second) merged.held_after_close.push_back(h);
    for (const auto* part : parts)
        for (const auto& s : part->time_wait_by_peer)
            if (s.cookie == 0 || cookies.insert(s.cookie).second)
                merged.time_wait_by_peer.push_back(s);
    merged.time_wait_exact = static_cast<std::uint64_t>(
        std::count_if(merged.sockets.begin(), merged.sockets.end(),
                      [](const SocketRecord& s) { return s.state == TcpState::time_wait; }));
    return merged;
}

Sample sample_from(const analysis::ProcessReport& report) {
    Sample s;
    s.established = report.states[TcpState::established];
    s.close_wait = report.states[TcpState::close_wait];
    s.time_wait = report.states[TcpState::time_wait];
    s.total = report.states.total();
    s.kernel_memory_bytes = report.kernel_memory_bytes;
    return s;
}

namespace {

bool is_loopback_v4(const Endpoint& e) {
    if (e.family == AF_INET) return e.addr[0] == 127;
    // ::ffff:127.x.y.z, a dual-stack socket talking IPv4
    if (e.family == AF_INET6)
        return std::all_of(e.addr.begin(), e.addr.begin() + 10, [](auto b) { return b == 0; }) &&
               e.addr[10] == 0xff && e.addr[11] == 0xff && e.addr[12] == 127;
    return false;
}

scan::Config keeping_unattributed_time_wait(scan::Config config) {
    config.keep_unattributed_time_wait = true;
    return config;
}

} // namespace

void add_time_wait_toward(scan::ProcessSnapshot& snapshot,
                          const std::vector<SocketRecord>& time_wait, std::uint16_t port) {
    std::unordered_set<std::uint64_t> known;
    for (const auto* list : {&snapshot.sockets, &snapshot.time_wait_by_peer})
        for (const auto& s : *list)
            if (s.cookie != 0) known.insert(s.cookie);
    for (const auto& s : time_wait)
        if (s.state == TcpState::time_wait && s.cookie != 0 && s.remote.port == port &&
            is_loopback_v4(s.remote) && known.insert(s.cookie).second)
            snapshot.time_wait_by_peer.push_back(s);
}

Sampler::Sampler(scan::Config scan_config, std::size_t groups)
    : scanner_(keeping_unattributed_time_wait(std::move(scan_config))), seen_(groups) {}

std::uint64_t Sampler::connections_seen(std::size_t group) const {
    return group < seen_.size() ? seen_[group].size() : 0;
}

std::vector<std::optional<Sample>> Sampler::sample(const std::vector<CollectorProcesses>& groups) {
    if (seen_.size() < groups.size()) seen_.resize(groups.size());
    std::unordered_map<pid_t, std::size_t> group_of;
    std::vector<pid_t> pids;
    for (std::size_t g = 0; g < groups.size(); ++g)
        for (pid_t pid : groups[g].pids)
            if (group_of.emplace(pid, g).second) pids.push_back(pid);

    std::vector<std::optional<Sample>> out(groups.size());
    // A process of a command's tree can exit between listing and scanning: the scanner drops it.
    const auto scanned = scanner_.scan_running(pids);
    if (!scanned.snapshot) return out;
    const scan::Snapshot& snapshot = *scanned.snapshot;
    std::vector<std::vector<const scan::ProcessSnapshot*>> parts(groups.size());
    for (const auto& p : snapshot.processes) {
        const auto it = group_of.find(p.info.pid);
        if (it == group_of.end()) continue;
        parts[it->second].push_back(&p);
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
        if (parts[g].empty()) continue;
        scan::ProcessSnapshot merged = merge_snapshots(parts[g]);
        add_time_wait_toward(merged, snapshot.unattributed_time_wait, groups[g].sim_port);
        for (const auto* list : {&merged.sockets, &merged.time_wait_by_peer})
            for (const auto& s : *list)
                if (s.cookie != 0 && s.state != TcpState::listen &&
                    s.remote.port == groups[g].sim_port)
                    seen_[g].insert(s.cookie);
        out[g] = sample_from(analysis::analyse_process(merged, analysis_config_));
    }
    return out;
}

} // namespace conncheck::prove
