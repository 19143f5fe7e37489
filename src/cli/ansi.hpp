// The terminal escape sequences the front ends write, spelled once.
#pragma once

namespace conncheck::cli::ansi {

// Select Graphic Rendition: styles, ended by `reset`.
inline constexpr const char* bold = "\x1b[1m";
inline constexpr const char* dim = "\x1b[2m";
inline constexpr const char* reverse = "\x1b[7m";
inline constexpr const char* red = "\x1b[31m";
inline constexpr const char* green = "\x1b[32m";
inline constexpr const char* yellow = "\x1b[33m";
inline constexpr const char* cyan = "\x1b[36m";
inline constexpr const char* bold_red = "\x1b[1;31m";
inline constexpr const char* bold_yellow = "\x1b[1;33m";
inline constexpr const char* reset = "\x1b[0m";

// Screen updates (the alternate screen itself is terminal.cpp's).
inline constexpr const char* clear_to_end_of_line = "\x1b[K";
// Synchronized output (DEC 2026), and the cursor home.
inline constexpr const char* begin_synchronized_update = "\x1b[?2026h\x1b[H";
inline constexpr const char* end_synchronized_update = "\x1b[?2026l";

} // namespace conncheck::cli::ansi
