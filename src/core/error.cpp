#include "conncheck/error.hpp"

#include "conncheck/privilege.hpp"

#include <cerrno>
#include <cstring>

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
        message += " (" + privilege::hint(privilege::Access::process_fds) + ")";
    throw Error(code, message);
}

} // namespace conncheck
