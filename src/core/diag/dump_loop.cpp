#include "conncheck/diag/dump_loop.hpp"

#include "conncheck/diag/parse.hpp"
#include "conncheck/error.hpp"

#include <cerrno>
#include <string>

namespace conncheck::diag {

namespace detail {

DumpStats run_dump(DatagramStream& stream, const DumpRequest& request, DumpSink& sink,
                   unsigned max_retries) {
    DumpStats stats;
    for (unsigned attempt = 0;; ++attempt) {
        std::uint32_t seq = 0;
        std::uint32_t portid = 0;
        if (!stream.begin(request, attempt, seq, portid)) {
            // Only a recording runs out of attempts: it stopped retrying while still interrupted.
            if (attempt > 0) stats.inconsistent = true;
            return stats;
        }
        if (attempt > 0) {
            sink.on_restart();
            stats.retries = attempt;
            stats.messages = 0;
            stats.malformed = 0;
        }
        bool interrupted = false;
        for (;;) {
            const Datagram d = stream.next();
            if (d.lost) {
                interrupted = true;
                break;
            }
            if (d.end) break;
            const ChunkResult r = parse_chunk(d.data, d.size, seq, portid, sink, stats);
            interrupted = interrupted || r.interrupted;
            if (r.status == ChunkStatus::more) continue;
            if (r.status == ChunkStatus::error) {
                const std::string what = "TCP socket dump from " + stream.describe() + " failed";
                // inet_diag answers ENOENT when no handler for the protocol is registered
                // (tcp_diag not built or not loadable), EOPNOTSUPP where diag is compiled out.
                if (r.error == ENOENT || r.error == EOPNOTSUPP) {
                    throw Error(Errc::source_unavailable,
                                errno_message(what, r.error) +
                                    " (is the tcp_diag module available?)");
                }
                throw Error(Errc::io, errno_message(what, r.error));
            }
            stream.end_attempt();
            break;
        }
        if (!interrupted) return stats;
        if (attempt >= max_retries) {
            stats.inconsistent = true;
            return stats;
        }
    }
}

} // namespace detail

} // namespace conncheck::diag
