// The human form of a prove run: the table in the shape of the incident report, growth per
// hour, the verdicts and the outcome, on stdout; and the progress line while it runs.
#pragma once

#include "conncheck/prove.hpp"

#include <string>

namespace conncheck::cli {

void print_prove_table(const prove::Report& report);

// One line on stderr, redrawn while prove runs; only on a terminal.
class Progress {
public:
    Progress();
    ~Progress() { clear(); }
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    void show(const std::string& line);
    void clear();

private:
    bool enabled_;
    bool shown_ = false;
};

} // namespace conncheck::cli
