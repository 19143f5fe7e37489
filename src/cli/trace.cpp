#include "trace.hpp"

#include "human_text.hpp"

#include "conncheck/error.hpp"
#include "conncheck/fd.hpp"
#include "conncheck/privilege.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/text.hpp"
#include "conncheck/trace/json.hpp"
#include "conncheck/trace/last_data.hpp"
#include "conncheck/trace/ledger.hpp"
#include "conncheck/trace/probe.hpp"
#include "conncheck/trace/symbolize.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <fmt/core.h>
#include <fmt/ranges.h>
#include <functional>
#include <map>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace conncheck::cli {

namespace {

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int sig) {
    g_stop = sig;
}

// SIGINT, SIGTERM and SIGHUP end the trace (and print the ledger). They stay blocked except while
// waiting in ppoll(), so none can slip in between a check and the wait.
class StopSignals {
public:
    StopSignals() {
        g_stop = 0;
        sigset_t set;
        sigemptyset(&set);
        for (int i = 0; i < 3; ++i) {
            struct sigaction sa {};
            sa.sa_handler = on_signal;
            sigemptyset(&sa.sa_mask);
            ::sigaction(signals_[i], &sa, &previous_[i]);
            sigaddset(&set, signals_[i]);
        }
        ::sigprocmask(SIG_BLOCK, &set, &blocked_before_);
    }
    ~StopSignals() {
        ::sigprocmask(SIG_SETMASK, &blocked_before_, nullptr);
        for (int i = 0; i < 3; ++i)
            ::sigaction(signals_[i], &previous_[i], nullptr);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;
    [[nodiscard]] const sigset_t& wait_mask() const { return blocked_before_; }

private:
    const int signals_[3] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction previous_[3] = {};
    sigset_t blocked_before_{};
};

std::uint64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// HH:MM:SS.mmm (UTC) of a wall_time() string.
std::string clock_of(const std::string& iso) {
    return iso.substr(11, 12);
}

// The call site from the first frame in the user's code outward: libc's wrapper and the runtime
// below it are folded (site_folded() says how many; --json keeps them all).
std::string site_line(const trace::CallSite& site) {
    if (site.frames.empty())
        return text::sanitize(site.stops.empty() ? std::string("(no stack)") : site.stops);
    std::string out;
    for (std::size_t i = trace::first_user_frame(site).value_or(0); i < site.frames.size(); ++i) {
        if (!out.empty()) out += " <- ";
        out += text::sanitize(trace::frame_text(site.frames[i]));
    }
    return out;
}

// What a group's call site line leaves to other lines: the folded frames, where the stack
// stops, a runtime's note.
void print_site_notes(const trace::CallSite& site) {
    const auto user = trace::first_user_frame(site);
    if (user && *user > 0)
        fmt::print("  (the first frame in the user's code; {} frame{} of libc or the runtime below "
                   "it folded)\n",
                   *user, *user == 1 ? "" : "s");
    if (!user && !site.frames.empty()) fmt::print("  (no frame in the user's code)\n");
    if (!site.complete && !site.frames.empty())
        fmt::print("  (stack stops: {})\n", text::sanitize(site.stops));
    if (!site.note.empty()) fmt::print("  ({})\n", text::sanitize(site.note));
}

std::string peer_label(const trace::PeerKey& peer) {
    return peer.accepted ? peer.endpoint.address_string() + " (accepted)"
                         : peer.endpoint.to_string();
}

std::string ms_since(std::uint64_t from_ns, std::uint64_t to_ns) {
    return human_duration_ms((to_ns - std::min(to_ns, from_ns)) / 1'000'000);
}

class Printer {
public:
    Printer(bool json, std::int64_t offset, std::uint64_t close_wait_min_age_ms)
        : json_(json), offset_(offset), lines_(offset),
          close_wait_min_age_ms_(close_wait_min_age_ms) {}

