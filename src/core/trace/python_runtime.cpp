// find_runtime(): the CPython interpreter of a process, from the dynamic symbols of the files it
// maps (elfutils libdwfl).
#include "conncheck/trace/python.hpp"

#include <charconv>
#include <cstring>
#include <elfutils/libdwfl.h>
#include <string_view>

namespace conncheck::trace::python {

namespace {

// The dynamic symbols are enough: no debug information is looked for.
int no_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*, GElf_Word,
                 char**) {
    return -1;
}

const Dwfl_Callbacks callbacks = {
    dwfl_linux_proc_find_elf,
    no_debuginfo,
    nullptr,
    nullptr,
};

struct Found {
    Dwfl_Module* module = nullptr;
    std::uint64_t runtime = 0;
    std::uint64_t version = 0; // the address of Py_Version
    std::uint64_t code_type = 0;
};

int visit(Dwfl_Module* module, void**, const char*, Dwarf_Addr, void* arg) {
    auto* found = static_cast<Found*>(arg);
    Found here;
    here.module = module;
    const int count = dwfl_module_getsymtab(module);
    for (int i = 1; i < count; ++i) {
        GElf_Sym sym{};
        GElf_Addr address = 0;
        const char* name =
            dwfl_module_getsym_info(module, i, &sym, &address, nullptr, nullptr, nullptr);
        if (!name || sym.st_shndx == SHN_UNDEF) continue;
        if (std::strcmp(name, "_PyRuntime") == 0) here.runtime = address;
        if (std::strcmp(name, "Py_Version") == 0) here.version = address;
        if (std::strcmp(name, "PyCode_Type") == 0) here.code_type = address;
    }
    if (here.runtime == 0) return DWARF_CB_OK;
    *found = here;
    return DWARF_CB_ABORT;
}

// "3.10" in "libpython3.10.so.1.0" or "python3.10": for versions before Py_Version existed.
Version version_from_name(std::string_view path) {
    Version v;
    const std::size_t slash = path.rfind('/');
    std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
    const std::size_t at = name.find("python3.");
    if (at == std::string_view::npos) return v;
    name.remove_prefix(at + 8);
    int minor = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), minor);
    if (ec == std::errc() && end != name.data()) v = {3, minor, 0};
    return v;
}

} // namespace

std::optional<Runtime> find_runtime(pid_t pid) {
    Dwfl* dwfl = dwfl_begin(&callbacks);
    if (!dwfl) return std::nullopt;
    dwfl_report_begin(dwfl);
    const int err = dwfl_linux_proc_report(dwfl, pid);
    dwfl_report_end(dwfl, nullptr, nullptr);
    Found found;
    if (err == 0) dwfl_getmodules(dwfl, visit, &found, 0);
    std::optional<Runtime> runtime;
    if (found.runtime != 0) {
        Runtime r;
        r.runtime = found.runtime;
        r.code_type = found.code_type;
        const char* path = nullptr;
        dwfl_module_info(found.module, nullptr, nullptr, nullptr, nullptr, nullptr, &path, nullptr);
        r.module = path ? path : "";
        // Py_Version (3.11+) is PY_VERSION_HEX: 0x030B02F0 is 3.11.2 final.
        std::uint64_t hex = 0;
        ProcessMemory memory(pid);
        if (found.version != 0 &&
            memory.read(found.version, std::as_writable_bytes(std::span(&hex, 1))))
            r.version = {static_cast<int>(hex >> 24 & 0xff), static_cast<int>(hex >> 16 & 0xff),
                         static_cast<int>(hex >> 8 & 0xff)};
        else
            r.version = version_from_name(r.module);
        r.offsets = offsets_for(r.version.major, r.version.minor);
        runtime = std::move(r);
    }
    dwfl_end(dwfl);
    return runtime;
}

} // namespace conncheck::trace::python
