#include "close.hpp"

#include "human_text.hpp"

#include "conncheck/privilege.hpp"
#include "conncheck/scan.hpp"
#include "conncheck/select.hpp"
#include "conncheck/shed.hpp"
#include "conncheck/text.hpp"

#include <cstdio>
#include <cstdlib>
#include <fmt/core.h>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <syslog.h>
#include <unistd.h>

namespace conncheck::cli {

namespace {

// close's exit codes: fewer than the audit's, each documented in conncheck(1), CLOSE.
int close_exit(Errc code) {
    switch (code) {
    case Errc::usage:
    case Errc::bad_file:
        return exit_code::usage;
    case Errc::no_such_process:
    case Errc::process_exited:
        return exit_code::no_such_process;
    case Errc::permission_denied:
        return exit_code::permission;
    default:
        return exit_code::failure;
    }
}

shed::Request make_request(const CloseOptions& options) {
    shed::Request request;
    request.close_wait = options.close_wait;
    request.stale = options.stale;
    request.idle_ms = options.idle_seconds * 1000U;
    for (const auto& list : options.cookies)
        for (auto item : split_list(list)) {
            const auto cookie = shed::parse_cookie(item);
            if (!cookie)
                throw Error(Errc::usage,
                            fmt::format("--cookie: '{}' is not a socket cookie (0x38dc4, sk:38dc4 "
                                        "or a decimal number)",
                                        text::sanitize(item, 40)));
            request.cookies.push_back(*cookie);
        }
    for (const auto& peer : options.peers) {
        const auto endpoint = parse_endpoint(peer);
        if (!endpoint)
            throw Error(
                Errc::usage,
                fmt::format("--peer: '{}' is not ADDR:PORT (10.0.0.2:443, [2001:db8::1]:443)",
                            text::sanitize(peer, 60)));
        request.peers.push_back(*endpoint);
    }
    return request;
}

std::string cookie_text(std::uint64_t cookie) {
    return fmt::format("{:#x}", cookie);
}

std::string idle_text(const SocketRecord& s) {
    return s.info ? human_duration_ms(s.info->last_data_recv_ms) : std::string("?");
}

// The kernel memory (skmem) of the send queue, freed by the abort, and of the data received but
// not read, which stays until the process closes the socket. 0 when the kernel gave no skmem.
std::uint64_t send_memory(const SocketRecord& s) {
    return s.mem ? s.mem->wmem_queued : 0;
}

std::uint64_t receive_memory(const SocketRecord& s) {
    return s.mem ? s.mem->rmem_alloc : 0;
}

std::string memory_text(const SocketRecord& s, std::uint64_t bytes) {
    return s.mem ? human_bytes(bytes) : std::string("?");
}

std::string refusal_text(shed::Refusal why, const SocketRecord* s) {
    switch (why) {
    case shed::Refusal::listening:
        return "a listening socket is never closed";
    case shed::Refusal::not_connected:
        return fmt::format("{}: no connection of the process's to abort",
                           s != nullptr ? state_label(s->state) : "not connected");
    case shed::Refusal::not_held:
        return "no fd of the selected processes holds it";
    case shed::Refusal::received_recently:
        return fmt::format("received data {} ago, within --idle",
                           s != nullptr ? idle_text(*s) : std::string("?"));
    case shed::Refusal::idle_unknown:
        return "the kernel gave no idle time for it";
    case shed::Refusal::other_finding:
        return "not selected by --close-wait or --stale";
    case shed::Refusal::other_peer:
        return "toward another peer than --peer";
    case shed::Refusal::not_found:
        return "no socket of the selected processes has this cookie";
    case shed::Refusal::changed:
        return fmt::format("now {}, no longer the state that selected it",
                           s != nullptr ? state_label(s->state) : "changed");
    case shed::Refusal::no_live_sibling:
        return "the live connection to the same peer is gone or silent now";
    }
    return "refused";
}

std::string outcome_text(const shed::Outcome& o) {
    switch (o.result) {
    case shed::Outcome::Result::destroyed:
        return "closed";
    case shed::Outcome::Result::gone:
        return "gone before it was reached (closed, or its four-tuple reused by a newer socket: "
               "left alone)";
    case shed::Outcome::Result::not_selected:
        return "left alone: " + refusal_text(*o.why, &o.before);
    case shed::Outcome::Result::not_permitted:
        return "refused by the kernel: " + privilege::hint(privilege::Access::destroy_sockets);
    case shed::Outcome::Result::refused:
        return "refused by the kernel: " + errno_message("SOCK_DESTROY", o.error);
    }
    return "?";
}

std::string who_asked() {
    std::string who = fmt::format("uid {}", ::getuid());
    if (const char* sudo_user = std::getenv("SUDO_USER"))
        who += fmt::format(" (SUDO_USER {})", text::sanitize(sudo_user, 64));
    return who;
}

// One line per aborted socket in the journal (or syslog): what, whose, why, and who asked.
void log_destroyed(const shed::Candidate& c, const std::string& comm, const shed::Outcome& o,
                   const std::string& who) {
    const std::string line = fmt::format(
        "closed TCP socket cookie {} {} -> {} {} of pid {} ({}), finding {}, idle {}, send queue "
        "memory {} B freed; asked by {}",
        cookie_text(c.socket.cookie), o.before.local.to_string(), o.before.remote.to_string(),
        state_label(o.before.state), c.pid, text::sanitize(comm, 32), shed::reason_name(c.reason),
        idle_text(o.before), send_memory(o.before), who);
    ::syslog(LOG_AUTHPRIV | LOG_NOTICE, "%s", line.c_str());
}

constexpr std::string_view what_it_does =
    "What closing does: the kernel aborts each socket (SOCK_DESTROY): the peer gets a reset "
    "(RST),\nthe process's next write on it fails with ECONNABORTED (a read first returns data "
    "already\nreceived), its four-tuple is released (and its local port, unless the process bound "
    "it itself)\nand its send queue freed at once. Received data stays allocated until the "
    "process closes the\nsocket, and the file descriptor stays open in the process: fd "
    "exhaustion still needs the fix\nor a restart.\n";

struct Row {
    const shed::Candidate* candidate;
    const shed::Outcome* outcome; // null in a preview
};

void print_text(const std::vector<Row>& rows, const std::map<pid_t, std::string>& comms,
                const shed::Plan& plan, const CloseOptions& options) {
    std::uint64_t send_total = 0;
    std::uint64_t unread_total = 0;
    pid_t shown = 0;
    for (const Row& row : rows) {
        const shed::Candidate& c = *row.candidate;
        const SocketRecord& s = row.outcome != nullptr ? row.outcome->before : c.socket;
        if (c.pid != shown) {
            const auto count = static_cast<std::size_t>(std::count_if(
                rows.begin(), rows.end(), [&](const Row& r) { return r.candidate->pid == c.pid; }));
            fmt::print("pid {} ({}): {} {} {}\n", c.pid, text::sanitize(comms.at(c.pid), 32), count,
                       count == 1 ? "socket" : "sockets",
                       options.yes ? "selected" : "would be closed");
            fmt::print("  {:<12} {:<11} {:<24} {:<24} {:>7} {:>9} {:>9}  {}\n", "COOKIE", "STATE",
                       "LOCAL", "PEER", "IDLE", "SEND-MEM", "RECV-MEM", "FINDING");
            shown = c.pid;
        }
        fmt::print("  {:<12} {:<11} {:<24} {:<24} {:>7} {:>9} {:>9}  {}", cookie_text(s.cookie),
                   state_label(s.state), s.local.to_string(), s.remote.to_string(), idle_text(s),
                   memory_text(s, send_memory(s)), memory_text(s, receive_memory(s)),
                   shed::reason_name(c.reason));
        if (row.outcome != nullptr) fmt::print(": {}", outcome_text(*row.outcome));
        fmt::print("\n");
        if (row.outcome == nullptr || row.outcome->result == shed::Outcome::Result::destroyed) {
            send_total += send_memory(s);
            unread_total += receive_memory(s);
        }
    }
    if (rows.empty()) fmt::print("No socket is selected: nothing to close.\n");
    for (const auto& r : plan.refused)
        fmt::print("cookie {}: not closed: {}\n", cookie_text(r.cookie),
                   refusal_text(r.why, r.socket ? &*r.socket : nullptr));
    for (const auto& h : plan.held_after_close)
        fmt::print("pid {} ({}) also holds {} TCP {} that TCP has finished with (reset by the "
                   "peer or aborted:\n  state CLOSE, in no sock_diag table): the kernel has "
                   "nothing left to abort or free there;\n  only the process's close() "
                   "releases {}.\n",
                   h.pid, text::sanitize(comms.at(h.pid), 32), h.count,
                   h.count == 1 ? "socket" : "sockets", h.count == 1 ? "it" : "them");
    if (rows.empty()) return;
    if (options.yes) {
        fmt::print("Freed at once: {} of send-queue memory; {} of receive memory (unread data) "
                   "stays until\nthe process closes the sockets. The file descriptors stay open "
                   "in the process: fd exhaustion\nstill needs the fix or a restart.\n",
                   human_bytes(send_total), human_bytes(unread_total));
        return;
    }
    fmt::print("\nPreview: nothing was changed. --yes closes these sockets.\n{}", what_it_does);
    fmt::print("Here that frees {} of send-queue memory at once; {} of receive memory (unread "
               "data) stays\nuntil the process closes the sockets.\n",
               human_bytes(send_total), human_bytes(unread_total));
}

nlohmann::json socket_json(const SocketRecord& s) {
    nlohmann::json j = {{"cookie", cookie_text(s.cookie)},
                        {"state", state_name(s.state)},
                        {"local", s.local.to_string()},
                        {"remote", s.remote.to_string()},
                        {"idle_seconds", s.info ? nlohmann::json(s.info->last_data_recv_ms / 1000.0)
                                                : nlohmann::json(nullptr)},
                        {"unread_bytes", s.rqueue},
                        {"send_queue_bytes", s.wqueue},
                        {"send_queue_memory_bytes",
                         s.mem ? nlohmann::json(send_memory(s)) : nlohmann::json(nullptr)},
                        {"receive_memory_bytes",
                         s.mem ? nlohmann::json(receive_memory(s)) : nlohmann::json(nullptr)}};
    if (s.mem)
        j["skmem"] = {{"rmem_alloc", s.mem->rmem_alloc},
                      {"rcvbuf", s.mem->rcvbuf},
                      {"wmem_alloc", s.mem->wmem_alloc},
                      {"sndbuf", s.mem->sndbuf},
                      {"fwd_alloc", s.mem->fwd_alloc},
                      {"wmem_queued", s.mem->wmem_queued},
                      {"optmem", s.mem->optmem},
                      {"backlog", s.mem->backlog},
                      {"drops", s.mem->drops}};
    return j;
}

void print_json(const std::vector<Row>& rows, const std::map<pid_t, std::string>& comms,
                const shed::Plan& plan, const CloseOptions& options) {
    nlohmann::json sockets = nlohmann::json::array();
    for (const Row& row : rows) {
        const shed::Candidate& c = *row.candidate;
        nlohmann::json j = socket_json(row.outcome != nullptr ? row.outcome->before : c.socket);
        j["pid"] = c.pid;
        j["comm"] = text::sanitize(comms.at(c.pid));
        j["finding"] = shed::reason_name(c.reason);
        if (row.outcome == nullptr) {
            j["result"] = "previewed";
        } else {
            j["result"] = shed::result_name(row.outcome->result);
            if (row.outcome->why) j["why"] = shed::refusal_name(*row.outcome->why);
            if (row.outcome->error != 0)
                j["error"] = errno_message("SOCK_DESTROY", row.outcome->error);
        }
        sockets.push_back(std::move(j));
    }
    nlohmann::json refused = nlohmann::json::array();
    for (const auto& r : plan.refused) {
        nlohmann::json j = r.socket ? socket_json(*r.socket) : nlohmann::json::object();
        j["cookie"] = cookie_text(r.cookie);
        if (r.pid != 0) j["pid"] = r.pid;
        j["why"] = shed::refusal_name(r.why);
        refused.push_back(std::move(j));
    }
    nlohmann::json held = nlohmann::json::array();
    for (const auto& h : plan.held_after_close)
        held.push_back({{"pid", h.pid}, {"count", h.count}});
    const nlohmann::json doc = {{"schema", 1},
                                {"mode", options.yes ? "close" : "preview"},
                                {"idle_threshold_seconds", options.idle_seconds},
                                {"sockets", std::move(sockets)},
                                {"refused", std::move(refused)},
                                {"held_after_close", std::move(held)}};
    fmt::print("{}\n", doc.dump(2));
}

} // namespace

void setup_close(CLI::App& app, CloseOptions& options) {
    app.footer("Without --yes nothing is touched: the sockets that would be closed are listed, "
               "with why.\nClosing aborts each socket in the kernel (SOCK_DESTROY): the peer gets "
               "a reset, the process's\nnext write fails with ECONNABORTED, the four-tuple and "
               "send queue are freed; the fd stays open\nin the process (fd exhaustion still needs "
               "the fix or a restart). Never a LISTEN socket, never\nanother process's, never "
               "one that received data within --idle.\n"
               "Exit status: 0 every selected socket closed (or previewed), 1 some could not be "
               "(each named),\n  2 bad arguments, 3 no such process, 4 permission (--yes needs "
               "CAP_NET_ADMIN). See conncheck(1), CLOSE.");
    add_selector_options(app, options.selector);
    const char* group = "Choosing sockets";
    app.add_flag("--close-wait", options.close_wait,
                 "Sockets in CLOSE_WAIT: the peer closed, the process never did")
        ->group(group);
    app.add_flag("--stale", options.stale,
                 "ESTABLISHED connections silent for --idle while another connection to the same "
                 "peer received data within it (a reconnect that left the old one open)")
        ->group(group);
    app.add_flag("--held-after-close", options.held_after_close,
                 "TCP sockets the process still holds after TCP finished with them (reset, timed "
                 "out, never connected): listed, but the kernel has nothing to abort there; only "
                 "the process's close() releases them")
        ->group(group);
    app.add_option("--cookie", options.cookies,
                   "Exactly these sockets (from --json, trace or ss -e); with --close-wait or "
                   "--stale, those of them the finding selects")
        ->type_name("COOKIE[,COOKIE...]")
        ->group(group);
    app.add_option("--peer", options.peers, "Only connections to ADDR:PORT; repeatable")
        ->type_name("ADDR:PORT")
        ->group(group);
    add_idle_option(app, options.idle_seconds);
    app.add_flag("--yes", options.yes,
                 "Close them (needs CAP_NET_ADMIN); without it, only show what would be closed");
    app.add_flag("--json", options.json, "Print the sockets and what happened as JSON");
}

int run_close(const CloseOptions& options) {
    try {
        if (!has_selector(options.selector))
            throw Error(Errc::usage, "close needs the processes whose sockets to close: --pid, "
                                     "--pidfile, --name, --exe, --unit or --cgroup");
        if (!options.close_wait && !options.stale && !options.held_after_close &&
            options.cookies.empty())
            throw Error(Errc::usage, "say which sockets to close: --close-wait, --stale, "
                                     "--held-after-close or --cookie");
        const shed::Request request = make_request(options);

        scan::Config config;
        config.source = scan::SourcePreference::netlink; // idle times and cookies are needed
        scan::Scanner scanner(config);
        const select::Resolved selected =
            select::resolve(selection_of(options.selector), scanner.procfs());
        if (options.yes && !privilege::granted(privilege::Access::destroy_sockets))
            throw Error(Errc::permission_denied,
                        "closing sockets (--yes) " +
                            privilege::hint(privilege::Access::destroy_sockets) +
                            "; without --yes close only previews");

        const scan::Snapshot snapshot = scan_selected(scanner, selected);
        std::map<pid_t, std::string> comms;
        for (const auto& p : snapshot.processes)
            comms[p.info.pid] = p.info.comm;
        shed::Plan plan = shed::plan(snapshot.processes, request);
        if (!options.held_after_close) plan.held_after_close.clear();

        std::vector<shed::Outcome> outcomes;
        if (options.yes) {
            ::openlog("conncheck", LOG_PID, LOG_AUTHPRIV);
            const std::string who = who_asked();
            outcomes = shed::act(scanner.procfs(), plan.selected, request,
                                 [&](const shed::Candidate& c, const shed::Outcome& o) {
                                     if (o.result == shed::Outcome::Result::destroyed)
                                         log_destroyed(c, comms.at(c.pid), o, who);
                                 });
            ::closelog();
        }
        std::vector<Row> rows;
        for (std::size_t i = 0; i < plan.selected.size(); ++i)
            rows.push_back({&plan.selected[i], options.yes ? &outcomes[i] : nullptr});
        if (options.json)
            print_json(rows, comms, plan, options);
        else
            print_text(rows, comms, plan, options);
        std::fflush(stdout);

        // The ones that could not be closed, each named, on one line.
        std::vector<std::string> failed;
        bool not_permitted = false;
        for (const Row& row : rows)
            if (row.outcome != nullptr && row.outcome->result != shed::Outcome::Result::destroyed) {
                failed.push_back(fmt::format("{} ({})", cookie_text(row.candidate->socket.cookie),
                                             outcome_text(*row.outcome)));
                not_permitted =
                    not_permitted || row.outcome->result == shed::Outcome::Result::not_permitted;
            }
        for (const auto& r : plan.refused)
            failed.push_back(fmt::format("{} ({})", cookie_text(r.cookie),
                                         refusal_text(r.why, r.socket ? &*r.socket : nullptr)));
        if (options.yes)
            for (const auto& h : plan.held_after_close)
                failed.push_back(fmt::format("{} TCP {} of pid {} that TCP has finished with (only "
                                             "the process's close() releases them)",
                                             h.count, h.count == 1 ? "socket" : "sockets", h.pid));
        for (const auto& u : snapshot.unreadable)
            failed.push_back(fmt::format("pid {} ({}): {}", u.pid, text::sanitize(u.comm, 32),
                                         text::sanitize(u.reason)));
        if (failed.empty()) return exit_code::ok;
        std::string which;
        for (const auto& f : failed)
            which += (which.empty() ? "" : "; ") + f;
        fmt::print(stderr, "conncheck: {} {}: {}\n", failed.size(),
                   options.yes ? "not closed" : "would not be closed", which);
        return not_permitted ? exit_code::permission : exit_code::failure;
    } catch (const Error& e) {
        std::fflush(stdout);
        fmt::print(stderr, "conncheck: {}\n", e.what());
        return close_exit(e.code());
    }
}

} // namespace conncheck::cli
