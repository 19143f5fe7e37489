#!/usr/bin/env python3
"""`conncheck close` end to end, in a network namespace this test creates: a client process holds
CLOSE_WAIT sockets, stale duplicates (one with a full send queue) and a healthy connection, all to
the same peer. The preview changes nothing (ss before and after equal); --yes aborts exactly the
selected sockets, the healthy connection keeps exchanging data, the client sees ECONNABORTED on
the aborted ones and their send queues are freed (measured by the client itself, SO_MEMINFO);
each abort is logged to syslog with who asked; without CAP_NET_ADMIN one line names it.

usage: close_test.py CONNCHECK
Exits 77 without root, `ip netns`, unshare or setpriv."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CONNCHECK = sys.argv[1]
PYTHON = "/usr/bin/python3"
FAILURES = []
STARTED = []  # every process this test starts, killed by pid at the end
NS = f"conncheck-close-{os.getpid()}"
ECONNABORTED = 103

PEER = r"""
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", 7000))
keep = []
def handle(c):
    role = c.recv(4)
    if role == b"clsw":  # the peer sends a little and closes: CLOSE_WAIT with unread data
        c.sendall(b"bye" * 100)
        c.close()
    elif role == b"zomb":  # the peer keeps the connection and never sends nor reads again
        keep.append(c)
    elif role == b"live":  # echoes
        while True:
            d = c.recv(100)
            if not d:
                break
            c.sendall(d)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""

