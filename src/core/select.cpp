#include "conncheck/select.hpp"

#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fmt/core.h>
#include <functional>
#include <sys/stat.h>
#include <unistd.h>

namespace conncheck::select {

namespace {

std::string_view basename_of(std::string_view path) {
    while (path.size() > 1 && path.back() == '/')
        path.remove_suffix(1);
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// "/system.slice/nginx.service" -> "/system.slice/nginx.service"; "/a/b/" -> "/a/b"; "" -> "/".
std::string_view trim_slashes(std::string_view path) {
    while (path.size() > 1 && path.back() == '/')
        path.remove_suffix(1);
    return path;
}

using Predicate = std::function<bool(pid_t, std::size_t& unreadable)>;

// Every process `matches` accepts, skipping the caller and its ancestors.
Found find(const proc::ProcFs& procfs, const Predicate& matches) {
    std::vector<pid_t> ancestors;
    for (pid_t p = ::getpid(); p > 1 && ancestors.size() < 64;) {
        ancestors.push_back(p);
        const auto stat = procfs.read_stat(p);
        p = stat ? stat->ppid : 0;
    }
    Found found;
    for (pid_t pid : procfs.list_pids()) {
        if (std::find(ancestors.begin(), ancestors.end(), pid) != ancestors.end()) continue;
        if (!matches(pid, found.unreadable)) continue;
        // A zombie keeps its name and cgroup but has no files left to audit.
        if (procfs.is_running(pid))
            found.pids.push_back(pid);
        else
            ++found.vanished;
    }
    return found;
}

// A pid given by the user: it exists, is a process and not a thread, and has not exited.
void check_pid(const proc::ProcFs& procfs, pid_t pid, const std::string& not_found) {
    if (!procfs.exists(pid)) throw Error(Errc::no_such_process, not_found);
    const auto group = procfs.thread_group(pid);
    // Its fds are the process's: reported under the thread's id, one process would show twice.
    if (group && *group != pid)
        throw Error(Errc::usage, fmt::format("{} is a thread of process {}: give --pid {}", pid,
                                             *group, *group));
    const auto stat = procfs.read_stat(pid);
    if (!stat) {
        if (!procfs.exists(pid)) throw Error(Errc::no_such_process, not_found);
        throw Error(Errc::bad_file, fmt::format("cannot read {}", procfs.path(pid, "stat")));
    }
    if (stat->state == 'Z' || stat->state == 'X' || stat->state == 'x')
        throw Error(Errc::process_exited,
                    fmt::format("process {} has exited (a zombie its parent has not reaped)", pid));
}

std::string unreadable_note(std::size_t unreadable) {
    if (unreadable == 0) return {};
    return fmt::format(" ({} {} could not be read: {})", unreadable,
                       unreadable == 1 ? "process" : "processes",
                       privilege::hint(privilege::Access::process_fds));
}

std::string_view last_component(std::string_view path) {
    const auto base = basename_of(path);
    return base.empty() || base == "/" ? path : base;
}

} // namespace

bool is_interpreter(std::string_view program) {
    static constexpr std::array<std::string_view, 17> names = {
        "sh",   "bash", "dash", "zsh",  "ksh",    "mksh", "fish",   "python", "pypy",
        "perl", "ruby", "php",  "node", "nodejs", "lua",  "luajit", "tclsh"};
    // A version suffix: "python3.11", "php8.2", "ksh93".
    while (!program.empty() &&
           ((program.back() >= '0' && program.back() <= '9') || program.back() == '.'))
        program.remove_suffix(1);
    return std::find(names.begin(), names.end(), program) != names.end();
}

std::vector<std::string_view> program_names(std::string_view raw_cmdline) {
    std::vector<std::string_view> args;
    while (!raw_cmdline.empty()) {
        const auto end = raw_cmdline.find('\0');
        args.push_back(raw_cmdline.substr(0, end));
        raw_cmdline.remove_prefix(end == std::string_view::npos ? raw_cmdline.size() : end + 1);
    }
    std::vector<std::string_view> names;
    if (args.empty() || args.front().empty()) return names;
    names.push_back(basename_of(args.front()));
    if (!is_interpreter(names.front())) return names;
    for (std::size_t i = 1; i < args.size(); ++i) {
        if (args[i].empty() || args[i].front() == '-') continue;
        names.push_back(basename_of(args[i]));
        break;
    }
    return names;
}

bool name_matches(std::string_view name, std::string_view comm, std::string_view raw_cmdline) {
    if (name.empty()) return false;
    if (comm == name) return true;
    const auto names = program_names(raw_cmdline);
    return std::find(names.begin(), names.end(), name) != names.end();
}

std::string unit_name(std::string_view unit) {
    static constexpr std::array<std::string_view, 11> types = {
        ".service", ".scope", ".slice", ".socket", ".mount", ".automount",
        ".swap",    ".timer", ".path",  ".target", ".device"};
    for (auto type : types)
        if (unit.size() > type.size() && unit.substr(unit.size() - type.size()) == type)
            return std::string(unit);
    return std::string(unit) + ".service";
}

bool in_unit(std::string_view process_cgroup, std::string_view unit) {
    while (!process_cgroup.empty()) {
        const auto slash = process_cgroup.find('/');
        if (process_cgroup.substr(0, slash) == unit) return true;
        process_cgroup.remove_prefix(slash == std::string_view::npos ? process_cgroup.size()
                                                                     : slash + 1);
    }
    return false;
}

bool within_cgroup(std::string_view process_cgroup, std::string_view cgroup) {
    process_cgroup = trim_slashes(process_cgroup);
    cgroup = trim_slashes(cgroup);
    if (cgroup == "/") return true;
    return process_cgroup.substr(0, cgroup.size()) == cgroup &&
           (process_cgroup.size() == cgroup.size() || process_cgroup[cgroup.size()] == '/');
}

std::string cgroup_argument(std::string_view argument,
                            const std::optional<proc::Cgroup2Mount>& mount) {
    argument = trim_slashes(argument);
    if (mount) {
        const std::string_view point = trim_slashes(mount->mount_point);
        if (within_cgroup(argument, point) && point != "/") {
            std::string path = mount->root == "/" ? std::string() : mount->root;
            path += argument.substr(point.size());
            return path.empty() ? "/" : path;
        }
    }
    return std::string(argument);
}

Found by_name(const proc::ProcFs& procfs, std::string_view name) {
    return find(procfs, [&](pid_t pid, std::size_t&) {
        const auto stat = procfs.read_stat(pid);
        if (!stat) return false; // exited meanwhile
        if (stat->comm == name) return true;
        const auto cmdline = procfs.read(pid, "cmdline");
        return cmdline && name_matches(name, stat->comm, *cmdline);
    });
}

Found by_exe(const proc::ProcFs& procfs, const std::string& path) {
    struct stat wanted {};
    const bool have_file = ::stat(path.c_str(), &wanted) == 0;
    std::string canonical = path;
    if (char* real = ::realpath(path.c_str(), nullptr)) {
        canonical = real;
        std::free(real);
    }
    const std::string deleted = canonical + " (deleted)";
    return find(procfs, [&](pid_t pid, std::size_t& unreadable) {
        const auto link = procfs.read_link(pid, "exe");
        if (!link) {
            // Kernel threads have no executable (ENOENT); other users' processes need privilege.
            if (errno == EACCES || errno == EPERM) ++unreadable;
            return false;
        }
        if (*link == canonical || *link == deleted) return true;
        struct stat st {};
        return have_file && ::stat(procfs.path(pid, "exe").c_str(), &st) == 0 &&
               st.st_dev == wanted.st_dev && st.st_ino == wanted.st_ino;
    });
}

Found by_unit(const proc::ProcFs& procfs, std::string_view unit) {
    return find(procfs, [&](pid_t pid, std::size_t& unreadable) {
        const auto content = procfs.read(pid, "cgroup");
        if (!content) {
            if (errno == EACCES || errno == EPERM) ++unreadable;
            return false;
        }
        // systemd keeps its tree in cgroup v2 ("0::") on unified and hybrid hosts, in the
        // "name=systemd" v1 hierarchy on legacy ones.
        std::string_view lines(*content);
        while (!lines.empty()) {
            const auto eol = lines.find('\n');
            const std::string_view line = lines.substr(0, eol);
            lines.remove_prefix(eol == std::string_view::npos ? lines.size() : eol + 1);
            const auto first = line.find(':');
            const auto second = line.find(':', first == std::string_view::npos ? 0 : first + 1);
            if (first == std::string_view::npos || second == std::string_view::npos) continue;
            const auto hierarchy = line.substr(0, first);
            const auto controllers = line.substr(first + 1, second - first - 1);
            if ((hierarchy == "0" && controllers.empty()) || controllers == "name=systemd")
                if (in_unit(line.substr(second + 1), unit)) return true;
        }
        return false;
    });
}

Found by_cgroup(const proc::ProcFs& procfs, std::string_view cgroup_path) {
    return find(procfs, [&](pid_t pid, std::size_t& unreadable) {
        const auto content = procfs.read(pid, "cgroup");
        if (!content) {
            if (errno == EACCES || errno == EPERM) ++unreadable;
            return false;
        }
        const auto path = proc::parse_cgroup2_path(*content);
        return path && within_cgroup(*path, cgroup_path);
    });
}

bool Selection::empty() const {
    return pids.empty() && pidfile.empty() && name.empty() && exe.empty() && unit.empty() &&
           cgroup.empty();
}

std::vector<pid_t> Resolved::pids() const {
    std::vector<pid_t> out;
    out.reserve(processes.size());
    for (const auto& p : processes)
        out.push_back(p.pid);
    return out;
}

Resolved resolve(const Selection& selection, const proc::ProcFs& procfs) {
    Resolved resolved;
    // Named criteria first: a process also given by pid keeps the name it was selected by.
    const auto add = [&](const Found& found, std::string_view name, const std::string& what) {
        resolved.vanished += found.vanished;
        resolved.unreadable += found.unreadable;
        if (found.pids.empty()) {
            if (found.vanished > 0)
                throw Error(Errc::process_exited,
                            fmt::format("every process that matches {} has exited", what));
            throw Error(Errc::no_such_process, fmt::format("no process matches {}{}", what,
                                                           unreadable_note(found.unreadable)));
        }
        for (pid_t pid : found.pids)
            resolved.processes.push_back({pid, std::string(name)});
    };
    if (!selection.name.empty())
        add(by_name(procfs, selection.name), selection.name,
            fmt::format("name '{}'", text::sanitize(selection.name, 80)));
    if (!selection.exe.empty())
        add(by_exe(procfs, selection.exe), basename_of(selection.exe),
            fmt::format("executable {}", text::sanitize(selection.exe, 200)));
    if (!selection.unit.empty()) {
        const std::string unit = unit_name(selection.unit);
        add(by_unit(procfs, unit), selection.unit,
            fmt::format("unit {}", text::sanitize(unit, 200)));
    }
    if (!selection.cgroup.empty()) {
        const std::string cgroup = cgroup_argument(selection.cgroup, procfs.cgroup2_mount());
        add(by_cgroup(procfs, cgroup), last_component(cgroup),
            fmt::format("cgroup {}", text::sanitize(cgroup, 200)));
    }
    for (pid_t pid : selection.pids) {
        check_pid(procfs, pid, fmt::format("no such process: {}", pid));
        resolved.processes.push_back({pid, {}});
    }
    if (!selection.pidfile.empty()) {
        const pid_t pid = proc::read_pidfile(selection.pidfile);
        check_pid(procfs, pid,
                  fmt::format("pidfile {} names pid {}, which is not running",
                              text::sanitize(selection.pidfile, 200), pid));
        resolved.processes.push_back({pid, {}});
    }
    std::stable_sort(resolved.processes.begin(), resolved.processes.end(),
                     [](const Selected& a, const Selected& b) { return a.pid < b.pid; });
    resolved.processes.erase(
        std::unique(resolved.processes.begin(), resolved.processes.end(),
                    [](const Selected& a, const Selected& b) { return a.pid == b.pid; }),
        resolved.processes.end());
    return resolved;
}

std::string key(const Selection& selection) {
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
    // Sorted as text, as the keys of earlier versions were: existing state files keep matching.
    std::vector<std::string> pids;
    for (pid_t pid : selection.pids)
        pids.push_back(std::to_string(pid));
    std::sort(pids.begin(), pids.end());
    for (const auto& p : pids)
        append_key("pid", p);
    if (!selection.pidfile.empty()) append_key("pidfile", selection.pidfile);
    if (!selection.name.empty()) append_key("name", selection.name);
    if (!selection.exe.empty()) append_key("exe", selection.exe);
    if (!selection.unit.empty()) append_key("unit", unit_name(selection.unit));
    if (!selection.cgroup.empty()) append_key("cgroup", selection.cgroup);
    if (key.size() > 200) key.resize(200);
    return key.empty() ? "host" : key;
}

} // namespace conncheck::select
