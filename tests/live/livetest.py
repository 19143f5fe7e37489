"""What the scripted trace tests share: checks that collect failures, the processes a test
starts (killed by pid at its end), reading a child's output up to a line within a deadline, and
the skip (77) when eBPF is unavailable."""

import os
import subprocess
import sys
import time

FAILURES = []
STARTED = []  # every process the test starts, killed by pid at the end


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def start(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def wait_line(stream, prefix, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise RuntimeError(f"no line starting with {prefix!r}")


def require_probe(conncheck):
    """Exits 77 when this kernel or build cannot trace; CI, where eBPF works, sets
    CONNCHECK_REQUIRE_BPF, and there a missing probe is a failure."""
    r = subprocess.run([conncheck, "trace", "--pid", str(os.getpid()), "--for", "1ms"],
                       capture_output=True, text=True)
    if r.returncode == 6:
        required = bool(os.environ.get("CONNCHECK_REQUIRE_BPF"))
        print(f"{'FAIL' if required else 'skipped'}: {r.stderr.strip()}", file=sys.stderr)
        sys.exit(1 if required else 77)
