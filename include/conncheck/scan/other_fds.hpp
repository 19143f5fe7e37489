// Socket fds of the chosen processes that no dump of their namespaces accounted for: closed
// TCP sockets, UDP, unix and other sockets, and TCP sockets that live in another network
// namespace (passed over SCM_RIGHTS, or made before a setns()).
#pragma once

#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"

#include <cstdint>
#include <vector>

namespace conncheck::scan {

// How far the dumps went, which says what a TCP socket fd in none of them is.
enum class TcpSearch {
    none,   // a recording, or namespaces left out: it is only counted (OtherSockets::tcp)
    dumped, // every namespace a scanned process lives in was dumped: it is closed
    search, // look for it in the host's other namespaces first; closed when found in none
};

// Counts the socket fds of each process that no dump accounted for, by protocol; TCP ones
// known to be closed go to ProcessSnapshot::held_after_close.
// `closed` holds the inodes an earlier scan searched every namespace for in vain; on return, those
// of this scan.
void account_fds(Snapshot& snapshot, const std::vector<proc::FdScan>& fd_scans,
                 const proc::ProcFs& procfs, TcpSearch search,
                 const std::vector<std::uint64_t>& dumped, std::vector<std::uint64_t>& closed);

} // namespace conncheck::scan
