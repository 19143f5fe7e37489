#include "conncheck/diag/source.hpp"

#include "conncheck/error.hpp"

#include <string>

namespace conncheck::diag {

// Out of line, so each interface's vtable has one home.
DumpSink::~DumpSink() = default;
SocketSource::~SocketSource() = default;

std::string_view source_name(SourceKind kind) {
    switch (kind) {
    case SourceKind::netlink:
        return "netlink";
    case SourceKind::replay:
        return "replay";
    case SourceKind::proc_net:
        return "proc_net";
    }
    return "netlink";
}

DumpStats SocketSource::fetch(std::span<const SocketRecord* const> /*sockets*/, bool /*want_info*/,
                              bool /*want_mem*/, DumpSink& /*sink*/) {
    throw Error(Errc::source_unavailable,
                std::string(name()) + " cannot look sockets up one by one");
}

} // namespace conncheck::diag
