#include "conncheck/error.hpp"

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace conncheck {

std::string errno_message(const std::string& context, int err) {
    return context + ": " + std::strerror(err);
}

void throw_errno(const std::string& context, int err, Errc fallback) {
    Errc code = fallback;
    if (err == ENOENT || err == ESRCH) code = Errc::no_such_process;
    if (err == EACCES || err == EPERM) code = Errc::permission_denied;
    std::string message = errno_message(context, err);
    if (code == Errc::permission_denied)
        message += ::geteuid() == 0
                       ? " (refused even to root: a ptrace restriction or security module)"
                       : " (run as root or with CAP_SYS_PTRACE)";
    throw Error(code, message);
}

} // namespace conncheck
