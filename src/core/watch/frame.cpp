#include "conncheck/watch/frame.hpp"

#include <algorithm>

namespace conncheck::watch {

std::string_view peer_sort_name(PeerSort sort) {
    switch (sort) {
    case PeerSort::count:
        return "connections";
    case PeerSort::close_wait:
        return "CLOSE_WAIT";
    case PeerSort::time_wait:
        return "TIME_WAIT";
    case PeerSort::idle:
        return "idle";
    case PeerSort::reconnects:
        return "reconnects";
    }
    return "connections";
}

PeerSort next_peer_sort(PeerSort sort) {
    switch (sort) {
    case PeerSort::count:
        return PeerSort::close_wait;
    case PeerSort::close_wait:
        return PeerSort::time_wait;
    case PeerSort::time_wait:
        return PeerSort::idle;
    case PeerSort::idle:
        return PeerSort::reconnects;
    case PeerSort::reconnects:
        return PeerSort::count;
    }
    return PeerSort::count;
}

void sort_peers(std::vector<PeerFrame>& peers, PeerSort sort) {
    auto key = [sort](const PeerFrame& p) -> double {
        switch (sort) {
        case PeerSort::count:
            return static_cast<double>(p.total);
        case PeerSort::close_wait:
            return static_cast<double>(p.states[TcpState::close_wait]);
        case PeerSort::time_wait:
            return static_cast<double>(p.states[TcpState::time_wait]);
        case PeerSort::idle:
            return p.idle_max_ms ? static_cast<double>(*p.idle_max_ms) : -1.0;
        case PeerSort::reconnects:
            return p.opened_per_minute;
        }
        return 0;
    };
    std::stable_sort(peers.begin(), peers.end(), [&](const PeerFrame& a, const PeerFrame& b) {
        const double ka = key(a);
        const double kb = key(b);
        if (ka != kb) return ka > kb;
        if (a.total != b.total) return a.total > b.total;
        return a.label < b.label;
    });
}

} // namespace conncheck::watch
