#!/bin/bash
# A process inside a network namespace this test creates, audited from outside: conncheck must
# enter the process's namespace (sock_diag answers only for the namespace its socket was created
# in), report exactly the sockets the process holds, and name that namespace.
# Usage: netns_test.sh CONNCHECK_BINARY. Exits 77 (skipped) without root or `ip netns`.
set -u

bin=${1:?usage: netns_test.sh CONNCHECK_BINARY}
skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || skip "needs root to create a network namespace"
command -v ip >/dev/null || skip "needs ip (iproute2)"
command -v python3 >/dev/null || skip "needs python3"
[ -x "$bin" ] || fail "$bin is not an executable"

ns=conncheck-test-$$
tmp=$(mktemp -d) || fail "mktemp"
cleanup() {
    # Only the processes inside our own namespace: the holder and its helper.
    local pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null
    done
    [ -n "${holder_pid:-}" ] && wait "$holder_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$ns" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
ip netns exec "$ns" ip link set lo up || fail "cannot bring up lo in $ns"

# The holder (the audited process) keeps a listener, two ESTABLISHED connections and one
# CLOSE_WAIT; a forked helper holds the server ends and closes one of them, so the holder's
# socket for it gets the FIN and stays in CLOSE_WAIT (it never calls close()).
holder=$(
    cat <<'EOF'
import ctypes, os, signal, socket, struct, sys, time
libc = ctypes.CDLL(None)
libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the test script
listener = socket.create_server(("127.0.0.1", 0))
upstream = socket.create_server(("127.0.0.1", 0))
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    libc.prctl(1, signal.SIGKILL)
    listener.close()
    os.close(ready_r)
    ends = [upstream.accept()[0] for _ in range(3)]
    ends[2].close()
    os.write(ready_w, b"x")
    signal.pause()
    os._exit(0)
port = upstream.getsockname()[1]
upstream.close()
os.close(ready_w)
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
os.read(ready_r, 1)
deadline = time.monotonic() + 10
while struct.unpack("B", conns[2].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0] != 8:
    if time.monotonic() > deadline:  # 8 is TCP_CLOSE_WAIT
        sys.exit("the FIN never arrived")
    time.sleep(0.01)
print("READY", os.getpid(), flush=True)
time.sleep(600)
EOF
)
mkfifo "$tmp/ready" || fail "mkfifo"
ip netns exec "$ns" python3 -c "$holder" >"$tmp/ready" &
holder_pid=$!
# Read-write open: does not block waiting for the writer, so `read -t` bounds the whole wait.
exec 3<>"$tmp/ready"
word='' pid=''
deadline=$((SECONDS + 20))
until read -r -t 0.5 -u 3 word pid; do
    kill -0 "$holder_pid" 2>/dev/null || fail "the holder exited before it was ready"
    [ "$SECONDS" -lt "$deadline" ] || fail "the holder did not report ready within 20 s"
done
if [ "$word" != READY ] || ! [ "$pid" -gt 0 ] 2>/dev/null; then
    fail "unexpected line from the holder: $word $pid"
fi

ns_inode=$(stat -L -c %i "/run/netns/$ns") || fail "cannot stat /run/netns/$ns"
host_inode=$(stat -L -c %i /proc/self/ns/net)
[ "$ns_inode" != "$host_inode" ] || fail "the namespace has the host's inode"

"$bin" --pid "$pid" --json >"$tmp/out.json" 2>"$tmp/err.txt" ||
    fail "conncheck --pid $pid --json exited $?: $(cat "$tmp/err.txt")"

python3 - "$tmp/out.json" "$pid" "$ns_inode" <<'EOF' || fail "the JSON report is wrong (above)"
import json, sys
text = open(sys.argv[1]).read()
try:
    report = json.loads(text)
except ValueError as e:
    sys.exit(f"not JSON ({e}): {text[:200]!r}")
pid, ns_inode = int(sys.argv[2]), int(sys.argv[3])
procs = [p for p in report["processes"] if p["pid"] == pid]
assert len(procs) == 1, f"pid {pid} not exactly once in processes: {report['processes']}"
p = procs[0]
states = {k: v for k, v in p["states"].items() if v}
want = {"listen": 1, "established": 2, "close_wait": 1}
assert states == want, f"states {states}, want {want}"
assert p["netns"] == ns_inode, f"netns {p['netns']}, want {ns_inode} (the test's namespace)"
kinds = [f["kind"] for f in p["findings"]]
assert "close_wait" in kinds, f"no close_wait finding: {kinds}"
EOF

"$bin" --pid "$pid" --no-color >"$tmp/out.txt" 2>"$tmp/err.txt" ||
    fail "conncheck --pid $pid exited $?: $(cat "$tmp/err.txt")"
grep -q "netns $ns_inode" "$tmp/out.txt" || fail "the text report does not name netns $ns_inode:
$(cat "$tmp/out.txt")"

# The holder's sockets exist only in its namespace: their inodes show up there, not in the host's.
inodes=$(for fd in /proc/"$pid"/fd/*; do readlink "$fd"; done | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
[ "$(echo "$inodes" | wc -w)" -eq 4 ] || fail "expected 4 socket fds in the holder, got: $inodes"
# ss -e inside `ip netns exec` warns once per socket that it cannot find the cgroup2 mount.
in_ns=$(ip netns exec "$ns" ss -tanHe 2>/dev/null) || fail "ss inside the namespace failed"
in_host=$(ss -tanHe) || fail "ss in the host namespace failed"
for ino in $inodes; do
    grep -qw "ino:$ino" <<<"$in_ns" || fail "socket inode $ino not found inside $ns"
    ! grep -qw "ino:$ino" <<<"$in_host" || fail "socket inode $ino visible in the host namespace"
done

echo "PASS: pid $pid in netns $ns_inode audited from outside: listen 1, established 2, close_wait 1"
