#include "common.hpp"

#include "human_text.hpp"
#include "terminal.hpp"

#include "conncheck/select.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fmt/core.h>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace conncheck::cli {

namespace {

// "1,2,3" -> {"1", "2", "3"}; an empty item stays, for the validator to refuse.
std::vector<std::string_view> split_pid_list(std::string_view list) {
    std::vector<std::string_view> items;
    while (true) {
        const auto comma = list.find(',');
        items.push_back(list.substr(0, comma));
        if (comma == std::string_view::npos) return items;
        list.remove_prefix(comma + 1);
    }
}

std::vector<std::string> pid_items(const SelectorOptions& options) {
    std::vector<std::string> items;
    for (const auto& list : options.pids)
        for (auto item : split_pid_list(list))
            items.emplace_back(item);
    return items;
}

// A pid that names a thread of another process is refused: its fds are the process's, and
// reporting it under the thread's id would list one process twice.
void refuse_thread(const proc::ProcFs& procfs, pid_t pid) {
    const auto group = procfs.thread_group(pid);
    if (group && *group != pid)
        throw Error(Errc::usage, fmt::format("{} is a thread of process {}: give --pid {}", pid,
                                             *group, *group));
}

std::string unreadable_note(std::size_t unreadable) {
    if (unreadable == 0) return {};
    return fmt::format(" ({} {} could not be read: run as root)", unreadable,
                       unreadable == 1 ? "process" : "processes");
}

void append(std::vector<pid_t>& pids, const select::Found& found, const std::string& what) {
    if (found.pids.empty())
        throw Error(Errc::no_such_process, fmt::format("no process matches {}{}", what,
                                                       unreadable_note(found.unreadable)));
    pids.insert(pids.end(), found.pids.begin(), found.pids.end());
}

} // namespace

void add_selector_options(CLI::App& app, SelectorOptions& options) {
    const char* group = "Selecting processes";
    app.add_option("-p,--pid", options.pids,
                   "Process to audit; repeat it or give PID,PID,... (a thread id is refused)")
        ->type_name("PID")
        ->check(
            [](const std::string& list) {
                for (auto item : split_pid_list(list))
                    if (item.empty())
                        return fmt::format("empty item in '{}': give PID or PID,PID,...",
                                           text::sanitize(list, 40));
                return std::string();
            },
            "PID[,PID...]")
        ->group(group);
    app.add_option("--pidfile", options.pidfile, "Read the pid from FILE (e.g. /run/collector.pid)")
        ->type_name("FILE")
        ->group(group);
    app.add_option(
           "--name", options.name,
           "Every process whose comm is NAME, or whose program is: the basename of argv[0], "
           "or of the script an interpreter runs (python3 /opt/client.py is client.py)")
        ->type_name("NAME")
        ->check(
            [](const std::string& name) {
                if (name.empty()) return std::string("must not be empty");
                if (name.find('/') != std::string::npos)
                    return std::string("a program name has no '/': select a path with --exe");
                return std::string();
            },
            "NAME")
        ->group(group);
    app.add_option("--exe", options.exe,
                   "Every process running the executable PATH (/proc/PID/exe), also after the "
                   "file was replaced by an upgrade")
        ->type_name("PATH")
        ->check(
            [](const std::string& path) {
                return path.empty() ? std::string("must not be empty") : std::string();
            },
            "PATH")
        ->group(group);
    app.add_option("--unit", options.unit,
                   "Every process in the systemd unit's cgroup (nginx is nginx.service)")
        ->type_name("UNIT")
        ->check(
            [](const std::string& unit) {
                if (unit.empty()) return std::string("must not be empty");
                if (unit.find('/') != std::string::npos)
                    return std::string("a unit name has no '/': select a cgroup with --cgroup");
                return std::string();
            },
            "UNIT")
        ->group(group);
    app.add_option("--cgroup", options.cgroup,
                   "Every process in the cgroup v2 PATH or below it: /system.slice/nginx.service, "
                   "or its directory under the cgroup2 mount")
        ->type_name("PATH")
        ->check(
            [](const std::string& path) {
                return !path.empty() && path.front() == '/'
                           ? std::string()
                           : std::string("a cgroup path starts with '/'");
            },
            "PATH")
        ->group(group);
}

void add_idle_option(CLI::App& app, std::uint32_t& seconds) {
    app.add_option("--idle", seconds,
                   "A connection that received nothing for SECONDS is stale (default 60)")
        ->type_name("SECONDS")
        ->check(CLI::Range(1U, 7U * 86400U));
}

bool has_selector(const SelectorOptions& options) {
    return !options.pids.empty() || !options.pidfile.empty() || !options.name.empty() ||
           !options.exe.empty() || !options.unit.empty() || !options.cgroup.empty();
}

