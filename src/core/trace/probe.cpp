#include "conncheck/trace/probe.hpp"

#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/trace/python.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <span>
#include <sys/syscall.h>
#include <unistd.h>

extern "C" {
#include "trace_event.h"
}
// bpftool embeds the whole eBPF object in one string literal, beyond what -Wpedantic accepts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#include "trace.skel.h"
#pragma GCC diagnostic pop

namespace conncheck::trace {

namespace {

// libbpf explains a failed load on its log callback; the last warning becomes the error's detail
// instead of going to stderr.
std::string g_last_libbpf_warning;

// libbpf passes its own printf format along.
__attribute__((format(printf, 2, 0))) int capture_libbpf(enum libbpf_print_level level,
                                                         const char* format, va_list args) {
    if (level != LIBBPF_WARN) return 0;
    char line[512];
    std::vsnprintf(line, sizeof line, format, args);
    g_last_libbpf_warning = line;
    while (!g_last_libbpf_warning.empty() && g_last_libbpf_warning.back() == '\n')
        g_last_libbpf_warning.pop_back();
    return 0;
}

} // namespace

std::string unavailable_reason() {
    if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        return "eBPF tracing needs the kernel's BTF type information, and "
               "/sys/kernel/btf/vmlinux is missing (a kernel built without CONFIG_DEBUG_INFO_BTF)";
    if (const auto lacking = privilege::missing(privilege::Access::ebpf_tracing); !lacking.empty())
        return fmt::format("eBPF tracing needs {} (or root)", fmt::join(lacking, " and "));
    return {};
}

struct Probe::Impl {
    trace_bpf* skel = nullptr;
    ring_buffer* events = nullptr;
    bpf_link* accepts = nullptr; // on_sys_exit, attached once a target listens
    const std::function<void(const Event&)>* sink = nullptr;
    std::size_t delivered = 0;
    ChangeCompleter completer{[procfs = proc::ProcFs()](pid_t pid, pid_t tid) {
        std::string name = procfs.read(pid, fmt::format("task/{}/comm", tid)).value_or("");
        if (!name.empty() && name.back() == '\n') name.pop_back();
        return name;
    }};

    ~Impl() {
        bpf_link__destroy(accepts);
        ring_buffer__free(events);
        trace_bpf__destroy(skel);
    }

