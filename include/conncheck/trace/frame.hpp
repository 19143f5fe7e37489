// One frame of a call site, whatever found it: the frame-pointer walk, the unwind tables, or an
// interpreter's own frame chain. Frames are data until printed; grouping and "the first frame in
// the user's own code" are pure functions over them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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
    std::string module;        // native, go: the ELF file's name; python: ""
    friend auto operator<=>(const Frame&, const Frame&) = default;
};

} // namespace conncheck::trace
