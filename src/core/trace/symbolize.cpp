#include "conncheck/trace/symbolize.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <fmt/core.h>
#include <gelf.h>
#include <linux/types.h>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unistd.h>
#include <utility>

extern "C" {
#include "trace_event.h"
}

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

// The source file and line of `pc`. libdw finds the compile unit through .debug_aranges, which
// clang does not emit by default; without them every compile unit is asked whether it covers
// `pc`.
void source_line(Dwfl_Module* module, std::uint64_t pc, Frame& frame) {
    int lineno = 0;
    if (Dwfl_Line* line = dwfl_module_getsrc(module, pc)) {
        if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
            frame.file = file;
            frame.line = lineno;
            return;
        }
    }
    Dwarf_Addr bias = 0;
    for (Dwarf_Die* cu = dwfl_module_nextcu(module, nullptr, &bias); cu != nullptr;
         cu = dwfl_module_nextcu(module, cu, &bias)) {
        if (dwarf_haspc(cu, pc - bias) != 1) continue;
        Dwarf_Line* line = dwarf_getsrc_die(cu, pc - bias);
        const char* file = line ? dwarf_linesrc(line, nullptr, nullptr) : nullptr;
        if (file && dwarf_lineno(line, &lineno) == 0) {
            frame.file = file;
            frame.line = lineno;
        }
        return;
    }
}

// Go binaries carry their own symbol table (.gopclntab) and keep frame pointers in every
// function on amd64; their unwind rules are stack-pointer based all the same.
bool is_go(Dwfl_Module* module) {
    GElf_Addr bias = 0;
    Elf* elf = dwfl_module_getelf(module, &bias);
    std::size_t names = 0;
    if (!elf || elf_getshdrstrndx(elf, &names) != 0) return false;
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr header{};
        if (!gelf_getshdr(scn, &header)) continue;
        const char* name = elf_strptr(elf, names, header.sh_name);
        if (name &&
            (std::strcmp(name, ".gopclntab") == 0 || std::strcmp(name, ".go.buildinfo") == 0))
            return true;
    }
    return false;
}

std::string module_path(Dwfl_Module* module);

// Whether most of a module's functions keep a frame pointer: their CFA, past the prologue, is
// found from rbp. Sampled in up to 200 of its own functions.
bool keeps_frame_pointers(Dwfl_Module* module) {
    const int symbols = dwfl_module_getsymtab(module);
    int sampled = 0;
    int with_rbp = 0;
    for (int i = 1; i < symbols && sampled < 200; ++i) {
        GElf_Sym sym{};
        GElf_Addr addr = 0;
        const char* name =
            dwfl_module_getsym_info(module, i, &sym, &addr, nullptr, nullptr, nullptr);
        if (!name || GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size < 32) continue;
        // The C runtime's start-up code linked into every program is the toolchain's, built
        // without frame pointers whatever the program asked for.
        const std::string_view n = name;
        if (n.starts_with('_') || n == "deregister_tm_clones" || n == "register_tm_clones" ||
            n == "frame_dummy")
            continue;
        // gcc -O2 may place an epilogue mid-function: a function keeps a frame pointer when its
        // frame is found from rbp at any of three points.
        bool known = false;
        bool rbp = false;
        for (const std::uint64_t quarter : {1, 2, 3}) {
            const CfaRule rule = cfa_rule(module, addr + sym.st_size * quarter / 4);
            known = known || rule.base != CfaRule::Base::unknown;
            rbp = rbp || rule.base == CfaRule::Base::rbp;
        }
        if (!known) continue;
        ++sampled;
        if (rbp) ++with_rbp;
    }
    return sampled > 0 && with_rbp * 2 > sampled;
}

std::string module_path(Dwfl_Module* module) {
    const char* path = nullptr;
    const char* name =
        dwfl_module_info(module, nullptr, nullptr, nullptr, nullptr, nullptr, &path, nullptr);
    return path ? path : name ? name : "";
}

// node runs connect() from its event loop, on a later tick than the JavaScript that asked for
// it: the stack holds libuv and V8, never the caller.
bool is_node(std::string_view path) {
    const std::string_view name = path.substr(path.rfind('/') + 1);
    return name == "node" || name == "nodejs" || name.starts_with("libnode.so");
}

