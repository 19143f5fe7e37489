// The sock_diag requests the live source sends, built apart from the socket so that tests can
// read them byte for byte: dumps (with cgroup filters in inet_diag bytecode) and exact requests.
#pragma once

#include "conncheck/diag/source.hpp"
#include "conncheck/tcp.hpp"

#include <cstdint>
#include <vector>

namespace conncheck::diag {

// The idiag_ext bits for INET_DIAG_INFO and INET_DIAG_SKMEMINFO.
[[nodiscard]] std::uint8_t extensions(bool want_info, bool want_mem);

// "cgroup is A or B or ..." in inet_diag bytecode; empty for no cgroups.
[[nodiscard]] std::vector<unsigned char> cgroup_bytecode(const std::vector<std::uint64_t>& cgroups);

// The dump request, a whole netlink message. Throws Error(io) when the filter is too long.
[[nodiscard]] std::vector<std::uint32_t> dump_request(const DumpRequest& request,
                                                      std::uint32_t seq);

// Appends one exact request (no NLM_F_DUMP) for `s` to `out`.
void append_exact_request(std::vector<std::uint32_t>& out, const SocketRecord& s, std::uint32_t seq,
                          std::uint8_t ext);

// Appends a SOCK_DESTROY for `s` (the same 4-tuple, interface and cookie) to `out`, asking for
// an acknowledgement.
void append_destroy_request(std::vector<std::uint32_t>& out, const SocketRecord& s,
                            std::uint32_t seq);

} // namespace conncheck::diag
