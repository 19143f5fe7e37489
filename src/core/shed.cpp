#include "conncheck/shed.hpp"

#include "conncheck/analysis.hpp"
#include "conncheck/error.hpp"
#include "conncheck/fd.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <map>
#include <memory>
#include <system_error>
#include <unistd.h>

namespace conncheck::shed {

namespace {

// States of a connection the process holds, in the kernel's established table, where
// sock_diag finds a socket by its 4-tuple and SOCK_DESTROY can abort it.
constexpr std::uint32_t connected_states =
    state_bit(TcpState::established) | state_bit(TcpState::syn_sent) |
    state_bit(TcpState::syn_recv) | state_bit(TcpState::fin_wait1) |
    state_bit(TcpState::fin_wait2) | state_bit(TcpState::close_wait) |
    state_bit(TcpState::last_ack) | state_bit(TcpState::closing);

bool contains(const std::vector<std::uint64_t>& list, std::uint64_t value) {
    return std::find(list.begin(), list.end(), value) != list.end();
}

// The rules every selected socket passes, whatever selected it.
std::optional<Refusal> safe_to_abort(const SocketRecord& s, std::uint32_t idle_ms) {
    if (s.state == TcpState::listen) return Refusal::listening;
    if (s.inode == 0) return Refusal::not_held;
    if ((state_bit(s.state) & connected_states) == 0) return Refusal::not_connected;
    if (!s.info) return Refusal::idle_unknown;
    if (s.info->last_data_recv_ms < idle_ms) return Refusal::received_recently;
    return std::nullopt;
}

bool toward(const Request& request, const Endpoint& remote) {
    return request.peers.empty() ||
           std::find(request.peers.begin(), request.peers.end(), remote) != request.peers.end();
}

// Collects what an exact request answers, by cookie.
class Collect final : public diag::DumpSink {
public:
    void on_socket(const SocketRecord& socket) override { found[socket.cookie] = socket; }
    std::map<std::uint64_t, SocketRecord> found;
};

} // namespace

std::optional<std::uint64_t> parse_cookie(std::string_view text) {
    int base = 10;
    if (text.starts_with("0x") || text.starts_with("0X")) {
        text.remove_prefix(2);
        base = 16;
    } else if (text.starts_with("sk:")) {
        text.remove_prefix(3);
        base = 16;
    }
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value == 0)
        return std::nullopt;
    return value;
}

std::string_view reason_name(Reason reason) {
    switch (reason) {
    case Reason::close_wait:
        return "close_wait";
    case Reason::stale:
        return "stale";
    case Reason::cookie:
        return "cookie";
    }
    return "unknown";
}

std::string_view refusal_name(Refusal refusal) {
    switch (refusal) {
    case Refusal::listening:
        return "listening";
    case Refusal::not_connected:
        return "not_connected";
    case Refusal::not_held:
        return "not_held";
    case Refusal::received_recently:
        return "received_recently";
    case Refusal::idle_unknown:
        return "idle_unknown";
    case Refusal::other_finding:
        return "other_finding";
    case Refusal::other_peer:
        return "other_peer";
    case Refusal::not_found:
        return "not_found";
    case Refusal::changed:
        return "changed";
    case Refusal::no_live_sibling:
        return "no_live_sibling";
    }
    return "unknown";
}

std::string_view result_name(Outcome::Result result) {
    switch (result) {
    case Outcome::Result::destroyed:
        return "destroyed";
    case Outcome::Result::gone:
        return "gone";
    case Outcome::Result::not_selected:
        return "not_selected";
    case Outcome::Result::not_permitted:
        return "not_permitted";
    case Outcome::Result::refused:
        return "refused";
    }
    return "unknown";
}

Plan plan(const std::vector<scan::ProcessSnapshot>& processes, const Request& request) {
    Plan out;
    std::map<std::uint64_t, Refused> named; // cookie -> why it is not selected (so far)
    std::vector<std::uint64_t> taken;
    const bool by_finding = request.close_wait || request.stale;
    for (const auto& p : processes) {
        std::map<const SocketRecord*, const SocketRecord*> stale; // socket -> its live sibling
        if (request.stale)
            for (const auto& c : analysis::stale_duplicates(p.sockets, request.idle_ms))
                stale.emplace(c.socket, c.live);
        if (!p.held_after_close.empty())
            out.held_after_close.push_back({p.info.pid, p.held_after_close.size()});
        if (!by_finding && request.cookies.empty()) continue; // nothing asked for, nothing chosen
        for (const SocketRecord& s : p.sockets) {
            const bool is_named = contains(request.cookies, s.cookie);
            if (!request.cookies.empty() && !is_named) continue;
            auto refuse = [&](Refusal why) {
                if (is_named && named.count(s.cookie) == 0)
                    named.emplace(s.cookie, Refused{s.cookie, p.info.pid, s, why});
            };
            if (const auto why = safe_to_abort(s, request.idle_ms)) {
                refuse(*why);
                continue;
            }
            Candidate c{p.info.pid, p.info.netns, s, Reason::cookie, std::nullopt};
            if (request.close_wait && s.state == TcpState::close_wait) {
                c.reason = Reason::close_wait;
            } else if (const auto it = stale.find(&s); it != stale.end()) {
                c.reason = Reason::stale;
                c.live = *it->second;
            } else if (by_finding) {
                refuse(Refusal::other_finding);
                continue;
            }
            if (!toward(request, s.remote)) {
                refuse(Refusal::other_peer);
                continue;
            }
            if (contains(taken, s.cookie)) continue;
            taken.push_back(s.cookie);
            named.erase(s.cookie);
            out.selected.push_back(std::move(c));
        }
    }
    for (std::uint64_t cookie : request.cookies) {
        if (contains(taken, cookie)) continue;
        const auto it = named.find(cookie);
        out.refused.push_back(
            it != named.end() ? it->second : Refused{cookie, 0, std::nullopt, Refusal::not_found});
    }
    std::stable_sort(out.selected.begin(), out.selected.end(),
                     [](const Candidate& a, const Candidate& b) {
                         return a.pid != b.pid ? a.pid < b.pid : a.socket.cookie < b.socket.cookie;
                     });
    return out;
}