// What libdwfl's unwinder reads while a table walk runs: one thread, its registers, the copy of
// its stack.
struct UnwindSample {
    const Event* event = nullptr;
    bool listed = false;            // next_thread() named the thread
    std::uint64_t outside_copy = 0; // an address read beyond the copy, 0 none
};

} // namespace

struct Symbolizer::Impl {
    std::map<pid_t, Dwfl*> sessions;
    // The same code opens connection after connection: names and unwind rules are looked up in
    // libdw once per address.
    std::map<std::pair<pid_t, std::uint64_t>, Frame> names;
    std::map<std::pair<pid_t, std::uint64_t>, CfaRule> rules;
    std::map<std::string, bool> go_modules;

    struct PythonProcess {
        std::optional<python::Runtime> runtime;
        std::unique_ptr<python::ProcessMemory> memory;
        std::unique_ptr<python::CodeReader> reader;
    };
    std::map<pid_t, PythonProcess> pythons;

    PythonProcess& python(pid_t pid) {
        auto [it, fresh] = pythons.try_emplace(pid);
        PythonProcess& p = it->second;
        if (fresh) {
            p.runtime = python::find_runtime(pid);
            if (p.runtime) {
                p.memory = std::make_unique<python::ProcessMemory>(pid);
                p.reader = std::make_unique<python::CodeReader>(*p.memory, *p.runtime);
            }
        }
        return p;
    }

    // The Python frames in the place of the evaluation loop that ran them. The interpreter's
    // frame chain reaches the thread's first Python frame: the call site is complete when the
    // chain was read whole, whatever the native walk found.
    void add_python_frames(const Event& e, CallSite& site) {
        PythonProcess& p = python(e.pid);
        if (!p.runtime) return;
        if (!p.runtime->offsets) {
            site.note = python::unsupported_reason(*p.runtime);
            return;
        }
        if (e.python_status == PythonStatus::none) return;
        const python::PythonStack py = python::python_stack(*p.reader, e);
        if (py.frames.empty() && py.stops.empty()) return;
        site.frames = python::splice(site.frames, py);
        // The interpreter's own frames name the caller: a stack copy would cost more for nothing.
        want_copy.erase(e.pid);
        site.complete = py.stops.empty();
        site.stops = py.stops.empty() ? std::string() : "Python frames: " + py.stops;
    }

    ~Impl() {
        for (auto& [pid, dwfl] : sessions)
            dwfl_end(dwfl);
    }

