#include "export.hpp"

#include "conncheck/analysis.hpp"
#include "conncheck/prometheus.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/text.hpp"

#include <cerrno>
#include <cstdio>
#include <fmt/core.h>
#include <optional>
#include <sys/stat.h>

namespace conncheck::cli {

void setup_export(CLI::App& app, ExportOptions& options) {
    app.footer("Exit status: 0 written; with conncheck_up 0 the exposition is still written and "
               "the exit status says why\n  (3 no such process, 4 permission, ...); 8 written "
               "for the processes that could be read,\n  conncheck_unreadable_processes counts "
               "the others; 2 bad arguments or a textfile that cannot be written. See "
               "conncheck(1), EXPORT.");
    add_selector_options(app, options.selector);
    app.add_option("--textfile-dir", options.textfile_dir,
                   "Write DIR/conncheck.prom (via a temporary file and rename) instead of "
                   "printing, e.g. /var/lib/prometheus/node-exporter")
        ->type_name("DIR")
        ->check(non_empty("DIR"));
    app.add_option("--job", options.job,
                   "Name this export: the file becomes conncheck_NAME.prom and every series "
                   "gets target=\"NAME\", so several exports can share one directory")
        ->type_name("NAME")
        ->check(
            [](const std::string& job) {
                return prometheus::valid_target(job)
                           ? std::string()
                           : std::string("use 1 to 64 of A-Z a-z 0-9 _ . -");
            },
            "NAME");
    add_idle_option(app, options.idle_seconds);
    add_source_options(app, options.source);
}

int run_export(const ExportOptions& options) {
    if (!has_selector(options.selector))
        throw Error(Errc::usage, "export needs the processes to export: --pid, --pidfile, --name, "
                                 "--exe, --unit or --cgroup");
    if (!options.textfile_dir.empty()) {
        // Checked before the scan: a wrong directory is a set-up mistake, not a down target.
        struct stat st {};
        const bool found = ::stat(options.textfile_dir.c_str(), &st) == 0;
        if (!found && errno == ENOENT)
            throw Error(Errc::usage,
                        fmt::format("--textfile-dir {}: no such directory; it is the directory "
                                    "node_exporter's textfile collector reads (Debian: install "
                                    "prometheus-node-exporter), or create it",
                                    text::sanitize(options.textfile_dir)));
        if (!found || !S_ISDIR(st.st_mode))
            throw Error(Errc::usage, fmt::format("--textfile-dir {}: not a directory",
                                                 text::sanitize(options.textfile_dir)));
    }

    prometheus::RenderOptions render;
    render.target = options.job;
    std::vector<analysis::ProcessReport> reports;
    std::optional<Error> failure;
    std::vector<scan::UnreadableProcess> unreadable;
    try {
        scan::Scanner scanner(make_scan_config(options.source));
        const select::Resolved selected =
            select::resolve(selection_of(options.selector), scanner.procfs());
        for (const auto& p : selected.processes)
            if (!p.name.empty()) render.selected_as.emplace(p.pid, p.name);
        const scan::Snapshot snapshot = scan_selected(scanner, selected);
        render.run_at = snapshot.taken_at;
        render.unreadable_processes = snapshot.unreadable.size();
        unreadable = snapshot.unreadable;
        analysis::Config config;
        config.idle_ms = options.idle_seconds * 1000U;
        for (const auto& p : snapshot.processes)
            reports.push_back(analysis::analyse_process(p, config));
    } catch (const Error& e) {
        if (e.code() == Errc::usage) throw;
        // A target that is down is a value to export, not only an error to print.
        failure = e;
        render.up = false;
        reports.clear();
    }
    if (render.run_at == std::chrono::system_clock::time_point{})
        render.run_at = std::chrono::system_clock::now();

    const std::string exposition = prometheus::render(reports, render);
    if (options.textfile_dir.empty()) {
        fmt::print("{}", exposition);
        std::fflush(stdout);
    } else {
        prometheus::write_textfile(options.textfile_dir, prometheus::textfile_name(options.job),
                                   exposition);
    }
    return failure ? print_error(*failure) : report_unreadable(unreadable, reports.size());
}

} // namespace conncheck::cli
