// libFuzzer harness: arbitrary bytes as one datagram received from NETLINK_SOCK_DIAG. The parser
// must never read outside them, whatever nlmsg_len and nla_len claim.
#include "conncheck/diag/parse.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <linux/netlink.h>

namespace {

struct TouchSink final : conncheck::diag::DumpSink {
    std::uint64_t sum = 0;
    void on_socket(const conncheck::SocketRecord& s) override {
        sum += s.cookie + s.inode + s.local.port + s.remote.addr[15];
        if (s.info) sum += s.info->bytes_acked + s.info->last_data_recv_ms;
        if (s.mem) sum += s.mem->charged_bytes() + s.mem->drops;
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    TouchSink sink;
    conncheck::diag::DumpStats stats;
    (void)conncheck::diag::parse_chunk(data, size, 0, 0, sink, stats);
    // Also the per-message entry point, trusting nlmsg_len only as far as the buffer goes.
    if (size >= sizeof(nlmsghdr)) {
        nlmsghdr h;
        std::memcpy(&h, data, sizeof h);
        if (h.nlmsg_len <= size) {
            conncheck::SocketRecord record;
            if (conncheck::diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(data), record)) {
                sink.on_socket(record);
            }
        }
    }
    return 0;
}
