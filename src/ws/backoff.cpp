#include "conncheck/ws/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <utility>

namespace conncheck::ws {

namespace {

Backoff::Random default_random() {
    auto engine = std::make_shared<std::mt19937_64>(std::random_device{}());
    return [engine](std::uint64_t max) {
        return std::uniform_int_distribution<std::uint64_t>(0, max)(*engine);
    };
}

} // namespace

Backoff::Backoff(BackoffConfig config, Clock clock, Random random)
    : config_(config), clock_(std::move(clock)), random_(std::move(random)) {}

Backoff::Backoff(BackoffConfig config)
    : Backoff(
          config, [] { return std::chrono::steady_clock::now(); }, default_random()) {}

void Backoff::connected() {
    up_ = true;
    connected_at_ = clock_();
}

void Backoff::disconnected() {
    if (up_ && clock_() - connected_at_ >= config_.min_lifetime) attempt_ = 0;
    up_ = false;
}

std::chrono::milliseconds Backoff::ceiling(std::uint32_t attempt) const {
    const auto cap = static_cast<double>(std::max<std::int64_t>(config_.cap.count(), 0));
    const auto base = static_cast<double>(std::max<std::int64_t>(config_.base.count(), 0));
    const double factor = std::max(config_.factor, 1.0);
    // pow() overflows to inf for large attempts; min() with the cap keeps the result finite.
    const double raw = base * std::pow(factor, static_cast<double>(attempt));
    const double bounded = std::isfinite(raw) ? std::min(raw, cap) : cap;
    return std::chrono::milliseconds(static_cast<std::int64_t>(bounded));
}

std::chrono::milliseconds Backoff::next_delay() {
    const auto top = ceiling(attempt_);
    if (attempt_ < UINT32_MAX) ++attempt_;
    if (config_.jitter == Jitter::none) return top;
    return std::chrono::milliseconds(
        static_cast<std::int64_t>(random_(static_cast<std::uint64_t>(top.count()))));
}

} // namespace conncheck::ws