    // `known` is the ledger's record of the connection: its endpoints outlive the socket's (the
    // kernel clears the local port once the socket is unhashed).
    void event(const trace::Event& e, const trace::CallSite& site, const trace::Connection* known) {
        if (json_) {
            lines_.append(pending_, e, site);
            if (pending_.size() >= flush_bytes) write_pending();
            return;
        }
        const std::string at = clock_of(trace::wall_time(e.time_ns, offset_));
        if (e.kind == trace::EventKind::exit) {
            fmt::print("{} exit      pid {}: the process is exiting\n", at, e.pid);
            return;
        }
        if (e.kind == trace::EventKind::listen) {
            fmt::print("{} listen    pid {} tid {} ({}) {}: its accepted connections are followed "
                       "from here\n",
                       at, e.pid, e.tid, text::sanitize(e.thread, 16), e.local.to_string());
            return;
        }
        const std::string ends =
            known ? fmt::format("{} -> {}", known->local.to_string(), known->remote.to_string())
                  : fmt::format("{} -> {}", e.local.to_string(), e.remote.to_string());
        switch (e.kind) {
        case trace::EventKind::opened:
            fmt::print("{} {:<9} #{} pid {} tid {} ({}) {} cookie {} at {}{}\n", at,
                       e.accepted ? "accepted" : "connect", e.connection, e.pid, e.tid,
                       text::sanitize(e.thread, 16), ends,
                       e.cookie != 0 ? fmt::format("{:#x}", e.cookie) : std::string("-"),
                       site_line(site),
                       site.complete || site.frames.empty()
                           ? ""
                           : fmt::format(" [stack stops: {}]", text::sanitize(site.stops)));
            break;
        case trace::EventKind::state:
            if (trace::hands_to_time_wait(e))
                fmt::print("{} time-wait #{} {} -> TIME_WAIT until {} {}\n", at, e.connection,
                           state_label(e.old_state),
                           clock_of(trace::wall_time(e.time_ns + trace::time_wait_ns, offset_)),
                           ends);
            else
                fmt::print("{} state     #{} {} -> {} {}{}\n", at, e.connection,
                           state_label(e.old_state), state_label(e.new_state), ends,
                           e.socket_error != 0 ? fmt::format(" (error {})", e.socket_error)
                                               : std::string());
            break;
        case trace::EventKind::reset:
            fmt::print("{} reset     #{} RST received in {} {}\n", at, e.connection,
                       state_label(e.new_state), ends);
            break;
        case trace::EventKind::resumed:
            fmt::print("{} resumed   #{} data after {} of silence {}\n", at, e.connection,
                       human_duration_ms(e.silence_ns / 1'000'000), ends);
            break;
        case trace::EventKind::destroyed:
            fmt::print("{} destroyed #{} {}\n", at, e.connection, ends);
            break;
        case trace::EventKind::exit:
        case trace::EventKind::listen:
            break;
        }
    }

    // Writes out what the events so far printed: after each drain, so that a reader following
    // the output sees them within Probe::drain_interval.
    void flush() {
        write_pending();
        std::fflush(stdout);
    }

