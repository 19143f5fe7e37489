#include "conncheck/fit.hpp"
#include "conncheck/prove.hpp"
#include "conncheck/prove_output.hpp"
#include "conncheck/prove_sample.hpp"
#include "prove_svg.hpp"
#include "xml_check.hpp"

#include <cmath>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sstream>

using namespace conncheck;
using namespace conncheck::prove;

namespace {

// open(t) = per_second * t, sampled every 0.25 s for `seconds`, reconnects growing alongside.
std::vector<Sample> ramp(double seconds, double per_second, double reconnects_per_second = 10) {
    std::vector<Sample> out;
    for (double t = 0; t <= seconds + 1e-9; t += 0.25) {
        Sample s;
        s.t_seconds = t;
        s.established = static_cast<std::uint64_t>(per_second * t / 4);
        s.close_wait = static_cast<std::uint64_t>(per_second * t) - s.established;
        s.time_wait = 3;
        s.total = s.open() + s.time_wait;
        s.kernel_memory_bytes = s.total * 1000;
        s.reconnects = static_cast<std::uint64_t>(reconnects_per_second * t);
        out.push_back(s);
    }
    return out;
}

// A fixed collector: one connection, sometimes none, sometimes one closing beside the new one.
std::vector<Sample> bounded(double seconds) {
    std::vector<Sample> out;
    int i = 0;
    for (double t = 0; t <= seconds + 1e-9; t += 0.25, ++i) {
        Sample s;
        s.t_seconds = t;
        s.established = i % 3 == 0 ? 0 : 1;
        s.close_wait = i % 7 == 0 ? 1 : 0;
        s.time_wait = static_cast<std::uint64_t>(2 * t); // grows, and does not count
        s.total = s.open() + s.time_wait;
        out.push_back(s);
    }
    return out;
}

Report sample_report(bool with_command) {
    Report r;
    r.run.duration_seconds = 10;
    r.run.fault_after_ms = 50;
    r.run.interval_ms = 250;
    r.run.rate = 200;
    r.run.faults = "silent,fin,close,rst";
    r.run.started_unix = 1'700'000'000;
    CollectorRun leaky{"leaky", "leaky", 100, 4000, ramp(10, 7), 100, "totals", 101, 5000};
    CollectorRun fixed{"fixed", "fixed", 101, 4001, bounded(10), 98, "totals", 99, 4900};
    r.collectors = {leaky, fixed};
    if (with_command) {
        r.run.command = "python3 my<collector>.py \"ws\" & 'x'";
        r.collectors.push_back(
            {"command", "your command", 102, 4002, bounded(10), 20, "cookies", 21, std::nullopt});
    }
    return r;
}

} // namespace

TEST_CASE("least-squares slope") {
    const std::vector<double> x{0, 1, 2, 3, 4};
    CHECK(least_squares_slope(x, std::vector<double>{1, 3, 5, 7, 9}) == doctest::Approx(2.0));
    CHECK(least_squares_slope(x, std::vector<double>{5, 5, 5, 5, 5}) == doctest::Approx(0.0));
    CHECK(least_squares_slope(x, std::vector<double>{9, 7, 5, 3, 1}) == doctest::Approx(-2.0));
    // Noise around y = x: the fit recovers the slope.
    CHECK(least_squares_slope(x, std::vector<double>{0.1, 0.9, 2.1, 2.9, 4.0}) ==
          doctest::Approx(0.97).epsilon(0.01));
    CHECK(least_squares_slope(std::vector<double>{1}, std::vector<double>{5}) == 0.0);
    CHECK(least_squares_slope(std::vector<double>{2, 2, 2}, std::vector<double>{1, 2, 3}) == 0.0);
    CHECK(least_squares_slope({}, {}) == 0.0);
    // Large x offsets (a Unix time) keep their precision.
    const std::vector<double> big{1e9, 1e9 + 1, 1e9 + 2};
    CHECK(least_squares_slope(big, std::vector<double>{0, 1, 2}) == doctest::Approx(1.0));
}

