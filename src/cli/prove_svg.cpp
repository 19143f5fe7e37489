// Written by hand: a few polylines and text elements, every text through xml_escape.
#include "prove_svg.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/core.h>
#include <iterator>

namespace conncheck::cli {

namespace {

using prove::Metric;

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

struct ChartLine {
    Metric metric;
    const char* colour;
};
constexpr ChartLine chart_lines[] = {
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
constexpr double plot_width = width - left - right;

// The scales every panel shares.
struct Scale {
    double x_max = 1;
    double x_step = 1;
    double y_top = 4;
    double y_step = 1;
};

Scale shared_scale(const prove::Report& report) {
    double x_max = report.run.duration_seconds;
    double y_max = 0;
    for (const auto& c : report.collectors)
        for (const auto& s : c.samples) {
            x_max = std::max(x_max, s.t_seconds);
            for (const auto& line : chart_lines)
                y_max = std::max(y_max, prove::metric_value(s, line.metric));
        }
    if (x_max <= 0) x_max = 1;
    Scale scale;
    scale.x_max = x_max;
    scale.y_step = nice_step(std::max(y_max, 4.0), 5);
    scale.y_top = std::ceil(std::max(y_max, 4.0) / scale.y_step) * scale.y_step;
    scale.x_step = nice_step(x_max, 10);
    return scale;
}

void write_heading(std::ostream& out, const prove::Report& report, double height) {
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
}

// One collector's panel, its top at y0.
class Panel {
public:
    Panel(std::ostream& out, const Scale& scale, double y0)
        : out_(out), scale_(scale), y0_(y0), y1_(y0 + panel_height) {}

    [[nodiscard]] double sx(double t) const { return left + t / scale_.x_max * plot_width; }
    [[nodiscard]] double sy(double v) const { return y1_ - v / scale_.y_top * panel_height; }

    void axes() const {
        for (double v = 0; v <= scale_.y_top + scale_.y_step / 2; v += scale_.y_step) {
            out_ << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                                "stroke=\"#ddd\"/>\n",
                                left, sy(v), left + plot_width, sy(v));
            out_ << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                                left - 6, sy(v) + 4, number_label(v));
        }
        for (double t = 0; t <= scale_.x_max + scale_.x_step / 2; t += scale_.x_step) {
            out_ << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                                "stroke=\"#333\"/>\n",
                                sx(t), y1_, sx(t), y1_ + 4);
            out_ << fmt::format(
                "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", sx(t),
                y1_ + 17, number_label(t));
        }
        out_ << fmt::format("<path d=\"M {:.1f} {:.1f} V {:.1f} H {:.1f}\" fill=\"none\" "
                            "stroke=\"#333\"/>\n",
                            left, y0_, y1_, left + plot_width);
        out_ << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">seconds since "
                            "start</text>\n",
                            left + plot_width / 2, y1_ + 34);
        out_ << fmt::format("<text transform=\"translate({:.1f} {:.1f}) rotate(-90)\" "
                            "text-anchor=\"middle\">sockets</text>\n",
                            left - 48, (y0_ + y1_) / 2);
    }

    // The line of one state and its legend entry, the k-th.
    void series(const prove::CollectorRun& c, const ChartLine& line, std::size_t k) const {
        if (!c.samples.empty()) {
            std::string points;
            for (const auto& s : c.samples)
                points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", sx(s.t_seconds),
                                      sy(prove::metric_value(s, line.metric)));
            out_ << fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" "
                                "stroke-width=\"2\"/>\n",
                                points, line.colour);
        }
        const double ly = y0_ + 14 + static_cast<double>(k) * 18;
        const double lx = left + plot_width + 16;
        const std::uint64_t last =
            c.samples.empty()
                ? 0
                : static_cast<std::uint64_t>(prove::metric_value(c.samples.back(), line.metric));
        out_ << fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" "
                            "stroke=\"{}\" stroke-width=\"2\"/>\n",
                            lx, ly - 4, lx + 18, ly - 4, line.colour);
        out_ << fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{} {}</text>\n", lx + 24, ly,
                            prove::metric_label(line.metric), last);
    }

private:
    std::ostream& out_;
    const Scale& scale_;
    double y0_;
    double y1_;
};

} // namespace

void write_svg(std::ostream& out, const prove::Report& report) {
    const std::size_t panels = std::max<std::size_t>(report.collectors.size(), 1);
    const double height = top + static_cast<double>(panels) * (panel_height + panel_gap);
    const Scale scale = shared_scale(report);
    write_heading(out, report, height);
    for (std::size_t p = 0; p < report.collectors.size(); ++p) {
        const auto& c = report.collectors[p];
        const double y0 = top + static_cast<double>(p) * (panel_height + panel_gap) + 20;
        const prove::Judgement j = prove::judge(c.samples, c.reconnects, report.rule);
        out << fmt::format("<g id=\"{}\">\n", xml_escape(c.key));
        out << fmt::format("<text x=\"{:.0f}\" y=\"{:.1f}\" font-size=\"14\" "
                           "font-weight=\"bold\">{}</text>\n",
                           left, y0 - 8,
                           xml_escape(fmt::format("{}: {} ({} reconnects)", c.label,
                                                  prove::verdict_name(j.verdict), c.reconnects)));
        const Panel panel(out, scale, y0);
        panel.axes();
        for (std::size_t k = 0; k < std::size(chart_lines); ++k)
            panel.series(c, chart_lines[k], k);
        out << "</g>\n";
    }
    out << "</svg>\n";
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

} // namespace conncheck::cli
