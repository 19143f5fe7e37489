#include "conncheck/files.hpp"

#include "conncheck/error.hpp"
#include "conncheck/privilege.hpp"

#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace conncheck::files {

namespace {

std::filesystem::path directory_of(const std::string& path) {
    const std::filesystem::path target(path);
    return target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
}

std::string tmp_prefix(const std::string& path) {
    return "." + std::filesystem::path(path).filename().string() + ".tmp.";
}

} // namespace

UniqueFd open_input(const std::string& path, std::string_view what, bool follow_links) {
    if (path.empty()) throw Error(Errc::bad_file, fmt::format("{}: empty path", what));
    const int flags =
        O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | (follow_links ? 0 : O_NOFOLLOW);
    UniqueFd fd(::open(path.c_str(), flags));
    if (fd.get() < 0) {
        const int err = errno;
        if (err == ELOOP && !follow_links)
            throw Error(Errc::bad_file,
                        fmt::format("{} {} is a symbolic link; refusing to follow it", what, path));
        throw Error(Errc::bad_file,
                    errno_message(fmt::format("cannot read {} {}", what, path), err));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        throw Error(Errc::bad_file,
                    errno_message(fmt::format("cannot read {} {}", what, path), errno));
    if (!S_ISREG(st.st_mode))
        throw Error(Errc::bad_file, fmt::format("{} {} is not a regular file", what, path));
    // Reads block again: a regular file never makes them wait, and O_NONBLOCK only guarded open().
    (void)::fcntl(fd.get(), F_SETFL, O_RDONLY);
    return fd;
}

std::string read_input(const std::string& path, std::string_view what, std::uint64_t max_bytes) {
    const UniqueFd fd = open_input(path, what);
    const auto too_large = [&] {
        return Error(Errc::bad_file,
                     fmt::format("{} {} is larger than {} bytes", what, path, max_bytes));
    };
    struct stat st {};
    std::string content;
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
        if (static_cast<std::uint64_t>(st.st_size) > max_bytes) throw too_large();
        content.reserve(static_cast<std::size_t>(st.st_size));
    }
    char buf[65536];
    while (true) {
        const ssize_t got = ::read(fd.get(), buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            throw Error(Errc::bad_file,
                        errno_message(fmt::format("cannot read {} {}", what, path), errno));
        if (got == 0) return content;
        content.append(buf, static_cast<std::size_t>(got));
        if (content.size() > max_bytes) throw too_large();
    }
}

OutputFile OutputFile::create(const std::string& path, mode_t mode) {
    if (path.empty()) throw Error(Errc::usage, "empty output path");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (S_ISLNK(st.st_mode))
            throw Error(Errc::usage, fmt::format("{} is a symbolic link; refusing to write "
                                                 "through it (name the real path)",
                                                 path));
        if (!S_ISREG(st.st_mode))
            throw Error(Errc::usage,
                        fmt::format("{} is not a regular file; refusing to write to it", path));
    }
    std::string tmp = (directory_of(path) / (tmp_prefix(path) + "XXXXXX")).string();
    UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
    if (fd.get() < 0) {
        const int err = errno;
        std::string message = errno_message("cannot write " + path, err);
        if (err == EACCES || err == EPERM)
            throw Error(Errc::permission_denied,
                        message + " (" + privilege::hint(privilege::Access::write_directory) + ")");
        throw Error(Errc::usage, message);
    }
    OutputFile file(std::move(fd), path, std::move(tmp));
    // mkostemp makes 0600; a textfile is read by node_exporter, usually another user.
    if (::fchmod(file.fd(), mode) != 0) file.fail("cannot write " + path, errno);
    return file;
}

OutputFile::OutputFile(OutputFile&& other) noexcept
    : fd_(std::move(other.fd_)), path_(std::move(other.path_)),
      tmp_(std::exchange(other.tmp_, std::string())) {}

OutputFile::~OutputFile() {
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

void OutputFile::fail(const std::string& what, int err) {
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
    throw Error(Errc::usage, errno_message(what, err));
}

void OutputFile::write(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n = ::write(fd_.get(), bytes + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("cannot write " + path_, errno);
        done += static_cast<std::size_t>(n);
    }
}

void OutputFile::rename_into_place() {
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
        fail(fmt::format("cannot rename {} to {}", tmp_, path_), errno);
    tmp_.clear();
}

void OutputFile::sync_directory() const {
    // The rename is durable only once the directory entry is on disk.
    const auto dir = directory_of(path_);
    UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir_fd.get() < 0 || ::fsync(dir_fd.get()) != 0)
        throw Error(Errc::usage, errno_message("cannot fsync directory " + dir.string(), errno));
}

void OutputFile::commit(bool durable) {
    if (tmp_.empty()) return;
    if (durable && ::fsync(fd_.get()) != 0) fail("cannot write " + path_, errno);
    rename_into_place();
    if (durable) sync_directory();
}

void OutputFile::finish(bool durable) {
    if (tmp_.empty()) return;
    if (durable && ::fsync(fd_.get()) != 0) fail("cannot write " + path_, errno);
    // A write-back error (NFS, a full quota) can surface only here.
    if (::close(fd_.release()) != 0) fail("cannot write " + path_, errno);
    rename_into_place();
    if (durable) sync_directory();
}

void write_file(const std::string& path, std::string_view content, mode_t mode, bool durable) {
    OutputFile file = OutputFile::create(path, mode);
    file.write(content);
    file.finish(durable);
}

void remove_leftovers(const std::string& path) {
    const std::string prefix = tmp_prefix(path);
    std::error_code ec;
    for (std::filesystem::directory_iterator it(directory_of(path), ec), end; !ec && it != end;
         it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() != prefix.size() + 6 || !name.starts_with(prefix)) continue;
        struct stat st {};
        if (::lstat(it->path().c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_uid == ::geteuid())
            ::unlink(it->path().c_str());
    }
}

} // namespace conncheck::files
