#!/usr/bin/env python3
"""`conncheck watch` fed by connection events, end to end: watch_target opens and closes
connections on loopback while watch runs; the JSON says "events" and counts every open, close
and TIME_WAIT exactly (connections shorter than a tick included, none by peer), each peer has
the age of its oldest connection, and the log lines say events too. With --no-events watch says
it polls, and why.

usage: watch_events_test.py CONNCHECK WATCH_TARGET
Exits 77 where eBPF tracing cannot work here (as `conncheck trace` finds it), unless
CONNCHECK_REQUIRE_BPF is set: then that is a failure."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

CONNCHECK, TARGET = sys.argv[1], sys.argv[2]
FAILURES = []
STARTED = []  # every process this test starts, killed by pid at the end


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)
    else:
        print(f"ok: {what}")


def start(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def probe_available():
    r = subprocess.run([CONNCHECK, "trace", "--pid", str(os.getpid()), "--for", "1ms"],
                       capture_output=True, text=True)
    if r.returncode != 6:
        return
    if os.environ.get("CONNCHECK_REQUIRE_BPF"):
        print(f"FAIL: CONNCHECK_REQUIRE_BPF is set and eBPF is unavailable: {r.stderr.strip()}",
              file=sys.stderr)
        sys.exit(1)
    print(f"skipped: {r.stderr.strip()}", file=sys.stderr)
    sys.exit(77)


class Target:
    """watch_target: a listener on 127.0.0.1 whose connections change on command."""

    def __init__(self, tmp):
        self.fifo = os.path.join(tmp, "cmd")
        self.status = os.path.join(tmp, "status")
        os.mkfifo(self.fifo)
        self.proc = start([TARGET, self.fifo, self.status])
        self.done = 0
        self.wait_done()

    def wait_done(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.status) as f:
                    words = f.read().split()
                if len(words) == 3 and int(words[1]) == self.done:
                    self.port = int(words[2])
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"watch_target did not finish command {self.done}")

    def do(self, command):
        with open(self.fifo, "w") as f:
            f.write(command + "\n")
        self.done += 1
        self.wait_done()


def watch(pid, *extra):
    return start([CONNCHECK, "watch", "--pid", str(pid), "--interval", "200ms", *extra],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def exact_counts(target):
    w = watch(target.proc.pid, "--json", "--count", "300")
    first = json.loads(w.stdout.readline())  # the first scan: the probe follows the target
    check(first["tracking"] == "events" and first["polling_reason"] is None,
          f"watch says events where trace works (got {first['tracking']}: "
          f"{first['polling_reason']})")
    target.do("open 3")   # 6 opens: both ends of 3 connections
    target.do("churn 5")  # 10 opens, 10 closes, 5 TIME_WAIT, all between two scans
    target.do("tw 2")     # 4 closes, 2 TIME_WAIT of sockets watch saw live
    time.sleep(1.0)       # a few more ticks: nothing may be counted twice
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=10)
    check(w.returncode == 0, f"watch exits 0 on SIGINT (got {w.returncode}: {err})")
    last = json.loads(out.splitlines()[-1])
    p = last["processes"][0]
    churn = p["churn"]
    check(churn["opened_total"] == 16, f"16 opens counted (got {churn['opened_total']})")
    check(churn["closed_total"] == 14, f"14 closes counted (got {churn['closed_total']})")
    check(churn["short_lived_total"] >= 5,
          f"the churned connections lived less than a tick (got {churn['short_lived_total']})")
    tw = p["time_wait"]
    check(tw == {"exact": 7, "by_peer": 0}, f"7 TIME_WAIT, all exact (got {tw})")
    check(p["states"]["established"]["count"] == 2, "one connection left: 2 ESTABLISHED")
    peers = {peer["remote"]: peer for peer in p["peers"]}
    inbound = peers.get("127.0.0.1 (in)")
    outbound = peers.get(f"127.0.0.1:{target.port}")
    for name, peer in (("accepted", inbound), ("connected", outbound)):
        check(peer is not None and peer["oldest_age_seconds"] is not None
              and not peer["oldest_predates_watch"]
              and 0.5 <= peer["oldest_age_seconds"] <= last["uptime_seconds"],
              f"the {name} peer's oldest connection has its exact age ({peer})")


def lines_and_polling(target):
    w = watch(target.proc.pid, "--count", "1")
    out, _ = w.communicate(timeout=10)
    check(" tracking=events " in out, f"the log line says events ({out.strip()})")
    w = watch(target.proc.pid, "--json", "--count", "1", "--no-events")
    out, _ = w.communicate(timeout=10)
    j = json.loads(out.splitlines()[-1])
    check(j["tracking"] == "polling" and "--no-events" in (j["polling_reason"] or ""),
          f"--no-events polls and says why ({j['tracking']}: {j['polling_reason']})")
    p = j["processes"][0]
    check(all(peer["oldest_age_seconds"] is None for peer in p["peers"]),
          "polling knows no connection ages")


def main():
    probe_available()
    with tempfile.TemporaryDirectory() as tmp:
        target = Target(tmp)
        try:
            exact_counts(target)
            lines_and_polling(target)
            with open(target.fifo, "w") as f:
                f.write("quit\n")
            target.proc.wait(timeout=10)
        finally:
            for p in STARTED:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if FAILURES:
        print(f"{len(FAILURES)} failures", file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
