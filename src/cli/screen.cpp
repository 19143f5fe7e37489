#include "screen.hpp"

#include "ansi.hpp"
#include "human_text.hpp"
#include "screen_line.hpp"
#include "watch_output.hpp"

#include "conncheck/text.hpp"

#include <algorithm>
#include <cstdint>
#include <fmt/core.h>
#include <map>
#include <vector>

namespace conncheck::cli::screen {

namespace {

using watch::Frame;
using watch::PeerFrame;
using watch::ProcessFrame;
using watch::Row;
using watch::StateRow;

// --- drawing ---

using ansi::bold;
using ansi::bold_red;
using ansi::dim;
using ansi::green;
using ansi::red;
using ansi::reverse;
using ansi::yellow;

std::string signed_text(std::int64_t v) {
    return v > 0 ? fmt::format("+{}", v) : fmt::format("{}", v);
}

std::string short_duration(std::int64_t ms) {
    return human_duration_ms(static_cast<std::uint64_t>(std::max<std::int64_t>(ms, 0)));
}

// "10m", "2h", "500ms": durations the user typed, without the padding of human_duration_ms.
std::string setting_duration(std::int64_t ms) {
    if (ms > 0 && ms % 86'400'000 == 0) return fmt::format("{}d", ms / 86'400'000);
    if (ms > 0 && ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
    if (ms > 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
    if (ms > 0 && ms % 1000 == 0 && ms < 60'000) return fmt::format("{}s", ms / 1000);
    return short_duration(ms);
}

std::string idle_text(const PeerFrame& p) {
    if (!p.idle_min_ms) return "-";
    if (*p.idle_min_ms / 1000 == *p.idle_max_ms / 1000) return short_duration(*p.idle_max_ms);
    return short_duration(*p.idle_min_ms) + "-" + short_duration(*p.idle_max_ms);
}

// "3m12s"; "> 5m00s" when the oldest connection predates the watch (its age is at least that).
std::string oldest_text(const PeerFrame& p) {
    if (!p.oldest_age_ms) return "-";
    return (p.oldest_predates_watch ? "> " : "") + short_duration(*p.oldest_age_ms);
}

std::string rate_text(const std::optional<double>& v) {
    return v ? fmt::format("{:.1f}/min", *v) : std::string("-");
}

const char* severity_style(analysis::Severity s) {
    return s == analysis::Severity::critical  ? bold_red
           : s == analysis::Severity::warning ? yellow
                                              : nullptr;
}

std::string_view severity_abbrev(analysis::Severity s) {
    return s == analysis::Severity::critical  ? "CRIT "
           : s == analysis::Severity::warning ? "WARN "
                                              : "INFO ";
}

struct Layout {
    int cols = 0; // usable columns: one less than the terminal, so no row ever wraps
    bool color = false;
    [[nodiscard]] Line line() const { return Line(cols, color); }
};

// Columns of the states table: NOW ends at 20, TICK at 27, START at 35, TREND at 44.
void state_row(std::vector<std::string>& out, const Layout& l, std::string_view label,
               const Row& row, bool warn_on_growth) {
    auto line = l.line();
    const char* label_style = warn_on_growth && row.current > 0 ? yellow : nullptr;
    line.add(label, label_style);
    line.right(fmt::format("{}", row.current), 20, bold);
    line.right(signed_text(row.since_last), 27);
    line.right(signed_text(row.since_start), 35);
    const std::string trend = row.slope_per_hour ? format_slope(*row.slope_per_hour) : "...";
    const bool rising = row.slope_per_hour && *row.slope_per_hour >= 0.05;
    const bool falling = row.slope_per_hour && *row.slope_per_hour <= -0.05;
    line.right(trend, 44,
               warn_on_growth && rising    ? red
               : warn_on_growth && falling ? green
                                           : nullptr);
    line.pad_to(46);
    const int spark_cols = std::min(l.cols - 46, 120);
    if (spark_cols > 0) line.add(sparkline(row.spark, static_cast<std::size_t>(spark_cols)), dim);
    out.push_back(line.take());
}

std::vector<PeerFrame> merged_peers(const Frame& frame) {
    std::vector<const ProcessFrame*> running;
    for (const auto& p : frame.processes)
        if (!p.exited || frame.processes.size() == 1) running.push_back(&p);
    if (running.size() == 1) return running.front()->peers;
    std::map<std::string, PeerFrame> merged;
    for (const auto* p : running) {
        for (const auto& peer : p->peers) {
            auto [it, inserted] = merged.try_emplace(peer.label, peer);
            if (inserted) continue;
            auto& m = it->second;
            for (std::size_t i = 0; i < m.states.n.size(); ++i)
                m.states.n[i] += peer.states.n[i];
            m.total += peer.total;
            m.unread_bytes += peer.unread_bytes;
            m.opened_per_minute += peer.opened_per_minute;
            if (peer.idle_min_ms) {
                m.idle_min_ms =
                    std::min(m.idle_min_ms.value_or(*peer.idle_min_ms), *peer.idle_min_ms);
                m.idle_max_ms =
                    std::max(m.idle_max_ms.value_or(*peer.idle_max_ms), *peer.idle_max_ms);
            }
            if (peer.oldest_age_ms) {
                m.oldest_age_ms = std::max(m.oldest_age_ms.value_or(0), *peer.oldest_age_ms);
                m.oldest_predates_watch = m.oldest_predates_watch || peer.oldest_predates_watch;
            }
        }
    }
    std::vector<PeerFrame> out;
    for (auto& [label, peer] : merged)
        out.push_back(std::move(peer));
    return out;
}

std::vector<std::string> header_lines(const Frame& frame, const ViewState& view, const Layout& l) {
    std::vector<std::string> out;
    const bool single = frame.processes.size() == 1;
    const ProcessFrame* only = single ? &frame.processes.front() : nullptr;

    auto title = l.line();
    title.add("conncheck watch", bold).add("  ");
    if (single) {
        title.add(fmt::format("pid {} ", only->pid)).add(only->comm, bold);
    } else {
        std::size_t running = 0;
        for (const auto& p : frame.processes)
            running += p.exited ? 0 : 1;
        title.add(fmt::format("{} processes, {} running", frame.processes.size(), running));
    }
    const std::string iso = text::iso8601_utc(frame.unix_seconds);
    const std::string clock = iso.size() >= 19 ? iso.substr(11, 8) + " UTC" : iso;
    if (title.cols() + 2 + static_cast<int>(clock.size()) <= l.cols)
        title.right(clock, l.cols, dim);
    out.push_back(title.take());

    auto facts = l.line();
    facts.add(fmt::format("up {} · every {} · window {} · ", short_duration(frame.uptime_ms),
                          setting_duration(frame.interval_ms), setting_duration(frame.window_ms)));
    if (single) {
        facts.add(only->fd_limit > 0 ? fmt::format("fds {}/{}", only->open_fds, only->fd_limit)
                                     : fmt::format("fds {}", only->open_fds));
        if (only->other_sockets.total() > 0)
            facts.add(fmt::format(" ({} sockets in no TCP state)", only->other_sockets.total()));
    } else {
        facts.add(fmt::format("fds {}", frame.open_fds_total));
    }
    facts.add(fmt::format(" · socket memory {}", human_bytes(single ? only->kernel_memory_bytes
                                                                    : frame.kernel_memory_total)));
    out.push_back(facts.take());

    auto second = l.line();
    if (single && !only->cmdline.empty()) second.add("cmd ", dim).add(only->cmdline, dim);
    out.push_back(second.take());

    auto status = l.line();
    if (view.paused) {
        status.add(" PAUSED ", reverse)
            .add("  the screen is frozen; watch keeps sampling (p resumes)");
    } else if (single && only->exited) {
        status.add(fmt::format("process exited after {}: last figures kept",
                               short_duration(only->exited_after_ms)),
                   bold_red);
    } else if (!frame.has_cookies) {
        status.add("source " + frame.source +
                       " has no socket cookies: no churn, no exact TIME_WAIT",
                   yellow);
    } else if (!frame.warnings.empty()) {
        status.add(text::sanitize(frame.warnings.front()), yellow);
    }
    out.push_back(status.take());
    return out;
}

std::vector<std::string> state_lines(const Frame& frame, const Layout& l) {
    std::vector<std::string> out;
    const bool single = frame.processes.size() == 1;
    const auto& rows = single ? frame.processes.front().states : frame.totals;
    const Row& fds = single ? frame.processes.front().fds : frame.fds_total;

    auto head = l.line();
    head.add("STATE", bold).right("NOW", 20, bold).right("TICK", 27, bold).right("START", 35, bold);
    head.right("TREND", 44, bold)
        .pad_to(46)
        .add("WINDOW " + setting_duration(frame.window_ms), bold);
    out.push_back(head.take());
    for (const auto& s : rows)
        state_row(out, l, state_label(s.state), s.row, s.state == TcpState::close_wait);
    state_row(out, l, "open fds", fds, true);

    std::uint64_t exact = 0;
    std::uint64_t by_peer = 0;
    std::optional<double> opened;
    std::optional<double> closed;
    std::uint64_t short_lived = 0;
    std::int64_t span = 0;
    for (const auto& p : frame.processes) {
        if (p.exited && !single) continue;
        exact += p.time_wait_exact;
        by_peer += p.time_wait_by_peer;
        if (p.churn.opened_per_minute) opened = opened.value_or(0) + *p.churn.opened_per_minute;
        if (p.churn.closed_per_minute) closed = closed.value_or(0) + *p.churn.closed_per_minute;
        short_lived += p.churn.short_lived_total;
        span = std::max(span, p.churn.rate_span_ms);
    }
    auto tw = l.line();
    tw.add("TIME_WAIT ", bold).add(fmt::format("{} exact", exact), bold);
    tw.add(" (seen live: owner certain) · ");
    tw.add(fmt::format("{} by peer", by_peer), by_peer > 0 ? yellow : nullptr);
    tw.add(" (owner guessed from the address)");
    out.push_back(tw.take());

    auto churn = l.line();
    churn.add("CHURN ", bold);
    if (!frame.has_cookies) {
        churn.add("unknown without socket cookies");
    } else if (!opened) {
        churn.add("counted from the second tick on");
    } else {
        churn.add("opened ")
            .add(rate_text(opened), bold)
            .add("  closed ")
            .add(rate_text(closed), bold);
        churn.add(fmt::format("  over the last {}", short_duration(span)));
        if (short_lived > 0)
            churn.add(fmt::format(" · {} lived less than a tick", short_lived), dim);
    }
    out.push_back(churn.take());
    return out;
}

std::vector<std::string> process_lines(const Frame& frame, const Layout& l) {
    std::vector<std::string> out;
    if (frame.processes.size() < 2) return out;
    for (const auto& p : frame.processes) {
        auto line = l.line();
        line.right(fmt::format("{}", p.pid), 8).add(" ").add(p.comm, bold).pad_to(26);
        std::uint64_t est = 0, cw = 0, tw = 0;
        for (const auto& s : p.states) {
            if (s.state == TcpState::established) est = s.row.current;
            if (s.state == TcpState::close_wait) cw = s.row.current;
            if (s.state == TcpState::time_wait) tw = s.row.current;
        }
        if (p.exited)
            line.add(fmt::format("exited after {}, last: ", short_duration(p.exited_after_ms)),
                     red);
        line.add(fmt::format("EST {}  CW {}  TW {}  fds {}", est, cw, tw, p.open_fds));
        if (!p.exited && p.fd_limit > 0) line.add(fmt::format("/{}", p.fd_limit));
        out.push_back(line.take());
    }
    return out;
}

std::vector<std::string> peer_lines(const Frame& frame, const ViewState& view, const Layout& l,
                                    std::size_t budget) {
    std::vector<std::string> out;
    if (budget < 2) return out;
    auto peers = merged_peers(frame);
    watch::sort_peers(peers, view.sort);
    // The figures follow the longest peer shown rather than the terminal's right edge: on a wide
    // terminal they stay next to the peers they belong to.
    const std::string sorted = fmt::format(" by {} (s)", watch::peer_sort_name(view.sort));
    const int figures = frame.events ? 56 : 46;
    // Room for the header ("PEERS by CLOSE_WAIT (s)") and the longest peer shown.
    int longest = 5 + static_cast<int>(sorted.size());
    for (std::size_t i = 0; i < peers.size() && i + 1 < budget; ++i)
        longest = std::max(longest, 2 + display_width(text::sanitize(peers[i].label)));
    const int end = std::min(l.cols, longest + 8 + figures);
    // With connection events, the oldest connection's age before the counts.
    const int c_new = end, c_idle = end - 9, c_tw = end - 24, c_cw = end - 31, c_est = end - 39,
              c_oldest = end - 46, c_total = frame.events ? end - 56 : end - 46;
    auto head = l.line();
    head.add("PEERS", bold);
    if (head.cols() + static_cast<int>(sorted.size()) < c_total - 6) head.add(sorted, dim);
    if (c_total - 7 > head.cols()) {
        head.right("TOTAL", c_total, bold);
        if (frame.events) head.right("OLDEST", c_oldest, bold);
        head.right("ESTAB", c_est, bold).right("CLOSE_W", c_cw, bold);
        head.right("TIME_W", c_tw, bold).right("IDLE", c_idle, bold).right("NEW/MIN", c_new, bold);
    }
    out.push_back(head.take());
    if (peers.empty()) {
        out.push_back(l.line().add("  no TCP connections", dim).take());
        return out;
    }
    const std::size_t rows = budget - 1;
    for (std::size_t i = 0; i < peers.size() && i < rows; ++i) {
        const auto& p = peers[i];
        auto line = l.line();
        if (i + 1 == rows && peers.size() > rows) {
            line.add(fmt::format("  ... {} more peers", peers.size() - i), dim);
            out.push_back(line.take());
            break;
        }
        const int label_cols = std::max(8, c_total - 8);
        line.add("  ").add(text::sanitize(p.label, static_cast<std::size_t>(label_cols)));
        line.right(fmt::format("{}", p.total), c_total);
        if (frame.events) line.right(oldest_text(p), c_oldest);
        line.right(fmt::format("{}", p.states[TcpState::established]), c_est);
        const auto cw = p.states[TcpState::close_wait];
        line.right(fmt::format("{}", cw), c_cw, cw > 0 ? yellow : nullptr);
        line.right(fmt::format("{}", p.states[TcpState::time_wait]), c_tw);
        line.right(idle_text(p), c_idle);
        line.right(fmt::format("{:.1f}", p.opened_per_minute), c_new);
        out.push_back(line.take());
    }
    return out;
}

std::vector<std::string> finding_lines(const Frame& frame, const Layout& l) {
    std::vector<std::string> out;
    out.push_back(l.line().add("FINDINGS", bold).take());
    const bool several = frame.processes.size() > 1;
    for (const auto& p : frame.processes) {
        if (p.exited) continue;
        const std::string who = several ? fmt::format("pid {}: ", p.pid) : std::string{};
        if (p.fd_projection) {
            out.push_back(l.line()
                              .add("TREND ", yellow)
                              .add(who + describe_projection(*p.fd_projection, "leaked sockets"))
                              .take());
        }
        for (const auto& f : p.findings) {
            out.push_back(l.line()
                              .add(severity_abbrev(f.severity), severity_style(f.severity))
                              .add(who + f.summary)
                              .take());
        }
    }
    if (out.size() == 1) out.push_back(l.line().add("  none", dim).take());
    return out;
}

std::string footer(const Frame& frame, const ViewState& view, const Layout& l) {
    auto line = l.line();
    line.add("q", bold).add(" quit  ").add("p", bold).add(view.paused ? " resume  " : " pause  ");
    line.add("s", bold).add(fmt::format(" sort peers ({})", watch::peer_sort_name(view.sort)));
    std::string cost;
    if (frame.tick_ms) cost = fmt::format("watcher {:.1f} ms/tick", *frame.tick_ms);
    if (frame.cpu_percent) cost += fmt::format(", {:.2f}% CPU", *frame.cpu_percent);
    // How watch follows the connections first, then its cost where room is left.
    const int room = l.cols - line.cols() - 2;
    if (room >= 7)
        line.add("  ").add(text::sanitize(tracking_text(frame), static_cast<std::size_t>(room)),
                           dim);
    if (!cost.empty() && line.cols() + 2 + static_cast<int>(cost.size()) <= l.cols)
        line.right(cost, l.cols, dim);
    return line.take();
}

} // namespace

std::string render(const Frame& frame, const ViewState& view, Size size) {
    std::vector<std::string> lines;
    Layout l{size.cols - 1, view.color};
    if (size.cols < minimum_size.cols || size.rows < minimum_size.rows) {
        lines.push_back(
            l.line()
                .add(fmt::format("terminal too small ({}x{}): conncheck watch needs {}x{}",
                                 size.cols, size.rows, minimum_size.cols, minimum_size.rows))
                .take());
    } else {
        lines = header_lines(frame, view, l);
        for (auto& s : state_lines(frame, l))
            lines.push_back(std::move(s));
        for (auto& s : process_lines(frame, l))
            lines.push_back(std::move(s));
        auto findings = finding_lines(frame, l);
        const auto rows = static_cast<std::size_t>(size.rows);
        std::size_t left = rows > lines.size() + 1 ? rows - lines.size() - 1 : 0; // 1: footer
        // Findings first (they are the point), then as many peers as fit.
        std::size_t finding_rows = std::min(findings.size(), left);
        const std::size_t peer_wish = 3; // a blank, the header and one peer
        if (finding_rows + peer_wish > left && left > peer_wish + 1)
            finding_rows = std::max<std::size_t>(2, left - peer_wish);
        findings.resize(std::min(findings.size(), finding_rows));
        const std::size_t peer_budget = left > findings.size() + 1 ? left - findings.size() - 1 : 0;
        auto peers = peer_lines(frame, view, l,
                                peer_budget >= 2 ? peer_budget - (findings.empty() ? 0 : 1) : 0);
        if (!peers.empty()) {
            lines.emplace_back();
            for (auto& s : peers)
                lines.push_back(std::move(s));
        }
        if (!findings.empty()) {
            lines.emplace_back();
            for (auto& s : findings)
                lines.push_back(std::move(s));
        }
        while (lines.size() + 1 < rows)
            lines.emplace_back();
        lines.push_back(footer(frame, view, l));
    }
    // A terminal that knows synchronized output shows the frame at once.
    std::string out = ansi::begin_synchronized_update;
    const auto rows = static_cast<std::size_t>(std::max(size.rows, 1));
    for (std::size_t i = 0; i < rows; ++i) {
        if (i < lines.size()) out += lines[i];
        out += ansi::clear_to_end_of_line;
        if (i + 1 < rows) out += "\r\n";
    }
    out += ansi::end_synchronized_update;
    return out;
}

} // namespace conncheck::cli::screen
