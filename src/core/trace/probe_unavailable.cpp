// The Probe of a build without eBPF (meson -Dbpf=disabled, or its tools missing).
#include "conncheck/trace/probe.hpp"

#include "conncheck/error.hpp"

namespace conncheck::trace {

struct Probe::Impl {};

std::string unavailable_reason() {
    return "this conncheck was built without eBPF support (meson -Dbpf)";
}

Probe::Probe(const ProbeConfig&) {
    throw Error(Errc::source_unavailable, unavailable_reason());
}
Probe::~Probe() = default;
void Probe::add_target(pid_t, std::uint32_t) {}
void Probe::add_python(pid_t, const python::Runtime&) {}
void Probe::follow_accepts() {}
bool Probe::follows_accepts() const {
    return false;
}
int Probe::wait_fd() const {
    return -1;
}
std::size_t Probe::drain(const std::function<void(const Event&)>&) {
    return 0;
}
ProbeCounters Probe::counters() const {
    return {};
}
std::vector<std::uint64_t> Probe::incomplete_connections() const {
    return {};
}
bool Probe::follows_data() const {
    return false;
}

} // namespace conncheck::trace
