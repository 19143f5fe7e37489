#include "prove_children.hpp"

#include "conncheck/error.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/prove_sample.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

namespace conncheck::cli {

namespace {

constexpr std::size_t max_line = 64 * 1024;
constexpr std::size_t stderr_lines_kept = 5;

volatile std::sig_atomic_t received_signal = 0;
sigset_t wait_mask;         // the mask ppoll waits with: ours, without the stop signals
bool signals_armed = false; // a ProveSignals is alive

void note_signal(int signo) {
    received_signal = signo;
}

struct Fds {
    int out_r = -1, out_w = -1, err_r = -1, err_w = -1, devnull = -1;
    void close_all() {
        for (int* fd : {&out_r, &out_w, &err_r, &err_w, &devnull})
            if (*fd >= 0) {
                ::close(*fd);
                *fd = -1;
            }
    }
};

Fds open_fds() {
    Fds f;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("cannot create a pipe", errno);
    f.out_r = p[0];
    f.out_w = p[1];
    if (::pipe2(p, O_CLOEXEC) != 0) {
        const int err = errno;
        f.close_all();
        throw_errno("cannot create a pipe", err);
    }
    f.err_r = p[0];
    f.err_w = p[1];
    f.devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f.devnull < 0) {
        const int err = errno;
        f.close_all();
        throw_errno("cannot open /dev/null", err);
    }
    return f;
}

// In the forked child, before exec: only system calls from here on (prove may have threads).
void child_common(const Fds& f, pid_t parent, int death_signal) {
    ::setpgid(0, 0);
    // Dies with prove, even a prove killed by SIGKILL; if prove is already gone, go now.
    ::prctl(PR_SET_PDEATHSIG, death_signal);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(f.devnull, STDIN_FILENO);
    ::dup2(f.out_w, STDOUT_FILENO);
    ::dup2(f.err_w, STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD})
        ::sigaction(s, &dfl, nullptr);
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 127;
}

[[noreturn]] void exec_program(char* const* argv) {
    ::execv(argv[0], argv);
    static constexpr char msg[] = "conncheck prove: exec failed\n";
    [[maybe_unused]] const auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
}

// The parent pid in the stat file `name` ("4242/stat") below the /proc directory fd, 0 when it
// cannot be read. System calls only, like everything the guard runs.
pid_t parent_in_stat(int proc_fd, const char* name) {
    const int fd = ::openat(proc_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[1024];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n <= 0) return 0;
    // "PID (comm) S PPID ...": comm may hold ") ", so the last ')' ends it.
    ssize_t i = n - 1;
    while (i >= 0 && buf[i] != ')')
        --i;
    i += 4; // ") S "
    pid_t ppid = 0;
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i)
        ppid = ppid * 10 + (buf[i] - '0');
    return ppid;
}

// Sends `signo` to every descendant of the calling process, found in /proc, and returns how many
// it signalled. The guard is forked from prove, which may have threads, so this allocates
// nothing (prove::process_tree does the same walk for prove itself, with containers).
std::size_t signal_descendants(int signo) {
    constexpr std::size_t max_tree = 4096;
    pid_t tree[max_tree];
    std::size_t count = 0;
    tree[count++] = ::getpid();
    const auto in_tree = [&](pid_t pid) {
        for (std::size_t k = 0; k < count; ++k)
            if (tree[k] == pid) return true;
        return false;
    };
    const int proc_fd = ::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (proc_fd < 0) return 0;
    // A process listed before its parent joins on a later pass.
    for (int pass = 0, grew = 1; grew != 0 && pass < 16; ++pass) {
        grew = 0;
        ::lseek(proc_fd, 0, SEEK_SET);
        char buf[8192];
        ssize_t n;
        while ((n = ::getdents64(proc_fd, buf, sizeof buf)) > 0) {
            for (ssize_t off = 0; off < n;) {
                const auto* entry = reinterpret_cast<const dirent64*>(buf + off);
                off += entry->d_reclen;
                pid_t pid = 0;
                const char* c = entry->d_name;
                for (; *c >= '0' && *c <= '9'; ++c)
                    pid = pid * 10 + (*c - '0');
                if (*c != '\0' || pid <= 0 || in_tree(pid) || count == max_tree) continue;
                char stat_name[32];
                std::size_t len = 0;
                for (const char* d = entry->d_name; *d != '\0' && len < 20; ++d)
                    stat_name[len++] = *d;
                for (const char* d = "/stat"; *d != '\0'; ++d)
                    stat_name[len++] = *d;
                stat_name[len] = '\0';
                const pid_t ppid = parent_in_stat(proc_fd, stat_name);
                if (ppid > 0 && in_tree(ppid)) {
                    tree[count++] = pid;
                    grew = 1;
                }
            }
        }
    }
    ::close(proc_fd);
    for (std::size_t k = 1; k < count; ++k)
        ::kill(tree[k], signo);
    return count - 1;
}

