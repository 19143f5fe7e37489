// Stable names for perfdata labels and metric series: by name and start order, never by pid.
#include "conncheck/series.hpp"

#include <doctest/doctest.h>
#include <string>
#include <vector>

using namespace conncheck;

namespace {

proc::ProcessInfo info(pid_t pid, std::string comm, std::uint64_t start_ticks) {
    proc::ProcessInfo i;
    i.pid = pid;
    i.comm = std::move(comm);
    i.start_ticks = start_ticks;
    return i;
}

std::vector<std::string> names(const std::vector<proc::ProcessInfo>& infos) {
    std::vector<const proc::ProcessInfo*> pointers;
    for (const auto& i : infos)
        pointers.push_back(&i);
    return series::stable_names(pointers, [](std::string_view s) { return std::string(s); });
}

} // namespace

TEST_CASE("stable names: the comm, numbered in start order when it repeats") {
    CHECK(names({info(4242, "collector", 7)}) == std::vector<std::string>{"collector"});
    // The older process is "worker" whatever its pid; a restart of the newer one keeps "worker_2".
    CHECK(names({info(10, "worker", 900), info(20, "worker", 100), info(30, "nginx", 1)}) ==
          std::vector<std::string>{"worker_2", "worker", "nginx"});
    CHECK(names({info(99, "worker", 900), info(20, "worker", 100)}) ==
          std::vector<std::string>{"worker_2", "worker"});
    // Same start tick: the lower pid first.
    CHECK(names({info(8, "w", 5), info(7, "w", 5), info(9, "w", 5)}) ==
          std::vector<std::string>{"w_2", "w", "w_3"});
    // A real "x_2" keeps its name; the second "x" takes the next free one.
    CHECK(names({info(1, "x", 1), info(2, "x", 2), info(3, "x_2", 3)}) ==
          std::vector<std::string>{"x", "x_3", "x_2"});
    CHECK(names({}).empty());
}

TEST_CASE("stable names: processes whose cleaned names collide are numbered too") {
    proc::ProcessInfo a = info(1, "a b", 1);
    proc::ProcessInfo b = info(2, "a-b", 2);
    const auto clean = [](std::string_view s) {
        std::string out(s);
        for (auto& c : out)
            if (c == ' ' || c == '-') c = '_';
        return out;
    };
    CHECK(series::stable_names({&a, &b}, clean) == std::vector<std::string>{"a_b", "a_b_2"});
}
