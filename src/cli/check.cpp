#include "check.hpp"

#include "conncheck/analysis.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/statefile.hpp"
#include "conncheck/text.hpp"
#include "conncheck/thresholds.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fmt/core.h>
#include <fmt/format.h>
#include <optional>
#include <sys/time.h>
#include <unistd.h>

namespace conncheck::cli {

namespace {

using thresholds::Range;
using thresholds::Status;

// Shorter spans turn one connection more or less into a rate of dozens per hour: growth is shown
// from the second run on, but only rated (and alerted on) over at least this long.
constexpr std::int64_t min_growth_span_ms = 10 * 60 * 1000;

// --- the timeout: the scan is fast, but a hung /proc read or a held lock must not hang the
// monitoring system's worker; SIGALRM prints the UNKNOWN line itself and exits.
char timeout_line[160];
std::size_t timeout_line_length = 0;

extern "C" void on_timeout(int /*signal*/) {
    const ssize_t ignored = ::write(STDOUT_FILENO, timeout_line, timeout_line_length);
    (void)ignored;
    ::_exit(check_unknown);
}

void arm_timeout(std::uint64_t ms, const std::string& text) {
    const std::string line = fmt::format("CONNCHECK UNKNOWN - timed out after {} (-t/--timeout)\n",
                                         text::sanitize(text, 20));
    timeout_line_length = std::min(line.size(), sizeof timeout_line);
    std::memcpy(timeout_line, line.data(), timeout_line_length);
    struct sigaction action {};
    action.sa_handler = on_timeout;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGALRM, &action, nullptr);
    itimerval timer{};
    timer.it_value.tv_sec = static_cast<time_t>(ms / 1000);
    timer.it_value.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
    ::setitimer(ITIMER_REAL, &timer, nullptr);
}

void disarm_timeout() {
    itimerval off{};
    ::setitimer(ITIMER_REAL, &off, nullptr);
}

// The state file is written with SIGALRM held, so that a timeout never strikes mid-rename; a
// deadline passing meanwhile is delivered (and reported) right after.
class AlarmBlock {
public:
    AlarmBlock() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGALRM);
        ::sigprocmask(SIG_BLOCK, &set, &old_);
    }
    ~AlarmBlock() { ::sigprocmask(SIG_SETMASK, &old_, nullptr); }
    AlarmBlock(const AlarmBlock&) = delete;
    AlarmBlock& operator=(const AlarmBlock&) = delete;

private:
    sigset_t old_{};
};

// Plugin output is one line and '|' starts the perfdata: neither may come from a process name.
std::string plugin_text(std::string_view raw, std::size_t width = std::string::npos) {
    std::string out;
    for (const char c : text::sanitize(raw, width)) {
        if (c == '|')
            out += "\\x7c";
        else
            out += c;
    }
    return out;
}

std::optional<Range> range_option(const std::string& text, std::string_view flag) {
    if (text.empty()) return std::nullopt; // an explicitly empty RANGE switches it off
    try {
        return thresholds::parse_range(text);
    } catch (const Error& e) {
        throw Error(Errc::usage, fmt::format("{}: {}", flag, e.what()));
    }
}

std::optional<thresholds::GrowthThreshold> growth_option(const std::string& text,
                                                         std::string_view flag) {
    if (text.empty()) return std::nullopt;
    try {
        return thresholds::parse_growth(text);
    } catch (const Error& e) {
        throw Error(Errc::usage, fmt::format("{}: {}", flag, e.what()));
    }
}

struct Thresholds {
    std::optional<Range> close_wait_warning;
    std::optional<Range> close_wait_critical;
    std::optional<Range> established_warning;
    std::optional<Range> established_critical;
    std::optional<Range> stale_warning;
    std::optional<Range> stale_critical;
    std::optional<thresholds::GrowthThreshold> growth_warning;
    std::optional<thresholds::GrowthThreshold> growth_critical;
};

Thresholds parse_thresholds(const CheckOptions& o) {
    return Thresholds{range_option(o.warning, "--warning"),
                      range_option(o.critical, "--critical"),
                      range_option(o.established_warning, "--established-warning"),
                      range_option(o.established_critical, "--established-critical"),
                      range_option(o.stale_warning, "--stale-warning"),
                      range_option(o.stale_critical, "--stale-critical"),
                      growth_option(o.growth_warning, "--growth-warning"),
                      growth_option(o.growth_critical, "--growth-critical")};
}

std::string range_text(const std::optional<Range>& r) {
    return r ? r->text : std::string();
}

