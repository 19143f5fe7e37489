#include "conncheck/diag/parse.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <climits>
#include <cstring>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace conncheck::diag {

namespace {

Endpoint make_endpoint(std::uint8_t family, const __be32 (&addr)[4], __be16 port) {
    Endpoint e;
    e.family = family;
    std::memcpy(e.addr.data(), addr, family == AF_INET ? 4 : 16);
    e.port = ntohs(port);
    return canonical_endpoint(e);
}

void fill_tcp_info(const unsigned char* payload, std::size_t length, TcpInfoLite& out) {
    // struct tcp_info grows with kernel versions: an older kernel sends fewer bytes (the fields it
    // lacks stay 0), a newer one more (ignored).
    tcp_info info{};
    std::memcpy(&info, payload, std::min(length, sizeof info));
    out.last_data_sent_ms = info.tcpi_last_data_sent;
    out.last_data_recv_ms = info.tcpi_last_data_recv;
    out.last_ack_recv_ms = info.tcpi_last_ack_recv;
    out.rtt_us = info.tcpi_rtt;
    out.retransmits = info.tcpi_retransmits;
    out.total_retrans = info.tcpi_total_retrans;
    out.unacked = info.tcpi_unacked;
    out.bytes_received = info.tcpi_bytes_received;
    out.bytes_acked = info.tcpi_bytes_acked;
}

void fill_meminfo(const unsigned char* payload, std::size_t length, SkMemInfo& out) {
    std::array<std::uint32_t, SK_MEMINFO_VARS> slots{};
    std::memcpy(slots.data(), payload, std::min(length / 4, slots.size()) * 4);
    out.rmem_alloc = slots[SK_MEMINFO_RMEM_ALLOC];
    out.rcvbuf = slots[SK_MEMINFO_RCVBUF];
    out.wmem_alloc = slots[SK_MEMINFO_WMEM_ALLOC];
    out.sndbuf = slots[SK_MEMINFO_SNDBUF];
    out.fwd_alloc = slots[SK_MEMINFO_FWD_ALLOC];
    out.wmem_queued = slots[SK_MEMINFO_WMEM_QUEUED];
    out.optmem = slots[SK_MEMINFO_OPTMEM];
    out.backlog = slots[SK_MEMINFO_BACKLOG];
    out.drops = slots[SK_MEMINFO_DROPS];
}

struct ChunkContext {
    DumpSink& sink;
    DumpStats& stats;
    ChunkResult result;
    SocketRecord record;
    std::exception_ptr failure; // thrown by the sink; C++ exceptions must not cross libmnl
};

int on_data(const nlmsghdr* message, void* data) {
    auto& ctx = *static_cast<ChunkContext*>(data);
    // A dump of both families (TCPDIAG_GETSOCK) answers with that type.
    const bool diag_reply =
        message->nlmsg_type == SOCK_DIAG_BY_FAMILY || message->nlmsg_type == TCPDIAG_GETSOCK;
    if (!diag_reply || !parse_inet_diag(message, ctx.record)) {
        ++ctx.stats.malformed;
        return MNL_CB_OK;
    }
    ++ctx.stats.messages;
    try {
        ctx.sink.on_socket(ctx.record);
    } catch (...) {
        ctx.failure = std::current_exception();
        return MNL_CB_ERROR;
    }
    return MNL_CB_OK;
}

bool read_status(const nlmsghdr* message, int& status) {
    if (message->nlmsg_len < NLMSG_HDRLEN + sizeof(int)) return false;
    std::memcpy(&status, mnl_nlmsg_get_payload(message), sizeof status);
    return true;
}

// The kernel sends -errno; anything it could not have sent still counts as an error.
int errno_of(int status) {
    if (status == INT_MIN) return EPROTO;
    return status < 0 ? -status : status;
}

// libmnl's own NLMSG_DONE callback stops without looking at the int the kernel puts there: the
// dump's final status, negative errno when the dump failed part way.
int on_done(const nlmsghdr* message, void* data) {
    auto& ctx = *static_cast<ChunkContext*>(data);
    int status = 0;
    read_status(message, status);
    if (status != 0) {
        ctx.result.status = ChunkStatus::error;
        ctx.result.error = errno_of(status);
        return MNL_CB_ERROR;
    }
    ctx.result.status = ChunkStatus::done;
    return MNL_CB_STOP;
}

// struct nlmsgerr: the errno (negative), then the header of the request it answers. 0 is an ACK.
int on_error(const nlmsghdr* message, void* data) {
    auto& ctx = *static_cast<ChunkContext*>(data);
    int status = 0;
    if (!read_status(message, status)) {
        ctx.result.status = ChunkStatus::error;
        ctx.result.error = EBADMSG;
        return MNL_CB_ERROR;
    }
    if (status == 0) {
        ctx.result.status = ChunkStatus::done;
        return MNL_CB_STOP;
    }
    ctx.result.status = ChunkStatus::error;
    ctx.result.error = errno_of(status);
    return MNL_CB_ERROR;
}

// Runs messages through libmnl; false when it stopped (DONE, ERROR or a violation).
bool run_callbacks(const void* data, std::size_t size, std::uint32_t seq, std::uint32_t portid,
                   ChunkContext& ctx) {
    mnl_cb_t control[NLMSG_MIN_TYPE] = {};
    control[NLMSG_DONE] = on_done;
    control[NLMSG_ERROR] = on_error;
    const int ret = mnl_cb_run2(data, size, seq, portid, on_data, &ctx, control, NLMSG_MIN_TYPE);
    if (ret == MNL_CB_OK) return true;
    if (ret == MNL_CB_ERROR && ctx.result.status == ChunkStatus::more && !ctx.failure) {
        // A libmnl check failed: EPROTO (sequence), ESRCH (port id).
        ctx.result.status = ChunkStatus::error;
        ctx.result.error = errno != 0 ? errno : EPROTO;
    }
    return false;
}

} // namespace

