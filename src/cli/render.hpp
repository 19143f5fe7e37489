// Human-readable rendering of audit reports. Everything from another process is sanitized here.
#pragma once

#include "conncheck/analysis.hpp"

#include <string>

namespace conncheck::cli {

struct RenderOptions {
    bool color = false;
    // On a terminal (fit) tables drop columns to fit `width`; off one every column stays and
    // prose is wrapped at 80 columns, whatever the width, so scripts see one layout.
    int width = 80;
    bool fit = false;
    std::size_t max_peers = 15;
};

[[nodiscard]] std::string render_report(const analysis::HostReport& report,
                                        const RenderOptions& options);
[[nodiscard]] std::string render_process(const analysis::ProcessReport& report,
                                         const RenderOptions& options);
[[nodiscard]] std::string render_findings(const std::vector<analysis::Finding>& findings,
                                          const RenderOptions& options);
[[nodiscard]] std::string severity_tag(analysis::Severity severity, bool color);

} // namespace conncheck::cli
