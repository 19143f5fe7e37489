#include "conncheck/trace/json.hpp"

#include "conncheck/text.hpp"

#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/core.h>
#include <iterator>
#include <string_view>
#include <type_traits>

namespace conncheck::trace {

std::int64_t wall_clock_offset_ns() {
    timespec mono{};
    timespec real{};
    ::clock_gettime(CLOCK_MONOTONIC, &mono);
    ::clock_gettime(CLOCK_REALTIME, &real);
    const auto ns = [](const timespec& t) {
        return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
    };
    return ns(real) - ns(mono);
}

void WallClock::append(std::string& out, std::uint64_t monotonic_ns) {
    const std::int64_t wall = static_cast<std::int64_t>(monotonic_ns) + offset_;
    const std::int64_t seconds = wall / 1'000'000'000;
    if (seconds != second_) {
        const auto t = static_cast<std::time_t>(seconds);
        std::tm tm{};
        ::gmtime_r(&t, &tm);
        char text[64];
        std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        std::memcpy(prefix_, text, sizeof prefix_);
        second_ = seconds;
    }
    const auto millis = static_cast<unsigned>((wall % 1'000'000'000) / 1'000'000);
    const char tail[] = {'.', static_cast<char>('0' + millis / 100),
                         static_cast<char>('0' + millis / 10 % 10),
                         static_cast<char>('0' + millis % 10), 'Z'};
    out.append(prefix_, sizeof prefix_);
    out.append(tail, sizeof tail);
}

std::string wall_time(std::uint64_t monotonic_ns, std::int64_t offset_ns) {
    std::string out;
    WallClock(offset_ns).append(out, monotonic_ns);
    return out;
}

namespace {

nlohmann::json optional_time(const std::optional<std::uint64_t>& ns, std::int64_t offset) {
    return ns ? nlohmann::json(wall_time(*ns, offset)) : nlohmann::json(nullptr);
}

nlohmann::json optional_seconds(const std::optional<std::uint64_t>& ns) {
    return ns ? nlohmann::json(static_cast<double>(*ns) / 1e9) : nlohmann::json(nullptr);
}

std::string peer_string(const PeerKey& peer) {
    return peer.accepted ? peer.endpoint.address_string() : peer.endpoint.to_string();
}

nlohmann::json connection_json(const Connection& c, std::int64_t offset) {
    return {
        {"connection", c.id},
        {"cookie", c.cookie},
        {"pid", c.pid},
        {"tid", c.tid},
        {"thread", text::sanitize(c.thread)},
        {"local", c.local.to_string()},
        {"remote", c.remote.to_string()},
        {"accepted", c.accepted},
        {"state", state_name(c.state)},
        {"opened", wall_time(c.opened_ns, offset)},
        {"last_data", c.last_data_known ? nlohmann::json(wall_time(c.last_data_ns, offset))
                                        : nlohmann::json(nullptr)},
        {"peer_closed", optional_time(c.peer_closed_ns, offset)},
        {"closed_by_exit", c.closed_by_exit},
    };
}

} // namespace

nlohmann::json frame_json(const Frame& f) {
    const auto text_or_null = [](const std::string& raw) {
        return raw.empty() ? nlohmann::json(nullptr) : nlohmann::json(text::sanitize(raw));
    };
    return {
        {"text", text::sanitize(frame_text(f))},
        {"origin", origin_name(f.origin)},
        {"trust", trust_name(f.trust)},
        {"address", fmt::format("0x{:x}", f.address)},
        {"function", text_or_null(f.function)},
        {"file", text_or_null(f.file)},
        {"line", f.line > 0 ? nlohmann::json(f.line) : nlohmann::json(nullptr)},
        {"module", text_or_null(f.module)},
    };
}

nlohmann::json call_site_json(const CallSite& site) {
    nlohmann::json frames = nlohmann::json::array();
    for (const auto& f : site.frames)
        frames.push_back(frame_json(f));
    return {{"frames", frames},
            {"complete", site.complete},
            {"stops",
             site.complete ? nlohmann::json(nullptr) : nlohmann::json(text::sanitize(site.stops))},
            {"note", site.note.empty() ? nlohmann::json(nullptr)
                                       : nlohmann::json(text::sanitize(site.note))}};
}

namespace {

// One JSON object written straight into a string. trace prints thousands of events a second;
// building an nlohmann::json for each cost more than everything else it did per event.
class ObjectWriter {
public:
    explicit ObjectWriter(std::string& out) : out_(out) { out_ += '{'; }
    ~ObjectWriter() { out_ += '}'; }
    ObjectWriter(const ObjectWriter&) = delete;
    ObjectWriter& operator=(const ObjectWriter&) = delete;

    // The value is ours: a name, a state.
    void string(std::string_view key, std::string_view value) {
        this->key(key);
        quoted(value);
    }
    // The value came from another process: sanitized first.
    void text(std::string_view key, std::string_view raw) {
        this->key(key);
        quoted_text(raw);
    }
    // null where the address is unknown: a change of a connection whose opened record was lost.
    void endpoint(std::string_view key, const Endpoint& value) {
        if (value.family == 0) return null(key);
        this->key(key);
        out_ += '"';
        value.append_to(out_);
        out_ += '"';
    }
    void time(std::string_view key, WallClock& clock, std::uint64_t monotonic_ns) {
        this->key(key);
        out_ += '"';
        clock.append(out_, monotonic_ns);
        out_ += '"';
    }
    template <typename Number> void number(std::string_view key, Number value) {
        this->key(key);
        if constexpr (std::is_integral_v<Number>) {
            char digits[24];
            const auto end = std::to_chars(std::begin(digits), std::end(digits), value).ptr;
            out_.append(digits, end);
        } else {
            // Not format_to into the string: clang cannot link that instantiation against the
            // fmt library Debian builds with gcc.
            out_ += fmt::format("{}", value);
        }
    }
    void boolean(std::string_view key, bool value) {
        this->key(key);
        out_ += value ? "true" : "false";
    }
    void null(std::string_view key) {
        this->key(key);
        out_ += "null";
    }
    // Only the key: an ObjectWriter made next on the same string writes the value.
    void member(std::string_view key) { this->key(key); }

private:
    // Keys are this file's own literals: nothing to escape.
    void key(std::string_view key) {
        if (out_.back() != '{') out_ += ',';
        out_ += '"';
        out_ += key;
        out_ += "\":";
    }
    // Sanitized, without the copy when sanitize() would change nothing.
    void quoted_text(std::string_view raw) {
        if (text::is_plain(raw))
            quoted(raw);
        else
            quoted(text::sanitize(raw));
    }
    void quoted(std::string_view value) {
        out_ += '"';
        std::size_t plain = 0; // the start of characters that need no escape
        for (std::size_t i = 0; i < value.size(); ++i) {
            const char c = value[i];
            if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) continue;
            out_.append(value.substr(plain, i - plain));
            if (c == '"' || c == '\\') {
                out_ += '\\';
                out_ += c;
            } else {
                out_ += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
            }
            plain = i + 1;
        }
        out_.append(value.substr(plain));
        out_ += '"';
    }
    std::string& out_;
};

void connection_fields(ObjectWriter& w, const Event& e) {
    w.number("connection", e.connection);
    w.number("cookie", e.cookie);
    w.endpoint("local", e.local);
    w.endpoint("remote", e.remote);
    switch (e.kind) {
    case EventKind::opened:
        w.boolean("accepted", e.accepted);
        w.string("state", state_name(e.new_state));
        break;
    case EventKind::state:
        w.string("from", state_name(e.old_state));
        w.string("to", state_name(e.new_state));
        if (e.socket_error != 0) w.number("socket_error", e.socket_error);
        break;
    case EventKind::resumed:
        w.number("silent_seconds", static_cast<double>(e.silence_ns) / 1e9);
        w.string("state", state_name(e.new_state));
        break;
    case EventKind::reset:
    case EventKind::destroyed:
        w.string("state", state_name(e.new_state));
        break;
    case EventKind::exit:
    case EventKind::listen:
        break;
    }
}

// The same object as frame_json().
void frame_field(std::string& out, const Frame& f) {
    ObjectWriter w(out);
    w.text("text", frame_text(f));
    w.string("origin", origin_name(f.origin));
    w.string("trust", trust_name(f.trust));
    w.string("address", fmt::format("0x{:x}", f.address));
    const auto text_or_null = [&](std::string_view key, const std::string& raw) {
        if (raw.empty())
            w.null(key);
        else
            w.text(key, raw);
    };
    text_or_null("function", f.function);
    text_or_null("file", f.file);
    if (f.line > 0)
        w.number("line", f.line);
    else
        w.null("line");
    text_or_null("module", f.module);
}

// The same object as call_site_json().
void call_site_field(ObjectWriter& w, std::string& out, const CallSite& site) {
    w.member("call_site");
    ObjectWriter site_w(out);
    site_w.member("frames");
    out += '[';
    for (const auto& f : site.frames) {
        if (out.back() != '[') out += ',';
        frame_field(out, f);
    }
    out += ']';
    site_w.boolean("complete", site.complete);
    if (site.complete)
        site_w.null("stops");
    else
        site_w.text("stops", site.stops);
    if (site.note.empty())
        site_w.null("note");
    else
        site_w.text("note", site.note);
}

} // namespace

void EventJsonWriter::append(std::string& out, const Event& e, const CallSite& site) {
    {
        ObjectWriter w(out);
        w.string("type", kind_name(e.kind));
        w.time("time", clock_, e.time_ns);
        w.number("pid", e.pid);
        if (e.tid != 0) {
            w.number("tid", e.tid);
            if (!e.thread.empty())
                w.text("thread", e.thread); // a thread gone before its name was read
        }
        if (e.kind == EventKind::listen) w.endpoint("local", e.local);
        if (e.kind != EventKind::exit && e.kind != EventKind::listen) connection_fields(w, e);
        if (e.kind == EventKind::opened) call_site_field(w, out, site);
        if (hands_to_time_wait(e)) {
            w.boolean("time_wait", true);
            w.time("time_wait_expires", clock_, e.time_ns + time_wait_ns);
        }
    }
    out += '\n';
}

std::string event_json(const Event& e, const CallSite& site, std::int64_t offset) {
    std::string out;
    EventJsonWriter(offset).append(out, e, site);
    out.pop_back();
    return out;
}

nlohmann::json ledger_json(const LedgerReport& r, const ProbeCounters& counters,
                           std::int64_t offset) {
    nlohmann::json leaks = nlohmann::json::array();
    for (const auto& g : r.groups) {
        nlohmann::json list = nlohmann::json::array();
        for (const auto& l : g.leaks) {
            nlohmann::json item = connection_json(l.connection, offset);
            item["kind"] = leak_name(l.kind);
            item["since"] = wall_time(l.since_ns, offset);
            item["for_seconds"] =
                static_cast<double>(r.end_ns - std::min(r.end_ns, l.since_ns)) / 1e9;
            if (l.kind == LeakKind::zombie)
                item["successor"] = {{"connection", l.successor},
                                     {"cookie", l.successor_cookie},
                                     {"opened", wall_time(l.successor_opened_ns, offset)}};
            list.push_back(std::move(item));
        }
        leaks.push_back(
            {{"call_site", call_site_json(g.call_site)},
             {"user_frame", g.user_frame ? nlohmann::json(*g.user_frame) : nlohmann::json(nullptr)},
             {"thread", text::sanitize(g.thread)},
             {"peer", peer_string(g.peer)},
             {"connections", std::move(list)}});
    }
    nlohmann::json young = nlohmann::json::array();
    for (const auto& l : r.not_closed_yet) {
        nlohmann::json item = connection_json(l.connection, offset);
        item["kind"] = leak_name(l.kind);
        item["since"] = wall_time(l.since_ns, offset);
        item["for_seconds"] = static_cast<double>(r.end_ns - std::min(r.end_ns, l.since_ns)) / 1e9;
        young.push_back(std::move(item));
    }
    nlohmann::json peers = nlohmann::json::array();
    for (const auto& p : r.peers)
        peers.push_back({
            {"peer", peer_string(p.peer)},
            {"accepted", p.peer.accepted},
            {"opened", p.opened},
            {"ended", p.ended},
            {"held", p.held},
            {"opens_per_minute", p.opens_per_minute},
            {"ends_per_minute", p.ends_per_minute},
            {"time_wait_handed", p.time_wait_handed},
            {"time_wait_now", p.time_wait_now},
            {"oldest_held_opened", optional_time(p.oldest_held_opened_ns, offset)},
            {"reconnect_seconds",
             {{"min", optional_seconds(p.reconnect_min_ns)},
              {"median", optional_seconds(p.reconnect_median_ns)},
              {"max", optional_seconds(p.reconnect_max_ns)}}},
        });
    nlohmann::json exited = nlohmann::json::object();
    for (const auto& [pid, ns] : r.exited)
        exited[std::to_string(pid)] = wall_time(ns, offset);
    return {
        {"type", "ledger"},
        {"start", wall_time(r.start_ns, offset)},
        {"end", wall_time(r.end_ns, offset)},
        {"seconds", static_cast<double>(r.end_ns - std::min(r.end_ns, r.start_ns)) / 1e9},
        {"connections", r.connections},
        {"held", r.held},
        {"last_data_unknown", r.last_data_unknown},
        {"untracked_connections", counters.untracked_connections},
        {"lost_events", counters.lost_events},
        {"incomplete_connections", r.incomplete},
        {"exited", exited},
        {"leaks", leaks},
        {"not_closed_yet", young},
        {"peers", peers},
    };
}

} // namespace conncheck::trace
