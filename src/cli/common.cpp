#include "common.hpp"

#include "conncheck/text.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fmt/core.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace conncheck::cli {

void add_selector_options(CLI::App& app, SelectorOptions& options) {
    app.add_option("-p,--pid", options.pids, "Process to audit; repeat it or give PID,PID,...")
        ->delimiter(',')
        ->type_name("PID")
        ->group("Selecting processes");
    app.add_option("--pidfile", options.pidfile, "Read the pid from FILE (e.g. /run/collector.pid)")
        ->type_name("FILE")
        ->group("Selecting processes");
    app.add_option("--name", options.name,
                   "Every process whose comm equals NAME or whose cmdline contains it")
        ->type_name("NAME")
        ->group("Selecting processes");
}

void add_idle_option(CLI::App& app, std::uint32_t& seconds) {
    app.add_option("--idle", seconds,
                   "A connection that received nothing for SECONDS is stale (default 60)")
        ->type_name("SECONDS")
        ->check(CLI::Range(1U, 7U * 86400U));
}

bool has_selector(const SelectorOptions& options) {
    return !options.pids.empty() || !options.pidfile.empty() || !options.name.empty();
}

std::vector<pid_t> resolve_selector(const SelectorOptions& options, const proc::ProcFs& procfs) {
    std::vector<pid_t> pids;
    for (const auto& text : options.pids) {
        auto pid = proc::parse_pid(text);
        if (!pid)
            throw Error(Errc::usage,
                        fmt::format("invalid pid '{}': expected a positive whole number",
                                    text::sanitize(text, 40)));
        if (!procfs.exists(*pid))
            throw Error(Errc::no_such_process, fmt::format("no such process: {}", *pid));
        pids.push_back(*pid);
    }
    if (!options.pidfile.empty()) {
        const pid_t pid = proc::read_pidfile(options.pidfile);
        if (!procfs.exists(pid))
            throw Error(Errc::no_such_process,
                        fmt::format("pidfile {} names pid {}, which is not running",
                                    text::sanitize(options.pidfile), pid));
        pids.push_back(pid);
    }
    if (!options.name.empty()) {
        auto found = procfs.find_by_name(options.name);
        if (found.empty())
            throw Error(Errc::no_such_process, fmt::format("no process matches --name '{}'",
                                                           text::sanitize(options.name, 80)));
        pids.insert(pids.end(), found.begin(), found.end());
    }
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return pids;
}

std::string selector_key(const SelectorOptions& options) {
    std::string key;
    auto append = [&key](std::string_view kind, std::string_view value) {
        if (!key.empty()) key += '+';
        key += kind;
        key += '-';
        for (char c : value) {
            const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
            key += safe ? c : '_';
        }
    };
    std::vector<std::string> pids = options.pids;
    std::sort(pids.begin(), pids.end());
    for (const auto& p : pids)
        append("pid", p);
    if (!options.pidfile.empty()) append("pidfile", options.pidfile);
    if (!options.name.empty()) append("name", options.name);
    if (key.size() > 200) key.resize(200);
    return key.empty() ? "host" : key;
}

void add_source_options(CLI::App& app, SourceOptions& options) {
    const char* group = "Diagnostics";
    app.add_option("--source", options.source,
                   "Where sockets come from: auto (sock_diag, else /proc/net/tcp), netlink, proc")
        ->check(CLI::IsMember({"auto", "netlink", "proc"}))
        ->group(group);
    app.add_option("--dump-netlink", options.dump_netlink,
                   "Record the raw sock_diag replies to FILE (attach it to a bug report)")
        ->type_name("FILE")
        ->group(group);
    app.add_option("--replay", options.replay,
                   "Read sockets from a --dump-netlink recording instead of the kernel (at most "
                   "256 MiB)")
        ->type_name("FILE")
        ->group(group);
    app.add_option("--proc-root", options.proc_root, "Read processes from DIR instead of /proc")
        ->type_name("DIR")
        ->group(group);
}

scan::Config make_scan_config(const SourceOptions& options) {
    scan::Config config;
    config.proc_root = options.proc_root;
    config.replay_path = options.replay;
    config.record_path = options.dump_netlink;
    config.source = options.source == "netlink" ? scan::SourceKind::netlink
                    : options.source == "proc"  ? scan::SourceKind::proc_net
                                                : scan::SourceKind::automatic;
    return config;
}

int exit_code_for(Errc code) {
    switch (code) {
    case Errc::usage:
        return exit_code::usage;
    case Errc::no_such_process:
        return exit_code::no_such_process;
    case Errc::permission_denied:
        return exit_code::permission;
    case Errc::process_exited:
        return exit_code::process_exited;
    case Errc::source_unavailable:
        return exit_code::source_unavailable;
    case Errc::bad_file:
        return exit_code::bad_file;
    case Errc::io:
    case Errc::timeout:
        return exit_code::failure;
    }
    return exit_code::failure;
}

int print_error(const Error& error) {
    std::fflush(stdout);
    fmt::print(stderr, "conncheck: {}\n", error.what());
    return exit_code_for(error.code());
}

int report_unreadable(const std::vector<scan::UnreadableProcess>& unreadable, std::size_t read) {
    if (unreadable.empty()) return exit_code::ok;
    std::string which;
    for (const auto& u : unreadable) {
        if (!which.empty()) which += "; ";
        which += fmt::format("pid {} ({}): {}", u.pid, text::sanitize(u.comm, 32),
                             text::sanitize(u.reason));
    }
    std::fflush(stdout);
    fmt::print(stderr,
               "conncheck: partial result: {} of {} selected processes could not be read: {}\n",
               unreadable.size(), unreadable.size() + read, which);
    return exit_code::partial;
}

bool use_color(bool no_color_flag) {
    if (no_color_flag) return false;
    if (std::getenv("NO_COLOR") != nullptr) return false;
    return ::isatty(STDOUT_FILENO) == 1;
}

int terminal_width() {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    if (const char* columns = std::getenv("COLUMNS")) {
        const int n = std::atoi(columns);
        if (n > 0 && n < 10'000) return n;
    }
    return 80;
}

std::string exit_codes_help() {
    return "Exit status (audit, watch, export): 0 the command ran (whatever it found), 1 internal "
           "error,\n  2 bad arguments, 3 no such process / nothing matches, 4 permission denied,\n"
           "  5 the process exited during the audit, 6 no socket source (sock_diag and "
           "/proc/net/tcp),\n  7 unreadable or invalid file (pidfile, recording), 8 partial: "
           "some selected processes\n  could not be read (the report covers the others, "
           "stderr names them).\n"
           "check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. prove: 0 the demonstration held, 1 a "
           "leak or a failed demonstration.\nSee conncheck(1).";
}

} // namespace conncheck::cli
