// `conncheck prove [--duration 60s] [--cmd 'COMMAND {url}'] [--json] [--svg F] [--csv F]`: runs
// the leaky and the fixed reference collector (and the user's command) side by side, each
// against its own exchange simulator under the same faults, samples their sockets and says
// which of them leaks.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace conncheck::cli {

struct ProveOptions {
    std::string duration = "60s";
    std::string fault_after = "50ms";
    std::string faults = "silent,fin,close,rst";
    std::string interval = "250ms";
    unsigned rate = 200;
    std::string reconnect_delay = "20ms";
    std::string cmd;
    bool json = false;
    std::string svg;
    std::string csv;
};

void setup_prove(CLI::App& app, ProveOptions& options);
int run_prove(const ProveOptions& options);

} // namespace conncheck::cli
