// The dispatcher: builds the command line, runs the chosen front end, maps errors to exit codes.
#include "audit.hpp"
#include "check.hpp"
#include "collector.hpp"
#include "common.hpp"
#include "completions.hpp"
#include "exchange_sim.hpp"
#include "export.hpp"
#include "prove.hpp"
#include "trace.hpp"
#include "watch.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <fmt/core.h>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv) {
    using namespace conncheck::cli;
    const std::string version_text = std::string("conncheck ") + CONNCHECK_VERSION;
    CLI::App app{"conncheck: find and prove TCP connection leaks in a process.\n"
                 "Without a subcommand it audits the selected processes (or the whole host) once.",
                 "conncheck"};
    app.set_version_flag("-V,--version", version_text);
    app.footer(exit_codes_help());
    app.require_subcommand(0, 1);
    // One line on stderr for every bad argument; subcommands inherit this when they are added.
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
        return std::string("conncheck: ") + e.what() + " (see --help)\n";
    });

    // Subcommands whose bad arguments exit with something other than exit_code::usage.
    std::vector<std::pair<CLI::App*, int>> usage_codes;

    AuditOptions audit;
    setup_audit(app, audit);
    CollectorOptions collector;
    CLI::App* collector_cmd = app.add_subcommand("collector");
    setup_collector(*collector_cmd, collector);
    ExchangeSimOptions exchange_sim;
    CLI::App* exchange_sim_cmd = app.add_subcommand("exchange-sim");
    setup_exchange_sim(*exchange_sim_cmd, exchange_sim);
    ProveOptions prove;
    CLI::App* prove_cmd = app.add_subcommand(
        "prove", "Prove a leak, or its fix: run the leaky and the fixed reference collector (and "
                 "--cmd, yours) side by side against misbehaving local exchange simulators and "
                 "compare their sockets");
    setup_prove(*prove_cmd, prove);
    WatchOptions watch;
    CLI::App* watch_cmd = app.add_subcommand(
        "watch", "Watch processes' TCP connections live: counts per state, trends, churn, "
                 "exact TIME_WAIT attribution, peers and findings, redrawn every interval");
    setup_watch(*watch_cmd, watch);
    TraceOptions trace;
    CLI::App* trace_cmd = app.add_subcommand(
        "trace", "Follow the life of every connection a process opens (eBPF) and, at the end, "
                 "the ledger: the leaked ones grouped by the code that opened them");
    setup_trace(*trace_cmd, trace);
    CheckOptions check;
    CLI::App* check_sub = app.add_subcommand(
        "check", "Monitoring Plugins check (Nagios, Icinga, cron): OK/WARNING/CRITICAL/UNKNOWN "
                 "from CLOSE_WAIT, ESTABLISHED, stale connections, open fds and growth");
    setup_check(*check_sub, check);
    usage_codes.emplace_back(check_sub, check_unknown);
    ExportOptions export_options;
    CLI::App* export_sub = app.add_subcommand(
        "export", "Prometheus metrics of the selected processes, on stdout or as a textfile for "
                  "node_exporter");
    setup_export(*export_sub, export_options);
    CompletionsOptions completions;
    CLI::App* completions_cmd = app.add_subcommand(
        "completions", "Print the completion script for bash, zsh or fish, made from "
                       "these very options (the package installs them)");
    setup_completions(*completions_cmd, completions);
    // -V is reserved by the Monitoring Plugins guidelines and answers wherever it is given.
    for (CLI::App* sub : app.get_subcommands({}))
        sub->set_version_flag("-V,--version", version_text);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // A monitoring system shows stdout: check's bad arguments are its UNKNOWN line.
        if (e.get_exit_code() != 0 && check_sub->count() > 0) return check_usage_error(e.what());
        const int printed = app.exit(e);
        if (printed == 0) return exit_code::ok; // --help, --version
        for (const auto& [sub, code] : usage_codes)
            if (sub->count() > 0) return code;
        return exit_code::usage;
    }

    try {
        if (collector_cmd->parsed()) return run_collector(collector);
        if (exchange_sim_cmd->parsed()) return run_exchange_sim(exchange_sim);
        if (prove_cmd->parsed()) return run_prove(prove);
        if (watch_cmd->parsed()) return run_watch(watch);
        if (trace_cmd->parsed()) return run_trace(trace);
        if (check_sub->parsed()) return run_check(check);
        if (export_sub->parsed()) return run_export(export_options);
        if (completions_cmd->parsed()) return run_completions(app, completions);
        return run_audit(audit);
    } catch (const conncheck::Error& e) {
        return print_error(e);
    } catch (const std::exception& e) {
        std::fflush(stdout);
        fmt::print(stderr, "conncheck: internal error: {}\n", e.what());
        return exit_code::failure;
    }
}