// "12 CLOSE_WAIT (crit 10)"
std::string annotated(std::string base, Status status, const std::string& warn,
                      const std::string& crit) {
    if (status == Status::critical) return fmt::format("{} (crit {})", base, crit);
    if (status == Status::warning) return fmt::format("{} (warn {})", base, warn);
    return base;
}

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string rate_text(double per_hour) {
    return std::abs(per_hour) >= 1 ? fmt::format("{:+.1f}/h", per_hour)
                                   : fmt::format("{:+.2f}/h", per_hour);
}

// What one process contributes to the output.
struct Evaluation {
    Status status = Status::ok;
    std::string name; // "collector[4242]"
    std::vector<std::string> summary;
    std::vector<std::string> perf;
    std::vector<std::string> details;
};

class Evaluator {
public:
    Evaluator(const Thresholds& t, bool several, std::int64_t now_ms)
        : t_(t), several_(several), now_ms_(now_ms) {}

    // `previous`: the same process instance in the state file; `replaced`: the instance this one
    // replaced (a restart), when known.
    Evaluation evaluate(const analysis::ProcessReport& r, const statefile::ProcessState* previous,
                        const statefile::ProcessState* replaced, bool first_run) const {
        Evaluation e;
        e.name = fmt::format("{}[{}]", plugin_text(r.info.comm, 32), r.info.pid);
        const std::string suffix = several_ ? fmt::format("_{}", r.info.pid) : std::string();
        if (replaced != nullptr)
            e.summary.push_back(
                replaced->pid == r.info.pid
                    ? std::string("restarted since the last run (same pid, new "
                                  "process)")
                    : fmt::format("restarted since the last run (was pid {})", replaced->pid));

        const auto cw = r.states[TcpState::close_wait];
        const auto est = r.states[TcpState::established];
        const auto cw_status = thresholds::evaluate(static_cast<double>(cw), t_.close_wait_warning,
                                                    t_.close_wait_critical);
        const auto est_status = thresholds::evaluate(
            static_cast<double>(est), t_.established_warning, t_.established_critical);
        const auto stale_status =
            thresholds::evaluate(static_cast<double>(r.stale), t_.stale_warning, t_.stale_critical);
        e.status = thresholds::worst(cw_status, thresholds::worst(est_status, stale_status));
        e.summary.push_back(annotated(fmt::format("{} CLOSE_WAIT", cw), cw_status,
                                      range_text(t_.close_wait_warning),
                                      range_text(t_.close_wait_critical)));
        e.summary.push_back(annotated(fmt::format("{} ESTABLISHED", est), est_status,
                                      range_text(t_.established_warning),
                                      range_text(t_.established_critical)));
        if (stale_status != Status::ok)
            e.summary.push_back(annotated(fmt::format("{} stale", r.stale), stale_status,
                                          range_text(t_.stale_warning),
                                          range_text(t_.stale_critical)));

        // A count: minimum 0, thresholds as typed.
        const auto count = [&](const char* label, std::uint64_t value,
                               const std::optional<Range>& warn, const std::optional<Range>& crit,
                               std::optional<double> max = std::nullopt) {
            e.perf.push_back(thresholds::perfdata(label + suffix, static_cast<double>(value), "",
                                                  range_text(warn), range_text(crit), 0.0, max));
        };
        count("close_wait", cw, t_.close_wait_warning, t_.close_wait_critical);
        count("established", est, t_.established_warning, t_.established_critical);
        count("time_wait", r.states[TcpState::time_wait], std::nullopt, std::nullopt);
        count("stale", r.stale, t_.stale_warning, t_.stale_critical);
        const auto limit = r.info.fd_limit.soft;
        count("fds", r.info.open_fds, std::nullopt, std::nullopt,
              limit == 0 ? std::nullopt : std::optional<double>(static_cast<double>(limit)));

        describe(r, e);
        if (previous != nullptr)
            growth(r, *previous, suffix, e);
        else if (replaced != nullptr)
            e.details.push_back("  growth: none measured, the process restarted since the last "
                                "run (its counts start afresh)");
        else if (first_run)
            e.details.push_back("  growth: none yet, this is the first run with this state file");
        else
            e.details.push_back("  growth: none yet, a new process since the last run");
        return e;
    }

private:
    void describe(const analysis::ProcessReport& r, Evaluation& e) const {
        std::vector<std::string> states;
        for (std::size_t i = 1; i < tcp_state_count; ++i) {
            const auto s = static_cast<TcpState>(i);
            if (r.states[s] != 0)
                states.push_back(fmt::format("{} {}", r.states[s], state_label(s)));
        }
        e.details.push_back(fmt::format(
            "{} (user {}): {}; TIME_WAIT by cookie {}, by peer {}; {} stale; {} open fds{}; "
            "socket memory {}",
            e.name, plugin_text(r.info.user, 32),
            states.empty() ? std::string("no TCP sockets")
                           : fmt::format("{}", fmt::join(states, ", ")),
            r.time_wait_exact, r.time_wait_by_peer, r.stale, r.info.open_fds,
            r.info.fd_limit.soft == 0 ? std::string() : fmt::format(" of {}", r.info.fd_limit.soft),
            text::human_bytes(r.kernel_memory_bytes)));
        for (const auto& f : r.findings)
            e.details.push_back(fmt::format("  {} {}: {}", analysis::severity_name(f.severity),
                                            analysis::kind_name(f.kind), plugin_text(f.summary)));
    }

