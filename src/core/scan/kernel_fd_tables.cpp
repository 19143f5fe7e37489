// kernel_fd_tables(): the fd-table iterator of fd_tables.bpf.c, loaded, run once and unloaded.
#include "conncheck/fd.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/scan/fd_walk.hpp"

#include "fd_tables.h"
// bpftool embeds the whole eBPF object in one string literal, beyond what -Wpedantic accepts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#include "fd_tables.skel.h"
#pragma GCC diagnostic pop

#include <algorithm>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace conncheck::scan {

namespace {

// The initial pid namespace's inode number (PROC_PID_INIT_INO): the iterator reports the pids
// that namespace gives, which are ours only when we live in it.
constexpr ino_t initial_pid_namespace = 0xEFFFFFFCU;

__attribute__((format(printf, 2, 0))) int quiet(enum libbpf_print_level, const char*, va_list) {
    return 0;
}

struct Loaded {
    fd_tables_bpf* skel = nullptr;
    bpf_link* link = nullptr;
    libbpf_print_fn_t previous_print = libbpf_set_print(quiet);
    ~Loaded() {
        bpf_link__destroy(link);
        fd_tables_bpf__destroy(skel);
        libbpf_set_print(previous_print);
    }
};

std::optional<std::vector<fd_table_entry>> read_entries() {
    Loaded loaded;
    loaded.skel = fd_tables_bpf__open_and_load();
    if (loaded.skel == nullptr) return std::nullopt;
    loaded.link = bpf_program__attach_iter(loaded.skel->progs.fd_tables, nullptr);
    if (loaded.link == nullptr) return std::nullopt;
    const UniqueFd iter(bpf_iter_create(bpf_link__fd(loaded.link)));
    if (iter.get() < 0) return std::nullopt;
    std::vector<fd_table_entry> entries(4096);
    std::size_t bytes = 0;
    while (true) {
        if (entries.size() * sizeof(fd_table_entry) - bytes < 65536)
            entries.resize(entries.size() * 2);
        const ssize_t got = ::read(iter.get(), reinterpret_cast<char*>(entries.data()) + bytes,
                                   entries.size() * sizeof(fd_table_entry) - bytes);
        // EAGAIN: a million tasks and files went by in this read without one to write; the
        // next read goes on from there.
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got < 0) return std::nullopt;
        if (got == 0) break;
        bytes += static_cast<std::size_t>(got);
    }
    entries.resize(bytes / sizeof(fd_table_entry));
    return entries;
}

// Under a seccomp filter (a systemd unit's SystemCallFilter=, whose default answer to a call it
// does not list is to kill the process) bpf() is never tried: the /proc walk needs nothing more.
bool seccomp_filtered() {
    const auto status = proc::ProcFs().read(::getpid(), "status");
    return !status || status->find("\nSeccomp:\t0\n") == std::string::npos;
}

} // namespace

std::optional<std::vector<std::pair<pid_t, proc::FdScan>>> kernel_fd_tables() {
    if (seccomp_filtered()) return std::nullopt;
    struct stat ns {};
    if (::stat("/proc/self/ns/pid", &ns) != 0 || ns.st_ino != initial_pid_namespace)
        return std::nullopt;
    if (!privilege::granted(privilege::Access::process_fds) ||
        !privilege::granted(privilege::Access::ebpf_tracing))
        return std::nullopt;
    auto entries = read_entries();
    if (!entries) return std::nullopt;
    // The kernel walks its tasks in pid order, a table whole before the next.
    const auto by_pid = [](const fd_table_entry& a, const fd_table_entry& b) {
        return a.pid < b.pid;
    };
    if (!std::is_sorted(entries->begin(), entries->end(), by_pid))
        std::stable_sort(entries->begin(), entries->end(), by_pid);
    std::vector<std::pair<pid_t, proc::FdScan>> tables;
    std::vector<std::pair<std::uint64_t, int>> sockets;
    for (auto it = entries->begin(); it != entries->end();) {
        const auto pid = it->pid;
        sockets.clear();
        std::uint64_t open_fds = 0;
        for (; it != entries->end() && it->pid == pid; ++it) {
            ++open_fds;
            if (it->socket_inode != 0) sockets.emplace_back(it->socket_inode, it->fd);
        }
        tables.emplace_back(static_cast<pid_t>(pid),
                            proc::fd_scan_of(std::move(sockets), open_fds));
    }
    return tables;
}

} // namespace conncheck::scan
