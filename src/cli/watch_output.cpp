#include "watch_output.hpp"

#include "human_text.hpp"

#include "conncheck/text.hpp"

#include <cmath>
#include <fmt/core.h>

namespace conncheck::cli {

namespace {

// Insertion order: "time" and "pid" first, as a person reading a log expects.
using json = nlohmann::ordered_json;

json optional_number(const std::optional<double>& v, int decimals = 2) {
    if (!v || !std::isfinite(*v)) return nullptr;
    const double scale = std::pow(10.0, decimals);
    return std::round(*v * scale) / scale;
}

json row_json(const watch::Row& row) {
    return json{{"count", row.current},
                {"since_last", row.since_last},
                {"since_start", row.since_start},
                {"slope_per_hour", optional_number(row.slope_per_hour)}};
}

json states_json(const std::vector<watch::StateRow>& rows) {
    json out = json::object();
    for (const auto& r : rows)
        out[std::string(state_name(r.state))] = row_json(r.row);
    return out;
}

// The same shape as the audit's findings (conncheck(1), JSON OUTPUT).
json finding_json(const analysis::Finding& f) {
    json peers = json::array();
    for (const auto& p : f.peers) {
        peers.push_back(
            {{"remote", text::sanitize(p.remote.to_string())},
             {"count", p.count},
             {"idle_min_seconds", p.idle_min_ms ? json(*p.idle_min_ms / 1000.0) : json(nullptr)},
             {"idle_max_seconds", p.idle_max_ms ? json(*p.idle_max_ms / 1000.0) : json(nullptr)},
             {"unread_bytes", p.unread_bytes}});
    }
    json evidence{{"count", f.count}, {"peers", std::move(peers)}};
    for (const auto& [name, value] : f.figures)
        evidence[name] = value;
    return json{{"kind", std::string(analysis::kind_name(f.kind))},
                {"severity", std::string(analysis::severity_name(f.severity))},
                {"summary", f.summary},
                {"evidence", std::move(evidence)},
                {"advice", f.advice}};
}

json peer_json(const watch::PeerFrame& p) {
    json states = json::object();
    for (std::size_t i = 1; i < tcp_state_count; ++i)
        if (p.states.n[i] > 0)
            states[std::string(state_name(static_cast<TcpState>(i)))] = p.states.n[i];
    json j{{"remote", p.label},
           {"inbound", p.key.inbound},
           {"total", p.total},
           {"states", states},
           {"unread_bytes", p.unread_bytes},
           {"opened_per_minute", std::round(p.opened_per_minute * 100) / 100}};
    j["idle_min_seconds"] = p.idle_min_ms ? json(*p.idle_min_ms / 1000.0) : json(nullptr);
    j["idle_max_seconds"] = p.idle_max_ms ? json(*p.idle_max_ms / 1000.0) : json(nullptr);
    j["oldest_age_seconds"] =
        p.oldest_age_ms ? json(static_cast<double>(*p.oldest_age_ms) / 1000.0) : json(nullptr);
    j["oldest_predates_watch"] = p.oldest_predates_watch;
    return j;
}

json process_json(const watch::ProcessFrame& p) {
    json j{{"pid", p.pid},
           {"comm", p.comm},
           {"cmdline", p.cmdline},
           {"exited", p.exited},
           {"open_fds", p.open_fds},
           {"fd_limit", p.fd_limit},
           {"fds", row_json(p.fds)},
           {"leaked", row_json(p.leaked)},
           {"held_after_close", p.held_after_close},
           {"kernel_memory_bytes", p.kernel_memory_bytes},
           {"states", states_json(p.states)},
           {"time_wait", {{"exact", p.time_wait_exact}, {"by_peer", p.time_wait_by_peer}}},
           {"other_sockets",
            {{"total", p.other_sockets.total()},
             {"tcp", p.other_sockets.tcp},
             {"udp", p.other_sockets.udp},
             {"unix", p.other_sockets.unix_domain},
             {"other", p.other_sockets.other}}},
           {"other_netns_sockets", p.other_netns_sockets}};
    if (p.exited) j["exited_after_seconds"] = static_cast<double>(p.exited_after_ms) / 1000.0;
    j["churn"] = json{{"opened_per_minute", optional_number(p.churn.opened_per_minute)},
                      {"closed_per_minute", optional_number(p.churn.closed_per_minute)},
                      {"rate_span_seconds", static_cast<double>(p.churn.rate_span_ms) / 1000.0},
                      {"opened_total", p.churn.opened_total},
                      {"closed_total", p.churn.closed_total},
                      {"short_lived_total", p.churn.short_lived_total}};
    json peers = json::array();
    for (const auto& peer : p.peers)
        peers.push_back(peer_json(peer));
    j["peers"] = peers;
    j["peers_total"] = p.peers_total;
    json findings = json::array();
    for (const auto& f : p.findings)
        findings.push_back(finding_json(f));
    j["findings"] = findings;
    if (p.fd_projection) {
        j["fd_projection"] =
            json{{"slope_per_hour", std::round(p.fd_projection->slope_per_hour * 100) / 100},
                 {"limit", p.fd_projection->limit},
                 {"seconds_to_limit", static_cast<double>(p.fd_projection->ms_to_limit / 1000)},
                 {"text", describe_projection(*p.fd_projection, "leaked sockets")}};
    } else {
        j["fd_projection"] = nullptr;
    }
    return j;
}

std::string line_value(const std::string& s) {
    // Already sanitized; spaces, quotes and '=' would break "key=value" splitting.
    std::string out;
    for (const char c : s) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\')
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        else
            out += c;
    }
    return out.empty() ? "-" : out;
}

std::string rate(const std::optional<double>& v) {
    return v ? fmt::format("{:.1f}", *v) : std::string("-");
}

} // namespace