    void ledger(const trace::LedgerReport& r, const trace::ProbeCounters& counters) {
        flush();
        if (json_) {
            fmt::print("{}\n", trace::ledger_json(r, counters, offset_).dump());
            std::fflush(stdout);
            return;
        }
        const auto wall = [&](std::uint64_t ns) { return clock_of(trace::wall_time(ns, offset_)); };
        fmt::print("\nLedger: {} traced ({} to {} UTC): {} connections opened, {} still held, "
                   "{} leaked\n",
                   ms_since(r.start_ns, r.end_ns), wall(r.start_ns), wall(r.end_ns), r.connections,
                   r.held, leaked(r));
        for (const auto& [pid, ns] : r.exited)
            fmt::print("  pid {} exited at {}: the ledger shows what it held then\n", pid,
                       wall(ns));
        if (r.last_data_unknown != 0)
            fmt::print("  not judged for zombies: {} held ESTABLISHED connections whose last data "
                       "is unknown (the process exited, or its sockets could not be read)\n",
                       r.last_data_unknown);
        if (counters.untracked_connections != 0 || counters.lost_events != 0)
            fmt::print("  not followed: {} connections over --max-connections, {} events lost "
                       "(ring buffer full)\n",
                       counters.untracked_connections, counters.lost_events);
        if (!r.incomplete.empty())
            fmt::print("  not judged: {} connection{} with records lost (ring buffer full): #{}\n",
                       r.incomplete.size(), r.incomplete.size() == 1 ? "" : "s",
                       fmt::join(r.incomplete, ", #"));
        if (r.groups.empty()) fmt::print("\nNo leaked connections.\n");
        for (const auto& g : r.groups) {
            fmt::print("\n{} leaked, opened at {}\n", g.leaks.size(), site_line(g.call_site));
            print_site_notes(g.call_site);
            fmt::print("  thread {}, peer {}\n", text::sanitize(g.thread, 16), peer_label(g.peer));
            for (const auto& l : g.leaks) {
                const auto& c = l.connection;
                if (l.kind == trace::LeakKind::reset)
                    fmt::print("  #{} cookie {:#x} {} opened {}: reset by the peer at {}, never "
                               "closed here, {} since\n",
                               c.id, c.cookie, c.local.to_string(), wall(c.opened_ns),
                               wall(l.since_ns), ms_since(l.since_ns, r.end_ns));
                else if (l.kind == trace::LeakKind::timed_out)
                    fmt::print("  #{} cookie {:#x} {} opened {}: TCP gave up at {} (timed out), "
                               "never closed here, {} since\n",
                               c.id, c.cookie, c.local.to_string(), wall(c.opened_ns),
                               wall(l.since_ns), ms_since(l.since_ns, r.end_ns));
                else if (l.kind == trace::LeakKind::close_wait)
                    fmt::print("  #{} cookie {:#x} {} opened {}: CLOSE_WAIT, peer closed at {}, "
                               "never closed here, {} since\n",
                               c.id, c.cookie, c.local.to_string(), wall(c.opened_ns),
                               wall(l.since_ns), ms_since(l.since_ns, r.end_ns));
                else
                    fmt::print("  #{} cookie {:#x} {} opened {}: ESTABLISHED zombie, silent since "
                               "{}, a new connection to the same peer opened at {} (#{} cookie "
                               "{:#x}) and this one was never closed\n",
                               c.id, c.cookie, c.local.to_string(), wall(c.opened_ns),
                               wall(l.since_ns), wall(l.successor_opened_ns), l.successor,
                               l.successor_cookie);
                if (c.closed_by_exit)
                    fmt::print("    (closed by the kernel when the process exited)\n");
            }
        }
        if (!r.not_closed_yet.empty())
            fmt::print("\n{} CLOSE_WAIT not closed yet (the peer closed less than {} before the "
                       "end, --close-wait-min-age), not counted as leaked\n",
                       r.not_closed_yet.size(), human_duration_ms(close_wait_min_age_ms_));
        for (const auto& l : r.not_closed_yet)
            fmt::print("  #{} cookie {:#x} {} to {}: peer closed at {}, {} ago\n", l.connection.id,
                       l.connection.cookie, l.connection.local.to_string(),
                       peer_label(trace::peer_of(l.connection)), wall(l.since_ns),
                       ms_since(l.since_ns, r.end_ns));
        if (r.peers.empty()) return;
        fmt::print("\n{:<28} {:>6} {:>6} {:>5} {:>9} {:>9} {:>12} {:>26} {:>12}\n", "PEER",
                   "OPENED", "ENDED", "HELD", "OPENS/MIN", "ENDS/MIN", "TIME_WAIT",
                   "RECONNECT MIN/MED/MAX", "OLDEST HELD");
        const auto seconds = [](const std::optional<std::uint64_t>& ns) {
            return ns ? human_duration_ms(*ns / 1'000'000) : std::string("-");
        };
        for (const auto& p : r.peers)
            fmt::print("{:<28} {:>6} {:>6} {:>5} {:>9.1f} {:>9.1f} {:>12} {:>26} {:>12}\n",
                       peer_label(p.peer), p.opened, p.ended, p.held, p.opens_per_minute,
                       p.ends_per_minute,
                       fmt::format("{} now/{}", p.time_wait_now, p.time_wait_handed),
                       fmt::format("{}/{}/{}", seconds(p.reconnect_min_ns),
                                   seconds(p.reconnect_median_ns), seconds(p.reconnect_max_ns)),
                       p.oldest_held_opened_ns ? ms_since(*p.oldest_held_opened_ns, r.end_ns)
                                               : std::string("-"));
        std::fflush(stdout);
    }

private:
    static std::size_t leaked(const trace::LedgerReport& r) {
        std::size_t n = 0;
        for (const auto& g : r.groups)
            n += g.leaks.size();
        return n;
    }
    void write_pending() {
        std::fwrite(pending_.data(), 1, pending_.size(), stdout);
        pending_.clear();
    }
    // JSON lines are collected and written in pieces of about this size.
    static constexpr std::size_t flush_bytes = 64 * 1024;
    bool json_;
    std::int64_t offset_;
    trace::EventJsonWriter lines_;
    std::uint64_t close_wait_min_age_ms_;
    std::string pending_;
};

// Whether one of the processes already has a listening socket, so accept() must be followed
// from the start. When their sockets cannot be read, assume so: a missed accept is worse than
// the slower system calls.
bool any_listening(const std::vector<pid_t>& pids) {
    try {
        scan::Scanner scanner(scan::Config{});
        return scan::any_listening(scanner.scan_pids(pids));
    } catch (const Error&) {
        return true;
    }
}

// Gives the held connections of the processes still running when data last arrived on them, from
// one scan at the end: what a zombie is judged by. When it cannot be had, says why on stderr and
// returns false; the ledger counts the connections left unjudged.
bool note_last_data(trace::Ledger& ledger, const std::vector<pid_t>& pids) {
    const bool wanted =
        std::any_of(ledger.connections().begin(), ledger.connections().end(), [](const auto& c) {
            return c.second.held() && !c.second.closed_by_exit &&
                   c.second.state == TcpState::established;
        });
    if (!wanted) return true;
    try {
        const std::uint64_t start = monotonic_ns();
        scan::Scanner scanner(scan::Config{});
        const scan::RunningScan scanned = scanner.scan_running(pids);
        if (!scanned.snapshot) return true;
        for (const auto& [id, ns] : trace::last_data_times(ledger, *scanned.snapshot, start))
            ledger.note_last_data(id, ns);
        return true;
    } catch (const Error& e) {
        fmt::print(stderr, "conncheck: no idle times at the end, zombies not judged: {}\n",
                   text::one_line(e.what()));
        return false;
    }
}

// A call site is named from /proc/PID/maps, /proc/PID/auxv and the files mapped there, which the
// kernel shows only to a ptrace reader (CAP_PERFMON opens maps, not auxv, a mode 0400 file):
// another user's process would look as if its mappings were gone. Says for each process that
// refuses them why its call sites stay unnamed.
std::map<pid_t, std::string> unnamed_call_sites(const std::vector<pid_t>& pids) {
    std::map<pid_t, std::string> refused;
    for (pid_t pid : pids) {
        for (const char* file : {"maps", "auxv"}) {
            const std::string path = fmt::format("/proc/{}/{}", pid, file);
            const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            char byte = 0;
            if (fd.get() >= 0 && ::read(fd.get(), &byte, 1) >= 0) continue;
            if (errno != EACCES && errno != EPERM) continue;
            refused[pid] = fmt::format("call site not named: {} may not be read ({})", path,
                                       privilege::hint(privilege::Access::process_maps));
            fmt::print(stderr, "conncheck: process {}: {}\n", pid, refused[pid]);
            break;
        }
    }
    return refused;
}

int open_pidfd(pid_t pid) {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) throw_errno(fmt::format("process {}", pid), errno, Errc::no_such_process);
    return static_cast<int>(fd);
}

