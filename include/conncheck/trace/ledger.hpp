// From a stream of trace events to the account a leak report needs: every connection opened
// during the trace with its exact times, the ones the process still holds in a leak state grouped
// by the code that opened them, and per peer the opens, closes, reconnect intervals and TIME_WAIT.
// Pure logic: tests feed it hand-built events.
#pragma once

#include "conncheck/tcp.hpp"
#include "conncheck/trace/event.hpp"
#include "conncheck/trace/frame.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace conncheck::trace {

struct Connection {
    std::uint64_t id = 0;
    std::uint64_t cookie = 0;
    pid_t pid = 0;
    pid_t tid = 0;
    std::string thread; // raw comm of the opening thread
    Endpoint local;
    Endpoint remote;
    bool accepted = false;
    CallSite call_site;
    TcpState state = TcpState::unknown;
    std::uint64_t opened_ns = 0;
    // When data last arrived, as far as the ledger knows: the open time, later a resumed event's
    // time or what note_last_data() says.
    std::uint64_t last_data_ns = 0;
    bool last_data_known = false;                // note_last_data() gave it: a zombie needs it
    std::optional<std::uint64_t> peer_closed_ns; // the peer's FIN: CLOSE_WAIT
    std::optional<std::uint64_t> closed_here_ns; // this process's close() or abort
    std::optional<std::uint64_t> reset_ns;       // a RST from the peer
    std::optional<std::uint64_t> time_wait_ns;   // handed to a TIME_WAIT socket
    std::optional<std::uint64_t> destroyed_ns;
    bool closed_by_exit = false; // the kernel closed it because the process exited
    bool incomplete = false;     // a record of it was lost (ring buffer full): not judged

    // Still open in the process (at its exit, for a process that exited).
    [[nodiscard]] bool held() const;
};

enum class LeakKind : std::uint8_t {
    close_wait, // the peer closed, the process never did
    zombie,     // silent, a newer connection to the same peer opened, this one never closed
    reset,      // the peer reset it, the process never closed it (a file descriptor held for
                // nothing)
};
[[nodiscard]] std::string_view leak_name(LeakKind kind); // "close_wait", "zombie", "reset"

struct Leak {
    LeakKind kind = LeakKind::close_wait;
    Connection connection;
    std::uint64_t since_ns = 0; // close_wait: the peer's close; zombie: the last data; reset:
                                // the RST
    // zombie: the first connection to the same peer opened after this one fell silent
    std::uint64_t successor = 0;
    std::uint64_t successor_cookie = 0;
    std::uint64_t successor_opened_ns = 0;
};

// The peer a connection counts toward: the remote endpoint of an outgoing connection, the remote
// address (port 0) of an accepted one; IPv4-mapped IPv6 addresses as IPv4.
struct PeerKey {
    Endpoint endpoint;
    bool accepted = false;
    friend auto operator<=>(const PeerKey&, const PeerKey&) = default;
};
[[nodiscard]] PeerKey peer_of(const Connection& c);

// The process itself closed (or aborted) the connection: close() or shutdown() sent a FIN, or
// close() with unread data went straight to CLOSE in one of its threads.
[[nodiscard]] bool closes_here(const Event& event);

// Leaks are grouped by the first frame in the user's own code (first_user_frame()), so one line
// of the user's code is one group however the runtime below it got to connect(); by the whole
// call site when no frame is the user's.
struct LeakGroup {
    CallSite call_site;                    // the oldest leak's
    std::optional<std::size_t> user_frame; // index into call_site.frames
    std::string thread;
    PeerKey peer;
    std::vector<Leak> leaks; // oldest first
};

struct PeerSummary {
    PeerKey peer;
    std::uint64_t opened = 0;
    std::uint64_t ended = 0; // closed here, or destroyed
    std::uint64_t held = 0;
    std::uint64_t time_wait_handed = 0; // every close that left a TIME_WAIT socket
    std::uint64_t time_wait_now = 0;    // of those, still in TIME_WAIT at the end
    double opens_per_minute = 0;
    double ends_per_minute = 0;
    std::optional<std::uint64_t> oldest_held_opened_ns;
    // Gaps between consecutive opens (ns), when there were at least two.
    std::optional<std::uint64_t> reconnect_min_ns;
    std::optional<std::uint64_t> reconnect_median_ns;
    std::optional<std::uint64_t> reconnect_max_ns;
};

struct LedgerConfig {
    // A held ESTABLISHED connection is a zombie only when silent at least this long at the end
    // (a pool's fresh connections are not zombies yet).
    std::uint64_t zombie_silence_ns = 10'000'000'000ULL;
};

struct LedgerReport {
    std::uint64_t start_ns = 0;
    std::uint64_t end_ns = 0;
    std::map<pid_t, std::uint64_t> exited; // pid -> exit time
    std::uint64_t connections = 0;         // opened during the trace
    std::uint64_t held = 0;
    // Held ESTABLISHED connections not judged zombie or not: when data last arrived on them is
    // unknown (the process exited first, or its sockets could not be read at the end).
    std::uint64_t last_data_unknown = 0;
    std::uint64_t unknown_events = 0; // events of connections whose open was not seen
    // Held connections not judged because a record of theirs was lost (ring buffer full).
    std::vector<std::uint64_t> incomplete;
    std::vector<LeakGroup> groups;  // most leaks first
    std::vector<PeerSummary> peers; // most opens first
};

class Ledger {
public:
    explicit Ledger(std::uint64_t start_ns, LedgerConfig config = {});

    // Events in the order the kernel wrote them. `site` is where an opened event's stack points.
    void add(const Event& event, CallSite site = {});
    // When data last arrived on a connection, from its tcp_info at the end (trace/last_data.hpp):
    // the word a zombie needs. Earlier than the open time means no data since the open.
    void note_last_data(std::uint64_t connection, std::uint64_t time_ns);
    // A record of the connection was lost: what the ledger knows of it has a hole.
    void note_incomplete(std::uint64_t connection);
    [[nodiscard]] const Connection* find(std::uint64_t connection) const;
    [[nodiscard]] const std::map<std::uint64_t, Connection>& connections() const {
        return connections_;
    }
    [[nodiscard]] LedgerReport report(std::uint64_t end_ns) const;

private:
    // The connections held in a leak state, grouped by call site, thread and peer; most first.
    [[nodiscard]] std::vector<LeakGroup> leak_groups(std::uint64_t end_ns) const;
    [[nodiscard]] std::vector<PeerSummary> peer_summaries(std::uint64_t end_ns) const;

    std::uint64_t start_ns_;
    LedgerConfig config_;
    std::map<std::uint64_t, Connection> connections_;
    std::map<pid_t, std::uint64_t> exited_;
    std::uint64_t unknown_events_ = 0;
};

} // namespace conncheck::trace
