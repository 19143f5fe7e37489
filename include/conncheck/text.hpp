// Text helpers shared by every front end. Anything that came from another process goes through
// sanitize() before it is printed or put into JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace conncheck::text {

// The one sanitizer for text shown to people (tables, plugin lines, Prometheus labels, JSON text
// fields). Keeps printable ASCII and well-formed visible UTF-8; writes control bytes, escape
// sequences and invalid bytes as \xNN, invisible and bidi code points (U+200B, U+202E, U+FEFF,
// ...) as \u{202e}, and a backslash as \\, so every escape in the output is one we wrote. Cuts
// to at most `max_width` columns, ending with "..." when cut.
[[nodiscard]] std::string sanitize(std::string_view raw, std::size_t max_width = std::string::npos);
// A message as one safe line, whatever it holds: as sanitize(), but a backslash stays as it is,
// so that a message built from sanitized parts reads the same (the last line of defence before
// stderr: CLI11's errors echo arguments raw).
[[nodiscard]] std::string one_line(std::string_view message);
// Whether sanitize(raw) is `raw` itself (printable ASCII without a backslash): a caller with
// thousands of short texts a second can skip the copy.
[[nodiscard]] bool is_plain(std::string_view raw);
// Parses "250ms", "1.5s", "10m", "2h", "60" (seconds). nullopt-like: returns false on bad text.
[[nodiscard]] bool parse_duration_ms(std::string_view text, std::uint64_t& out_ms);
// ISO 8601 UTC with seconds: "2026-10-21T09:24:00Z"
[[nodiscard]] std::string iso8601_utc(std::int64_t unix_seconds);

} // namespace conncheck::text
