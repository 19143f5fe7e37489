"""The population for scripts/bench-audit: forked worker processes holding loopback TCP sockets.

One TARGET holds ESTABLISHED and CLOSE_WAIT connections to "peer" processes and leaves TIME_WAIT
sockets toward the same peers; "noise" processes hold both ends of connection pairs. Small
targets (add_small_target) hold ~100 connections to the same peers, optionally from a cgroup v2
of their own, as a systemd service or a container would. The parent
drives every worker over a pipe, one JSON command per line, so each step is synchronous and a
failure surfaces as a SetupError instead of a hang.
"""

import ctypes
import json
import math
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
TW_LIFETIME = 60.0  # Linux TCP_TIMEWAIT_LEN, not tunable
ACCEPT_BATCH = 1000  # well under the listen backlog (somaxconn 4096): connects never stall
PER_LISTENER = 4000  # connections per listening port, far below the 28k ephemeral ports
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


# ---------------------------------------------------------------- worker (forked child) side


class Worker:
    """Holds sockets and obeys one JSON command per line from the parent."""

    def __init__(self):
        self.listeners = {}  # port -> listening socket
        self.groups = {}  # name -> [socket]

    def listen(self, host, family, count):
        ports = []
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, 0))
            s.listen(4096)
            port = s.getsockname()[1]
            self.listeners[port] = s
            ports.append(port)
        return ports

    def connect(self, group, host, family, port, count):
        g = self.groups.setdefault(group, [])
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.connect((host, port))
            g.append(s)
        return len(g)

    def accept(self, group, port, count, shutdown=False):
        g = self.groups.setdefault(group, [])
        listener = self.listeners[port]
        for _ in range(count):
            c, _ = listener.accept()
            if shutdown:  # FIN to the client: it sits in CLOSE_WAIT until it closes
                c.shutdown(socket.SHUT_WR)
            g.append(c)
        return len(g)

    def close(self, group):
        for s in self.groups.pop(group, []):
            s.close()

    def close_after_eof(self, group):
        # Wait for the client's FIN before closing, so the client (who closed first) is the one
        # left in TIME_WAIT rather than both sides going through a simultaneous close.
        for s in self.groups.pop(group, []):
            s.settimeout(10)
            s.recv(1)
            s.close()

    def pairs(self, group, host, family, count, close_wait_every):
        """Both ends of `count` connections in this process; every Nth server end sends FIN."""
        made = 0
        while made < count:
            port = self.listen(host, family, 1)[0]
            on_port = min(PER_LISTENER, count - made)
            done = 0
            while done < on_port:
                batch = min(ACCEPT_BATCH, on_port - done)
                self.connect(group, host, family, port, batch)
                for _ in range(batch):
                    c, _ = self.listeners[port].accept()
                    if close_wait_every and (made + done) % close_wait_every == 0:
                        c.shutdown(socket.SHUT_WR)
                    self.groups[group].append(c)
                    done += 1
            made += on_port
        return made

    def abort_all(self):
        # SO_LINGER 0: close with RST, so the population leaves no TIME_WAIT behind.
        linger = struct.pack("ii", 1, 0)
        for g in self.groups.values():
            for s in g:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    s.close()
                except OSError:
                    pass
        for s in self.listeners.values():
            s.close()
        self.groups.clear()
        self.listeners.clear()


def worker_main(cmd_fd, reply_fd, parent_pid):
    """Runs in the forked child with SIGINT, SIGTERM and SIGHUP blocked; never returns."""
    worker = Worker()
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: sys.exit(0))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        for line in os.fdopen(cmd_fd, "r"):
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            try:
                reply = {"ok": True, "result": getattr(worker, cmd["op"])(**cmd["args"])}
            except OSError as e:
                reply = {"ok": False, "error": f"{cmd['op']}: {e}"}
            os.write(reply_fd, (json.dumps(reply) + "\n").encode())
    finally:
        worker.abort_all()
        os._exit(0)  # never fall back into the parent's code


# ---------------------------------------------------------------- parent side


class WorkerHandle:
    parent_fds = []  # every worker's pipe ends in the parent; a new worker closes its copies

    def __init__(self, name):
        self.name = name
        cmd_r, cmd_w = os.pipe()
        reply_r, reply_w = os.pipe()
        parent = os.getpid()
        # Blocked across fork: an interrupt landing in the child before it has its own handlers
        # would otherwise raise there and run the parent's code in a second process.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.pid = os.fork()
            if self.pid == 0:
                try:
                    for fd in [cmd_w, reply_r] + WorkerHandle.parent_fds:
                        os.close(fd)
                    worker_main(cmd_r, reply_w, parent)
                finally:
                    os._exit(1)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(cmd_r)
        os.close(reply_w)
        WorkerHandle.parent_fds += [cmd_w, reply_r]
        self.cmd_w, self.reply_r, self.buf = cmd_w, reply_r, b""

    def send(self, op, **args):
        os.write(self.cmd_w, (json.dumps({"op": op, "args": args}) + "\n").encode())

    def wait(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.reply_r], [], [], left)[0]:
                raise SetupError(f"worker {self.name} did not answer in time")
            chunk = os.read(self.reply_r, 65536)
            if not chunk:
                raise SetupError(f"worker {self.name} exited unexpectedly")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        reply = json.loads(line)
        if not reply["ok"]:
            raise SetupError(f"worker {self.name}: {reply['error']}")
        return reply["result"]

    def call(self, op, timeout=60, **args):
        self.send(op, **args)
        return self.wait(time.monotonic() + timeout)