    void growth(const analysis::ProcessReport& r, const statefile::ProcessState& previous,
                const std::string& suffix, Evaluation& e) const {
        const auto base = statefile::growth_base(previous.history, now_ms_);
        if (!base) return;
        const std::int64_t span = now_ms_ - base->taken_at_ms;
        if (span <= 0) {
            e.details.push_back("  growth: not measured, the clock moved back since the last run");
            return;
        }
        const std::string span_text = text::human_duration_ms(static_cast<std::uint64_t>(span));
        const bool rated = span >= min_growth_span_ms;
        const double hours = static_cast<double>(span) / 3'600'000.0;
        struct Tracked {
            const char* label;
            const char* perf;
            std::int64_t delta;
        };
        const auto delta = [](std::uint64_t now, std::uint64_t then) {
            return static_cast<std::int64_t>(now) - static_cast<std::int64_t>(then);
        };
        const Tracked tracked[] = {
            {"ESTABLISHED", "established_growth",
             delta(r.states[TcpState::established], base->established)},
            {"CLOSE_WAIT", "close_wait_growth",
             delta(r.states[TcpState::close_wait], base->close_wait)},
        };
        for (const auto& g : tracked) {
            const double rate = static_cast<double>(g.delta) / hours;
            Status status = Status::ok;
            if (rated) {
                if (t_.growth_critical && t_.growth_critical->alerts(rate))
                    status = Status::critical;
                else if (t_.growth_warning && t_.growth_warning->alerts(rate))
                    status = Status::warning;
                e.perf.push_back(thresholds::perfdata(
                    g.perf + suffix, rate, "",
                    t_.growth_warning ? t_.growth_warning->as_range() : std::string(),
                    t_.growth_critical ? t_.growth_critical->as_range() : std::string(),
                    std::nullopt, std::nullopt));
            }
            e.status = thresholds::worst(e.status, status);
            if (g.delta == 0) continue;
            std::string text = fmt::format("{} {:+} in {}", g.label, g.delta, span_text);
            if (rated) text += ": " + rate_text(rate);
            e.summary.push_back(
                annotated(text, status, t_.growth_warning ? t_.growth_warning->text : std::string(),
                          t_.growth_critical ? t_.growth_critical->text : std::string()));
        }
        e.details.push_back(fmt::format(
            "  growth over {} (since {}): ESTABLISHED {:+}, CLOSE_WAIT {:+}, stale {:+}, fds "
            "{:+}{}",
            span_text, text::iso8601_utc(base->taken_at_ms / 1000),
            delta(r.states[TcpState::established], base->established),
            delta(r.states[TcpState::close_wait], base->close_wait), delta(r.stale, base->stale),
            delta(r.info.open_fds, base->fds),
            rated ? std::string()
                  : fmt::format(" (rated per hour once the span reaches {})",
                                text::human_duration_ms(min_growth_span_ms))));
    }

    const Thresholds& t_;
    bool several_;
    std::int64_t now_ms_;
};

int unknown(std::string_view message) {
    fmt::print("CONNCHECK UNKNOWN - {}\n", plugin_text(message));
    std::fflush(stdout);
    return static_cast<int>(Status::unknown);
}

