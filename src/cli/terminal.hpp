// The terminal watch draws on: alternate screen, hidden cursor and termios, restored on every exit
// path (normal return, exception, quit signals, crash signals, Ctrl-Z).
#pragma once

#include "screen.hpp"

#include <string_view>

namespace conncheck::cli::screen {

// The size of the terminal on `fd`; {0, 0} when it is not a terminal.
[[nodiscard]] Size terminal_size(int fd);

// Owns the terminal while watch draws on it. Construction saves termios, turns off canonical
// input and echo (signals stay on, so Ctrl-C and Ctrl-Z work), enters the alternate screen and
// hides the cursor; destruction, suspend() and the crash handlers undo all of it.
class Terminal {
public:
    Terminal(int in_fd, int out_fd);
    ~Terminal();
    Terminal(const Terminal&) = delete;
    Terminal& operator=(const Terminal&) = delete;

    void suspend(); // before stopping on SIGTSTP
    void resume();  // after SIGCONT
    void write_all(std::string_view bytes) const;
    [[nodiscard]] Size size() const { return terminal_size(out_fd_); }

    // Async-signal-safe: restores termios and leaves the alternate screen if still inside it.
    static void restore_from_signal() noexcept;

private:
    void enter();
    void leave();
    int in_fd_;
    int out_fd_;
};

} // namespace conncheck::cli::screen
