// The CSV, SVG and JSON forms of a prove run. The SVG is written by hand: a few polylines and
// text elements, every text through xml_escape.
#include "conncheck/prove_output.hpp"
#include "conncheck/text.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace conncheck::prove {

void write_csv(std::ostream& out, const Report& report) {
    out << "t_seconds,collector,established,close_wait,time_wait,total,kernel_memory_bytes,"
           "reconnects\n";
    for (const auto& c : report.collectors)
        for (const auto& s : c.samples)
            out << fmt::format("{:.3f},{},{},{},{},{},{},{}\n", s.t_seconds, c.key, s.established,
                               s.close_wait, s.time_wait, s.total, s.kernel_memory_bytes,
                               s.reconnects);
}

namespace {

// A tick step of 1, 2 or 5 times a power of ten giving at most `max_ticks` intervals.
double nice_step(double range, int max_ticks) {
    if (range <= 0) return 1;
    const double raw = range / max_ticks;
    const double power = std::pow(10.0, std::floor(std::log10(raw)));
    for (const double m : {1.0, 2.0, 5.0, 10.0})
        if (m * power >= raw) return m * power;
    return 10 * power;
}

std::string number_label(double v) {
    if (std::fabs(v - std::round(v)) < 1e-9) return fmt::format("{:.0f}", v);
    return fmt::format("{:g}", v);
}

struct Line {
    Metric metric;
    const char* colour;
};
constexpr Line chart_lines[] = {
    {Metric::established, "#d62728"},
    {Metric::close_wait, "#ff7f0e"},
    {Metric::time_wait, "#1f77b4"},
};

constexpr double width = 900;
constexpr double left = 80;
constexpr double right = 170; // room for the legend
constexpr double top = 70;
constexpr double panel_height = 200;
constexpr double panel_gap = 80;

} // namespace

void write_svg(std::ostream& out, const Report& report) {
    const std::size_t panels = std::max<std::size_t>(report.collectors.size(), 1);
    const double height = top + static_cast<double>(panels) * (panel_height + panel_gap);
    const double plot_width = width - left - right;

    double x_max = report.run.duration_seconds;
    double y_max = 0;
    for (const auto& c : report.collectors)
        for (const auto& s : c.samples) {
            x_max = std::max(x_max, s.t_seconds);
            for (const auto& line : chart_lines)
                y_max = std::max(y_max, metric_value(s, line.metric));
        }
    if (x_max <= 0) x_max = 1;
    const double y_step = nice_step(std::max(y_max, 4.0), 5);
    const double y_top = std::ceil(std::max(y_max, 4.0) / y_step) * y_step;
    const double x_step = nice_step(x_max, 10);

    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out << fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{:.0f}\" "
                       "height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
                       "font-family=\"sans-serif\" font-size=\"12\">\n",
                       width, height, width, height);
    out << fmt::format("<rect x=\"0\" y=\"0\" width=\"{:.0f}\" height=\"{:.0f}\" "
                       "fill=\"white\"/>\n",
                       width, height);
    out << fmt::format(
        "<text x=\"{:.0f}\" y=\"28\" font-size=\"16\" font-weight=\"bold\">{}</text>\n", left,
        xml_escape(fmt::format("conncheck prove: {:.0f} s, faults {} every {} ms",
                               report.run.duration_seconds, report.run.faults,
                               report.run.fault_after_ms)));
    out << fmt::format("<text x=\"{:.0f}\" y=\"48\" fill=\"#555\">{}</text>\n", left,
                       xml_escape(fmt::format("sockets held by each collector, sampled every "
                                              "{} ms; all panels share the y scale",
                                              report.run.interval_ms)));

    for (std::size_t p = 0; p < report.collectors.size(); ++p) {
        const auto& c = report.collectors[p];
        const double y0 = top + static_cast<double>(p) * (panel_height + panel_gap) + 20;
        const double y1 = y0 + panel_height;
        const auto sx = [&](double t) { return left + t / x_max * plot_width; };
        const auto sy = [&](double v) { return y1 - v / y_top * panel_height; };
        const Judgement j = judge(c.samples, c.reconnects, report.rule);

        out << fmt::format("<g id=\"{}\">\n", xml_escape(c.key));
        out << fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" font-size=\"14\" "
                           "font-weight=\"bold\">{}</text>\n",
                           left, y0 - 8,
                           xml_escape(fmt::format("{}: {} ({} reconnects)", c.label,
                                                  verdict_name(j.verdict), c.reconnects)));
        for (double v = 0; v <= y_top + y_step / 2; v += y_step) {
            out << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                               "stroke=\"#ddd\"/>\n",
                               left, sy(v), left + plot_width, sy(v));
            out << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                               left - 6, sy(v) + 4, number_label(v));
        }
        for (double t = 0; t <= x_max + x_step / 2; t += x_step) {
            out << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                               "stroke=\"#333\"/>\n",
                               sx(t), y1, sx(t), y1 + 4);
            out << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                               sx(t), y1 + 17, number_label(t));
        }
        out << fmt::format("<path d=\"M {:.1f} {:.1f} V {:.1f} H {:.1f}\" fill=\"none\" "
                           "stroke=\"#333\"/>\n",
                           left, y0, y1, left + plot_width);
        out << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">seconds since "
                           "start</text>\n",
                           left + plot_width / 2, y1 + 34);
        out << fmt::format("<text transform=\"translate({:.1f} {:.1f}) rotate(-90)\" "
                           "text-anchor=\"middle\">sockets</text>\n",
                           left - 48, (y0 + y1) / 2);

        for (std::size_t k = 0; k < std::size(chart_lines); ++k) {
            const auto& line = chart_lines[k];
            if (!c.samples.empty()) {
                std::string points;
                for (const auto& s : c.samples)
                    points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ",
                                          sx(s.t_seconds), sy(metric_value(s, line.metric)));
                out << fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" "
                                   "stroke-width=\"2\"/>\n",
                                   points, line.colour);
            }
            const double ly = y0 + 14 + static_cast<double>(k) * 18;
            const double lx = left + plot_width + 16;
            const std::uint64_t last =
                c.samples.empty()
                    ? 0
                    : static_cast<std::uint64_t>(metric_value(c.samples.back(), line.metric));
            out << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                               "stroke=\"{}\" stroke-width=\"2\"/>\n",
                               lx, ly - 4, lx + 18, ly - 4, line.colour);
            out << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{} {}</text>\n", lx + 24, ly,
                               metric_label(line.metric), last);
        }
        out << "</g>\n";
    }
    out << "</svg>\n";
}