TEST_CASE("growth per hour is the slope times 3600") {
    const auto samples = ramp(10, 4);
    CHECK(open_growth_per_hour(samples) == doctest::Approx(4 * 3600.0).epsilon(0.02));
    CHECK(growth_per_hour(samples, Metric::time_wait) == doctest::Approx(0.0));
    CHECK(growth_per_hour(samples, Metric::reconnects) == doctest::Approx(36000.0).epsilon(0.02));
    CHECK(growth_per_hour({}, Metric::total) == 0.0);
}

TEST_CASE("verdict rule") {
    const VerdictRule rule;
    SUBCASE("growing with reconnects: leaks") {
        const Judgement j = judge(ramp(10, 7), 100, rule);
        CHECK(j.verdict == Verdict::leaks);
        CHECK(j.open_final == 70);
        CHECK(j.open_rise == doctest::Approx(70).epsilon(0.05));
        CHECK(j.reason.find("rose") != std::string::npos);
    }
    SUBCASE("bounded with reconnects and growing TIME_WAIT: no leak") {
        const Judgement j = judge(bounded(10), 100, rule);
        CHECK(j.verdict == Verdict::no_leak);
        CHECK(j.open_final <= rule.open_bound);
    }
    SUBCASE("a steady pool above the bound is not a leak") {
        auto samples = bounded(10);
        for (auto& s : samples)
            s.established = 10;
        samples.front().established = 0; // the pool opens after the first sample
        CHECK(judge(samples, 50, rule).verdict == Verdict::no_leak);
    }
    SUBCASE("too few reconnects: inconclusive, even while growing") {
        CHECK(judge(ramp(10, 7), 2, rule).verdict == Verdict::inconclusive);
        CHECK(judge(bounded(10), 0, rule).verdict == Verdict::inconclusive);
        CHECK(judge({}, 0, rule).verdict == Verdict::inconclusive);
    }
    SUBCASE("edges of the bound") {
        // Rises to exactly the bound: no leak. One more: leak.
        std::vector<Sample> samples;
        for (int i = 0; i <= 40; ++i) {
            Sample s;
            s.t_seconds = i * 0.25;
            s.established = static_cast<std::uint64_t>(i / 14); // 0, 1, 2
            samples.push_back(s);
        }
        CHECK(judge(samples, 10, rule).verdict == Verdict::no_leak);
        for (auto& s : samples)
            s.close_wait = s.established; // 0, 2, 4
        CHECK(judge(samples, 10, rule).verdict == Verdict::leaks);
    }
}

TEST_CASE("outcome") {
    SUBCASE("the demonstration held") {
        const Outcome o = decide(sample_report(false));
        CHECK(o.ok);
        CHECK(o.summary.find("held") != std::string::npos);
    }
    SUBCASE("fixed leaking breaks the demonstration") {
        Report r = sample_report(false);
        r.collectors[1].samples = ramp(10, 3);
        CHECK_FALSE(decide(r).ok);
    }
    SUBCASE("a command decides alone") {
        Report r = sample_report(true);
        CHECK(decide(r).ok);
        r.collectors[2].samples = ramp(10, 1);
        CHECK_FALSE(decide(r).ok);
        r.collectors[2].samples = bounded(10);
        r.collectors[2].reconnects = 1;
        CHECK_FALSE(decide(r).ok); // inconclusive is not a pass
    }
    SUBCASE("interrupted proves nothing") {
        Report r = sample_report(false);
        r.run.interrupted = true;
        CHECK_FALSE(decide(r).ok);
    }
}

TEST_CASE("CSV time series") {
    const Report r = sample_report(true);
    std::ostringstream out;
    write_csv(out, r);
    std::istringstream in(out.str());
    std::string line;
    std::getline(in, line);
    CHECK(line == "t_seconds,collector,established,close_wait,time_wait,total,kernel_memory_bytes,"
                  "reconnects");
    std::size_t rows = 0;
    std::string first;
    while (std::getline(in, line)) {
        if (rows == 0) first = line;
        ++rows;
        CHECK(std::count(line.begin(), line.end(), ',') == 7);
    }
    CHECK(rows == r.collectors[0].samples.size() * 3);
    CHECK(first == "0.000,leaky,0,0,3,3,3000,0");
}

