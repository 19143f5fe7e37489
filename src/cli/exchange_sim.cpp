#include "exchange_sim.hpp"

#include "common.hpp"
#include "conncheck/error.hpp"
#include "conncheck/text.hpp"
#include "conncheck/ws/address.hpp"
#include "conncheck/ws/exchange_sim.hpp"
#include "conncheck/ws/log_lines.hpp"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fmt/core.h>
#include <string>
#include <sys/resource.h>

namespace conncheck::cli {

namespace {

double rate_option(const std::string& value) {
    try {
        std::size_t used = 0;
        const double rate = std::stod(value, &used);
        if (used == value.size() && std::isfinite(rate) && rate > 0 && rate <= 100'000) return rate;
    } catch (const std::exception&) {
    }
    throw Error(Errc::usage,
                fmt::format("invalid --rate '{}': expected messages per second, more than 0 and "
                            "at most 100000",
                            text::sanitize(value, 40)));
}

// A leaky client holds hundreds of connections to us: use the hard limit on open files.
void raise_open_files_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

} // namespace

void setup_exchange_sim(CLI::App& sub, ExchangeSimOptions& options) {
    sub.add_option("--listen", options.listen,
                   "HOST:PORT to listen on; port 0 picks a free one. Keep it on loopback")
        ->capture_default_str()
        ->type_name("HOST:PORT");
    sub.add_option("--rate", options.rate, "Trade messages per second per connection")
        ->capture_default_str()
        ->type_name("N");
    sub.add_option("--fault-after", options.fault_after,
                   "How long into each connection the next fault strikes")
        ->capture_default_str()
        ->type_name("DURATION");
    sub.add_option("--faults", options.faults,
                   "Comma-separated faults applied in turn: silent (stop sending, keep TCP "
                   "open), fin (FIN without a close frame), close (a proper close frame), rst "
                   "(abortive close)")
        ->capture_default_str()
        ->type_name("LIST");
    sub.footer("Durations: 250ms, 1.5s, 10m; a bare number is seconds.");
}

int run_exchange_sim(const ExchangeSimOptions& options) {
    ws::SimulatorConfig config;
    const ws::ListenAddress listen =
        for_option("--listen", [&] { return ws::parse_listen_address(options.listen); });
    config.host = listen.host;
    config.port = listen.port;
    config.rate = rate_option(options.rate);
    config.fault_after = std::chrono::milliseconds(static_cast<std::int64_t>(
        duration_option("--fault-after", options.fault_after, 0, max_duration_ms)));
    config.faults = for_option("--faults", [&] { return ws::parse_faults(options.faults); });

    raise_open_files_limit();
    ws::ExchangeSim sim(
        config, [](const std::string& line) { fmt::print(stderr, "exchange-sim: {}\n", line); });
    if (!sim.loopback())
        fmt::print(stderr,
                   "conncheck: warning: exchange-sim listens on {}, which is not a loopback "
                   "address: other machines can connect to it\n",
                   sim.bound_address());
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    fmt::print("{}\n", ws::format_listening(sim.bound_address()));
    std::fflush(stdout);
    const ws::SimulatorStats stats = sim.run({SIGINT, SIGTERM});
    fmt::print(stderr,
               "exchange-sim: served {} connections, {} messages; faults silent={} fin={} "
               "close={} rst={}; {} still open\n",
               stats.connections, stats.messages, stats.faults[0], stats.faults[1], stats.faults[2],
               stats.faults[3], stats.open);
    return exit_code::ok;
}

} // namespace conncheck::cli
