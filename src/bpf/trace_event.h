/* The records trace.bpf.c writes to its ring buffer, shared with the loader
 * (src/core/trace/probe.cpp) and the decoder (src/core/trace/decode.cpp). Plain C with fixed-size
 * fields: the BPF side sees these through vmlinux.h, user space through <linux/types.h>. */
#ifndef CONNCHECK_TRACE_EVENT_H
#define CONNCHECK_TRACE_EVENT_H

#define CC_STACK_FRAMES 32
/* Raw bytes from the user stack pointer at the syscall: enough for libc's wrapper frame, so the
 * loader can recover the caller's return address from the unwind tables (the wrapper itself
 * keeps no frame pointer). */
#define CC_STACK_BYTES 128
/* The user stack copied for a target without frame pointers, unwound in user space from its
 * unwind tables (what `perf --call-graph dwarf` copies by default). */
#define CC_STACK_COPY_BYTES 8192

/* The value of the `targets` map: what to record for a target process. */
enum cc_target_flags {
    CC_TARGET_COPY_STACK = 1, /* copy the user stack and registers at connect() */
};

enum cc_event_kind {
    CC_EV_OPENED = 1,    /* connect() reached SYN_SENT, or accept() returned the socket */
    CC_EV_STATE = 2,     /* any TCP state change of a tracked socket */
    CC_EV_RESET = 3,     /* a RST arrived on a tracked socket */
    CC_EV_RESUMED = 4,   /* data arrived after at least silence_ns without any */
    CC_EV_DESTROYED = 5, /* the kernel freed the socket (tcp_destroy_sock) */
    CC_EV_EXIT = 6,      /* the last thread of a target process is exiting */
    CC_EV_LISTEN = 7,    /* a target process started listening: user space follows accepts */
};

enum cc_event_flags {
    CC_FLAG_ACCEPTED = 1,   /* opened by accept() */
    CC_FLAG_TASK = 2,       /* a thread of the target process was running (tid, comm are its) */
    CC_FLAG_STACK_COPY = 4, /* OPENED: the record is a struct cc_open_copy_event */
    CC_FLAG_DESTROYED = 8,  /* STATE: the kernel destroyed the socket right after (an orphan) */
};

/* A record of the ring buffer. Its first CC_CHANGE_BYTES are the whole of a record that reports
 * a change of a connection its opened record already described (STATE, RESET, RESUMED,
 * DESTROYED): where the connection runs and the thread's name are not repeated there. 56 bytes
 * and the ring's 8-byte header fill one cache line, and each line the kernel writes is a cache
 * miss once the ring has gone round: half the lines of the whole record. OPENED, LISTEN and EXIT
 * records carry all of it, and so does the STATE record of a traced socket's new connect(). */
struct cc_event {
    __u64 time_ns; /* CLOCK_MONOTONIC */
    __u64 id;      /* numbers the connections of one trace from 1 */
    __u64 cookie;  /* the socket cookie, 0 while the kernel has assigned none */
    __u64 aux;     /* RESUMED: ns of silence; OPENED: user stack pointer */
    __u32 tgid;
    __u32 tid; /* the running thread, when it is the owner's (CC_FLAG_TASK) */
    __u8 kind;
    __u8 family; /* 0 in a change record */
    __u8 old_state;
    __u8 new_state;
    __u16 local_port; /* host byte order; 0 at SYN_SENT, before connect() chose one */
    __u16 remote_port;
    __u32 flags;
    __s32 sk_err;
    /* OPENED, LISTEN and EXIT records only. */
    __u8 local_addr[16]; /* IPv4 in the first 4 bytes */
    __u8 remote_addr[16];
    char comm[16];
};

#define CC_CHANGE_BYTES 56 /* offsetof(struct cc_event, local_addr) */

/* Bytes to reserve for a record of `bytes`: the ring adds an 8-byte header to each, and a
 * multiple of 64 with it keeps every record starting on a cache line (a change record, one line).
 * The padding is not written. */
#define CC_RESERVE(bytes) ((((bytes) + 8 + 63) / 64) * 64 - 8)

