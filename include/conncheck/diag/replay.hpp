// Replaying sock_diag replies recorded through NetlinkOptions::record_path (--dump-netlink), so
// bug reports and tests run the parser and the retry logic without the kernel.
#pragma once

#include "conncheck/diag/source.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace conncheck::diag {

// Recording file: "CCNLDUMP1\n", then per datagram a little-endian u32 family, u32 length and
// the bytes exactly as recv() returned them. Where recv() lost replies (ENOBUFS) the recorder
// writes an NLMSG_DONE flagged NLM_F_DUMP_INTR, so a replay restarts where the live dump did.
inline constexpr std::string_view recording_magic = "CCNLDUMP1\n";

// Throws Error(bad_file) from here when the file is unreadable, not a recording or truncated.
// Each family is answered with the first dump recorded for it (and that dump's retries, as they
// happened), filtered to the requested states and extensions here: record one dump of all states
// per family.
[[nodiscard]] std::unique_ptr<SocketSource> open_replay(const std::string& path);

} // namespace conncheck::diag