TEST_CASE("SVG is well-formed and escapes text") {
    const Report r = sample_report(true);
    std::ostringstream out;
    cli::write_svg(out, r);
    const std::string svg = out.str();
    CHECK(xmlcheck::problem(svg).empty());
    CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
    CHECK(svg.find("<polyline") != std::string::npos);
    CHECK(svg.find("your command: no leak") != std::string::npos);
    CHECK(svg.find("leaky: leaks") != std::string::npos);

    Report hostile = r;
    hostile.collectors[2].label = "<script>&\"'";
    hostile.run.faults = "a<b";
    std::ostringstream out2;
    cli::write_svg(out2, hostile);
    CHECK(xmlcheck::problem(out2.str()).empty());
    CHECK(out2.str().find("&lt;script&gt;&amp;&quot;&apos;") != std::string::npos);

    std::ostringstream empty;
    cli::write_svg(empty, Report{});
    CHECK(xmlcheck::problem(empty.str()).empty());
}

TEST_CASE("the XML check rejects what is not well-formed") {
    CHECK_FALSE(xmlcheck::problem("<a><b></a></b>").empty());
    CHECK_FALSE(xmlcheck::problem("<a x=1/>").empty());
    CHECK_FALSE(xmlcheck::problem("<a>&nbsp;</a>").empty());
    CHECK_FALSE(xmlcheck::problem("<a>1 < 2</a>").empty());
    CHECK_FALSE(xmlcheck::problem("<a/><b/>").empty());
    CHECK_FALSE(xmlcheck::problem("<a x=\"1\" x=\"2\"/>").empty());
    CHECK_FALSE(xmlcheck::problem("<a>").empty());
    CHECK(xmlcheck::problem("<?xml version=\"1.0\"?>\n<a x='1'><b/>t &amp; &#60;</a>\n").empty());
}

TEST_CASE("JSON report") {
    const nlohmann::json j = to_json(sample_report(true));
    CHECK(j["ok"] == true);
    REQUIRE(j["collectors"].size() == 3);
    CHECK(j["collectors"][0]["key"] == "leaky");
    CHECK(j["collectors"][0]["verdict"] == "leaks");
    CHECK(j["collectors"][1]["verdict"] == "no leak");
    CHECK(j["collectors"][2]["messages"].is_null());
    CHECK(j["collectors"][0]["final"]["established"] == 17);
    CHECK(j["collectors"][0]["final"]["reconnects"] == 100);
    CHECK(j["collectors"][0]["growth_per_hour"]["open"].get<double>() > 0);
    CHECK(j["collectors"][0]["series"]["samples"] == 41);
    CHECK(j["run"]["started"] == "2023-11-14T22:13:20Z");
    CHECK(j["rule"]["open_bound"] == 2);
    // Round trip through text.
    CHECK(nlohmann::json::parse(j.dump())["summary"] == j["summary"]);
}

TEST_CASE("xml_escape") {
    CHECK(cli::xml_escape("a<b>&\"'c") == "a&lt;b&gt;&amp;&quot;&apos;c");
    CHECK(cli::xml_escape("") == "");
}

TEST_CASE("merging the snapshots of a process tree counts shared sockets once") {
    const auto socket = [](TcpState state, std::uint64_t cookie, std::uint64_t inode) {
        SocketRecord s;
        s.state = state;
        s.cookie = cookie;
        s.inode = inode;
        s.remote.family = AF_INET;
        s.remote.port = 4000;
        return s;
    };
    scan::ProcessSnapshot parent;
    parent.info.pid = 10;
    parent.sockets = {socket(TcpState::established, 1, 101), socket(TcpState::close_wait, 2, 102),
                      socket(TcpState::time_wait, 3, 0)};
    parent.time_wait_by_peer = {socket(TcpState::time_wait, 7, 0)};
    scan::ProcessSnapshot child; // inherited fd 101 across fork
    child.info.pid = 11;
    child.sockets = {socket(TcpState::established, 1, 101), socket(TcpState::established, 4, 104)};
    child.time_wait_by_peer = {socket(TcpState::time_wait, 7, 0), socket(TcpState::time_wait, 3, 0),
                               socket(TcpState::time_wait, 8, 0)};
    const auto merged = merge_snapshots({&parent, &child});
    CHECK(merged.info.pid == 10);
    CHECK(merged.sockets.size() == 4);
    CHECK(merged.time_wait_exact == 1);
    CHECK(merged.time_wait_by_peer.size() == 2); // 7 once, 3 already exact, 8
    CHECK(merge_snapshots({}).sockets.empty());
}

