// Threshold ranges against the table in the Monitoring Plugins development guidelines, edges
// included: both ends of a range are inclusive.
#include "conncheck/error.hpp"
#include "conncheck/thresholds.hpp"

#include <doctest/doctest.h>
#include <string>

using namespace conncheck;
using namespace conncheck::thresholds;

namespace {

bool alerts(const char* range, double value) {
    return parse_range(range).alerts(value);
}

Errc error_of(const std::string& text) {
    try {
        (void)parse_range(text);
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find(text.empty() ? "empty" : text) != std::string::npos);
        return e.code();
    }
    FAIL("no error for '" << text << "'");
    return Errc::io;
}

} // namespace

TEST_CASE("'10' alerts outside 0..10") {
    CHECK(alerts("10", -1));
    CHECK(alerts("10", -0.001));
    CHECK_FALSE(alerts("10", 0));
    CHECK_FALSE(alerts("10", 5));
    CHECK_FALSE(alerts("10", 10));
    CHECK(alerts("10", 10.001));
    CHECK(alerts("10", 11));
}

TEST_CASE("'10:' alerts below 10") {
    CHECK(alerts("10:", 9));
    CHECK(alerts("10:", 9.999));
    CHECK(alerts("10:", -5));
    CHECK_FALSE(alerts("10:", 10));
    CHECK_FALSE(alerts("10:", 1e12));
}

TEST_CASE("'~:10' alerts above 10") {
    CHECK_FALSE(alerts("~:10", -1e12));
    CHECK_FALSE(alerts("~:10", -1));
    CHECK_FALSE(alerts("~:10", 10));
    CHECK(alerts("~:10", 10.5));
    CHECK(alerts("~:10", 11));
}

TEST_CASE("'10:20' alerts outside 10..20") {
    CHECK(alerts("10:20", 9));
    CHECK_FALSE(alerts("10:20", 10));
    CHECK_FALSE(alerts("10:20", 15));
    CHECK_FALSE(alerts("10:20", 20));
    CHECK(alerts("10:20", 21));
    CHECK(alerts("10:20", 20.5));
}

TEST_CASE("'@10:20' alerts inside 10..20") {
    CHECK_FALSE(alerts("@10:20", 9));
    CHECK_FALSE(alerts("@10:20", 9.99));
    CHECK(alerts("@10:20", 10));
    CHECK(alerts("@10:20", 15));
    CHECK(alerts("@10:20", 20));
    CHECK_FALSE(alerts("@10:20", 20.01));
    CHECK_FALSE(alerts("@10:20", 21));
}

TEST_CASE("the guidelines' other forms") {
    // `0` is the check's default warning for CLOSE_WAIT: any CLOSE_WAIT at all warns.
    CHECK_FALSE(alerts("0", 0));
    CHECK(alerts("0", 1));
    // `@0` is the usual "alert when zero"; `@~:0` when zero or negative.
    CHECK(alerts("@0", 0));
    CHECK_FALSE(alerts("@0", 1));
    CHECK(alerts("@~:0", -3));
    // An empty start means 0, as strtod("") in the reference implementation.
    CHECK(alerts(":10", -1));
    CHECK_FALSE(alerts(":10", 10));
    // `~:` covers everything: never alerts; `@~:` always does.
    CHECK_FALSE(alerts("~:", -1e9));
    CHECK_FALSE(alerts("~:", 1e9));
    CHECK(alerts("@~:", 0));
    // A single-point range.
    CHECK_FALSE(alerts("5:5", 5));
    CHECK(alerts("5:5", 4.9));
    CHECK(alerts("5:5", 5.1));
}

TEST_CASE("decimals and negative numbers") {
    const auto r = parse_range("-1.5:2.25");
    CHECK(r.start == doctest::Approx(-1.5));
    CHECK(r.end == doctest::Approx(2.25));
    CHECK_FALSE(r.start_infinite);
    CHECK_FALSE(r.end_infinite);
    CHECK(r.alerts(-1.51));
    CHECK_FALSE(r.alerts(-1.5));
    CHECK_FALSE(r.alerts(2.25));
    CHECK(r.alerts(2.2501));
    CHECK(alerts("0.5", 0.6));
    CHECK_FALSE(alerts("+10", 10));
    CHECK(r.text == "-1.5:2.25");
}