// Hands the probe's events to `handle` until a signal, the deadline (0: none) or the exit of
// every process (its pidfd becomes readable). The kernel does not wake us for every event:
// the probe is drained at least every Probe::drain_interval.
void follow(trace::Probe& probe, const std::vector<int>& pidfds, std::uint64_t deadline,
            const std::function<void(const trace::Event&)>& handle, Printer& printer,
            const StopSignals& signals) {
    std::vector<pollfd> fds;
    fds.push_back({probe.wait_fd(), POLLIN, 0});
    for (int fd : pidfds)
        fds.push_back({fd, POLLIN, 0});
    std::size_t running = pidfds.size();
    constexpr auto drain_ns =
        static_cast<std::uint64_t>(std::chrono::nanoseconds(trace::Probe::drain_interval).count());
    while (g_stop == 0 && running > 0) {
        const std::uint64_t now = monotonic_ns();
        if (deadline && now >= deadline) break;
        const std::uint64_t wait_ns =
            deadline ? std::min<std::uint64_t>(deadline - now, drain_ns) : drain_ns;
        const timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000ULL),
                               static_cast<long>(wait_ns % 1'000'000'000ULL)};
        const int ready = ::ppoll(fds.data(), fds.size(), &timeout, &signals.wait_mask());
        if (ready < 0 && errno != EINTR) throw_errno("cannot wait for events", errno);
        probe.drain(handle);
        printer.flush();
        running = 0;
        for (std::size_t i = 1; i < fds.size(); ++i) {
            if (fds[i].revents & POLLIN) fds[i].fd = -1; // exited: ppoll ignores it from now on
            if (fds[i].fd >= 0) ++running;
        }
    }
}

} // namespace

