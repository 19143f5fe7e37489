#include "check.hpp"
#include "human_text.hpp"

#include "conncheck/analysis.hpp"
#include "conncheck/check/evaluator.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/statefile.hpp"
#include "conncheck/text.hpp"
#include "conncheck/thresholds.hpp"

#include <algorithm>
#include <charconv>
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

std::optional<double> percent_option(const std::string& text, std::string_view flag) {
    if (text.empty()) return std::nullopt;
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || !(value > 0 && value <= 100))
        throw Error(Errc::usage, fmt::format("{}: '{}' is not a percentage above 0 and at most 100",
                                             flag, text::sanitize(text, 40)));
    return value;
}

check::Thresholds parse_thresholds(const CheckOptions& o) {
    return check::Thresholds{range_option(o.warning, "--warning"),
                             range_option(o.critical, "--critical"),
                             range_option(o.established_warning, "--established-warning"),
                             range_option(o.established_critical, "--established-critical"),
                             range_option(o.stale_warning, "--stale-warning"),
                             range_option(o.stale_critical, "--stale-critical"),
                             growth_option(o.growth_warning, "--growth-warning"),
                             growth_option(o.growth_critical, "--growth-critical"),
                             percent_option(o.fds_warning, "--fds-warning"),
                             percent_option(o.fds_critical, "--fds-critical"),
                             range_option(o.held_warning, "--held-warning"),
                             range_option(o.held_critical, "--held-critical")};
}

std::string percent_text(const std::optional<double>& p) {
    return p ? thresholds::format_number(*p) + "%" : std::string();
}

std::string range_text(const std::optional<Range>& r) {
    return r ? r->text : std::string();
}