int check(const CheckOptions& o) {
    const auto started = std::chrono::steady_clock::now();
    const Thresholds thresholds = parse_thresholds(o);
    std::uint64_t timeout_ms = 0;
    if (!text::parse_duration_ms(o.timeout, timeout_ms) || timeout_ms == 0)
        throw Error(Errc::usage, fmt::format("--timeout: '{}' is not a positive duration (10s, "
                                             "1500ms, 1m)",
                                             text::sanitize(o.timeout, 40)));
    if (!has_selector(o.selector))
        throw Error(Errc::usage, "check needs the process to watch: --pid, --pidfile or --name");
    arm_timeout(timeout_ms, o.timeout);

    scan::Scanner scanner(make_scan_config(o.source));
    const std::vector<pid_t> pids = resolve_selector(o.selector, scanner.procfs());
    const std::string key = selector_key(o.selector);
    const std::string state_path =
        o.state_file.empty() ? statefile::default_path(key) : o.state_file;
    statefile::make_parent_dirs(state_path);

    // Wait for an overlapping run until shortly before our own deadline, then say so plainly
    // rather than let the timer cut us off with a vaguer message.
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    const auto margin = std::chrono::milliseconds(std::min<std::uint64_t>(timeout_ms / 10, 500));
    const auto lock_wait = std::max(std::chrono::milliseconds(0),
                                    std::chrono::milliseconds(timeout_ms) - elapsed - margin);
    const auto lock = statefile::Lock::acquire(state_path, lock_wait);
    const auto previous = statefile::load(state_path, key);

    // Instances are pid + start time: a pid the kernel reused is another process.
    scan::CookieOwners known;
    if (previous)
        for (const pid_t pid : pids) {
            const auto start_ticks = scanner.procfs().read_info(pid).start_ticks;
            for (const auto& p : previous->processes)
                if (p.pid == pid && p.start_ticks == start_ticks)
                    for (const auto cookie : p.cookies)
                        known.emplace(cookie, pid);
        }
    const scan::Snapshot snapshot = scanner.scan_pids(pids, &known);
    const auto now = snapshot.taken_at == std::chrono::system_clock::time_point{}
                         ? std::chrono::system_clock::now()
                         : snapshot.taken_at;
    const std::int64_t now_ms = unix_ms(now);

    const analysis::Config config;

    std::vector<const statefile::ProcessState*> unmatched;
    if (previous)
        for (const auto& p : previous->processes)
            unmatched.push_back(&p);
    const auto take = [&unmatched](auto predicate) -> const statefile::ProcessState* {
        const auto it = std::find_if(unmatched.begin(), unmatched.end(), predicate);
        if (it == unmatched.end()) return nullptr;
        const auto* found = *it;
        unmatched.erase(it);
        return found;
    };

    statefile::State next;
    next.selector = key;
    next.taken_at_ms = now_ms;
    std::vector<analysis::ProcessReport> reports;
    std::vector<const statefile::ProcessState*> same;
    for (const auto& ps : snapshot.processes) {
        reports.push_back(analysis::analyse_process(ps, config));
        const auto& info = ps.info;
        same.push_back(take([&](const statefile::ProcessState* p) {
            return p->pid == info.pid && p->start_ticks == info.start_ticks;
        }));
    }
    // A restart: a new instance where an old one of the same name is gone. With one process on
    // each side the names need not match (an exec may change comm).
    std::vector<const statefile::ProcessState*> replaced(reports.size(), nullptr);
    for (std::size_t i = 0; i < reports.size(); ++i)
        if (same[i] == nullptr)
            replaced[i] = take(
                [&](const statefile::ProcessState* p) { return p->comm == reports[i].info.comm; });
    if (reports.size() == 1 && same[0] == nullptr && replaced[0] == nullptr &&
        unmatched.size() == 1) {
        replaced[0] = unmatched.front();
        unmatched.clear();
    }

    Evaluator evaluator(thresholds, reports.size() > 1, now_ms);
    std::vector<Evaluation> evaluations;
    for (std::size_t i = 0; i < reports.size(); ++i) {
        const auto& r = reports[i];
        evaluations.push_back(evaluator.evaluate(r, same[i], replaced[i], !previous.has_value()));
        statefile::ProcessState state;
        state.pid = r.info.pid;
        state.start_ticks = r.info.start_ticks;
        state.comm = r.info.comm;
        state.states = r.states;
        state.stale = r.stale;
        state.fds = r.info.open_fds;
        for (const auto& s : snapshot.processes[i].sockets)
            if (s.cookie != 0) state.cookies.push_back(s.cookie);
        if (same[i] != nullptr) state.history = same[i]->history;
        statefile::add_sample(state.history,
                              statefile::Sample{now_ms, r.states[TcpState::established],
                                                r.states[TcpState::close_wait], r.stale,
                                                r.info.open_fds});
        next.processes.push_back(std::move(state));
    }
    {
        const AlarmBlock hold;
        statefile::save(state_path, next);
    }
    disarm_timeout();

    Status overall = Status::ok;
    for (const auto& e : evaluations)
        overall = thresholds::worst(overall, e.status);
    std::stable_sort(evaluations.begin(), evaluations.end(), [](const auto& a, const auto& b) {
        return thresholds::worst(a.status, b.status) == a.status && a.status != b.status;
    });
    std::vector<std::string> parts;
    std::vector<std::string> perf;
    for (const auto& e : evaluations) {
        parts.push_back(fmt::format("{}: {}", e.name, fmt::join(e.summary, ", ")));
        perf.insert(perf.end(), e.perf.begin(), e.perf.end());
    }
    fmt::print("CONNCHECK {} - {} | {}\n", thresholds::status_name(overall), fmt::join(parts, "; "),
               fmt::join(perf, " "));
    if (o.verbose > 0) {
        for (const auto& e : evaluations)
            for (const auto& d : e.details)
                fmt::print("{}\n", d);
        for (const auto* gone : unmatched)
            fmt::print("{}[{}] is gone since the last run\n", plugin_text(gone->comm, 32),
                       gone->pid);
        for (const auto& w : snapshot.warnings)
            fmt::print("warning: {}\n", plugin_text(w));
        fmt::print(
            "state file {}{}\n", plugin_text(state_path),
            previous ? fmt::format(", previous run {} ago",
                                   text::human_duration_ms(static_cast<std::uint64_t>(
                                       std::max<std::int64_t>(0, now_ms - previous->taken_at_ms))))
                     : std::string(", first run"));
    }
    std::fflush(stdout);
    return static_cast<int>(overall);
}

} // namespace