void setup_trace(CLI::App& app, TraceOptions& options) {
    app.footer(
        "Needs eBPF: a kernel with BTF, and CAP_BPF + CAP_PERFMON (or root); without it "
        "trace exits 6 and says which is missing.\nCall sites and idle times of another user's "
        "process also take CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.\nFollows "
        "connections opened after it starts;\naccepted ones once a process listens (a 'listen' "
        "event). Exit status: 0 the ledger was printed; 2 bad arguments;\n3 no such process; 5 "
        "the process exited before the trace began; 6 eBPF unavailable; 8 the ledger was "
        "printed\nwithout call sites or idle times that could not be read (stderr says why).\n"
        "Call sites: the frame pointers; for a "
        "program without them, 8 KiB of its stack copied at each connect and unwound from "
        "its\nunwind tables (a few us more per connection); Go's full stacks; CPython 3.11 "
        "(python3.11, a venv, libpython3.11.so): the\nPython frames as file.py:LINE in "
        "Class.function, read from the interpreter's memory without touching it; node.js: "
        "out of\nscope, and said so. Leaks are grouped by the first frame in the user's own "
        "code. See conncheck(1), TRACE.");
    add_selector_options(app, options.selector);
    app.add_option("--for", options.for_duration,
                   "Stop after this long (e.g. 30s, 10m, 1h) and print the ledger; default: "
                   "until Ctrl-C or the processes exit")
        ->type_name("DURATION")
        ->check(non_empty("DURATION"));
    app.add_option("--silence", options.silence,
                   "A held connection silent this long at the end, with a newer one to the same "
                   "peer, is a zombie")
        ->type_name("DURATION")
        ->capture_default_str();
    app.add_option("--close-wait-min-age", options.close_wait_min_age,
                   "A CLOSE_WAIT whose peer closed less than this before the end is 'not closed "
                   "yet', listed apart from the leaked ones (0s: every CLOSE_WAIT is leaked)")
        ->type_name("DURATION")
        ->capture_default_str();
    app.add_flag("--resumed", options.resumed,
                 "Also report data arriving after --silence without any: runs a hook for every "
                 "packet any socket on the host receives (about 0.2 us each)");
    app.add_option("--max-connections", options.max_connections,
                   "Connections followed at once; more are counted as not followed")
        ->type_name("N")
        ->check(CLI::Range(1U, 1U << 22))
        ->capture_default_str();
    app.add_flag("--json", options.json,
                 "One JSON object per event, one per line; the ledger last (\"type\": "
                 "\"ledger\")");
}