nlohmann::json to_json(const Report& report) {
    using nlohmann::json;
    const auto& run = report.run;
    json j;
    j["run"] = {
        {"duration_seconds", run.duration_seconds},
        {"fault_after_ms", run.fault_after_ms},
        {"interval_ms", run.interval_ms},
        {"rate", run.rate},
        {"faults", run.faults},
        {"command", run.command.empty() ? json(nullptr) : json(run.command)},
        {"started", text::iso8601_utc(run.started_unix)},
        {"interrupted", run.interrupted},
    };
    j["rule"] = {
        {"min_reconnects", report.rule.min_reconnects},
        {"open_bound", report.rule.open_bound},
        {"min_rise", report.rule.min_rise},
    };
    json collectors = json::array();
    for (const auto& c : report.collectors) {
        const Judgement v = judge(c.samples, c.reconnects, report.rule);
        json final_counts = json::object();
        json growth = json::object();
        json max = json::object();
        for (const Metric m : all_metrics) {
            const auto name = std::string(metric_name(m));
            std::uint64_t last = 0;
            std::uint64_t highest = 0;
            for (const auto& s : c.samples)
                highest = std::max(highest, static_cast<std::uint64_t>(metric_value(s, m)));
            if (!c.samples.empty())
                last = static_cast<std::uint64_t>(metric_value(c.samples.back(), m));
            if (m == Metric::reconnects) last = c.reconnects;
            final_counts[name] = last;
            growth[name] = growth_per_hour(c.samples, m);
            max[name] = highest;
        }
        growth["open"] = v.open_per_hour;
        json item = {
            {"key", c.key},
            {"label", c.label},
            {"pid", c.pid},
            {"port", c.port},
            {"final", final_counts},
            {"growth_per_hour", growth},
            {"verdict", verdict_name(v.verdict)},
            {"reason", v.reason},
            {"open_final", v.open_final},
            {"open_rise", v.open_rise},
            {"reconnects", c.reconnects},
            {"reconnects_source", c.reconnects_source},
            {"connections_seen", c.connections_seen},
            {"messages", c.messages ? json(*c.messages) : json(nullptr)},
            {"series",
             {{"samples", c.samples.size()},
              {"first_t_seconds", c.samples.empty() ? 0.0 : c.samples.front().t_seconds},
              {"last_t_seconds", c.samples.empty() ? 0.0 : c.samples.back().t_seconds},
              {"max", max}}},
        };
        collectors.push_back(std::move(item));
    }
    j["collectors"] = std::move(collectors);
    const Outcome o = decide(report);
    j["ok"] = o.ok;
    j["summary"] = o.summary;
    return j;
}

std::string xml_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\'':
            out += "&apos;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

} // namespace conncheck::prove
