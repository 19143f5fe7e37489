#!/bin/bash
# A socket of another network namespace, received over a unix socket (SCM_RIGHTS) by a process in
# the host's namespace: the dump of the host's namespace does not list it, so conncheck must find
# it in the namespace it belongs to (here one that `ip netns add` keeps, with no process left in
# it) and say so, not miss it silently.
# Usage: netns_passed_test.sh CONNCHECK_BINARY. Exits 77 (skipped) without root or `ip netns`.
set -u

bin=${1:?usage: netns_passed_test.sh CONNCHECK_BINARY}
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

ns=conncheck-passed-$$
tmp=$(mktemp -d) || fail "mktemp"
cleanup() {
    local pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null
    done
    [ -n "${receiver_pid:-}" ] && kill -KILL "$receiver_pid" 2>/dev/null && wait "$receiver_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$ns" 2>"$tmp/err" || skip "ip netns add failed: $(cat "$tmp/err")"
ip netns exec "$ns" ip link set lo up || fail "cannot bring up lo in $ns"

# The receiver lives in the host's namespace and keeps what it is sent; it closes the unix
# socket it got it through, so the passed socket is its only socket.
receiver=$(
    cat <<'EOF'
import ctypes, os, signal, socket, sys, time
libc = ctypes.CDLL(None)
libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the test script
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
print("READY", os.getpid(), flush=True)
conn, _ = server.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 1)
conn.close()
server.close()
print("HAVE", fds[0], flush=True)
time.sleep(600)
EOF
)
# The sender, inside the namespace: a connection to itself, whose client end it passes on; it
# then exits, so the server end closes (the passed socket goes to CLOSE_WAIT) and no process is
# left in the namespace.
sender=$(
    cat <<'EOF'
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
unix.connect(sys.argv[1])
socket.send_fds(unix, [b"x"], [client.fileno()])
unix.close()
EOF
)
mkfifo "$tmp/out" || fail "mkfifo"
python3 -c "$receiver" "$tmp/pass.sock" >"$tmp/out" &
receiver_pid=$!
exec 3<>"$tmp/out"
expect() {
    local want=$1 deadline=$((SECONDS + 20))
    word='' value=''
    until read -r -t 0.5 -u 3 word value; do
        kill -0 "$receiver_pid" 2>/dev/null || fail "the receiver exited before it said $want"
        [ "$SECONDS" -lt "$deadline" ] || fail "the receiver did not say $want within 20 s"
    done
    [ "$word" = "$want" ] || fail "unexpected line from the receiver: $word $value"
}
expect READY
pid=$value
ip netns exec "$ns" python3 -c "$sender" "$tmp/pass.sock" || fail "the sender failed"
expect HAVE
[ -z "$(ip netns pids "$ns")" ] || fail "a process is still inside $ns"

ns_inode=$(stat -L -c %i "/run/netns/$ns") || fail "cannot stat /run/netns/$ns"

# The FIN reaches the passed socket asynchronously: poll for its CLOSE_WAIT, within a bound.
deadline=$((SECONDS + 20))
while :; do
    "$bin" --pid "$pid" --json >"$tmp/out.json" 2>"$tmp/err.txt" ||
        fail "conncheck --pid $pid --json exited $?: $(cat "$tmp/err.txt")"
    python3 - "$tmp/out.json" "$pid" <<'EOF' && break
import json, sys
p = [p for p in json.load(open(sys.argv[1]))["processes"] if p["pid"] == int(sys.argv[2])][0]
sys.exit(0 if p["states"]["close_wait"] == 1 else 1)
EOF
    [ "$SECONDS" -lt "$deadline" ] || fail "no CLOSE_WAIT socket reported for pid $pid within 20 s:
$(cat "$tmp/out.json")"
    sleep 0.1
done

python3 - "$tmp/out.json" "$pid" <<'EOF' || fail "the JSON report is wrong (above)"
import json, sys
report = json.load(open(sys.argv[1]))
p = [p for p in report["processes"] if p["pid"] == int(sys.argv[2])][0]
states = {k: v for k, v in p["states"].items() if v}
assert states == {"close_wait": 1}, f"states {states}, want close_wait 1"
assert p["other_netns_sockets"] == 1, f"other_netns_sockets {p['other_netns_sockets']}, want 1"
assert p["other_sockets"]["total"] == 0, f"other_sockets {p['other_sockets']}, want none"
kinds = [f["kind"] for f in p["findings"]]
assert "close_wait" in kinds, f"no close_wait finding: {kinds}"
EOF

"$bin" --pid "$pid" --no-color >"$tmp/out.txt" 2>"$tmp/err.txt" ||
    fail "conncheck --pid $pid exited $?: $(cat "$tmp/err.txt")"
grep -q "1 of them held from another network namespace" "$tmp/out.txt" ||
    fail "the text report does not say the socket came from another namespace:
$(cat "$tmp/out.txt")"

echo "PASS: pid $pid holds a CLOSE_WAIT socket of netns $ns_inode (no process in it): found there"
