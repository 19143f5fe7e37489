#include "conncheck/report_json.hpp"

#include "conncheck/text.hpp"

#include <chrono>
#include <functional>
#include <string>

namespace conncheck::report {

namespace {

using nlohmann::json;

json seconds_or_null(const std::optional<std::uint32_t>& ms) {
    if (!ms) return nullptr;
    return static_cast<double>(*ms) / 1000.0;
}

json limit_or_null(std::uint64_t v) {
    return v == 0 ? json(nullptr) : json(v);
}

json finding_json(const analysis::Finding& f) {
    json evidence = json::object();
    json peers = json::array();
    for (const auto& p : f.peers) {
        peers.push_back({{"remote", to_json(p.remote)},
                         {"count", p.count},
                         {"idle_min_seconds", seconds_or_null(p.idle_min_ms)},
                         {"idle_max_seconds", seconds_or_null(p.idle_max_ms)},
                         {"unread_bytes", p.unread_bytes}});
    }
    evidence["count"] = f.count;
    evidence["peers"] = std::move(peers);
    for (const auto& [name, value] : f.figures)
        evidence[name] = value;
    return {{"kind", analysis::kind_name(f.kind)},
            {"severity", analysis::severity_name(f.severity)},
            {"summary", f.summary},
            {"evidence", std::move(evidence)},
            {"advice", f.advice}};
}

} // namespace

json to_json(const Endpoint& endpoint) {
    return endpoint.to_string();
}

json states_json(const analysis::StateCounts& states) {
    json out = json::object();
    for (std::size_t i = 1; i < tcp_state_count; ++i) {
        const auto s = static_cast<TcpState>(i);
        out[std::string(state_name(s))] = states[s];
    }
    return out;
}

json other_sockets_json(const scan::OtherSockets& o) {
    return {{"total", o.total()},
            {"tcp", o.tcp},
            {"udp", o.udp},
            {"unix", o.unix_domain},
            {"other", o.other}};
}

namespace {

json peer_json(const analysis::PeerRow& p) {
    const std::uint64_t other = p.states.total() - p.states[TcpState::established] -
                                p.states[TcpState::close_wait] - p.states[TcpState::time_wait];
    return {{"remote", to_json(p.remote)},
            {"established", p.states[TcpState::established]},
            {"close_wait", p.states[TcpState::close_wait]},
            {"time_wait", p.states[TcpState::time_wait]},
            {"other", other},
            {"idle_min_seconds", seconds_or_null(p.idle_min_ms)},
            {"idle_max_seconds", seconds_or_null(p.idle_max_ms)},
            {"unread_bytes", p.unread_bytes}};
}

// `ms` in seconds as nlohmann::json prints the double ms / 1000.0: its shortest decimal that
// reads back the same, which for at most ten significant digits is the decimal itself.
void append_seconds(std::string& out, const std::optional<std::uint32_t>& ms) {
    if (!ms) {
        out += "null";
        return;
    }
    out += std::to_string(*ms / 1000);
    out += '.';
    std::uint32_t fraction = *ms % 1000;
    int digits = 3;
    for (; digits > 1 && fraction % 10 == 0; --digits)
        fraction /= 10;
    const std::string text = std::to_string(fraction);
    out.append(static_cast<std::size_t>(digits) - text.size(), '0');
    out += text;
}

// peer_json(p).dump(2) at nesting `depth`, written without building the tree: a host-wide
// document has one of these per remote endpoint, and building and freeing them cost more than
// all the rest of the document.
void write_peer(std::FILE* out, const analysis::PeerRow& p, std::size_t depth) {
    const std::uint64_t other = p.states.total() - p.states[TcpState::established] -
                                p.states[TcpState::close_wait] - p.states[TcpState::time_wait];
    const std::string pad((depth + 1) * 2, ' ');
    std::string text = "{";
    const auto field = [&](std::string_view key, const auto& append_value) {
        text += text.size() == 1 ? "\n" : ",\n";
        text += pad;
        text += '"';
        text += key;
        text += "\": ";
        append_value();
    };
    const auto number = [&](std::string_view key, std::uint64_t value) {
        field(key, [&] { text += std::to_string(value); });
    };
    number("close_wait", p.states[TcpState::close_wait]);
    number("established", p.states[TcpState::established]);
    field("idle_max_seconds", [&] { append_seconds(text, p.idle_max_ms); });
    field("idle_min_seconds", [&] { append_seconds(text, p.idle_min_ms); });
    number("other", other);
    field("remote", [&] {
        text += '"';
        p.remote.append_to(text); // digits, hex and punctuation: nothing to escape
        text += '"';
    });
    number("time_wait", p.states[TcpState::time_wait]);
    number("unread_bytes", p.unread_bytes);
    text += '\n';
    text.append(depth * 2, ' ');
    text += '}';
    std::fwrite(text.data(), 1, text.size(), out);
}

json process_json(const analysis::ProcessReport& r, bool with_peers) {
    json peers = json::array();
    if (with_peers) {
        for (const auto& p : r.peers)
            peers.push_back(peer_json(p));
    }
    json findings = json::array();
    for (const auto& f : r.findings)
        findings.push_back(finding_json(f));
    return {
        {"pid", r.info.pid},
        {"comm", text::sanitize(r.info.comm)},
        {"cmdline", text::sanitize(r.info.cmdline)},
        {"user", text::sanitize(r.info.user)},
        {"uid", r.info.uid},
        {"netns", r.info.netns},
        {"exited", r.exited},
        {"fds",
         {{"open", r.info.open_fds},
          {"soft_limit", limit_or_null(r.info.fd_limit.soft)},
          {"hard_limit", limit_or_null(r.info.fd_limit.hard)}}},
        {"sockets", r.states.total()},
        {"states", states_json(r.states)},
        {"time_wait_attribution", {{"exact", r.time_wait_exact}, {"by_peer", r.time_wait_by_peer}}},
        {"kernel_memory_bytes", r.kernel_memory_bytes},
        {"stale_duplicates", r.stale},
        {"held_after_close", r.held_after_close},
        {"leaked_sockets", analysis::leaked_sockets(r)},
        {"other_sockets", other_sockets_json(r.other_sockets)},
        {"other_netns_sockets", r.other_netns_sockets},
        {"peers", std::move(peers)},
        {"findings", std::move(findings)}};
}

json host_json(const analysis::HostReport& h, json processes) {
    json unreadable = json::array();
    for (const auto& u : h.unreadable)
        unreadable.push_back({{"pid", u.pid},
                              {"comm", text::sanitize(u.comm)},
                              {"reason", text::sanitize(u.reason)}});
    const auto unix_seconds =
        std::chrono::duration_cast<std::chrono::seconds>(h.taken_at.time_since_epoch()).count();
    return {{"schema", json_schema},
            {"generated_at", text::iso8601_utc(unix_seconds)},
            {"host_wide", h.host_wide},
            {"source", h.source},
            {"tcp_info", h.has_tcp_info},
            {"sockets_seen", h.sockets_seen},
            {"processes", std::move(processes)},
            {"unattributed",
             {{"time_wait", h.unattributed.time_wait},
              {"orphaned", h.unattributed.orphaned},
              {"permission", h.unattributed.permission},
              {"unknown", h.unattributed.unknown},
              {"time_wait_ambiguous", h.unattributed.time_wait_ambiguous}}},
            {"unreadable_processes", h.unreadable_processes},
            {"vanished_processes", h.vanished_processes},
            {"unreadable", std::move(unreadable)},
            {"warnings", h.warnings}};
}

// `text` (a dump(2) of a value) with every line after the first indented by `indent` more.
std::string reindent(const std::string& text, std::size_t indent) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        out += c;
        if (c == '\n') out.append(indent, ' ');
    }
    return out;
}

