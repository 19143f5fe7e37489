// kernel_fd_tables() of a build without eBPF (meson -Dbpf=disabled, or its tools missing).
#include "conncheck/scan/fd_walk.hpp"

namespace conncheck::scan {

std::optional<std::vector<std::pair<pid_t, proc::FdScan>>> kernel_fd_tables() {
    return std::nullopt;
}

} // namespace conncheck::scan
