#include "conncheck/prometheus.hpp"

#include "conncheck/error.hpp"
#include "conncheck/files.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/series.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <fcntl.h>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

namespace conncheck::prometheus {

namespace {

// The states a process's socket can be in; NEW_SYN_RECV and BOUND_INACTIVE never belong to a
// process's fd, so they would only add series that are always 0.
constexpr std::array exported_states{
    TcpState::established, TcpState::syn_sent,  TcpState::syn_recv, TcpState::fin_wait1,
    TcpState::fin_wait2,   TcpState::time_wait, TcpState::close,    TcpState::close_wait,
    TcpState::last_ack,    TcpState::listen,    TcpState::closing,
};

constexpr std::array finding_kinds{
    analysis::FindingKind::close_wait, analysis::FindingKind::stale_duplicate,
    analysis::FindingKind::reconnect_churn, analysis::FindingKind::fd_pressure,
    analysis::FindingKind::held_after_close};

class Writer {
public:
    explicit Writer(std::string target) : target_(std::move(target)) {}

    void family(std::string_view name, std::string_view help) {
        out_ += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", name, help, name);
    }

    // `labels` are name/value pairs, values not yet escaped.
    void sample(std::string_view name,
                std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
                std::string_view value) {
        std::string rendered;
        if (!target_.empty()) rendered += fmt::format("target=\"{}\"", escape_label_value(target_));
        for (const auto& [label, label_value] : labels) {
            if (!rendered.empty()) rendered += ',';
            rendered += fmt::format("{}=\"{}\"", label, escape_label_value(label_value));
        }
        if (rendered.empty())
            out_ += fmt::format("{} {}\n", name, value);
        else
            out_ += fmt::format("{}{{{}}} {}\n", name, rendered, value);
    }

    [[nodiscard]] std::string take() { return std::move(out_); }

private:
    std::string target_;
    std::string out_;
};

} // namespace

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (const char c : value) {
        switch (c) {
        case '\\':
            out += "\\\\";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\n':
            out += "\\n";
            break;
        default:
            out += c;
        }
    }
    return out;
}

