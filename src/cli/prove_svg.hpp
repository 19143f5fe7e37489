// prove's chart: a standalone SVG 1.1 document, one panel per collector on a shared y scale, one
// line per state.
#pragma once

#include "conncheck/prove.hpp"

#include <ostream>
#include <string>
#include <string_view>

namespace conncheck::cli {

void write_svg(std::ostream& out, const prove::Report& report);

// & < > " ' as entities; other bytes unchanged (callers sanitize first).
[[nodiscard]] std::string xml_escape(std::string_view text);

} // namespace conncheck::cli
