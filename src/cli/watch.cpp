#include "watch.hpp"

#include "human_text.hpp"
#include "screen.hpp"
#include "terminal.hpp"
#include "watch_events.hpp"
#include "watch_output.hpp"

#include "conncheck/scan.hpp"
#include "conncheck/text.hpp"
#include "conncheck/watch/session.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <fmt/core.h>
#include <optional>
#include <poll.h>
#include <set>
#include <unistd.h>

namespace conncheck::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t min_interval_ms = 100;
constexpr std::uint64_t max_interval_ms = 3'600'000;
constexpr std::uint64_t max_window_ms = 7ULL * 86'400'000;

// --- signals: handlers only set a flag and wake the loop through a pipe ---

int g_wake[2] = {-1, -1};
volatile std::sig_atomic_t g_quit = 0;
volatile std::sig_atomic_t g_resized = 0;
volatile std::sig_atomic_t g_stop = 0;

extern "C" void on_signal(int sig) {
    const int saved = errno;
    if (sig == SIGWINCH || sig == SIGCONT) {
        g_resized = 1;
    } else if (sig == SIGTSTP) {
        g_stop = 1;
    } else {
        if (g_quit != 0) {
            // A second request while the loop is busy: leave now, terminal first.
            screen::Terminal::restore_from_signal();
            std::signal(sig, SIG_DFL);
            std::raise(sig);
        }
        g_quit = sig;
    }
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(g_wake[1], &byte, 1);
    errno = saved;
}

class WatchSignals {
public:
    explicit WatchSignals(bool screen) {
        if (::pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0)
            throw_errno("cannot create a pipe", errno);
        g_quit = 0;
        g_resized = 0;
        g_stop = 0;
        install(SIGINT);
        install(SIGTERM);
        install(SIGHUP);
        if (screen) {
            install(SIGWINCH);
            install(SIGTSTP);
            install(SIGCONT);
        }
    }
    ~WatchSignals() {
        for (std::size_t i = 0; i < count_; ++i)
            ::sigaction(signals_[i], &previous_[i], nullptr);
        ::close(g_wake[0]);
        ::close(g_wake[1]);
        g_wake[0] = -1;
        g_wake[1] = -1;
    }
    WatchSignals(const WatchSignals&) = delete;
    WatchSignals& operator=(const WatchSignals&) = delete;
    void reinstall(int sig) {
        struct sigaction sa {};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        ::sigaction(sig, &sa, nullptr);
    }

private:
    void install(int sig) {
        struct sigaction sa {};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        signals_[count_] = sig;
        ::sigaction(sig, &sa, &previous_[count_]);
        ++count_;
    }
    int signals_[6] = {};
    struct sigaction previous_[6] = {};
    std::size_t count_ = 0;
};

void drain(int fd) {
    char buf[64];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
}

double cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string last_figures(const watch::ProcessFrame& p) {
    std::string out;
    for (const auto& s : p.states) {
        if (!out.empty()) out += ", ";
        out += fmt::format("{} {}", state_label(s.state), s.row.current);
    }
    return out + fmt::format(", fds {}", p.open_fds);
}

class Watcher {
public:
    explicit Watcher(const WatchOptions& options)
        : options_(options), scanner_(make_scan_config(options.source)),
          alive_(watched_pids(options, scanner_)),
          events_(events_off_reason(options.no_events, options.source), alive_),
          session_(make_session_options(options, events_.active())),
          interval_ms_(session_options_.interval_ms) {
        screen_mode_ = !options.json && ::isatty(STDOUT_FILENO) == 1;
        keys_ = screen_mode_ && ::isatty(STDIN_FILENO) == 1;
        view_.color = screen_mode_ && use_color(options.no_color);
        // Events tell when nothing but the sockets' states can have changed: then a tick asks
        // for the processes' own sockets instead of walking the kernel's tables.
        scanner_.keep_last_walk(events_.active());
    }

