// The sock_diag parser, the dump retry loop, /proc/net/tcp lines and recordings, fed hand-built
// bytes. The suite also runs under ASan+UBSan: truncated input must never be read past its end.
#include "conncheck/diag/dump_loop.hpp"
#include "conncheck/diag/parse.hpp"
#include "conncheck/diag/proc_net.hpp"
#include "conncheck/diag/replay.hpp"
#include "conncheck/error.hpp"
#include "support.hpp"

#include <arpa/inet.h>
#include <climits>
#include <cstddef>
#include <cstring>
#include <deque>
#include <doctest/doctest.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

using namespace conncheck;
using Bytes = std::vector<std::uint8_t>;

namespace {

void append(Bytes& out, const void* data, std::size_t size) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    out.insert(out.end(), p, p + size);
    out.resize(NLMSG_ALIGN(out.size()), 0);
}

Bytes attribute(std::uint16_t type, const void* data, std::size_t size) {
    nlattr a{};
    a.nla_len = static_cast<std::uint16_t>(NLA_HDRLEN + size);
    a.nla_type = type;
    Bytes out;
    append(out, &a, sizeof a);
    if (size > 0) append(out, data, size);
    return out;
}

Bytes message(std::uint16_t type, const Bytes& payload, std::uint16_t flags = NLM_F_MULTI,
              std::uint32_t seq = 0, std::uint32_t pid = 0) {
    nlmsghdr h{};
    h.nlmsg_len = static_cast<std::uint32_t>(NLMSG_HDRLEN + payload.size());
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    h.nlmsg_seq = seq;
    h.nlmsg_pid = pid;
    Bytes out;
    append(out, &h, sizeof h);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

Bytes status_message(std::uint16_t type, int status, std::uint32_t seq = 0) {
    Bytes payload(type == NLMSG_ERROR ? sizeof(nlmsgerr) : sizeof(int), 0);
    std::memcpy(payload.data(), &status, sizeof status);
    return message(type, payload, NLM_F_MULTI, seq);
}

Bytes concat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

inet_diag_msg v4_msg(TcpState state, std::uint16_t sport, std::uint64_t cookie) {
    inet_diag_msg m{};
    m.idiag_family = AF_INET;
    m.idiag_state = static_cast<std::uint8_t>(state);
    m.idiag_timer = 2;
    m.idiag_expires = 7000;
    m.idiag_rqueue = 11;
    m.idiag_wqueue = 22;
    m.idiag_uid = 1000;
    m.idiag_inode = 424242;
    m.id.idiag_sport = htons(sport);
    m.id.idiag_dport = htons(9443);
    m.id.idiag_src[0] = htonl(0x7f000001);
    m.id.idiag_dst[0] = htonl(0x0a000005);
    m.id.idiag_cookie[0] = static_cast<std::uint32_t>(cookie);
    m.id.idiag_cookie[1] = static_cast<std::uint32_t>(cookie >> 32);
    return m;
}

tcp_info sample_info() {
    tcp_info ti{};
    ti.tcpi_last_data_sent = 1500;
    ti.tcpi_last_data_recv = 2500;
    ti.tcpi_last_ack_recv = 3500;
    ti.tcpi_rtt = 120;
    ti.tcpi_retransmits = 1;
    ti.tcpi_total_retrans = 9;
    ti.tcpi_unacked = 3;
    ti.tcpi_bytes_received = 1ULL << 33;
    ti.tcpi_bytes_acked = 77;
    return ti;
}

Bytes diag_message(const inet_diag_msg& m, const Bytes& attrs = {},
                   std::uint16_t flags = NLM_F_MULTI) {
    Bytes payload;
    append(payload, &m, sizeof m);
    payload.insert(payload.end(), attrs.begin(), attrs.end());
    return message(SOCK_DIAG_BY_FAMILY, payload, flags);
}

Bytes meminfo(std::size_t slots) {
    std::vector<std::uint32_t> v(slots);
    for (std::size_t i = 0; i < slots; ++i)
        v[i] = static_cast<std::uint32_t>(100 + i);
    return attribute(INET_DIAG_SKMEMINFO, v.data(), v.size() * 4);
}

Bytes full_attrs() {
    const tcp_info ti = sample_info();
    return concat({attribute(INET_DIAG_INFO, &ti, sizeof ti), meminfo(SK_MEMINFO_VARS)});
}

struct Collect final : diag::DumpSink {
    std::vector<SocketRecord> sockets;
    int restarts = 0;
    void on_socket(const SocketRecord& s) override { sockets.push_back(s); }
    void on_restart() override {
        ++restarts;
        sockets.clear();
    }
};

diag::ChunkResult run_chunk(const Bytes& bytes, Collect& sink, diag::DumpStats& stats,
                            std::uint32_t seq = 0, std::uint32_t pid = 0) {
    return diag::parse_chunk(bytes.data(), bytes.size(), seq, pid, sink, stats);
}

} // namespace

