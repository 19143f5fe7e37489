// A local exchange that misbehaves on purpose: a WebSocket server that streams synthetic trades
// and, a fixed time into each connection, applies the next fault from a list (one counter for the
// whole server). The library never prints; Boost.Beast stays in exchange_sim.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace conncheck::ws {

enum class Fault {
    silent, // stop sending and answer nothing (no pong, no close reply); keep TCP open
    fin,    // shutdown(SHUT_WR): a FIN without a WebSocket close frame
    close,  // a proper close handshake
    rst,    // SO_LINGER 0 and close: an abortive close, the client reads ECONNRESET
};

[[nodiscard]] const char* fault_name(Fault fault);
// "silent,fin,close,rst" in any order, repeats allowed. Throws Error(usage) on anything else.
[[nodiscard]] std::vector<Fault> parse_faults(std::string_view list);

struct SimulatorConfig {
    std::string host = "127.0.0.1";
    std::uint16_t port = 9443;
    double rate = 20; // messages per second per connection
    std::chrono::milliseconds fault_after{2000};
    std::vector<Fault> faults{Fault::silent, Fault::fin, Fault::close, Fault::rst};
};

struct SimulatorStats {
    std::uint64_t connections = 0; // WebSocket handshakes completed
    std::uint64_t messages = 0;
    std::uint64_t faults[4] = {}; // indexed by Fault
    std::uint64_t open = 0;       // connections still open when the simulator stopped
};

// One trade: {"e":"trade","s":"BTCUSDT","p":"64123.45","q":"0.012","T":1700000000000}
[[nodiscard]] std::string trade_json(double price, double quantity, std::int64_t unix_ms);

class ExchangeSim {
public:
    using Log = std::function<void(const std::string&)>;

    // Resolves and binds the listening socket. Throws Error(usage) for a bad config or a host
    // that does not resolve, Error(io) when the address cannot be bound.
    ExchangeSim(SimulatorConfig config, Log log);
    ~ExchangeSim();
    ExchangeSim(const ExchangeSim&) = delete;
    ExchangeSim& operator=(const ExchangeSim&) = delete;

    [[nodiscard]] std::string bound_address() const; // "127.0.0.1:43817", the real port
    [[nodiscard]] bool loopback() const;

    // Serves until one of `stop_signals` arrives (or stop() is called).
    SimulatorStats run(const std::vector<int>& stop_signals);
    void stop(); // thread-safe

private:
    class Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace conncheck::ws