def stop_workers(workers):
    for w in workers:
        try:
            w.send("quit")
        except OSError:
            pass
    deadline = time.monotonic() + 10
    for w in workers:
        while True:
            try:
                done, _ = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(w.pid, signal.SIGKILL)
                os.waitpid(w.pid, 0)
                break
            time.sleep(0.02)
        for fd in (w.cmd_w, w.reply_r):
            try:
                os.close(fd)
            except OSError:
                pass


def enter_private_netns():
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise SetupError(f"unshare(CLONE_NEWNET): {os.strerror(err)} (run as root or use --host-netns)")
    r = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"ip link set lo up: {r.stderr.strip()}")
    # Per-namespace sysctls, so only ours change. On a loaded host a spuriously retransmitted FIN
    # draws an ACK, the peer (already closed) answers with RST, and by default (RFC 1337 off) the
    # RST kills the TIME_WAIT socket: the target's count would drift. And no connect() may
    # recycle a TIME_WAIT 4-tuple (tcp_tw_reuse is 2, "loopback only", by default).
    for name, value in (("tcp_rfc1337", "1"), ("tcp_tw_reuse", "0")):
        with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
            f.write(value)


def kernel_tcp_sockets():
    """TCP sockets in the kernel across all namespaces (slab objects), or None if unreadable.

    A sock_diag dump walks the one established hash that every namespace shares, skipping other
    namespaces' sockets: a big population elsewhere slows ss and conncheck here as well."""
    try:
        with open("/proc/slabinfo") as f:
            rows = [line.split() for line in f]
    except OSError:
        return None
    names = {"TCP", "TCPv6", "tw_sock_TCP", "tw_sock_TCPv6"}
    return sum(int(r[1]) for r in rows if r and r[0] in names)


