#include "prove_render.hpp"

#include "ansi.hpp"
#include "human_text.hpp"
#include "terminal.hpp"

#include "conncheck/text.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fmt/core.h>
#include <unistd.h>

namespace conncheck::cli {

namespace {

std::string signed_count(double per_hour) {
    return fmt::format("{:+.0f}", std::abs(per_hour) < 0.5 ? 0.0 : per_hour);
}

std::string signed_bytes(double per_hour) {
    const auto magnitude = static_cast<std::uint64_t>(std::llround(std::abs(per_hour)));
    return fmt::format("{}{}", per_hour < 0 && magnitude > 0 ? "-" : "+", human_bytes(magnitude));
}

} // namespace

void print_prove_table(const prove::Report& report) {
    using prove::Metric;
    std::size_t label_width = 12;
    for (const auto& c : report.collectors)
        label_width = std::max(label_width, c.label.size());
    const auto row = [&](const std::string& label, const std::vector<std::string>& cells) {
        std::string line = fmt::format("{:<{}}", label, label_width);
        for (std::size_t i = 0; i < cells.size(); ++i) {
            const auto heading = prove::metric_label(prove::all_metrics[i]);
            line += fmt::format("  {:>{}}", cells[i], std::max<std::size_t>(heading.size(), 9));
        }
        fmt::print("{}\n", line);
    };
    std::vector<std::string> headings;
    for (const Metric m : prove::all_metrics)
        headings.emplace_back(prove::metric_label(m));
    const auto& run = report.run;

    fmt::print("conncheck prove: {}, faults {} one per connection every {} ms{}\n\n",
               run.interrupted ? fmt::format("interrupted after {:.1f} s", run.duration_seconds)
                               : fmt::format("{:.0f} s", run.duration_seconds),
               run.faults, run.fault_after_ms,
               run.command.empty() ? "" : fmt::format(", your command: {}", run.command));
    row("", headings);
    for (const auto& c : report.collectors) {
        const prove::Sample last = c.samples.empty() ? prove::Sample{} : c.samples.back();
        row(c.label, {std::to_string(last.established), std::to_string(last.close_wait),
                      std::to_string(last.time_wait), std::to_string(last.total),
                      human_bytes(last.kernel_memory_bytes), std::to_string(c.reconnects)});
    }
    fmt::print("\ngrowth per hour (least-squares slope over the run)\n");
    row("", headings);
    for (const auto& c : report.collectors) {
        std::vector<std::string> cells;
        for (const Metric m : prove::all_metrics) {
            const double g = prove::growth_per_hour(c.samples, m);
            cells.push_back(m == Metric::kernel_memory_bytes ? signed_bytes(g) : signed_count(g));
        }
        row(c.label, cells);
    }
    fmt::print("\nverdict (leaks: ESTABLISHED+CLOSE_WAIT above {} at the end, rising by more than "
               "{:.0f} over the run, with at least {} reconnects)\n",
               report.rule.open_bound, report.rule.min_rise, report.rule.min_reconnects);
    for (const auto& c : report.collectors) {
        const auto j = prove::judge(c.samples, c.reconnects, report.rule);
        fmt::print("{:<{}}  {:<12}  {}\n", c.label, label_width, prove::verdict_name(j.verdict),
                   j.reason);
    }
    std::string scale;
    for (const auto& c : report.collectors)
        scale += fmt::format("{}{} {}", scale.empty() ? "" : ", ", c.label, c.reconnects);
    fmt::print("\nreconnects in {:.0f} s: {} (the incident: about 600 in 15 hours)\n",
               run.duration_seconds, scale);
    if (!run.command.empty())
        fmt::print("your command's reconnects: distinct connections to its simulator, minus one\n");
    fmt::print("{}\n", prove::decide(report).summary);
}

Progress::Progress() : enabled_(::isatty(STDERR_FILENO) == 1) {}

void Progress::show(const std::string& line) {
    if (!enabled_) return;
    const int cols = screen::terminal_size(STDERR_FILENO).cols;
    const std::size_t width = cols > 1 ? static_cast<std::size_t>(cols) : 80;
    fmt::print(stderr, "\r{}{}", ansi::clear_to_end_of_line, line.substr(0, width - 1));
    std::fflush(stderr);
    shown_ = true;
}

void Progress::clear() {
    if (!enabled_ || !shown_) return;
    fmt::print(stderr, "\r{}", ansi::clear_to_end_of_line);
    std::fflush(stderr);
    shown_ = false;
}

} // namespace conncheck::cli