TEST_CASE("a full IPv4 reply with tcp_info and meminfo") {
    const Bytes dg =
        diag_message(v4_msg(TcpState::close_wait, 40000, 0x1234567890abcdefULL), full_attrs());
    SocketRecord r;
    REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
    CHECK(r.state == TcpState::close_wait);
    CHECK(r.timer == 2);
    CHECK(r.expires_ms == 7000);
    CHECK(r.rqueue == 10); // idiag_rqueue 11 in CLOSE_WAIT: 10 data bytes and the FIN
    CHECK(r.wqueue == 22);
    CHECK(r.uid == 1000);
    CHECK(r.inode == 424242);
    CHECK(r.cookie == 0x1234567890abcdefULL);
    CHECK(r.local.family == AF_INET);
    CHECK(r.local.to_string() == "127.0.0.1:40000");
    CHECK(r.remote.to_string() == "10.0.0.5:9443");
    REQUIRE(r.info);
    CHECK(r.info->last_data_sent_ms == 1500);
    CHECK(r.info->last_data_recv_ms == 2500);
    CHECK(r.info->last_ack_recv_ms == 3500);
    CHECK(r.info->rtt_us == 120);
    CHECK(r.info->retransmits == 1);
    CHECK(r.info->total_retrans == 9);
    CHECK(r.info->unacked == 3);
    CHECK(r.info->bytes_received == (1ULL << 33));
    CHECK(r.info->bytes_acked == 77);
    REQUIRE(r.mem);
    CHECK(r.mem->rmem_alloc == 100);
    CHECK(r.mem->sndbuf == 103);
    CHECK(r.mem->drops == 108);
}

TEST_CASE("a full IPv6 reply") {
    inet_diag_msg m = v4_msg(TcpState::established, 443, 7);
    m.idiag_family = AF_INET6;
    const std::uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const std::uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    std::memcpy(m.id.idiag_src, src, 16);
    std::memcpy(m.id.idiag_dst, dst, 16);
    const Bytes dg = diag_message(m, full_attrs());
    SocketRecord r;
    REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
    CHECK(r.local.family == AF_INET6);
    CHECK(r.local.to_string() == "[2001:db8::1]:443");
    CHECK(r.remote.to_string() == "[::1]:9443");
    CHECK(r.cookie == 7);
    CHECK(r.info);
    CHECK(r.mem);
}

TEST_CASE("an IPv4-mapped IPv6 reply is the IPv4 endpoint it talks to") {
    inet_diag_msg m = v4_msg(TcpState::established, 41000, 8);
    m.idiag_family = AF_INET6;
    const std::uint8_t src[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    const std::uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5};
    std::memcpy(m.id.idiag_src, src, 16);
    std::memcpy(m.id.idiag_dst, dst, 16);
    const Bytes dg = diag_message(m, {});
    SocketRecord r;
    REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
    SocketRecord v4;
    const Bytes dg4 = diag_message(v4_msg(TcpState::time_wait, 41001, 9), {});
    REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg4.data()), v4));
    CHECK(r.remote.family == AF_INET);
    CHECK(r.local.family == AF_INET);
    CHECK(r.remote == v4.remote); // one peer, whichever family of socket reached it
    CHECK(EndpointHash{}(r.remote) == EndpointHash{}(v4.remote));
    CHECK(r.local.to_string() == "127.0.0.1:41000");
    CHECK(r.remote.to_string() == "10.0.0.5:9443");
}

TEST_CASE("idiag_rqueue after the peer's FIN: the FIN is no unread data") {
    const auto parsed = [](TcpState state, std::uint32_t rqueue) {
        inet_diag_msg m = v4_msg(state, 41000, 8);
        m.idiag_rqueue = rqueue;
        const Bytes dg = diag_message(m, {});
        SocketRecord r;
        REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
        return r.rqueue;
    };
    CHECK(parsed(TcpState::close_wait, 1) == 0); // the peer sent nothing, then FIN
    CHECK(parsed(TcpState::close_wait, 6) == 5); // 5 bytes, then FIN
    CHECK(parsed(TcpState::close_wait, 0) == 0); // the process read up to the end of the stream
    CHECK(parsed(TcpState::last_ack, 3) == 2);
    CHECK(parsed(TcpState::closing, 1) == 0);
    CHECK(parsed(TcpState::established, 6) == 6); // no FIN yet: all of it is data
    CHECK(parsed(TcpState::fin_wait2, 6) == 6);
    CHECK(parsed(TcpState::listen, 6) == 6); // the accept backlog
}

