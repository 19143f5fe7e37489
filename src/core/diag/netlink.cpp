#include "conncheck/diag/netlink.hpp"

#include "conncheck/diag/dump_loop.hpp"
#include "conncheck/diag/parse.hpp"
#include "conncheck/diag/replay.hpp"
#include "conncheck/diag/requests.hpp"
#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <exception>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

namespace conncheck::diag {

namespace {

// The kernel sizes each dump skb from the largest recv() buffer it has seen, capped just below
// 32 KiB (netlink_recvmsg: max_recvmsg_len), so a bigger buffer would not mean fewer datagrams.
constexpr std::size_t receive_buffer_size = 32768;

struct MnlSocketCloser {
    void operator()(mnl_socket* nl) const { mnl_socket_close(nl); }
};
using MnlSocket = std::unique_ptr<mnl_socket, MnlSocketCloser>;

[[noreturn]] void fail(Errc code, const std::string& context, int err) {
    throw Error(code, errno_message(context, err));
}

std::string describe_netns(int fd) {
    char target[128] = {};
    const std::string link = "/proc/self/fd/" + std::to_string(fd);
    const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    return n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "fd " + std::to_string(fd);
}

int create_diag_socket() {
    return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
}

// A netlink socket answers for the network namespace it was created in, whatever thread later
// uses it. A helper thread enters the namespace, creates the socket and exits, so this process
// never changes namespace itself.
MnlSocket open_socket(int netns_fd) {
    int fd = -1;
    int err = 0;
    bool entered = true;
    if (netns_fd < 0) {
        fd = create_diag_socket();
        err = errno;
    } else {
        try {
            std::thread helper([&] {
                if (setns(netns_fd, CLONE_NEWNET) != 0) {
                    err = errno;
                    entered = false;
                    return;
                }
                fd = create_diag_socket();
                err = errno;
            });
            helper.join();
        } catch (const std::system_error& e) {
            throw Error(Errc::io, std::string("cannot start a thread to enter the network "
                                              "namespace: ") +
                                      e.what());
        }
    }
    if (!entered) {
        const std::string what = "cannot enter the network namespace " + describe_netns(netns_fd);
        if (err == EPERM) {
            throw Error(Errc::permission_denied,
                        errno_message(what, err) + " (" +
                            privilege::hint(privilege::Access::network_namespace) + ")");
        }
        throw Error(Errc::io, errno_message(what, err));
    }
    if (fd < 0) {
        if (err == EPROTONOSUPPORT || err == EAFNOSUPPORT || err == ENOENT) {
            throw Error(Errc::source_unavailable,
                        errno_message("cannot open a NETLINK_SOCK_DIAG socket", err));
        }
        fail(Errc::io, "cannot open a NETLINK_SOCK_DIAG socket", err);
    }
    MnlSocket nl(mnl_socket_fdopen(fd));
    if (!nl) {
        err = errno;
        close(fd);
        fail(Errc::io, "cannot set up the netlink socket", err);
    }
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) != 0) {
        fail(Errc::io, "cannot bind the netlink socket", errno);
    }
    return nl;
}

class NetlinkSource final : public SocketSource, private detail::DatagramStream {
public:
    explicit NetlinkSource(const NetlinkOptions& options)
        : max_retries_(options.max_retries), record_fd_(options.record_fd),
          record_path_(options.record_path), seq_(static_cast<std::uint32_t>(time(nullptr))),
          buffer_(receive_buffer_size / 4) {
        if (options.netns_fd >= 0) {
            // Kept so the socket can be opened again in that namespace after ENOBUFS.
            netns_fd_ = fcntl(options.netns_fd, F_DUPFD_CLOEXEC, 0);
            if (netns_fd_ < 0) fail(Errc::io, "cannot duplicate the network namespace fd", errno);
        }
        try {
            nl_ = open_socket(netns_fd_);
        } catch (...) {
            if (netns_fd_ >= 0) close(netns_fd_);
            throw;
        }
    }
    ~NetlinkSource() override {
        if (netns_fd_ >= 0) close(netns_fd_);
    }
    NetlinkSource(const NetlinkSource&) = delete;
    NetlinkSource& operator=(const NetlinkSource&) = delete;

    DumpStats dump(const DumpRequest& request, DumpSink& sink) override {
        return detail::run_dump(*this, request, sink, max_retries_);
    }
    [[nodiscard]] SourceKind kind() const override { return SourceKind::netlink; }
    [[nodiscard]] bool can_target() const override { return record_fd_ < 0; }

