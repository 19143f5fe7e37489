// Files the user names. conncheck runs as root, so a path given on the command line is an attack
// surface: an output must never write through a symbolic link into someone else's file, and an
// input must never block (a FIFO) or stream forever (/dev/zero).
#pragma once

#include "conncheck/fd.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace conncheck::files {

// Opens an input to read: without blocking (a FIFO has no writer to wait for) and only when it is
// a regular file. A symbolic link is followed unless `follow_links` is false. Throws
// Error(bad_file) "cannot read WHAT PATH: ..." or "WHAT PATH is not a regular file". `what` names
// the kind of file ("pidfile", "recording").
[[nodiscard]] UniqueFd open_input(const std::string& path, std::string_view what,
                                  bool follow_links = true);
// The whole input, refused with Error(bad_file) once it is larger than `max_bytes`.
[[nodiscard]] std::string read_input(const std::string& path, std::string_view what,
                                     std::uint64_t max_bytes);

// An output file written the one safe way: into a temporary file created beside PATH
// (".NAME.tmp.XXXXXX", O_EXCL, never through a link), renamed over PATH by commit(). A reader or
// a crash sees the old file or the new one, never a mix, and a symbolic link planted at PATH is
// refused, never followed: rename() would replace the link itself, but refusing says so.
class OutputFile {
public:
    // Throws Error(usage) when PATH is a symbolic link or exists and is not a regular file, or
    // when the temporary file cannot be created (Error(permission_denied) with what to add when
    // the directory refuses us).
    static OutputFile create(const std::string& path, mode_t mode);
    OutputFile(OutputFile&& other) noexcept;
    OutputFile& operator=(OutputFile&&) = delete;
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;
    // Removes the temporary file when commit() never ran.
    ~OutputFile();

    // Throws Error(usage) naming PATH ("cannot write PATH: No space left on device").
    void write(const void* data, std::size_t size);
    void write(std::string_view data) { write(data.data(), data.size()); }
    // Renames the temporary file over PATH; `durable` fsyncs the file first and the directory
    // after. The descriptor stays open: a recording goes on growing in place.
    void commit(bool durable);
    // The same, closing the file first: for a file written whole.
    void finish(bool durable);
    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] const std::string& path() const { return path_; }

private:
    OutputFile(UniqueFd fd, std::string path, std::string tmp)
        : fd_(std::move(fd)), path_(std::move(path)), tmp_(std::move(tmp)) {}
    [[noreturn]] void fail(const std::string& what, int err);
    void rename_into_place();
    void sync_directory() const;
    UniqueFd fd_;
    std::string path_;
    std::string tmp_; // empty once renamed
};

// Writes `content` to PATH through an OutputFile.
void write_file(const std::string& path, std::string_view content, mode_t mode, bool durable);

// The temporary files of OutputFile::create for PATH that a run killed mid-write left behind:
// removes those that are regular files of ours. Only safe where no other run writes PATH at the
// same time (under a lock).
void remove_leftovers(const std::string& path);

} // namespace conncheck::files