/* CPython's own frames, innermost first, read from the interpreter's frame chain. */
#define CC_PY_FRAMES 32

enum cc_python_status {
    CC_PY_NONE = 0,          /* not a CPython target the program knows the offsets of */
    CC_PY_OK = 1,            /* py_frames frames, the whole chain */
    CC_PY_TRUNCATED = 2,     /* the chain goes on beyond CC_PY_FRAMES */
    CC_PY_NO_THREAD = 3,     /* no thread state with this thread's id (not a Python thread) */
    CC_PY_THREADS_FAULT = 4, /* reading the interpreter's thread list failed */
    CC_PY_FRAME_FAULT = 5,   /* reading a frame failed: py_frames were read before it */
};

/* What every opened record fills comes first, then the arrays, filled only as far as they go: the
 * kernel writes the cache lines it touches, and each is a miss once the ring has gone round. */
struct cc_open_event {
    struct cc_event base;
    __s32 stack_size;       /* bytes of stack[] filled, or a negative errno */
    __s32 stack_bytes_size; /* bytes of stack_bytes[] filled, or a negative errno */
    __u8 py_status;         /* enum cc_python_status */
    __u8 py_frames;
    __u16 py_pad;
    __u32 py_entry;  /* bit i: frame i is where a call of the evaluation loop began */
    __u64 py_tstate; /* the thread's PyThreadState */
    __u8 stack_bytes[CC_STACK_BYTES];
    __u64 stack[CC_STACK_FRAMES];
    __u64 py_code[CC_PY_FRAMES];  /* each frame's code object */
    __u64 py_instr[CC_PY_FRAMES]; /* each frame's last instruction (prev_instr) */
};

/* How to find a CPython thread's frames, per target process (map python_targets, by tgid):
 * the address of _PyRuntime and the byte offsets of the fields on the way, which differ between
 * minor versions. */
#define CC_PY_FRAME_BYTES 80 /* read of each frame: the fields below lie within */
struct cc_python_target {
    __u64 runtime;
    __u16 interpreters_head; /* _PyRuntimeState.interpreters.head */
    __u16 threads_head;      /* PyInterpreterState.threads.head */
    __u16 thread_next;       /* PyThreadState.next */
    __u16 thread_native_id;  /* PyThreadState.native_thread_id */
    __u16 thread_cframe;     /* PyThreadState.cframe */
    __u16 cframe_current;    /* _PyCFrame.current_frame */
    __u16 frame_code;        /* _PyInterpreterFrame.f_code */
    __u16 frame_previous;    /* _PyInterpreterFrame.previous */
    __u16 frame_instr;       /* _PyInterpreterFrame.prev_instr */
    __u16 frame_is_entry;    /* _PyInterpreterFrame.is_entry (one byte) */
    __u16 pad[2];
};

/* The user registers at the system call that unwinding from the tables needs: the pc, the stack
 * and frame pointers, and the other registers the x86-64 ABI has callees preserve. */
struct cc_user_regs {
    __u64 ip;
    __u64 sp;
    __u64 bp;
    __u64 bx;
    __u64 r12;
    __u64 r13;
    __u64 r14;
    __u64 r15;
};

/* An opened record with the user stack copied (CC_FLAG_STACK_COPY): the frame-pointer walk, and
 * what the unwind tables need where it stops. */
struct cc_open_copy_event {
    struct cc_open_event open;
    struct cc_user_regs regs;
    __s32 copy_size; /* bytes of copy[] filled from regs.sp up, or a negative errno */
    __u32 pad;
    __u8 copy[CC_STACK_COPY_BYTES];
};

/* The value of the `tracked` map, keyed by the socket's address. */
struct tracked_sock {
    __u64 id;           /* this trace's number for the connection: cookies may not exist yet */
    __u64 cookie;       /* 0 until a hook with a trusted socket pointer assigns it */
    __u64 last_data_ns; /* the open time until data arrives */
    __u32 tgid;
    __u32 pad;
};

#endif
