// Pure parsing of sock_diag replies, apart from the socket that receives them: the live source,
// the replay, the fuzzers and the unit tests all run bytes through these.
#pragma once

#include "conncheck/diag/source.hpp"
#include "conncheck/tcp.hpp"

#include <cstddef>
#include <cstdint>

struct nlmsghdr;

namespace conncheck::diag {

// One SOCK_DIAG_BY_FAMILY reply, at any alignment; the caller guarantees nlmsg_len bytes are
// readable. False when it is too short to be an inet_diag_msg, is not AF_INET/AF_INET6, or an
// attribute overruns it. tcp_info is copied by the attribute's length and the rest left zero.
[[nodiscard]] bool parse_inet_diag(const nlmsghdr* message, SocketRecord& out);

// The errno an NLMSG_ERROR or NLMSG_DONE carries, positive; 0 for an ACK or a clean end.
[[nodiscard]] int message_errno(const nlmsghdr* message);

enum class ChunkStatus { more, done, error };
struct ChunkResult {
    ChunkStatus status = ChunkStatus::more;
    int error = 0;            // errno carried by NLMSG_ERROR or NLMSG_DONE, positive; EPROTO
                              // for a wrong sequence number, ESRCH for a wrong port id
    bool interrupted = false; // some message carried NLM_F_DUMP_INTR
};
// Runs one received datagram through the same callbacks the live source uses (mnl_cb_run2 with
// our own NLMSG_DONE handler). seq/portid 0 accept any.
ChunkResult parse_chunk(const void* data, std::size_t size, std::uint32_t seq, std::uint32_t portid,
                        DumpSink& sink, DumpStats& stats);

} // namespace conncheck::diag
