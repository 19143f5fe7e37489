#include "conncheck/privilege.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace conncheck::privilege {
namespace {

struct Capability {
    int number;
    const char* name;
    int also_sufficient = -1; // a capability that grants the same (CAP_DAC_OVERRIDE reads too)
};

// Why root, holding every capability an access takes, can still be refused.
const char* refusal(Access access) {
    return access == Access::process_fds || access == Access::process_maps
               ? "a ptrace restriction or security module"
               : "a security module";
}

std::vector<Capability> capabilities(Access access) {
    switch (access) {
    case Access::process_fds:
        return {{CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
                {CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", CAP_DAC_OVERRIDE}};
    case Access::network_namespace:
        return {{CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}};
    case Access::write_directory:
        return {{CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"}};
    case Access::destroy_sockets:
        return {{CAP_NET_ADMIN, "CAP_NET_ADMIN"}};
    case Access::process_maps:
        return {{CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
                {CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH", CAP_DAC_OVERRIDE}};
    case Access::ebpf_tracing:
        return {{CAP_BPF, "CAP_BPF", CAP_SYS_ADMIN}, {CAP_PERFMON, "CAP_PERFMON", CAP_SYS_ADMIN}};
    }
    return {};
}

// capget(2) directly: libcap is not worth a dependency for reading one bitmask.
bool effective(int capability) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    const auto word = static_cast<std::size_t>(capability / 32);
    return (data[word].effective & (1U << (capability % 32))) != 0;
}

bool held(const Capability& c) {
    return effective(c.number) || (c.also_sufficient >= 0 && effective(c.also_sufficient));
}

} // namespace

std::vector<std::string> required(Access access) {
    std::vector<std::string> names;
    for (const auto& c : capabilities(access))
        names.emplace_back(c.name);
    return names;
}

std::vector<std::string> missing(Access access) {
    std::vector<std::string> names;
    for (const auto& c : capabilities(access))
        if (!held(c)) names.emplace_back(c.name);
    return names;
}

bool granted(Access access) {
    return missing(access).empty();
}

std::string hint(Access access) {
    if (const auto lacking = missing(access); !lacking.empty())
        return fmt::format("needs {}", fmt::join(lacking, " and "));
    const std::string who = ::geteuid() == 0
                                ? std::string("root")
                                : fmt::format("{}", fmt::join(required(access), " and "));
    return fmt::format("refused even {} {}: {}", ::geteuid() == 0 ? "to" : "with", who,
                       refusal(access));
}

} // namespace conncheck::privilege