bool parse_inet_diag(const nlmsghdr* message, SocketRecord& out) {
    // Everything is read through memcpy: the message may sit at any alignment (recordings,
    // fuzzers), and nlmsg_len is the message's extent, which the caller checked lies inside its
    // buffer.
    nlmsghdr header;
    std::memcpy(&header, message, sizeof header);
    constexpr std::size_t base_len = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_msg));
    if (header.nlmsg_len < base_len) return false;
    const auto* bytes = reinterpret_cast<const unsigned char*>(message);
    inet_diag_msg msg;
    std::memcpy(&msg, bytes + NLMSG_HDRLEN, sizeof msg);
    if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) return false;

    out.state = msg.idiag_state < tcp_state_count ? static_cast<TcpState>(msg.idiag_state)
                                                  : TcpState::unknown;
    out.timer = msg.idiag_timer;
    out.expires_ms = msg.idiag_expires;
    out.rqueue = unread_data_bytes(out.state, msg.idiag_rqueue);
    out.wqueue = msg.idiag_wqueue;
    out.uid = msg.idiag_uid;
    out.inode = msg.idiag_inode;
    out.cookie = msg.id.idiag_cookie[0] | std::uint64_t{msg.id.idiag_cookie[1]} << 32;
    out.interface = msg.id.idiag_if;
    out.local = make_endpoint(msg.idiag_family, msg.id.idiag_src, msg.id.idiag_sport);
    out.remote = make_endpoint(msg.idiag_family, msg.id.idiag_dst, msg.id.idiag_dport);
    out.info.reset();
    out.mem.reset();

    // Attributes are walked against the exact nlmsg_len, not libmnl's aligned payload tail, which
    // can reach past the end of a buffer whose last message has an unaligned length.
    std::size_t offset = base_len;
    while (header.nlmsg_len - offset >= NLA_HDRLEN) {
        nlattr attr;
        std::memcpy(&attr, bytes + offset, sizeof attr);
        if (attr.nla_len < NLA_HDRLEN || attr.nla_len > header.nlmsg_len - offset) return false;
        const unsigned char* payload = bytes + offset + NLA_HDRLEN;
        const std::size_t length = attr.nla_len - NLA_HDRLEN;
        switch (attr.nla_type & NLA_TYPE_MASK) {
        case INET_DIAG_INFO:
            fill_tcp_info(payload, length, out.info.emplace());
            break;
        case INET_DIAG_SKMEMINFO:
            fill_meminfo(payload, length, out.mem.emplace());
            break;
        default:
            break;
        }
        const std::size_t step = NLA_ALIGN(attr.nla_len);
        if (step >= header.nlmsg_len - offset) break;
        offset += step;
    }
    return true;
}