// The guard: starts the shell in a new process group and is the subreaper of everything below
// it. It ends the command's whole tree on SIGTERM/SIGINT/SIGHUP (from prove, or
// PR_SET_PDEATHSIG when prove dies, even by SIGKILL) or when the shell exits: SIGTERM to the
// group and every descendant, up to 2 s, then SIGKILL until none is left. A descendant that left
// the group (setsid, a daemon) is still a descendant: its orphans come back to the guard.
[[noreturn]] void run_guard(char* const* sh_argv) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t stop_set;
    sigemptyset(&stop_set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD})
        sigaddset(&stop_set, s);
    ::sigprocmask(SIG_BLOCK, &stop_set, nullptr);
    const pid_t sh = ::fork();
    if (sh < 0) ::_exit(127);
    if (sh == 0) {
        ::setpgid(0, 0);
        sigset_t empty;
        sigemptyset(&empty);
        ::sigprocmask(SIG_SETMASK, &empty, nullptr);
        ::execv("/bin/sh", sh_argv);
        ::_exit(127);
    }
    ::setpgid(sh, sh);
    int status = 0;
    bool done = false;
    while (!done) {
        siginfo_t info;
        const int s = ::sigwaitinfo(&stop_set, &info);
        if (s == SIGCHLD) {
            int st = 0;
            pid_t w;
            while ((w = ::waitpid(-1, &st, WNOHANG)) > 0)
                if (w == sh) {
                    status = st;
                    done = true;
                }
        } else if (s > 0) {
            status = 128 + s;
            done = true;
        }
    }
    ::kill(-sh, SIGTERM);
    signal_descendants(SIGTERM);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    // No children left means no descendants left: every orphan below is re-parented to us.
    for (int round = 0; round < 100; ++round) {
        if (round >= 20) {
            ::kill(-sh, SIGKILL);
            signal_descendants(SIGKILL);
        }
        int st = 0;
        pid_t w;
        while ((w = ::waitpid(-1, &st, WNOHANG)) > 0)
            if (w == sh) status = st;
        if (w < 0 && errno == ECHILD) break;
        const timespec step{0, 100'000'000};
        ::sigtimedwait(&chld, nullptr, &step);
    }
    ::_exit(exit_code_of(status));
}

std::vector<char*> c_argv(std::vector<std::string>& args) {
    std::vector<char*> out;
    out.reserve(args.size() + 1);
    for (auto& a : args)
        out.push_back(a.data());
    out.push_back(nullptr);
    return out;
}

} // namespace

ProveChild::ProveChild(std::string role, pid_t pid, int out_fd, int err_fd)
    : role_(std::move(role)), pid_(pid), out_fd_(out_fd), err_fd_(err_fd) {
    for (int fd : {out_fd_, err_fd_})
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

ProveChild ProveChild::spawn(std::string role, std::vector<std::string> args, int death_signal,
                             void (*become)(char* const* argv)) {
    const std::vector<char*> cargv = c_argv(args);
    Fds f = open_fds();
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int err = errno;
        f.close_all();
        throw_errno("cannot start " + role, err);
    }
    if (pid == 0) {
        child_common(f, parent, death_signal);
        become(cargv.data());
    }
    ::setpgid(pid, pid); // also here: whichever of the two runs first
    ::close(f.out_w);
    ::close(f.err_w);
    ::close(f.devnull);
    return ProveChild(std::move(role), pid, f.out_r, f.err_r);
}

ProveChild ProveChild::program(std::string role, const std::vector<std::string>& argv) {
    return spawn(std::move(role), argv, SIGKILL, exec_program);
}

ProveChild ProveChild::shell(std::string role, const std::string& command) {
    return spawn(std::move(role), {"sh", "-c", command}, SIGTERM, run_guard);
}

ProveChild::ProveChild(ProveChild&& other) noexcept
    : role_(std::move(other.role_)), pid_(std::exchange(other.pid_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)), err_fd_(std::exchange(other.err_fd_, -1)),
      out_buffer_(std::move(other.out_buffer_)), err_buffer_(std::move(other.err_buffer_)),
      err_tail_(std::move(other.err_tail_)), status_(other.status_) {}

ProveChild::~ProveChild() {
    if (pid_ > 0 && !status_) {
        ::kill(pid_, SIGKILL);
        int st = 0;
        while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
    }
    for (int fd : {out_fd_, err_fd_})
        if (fd >= 0) ::close(fd);
}

