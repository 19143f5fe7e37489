// libFuzzer harness: arbitrary bytes as check's state file. Decoding either gives a state or
// throws Error(bad_file); a decoded state encodes and decodes again to the same counts, and its
// histories feed the growth arithmetic without overflowing.
#include "conncheck/error.hpp"
#include "conncheck/statefile.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace statefile = conncheck::statefile;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    statefile::State state;
    try {
        state = statefile::decode(text, "fuzz.json");
    } catch (const conncheck::Error&) {
        return 0;
    }
    const statefile::State again = statefile::decode(statefile::encode(state), "fuzz.json");
    if (again.processes.size() != state.processes.size() || again.taken_at_ms != state.taken_at_ms)
        std::abort();
    for (std::size_t i = 0; i < state.processes.size(); ++i) {
        auto& p = state.processes[i];
        if (again.processes[i].cookies != p.cookies || again.processes[i].fds != p.fds)
            std::abort();
        (void)statefile::growth_base(p.history, state.taken_at_ms);
        statefile::add_sample(p.history, statefile::HistoryEntry{state.taken_at_ms, 1, 2, 3, 4});
    }
    return 0;
}
