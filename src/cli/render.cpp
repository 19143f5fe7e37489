#include "render.hpp"

#include "ansi.hpp"
#include "human_text.hpp"
#include "table.hpp"

#include "conncheck/privilege.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <fmt/core.h>

namespace conncheck::cli {

namespace {

using analysis::ProcessReport;
using analysis::Severity;

// The states an operator looks at first, then the rest in kernel order.
constexpr TcpState primary_states[] = {TcpState::established, TcpState::close_wait,
                                       TcpState::time_wait};

std::string idle_range(const std::optional<std::uint32_t>& lo,
                       const std::optional<std::uint32_t>& hi) {
    if (!lo || !hi) return "-";
    if (*lo / 1000 == *hi / 1000) return human_duration_ms(*hi);
    return human_duration_ms(*lo) + "-" + human_duration_ms(*hi);
}

std::string bold(std::string_view s, bool color) {
    return color ? fmt::format("{}{}{}", ansi::bold, s, ansi::reset) : std::string(s);
}

std::string netns_label(const proc::ProcessInfo& info) {
    return info.netns == 0 ? std::string("unknown") : std::to_string(info.netns);
}

int prose_width(const RenderOptions& options) {
    return options.fit ? std::max(options.width, 40) : 80;
}

table::Layout table_layout(const RenderOptions& options) {
    return table::Layout{std::max(options.width, 40), options.fit, "  "};
}

// Where the findings' text starts: after "  SEVERITY KIND             ".
constexpr int finding_text_col = 28;

} // namespace

std::string severity_tag(Severity severity, bool color) {
    const std::string label = fmt::format("{:<8}", [&] {
        std::string s(analysis::severity_name(severity));
        std::transform(s.begin(), s.end(), s.begin(),
                       [](unsigned char c) { return std::toupper(c); });
        return s;
    }());
    if (!color) return label;
    const char* style = severity == Severity::critical  ? ansi::bold_red
                        : severity == Severity::warning ? ansi::bold_yellow
                                                        : ansi::cyan;
    return fmt::format("{}{}{}", style, label, ansi::reset);
}

std::string render_findings(const std::vector<analysis::Finding>& findings,
                            const RenderOptions& options) {
    const int width = prose_width(options);
    // A narrow terminal keeps a shallower indent, so that lines still hold a few words.
    const int hang = width - finding_text_col >= 30 ? finding_text_col : 4;
    std::string out;
    for (const auto& f : findings) {
        const std::string kind = fmt::format("{:<16} ", analysis::kind_name(f.kind));
        out += table::wrap("  " + severity_tag(f.severity, options.color) + " " + kind,
                           finding_text_col, f.summary, width, hang);
        out += table::wrap(std::string(static_cast<std::size_t>(hang), ' '), hang, f.advice, width,
                           hang);
    }
    return out;
}

std::string render_process(const ProcessReport& r, const RenderOptions& options) {
    const auto width = static_cast<std::size_t>(prose_width(options));
    std::string out;
    out +=
        bold(fmt::format("pid {}  {}", r.info.pid, text::sanitize(r.info.comm, 32)), options.color);
    out += fmt::format("  user {}  netns {}{}\n", text::sanitize(r.info.user, 32),
                       netns_label(r.info), r.exited ? "  (exited)" : "");
    if (!r.info.cmdline.empty())
        out += fmt::format("cmdline  {}\n", text::sanitize(r.info.cmdline, width - 9));
    if (r.info.fd_limit.soft > 0)
        out += fmt::format("fds      {} open / {} soft limit ({:.0f}%)\n", r.info.open_fds,
                           r.info.fd_limit.soft,
                           100.0 * static_cast<double>(r.info.open_fds) /
                               static_cast<double>(r.info.fd_limit.soft));
    else
        out += fmt::format("fds      {} open (no soft limit)\n", r.info.open_fds);

    out += fmt::format("\n  {:<14} {:>7}\n", "STATE", "COUNT");
    auto state_line = [&](TcpState s) {
        std::string line = fmt::format("  {:<14} {:>7}", state_label(s), r.states[s]);
        if (s == TcpState::time_wait && r.states[s] > 0)
            line += fmt::format("   ({} exact by cookie, {} by peer endpoint)", r.time_wait_exact,
                                r.time_wait_by_peer);
        if (s == TcpState::close && r.states[s] > 0)
            line += "   (held after TCP finished: reset, timed out or never connected)";
        out += line + "\n";
    };
    for (TcpState s : primary_states)
        state_line(s);
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto s = static_cast<TcpState>(i);
        if (std::find(std::begin(primary_states), std::end(primary_states), s) ==
                std::end(primary_states) &&
            r.states[s] > 0)
            state_line(s);
    }
    out += fmt::format("  {:<14} {:>7}   kernel memory {}\n", "total", r.states.total(),
                       human_bytes(r.kernel_memory_bytes));
    if (r.other_netns_sockets > 0)
        out += fmt::format("  {} of them held from another network namespace (found there by "
                           "inode)\n",
                           r.other_netns_sockets);
    const auto& o = r.other_sockets;
    out += table::wrap(fmt::format("  {:<14} {:>7}   ", "other sockets", o.total()), 27,
                       fmt::format("socket fds in no TCP state: {} TCP in no table read, {} "
                                   "UDP, {} unix, {} other",
                                   o.tcp, o.udp, o.unix_domain, o.other),
                       prose_width(options), 27);

