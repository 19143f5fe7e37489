#include "conncheck/statefile.hpp"

#include "conncheck/error.hpp"
#include "conncheck/fd.hpp"
#include "conncheck/files.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace conncheck::statefile {

namespace {

using nlohmann::json;

// The file must be ours: a state file another user can plant decides what we attribute and
// report, and one we follow through a symlink could be anyone's file.
void check_owner(int fd, const std::string& path, std::string_view what) {
    struct stat st {};
    if (::fstat(fd, &st) != 0)
        throw Error(Errc::bad_file, errno_message("cannot stat " + path, errno));
    if (!S_ISREG(st.st_mode))
        throw Error(Errc::bad_file,
                    fmt::format("{} {} is not a regular file; refusing to use it", what, path));
    if (st.st_uid != ::geteuid())
        throw Error(Errc::bad_file,
                    fmt::format("{} {} is owned by uid {}, not by the user running conncheck "
                                "(uid {}); refusing to use it",
                                what, path, st.st_uid, ::geteuid()));
}

[[noreturn]] void corrupt(const std::string& path, std::string_view why) {
    throw Error(Errc::bad_file,
                fmt::format("state file {} is unusable: {}; it was left as it is (move it away "
                            "to start afresh)",
                            path, why));
}

std::uint64_t get_u64(const json& object, std::string_view key, const std::string& path,
                      std::string_view where) {
    const auto it = object.find(key);
    if (it == object.end() || !it->is_number_unsigned())
        corrupt(path, fmt::format("{}: '{}' is missing or not a non-negative integer", where, key));
    return it->get<std::uint64_t>();
}

std::int64_t get_time(const json& object, std::string_view key, const std::string& path,
                      std::string_view where) {
    const auto it = object.find(key);
    if (it == object.end() || !it->is_number_integer())
        corrupt(path, fmt::format("{}: '{}' is missing or not an integer", where, key));
    // Unix milliseconds from 1970 to the year 3000: the growth arithmetic never overflows.
    constexpr std::int64_t latest_ms = 32'503'680'000'000;
    if (it->is_number_unsigned() ? it->get<std::uint64_t>() > static_cast<std::uint64_t>(latest_ms)
                                 : (it->get<std::int64_t>() < 0))
        corrupt(path, fmt::format("{}: '{}' is out of range", where, key));
    return it->get<std::int64_t>();
}

json entry_json(const HistoryEntry& s) {
    return json{{"taken_at_ms", s.taken_at_ms},
                {"established", s.established},
                {"close_wait", s.close_wait},
                {"stale", s.stale},
                {"fds", s.fds},
                {"held_after_close", s.held_after_close}};
}

HistoryEntry entry_from(const json& j, const std::string& path) {
    if (!j.is_object()) corrupt(path, "a history entry is not an object");
    HistoryEntry s;
    s.taken_at_ms = get_time(j, "taken_at_ms", path, "history");
    s.established = get_u64(j, "established", path, "history");
    s.close_wait = get_u64(j, "close_wait", path, "history");
    s.stale = get_u64(j, "stale", path, "history");
    s.fds = get_u64(j, "fds", path, "history");
    if (j.contains("held_after_close"))
        s.held_after_close = get_u64(j, "held_after_close", path, "history");
    return s;
}

ProcessState process_from(const json& j, const std::string& path) {
    if (!j.is_object()) corrupt(path, "a process entry is not an object");
    ProcessState p;
    const auto pid = get_u64(j, "pid", path, "process");
    if (pid == 0 || pid > 0x7fffffffULL) corrupt(path, "process: 'pid' is out of range");
    p.pid = static_cast<pid_t>(pid);
    const std::string where = fmt::format("process {}", pid);
    p.start_ticks = get_u64(j, "start_ticks", path, where);
    const auto comm = j.find("comm");
    if (comm == j.end() || !comm->is_string()) corrupt(path, where + ": 'comm' is not a string");
    p.comm = comm->get<std::string>();
    const auto states = j.find("states");
    if (states == j.end() || !states->is_object())
        corrupt(path, where + ": 'states' is not an object");
    for (const auto& [name, count] : states->items()) {
        const auto state = parse_state(name);
        if (!state || !count.is_number_unsigned())
            corrupt(path, fmt::format("{}: bad state count '{}'", where, name));
        p.states[*state] = count.get<std::uint64_t>();
    }
    p.stale = get_u64(j, "stale", path, where);
    p.fds = get_u64(j, "fds", path, where);
    const auto cookies = j.find("cookies");
    if (cookies == j.end() || !cookies->is_array())
        corrupt(path, where + ": 'cookies' is not an array");
    p.cookies.reserve(cookies->size());
    for (const auto& c : *cookies) {
        if (!c.is_number_unsigned()) corrupt(path, where + ": a cookie is not an integer");
        p.cookies.push_back(c.get<std::uint64_t>());
    }
    const auto history = j.find("history");
    if (history == j.end() || !history->is_array())
        corrupt(path, where + ": 'history' is not an array");
    for (const auto& h : *history)
        p.history.push_back(entry_from(h, path));
    return p;
}

} // namespace

