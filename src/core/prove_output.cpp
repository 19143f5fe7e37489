// The CSV and JSON forms of a prove run.
#include "conncheck/prove_output.hpp"

#include "conncheck/text.hpp"

#include <algorithm>
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
    j["simulator_pids"] = report.simulator_pids;
    j["left_behind"] = report.left_behind;
    return j;
}

} // namespace conncheck::prove