int run_trace(const TraceOptions& options) {
    const std::uint64_t for_ms =
        options.for_duration.empty()
            ? 0
            : duration_option("--for", options.for_duration, 1, max_duration_ms);
    const std::uint64_t silence_ms =
        duration_option("--silence", options.silence, 1, max_duration_ms);
    const std::uint64_t close_wait_min_age_ms =
        duration_option("--close-wait-min-age", options.close_wait_min_age, 0, max_duration_ms);
    if (!has_selector(options.selector))
        throw Error(Errc::usage, "trace needs the processes to follow: --pid, --pidfile or --name");

    const proc::ProcFs procfs;
    const std::vector<pid_t> pids = select::resolve(selection_of(options.selector), procfs).pids();
    std::vector<int> pidfds;
    struct Closer {
        std::vector<int>& fds;
        ~Closer() {
            for (int fd : fds)
                ::close(fd);
        }
    } closer{pidfds};
    for (pid_t pid : pids)
        pidfds.push_back(open_pidfd(pid));

    std::vector<std::uint32_t> flags;
    for (pid_t pid : pids)
        flags.push_back(trace::needs_stack_copy(pid) ? trace::target_flag::copy_stack : 0);
    trace::ProbeConfig config;
    config.max_connections = options.max_connections;
    config.silence_ns = options.resumed ? silence_ms * 1'000'000 : 0;
    config.copies_stacks =
        std::any_of(flags.begin(), flags.end(), [](std::uint32_t f) { return f != 0; });
    trace::Probe probe(config);
    trace::Symbolizer symbolizer;
    for (std::size_t i = 0; i < pids.size(); ++i) {
        symbolizer.prepare(pids[i]);
        probe.add_target(pids[i], flags[i]);
        if (const auto* python = symbolizer.python_runtime(pids[i]))
            probe.add_python(pids[i], *python);
    }
    if (any_listening(pids)) probe.follow_accepts();

    // A process that is already gone can open nothing: say so instead of waiting.
    for (std::size_t i = 0; i < pids.size(); ++i) {
        pollfd p{pidfds[i], POLLIN, 0};
        if (::poll(&p, 1, 0) == 1)
            throw Error(Errc::process_exited,
                        fmt::format("process {} exited before the trace began", pids[i]));
    }

    const std::int64_t offset = trace::wall_clock_offset_ns();
    const std::uint64_t start = monotonic_ns();
    const std::uint64_t deadline = for_ms ? start + for_ms * 1'000'000 : 0;
    trace::LedgerConfig ledger_config;
    ledger_config.zombie_silence_ns = silence_ms * 1'000'000;
    ledger_config.close_wait_min_age_ns = close_wait_min_age_ms * 1'000'000;
    trace::Ledger ledger(start, ledger_config);
    Printer printer(options.json, offset, close_wait_min_age_ms);
    const StopSignals signals;
    // On stderr in every mode: a script starting the trace waits for this line.
    fmt::print(stderr, "conncheck: tracing {} process{} ({}); Ctrl-C ends with the ledger\n",
               pids.size(), pids.size() == 1 ? "" : "es", fmt::join(pids, ", "));

    const std::map<pid_t, std::string> unnamed = unnamed_call_sites(pids);
    const auto handle = [&](const trace::Event& e) {
        trace::CallSite site;
        if (e.kind == trace::EventKind::opened) {
            if (const auto it = unnamed.find(e.pid); it != unnamed.end()) {
                site.stops = it->second;
            } else {
                site = symbolizer.call_site(e);
                // A library without frame pointers below a program with them: copy from now on.
                for (pid_t pid : symbolizer.take_stack_copy_wanted())
                    if (std::find(pids.begin(), pids.end(), pid) != pids.end())
                        probe.add_target(pid, trace::target_flag::copy_stack);
            }
        }
        ledger.add(e, site);
        printer.event(e, site, ledger.find(e.connection));
    };

    follow(probe, pidfds, deadline, handle, printer, signals);
    // The exiting process's last events were written before its pidfd became readable.
    probe.drain(handle);
    for (const std::uint64_t id : probe.incomplete_connections())
        ledger.note_incomplete(id);
    const bool judged = note_last_data(ledger, pids);
    printer.ledger(ledger.report(monotonic_ns()), probe.counters());
    return judged && unnamed.empty() ? exit_code::ok : exit_code::partial;
}

} // namespace conncheck::cli