std::string default_path(std::string_view selector_key, uid_t euid, const char* xdg_state_home,
                         const char* home, const char* state_directory) {
    std::string key(selector_key);
    std::replace(key.begin(), key.end(), '/', '_');
    if (key.empty() || key.front() == '.') key.insert(0, "selector");
    const std::string file = key + ".json";
    // systemd sets STATE_DIRECTORY to the unit's own StateDirectory= (a colon-separated list when
    // there are several): a unit keeps its state there and never in a person's or cron's file.
    if (state_directory != nullptr && state_directory[0] == '/') {
        const std::string_view dirs(state_directory);
        return std::string(dirs.substr(0, dirs.find(':'))) + "/" + file;
    }
    if (euid == 0) return "/var/lib/conncheck/" + file;
    // The XDG base directory spec: a relative XDG_STATE_HOME is invalid and is ignored.
    if (xdg_state_home != nullptr && xdg_state_home[0] == '/')
        return std::string(xdg_state_home) + "/conncheck/" + file;
    if (home == nullptr || home[0] != '/')
        throw Error(Errc::usage, "cannot find a directory for the state file: set HOME or "
                                 "XDG_STATE_HOME, or name the file");
    return std::string(home) + "/.local/state/conncheck/" + file;
}

std::string default_path(std::string_view selector_key) {
    const uid_t euid = ::geteuid();
    const char* home = std::getenv("HOME");
    if (home == nullptr || home[0] == '\0') {
        if (const passwd* pw = ::getpwuid(euid); pw != nullptr) home = pw->pw_dir;
    }
    return default_path(selector_key, euid, std::getenv("XDG_STATE_HOME"), home,
                        std::getenv("STATE_DIRECTORY"));
}

void make_parent_dirs(const std::string& path) {
    const auto parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) return;
    std::filesystem::path partial;
    for (const auto& part : parent) {
        partial /= part;
        if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST)
            throw Error(Errc::io,
                        errno_message("cannot create directory " + partial.string(), errno));
    }
}

Lock Lock::acquire(const std::string& state_path, std::chrono::milliseconds max_wait) {
    const std::string path = state_path + ".lock";
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
    if (fd.get() < 0) {
        if (errno == ELOOP)
            throw Error(Errc::bad_file,
                        fmt::format("lock file {} is a symbolic link; refusing to use it", path));
        if (errno == ENOENT)
            throw Error(Errc::bad_file,
                        fmt::format("the directory of state file {} does not exist", state_path));
        throw Error(Errc::bad_file, errno_message("cannot open lock file " + path, errno));
    }
    check_owner(fd.get(), path, "lock file");
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + max_wait;
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK)
            throw Error(Errc::io, errno_message("cannot lock " + path, errno));
        if (std::chrono::steady_clock::now() >= deadline) {
            const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - start);
            throw Error(Errc::timeout,
                        fmt::format("state file {} is locked by another conncheck run (gave up "
                                    "after {} ms); runs overlap: lengthen the interval or the "
                                    "timeout, or look for a hung run holding {}",
                                    state_path, waited.count(), path));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Lock(std::move(fd), path);
}

std::optional<State> load(const std::string& path, std::string_view selector) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (fd.get() < 0) {
        if (errno == ENOENT) return std::nullopt;
        if (errno == ELOOP)
            throw Error(Errc::bad_file,
                        fmt::format("state file {} is a symbolic link; refusing to follow it "
                                    "(name the real path)",
                                    path));
        throw Error(Errc::bad_file, errno_message("cannot open state file " + path, errno));
    }
    check_owner(fd.get(), path, "state file");
    std::string content;
    char buf[65536];
    while (true) {
        const ssize_t got = ::read(fd.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            throw Error(Errc::bad_file, errno_message("cannot read state file " + path, errno));
        if (got == 0) break;
        content.append(buf, static_cast<std::size_t>(got));
        if (content.size() > max_file_bytes)
            corrupt(path, fmt::format("it is larger than {} bytes", max_file_bytes));
    }
    State state = decode(content, path);
    if (state.selector != selector)
        throw Error(Errc::bad_file,
                    fmt::format("state file {} belongs to another check (selector '{}', this one "
                                "is '{}'); give each check its own state file",
                                path, text::sanitize(state.selector, 80), selector));
    return state;
}