TEST_CASE("tcp_info from an older and a newer kernel") {
    const tcp_info ti = sample_info();
    SUBCASE("shorter: fields it lacks stay zero") {
        // Linux 3.x ends tcp_info before tcpi_bytes_acked (offset 120).
        const Bytes dg =
            diag_message(v4_msg(TcpState::established, 1, 1), attribute(INET_DIAG_INFO, &ti, 104));
        SocketRecord r;
        REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
        REQUIRE(r.info);
        CHECK(r.info->last_data_recv_ms == 2500);
        CHECK(r.info->rtt_us == 120);
        CHECK(r.info->bytes_acked == 0);
        CHECK(r.info->bytes_received == 0);
        CHECK_FALSE(r.mem);
    }
    SUBCASE("longer: the tail is ignored") {
        Bytes big(sizeof ti + 96, 0xee);
        std::memcpy(big.data(), &ti, sizeof ti);
        const Bytes dg = diag_message(v4_msg(TcpState::established, 1, 1),
                                      attribute(INET_DIAG_INFO, big.data(), big.size()));
        SocketRecord r;
        REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
        REQUIRE(r.info);
        CHECK(r.info->bytes_acked == 77);
        CHECK(r.info->last_ack_recv_ms == 3500);
    }
    SUBCASE("meminfo with fewer slots") {
        const Bytes dg = diag_message(v4_msg(TcpState::established, 1, 1), meminfo(4));
        SocketRecord r;
        REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
        REQUIRE(r.mem);
        CHECK(r.mem->sndbuf == 103);
        CHECK(r.mem->fwd_alloc == 0);
        CHECK(r.mem->drops == 0);
        CHECK_FALSE(r.info);
    }
    SUBCASE("empty attributes") {
        const Bytes dg = diag_message(v4_msg(TcpState::established, 1, 1),
                                      concat({attribute(INET_DIAG_INFO, nullptr, 0),
                                              attribute(INET_DIAG_SKMEMINFO, nullptr, 0)}));
        SocketRecord r;
        REQUIRE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
        CHECK(r.info->last_data_recv_ms == 0);
        CHECK(r.mem->rmem_alloc == 0);
    }
}