TARGET = r"""
import json, socket, struct, sys, threading, time
peer = ("127.0.0.1", 7000)
def conn(role):
    s = socket.create_connection(peer)
    s.sendall(role)
    return s
cw = [conn(b"clsw") for _ in range(2)]
zombies = [conn(b"zomb") for _ in range(2)]
# The first zombie's send queue fills: the peer never reads.
zombies[0].setblocking(False)
try:
    while True:
        zombies[0].send(b"q" * 65536)
except BlockingIOError:
    pass
zombies[0].setblocking(True)
live = conn(b"live")
echoes = 0
def pump():
    global echoes
    while True:
        try:
            live.sendall(b"ping")
            if not live.recv(4):
                break
            echoes += 1
        except OSError as e:
            print("live-error", e.errno, flush=True)
            break
        time.sleep(0.05)  # the healthy connection's traffic: 20 round trips a second
threading.Thread(target=pump, daemon=True).start()
ports = {"cw": [s.getsockname()[1] for s in cw], "zombie": [s.getsockname()[1] for s in zombies],
         "live": live.getsockname()[1]}
print("ready " + json.dumps(ports), flush=True)
def meminfo(s):
    names = "rmem_alloc rcvbuf wmem_alloc sndbuf fwd_alloc wmem_queued optmem backlog drops"
    return dict(zip(names.split(), struct.unpack("9I", s.getsockopt(socket.SOL_SOCKET, 55, 36))))
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "echoes":
        print("echoes", echoes, flush=True)
    elif cmd[0] == "mem":
        print("mem " + json.dumps([meminfo(s) for s in cw + zombies]), flush=True)
    elif cmd[0] == "probe":
        # The first call on each aborted socket: writes, a read, and reading a CLOSE_WAIT's
        # unread data to its end.
        def call(f):
            try:
                return f()
            except OSError as e:
                return -e.errno
        got = 0
        while True:
            n = call(lambda: len(cw[0].recv(65536)))
            if n <= 0:
                break
            got += n
        print("probe " + json.dumps({"zombie_send": call(lambda: zombies[0].send(b"x")),
                                     "zombie_recv": call(lambda: len(zombies[1].recv(10))),
                                     "close_wait_send": call(lambda: cw[1].send(b"x")),
                                     "close_wait_read": got, "close_wait_read_end": n,
                                     "close_wait_send_after_read": call(lambda: cw[0].send(b"x"))}),
              flush=True)
"""


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def start(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def wait_line(p, prefix, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f"no line starting with {prefix!r}")


def ask(p, command):
    p.stdin.write(command + "\n")
    p.stdin.flush()
    return wait_line(p, command + " ")


def wait_until(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def conncheck(*args, prefix=(), env=None):
    return subprocess.run([*prefix, CONNCHECK, *args], capture_output=True, text=True,
                          timeout=60, env=env)


def ss_sockets():
    """(state, local, peer, cookie) of every TCP socket in the namespace."""
    out = subprocess.run(["ip", "netns", "exec", NS, "ss", "-Htane"], capture_output=True,
                         text=True, check=True).stdout
    rows = set()
    for line in out.splitlines():
        f = line.split()
        cookie = next((x[3:] for x in f if x.startswith("sk:")), None)
        rows.add((f[0], f[3], f[4], cookie))
    return rows


def main():
    if os.geteuid() != 0:
        skip("needs root to create a network namespace")
    for tool in ("ip", "ss", "unshare", "setpriv"):
        if shutil.which(tool) is None:
            skip(f"needs {tool}")
    r = subprocess.run(["ip", "netns", "add", NS], capture_output=True, text=True)
    if r.returncode != 0:
        skip(f"ip netns add failed: {r.stderr.strip()}")
    subprocess.run(["ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up"], check=True)
    inside = ["ip", "netns", "exec", NS, PYTHON, "-c"]
    peer = start(inside + [PEER], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    wait_line(peer, "listening")
    target = start(inside + [TARGET], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ports = json.loads(wait_line(target, "ready "))
    pid = str(target.pid)  # ip netns exec execs the command: the same pid
    selection = ["close", "--pid", pid, "--close-wait", "--stale", "--idle", "1"]

    # Silent for a second: the CLOSE_WAIT and zombie sockets become selectable.
    preview = {}

    def selected_all():
        r = conncheck(*selection, "--json")
        if r.returncode != 0:
            return False
        preview.update(json.loads(r.stdout))
        return len(preview["sockets"]) == 4

    check(wait_until(selected_all), f"the preview selects 2 CLOSE_WAIT and 2 stale: {preview}")
    by_port = {int(s["local"].rsplit(":", 1)[1]): s for s in preview.get("sockets", [])}
    check(sorted(by_port) == sorted(ports["cw"] + ports["zombie"]),
          f"exactly the CLOSE_WAIT and zombie sockets: {sorted(by_port)} vs {ports}")
    check(all(by_port[p]["finding"] == "close_wait" for p in ports["cw"] if p in by_port),
          "CLOSE_WAIT selected as close_wait")
    check(all(by_port[p]["finding"] == "stale" for p in ports["zombie"] if p in by_port),
          "zombies selected as stale")
    check(all(s["result"] == "previewed" for s in preview.get("sockets", [])), "previewed")
    full = by_port.get(ports["zombie"][0], {})
    check(full.get("send_queue_bytes", 0) > 0 and full.get("send_queue_memory_bytes", 0) > 0,
          f"the full zombie's send queue is seen: {full}")
    cookies = {s["cookie"] for s in preview.get("sockets", [])}

    # The preview changes nothing.
    before = ss_sockets()
    r = conncheck(*selection)
    check(r.returncode == 0, f"text preview exit 0: {r.returncode} {r.stderr}")
    check("Preview: nothing was changed" in r.stdout, f"the preview says so: {r.stdout}")
    check("ECONNABORTED" in r.stdout and "fd exhaustion" in r.stdout,
          "the preview says what closing does and does not do")
    check(all(c in r.stdout for c in cookies), "the text preview lists every cookie")
    check(ss_sockets() == before, "ss is the same before and after the preview")

    # Without CAP_NET_ADMIN: one line naming it, exit 4; the preview still works.
    no_net_admin = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_admin", "--"]
    r = conncheck(*selection, "--yes", prefix=no_net_admin)
    check(r.returncode == 4, f"--yes without CAP_NET_ADMIN exits 4: {r.returncode} {r.stderr}")
    check(len(r.stderr.splitlines()) == 1 and "CAP_NET_ADMIN" in r.stderr,
          f"one line naming CAP_NET_ADMIN: {r.stderr!r}")
    check(r.stdout == "", f"nothing on stdout: {r.stdout!r}")
    r = conncheck(*selection, prefix=no_net_admin)
    check(r.returncode == 0, f"the preview needs no CAP_NET_ADMIN: {r.returncode} {r.stderr}")
    check(ss_sockets() == before, "nothing changed without CAP_NET_ADMIN")

    mem_before = json.loads(ask(target, "mem"))
    check(mem_before[0]["rmem_alloc"] > 0, f"the CLOSE_WAIT holds unread data: {mem_before[0]}")
    echoes_before = int(ask(target, "echoes"))

    # --yes, with syslog caught: /dev/log in a mount namespace of its own points at our socket.
    with tempfile.TemporaryDirectory() as tmp:
        log_path = os.path.join(tmp, "log")
        log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        log.bind(log_path)
        script = f'mount -t tmpfs tmpfs /dev && ln -s {log_path} /dev/log && exec "$@"'
        env = dict(os.environ, SUDO_USER="alice\x1b[31m")
        r = conncheck(*selection, "--yes", "--json",
                      prefix=["unshare", "--mount", "sh", "-c", script, "sh"], env=env)
        check(r.returncode == 0, f"--yes exit 0: {r.returncode} {r.stderr}")
        done = json.loads(r.stdout) if r.stdout.startswith("{") else {"sockets": []}
        check(done.get("mode") == "close", "mode close")
        check({s["cookie"] for s in done["sockets"]} == cookies,
              f"--yes closes the previewed sockets: {done['sockets']}")
        check(all(s["result"] == "destroyed" for s in done["sockets"]),
              f"all destroyed: {[s['result'] for s in done['sockets']]}")
        log.setblocking(False)
        lines = []
        try:
            while True:
                lines.append(log.recv(4096).decode(errors="replace"))
        except BlockingIOError:
            pass
        log.close()
    check(len(lines) == 4, f"one syslog line per closed socket: {lines}")
    for c in cookies:
        check(any(f"cookie {c} " in l for l in lines), f"syslog names {c}: {lines}")
    check(all("asked by uid 0 (SUDO_USER alice\\x1b[31m)" in l for l in lines),
          f"syslog says who asked, sanitized: {lines}")
    check(all("conncheck[" in l for l in lines), f"syslog tag: {lines}")

    after = ss_sockets()
    gone = before - after
    check(after <= before, f"nothing new appeared: {after - before}")
    ours = {p for p in ports["cw"] + ports["zombie"]}
    gone_client = {s for s in gone if int(s[1].rsplit(":", 1)[1]) in ours}
    check({"0x" + s[3] for s in gone_client} == cookies,
          f"exactly the selected client sockets are gone: {gone_client}")
    # What else went: only the peer's ends of the aborted connections (they got the reset).
    check(all(int(s[2].rsplit(":", 1)[1]) in ours for s in gone - gone_client),
          f"only the peer's ends of those went too: {gone - gone_client}")
    live_rows = [s for s in after if s[1].endswith(f":{ports['live']}")]
    check(len(live_rows) == 1 and live_rows[0][0] == "ESTAB", f"the healthy one stays: {live_rows}")

    # What the abort freed, as the owner sees it (SO_MEMINFO on its own fds).
    mem_after = json.loads(ask(target, "mem"))
    full_before, full_after = mem_before[2], mem_after[2]
    check(full_before["wmem_queued"] > 0 and full_after["wmem_queued"] == 0,
          f"the full zombie's send queue is freed: {full_before} -> {full_after}")
    for i in (0, 1):
        check(mem_after[i]["rmem_alloc"] == mem_before[i]["rmem_alloc"],
              f"CLOSE_WAIT's unread data stays until close(): {mem_before[i]} -> {mem_after[i]}")
    print(f"measured: full zombie skmem {full_before} -> {full_after}; "
          f"CLOSE_WAIT skmem {mem_before[0]} -> {mem_after[0]}")

    # The healthy connection keeps exchanging data.
    check(wait_until(lambda: int(ask(target, "echoes")) > echoes_before + 5),
          "the healthy connection keeps exchanging data")
    # The process's next call on an aborted socket fails with ECONNABORTED; a CLOSE_WAIT socket's
    # unread data can still be read first.
    probe = json.loads(ask(target, "probe"))
    print(f"first calls after the abort: {probe}")
    check(probe["zombie_send"] == -ECONNABORTED, f"write on an aborted zombie: {probe}")
    check(probe["zombie_recv"] == -ECONNABORTED, f"read on an aborted zombie: {probe}")
    check(probe["close_wait_send"] == -ECONNABORTED, f"write on an aborted CLOSE_WAIT: {probe}")
    check(probe["close_wait_read"] == 300, f"its unread data is still there: {probe}")
    check(probe["close_wait_read_end"] == 0, f"then the end of the stream: {probe}")
    check(probe["close_wait_send_after_read"] == -ECONNABORTED, f"then a write fails: {probe}")
    # Nothing left to close: exit 0, nothing selected.
    r = conncheck(*selection, "--yes")
    check(r.returncode == 0 and "No socket is selected" in r.stdout,
          f"a second run finds nothing: {r.returncode} {r.stdout} {r.stderr}")
    # The aborted sockets are now TCP CLOSE, still held: only the process's close() frees them.
    r = conncheck("close", "--pid", pid, "--held-after-close", "--json")
    held = json.loads(r.stdout).get("held_after_close", []) if r.returncode == 0 else []
    check(held == [{"pid": target.pid, "count": 4}], f"4 sockets held after TCP: {r.stdout}")
    r = conncheck("close", "--pid", pid, "--held-after-close")
    check(r.returncode == 0 and "only the process's close()" in r.stdout,
          f"the preview says only close() releases them: {r.returncode} {r.stdout}")
    r = conncheck("close", "--pid", pid, "--held-after-close", "--yes")
    check(r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "close()" in r.stderr,
          f"--yes cannot close them: {r.returncode} {r.stderr}")
    # A named cookie that is gone: exit 1, named on one line.
    gone_cookie = sorted(cookies)[0]
    r = conncheck("close", "--pid", pid, "--cookie", gone_cookie, "--idle", "1", "--yes")
    check(r.returncode == 1, f"a cookie that is gone exits 1: {r.returncode} {r.stderr}")
    check(len(r.stderr.splitlines()) == 1 and gone_cookie in r.stderr,
          f"one line naming it: {r.stderr!r}")
    # The healthy connection, named by cookie, is refused: it received data within --idle.
    live_cookie = "0x" + live_rows[0][3] if live_rows else "0x1"
    r = conncheck("close", "--pid", pid, "--cookie", live_cookie, "--yes")
    check(r.returncode == 1 and "within --idle" in r.stderr,
          f"a busy connection is never closed: {r.returncode} {r.stderr}")
    check(wait_until(lambda: int(ask(target, "echoes")) > echoes_before + 10),
          "the healthy connection still exchanges data")


def cleanup():
    for p in STARTED:
        if p.poll() is None:
            p.kill()
        p.wait()
    subprocess.run(["ip", "netns", "delete", NS], capture_output=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("ok")
