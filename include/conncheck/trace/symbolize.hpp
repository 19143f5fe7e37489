// Names the code behind an opened event's user stack: function, and file:line where debug
// information exists (elfutils libdwfl, reading the live process's mappings). The stack from the
// kernel follows frame pointers; the unwind tables say where that walk can be trusted. Where it
// stops and the stack was copied, the tables (.eh_frame, .debug_frame) unwind the copy from the
// registers at the system call, as `perf --call-graph dwarf` does. A call site is complete only
// when it reaches the thread's start; otherwise it says where and why it stops.
#pragma once

#include "conncheck/trace/event.hpp"
#include "conncheck/trace/ledger.hpp"
#include "conncheck/trace/python.hpp"

#include <memory>
#include <sys/types.h>
#include <vector>

namespace conncheck::trace {

// Whether the call sites of `pid` need its stack copied at each connect, to be unwound from the
// tables: its executable keeps no frame pointers. Not for Go (frame pointers always) nor the
// python and node executables (their call sites are the interpreter's own frames, or none).
[[nodiscard]] bool needs_stack_copy(pid_t pid);

class Symbolizer {
public:
    Symbolizer();
    ~Symbolizer();
    Symbolizer(const Symbolizer&) = delete;
    Symbolizer& operator=(const Symbolizer&) = delete;

    // Reads the mappings of `pid` and every module's symbol, unwind and line tables now, before
    // its first connection: read at the first call site instead, they held up the reader for
    // about a tenth of a second, long enough for a 1 MiB ring buffer to overflow at 10,000
    // connections/s.
    void prepare(pid_t pid);
    // The call site of an opened event; call it while the process still runs (its mappings are
    // read from /proc). A process that is gone gives raw addresses.
    [[nodiscard]] CallSite call_site(const Event& opened);
    // The processes whose frame-pointer walk stopped at a function without a frame pointer,
    // their stacks not copied, since the last call: copying their stacks from now on
    // (needs_stack_copy()) names the callers.
    [[nodiscard]] std::vector<pid_t> take_stack_copy_wanted();
    // The CPython interpreter of `pid` (python::find_runtime(), looked up once per process), or
    // nullptr. Call sites of a process with one have its Python frames in the place of the
    // evaluation loop, or a note saying why not.
    [[nodiscard]] const python::Runtime* python_runtime(pid_t pid);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace conncheck::trace
