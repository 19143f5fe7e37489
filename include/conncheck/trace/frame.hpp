// One frame of a call site, whatever found it: the frame-pointer walk, the unwind tables, or an
// interpreter's own frame chain. Frames are data until printed; grouping and "the first frame in
// the user's own code" are pure functions over them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace conncheck::trace {

enum class FrameOrigin : std::uint8_t {
    native, // machine code: C, C++, Rust, the interpreter itself
    python, // a CPython frame, read from the interpreter's frame chain
    go,     // Go code (frame pointers and Go's own symbol table)
};
[[nodiscard]] std::string_view origin_name(FrameOrigin origin); // "native", "python", "go"

enum class FrameTrust : std::uint8_t {
    exact,   // read as the program left it: a return address, an interpreter frame
    unwound, // recovered from unwind tables (.eh_frame/.debug_frame) and a copy of the stack
};
[[nodiscard]] std::string_view trust_name(FrameTrust trust); // "exact", "unwound"

struct Frame {
    FrameOrigin origin = FrameOrigin::native;
    FrameTrust trust = FrameTrust::exact;
    std::uint64_t address = 0; // native, go: the pc looked up; python: the code object
    std::string function;      // raw (from the target): sanitize before printing; "" unknown
    std::string file;          // the source file, full path where known; "" unknown
    int line = 0;              // 0 unknown
    std::string module;        // native, go: the ELF file's path; python: ""
    friend auto operator<=>(const Frame&, const Frame&) = default;
};

// "open_feed (client.cpp:42)", "connect (libc.so.6)", "0x4011d6 (client)", or for Python
// "app/feed.py:42 in Feed.reconnect"; C++ template arguments shown as "<...>" (the frame's
// function keeps them). Raw: sanitize before printing.
[[nodiscard]] std::string frame_text(const Frame& frame);

// Where a connection was opened: frames, innermost first. A call site is complete only when the
// walk reached the start of the thread (_start, clone3, runtime.goexit...); otherwise `stops`
// says why there is nothing beyond the last frame.
struct CallSite {
    std::vector<Frame> frames;
    bool complete = false;
    std::string stops; // when not complete: why the walk ended there (never empty then)
    // What the frames mean when they are not the user's (a goroutine net/http dials in, a
    // runtime whose connects run from its event loop); "" nothing to say.
    std::string note;
    friend auto operator<=>(const CallSite&, const CallSite&) = default;
};

// Whether a function is where a thread starts: a stack that reaches it is complete.
[[nodiscard]] bool starts_thread(std::string_view function);

// The first frame, innermost first, in the user's own code: not libc or the dynamic loader, not
// a language's runtime or standard library (CPython's stdlib, site-packages and dist-packages;
// Go's runtime, syscall, internal/ and standard packages), not the python or node executables or
// libpython, not code from a system header (/usr/include: Boost, the C++ standard library).
// nullopt when every frame is the system's.
[[nodiscard]] std::optional<std::size_t> first_user_frame(const CallSite& site);

} // namespace conncheck::trace
