#include "prove.hpp"

#include "common.hpp"
#include "conncheck/error.hpp"
#include "conncheck/files.hpp"
#include "conncheck/prove.hpp"
#include "conncheck/prove_output.hpp"
#include "conncheck/prove_sample.hpp"
#include "conncheck/text.hpp"
#include "conncheck/ws/exchange_sim.hpp"
#include "conncheck/ws/log_lines.hpp"
#include "prove_children.hpp"
#include "prove_render.hpp"
#include "prove_svg.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace conncheck::cli {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view url_placeholder = "{url}";

struct Settings {
    std::uint64_t duration_ms = 0;
    std::uint64_t fault_after_ms = 0;
    std::uint64_t interval_ms = 0;
    std::uint64_t reconnect_delay_ms = 0;
    std::uint64_t heartbeat_ms = 0;
    std::uint64_t close_timeout_ms = 0;
    std::uint64_t min_lifetime_ms = 0;
};

Settings validate(const ProveOptions& o) {
    Settings s;
    s.duration_ms = duration_option("--duration", o.duration, 1000, 86'400'000);
    s.fault_after_ms = duration_option("--fault-after", o.fault_after, 1, 3'600'000);
    s.interval_ms = duration_option("--interval", o.interval, 50, 10'000);
    s.reconnect_delay_ms = duration_option("--reconnect-delay", o.reconnect_delay, 0, 60'000);
    if (s.interval_ms > s.duration_ms)
        throw Error(Errc::usage, "--interval is longer than --duration");
    if (o.rate < 1 || o.rate > 10'000)
        throw Error(Errc::usage, fmt::format("--rate: {} is out of range (1 to 10000)", o.rate));
    (void)for_option("--faults", [&] { return ws::parse_faults(o.faults); });
    if (!o.cmd.empty() && o.cmd.find(url_placeholder) == std::string::npos)
        throw Error(Errc::usage, "--cmd must contain {url}, the simulator's address for it");
    // A silent stream is noticed after heartbeat_ms without messages: a few message intervals.
    s.heartbeat_ms = std::max<std::uint64_t>(50, 5 * 1000 / o.rate);
    s.close_timeout_ms = 50;
    // Each connection lives at least fault_after_ms: backoff resets after every one of them,
    // so the reference collectors reconnect after reconnect_delay_ms, not an ever longer wait.
    s.min_lifetime_ms = std::max<std::uint64_t>(1, s.fault_after_ms / 2);
    return s;
}

std::string ms_arg(std::uint64_t ms) {
    return fmt::format("{}ms", ms);
}

struct Slot {
    Slot(std::string k, std::string l, bool is_command)
        : key(std::move(k)), label(std::move(l)), command(is_command) {}
    std::string key;
    std::string label;
    bool command = false;
    std::optional<ProveChild> sim;
    std::optional<ProveChild> collector;
    std::uint16_t port = 0;
    std::uint64_t reconnect_lines = 0;
    std::optional<std::uint64_t> totals_reconnects;
    std::optional<std::uint64_t> totals_messages;
    std::vector<prove::Sample> samples;
    std::uint64_t connections_seen = 0;

    [[nodiscard]] std::uint64_t reconnects() const {
        if (command) return connections_seen > 0 ? connections_seen - 1 : 0;
        return totals_reconnects.value_or(reconnect_lines);
    }
};

void collector_line(Slot& slot, const std::string& line) {
    const ws::CollectorLine parsed = ws::parse_collector_line(line);
    if (parsed.kind == ws::CollectorLine::Kind::totals) {
        slot.totals_reconnects = parsed.reconnects;
        slot.totals_messages = parsed.messages;
    } else if (parsed.kind == ws::CollectorLine::Kind::reconnect) {
        ++slot.reconnect_lines;
    }
}

std::string url_for(std::uint16_t port) {
    return fmt::format("ws://127.0.0.1:{}/ws/btcusdt@trade", port);
}

std::string replace_all(std::string text, std::string_view from, const std::string& to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    return text;
}

std::string last_words(const ProveChild& child) {
    const auto& tail = child.stderr_tail();
    return tail.empty() ? std::string() : ": " + text::sanitize(tail.back(), 200);
}

std::string progress_line(double elapsed, double total, const std::vector<Slot>& slots) {
    std::string line = fmt::format("prove {:.1f}/{:.0f}s", elapsed, total);
    for (const auto& s : slots) {
        if (s.samples.empty()) continue;
        const auto& x = s.samples.back();
        line += fmt::format("  | {} E {} CW {} TW {} rc {}", s.command ? "cmd" : s.key,
                            x.established, x.close_wait, x.time_wait, x.reconnects);
    }
    return line;
}

// The processes below the slot's collector: the reference collector itself, or the whole
// tree under a command's guard.
std::vector<pid_t> slot_pids(const Slot& slot, const proc::ProcFs& procfs) {
    if (!slot.collector) return {};
    if (!slot.command) return {slot.collector->pid()};
    return procfs.descendants(slot.collector->pid());
}

// Stops every child on every way out of run_prove: collectors first (they print their totals),
// then the simulators, then whatever a command left behind.
class Fleet {
public:
    explicit Fleet(std::vector<Slot>& slots) : slots_(slots) {}
    ~Fleet() { stop(); }
    Fleet(const Fleet&) = delete;
    Fleet& operator=(const Fleet&) = delete;
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        std::vector<ProveChild*> collectors;
        std::vector<Slot*> owners;
        for (auto& s : slots_)
            if (s.collector) {
                collectors.push_back(&*s.collector);
                owners.push_back(&s);
            }
        stop_children(collectors, milliseconds(3000), [&](std::size_t i, const std::string& l) {
            if (!owners[i]->command) collector_line(*owners[i], l);
        });
        std::vector<ProveChild*> sims;
        for (auto& s : slots_)
            if (s.sim) sims.push_back(&*s.sim);
        stop_children(sims, milliseconds(2000), [](std::size_t, const std::string&) {});
        left_behind_ = sweep_descendants();
    }
    [[nodiscard]] std::size_t left_behind() const { return left_behind_; }

private:
    std::vector<Slot>& slots_;
    bool stopped_ = false;
    std::size_t left_behind_ = 0;
};

std::vector<ProveChild*> all_children(std::vector<Slot>& slots) {
    std::vector<ProveChild*> out;
    for (auto& s : slots) {
        if (s.sim) out.push_back(&*s.sim);
        if (s.collector) out.push_back(&*s.collector);
    }
    return out;
}

// Waits for every simulator's "listening on" line.
void start_simulators(std::vector<Slot>& slots, const ProveOptions& o, const Settings& st) {
    for (auto& s : slots)
        s.sim.emplace(
            ProveChild::program(fmt::format("the simulator for the {} collector", s.label),
                                {"/proc/self/exe", "exchange-sim", "--listen", "127.0.0.1:0",
                                 "--rate", std::to_string(o.rate), "--fault-after",
                                 ms_arg(st.fault_after_ms), "--faults", o.faults}));
    const auto deadline = Clock::now() + milliseconds(10'000);
    for (;;) {
        bool all = true;
        for (auto& s : slots) {
            for (const auto& line : s.sim->read_lines())
                if (s.port == 0)
                    if (auto port = ws::parse_listening_port(line)) s.port = *port;
            if (s.port == 0 && !s.sim->running())
                throw Error(Errc::io, fmt::format("{} {} before it listened{}", s.sim->role(),
                                                  s.sim->exit_description(), last_words(*s.sim)));
            all = all && s.port != 0;
        }
        if (all) return;
        if (ProveSignals::received() != 0) return;
        if (Clock::now() >= deadline)
            throw Error(Errc::timeout,
                        "the exchange simulators did not start listening within 10 s");
        auto children = all_children(slots);
        wait_for_output(children, milliseconds(50));
    }
}

void start_collectors(std::vector<Slot>& slots, const ProveOptions& o, const Settings& st) {
    for (auto& s : slots) {
        const std::string url = url_for(s.port);
        if (s.command) {
            s.collector.emplace(
                ProveChild::shell("your command", replace_all(o.cmd, url_placeholder, url)));
            continue;
        }
        std::vector<std::string> argv{"/proc/self/exe",
                                      "collector",
                                      "--url",
                                      url,
                                      "--reconnect-delay",
                                      ms_arg(st.reconnect_delay_ms),
                                      "--jitter",
                                      "none",
                                      "--min-lifetime",
                                      ms_arg(st.min_lifetime_ms),
                                      "--heartbeat-timeout",
                                      ms_arg(st.heartbeat_ms),
                                      "--close-timeout",
                                      ms_arg(st.close_timeout_ms)};
        if (s.key == "leaky") argv.emplace_back("--leaky");
        s.collector.emplace(ProveChild::program(fmt::format("the {} collector", s.label), argv));
    }
}

void take_sample(std::vector<Slot>& slots, prove::Sampler& sampler, double t) {
    std::vector<prove::CollectorProcesses> groups;
    for (const auto& s : slots)
        groups.push_back({slot_pids(s, sampler.procfs()), s.port});
    const auto samples = sampler.sample(groups);
    for (std::size_t i = 0; i < slots.size(); ++i) {
        slots[i].connections_seen = sampler.connections_seen(i);
        if (!samples[i]) continue;
        prove::Sample s = *samples[i];
        s.t_seconds = t;
        s.reconnects = slots[i].command ? slots[i].reconnects() : slots[i].reconnect_lines;
        slots[i].samples.push_back(s);
    }
}

// Created before the run, so that a path that cannot be written is refused at once, not after
// a minute of proving; written and renamed into place at the end.
std::optional<files::OutputFile> open_output(const std::string& path, const char* flag) {
    if (path.empty()) return std::nullopt;
    return for_option(flag, [&] { return files::OutputFile::create(path, 0644); });
}

void finish_output(std::optional<files::OutputFile>& out, const std::ostringstream& content) {
    out->write(content.str());
    out->finish(false);
}

struct RunEnd {
    int signo = 0;       // the signal that stopped the run early, 0 for none
    double elapsed = 0;  // seconds since the collectors started
    std::string failure; // a child that died, empty for none
};

// Samples the collectors every interval until the duration is over, a signal arrives or a child
// dies, reading their output meanwhile.
RunEnd run_collectors(std::vector<Slot>& slots, prove::Sampler& sampler, const Settings& st,
                      Progress& progress) {
    RunEnd end;
    const auto t0 = Clock::now();
    const auto deadline = t0 + milliseconds(st.duration_ms);
    auto next_sample = t0;
    const auto seconds_since = [&](Clock::time_point t) {
        return std::chrono::duration<double>(t - t0).count();
    };
    while (ProveSignals::received() == 0 && end.failure.empty()) {
        for (auto& s : slots) {
            for (const auto& line : s.collector->read_lines())
                if (!s.command) collector_line(s, line);
            s.sim->read_lines();
            for (auto* child : {&*s.sim, &*s.collector})
                if (!child->running() && end.failure.empty())
                    end.failure = fmt::format("{} {} after {:.1f} s{}", child->role(),
                                              child->exit_description(),
                                              seconds_since(Clock::now()), last_words(*child));
        }
        const auto now = Clock::now();
        if (!end.failure.empty() || now >= deadline) break;
        if (now >= next_sample) {
            take_sample(slots, sampler, seconds_since(now));
            while (next_sample <= now)
                next_sample += milliseconds(st.interval_ms);
            progress.show(progress_line(seconds_since(now), st.duration_ms / 1000.0, slots));
        }
        const auto wake = std::min(next_sample, deadline);
        auto children = all_children(slots);
        wait_for_output(children,
                        std::chrono::ceil<milliseconds>(wake - Clock::now()) + milliseconds(1));
    }
    end.signo = ProveSignals::received();
    end.elapsed = seconds_since(Clock::now());
    if (end.signo == 0 && end.failure.empty()) take_sample(slots, sampler, end.elapsed);
    return end;
}

prove::Report make_report(std::vector<Slot>& slots, const ProveOptions& options, const Settings& st,
                          const RunEnd& end) {
    prove::Report report;
    report.run.interrupted = end.signo != 0;
    report.run.duration_seconds = end.signo != 0 ? end.elapsed : st.duration_ms / 1000.0;
    report.run.fault_after_ms = st.fault_after_ms;
    report.run.interval_ms = st.interval_ms;
    report.run.rate = options.rate;
    report.run.faults = options.faults;
    report.run.command = text::sanitize(options.cmd, 200);
    for (auto& s : slots) {
        prove::CollectorRun c;
        c.key = s.key;
        c.label = s.label;
        c.pid = s.collector->pid();
        c.port = s.port;
        c.samples = std::move(s.samples);
        c.reconnects = s.reconnects();
        c.reconnects_source = s.command ? "cookies" : s.totals_reconnects ? "totals" : "log";
        c.connections_seen = s.connections_seen;
        c.messages = s.totals_messages;
        report.collectors.push_back(std::move(c));
        report.simulator_pids.push_back(s.sim->pid());
    }
    return report;
}

} // namespace

void setup_prove(CLI::App& app, ProveOptions& options) {
    app.add_option("--duration", options.duration,
                   "How long the collectors run (default 60s, 1s to 24h): 5s, 60s, 10m")
        ->type_name("DURATION");
    app.add_option("--fault-after", options.fault_after,
                   "Each connection meets its fault this long after it opened (default 50ms: "
                   "60 s then hold about 600 reconnects, the incident's 15 hours)")
        ->type_name("DURATION");
    app.add_option("--faults", options.faults,
                   "Faults the simulators apply in turn, comma-separated (default "
                   "silent,fin,close,rst)")
        ->type_name("LIST");
    app.add_option("--cmd", options.cmd,
                   "Also run your own collector: a shell command in which {url} is replaced by "
                   "its simulator's ws:// address; the exit status then follows its verdict")
        ->type_name("COMMAND");
    app.add_flag("--json", options.json,
                 "Print the table, growth, verdicts and a summary of each series as one JSON "
                 "object");
    app.add_option("--svg", options.svg,
                   "Write a line chart of the run (one panel per collector) to FILE")
        ->type_name("FILE")
        ->check(non_empty("FILE"));
    app.add_option("--csv", options.csv,
                   "Write the time series to FILE: t_seconds, collector, established, "
                   "close_wait, time_wait, total, kernel_memory_bytes, reconnects")
        ->type_name("FILE")
        ->check(non_empty("FILE"));
    app.add_option("--interval", options.interval,
                   "Time between samples of the collectors' sockets (default 250ms, 50ms to 10s)")
        ->type_name("DURATION");
    app.add_option("--rate", options.rate,
                   "Messages per second each simulator sends on a connection (default 200)")
        ->type_name("N");
    app.add_option("--reconnect-delay", options.reconnect_delay,
                   "The reference collectors' reconnect delay (default 20ms, no jitter)")
        ->type_name("DURATION");
    app.footer("Exit status: 0 the leaky collector leaks and the fixed one does not (with --cmd: "
               "your command shows no leak), 1 otherwise (a leak, too few reconnects to judge, a "
               "child that failed), 2 bad arguments, 128+N stopped by signal N.");
}

int run_prove(const ProveOptions& options) {
    const Settings st = validate(options);
    std::optional<files::OutputFile> svg_out = open_output(options.svg, "--svg");
    std::optional<files::OutputFile> csv_out = open_output(options.csv, "--csv");

    std::vector<Slot> slots;
    slots.emplace_back("leaky", "leaky", false);
    slots.emplace_back("fixed", "fixed", false);
    if (!options.cmd.empty()) slots.emplace_back("command", "your command", true);

    ProveSignals signals;
    become_subreaper();
    Progress progress;
    Fleet fleet(slots);

    progress.show("prove: starting the exchange simulators");
    start_simulators(slots, options, st);
    prove::Sampler sampler(scan::Config{}, slots.size());
    const auto started_unix = std::chrono::duration_cast<std::chrono::seconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
    if (ProveSignals::received() == 0) start_collectors(slots, options, st);
    const RunEnd end = run_collectors(slots, sampler, st, progress);
    progress.show("prove: stopping the collectors and simulators");
    fleet.stop();
    progress.clear();

    const bool started = std::all_of(slots.begin(), slots.end(),
                                     [](const Slot& s) { return s.collector.has_value(); });
    if (end.signo != 0) {
        fmt::print(stderr,
                   "conncheck: prove interrupted by {} after {:.1f} s; every child "
                   "stopped{}\n",
                   sigabbrev_np(end.signo) ? fmt::format("SIG{}", sigabbrev_np(end.signo))
                                           : "a signal",
                   started ? end.elapsed : 0.0, started ? ", the counts so far follow" : "");
        if (!started) return 128 + end.signo;
    }
    if (!end.failure.empty()) {
        std::fflush(stdout);
        fmt::print(stderr, "conncheck: {}; nothing proven\n", end.failure);
        return exit_code::failure;
    }

    prove::Report report = make_report(slots, options, st, end);
    report.run.started_unix = started_unix;
    report.left_behind = fleet.left_behind();
    if (csv_out) {
        std::ostringstream csv;
        prove::write_csv(csv, report);
        finish_output(csv_out, csv);
    }
    if (svg_out) {
        std::ostringstream svg;
        write_svg(svg, report);
        finish_output(svg_out, svg);
    }
    if (options.json)
        fmt::print("{}\n", prove::to_json(report).dump(2));
    else
        print_prove_table(report);
    if (end.signo != 0) return 128 + end.signo;
    return prove::decide(report).ok ? exit_code::ok : exit_code::failure;
}

} // namespace conncheck::cli
