// Human-readable rendering of audit reports. Everything from another process is sanitized here.
#pragma once

#include "conncheck/analysis.hpp"

#include <string>

namespace conncheck::cli {

struct RenderOptions {
    bool color = false;
    int width = 80;
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