    int run() {
        start_ = Clock::now();
        last_cpu_ = cpu_seconds();
        last_wall_ = start_;
        // The first scan happens before the screen is taken, so its errors print normally.
        if (!tick()) return finish();
        WatchSignals signals(screen_mode_);
        std::optional<screen::Terminal> terminal;
        if (screen_mode_) {
            terminal.emplace(keys_ ? STDIN_FILENO : -1, STDOUT_FILENO);
            terminal_ = &*terminal;
        }
        emit();
        while (true) {
            if (options_.count > 0 && session_.ticks() >= options_.count) break;
            if (const auto code = wait_for_next_tick(signals)) {
                terminal_ = nullptr;
                terminal.reset();
                return *code;
            }
            if (!tick()) {
                emit();
                break;
            }
            emit();
        }
        terminal_ = nullptr;
        terminal.reset();
        return finish();
    }

private:
    static std::vector<pid_t> watched_pids(const WatchOptions& o, const scan::Scanner& scanner) {
        if (!has_selector(o.selector))
            throw Error(Errc::usage,
                        "watch needs a process: --pid PID, --pidfile FILE, --name NAME, "
                        "--exe PATH, --unit UNIT or --cgroup PATH");
        return select::resolve(selection_of(o.selector), scanner.procfs()).pids();
    }

    watch::Options make_session_options(const WatchOptions& o, bool events) {
        watch::Options& w = session_options_;
        w.events = events;
        w.interval_ms = static_cast<std::int64_t>(
            duration_option("--interval", o.interval, min_interval_ms, max_interval_ms));
        w.window_ms = static_cast<std::int64_t>(duration_option(
            "--window", o.window, static_cast<std::uint64_t>(w.interval_ms), max_window_ms));
        w.analysis.idle_ms = o.idle_seconds * 1000U;
        w.analysis.idle_setting = "--idle";
        return w;
    }

