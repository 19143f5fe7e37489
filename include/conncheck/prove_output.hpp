// Writing a prove run down: CSV of the samples and the JSON report (the chart is the front
// end's).
#pragma once

#include "conncheck/prove.hpp"

#include <nlohmann/json_fwd.hpp>
#include <ostream>

namespace conncheck::prove {

// t_seconds,collector,established,close_wait,time_wait,total,kernel_memory_bytes,reconnects
void write_csv(std::ostream& out, const Report& report);
// The final table, growth per hour, verdicts and a summary of each series, one object.
[[nodiscard]] nlohmann::json to_json(const Report& report);

} // namespace conncheck::prove