    DumpStats fetch(std::span<const SocketRecord* const> sockets, bool want_info, bool want_mem,
                    DumpSink& sink) override {
        if (!can_target()) return SocketSource::fetch(sockets, want_info, want_mem, sink);
        if (in_dump_) {
            nl_.reset();
            nl_ = open_socket(netns_fd_);
            in_dump_ = false;
            rcvbuf_ = 0;
        }
        const std::size_t batch_limit = exact_batch_size();
        const std::uint8_t ext = extensions(want_info, want_mem);
        DumpStats stats;
        std::vector<std::size_t> todo(sockets.size());
        for (std::size_t i = 0; i < sockets.size(); ++i)
            todo[i] = i;
        std::vector<std::size_t> unanswered;
        std::vector<std::uint32_t> out;
        std::vector<char> answered;
        std::size_t batch = batch_limit;
        for (unsigned round = 0; !todo.empty(); ++round) {
            if (round > max_retries_ + 1)
                throw Error(Errc::io, "the kernel kept dropping sock_diag replies (receive "
                                      "buffer overrun)");
            unanswered.clear();
            for (std::size_t from = 0; from < todo.size(); from += batch) {
                const std::size_t count = std::min(batch, todo.size() - from);
                const std::uint32_t base = next_seq_block(count);
                out.clear();
                for (std::size_t k = 0; k < count; ++k)
                    append_exact_request(out, *sockets[todo[from + k]],
                                         base + static_cast<std::uint32_t>(k), ext);
                for (;;) {
                    if (mnl_socket_sendto(nl_.get(), out.data(), out.size() * 4) >= 0) break;
                    if (errno != EINTR) fail(Errc::io, "cannot send sock_diag requests", errno);
                }
                answered.assign(count, 0);
                // The kernel answers every request of the datagram inside sendmsg(): each
                // answer is queued by now, or was dropped because the receive buffer was full.
                const bool lost = drain_exact(base, answered, sink, stats);
                for (std::size_t k = 0; k < count; ++k)
                    if (answered[k] == 0) unanswered.push_back(todo[from + k]);
                if (lost) batch = std::max<std::size_t>(1, batch / 2);
            }
            todo.swap(unanswered);
        }
        return stats;
    }

private:
    // As many exact requests per sendmsg as their answers (with tcp_info and skmeminfo, each
    // in an skb of about 2 KiB truesize) fit the receive buffer, which root may raise.
    std::size_t exact_batch_size() {
        if (rcvbuf_ == 0) {
            const int fd = mnl_socket_get_fd(nl_.get());
            int want = 4 << 20;
            if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) != 0)
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
            int got = 0;
            socklen_t len = sizeof got;
            if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0 || got <= 0) got = 212992;
            rcvbuf_ = static_cast<std::size_t>(got);
        }
        return std::clamp<std::size_t>(rcvbuf_ / 4096, 8, 512);
    }

    std::uint32_t next_seq_block(std::size_t count) {
        if (seq_ > UINT32_MAX - count - 1) seq_ = 0;
        const std::uint32_t base = seq_ + 1;
        seq_ += static_cast<std::uint32_t>(count);
        return base;
    }

    // Reads every queued answer to the requests numbered base.. ; true when some were lost.
    // Each answer is a datagram of its own: recvmmsg() takes a batch per system call.
    bool drain_exact(std::uint32_t base, std::vector<char>& answered, DumpSink& sink,
                     DumpStats& stats) {
        const int fd = mnl_socket_get_fd(nl_.get());
        if (exact_buffer_.empty()) exact_buffer_.resize(exact_slot * exact_slots / 4);
        auto* bytes = reinterpret_cast<unsigned char*>(exact_buffer_.data());
        std::array<iovec, exact_slots> iov{};
        std::array<mmsghdr, exact_slots> msgs{};
        bool lost = false;
        for (;;) {
            for (std::size_t i = 0; i < exact_slots; ++i) {
                iov[i] = {bytes + i * exact_slot, exact_slot};
                msgs[i] = {};
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            const int got = recvmmsg(fd, msgs.data(), exact_slots, MSG_DONTWAIT, nullptr);
            if (got < 0) {
                if (errno == EINTR) continue;
                if (errno == ENOBUFS) {
                    lost = true;
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                fail(Errc::io, "cannot receive from the netlink socket", errno);
            }
            for (int i = 0; i < got; ++i)
                take_exact_answers(bytes + static_cast<std::size_t>(i) * exact_slot,
                                   msgs[static_cast<std::size_t>(i)].msg_len, base, answered, sink,
                                   stats);
        }
        return lost;
    }

    // The answers in one datagram; a message that answers none of the requests (a stale reply
    // to an earlier batch) is skipped.
    void take_exact_answers(const unsigned char* bytes, std::size_t left, std::uint32_t base,
                            std::vector<char>& answered, DumpSink& sink, DumpStats& stats) {
        const std::uint32_t portid = mnl_socket_get_portid(nl_.get());
        for (std::size_t at = 0; left - at >= NLMSG_HDRLEN;) {
            const auto* m = reinterpret_cast<const nlmsghdr*>(bytes + at);
            if (m->nlmsg_len < NLMSG_HDRLEN || m->nlmsg_len > left - at) break;
            const std::uint32_t k = m->nlmsg_seq - base;
            if (m->nlmsg_pid == portid && k < answered.size() && answered[k] == 0) {
                answered[k] = 1;
                if (m->nlmsg_type == NLMSG_ERROR) {
                    const int err = message_errno(m);
                    // ENOENT: no socket with that 4-tuple any more; ESTALE: the 4-tuple
                    // belongs to a newer socket (another cookie).
                    if (err == ENOENT || err == ESTALE) {
                        ++stats.gone;
                    } else if (err != 0) {
                        throw Error(Errc::io,
                                    errno_message("sock_diag request for one socket failed", err));
                    }
                } else if (m->nlmsg_type == SOCK_DIAG_BY_FAMILY && parse_inet_diag(m, record_)) {
                    ++stats.messages;
                    sink.on_socket(record_);
                } else {
                    ++stats.malformed;
                }
            }
            const std::size_t step = NLMSG_ALIGN(m->nlmsg_len);
            if (step >= left - at) break;
            at += step;
        }
    }

    bool begin(const DumpRequest& request, unsigned /*attempt*/, std::uint32_t& seq,
               std::uint32_t& portid) override {
        // A dump left unfinished (the sink threw, replies were lost) still holds the socket: the
        // kernel refuses a second dump with EBUSY. Closing the socket ends it.
        if (in_dump_) {
            nl_.reset();
            nl_ = open_socket(netns_fd_);
            rcvbuf_ = 0;
        }
        family_ = request.family;
        seq_ = seq_ + 1 == 0 ? 1 : seq_ + 1;
        seq = seq_;
        portid = mnl_socket_get_portid(nl_.get());

        const std::vector<std::uint32_t> message = dump_request(request, seq);
        for (;;) {
            if (mnl_socket_sendto(nl_.get(), message.data(), message.size() * 4) >= 0) break;
            if (errno != EINTR) fail(Errc::io, "cannot send the netlink dump request", errno);
        }
        in_dump_ = true;
        return true;
    }

    detail::Datagram next() override {
        for (;;) {
            const ssize_t n = mnl_socket_recvfrom(nl_.get(), buffer_.data(), receive_buffer_size);
            if (n > 0) {
                record(buffer_.data(), static_cast<std::size_t>(n));
                return {buffer_.data(), static_cast<std::size_t>(n), false, false};
            }
            if (n == 0) throw Error(Errc::io, "netlink socket returned no data");
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) {
                // Replies were dropped; the rest of this dump cannot be trusted to arrive. Leave
                // a DONE flagged interrupted in the recording so a replay restarts here too.
                record_lost_marker();
                return {nullptr, 0, true, false};
            }
            fail(Errc::io, "cannot receive from the netlink socket", errno);
        }
    }

    void end_attempt() override { in_dump_ = false; }
    [[nodiscard]] std::string describe() const override { return "the kernel (sock_diag)"; }

    void record(const void* data, std::size_t size) {
        if (record_fd_ < 0) return;
        std::array<unsigned char, 8> head{};
        const std::uint32_t values[2] = {family_, static_cast<std::uint32_t>(size)};
        for (std::size_t i = 0; i < 8; ++i) {
            head[i] = static_cast<unsigned char>(values[i / 4] >> (8 * (i % 4)));
        }
        write_all(head.data(), head.size(), data, size);
    }

    void record_lost_marker() {
        struct {
            nlmsghdr header;
            int status;
        } done{};
        done.header.nlmsg_len = sizeof done;
        done.header.nlmsg_type = NLMSG_DONE;
        done.header.nlmsg_flags = NLM_F_MULTI | NLM_F_DUMP_INTR;
        done.header.nlmsg_seq = seq_;
        done.header.nlmsg_pid = mnl_socket_get_portid(nl_.get());
        record(&done, sizeof done);
    }

    void write_all(const void* a, std::size_t a_len, const void* b, std::size_t b_len) {
        iovec iov[2] = {{const_cast<void*>(a), a_len}, {const_cast<void*>(b), b_len}};
        int idx = 0;
        while (idx < 2) {
            const ssize_t n = writev(record_fd_, iov + idx, 2 - idx);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail(Errc::usage, "cannot write " + record_path_, errno);
            }
            auto done = static_cast<std::size_t>(n);
            while (idx < 2 && done >= iov[idx].iov_len)
                done -= iov[idx++].iov_len;
            if (idx < 2) {
                iov[idx].iov_base = static_cast<char*>(iov[idx].iov_base) + done;
                iov[idx].iov_len -= done;
            }
        }
    }

    unsigned max_retries_;
    int record_fd_;
    std::string record_path_;
    std::uint32_t seq_;
    std::vector<std::uint32_t> buffer_;
    // Exact answers: a slot per datagram, each far larger than one answer (about 600 bytes
    // with tcp_info and socket memory).
    static constexpr std::size_t exact_slot = 4096;
    static constexpr std::size_t exact_slots = 32;
    std::vector<std::uint32_t> exact_buffer_;
    SocketRecord record_;
    MnlSocket nl_;
    int netns_fd_ = -1;
    std::uint8_t family_ = 0;
    bool in_dump_ = false;
    std::size_t rcvbuf_ = 0;
};