    std::int64_t now_ms() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start_).count();
    }

    // One scan. False once every watched process is gone.
    bool tick() {
        const auto began = Clock::now();
        const scan::RunningScan scanned =
            scanner_.scan_running(alive_, events_.quiet_since_last_scan());
        // After the scan: every event of a socket the scan saw is in the ring buffer by now.
        events_.drain(session_, start_);
        for (const pid_t pid : scanned.exited) {
            session_.process_exited(pid, now_ms());
            std::erase(alive_, pid);
        }
        if (scanned.snapshot) {
            events_.note_scan(*scanned.snapshot);
            set_aside(scanned.snapshot->unreadable);
            session_.update(*scanned.snapshot, now_ms(),
                            static_cast<std::int64_t>(std::time(nullptr)));
            ++scanned_;
        }
        if (scanned_ == 0 && alive_.empty())
            throw Error(Errc::process_exited, "the watched process exited before its first scan");
        // A pid reused by a new process counts as the old one exiting.
        const auto running = session_.running();
        std::erase_if(alive_, [&](pid_t pid) {
            return std::find(running.begin(), running.end(), pid) == running.end();
        });
        tick_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - began).count();
        return !alive_.empty();
    }

    // Processes whose sockets may not be read are watched no more; the others go on. Before the
    // screen is taken each is named on stderr, on the screen in the status line.
    void set_aside(const std::vector<scan::UnreadableProcess>& unreadable) {
        for (const auto& u : unreadable) {
            std::erase(alive_, u.pid);
            if (terminal_ == nullptr)
                fmt::print(stderr,
                           "conncheck: pid {} ({}) could not be read, watching the others: {}\n",
                           u.pid, text::sanitize(u.comm, 32), text::sanitize(u.reason));
            unreadable_.push_back(u);
        }
        std::fflush(stderr);
    }

    // What a normal end returns: partial when some chosen process could never be read.
    int done_code() const { return unreadable_.empty() ? exit_code::ok : exit_code::partial; }

    watch::Frame build_frame() {
        watch::FrameOptions fo;
        fo.spark_points = screen_mode_ ? screen::spark_points : 0;
        fo.peer_sort = view_.sort;
        fo.max_peers = screen_mode_ ? 500 : 20;
        watch::Frame frame = session_.frame(fo);
        frame.tick_ms = tick_ms_;
        frame.polling_reason = text::sanitize(events_.polling_reason());
        if (const std::string lost = events_.losses(); !lost.empty())
            frame.warnings.push_back(lost);
        for (const auto& u : unreadable_)
            frame.warnings.push_back(fmt::format("pid {} ({}) could not be read: {}", u.pid,
                                                 text::sanitize(u.comm, 32),
                                                 text::sanitize(u.reason)));
        // The watcher's share of one core since the previous frame: scans, drawing and waiting.
        const auto wall = Clock::now();
        const double cpu = cpu_seconds();
        const double elapsed = std::chrono::duration<double>(wall - last_wall_).count();
        if (session_.ticks() > 1 && elapsed > 0)
            frame.cpu_percent = (cpu - last_cpu_) / elapsed * 100.0;
        last_wall_ = wall;
        last_cpu_ = cpu;
        return frame;
    }

    void emit() {
        if (screen_mode_) {
            if (view_.paused) return;
            shown_ = build_frame();
            draw();
            return;
        }
        const watch::Frame frame = build_frame();
        if (options_.json) {
            fmt::print("{}\n", to_json(frame).dump());
        } else {
            watch::Frame fresh = frame;
            std::erase_if(fresh.processes, [&](const watch::ProcessFrame& p) {
                if (!p.exited) return false;
                return !reported_exit_.insert(p.pid).second;
            });
            for (const auto& line : to_lines(fresh))
                fmt::print("{}\n", line);
        }
        std::fflush(stdout);
    }

    void draw() {
        if (terminal_ == nullptr || !shown_) return;
        terminal_->write_all(screen::render(*shown_, view_, terminal_->size()));
    }

    // Waits for the next tick, handling keys and signals. An exit code ends the watch.
    std::optional<int> wait_for_next_tick(WatchSignals& signals) {
        const auto interval = std::chrono::milliseconds(interval_ms_);
        const auto next = start_ + interval * ((Clock::now() - start_) / interval + 1);
        while (true) {
            const auto now = Clock::now();
            if (now >= next) return std::nullopt;
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
            pollfd fds[3] = {{g_wake[0], POLLIN, 0},
                             {keys_ ? STDIN_FILENO : -1, POLLIN, 0},
                             {events_.wait_fd(), POLLIN, 0}};
            const int n = ::poll(fds, 3, static_cast<int>(left));
            if (n < 0 && errno != EINTR) throw_errno("poll", errno);
            if (n <= 0) continue;
            if (fds[2].revents != 0) events_.drain(session_, start_); // the ring buffer fills up
            if (fds[0].revents != 0) {
                drain(g_wake[0]);
                if (const auto code = handle_signals(signals)) return code;
            }
            if (fds[1].revents != 0) {
                if (const auto code = handle_keys()) return code;
            }
        }
    }

    std::optional<int> handle_signals(WatchSignals& signals) {
        if (g_quit != 0) {
            const int sig = g_quit;
            if (sig == SIGINT) return done_code(); // Ctrl-C is a way to quit, like q
            // SIGTERM, SIGHUP: restore the terminal, then die of the signal as the sender expects.
            terminal_ = nullptr;
            screen::Terminal::restore_from_signal();
            std::signal(sig, SIG_DFL);
            std::raise(sig);
            return 128 + sig;
        }
        if (g_stop != 0 && terminal_ != nullptr) {
            g_stop = 0;
            terminal_->suspend();
            std::signal(SIGTSTP, SIG_DFL);
            std::raise(SIGTSTP); // stops here until SIGCONT
            signals.reinstall(SIGTSTP);
            terminal_->resume();
            g_resized = 1;
        }
        if (g_resized != 0) {
            g_resized = 0;
            draw();
        }
        return std::nullopt;
    }

    std::optional<int> handle_keys() {
        char buf[64];
        const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0) keys_ = false; // end of input: keep watching, stop reading
        for (ssize_t i = 0; i < n; ++i) {
            switch (buf[i]) {
            case 'q':
            case 'Q':
            case 3: // Ctrl-C arriving as a byte
                return done_code();
            case 'p':
            case 'P':
                view_.paused = !view_.paused;
                if (!view_.paused) shown_ = build_frame();
                draw();
                break;
            case 's':
            case 'S':
                view_.sort = watch::next_peer_sort(view_.sort);
                draw();
                break;
            default:
                break;
            }
        }
        return std::nullopt;
    }

    int finish() {
        if (screen_mode_) {
            // The screen is gone with the alternate buffer: leave the outcome in the scrollback.
            const auto frame = session_.frame({});
            for (const auto& p : frame.processes) {
                if (!p.exited) continue;
                fmt::print("conncheck watch: pid {} ({}) exited after {}; last figures: {}\n",
                           p.pid, p.comm,
                           human_duration_ms(static_cast<std::uint64_t>(p.exited_after_ms)),
                           last_figures(p));
            }
            std::fflush(stdout);
        }
        return done_code();
    }

    const WatchOptions& options_;
    watch::Options session_options_;
    scan::Scanner scanner_;
    std::vector<pid_t> alive_;
    EventFeed events_;
    watch::Session session_;
    std::int64_t interval_ms_;
    bool screen_mode_ = false;
    bool keys_ = false;
    screen::ViewState view_;
    screen::Terminal* terminal_ = nullptr;
    std::optional<watch::Frame> shown_;
    std::set<pid_t> reported_exit_;
    Clock::time_point start_;
    Clock::time_point last_wall_;
    double last_cpu_ = 0;
    double tick_ms_ = 0;
    std::uint64_t scanned_ = 0;
    std::vector<scan::UnreadableProcess> unreadable_;
};

} // namespace

