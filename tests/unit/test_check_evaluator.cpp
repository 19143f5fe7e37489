// The check's judgement on hand-built reports and state files: thresholds, growth over the
// history, restarts told apart from leaks by pid + start time, and the state the next run reads.
#include "conncheck/check/evaluator.hpp"

#include <algorithm>
#include <doctest/doctest.h>
#include <string>

using namespace conncheck;
using namespace conncheck::check;

namespace {

constexpr std::int64_t minute_ms = 60'000;
constexpr std::int64_t now = 1'800'000'000'000; // Unix ms

Observed observed(pid_t pid, std::uint64_t start_ticks, std::uint64_t established,
                  std::uint64_t close_wait, std::string comm = "collector") {
    Observed o;
    auto& r = o.report;
    r.info.pid = pid;
    r.info.start_ticks = start_ticks;
    r.info.comm = std::move(comm);
    r.info.open_fds = 40;
    r.info.fd_limit.soft = 1024;
    r.states[TcpState::established] = established;
    r.states[TcpState::close_wait] = close_wait;
    r.states[TcpState::time_wait] = 2;
    r.stale = 1;
    o.cookies = {static_cast<std::uint64_t>(pid) * 10 + 1,
                 static_cast<std::uint64_t>(pid) * 10 + 2};
    return o;
}

statefile::ProcessState seen(pid_t pid, std::uint64_t start_ticks, std::int64_t taken_at_ms,
                             std::uint64_t established, std::uint64_t close_wait,
                             std::string comm = "collector") {
    statefile::ProcessState p;
    p.pid = pid;
    p.start_ticks = start_ticks;
    p.comm = std::move(comm);
    p.states[TcpState::established] = established;
    p.states[TcpState::close_wait] = close_wait;
    p.stale = 0;
    p.fds = 30;
    p.cookies = {7, 8, 9};
    p.history.push_back(statefile::HistoryEntry{taken_at_ms, established, close_wait, 0, 30});
    return p;
}

statefile::State state_of(std::vector<statefile::ProcessState> processes,
                          std::int64_t taken_at_ms) {
    statefile::State s;
    s.selector = "name-collector";
    s.taken_at_ms = taken_at_ms;
    s.processes = std::move(processes);
    return s;
}

Thresholds defaults() {
    Thresholds t;
    t.close_wait_warning = thresholds::parse_range("0");
    t.close_wait_critical = thresholds::parse_range("10");
    return t;
}

const Run run{"name-collector", now};

const Perfdata* perf(const ProcessVerdict& v, std::string_view label) {
    const auto it = std::find_if(v.perfdata.begin(), v.perfdata.end(),
                                 [&](const Perfdata& p) { return p.label == label; });
    return it == v.perfdata.end() ? nullptr : &*it;
}

} // namespace

TEST_CASE("first run: counts against the thresholds, perfdata, and the state to keep") {
    const auto v = evaluate({observed(4242, 77, 3, 0)}, std::nullopt, defaults(), run);
    CHECK(v.status == Status::ok);
    REQUIRE(v.processes.size() == 1);
    const auto& p = v.processes[0];
    CHECK(p.close_wait == Status::ok);
    CHECK(p.growth.basis == GrowthBasis::first_run);
    CHECK_FALSE(p.replaced_pid.has_value());
    REQUIRE(p.perfdata.size() == 8);
    CHECK(p.perfdata[0].label == "close_wait");
    CHECK(p.perfdata[0].warn == "0");
    CHECK(p.perfdata[0].crit == "10");
    CHECK(p.perfdata[0].min == 0.0);
    CHECK(p.perfdata[1].label == "established");
    CHECK(p.perfdata[1].value == 3);
    CHECK(p.perfdata[2].label == "time_wait");
    CHECK(p.perfdata[3].label == "stale");
    CHECK(p.perfdata[4].label == "other_sockets");
    CHECK(p.perfdata[4].min == 0.0);
    CHECK(p.perfdata[5].label == "held_after_close");
    CHECK(p.perfdata[6].label == "leaked");
    CHECK(p.perfdata[7].label == "fds");
    CHECK(p.perfdata[7].max == 1024.0);

    CHECK(v.next.selector == "name-collector");
    CHECK(v.next.taken_at_ms == now);
    REQUIRE(v.next.processes.size() == 1);
    const auto& next = v.next.processes[0];
    CHECK(next.pid == 4242);
    CHECK(next.start_ticks == 77);
    CHECK(next.cookies == std::vector<std::uint64_t>{42421, 42422});
    REQUIRE(next.history.size() == 1);
    CHECK(next.history[0].taken_at_ms == now);
    CHECK(next.history[0].established == 3);
    CHECK(v.gone.empty());
}