std::string tracking_text(const watch::Frame& frame) {
    if (frame.events) return "events";
    if (frame.polling_reason.empty()) return "polling";
    return "polling (" + frame.polling_reason + ")";
}

nlohmann::ordered_json to_json(const watch::Frame& frame) {
    json j{{"time", text::iso8601_utc(frame.unix_seconds)},
           {"uptime_seconds", static_cast<double>(frame.uptime_ms) / 1000.0},
           {"tick", frame.tick},
           {"interval_seconds", static_cast<double>(frame.interval_ms) / 1000.0},
           {"window_seconds", static_cast<double>(frame.window_ms) / 1000.0},
           {"source", frame.source},
           {"has_cookies", frame.has_cookies},
           {"has_tcp_info", frame.has_tcp_info},
           {"tracking", frame.events ? "events" : "polling"},
           {"polling_reason", frame.events || frame.polling_reason.empty()
                                  ? json(nullptr)
                                  : json(frame.polling_reason)},
           {"warnings", frame.warnings}};
    j["totals"] = json{{"states", states_json(frame.totals)},
                       {"fds", row_json(frame.fds_total)},
                       {"open_fds", frame.open_fds_total},
                       {"kernel_memory_bytes", frame.kernel_memory_total}};
    json processes = json::array();
    for (const auto& p : frame.processes)
        processes.push_back(process_json(p));
    j["processes"] = processes;
    j["watcher"] = json{{"tick_ms", optional_number(frame.tick_ms, 3)},
                        {"cpu_percent", optional_number(frame.cpu_percent, 3)},
                        {"tracked_cookies", frame.tracked_cookies}};
    return j;
}

std::vector<std::string> to_lines(const watch::Frame& frame) {
    std::vector<std::string> lines;
    const std::string time = text::iso8601_utc(frame.unix_seconds);
    for (const auto& p : frame.processes) {
        std::string line = fmt::format("{} pid={}", time, p.pid);
        if (p.exited)
            line += fmt::format(" exited=1 exited_after_seconds={}", p.exited_after_ms / 1000);
        for (const auto& s : p.states)
            line += fmt::format(" {}={}", state_name(s.state), s.row.current);
        line += fmt::format(" time_wait_exact={} time_wait_by_peer={}", p.time_wait_exact,
                            p.time_wait_by_peer);
        line += fmt::format(" fds={} fd_limit={} other_sockets={} held_after_close={} leaked={}",
                            p.open_fds, p.fd_limit, p.other_sockets.total(), p.held_after_close,
                            p.leaked.current);
        if (!p.exited) {
            line += fmt::format(" opened_per_min={} closed_per_min={}",
                                rate(p.churn.opened_per_minute), rate(p.churn.closed_per_minute));
            for (const auto& s : p.states)
                if (s.row.slope_per_hour)
                    line += fmt::format(" {}_trend={}", state_name(s.state),
                                        format_slope(*s.row.slope_per_hour));
            if (p.leaked.slope_per_hour)
                line += fmt::format(" leaked_trend={}", format_slope(*p.leaked.slope_per_hour));
            line += fmt::format(" findings={}", p.findings.size());
            for (const auto& f : p.findings)
                line += fmt::format(" finding_{}={}:{}", analysis::kind_name(f.kind),
                                    analysis::severity_name(f.severity), f.count);
            if (p.fd_projection)
                line += fmt::format(" fd_limit_in={}s", p.fd_projection->ms_to_limit / 1000);
        }
        line += frame.events ? " tracking=events" : " tracking=polling";
        if (!frame.events && !frame.polling_reason.empty())
            line += " polling_reason=" + line_value(frame.polling_reason);
        line += " comm=" + line_value(p.comm);
        lines.push_back(std::move(line));
    }
    return lines;
}

} // namespace conncheck::cli