    Dwfl* report(pid_t pid, bool fresh) {
        auto it = sessions.find(pid);
        if (it != sessions.end() && !fresh) return it->second;
        if (it != sessions.end()) {
            attached.erase(it->second);
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

    bool go(Dwfl_Module* module) {
        const std::string path = module_path(module);
        if (const auto it = go_modules.find(path); it != go_modules.end()) return it->second;
        return go_modules[path] = is_go(module);
    }

    Frame frame(pid_t pid, Dwfl_Module* module, std::uint64_t lookup) {
        const auto key = std::make_pair(pid, lookup);
        if (const auto it = names.find(key); it != names.end()) return it->second;
        return names[key] = describe(module, lookup);
    }

    Frame describe(Dwfl_Module* module, std::uint64_t lookup) {
        Frame f;
        f.address = lookup;
        if (!module) return f;
        f.module = module_path(module);
        if (go(module)) f.origin = FrameOrigin::go;
        GElf_Off offset = 0;
        GElf_Sym sym{};
        if (const char* symbol =
                dwfl_module_addrinfo(module, lookup, &offset, &sym, nullptr, nullptr, nullptr))
            f.function = f.origin == FrameOrigin::go ? std::string(symbol) : demangle(symbol);
        // A versioned symbol of the dynamic table: "__libc_start_main@@GLIBC_2.34".
        if (const auto at = f.function.find('@'); at != std::string::npos && at > 0)
            f.function.resize(at);
        source_line(module, lookup, f);
        return f;
    }

    // The frame-pointer walk the kernel made, checked against the unwind rules.
    CallSite frame_pointer_walk(const Event& e);
    // The walk from the registers and the copied stack through the unwind tables.
    CallSite table_walk(const Event& e);

    UnwindSample sample;
    std::set<Dwfl*> attached;
    std::set<pid_t> want_copy;
};

Symbolizer::Symbolizer() : impl_(std::make_unique<Impl>()) {}
Symbolizer::~Symbolizer() = default;

namespace {

// Ends a walk: complete when its last frame starts the thread, else stopped for `why`.
void finish(CallSite& site, std::string why) {
    if (!site.frames.empty() && starts_thread(site.frames.back().function)) {
        site.complete = true;
        site.stops.clear();
        return;
    }
    site.stops = std::move(why);
}

} // namespace

CallSite Symbolizer::Impl::frame_pointer_walk(const Event& e) {
    CallSite site;
    // stack[0] is where the thread entered the kernel: inside the libc wrapper (or Go's
    // syscall stub), which keeps no frame pointer, so stack[1] (read through the frame pointer)
    // already belongs to the caller's caller. The wrapper's unwind rule finds the caller's
    // return address in the copied stack.
    const std::uint64_t pc = e.stack[0];
    Dwfl_Module* module = module_of(e.pid, pc);
    site.frames.push_back(frame(e.pid, module, pc));
    if (!module) {
        site.stops = "the process's mappings are gone";
        return site;
    }
    const bool go_stub = site.frames.back().origin == FrameOrigin::go;
    std::vector<std::uint64_t> returns;
    const CfaRule first = rule(e.pid, module, pc);
    if (first.base == CfaRule::Base::rsp) {
        const std::int64_t at = first.offset - 8; // the return address sits just below the CFA
        if (at < 0 || static_cast<std::size_t>(at) + 8 > e.stack_bytes.size()) {
            site.stops = "the caller's return address is beyond the copied stack";
            return site;
        }
        std::uint64_t ra = 0;
        std::memcpy(&ra, e.stack_bytes.data() + at, sizeof ra);
        returns.push_back(ra);
    } else if (first.base == CfaRule::Base::unknown && !go_stub) {
        site.stops = "no unwind information where the system call was made";
        return site;
    }
    for (std::size_t next = 1; next < e.stack.size(); ++next)
        returns.push_back(e.stack[next]);
    if (returns.empty()) {
        site.stops = "no return address beyond the system call";
        return site;
    }

    // Each return address's function must keep a frame pointer for the next one to be its
    // caller. Go keeps one in every function, though its unwind rules are based on the stack
    // pointer: its frames are trusted as they are.
    for (std::size_t i = 0; i < returns.size(); ++i) {
        const std::uint64_t lookup = returns[i] - 1; // inside the call instruction
        Dwfl_Module* m = module_of(e.pid, lookup);
        site.frames.push_back(frame(e.pid, m, lookup));
        if (starts_thread(site.frames.back().function)) break;
        if (i + 1 == returns.size()) {
            finish(site, e.stack.size() >= CC_STACK_FRAMES
                             ? "the stack is deeper than the frames the kernel records"
                             : "the frame-pointer chain ends here");
            return site;
        }
        if (site.frames.back().origin == FrameOrigin::go) continue;
        if (rule(e.pid, m, lookup).base != CfaRule::Base::rbp) {
            finish(site, "no frame pointer beyond this frame: its callers are unknown");
            return site;
        }
    }
    finish(site, {});
    return site;
}

namespace {

// libdwfl's unwinder reads memory and the first registers through these: from the copy of the
// stack and the registers the kernel recorded at the system call, never from the live process.
pid_t next_thread(Dwfl*, void* arg, void** thread_arg) {
    auto* sample = static_cast<UnwindSample*>(arg);
    if (sample->listed) return 0;
    sample->listed = true;
    *thread_arg = arg;
    return sample->event->tid != 0 ? sample->event->tid : sample->event->pid;
}

bool get_thread(Dwfl*, pid_t, void* arg, void** thread_arg) {
    *thread_arg = arg;
    return true;
}

bool memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* arg) {
    auto* sample = static_cast<UnwindSample*>(arg);
    const Event& e = *sample->event;
    const std::uint64_t base = e.registers->sp;
    if (addr < base || addr - base + sizeof(Dwarf_Word) > e.stack_bytes.size()) {
        sample->outside_copy = addr;
        return false;
    }
    std::memcpy(result, e.stack_bytes.data() + (addr - base), sizeof(Dwarf_Word));
    return true;
}

bool set_initial_registers(Dwfl_Thread* thread, void* arg) {
    const UserRegisters& r = *static_cast<UnwindSample*>(arg)->event->registers;
    // x86-64 DWARF numbers: rbx 3, rbp 6, rsp 7, r12-r15 12-15.
    const Dwarf_Word bx = r.bx;
    const Dwarf_Word bp_sp[2] = {r.bp, r.sp};
    const Dwarf_Word r12_r15[4] = {r.r12, r.r13, r.r14, r.r15};
    if (!dwfl_thread_state_registers(thread, 3, 1, &bx) ||
        !dwfl_thread_state_registers(thread, 6, 2, bp_sp) ||
        !dwfl_thread_state_registers(thread, 12, 4, r12_r15))
        return false;
    dwfl_thread_state_register_pc(thread, r.ip);
    return true;
}

const Dwfl_Thread_Callbacks thread_callbacks = {
    next_thread, get_thread, memory_read, set_initial_registers, nullptr, nullptr,
};

struct Unwound {
    std::vector<std::uint64_t> lookups; // pc of the first frame, then return addresses - 1
};

int on_frame(Dwfl_Frame* state, void* arg) {
    Dwarf_Addr pc = 0;
    bool activation = false;
    if (!dwfl_frame_pc(state, &pc, &activation)) return DWARF_CB_ABORT;
    auto* out = static_cast<Unwound*>(arg);
    out->lookups.push_back(activation ? pc : pc - 1);
    return out->lookups.size() < 256 ? DWARF_CB_OK : DWARF_CB_ABORT;
}

} // namespace

CallSite Symbolizer::Impl::table_walk(const Event& e) {
    CallSite site;
    Dwfl* dwfl = report(e.pid, false);
    if (!dwfl) {
        site.stops = "the process's mappings are gone";
        return site;
    }
    if (!attached.contains(dwfl)) {
        if (!dwfl_attach_state(dwfl, nullptr, e.pid, &thread_callbacks, &sample)) {
            site.stops = fmt::format("cannot unwind: {}", dwfl_errmsg(-1));
            return site;
        }
        attached.insert(dwfl);
    }
    sample = UnwindSample{&e, false, 0};
    Unwound unwound;
    const pid_t tid = e.tid != 0 ? e.tid : e.pid;
    const int result = dwfl_getthread_frames(dwfl, tid, on_frame, &unwound);
    const std::string error = result != 0 ? dwfl_errmsg(-1) : "";
    for (std::size_t i = 0; i < unwound.lookups.size(); ++i) {
        const std::uint64_t lookup = unwound.lookups[i];
        Frame f = frame(e.pid, module_of(e.pid, lookup), lookup);
        // A frame the frame-pointer walk found too is exact; the others come from the tables.
        const bool walked =
            i == 0 ? !e.stack.empty() && e.stack[0] == lookup
                   : std::find(e.stack.begin(), e.stack.end(), lookup + 1) != e.stack.end();
        f.trust = walked ? FrameTrust::exact : FrameTrust::unwound;
        site.frames.push_back(std::move(f));
    }
    // libdwfl also ends quietly when a read fails: only a thread's start makes it complete.
    if (sample.outside_copy != 0)
        finish(site, fmt::format("the caller's frame is beyond the {} bytes of stack copied",
                                 e.stack_bytes.size()));
    else if (result != 0)
        finish(site, fmt::format("the unwind tables end here ({})", error));
    else
        finish(site, "the unwind tables give no caller beyond this frame");
    return site;
}

std::vector<pid_t> Symbolizer::take_stack_copy_wanted() {
    std::vector<pid_t> out(impl_->want_copy.begin(), impl_->want_copy.end());
    impl_->want_copy.clear();
    return out;
}

bool needs_stack_copy(pid_t pid) {
    Dwfl* dwfl = dwfl_begin(&callbacks);
    if (!dwfl) return false;
    dwfl_report_begin(dwfl);
    const int err = dwfl_linux_proc_report(dwfl, pid);
    dwfl_report_end(dwfl, nullptr, nullptr);
    bool copy = false;
    char exe[64];
    std::snprintf(exe, sizeof exe, "/proc/%d/exe", static_cast<int>(pid));
    char target[4096];
    const ssize_t n = ::readlink(exe, target, sizeof target - 1);
    if (err == 0 && n > 0) {
        target[n] = '\0';
        struct Search {
            const char* path;
            Dwfl_Module* found = nullptr;
        } search{target};
        dwfl_getmodules(
            dwfl,
            [](Dwfl_Module* m, void**, const char*, Dwarf_Addr, void* arg) -> int {
                auto* s = static_cast<Search*>(arg);
                if (module_path(m) != s->path) return DWARF_CB_OK;
                s->found = m;
                return DWARF_CB_ABORT;
            },
            &search, 0);
        if (search.found && !is_go(search.found) && !is_node(target) &&
            !std::string_view(target)
                 .substr(std::string_view(target).rfind('/') + 1)
                 .starts_with("python"))
            copy = !keeps_frame_pointers(search.found);
    }
    dwfl_end(dwfl);
    return copy;
}

void Symbolizer::prepare(pid_t pid) {
    Dwfl* dwfl = impl_->report(pid, false);
    if (!dwfl) return;
    dwfl_getmodules(
        dwfl,
        [](Dwfl_Module* m, void**, const char*, Dwarf_Addr, void*) -> int {
            Dwarf_Addr bias = 0;
            (void)dwfl_module_getsymtab(m);
            if (!dwfl_module_eh_cfi(m, &bias)) (void)dwfl_module_dwarf_cfi(m, &bias);
            if (Dwarf* dwarf = dwfl_module_getdwarf(m, &bias)) {
                Dwarf_Aranges* aranges = nullptr;
                (void)dwarf_getaranges(dwarf, &aranges, nullptr);
            }
            return DWARF_CB_OK;
        },
        nullptr, 0);
}

CallSite Symbolizer::call_site(const Event& e) {
    if (e.stack.empty()) {
        CallSite site;
        site.stops = e.stack_error != 0 ? fmt::format("no user stack ({})", -e.stack_error)
                                        : "no user stack";
        impl_->add_python_frames(e, site);
        return site;
    }
    CallSite site = impl_->frame_pointer_walk(e);
    if (e.registers && !e.stack_bytes.empty()) {
        // Where the frame pointers end early, the tables go on from the same registers.
        CallSite tables = impl_->table_walk(e);
        if (!site.complete && (tables.complete || tables.frames.size() > site.frames.size()))
            site = std::move(tables);
    } else if (!site.complete && site.stops.starts_with("no frame pointer") &&
               site.frames.size() > 1 && site.frames.back().origin == FrameOrigin::native &&
               !site.frames.back().module.empty()) {
        impl_->want_copy.insert(e.pid);
    }
    impl_->add_python_frames(e, site);
    if (std::any_of(site.frames.begin(), site.frames.end(),
                    [](const Frame& f) { return is_node(f.module); })) {
        CallSite node;
        node.stops = "node.js: connect() runs from the event loop after the JavaScript call "
                     "returned, so no frame names the code that asked (out of scope)";
        return node;
    }
    for (const Frame& f : site.frames)
        if (f.function == "net/http.(*Transport).dialConnFor") {
            site.note = "net/http dials in a goroutine of its own: these are the transport's "
                        "frames, the request's caller is on another goroutine";
            break;
        }
    return site;
}

const python::Runtime* Symbolizer::python_runtime(pid_t pid) {
    const auto& runtime = impl_->python(pid).runtime;
    return runtime ? &*runtime : nullptr;
}

} // namespace conncheck::trace
