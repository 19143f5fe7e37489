// The Symbolizer of a build without libdw: raw addresses.
#include "conncheck/trace/symbolize.hpp"

#include "conncheck/trace/python.hpp"

namespace conncheck::trace {

struct Symbolizer::Impl {};
Symbolizer::Symbolizer() = default;
Symbolizer::~Symbolizer() = default;

bool needs_stack_copy(pid_t) {
    return false;
}

void Symbolizer::prepare(pid_t) {}

std::vector<pid_t> Symbolizer::take_stack_copy_wanted() {
    return {};
}

CallSite Symbolizer::call_site(const Event& opened) {
    CallSite site;
    for (const auto pc : opened.stack) {
        Frame f;
        f.address = pc;
        site.frames.push_back(f);
    }
    site.stops = "built without libdw: no symbols";
    return site;
}

const python::Runtime* Symbolizer::python_runtime(pid_t) {
    return nullptr;
}

} // namespace conncheck::trace

namespace conncheck::trace::python {

std::optional<Runtime> find_runtime(pid_t) {
    return std::nullopt;
}

} // namespace conncheck::trace::python
