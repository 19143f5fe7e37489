// The one-shot audit: `conncheck [--pid PID ...|--pidfile F|--name NAME] [--json]`.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>

namespace conncheck::cli {

struct AuditOptions {
    SelectorOptions selector;
    SourceOptions source;
    bool json = false;
    bool no_color = false;
    std::uint32_t idle_seconds = 60;
};

void setup_audit(CLI::App& app, AuditOptions& options);
int run_audit(const AuditOptions& options);

} // namespace conncheck::cli