std::string render(const std::vector<analysis::ProcessReport>& processes,
                   const RenderOptions& options) {
    Writer w(options.target);
    w.family("conncheck_up", "1 when the selected processes were scanned, 0 when they could not "
                             "be (gone, no permission, no socket source).");
    w.sample("conncheck_up", {}, options.up ? "1" : "0");
    const auto run_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(options.run_at.time_since_epoch())
            .count();
    w.family("conncheck_last_run_timestamp_seconds",
             "Unix time of the conncheck run that wrote these metrics.");
    w.sample("conncheck_last_run_timestamp_seconds", {},
             fmt::format("{}.{:03}", run_ms / 1000, run_ms % 1000));
    if (!options.up) return w.take();

    w.family("conncheck_processes", "Processes the selector matched and read.");
    w.sample("conncheck_processes", {}, fmt::format("{}", processes.size()));
    w.family("conncheck_unreadable_processes",
             "Processes the selector matched whose sockets could not be read (another user's, "
             "a ptrace restriction): they have no series here.");
    w.sample("conncheck_unreadable_processes", {}, fmt::format("{}", options.unreadable_processes));

    // Series are keyed by process name, never by pid: a restart continues the graphs.
    std::vector<proc::ProcessInfo> named;
    named.reserve(processes.size());
    for (const auto& p : processes) {
        named.push_back(p.info);
        if (const auto it = options.selected_as.find(p.info.pid); it != options.selected_as.end())
            named.back().comm = it->second;
    }
    std::vector<const proc::ProcessInfo*> infos;
    for (const auto& info : named)
        infos.push_back(&info);
    const std::vector<std::string> labels =
        series::stable_names(infos, [](std::string_view comm) { return text::sanitize(comm, 64); });

    const auto per_process = [&](std::string_view name, std::string_view help, auto value_of) {
        w.family(name, help);
        for (std::size_t i = 0; i < processes.size(); ++i) {
            const auto value = value_of(processes[i]);
            if (!value) continue;
            w.sample(name, {{"process", labels[i]}}, fmt::format("{}", *value));
        }
    };

    using Report = analysis::ProcessReport;
    per_process("conncheck_process_pid",
                "Pid of the process (information: series are keyed by process name, so that a "
                "restart does not start new ones).",
                [](const Report& r) { return std::optional<std::uint64_t>(r.info.pid); });

    // Linux keeps a TIME_WAIT socket exactly 60 s, so the TIME_WAIT count is also the number of
    // connections the process closed first during the last minute.
    w.family("conncheck_tcp_sockets",
             "TCP sockets of the process by state. TIME_WAIT: those attributed to it exactly by "
             "cookie or by peer, the connections it closed first in the last 60 s.");
    for (std::size_t i = 0; i < processes.size(); ++i)
        for (const auto state : exported_states)
            w.sample("conncheck_tcp_sockets",
                     {{"process", labels[i]}, {"state", state_name(state)}},
                     fmt::format("{}", processes[i].states[state]));

    per_process("conncheck_stale_connections",
                "Stale duplicate connections: silent ESTABLISHED connections to a peer the "
                "process also has a newer connection to.",
                [](const Report& r) { return std::optional<std::uint64_t>(r.stale); });
    per_process("conncheck_held_after_close_sockets",
                "TCP sockets in state CLOSE the process still holds: reset by the peer, timed out "
                "or never connected, a file descriptor leaked like a CLOSE_WAIT.",
                [](const Report& r) { return std::optional<std::uint64_t>(r.held_after_close); });
    per_process(
        "conncheck_leaked_sockets",
        "Sockets the process leaked: CLOSE_WAIT, held after close and stale duplicate "
        "connections.",
        [](const Report& r) { return std::optional<std::uint64_t>(analysis::leaked_sockets(r)); });
    per_process("conncheck_open_fds", "Open file descriptors of the process.",
                [](const Report& r) { return std::optional<std::uint64_t>(r.info.open_fds); });
    per_process("conncheck_fd_limit",
                "Soft limit on open file descriptors (RLIMIT_NOFILE); absent when unlimited.",
                [](const Report& r) {
                    return r.info.fd_limit.soft == 0
                               ? std::nullopt
                               : std::optional<std::uint64_t>(r.info.fd_limit.soft);
                });
    per_process(
        "conncheck_socket_memory_bytes",
        "Kernel memory charged to the process's TCP sockets (SK_MEMINFO buffers).",
        [](const Report& r) { return std::optional<std::uint64_t>(r.kernel_memory_bytes); });

    w.family("conncheck_other_sockets",
             "Socket fds of the process in no TCP state, by kind: tcp (in no table that could "
             "be read: a namespace that could not be entered), udp, unix, other.");
    for (std::size_t i = 0; i < processes.size(); ++i) {
        const auto& o = processes[i].other_sockets;
        const std::pair<std::string_view, std::uint64_t> kinds[] = {
            {"tcp", o.tcp}, {"udp", o.udp}, {"unix", o.unix_domain}, {"other", o.other}};
        for (const auto& [kind, n] : kinds)
            w.sample("conncheck_other_sockets", {{"process", labels[i]}, {"kind", kind}},
                     fmt::format("{}", n));
    }

    w.family("conncheck_findings", "Findings of the leak analysis for the process, by kind.");
    for (std::size_t i = 0; i < processes.size(); ++i)
        for (const auto kind : finding_kinds) {
            const auto n = std::count_if(processes[i].findings.begin(), processes[i].findings.end(),
                                         [&](const auto& f) { return f.kind == kind; });
            w.sample("conncheck_findings",
                     {{"process", labels[i]}, {"kind", analysis::kind_name(kind)}},
                     fmt::format("{}", n));
        }
    return w.take();
}

std::string textfile_name(std::string_view target) {
    return target.empty() ? std::string("conncheck.prom")
                          : fmt::format("conncheck_{}.prom", target);
}

bool valid_target(std::string_view target) {
    if (target.empty() || target.size() > 64) return false;
    return std::all_of(target.begin(), target.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.' || c == '-';
    });
}

// No fsync: the file is rewritten every run and is worthless after a crash anyway; what matters
// is that a reader never sees a partial file, and rename() gives that.
void write_textfile(const std::string& dir, const std::string& name, std::string_view content) {
    // node_exporter usually runs as another user: readable whatever our umask is. Its collector
    // reads *.prom only, so it never sees the temporary file.
    files::write_file(dir + "/" + name, content, 0644, false);
}

} // namespace conncheck::prometheus
