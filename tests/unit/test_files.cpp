// Files the user names: outputs never written through a link or into a FIFO or device, always
// whole (a temporary file renamed into place); inputs never waited on, always regular files.
#include "conncheck/files.hpp"

#include "conncheck/error.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <filesystem>
#include <functional>
#include <sys/stat.h>
#include <unistd.h>

using namespace conncheck;
using testsupport::read_file;
using testsupport::TempDir;
using testsupport::write_file;

namespace {

Errc code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.code();
    }
    FAIL("no Error thrown");
    return Errc::io;
}

std::size_t entries(const std::string& dir) {
    return static_cast<std::size_t>(std::distance(std::filesystem::directory_iterator(dir),
                                                  std::filesystem::directory_iterator{}));
}

} // namespace

TEST_CASE("an output replaces its file whole, with the mode asked for") {
    TempDir dir;
    const std::string path = dir.path() + "/out.svg";
    write_file(path, "old content that is longer\n");
    files::write_file(path, "new\n", 0644, false);
    CHECK(read_file(path) == "new\n");
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    CHECK(entries(dir.path()) == 1);
}

TEST_CASE("an output refuses a symbolic link and a non-regular file, and leaves them alone") {
    TempDir dir;
    const std::string victim = dir.path() + "/victim";
    write_file(victim, "precious\n");
    const std::string link = dir.path() + "/link";
    REQUIRE(::symlink(victim.c_str(), link.c_str()) == 0);
    const std::string fifo = dir.path() + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_THROWS_WITH_AS(files::write_file(link, "x", 0644, false),
                         doctest::Contains("is a symbolic link; refusing"), Error);
    CHECK(code_of([&] { files::write_file(link, "x", 0644, false); }) == Errc::usage);
    CHECK(read_file(victim) == "precious\n");
    CHECK(std::filesystem::is_symlink(link));
    CHECK_THROWS_WITH_AS(files::write_file(fifo, "x", 0644, false),
                         doctest::Contains("is not a regular file"), Error);
    CHECK_THROWS_WITH_AS(files::write_file(dir.path(), "x", 0644, false),
                         doctest::Contains("is not a regular file"), Error);
    CHECK(code_of([] { files::write_file("/dev/null", "x", 0644, false); }) == Errc::usage);
    CHECK(code_of([] { files::write_file("/nonexistent/x", "x", 0644, false); }) == Errc::usage);
    CHECK(entries(dir.path()) == 3); // victim, link, fifo: no temporary file left
}

TEST_CASE("an output that is never committed leaves nothing; a committed one grows in place") {
    TempDir dir;
    const std::string path = dir.path() + "/rec";
    { auto file = files::OutputFile::create(path, 0644); }
    CHECK(entries(dir.path()) == 0);
    auto file = files::OutputFile::create(path, 0644);
    file.write("head");
    file.commit(false);
    file.write("+more");
    CHECK(read_file(path) == "head+more");
}

TEST_CASE("an input is a regular file, and a FIFO or a device is refused without waiting") {
    TempDir dir;
    const std::string fifo = dir.path() + "/fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    // Without O_NONBLOCK this open would wait for a writer forever.
    CHECK_THROWS_WITH_AS((void)files::read_input(fifo, "pidfile", 100),
                         doctest::Contains("is not a regular file"), Error);
    CHECK(code_of([] { (void)files::read_input("/dev/zero", "recording", 100); }) ==
          Errc::bad_file);
    CHECK(code_of([&] { (void)files::read_input(dir.path(), "recording", 100); }) ==
          Errc::bad_file);
    CHECK(code_of([&] { (void)files::read_input(dir.path() + "/none", "pidfile", 100); }) ==
          Errc::bad_file);
    const std::string big = dir.path() + "/big";
    write_file(big, std::string(101, 'x'));
    CHECK_THROWS_WITH_AS((void)files::read_input(big, "pidfile", 100),
                         doctest::Contains("larger than 100 bytes"), Error);
    const std::string small = dir.path() + "/small";
    write_file(small, "4242\n");
    CHECK(files::read_input(small, "pidfile", 100) == "4242\n");
    // A link is followed unless refused.
    const std::string link = dir.path() + "/link";
    REQUIRE(::symlink(small.c_str(), link.c_str()) == 0);
    CHECK(files::read_input(link, "pidfile", 100) == "4242\n");
    CHECK_THROWS_WITH_AS((void)files::open_input(link, "state file", false),
                         doctest::Contains("is a symbolic link"), Error);
}
