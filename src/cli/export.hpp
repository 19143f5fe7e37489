// `conncheck export`: the selected processes as Prometheus metrics, on stdout or as a textfile
// for node_exporter's textfile collector.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace conncheck::cli {

struct ExportOptions {
    SelectorOptions selector;
    SourceOptions source;
    std::string textfile_dir; // empty: print to stdout
    std::string job;          // names the file conncheck_JOB.prom and adds target="JOB"
    std::uint32_t idle_seconds = 60;
};

void setup_export(CLI::App& app, ExportOptions& options);
// The exposition is written even when the processes cannot be scanned (conncheck_up 0); the
// exit code then says why, as for the audit.
int run_export(const ExportOptions& options);

} // namespace conncheck::cli
