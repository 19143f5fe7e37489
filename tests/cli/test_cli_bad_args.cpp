// Bad, odd and hostile arguments, one row each: the command line, the exit code, what stderr
// says and, for `check`, what its status line says. Every row also holds the rules that hold for
// any bad input: at most one line on stderr (check: exactly one status line on stdout), no
// control byte and no invalid UTF-8 on either, no hang, and no file written through a link.
// The next bad input is one row more.
#include "support.hpp"

#include <algorithm>
#include <csignal>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <regex>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace testsupport;

namespace {

// Where the command's stdout goes.
enum class Stdout { captured, dev_full, closed };

struct Row {
    std::vector<std::string> argv; // after the binary; {PID}, {ZOMBIE}, {DIR}, ... substituted
    int exit_code;
    std::string stderr_pattern;      // regex searched in stderr; "" = stderr must be empty
    std::string stdout_pattern = {}; // check: regex searched in its one status line
    Stdout out = Stdout::captured;
};

const std::vector<Row>& rows() {
    static const std::vector<Row> table = {
        // Outputs are never written through a link, nor into a FIFO or a device.
        {{"--pid", "{PID}", "--dump-netlink", "{LINK}"}, 2, "is a symbolic link; refusing"},
        {{"watch", "--pid", "{PID}", "--count", "1", "--dump-netlink", "{LINK}"},
         2,
         "is a symbolic link; refusing"},
        {{"check", "--pid", "{PID}", "--state-file", "{DIR}/state.json", "--dump-netlink",
          "{LINK}"},
         3,
         "",
         "^CONNCHECK UNKNOWN - .*is a symbolic link; refusing"},
        {{"--pid", "{PID}", "--dump-netlink", "{FIFO}"}, 2, "is not a regular file; refusing"},
        {{"--pid", "{PID}", "--dump-netlink", "/dev/null"}, 2, "is not a regular file; refusing"},
        {{"export", "--pid", "{PID}", "--textfile-dir", "{LINKDIR}"},
         2,
         "conncheck.prom is a symbolic link; refusing"},
        {{"check", "--pid", "{PID}", "--state-file", "{LINK}"},
         3,
         "",
         "^CONNCHECK UNKNOWN - state file .* is a symbolic link"},
        {{"prove", "--svg", "{LINK}"}, 2, "^conncheck: --svg: .*is a symbolic link; refusing"},
        {{"prove", "--csv", "{FIFO}"}, 2, "--csv: .*is not a regular file; refusing"},
        {{"prove", "--svg", ""}, 2, "--svg: must not be empty"},
        // Inputs never block, and are regular files.
        {{"--pidfile", "{FIFO}"}, 7, "^conncheck: pidfile .*/fifo is not a regular file\n$"},
        {{"watch", "--pidfile", "{FIFO}", "--count", "1"}, 7, "pidfile .* is not a regular file"},
        {{"trace", "--pidfile", "{FIFO}", "--for", "1s"}, 7, "pidfile .* is not a regular file"},
        {{"--pidfile", "/dev/zero"}, 7, "pidfile /dev/zero is not a regular file"},
        {{"--pid", "{PID}", "--replay", "{FIFO}"}, 7, "recording .* is not a regular file"},
        {{"watch", "--pid", "{PID}", "--count", "1", "--replay", "{FIFO}"},
         7,
         "recording .* is not a regular file"},
        {{"--pid", "{PID}", "--replay", "/dev/zero"}, 7, "recording /dev/zero is not a regular"},
        {{"--proc-root", "{PROCFIFO}", "--pid", "4242"}, 7, "cannot read .*/4242/stat"},
        {{"--proc-root", "/etc/passwd"}, 2, "--proc-root: /etc/passwd: not a directory"},
        {{"--proc-root", "/dev/zero", "--pid", "{PID}"}, 2, "/dev/zero: not a directory"},
        {{"--proc-root", "{DIR}/none", "--pid", "{PID}"}, 2, "No such file or directory"},
        // Empty values are refused, never taken for "not given".
        {{"trace", "--pid", "{PID}", "--for", ""}, 2, "--for: must not be empty"},
        {{"--pidfile", ""}, 2, "--pidfile: must not be empty"},
        {{"watch", "--pidfile", "", "--count", "1"}, 2, "--pidfile: must not be empty"},
        {{"check", "--pidfile", ""}, 3, "", "^CONNCHECK UNKNOWN - .*--pidfile: must not be empty"},
        {{"--pid", "{PID}", "--proc-root", ""}, 2, "--proc-root: must not be empty"},
        {{"--pid", "{PID}", "--replay", ""}, 2, "--replay: must not be empty"},
        {{"--pid", "{PID}", "--dump-netlink", ""}, 2, "--dump-netlink: must not be empty"},
        {{"check", "--pid", "{PID}", "--state-file", ""},
         3,
         "",
         "^CONNCHECK UNKNOWN - .*--state-file: must not be empty"},
        {{"export", "--pid", "{PID}", "--textfile-dir", ""}, 2, "--textfile-dir: must not be"},
        {{"--pid", ""}, 2, "empty item"},
        {{"--pid", "12x"}, 2, "invalid pid '12x'"},
        // Options that contradict each other are refused, not half honoured.
        {{"--pid", "{PID}", "--replay", "{DIR}/rec", "--dump-netlink", "{DIR}/out"},
         2,
         "--dump-netlink excludes --replay"},
        {{"--pid", "{PID}", "--replay", "{DIR}/rec", "--source", "proc"},
         2,
         "--source excludes --replay"},
        // A zombie has exited, whatever asks.
        {{"--pid", "{ZOMBIE}"}, 5, "process [0-9]+ has exited \\(a zombie"},
        {{"--pid", "{ZOMBIE}", "--json"}, 5, "has exited"},
        {{"check", "--pid", "{ZOMBIE}", "--state-file", "{DIR}/z.json"},
         3,
         "",
         "^CONNCHECK UNKNOWN - process [0-9]+ has exited"},
        {{"export", "--pid", "{ZOMBIE}"}, 5, "has exited"},
        {{"watch", "--pid", "{ZOMBIE}", "--count", "1"}, 5, "has exited"},
        {{"trace", "--pid", "{ZOMBIE}", "--for", "1s"}, 5, "has exited"},
        {{"--pid", "{PID},{ZOMBIE}"}, 5, "has exited"},
        // A state file that is valid JSON with a number no double holds.
        {{"check", "--pid", "{PID}", "--state-file", "{HUGE}"},
         3,
         "",
         "^CONNCHECK UNKNOWN - state file .* is unusable: .*out of range"},
        // Root is never told to run as root (checked for every row below).
        {{"--exe", "/no/such/exe"}, 3, "^conncheck: no process matches executable /no/such/exe"},
        // Hostile bytes in arguments come back escaped, on one line.
        {{"\x1b]0;PWN\a\x1b[2J"}, 2, "\\\\x1b\\]0;PWN\\\\x07\\\\x1b\\[2J"},
        {{"\xff\xfe\x80"}, 2, "\\\\xff\\\\xfe\\\\x80"},
        {{"watch\nfake line"}, 2, "watch\\\\x0afake line"},
        {{"--pidfile", "/tmp/no\nsuch"}, 7, "/tmp/no\\\\x0asuch"},
        {{"--pidfile", "/tmp/\x1b[2Jx"}, 7, "/tmp/\\\\x1b\\[2Jx"},
        {{"--name", "\x1b[2J"}, 3, "no process matches name '\\\\x1b\\[2J'"},
        // A report that did not land is an error, never a silent exit 0.
        {{"--pid", "{PID}"},
         2,
         "^conncheck: the report was not written: cannot write to standard output",
         "",
         Stdout::dev_full},
        {{"--pid", "{PID}", "--json"}, 2, "the report was not written", "", Stdout::dev_full},
        {{"export", "--pid", "{PID}"}, 2, "the report was not written", "", Stdout::dev_full},
        {{"watch", "--pid", "{PID}", "--count", "1", "--json"},
         2,
         "the report was not written",
         "",
         Stdout::dev_full},
        {{"check", "--pid", "{PID}", "--state-file", "{DIR}/full.json"},
         3,
         "the report was not written",
         "",
         Stdout::dev_full},
        {{"--pid", "{PID}"},
         2,
         "^conncheck: the report was not written: standard output is closed",
         "",
         Stdout::closed},
        {{"export", "--pid", "{PID}"}, 2, "standard output is closed", "", Stdout::closed},
    };
    return table;
}

// A child that has exited and that we do not reap until the end: a zombie.
class Zombie {
public:
    Zombie() {
        pid_ = fork();
        if (pid_ == 0) _exit(0);
        const std::string stat = "/proc/" + std::to_string(pid_) + "/stat";
        REQUIRE(wait_until(
            [&] {
                const std::string s = read_file(stat);
                const auto close = s.rfind(')');
                return close != std::string::npos && s.size() > close + 2 && s[close + 2] == 'Z';
            },
            10s));
    }
    ~Zombie() {
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    Zombie(const Zombie&) = delete;
    Zombie& operator=(const Zombie&) = delete;
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
    return s;
}

// A byte a terminal would act on: a control byte other than the final newline, or a byte that
// is not part of well-formed UTF-8 (checked loosely: no 0xc0, 0xc1, 0xf5..0xff).
bool hostile_byte(const std::string& s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\n' && i + 1 == s.size()) continue;
        if (c < 0x20 || c == 0x7f || c == 0xc0 || c == 0xc1 || c >= 0xf5) return true;
    }
    return false;
}

std::size_t lines(const std::string& s) {
    return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}

} // namespace

