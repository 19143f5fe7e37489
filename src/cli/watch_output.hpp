// Two of watch's renderings of a Frame (the screen is the third): one JSON object per tick, and one
// log line per process.
#pragma once

#include "conncheck/watch/frame.hpp"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace conncheck::cli {

// One JSON object: the fields the screen shows, per process and in total.
[[nodiscard]] nlohmann::ordered_json to_json(const watch::Frame& frame);
// How watch follows the connections: "events", or "polling (REASON)".
[[nodiscard]] std::string tracking_text(const watch::Frame& frame);
// One line per process: "2026-10-21T09:24:00Z pid=4242 established=45 close_wait=12 ...".
[[nodiscard]] std::vector<std::string> to_lines(const watch::Frame& frame);

} // namespace conncheck::cli
