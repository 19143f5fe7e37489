// `conncheck check`: a Monitoring Plugins compatible check (Nagios, Icinga, Zabbix agents,
// cron). One line `CONNCHECK STATUS - text | perfdata`, exit 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN; a state file between runs for growth and exact TIME_WAIT attribution.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace conncheck::cli {

// Bad arguments to check exit with UNKNOWN, not with exit_code::usage.
inline constexpr int check_unknown = 3;

struct CheckOptions {
    SelectorOptions selector;
    SourceOptions source;
    std::string warning = "0";   // CLOSE_WAIT
    std::string critical = "10"; // CLOSE_WAIT
    std::string established_warning;
    std::string established_critical;
    std::string stale_warning = "0";
    std::string stale_critical = "10";
    std::string held_warning = "0"; // TCP sockets in state CLOSE still held
    std::string held_critical = "10";
    std::string fds_warning = "80"; // percent of the soft RLIMIT_NOFILE
    std::string fds_critical = "95";
    std::string growth_warning; // "N/h"
    std::string growth_critical;
    std::uint32_t idle_seconds = 60;
    std::string close_wait_min_age = "0s";
    std::string state_file; // empty: statefile::default_path(selector_key)
    std::string timeout = "10s";
    int verbose = 0;
};

void setup_check(CLI::App& app, CheckOptions& options);
// Prints the plugin output and returns the plugin exit code; every failure is UNKNOWN (3).
int run_check(const CheckOptions& options);
// A command line check could not parse: "CONNCHECK UNKNOWN - message" on stdout, returns 3.
int check_usage_error(std::string_view message);

} // namespace conncheck::cli