def ipv6_loopback_works():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def plan_population(total, budget, ipv6):
    est, cw, tw = round(total * 0.15), round(total * 0.02), round(total * 0.03)
    room = budget - ACCEPT_BATCH  # the target also holds one batch of TIME_WAIT-to-be sockets
    if est + cw > room:  # one process cannot hold more fds than its limit
        scale = room / (est + cw)
        est, cw = int(est * scale), int(cw * scale)
    peers = max(2, math.ceil((est + cw) / room))
    est_ports_per_peer = max(4, math.ceil(est / peers / PER_LISTENER))
    target_listeners = peers * est_ports_per_peer + 1
    fixed = 2 * (est + cw) + tw + target_listeners
    noise_pairs = max(0, (total - fixed) // 2)
    noise_procs = max(1, math.ceil(2 * noise_pairs / budget)) if noise_pairs else 0
    noise_pairs -= math.ceil(noise_pairs / PER_LISTENER)  # their listeners are sockets too
    return {
        "established": est, "close_wait": cw, "time_wait": tw, "peers": peers,
        "est_ports_per_peer": est_ports_per_peer, "noise_pairs": max(0, noise_pairs),
        "noise_procs": noise_procs, "ipv6_noise": ipv6 and noise_procs >= 2,
    }


def split(n, parts):
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


class Population:
    def __init__(self, plan):
        self.plan = plan
        self.workers = []
        self.target = None
        self.peers = []
        self.est_ports = []  # (peer, port)
        self.cw_port = None
        self.tw_created = None
        self.cgroups = []  # directories we created, removed by stop()

    def build(self, deadline):
        p = self.plan
        self.target = self._spawn("target")
        self.peers = [self._spawn(f"peer{i}") for i in range(p["peers"])]
        noise = [self._spawn(f"noise{i}") for i in range(p["noise_procs"])]
        # Noise first, all workers at once: they need nobody else.
        for i, (w, n) in enumerate(zip(noise, split(p["noise_pairs"], len(noise) or 1))):
            v6 = p["ipv6_noise"] and i == len(noise) - 1
            host, fam = ("::1", socket.AF_INET6) if v6 else ("127.0.0.1", socket.AF_INET)
            w.send("pairs", group="pairs", host=host, family=fam, count=n, close_wait_every=97)
        for peer in self.peers:
            for port in peer.call("listen", host="127.0.0.1", family=socket.AF_INET,
                                  count=p["est_ports_per_peer"]):
                self.est_ports.append((peer, port))
        self.cw_port = (self.peers[0], self.peers[0].call("listen", host="127.0.0.1",
                                                          family=socket.AF_INET, count=1)[0])
        for (peer, port), n in zip(self.est_ports, split(p["established"], len(self.est_ports))):
            self._link(peer, port, n, "est", shutdown=False, deadline=deadline)
        self._link(*self.cw_port, p["close_wait"], "cw", shutdown=True, deadline=deadline)
        for w in noise:
            w.wait(deadline)

    def make_time_wait(self, deadline, count=None):
        """The target connects to its peers and closes first: TIME_WAIT on the target's side."""
        count = self.plan["time_wait"] if count is None else count
        for (peer, port), n in zip(self.est_ports, split(count, len(self.est_ports))):
            while n > 0:
                batch = min(ACCEPT_BATCH, n)
                self._link(peer, port, batch, "tw", shutdown=False, deadline=deadline, tw=True)
                n -= batch
        self.tw_created = time.monotonic()

    def _link(self, peer, port, count, group, shutdown, deadline, tw=False):
        done = 0
        while done < count:
            batch = min(ACCEPT_BATCH, count - done)
            self.target.call("connect", group=group, host="127.0.0.1", family=socket.AF_INET,
                             port=port, count=batch, timeout=deadline - time.monotonic())
            peer.call("accept", group=group, port=port, count=batch, shutdown=shutdown,
                      timeout=deadline - time.monotonic())
            if tw:
                self.target.call("close", group=group)
                peer.call("close_after_eof", group=group, timeout=deadline - time.monotonic())
            done += batch

    def add_small_target(self, name, established, close_wait, deadline, own_cgroup=False):
        """A worker with `established` + `close_wait` connections to the peers; with own_cgroup
        it is moved into a new cgroup v2 before it opens any socket (a socket keeps the cgroup
        of the process that created it). Returns the worker."""
        w = self._spawn(name)
        if own_cgroup:
            mount = cgroup2_mount()
            if mount is None:
                raise SetupError("no cgroup2 mount: cannot give a target a cgroup of its own")
            path = os.path.join(mount, f"conncheck-bench-{os.getpid()}-{name}")
            try:
                os.mkdir(path)
                self.cgroups.append(path)
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(w.pid))
            except OSError as e:
                raise SetupError(f"cannot create cgroup {path}: {e}")
        # Ports of their own on a peer: TIME_WAIT toward the big target's peer ports would be
        # attributed to this one by peer endpoint as well.
        peer = self.peers[0]
        est_port, cw_port = peer.call("listen", host="127.0.0.1", family=socket.AF_INET, count=2)
        w.call("connect", group="est", host="127.0.0.1", family=socket.AF_INET, port=est_port,
               count=established, timeout=deadline - time.monotonic())
        peer.call("accept", group=f"{name}-est", port=est_port, count=established,
                  timeout=deadline - time.monotonic())
        w.call("connect", group="cw", host="127.0.0.1", family=socket.AF_INET, port=cw_port,
               count=close_wait, timeout=deadline - time.monotonic())
        peer.call("accept", group=f"{name}-cw", port=cw_port, count=close_wait, shutdown=True,
                  timeout=deadline - time.monotonic())
        return w

    def _spawn(self, name):
        w = WorkerHandle(name)
        self.workers.append(w)
        return w

    def stop(self):
        stop_workers(self.workers)
        self.workers = []
        for path in self.cgroups:
            try:
                os.rmdir(path)  # empty now: its one process has exited
            except OSError:
                pass
        self.cgroups = []


def cgroup2_mount():
    """Where cgroup2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid layout."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split()[:1] == ["cgroup2"]:
                    return left.split()[4].replace("\\040", " ")
    except OSError:
        pass
    return None


SS_STATES = {"ESTAB": "established", "CLOSE-WAIT": "close_wait", "TIME-WAIT": "time_wait"}


def census(population):
    """Every TCP socket in the namespace, and the target's by state (its peers' ports)."""
    out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    target_ports = {str(port) for _, port in population.est_ports} | {str(population.cw_port[1])}
    total, target = 0, {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        total += 1
        if fields[4].rsplit(":", 1)[-1] in target_ports:
            state = SS_STATES.get(fields[0], fields[0].lower())
            target[state] = target.get(state, 0) + 1
    return total, target


def settle(population, want, deadline):
    """The census once the last FINs have been processed (softirq work may lag the syscalls)."""
    while True:
        total, target = census(population)
        if all(target.get(k, 0) == v for k, v in want.items()) or time.monotonic() > deadline:
            return total, target
        time.sleep(0.05)


def tcp_counters():
    r = subprocess.run(["nstat", "-az"], capture_output=True, text=True)
    keep = ("TcpExtTCPAbortOnMemory", "TcpExtTCPTimeWaitOverflow", "TcpExtTW ", "TcpExtTWKilled",
            "TcpExtTCPAbortOnClose", "TcpExtTWRecycled", "TcpRetransSegs", "TcpOutRsts")
    found = [" ".join(l.split()[:2]) for l in r.stdout.splitlines() if l.startswith(keep)]
    return ", ".join(found) or "nstat unavailable"


def wait_time_wait_gone(population, deadline):
    ports = {str(port) for _, port in population.est_ports}
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-tanH", "state", "time-wait"], capture_output=True,
                             text=True).stdout
        if not any(l.split()[-1].rsplit(":", 1)[-1] in ports for l in out.splitlines() if l):
            return
        time.sleep(0.2)
    raise SetupError("old TIME_WAIT sockets did not expire in time")
