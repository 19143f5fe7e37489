#include "terminal.hpp"

#include <cerrno>
#include <csignal>
#include <iterator>
#include <string_view>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace conncheck::cli::screen {

namespace {

// Alternate screen, no auto-wrap (a miscounted line is cut, not wrapped), hidden cursor.
constexpr std::string_view enter_sequence = "\x1b[?1049h\x1b[?7l\x1b[?25l\x1b[H\x1b[2J";
constexpr std::string_view leave_sequence = "\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l";

volatile std::sig_atomic_t g_active = 0;
int g_in_fd = -1;
int g_out_fd = -1;
bool g_has_termios = false;
termios g_saved{};

constexpr int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction g_previous[std::size(crash_signals)];

void write_raw(int fd, std::string_view bytes) noexcept {
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

extern "C" void on_crash(int sig) {
    Terminal::restore_from_signal();
    // SA_RESETHAND put the default action back: raising again ends the process as the crash would.
    std::raise(sig);
}

} // namespace

Size terminal_size(int fd) {
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) != 0) return {0, 0};
    return {ws.ws_col, ws.ws_row};
}

Terminal::Terminal(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {
    g_in_fd = in_fd_;
    g_out_fd = out_fd_;
    g_has_termios = in_fd_ >= 0 && ::isatty(in_fd_) == 1 && ::tcgetattr(in_fd_, &g_saved) == 0;
    for (std::size_t i = 0; i < std::size(crash_signals); ++i) {
        struct sigaction sa {};
        sa.sa_handler = on_crash;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        ::sigaction(crash_signals[i], &sa, &g_previous[i]);
    }
    enter();
}

Terminal::~Terminal() {
    leave();
    for (std::size_t i = 0; i < std::size(crash_signals); ++i)
        ::sigaction(crash_signals[i], &g_previous[i], nullptr);
}

void Terminal::enter() {
    if (g_has_termios) {
        termios raw = g_saved;
        // Keys arrive one by one and unechoed; ISIG stays, so Ctrl-C is SIGINT and Ctrl-Z SIGTSTP.
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
        // Without XON/XOFF a stray Ctrl-S cannot freeze the screen (and block our writes).
        raw.c_iflag &= static_cast<tcflag_t>(~IXON);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        ::tcsetattr(in_fd_, TCSANOW, &raw);
    }
    write_raw(out_fd_, enter_sequence);
    g_active = 1;
}

void Terminal::leave() {
    restore_from_signal();
}

void Terminal::suspend() {
    leave();
}

void Terminal::resume() {
    enter();
}

void Terminal::write_all(std::string_view bytes) const {
    write_raw(out_fd_, bytes);
}

void Terminal::restore_from_signal() noexcept {
    if (g_active == 0) return;
    g_active = 0;
    if (g_has_termios) ::tcsetattr(g_in_fd, TCSANOW, &g_saved);
    write_raw(g_out_fd, leave_sequence);
}

} // namespace conncheck::cli::screen
