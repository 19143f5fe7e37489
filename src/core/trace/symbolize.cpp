#include "conncheck/trace/symbolize.hpp"

#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <fmt/core.h>
#include <map>
#include <optional>
#include <string>
#include <utility>

namespace conncheck::trace {

namespace {

// x86_64 DWARF register numbers.
constexpr unsigned dwarf_rbp = 6;
constexpr unsigned dwarf_rsp = 7;

const Dwfl_Callbacks callbacks = {
    dwfl_linux_proc_find_elf,
    dwfl_standard_find_debuginfo,
    nullptr,
    nullptr,
};

// "ns::Class::method" from "ns::Class::method(int, char const*) const": the parameters make a
// C++ frame unreadable and add nothing to where it is.
std::string demangle(const char* name) {
    int status = 0;
    char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status != 0 || !out) return name;
    std::string result(out);
    std::free(out);
    const std::size_t close = result.rfind(')');
    if (close == std::string::npos) return result;
    int depth = 0;
    for (std::size_t i = close + 1; i-- > 0;) {
        if (result[i] == ')') ++depth;
        if (result[i] == '(' && --depth == 0) return result.substr(0, i);
    }
    return result;
}

std::string base_name(const char* path) {
    if (!path) return "?";
    const char* slash = std::strrchr(path, '/');
    return slash ? slash + 1 : path;
}

// How the canonical frame address is found at `pc`: from the stack pointer plus an offset (the
// function keeps no frame pointer there), from the frame pointer, or unknown.
struct CfaRule {
    enum class Base { unknown, rsp, rbp } base = Base::unknown;
    std::int64_t offset = 0;
};

CfaRule cfa_rule(Dwfl_Module* module, std::uint64_t pc) {
    CfaRule rule;
    Dwarf_Addr bias = 0;
    Dwarf_CFI* cfi = dwfl_module_eh_cfi(module, &bias);
    if (!cfi) cfi = dwfl_module_dwarf_cfi(module, &bias);
    if (!cfi) return rule;
    Dwarf_Frame* frame = nullptr;
    if (dwarf_cfi_addrframe(cfi, pc - bias, &frame) != 0) return rule;
    Dwarf_Op* ops = nullptr;
    std::size_t nops = 0;
    if (dwarf_frame_cfa(frame, &ops, &nops) == 0 && nops == 1) {
        unsigned reg = 0;
        std::int64_t offset = 0;
        bool known = true;
        if (ops[0].atom == DW_OP_bregx) {
            reg = static_cast<unsigned>(ops[0].number);
            offset = static_cast<std::int64_t>(ops[0].number2);
        } else if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
            reg = ops[0].atom - DW_OP_breg0;
            offset = static_cast<std::int64_t>(ops[0].number);
        } else {
            known = false;
        }
        if (known && reg == dwarf_rsp) rule = {CfaRule::Base::rsp, offset};
        if (known && reg == dwarf_rbp) rule = {CfaRule::Base::rbp, offset};
    }
    std::free(frame);
    return rule;
}

// "file.cpp:42" for `pc`. libdw finds the compile unit through .debug_aranges, which clang
// does not emit by default; without them every compile unit is asked whether it covers `pc`.
std::optional<std::string> source_line(Dwfl_Module* module, std::uint64_t pc) {
    int lineno = 0;
    if (Dwfl_Line* line = dwfl_module_getsrc(module, pc)) {
        if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr))
            return fmt::format("{}:{}", base_name(file), lineno);
    }
    Dwarf_Addr bias = 0;
    for (Dwarf_Die* cu = dwfl_module_nextcu(module, nullptr, &bias); cu != nullptr;
         cu = dwfl_module_nextcu(module, cu, &bias)) {
        if (dwarf_haspc(cu, pc - bias) != 1) continue;
        Dwarf_Line* line = dwarf_getsrc_die(cu, pc - bias);
        const char* file = line ? dwarf_linesrc(line, nullptr, nullptr) : nullptr;
        if (file && dwarf_lineno(line, &lineno) == 0)
            return fmt::format("{}:{}", base_name(file), lineno);
        return std::nullopt;
    }
    return std::nullopt;
}

} // namespace

struct Symbolizer::Impl {
    std::map<pid_t, Dwfl*> sessions;
    // The same code opens connection after connection: names and unwind rules are looked up in
    // libdw once per address.
    std::map<std::pair<pid_t, std::uint64_t>, std::string> names;
    std::map<std::pair<pid_t, std::uint64_t>, CfaRule> rules;

    ~Impl() {
        for (auto& [pid, dwfl] : sessions)
            dwfl_end(dwfl);
    }