TEST_CASE("a sample from a process report") {
    analysis::ProcessReport r;
    r.states[TcpState::established] = 5;
    r.states[TcpState::close_wait] = 3;
    r.states[TcpState::time_wait] = 2;
    r.states[TcpState::close] = 1;
    r.kernel_memory_bytes = 4096;
    const Sample s = sample_from(r);
    CHECK(s.established == 5);
    CHECK(s.close_wait == 3);
    CHECK(s.time_wait == 2);
    CHECK(s.total == 11);
    CHECK(s.open() == 8);
    CHECK(s.kernel_memory_bytes == 4096);
}

TEST_CASE("TIME_WAIT toward a collector's own simulator port is the collector's") {
    const auto tw = [](std::uint64_t cookie, std::uint8_t family, std::uint8_t first,
                       std::uint16_t port) {
        SocketRecord s;
        s.state = TcpState::time_wait;
        s.cookie = cookie;
        s.remote.family = family;
        s.remote.port = port;
        if (family == AF_INET) {
            s.remote.addr[0] = first;
        } else {
            s.remote.addr[10] = 0xff;
            s.remote.addr[11] = 0xff;
            s.remote.addr[12] = first;
        }
        return s;
    };
    scan::ProcessSnapshot snap;
    snap.sockets = {tw(1, AF_INET, 127, 4000)};           // exact, by cookie
    snap.time_wait_by_peer = {tw(2, AF_INET, 127, 4000)}; // by peer
    const std::vector<SocketRecord> dump{
        tw(1, AF_INET, 127, 4000),  tw(2, AF_INET, 127, 4000), // already counted
        tw(3, AF_INET, 127, 4000),                             // new
        tw(4, AF_INET6, 127, 4000),                            // new, dual-stack socket
        tw(5, AF_INET, 127, 4001),                             // another collector's simulator
        tw(6, AF_INET, 10, 4000),                              // not loopback
        tw(0, AF_INET, 127, 4000),                             // no cookie: cannot be deduplicated
    };
    add_time_wait_toward(snap, dump, 4000);
    REQUIRE(snap.time_wait_by_peer.size() == 3);
    CHECK(snap.time_wait_by_peer[1].cookie == 3);
    CHECK(snap.time_wait_by_peer[2].cookie == 4);
    add_time_wait_toward(snap, dump, 4000); // idempotent
    CHECK(snap.time_wait_by_peer.size() == 3);
}

TEST_CASE("real growth: a significant slope that rises beyond the series' own scatter") {
    std::vector<double> x;
    std::vector<double> bounded; // a healthy server's keep-alive pool swinging between 10 and 15
    std::vector<double> leak;    // the same swing on top of a leak of one socket per 10 samples
    std::vector<double> line;
    for (int i = 0; i < 600; ++i) {
        x.push_back(i);
        const double swing = 10 + (i * 7 % 13) * 5.0 / 12.0 + (i % 97 > 60 ? 1 : 0);
        bounded.push_back(std::min(15.0, swing));
        leak.push_back(std::min(15.0, swing) + i / 10);
        line.push_back(3 + 0.5 * i);
    }
    CHECK_FALSE(real_growth(fit_line(x, bounded)));
    CHECK(real_growth(fit_line(x, leak)));
    CHECK(real_growth(fit_line(x, line)));
    // A short stretch of the swing has a rising fit, but its rise (2.3) stays inside the band
    // the values scatter in around it (4.3), and its slope is 1.3 standard errors from zero.
    const std::vector<double> hx{0, 1, 2, 3, 4, 5, 6, 7};
    const std::vector<double> half{10, 13, 11, 14, 12, 15, 11, 14};
    CHECK(fit_line(hx, half).slope > 0);
    CHECK_FALSE(real_growth(fit_line(hx, half)));
    // Two points say nothing about noise.
    CHECK_FALSE(real_growth(fit_line(std::vector<double>{0, 1}, std::vector<double>{1, 2})));
    const auto fit = fit_line(hx, std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8});
    CHECK(fit.slope == doctest::Approx(1));
    CHECK(fit.span == doctest::Approx(7));
    CHECK(fit.residual_range == doctest::Approx(0).epsilon(1e-9));
}
