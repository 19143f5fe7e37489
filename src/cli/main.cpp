// The dispatcher: one table of subcommands, the command line built from it, the chosen front end
// run, errors mapped to exit codes.
#include "audit.hpp"
#include "check.hpp"
#include "close.hpp"
#include "common.hpp"
#include "completions.hpp"
#include "export.hpp"
#include "trace.hpp"
#include "watch.hpp"
#if CONNCHECK_HAVE_COLLECTOR
#include "collector.hpp"
#include "exchange_sim.hpp"
#include "prove.hpp"
#endif

#include "conncheck/error.hpp"
#include "conncheck/text.hpp"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <exception>
#include <fcntl.h>
#include <fmt/core.h>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using namespace conncheck::cli;

struct Subcommand {
    std::string name;
    std::string description;
    std::function<void(CLI::App&)> setup;         // adds the options to the subcommand's App
    std::function<int(const CLI::App& root)> run; // runs it with the parsed options
    // Answers a bad argument instead of the usual line on stderr and exit_code::usage (check:
    // its UNKNOWN status line); null for the usual.
    int (*usage_error)(std::string_view message) = nullptr;
};

// A row of the table: the options struct lives as long as the row.
template <typename Options>
Subcommand subcommand(std::string name, std::string description, void (*setup)(CLI::App&, Options&),
                      int (*run)(const Options&), int (*usage_error)(std::string_view) = nullptr) {
    auto options = std::make_shared<Options>();
    return {std::move(name), std::move(description),
            [options, setup](CLI::App& app) { setup(app, *options); },
            [options, run](const CLI::App&) { return run(*options); }, usage_error};
}

// A row whose run also needs the whole command line (completions describe it).
template <typename Options>
Subcommand subcommand(std::string name, std::string description, void (*setup)(CLI::App&, Options&),
                      int (*run)(const CLI::App&, const Options&),
                      int (*usage_error)(std::string_view) = nullptr) {
    auto options = std::make_shared<Options>();
    return {std::move(name), std::move(description),
            [options, setup](CLI::App& app) { setup(app, *options); },
            [options, run](const CLI::App& root) { return run(root, *options); }, usage_error};
}

std::vector<Subcommand> subcommands() {
    std::vector<Subcommand> table;
#if CONNCHECK_HAVE_COLLECTOR
    table.push_back(subcommand<CollectorOptions>(
        "collector",
        "Run the reference WebSocket market-data collector: connect, subscribe, count messages, "
        "reconnect whenever the stream dies. Logs one line per connect, disconnect and "
        "reconnect; prints its totals on SIGINT/SIGTERM.",
        setup_collector, run_collector));
    table.push_back(subcommand<ExchangeSimOptions>(
        "exchange-sim",
        "Run a local WebSocket exchange that streams synthetic trades and misbehaves on purpose: "
        "--fault-after into each connection it applies the next fault from --faults in turn. "
        "Prints 'exchange-sim listening on ADDR:PORT' once bound; runs until SIGINT/SIGTERM.",
        setup_exchange_sim, run_exchange_sim));
    table.push_back(subcommand<ProveOptions>(
        "prove",
        "Prove a leak, or its fix: run the leaky and the fixed reference collector (and --cmd, "
        "yours) side by side against misbehaving local exchange simulators and compare their "
        "sockets",
        setup_prove, run_prove));
#endif
    table.push_back(subcommand<WatchOptions>(
        "watch",
        "Watch processes' TCP connections live: counts per state, trends, churn, exact "
        "TIME_WAIT attribution, peers and findings, redrawn every interval",
        setup_watch, run_watch));
    table.push_back(subcommand<TraceOptions>(
        "trace",
        "Follow the life of every connection a process opens (eBPF) and, at the end, the "
        "ledger: the leaked ones grouped by the code that opened them",
        setup_trace, run_trace));
    table.push_back(subcommand<CheckOptions>(
        "check",
        "Monitoring Plugins check (Nagios, Icinga, cron): OK/WARNING/CRITICAL/UNKNOWN from "
        "CLOSE_WAIT, ESTABLISHED, stale connections, open fds and growth",
        setup_check, run_check, check_usage_error));
    table.push_back(subcommand<ExportOptions>(
        "export",
        "Prometheus metrics of the selected processes, on stdout or as a textfile for "
        "node_exporter",
        setup_export, run_export));
    table.push_back(subcommand<CloseOptions>(
        "close",
        "Close a process's leaked connections without restarting it: CLOSE_WAIT, stale "
        "duplicates or exact cookies, aborted by the kernel (the peer gets a reset). Previews "
        "unless --yes",
        setup_close, run_close));
    table.push_back(subcommand<CompletionsOptions>(
        "completions",
        "Print the completion script for bash, zsh or fish, made from these very options (the "
        "package installs them)",
        setup_completions, run_completions));
    return table;
}