TEST_CASE("CLOSE_WAIT beyond -w warns, beyond -c is critical; ESTABLISHED and stale ranges too") {
    auto t = defaults();
    CHECK(evaluate({observed(1, 1, 0, 3)}, std::nullopt, t, run).status == Status::warning);
    const auto crit = evaluate({observed(1, 1, 0, 11)}, std::nullopt, t, run);
    CHECK(crit.status == Status::critical);
    CHECK(crit.processes[0].close_wait == Status::critical);
    t.established_critical = thresholds::parse_range("@3:5");
    const auto est = evaluate({observed(1, 1, 4, 0)}, std::nullopt, t, run);
    CHECK(est.status == Status::critical);
    CHECK(est.processes[0].established == Status::critical);
    CHECK(est.processes[0].perfdata[1].crit == "@3:5");
    t = defaults();
    t.stale_warning = thresholds::parse_range("0");
    const auto stale = evaluate({observed(1, 1, 0, 0)}, std::nullopt, t, run);
    CHECK(stale.status == Status::warning);
    CHECK(stale.processes[0].stale == Status::warning);
}

TEST_CASE("growth over the history of the same instance, rated once 10 minutes apart") {
    auto t = defaults();
    t.growth_warning = thresholds::parse_growth("5/h");
    t.growth_critical = thresholds::parse_growth("20/h");
    const auto previous = state_of({seen(4242, 77, now - 30 * minute_ms, 10, 0)}, now - minute_ms);

    const auto v = evaluate({observed(4242, 77, 16, 0)}, previous, t, run);
    const auto& g = v.processes[0].growth;
    CHECK(g.basis == GrowthBasis::measured);
    CHECK(g.rated);
    CHECK(g.span_ms == 30 * minute_ms);
    CHECK(g.since_ms == now - 30 * minute_ms);
    CHECK(g.established.delta == 6);
    CHECK(g.established.per_hour == doctest::Approx(12));
    CHECK(g.established.status == Status::warning);
    CHECK(g.close_wait.delta == 0);
    CHECK(g.close_wait.status == Status::ok);
    CHECK(g.stale_delta == 1);
    CHECK(g.fds_delta == 10);
    CHECK(v.status == Status::warning);
    const auto* growth = perf(v.processes[0], "established_growth");
    REQUIRE(growth != nullptr);
    CHECK(growth->value == doctest::Approx(12));
    CHECK(growth->warn == "~:5");
    CHECK(growth->crit == "~:20");
    CHECK(perf(v.processes[0], "close_wait_growth") != nullptr);
    // The history goes on: the old sample and this one.
    REQUIRE(v.next.processes[0].history.size() == 2);
    CHECK(v.next.processes[0].history[1].established == 16);

    const auto faster = evaluate({observed(4242, 77, 30, 0)}, previous, t, run);
    CHECK(faster.processes[0].growth.established.status == Status::critical);
    CHECK(faster.status == Status::critical);
}

TEST_CASE("growth over less than 10 minutes is shown but neither rated nor alerted on") {
    auto t = defaults();
    t.growth_warning = thresholds::parse_growth("1/h");
    const auto previous = state_of({seen(4242, 77, now - 5 * minute_ms, 0, 0)}, now - minute_ms);
    const auto v = evaluate({observed(4242, 77, 50, 0)}, previous, t, run);
    const auto& g = v.processes[0].growth;
    CHECK(g.basis == GrowthBasis::measured);
    CHECK_FALSE(g.rated);
    CHECK(g.established.delta == 50);
    CHECK(g.established.status == Status::ok);
    CHECK(v.status == Status::ok);
    CHECK(perf(v.processes[0], "established_growth") == nullptr);
}

