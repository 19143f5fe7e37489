// CPython call sites on recorded memory: a snapshot of Debian 12's CPython 3.11.2, captured by
// tests/live/python_frames_tool.cpp from a parked thread (python_offsets_test.py --record), is
// replayed through the thread-state lookup, the frame chain, the code objects and the line
// table; damaged copies show that each failure names its stage.
#include "conncheck/trace/python.hpp"

#include "support.hpp"

#include <doctest/doctest.h>
#include <fstream>
#include <sstream>
#include <string>

using namespace conncheck::trace;
using namespace conncheck::trace::python;

namespace {

struct Fixture {
    SnapshotMemory memory;
    Runtime runtime;
    pid_t tid = 0;
};

// The header line: "# CPython 3.11.2 runtime HEX code_type HEX tid N".
Fixture load_fixture() {
    const std::string path = testsupport::source_root() + "/tests/unit/python311_snapshot.txt";
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "missing fixture ", path);
    std::stringstream text;
    text << in.rdbuf();
    Fixture f;
    std::string header;
    std::getline(text, header);
    std::istringstream h(header);
    std::string hash, cpython, version, word;
    h >> hash >> cpython >> version >> word >> std::hex >> f.runtime.runtime >> word >>
        f.runtime.code_type >> word >> std::dec >> f.tid;
    REQUIRE(version == "3.11.2");
    f.runtime.version = {3, 11, 2};
    f.runtime.offsets = offsets_for(3, 11);
    auto memory = SnapshotMemory::parse(text.str());
    REQUIRE(memory);
    f.memory = std::move(*memory);
    return f;
}

std::vector<Frame> symbolize_all(Fixture& f, std::string* error = nullptr) {
    const ThreadFrames thread =
        read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 32);
    if (error) *error = thread.error;
    Event e;
    e.kind = EventKind::opened;
    e.tid = f.tid;
    e.python_status = thread.status;
    e.python_frames = thread.frames;
    CodeReader reader(f.memory, f.runtime);
    const PythonStack stack = python_stack(reader, e);
    if (error && error->empty()) *error = stack.stops;
    return stack.frames;
}

Frame python_frame(std::string function, std::string file, int line) {
    Frame f;
    f.origin = FrameOrigin::python;
    f.function = std::move(function);
    f.file = std::move(file);
    f.line = line;
    return f;
}

} // namespace

TEST_CASE("python: a recorded 3.11 thread gives its frames, innermost first, with lines") {
    Fixture f = load_fixture();
    std::string error;
    const auto frames = symbolize_all(f, &error);
    CHECK(error == "");
    // What the interpreter said of itself when the snapshot was taken (sys._current_frames()).
    REQUIRE(frames.size() == 9);
    CHECK(frames[0].function == "Condition.wait");
    CHECK(frames[0].file == "/usr/lib/python3.11/threading.py");
    CHECK(frames[0].line == 320);
    CHECK(frames[1].function == "Event.wait");
    CHECK(frames[1].line == 622);
    CHECK(frames[2].function == "函数");
    CHECK(frames[2].file == "<string>");
    CHECK(frames[2].line == 20);
    CHECK(frames[3].function == "größe");
    CHECK(frames[3].line == 13);
    CHECK(frames[4].function == "Feed.run");
    CHECK(frames[4].line == 10);
    CHECK(frames[5].function == "worker");
    CHECK(frames[5].line == 24);
    CHECK(frames[6].function == "Thread.run");
    CHECK(frames[7].function == "Thread._bootstrap_inner");
    CHECK(frames[7].line == 1038);
    CHECK(frames[8].function == "Thread._bootstrap");
    CHECK(frames[8].line == 995);
    for (const auto& frame : frames)
        CHECK(frame.origin == FrameOrigin::python);
}

TEST_CASE("python: a failure names its stage") {
    SUBCASE("thread state: no thread with that id") {
        Fixture f = load_fixture();
        f.tid += 100000;
        std::string error;
        CHECK(symbolize_all(f, &error).empty());
        CHECK(error.starts_with("thread state:"));
    }
    SUBCASE("thread state: the runtime is not where it was") {
        Fixture f = load_fixture();
        f.runtime.runtime += 0x100000;
        std::string error;
        CHECK(symbolize_all(f, &error).empty());
        CHECK(error.starts_with("thread state:"));
    }
    SUBCASE("frame chain: a frame outside the snapshot") {
        Fixture f = load_fixture();
        const ThreadFrames thread =
            read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 32);
        // The same memory with the current frame pointer redirected.
        std::uint64_t cframe = 0;
        REQUIRE(f.memory.read(thread.thread_state + f.runtime.offsets->thread_cframe,
                              std::as_writable_bytes(std::span(&cframe, 1))));
        const std::uint64_t nowhere = 0x10;
        f.memory.add(cframe + f.runtime.offsets->cframe_current,
                     std::as_bytes(std::span(&nowhere, 1)));
        const ThreadFrames broken =
            read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 32);
        CHECK(broken.status == PythonStatus::frame_unreadable);
        CHECK(broken.error.starts_with("frame chain:"));
    }
    SUBCASE("code object: a frame whose code is not a code object") {
        Fixture f = load_fixture();
        Event e;
        e.python_status = PythonStatus::complete;
        const ThreadFrames thread =
            read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 32);
        e.python_frames = thread.frames;
        e.python_frames[0].code = thread.thread_state; // memory that is there, but no code
        CodeReader reader(f.memory, f.runtime);
        const PythonStack stack = python_stack(reader, e);
        CHECK(stack.frames.empty());
        CHECK(stack.stops.starts_with("code object 0x"));
    }
    SUBCASE("truncated chain") {
        Fixture f = load_fixture();
        const ThreadFrames thread =
            read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 3);
        CHECK(thread.status == PythonStatus::truncated);
        CHECK(thread.frames.size() == 3);
    }
}