std::string growth_text(const std::optional<thresholds::GrowthThreshold>& g) {
    return g ? g->text : std::string();
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

// "collector[4242]"
std::string process_name(const analysis::ProcessReport& r) {
    return fmt::format("{}[{}]", plugin_text(r.info.comm, 32), r.info.pid);
}

// The status line's part for one process: counts, then what grew.
std::vector<std::string> summary(const check::ProcessVerdict& v, const check::Thresholds& t) {
    const auto& r = v.report;
    std::vector<std::string> out;
    if (v.replaced_pid)
        out.push_back(
            *v.replaced_pid == r.info.pid
                ? std::string("restarted since the last run (same pid, new process)")
                : fmt::format("restarted since the last run (was pid {})", *v.replaced_pid));
    out.push_back(annotated(fmt::format("{} CLOSE_WAIT", v.close_wait_counted), v.close_wait,
                            range_text(t.close_wait_warning), range_text(t.close_wait_critical)));
    if (const auto young = r.states[TcpState::close_wait] - v.close_wait_counted; young != 0)
        out.push_back(fmt::format("{} CLOSE_WAIT too recent to count", young));
    if (r.held_after_close != 0 || v.held_after_close != Status::ok)
        out.push_back(annotated(fmt::format("{} held after close", r.held_after_close),
                                v.held_after_close, range_text(t.held_after_close_warning),
                                range_text(t.held_after_close_critical)));
    out.push_back(annotated(fmt::format("{} ESTABLISHED", r.states[TcpState::established]),
                            v.established, range_text(t.established_warning),
                            range_text(t.established_critical)));
    if (v.stale != Status::ok)
        out.push_back(annotated(fmt::format("{} stale", r.stale), v.stale,
                                range_text(t.stale_warning), range_text(t.stale_critical)));
    if (v.fds != Status::ok)
        out.push_back(annotated(fmt::format("{} of {} fds", r.info.open_fds, r.info.fd_limit.soft),
                                v.fds, percent_text(t.fds_warning_percent),
                                percent_text(t.fds_critical_percent)));
    const auto& g = v.growth;
    if (g.basis != check::GrowthBasis::measured) return out;
    const std::string span = human_duration_ms(static_cast<std::uint64_t>(g.span_ms));
    for (const auto& [label, count] :
         {std::pair{"ESTABLISHED", g.established}, std::pair{"CLOSE_WAIT", g.close_wait},
          std::pair{"held after close", g.held_after_close}, std::pair{"leaked", g.leaked}}) {
        if (count.delta == 0) continue;
        // The leak's total says something new only when it moved apart from CLOSE_WAIT.
        if (std::string_view(label) == "leaked" && count.delta == g.close_wait.delta) continue;
        std::string part = fmt::format("{} {:+} in {}", label, count.delta, span);
        if (g.rated) part += ": " + rate_text(count.per_hour);
        if (g.rated && !count.real) part += " (within its fluctuation)";
        out.push_back(annotated(part, count.status, growth_text(t.growth_warning),
                                growth_text(t.growth_critical)));
    }
    return out;
}

std::string growth_detail(const check::Growth& g) {
    switch (g.basis) {
    case check::GrowthBasis::measured:
        return fmt::format(
            "  growth over {} (since {}): ESTABLISHED {:+}, CLOSE_WAIT {:+}, held after close "
            "{:+}, stale {:+}, leaked {:+}, fds {:+}{}",
            human_duration_ms(static_cast<std::uint64_t>(g.span_ms)),
            text::iso8601_utc(g.since_ms / 1000), g.established.delta, g.close_wait.delta,
            g.held_after_close.delta, g.stale_delta, g.leaked.delta, g.fds_delta,
            g.rated ? std::string()
                    : fmt::format(" (rated per hour once the span reaches {})",
                                  human_duration_ms(check::min_growth_span_ms)));
    case check::GrowthBasis::no_history:
        return {};
    case check::GrowthBasis::clock_moved_back:
        return "  growth: not measured, the clock moved back since the last run";
    case check::GrowthBasis::restarted:
        return "  growth: none measured, the process restarted since the last run (its counts "
               "start afresh)";
    case check::GrowthBasis::first_run:
        return "  growth: none yet, this is the first run with this state file";
    case check::GrowthBasis::new_process:
        return "  growth: none yet, a new process since the last run";
    }
    return {};
}

// The long text -v prints for one process.
std::vector<std::string> details(const check::ProcessVerdict& v) {
    const auto& r = v.report;
    std::vector<std::string> states;
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto s = static_cast<TcpState>(i);
        if (r.states[s] != 0) states.push_back(fmt::format("{} {}", r.states[s], state_label(s)));
    }
    std::vector<std::string> out;
    out.push_back(fmt::format(
        "{} (user {}): {}; TIME_WAIT by cookie {}, by peer {}; {} stale; {} open fds{}; "
        "socket memory {}",
        process_name(r), plugin_text(r.info.user, 32),
        states.empty() ? std::string("no TCP sockets") : fmt::format("{}", fmt::join(states, ", ")),
        r.time_wait_exact, r.time_wait_by_peer, r.stale, r.info.open_fds,
        r.info.fd_limit.soft == 0 ? std::string() : fmt::format(" of {}", r.info.fd_limit.soft),
        human_bytes(r.kernel_memory_bytes)));
    for (const auto& f : r.findings)
        out.push_back(fmt::format("  {} {}: {}", analysis::severity_name(f.severity),
                                  analysis::kind_name(f.kind), plugin_text(f.summary)));
    if (auto growth = growth_detail(v.growth); !growth.empty()) out.push_back(std::move(growth));
    return out;
}

int unknown(std::string_view message) {
    fmt::print("CONNCHECK UNKNOWN - {}\n", plugin_text(message));
    std::fflush(stdout);
    return static_cast<int>(Status::unknown);
}

// What one run works with once its arguments are parsed and the state file is locked.
struct Prepared {
    check::Thresholds thresholds;
    analysis::Config analysis;
    std::uint32_t close_wait_min_age_ms = 0;
    std::string key;
    std::string state_path;
    std::optional<statefile::Lock> lock;
    std::optional<statefile::State> previous;
};

// Takes the state file's lock and reads it, waiting for an overlapping run until shortly before
// our own deadline, then saying so plainly rather than letting the timer cut us off with a vaguer
// message.
void lock_and_load(Prepared& p, std::chrono::steady_clock::time_point started,
                   std::uint64_t timeout_ms) {
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    const auto margin = std::chrono::milliseconds(std::min<std::uint64_t>(timeout_ms / 10, 500));
    const auto lock_wait = std::max(std::chrono::milliseconds(0),
                                    std::chrono::milliseconds(timeout_ms) - elapsed - margin);
    // A file we refuse is refused before the lock file is created: nothing is left beside it.
    // Read again under the lock, since another run may replace it meanwhile.
    // The errors name the state file already.
    (void)statefile::load(p.state_path, p.key);
    p.lock.emplace(statefile::Lock::acquire(p.state_path, lock_wait));
    p.previous = statefile::load(p.state_path, p.key);
}

