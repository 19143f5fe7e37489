// Reads a CPython thread's frames the way trace does (offsets table, thread state by tid, frame
// chain, code objects), from a live process: python_offsets_test.py compares what it prints with
// what the interpreter says of itself. With --record FILE it also writes every byte it read, the
// snapshot tests/unit/test_trace_python.cpp replays.
//   python_frames_tool PID TID [--record FILE]
// Prints one JSON object: version, runtime, thread_state, status, error, frames.
#include "conncheck/trace/python.hpp"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

extern "C" {
#include <linux/types.h>

#include "trace_event.h"
}

using namespace conncheck::trace;

int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 5 && std::string(argv[3]) == "--record")) {
        std::fprintf(stderr, "usage: python_frames_tool PID TID [--record FILE]\n");
        return 2;
    }
    const pid_t pid = std::atoi(argv[1]);
    const pid_t tid = std::atoi(argv[2]);
    nlohmann::json out;
    const auto runtime = python::find_runtime(pid);
    if (!runtime) {
        out["error"] = "no CPython runtime found";
        std::printf("%s\n", out.dump().c_str());
        return 1;
    }
    out["version"] = std::to_string(runtime->version.major) + "." +
                     std::to_string(runtime->version.minor) + "." +
                     std::to_string(runtime->version.micro);
    out["runtime"] = runtime->runtime;
    out["code_type"] = runtime->code_type;
    out["module"] = runtime->module;
    if (!runtime->offsets) {
        out["error"] = python::unsupported_reason(*runtime);
        std::printf("%s\n", out.dump().c_str());
        return 1;
    }
    python::ProcessMemory live(pid);
    python::RecordingMemory memory(live);
    const auto thread =
        python::read_thread_frames(memory, *runtime->offsets, runtime->runtime, tid, CC_PY_FRAMES);
    out["thread_state"] = thread.thread_state;
    out["status"] = static_cast<int>(thread.status);
    out["error"] = thread.error;
    python::CodeReader reader(memory, *runtime);
    nlohmann::json frames = nlohmann::json::array();
    for (const auto& ref : thread.frames) {
        const auto s = reader.symbolize(ref);
        frames.push_back({{"code", ref.code},
                          {"instruction", ref.instruction},
                          {"entry", ref.entry},
                          {"skip", s.skip},
                          {"error", s.error},
                          {"file", s.frame.file},
                          {"function", s.frame.function},
                          {"line", s.frame.line}});
    }
    out["frames"] = frames;
    if (argc == 5) {
        std::ofstream file(argv[4]);
        file << "# CPython " << out["version"].get<std::string>() << " runtime " << std::hex
             << runtime->runtime << " code_type " << runtime->code_type << " tid " << std::dec
             << tid << "\n"
             << memory.snapshot().text();
    }
    std::printf("%s\n", out.dump().c_str());
    return thread.error.empty() ? 0 : 1;
}