    if (!r.peers.empty()) {
        // Dropped to fit a narrow terminal in this order: OTHER, UNREAD, TIME_WAIT, IDLE; then
        // the peer is cut. PEER, ESTAB and CLOSE_WAIT always stay.
        const std::vector<table::Column> columns{
            {"PEER", "", table::Align::left, 0, true},
            {"ESTAB", "", table::Align::right, 0, false},
            {"CLOSE_WAIT", "CLOSE_W", table::Align::right, 0, false},
            {"TIME_WAIT", "TIME_W", table::Align::right, 3, false},
            {"OTHER", "", table::Align::right, 1, false},
            {"IDLE", "", table::Align::right, 4, false},
            {"UNREAD", "", table::Align::right, 2, false},
        };
        std::vector<std::vector<std::string>> rows;
        const std::size_t shown = std::min(options.max_peers, r.peers.size());
        for (std::size_t i = 0; i < shown; ++i) {
            const auto& p = r.peers[i];
            const std::uint64_t other = p.states.total() - p.states[TcpState::established] -
                                        p.states[TcpState::close_wait] -
                                        p.states[TcpState::time_wait];
            rows.push_back({text::sanitize(p.remote.to_string()),
                            std::to_string(p.states[TcpState::established]),
                            std::to_string(p.states[TcpState::close_wait]),
                            std::to_string(p.states[TcpState::time_wait]), std::to_string(other),
                            idle_range(p.idle_min_ms, p.idle_max_ms), human_bytes(p.unread_bytes)});
        }
        out += "\n" + table::render(columns, rows, table_layout(options));
        if (r.peers.size() > shown)
            out += fmt::format("  ... {} more peers (--json lists them all)\n",
                               r.peers.size() - shown);
    }

    if (r.findings.empty()) {
        out += "\n" + table::wrap("", 0,
                                  "No leak signals: no CLOSE_WAIT, no stale duplicate "
                                  "connections, no reconnect churn, fds well below the limit.",
                                  prose_width(options), 0);
    } else {
        out += "\n" + bold("FINDINGS", options.color) + "\n" + render_findings(r.findings, options);
    }
    return out;
}

std::string render_report(const analysis::HostReport& report, const RenderOptions& options) {
    std::string out;
    const auto unix_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(report.taken_at.time_since_epoch())
            .count();
    out += fmt::format("conncheck {}  {}  source {}{}\n", CONNCHECK_VERSION,
                       text::iso8601_utc(unix_seconds), report.source,
                       report.has_tcp_info ? "" : " (no idle times or memory)");
    for (const auto& w : report.warnings)
        out += fmt::format("warning: {}\n", text::sanitize(w));

    if (!report.host_wide) {
        for (const auto& p : report.processes)
            out += "\n" + render_process(p, options);
        if (!report.unreadable.empty()) {
            out += "\n" + bold("NOT READ", options.color) +
                   fmt::format(" ({} of {} selected processes: this report is partial)\n",
                               report.unreadable.size(),
                               report.unreadable.size() + report.processes.size());
            for (const auto& u : report.unreadable)
                out += fmt::format("  pid {}  {}  {}\n", u.pid, text::sanitize(u.comm, 32),
                                   text::sanitize(u.reason));
        }
        return out;
    }

    out += fmt::format("\n{} TCP sockets on this host; {} processes hold some\n\n",
                       report.sockets_seen, report.processes.size());
    // Dropped to fit a narrow terminal in this order: OTHER, TIME_WAIT, STALE; then FINDINGS is
    // cut. PID, COMM, ESTAB and CLOSE_WAIT always stay.
    const std::vector<table::Column> columns{
        {"PID", "", table::Align::right, 0, false},
        {"COMM", "", table::Align::left, 0, false},
        {"ESTAB", "", table::Align::right, 0, false},
        {"CLOSE_WAIT", "CLOSE_W", table::Align::right, 0, false},
        {"TIME_WAIT", "TIME_W", table::Align::right, 2, false},
        {"STALE", "", table::Align::right, 3, false},
        {"OTHER", "", table::Align::right, 1, false},
        {"FINDINGS", "", table::Align::left, 0, true},
    };
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : report.processes) {
        const std::uint64_t other = p.states.total() - p.states[TcpState::established] -
                                    p.states[TcpState::close_wait] - p.states[TcpState::time_wait];
        std::string worst = "-";
        if (!p.findings.empty())
            worst = fmt::format("{} ({})", p.findings.size(),
                                analysis::kind_name(p.findings.front().kind));
        rows.push_back({std::to_string(p.info.pid), text::sanitize(p.info.comm, 16),
                        std::to_string(p.states[TcpState::established]),
                        std::to_string(p.states[TcpState::close_wait]),
                        std::to_string(p.states[TcpState::time_wait]), std::to_string(p.stale),
                        std::to_string(other), worst});
    }
    out += table::render(columns, rows, table_layout(options));
    const auto& u = report.unattributed;
    const int width = prose_width(options);
    const auto unnamed = [&](std::uint64_t count, std::string_view label, const std::string& why) {
        return table::wrap(fmt::format("  {:>7}  {:<11} ", count, label), 22, why, width, 22);
    };
    out += fmt::format("\nSockets no process could be named for:\n");
    out += unnamed(u.time_wait, "TIME_WAIT",
                   "no owner in the kernel (inode 0), not toward any listed process's peers");
    out += unnamed(u.orphaned, "orphaned",
                   "closed by their process, still draining (FIN_WAIT, LAST_ACK)");
    out += unnamed(u.permission, "permission",
                   fmt::format("held by {} processes whose fds we may not read ({})",
                               report.unreadable_processes,
                               privilege::hint(privilege::Access::process_fds)));
    out += unnamed(u.unknown, "unknown",
                   "no readable process holds them (exited meanwhile, or kernel)");
    if (u.time_wait_ambiguous > 0)
        out +=
            unnamed(u.time_wait_ambiguous, "ambiguous",
                    "TIME_WAIT toward a peer several listed processes talk to: counted for none");
    return out;
}

} // namespace conncheck::cli