std::optional<Refusal> recheck(const Candidate& candidate, const SocketRecord& now,
                               const SocketRecord* live_now, const Request& request) {
    if (now.cookie != candidate.socket.cookie || now.inode != candidate.socket.inode)
        return Refusal::not_held;
    if (const auto why = safe_to_abort(now, request.idle_ms)) return why;
    switch (candidate.reason) {
    case Reason::close_wait:
        if (now.state != TcpState::close_wait) return Refusal::changed;
        break;
    case Reason::stale:
        if (now.state != TcpState::established) return Refusal::changed;
        if (live_now == nullptr || live_now->state != TcpState::established || !live_now->info ||
            live_now->info->last_data_recv_ms > request.idle_ms)
            return Refusal::no_live_sibling;
        break;
    case Reason::cookie:
        break;
    }
    if (!toward(request, now.remote)) return Refusal::other_peer;
    return std::nullopt;
}

namespace {

// The sock_diag sockets of one network namespace: one to ask, one to destroy.
struct Namespace {
    std::unique_ptr<diag::SocketSource> source;
    std::unique_ptr<diag::SocketDestroyer> destroyer;
};

Namespace open_namespace(const proc::ProcFs& procfs, pid_t pid, std::uint64_t netns) {
    if (netns == 0 || netns == procfs.self_netns())
        return {diag::open_netlink({}), diag::open_destroyer(-1)};
    const std::string path = procfs.path(pid, "ns/net");
    const UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (ns.get() < 0) throw_errno("cannot open " + path, errno);
    diag::NetlinkOptions options;
    options.netns_fd = ns.get();
    return {diag::open_netlink(options), diag::open_destroyer(ns.get())};
}

Outcome abort_one(Namespace& ns, const Candidate& c, const Request& request) {
    Outcome outcome;
    outcome.before = c.socket;
    std::vector<const SocketRecord*> ask{&c.socket};
    if (c.live) ask.push_back(&*c.live);
    Collect now;
    (void)ns.source->fetch(ask, true, true, now);
    const auto self = now.found.find(c.socket.cookie);
    if (self == now.found.end()) {
        outcome.result = Outcome::Result::gone;
        return outcome;
    }
    outcome.before = self->second;
    const SocketRecord* live = nullptr;
    if (c.live)
        if (const auto it = now.found.find(c.live->cookie); it != now.found.end())
            live = &it->second;
    if (const auto why = recheck(c, self->second, live, request)) {
        outcome.result = Outcome::Result::not_selected;
        outcome.why = why;
        return outcome;
    }
    const diag::DestroyAnswer answer = ns.destroyer->destroy(self->second);
    outcome.error = answer.error;
    switch (answer.result) {
    case diag::DestroyResult::destroyed:
        outcome.result = Outcome::Result::destroyed;
        break;
    case diag::DestroyResult::gone:
    case diag::DestroyResult::replaced:
        outcome.result = Outcome::Result::gone;
        break;
    case diag::DestroyResult::not_permitted:
        outcome.result = Outcome::Result::not_permitted;
        break;
    case diag::DestroyResult::refused:
        outcome.result = Outcome::Result::refused;
        break;
    }
    return outcome;
}

} // namespace

std::vector<Outcome> act(const proc::ProcFs& procfs, const std::vector<Candidate>& selected,
                         const Request& request, const OnOutcome& done) {
    std::map<std::uint64_t, Namespace> namespaces;
    std::vector<Outcome> outcomes;
    for (const Candidate& c : selected) {
        auto it = namespaces.find(c.netns);
        if (it == namespaces.end())
            it = namespaces.emplace(c.netns, open_namespace(procfs, c.pid, c.netns)).first;
        outcomes.push_back(abort_one(it->second, c, request));
        if (done) done(c, outcomes.back());
    }
    return outcomes;
}

} // namespace conncheck::shed
