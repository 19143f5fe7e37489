#include "conncheck/trace/python.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <fmt/core.h>
#include <linux/types.h>
#include <sys/uio.h>

extern "C" {
#include "trace_event.h"
}

namespace conncheck::trace::python {

namespace {

// One row per minor version. 3.11: Debian 12's 3.11.2, checked field by field with
// tests/live/python_offsets_test.py.
constexpr std::array<Offsets, 1> offsets_table = {{
    {.major = 3,
     .minor = 11,
     .interpreters_head = 40,
     .threads_head = 16,
     .thread_next = 8,
     .thread_native_id = 160,
     .thread_cframe = 56,
     .cframe_current = 8,
     .frame_code = 32,
     .frame_previous = 48,
     .frame_instr = 56,
     .frame_is_entry = 68,
     .code_filename = 112,
     .code_qualname = 128,
     .code_firstlineno = 72,
     .code_linetable = 136,
     .code_firsttraceable = 168,
     .code_instructions = 184,
     .object_type = 8,
     .unicode_length = 16,
     .unicode_state = 32,
     .unicode_ascii_data = 48,
     .unicode_compact_data = 72,
     .bytes_size = 16,
     .bytes_data = 32},
}};

// Longer names or line tables than these are taken for garbage, not code.
constexpr std::uint64_t max_string_chars = 4096;
constexpr std::uint64_t max_line_table = 1 << 16;

template <typename T> bool read_value(Memory& memory, std::uint64_t address, T& out) {
    return memory.read(address, std::as_writable_bytes(std::span(&out, 1)));
}

void append_utf8(std::string& out, std::uint32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xc0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xe0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    }
}

// A str object (PEP 393 compact form, as every code object's names are) as UTF-8.
std::optional<std::string> read_str(Memory& memory, const Offsets& o, std::uint64_t object) {
    std::int64_t length = 0;
    std::uint32_t state = 0;
    if (!object || !read_value(memory, object + o.unicode_length, length) ||
        !read_value(memory, object + o.unicode_state, state))
        return std::nullopt;
    // state: interned:2, kind:3, compact:1, ascii:1, ready:1
    const unsigned kind = (state >> 2) & 7;
    const bool compact = (state >> 5) & 1;
    const bool ascii = (state >> 6) & 1;
    if (!compact || length < 0 || static_cast<std::uint64_t>(length) > max_string_chars ||
        (kind != 1 && kind != 2 && kind != 4))
        return std::nullopt;
    const auto n = static_cast<std::size_t>(length);
    std::vector<std::byte> raw(n * kind);
    const std::uint64_t data = object + (ascii ? o.unicode_ascii_data : o.unicode_compact_data);
    if (!memory.read(data, raw)) return std::nullopt;
    std::string out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint32_t c = 0;
        std::memcpy(&c, raw.data() + i * kind, kind); // little-endian code units
        append_utf8(out, c);
    }
    return out;
}

std::optional<std::vector<std::uint8_t>> read_bytes(Memory& memory, const Offsets& o,
                                                    std::uint64_t object) {
    std::int64_t size = 0;
    if (!object || !read_value(memory, object + o.bytes_size, size) || size < 0 ||
        static_cast<std::uint64_t>(size) > max_line_table)
        return std::nullopt;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(size));
    if (!memory.read(object + o.bytes_data, std::as_writable_bytes(std::span(out))))
        return std::nullopt;
    return out;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

} // namespace

const Offsets* offsets_for(int major, int minor) {
    for (const auto& row : offsets_table)
        if (row.major == major && row.minor == minor) return &row;
    return nullptr;
}

std::string unsupported_reason(const Runtime& runtime) {
    if (runtime.offsets) return {};
    if (runtime.version.major == 0) return "CPython of an unknown version: no frame offsets for it";
    return fmt::format("CPython {}.{}: no frame offsets for this version", runtime.version.major,
                       runtime.version.minor);
}

