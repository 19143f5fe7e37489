// Choosing processes the way people name them on servers: by program name, executable, systemd
// unit or cgroup. The matching rules are pure functions; the finders walk a /proc tree.
#pragma once

#include "conncheck/proc.hpp"

#include <optional>

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace conncheck::select {

// Interpreters whose program is the script they run: sh, bash, dash, zsh, ksh, mksh, fish,
// python, pypy, perl, ruby, php, node, nodejs, lua, luajit, tclsh, with a version suffix
// ("python3.11", "php8.2") or without.
[[nodiscard]] bool is_interpreter(std::string_view program);

// The program names of a process, from its raw /proc/PID/cmdline (arguments NUL-separated): the
// basename of argv[0] and, when that is an interpreter, the basename of its first argument that
// does not start with '-' ("python3 -u /opt/client.py" -> "python3", "client.py").
[[nodiscard]] std::vector<std::string_view> program_names(std::string_view raw_cmdline);

// --name NAME: comm equals NAME, or one of program_names() does. Never a substring.
[[nodiscard]] bool name_matches(std::string_view name, std::string_view comm,
                                std::string_view raw_cmdline);

// "nginx" -> "nginx.service"; a name with a unit type suffix (".scope", ".slice", ...) is kept.
[[nodiscard]] std::string unit_name(std::string_view unit);
// A process in cgroup `process_cgroup` belongs to `unit` (a full unit name) when one component
// of the path is the unit: "/system.slice/nginx.service" and its sub-cgroups.
[[nodiscard]] bool in_unit(std::string_view process_cgroup, std::string_view unit);
// `process_cgroup` is `cgroup` or below it ("/a/b" is within "/a", "/ab" is not).
[[nodiscard]] bool within_cgroup(std::string_view process_cgroup, std::string_view cgroup);
// A --cgroup argument as a cgroup path: "/system.slice/x.service" stays; a directory under the
// cgroup2 mount ("/sys/fs/cgroup/unified/system.slice/x.service") loses the mount point. Trailing
// slashes go.
[[nodiscard]] std::string cgroup_argument(std::string_view argument,
                                          const std::optional<proc::Cgroup2Mount>& mount);

struct Found {
    std::vector<pid_t> pids;
    std::size_t unreadable = 0; // processes whose executable or cgroup could not be read
    std::size_t vanished = 0;   // matched, but exited (a zombie) before they could be read
};

// Every process that matches, except the calling process and its ancestors (the shell of
// `sh -c 'conncheck --name collector'` names the target in its own command line, a cron job runs
// inside the unit it checks).
[[nodiscard]] Found by_name(const proc::ProcFs& procfs, std::string_view name);
// The executable is `path`: the same file (device and inode), or a link that names it, also
// after the file was replaced or deleted ("/usr/bin/x (deleted)" once a package upgrade ran).
[[nodiscard]] Found by_exe(const proc::ProcFs& procfs, const std::string& path);
[[nodiscard]] Found by_unit(const proc::ProcFs& procfs, std::string_view unit);
[[nodiscard]] Found by_cgroup(const proc::ProcFs& procfs, std::string_view cgroup_path);

// What the user asked for, in plain values: every process any of these names.
struct Selection {
    std::vector<pid_t> pids;
    std::string pidfile; // a file holding one pid
    std::string name;    // by_name
    std::string exe;     // by_exe
    std::string unit;    // by_unit, after unit_name()
    std::string cgroup;  // by_cgroup, after cgroup_argument()
    [[nodiscard]] bool empty() const;
};

struct Selected {
    pid_t pid = 0;
    // The name the process was selected by: the name, the unit as given, the basename of the
    // executable or the last component of the cgroup. Empty for a pid or a pidfile: the process's
    // own comm names it then.
    std::string name;
};

struct Resolved {
    std::vector<Selected> processes; // in pid order, each once
    std::size_t vanished = 0;        // matched, then exited before they could be read
    std::size_t unreadable = 0;      // could not be told apart: exe or cgroup unreadable
    [[nodiscard]] std::vector<pid_t> pids() const;
};

// Every process the selection names. Throws Error(bad_file) for a pidfile that cannot be read,
// Error(no_such_process) for a pid that does not exist or a criterion nothing matches (with how
// many processes could not be read and why), Error(process_exited) for a pid that names a zombie,
// Error(usage) for a pid that names a thread of another process.
[[nodiscard]] Resolved resolve(const Selection& selection, const proc::ProcFs& procfs);

// A short stable key for the selection ("pid-4242", "name-collector"), safe as a file name;
// "host" for an empty selection.
[[nodiscard]] std::string key(const Selection& selection);

} // namespace conncheck::select
