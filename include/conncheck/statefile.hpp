// The state `conncheck check` keeps between runs: what the previous run saw, so that the next one
// can report growth, attribute TIME_WAIT sockets by cookie, and tell a restarted process from a
// leak or a fix. Versioned JSON, written atomically, locked against an overlapping run.
#pragma once

#include "conncheck/analysis.hpp"
#include "conncheck/fd.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace conncheck::statefile {

inline constexpr std::string_view format_name = "conncheck-state";
inline constexpr int format_version = 1;
// Larger files are refused unread: no run writes anything near this.
inline constexpr std::uint64_t max_file_bytes = 64ULL << 20;

// The counts growth is measured on, at one moment.
struct HistoryEntry {
    std::int64_t taken_at_ms = 0; // Unix time
    std::uint64_t established = 0;
    std::uint64_t close_wait = 0;
    std::uint64_t stale = 0;
    std::uint64_t fds = 0;
    std::uint64_t held_after_close = 0; // absent in files of earlier releases: 0
};

struct ProcessState {
    pid_t pid = 0;
    std::uint64_t start_ticks = 0; // with pid, names one process instance across runs
    std::string comm;              // raw, as the process set it
    analysis::StateCounts states;
    std::uint64_t stale = 0;
    std::uint64_t fds = 0;
    // Cookies of every socket the process held (TIME_WAIT ones attributed by cookie included):
    // its sockets that close before the next run keep these cookies in TIME_WAIT.
    std::vector<std::uint64_t> cookies;
    std::vector<HistoryEntry> history; // oldest first, see add_sample
};

struct State {
    std::string selector;         // selector_key() of the run that wrote it
    std::int64_t taken_at_ms = 0; // Unix time of that run
    std::vector<ProcessState> processes;
};

// --- file handling; every failure throws Error naming the path ---

// $STATE_DIRECTORY/KEY.json in a systemd unit with StateDirectory= (its first directory), else
// /var/lib/conncheck/KEY.json for root, else $XDG_STATE_HOME/conncheck/KEY.json with
// ~/.local/state as the default for XDG_STATE_HOME. Any of the strings may be null.
[[nodiscard]] std::string default_path(std::string_view selector_key, uid_t euid,
                                       const char* xdg_state_home, const char* home,
                                       const char* state_directory = nullptr);
// The same for the calling process (geteuid, the environment, the passwd entry without $HOME).
[[nodiscard]] std::string default_path(std::string_view selector_key);

// Creates the parent directory of `path` (and missing ancestors) with mode 0700.
void make_parent_dirs(const std::string& path);

// An exclusive flock on PATH.lock held until destruction. The lock file is opened with
// O_NOFOLLOW and must belong to the effective user.
class Lock {
public:
    // Polls for the lock until `max_wait` has passed, then throws Error(timeout) saying another
    // run holds it.
    static Lock acquire(const std::string& state_path, std::chrono::milliseconds max_wait);
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    // Closing the descriptor releases the flock; the lock file stays, so that two runs never
    // lock two different files of the same name.
    Lock(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    UniqueFd fd_;
    std::string path_;
};

// nullopt when the file does not exist (a first run). Throws Error(bad_file) when it is a
// symbolic link, not a regular file, not owned by the effective user, too large, not JSON, not a
// conncheck state file, of another version, or written for another selector. Never modifies it.
[[nodiscard]] std::optional<State> load(const std::string& path, std::string_view selector);

// Writes a temporary file in the same directory, fsyncs it, renames it over `path` and fsyncs the
// directory: a reader (or a crash) sees the old file or the new one, never a mix. Call it with
// the Lock held: it first removes the temporary files of runs killed mid-write.
void save(const std::string& path, const State& state);

// --- pure parts, exposed for tests ---

[[nodiscard]] std::string encode(const State& state);
// Throws Error(bad_file) with `path` in the message.
[[nodiscard]] State decode(std::string_view text, const std::string& path);

// Growth is measured over at most this span: long enough that one connection more or less is
// not a trend, short enough that a leak that starts today is not averaged over a month.
inline constexpr std::chrono::minutes growth_window{60};
// Runs closer together than this add no sample (a run every second would otherwise keep 3,600).
inline constexpr std::chrono::seconds sample_spacing{50};

// The sample to measure growth from at `now_ms`: the oldest one within growth_window, else the
// newest one (runs hours apart still compare with the previous run). nullopt for no history.
[[nodiscard]] std::optional<HistoryEntry> growth_base(const std::vector<HistoryEntry>& history,
                                                      std::int64_t now_ms);
// Drops samples older than growth_window before `sample`, then appends `sample` unless the
// newest kept one is closer than sample_spacing.
void add_sample(std::vector<HistoryEntry>& history, const HistoryEntry& sample);

} // namespace conncheck::statefile