    static int on_record(void* ctx, void* data, std::size_t size) {
        auto* self = static_cast<Impl*>(ctx);
        const auto record = std::span(static_cast<const std::byte*>(data), size);
        auto event = decode_event(record);
        if (!event || !self->sink) return 0;
        self->completer.complete(*event);
        (*self->sink)(*event);
        ++self->delivered;
        if (event->destroyed_after) {
            Event destroyed = *event;
            destroyed.kind = EventKind::destroyed;
            destroyed.old_state = TcpState::unknown;
            destroyed.destroyed_after = false;
            (*self->sink)(destroyed);
            ++self->delivered;
        }
        return 0;
    }
};

namespace {

[[noreturn]] void refused(const std::string& what, int err) {
    std::string detail = g_last_libbpf_warning.empty() ? std::strerror(err) : g_last_libbpf_warning;
    if (err == EPERM || err == EACCES)
        throw Error(Errc::source_unavailable,
                    fmt::format("the kernel refused to {} ({}); eBPF tracing {}", what, detail,
                                privilege::hint(privilege::Access::ebpf_tracing)));
    throw Error(Errc::source_unavailable, fmt::format("cannot {}: {}", what, detail));
}

} // namespace

Probe::Probe(const ProbeConfig& config) : impl_(std::make_unique<Impl>()) {
    if (const std::string reason = unavailable_reason(); !reason.empty())
        throw Error(Errc::source_unavailable, reason);
    libbpf_set_print(capture_libbpf);
    g_last_libbpf_warning.clear();

    impl_->skel = trace_bpf__open();
    if (!impl_->skel) refused("open the eBPF program", errno);
    impl_->skel->rodata->silence_ns = config.silence_ns;
    const std::uint32_t ring_bytes = config.copies_stacks ? 4U << 20 : 2U << 20;
    impl_->skel->rodata->wakeup_bytes = ring_bytes / 16;
    if (bpf_map__set_max_entries(impl_->skel->maps.events, ring_bytes) != 0)
        refused("size the ring buffer", errno);
    if (bpf_map__set_max_entries(impl_->skel->maps.tracked, config.max_connections) != 0)
        refused("size the connection map", errno);
    bpf_program__set_autoattach(impl_->skel->progs.on_sys_exit, false);
    bpf_program__set_autoload(impl_->skel->progs.on_data_ready, config.silence_ns != 0);
    if (const int err = trace_bpf__load(impl_->skel); err != 0)
        refused("load the eBPF program", -err);
    if (const int err = trace_bpf__attach(impl_->skel); err != 0)
        refused("attach the eBPF program", -err);
    impl_->events = ring_buffer__new(bpf_map__fd(impl_->skel->maps.events), Impl::on_record,
                                     impl_.get(), nullptr);
    if (!impl_->events) refused("open the event ring buffer", errno);
}

Probe::~Probe() = default;

static_assert(target_flag::copy_stack == CC_TARGET_COPY_STACK);

void Probe::add_target(pid_t pid, std::uint32_t flags) {
    const __u32 key = static_cast<__u32>(pid);
    const __u32 value = flags;
    if (bpf_map__update_elem(impl_->skel->maps.targets, &key, sizeof key, &value, sizeof value,
                             BPF_ANY) != 0)
        throw_errno(fmt::format("cannot trace process {}", pid), errno);
}

void Probe::add_python(pid_t pid, const python::Runtime& runtime) {
    if (!runtime.offsets) return;
    const python::Offsets& o = *runtime.offsets;
    for (const std::uint16_t field : {o.frame_code, o.frame_previous, o.frame_instr})
        if (field + 8 > CC_PY_FRAME_BYTES)
            throw Error(Errc::source_unavailable,
                        fmt::format("CPython {}.{}: a frame field lies beyond the bytes the eBPF "
                                    "program reads",
                                    o.major, o.minor));
    cc_python_target value{};
    value.runtime = runtime.runtime;
    value.interpreters_head = o.interpreters_head;
    value.threads_head = o.threads_head;
    value.thread_next = o.thread_next;
    value.thread_native_id = o.thread_native_id;
    value.thread_cframe = o.thread_cframe;
    value.cframe_current = o.cframe_current;
    value.frame_code = o.frame_code;
    value.frame_previous = o.frame_previous;
    value.frame_instr = o.frame_instr;
    value.frame_is_entry = o.frame_is_entry;
    const __u32 key = static_cast<__u32>(pid);
    if (bpf_map__update_elem(impl_->skel->maps.python_targets, &key, sizeof key, &value,
                             sizeof value, BPF_ANY) != 0)
        throw_errno(fmt::format("cannot follow the Python frames of process {}", pid), errno);
}

void Probe::follow_accepts() {
    if (impl_->accepts) return;
    impl_->accepts = bpf_program__attach(impl_->skel->progs.on_sys_exit);
    if (!impl_->accepts) refused("attach the eBPF program for accept()", errno);
}

bool Probe::follows_accepts() const {
    return impl_->accepts != nullptr;
}

int Probe::wait_fd() const {
    return ring_buffer__epoll_fd(impl_->events);
}

std::size_t Probe::drain(const std::function<void(const Event&)>& sink) {
    impl_->sink = &sink;
    impl_->delivered = 0;
    const int n = ring_buffer__consume(impl_->events);
    impl_->sink = nullptr;
    impl_->completer.forget_threads();
    if (n < 0) throw_errno("cannot read the event ring buffer", -n);
    if (impl_->skel->bss->listens != 0) follow_accepts();
    return impl_->delivered;
}

ProbeCounters Probe::counters() const {
    const volatile auto* bss = impl_->skel->bss;
    return {bss->untracked_connections, bss->lost_events, bss->next_id, bss->listens};
}

std::vector<std::uint64_t> Probe::incomplete_connections() const {
    std::vector<std::uint64_t> out;
    const int fd = bpf_map__fd(impl_->skel->maps.incomplete);
    __u64 key = 0;
    __u64* previous = nullptr;
    while (bpf_map_get_next_key(fd, previous, &key) == 0) {
        out.push_back(key);
        previous = &key;
    }
    return out;
}

bool Probe::follows_data() const {
    return impl_->skel->links.on_data_ready != nullptr;
}

} // namespace conncheck::trace
