#include "conncheck/fd.hpp"

#include <unistd.h>

namespace conncheck {

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

} // namespace conncheck