bool ProcessMemory::read(std::uint64_t address, std::span<std::byte> out) {
    if (out.empty()) return true;
    iovec local{out.data(), out.size()};
    iovec remote{reinterpret_cast<void*>(address), out.size()};
    return ::process_vm_readv(pid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(out.size());
}

void SnapshotMemory::add(std::uint64_t address, std::span<const std::byte> bytes) {
    auto& range = ranges_[address];
    if (range.size() <= bytes.size()) range.assign(bytes.begin(), bytes.end());
}

bool SnapshotMemory::read(std::uint64_t address, std::span<std::byte> out) {
    auto it = ranges_.upper_bound(address);
    while (it != ranges_.begin()) {
        --it;
        const std::uint64_t start = it->first;
        const auto& bytes = it->second;
        if (address >= start && address - start + out.size() <= bytes.size()) {
            std::copy_n(bytes.begin() + static_cast<std::ptrdiff_t>(address - start), out.size(),
                        out.begin());
            return true;
        }
    }
    return false;
}

std::string SnapshotMemory::text() const {
    std::string out;
    for (const auto& [address, bytes] : ranges_) {
        out += fmt::format("{:x} ", address);
        for (const std::byte b : bytes)
            out += fmt::format("{:02x}", static_cast<unsigned>(b));
        out += '\n';
    }
    return out;
}

std::optional<SnapshotMemory> SnapshotMemory::parse(std::string_view text) {
    SnapshotMemory memory;
    while (!text.empty()) {
        const std::size_t end = std::min(text.find('\n'), text.size());
        const std::string_view line = text.substr(0, end);
        text.remove_prefix(std::min(end + 1, text.size()));
        if (line.empty() || line.front() == '#') continue;
        const std::size_t space = line.find(' ');
        if (space == std::string_view::npos || space == 0 || space > 16) return std::nullopt;
        std::uint64_t address = 0;
        for (const char c : line.substr(0, space)) {
            const int d = hex_digit(c);
            if (d < 0) return std::nullopt;
            address = address << 4 | static_cast<std::uint64_t>(d);
        }
        const std::string_view hex = line.substr(space + 1);
        if (hex.size() % 2 != 0) return std::nullopt;
        std::vector<std::byte> bytes;
        for (std::size_t i = 0; i < hex.size(); i += 2) {
            const int hi = hex_digit(hex[i]);
            const int lo = hex_digit(hex[i + 1]);
            if (hi < 0 || lo < 0) return std::nullopt;
            bytes.push_back(static_cast<std::byte>(hi << 4 | lo));
        }
        memory.add(address, bytes);
    }
    return memory;
}

bool RecordingMemory::read(std::uint64_t address, std::span<std::byte> out) {
    if (!inner_.read(address, out)) return false;
    snapshot_.add(address, out);
    return true;
}

ThreadFrames read_thread_frames(Memory& memory, const Offsets& o, std::uint64_t runtime, pid_t tid,
                                std::size_t max_frames) {
    ThreadFrames result;
    std::uint64_t interp = 0;
    std::uint64_t tstate = 0;
    if (!read_value(memory, runtime + o.interpreters_head, interp) || !interp ||
        !read_value(memory, interp + o.threads_head, tstate)) {
        result.status = PythonStatus::threads_unreadable;
        result.error = fmt::format("thread state: the interpreter list at 0x{:x} is unreadable",
                                   runtime + o.interpreters_head);
        return result;
    }
    for (int i = 0; i < 256 && tstate != 0; ++i) {
        std::uint64_t native_id = 0;
        if (!read_value(memory, tstate + o.thread_native_id, native_id)) break;
        if (static_cast<std::uint32_t>(native_id) == static_cast<std::uint32_t>(tid)) {
            result.thread_state = tstate;
            break;
        }
        if (!read_value(memory, tstate + o.thread_next, tstate)) break;
    }
    if (!result.thread_state) {
        result.status = PythonStatus::no_thread;
        result.error = fmt::format("thread state: none has thread id {}", tid);
        return result;
    }
    std::uint64_t cframe = 0;
    std::uint64_t frame = 0;
    if (!read_value(memory, result.thread_state + o.thread_cframe, cframe) ||
        (cframe && !read_value(memory, cframe + o.cframe_current, frame))) {
        result.status = PythonStatus::frame_unreadable;
        result.error = fmt::format("frame chain: the current frame of thread state 0x{:x} is "
                                   "unreadable",
                                   result.thread_state);
        return result;
    }
    result.status = PythonStatus::complete;
    // One read per frame, as the kernel side does.
    std::array<std::uint64_t, CC_PY_FRAME_BYTES / 8> words{};
    const auto field = [&](std::uint16_t offset) {
        return offset / 8 < words.size() ? words[offset / 8] >> (offset % 8 * 8) : 0;
    };
    while (frame != 0) {
        if (result.frames.size() == max_frames) {
            result.status = PythonStatus::truncated;
            break;
        }
        if (!memory.read(frame, std::as_writable_bytes(std::span(words)))) {
            result.status = PythonStatus::frame_unreadable;
            result.error = fmt::format("frame chain: frame 0x{:x} is unreadable", frame);
            break;
        }
        result.frames.push_back(
            {field(o.frame_code), field(o.frame_instr), (field(o.frame_is_entry) & 0xff) != 0});
        frame = field(o.frame_previous);
    }
    return result;
}

std::optional<int> line_of(std::span<const std::uint8_t> table, int first_line,
                           std::int64_t address) {
    if (address < 0) return first_line;
    std::size_t at = 0;
    const auto varint = [&](std::size_t& i) -> std::optional<std::uint32_t> {
        std::uint32_t value = 0;
        for (int shift = 0; i < table.size() && shift < 32; shift += 6) {
            const std::uint8_t b = table[i++];
            value |= static_cast<std::uint32_t>(b & 63) << shift;
            if ((b & 64) == 0) return value;
        }
        return std::nullopt;
    };
    int line = first_line;
    std::int64_t start = 0;
    while (at < table.size()) {
        const std::uint8_t first = table[at];
        if ((first & 0x80) == 0) return std::nullopt; // every entry starts with its high bit set
        const unsigned code = (first >> 3) & 15;
        std::size_t i = at + 1;
        int delta = 0;
        if (code == 13 || code == 14) {
            const auto v = varint(i);
            if (!v) return std::nullopt;
            delta = (*v & 1) ? -static_cast<int>(*v >> 1) : static_cast<int>(*v >> 1);
        } else if (code >= 10 && code <= 12) {
            delta = static_cast<int>(code) - 10;
        }
        line += delta;
        const std::int64_t end = start + ((first & 7) + 1) * 2;
        if (address < end) return code == 15 ? 0 : line;
        start = end;
        // The next entry starts at the next byte with its high bit set.
        for (++at; at < table.size() && (table[at] & 0x80) == 0; ++at) {
        }
    }
    return 0;
}

const CodeReader::Code& CodeReader::code(std::uint64_t address) {
    if (const auto it = codes_.find(address); it != codes_.end()) return it->second;
    Code& c = codes_[address];
    const Offsets& o = *runtime_.offsets;
    const auto fail = [&](std::string_view what) -> const Code& {
        c.error = fmt::format("code object 0x{:x}: {}", address, what);
        return c;
    };
    std::uint64_t type = 0;
    if (!read_value(memory_, address + o.object_type, type)) return fail("unreadable");
    if (runtime_.code_type != 0 && type != runtime_.code_type) return fail("not a code object");
    std::uint64_t filename = 0;
    std::uint64_t qualname = 0;
    std::uint64_t line_table = 0;
    std::int32_t first_line = 0;
    std::int32_t first_traceable = 0;
    if (!read_value(memory_, address + o.code_filename, filename) ||
        !read_value(memory_, address + o.code_qualname, qualname) ||
        !read_value(memory_, address + o.code_linetable, line_table) ||
        !read_value(memory_, address + o.code_firstlineno, first_line) ||
        !read_value(memory_, address + o.code_firsttraceable, first_traceable))
        return fail("unreadable");
    auto file = read_str(memory_, o, filename);
    if (!file) return fail("co_filename is unreadable");
    auto name = read_str(memory_, o, qualname);
    if (!name) return fail("co_qualname is unreadable");
    auto table = read_bytes(memory_, o, line_table);
    if (!table) return fail("co_linetable is unreadable");
    c.filename = std::move(*file);
    c.qualname = std::move(*name);
    c.first_line = first_line;
    c.first_traceable = first_traceable;
    c.line_table = std::move(*table);
    return c;
}

Symbolized CodeReader::symbolize(const PythonFrameRef& ref) {
    Symbolized out;
    out.frame.origin = FrameOrigin::python;
    out.frame.trust = FrameTrust::exact;
    out.frame.address = ref.code;
    if (!runtime_.offsets) {
        out.error = unsupported_reason(runtime_);
        return out;
    }
    const Code& c = code(ref.code);
    if (!c.error.empty()) {
        out.error = c.error;
        return out;
    }
    out.frame.function = c.qualname;
    out.frame.file = c.filename;
    const std::uint64_t start = ref.code + runtime_.offsets->code_instructions;
    // prev_instr points at the code unit before the next instruction, one before the first for
    // a frame that has not run yet; a frame whose code has not reached its first traceable
    // instruction is still being set up (_PyFrame_IsIncomplete).
    const std::int64_t offset = static_cast<std::int64_t>(ref.instruction - start);
    if (offset < static_cast<std::int64_t>(c.first_traceable) * 2) {
        out.skip = true;
        return out;
    }
    const auto line = line_of(c.line_table, c.first_line, offset / 2 * 2);
    if (!line) {
        out.error =
            fmt::format("line table of {} (code object 0x{:x}): malformed", c.qualname, ref.code);
        return out;
    }
    out.frame.line = *line;
    return out;
}

PythonStack python_stack(CodeReader& reader, const Event& e) {
    PythonStack stack;
    for (const auto& ref : e.python_frames) {
        Symbolized s = reader.symbolize(ref);
        if (!s.error.empty()) {
            stack.stops = s.error;
            return stack;
        }
        if (s.skip) {
            // An entry frame still being set up still ends its evaluation loop's frames.
            if (ref.entry && !stack.entry.empty()) stack.entry.back() = true;
            continue;
        }
        stack.frames.push_back(std::move(s.frame));
        stack.entry.push_back(ref.entry);
    }
    switch (e.python_status) {
    case PythonStatus::truncated:
        stack.stops = fmt::format("more than {} Python frames: the outer ones are not recorded",
                                  e.python_frames.size());
        break;
    case PythonStatus::no_thread:
        stack.stops = fmt::format("thread state: no Python thread state has thread id {}", e.tid);
        break;
    case PythonStatus::threads_unreadable:
        stack.stops = "thread state: the interpreter's thread list could not be read";
        break;
    case PythonStatus::frame_unreadable:
        stack.stops = "frame chain: a frame could not be read";
        break;
    case PythonStatus::none:
    case PythonStatus::complete:
        break;
    }
    return stack;
}

std::vector<Frame> splice(const std::vector<Frame>& native, const PythonStack& py) {
    std::vector<Frame> out;
    std::size_t next = 0; // the next Python frame to place
    for (const Frame& f : native) {
        if (f.origin == FrameOrigin::native && f.function == "_PyEval_EvalFrameDefault" &&
            next < py.frames.size()) {
            while (next < py.frames.size()) {
                out.push_back(py.frames[next]);
                if (py.entry[next++]) break;
            }
        }
        out.push_back(f);
    }
    for (; next < py.frames.size(); ++next)
        out.push_back(py.frames[next]);
    return out;
}

} // namespace conncheck::trace::python
