// Prometheus text exposition (format 0.0.4) of process reports, for node_exporter's textfile
// collector or anything that reads the format. Labels stay few: process, state, kind, and
// target when the caller names one. No ports, no peers: they would make a series per connection.
// No pid either: a restart would start new series; the pid is a value (conncheck_process_pid).
#pragma once

#include "conncheck/analysis.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <vector>

namespace conncheck::prometheus {

struct RenderOptions {
    // false: the selected processes could not be scanned; only conncheck_up 0 and the run time
    // are written.
    bool up = true;
    std::chrono::system_clock::time_point run_at{};
    // Selected processes whose sockets could not be read (no series for them).
    std::uint64_t unreadable_processes = 0;
    // Added as target="..." to every series when not empty, so that several exports can share a
    // textfile directory without colliding.
    std::string target;
    // The name each process was selected by (select::Selected), its process label; a process
    // not in it is labelled by its comm. Labels stay unique: "collector", "collector_2".
    std::unordered_map<pid_t, std::string> selected_as;
};

// Every metric family with HELP and TYPE lines, gauges only (each run is a fresh snapshot).
[[nodiscard]] std::string render(const std::vector<analysis::ProcessReport>& processes,
                                 const RenderOptions& options);

// Escapes a label value: backslash, double quote and newline, as the format requires.
[[nodiscard]] std::string escape_label_value(std::string_view value);

// "conncheck.prom", or "conncheck_TARGET.prom" for a target.
[[nodiscard]] std::string textfile_name(std::string_view target);
// A target is 1..64 characters of [A-Za-z0-9_.-] (it names a file and a label value).
[[nodiscard]] bool valid_target(std::string_view target);

// Writes DIR/NAME (mode 0644) through files::OutputFile, so that node_exporter reads the old file
// or the new one, never half of one, and a link planted at DIR/NAME is refused. Throws
// Error(usage) naming the path (the directory is the user's to fix).
void write_textfile(const std::string& dir, const std::string& name, std::string_view content);

} // namespace conncheck::prometheus
