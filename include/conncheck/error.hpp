// The one exception type the core throws. Front ends map `Errc` to an exit code and print
// `what()` as a single line; the core itself never prints.
#pragma once

#include <stdexcept>
#include <string>

namespace conncheck {

enum class Errc {
    usage,              // bad input from the user: a malformed pid, threshold, duration
    no_such_process,    // the pid does not exist, or no process matches a selector
    process_exited,     // the process existed when we started and vanished during the scan
    permission_denied,  // /proc/PID/fd or a namespace needs more privilege
    source_unavailable, // neither sock_diag nor /proc/net/tcp could be read
    bad_file,           // a pidfile, recording or state file that is unreadable or corrupt
    io,                 // any other system call failure
    timeout,            // a deadline set by the caller passed
};

class Error : public std::runtime_error {
public:
    Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
    [[nodiscard]] Errc code() const noexcept { return code_; }

private:
    Errc code_;
};

// "cannot read /proc/42/fd: Permission denied" from a context and an errno value.
[[nodiscard]] std::string errno_message(const std::string& context, int err);

// Throws Error with the Errc that fits `err` (ENOENT/ESRCH -> no_such_process, EACCES/EPERM ->
// permission_denied, otherwise `fallback`).
[[noreturn]] void throw_errno(const std::string& context, int err, Errc fallback = Errc::io);

} // namespace conncheck
