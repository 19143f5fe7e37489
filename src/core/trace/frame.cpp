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

// Code the compiler took from a system header (Boost, the C++ standard library's templates) is
// the library's, though it was compiled into the user's binary: the line says where it came from.
bool system_header(std::string_view file) {
    return file.starts_with("/usr/include/");
}

// "asio::connect_op<...>::process<...>" from the whole instantiation, which can run to thousands
// of characters and names nothing the reader needs to find the function. An operator's own angle
// brackets ("operator<<", "operator->") are kept.
std::string without_template_arguments(std::string_view name) {
    std::string out;
    int depth = 0;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (depth == 0 && name.substr(i).starts_with("operator")) {
            std::size_t end = i + 8;
            while (end < name.size() &&
                   std::string_view("<>=-!+*/%&|^~").find(name[end]) != std::string_view::npos)
                ++end;
            out.append(name.substr(i, end - i));
            i = end - 1;
        } else if (name[i] == '<') {
            if (depth++ == 0) out += "<...>";
        } else if (name[i] == '>' && depth > 0) {
            --depth;
        } else if (depth == 0) {
            out += name[i];
        }
    }
    return out;
}

bool user_frame(const Frame& f) {
    switch (f.origin) {
    case FrameOrigin::python:
        return !python_system_file(f.file);
    case FrameOrigin::go:
        return !f.function.empty() && !go_system_function(f.function);
    case FrameOrigin::native:
        return !f.module.empty() && !system_module(f.module) && !system_header(f.file);
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
    return fmt::format("{} ({})", without_template_arguments(f.function), where);
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