TEST_CASE("a clock that moved back measures nothing; an instance without history neither") {
    const auto ahead = state_of({seen(4242, 77, now + minute_ms, 0, 0)}, now + minute_ms);
    CHECK(evaluate({observed(4242, 77, 1, 0)}, ahead, defaults(), run).processes[0].growth.basis ==
          GrowthBasis::clock_moved_back);
    auto empty = seen(4242, 77, now, 0, 0);
    empty.history.clear();
    CHECK(evaluate({observed(4242, 77, 1, 0)}, state_of({empty}, now - minute_ms), defaults(), run)
              .processes[0]
              .growth.basis == GrowthBasis::no_history);
}

TEST_CASE("a restart is a new instance: same pid with another start time, or another pid") {
    auto t = defaults();
    t.growth_warning = thresholds::parse_growth("1/h");
    const auto previous = state_of({seen(4242, 77, now - 30 * minute_ms, 0, 0)}, now - minute_ms);

    // The kernel reused the pid: another start time is another process.
    const auto reused = evaluate({observed(4242, 99, 50, 0)}, previous, t, run);
    REQUIRE(reused.processes[0].replaced_pid.has_value());
    CHECK(*reused.processes[0].replaced_pid == 4242);
    CHECK(reused.processes[0].growth.basis == GrowthBasis::restarted);
    CHECK(reused.status == Status::ok); // 50 new connections are a fresh pool, not growth
    CHECK(reused.next.processes[0].history.size() == 1);
    CHECK(reused.gone.empty());

    // One process on each side: a restart even when exec changed the name.
    const auto renamed = evaluate({observed(5000, 1, 50, 0, "collector-v2")}, previous, t, run);
    REQUIRE(renamed.processes[0].replaced_pid.has_value());
    CHECK(*renamed.processes[0].replaced_pid == 4242);
    CHECK(renamed.gone.empty());
}

TEST_CASE("several processes: labels carry the name, restarts match by name, the rest is gone") {
    const auto previous = state_of({seen(100, 1, now - 30 * minute_ms, 5, 0, "worker"),
                                    seen(200, 1, now - 30 * minute_ms, 5, 0, "worker"),
                                    seen(300, 1, now - 30 * minute_ms, 5, 0, "other")},
                                   now - minute_ms);
    const auto v = evaluate({observed(100, 1, 5, 0, "worker"), observed(201, 1, 5, 1, "worker")},
                            previous, defaults(), run);
    REQUIRE(v.processes.size() == 2);
    CHECK(v.processes[0].growth.basis == GrowthBasis::measured);
    CHECK(v.processes[0].perfdata[0].label == "close_wait_worker");
    REQUIRE(v.processes[1].replaced_pid.has_value());
    CHECK(*v.processes[1].replaced_pid == 200);
    // The restarted worker keeps the label of the one it replaced: its graph goes on.
    CHECK(v.processes[1].perfdata[0].label == "close_wait_worker_2");
    CHECK(v.processes[1].status == Status::warning);
    CHECK(v.status == Status::warning);
    REQUIRE(v.gone.size() == 1);
    CHECK(v.gone[0].pid == 300);
    CHECK(v.gone[0].comm == "other");

    // No earlier instance left for a newcomer: a new process.
    const auto added = evaluate({observed(100, 1, 5, 0, "worker"), observed(200, 1, 5, 0, "worker"),
                                 observed(300, 1, 5, 0, "other"), observed(400, 1, 0, 0, "new")},
                                previous, defaults(), run);
    CHECK(added.processes[3].growth.basis == GrowthBasis::new_process);
}

TEST_CASE("the cookies a process's state keeps: its sockets that have one") {
    scan::ProcessSnapshot process;
    process.sockets.resize(3);
    process.sockets[0].cookie = 11;
    process.sockets[2].cookie = 13; // a socket without a cookie (proc_net source) is skipped
    CHECK(cookies_of(process) == std::vector<std::uint64_t>{11, 13});
}

