// The Symbolizer of a build without libdw: raw addresses.
#include "conncheck/trace/symbolize.hpp"

#include "conncheck/trace/python.hpp"

#include <fmt/core.h>

namespace conncheck::trace {

struct Symbolizer::Impl {};
Symbolizer::Symbolizer() = default;
Symbolizer::~Symbolizer() = default;

CallSite Symbolizer::call_site(const Event& opened) {
    CallSite site;
    for (const auto pc : opened.stack)
        site.frames.push_back(fmt::format("0x{:x}", pc));
    site.stops = "built without libdw: no symbols";
    return site;
}

} // namespace conncheck::trace

namespace conncheck::trace::python {

std::optional<Runtime> find_runtime(pid_t) {
    return std::nullopt;
}

} // namespace conncheck::trace::python
