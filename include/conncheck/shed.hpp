// Shedding a process's leaked connections without restarting it: which of its sockets may be
// aborted (a pure choice over a scan's snapshot), and the abort itself through sock_diag, each
// socket asked for again and re-checked right before it.
#pragma once

#include "conncheck/diag/netlink.hpp"
#include "conncheck/proc.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/tcp.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace conncheck::shed {

// A socket cookie as people copy it: "0x38dc4" (trace, close --json), "sk:38dc4" (ss -e), or
// decimal (trace --json). nullopt for anything else, and for 0 (no socket has it).
[[nodiscard]] std::optional<std::uint64_t> parse_cookie(std::string_view text);

// The finding that selects a socket.
enum class Reason {
    close_wait, // the peer closed, the process never did
    stale,      // ESTABLISHED, silent, while another connection to the same peer is live
    cookie,     // named by cookie, no finding asked for
};
// "close_wait", "stale", "cookie"
[[nodiscard]] std::string_view reason_name(Reason reason);

struct Request {
    bool close_wait = false;
    bool stale = false;
    // Exactly these sockets: alone, whatever their finding; with close_wait or stale, those of
    // them that the finding selects. Empty: no list.
    std::vector<std::uint64_t> cookies;
    std::vector<Endpoint> peers; // only toward one of these (canonical); empty: any peer
    // Never a socket that received data within this (tcpi_last_data_recv), whatever selects it.
    std::uint32_t idle_ms = 60'000;
};

// Why a socket is left alone.
enum class Refusal {
    listening,         // a LISTEN socket: never
    not_connected,     // TIME_WAIT, a request socket, bound only: no connection of the process's
    not_held,          // no fd of the selected processes holds it (TIME_WAIT known by cookie)
    received_recently, // received data within idle_ms
    idle_unknown,      // no tcp_info: how long it has been silent is not known
    other_finding,     // its finding is not one the request asks for
    other_peer,        // toward a peer the request does not name
    not_found,         // no socket of the selected processes has this cookie
    changed,           // asked for again, it is no longer in the state that selected it
    no_live_sibling,   // stale: the live connection to the same peer is gone or silent now
};
// "listening", "not_held", ... (JSON)
[[nodiscard]] std::string_view refusal_name(Refusal refusal);

struct Candidate {
    pid_t pid = 0;
    std::uint64_t netns = 0; // the process's network namespace (inode of /proc/PID/ns/net)
    SocketRecord socket;
    Reason reason = Reason::close_wait;
    std::optional<SocketRecord> live; // stale: the live connection to the same peer
};

// A cookie of Request::cookies that is not selected.
struct Refused {
    std::uint64_t cookie = 0;
    pid_t pid = 0; // 0 when not found
    std::optional<SocketRecord> socket;
    Refusal why = Refusal::not_found;
};

// TCP sockets a process still holds after TCP finished with them (reset by the peer, or
// aborted): state CLOSE, in none of the tables sock_diag reads, so SOCK_DESTROY cannot reach
// them, and the kernel has nothing left to free but the socket itself, which only the process's
// close() releases.
struct HeldAfterClose {
    pid_t pid = 0;
    std::uint64_t count = 0;
};

struct Plan {
    std::vector<Candidate> selected; // by pid, then cookie; a socket held by two processes once
    std::vector<Refused> refused;    // in the order Request::cookies names them
    std::vector<HeldAfterClose> held_after_close;
};

// The sockets of `processes` that `request` selects, and why named cookies are not. Only sockets
// an fd of the process holds, in a connected state, never LISTEN, with tcp_info saying they
// received nothing for idle_ms at least.
[[nodiscard]] Plan plan(const std::vector<scan::ProcessSnapshot>& processes,
                        const Request& request);

// The same rules for a candidate as the kernel reports it now (`now`, and for a stale one its
// live sibling now, null when that is gone): nullopt when it is still selected.
[[nodiscard]] std::optional<Refusal> recheck(const Candidate& candidate, const SocketRecord& now,
                                             const SocketRecord* live_now, const Request& request);

struct Outcome {
    enum class Result {
        destroyed,     // aborted by the kernel
        gone,          // closed (or its 4-tuple taken by a newer socket) before it was reached
        not_selected,  // asked for again, the rules no longer select it (see `why`)
        not_permitted, // the kernel refused: CAP_NET_ADMIN missing
        refused,       // the kernel refused for another reason (`error`)
    };
    Result result = Result::refused;
    std::optional<Refusal> why;
    int error = 0;
    // The socket as the kernel reported it right before the abort (the preview's copy when it
    // was gone): its skmem is what the abort acted on.
    SocketRecord before;
};
// "destroyed", "gone", ... (JSON)
[[nodiscard]] std::string_view result_name(Outcome::Result result);

// Aborts the selected sockets, in each process's network namespace: each is asked for again by
// its 4-tuple and cookie, re-checked with recheck(), and destroyed by 4-tuple and cookie, so a
// socket that changed or was replaced since the plan is never hit. `done` is called after each,
// in order (the front end logs it then). Throws Error(permission_denied) when a namespace cannot
// be entered, Error(source_unavailable) without sock_diag.
using OnOutcome = std::function<void(const Candidate&, const Outcome&)>;
std::vector<Outcome> act(const proc::ProcFs& procfs, const std::vector<Candidate>& selected,
                         const Request& request, const OnOutcome& done);

} // namespace conncheck::shed
