#include "collector.hpp"

#include "common.hpp"
#include "conncheck/error.hpp"
#include "conncheck/text.hpp"
#include "conncheck/ws/address.hpp"
#include "conncheck/ws/collector.hpp"
#include "conncheck/ws/log_lines.hpp"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fmt/core.h>
#include <string>

namespace conncheck::cli {

namespace {

std::chrono::milliseconds milliseconds_option(std::string_view flag, const std::string& value,
                                              bool allow_zero) {
    return std::chrono::milliseconds(static_cast<std::int64_t>(
        duration_option(flag, value, allow_zero ? 0 : 1, max_duration_ms)));
}

double factor_option(const std::string& value) {
    try {
        std::size_t used = 0;
        const double factor = std::stod(value, &used);
        if (used == value.size() && std::isfinite(factor) && factor >= 1.0 && factor <= 100.0)
            return factor;
    } catch (const std::exception&) {
    }
    throw Error(Errc::usage, fmt::format("invalid --backoff '{}': expected a factor from 1 to 100",
                                         text::sanitize(value, 40)));
}

// One line per event, flushed at once: `conncheck prove` and people read this as it happens.
void print_event(const ws::CollectorEvent& event) {
    fmt::print("{}\n", ws::format_event(event));
    std::fflush(stdout);
}

} // namespace

void setup_collector(CLI::App& sub, CollectorOptions& options) {
    sub.add_option("--url", options.url, "ws:// or wss:// URL to connect to (required)")
        ->type_name("URL");
    sub.add_flag("--leaky", options.leaky,
                 "Keep the incident's bug: abandon each old connection without reading or "
                 "closing it (peers' FINs leave CLOSE_WAIT, silent streams ESTABLISHED zombies)");
    sub.add_option("--subscribe", options.subscribe,
                   "Text message (e.g. JSON) sent after every connect")
        ->type_name("TEXT");
    sub.add_option("--heartbeat-timeout", options.heartbeat_timeout,
                   "Reconnect when nothing was received for this long; also bounds connecting")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_option("--reconnect-delay", options.reconnect_delay,
                   "Base delay of the exponential backoff")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_option("--backoff", options.backoff, "Backoff factor per failed attempt (1 to 100)")
        ->capture_default_str()
        ->type_name("FACTOR");
    sub.add_option("--max-delay", options.max_delay, "Cap of the backoff delay")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_option("--jitter", options.jitter,
                   "full: sleep a random time up to the backoff delay; none: sleep exactly it")
        ->capture_default_str()
        ->type_name("full|none");
    sub.add_option("--close-timeout", options.close_timeout,
                   "Fixed mode: how long the close handshake may take before the TCP socket is "
                   "closed anyway")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_option("--min-lifetime", options.min_lifetime,
                   "A connection must live this long before the backoff attempt counter resets")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_flag("--insecure", options.insecure,
                 "wss:// without certificate and host-name verification. For testing only");
    sub.footer("Durations: 250ms, 1.5s, 10m, 2h; a bare number is seconds.\n"
               "Output lines: '<time> connect n=N peer=ADDR:PORT', '<time> disconnect n=N "
               "reason=error|eof|close|heartbeat-timeout detail=TEXT', '<time> reconnect n=N "
               "delay_ms=D open=O', and at exit 'totals messages=M reconnects=R "
               "open_connections=O'.");
}

int run_collector(const CollectorOptions& options) {
    if (options.url.empty())
        throw Error(Errc::usage, "collector needs --url ws://HOST:PORT/PATH or wss://...");
    ws::CollectorConfig config;
    (void)for_option("--url", [&] { return ws::parse_ws_url(options.url); });
    config.url = options.url;
    config.leaky = options.leaky;
    config.subscribe = options.subscribe;
    config.insecure = options.insecure;
    config.heartbeat_timeout =
        milliseconds_option("--heartbeat-timeout", options.heartbeat_timeout, false);
    config.close_timeout = milliseconds_option("--close-timeout", options.close_timeout, true);
    config.backoff.base = milliseconds_option("--reconnect-delay", options.reconnect_delay, true);
    config.backoff.cap = milliseconds_option("--max-delay", options.max_delay, true);
    config.backoff.min_lifetime = milliseconds_option("--min-lifetime", options.min_lifetime, true);
    config.backoff.factor = factor_option(options.backoff);
    if (options.jitter == "full")
        config.backoff.jitter = ws::Jitter::full;
    else if (options.jitter == "none")
        config.backoff.jitter = ws::Jitter::none;
    else
        throw Error(Errc::usage, fmt::format("invalid --jitter '{}': expected full or none",
                                             text::sanitize(options.jitter, 40)));

    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    ws::Collector collector(config, print_event);
    const ws::CollectorTotals totals = collector.run({SIGINT, SIGTERM});
    fmt::print("{}\n", ws::format_totals(totals));
    std::fflush(stdout);
    return exit_code::ok;
}

} // namespace conncheck::cli
