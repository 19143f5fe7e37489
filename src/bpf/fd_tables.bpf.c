// Every process's fd table in one pass of the kernel's task list: a task_file iterator writes an
// fd_table_entry per open file of each thread group leader, the table /proc/PID/fd shows. The
// kernel also visits a thread whose table is not its leader's (one that unshared it, or every
// thread once the leader has exited): /proc/PID/fd shows none of those, and neither does this.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

#include "fd_tables.h"

char LICENSE[] SEC("license") = "GPL";

#define MODE_TYPE 0170000   // S_IFMT
#define MODE_SOCKET 0140000 // S_IFSOCK

SEC("iter/task_file")
int fd_tables(struct bpf_iter__task_file *ctx) {
    struct task_struct *task = ctx->task;
    struct file *file = ctx->file;
    if (!task || !file)
        return 0;
    if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
        return 0;
    struct fd_table_entry entry = {};
    entry.pid = BPF_CORE_READ(task, tgid);
    entry.fd = ctx->fd;
    const struct inode *inode = BPF_CORE_READ(file, f_inode);
    if ((BPF_CORE_READ(inode, i_mode) & MODE_TYPE) == MODE_SOCKET)
        entry.socket_inode = BPF_CORE_READ(inode, i_ino);
    bpf_seq_write(ctx->meta->seq, &entry, sizeof entry);
    return 0;
}