TEST_CASE("truncated replies are skipped, never read past their end") {
    const Bytes full = diag_message(v4_msg(TcpState::established, 1, 1), full_attrs());
    for (std::size_t cut = 0; cut < full.size(); ++cut) {
        CAPTURE(cut);
        // Exactly `cut` bytes on the heap, so ASan sees any read past them.
        Bytes dg(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
        Collect sink;
        diag::DumpStats stats;
        // The buffer is shorter than nlmsg_len says: the message is not looked at.
        CHECK(run_chunk(dg, sink, stats).status == diag::ChunkStatus::more);
        CHECK(sink.sockets.empty());
        CHECK(stats.messages + stats.malformed == 0);
        if (cut < NLMSG_HDRLEN) continue;
        // nlmsg_len cut to match: a short reply, counted malformed or parsed without the tail.
        const auto len = static_cast<std::uint32_t>(cut);
        std::memcpy(dg.data(), &len, sizeof len);
        run_chunk(dg, sink, stats);
        CHECK(stats.messages + stats.malformed == 1);
        CHECK(sink.sockets.size() == stats.messages);
        if (cut < NLMSG_HDRLEN + sizeof(inet_diag_msg)) CHECK(stats.malformed == 1);
    }
}

TEST_CASE("an nlmsg_len of 2^31 or more stops the walk (libmnl's int cast would jump away)") {
    // Found by fuzz_netlink: mnl_nlmsg_ok() accepted it and mnl_nlmsg_next() left the buffer.
    for (const std::uint32_t huge : {0x80000000U, 0xfffffff0U, 0xffffffffU}) {
        CAPTURE(huge);
        Bytes dg = concat({diag_message(v4_msg(TcpState::established, 1, 1)),
                           diag_message(v4_msg(TcpState::established, 2, 2))});
        const std::size_t second = dg.size() / 2;
        std::memcpy(dg.data() + second, &huge, sizeof huge);
        Collect sink;
        diag::DumpStats stats;
        CHECK(run_chunk(dg, sink, stats).status == diag::ChunkStatus::more);
        CHECK(sink.sockets.size() == 1);
    }
}

TEST_CASE("an attribute claiming more than the message holds makes it malformed") {
    Bytes dg = diag_message(v4_msg(TcpState::established, 1, 1), meminfo(9));
    nlattr a{};
    std::memcpy(&a, dg.data() + NLMSG_HDRLEN + sizeof(inet_diag_msg), sizeof a);
    a.nla_len = 200;
    std::memcpy(dg.data() + NLMSG_HDRLEN + sizeof(inet_diag_msg), &a, sizeof a);
    SocketRecord r;
    CHECK_FALSE(diag::parse_inet_diag(reinterpret_cast<const nlmsghdr*>(dg.data()), r));
}

TEST_CASE("a chunk of several replies, then DONE") {
    const Bytes dg =
        concat({diag_message(v4_msg(TcpState::listen, 80, 1)),
                diag_message(v4_msg(TcpState::established, 81, 2), full_attrs()),
                message(SOCK_DIAG_BY_FAMILY, Bytes(8, 0)), // too short: malformed
                status_message(NLMSG_DONE, 0), diag_message(v4_msg(TcpState::established, 82, 3))});
    Collect sink;
    diag::DumpStats stats;
    const auto r = run_chunk(dg, sink, stats);
    CHECK(r.status == diag::ChunkStatus::done);
    CHECK(r.error == 0);
    CHECK_FALSE(r.interrupted);
    REQUIRE(sink.sockets.size() == 2); // nothing after DONE
    CHECK(sink.sockets[0].local.port == 80);
    CHECK(stats.messages == 2);
    CHECK(stats.malformed == 1);
}

TEST_CASE("NLMSG_DONE and NLMSG_ERROR") {
    Collect sink;
    diag::DumpStats stats;
    SUBCASE("DONE carrying an error") {
        const auto r = run_chunk(status_message(NLMSG_DONE, -ENOENT), sink, stats);
        CHECK(r.status == diag::ChunkStatus::error);
        CHECK(r.error == ENOENT);
    }
    SUBCASE("DONE carrying INT_MIN (cannot be negated; found by fuzz_netlink)") {
        const auto r = run_chunk(status_message(NLMSG_DONE, INT_MIN), sink, stats);
        CHECK(r.status == diag::ChunkStatus::error);
        CHECK(r.error == EPROTO);
    }
    SUBCASE("DONE without the int (old kernels)") {
        const auto r = run_chunk(message(NLMSG_DONE, {}), sink, stats);
        CHECK(r.status == diag::ChunkStatus::done);
    }
    SUBCASE("ERROR") {
        const auto r = run_chunk(status_message(NLMSG_ERROR, -EPERM), sink, stats);
        CHECK(r.status == diag::ChunkStatus::error);
        CHECK(r.error == EPERM);
    }
    SUBCASE("ERROR 0 is an ACK") {
        const auto r = run_chunk(status_message(NLMSG_ERROR, 0), sink, stats);
        CHECK(r.status == diag::ChunkStatus::done);
    }
    SUBCASE("ERROR too short") {
        const auto r = run_chunk(message(NLMSG_ERROR, Bytes(2, 0)), sink, stats);
        CHECK(r.status == diag::ChunkStatus::error);
        CHECK(r.error == EBADMSG);
    }
}

TEST_CASE("sequence number and port id are checked") {
    const Bytes dg = message(SOCK_DIAG_BY_FAMILY, Bytes(80, 0), NLM_F_MULTI, 5, 99);
    Collect sink;
    diag::DumpStats stats;
    CHECK(run_chunk(dg, sink, stats, 6, 99).error == EPROTO);
    CHECK(run_chunk(dg, sink, stats, 5, 98).error == ESRCH);
    CHECK(run_chunk(dg, sink, stats, 5, 99).status == diag::ChunkStatus::more);
}

TEST_CASE("NLM_F_DUMP_INTR is reported and the rest of the datagram still delivered") {
    const Bytes dg = concat({diag_message(v4_msg(TcpState::established, 1, 1)),
                             diag_message(v4_msg(TcpState::established, 2, 2), full_attrs(),
                                          NLM_F_MULTI | NLM_F_DUMP_INTR),
                             diag_message(v4_msg(TcpState::established, 3, 3)),
                             message(NLMSG_DONE, Bytes(4, 0), NLM_F_MULTI | NLM_F_DUMP_INTR)});
    Collect sink;
    diag::DumpStats stats;
    const auto r = run_chunk(dg, sink, stats);
    CHECK(r.interrupted);
    CHECK(r.status == diag::ChunkStatus::done);
    CHECK(sink.sockets.size() == 3);
    CHECK(sink.sockets[1].info);
}

TEST_CASE("a misaligned datagram is parsed the same") {
    const Bytes dg = concat({diag_message(v4_msg(TcpState::established, 5, 5), full_attrs()),
                             status_message(NLMSG_DONE, 0)});
    Bytes shifted(dg.size() + 1);
    std::memcpy(shifted.data() + 1, dg.data(), dg.size());
    Collect sink;
    diag::DumpStats stats;
    const auto r = diag::parse_chunk(shifted.data() + 1, dg.size(), 0, 0, sink, stats);
    CHECK(r.status == diag::ChunkStatus::done);
    REQUIRE(sink.sockets.size() == 1);
    CHECK(sink.sockets[0].info->bytes_acked == 77);
    // Empty, at an odd address or none at all (found by fuzz_replay: memcpy to a null vector).
    CHECK(diag::parse_chunk(shifted.data() + 1, 0, 0, 0, sink, stats).status ==
          diag::ChunkStatus::more);
    CHECK(diag::parse_chunk(nullptr, 0, 0, 0, sink, stats).status == diag::ChunkStatus::more);
}

TEST_CASE("a sink that throws: the exception crosses libmnl intact") {
    struct Thrower final : diag::DumpSink {
        void on_socket(const SocketRecord&) override { throw std::runtime_error("sink full"); }
    } sink;
    const Bytes dg = diag_message(v4_msg(TcpState::established, 1, 1));
    diag::DumpStats stats;
    CHECK_THROWS_WITH(diag::parse_chunk(dg.data(), dg.size(), 0, 0, sink, stats), "sink full");
}

namespace {

// Scripted attempts standing in for the kernel: each attempt is a list of datagrams, where an
// empty one means "lost" (recv said ENOBUFS).
class FakeStream final : public diag::detail::DatagramStream {
public:
    std::vector<std::vector<Bytes>> attempts;
    unsigned begun = 0;
    unsigned ended = 0;

    bool begin(const diag::DumpRequest&, unsigned attempt, std::uint32_t& seq,
               std::uint32_t& portid) override {
        if (attempt >= attempts.size()) return false;
        current_ = attempt;
        next_ = 0;
        seq = 0;
        portid = 0;
        ++begun;
        return true;
    }
    diag::detail::Datagram next() override {
        const auto& a = attempts[current_];
        if (next_ >= a.size()) return {nullptr, 0, false, true};
        const Bytes& d = a[next_++];
        if (d.empty()) return {nullptr, 0, true, false};
        return {d.data(), d.size(), false, false};
    }
    void end_attempt() override { ++ended; }
    [[nodiscard]] std::string describe() const override { return "fake"; }

private:
    std::size_t current_ = 0;
    std::size_t next_ = 0;
};

Bytes one_socket_dump(std::uint16_t port, bool interrupted) {
    const std::uint16_t flags = NLM_F_MULTI | (interrupted ? NLM_F_DUMP_INTR : 0);
    return concat({diag_message(v4_msg(TcpState::established, port, port), {}, flags),
                   message(NLMSG_DONE, Bytes(4, 0), flags)});
}

} // namespace

TEST_CASE("an interrupted dump is restarted and the sink told") {
    FakeStream fake;
    Collect sink;
    const diag::DumpRequest request{AF_INET};
    SUBCASE("second attempt clean") {
        fake.attempts = {{one_socket_dump(1, true)}, {one_socket_dump(2, false)}};
        const auto stats = diag::detail::run_dump(fake, request, sink, 3);
        CHECK(stats.retries == 1);
        CHECK_FALSE(stats.inconsistent);
        CHECK(stats.messages == 1);
        CHECK(sink.restarts == 1);
        REQUIRE(sink.sockets.size() == 1);
        CHECK(sink.sockets[0].local.port == 2);
    }
    SUBCASE("still interrupted after the last retry") {
        fake.attempts = {{one_socket_dump(1, true)},
                         {one_socket_dump(2, true)},
                         {one_socket_dump(3, true)},
                         {one_socket_dump(4, false)}};
        const auto stats = diag::detail::run_dump(fake, request, sink, 2);
        CHECK(fake.begun == 3);
        CHECK(stats.retries == 2);
        CHECK(stats.inconsistent);
        REQUIRE(sink.sockets.size() == 1); // the last attempt's sockets are kept
        CHECK(sink.sockets[0].local.port == 3);
    }
    SUBCASE("lost replies (ENOBUFS) restart too") {
        const Bytes first = diag_message(v4_msg(TcpState::established, 1, 1));
        fake.attempts = {{first, Bytes{}}, {one_socket_dump(2, false)}};
        const auto stats = diag::detail::run_dump(fake, request, sink, 3);
        CHECK(stats.retries == 1);
        CHECK(sink.restarts == 1);
        CHECK(fake.ended == 1); // the abandoned attempt never reached DONE
        CHECK(sink.sockets.size() == 1);
    }
    SUBCASE("no retries allowed") {
        fake.attempts = {{one_socket_dump(1, true)}, {one_socket_dump(2, false)}};
        const auto stats = diag::detail::run_dump(fake, request, sink, 0);
        CHECK(stats.inconsistent);
        CHECK(sink.restarts == 0);
    }
}

TEST_CASE("dump errors map to Errc") {
    FakeStream fake;
    Collect sink;
    const diag::DumpRequest request{AF_INET};
    SUBCASE("no tcp_diag: source unavailable") {
        fake.attempts = {{status_message(NLMSG_ERROR, -ENOENT)}};
        try {
            (void)diag::detail::run_dump(fake, request, sink, 3);
            FAIL("no throw");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::source_unavailable);
            CHECK(std::string(e.what()).find("tcp_diag") != std::string::npos);
        }
    }
    SUBCASE("EOPNOTSUPP in DONE") {
        fake.attempts = {{status_message(NLMSG_DONE, -EOPNOTSUPP)}};
        try {
            (void)diag::detail::run_dump(fake, request, sink, 3);
            FAIL("no throw");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::source_unavailable);
        }
    }
    SUBCASE("anything else: io") {
        fake.attempts = {{status_message(NLMSG_ERROR, -EINVAL)}};
        try {
            (void)diag::detail::run_dump(fake, request, sink, 3);
            FAIL("no throw");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::io);
        }
    }
}

