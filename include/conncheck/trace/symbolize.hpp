// Names the code behind an opened event's user stack: function, and file:line where debug
// information exists (elfutils libdwfl, reading the live process's mappings). The stack from the
// kernel follows frame pointers; the unwind tables say where that walk can be trusted, and the
// call site stops there with the reason rather than showing a misleading frame.
#pragma once

#include "conncheck/trace/event.hpp"
#include "conncheck/trace/ledger.hpp"

#include <memory>
#include <sys/types.h>

namespace conncheck::trace {

class Symbolizer {
public:
    Symbolizer();
    ~Symbolizer();
    Symbolizer(const Symbolizer&) = delete;
    Symbolizer& operator=(const Symbolizer&) = delete;

    // The call site of an opened event; call it while the process still runs (its mappings are
    // read from /proc). A process that is gone gives raw addresses.
    [[nodiscard]] CallSite call_site(const Event& opened);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace conncheck::trace
