// The reconnect policy: capped exponential backoff, full jitter, and the rule that only a
// connection that lived --min-lifetime resets the attempt counter. Fake clock, fake randomness.
#include "conncheck/ws/backoff.hpp"

#include <chrono>
#include <cstdint>
#include <doctest/doctest.h>
#include <vector>

using conncheck::ws::Backoff;
using conncheck::ws::BackoffConfig;
using conncheck::ws::Jitter;
using namespace std::chrono_literals;

namespace {

struct FakeWorld {
    std::chrono::steady_clock::time_point now{};
    std::vector<std::uint64_t> asked; // the upper bounds the policy asked the random source for
    std::uint64_t (*pick)(std::uint64_t max) = [](std::uint64_t max) { return max; };

    Backoff make(BackoffConfig config) {
        return Backoff(
            config, [this] { return now; },
            [this](std::uint64_t max) {
                asked.push_back(max);
                return pick(max);
            });
    }
};

BackoffConfig config_with(Jitter jitter) {
    BackoffConfig c;
    c.base = 1000ms;
    c.factor = 2.0;
    c.cap = 60'000ms;
    c.jitter = jitter;
    c.min_lifetime = 10'000ms;
    return c;
}

std::vector<std::int64_t> delays(Backoff& b, int count) {
    std::vector<std::int64_t> out;
    for (int i = 0; i < count; ++i)
        out.push_back(b.next_delay().count());
    return out;
}

} // namespace

TEST_CASE("without jitter the delay doubles up to the cap") {
    FakeWorld world;
    Backoff b = world.make(config_with(Jitter::none));
    CHECK(delays(b, 8) ==
          std::vector<std::int64_t>{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000});
    CHECK(world.asked.empty()); // no jitter, no randomness
    CHECK(b.attempt() == 8);
}

TEST_CASE("full jitter draws from 0 up to the capped exponential ceiling") {
    FakeWorld world;
    Backoff b = world.make(config_with(Jitter::full));
    world.pick = [](std::uint64_t max) { return max / 2; };
    CHECK(delays(b, 7) == std::vector<std::int64_t>{500, 1000, 2000, 4000, 8000, 16000, 30000});
    CHECK(world.asked == std::vector<std::uint64_t>{1000, 2000, 4000, 8000, 16000, 32000, 60000});
    world.pick = [](std::uint64_t) -> std::uint64_t { return 0; };
    CHECK(b.next_delay() == 0ms); // full jitter may reconnect at once
}

TEST_CASE("the counter resets only after a connection lived min-lifetime") {
    FakeWorld world;
    Backoff b = world.make(config_with(Jitter::none));
    CHECK(delays(b, 3) == std::vector<std::int64_t>{1000, 2000, 4000});

    SUBCASE("a short-lived connection does not reset") {
        b.connected();
        world.now += 9'999ms;
        b.disconnected();
        CHECK(b.attempt() == 3);
        CHECK(b.next_delay() == 8000ms);
    }
    SUBCASE("a connection that lived exactly min-lifetime resets") {
        b.connected();
        world.now += 10'000ms;
        b.disconnected();
        CHECK(b.attempt() == 0);
        CHECK(b.next_delay() == 1000ms);
    }
    SUBCASE("time spent failing to connect does not count as lifetime") {
        world.now += 1h;
        b.disconnected(); // an attempt that never connected
        CHECK(b.attempt() == 3);
        b.connected();
        b.disconnected();
        CHECK(b.attempt() == 3);
    }
    SUBCASE("the lifetime is measured from the latest connect") {
        b.connected();
        world.now += 20'000ms;
        b.disconnected();
        CHECK(b.attempt() == 0);
        (void)b.next_delay();
        world.now += 1h; // waiting between connections is not lifetime
        b.connected();
        world.now += 1ms;
        b.disconnected();
        CHECK(b.attempt() == 1);
    }
}

TEST_CASE("a server that accepts and drops cannot cause a tight loop") {
    FakeWorld world;
    Backoff b = world.make(config_with(Jitter::none));
    std::vector<std::int64_t> seen;
    for (int i = 0; i < 10; ++i) {
        const auto wait = b.next_delay();
        seen.push_back(wait.count());
        world.now += wait;
        b.connected();
        world.now += 50ms; // dropped right after the handshake
        b.disconnected();
    }
    CHECK(seen == std::vector<std::int64_t>{1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000,
                                            60000, 60000});
}

TEST_CASE("edge values stay finite and inside the cap") {
    FakeWorld world;
    SUBCASE("factor 1 keeps the base delay") {
        BackoffConfig c = config_with(Jitter::none);
        c.factor = 1.0;
        Backoff b = world.make(c);
        CHECK(delays(b, 4) == std::vector<std::int64_t>{1000, 1000, 1000, 1000});
    }
    SUBCASE("a fractional factor") {
        BackoffConfig c = config_with(Jitter::none);
        c.base = 100ms;
        c.factor = 1.5;
        Backoff b = world.make(c);
        CHECK(delays(b, 4) == std::vector<std::int64_t>{100, 150, 225, 337});
    }
    SUBCASE("a zero base never waits") {
        BackoffConfig c = config_with(Jitter::none);
        c.base = 0ms;
        Backoff b = world.make(c);
        CHECK(delays(b, 3) == std::vector<std::int64_t>{0, 0, 0});
    }
    SUBCASE("a cap below the base wins") {
        BackoffConfig c = config_with(Jitter::none);
        c.cap = 300ms;
        Backoff b = world.make(c);
        CHECK(delays(b, 2) == std::vector<std::int64_t>{300, 300});
    }
    SUBCASE("huge attempt numbers do not overflow") {
        Backoff b = world.make(config_with(Jitter::none));
        CHECK(b.ceiling(5000) == 60'000ms);
        CHECK(b.ceiling(UINT32_MAX) == 60'000ms);
        for (int i = 0; i < 2000; ++i)
            (void)b.next_delay();
        CHECK(b.next_delay() == 60'000ms);
    }
}

TEST_CASE("the default random source stays within bounds") {
    BackoffConfig c = config_with(Jitter::full);
    c.base = 100ms;
    c.cap = 400ms;
    Backoff b(c);
    for (int i = 0; i < 200; ++i) {
        const auto ceiling = b.ceiling(b.attempt());
        const auto d = b.next_delay();
        CHECK(d >= 0ms);
        CHECK(d <= ceiling);
    }
}
