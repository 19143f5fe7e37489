#include "conncheck/trace/frame.hpp"

#include <algorithm>
#include <array>
#include <fmt/core.h>

namespace conncheck::trace {

std::string_view origin_name(FrameOrigin origin) {
    switch (origin) {
    case FrameOrigin::native:
        return "native";
    case FrameOrigin::python:
        return "python";
    case FrameOrigin::go:
        return "go";
    }
    return "unknown";
}

std::string_view trust_name(FrameTrust trust) {
    switch (trust) {
    case FrameTrust::exact:
        return "exact";
    case FrameTrust::unwound:
        return "unwound";
    }
    return "unknown";
}

namespace {

std::string_view base_name(std::string_view path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

bool starts_with_any(std::string_view text, std::initializer_list<std::string_view> prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](std::string_view p) { return text.starts_with(p); });
}

bool contains_any(std::string_view text, std::initializer_list<std::string_view> parts) {
    return std::any_of(parts.begin(), parts.end(),
                       [&](std::string_view p) { return text.find(p) != std::string_view::npos; });
}

// libc, the loader, the C++ runtime, the interpreters, and any shared library the system
// installed: the user's code calls into them, the call site is the caller.
bool system_module(std::string_view path) {
    const std::string_view name = base_name(path);
    if (starts_with_any(name, {"python", "node", "libpython", "libnode", "libc.so", "libc-",
                               "ld-linux", "ld64.so", "libpthread", "libstdc++", "libgcc_s"}))
        return true;
    return name.find(".so") != std::string_view::npos &&
           starts_with_any(path, {"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/"});
}

// Go's own packages have no dot in their first path element ("net/http", "runtime",
// "internal/poll"); a module path has one ("github.com/..."). The main package is the user's.
bool go_system_function(std::string_view function) {
    if (function.starts_with("main.")) return false;
    const std::size_t end = function.find_first_of("/.");
    const std::string_view first = function.find('/') != std::string_view::npos
                                       ? function.substr(0, function.find('/'))
                                       : function.substr(0, end);
    return first.find('.') == std::string_view::npos;
}

// The standard library (/usr/lib/python3.11, a pyenv's lib/python3.11), installed packages, and
// frozen modules ("<frozen importlib._bootstrap>").
bool python_system_file(std::string_view file) {
    return file.empty() || file.starts_with('<') ||
           contains_any(file,
                        {"/lib/python", "/lib64/python", "/site-packages/", "/dist-packages/"});
}

bool user_frame(const Frame& f) {
    switch (f.origin) {
    case FrameOrigin::python:
        return !python_system_file(f.file);
    case FrameOrigin::go:
        return !f.function.empty() && !go_system_function(f.function);
    case FrameOrigin::native:
        return !f.module.empty() && !system_module(f.module);
    }
    return false;
}

} // namespace

std::string frame_text(const Frame& f) {
    if (f.origin == FrameOrigin::python) {
        const std::string_view function =
            f.function.empty() ? std::string_view("?") : std::string_view(f.function);
        if (f.line > 0) return fmt::format("{}:{} in {}", f.file, f.line, function);
        return fmt::format("{} in {}", f.file.empty() ? "?" : f.file, function);
    }
    const std::string where = !f.file.empty() && f.line > 0
                                  ? fmt::format("{}:{}", base_name(f.file), f.line)
                                  : std::string(f.module.empty() ? "?" : base_name(f.module));
    if (f.function.empty()) return fmt::format("0x{:x} ({})", f.address, where);
    return fmt::format("{} ({})", f.function, where);
}

bool starts_thread(std::string_view function) {
    static constexpr std::array<std::string_view, 12> starts = {
        "_start",
        "__libc_start_main",
        "__libc_start_call_main",
        "clone",
        "clone3",
        "__clone",
        "__clone3",
        "__clone_internal",
        "start_thread",
        "runtime.goexit",
        "runtime.rt0_go",
        "runtime.mstart",
    };
    // Go's assembly functions are named with their ABI ("runtime.goexit.abi0").
    if (function.ends_with(".abi0")) function.remove_suffix(5);
    return std::find(starts.begin(), starts.end(), function) != starts.end();
}

std::optional<std::size_t> first_user_frame(const CallSite& site) {
    for (std::size_t i = 0; i < site.frames.size(); ++i)
        if (user_frame(site.frames[i])) return i;
    return std::nullopt;
}

} // namespace conncheck::trace
