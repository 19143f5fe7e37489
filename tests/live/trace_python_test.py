#!/usr/bin/env python3
"""`conncheck trace` names Python code: Debian's /usr/bin/python3 (CPython 3.11) programs,
started before the trace, leak from one named function and close properly from another. The
ledger must name the leaking function with its file and line, never the closing one:
- a class's method leaking in a thread of its own (not the main thread);
- an asyncio coroutine leaking through asyncio.open_connection (its frames are on the chain
  while its task runs).

usage: trace_python_test.py CONNCHECK
Exits 77 where eBPF tracing cannot work, or the interpreter has no entry in trace's table."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from livetest import FAILURES, STARTED, check, require_probe, start, wait_line

CONNCHECK = sys.argv[1]
PYTHON = "/usr/bin/python3"


PEER = r'''
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
'''

# Every connection is closed by the peer at once: the one the program keeps sits in CLOSE_WAIT.
THREADED = r'''import socket, sys, threading

PORT = int(sys.argv[1])


class Pool:
    def __init__(self):
        self.kept = []

    def leak_one(self):
        s = socket.create_connection(("127.0.0.1", PORT))  # LEAK
        self.kept.append(s)

    def open_and_close(self):
        s = socket.create_connection(("127.0.0.1", PORT))  # CLOSES
        s.close()


def worker(pool, done):
    pool.open_and_close()
    pool.leak_one()
    pool.open_and_close()
    done.set()


pool = Pool()
print("ready", flush=True)
sys.stdin.readline()
done = threading.Event()
threading.Thread(target=worker, args=(pool, done), name="pool-worker").start()
done.wait()
print("done", flush=True)
sys.stdin.readline()
'''

ASYNC = r'''import asyncio, sys

PORT = int(sys.argv[1])


class Collector:
    def __init__(self):
        self.streams = []

    async def reconnect(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)  # LEAK
        self.streams.append(writer)

    async def probe(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)  # CLOSES
        writer.close()
        await writer.wait_closed()


async def main():
    c = Collector()
    await c.probe()
    await c.reconnect()
    await c.probe()
    print("done", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


print("ready", flush=True)
sys.stdin.readline()
asyncio.run(main())
'''


def marked_line(source, mark):
    for n, line in enumerate(source.splitlines(), 1):
        if line.rstrip().endswith(f"# {mark}"):
            return n
    raise RuntimeError(mark)


def scenario(tmp, name, source, leak_function, closing_function):
    path = os.path.join(tmp, f"{name}.py")
    with open(path, "w") as f:
        f.write(source)
    peer = start([PYTHON, "-c", PEER], stdout=subprocess.PIPE, text=True)
    port = int(peer.stdout.readline())
    program = start([PYTHON, path, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    text=True)
    # Started before the trace: nothing in the program knows it is traced.
    wait_line(program.stdout, "ready")
    # The leaked CLOSE_WAIT is seconds old at the end: count it as leaked.
    trace = start([CONNCHECK, "trace", "--pid", str(program.pid), "--json",
                   "--close-wait-min-age", "0"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = trace.stderr.readline()
    if "tracing" not in line:
        raise RuntimeError(f"trace did not start: {line}{trace.stderr.read()}")
    program.stdin.write("go\n")
    program.stdin.flush()
    wait_line(program.stdout, "done")
    # The kept connection reaches CLOSE_WAIT when the peer's FIN arrives; the trace sees it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ss = subprocess.run(["ss", "-Htn", "state", "close-wait", f"dport = :{port}"],
                            capture_output=True, text=True).stdout
        if ss.strip():
            break
        time.sleep(0.05)
    trace.send_signal(signal.SIGINT)
    out, err = trace.communicate(timeout=30)
    program.stdin.write("end\n")
    program.stdin.flush()
    program.wait(timeout=10)
    peer.kill()
    peer.wait()
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    check(trace.returncode == 0, f"{name}: trace exit status {trace.returncode}: {err}")
    ledger = lines[-1] if lines else {}
    opened = [e for e in lines if e.get("type") == "opened"]
    print(f"{name}: opened call sites:")
    for e in opened:
        print("  ", json.dumps(e["call_site"])[:2000])
    groups = ledger.get("leaks", [])
    check(len(opened) == 3, f"{name}: three connections opened ({len(opened)})")
    check(len(groups) == 1, f"{name}: one leak group ({len(groups)})")
    leak_line = marked_line(source, "LEAK")
    for g in groups:
        frames = g["call_site"]["frames"]
        user = frames[g["user_frame"]] if g.get("user_frame") is not None else {}
        print(f"{name}: leak group user frame: {user}")
        check(user.get("origin") == "python", f"{name}: the user frame is a Python frame")
        check(user.get("function") == leak_function,
              f"{name}: the leak names {leak_function} ({user.get('function')})")
        check(user.get("file") == path, f"{name}: the leak's file is {path} ({user.get('file')})")
        check(user.get("line") == leak_line,
              f"{name}: the leak's line is {leak_line} ({user.get('line')})")
        check(not any(f.get("function") == closing_function for f in frames),
              f"{name}: the closing function is not in the leak's call site")
        check(g["call_site"]["stops"] is None, f"{name}: the Python chain was read whole "
              f"({g['call_site']['stops']})")
    # Every opened connection names the function that opened it.
    closing_line = marked_line(source, "CLOSES")
    for e in opened:
        lines_seen = [f.get("line") for f in e["call_site"]["frames"]
                      if f.get("origin") == "python" and f.get("file") == path]
        check(lines_seen and lines_seen[0] in (leak_line, closing_line),
              f"{name}: an opened event names the program's line ({lines_seen})")
    return ledger


def main():
    require_probe(CONNCHECK)
    try:
        version = subprocess.run([PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True).stdout.strip()
        if version != "(3, 11)":
            print(f"skipped: {PYTHON} is {version}; the tested table entry is 3.11")
            return 77
        with tempfile.TemporaryDirectory() as tmp:
            scenario(tmp, "threaded", THREADED, "Pool.leak_one", "Pool.open_and_close")
            scenario(tmp, "collector", ASYNC, "Collector.reconnect", "Collector.probe")
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
