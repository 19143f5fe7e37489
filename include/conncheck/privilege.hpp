// What a refused access lacks, named from the calling thread's effective capabilities, so that an
// error tells root running with a reduced bounding set, or a service user with ambient
// capabilities, exactly which capability to add, and never tells root to run as root.
#pragma once

#include <string>
#include <vector>

namespace conncheck::privilege {

enum class Access {
    // Another user's /proc/PID/fd: the directory is mode 0500 (CAP_DAC_READ_SEARCH) and its links
    // pass a ptrace access check (CAP_SYS_PTRACE).
    process_fds,
    // setns() into another process's network namespace: CAP_SYS_ADMIN.
    network_namespace,
    // Creating a file in a directory that belongs to another user (node_exporter's textfile
    // directory is root's): CAP_DAC_OVERRIDE.
    write_directory,
    // SOCK_DESTROY through sock_diag: CAP_NET_ADMIN in the socket's network namespace.
    destroy_sockets,
    // Another user's /proc/PID/auxv (mode 0400: CAP_DAC_READ_SEARCH) and the files mapped there,
    // which name a call site, past a ptrace read check (CAP_SYS_PTRACE).
    process_maps,
    // Loading and attaching tracing programs: CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN grants both).
    ebpf_tracing,
};

// The capabilities `access` takes, by name ("CAP_SYS_PTRACE").
[[nodiscard]] std::vector<std::string> required(Access access);

// Those of them the calling thread lacks (none: the refusal has another cause).
[[nodiscard]] std::vector<std::string> missing(Access access);
// Whether the calling thread holds every capability `access` takes (a security module may
// still refuse).
[[nodiscard]] bool granted(Access access);

// The parenthesis to append to a permission error: "needs CAP_DAC_READ_SEARCH" naming the
// missing ones, or, when none is missing, "refused even to root: a ptrace restriction or security
// module" (or "even with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH" for a user other than root).
[[nodiscard]] std::string hint(Access access);

} // namespace conncheck::privilege