TEST_CASE("/proc/net/tcp lines") {
    SUBCASE("IPv4 LISTEN") {
        const auto r = diag::parse_proc_net_line(
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000005 00:00000000 00000000  1000 "
            "       0 123456 1 0000000000000000 100 0 0 10 0                   ",
            AF_INET);
        REQUIRE(r);
        CHECK(r->state == TcpState::listen);
        CHECK(r->local.to_string() == "127.0.0.1:8080");
        CHECK(r->remote.to_string() == "0.0.0.0:0");
        CHECK(r->rqueue == 5);
        CHECK(r->wqueue == 0);
        CHECK(r->uid == 1000);
        CHECK(r->inode == 123456);
        CHECK(r->cookie == 0);
        CHECK_FALSE(r->info);
        CHECK_FALSE(r->mem);
    }
    SUBCASE("IPv4 TIME_WAIT, shorter line") {
        const auto r = diag::parse_proc_net_line(
            "   1: 0100007F:8C53 0100007F:B858 06 00000000:00000000 03:00001271 00000000     0 "
            "       0 0 3 0000000059f5d588",
            AF_INET);
        REQUIRE(r);
        CHECK(r->state == TcpState::time_wait);
        CHECK(r->timer == 3);
        CHECK(r->expires_ms == 0x1271 * 1000 / static_cast<std::uint32_t>(sysconf(_SC_CLK_TCK)));
        CHECK(r->local.port == 0x8C53);
        CHECK(r->inode == 0);
    }
    SUBCASE("IPv6") {
        const auto r = diag::parse_proc_net_line(
            "   0: B80D0120000000000000000001000000:01BB 00000000000000000000000001000000:D431 "
            "01 0000000A:00000000 02:000001F4 00000000  1000        0 999 1 0000000000000000 20 "
            "4 30 10 -1",
            AF_INET6);
        REQUIRE(r);
        CHECK(r->state == TcpState::established);
        CHECK(r->local.to_string() == "[2001:db8::1]:443");
        CHECK(r->remote.to_string() == "[::1]:54321");
        CHECK(r->wqueue == 10);
        CHECK(r->timer == 2);
        CHECK(r->expires_ms == 500 * 1000 / static_cast<std::uint32_t>(sysconf(_SC_CLK_TCK)));
    }
    SUBCASE("IPv4-mapped IPv6 in CLOSE_WAIT with only the FIN unread") {
        const auto r = diag::parse_proc_net_line(
            "   0: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000500000A:24E3 "
            "08 00000000:00000001 00:00000000 00000000  1000        0 999 1 0000000000000000 20 "
            "4 30 10 -1",
            AF_INET6);
        REQUIRE(r);
        CHECK(r->state == TcpState::close_wait);
        CHECK(r->local.family == AF_INET);
        CHECK(r->remote.family == AF_INET);
        CHECK(r->local.to_string() == "127.0.0.1:54321");
        CHECK(r->remote.to_string() == "10.0.0.5:9443");
        CHECK(r->rqueue == 0);
    }
    SUBCASE("header and garbage") {
        CHECK_FALSE(diag::parse_proc_net_line("  sl  local_address rem_address   st tx_queue "
                                              "rx_queue tr tm->when retrnsmt   uid  timeout inode",
                                              AF_INET));
        CHECK_FALSE(diag::parse_proc_net_line("", AF_INET));
        CHECK_FALSE(diag::parse_proc_net_line("garbage", AF_INET));
        CHECK_FALSE(diag::parse_proc_net_line(
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000", AF_INET));
        // An IPv4 line read as IPv6 (wrong address width).
        CHECK_FALSE(diag::parse_proc_net_line(
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 "
            "       0 123456",
            AF_INET6));
        CHECK_FALSE(diag::parse_proc_net_line(
            "   0: 0100007G:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 "
            "       0 123456",
            AF_INET));
    }
}

namespace {

constexpr const char* proc_header =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n";

} // namespace

TEST_CASE("the /proc/net source reads a fixture tree") {
    testsupport::TempDir dir;
    const std::string net = dir.path() + "/42/net";
    REQUIRE(testsupport::run({"/bin/mkdir", "-p", net}).exit_code == 0);
    testsupport::write_file(
        net + "/tcp",
        std::string(proc_header) +
            "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 "
            "       0 11 1 0000000000000000 100 0 0 10 0\n"
            "   1: 0100007F:1F90 0100007F:D431 08 00000000:00000000 00:00000000 00000000  1000 "
            "       0 12 1 0000000000000000 100 0 0 10 0\n"
            "   2: broken\n");
    auto source = diag::open_proc_net(dir.path(), 42);
    CHECK(source->name() == "proc_net");
    CHECK_FALSE(source->has_tcp_info());
    Collect sink;
    diag::DumpRequest request{AF_INET};
    auto stats = source->dump(request, sink);
    CHECK(sink.sockets.size() == 2);
    CHECK(stats.messages == 2);
    CHECK(stats.malformed == 1);

    sink.sockets.clear();
    request.states = state_bit(TcpState::close_wait);
    (void)source->dump(request, sink);
    REQUIRE(sink.sockets.size() == 1);
    CHECK(sink.sockets[0].inode == 12);

    // A table that never ends (a fixture linking /dev/zero) fails instead of filling memory.
    REQUIRE(::symlink("/dev/zero", (net + "/tcp6").c_str()) == 0);
    try {
        (void)source->dump(diag::DumpRequest{AF_INET6}, sink);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::bad_file);
        CHECK(std::string(e.what()) == net + "/tcp6: larger than 64 MiB, not a socket table");
    }
    REQUIRE(::unlink((net + "/tcp6").c_str()) == 0);

    sink.sockets.clear();
    request.family = AF_INET6; // no tcp6 in the fixture: no IPv6 sockets
    (void)source->dump(request, sink);
    CHECK(sink.sockets.empty());

    try {
        (void)diag::open_proc_net(dir.path(), 43);
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(e.code() == Errc::source_unavailable);
        CHECK(std::string(e.what()).find("/43/net/tcp") != std::string::npos);
    }
}

namespace {

void put_le32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<char>(v >> (8 * i)));
}