TEST_CASE("bad arguments: one row each, one documented exit code, one sanitized line") {
    TempDir dir;
    const std::string victim = dir.path() + "/victim";
    const std::string precious = "root's file, not to be touched\n";
    write_file(victim, precious);
    const std::string link = dir.path() + "/link";
    REQUIRE(symlink(victim.c_str(), link.c_str()) == 0);
    const std::string fifo = dir.path() + "/fifo";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    // A textfile directory whose conncheck.prom is a link to the victim.
    const std::string link_dir = dir.path() + "/textfiles";
    std::filesystem::create_directory(link_dir);
    REQUIRE(symlink(victim.c_str(), (link_dir + "/conncheck.prom").c_str()) == 0);
    // A /proc tree whose process 4242 has a FIFO for its stat.
    const std::string proc_fifo = dir.path() + "/proc";
    std::filesystem::create_directories(proc_fifo + "/4242");
    REQUIRE(mkfifo((proc_fifo + "/4242/stat").c_str(), 0600) == 0);
    // A state file that parses as JSON but holds 1e400.
    const std::string huge = dir.path() + "/huge.json";
    write_file(huge, R"({"format": "conncheck-state", "version": 1, "selector": "x", )"
                     R"("taken_at_ms": 1e400, "processes": []})");

    Child target([] {});
    Zombie zombie;

    // prove is built only with the collector (Boost.Beast).
    const bool have_prove =
        run({conncheck_bin(), "prove", "--help"}).out.find("--svg") != std::string::npos;
    for (const Row& row : rows()) {
        if (row.argv.front() == "prove" && !have_prove) continue;
        std::vector<std::string> argv{conncheck_bin()};
        for (const auto& arg : row.argv) {
            std::string a = replace_all(arg, "{PID}", std::to_string(target.pid()));
            a = replace_all(a, "{ZOMBIE}", std::to_string(zombie.pid()));
            a = replace_all(a, "{LINKDIR}", link_dir);
            a = replace_all(a, "{LINK}", link);
            a = replace_all(a, "{FIFO}", fifo);
            a = replace_all(a, "{PROCFIFO}", proc_fifo);
            a = replace_all(a, "{HUGE}", huge);
            a = replace_all(a, "{DIR}", dir.path());
            argv.push_back(a);
        }
        if (row.out != Stdout::captured) {
            // The shell points stdout elsewhere, then runs conncheck in its place.
            const char* redirect = row.out == Stdout::dev_full ? ">/dev/full" : ">&-";
            argv.insert(argv.begin(),
                        {"/bin/sh", "-c", std::string("exec \"$0\" \"$@\" ") + redirect});
        }
        CAPTURE(row.argv);
        const CommandResult r = run(argv, 20s);
        CHECK(r.exit_code == row.exit_code);
        const bool check = std::find(row.argv.begin(), row.argv.end(), "check") != row.argv.end();
        if (row.stderr_pattern.empty()) {
            CHECK(r.err.empty());
        } else {
            CAPTURE(r.err);
            CHECK(std::regex_search(r.err, std::regex(row.stderr_pattern)));
        }
        CHECK(lines(r.err) <= 1);
        CHECK_FALSE(hostile_byte(r.err));
        if (check && row.out == Stdout::captured) {
            CAPTURE(r.out);
            CHECK(lines(r.out) == 1);
            CHECK_FALSE(hostile_byte(r.out));
            if (!row.stdout_pattern.empty())
                CHECK(std::regex_search(r.out, std::regex(row.stdout_pattern)));
        }
        if (geteuid() == 0) CHECK(r.err.find("run as root") == std::string::npos);
        CHECK(read_file(victim) == precious);
        // No temporary file of a refused output stays behind.
        for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
            CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
    }
}
