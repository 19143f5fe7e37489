// `conncheck close`: abort a process's leaked connections (CLOSE_WAIT, stale duplicates, exact
// cookies) through the kernel's SOCK_DESTROY, previewed unless --yes.
#pragma once

#include "common.hpp"

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace conncheck::cli {

struct CloseOptions {
    SelectorOptions selector;
    bool close_wait = false;
    bool stale = false;
    bool held_after_close = false;
    std::vector<std::string> cookies; // as typed, one string per --cookie: "0x38dc4,0x38dc8"
    std::vector<std::string> peers;   // ADDR:PORT
    std::uint32_t idle_seconds = 60;
    bool yes = false;
    bool json = false;
};

void setup_close(CLI::App& app, CloseOptions& options);
// 0 every selected socket closed (or previewed), 1 some could not be (each named), 2 bad
// arguments, 3 no such process, 4 permission (CAP_NET_ADMIN for --yes, what the audit needs).
int run_close(const CloseOptions& options);

} // namespace conncheck::cli
