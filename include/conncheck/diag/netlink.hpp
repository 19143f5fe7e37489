// The live socket source: NETLINK_SOCK_DIAG through libmnl, optionally in another network
// namespace, optionally recording every reply for replay.
#pragma once

#include "conncheck/diag/source.hpp"

#include <memory>
#include <string>

namespace conncheck::diag {

struct NetlinkOptions {
    int netns_fd = -1;        // open fd of /proc/PID/ns/net to dump that namespace, -1 for ours
    int record_fd = -1;       // append every reply datagram to this open recording (replayable,
                              // after its magic), -1 for none; borrowed, not closed
    std::string record_path;  // the recording's name, for messages
    unsigned max_retries = 3; // for NLM_F_DUMP_INTR and recv() ENOBUFS
};

// Throws Error(source_unavailable) when the kernel has no sock_diag for TCP, and
// Error(permission_denied) when the namespace cannot be entered.
[[nodiscard]] std::unique_ptr<SocketSource> open_netlink(const NetlinkOptions& options = {});

// What the kernel answered a SOCK_DESTROY for one socket.
enum class DestroyResult {
    destroyed,     // aborted: its owner's next call fails with ECONNABORTED, the peer got a RST
    gone,          // ENOENT: no socket holds that 4-tuple any more
    replaced,      // ESTALE: a newer socket (another cookie) holds the 4-tuple; left alone
    not_permitted, // EPERM: CAP_NET_ADMIN in the namespace's user namespace is missing
    refused,       // another error (EOPNOTSUPP: a socket the kernel cannot abort)
};

struct DestroyAnswer {
    DestroyResult result = DestroyResult::refused;
    int error = 0; // the errno the kernel answered, 0 for destroyed
};

// SOCK_DESTROY through sock_diag (what `ss -K` sends), one socket at a time, each named by its
// exact 4-tuple, interface and cookie: a socket that is not that very one is never hit.
class SocketDestroyer {
public:
    virtual ~SocketDestroyer();
    virtual DestroyAnswer destroy(const SocketRecord& socket) = 0;
};

// In the network namespace of `netns_fd` (an open /proc/PID/ns/net), -1 for ours. Throws as
// open_netlink() does.
[[nodiscard]] std::unique_ptr<SocketDestroyer> open_destroyer(int netns_fd = -1);

} // namespace conncheck::diag
