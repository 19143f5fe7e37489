// The retry loop shared by the live netlink source and the replay source,
// so a recording (or a test's fake) drives exactly the restart logic the kernel path uses.
#pragma once

#include "conncheck/diag/source.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace conncheck::diag::detail {

struct Datagram {
    const void* data = nullptr;
    std::size_t size = 0;
    bool lost = false; // recv() said ENOBUFS: replies were dropped, this attempt is abandoned
    bool end = false;  // no more datagrams (a recording that stops inside a dump)
};

// Where the datagrams of one dump attempt come from.
class DatagramStream {
public:
    virtual ~DatagramStream() = default;
    // Starts attempt `attempt` (0 is the first) of `request`, setting the sequence number and port
    // id its replies must carry (0 accepts any). False when no such attempt can be started.
    virtual bool begin(const DumpRequest& request, unsigned attempt, std::uint32_t& seq,
                       std::uint32_t& portid) = 0;
    virtual Datagram next() = 0;
    // The attempt was read to its NLMSG_DONE or NLMSG_ERROR.
    virtual void end_attempt() {}
    // Names the source in error messages: "netlink", "/tmp/x.ccnl".
    [[nodiscard]] virtual std::string describe() const = 0;
};

// Runs attempts until one is not interrupted (NLM_F_DUMP_INTR or a lost datagram) or
// `max_retries` restarts were made; calls sink.on_restart() before each restart. Throws
// Error(source_unavailable) when the kernel has no TCP diag handler, Error(io) on other errors.
DumpStats run_dump(DatagramStream& stream, const DumpRequest& request, DumpSink& sink,
                   unsigned max_retries);

} // namespace conncheck::diag::detail
