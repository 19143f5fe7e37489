// SPDX-License-Identifier: GPL-2.0
/* The kernel half of `conncheck trace`: follows the TCP sockets a set of processes open, from
 * connect()/accept() to their destruction, and sends one record per event to user space. Sockets
 * are tracked by address in `tracked`, registered while a target thread is running: state changes
 * caused by incoming packets run in softirq, where the current task is whoever was on the CPU. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "trace_event.h"

char LICENSE[] SEC("license") = "GPL";

_Static_assert(__builtin_offsetof(struct cc_event, local_addr) == CC_CHANGE_BYTES,
               "a change record is the head of struct cc_event");

/* A pointer read from memory made a BTF one again (kernel 6.2+), for plain loads. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* Data after at least this much silence is reported (CC_EV_RESUMED); set with on_data_ready. */
const volatile __u64 silence_ns = 0;
/* The reader is woken once this much is waiting: a sixteenth of the ring buffer. */
const volatile __u64 wakeup_bytes = 1 << 17;

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32); /* enum cc_target_flags */
} targets SEC(".maps");

/* The CPython targets: where their interpreter's frames are (trace_event.h). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, struct cc_python_target);
} python_targets SEC(".maps");

/* Sized by the loader (the tracked-connection cap) before load. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u64);
    __type(value, struct tracked_sock);
} tracked SEC(".maps");

/* Connections (by id) with a record lost to a full ring buffer: user space does not judge them. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, __u64);
    __type(value, __u8);
} incomplete SEC(".maps");

/* Sized by the loader: 2 MiB, or 4 MiB when stacks are copied (ProbeConfig::copies_stacks). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Connections not tracked because `tracked` was full, and records lost to a full ring buffer. */
__u64 untracked_connections = 0;
__u64 lost_events = 0;
__u64 next_id = 0;
/* Sockets a target process put into LISTEN: user space attaches on_sys_exit, which follows
 * accept(), only once there is something to accept. */
__u64 listens = 0;

/* Waking the reader for every record would bill a wake-up to whichever task changed the socket:
 * the target, most often. The reader drains on a timer instead, and is woken early only once
 * wakeup_bytes are waiting. */
static __always_inline __u64 wakeup_flags(void) {
    return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                        : BPF_RB_NO_WAKEUP;
}

/* The target's flags (enum cc_target_flags), or NULL when the process is no target. */
static __always_inline __u32 *target_flags(__u32 tgid) {
    return bpf_map_lookup_elem(&targets, &tgid);
}

static __always_inline bool is_target(__u32 tgid) {
    return target_flags(tgid) != 0;
}

/* Every socket pointer here is a BTF one (a tracepoint's argument, or bpf_rdonly_cast()), so its
 * fields are read with plain loads, which the verifier guards: a helper call per field cost more
 * than the rest of the program. */
