// The lines the collector and the simulator print for whoever runs them (people, and prove, which
// reads them back): each format next to its parser.
//
//   collector, one line per event:  <time> connect n=N peer=HOST:PORT
//                                   <time> disconnect n=N reason=R detail=TEXT
//                                   <time> reconnect n=N delay_ms=D open=O
//   collector, on SIGINT/SIGTERM:   totals messages=M reconnects=R open_connections=O
//   simulator, once bound:          exchange-sim listening on HOST:PORT
#pragma once

#include "conncheck/ws/collector.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace conncheck::ws {

// Without the newline; the peer and the detail sanitized.
[[nodiscard]] std::string format_event(const CollectorEvent& event);
[[nodiscard]] std::string format_totals(const CollectorTotals& totals);

struct CollectorLine {
    enum class Kind { other, reconnect, totals };
    Kind kind = Kind::other;
    std::optional<std::uint64_t> messages;   // totals
    std::optional<std::uint64_t> reconnects; // totals
};
[[nodiscard]] CollectorLine parse_collector_line(std::string_view line);

[[nodiscard]] std::string format_listening(std::string_view address);
// The port of a "listening on" line; nullopt for any other line.
[[nodiscard]] std::optional<std::uint16_t> parse_listening_port(std::string_view line);

} // namespace conncheck::ws
