// The reference market-data collector: a WebSocket client that connects, optionally subscribes,
// counts messages and reconnects whenever the stream dies. Fixed mode closes each connection
// before the next one (at most one is open); leaky mode reproduces the incident by abandoning it.
// The library never prints: it reports events to a callback. Boost.Beast stays in collector.cpp.
#pragma once

#include "conncheck/ws/backoff.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace conncheck::ws {

struct CollectorConfig {
    std::string url;       // ws:// or wss://
    bool leaky = false;    // abandon old connections instead of closing them
    std::string subscribe; // sent as one text message after each connect, if not empty
    std::chrono::milliseconds heartbeat_timeout{30'000};
    std::chrono::milliseconds close_timeout{1000};
    bool insecure = false; // wss:// without certificate and host-name verification (tests only)
    BackoffConfig backoff;
};

enum class EndReason { error, eof, close, heartbeat_timeout };
[[nodiscard]] const char* end_reason_name(EndReason reason); // "error", "eof", "close", ...

struct CollectorEvent {
    enum class Kind { connect, disconnect, reconnect };
    Kind kind = Kind::connect;
    std::chrono::system_clock::time_point at;
    // connect/disconnect: the connection attempt (1, 2, ...); reconnect: the reconnect (1, 2, ...).
    std::uint64_t n = 0;
    std::string peer; // connect: "127.0.0.1:9443" (from the kernel, not the peer)
    EndReason reason = EndReason::error; // disconnect
    std::string detail;         // disconnect: may hold text the peer sent; sanitize before printing
    std::uint64_t delay_ms = 0; // reconnect
    std::size_t open = 0;       // reconnect: sockets this collector still holds open
};

struct CollectorTotals {
    std::uint64_t messages = 0;
    std::uint64_t reconnects = 0;
    std::size_t open_connections = 0; // sockets still open when the collector stopped
};

class Collector {
public:
    using EventSink = std::function<void(const CollectorEvent&)>;

    // Throws conncheck::Error(usage) for a bad URL, Error(io) when TLS cannot be set up.
    Collector(CollectorConfig config, EventSink sink);
    ~Collector();
    Collector(const Collector&) = delete;
    Collector& operator=(const Collector&) = delete;

    // Runs until one of `stop_signals` arrives (or stop() is called), then returns the totals.
    CollectorTotals run(const std::vector<int>& stop_signals);
    // Thread-safe.
    void stop();

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace conncheck::ws
