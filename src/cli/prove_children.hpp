// The child processes of `conncheck prove`: simulators, reference collectors and the user's
// command, each in its own process group, with stdout and stderr read through pipes. They die
// with prove (PR_SET_PDEATHSIG) even when prove is killed with SIGKILL.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace conncheck::cli {

class ProveChild {
public:
    // Runs `argv` (argv[0] the program path) directly.
    static ProveChild program(std::string role, const std::vector<std::string>& argv);
    // Runs `/bin/sh -c command` below a guard process that stops the command's whole tree
    // (its process group and every descendant, also one in a session of its own, the guard
    // being the subreaper of their orphans) when it is asked to stop, when the shell exits or
    // when prove dies, even by SIGKILL.
    static ProveChild shell(std::string role, const std::string& command);

    ~ProveChild();
    ProveChild(ProveChild&& other) noexcept;
    ProveChild& operator=(ProveChild&&) = delete;
    ProveChild(const ProveChild&) = delete;
    ProveChild& operator=(const ProveChild&) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] const std::string& role() const { return role_; }
    [[nodiscard]] int stdout_fd() const { return out_fd_; }
    [[nodiscard]] int stderr_fd() const { return err_fd_; }

    // Reads what is available without blocking; returns the complete stdout lines (raw).
    std::vector<std::string> read_lines();
    // Reaps the child if it has exited. True while it runs.
    bool running();
    // "exited with status 1", "was killed by signal 9"; empty while running.
    [[nodiscard]] std::string exit_description() const;
    [[nodiscard]] bool exited_cleanly() const; // status 0
    // The last lines it wrote on stderr (raw: sanitize before printing).
    [[nodiscard]] const std::deque<std::string>& stderr_tail() const { return err_tail_; }

    void signal(int signo); // to the child (the guard, for a shell command)

private:
    // Forks a child on fresh pipes that dies with `death_signal` when prove does; `become`
    // replaces it (exec) and never returns.
    static ProveChild spawn(std::string role, std::vector<std::string> args, int death_signal,
                            void (*become)(char* const* argv));
    ProveChild(std::string role, pid_t pid, int out_fd, int err_fd);
    void read_stream(int& fd, std::string& buffer, std::vector<std::string>* lines);

    std::string role_;
    pid_t pid_ = -1;
    int out_fd_ = -1;
    int err_fd_ = -1;
    std::string out_buffer_;
    std::string err_buffer_;
    std::deque<std::string> err_tail_;
    std::optional<int> status_;
};

// Waits (reading output, so no child blocks on a full pipe) until every child has exited or
// `grace` has passed, then SIGKILLs and reaps the rest. Lines the children print meanwhile go
// to `on_line(child index, line)`.
void stop_children(const std::vector<ProveChild*>& children, std::chrono::milliseconds grace,
                   const std::function<void(std::size_t, const std::string&)>& on_line);

// Polls the children's pipes for at most `timeout`; SIGINT, SIGTERM or SIGHUP (blocked outside
// this call by ProveSignals) end the wait early.
void wait_for_output(const std::vector<ProveChild*>& children, std::chrono::milliseconds timeout);

// Blocks SIGINT, SIGTERM and SIGHUP for prove's lifetime, and notes their arrival. Children
// start with an empty signal mask and default dispositions.
class ProveSignals {
public:
    ProveSignals();
    ~ProveSignals();
    ProveSignals(const ProveSignals&) = delete;
    ProveSignals& operator=(const ProveSignals&) = delete;
    [[nodiscard]] static int received(); // the signal number, 0 when none arrived
};

// Makes prove the subreaper of everything it starts, so orphans of a command come back to it.
void become_subreaper();
// Kills (SIGKILL) and reaps every process still below prove in the process tree: the last
// sweep, so that nothing outlives the run. Returns how many it had to kill.
std::size_t sweep_descendants();

} // namespace conncheck::cli