TEST_CASE("fds against a percentage of the soft limit, the audit's way: from the percentage up") {
    CHECK(fds_range(80.0, 30)->text == "23"); // 24 of 30 is 80%
    CHECK(fds_range(95.0, 30)->text == "28"); // 28.5: 29 is the first count at or above
    CHECK(fds_range(100.0, 30)->text == "29");
    CHECK(fds_range(80.0, 1024)->text == "819"); // 820 / 1024 = 80.08%
    CHECK(fds_range(0.5, 10)->text == "0");
    CHECK_FALSE(fds_range(80.0, 0).has_value()); // no limit known
    CHECK_FALSE(fds_range(std::nullopt, 1024).has_value());

    auto t = defaults();
    t.fds_warning_percent = 80;
    t.fds_critical_percent = 95;
    auto o = observed(4242, 77, 0, 0);
    o.report.info.fd_limit.soft = 30;
    const auto at = [&](std::uint64_t fds) {
        o.report.info.open_fds = fds;
        return evaluate({o}, std::nullopt, t, run);
    };
    CHECK(at(23).status == Status::ok);
    CHECK(at(24).status == Status::warning);
    CHECK(at(24).processes[0].fds == Status::warning);
    CHECK(at(28).status == Status::warning);
    CHECK(at(29).status == Status::critical);
    const auto verdict = at(27);
    const auto* fds = perf(verdict.processes[0], "fds");
    REQUIRE(fds != nullptr);
    CHECK(fds->value == 27);
    CHECK(fds->warn == "23");
    CHECK(fds->crit == "28");
    CHECK(fds->max == 30.0);
}

TEST_CASE("CLOSE_WAIT too recent to count is left out of the status and the perfdata") {
    auto o = observed(4242, 77, 0, 3);
    o.close_wait_young = 2;
    auto v = evaluate({o}, std::nullopt, defaults(), run);
    CHECK(v.processes[0].close_wait_counted == 1);
    CHECK(v.status == Status::warning);
    CHECK(perf(v.processes[0], "close_wait")->value == 1);
    o.close_wait_young = 3;
    v = evaluate({o}, std::nullopt, defaults(), run);
    CHECK(v.processes[0].close_wait_counted == 0);
    CHECK(v.status == Status::ok);
    // Growth and the next state keep the real count.
    CHECK(v.next.processes[0].states[TcpState::close_wait] == 3);
}

