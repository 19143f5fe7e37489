// The human form of a prove run: the table in the shape of the incident report, growth per
// hour, the verdicts and the outcome, on stdout.
#pragma once

#include "conncheck/prove.hpp"

namespace conncheck::cli {

void print_prove_table(const prove::Report& report);

} // namespace conncheck::cli