void save(const std::string& path, const State& state) {
    const std::string content = encode(state);
    // Only a run holding the lock writes the file: every temporary file left is a killed run's.
    files::remove_leftovers(path);
    files::write_file(path, content, 0600, true);
}

std::string encode(const State& state) {
    json processes = json::array();
    for (const auto& p : state.processes) {
        json states = json::object();
        for (std::size_t i = 1; i < tcp_state_count; ++i) {
            const auto s = static_cast<TcpState>(i);
            if (p.states[s] != 0) states[std::string(state_name(s))] = p.states[s];
        }
        json history = json::array();
        for (const auto& h : p.history)
            history.push_back(entry_json(h));
        processes.push_back(json{{"pid", p.pid},
                                 {"start_ticks", p.start_ticks},
                                 {"comm", p.comm},
                                 {"states", std::move(states)},
                                 {"stale", p.stale},
                                 {"fds", p.fds},
                                 {"cookies", p.cookies},
                                 {"history", std::move(history)}});
    }
    const json doc{{"format", format_name},
                   {"version", format_version},
                   {"selector", state.selector},
                   {"taken_at_ms", state.taken_at_ms},
                   {"taken_at", text::iso8601_utc(state.taken_at_ms / 1000)},
                   {"processes", std::move(processes)}};
    // comm is whatever bytes the process chose: invalid UTF-8 is replaced, not thrown on.
    return doc.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

State decode(std::string_view text, const std::string& path) {
    json doc;
    try {
        doc = json::parse(text);
    } catch (const json::parse_error& e) {
        corrupt(path, fmt::format("not valid JSON, truncated or damaged (parse error at byte "
                                  "{} of {})",
                                  e.byte, text.size()));
    } catch (const json::exception&) {
        // A number no double holds (1e400) is valid JSON that the parser refuses.
        corrupt(path, "it holds a number out of range");
    }
    const auto format = doc.is_object() ? doc.find("format") : doc.end();
    if (format == doc.end() || !format->is_string() || format->get<std::string>() != format_name)
        corrupt(path, fmt::format("it is not a conncheck state file (no \"format\": \"{}\")",
                                  format_name));
    const auto version = doc.find("version");
    if (version == doc.end() || !version->is_number_integer() ||
        version->get<std::int64_t>() != format_version)
        corrupt(path, fmt::format("it has format version {}, this conncheck reads version {}",
                                  version == doc.end() ? "none" : version->dump(), format_version));
    State state;
    const auto selector = doc.find("selector");
    if (selector == doc.end() || !selector->is_string()) corrupt(path, "'selector' is missing");
    state.selector = selector->get<std::string>();
    state.taken_at_ms = get_time(doc, "taken_at_ms", path, "file");
    const auto processes = doc.find("processes");
    if (processes == doc.end() || !processes->is_array())
        corrupt(path, "'processes' is missing or not an array");
    for (const auto& p : *processes)
        state.processes.push_back(process_from(p, path));
    return state;
}

std::optional<HistoryEntry> growth_base(const std::vector<HistoryEntry>& history,
                                        std::int64_t now) {
    if (history.empty()) return std::nullopt;
    const std::int64_t window_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(growth_window).count();
    for (const auto& s : history)
        if (now - s.taken_at_ms <= window_ms) return s;
    return history.back();
}

void add_sample(std::vector<HistoryEntry>& history, const HistoryEntry& sample) {
    const std::int64_t window_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(growth_window).count();
    const std::int64_t spacing_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(sample_spacing).count();
    std::erase_if(history, [&](const HistoryEntry& s) {
        return sample.taken_at_ms - s.taken_at_ms > window_ms || s.taken_at_ms > sample.taken_at_ms;
    });
    if (!history.empty() && sample.taken_at_ms - history.back().taken_at_ms < spacing_ms) return;
    history.push_back(sample);
}

} // namespace conncheck::statefile
