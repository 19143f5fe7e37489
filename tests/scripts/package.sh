#!/usr/bin/env bash
# The Debian package on this machine: installed with dpkg (apt for missing Depends), it gives a
# working conncheck, its man page, completions and units (valid, not enabled); purged, it leaves
# no file behind. Run by scripts/test as root with the .deb scripts/package printed.
# Usage: package.sh CONNCHECK_DEB
set -uo pipefail
deb=${1:?usage: package.sh CONNCHECK_DEB}
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || fail "needs root to install the package"
if dpkg-query -W -f='${Status}' conncheck 2>/dev/null | grep -q installed; then
  fail "conncheck is already installed: this test installs and purges it"
fi

holder=""
work=$(mktemp -d)
cleanup() {
  if [[ -n $holder ]]; then kill "$holder" 2>/dev/null; fi
  rm -rf "$work"
  if dpkg-query -W -f='${Status}' conncheck 2>/dev/null | grep -q installed; then
    dpkg --purge conncheck >/dev/null
  fi
}
trap cleanup EXIT

# Every path outside the places that change anyway (caches, logs, temporary files, home
# directories, dpkg's own records of what it did).
file_list() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/tmp -o -path /var/cache -o -path /var/log -o -path /var/lib/apt \
    -o -path /var/lib/dpkg -o -path /root -o -path /home -o -path /work \) -prune -o -print |
    sort
}
file_list >"$work/before"

echo "== dpkg -i $(basename "$deb")"
if ! dpkg -i "$deb"; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -f -y -q --no-install-recommends || fail "apt cannot install the Depends"
fi

echo "== what it installed"
[[ $(command -v conncheck) == /usr/bin/conncheck ]] || fail "conncheck is not /usr/bin/conncheck"
version=$(conncheck --version) || fail "conncheck --version failed"
[[ $version == *"$(dpkg-deb -f "$deb" Version)"* ]] || fail "--version says $version"
man -w conncheck || fail "man -w conncheck finds no man page"
for f in /usr/share/bash-completion/completions/conncheck \
  /usr/share/zsh/vendor-completions/_conncheck \
  /usr/share/fish/vendor_completions.d/conncheck.fish \
  /usr/share/conncheck/prometheus/conncheck-rules.yml /usr/share/conncheck/cron/conncheck \
  /usr/share/conncheck/monitoring/sudoers /usr/share/conncheck/monitoring/nrpe.cfg \
  /usr/share/conncheck/monitoring/icinga2.conf; do
  [[ -s $f ]] || fail "$f is missing"
done
if readelf -S /usr/bin/conncheck | grep -qE '\.symtab|\.debug_info'; then
  fail "/usr/bin/conncheck is not stripped"
fi
echo "binary: $(stat -c %s /usr/bin/conncheck) bytes, stripped"

echo "== an audit of a test process"
python3 -c '
import signal, socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
print("ready", flush=True)
signal.pause()  # until this script kills it, by pid
' </dev/null >"$work/ready" &
holder=$!
for _ in $(seq 100); do grep -q ready "$work/ready" && break; sleep 0.1; done
conncheck --pid "$holder" --json >"$work/audit.json" || fail "the audit failed"
python3 - "$work/audit.json" "$holder" <<'PY' || fail "the audit's report is wrong"
import json, sys
report = json.load(open(sys.argv[1]))
(process,) = report["processes"]
assert process["pid"] == int(sys.argv[2]), process["pid"]
assert process["states"]["established"] == 2, process["states"]
PY
echo "== trace: the packaged eBPF object loads"
conncheck trace --pid "$holder" --for 1s --json >"$work/trace.jsonl" || fail "trace failed"
tail -n 1 "$work/trace.jsonl" | python3 -c '
import json, sys
assert json.load(sys.stdin)["type"] == "ledger"' || fail "trace ended without its ledger"

echo "== the units"
units=(/lib/systemd/system/conncheck-*)
((${#units[@]} == 4)) || fail "expected 4 units, found: ${units[*]}"
systemd-analyze verify "${units[@]}" || fail "systemd-analyze verify rejects the units"
for unit in "${units[@]}"; do
  state=$(systemctl is-enabled "$(basename "$unit")" 2>/dev/null)
  [[ $state == disabled || $state == static ]] || fail "$(basename "$unit") is $state"
  if [[ $unit == *.service ]]; then
    systemd-analyze security --offline=yes "$unit" | tail -n 1
  fi
done

echo "== dpkg --purge conncheck"
kill "$holder"
holder=""
dpkg --purge conncheck || fail "dpkg --purge failed"
file_list >"$work/after"
if ! diff "$work/before" "$work/after"; then
  fail "the purged package left the files above behind (or removed them)"
fi
echo "package: installed, checked and purged without a trace"
