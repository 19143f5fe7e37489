// What the fd-table iterator (fd_tables.bpf.c) writes per open file, read by
// src/core/scan/kernel_fd_tables.cpp.
#pragma once

#ifdef __bpf__
typedef __u32 fd_u32;
typedef __s32 fd_s32;
typedef __u64 fd_u64;
#else
#include <cstdint>
typedef std::uint32_t fd_u32;
typedef std::int32_t fd_s32;
typedef std::uint64_t fd_u64;
#endif

struct fd_table_entry {
    fd_u32 pid;          // the process (thread group) as the initial pid namespace numbers it
    fd_s32 fd;           // its fd number
    fd_u64 socket_inode; // the socket's inode ("socket:[N]"), 0 for a file of another kind
};
