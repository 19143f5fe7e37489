// `conncheck completions bash|zsh|fish`: shell completion scripts generated from the command line
// itself, every visible subcommand and option as CLI11 holds them, so a new flag is completed
// without a list to keep in step. meson runs it on the built binary to install the scripts.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace conncheck::cli {

struct CompletionsOptions {
    std::string shell;
};

void setup_completions(CLI::App& app, CompletionsOptions& options);
// Prints the script for `options.shell` describing `root` and its subcommands.
int run_completions(const CLI::App& root, const CompletionsOptions& options);

} // namespace conncheck::cli