void put_record(std::string& out, std::uint32_t family, const Bytes& dg) {
    put_le32(out, family);
    put_le32(out, static_cast<std::uint32_t>(dg.size()));
    out.append(reinterpret_cast<const char*>(dg.data()), dg.size());
}

std::string sample_recording() {
    inet_diag_msg v6 = v4_msg(TcpState::established, 6000, 60);
    v6.idiag_family = AF_INET6;
    std::string file(diag::recording_magic);
    put_record(file, AF_INET,
               concat({diag_message(v4_msg(TcpState::listen, 80, 10)),
                       diag_message(v4_msg(TcpState::established, 81, 11), full_attrs())}));
    put_record(file, AF_INET6, concat({diag_message(v6), status_message(NLMSG_DONE, 0)}));
    put_record(
        file, AF_INET,
        concat({diag_message(v4_msg(TcpState::time_wait, 82, 12)), status_message(NLMSG_DONE, 0)}));
    return file;
}

Errc replay_error(const std::string& path, std::string& what) {
    try {
        (void)diag::open_replay(path);
    } catch (const Error& e) {
        what = e.what();
        return e.code();
    }
    return Errc::usage;
}

} // namespace

TEST_CASE("replay answers from a recording, filtering states itself") {
    testsupport::TempDir dir;
    const std::string path = dir.path() + "/dump.ccnl";
    testsupport::write_file(path, sample_recording());
    auto source = diag::open_replay(path);
    CHECK(source->name() == "replay");

    Collect sink;
    diag::DumpRequest request{AF_INET};
    auto stats = source->dump(request, sink);
    CHECK(sink.sockets.size() == 3);
    CHECK(stats.messages == 3);
    CHECK(sink.sockets[1].info);

    sink.sockets.clear();
    request.states = state_bit(TcpState::listen) | state_bit(TcpState::time_wait);
    request.want_info = false;
    (void)source->dump(request, sink);
    REQUIRE(sink.sockets.size() == 2);
    CHECK(sink.sockets[0].local.port == 80);
    CHECK(sink.sockets[1].cookie == 12);

    sink.sockets.clear();
    request = diag::DumpRequest{AF_INET};
    request.want_info = false;
    (void)source->dump(request, sink);
    REQUIRE(sink.sockets.size() == 3);
    CHECK_FALSE(sink.sockets[1].info);
    CHECK(sink.sockets[1].mem);

    sink.sockets.clear();
    (void)source->dump(diag::DumpRequest{AF_INET6}, sink);
    REQUIRE(sink.sockets.size() == 1);
    CHECK(sink.sockets[0].local.port == 6000);
}

