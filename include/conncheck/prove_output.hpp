// Writing a prove run down: CSV of the samples, an SVG chart, and the JSON report.
#pragma once

#include "conncheck/prove.hpp"

#include <nlohmann/json_fwd.hpp>
#include <ostream>
#include <string>
#include <string_view>

namespace conncheck::prove {

// t_seconds,collector,established,close_wait,time_wait,total,kernel_memory_bytes,reconnects
void write_csv(std::ostream& out, const Report& report);
// A standalone SVG 1.1 document: one panel per collector on a shared y scale, one line per state.
void write_svg(std::ostream& out, const Report& report);
// The final table, growth per hour, verdicts and a summary of each series, one object.
[[nodiscard]] nlohmann::json to_json(const Report& report);

// & < > " ' as entities; other bytes unchanged (callers sanitize first).
[[nodiscard]] std::string xml_escape(std::string_view text);

} // namespace conncheck::prove