std::vector<pid_t> resolve_selector(const SelectorOptions& options, const proc::ProcFs& procfs) {
    std::vector<pid_t> pids;
    for (const auto& text : pid_items(options)) {
        auto pid = proc::parse_pid(text);
        if (!pid)
            throw Error(Errc::usage,
                        fmt::format("invalid pid '{}': expected a positive whole number",
                                    text::sanitize(text, 40)));
        if (!procfs.exists(*pid))
            throw Error(Errc::no_such_process, fmt::format("no such process: {}", *pid));
        refuse_thread(procfs, *pid);
        pids.push_back(*pid);
    }
    if (!options.pidfile.empty()) {
        const pid_t pid = proc::read_pidfile(options.pidfile);
        if (!procfs.exists(pid))
            throw Error(Errc::no_such_process,
                        fmt::format("pidfile {} names pid {}, which is not running",
                                    text::sanitize(options.pidfile), pid));
        refuse_thread(procfs, pid);
        pids.push_back(pid);
    }
    if (!options.name.empty())
        append(pids, select::by_name(procfs, options.name),
               fmt::format("--name '{}'", text::sanitize(options.name, 80)));
    if (!options.exe.empty())
        append(pids, select::by_exe(procfs, options.exe),
               fmt::format("--exe {}", text::sanitize(options.exe, 200)));
    if (!options.unit.empty()) {
        const std::string unit = select::unit_name(options.unit);
        append(pids, select::by_unit(procfs, unit),
               fmt::format("--unit {}", text::sanitize(unit, 200)));
    }
    if (!options.cgroup.empty()) {
        const std::string cgroup = select::cgroup_argument(options.cgroup, procfs.cgroup2_mount());
        append(pids, select::by_cgroup(procfs, cgroup),
               fmt::format("--cgroup {}", text::sanitize(cgroup, 200)));
    }
    std::sort(pids.begin(), pids.end());
    pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
    return pids;
}

std::string selector_key(const SelectorOptions& options) {
    std::string key;
    auto append_key = [&key](std::string_view kind, std::string_view value) {
        if (!key.empty()) key += '+';
        key += kind;
        key += '-';
        for (char c : value) {
            const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
            key += safe ? c : '_';
        }
    };
    std::vector<std::string> pids = pid_items(options);
    std::sort(pids.begin(), pids.end());
    for (const auto& p : pids)
        append_key("pid", p);
    if (!options.pidfile.empty()) append_key("pidfile", options.pidfile);
    if (!options.name.empty()) append_key("name", options.name);
    if (!options.exe.empty()) append_key("exe", options.exe);
    if (!options.unit.empty()) append_key("unit", select::unit_name(options.unit));
    if (!options.cgroup.empty()) append_key("cgroup", options.cgroup);
    if (key.size() > 200) key.resize(200);
    return key.empty() ? "host" : key;
}

namespace {

// How --source spells each preference.
constexpr std::pair<std::string_view, scan::SourcePreference> source_choices[] = {
    {"auto", scan::SourcePreference::automatic},
    {"netlink", scan::SourcePreference::netlink},
    {"proc", scan::SourcePreference::proc_net},
};

} // namespace

void add_source_options(CLI::App& app, SourceOptions& options) {
    const char* group = "Diagnostics";
    std::vector<std::string> names;
    for (const auto& [name, preference] : source_choices)
        names.emplace_back(name);
    app.add_option("--source", options.source,
                   "Where sockets come from: auto (sock_diag, else /proc/net/tcp), netlink, proc")
        ->check(CLI::IsMember(names))
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
    for (const auto& [name, preference] : source_choices)
        if (options.source == name) config.source = preference;
    return config;
}

std::uint64_t duration_option(std::string_view flag, const std::string& value, std::uint64_t min_ms,
                              std::uint64_t max_ms) {
    std::uint64_t ms = 0;
    if (!text::parse_duration_ms(value, ms))
        throw Error(Errc::usage, fmt::format("{}: '{}' is not a duration such as 250ms, 1.5s, "
                                             "10m or 2h (a bare number is seconds)",
                                             flag, text::sanitize(value, 40)));
    if (ms < min_ms || ms > max_ms)
        throw Error(Errc::usage,
                    fmt::format("{} {} is out of range: {} to {}", flag, text::sanitize(value, 40),
                                human_duration_ms(min_ms), human_duration_ms(max_ms)));
    return ms;
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
    if (const int cols = screen::terminal_size(STDOUT_FILENO).cols; cols > 0) return cols;
    if (const char* columns = std::getenv("COLUMNS")) {
        const int n = std::atoi(columns);
        if (n > 0 && n < 10'000) return n;
    }
    return 80;
}

std::string exit_codes_help() {
    return "Exit status (audit, watch, export): 0 the command ran (whatever it found), 1 internal "
           "error,\n  2 bad arguments (an audit option before a subcommand too) or an output that "
           "cannot be written\n  (--dump-netlink, --textfile-dir), 3 no such process / nothing "
           "matches, 4 permission denied,\n"
           "  5 the process exited during the audit, 6 no socket source (sock_diag and "
           "/proc/net/tcp),\n  7 unreadable or invalid file (pidfile, recording), 8 partial: "
           "some selected processes\n  could not be read (the report covers the others, "
           "stderr names them).\n"
           "check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. prove: 0 the demonstration held, 1 a "
           "leak or a failed demonstration.\nSee conncheck(1).";
}

} // namespace conncheck::cli
