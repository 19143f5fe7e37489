// CPython call sites, read from the interpreter's own memory without touching the process: the
// kernel records each frame's code object and last instruction when a connection opens
// (src/bpf/trace.bpf.c), and the code objects are read here, from the live process or from a
// recorded snapshot, for the file, qualified name and line.
#pragma once

#include "conncheck/trace/event.hpp"
#include "conncheck/trace/frame.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace conncheck::trace::python {

// Byte offsets of the fields on the way from _PyRuntime to a line of source, for one minor
// version of CPython. Each entry was checked against that interpreter
// (tests/live/python_offsets_test.py).
struct Offsets {
    int major = 0;
    int minor = 0;
    // _PyRuntimeState.interpreters.head, PyInterpreterState.threads.head
    std::uint16_t interpreters_head = 0;
    std::uint16_t threads_head = 0;
    // PyThreadState
    std::uint16_t thread_next = 0;
    std::uint16_t thread_native_id = 0;
    std::uint16_t thread_cframe = 0;
    std::uint16_t cframe_current = 0; // _PyCFrame.current_frame
    // _PyInterpreterFrame
    std::uint16_t frame_code = 0;
    std::uint16_t frame_previous = 0;
    std::uint16_t frame_instr = 0;
    std::uint16_t frame_is_entry = 0;
    // PyCodeObject
    std::uint16_t code_filename = 0;
    std::uint16_t code_qualname = 0;
    std::uint16_t code_firstlineno = 0;
    std::uint16_t code_linetable = 0;
    std::uint16_t code_firsttraceable = 0;
    std::uint16_t code_instructions = 0; // co_code_adaptive: the first code unit
    // PyObject, PyUnicodeObject (PEP 393), PyBytesObject
    std::uint16_t object_type = 0;
    std::uint16_t unicode_length = 0;
    std::uint16_t unicode_state = 0;
    std::uint16_t unicode_ascii_data = 0;   // sizeof(PyASCIIObject)
    std::uint16_t unicode_compact_data = 0; // sizeof(PyCompactUnicodeObject)
    std::uint16_t bytes_size = 0;
    std::uint16_t bytes_data = 0;
};

// The table's entry for CPython major.minor, or nullptr: no frames are read for a version the
// table does not know, rather than wrong ones.
[[nodiscard]] const Offsets* offsets_for(int major, int minor);

struct Version {
    int major = 0;
    int minor = 0;
    int micro = 0;
};

// A CPython interpreter in a process: the executable itself (python3.11, a venv's python) or a
// libpython it maps (an embedding program).
struct Runtime {
    Version version;
    std::uint64_t runtime = 0;   // the address of _PyRuntime
    std::uint64_t code_type = 0; // the address of PyCode_Type: 0 unknown
    std::string module;          // the file holding _PyRuntime
    const Offsets* offsets = nullptr;
};

// The interpreter in process `pid`, from the dynamic symbols of its mapped files (_PyRuntime,
// Py_Version) and, before 3.11, the file's name. nullopt: not a CPython process, or gone.
[[nodiscard]] std::optional<Runtime> find_runtime(pid_t pid);

// "CPython 3.12: no frame offsets for this version", or "" when the version has an entry.
[[nodiscard]] std::string unsupported_reason(const Runtime& runtime);

// Reads another process's memory: a live process (process_vm_readv) or a recorded snapshot.
class Memory {
public:
    virtual ~Memory() = default;
    // All of [address, address + out.size()) or false.
    virtual bool read(std::uint64_t address, std::span<std::byte> out) = 0;
};

// A live process's memory, read without attaching to it, stopping or signalling it.
class ProcessMemory final : public Memory {
public:
    explicit ProcessMemory(pid_t pid) : pid_(pid) {}
    bool read(std::uint64_t address, std::span<std::byte> out) override;

private:
    pid_t pid_;
};

// Memory recorded from a process, one line per read: "ADDRESS HEXBYTES". Reads served from it
// must fall within one recorded range.
class SnapshotMemory final : public Memory {
public:
    SnapshotMemory() = default;
    // nullopt when a line is malformed.
    [[nodiscard]] static std::optional<SnapshotMemory> parse(std::string_view text);
    void add(std::uint64_t address, std::span<const std::byte> bytes);
    [[nodiscard]] std::string text() const;
    bool read(std::uint64_t address, std::span<std::byte> out) override;

private:
    std::map<std::uint64_t, std::vector<std::byte>> ranges_;
};

// Passes reads on to another Memory and keeps what they returned: the snapshot of a live
// interpreter that unit tests replay.
class RecordingMemory final : public Memory {
public:
    explicit RecordingMemory(Memory& inner) : inner_(inner) {}
    bool read(std::uint64_t address, std::span<std::byte> out) override;
    [[nodiscard]] const SnapshotMemory& snapshot() const { return snapshot_; }

private:
    Memory& inner_;
    SnapshotMemory snapshot_;
};

// A thread's frames the way the kernel side reads them (src/bpf/trace.bpf.c), for tests and
// snapshots: status and frames as in an opened event, `error` naming the stage that failed.
struct ThreadFrames {
    PythonStatus status = PythonStatus::none;
    std::uint64_t thread_state = 0;
    std::vector<PythonFrameRef> frames;
    std::string error;
};
[[nodiscard]] ThreadFrames read_thread_frames(Memory& memory, const Offsets& offsets,
                                              std::uint64_t runtime, pid_t tid,
                                              std::size_t max_frames);

// The line of the code unit at byte offset `address` in a 3.11 location table (co_linetable),
// for a code object starting at `first_line`; 0 for an instruction without a line, nullopt for a
// malformed table.
[[nodiscard]] std::optional<int> line_of(std::span<const std::uint8_t> table, int first_line,
                                         std::int64_t address);

// A frame's code object made into file, qualified name and line, or the stage that failed.
struct Symbolized {
    Frame frame;       // origin python; address is the code object's
    bool skip = false; // a frame still being set up (3.11's "incomplete" frames): not code
    std::string error; // "" or what could not be read: "code object 0x...: co_filename ..."
};

// Names code objects of one process, caching each code object's name, file and line table.
class CodeReader {
public:
    CodeReader(Memory& memory, const Runtime& runtime) : memory_(memory), runtime_(runtime) {}
    [[nodiscard]] Symbolized symbolize(const PythonFrameRef& ref);

private:
    struct Code {
        std::string filename;
        std::string qualname;
        int first_line = 0;
        int first_traceable = 0;
        std::vector<std::uint8_t> line_table;
        std::string error;
    };
    const Code& code(std::uint64_t address);

    Memory& memory_;
    Runtime runtime_;
    std::map<std::uint64_t, Code> codes_;
};

// The Python frames of an opened event, innermost first; `stops` says why they end early
// ("" when the whole chain was read).
struct PythonStack {
    std::vector<Frame> frames;
    std::vector<bool> entry; // frames[i] began a call of the evaluation loop
    std::string stops;
};
[[nodiscard]] PythonStack python_stack(CodeReader& reader, const Event& opened);

// The native frames with the Python ones in the place of the evaluation loop that ran them:
// each native `_PyEval_EvalFrameDefault` stands for the Python frames up to the next entry frame.
// Python frames left over (the native walk stopped below the interpreter) follow the native ones.
[[nodiscard]] std::vector<Frame> splice(const std::vector<Frame>& native, const PythonStack& py);

} // namespace conncheck::trace::python
