#!/usr/bin/env python3
"""`conncheck trace`'s ledger on the shapes a client with a timeout and a forgetful server give:
a CLOSE_WAIT the client closes 2 s after the peer's FIN is never leaked, one still younger than
--close-wait-min-age at the end is "not closed yet", one older is leaked, and one the server
then resets is held after close ("reset").

usage: trace_ledger_shapes_test.py CONNCHECK
Exits 77 where eBPF tracing cannot work (no BTF, no CAP_BPF/CAP_PERFMON, built without it)."""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

CONNCHECK = sys.argv[1]
PYTHON = "/usr/bin/python3"
TCP_FIN_WAIT2 = 5
FAILURES = []

# The client: on each line it connects and says its port. A connection opened on "timely" it
# closes 2 s after reading its end of stream (a client with a timeout); one opened on "keep" it
# never closes (the leak).
CLIENT = r"""
import selectors, socket, sys, time
port = int(sys.argv[1])
sel = selectors.DefaultSelector()
sel.register(sys.stdin, selectors.EVENT_READ)
kept, eof_at = [], {}
while True:
    for key, _ in sel.select(timeout=0.05):
        if key.fileobj is sys.stdin:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            s = socket.create_connection(("127.0.0.1", port))
            if line.strip() == "keep":
                kept.append(s)
            else:
                sel.register(s, selectors.EVENT_READ)
            print(s.getsockname()[1], flush=True)
        elif not key.fileobj.recv(1):
            sel.unregister(key.fileobj)
            eof_at[key.fileobj] = time.monotonic()
    for s, t in list(eof_at.items()):
        if time.monotonic() - t >= 2.0:
            s.close()
            del eof_at[s]
"""


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def wait_for(condition, what, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def tcp_state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def main():
    probe = subprocess.run([CONNCHECK, "trace", "--pid", str(os.getpid()), "--for", "1ms"],
                           capture_output=True, text=True)
    if probe.returncode == 6:
        required = bool(os.environ.get("CONNCHECK_REQUIRE_BPF"))
        print(f"{'FAIL' if required else 'skipped'}: {probe.stderr.strip()}", file=sys.stderr)
        return 1 if required else 77

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    client = subprocess.Popen([PYTHON, "-c", CLIENT, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    trace = None
    try:
        trace = subprocess.Popen([CONNCHECK, "trace", "--pid", str(client.pid), "--json",
                                  "--close-wait-min-age", "3s"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = trace.stderr.readline()
        if "tracing" not in line:
            raise RuntimeError(f"trace did not start: {line}{trace.stderr.read()}")

        def open_one(how):
            client.stdin.write(how + "\n")
            client.stdin.flush()
            local_port = int(client.stdout.readline())
            conn, _ = server.accept()
            return conn, local_port

        def close_ours(conn):
            conn.shutdown(socket.SHUT_WR)  # the client's end goes to CLOSE_WAIT
            wait_for(lambda: tcp_state(conn) == TCP_FIN_WAIT2, "the client's ACK of our FIN")

        start = time.monotonic()
        leaked, leaked_port = open_one("keep")   # never closed by the client
        timely, timely_port = open_one("timely") # closed by the client 2 s after our FIN
        reset, reset_port = open_one("keep")     # then forgotten by us: a reset
        for conn in (leaked, timely, reset):
            close_ours(conn)
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()
        # 4 s on, a last one gets our FIN: at the end it is about 0.5 s in CLOSE_WAIT.
        wait_for(lambda: time.monotonic() - start >= 4.0, "4 s", timeout=6)
        young, young_port = open_one("timely")
        close_ours(young)
        wait_for(lambda: time.monotonic() - start >= 4.5, "4.5 s", timeout=6)
        trace.send_signal(signal.SIGINT)
        out, err = trace.communicate(timeout=30)
        check(trace.returncode == 0, f"trace exit status {trace.returncode}: {err}")
        ledger = json.loads(out.splitlines()[-1])
        check(ledger["type"] == "ledger", "the ledger is the last line")

        def ports(items):
            return {c["local"].rsplit(":", 1)[1]: c["kind"] for c in items}

        leaks = ports(c for g in ledger["leaks"] for c in g["connections"])
        pending = ports(ledger["not_closed_yet"])
        check(leaks.get(str(leaked_port)) == "close_wait",
              f"the CLOSE_WAIT never closed, 4.5 s old, is leaked: {leaks}")
        check(leaks.get(str(reset_port)) == "reset",
              f"the socket reset by the peer and never closed is a reset leak: {leaks}")
        check(str(timely_port) not in leaks and str(timely_port) not in pending,
              f"the CLOSE_WAIT closed after 2 s is neither leaked nor pending: {leaks} {pending}")
        check(pending.get(str(young_port)) == "close_wait" and str(young_port) not in leaks,
              f"the CLOSE_WAIT 0.5 s old is not closed yet: {pending}")
        for conn in (leaked, timely, young):
            conn.close()
    finally:
        for p in (trace, client):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        server.close()
    if FAILURES:
        print(f"{len(FAILURES)} failures", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