void print_verdict(const CheckOptions& o, const Prepared& p, const check::Verdict& verdict,
                   const scan::Snapshot& snapshot, std::int64_t now_ms) {
    std::vector<const check::ProcessVerdict*> order;
    for (const auto& v : verdict.processes)
        order.push_back(&v);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
        return thresholds::worst(a->status, b->status) == a->status && a->status != b->status;
    });
    std::vector<std::string> parts;
    std::vector<std::string> perf;
    for (const auto* v : order) {
        parts.push_back(fmt::format("{}: {}", process_name(v->report),
                                    fmt::join(summary(*v, p.thresholds), ", ")));
        for (const auto& d : v->perfdata)
            perf.push_back(
                thresholds::perfdata(d.label, d.value, "", d.warn, d.crit, d.min, d.max));
    }
    for (const auto& u : snapshot.unreadable)
        parts.push_back(fmt::format("{}[{}]: not read", plugin_text(u.comm, 32), u.pid));
    fmt::print("CONNCHECK {} - {} | {}\n", thresholds::status_name(verdict.status),
               fmt::join(parts, "; "), fmt::join(perf, " "));
    if (o.verbose > 0) {
        for (const auto* v : order)
            for (const auto& d : details(*v))
                fmt::print("{}\n", d);
        for (const auto& gone : verdict.gone)
            fmt::print("{}[{}] is gone since the last run\n", plugin_text(gone.comm, 32), gone.pid);
        for (const auto& u : snapshot.unreadable)
            fmt::print("{}[{}] could not be read: {}\n", plugin_text(u.comm, 32), u.pid,
                       plugin_text(u.reason));
        for (const auto& w : snapshot.warnings)
            fmt::print("warning: {}\n", plugin_text(w));
        fmt::print(
            "state file {}{}\n", plugin_text(p.state_path),
            p.previous
                ? fmt::format(", previous run {} ago",
                              human_duration_ms(static_cast<std::uint64_t>(
                                  std::max<std::int64_t>(0, now_ms - p.previous->taken_at_ms))))
                : std::string(", first run"));
    }
    std::fflush(stdout);
}

int check_once(const CheckOptions& o) {
    const auto started = std::chrono::steady_clock::now();
    Prepared p;
    p.thresholds = parse_thresholds(o);
    p.analysis.idle_ms = o.idle_seconds * 1000U;
    p.close_wait_min_age_ms = static_cast<std::uint32_t>(
        duration_option("--close-wait-min-age", o.close_wait_min_age, 0, max_duration_ms));
    const std::uint64_t timeout_ms = duration_option("--timeout", o.timeout, 1, max_duration_ms);
    if (!has_selector(o.selector))
        throw Error(Errc::usage,
                    "check needs the process to watch: --pid, --pidfile, --name, --exe, "
                    "--unit or --cgroup");
    arm_timeout(timeout_ms, o.timeout);

    scan::Scanner scanner(make_scan_config(o.source));
    const select::Selection selection = selection_of(o.selector);
    const select::Resolved selected = select::resolve(selection, scanner.procfs());
    p.key = select::key(selection);
    // Only the default path's directories are ours to create: a --state-file in a directory
    // that does not exist is a mistake to report, not a tree to make.
    if (o.state_file.empty()) {
        p.state_path = for_option("--state-file", [&] { return statefile::default_path(p.key); });
        statefile::make_parent_dirs(p.state_path);
    } else {
        p.state_path = o.state_file;
    }
    lock_and_load(p, started, timeout_ms);

    // The previous run's cookies attribute its sockets' TIME_WAIT. Instances are pid + start
    // time: the scanner forgets the cookies of a pid the kernel gave to another process.
    if (p.previous)
        for (const auto& before : p.previous->processes)
            scanner.remember(before.pid, before.start_ticks, before.cookies);
    const scan::Snapshot snapshot = scan_selected(scanner, selected);
    const auto now = snapshot.taken_at == std::chrono::system_clock::time_point{}
                         ? std::chrono::system_clock::now()
                         : snapshot.taken_at;
    const std::int64_t now_ms = unix_ms(now);

    std::vector<check::Observed> observed;
    for (const auto& ps : snapshot.processes)
        observed.push_back({analysis::analyse_process(ps, p.analysis), check::cookies_of(ps),
                            check::young_close_wait(ps, p.close_wait_min_age_ms)});
    const check::Verdict verdict =
        check::evaluate(observed, p.previous, p.thresholds, check::Run{p.key, now_ms});
    {
        const AlarmBlock hold;
        statefile::save(p.state_path, verdict.next);
    }
    disarm_timeout();
    print_verdict(o, p, verdict, snapshot, now_ms);
    return static_cast<int>(verdict.status);
}

} // namespace

