// `conncheck trace --pid PID [--for DURATION] [--json]`: follows the life of every connection the
// process opens (eBPF), one line per event, and at the end (Ctrl-C, --for, or the process
// exiting) the ledger: the connections it still holds in a leak state, grouped by the code that
// opened them, and per peer its opens, closes, reconnects and TIME_WAIT.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace conncheck::cli {

struct TraceOptions {
    SelectorOptions selector;
    std::string for_duration; // empty: until Ctrl-C or the processes exit
    std::string silence = "10s";
    bool resumed = false;                   // report data arriving after `silence`
    std::string close_wait_min_age = "10s"; // younger CLOSE_WAIT is not closed yet, not leaked
    std::uint32_t max_connections = 65536;
    bool json = false;
};

void setup_trace(CLI::App& app, TraceOptions& options);
int run_trace(const TraceOptions& options);

} // namespace conncheck::cli
