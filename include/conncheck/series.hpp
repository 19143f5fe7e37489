// Names that identify the selected processes from one run to the next, for perfdata labels and
// metric series. A restarted process has a new pid but the same name: keyed by name, its graphs
// go on; keyed by pid, every restart would start new ones.
#pragma once

#include "conncheck/proc.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace conncheck::series {

// One name per process, in the order given: `clean(comm)`, and for further processes whose
// cleaned comm is the same, in start order (pid on a tie), the name with "_2", "_3", ...
// appended. The names are unique.
[[nodiscard]] std::vector<std::string>
stable_names(const std::vector<const proc::ProcessInfo*>& processes,
             const std::function<std::string(std::string_view)>& clean);

} // namespace conncheck::series