void setup_check(CLI::App& app, CheckOptions& options) {
    app.footer(
        "Output: 'CONNCHECK STATUS - name[pid]: counts | perfdata', then long text with -v.\n"
        "Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also bad arguments, a process that "
        "is gone,\n  no permission, a timeout, a locked or unusable state file). "
        "See conncheck(1), CHECK.");
    // -V and -h are reserved by the Monitoring Plugins guidelines; -V works here too.
    app.set_version_flag("-V,--version", CONNCHECK_VERSION);
    add_selector_options(app, options.selector);
    const char* thresholds = "Thresholds (RANGE: 10 = outside 0..10, 10: = below 10, ~:10 = "
                             "above 10, 10:20 = outside, @10:20 = inside; '' = off)";
    const auto threshold = [&](const char* flags, std::string& value, const char* help,
                               const char* type = "RANGE") {
        app.add_option(flags, value, help)->type_name(type)->group(thresholds);
    };
    threshold("-w,--warning", options.warning,
              "WARNING when the CLOSE_WAIT count is outside RANGE (default 0)");
    threshold("-c,--critical", options.critical,
              "CRITICAL when the CLOSE_WAIT count is outside RANGE (default 10)");
    threshold("--established-warning", options.established_warning,
              "WARNING when the ESTABLISHED count is outside RANGE");
    threshold("--established-critical", options.established_critical,
              "CRITICAL when the ESTABLISHED count is outside RANGE");
    threshold("--stale-warning", options.stale_warning,
              "WARNING when the number of stale duplicate connections is outside RANGE");
    threshold("--stale-critical", options.stale_critical,
              "CRITICAL when the number of stale duplicate connections is outside RANGE");
    threshold("--growth-warning", options.growth_warning,
              "WARNING when ESTABLISHED or CLOSE_WAIT grew faster than N per hour since an "
              "earlier run (up to 1 h back; rated once 10 min apart)",
              "N/h");
    threshold("--growth-critical", options.growth_critical,
              "CRITICAL when ESTABLISHED or CLOSE_WAIT grew faster than N per hour", "N/h");
    app.add_option("--state-file", options.state_file,
                   "Keep the previous run's counts and socket cookies in PATH (default "
                   "/var/lib/conncheck/SELECTOR.json as root, else "
                   "$XDG_STATE_HOME/conncheck/SELECTOR.json)")
        ->type_name("PATH");
    app.add_option("-t,--timeout", options.timeout,
                   "UNKNOWN when the check takes longer than DURATION (default 10s)")
        ->type_name("DURATION");
    app.add_flag("-v,--verbose", options.verbose,
                 "Long text after the status line: every state, findings, growth, state file");
    add_source_options(app, options.source);
}

int run_check(const CheckOptions& options) {
    try {
        return check(options);
    } catch (const Error& e) {
        disarm_timeout();
        return unknown(e.what());
    } catch (const std::exception& e) {
        disarm_timeout();
        return unknown(fmt::format("internal error: {}", e.what()));
    }
}

} // namespace conncheck::cli
