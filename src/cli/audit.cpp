#include "audit.hpp"

#include "render.hpp"
#include "terminal.hpp"

#include "conncheck/analysis.hpp"
#include "conncheck/report_json.hpp"
#include "conncheck/scan.hpp"

#include <cstdio>
#include <fmt/core.h>
#include <unistd.h>

namespace conncheck::cli {

void setup_audit(CLI::App& app, AuditOptions& options) {
    add_selector_options(app, options.selector);
    app.add_flag("--json", options.json, "Print the report as JSON (schema 1, see conncheck(1))");
    add_idle_option(app, options.idle_seconds);
    app.add_flag("--no-color", options.no_color, "No colour (also when NO_COLOR is set)");
    add_source_options(app, options.source);
    // These options are the audit's: given before a subcommand (`conncheck --json check`) they
    // would be parsed and then ignored, so such a command line is refused.
    app.parse_complete_callback([&app] {
        const auto subcommands = app.get_subcommands();
        if (subcommands.empty()) return;
        const CLI::App& sub = *subcommands.front();
        for (const CLI::Option* option : app.get_options()) {
            if (option->count() == 0) continue;
            const std::string name = option->get_name();
            if (sub.get_option_no_throw(name) == nullptr)
                throw CLI::ValidationError(
                    name, fmt::format("an option of the audit, given before '{}', which has no "
                                      "such option (its options come after the subcommand)",
                                      sub.get_name()));
            throw CLI::ValidationError(
                name, fmt::format("given before '{0}', where it would be ignored: write it after "
                                  "the subcommand (conncheck {0} {1} ...)",
                                  sub.get_name(), name));
        }
    });
}

int run_audit(const AuditOptions& options) {
    scan::Scanner scanner(make_scan_config(options.source));
    const select::Selection selection = selection_of(options.selector);
    const bool host_wide = selection.empty();
    const select::Resolved selected =
        host_wide ? select::Resolved{} : select::resolve(selection, scanner.procfs());

    analysis::Config config;
    config.idle_ms = options.idle_seconds * 1000U;
    config.idle_setting = "--idle";
    // The snapshot (every socket) is gone before the report is written.
    const analysis::HostReport report = [&] {
        const scan::Snapshot snapshot =
            host_wide ? scanner.scan_host() : scan_selected(scanner, selected);
        return analysis::analyse(snapshot, config, host_wide);
    }();

    if (options.json) {
        report::write_json(stdout, report);
    } else {
        RenderOptions render;
        render.color = use_color(options.no_color);
        render.width = terminal_width();
        render.fit = screen::terminal_size(STDOUT_FILENO).cols > 0;
        fmt::print("{}", render_report(report, render));
    }
    std::fflush(stdout);
    return report_unreadable(report.unreadable, report.processes.size());
}

} // namespace conncheck::cli
