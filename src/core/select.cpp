#include "conncheck/select.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
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
        if (matches(pid, found.unreadable)) found.pids.push_back(pid);
    }
    return found;
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

} // namespace conncheck::select