void ProveChild::read_stream(int& fd, std::string& buffer, std::vector<std::string>* lines) {
    char chunk[8192];
    while (fd >= 0) {
        const ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break; // EAGAIN: nothing more for now
        if (n == 0) {
            ::close(fd);
            fd = -1;
            break;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
    }
    std::size_t start = 0;
    for (;;) {
        std::size_t nl = buffer.find('\n', start);
        const bool flush = nl == std::string::npos &&
                           (buffer.size() - start > max_line || (fd < 0 && start < buffer.size()));
        if (nl == std::string::npos && !flush) break;
        if (nl == std::string::npos) nl = buffer.size();
        std::string line = buffer.substr(start, std::min(nl - start, max_line));
        start = std::min(nl + 1, buffer.size());
        if (lines != nullptr) {
            lines->push_back(std::move(line));
        } else {
            err_tail_.push_back(std::move(line));
            if (err_tail_.size() > stderr_lines_kept) err_tail_.pop_front();
        }
    }
    buffer.erase(0, start);
}

std::vector<std::string> ProveChild::read_lines() {
    std::vector<std::string> lines;
    read_stream(out_fd_, out_buffer_, &lines);
    read_stream(err_fd_, err_buffer_, nullptr);
    return lines;
}

bool ProveChild::running() {
    if (status_ || pid_ <= 0) return false;
    int st = 0;
    const pid_t w = ::waitpid(pid_, &st, WNOHANG);
    if (w == pid_) {
        status_ = st;
        return false;
    }
    return true;
}

std::string ProveChild::exit_description() const {
    if (!status_) return {};
    if (WIFEXITED(*status_)) return fmt::format("exited with status {}", WEXITSTATUS(*status_));
    if (WIFSIGNALED(*status_))
        return fmt::format("was killed by signal {} ({})", WTERMSIG(*status_),
                           sigabbrev_np(WTERMSIG(*status_)) ? sigabbrev_np(WTERMSIG(*status_))
                                                            : "?");
    return "ended";
}

bool ProveChild::exited_cleanly() const {
    return status_ && WIFEXITED(*status_) && WEXITSTATUS(*status_) == 0;
}

void ProveChild::signal(int signo) {
    if (pid_ > 0 && !status_) ::kill(pid_, signo);
}

void wait_for_output(const std::vector<ProveChild*>& children, std::chrono::milliseconds timeout) {
    std::vector<pollfd> fds;
    for (const auto* c : children)
        for (int fd : {c->stdout_fd(), c->stderr_fd()})
            if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    const auto ms = std::max<std::chrono::milliseconds::rep>(timeout.count(), 0);
    const timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
    ::ppoll(fds.data(), fds.size(), &ts, signals_armed ? &wait_mask : nullptr);
}

void stop_children(const std::vector<ProveChild*>& children, std::chrono::milliseconds grace,
                   const std::function<void(std::size_t, const std::string&)>& on_line) {
    const auto drain = [&] {
        for (std::size_t i = 0; i < children.size(); ++i)
            for (const auto& line : children[i]->read_lines())
                on_line(i, line);
    };
    for (auto* c : children)
        if (c->running()) c->signal(SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    for (;;) {
        drain();
        const bool any = std::any_of(children.begin(), children.end(),
                                     [](ProveChild* c) { return c->running(); });
        if (!any || std::chrono::steady_clock::now() >= deadline) break;
        wait_for_output(children, std::chrono::milliseconds(20));
    }
    for (auto* c : children) {
        if (!c->running()) continue;
        c->signal(SIGKILL);
        while (c->running())
            wait_for_output({}, std::chrono::milliseconds(5));
    }
    drain();
}

ProveSignals::ProveSignals() {
    struct sigaction sa {};
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP})
        ::sigaction(s, &sa, nullptr);
    sigset_t block;
    sigemptyset(&block);
    for (int s : {SIGINT, SIGTERM, SIGHUP})
        sigaddset(&block, s);
    sigset_t old;
    ::sigprocmask(SIG_BLOCK, &block, &old);
    wait_mask = old;
    for (int s : {SIGINT, SIGTERM, SIGHUP})
        sigdelset(&wait_mask, s);
    signals_armed = true;
}

ProveSignals::~ProveSignals() {
    // The handlers stay: a second Ctrl-C that arrived while the result was printed only sets the
    // flag, instead of killing prove with its output still in stdout's buffer.
    signals_armed = false;
    ::sigprocmask(SIG_SETMASK, &wait_mask, nullptr);
}

int ProveSignals::received() {
    return received_signal;
}

void become_subreaper() {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
}

std::size_t sweep_descendants() {
    const proc::ProcFs procfs("/proc");
    std::size_t killed = 0;
    for (int round = 0; round < 3; ++round) {
        const auto left = procfs.descendants(::getpid());
        if (left.empty()) break;
        for (pid_t pid : left)
            if (::kill(pid, SIGKILL) == 0) ++killed;
        // SIGKILL is final but not instant: reap what dies, for a bounded time.
        for (int i = 0; i < 100; ++i) {
            int st = 0;
            while (::waitpid(-1, &st, WNOHANG) > 0) {
            }
            if (procfs.descendants(::getpid()).empty()) break;
            wait_for_output({}, std::chrono::milliseconds(10));
        }
    }
    int st = 0;
    while (::waitpid(-1, &st, WNOHANG) > 0) {
    }
    return killed;
}

} // namespace conncheck::cli
