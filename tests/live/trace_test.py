#!/usr/bin/env python3
"""`conncheck trace` end to end: a frame-pointer C++ target whose leaks are known by function,
a Python asyncio client (thread and peer grouping), data after silence (--resumed), accepted
IPv6 connections, a server that starts listening after the trace began, a target in a network
namespace of its own, a target that exits, and the bad inputs with their exit codes.

usage: trace_test.py CONNCHECK TRACE_TARGET
Exits 77 where eBPF tracing cannot work (no BTF, no CAP_BPF/CAP_PERFMON, built without it)."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from livetest import FAILURES, STARTED, check, require_probe, start, wait_line

CONNCHECK, TARGET = sys.argv[1], sys.argv[2]


def start_trace(pid, *extra):
    """Starts trace and returns once it follows the process (it says so on stderr)."""
    # The scenarios' CLOSE_WAIT sockets are seconds old at the end: every one counts as leaked.
    t = start([CONNCHECK, "trace", "--pid", str(pid), "--json", "--close-wait-min-age", "0",
               *extra],
              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = t.stderr.readline()
    if "tracing" not in line:
        raise RuntimeError(f"trace did not start: {line}{t.stderr.read()}")
    return t


def finish(t, sig=signal.SIGINT):
    if sig is not None:
        t.send_signal(sig)
    out, err = t.communicate(timeout=30)
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    check(t.returncode == 0, f"trace exit status {t.returncode}: {err}")
    check(lines and lines[-1]["type"] == "ledger", "the ledger is the last line")
    return lines[:-1], lines[-1]


def frame_pointer_target():
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "go")
        os.mkfifo(fifo)
        target = start([TARGET, fifo], stdout=subprocess.PIPE, text=True)
        ready = dict(kv.split("=") for kv in wait_line(target.stdout, "ready").split()[1:])
        peer_pid = int(ready["peer"])
        trace = start_trace(target.pid, "--silence", "1s")
        with open(fifo, "w") as go:
            go.write("go\n")
        wait_line(target.stdout, "done", timeout=30)
        events, ledger = finish(trace)
        for p in (target.pid, peer_pid):
            os.kill(p, signal.SIGKILL)
        target.wait()

    check(all(e["pid"] == target.pid for e in events), "only the target's events")
    opened = [e for e in events if e["type"] == "opened"]
    check(len(opened) == 10, f"10 connections opened, saw {len(opened)}")
    check(all(e["thread"] == "trace_target" for e in opened), "thread names")
    # Change records carry neither endpoints nor names: trace completes them from the opened one.
    by_id = {e["connection"]: e for e in opened}
    changes = [e for e in events if e["type"] in ("state", "reset", "destroyed")]
    check(changes and all(e["remote"] == by_id[e["connection"]]["remote"] for e in changes),
          "state changes name the opened connection's peer")
    established = [e for e in changes if e.get("to") == "established"]
    check(established and all(e["local"].split(":")[0] == by_id[e["connection"]]["local"]
                              .split(":")[0] and not e["local"].endswith(":0")
                              for e in established),
          f"ESTABLISHED has the local address and its port: {established[:1]}")
    named = [e for e in changes if "tid" in e]
    check(named and all(e.get("thread") == "trace_target" for e in named),
          "state changes run by the target name its thread")
    times = [e["time"] for e in events]
    check(times == sorted(times), "events in time order")

    # Grouped by the first frame in the target's own code:
    # "(anonymous namespace)::leak_to_closing_peer"
    groups = {g["call_site"]["frames"][g["user_frame"]]["function"].split("::")[-1]: g
              for g in ledger["leaks"] if g["user_frame"] is not None}
    check(set(groups) == {"leak_to_closing_peer", "reconnect_without_close"},
          f"leaks grouped by the opening function: {sorted(groups)}")
    cw = groups.get("leak_to_closing_peer", {"connections": []})
    check(cw.get("peer") == f"127.0.0.1:{ready['closer']}", "CLOSE_WAIT peer")
    check([c["kind"] for c in cw["connections"]] == ["close_wait"] * 3, "3 CLOSE_WAIT leaks")
    site = cw.get("call_site", {"frames": [], "complete": False})
    user = site["frames"][cw["user_frame"]] if site["frames"] else {}
    check((user.get("file") or "").endswith("trace_target.cpp") and user.get("line"),
          "the call site has file:line")
    check(site["complete"] and site["stops"] is None,
          f"frame pointers up to the thread's start: complete ({site.get('stops')})")
    check(site["frames"] and site["frames"][0]["module"].endswith(".so.6")
          and cw["user_frame"] > 0, "libc's wrapper is below the user's frame")
    for c in cw["connections"]:
        check(c["opened"] <= c["since"] <= ledger["end"], "opened, peer closed, end in order")
    zombies = groups.get("reconnect_without_close", {"connections": []})
    check(zombies.get("peer") == f"127.0.0.1:{ready['silent']}", "zombie peer")
    check([c["kind"] for c in zombies["connections"]] == ["zombie"] * 2, "2 zombies")
    for c in zombies["connections"]:
        check(c["since"] < c["successor"]["opened"], "silent before the successor opened")
        check(c["successor"]["connection"] != c["connection"], "the successor is another one")
    peers = {p["peer"]: p for p in ledger["peers"]}
    polite = peers.get(f"127.0.0.1:{ready['polite']}", {})
    check(polite.get("opened") == 4 and polite.get("ended") == 4, "4 closed connections")
    check(polite.get("time_wait_handed") == 4 and polite.get("time_wait_now") == 4,
          "4 TIME_WAIT attributed to the polite peer")
    check(peers.get(f"127.0.0.1:{ready['silent']}", {}).get("held") == 3, "3 held to the silent peer")


ASYNC_CLIENT = r'''
import asyncio, ctypes, socket, sys, threading
port = int(sys.argv[1])
def worker():
    # The thread's name as the kernel knows it (comm), which Python does not set by itself.
    ctypes.CDLL(None).prctl(15, b"feed-worker", 0, 0, 0)
    async def main():
        kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, w in kept:
            while w.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 8:
                await asyncio.sleep(0.01)
        print("done", flush=True)
        await asyncio.sleep(3600)
    asyncio.run(main())
print("ready", flush=True)
sys.stdin.readline()
threading.Thread(target=worker).start()
'''

CLOSING_PEER = r'''
import socket, sys
family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(family)
s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
'''


def closing_peer(family="4", netns=None):
    prefix = ["ip", "netns", "exec", netns] if netns else []
    peer = start(prefix + [sys.executable, "-c", CLOSING_PEER, family],
                 stdout=subprocess.PIPE, text=True)
    return peer, int(peer.stdout.readline())


def asyncio_client(netns=None):
    peer, port = closing_peer(netns=netns)
    prefix = ["ip", "netns", "exec", netns] if netns else []
    client = start(prefix + [sys.executable, "-c", ASYNC_CLIENT, str(port)],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    wait_line(client.stdout, "ready")
    trace = start_trace(client.pid)
    client.stdin.write("go\n")
    client.stdin.flush()
    wait_line(client.stdout, "done")
    events, ledger = finish(trace)
    for p in (client, peer):
        p.kill()
        p.wait()
    where = f" (netns {netns})" if netns else ""
    check(len(ledger["leaks"]) == 1, f"asyncio{where}: one group")
    for g in ledger["leaks"]:
        check(g["thread"] == "feed-worker", f"asyncio{where}: grouped by thread")
        check(g["peer"] == f"127.0.0.1:{port}", f"asyncio{where}: grouped by peer")
        check(len(g["connections"]) == 2, f"asyncio{where}: two CLOSE_WAIT")
    check(any(e["type"] == "state" and e["to"] == "close_wait" for e in events),
          f"asyncio{where}: the peer's FIN seen in softirq")


SLOW_PEER = r'''
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
    time.sleep(0.6)
    c.send(b"x")
'''

READING_CLIENT = r'''
import socket, sys
port = int(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
c = socket.create_connection(("127.0.0.1", port))
c.recv(1)
print("done", flush=True)
sys.stdin.readline()
'''


def resumed_data():
    """Data after silence is reported with --resumed only (its hook runs for every packet)."""
    peer = start([sys.executable, "-c", SLOW_PEER], stdout=subprocess.PIPE, text=True)
    port = int(peer.stdout.readline())
    for asked in (False, True):
        client = start([sys.executable, "-c", READING_CLIENT, str(port)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        wait_line(client.stdout, "ready")
        extra = ["--resumed", "--silence", "300ms"] if asked else ["--silence", "300ms"]
        trace = start_trace(client.pid, *extra)
        client.stdin.write("go\n")
        client.stdin.flush()
        wait_line(client.stdout, "done")
        events, ledger = finish(trace)
        client.kill()
        client.wait()
        resumed = [e for e in events if e["type"] == "resumed"]
        if asked:
            check(len(resumed) == 1 and resumed[0]["silent_seconds"] >= 0.3,
                  f"--resumed: the byte after 0.6 s of silence is reported: {resumed}")
        else:
            check(resumed == [], "without --resumed no data event")
        check(ledger["last_data_unknown"] == 0, "the held connection's last data is known")
    peer.kill()
    peer.wait()


ACCEPTING_SERVER = r'''
import socket, sys
s = socket.socket(socket.AF_INET6)
s.bind(("::1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
held = [s.accept()[0] for _ in range(2)]
print("accepted", flush=True)
sys.stdin.readline()
'''


def accepted_ipv6():
    server = start([sys.executable, "-c", ACCEPTING_SERVER], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    trace = start_trace(server.pid)
    server.stdin.write("go\n")
    server.stdin.flush()
    import socket
    clients = [socket.create_connection(("::1", port)) for _ in range(2)]
    wait_line(server.stdout, "accepted")
    server_socks = [c.getsockname()[1] for c in clients]
    for c in clients:
        c.close()  # the server's sockets go to CLOSE_WAIT: accepted connections leak too
    # Wait until the kernel has moved the server's sockets to CLOSE_WAIT.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Htn", "state", "close-wait", "sport", f"= :{port}"],
                             capture_output=True, text=True).stdout
        if len(out.splitlines()) == 2:
            break
        time.sleep(0.01)
    events, ledger = finish(trace)
    server.kill()
    server.wait()
    opened = [e for e in events if e["type"] == "opened"]
    check(len(opened) == 2 and all(e["accepted"] for e in opened), "IPv6: two accepted")
    check(all(e["remote"].startswith("[::1]:") for e in opened), "IPv6: remote [::1]")
    check(sorted(int(e["remote"].rsplit(":", 1)[1]) for e in opened) == sorted(server_socks),
          "IPv6: the clients' ports")
    check(sum(len(g["connections"]) for g in ledger["leaks"]) == 2, "IPv6: two CLOSE_WAIT leaks")
    check(all(g["peer"] == "::1" for g in ledger["leaks"]), "IPv6: accepted peers by address")


LATE_SERVER = r'''
import socket, sys
sys.stdin.readline()
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
held = [s.accept()[0] for _ in range(2)]
print("accepted", flush=True)
sys.stdin.readline()
'''


def listens_after_start():
    """trace follows accept() only once a target listens: a server that starts listening after
    the trace began has its accepted connections followed from its listen event on."""
    server = start([sys.executable, "-c", LATE_SERVER], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, text=True)
    trace = start_trace(server.pid)
    server.stdin.write("go\n")
    server.stdin.flush()
    port = int(server.stdout.readline())
    # The listen event is printed once trace follows the accepts.
    listen = None
    deadline = time.monotonic() + 10
    while listen is None and time.monotonic() < deadline:
        line = trace.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event["type"] == "listen":
            listen = event
    check(listen is not None and listen["local"] == f"127.0.0.1:{port}", "the listen event")
    import socket
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    client_ports = sorted(c.getsockname()[1] for c in clients)
    wait_line(server.stdout, "accepted")
    events, ledger = finish(trace)
    server.kill()
    server.wait()
    for c in clients:
        c.close()
    opened = [e for e in events if e["type"] == "opened"]
    check(len(opened) == 2 and all(e["accepted"] for e in opened), "late listener: two accepted")
    check(sorted(int(e["remote"].rsplit(":", 1)[1]) for e in opened) == client_ports,
          "late listener: the clients' ports")


def other_netns():
    ns = f"cc-trace-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns]).returncode != 0:
        check(False, "cannot create a network namespace")
        return
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        asyncio_client(netns=ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns])


EXITING_CLIENT = r'''
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != 8:
    time.sleep(0.01)
os._exit(0)  # without closing: the kernel closes what the process held
'''


def target_exits():
    peer, port = closing_peer()
    # The client connects after its first line of input, once the trace follows it.
    client = start([sys.executable, "-c",
                    "import sys\nsys.stdin.readline()\n" + EXITING_CLIENT, str(port)],
                   stdin=subprocess.PIPE, text=True)
    trace = start_trace(client.pid)
    client.stdin.write("connect\n")
    client.stdin.close()  # once in CLOSE_WAIT the client exits, still holding the socket
    client.wait()
    events, ledger = finish(trace, sig=None)  # trace ends by itself
    peer.kill()
    peer.wait()
    check(str(client.pid) in ledger["exited"], "exit: the ledger names the exited process")
    leaks = [c for g in ledger["leaks"] for c in g["connections"]]
    check(len(leaks) == 1 and leaks[0]["kind"] == "close_wait" and leaks[0]["closed_by_exit"],
          "exit: the CLOSE_WAIT held at exit is reported")
    check(any(e["type"] == "exit" for e in events), "exit: an exit event")


def bad_input():
    def one_line(argv, code, words, what, **kw):
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        check(r.returncode == code, f"{what}: exit {r.returncode}, expected {code}: {r.stderr}")
        check(r.stderr.count("\n") == 1 and r.stderr.startswith("conncheck: "),
              f"{what}: one line on stderr: {r.stderr!r}")
        check(words in r.stderr, f"{what}: says {words!r}: {r.stderr!r}")
        check(r.stdout == "", f"{what}: nothing on stdout")

    me = str(os.getpid())
    one_line([CONNCHECK, "trace", "--pid", me, "--for", "soon"], 2, "--for", "malformed --for")
    one_line([CONNCHECK, "trace"], 2, "--pid", "no process")
    one_line([CONNCHECK, "trace", "--pid", "999999999"], 3, "999999999", "no such pid")
    gone = start(["true"])
    while not os.path.exists(f"/proc/{gone.pid}") or \
            open(f"/proc/{gone.pid}/stat").read().split(")")[1].split()[0] != "Z":
        time.sleep(0.01)
    one_line([CONNCHECK, "trace", "--pid", str(gone.pid)], 5, "exited", "a pid that exits at once")
    gone.wait()
    one_line(["setpriv", "--bounding-set=-bpf,-perfmon,-sys_admin",
              "--inh-caps=-bpf,-perfmon,-sys_admin", CONNCHECK, "trace", "--pid", me], 6,
             "CAP_BPF and CAP_PERFMON", "no permission (root without CAP_BPF)")
    one_line(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
              CONNCHECK, "trace", "--pid", me], 6, "CAP_BPF and CAP_PERFMON",
             "no permission (nobody)")
    # A kernel without BTF, as this process's own mount namespace shows it.
    one_line(["unshare", "-m", "sh", "-c",
              f"mount -t tmpfs none /sys/kernel/btf && exec {CONNCHECK} trace --pid {me}"],
             6, "BTF", "no BTF")


def main():
    require_probe(CONNCHECK)
    try:
        for test in (bad_input, frame_pointer_target, asyncio_client, resumed_data,
                     accepted_ipv6, listens_after_start, other_netns, target_exits):
            print(f"-- {test.__name__}", file=sys.stderr)
            try:
                test()
            except Exception as e:  # a hung or broken scenario is a failure, not a crash
                check(False, f"{test.__name__}: {e!r}")
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
