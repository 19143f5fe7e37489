// The unwind tables replayed on a stack and registers captured from this very process, as the
// kernel records them at connect() for a target without frame pointers: the symbolizer names
// every caller, and a failure here is the unwinder's, not the eBPF program's.
#include "conncheck/trace/frame.hpp"
#include "conncheck/trace/symbolize.hpp"

#include <algorithm>
#include <cstdio>
#include <doctest/doctest.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/uio.h>
#include <unistd.h>

using namespace conncheck::trace;

#if defined(__x86_64__)
namespace {

// The registers and the stack of this thread here, as the kernel records them at a system call.
__attribute__((noinline)) Event capture_stack() {
    UserRegisters r;
    asm volatile("lea 0(%%rip), %0\n\t"
                 "mov %%rsp, %1\n\t"
                 "mov %%rbp, %2\n\t"
                 "mov %%rbx, %3\n\t"
                 "mov %%r12, %4\n\t"
                 "mov %%r13, %5\n\t"
                 "mov %%r14, %6\n\t"
                 "mov %%r15, %7\n\t"
                 : "=&r"(r.ip), "=&r"(r.sp), "=&r"(r.bp), "=&r"(r.bx), "=&r"(r.r12), "=&r"(r.r13),
                   "=&r"(r.r14), "=&r"(r.r15));
    Event e;
    e.kind = EventKind::opened;
    e.pid = ::getpid();
    e.tid = ::gettid();
    e.registers = r;
    e.stack = {r.ip}; // the frame-pointer walk found nothing beyond the first frame
    e.stack_pointer = r.sp;
    // Up to 8 KiB from the stack pointer, within the stack's mapping.
    std::ifstream maps("/proc/self/maps");
    std::string line;
    std::uint64_t end = r.sp;
    while (std::getline(maps, line)) {
        std::uint64_t lo = 0;
        std::uint64_t hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2 && lo <= r.sp && r.sp < hi)
            end = hi;
    }
    const std::size_t size = std::min<std::uint64_t>(8192, end - r.sp);
    e.stack_bytes.resize(size);
    // Through the kernel, as the eBPF program copies it: a plain memcpy would cross other frames'
    // AddressSanitizer redzones.
    iovec local{e.stack_bytes.data(), size};
    iovec remote{reinterpret_cast<void*>(r.sp), size};
    const ssize_t copied = ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
    e.stack_bytes.resize(copied > 0 ? static_cast<std::size_t>(copied) : 0);
    return e;
}

__attribute__((noinline)) Event named_caller() {
    Event e = capture_stack();
    asm volatile("" ::: "memory"); // not a tail call: this frame stays on the stack
    return e;
}

} // namespace

TEST_CASE("unwind tables: a captured stack and registers replayed name every caller") {
    const Event e = named_caller();
    Symbolizer symbolizer;
    const CallSite site = symbolizer.call_site(e);
    std::ostringstream seen;
    for (const auto& f : site.frames)
        seen << frame_text(f) << " | ";
    INFO("frames: " << seen.str() << " stops: " << site.stops);
    REQUIRE(site.frames.size() >= 3);
    CHECK(site.frames[0].function.find("capture_stack") != std::string::npos);
    CHECK(site.frames[0].trust == FrameTrust::exact);
    CHECK(site.frames[1].function.find("named_caller") != std::string::npos);
    CHECK(site.frames[1].trust == FrameTrust::unwound);
    CHECK(site.frames[2].function.find("DOCTEST_ANON_FUNC") != std::string::npos);
    CHECK(site.frames[1].file.ends_with("test_trace_unwind.cpp"));
}

TEST_CASE("unwind tables: a copy cut short says where the stack stops, never complete") {
    Event e = named_caller();
    e.stack_bytes.resize(16); // the caller's frame is beyond the copy
    Symbolizer symbolizer;
    const CallSite site = symbolizer.call_site(e);
    CHECK_FALSE(site.complete);
    CHECK_FALSE(site.stops.empty());
}
#endif
