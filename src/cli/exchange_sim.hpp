// `conncheck exchange-sim --listen 127.0.0.1:9443 ...`: a local exchange that misbehaves on
// purpose.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace conncheck::cli {

struct ExchangeSimOptions {
    std::string listen = "127.0.0.1:9443";
    std::string rate = "20";
    std::string fault_after = "2s";
    std::string faults = "silent,fin,close,rst";
};

void setup_exchange_sim(CLI::App& sub, ExchangeSimOptions& options);
int run_exchange_sim(const ExchangeSimOptions& options);

} // namespace conncheck::cli
