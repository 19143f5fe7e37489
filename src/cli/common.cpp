#include "common.hpp"

#include "human_text.hpp"
#include "terminal.hpp"

#include "conncheck/select.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fmt/core.h>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace conncheck::cli {

std::vector<std::string_view> split_list(std::string_view list) {
    std::vector<std::string_view> items;
    while (true) {
        const auto comma = list.find(',');
        items.push_back(list.substr(0, comma));
        if (comma == std::string_view::npos) return items;
        list.remove_prefix(comma + 1);
    }
}

namespace {

std::vector<std::string> pid_items(const SelectorOptions& options) {
    std::vector<std::string> items;
    for (const auto& list : options.pids)
        for (auto item : split_list(list))
            items.emplace_back(item);
    return items;
}

} // namespace

CLI::Validator non_empty(const std::string& type_name) {
    return CLI::Validator(
        [](const std::string& value) {
            return value.empty() ? std::string("must not be empty") : std::string();
        },
        type_name);
}

CLI::Validator directory(const std::string& type_name) {
    return CLI::Validator(
        [](const std::string& path) {
            if (path.empty()) return std::string("must not be empty");
            struct stat st {};
            if (::stat(path.c_str(), &st) != 0)
                return errno_message(text::sanitize(path, 200), errno);
            if (!S_ISDIR(st.st_mode))
                return fmt::format("{}: not a directory", text::sanitize(path, 200));
            return std::string();
        },
        type_name);
}

void add_selector_options(CLI::App& app, SelectorOptions& options) {
    const char* group = "Selecting processes";
    app.add_option("-p,--pid", options.pids,
                   "Process to audit; repeat it or give PID,PID,... (a thread id is refused)")
        ->type_name("PID")
        ->check(
            [](const std::string& list) {
                for (auto item : split_list(list)) {
                    if (item.empty())
                        return fmt::format("empty item in '{}': give PID or PID,PID,...",
                                           text::sanitize(list, 40));
                    if (!proc::parse_pid(item))
                        return fmt::format("invalid pid '{}': expected a positive whole number",
                                           text::sanitize(item, 40));
                }
                return std::string();
            },
            "PID[,PID...]")
        ->group(group);
    app.add_option("--pidfile", options.pidfile,
                   "Read the pid from FILE (e.g. /run/collector.pid; a regular file, never waited "
                   "on)")
        ->type_name("FILE")
        ->check(non_empty("FILE"))
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

select::Selection selection_of(const SelectorOptions& options) {
    select::Selection selection;
    for (const auto& text : pid_items(options)) {
        const auto pid = proc::parse_pid(text);
        if (!pid)
            throw Error(Errc::usage,
                        fmt::format("invalid pid '{}': expected a positive whole number",
                                    text::sanitize(text, 40)));
        selection.pids.push_back(*pid);
    }
    selection.pidfile = options.pidfile;
    selection.name = options.name;
    selection.exe = options.exe;
    selection.unit = options.unit;
    selection.cgroup = options.cgroup;
    return selection;
}

bool has_selector(const SelectorOptions& options) {
    return !options.pids.empty() || !options.pidfile.empty() || !options.name.empty() ||
           !options.exe.empty() || !options.unit.empty() || !options.cgroup.empty();
}

scan::Snapshot scan_selected(scan::Scanner& scanner, const select::Resolved& selected) {
    std::vector<pid_t> pids = selected.pids();
    std::size_t exited = 0;
    // scan_running retries a bounded number of times; where processes come and go faster than
    // that (a whole busy cgroup), the survivors get a few more rounds.
    for (int round = 0; round < 3 && !pids.empty(); ++round) {
        scan::RunningScan scanned = scanner.scan_running(pids);
        exited += scanned.exited.size();
        if (scanned.snapshot) {
            scanned.snapshot->vanished_processes += selected.vanished + exited;
            return std::move(*scanned.snapshot);
        }
        std::erase_if(pids, [&](pid_t pid) {
            return std::find(scanned.exited.begin(), scanned.exited.end(), pid) !=
                   scanned.exited.end();
        });
    }
    if (selected.processes.size() == 1)
        throw Error(Errc::process_exited,
                    fmt::format("process {} exited during the audit", selected.processes[0].pid));
    throw Error(Errc::process_exited,
                pids.empty() ? fmt::format("the {} selected processes exited during the audit",
                                           selected.processes.size())
                             : std::string("the selected processes kept exiting during the "
                                           "audit; try again"));
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
    CLI::Option* source =
        app.add_option(
               "--source", options.source,
               "Where sockets come from: auto (sock_diag, else /proc/net/tcp), netlink, proc")
            ->check(CLI::IsMember(names))
            ->group(group);
    CLI::Option* dump =
        app.add_option(
               "--dump-netlink", options.dump_netlink,
               "Record the raw sock_diag replies to FILE (attach it to a bug report; replaced, "
               "a link or non-regular file is refused)")
            ->type_name("FILE")
            ->check(non_empty("FILE"))
            ->group(group);
    CLI::Option* replay =
        app.add_option(
               "--replay", options.replay,
               "Read sockets from a --dump-netlink recording instead of the kernel (at most "
               "256 MiB, a regular file)")
            ->type_name("FILE")
            ->check(non_empty("FILE"))
            ->group(group);
    app.add_option("--proc-root", options.proc_root, "Read processes from DIR instead of /proc")
        ->type_name("DIR")
        ->check(directory("DIR"))
        ->group(group);
    // A replay has no kernel to record from, and is its own source.
    replay->excludes(dump);
    replay->excludes(source);
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
    fmt::print(stderr, "conncheck: {}\n", text::one_line(error.what()));
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
           "error,\n  2 bad arguments (an audit option before a subcommand, an empty file name) or "
           "an output that\n  cannot be written or is refused (--dump-netlink, --textfile-dir, a "
           "symbolic link or non-regular\n  file at an output's path, a full or closed standard "
           "output), 3 no such process / nothing\n  matches, 4 permission denied, 5 the process "
           "has exited (a zombie, or all selected exited\n  during the audit), 6 no socket source "
           "(sock_diag and /proc/net/tcp), 7 unreadable or invalid\n  file (pidfile, recording; a "
           "FIFO or device is refused), 8 partial: some selected processes\n  could not be read "
           "(the report covers the others, stderr names them).\n"
           "check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. prove: 0 the demonstration held, 1 a "
           "leak or a failed demonstration.\nSee conncheck(1).";
}

} // namespace conncheck::cli
