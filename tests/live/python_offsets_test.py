#!/usr/bin/env python3
"""Checks trace's table of CPython offsets against the real interpreter.

A /usr/bin/python3 child parks a worker thread inside nested functions (a class method, a
function with a Latin-1 name, one with a CJK name) and reports what the interpreter says of
itself: the thread's native id, its PyThreadState (ctypes.pythonapi.PyThreadState_Get), and from
sys._current_frames() each frame's code object (id()), file, qualified name and current line.
python_frames_tool reads the same thread through the offsets table, the way trace does, and
every value must match. Exits 77 when the interpreter's version has no entry in the table.

    python_offsets_test.py PYTHON_FRAMES_TOOL [--record FIXTURE]
"""
import json
import os
import subprocess
import sys

PYTHON = "/usr/bin/python3"

CHILD = r'''
import ctypes, json, sys, threading

parked = threading.Event()
release = threading.Event()
state = {}

class Feed:
    def run(self):
        return größe(3)

def größe(n):
    return 函数(n)

def 函数(n):
    ctypes.pythonapi.PyThreadState_Get.restype = ctypes.c_void_p
    state["thread_state"] = ctypes.pythonapi.PyThreadState_Get()
    state["tid"] = threading.get_native_id()
    parked.set()
    release.wait()
    return n

def worker():
    Feed().run()

t = threading.Thread(target=worker, name="parked")
t.start()
parked.wait()
frame = sys._current_frames()[t.ident]
frames = []
while frame is not None:
    code = frame.f_code
    frames.append({"code": id(code), "file": code.co_filename, "function": code.co_qualname,
                   "line": frame.f_lineno})
    frame = frame.f_back
print(json.dumps({"pid": __import__("os").getpid(), "tid": state["tid"],
                  "thread_state": state["thread_state"], "frames": frames}), flush=True)
sys.stdin.readline()
release.set()
t.join()
'''


def main():
    tool = sys.argv[1]
    record = sys.argv[3] if len(sys.argv) == 4 and sys.argv[2] == "--record" else None
    if not os.access(PYTHON, os.X_OK):
        print(f"{PYTHON} is missing")
        return 77
    child = subprocess.Popen([PYTHON, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        truth = json.loads(child.stdout.readline())
        args = [tool, str(truth["pid"]), str(truth["tid"])]
        if record:
            args += ["--record", record]
        run = subprocess.run(args, capture_output=True, text=True, timeout=30)
    finally:
        child.stdin.write("\n")
        child.stdin.close()
        child.wait(timeout=30)
    seen = json.loads(run.stdout)
    print("interpreter:", json.dumps(truth, ensure_ascii=False))
    print("trace reads:", json.dumps(seen, ensure_ascii=False))
    if "no frame offsets" in seen.get("error", ""):
        print(seen["error"])
        return 77
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(f"{what}: read {got!r}, the interpreter says {want!r}")

    expect("error", seen.get("error"), "")
    expect("thread state (PyThreadState by native_thread_id)", seen.get("thread_state"),
           truth["thread_state"])
    frames = [f for f in seen.get("frames", []) if not f["skip"]]
    expect("frame count", len(frames), len(truth["frames"]))
    for i, (got, want) in enumerate(zip(frames, truth["frames"])):
        for key in ("code", "file", "function", "line"):
            expect(f"frame {i} {key}", got[key], want[key])
    # The thread's bootstrap frame is called from C: it began a call of the evaluation loop.
    if frames:
        expect("outermost frame is an entry frame (is_entry)", frames[-1]["entry"], True)
        expect("innermost frame is no entry frame", frames[0]["entry"], False)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