    Dwfl* report(pid_t pid, bool fresh) {
        auto it = sessions.find(pid);
        if (it != sessions.end() && !fresh) return it->second;
        if (it != sessions.end()) {
            dwfl_end(it->second);
            sessions.erase(it);
        }
        Dwfl* dwfl = dwfl_begin(&callbacks);
        if (!dwfl) return nullptr;
        dwfl_report_begin(dwfl);
        const int err = dwfl_linux_proc_report(dwfl, pid);
        dwfl_report_end(dwfl, nullptr, nullptr);
        if (err != 0) {
            dwfl_end(dwfl);
            return nullptr;
        }
        sessions[pid] = dwfl;
        return dwfl;
    }

    // The module holding `pc`; the mappings are read again once when a library was loaded later.
    Dwfl_Module* module_of(pid_t pid, std::uint64_t pc) {
        Dwfl* dwfl = report(pid, false);
        Dwfl_Module* m = dwfl ? dwfl_addrmodule(dwfl, pc) : nullptr;
        if (!m && (dwfl = report(pid, true))) m = dwfl_addrmodule(dwfl, pc);
        return m;
    }

    CfaRule rule(pid_t pid, Dwfl_Module* module, std::uint64_t pc) {
        const auto key = std::make_pair(pid, pc);
        if (const auto it = rules.find(key); it != rules.end()) return it->second;
        return rules[key] = module ? cfa_rule(module, pc) : CfaRule{};
    }

    std::string name(pid_t pid, Dwfl_Module* module, std::uint64_t lookup) {
        const auto key = std::make_pair(pid, lookup);
        if (const auto it = names.find(key); it != names.end()) return it->second;
        return names[key] = describe(module, lookup);
    }

    // "open_feed (client.cpp:42)", "connect (libc.so.6)", or the address when nothing is known.
    static std::string describe(Dwfl_Module* module, std::uint64_t lookup) {
        if (!module) return fmt::format("0x{:x}", lookup);
        GElf_Off offset = 0;
        GElf_Sym sym{};
        const char* symbol =
            dwfl_module_addrinfo(module, lookup, &offset, &sym, nullptr, nullptr, nullptr);
        const char* module_path = nullptr;
        dwfl_module_info(module, nullptr, nullptr, nullptr, nullptr, nullptr, &module_path,
                         nullptr);
        std::string where = base_name(module_path);
        if (const auto line = source_line(module, lookup)) where = *line;
        return symbol ? fmt::format("{} ({})", demangle(symbol), where)
                      : fmt::format("0x{:x} ({})", lookup, where);
    }
};

Symbolizer::Symbolizer() : impl_(std::make_unique<Impl>()) {}
Symbolizer::~Symbolizer() = default;

CallSite Symbolizer::call_site(const Event& e) {
    CallSite site;
    if (e.stack.empty()) {
        site.stops = e.stack_error != 0 ? fmt::format("no user stack ({})", -e.stack_error)
                                        : "no user stack";
        return site;
    }
    // stack[0] is where the thread entered the kernel: inside the libc wrapper, which keeps no
    // frame pointer, so stack[1] (read through the frame pointer) already belongs to the caller's
    // caller. The wrapper's unwind rule finds the caller's return address in the copied stack.
    const std::uint64_t pc = e.stack[0];
    Dwfl_Module* module = impl_->module_of(e.pid, pc);
    site.frames.push_back(impl_->name(e.pid, module, pc));
    if (!module) {
        site.stops = "the process's mappings are gone";
        return site;
    }
    std::vector<std::uint64_t> returns;
    const CfaRule first = impl_->rule(e.pid, module, pc);
    std::size_t next = 1;
    if (first.base == CfaRule::Base::rsp) {
        const std::int64_t at = first.offset - 8; // the return address sits just below the CFA
        if (at < 0 || static_cast<std::size_t>(at) + 8 > e.stack_bytes.size()) {
            site.stops = "the caller's return address is beyond the copied stack";
            return site;
        }
        std::uint64_t ra = 0;
        std::memcpy(&ra, e.stack_bytes.data() + at, sizeof ra);
        returns.push_back(ra);
    } else if (first.base == CfaRule::Base::unknown) {
        site.stops = "no unwind information where the system call was made";
        return site;
    }
    for (; next < e.stack.size(); ++next)
        returns.push_back(e.stack[next]);

    // Each return address's function must keep a frame pointer for the next one to be its caller.
    for (std::size_t i = 0; i < returns.size(); ++i) {
        const std::uint64_t lookup = returns[i] - 1; // inside the call instruction
        Dwfl_Module* m = impl_->module_of(e.pid, lookup);
        site.frames.push_back(impl_->name(e.pid, m, lookup));
        if (i + 1 == returns.size()) break;
        const CfaRule rule = impl_->rule(e.pid, m, lookup);
        if (rule.base != CfaRule::Base::rbp) {
            site.stops = "no frame pointer beyond this frame: its callers are unknown";
            break;
        }
    }
    return site;
}

} // namespace conncheck::trace