static __always_inline void fill_endpoints(struct cc_event *e, struct sock *sk) {
    __u16 family = sk->__sk_common.skc_family;
    e->family = (__u8)family;
    e->local_port = sk->__sk_common.skc_num;
    e->remote_port = bpf_ntohs(sk->__sk_common.skc_dport);
    if (family == AF_INET) {
        __be32 local = sk->__sk_common.skc_rcv_saddr;
        __be32 remote = sk->__sk_common.skc_daddr;
        __builtin_memcpy(e->local_addr, &local, sizeof(local));
        __builtin_memcpy(e->remote_addr, &remote, sizeof(remote));
    } else if (family == AF_INET6) {
        __builtin_memcpy(e->local_addr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
        __builtin_memcpy(e->remote_addr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
    }
}

/* The current thread's id, when it belongs to the process owning the socket: 0 otherwise. */
static __always_inline __u32 owner_thread(__u32 owner) {
    __u64 id = bpf_get_current_pid_tgid();
    return (__u32)(id >> 32) == owner ? (__u32)id : 0;
}

/* The current task's ids and name, when it belongs to the process owning the socket. */
static __always_inline void fill_task(struct cc_event *e, __u32 owner) {
    __u32 tid = owner_thread(owner);
    if (!tid)
        return;
    e->tid = tid;
    e->flags |= CC_FLAG_TASK;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Called with a trusted socket pointer: gives an accepted socket its cookie. */
static __always_inline void assign_cookie(struct sock *sk, struct tracked_sock *t) {
    if (!t->cookie)
        t->cookie = bpf_get_socket_cookie(sk);
}

/* A zeroed record in the ring buffer, or NULL (counted as lost) when it is full. */
static __always_inline struct cc_event *reserve_event(void) {
    struct cc_event *e = bpf_ringbuf_reserve(&events, CC_RESERVE(sizeof(*e)), 0);
    if (!e) {
        __sync_fetch_and_add(&lost_events, 1);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    return e;
}

static __always_inline void lost_record(__u64 id) {
    __u8 yes = 1;
    __sync_fetch_and_add(&lost_events, 1);
    bpf_map_update_elem(&incomplete, &id, &yes, BPF_ANY);
}

/* A change record: the first CC_CHANGE_BYTES of a struct cc_event, each of them written. */
static __always_inline void emit_flags(struct sock *sk, const struct tracked_sock *t, __u8 kind,
                                       __u8 old_state, __u8 new_state, __u64 aux, __u32 flags) {
    struct cc_event *e = bpf_ringbuf_reserve(&events, CC_RESERVE(CC_CHANGE_BYTES), 0);
    if (!e) {
        lost_record(t->id);
        return;
    }
    __u32 tid = owner_thread(t->tgid);
    e->time_ns = bpf_ktime_get_ns();
    e->id = t->id;
    e->cookie = t->cookie;
    e->aux = aux;
    e->tgid = t->tgid;
    e->tid = tid;
    e->kind = kind;
    e->family = 0;
    e->old_state = old_state;
    e->new_state = new_state;
    e->local_port = sk->__sk_common.skc_num;
    e->remote_port = 0;
    e->flags = tid ? flags | CC_FLAG_TASK : flags;
    e->sk_err = sk->sk_err;
    bpf_ringbuf_submit(e, wakeup_flags());
}

static __always_inline void emit(struct sock *sk, const struct tracked_sock *t, __u8 kind,
                                 __u8 old_state, __u8 new_state, __u64 aux) {
    emit_flags(sk, t, kind, old_state, new_state, aux, 0);
}

/* A tracked socket connect()ing again (after a failed connect, or connect(AF_UNSPEC)) may go to
 * another peer: its STATE record is a whole one, endpoints and thread's name included. */
static __always_inline void emit_reconnect(struct sock *sk, const struct tracked_sock *t,
                                           __u8 old_state) {
    struct cc_event *e = bpf_ringbuf_reserve(&events, CC_RESERVE(sizeof(*e)), 0);
    if (!e) {
        lost_record(t->id);
        return;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->time_ns = bpf_ktime_get_ns();
    e->id = t->id;
    e->cookie = t->cookie;
    e->tgid = t->tgid;
    e->kind = CC_EV_STATE;
    e->old_state = old_state;
    e->new_state = TCP_SYN_SENT;
    e->sk_err = sk->sk_err;
    fill_endpoints(e, sk);
    fill_task(e, t->tgid);
    bpf_ringbuf_submit(e, wakeup_flags());
}

/* Threads of one interpreter looked at before giving up on finding the current one. */
#define CC_PY_THREADS 256

static __always_inline __u64 read_user_u64(__u64 addr, long *err) {
    __u64 value = 0;
    *err = bpf_probe_read_user(&value, sizeof(value), (const void *)addr);
    return value;
}

/* A word of a frame copied into words[], at a byte offset user space gave. */
static __always_inline __u64 frame_field(const __u64 *words, __u32 offset) {
    /* The verifier bounds the read by the largest offset, not by offset / 8. */
    if (offset > CC_PY_FRAME_BYTES - 8)
        return 0;
    return words[offset / 8] >> ((offset % 8) * 8);
}

/* The calling thread's CPython frames. Its thread state is found by its kernel thread id, not as
 * the holder of the GIL: connect() releases the GIL around the system call. */
static __always_inline void read_python_frames(struct cc_open_event *e, __u32 tgid) {
    e->py_status = CC_PY_NONE;
    e->py_frames = 0;
    e->py_pad = 0;
    e->py_entry = 0;
    e->py_tstate = 0;
    if (!(e->base.flags & CC_FLAG_TASK))
        return;
    const struct cc_python_target *py = bpf_map_lookup_elem(&python_targets, &tgid);
    if (!py)
        return;
    __u32 tid = e->base.tid;
    long err = 0;
    __u64 interp = read_user_u64(py->runtime + py->interpreters_head, &err);
    __u64 tstate = err == 0 && interp ? read_user_u64(interp + py->threads_head, &err) : 0;
    if (err != 0) {
        e->py_status = CC_PY_THREADS_FAULT;
        return;
    }
    __u64 found = 0;
    for (int i = 0; i < CC_PY_THREADS && tstate; i++) {
        __u64 native_id = read_user_u64(tstate + py->thread_native_id, &err);
        if (err != 0)
            break;
        if ((__u32)native_id == tid) {
            found = tstate;
            break;
        }
        tstate = read_user_u64(tstate + py->thread_next, &err);
        if (err != 0)
            break;
    }
    if (err != 0) {
        e->py_status = CC_PY_THREADS_FAULT;
        return;
    }
    if (!found) {
        e->py_status = CC_PY_NO_THREAD;
        return;
    }
    e->py_tstate = found;
    __u64 cframe = read_user_u64(found + py->thread_cframe, &err);
    __u64 frame = err == 0 && cframe ? read_user_u64(cframe + py->cframe_current, &err) : 0;
    if (err != 0) {
        e->py_status = CC_PY_FRAME_FAULT;
        return;
    }
    __u64 words[CC_PY_FRAME_BYTES / 8];
    e->py_status = CC_PY_OK;
    for (int i = 0; i < CC_PY_FRAMES; i++) {
        if (!frame)
            return;
        if (bpf_probe_read_user(words, sizeof(words), (const void *)frame) != 0) {
            e->py_status = CC_PY_FRAME_FAULT;
            return;
        }
        e->py_code[i] = frame_field(words, py->frame_code);
        e->py_instr[i] = frame_field(words, py->frame_instr);
        if (frame_field(words, py->frame_is_entry) & 0xff)
            e->py_entry |= 1U << i;
        e->py_frames = i + 1;
        frame = frame_field(words, py->frame_previous);
    }
    if (frame)
        e->py_status = CC_PY_TRUNCATED;
}

/* The opened record's fields but the stack. Every byte the decoder reads is written here or by
 * the caller: zeroing the whole record cost more than filling it. */
static __always_inline void fill_opened(struct cc_event *e, struct sock *sk,
                                        const struct tracked_sock *t, __u8 state, __u32 flags) {
    e->time_ns = t->last_data_ns;
    e->id = t->id;
    e->cookie = t->cookie;
    e->tgid = t->tgid;
    e->tid = 0;
    e->kind = CC_EV_OPENED;
    e->old_state = 0;
    e->new_state = state;
    e->flags = flags;
    e->sk_err = 0;
    __builtin_memset(e->local_addr, 0, sizeof(e->local_addr));
    __builtin_memset(e->remote_addr, 0, sizeof(e->remote_addr));
    fill_endpoints(e, sk);
    fill_task(e, t->tgid);
}

/* The mapping the user stack pointer is in (bpf_find_vma's callback): frame pointers and copies
 * are read only within it. */
struct stack_span {
    __u64 start;
    __u64 end;
};

static long stack_span_of(struct task_struct *task, struct vm_area_struct *vma, void *data) {
    struct stack_span *span = data;
    span->start = vma->vm_start;
    span->end = vma->vm_end;
    return 0;
}

/* The mapping each thread's stack pointer was last found in. bpf_find_vma takes the mmap lock
 * and walks the mapping tree, which cost more than the rest of a connect's record; a thread's
 * stack stays in its mapping, so it is looked up again only when the stack pointer is outside
 * the one kept (a main thread's stack grown down, a coroutine's stack elsewhere), or after a
 * read within the kept one failed: its mapping changed (unmapped in part, or after execve). */
struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct stack_span);
} stack_spans SEC(".maps");

/* Fills span; returns the kept one it came from, NULL when it was looked up just now. */
static __always_inline struct stack_span *find_stack_span(struct task_struct *task, __u64 sp,
                                                          struct stack_span *span) {
    struct stack_span *kept =
        bpf_task_storage_get(&stack_spans, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (kept && sp >= kept->start && sp < kept->end) {
        *span = *kept;
        return kept;
    }
    bpf_find_vma(task, sp, stack_span_of, span, 0);
    if (kept && span->end)
        *kept = *span;
    return 0;
}

/* The user stack as the frame pointers chain it, innermost first: the pc, then each frame's
 * return address. The kernel's own walk (bpf_get_stack) follows the chain until a read fails,
 * and every chain ends in a frame pointer that is not one (0, or whatever a function without
 * frame pointers left in the register): a page fault per connection, which under a hypervisor
 * that shadows page tables costs several microseconds. This walk reads only within the stack's
 * mapping and only upwards, so it ends without touching memory that is not there. */
static __always_inline __s32 walk_frame_pointers(__u64 *stack, __u64 ip, __u64 fp,
                                                 const struct stack_span *span, bool *failed) {
    stack[0] = ip;
    __s32 frames = 1;
    for (int i = 1; i < CC_STACK_FRAMES; i++) {
        if (fp < span->start || fp + 16 > span->end || (fp & 7))
            break;
        __u64 frame[2]; /* the caller's frame pointer, the return address */
        if (bpf_probe_read_user(frame, sizeof(frame), (const void *)fp) != 0) {
            *failed = true;
            break;
        }
        if (!frame[1])
            break;
        stack[i] = frame[1];
        frames = i + 1;
        if (frame[0] <= fp) /* a chain only goes up the stack */
            break;
        fp = frame[0];
    }
    return frames * (__s32)sizeof(__u64);
}

/* stack[] as the opened record's stack_size counts it: bytes filled, or a negative errno. Where
 * the stack's mapping is unknown (bpf_find_vma failed: its lock was busy), the kernel walks. */
static __always_inline __s32 user_stack(void *ctx, __u64 *stack, __u64 ip, __u64 fp,
                                        const struct stack_span *span, bool *failed) {
    if (span->end)
        return walk_frame_pointers(stack, ip, fp, span, failed);
    return bpf_get_stack(ctx, stack, CC_STACK_FRAMES * sizeof(__u64), BPF_F_USER_STACK);
}

/* The user stack (frame pointers) and the bytes at the stack pointer. */
static __always_inline void fill_stack(void *ctx, struct cc_open_event *e, struct pt_regs *regs,
                                       const struct stack_span *span, bool *failed) {
    __u64 sp = PT_REGS_SP(regs);
    e->base.aux = sp;
    e->stack_size = user_stack(ctx, e->stack, PT_REGS_IP(regs), PT_REGS_FP(regs), span, failed);
    long err = bpf_probe_read_user(e->stack_bytes, sizeof(e->stack_bytes), (const void *)sp);
    e->stack_bytes_size = err == 0 ? (__s32)sizeof(e->stack_bytes) : (__s32)err;
}

/* Copies the user stack from sp up, within its mapping (or, where that is unknown, up to the
 * environment strings, where the main thread's stack ends). On the main thread the frames end
 * below the argument and environment strings (and the pointer arrays to them), which the unwinder
 * never needs: the copy stops there, a kilobyte or two instead of 8 KiB for a shallow stack.
 * (Another thread's stack is a mapping of its own, which the strings are not in.) A page of the
 * stack that is not resident (paged out while cold) fails the whole read: the kilobyte nearest
 * the stack pointer, where the innermost frames are, is read again on its own. */
static __always_inline void copy_stack(struct cc_open_copy_event *c, struct task_struct *task,
                                       __u64 sp, const struct stack_span *span, bool *failed) {
    __u64 top = span->end ? span->end : BPF_CORE_READ(task, mm, env_end);
    __u64 strings = BPF_CORE_READ(task, mm, arg_start);
    if (strings > sp && strings < top)
        top = strings;
    __u64 size = CC_STACK_COPY_BYTES;
    if (top > sp && top - sp < size)
        size = top - sp;
    if (size > CC_STACK_COPY_BYTES)
        size = CC_STACK_COPY_BYTES;
    long err = bpf_probe_read_user(c->copy, size, (const void *)sp);
    if (err != 0)
        *failed = true;
    if (err != 0 && size > 1024) {
        size = 1024;
        err = bpf_probe_read_user(c->copy, size, (const void *)sp);
    }
    c->copy_size = err == 0 ? (__s32)size : (__s32)err;
}

/* Registers a socket the current (target) thread just opened and reports it with its user stack:
 * the frame-pointer walk, and for a target that asked for it (CC_TARGET_COPY_STACK) the registers
 * and a copy of the stack for unwinding from the tables. */
/* `cookie` is 0 where sk is not a trusted pointer and the socket has none yet. */
static __always_inline void open_socket(void *ctx, struct sock *sk, __u64 cookie, __u32 tgid,
                                        __u32 target, __u8 state, __u32 flags) {
    struct tracked_sock t = {};
    t.cookie = cookie;
    t.last_data_ns = bpf_ktime_get_ns();
    t.tgid = tgid;
    t.id = __sync_fetch_and_add(&next_id, 1) + 1;
    __u64 key = (__u64)sk;
    if (bpf_map_update_elem(&tracked, &key, &t, BPF_NOEXIST) != 0) {
        /* Already tracked (a second connect() on a socket whose first one failed) is not a new
         * connection; anything else is a full map. */
        if (!bpf_map_lookup_elem(&tracked, &key))
            __sync_fetch_and_add(&untracked_connections, 1);
        return;
    }

    struct task_struct *task = bpf_get_current_task_btf();
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    struct stack_span span = {};
    struct stack_span *kept = find_stack_span(task, PT_REGS_SP(regs), &span);
    bool failed = false;
#if defined(__TARGET_ARCH_x86)
    /* The registers unwinding needs are named per architecture: x86-64 only for now. */
    if (target & CC_TARGET_COPY_STACK) {
        struct cc_open_copy_event *c = bpf_ringbuf_reserve(&events, CC_RESERVE(sizeof(*c)), 0);
        if (!c) {
            lost_record(t.id);
            return;
        }
        fill_opened(&c->open.base, sk, &t, state, flags | CC_FLAG_STACK_COPY);
        c->regs.ip = regs->ip;
        c->regs.sp = regs->sp;
        c->regs.bp = regs->bp;
        c->regs.bx = regs->bx;
        c->regs.r12 = regs->r12;
        c->regs.r13 = regs->r13;
        c->regs.r14 = regs->r14;
        c->regs.r15 = regs->r15;
        c->pad = 0;
        c->open.base.aux = c->regs.sp;
        c->open.stack_size = user_stack(ctx, c->open.stack, c->regs.ip, c->regs.bp, &span, &failed);
        c->open.stack_bytes_size = 0; /* the copy holds these bytes */
        copy_stack(c, task, c->regs.sp, &span, &failed);
        read_python_frames(&c->open, tgid);
        bpf_ringbuf_submit(c, wakeup_flags());
        if (kept && failed)
            kept->end = 0;
        return;
    }
#endif
    struct cc_open_event *e = bpf_ringbuf_reserve(&events, CC_RESERVE(sizeof(*e)), 0);
    if (!e) {
        lost_record(t.id);
        return;
    }
    fill_opened(&e->base, sk, &t, state, flags);
    fill_stack(ctx, e, regs, &span, &failed);
    read_python_frames(e, tgid);
    bpf_ringbuf_submit(e, wakeup_flags());
    if (kept && failed)
        kept->end = 0;
}

/* Wakes the reader at once: accept() is followed only from when user space attaches for it. */
static __always_inline void report_listen(struct sock *sk, __u32 tgid) {
    __sync_fetch_and_add(&listens, 1);
    struct cc_event *e = reserve_event();
    if (!e)
        return;
    e->time_ns = bpf_ktime_get_ns();
    e->tgid = tgid;
    e->kind = CC_EV_LISTEN;
    e->new_state = TCP_LISTEN;
    fill_endpoints(e, sk);
    fill_task(e, tgid);
    bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_set_state, struct sock *sk, int old_state, int new_state) {
    __u64 key = (__u64)sk;
    struct tracked_sock *t = bpf_map_lookup_elem(&tracked, &key);
    if (!t) {
        /* connect() moves the socket to SYN_SENT, listen() to LISTEN, in the calling thread. */
        if (new_state != TCP_SYN_SENT && new_state != TCP_LISTEN)
            return 0;
        if (sk->sk_protocol != IPPROTO_TCP)
            return 0;
        __u32 tgid = bpf_get_current_pid_tgid() >> 32;
        __u32 *target = target_flags(tgid);
        if (!target)
            return 0;
        if (new_state == TCP_SYN_SENT)
            open_socket(ctx, sk, bpf_get_socket_cookie(sk), tgid, *target, TCP_SYN_SENT, 0);
        else
            report_listen(sk, tgid);
        return 0;
    }
    assign_cookie(sk, t);
    /* A socket the process already closed (orphaned) that reaches CLOSE is destroyed at once,
     * in the same call (tcp_done(), __tcp_close()): one record says both, and on_destroy finds
     * nothing to do. */
    if (new_state == TCP_CLOSE && (sk->__sk_common.skc_flags & (1UL << SOCK_DEAD))) {
        emit_flags(sk, t, CC_EV_STATE, (__u8)old_state, (__u8)new_state, 0, CC_FLAG_DESTROYED);
        bpf_map_delete_elem(&tracked, &key);
        return 0;
    }
    if (new_state == TCP_SYN_SENT)
        emit_reconnect(sk, t, (__u8)old_state);
    else
        emit(sk, t, CC_EV_STATE, (__u8)old_state, (__u8)new_state, 0);
    return 0;
}

/* accept() and accept4() return an fd; its socket is the child the listener created in softirq.
 * fexit on inet_csk_accept does not load on every kernel (no ftrace trampolines), and the
 * per-syscall tracepoints need tracefs mounted: the raw sys_exit tracepoint needs neither, and the
 * process filter is its first test. While any program is attached to it, every system call on
 * the host takes the kernel's slower tracing path, so user space attaches this one only when a
 * target listens. */
#if defined(__TARGET_ARCH_x86)
#define CC_NR_ACCEPT 43
#define CC_NR_ACCEPT4 288
#define CC_SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#elif defined(__TARGET_ARCH_arm64)
#define CC_NR_ACCEPT 202
#define CC_NR_ACCEPT4 242
#define CC_SYSCALL_NR(regs) BPF_CORE_READ((struct user_pt_regs *)regs, syscallno)
#else
#error "the accept syscall numbers of this architecture are missing"
#endif

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret) {
    if (ret < 0)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u32 *target = target_flags(tgid);
    if (!target)
        return 0;
    __u32 target_mode = *target;
    long nr = CC_SYSCALL_NR(regs);
    if (nr != CC_NR_ACCEPT && nr != CC_NR_ACCEPT4)
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
    struct file *file = 0;
    if (bpf_probe_read_kernel(&file, sizeof(file), &fds[ret]) != 0 || !file)
        return 0;
    struct socket *sock = BPF_CORE_READ(file, private_data);
    if (!sock)
        return 0;
    struct sock *sk =
        bpf_rdonly_cast(BPF_CORE_READ(sock, sk), bpf_core_type_id_kernel(struct sock));
    if (sk && sk->sk_protocol == IPPROTO_TCP)
        open_socket(ctx, sk, sk->__sk_common.skc_cookie.counter, tgid, target_mode,
                    sk->__sk_common.skc_state, CC_FLAG_ACCEPTED);
    return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk) {
    __u64 key = (__u64)sk;
    struct tracked_sock *t = bpf_map_lookup_elem(&tracked, &key);
    if (!t)
        return 0;
    assign_cookie(sk, t);
    emit(sk, t, CC_EV_RESET, 0, sk->__sk_common.skc_state, 0);
    return 0;
}

/* Loaded only when user space asks for resumed-data events: it runs for every packet any socket
 * on the host receives. */
SEC("tp_btf/sk_data_ready")
int BPF_PROG(on_data_ready, struct sock *sk) {
    __u64 key = (__u64)sk;
    struct tracked_sock *t = bpf_map_lookup_elem(&tracked, &key);
    if (!t)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    __u64 silent = now - t->last_data_ns;
    t->last_data_ns = now;
    if (silence_ns && silent >= silence_ns) {
        assign_cookie(sk, t);
        emit(sk, t, CC_EV_RESUMED, 0, sk->__sk_common.skc_state, silent);
    }
    return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(on_destroy, struct sock *sk) {
    __u64 key = (__u64)sk;
    struct tracked_sock *t = bpf_map_lookup_elem(&tracked, &key);
    if (!t)
        return 0;
    assign_cookie(sk, t);
    emit(sk, t, CC_EV_DESTROYED, 0, sk->__sk_common.skc_state, 0);
    bpf_map_delete_elem(&tracked, &key);
    return 0;
}

/* The whole process is exiting: what it still holds is closed by the kernel from here on. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_process_exit, struct task_struct *task) {
    __u32 tgid = BPF_CORE_READ(task, tgid);
    if (!is_target(tgid) || BPF_CORE_READ(task, signal, live.counter) != 0)
        return 0;
    struct cc_event *e = reserve_event();
    if (!e)
        return 0;
    e->time_ns = bpf_ktime_get_ns();
    e->tgid = tgid;
    e->tid = BPF_CORE_READ(task, pid);
    e->kind = CC_EV_EXIT;
    e->flags = CC_FLAG_TASK;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, wakeup_flags());
    return 0;
}
