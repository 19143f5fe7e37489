#include "conncheck/diag/requests.hpp"

#include "conncheck/error.hpp"

#include <arpa/inet.h>
#include <cstring>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace conncheck::diag {

std::uint8_t extensions(bool want_info, bool want_mem) {
    return static_cast<std::uint8_t>((want_info ? 1U << (INET_DIAG_INFO - 1) : 0U) |
                                     (want_mem ? 1U << (INET_DIAG_SKMEMINFO - 1) : 0U));
}

// "cgroup is A or B or ..." in inet_diag bytecode. The kernel accepts a socket when the program
// jumps exactly to its end and rejects it when a jump overshoots; its verifier follows the
// `yes` offsets, so every op must lie on that path. Each condition jumps (yes) to a JMP that
// leaves for the end, or (no) over that JMP to the next condition; the last one's `no`
// overshoots. The same shape as `ss` builds for "A or B".
std::vector<unsigned char> cgroup_bytecode(const std::vector<std::uint64_t>& cgroups) {
    constexpr std::uint16_t cond_len = sizeof(inet_diag_bc_op) + sizeof(std::uint64_t);
    constexpr std::uint16_t jmp_len = sizeof(inet_diag_bc_op);
    std::vector<unsigned char> code;
    for (std::size_t i = 0; i < cgroups.size(); ++i) {
        const bool last = i + 1 == cgroups.size();
        const inet_diag_bc_op cond{INET_DIAG_BC_CGROUP_COND, cond_len,
                                   static_cast<std::uint16_t>(cond_len + jmp_len)};
        const auto at = code.size();
        code.resize(at + cond_len);
        std::memcpy(code.data() + at, &cond, sizeof cond);
        std::memcpy(code.data() + at + sizeof cond, &cgroups[i], sizeof cgroups[i]);
        if (last) break;
        const std::size_t rest = (cgroups.size() - i - 1) * (cond_len + jmp_len) - jmp_len;
        const inet_diag_bc_op jmp{INET_DIAG_BC_JMP, jmp_len,
                                  static_cast<std::uint16_t>(rest + jmp_len)};
        code.resize(code.size() + jmp_len);
        std::memcpy(code.data() + code.size() - jmp_len, &jmp, sizeof jmp);
    }
    return code;
}

// The dump request. AF_UNSPEC takes the older TCPDIAG_GETSOCK message, the only one the kernel
// answers for both families in one walk (`ss -tan` uses it too).
std::vector<std::uint32_t> dump_request(const DumpRequest& request, std::uint32_t seq) {
    const bool both = request.family == AF_UNSPEC;
    const std::size_t req_len = both ? sizeof(inet_diag_req) : sizeof(inet_diag_req_v2);
    const std::vector<unsigned char> code = cgroup_bytecode(request.cgroups);
    if (code.size() > 0xffff - NLA_HDRLEN)
        throw Error(Errc::io, "too many cgroups for one sock_diag filter");
    const std::size_t total = NLMSG_HDRLEN + NLMSG_ALIGN(req_len) +
                              (code.empty() ? 0 : NLA_HDRLEN + NLA_ALIGN(code.size()));
    std::vector<std::uint32_t> buf((total + 3) / 4, 0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = both ? TCPDIAG_GETSOCK : SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    if (both) {
        auto* req = static_cast<inet_diag_req*>(mnl_nlmsg_put_extra_header(nlh, req_len));
        req->idiag_family = AF_UNSPEC;
        req->idiag_ext = extensions(request.want_info, request.want_mem);
        req->idiag_states = request.states;
    } else {
        auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, req_len));
        req->sdiag_family = request.family;
        req->sdiag_protocol = IPPROTO_TCP;
        req->idiag_ext = extensions(request.want_info, request.want_mem);
        req->idiag_states = request.states;
    }
    if (!code.empty()) mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, code.size(), code.data());
    return buf;
}

namespace {

// A request for one socket, named by its 4-tuple, interface and cookie: the kernel looks the
// 4-tuple up, then checks the cookie (ESTALE when a newer socket holds the 4-tuple).
void append_one_socket(std::vector<std::uint32_t>& out, const SocketRecord& s, std::uint32_t seq,
                       std::uint16_t type, std::uint16_t flags, std::uint8_t ext) {
    constexpr std::size_t len = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(inet_diag_req_v2));
    const std::size_t at = out.size();
    out.resize(at + len / 4, 0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(out.data() + at);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    auto* req =
        static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = s.local.family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_ext = ext;
    req->idiag_states = all_states;
    const std::size_t addr_len = s.local.family == AF_INET ? 4 : 16;
    req->id.idiag_sport = htons(s.local.port);
    req->id.idiag_dport = htons(s.remote.port);
    std::memcpy(req->id.idiag_src, s.local.addr.data(), addr_len);
    std::memcpy(req->id.idiag_dst, s.remote.addr.data(), addr_len);
    req->id.idiag_if = s.interface;
    req->id.idiag_cookie[0] = static_cast<std::uint32_t>(s.cookie);
    req->id.idiag_cookie[1] = static_cast<std::uint32_t>(s.cookie >> 32);
}

} // namespace

// SOCK_DIAG_BY_FAMILY without NLM_F_DUMP.
void append_exact_request(std::vector<std::uint32_t>& out, const SocketRecord& s, std::uint32_t seq,
                          std::uint8_t ext) {
    append_one_socket(out, s, seq, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, ext);
}

// SOCK_DESTROY answers only with an error message; NLM_F_ACK makes it answer success too.
void append_destroy_request(std::vector<std::uint32_t>& out, const SocketRecord& s,
                            std::uint32_t seq) {
    append_one_socket(out, s, seq, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 0);
}

} // namespace conncheck::diag
