#include "conncheck/ws/log_lines.hpp"

#include "conncheck/text.hpp"

#include <charconv>
#include <chrono>
#include <fmt/core.h>

namespace conncheck::ws {

namespace {

constexpr std::string_view totals_prefix = "totals ";
constexpr std::string_view reconnect_marker = " reconnect n=";
constexpr std::string_view listening_prefix = "exchange-sim listening on ";

std::string stamp(std::chrono::system_clock::time_point at) {
    return text::iso8601_utc(
        std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count());
}

// The number after " key=" (or "key=" at the start), up to the next non-digit.
std::optional<std::uint64_t> field(std::string_view line, std::string_view key) {
    const std::string needle = fmt::format(" {}=", key);
    const auto at = line.find(needle);
    if (at == std::string_view::npos) return std::nullopt;
    const char* begin = line.data() + at + needle.size();
    const char* end = line.data() + line.size();
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, value);
    if (ec != std::errc{} || ptr == begin) return std::nullopt;
    return value;
}

} // namespace

std::string format_event(const CollectorEvent& event) {
    using Kind = CollectorEvent::Kind;
    switch (event.kind) {
    case Kind::connect:
        return fmt::format("{} connect n={} peer={}", stamp(event.at), event.n,
                           text::sanitize(event.peer, 64));
    case Kind::disconnect:
        return fmt::format("{} disconnect n={} reason={} detail={}", stamp(event.at), event.n,
                           end_reason_name(event.reason), text::sanitize(event.detail, 200));
    case Kind::reconnect:
        return fmt::format("{}{}{} delay_ms={} open={}", stamp(event.at), reconnect_marker, event.n,
                           event.delay_ms, event.open);
    }
    return {};
}

std::string format_totals(const CollectorTotals& totals) {
    return fmt::format("{}messages={} reconnects={} open_connections={}", totals_prefix,
                       totals.messages, totals.reconnects, totals.open_connections);
}

CollectorLine parse_collector_line(std::string_view line) {
    CollectorLine out;
    if (line.substr(0, totals_prefix.size()) == totals_prefix) {
        // " key=" finds the first field too: the prefix ends in a space.
        out.kind = CollectorLine::Kind::totals;
        out.messages = field(line, "messages");
        out.reconnects = field(line, "reconnects");
    } else if (const auto space = line.find(' ');
               space != std::string_view::npos &&
               line.substr(space, reconnect_marker.size()) == reconnect_marker) {
        // Right after the time: a disconnect's detail (peer text) cannot pass for one.
        out.kind = CollectorLine::Kind::reconnect;
    }
    return out;
}

std::string format_listening(std::string_view address) {
    return fmt::format("{}{}", listening_prefix, address);
}

std::optional<std::uint16_t> parse_listening_port(std::string_view line) {
    if (line.substr(0, listening_prefix.size()) != listening_prefix) return std::nullopt;
    const auto colon = line.rfind(':');
    if (colon == std::string_view::npos || colon < listening_prefix.size()) return std::nullopt;
    const char* begin = line.data() + colon + 1;
    const char* end = line.data() + line.size();
    unsigned long port = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, port);
    if (ec != std::errc{} || ptr == begin || port == 0 || port > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(port);
}

} // namespace conncheck::ws
