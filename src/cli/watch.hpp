// `conncheck watch --pid PID [--interval 1s] [--window 10m] [--json]`: the live view. On a
// terminal a full screen redrawn every interval; otherwise one line (or JSON object) per interval.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace conncheck::cli {

struct WatchOptions {
    SelectorOptions selector;
    SourceOptions source;
    std::string interval = "1s";
    std::string window = "10m";
    bool json = false;
    bool no_color = false;
    bool no_events = false; // poll only, even where trace's connection events are available
    std::uint32_t idle_seconds = 60;
    std::uint64_t count = 0; // stop after this many ticks, 0 never
};

void setup_watch(CLI::App& app, WatchOptions& options);
int run_watch(const WatchOptions& options);

} // namespace conncheck::cli