// Writes `object` as dump(2) would at nesting `depth`, but the value of `key` (a placeholder in
// `object`, so that it sorts into place) comes from `write_value`.
void write_object(std::FILE* out, const json& object, std::size_t depth, const std::string& key,
                  const std::function<void(std::size_t)>& write_value) {
    const std::string pad((depth + 1) * 2, ' ');
    std::fputs("{", out);
    bool first = true;
    for (const auto& [k, v] : object.items()) {
        std::fputs(first ? "\n" : ",\n", out);
        first = false;
        std::fputs((pad + json(k).dump() + ": ").c_str(), out);
        if (k == key)
            write_value(depth + 1);
        else
            std::fputs(reindent(v.dump(2), pad.size()).c_str(), out);
    }
    std::fputs(("\n" + std::string(depth * 2, ' ') + "}").c_str(), out);
}

template <typename Items, typename Write>
void write_array(std::FILE* out, const Items& items, std::size_t depth, Write write_item) {
    if (items.empty()) {
        std::fputs("[]", out);
        return;
    }
    const std::string pad((depth + 1) * 2, ' ');
    std::fputs("[", out);
    bool first = true;
    for (const auto& item : items) {
        std::fputs(first ? "\n" : ",\n", out);
        first = false;
        std::fputs(pad.c_str(), out);
        write_item(item, depth + 1);
    }
    std::fputs(("\n" + std::string(depth * 2, ' ') + "]").c_str(), out);
}

} // namespace

json to_json(const analysis::ProcessReport& r) {
    return process_json(r, true);
}

json to_json(const analysis::HostReport& h) {
    json processes = json::array();
    for (const auto& p : h.processes)
        processes.push_back(to_json(p));
    return host_json(h, std::move(processes));
}

void write_json(std::FILE* out, const analysis::HostReport& h) {
    write_object(out, host_json(h, nullptr), 0, "processes", [&](std::size_t depth) {
        write_array(out, h.processes, depth,
                    [&](const analysis::ProcessReport& p, std::size_t process_depth) {
                        write_object(out, process_json(p, false), process_depth, "peers",
                                     [&](std::size_t peers_depth) {
                                         write_array(
                                             out, p.peers, peers_depth,
                                             [&](const analysis::PeerRow& peer, std::size_t d) {
                                                 write_peer(out, peer, d);
                                             });
                                     });
                    });
    });
    std::fputs("\n", out);
}

} // namespace conncheck::report
