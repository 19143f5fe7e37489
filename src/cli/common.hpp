// What every front end shares: process selectors, the socket-source options, exit codes, error
// printing and terminal facts. Nothing here knows about a particular subcommand.
#pragma once

#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/select.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace conncheck::cli {

// Documented in --help and conncheck(1), EXIT STATUS. `check` uses the Monitoring Plugins codes.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int failure = 1;
inline constexpr int usage = 2;
inline constexpr int no_such_process = 3;
inline constexpr int permission = 4;
inline constexpr int process_exited = 5;
inline constexpr int source_unavailable = 6;
inline constexpr int bad_file = 7;
inline constexpr int partial = 8;
} // namespace exit_code

struct SelectorOptions {
    std::vector<std::string> pids; // as typed, one string per --pid: "4242", "1,2,3"
    std::string pidfile;
    std::string name;
    std::string exe;
    std::string unit;
    std::string cgroup;
};

// Refuses an empty value: `--pidfile ''` must not mean "no pidfile" (a host-wide audit).
[[nodiscard]] CLI::Validator non_empty(const std::string& type_name);
// "1,2,3" -> {"1", "2", "3"} (--pid, --cookie); an empty item stays, for the caller to refuse.
[[nodiscard]] std::vector<std::string_view> split_list(std::string_view list);
// --proc-root DIR: a directory (an empty value, a file or /dev/zero is a bad argument).
[[nodiscard]] CLI::Validator directory(const std::string& type_name);

void add_selector_options(CLI::App& app, SelectorOptions& options);
[[nodiscard]] bool has_selector(const SelectorOptions& options);
// The selection the flags describe, for select::resolve() and select::key(). Throws
// Error(usage) for a malformed pid.
[[nodiscard]] select::Selection selection_of(const SelectorOptions& options);
// The selected processes' snapshot. One that exits meanwhile is dropped and counted in
// vanished_processes with those select::resolve() saw go; Error(process_exited) when none is left.
[[nodiscard]] scan::Snapshot scan_selected(scan::Scanner& scanner,
                                           const select::Resolved& selected);

// --idle SECONDS: a connection that received nothing this long is stale (1 s to 7 days).
void add_idle_option(CLI::App& app, std::uint32_t& seconds);

struct SourceOptions {
    std::string proc_root = "/proc";
    std::string replay;       // --replay FILE
    std::string dump_netlink; // --dump-netlink FILE
    std::string source = "auto";
};
void add_source_options(CLI::App& app, SourceOptions& options);
[[nodiscard]] scan::Config make_scan_config(const SourceOptions& options);

// The value of a duration option (250ms, 1.5s, 10m, 2h; a bare number is seconds) in
// milliseconds, from min_ms to max_ms. Throws Error(usage) naming the option.
[[nodiscard]] std::uint64_t duration_option(std::string_view flag, const std::string& value,
                                            std::uint64_t min_ms, std::uint64_t max_ms);
// A week: the longest any duration option may be unless it says otherwise.
inline constexpr std::uint64_t max_duration_ms = 7ULL * 86'400'000;

// Runs `parse` (the core's reading of an option's value) and puts the option's name in front of
// the error it throws: the core says what is wrong, the front end which option it came from.
template <typename Parse> auto for_option(std::string_view flag, Parse&& parse) {
    try {
        return parse();
    } catch (const Error& e) {
        throw Error(e.code(), std::string(flag) + ": " + e.what());
    }
}

[[nodiscard]] int exit_code_for(Errc code);
// Prints "conncheck: <message>" on stderr and returns exit_code_for(error.code()).
int print_error(const Error& error);
// For a scan that could read only some of the chosen processes: prints one line on stderr
// naming the others and why, and returns exit_code::partial. Returns exit_code::ok and prints
// nothing when every process was read.
int report_unreadable(const std::vector<scan::UnreadableProcess>& unreadable, std::size_t read);

// Colour only on a terminal, never with NO_COLOR set (any value) or --no-color.
[[nodiscard]] bool use_color(bool no_color_flag);
// Columns of the terminal on stdout, $COLUMNS, or 80.
[[nodiscard]] int terminal_width();

// Exit-code table printed at the end of --help.
[[nodiscard]] std::string exit_codes_help();

} // namespace conncheck::cli
