// `conncheck check`: a Monitoring Plugins compatible check (Nagios, Icinga, Zabbix agents,
// cron). One line `CONNCHECK STATUS - text | perfdata`, exit 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN; a state file between runs for growth and exact TIME_WAIT attribution.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <string>

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
    std::string stale_warning;
    std::string stale_critical;
    std::string growth_warning; // "N/h"
    std::string growth_critical;
    std::string state_file; // empty: statefile::default_path(selector_key)
    std::string timeout = "10s";
    int verbose = 0;
};

void setup_check(CLI::App& app, CheckOptions& options);
// Prints the plugin output and returns the plugin exit code; every failure is UNKNOWN (3).
int run_check(const CheckOptions& options);

} // namespace conncheck::cli