TEST_CASE("malformed ranges are usage errors naming the text") {
    for (const char* bad : {"",    "@",   "abc",  "10:abc", "x:10", "1:2:3", "20:10", "@20:10",
                            "10 ", " 10", "1e3",  "nan",    "inf",  "~",     "~10",   "10~",
                            "--1", "++1", "0x10", "10,5",   "@@10", "10:~"}) {
        CAPTURE(bad);
        CHECK(error_of(bad) == Errc::usage);
    }
}

TEST_CASE("evaluate: critical wins over warning, default check thresholds") {
    const auto w = parse_range("0");
    const auto c = parse_range("10");
    CHECK(evaluate(0, w, c) == Status::ok);
    CHECK(evaluate(1, w, c) == Status::warning);
    CHECK(evaluate(10, w, c) == Status::warning);
    CHECK(evaluate(11, w, c) == Status::critical);
    CHECK(evaluate(11, std::nullopt, std::nullopt) == Status::ok);
    CHECK(evaluate(11, std::nullopt, c) == Status::critical);
    CHECK(evaluate(5, w, std::nullopt) == Status::warning);
}

TEST_CASE("status names, exit codes and the worst state") {
    CHECK(status_name(Status::ok) == "OK");
    CHECK(status_name(Status::warning) == "WARNING");
    CHECK(status_name(Status::critical) == "CRITICAL");
    CHECK(status_name(Status::unknown) == "UNKNOWN");
    CHECK(static_cast<int>(Status::ok) == 0);
    CHECK(static_cast<int>(Status::warning) == 1);
    CHECK(static_cast<int>(Status::critical) == 2);
    CHECK(static_cast<int>(Status::unknown) == 3);
    CHECK(worst(Status::ok, Status::warning) == Status::warning);
    CHECK(worst(Status::critical, Status::warning) == Status::critical);
    CHECK(worst(Status::unknown, Status::warning) == Status::unknown);
    CHECK(worst(Status::unknown, Status::critical) == Status::critical);
    CHECK(worst(Status::ok, Status::ok) == Status::ok);
}

TEST_CASE("growth thresholds N/h") {
    const auto g = parse_growth("1.5/h");
    CHECK(g.per_hour == doctest::Approx(1.5));
    CHECK_FALSE(g.alerts(1.5));
    CHECK(g.alerts(1.51));
    CHECK_FALSE(g.alerts(-20));
    CHECK(g.as_range() == "~:1.5");
    CHECK(parse_growth("0/h").alerts(0.01));
    for (const char* bad : {"", "5", "/h", "5/m", "5/hour", "-1/h", "x/h", "5 /h", "5/h "}) {
        CAPTURE(bad);
        CHECK_THROWS_AS((void)parse_growth(bad), Error);
    }
}

TEST_CASE("perfdata items") {
    CHECK(perfdata("close_wait", 12, "", "0", "10", 0.0, std::nullopt) == "close_wait=12;0;10;0;");
    CHECK(perfdata("fds", 112, "", "", "", 0.0, 1024.0) == "fds=112;;;0;1024");
    CHECK(perfdata("growth", 1.6667, "", "~:1", "", std::nullopt, std::nullopt) ==
          "growth=1.667;~:1;;;");
    CHECK(perfdata("a b", 1, "B", "", "", std::nullopt, std::nullopt) == "'a b'=1B;;;;");
    CHECK(perfdata("it's", 1, "", "", "", std::nullopt, std::nullopt) == "'it''s'=1;;;;");
    CHECK(format_number(2) == "2");
    CHECK(format_number(1.70) == "1.7");
    CHECK(format_number(-0.0001) == "0");
    CHECK(format_number(123456789) == "123456789");
}