// A standard stream the caller closed (`conncheck >&-`) would be the number the next open()
// gets: the report would go into a netlink socket or a state file. Each closed one is held by
// /dev/null instead; true when stdout was closed, so that the report is known to be lost.
bool hold_closed_streams() {
    bool stdout_closed = false;
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
        if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
        if (fd == STDOUT_FILENO) stdout_closed = true;
        const int null = ::open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY);
        if (null >= 0 && null != fd) {
            ::dup2(null, fd);
            ::close(null);
        }
    }
    return stdout_closed;
}

// The report is written only once it is on its way: a full disk, a closed pipe or a closed
// stdout surfaces at the last flush and close. Returns `code`, or `failed` with one line on
// stderr when the report did not land.
int finish_stdout(int code, bool stdout_closed, int failed) {
    errno = 0;
    const bool flushed = std::fflush(stdout) == 0 && std::ferror(stdout) == 0;
    const int flush_errno = errno;
    const bool closed = std::fclose(stdout) == 0;
    const int err = flush_errno != 0 ? flush_errno : errno;
    if (!stdout_closed && flushed && closed) return code;
    // A write that failed earlier (a subcommand's own flush) left the error flag but not errno.
    std::string why = "standard output is closed";
    if (!stdout_closed)
        why = err != 0 ? conncheck::errno_message("cannot write to standard output", err)
                       : std::string("cannot write to standard output");
    fmt::print(stderr, "conncheck: the report was not written: {}\n", why);
    return failed;
}

} // namespace

int main(int argc, char** argv) {
    const bool stdout_closed = hold_closed_streams();
    CLI::App app{"conncheck: find and prove TCP connection leaks in a process.\n"
                 "Without a subcommand it audits the selected processes (or the whole host) once.",
                 "conncheck"};
    const std::string version_text = std::string("conncheck ") + CONNCHECK_VERSION;
    app.set_version_flag("-V,--version", version_text);
    app.footer(exit_codes_help());
    app.require_subcommand(0, 1);
    // One line on stderr for every bad argument; subcommands inherit this when they are added.
    // CLI11 echoes the argument it refuses as it was typed: an escape sequence or a newline in
    // it must not reach the terminal, nor make the one line two.
    app.failure_message([](const CLI::App*, const CLI::Error& e) {
        return "conncheck: " + conncheck::text::one_line(e.what()) + " (see --help)\n";
    });

    Subcommand audit = subcommand<AuditOptions>("", "", setup_audit, run_audit);
    audit.setup(app);
    const std::vector<Subcommand> table = subcommands();
    std::vector<CLI::App*> apps;
    for (const auto& row : table) {
        apps.push_back(app.add_subcommand(row.name, row.description));
        row.setup(*apps.back());
        // -V is reserved by the Monitoring Plugins guidelines and answers wherever it is given.
        apps.back()->set_version_flag("-V,--version", version_text);
    }

    const auto run = [&]() -> int {
        try {
            app.parse(argc, argv);
        } catch (const CLI::ParseError& e) {
            if (e.get_exit_code() != 0)
                for (std::size_t i = 0; i < table.size(); ++i)
                    if (apps[i]->count() > 0 && table[i].usage_error != nullptr)
                        return table[i].usage_error(e.what());
            const int printed = app.exit(e);
            if (printed == 0) return exit_code::ok; // --help, --version
            return exit_code::usage;
        }
        try {
            for (std::size_t i = 0; i < table.size(); ++i)
                if (apps[i]->parsed()) return table[i].run(app);
            return audit.run(app);
        } catch (const conncheck::Error& e) {
            return print_error(e);
        } catch (const std::exception& e) {
            // fmt throws when stdout refuses a write: finish_stdout says so, in one line.
            if (std::ferror(stdout) != 0) return exit_code::failure;
            std::fflush(stdout);
            fmt::print(stderr, "conncheck: internal error: {}\n",
                       conncheck::text::one_line(e.what()));
            return exit_code::failure;
        }
    };
    const int code = run();
    // A report that did not land is an output that cannot be written (2); a subcommand with its
    // own answer to bad arguments gives that code (check: UNKNOWN).
    int not_written = exit_code::usage;
    for (std::size_t i = 0; i < table.size(); ++i)
        if (apps[i]->count() > 0 && table[i].usage_error != nullptr) not_written = check_unknown;
    return finish_stdout(code, stdout_closed, not_written);
}
