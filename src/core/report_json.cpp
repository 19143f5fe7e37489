#include "conncheck/report_json.hpp"

#include "conncheck/text.hpp"

#include <chrono>

namespace conncheck::report {

namespace {

using nlohmann::json;

json seconds_or_null(const std::optional<std::uint32_t>& ms) {
    if (!ms) return nullptr;
    return static_cast<double>(*ms) / 1000.0;
}

json limit_or_null(std::uint64_t v) {
    return v == 0 ? json(nullptr) : json(v);
}

json finding_json(const analysis::Finding& f) {
    json evidence = json::object();
    json peers = json::array();
    for (const auto& p : f.peers) {
        peers.push_back({{"remote", to_json(p.remote)},
                         {"count", p.count},
                         {"idle_min_seconds", seconds_or_null(p.idle_min_ms)},
                         {"idle_max_seconds", seconds_or_null(p.idle_max_ms)},
                         {"unread_bytes", p.unread_bytes}});
    }
    evidence["count"] = f.count;
    evidence["peers"] = std::move(peers);
    for (const auto& [name, value] : f.figures)
        evidence[name] = value;
    return {{"kind", analysis::kind_name(f.kind)},
            {"severity", analysis::severity_name(f.severity)},
            {"summary", f.summary},
            {"evidence", std::move(evidence)},
            {"advice", f.advice}};
}

} // namespace

json to_json(const Endpoint& endpoint) {
    return endpoint.to_string();
}

json states_json(const analysis::StateCounts& states) {
    json out = json::object();
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto s = static_cast<TcpState>(i);
        out[std::string(state_name(s))] = states[s];
    }
    return out;
}

json to_json(const analysis::ProcessReport& r) {
    json peers = json::array();
    for (const auto& p : r.peers) {
        const std::uint64_t other = p.states.total() - p.states[TcpState::established] -
                                    p.states[TcpState::close_wait] - p.states[TcpState::time_wait];
        peers.push_back({{"remote", to_json(p.remote)},
                         {"established", p.states[TcpState::established]},
                         {"close_wait", p.states[TcpState::close_wait]},
                         {"time_wait", p.states[TcpState::time_wait]},
                         {"other", other},
                         {"idle_min_seconds", seconds_or_null(p.idle_min_ms)},
                         {"idle_max_seconds", seconds_or_null(p.idle_max_ms)},
                         {"unread_bytes", p.unread_bytes}});
    }
    json findings = json::array();
    for (const auto& f : r.findings)
        findings.push_back(finding_json(f));
    return {
        {"pid", r.info.pid},
        {"comm", text::sanitize(r.info.comm)},
        {"cmdline", text::sanitize(r.info.cmdline)},
        {"user", text::sanitize(r.info.user)},
        {"uid", r.info.uid},
        {"netns", r.info.netns},
        {"exited", r.exited},
        {"fds",
         {{"open", r.info.open_fds},
          {"soft_limit", limit_or_null(r.info.fd_limit.soft)},
          {"hard_limit", limit_or_null(r.info.fd_limit.hard)}}},
        {"sockets", r.states.total()},
        {"states", states_json(r.states)},
        {"time_wait_attribution", {{"exact", r.time_wait_exact}, {"by_peer", r.time_wait_by_peer}}},
        {"kernel_memory_bytes", r.kernel_memory_bytes},
        {"stale_duplicates", r.stale},
        {"peers", std::move(peers)},
        {"findings", std::move(findings)}};
}

json to_json(const analysis::HostReport& h) {
    json processes = json::array();
    for (const auto& p : h.processes)
        processes.push_back(to_json(p));
    const auto unix_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(h.taken_at.time_since_epoch()).count();
    return {{"schema", json_schema},
            {"generated_at", text::iso8601_utc(unix_seconds)},
            {"host_wide", h.host_wide},
            {"source", h.source},
            {"tcp_info", h.has_tcp_info},
            {"sockets_seen", h.sockets_seen},
            {"processes", std::move(processes)},
            {"unattributed",
             {{"time_wait", h.unattributed.time_wait},
              {"orphaned", h.unattributed.orphaned},
              {"permission", h.unattributed.permission},
              {"unknown", h.unattributed.unknown}}},
            {"unreadable_processes", h.unreadable_processes},
            {"vanished_processes", h.vanished_processes},
            {"warnings", h.warnings}};
}

} // namespace conncheck::report