void setup_check(CLI::App& app, CheckOptions& options) {
    app.footer(
        "Output: 'CONNCHECK STATUS - name[pid]: counts | perfdata', then long text with -v.\n"
        "Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also bad arguments, a process that "
        "is gone,\n  no permission, a timeout, a locked or unusable state file). A selected "
        "process that\n  cannot be read is named ('name[pid]: not read') and the others are "
        "checked. See conncheck(1), CHECK.");
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
              "WARNING when the number of stale duplicate connections is outside RANGE (default "
              "0)");
    threshold("--stale-critical", options.stale_critical,
              "CRITICAL when the number of stale duplicate connections is outside RANGE (default "
              "10)");
    threshold("--held-warning", options.held_warning,
              "WARNING when the number of TCP sockets held after TCP closed them (reset by the "
              "peer, timed out) is outside RANGE (default 0)");
    threshold("--held-critical", options.held_critical,
              "CRITICAL when the number of TCP sockets held after close is outside RANGE "
              "(default 10)");
    threshold("--fds-warning", options.fds_warning,
              "WARNING when the open fds reach PCT percent of the soft limit (default 80)", "PCT");
    threshold("--fds-critical", options.fds_critical,
              "CRITICAL when the open fds reach PCT percent of the soft limit (default 95)", "PCT");
    threshold("--growth-warning", options.growth_warning,
              "WARNING when ESTABLISHED, CLOSE_WAIT or the leaked sockets (CLOSE_WAIT + held "
              "after close + stale) grew faster than N per hour since an earlier run (up to 1 h "
              "back; rated once 10 min apart, and with 3 runs or more only when they show real "
              "growth, not fluctuation)",
              "N/h");
    threshold("--growth-critical", options.growth_critical,
              "CRITICAL when ESTABLISHED, CLOSE_WAIT or the leaked sockets grew faster than N per "
              "hour",
              "N/h");
    add_idle_option(app, options.idle_seconds);
    app.add_option("--close-wait-min-age", options.close_wait_min_age,
                   "Count a CLOSE_WAIT only once its peer has been silent for DURATION (default "
                   "0s: at once), so keep-alives a server has just closed do not warn")
        ->type_name("DURATION");
    app.add_option("--state-file", options.state_file,
                   "Keep the previous run's counts and socket cookies in PATH (default "
                   "$STATE_DIRECTORY/SELECTOR.json in a systemd unit, "
                   "/var/lib/conncheck/SELECTOR.json as root, else "
                   "$XDG_STATE_HOME/conncheck/SELECTOR.json; a link or non-regular file is "
                   "refused)")
        ->type_name("PATH")
        ->check(non_empty("PATH"));
    app.add_option("-t,--timeout", options.timeout,
                   "UNKNOWN when the check takes longer than DURATION (default 10s)")
        ->type_name("DURATION");
    app.add_flag("-v,--verbose", options.verbose,
                 "Long text after the status line: every state, findings, growth, state file");
    add_source_options(app, options.source);
}

int check_usage_error(std::string_view message) {
    return unknown(message);
}

int run_check(const CheckOptions& options) {
    try {
        return check_once(options);
    } catch (const Error& e) {
        disarm_timeout();
        return unknown(e.what());
    } catch (const std::exception& e) {
        disarm_timeout();
        return unknown(fmt::format("internal error: {}", e.what()));
    }
}

} // namespace conncheck::cli
