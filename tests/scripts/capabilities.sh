#!/usr/bin/env bash
# The capability sets conncheck(1) documents under PRIVILEGES, measured: each mode run by an
# unprivileged user (nobody) holding exactly its set as ambient capabilities passes, and the same
# set minus any one capability fails with the message that names the missing one. The target is a
# root process holding loopback sockets (and one inside a network namespace this test creates).
# trace too, where eBPF is available.
# Usage: capabilities.sh CONNCHECK. Exits 77 (skipped) without root, setpriv, ip or python3.
set -uo pipefail

bin=${1:?usage: capabilities.sh CONNCHECK}
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; failed=1; }
failed=0

[[ $(id -u) -eq 0 ]] || skip "needs root to hand out capabilities"
command -v setpriv >/dev/null || skip "needs setpriv (util-linux)"
command -v ip >/dev/null || skip "needs ip (iproute2)"
command -v python3 >/dev/null || skip "needs python3"
id nobody >/dev/null 2>&1 || skip "needs the user nobody"

work=$(mktemp -d)
ns=conncheck-caps-$$
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  ip netns delete "$ns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
chmod 0755 "$work"
# nobody may not traverse the build directory's parents everywhere: a copy it can execute.
cp "$bin" "$work/conncheck"
chmod 0755 "$work/conncheck"

holder='
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
print("ready", flush=True)
sys.stdin.read()
'
# Waits for "ready" on a fifo: the holder's sockets exist before anything audits it.
start_holder() { # NAME [ip netns exec NS]
  local name=$1
  shift
  mkfifo "$work/$name.in"
  "$@" python3 -c "$holder" <"$work/$name.in" >"$work/$name.ready" &
  pids+=($!)
  exec {keep}>"$work/$name.in" # keeps the holder's stdin open until the test ends
  for _ in $(seq 100); do
    grep -q ready "$work/$name.ready" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: the $name holder did not start" >&2
  exit 1
}
start_holder host
host_pid=${pids[-1]}
ip netns add "$ns" || skip "cannot create a network namespace"
ip netns exec "$ns" ip link set lo up
start_holder netns ip netns exec "$ns"
netns_pid=${pids[-1]}

state=$work/state
mkdir "$state"
chown nobody "$state"
chmod 0700 "$state"
textfiles=$work/textfiles # root's, mode 0755, like Debian's /var/lib/prometheus/node-exporter
mkdir "$textfiles"

# Runs conncheck as nobody with exactly the capabilities given ("sys_ptrace,dac_read_search").
as_nobody() { # CAPS ARGS...
  local caps=$1 set=-all
  shift
  local c
  for c in ${caps//,/ }; do set+=",+$c"; done
  setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps="$set" \
    --ambient-caps="$set" --bounding-set="$set" -- "$work/conncheck" "$@"
}

# MODE: the documented set, the command, what success looks like.
declare -A sets=(
  [audit]=sys_ptrace,dac_read_search
  [netns]=sys_ptrace,dac_read_search,sys_admin
  [check]=sys_ptrace,dac_read_search
  [export]=sys_ptrace,dac_override
)
run_mode() { # MODE CAPS -> sets rc, out, err
  local mode=$1 caps=$2
  case $mode in
  audit) as_nobody "$caps" --pid "$host_pid" --json ;;
  netns) as_nobody "$caps" --pid "$netns_pid" --json --source netlink ;;
  check) as_nobody "$caps" check --pid "$host_pid" --state-file "$state/check.json" -w 5 -c 10 ;;
  export) rm -f "$textfiles"/*; as_nobody "$caps" export --pid "$host_pid" --textfile-dir "$textfiles" ;;
  esac >"$work/out" 2>"$work/err"
  rc=$?
  out=$(<"$work/out")
  err=$(<"$work/err")
}
succeeded() { # MODE
  case $1 in
  audit | netns) [[ $rc -eq 0 ]] && python3 -c '
import json, sys
report = json.load(open(sys.argv[1]))
processes = report["processes"]
assert len(processes) == 1 and processes[0]["pid"] == int(sys.argv[2]), processes
assert processes[0]["states"]["established"] == 2, processes[0]["states"]
' "$work/out" "$([[ $1 == audit ]] && echo "$host_pid" || echo "$netns_pid")" ;;
  check) [[ $rc -eq 0 && $out == "CONNCHECK OK - "* ]] ;;
  export) [[ $rc -eq 0 ]] && grep -q '^conncheck_up 1$' "$textfiles/conncheck.prom" ;;
  esac
}

for mode in audit netns check export; do
  run_mode "$mode" "${sets[$mode]}"
  if succeeded "$mode"; then
    echo "ok   $mode with ${sets[$mode]}"
  else
    fail "$mode with ${sets[$mode]}: exit $rc, stdout: $out, stderr: $err"
  fi
  for missing in ${sets[$mode]//,/ }; do
    fewer=$(tr ',' '\n' <<<"${sets[$mode]}" | grep -vx "$missing" | paste -sd,)
    run_mode "$mode" "$fewer"
    name="CAP_${missing^^}"
    expected_rc=4
    [[ $mode == check ]] && expected_rc=3
    message="$out$err"
    if [[ $rc -eq $expected_rc && $message == *"(needs $name)"* && $message != *"run as root"* ]]; then
      echo "ok   $mode without $name: exit $rc, names $name"
    else
      fail "$mode without $name: exit $rc (want $expected_rc and \"(needs $name)\"): $message"
    fi
  done
done

# trace: CAP_BPF + CAP_PERFMON load the programs; naming call sites in another user's process
# also takes CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH. Without eBPF here at all (no BTF, a build without it), skipped.
trace_rc() { # CAPS -> sets rc, out, err
  as_nobody "$1" trace --pid "$host_pid" --for 500ms >"$work/out" 2>"$work/err"
  rc=$?
  out=$(<"$work/out")
  err=$(<"$work/err")
}
"$bin" trace --pid "$host_pid" --for 100ms >/dev/null 2>"$work/err"
if [[ $? -eq 6 ]]; then
  echo "skip trace: eBPF is unavailable even to root: $(<"$work/err")"
else
  trace_rc bpf,perfmon,sys_ptrace,dac_read_search
  if [[ $rc -eq 0 && $err != *needs* ]]; then
    echo "ok   trace with bpf,perfmon,sys_ptrace,dac_read_search"
  else
    fail "trace with bpf,perfmon,sys_ptrace,dac_read_search: exit $rc: $err"
  fi
  trace_rc bpf,perfmon
  if [[ $rc -eq 8 && $err == *"/proc/$host_pid/"*" may not be read (needs CAP_SYS_PTRACE"* &&
    $out == *Ledger* ]]; then
    echo "ok   trace without CAP_SYS_PTRACE: exit 8, the ledger, names CAP_SYS_PTRACE"
  else
    fail "trace without CAP_SYS_PTRACE: exit $rc (want 8 naming it): $out$err"
  fi
  for missing in bpf perfmon; do
    trace_rc "$(sed "s/$missing//; s/,,/,/; s/^,//" <<<"bpf,perfmon,sys_ptrace,dac_read_search")"
    name="CAP_${missing^^}"
    other=$([[ $missing == bpf ]] && echo CAP_PERFMON || echo CAP_BPF)
    if [[ $rc -eq 6 && $err == *"needs $name (or root)"* && $err != *"$other"* ]]; then
      echo "ok   trace without $name: exit 6, names $name alone"
    else
      fail "trace without $name: exit $rc (want 6 naming only $name): $err"
    fi
  done
fi
exit "$failed"
