#!/usr/bin/env bash
# `conncheck export` output linted by `promtool check metrics` (a target with sockets, one that is
# gone, a --job), the textfile written by the binary read back while it is rewritten, and the
# alerting rules checked by `promtool check rules` and exercised by `promtool test rules`.
# Exits 77 (skipped) without promtool (Debian package prometheus).
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1; then
    echo "SKIP: promtool not found (install the Debian package prometheus)"
    exit 77
fi
bin=${CONNCHECK_BIN:?run through meson test}
root=${CONNCHECK_SOURCE_ROOT:?run through meson test}
tmp=$(mktemp -d)
holder=""
cleanup() {
    if [ -n "$holder" ]; then kill "$holder" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

lint() { # name file
    echo "== promtool check metrics: $1"
    promtool check metrics <"$2" || fail "promtool check metrics rejected $1: $(cat "$2")"
}

# A target with loopback sockets in several states: python when there is one, else this shell.
target=$$
if command -v python3 >/dev/null 2>&1; then
    python3 - "$tmp/ready" <<'EOF' &
import socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
clients = [socket.create_connection(listener.getsockname()) for _ in range(4)]
servers = [listener.accept()[0] for _ in range(4)]
for s in servers[:2]:
    s.shutdown(socket.SHUT_WR)  # two clients in CLOSE_WAIT
open(sys.argv[1], "w").close()
time.sleep(300)
EOF
    holder=$!
    for _ in $(seq 100); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
    [ -e "$tmp/ready" ] || fail "the python socket holder did not start"
    target=$holder
fi

"$bin" export --pid "$target" >"$tmp/up.prom" || fail "export --pid $target exited $?"
grep -q '^conncheck_up 1$' "$tmp/up.prom" || fail "no conncheck_up 1 in: $(cat "$tmp/up.prom")"
grep -q '^conncheck_tcp_sockets{process="[^"]*",state="established"} ' "$tmp/up.prom" ||
    fail "no established series for $target"
grep -q '^conncheck_process_pid{process="[^"]*"} '"$target"'$' "$tmp/up.prom" ||
    fail "no conncheck_process_pid $target"
! grep -q 'pid=' "$tmp/up.prom" || fail "a series carries the pid: $(grep 'pid=' "$tmp/up.prom")"
lint "a live target" "$tmp/up.prom"

"$bin" export --pid "$target" --job web-1 >"$tmp/job.prom"
grep -q '^conncheck_up{target="web-1"} 1$' "$tmp/job.prom" || fail "no target label"
lint "a target named by --job" "$tmp/job.prom"

# A pid that does not exist (above pid_max): up 0, still valid exposition, exit status 3.
status=0
"$bin" export --pid 2147483647 >"$tmp/down.prom" 2>"$tmp/down.err" || status=$?
[ "$status" -eq 3 ] || fail "export of a missing pid exited $status, want 3"
grep -q '^conncheck_up 0$' "$tmp/down.prom" || fail "no conncheck_up 0 in: $(cat "$tmp/down.prom")"
lint "a target that is gone" "$tmp/down.prom"

# The binary's textfile: a reader never sees a partial file while 100 runs rewrite it.
mkdir "$tmp/textfile"
"$bin" export --pid "$target" --textfile-dir "$tmp/textfile"
lint "the textfile" "$tmp/textfile/conncheck.prom"
last=$(tail -n 1 "$tmp/textfile/conncheck.prom" | sed 's/ .*//')
( for _ in $(seq 100); do "$bin" export --pid "$target" --textfile-dir "$tmp/textfile"; done
  touch "$tmp/writes-done" ) &
writer=$!
reads=0
while [ ! -e "$tmp/writes-done" ]; do
    content=$(cat "$tmp/textfile/conncheck.prom")
    [ "$(printf '%s\n' "$content" | tail -n 1 | sed 's/ .*//')" = "$last" ] ||
        fail "read a partial textfile: $(printf '%s\n' "$content" | tail -n 2)"
    reads=$((reads + 1))
done
wait "$writer"
echo "reader saw $reads complete textfiles during 100 exports"
[ "$(ls "$tmp/textfile")" = "conncheck.prom" ] || fail "left behind: $(ls "$tmp/textfile")"

echo "== promtool check rules"
promtool check rules "$root/scripts/prometheus/conncheck-rules.yml"
echo "== promtool test rules"
promtool test rules "$root/tests/scripts/conncheck-rules.test.yml"
echo "OK"
