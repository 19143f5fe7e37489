// libFuzzer harness: arbitrary bytes as a recording file (after the magic when the first byte is
// even, so both the header check and the records get exercised). Only Error may come out.
#include "conncheck/diag/replay.hpp"
#include "conncheck/error.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

struct CountSink final : conncheck::diag::DumpSink {
    std::size_t n = 0;
    void on_socket(const conncheck::SocketRecord&) override { ++n; }
    void on_restart() override { n = 0; }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const int fd = memfd_create("fuzz_replay", MFD_CLOEXEC);
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (fd < 0 || ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) return 0;
    if (size > 0 && data[0] % 2 == 0) {
        const auto magic = conncheck::diag::recording_magic;
        if (write(fd, magic.data(), magic.size()) != static_cast<ssize_t>(magic.size())) return 0;
        ++data;
        --size;
    }
    if (size > 0 && write(fd, data, size) != static_cast<ssize_t>(size)) return 0;
    try {
        auto source = conncheck::diag::open_replay(path);
        CountSink sink;
        for (const int family : {AF_INET, AF_INET6}) {
            conncheck::diag::DumpRequest request;
            request.family = static_cast<std::uint8_t>(family);
            request.states = conncheck::state_bit(conncheck::TcpState::established);
            (void)source->dump(request, sink);
        }
    } catch (const conncheck::Error&) {
    }
    return 0;
}
