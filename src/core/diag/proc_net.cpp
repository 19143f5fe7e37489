#include "conncheck/diag/proc_net.hpp"

#include "conncheck/error.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

namespace conncheck::diag {

namespace {

template <typename T> bool parse_number(std::string_view text, T& out, int base) {
    if (text.empty()) return false;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
    return ec == std::errc{} && end == text.data() + text.size();
}

// "0100007F:1F90": the address as the kernel's u32 words printed with %08X (so each word is in
// host byte order), then the port with %04X.
bool parse_endpoint(std::string_view text, std::uint8_t family, Endpoint& out) {
    const std::size_t words = family == AF_INET ? 1 : 4;
    if (text.size() != words * 8 + 5 || text[words * 8] != ':') return false;
    out.family = family;
    out.addr = {};
    for (std::size_t i = 0; i < words; ++i) {
        std::uint32_t word = 0;
        if (!parse_number(text.substr(i * 8, 8), word, 16)) return false;
        std::memcpy(out.addr.data() + i * 4, &word, 4);
    }
    return parse_number(text.substr(words * 8 + 1), out.port, 16);
}

bool split_pair(std::string_view text, std::string_view& a, std::string_view& b) {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    a = text.substr(0, colon);
    b = text.substr(colon + 1);
    return true;
}

long clock_ticks_per_second() {
    static const long ticks = [] {
        const long t = sysconf(_SC_CLK_TCK);
        return t > 0 ? t : 100;
    }();
    return ticks;
}

// The kernel writes about 150 bytes per socket: 64 MiB is over 400,000 sockets. A --proc-root
// whose net/tcp never ends (a link to /dev/zero) fails instead of filling memory.
constexpr std::size_t max_table_bytes = std::size_t{64} << 20;

class ProcNetSource final : public SocketSource {
public:
    explicit ProcNetSource(std::string dir) : dir_(std::move(dir)) {
        // Fail now, not at the first dump, when the directory is not there.
        const std::string path = dir_ + "/tcp";
        if (access(path.c_str(), R_OK) != 0) {
            throw Error(Errc::source_unavailable, errno_message("cannot read " + path, errno));
        }
    }

    DumpStats dump(const DumpRequest& request, DumpSink& sink) override {
        DumpStats stats;
        const std::string path = dir_ + (request.family == AF_INET6 ? "/tcp6" : "/tcp");
        std::string text;
        const int err = read_file(path, text);
        // A kernel without IPv6 has no tcp6: no IPv6 sockets, not an error.
        if (err == ENOENT && request.family == AF_INET6) return stats;
        if (err == EFBIG)
            throw Error(Errc::bad_file, path + ": larger than " +
                                            std::to_string(max_table_bytes >> 20) +
                                            " MiB, not a socket table");
        if (err != 0) {
            throw Error(Errc::source_unavailable, errno_message("cannot read " + path, err));
        }
        std::string_view rest = text;
        bool first = true;
        while (!rest.empty()) {
            const auto eol = rest.find('\n');
            const std::string_view line = rest.substr(0, eol);
            rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 1);
            if (std::exchange(first, false) || line.empty()) continue; // the header
            const auto socket = parse_proc_net_line(line, request.family);
            if (!socket) {
                ++stats.malformed;
                continue;
            }
            ++stats.messages;
            if ((request.states & state_bit(socket->state)) != 0) sink.on_socket(*socket);
        }
        return stats;
    }
    [[nodiscard]] SourceKind kind() const override { return SourceKind::proc_net; }
    [[nodiscard]] bool has_tcp_info() const override { return false; }

private:
    static int read_file(const std::string& path, std::string& out) {
        // O_NONBLOCK: a FIFO planted in a --proc-root tree reads as empty instead of hanging.
        const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) return errno;
        char chunk[65536];
        int err = 0;
        for (;;) {
            const ssize_t n = read(fd, chunk, sizeof chunk);
            if (n > 0) {
                out.append(chunk, static_cast<std::size_t>(n));
                if (out.size() > max_table_bytes) {
                    err = EFBIG;
                    break;
                }
            } else if (n == 0) {
                break;
            } else if (errno != EINTR) {
                err = errno;
                break;
            }
        }
        close(fd);
        return err;
    }

    std::string dir_;
};

} // namespace

std::optional<SocketRecord> parse_proc_net_line(std::string_view line, std::uint8_t family) {
    if (family != AF_INET && family != AF_INET6) return std::nullopt;
    // sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode [more]
    std::array<std::string_view, 10> fields;
    std::size_t count = 0;
    std::size_t at = 0;
    while (count < fields.size()) {
        at = line.find_first_not_of(' ', at);
        if (at == std::string_view::npos) break;
        const std::size_t end = std::min(line.find(' ', at), line.size());
        fields[count++] = line.substr(at, end - at);
        at = end;
    }
    if (count < fields.size() || fields[0].size() < 2 || fields[0].back() != ':') {
        return std::nullopt;
    }
    std::uint32_t slot = 0;
    if (!parse_number(fields[0].substr(0, fields[0].size() - 1), slot, 10)) return std::nullopt;

    SocketRecord r;
    std::uint8_t state = 0;
    std::string_view tx;
    std::string_view rx;
    std::string_view timer;
    std::string_view when;
    std::uint64_t ticks = 0;
    std::uint32_t retransmits = 0;
    std::uint32_t timeout = 0;
    if (!parse_endpoint(fields[1], family, r.local) ||
        !parse_endpoint(fields[2], family, r.remote) || !parse_number(fields[3], state, 16) ||
        !split_pair(fields[4], tx, rx) || !parse_number(tx, r.wqueue, 16) ||
        !parse_number(rx, r.rqueue, 16) || !split_pair(fields[5], timer, when) ||
        !parse_number(timer, r.timer, 16) || !parse_number(when, ticks, 16) ||
        !parse_number(fields[6], retransmits, 16) || !parse_number(fields[7], r.uid, 10) ||
        !parse_number(fields[8], timeout, 10) || !parse_number(fields[9], r.inode, 10)) {
        return std::nullopt;
    }
    r.state = state < tcp_state_count ? static_cast<TcpState>(state) : TcpState::unknown;
    r.rqueue = unread_data_bytes(r.state, r.rqueue);
    r.local = canonical_endpoint(r.local);
    r.remote = canonical_endpoint(r.remote);
    // tm->when is in clock ticks (USER_HZ), converted from jiffies by the kernel.
    const auto hz = static_cast<std::uint64_t>(clock_ticks_per_second());
    const std::uint64_t ms = ticks > UINT32_MAX ? UINT64_MAX : ticks * 1000 / hz;
    r.expires_ms = ms > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(ms);
    return r;
}

std::unique_ptr<SocketSource> open_proc_net(const std::string& proc_root, pid_t pid) {
    const std::string dir =
        pid == 0 ? proc_root + "/net" : proc_root + "/" + std::to_string(pid) + "/net";
    return std::make_unique<ProcNetSource>(dir);
}

} // namespace conncheck::diag