void setup_watch(CLI::App& app, WatchOptions& options) {
    add_selector_options(app, options.selector);
    app.add_option("--interval", options.interval,
                   "Time between scans: 500ms, 1s (default), 10s, 1m; at least 100ms")
        ->type_name("DURATION");
    app.add_option("--window", options.window,
                   "History kept for sparklines and trends (default 10m): 30s, 10m, 2h, 1d")
        ->type_name("DURATION");
    app.add_flag("--json", options.json,
                 "One JSON object per interval instead of the screen (off a terminal, without "
                 "--json: one line per process per interval)");
    add_idle_option(app, options.idle_seconds);
    app.add_option("--count", options.count,
                   "Stop after N scans (default: until q or the processes exit)")
        ->type_name("N")
        ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}));
    app.add_flag("--no-color", options.no_color, "No colour (also when NO_COLOR is set)");
    app.add_flag("--no-events", options.no_events,
                 "Poll only: do not follow the processes' connection events (as trace does)");
    add_source_options(app, options.source);
    app.footer(
        "On a terminal: a full screen redrawn every interval. Keys: q or Ctrl-C quit, p pause "
        "(scanning goes on), s cycle the peer sort. Off a terminal: one line per process per "
        "interval, or one JSON object with --json. Where eBPF tracing works (see trace), watch "
        "follows the connections the processes open: their churn, TIME_WAIT and age are exact, "
        "and the output says events, and while they show nothing new a tick asks for the "
        "processes' own sockets without walking the kernel's tables; otherwise, or with "
        "--no-events, it says polling and why. When polling, TIME_WAIT is attributed exactly "
        "to the process when watch saw its live socket, else by peer. Exits 0 on q or once "
        "every watched process has exited, 8 then when some selected process could not be "
        "read (it is named, the others are watched). See conncheck(1), WATCH.");
}

int run_watch(const WatchOptions& options) {
    Watcher watcher(options);
    return watcher.run();
}

} // namespace conncheck::cli