int message_errno(const nlmsghdr* message) {
    int status = 0;
    read_status(message, status);
    return errno_of(status);
}

ChunkResult parse_chunk(const void* data, std::size_t size, std::uint32_t seq, std::uint32_t portid,
                        DumpSink& sink, DumpStats& stats) {
    ChunkContext ctx{sink, stats, {}, {}, {}};
    if (size < NLMSG_HDRLEN) return ctx.result;
    size = std::min<std::size_t>(size, INT32_MAX); // libmnl counts in int
    std::vector<std::uint32_t> aligned;
    if (reinterpret_cast<std::uintptr_t>(data) % alignof(nlmsghdr) != 0) {
        aligned.resize((size + 3) / 4);
        std::memcpy(aligned.data(), data, size);
        data = aligned.data();
    }

    // Our own walk first, with unsigned arithmetic: libmnl's mnl_nlmsg_ok() casts nlmsg_len to
    // int, so a length of 2^31 or more passes its check and mnl_nlmsg_next() jumps out of the
    // buffer. Only the prefix of well-formed messages goes to libmnl (it would stop at the first
    // bad one anyway).
    const auto* bytes = static_cast<const unsigned char*>(data);
    std::size_t valid = 0;
    while (size - valid >= NLMSG_HDRLEN) {
        nlmsghdr h;
        std::memcpy(&h, bytes + valid, sizeof h);
        if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > size - valid) break;
        if ((h.nlmsg_flags & NLM_F_DUMP_INTR) != 0) ctx.result.interrupted = true;
        const std::size_t step = NLMSG_ALIGN(h.nlmsg_len);
        if (step >= size - valid) {
            valid = size;
            break;
        }
        valid += step;
    }

    if (!ctx.result.interrupted) {
        run_callbacks(data, valid, seq, portid, ctx);
    } else {
        // libmnl stops at the first message flagged NLM_F_DUMP_INTR (errno EINTR) and drops the
        // rest of the datagram. We want the whole dump even when it is inconsistent, so these
        // datagrams go through one message at a time, the flag cleared on a copy.
        std::vector<std::uint32_t> copy;
        for (std::size_t at = 0; at < valid;) {
            const auto* m = reinterpret_cast<const nlmsghdr*>(bytes + at);
            const nlmsghdr* one = m;
            if ((m->nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
                copy.assign((m->nlmsg_len + 3) / 4, 0);
                std::memcpy(copy.data(), m, m->nlmsg_len);
                auto* cleared = reinterpret_cast<nlmsghdr*>(copy.data());
                cleared->nlmsg_flags &= ~NLM_F_DUMP_INTR;
                one = cleared;
            }
            if (!run_callbacks(one, one->nlmsg_len, seq, portid, ctx)) break;
            at += NLMSG_ALIGN(m->nlmsg_len);
        }
    }
    if (ctx.failure) std::rethrow_exception(ctx.failure);
    return ctx.result;
}

} // namespace conncheck::diag