TEST_CASE("python: an incomplete frame is skipped, its entry mark kept") {
    Fixture f = load_fixture();
    const ThreadFrames thread =
        read_thread_frames(f.memory, *f.runtime.offsets, f.runtime.runtime, f.tid, 32);
    Event e;
    e.python_status = PythonStatus::complete;
    e.python_frames = thread.frames;
    // A frame pushed but not started: prev_instr is one code unit before the first.
    PythonFrameRef fresh = thread.frames[2];
    fresh.instruction = fresh.code + f.runtime.offsets->code_instructions - 2;
    fresh.entry = true;
    e.python_frames.insert(e.python_frames.begin() + 3, fresh);
    CodeReader reader(f.memory, f.runtime);
    const PythonStack stack = python_stack(reader, e);
    REQUIRE(stack.frames.size() == 9);
    CHECK(stack.entry[2]);
}

TEST_CASE("python: 3.11 location table lines") {
    // Entries: code 13 (no columns, line delta +2 as svarint 4) covering 1 unit; code 10
    // (one-line, delta 0) covering 2 units; code 11 (delta +1) covering 1; code 15 (no line).
    const std::uint8_t table[] = {
        0x80 | 13 << 3 | 0, 4, 0x80 | 10 << 3 | 1, 1, 2, 0x80 | 11 << 3 | 0, 3, 4, 0x80 | 15 << 3};
    CHECK(line_of(table, 10, 0) == 12);
    CHECK(line_of(table, 10, 2) == 12);
    CHECK(line_of(table, 10, 4) == 12);
    CHECK(line_of(table, 10, 6) == 13);
    CHECK(line_of(table, 10, 8) == 0);
    CHECK(line_of(table, 10, -2) == 10);
    CHECK(line_of(table, 10, 100) == 0);
    const std::uint8_t negative[] = {0x80 | 14 << 3, 3, 0, 1, 1}; // long form, delta -1
    CHECK(line_of(negative, 10, 0) == 9);
    const std::uint8_t malformed[] = {0x05};
    CHECK(!line_of(malformed, 10, 0));
}

TEST_CASE("python: the version table says which versions it knows") {
    CHECK(offsets_for(3, 11) != nullptr);
    CHECK(offsets_for(3, 12) == nullptr);
    Runtime r;
    r.version = {3, 12, 1};
    CHECK(unsupported_reason(r) == "CPython 3.12: no frame offsets for this version");
    r.version = {3, 11, 2};
    r.offsets = offsets_for(3, 11);
    CHECK(unsupported_reason(r) == "");
}

TEST_CASE("python: frames take the place of the evaluation loop that ran them") {
    Frame connect;
    connect.function = "connect";
    connect.module = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    Frame eval;
    eval.function = "_PyEval_EvalFrameDefault";
    eval.module = "/usr/bin/python3.11";
    Frame call = eval;
    call.function = "_PyFunction_Vectorcall";
    PythonStack py;
    py.frames = {python_frame("Feed.open", "/app/feed.py", 10),
                 python_frame("Feed.run", "/app/feed.py", 20),
                 python_frame("main", "/app/feed.py", 30)};
    py.entry = {false, true, true};

    const auto spliced = splice({connect, eval, call, eval}, py);
    REQUIRE(spliced.size() == 7);
    CHECK(spliced[0].function == "connect");
    CHECK(spliced[1].function == "Feed.open");
    CHECK(spliced[2].function == "Feed.run");
    CHECK(spliced[3].function == "_PyEval_EvalFrameDefault");
    CHECK(spliced[4].function == "_PyFunction_Vectorcall");
    CHECK(spliced[5].function == "main");
    CHECK(spliced[6].function == "_PyEval_EvalFrameDefault");

    // The native walk stopped inside the interpreter: the Python frames follow it.
    const auto stopped = splice({connect}, py);
    REQUIRE(stopped.size() == 4);
    CHECK(stopped[1].function == "Feed.open");
    CHECK(stopped[3].function == "main");
}

TEST_CASE("python: snapshots round-trip and refuse damage") {
    SnapshotMemory m;
    const std::uint8_t bytes[] = {1, 2, 3, 0xff};
    m.add(0x1000, std::as_bytes(std::span(bytes)));
    auto again = SnapshotMemory::parse(m.text());
    REQUIRE(again);
    std::uint8_t out[2] = {};
    CHECK(again->read(0x1002, std::as_writable_bytes(std::span(out))));
    CHECK(out[0] == 3);
    CHECK(out[1] == 0xff);
    CHECK(!again->read(0x1003, std::as_writable_bytes(std::span(out))));
    CHECK(!SnapshotMemory::parse("zz 0102\n"));
    CHECK(!SnapshotMemory::parse("1000 010\n"));
}
