// The reconnect policy of the reference collector: capped exponential backoff with optional full
// jitter, and an attempt counter that resets only after a connection lived long enough. Pure and
// deterministic: the clock and the random source are injected.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace conncheck::ws {

enum class Jitter { full, none };

struct BackoffConfig {
    std::chrono::milliseconds base{1000};           // --reconnect-delay
    double factor = 2.0;                            // --backoff, >= 1
    std::chrono::milliseconds cap{60'000};          // --max-delay
    Jitter jitter = Jitter::full;                   // --jitter
    std::chrono::milliseconds min_lifetime{10'000}; // --min-lifetime
};

class Backoff {
public:
    using Clock = std::function<std::chrono::steady_clock::time_point()>;
    // Returns a uniformly distributed integer in [0, max], both ends included.
    using Random = std::function<std::uint64_t(std::uint64_t max)>;

    Backoff(BackoffConfig config, Clock clock, Random random);
    // The real steady clock and a seeded Mersenne twister.
    explicit Backoff(BackoffConfig config);

    // A connection is up (the WebSocket handshake completed).
    void connected();
    // The current connection (or connection attempt) ended. Resets the attempt counter only when
    // a connection was up for at least min_lifetime: resetting on every successful connect lets
    // a server that accepts and then drops turn the client into a tight reconnect loop.
    void disconnected();
    // The delay before the next attempt; counts the attempt.
    // none: min(cap, base * factor^n); full: random(0, min(cap, base * factor^n)).
    [[nodiscard]] std::chrono::milliseconds next_delay();

    // The ceiling for attempt n, before jitter.
    [[nodiscard]] std::chrono::milliseconds ceiling(std::uint32_t attempt) const;
    // Attempts since the last reset.
    [[nodiscard]] std::uint32_t attempt() const { return attempt_; }
    [[nodiscard]] const BackoffConfig& config() const { return config_; }

private:
    BackoffConfig config_;
    Clock clock_;
    Random random_;
    std::uint32_t attempt_ = 0;
    bool up_ = false;
    std::chrono::steady_clock::time_point connected_at_{};
};

} // namespace conncheck::ws
