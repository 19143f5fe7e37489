// `conncheck collector --url URL [--leaky] ...`: the reference WebSocket client, fixed or leaky.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace conncheck::cli {

struct CollectorOptions {
    std::string url;
    bool leaky = false;
    std::string subscribe;
    std::string heartbeat_timeout = "30s";
    std::string reconnect_delay = "1s";
    std::string backoff = "2.0";
    std::string max_delay = "60s";
    std::string jitter = "full";
    std::string close_timeout = "1s";
    std::string min_lifetime = "10s";
    bool insecure = false;
};

void setup_collector(CLI::App& sub, CollectorOptions& options);
int run_collector(const CollectorOptions& options);

} // namespace conncheck::cli