TEST_CASE("replay restarts where the recording was interrupted") {
    testsupport::TempDir dir;
    const std::string path = dir.path() + "/intr.ccnl";
    std::string file(diag::recording_magic);
    put_record(file, AF_INET, one_socket_dump(1, true));
    put_record(file, AF_INET, one_socket_dump(2, false));
    put_record(file, AF_INET, one_socket_dump(3, false)); // a later dump: not replayed
    testsupport::write_file(path, file);
    Collect sink;
    const auto stats = diag::open_replay(path)->dump(diag::DumpRequest{AF_INET}, sink);
    CHECK(stats.retries == 1);
    CHECK(sink.restarts == 1);
    REQUIRE(sink.sockets.size() == 1);
    CHECK(sink.sockets[0].local.port == 2);
}

TEST_CASE("bad recordings are Error(bad_file)") {
    testsupport::TempDir dir;
    const std::string good = sample_recording();
    std::string what;
    const std::string path = dir.path() + "/bad.ccnl";

    SUBCASE("garbage") {
        testsupport::write_file(path, "this is not a recording at all\n");
        CHECK(replay_error(path, what) == Errc::bad_file);
        CHECK(what == path + ": not a conncheck netlink recording");
    }
    SUBCASE("empty") {
        testsupport::write_file(path, "");
        CHECK(replay_error(path, what) == Errc::bad_file);
    }
    SUBCASE("missing") {
        CHECK(replay_error(dir.path() + "/none", what) == Errc::bad_file);
    }
    SUBCASE("a file that never ends: refused before a byte is read") {
        CHECK(replay_error("/dev/zero", what) == Errc::bad_file);
        CHECK(what == "recording /dev/zero is not a regular file");
    }
    SUBCASE("a recording larger than the bound: refused, not read whole") {
        // Sparse: 300 MiB that take no disk space, starting like a recording.
        testsupport::write_file(path, std::string(diag::recording_magic));
        REQUIRE(::truncate(path.c_str(), off_t{300} << 20) == 0);
        CHECK(replay_error(path, what) == Errc::bad_file);
        CHECK(what == "recording " + path + " is larger than 268435456 bytes");
    }
    SUBCASE("bad family") {
        std::string file(diag::recording_magic);
        put_record(file, 99, one_socket_dump(1, false));
        testsupport::write_file(path, file);
        CHECK(replay_error(path, what) == Errc::bad_file);
        CHECK(what.find("byte 10") != std::string::npos);
    }
    SUBCASE("truncated anywhere") {
        const std::size_t first_record = diag::recording_magic.size();
        for (std::size_t cut = first_record + 1; cut < good.size(); ++cut) {
            testsupport::write_file(path, good.substr(0, cut));
            std::string w;
            const Errc code = replay_error(path, w);
            if (code == Errc::usage) continue; // cut exactly between two records: a valid file
            CHECK(code == Errc::bad_file);
            CHECK(w.find("truncated at byte") != std::string::npos);
        }
    }
}