TEST_CASE("a CLOSE_WAIT's age is the time since its peer last sent anything, its FIN included") {
    scan::ProcessSnapshot process;
    const auto add = [&](TcpState state,
                         std::optional<std::pair<std::uint32_t, std::uint32_t>> recv_and_ack) {
        SocketRecord s;
        s.state = state;
        if (recv_and_ack) {
            s.info.emplace();
            s.info->last_data_recv_ms = recv_and_ack->first;
            s.info->last_ack_recv_ms = recv_and_ack->second;
        }
        process.sockets.push_back(s);
    };
    add(TcpState::close_wait, std::pair{600'000U, 200U}); // idle keep-alive, FIN just now
    add(TcpState::close_wait, std::pair{600'000U, 40'000U});
    add(TcpState::close_wait, std::pair{100U, 90'000U});
    add(TcpState::close_wait, std::nullopt); // no tcp_info: counted
    add(TcpState::established, std::pair{10U, 10U});
    CHECK(young_close_wait(process, 30'000) == 2);
    CHECK(young_close_wait(process, 60'000) == 3);
    CHECK(young_close_wait(process, 0) == 0);
}

TEST_CASE("perfdata labels never carry the pid: names in start order, unsafe bytes replaced") {
    auto older = observed(900, 5, 0, 0, "pool worker");
    auto newer = observed(100, 9, 0, 0, "pool worker");
    auto other = observed(300, 1, 0, 0, "a=b'c");
    const auto v = evaluate({newer, other, older}, std::nullopt, defaults(), run);
    CHECK(v.processes[0].perfdata[0].label == "close_wait_pool_worker_2");
    CHECK(v.processes[1].perfdata[0].label == "close_wait_a_b_c");
    CHECK(v.processes[2].perfdata[0].label == "close_wait_pool_worker");
    for (const auto& p : v.processes)
        for (const auto& d : p.perfdata) {
            CAPTURE(d.label);
            CHECK(d.label.find("900") == std::string::npos);
            CHECK(d.label.find("100") == std::string::npos);
        }
    // A single process keeps the plain labels.
    CHECK(evaluate({older}, std::nullopt, defaults(), run).processes[0].perfdata[0].label ==
          "close_wait");
}

TEST_CASE("held after close: its own thresholds, perfdata, and part of the leaked sockets") {
    auto t = defaults();
    t.held_after_close_warning = thresholds::parse_range("0");
    t.held_after_close_critical = thresholds::parse_range("10");
    auto o = observed(4242, 77, 3, 0);
    o.report.held_after_close = 12;
    o.report.states[TcpState::close] = 12;
    const auto v = evaluate({o}, std::nullopt, t, run);
    CHECK(v.status == Status::critical);
    CHECK(v.processes[0].held_after_close == Status::critical);
    CHECK(v.processes[0].close_wait == Status::ok);
    const auto* held = perf(v.processes[0], "held_after_close");
    REQUIRE(held != nullptr);
    CHECK(held->value == 12);
    CHECK(held->warn == "0");
    CHECK(held->crit == "10");
    const auto* leaked = perf(v.processes[0], "leaked");
    REQUIRE(leaked != nullptr);
    CHECK(leaked->value == 13); // 12 held + 1 stale
    CHECK(v.next.processes[0].history.back().held_after_close == 12);
}

TEST_CASE("growth: a keep-alive leak shows in the leaked sockets while CLOSE_WAIT stays level") {
    auto t = defaults();
    t.close_wait_warning = thresholds::parse_range("1000");
    t.close_wait_critical = thresholds::parse_range("1000");
    t.growth_warning = thresholds::parse_growth("5/h");
    auto before = seen(4242, 77, now - 40 * minute_ms, 10, 120);
    before.history.clear();
    for (int i = 0; i < 4; ++i)
        before.history.push_back(statefile::HistoryEntry{now - (40 - 10 * i) * minute_ms, 10, 120,
                                                         1, 300, 10ULL + 20ULL * i});
    auto o = observed(4242, 77, 10, 121);
    o.report.held_after_close = 90;
    o.report.states[TcpState::close] = 90;
    const auto v = evaluate({o}, state_of({before}, now - 10 * minute_ms), t, run);
    const auto& g = v.processes[0].growth;
    CHECK(g.close_wait.delta == 1);
    CHECK(g.close_wait.status == Status::ok);
    CHECK(g.held_after_close.delta == 80);
    CHECK(g.leaked.delta == 81);
    CHECK(g.leaked.real);
    CHECK(g.leaked.per_hour == doctest::Approx(121.5));
    CHECK(g.leaked.status == Status::warning);
    CHECK(v.status == Status::warning);
    CHECK(perf(v.processes[0], "leaked_growth") != nullptr);
}

TEST_CASE("growth: a count that only fluctuates over the runs is not alerted on") {
    auto t = defaults();
    t.growth_warning = thresholds::parse_growth("5/h");
    // Runs every 10 minutes: ESTABLISHED 10, 15, 11, 14, 10, and 15 now: +5 over 50 minutes is
    // 6/h from the oldest sample, but the runs show a bounded pool, not growth.
    auto before = seen(4242, 77, now - 50 * minute_ms, 10, 0);
    before.history.clear();
    const std::uint64_t counts[] = {10, 15, 11, 14, 10};
    for (int i = 0; i < 5; ++i)
        before.history.push_back(
            statefile::HistoryEntry{now - (50 - 10 * i) * minute_ms, counts[i], 0, 0, 30, 0});
    const auto v =
        evaluate({observed(4242, 77, 15, 0)}, state_of({before}, now - 10 * minute_ms), t, run);
    const auto& g = v.processes[0].growth;
    CHECK(g.rated);
    CHECK(g.established.delta == 5);
    CHECK(g.established.per_hour == doctest::Approx(6));
    CHECK_FALSE(g.established.real);
    CHECK(g.established.status == Status::ok);
    CHECK(v.status == Status::ok);
}