class NetlinkDestroyer final : public SocketDestroyer {
public:
    explicit NetlinkDestroyer(int netns_fd)
        : nl_(open_socket(netns_fd)), seq_(static_cast<std::uint32_t>(time(nullptr))) {}

    DestroyAnswer destroy(const SocketRecord& socket) override {
        seq_ = seq_ + 1 == 0 ? 1 : seq_ + 1;
        std::vector<std::uint32_t> out;
        append_destroy_request(out, socket, seq_);
        for (;;) {
            if (mnl_socket_sendto(nl_.get(), out.data(), out.size() * 4) >= 0) break;
            if (errno != EINTR) fail(Errc::io, "cannot send a SOCK_DESTROY request", errno);
        }
        const int err = await_ack();
        switch (err) {
        case 0:
            return {DestroyResult::destroyed, 0};
        case ENOENT:
            return {DestroyResult::gone, err};
        case ESTALE:
            return {DestroyResult::replaced, err};
        case EPERM:
        case EACCES:
            return {DestroyResult::not_permitted, err};
        default:
            return {DestroyResult::refused, err};
        }
    }

private:
    // The errno of the acknowledgement that answers request seq_ (0 for success); answers to
    // other requests are skipped.
    int await_ack() {
        const std::uint32_t portid = mnl_socket_get_portid(nl_.get());
        for (;;) {
            const ssize_t n = mnl_socket_recvfrom(nl_.get(), buffer_.data(), buffer_.size() * 4);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail(Errc::io, "cannot receive the answer to SOCK_DESTROY", errno);
            }
            const auto* bytes = reinterpret_cast<const unsigned char*>(buffer_.data());
            auto left = static_cast<std::size_t>(n);
            for (std::size_t at = 0; left - at >= NLMSG_HDRLEN;) {
                const auto* m = reinterpret_cast<const nlmsghdr*>(bytes + at);
                if (m->nlmsg_len < NLMSG_HDRLEN || m->nlmsg_len > left - at) break;
                if (m->nlmsg_type == NLMSG_ERROR && m->nlmsg_seq == seq_ && m->nlmsg_pid == portid)
                    return message_errno(m);
                const std::size_t step = NLMSG_ALIGN(m->nlmsg_len);
                if (step >= left - at) break;
                at += step;
            }
        }
    }

    MnlSocket nl_;
    std::uint32_t seq_;
    std::vector<std::uint32_t> buffer_ = std::vector<std::uint32_t>(2048);
};

} // namespace

SocketDestroyer::~SocketDestroyer() = default;

std::unique_ptr<SocketSource> open_netlink(const NetlinkOptions& options) {
    return std::make_unique<NetlinkSource>(options);
}

std::unique_ptr<SocketDestroyer> open_destroyer(int netns_fd) {
    return std::make_unique<NetlinkDestroyer>(netns_fd);
}

} // namespace conncheck::diag
