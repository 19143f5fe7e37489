#!/usr/bin/env bash
# The Debian package through an operator's day.
# On this machine: installed with dpkg (apt for missing Depends), it gives a working conncheck,
# its man page, completions, examples, the conffile /etc/default/conncheck and units (valid, not
# enabled); purged, it leaves no file behind.
# Then, in a container booted with systemd-nspawn (units need systemd as PID 1): install, enable
# the timers, check one process in turn from the unit, a root shell, sudo (the NRPE line) and
# cron (the cron.d line), none taking or refusing another's state; the export unit without
# node_exporter's directory says what is missing; upgrade to a higher version (state and an
# edited conffile kept); remove (timers stopped and disabled, nothing failed); purge (nothing
# left: no files, no state, no textfile).
# Run by scripts/test as root with the .deb scripts/package printed. Exits 77 (skipped) after the
# first part when the container cannot be had, saying why.
# Usage: package.sh CONNCHECK_DEB
set -uo pipefail
deb=$(realpath "${1:?usage: package.sh CONNCHECK_DEB}")
here=$(dirname "$(realpath "$0")")
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || fail "needs root to install the package"
if dpkg-query -W -f='${Status}' conncheck 2>/dev/null | grep -q installed; then
  fail "conncheck is already installed: this test installs and purges it"
fi

holder=""
container=""
work=$(mktemp -d)
cleanup() {
  if [[ -n $holder ]]; then kill "$holder" 2>/dev/null; fi
  if [[ -n $container ]]; then
    kill "$container" 2>/dev/null # nspawn halts the container on SIGTERM
    for _ in $(seq 100); do kill -0 "$container" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$container" 2>/dev/null
    wait "$container" 2>/dev/null
  fi
  if mountpoint -q "$work/root"; then umount "$work/root"; fi
  if mountpoint -q "$work/layer"; then umount "$work/layer"; fi
  # Never follow a mount left behind into the machine's own files (the overlay's lower layer).
  if ! grep -q " $work/" /proc/mounts; then rm -rf "$work"; fi
  if dpkg-query -W -f='${Status}' conncheck 2>/dev/null | grep -q installed; then
    dpkg --purge conncheck >/dev/null
  fi
}
trap cleanup EXIT

# Every path outside the places that change anyway (caches, logs, temporary files, home
# directories, dpkg's own records of what it did), and /var/lib/conncheck: conncheck run as root
# (the test suites) may have made it before, and purge removes it, which is checked apart.
file_list() {
  find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
    -o -path /var/tmp -o -path /var/cache -o -path /var/log -o -path /var/lib/apt \
    -o -path /var/lib/dpkg -o -path /root -o -path /home -o -path /work \
    -o -path /var/lib/conncheck \) -prune -o -print |
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
examples=/usr/share/doc/conncheck/examples
for f in /usr/share/bash-completion/completions/conncheck \
  /usr/share/zsh/vendor-completions/_conncheck \
  /usr/share/fish/vendor_completions.d/conncheck.fish \
  $examples/README $examples/prometheus/conncheck-rules.yml $examples/cron/conncheck \
  $examples/monitoring/sudoers $examples/monitoring/nrpe.cfg \
  $examples/monitoring/icinga2.conf /etc/default/conncheck; do
  [[ -s $f ]] || fail "$f is missing"
done
[[ ! -e /usr/share/conncheck ]] || fail "/usr/share/conncheck exists: conncheck reads nothing there"
dpkg-query -W -f='${Conffiles}\n' conncheck | grep -q '^ /etc/default/conncheck ' ||
  fail "/etc/default/conncheck is not a conffile"
[[ $(dpkg-deb -f "$deb" Suggests) == *prometheus-node-exporter* ]] ||
  fail "the package does not suggest prometheus-node-exporter"
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
[[ ! -e /var/lib/conncheck ]] || fail "purge left /var/lib/conncheck"
if ! diff "$work/before" "$work/after"; then
  fail "the purged package left the files above behind (or removed them)"
fi
echo "package: installed, checked and purged without a trace"

echo "== the lifecycle in a booted container"
# The container's root is this machine's own, under an overlay whose upper layer is a tmpfs in
# this test's directory: nothing it writes reaches the machine, nothing is downloaded, and it boots
# in seconds (a debootstrap of Debian 12 took over 15 minutes here). It boots to basic.target,
# so the machine's own services (multi-user.target) do not start, and has no network but its own
# loopback (--private-network).
command -v systemd-nspawn >/dev/null ||
  skip "no systemd-nspawn (Debian package systemd-container): the lifecycle needs systemd as PID 1"
[[ -x /lib/systemd/systemd ]] || skip "no systemd on this machine to boot the container with"
for tool in sudo python3 useradd; do
  command -v "$tool" >/dev/null || skip "no $tool, which the lifecycle uses"
done
start=$SECONDS
root=$work/root
mkdir -p "$work/layer" "$root"
mount -t tmpfs -o size=512m,mode=0755 conncheck-lifecycle "$work/layer" ||
  skip "cannot mount a tmpfs for the container's writable layer"
mkdir "$work/layer/upper" "$work/layer/work"
if ! mount -t overlay conncheck-lifecycle \
  -o "lowerdir=/,upperdir=$work/layer/upper,workdir=$work/layer/work" "$root"; then
  skip "cannot mount an overlay of / for the container (overlayfs)"
fi

mkdir -p "$root/lifecycle"
cp "$deb" "$root/lifecycle/conncheck.deb"
# The upgrade: the same package rebuilt with a higher version, as a new upload would be.
dpkg-deb -R "$deb" "$work/unpacked"
upgrade_version="$(dpkg-deb -f "$deb" Version)+upgrade1"
sed -i "s/^Version: .*/Version: $upgrade_version/" "$work/unpacked/DEBIAN/control"
dpkg-deb -b "$work/unpacked" "$root/lifecycle/conncheck-upgrade.deb" >/dev/null ||
  fail "cannot rebuild the package with a higher version"
cp "$here/package_lifecycle.sh" "$root/lifecycle/"
echo "$upgrade_version" >"$root/lifecycle/upgrade-version"
# The machine's id would make the container's journal the machine's.
systemd-id128 new >"$root/etc/machine-id"

# --keep-unit and --register=no: this machine's PID 1 may not be systemd (no bus to ask for a
# scope, no machined).
systemd-nspawn --quiet --directory="$root" --boot --private-network --register=no --keep-unit \
  --link-journal=no --machine="conncheck-$$" --console=passive \
  -- systemd.unit=basic.target >"$work/container.log" 2>&1 &
container=$!
# The container's PID 1: nspawn's child whose pid in its own namespace is 1.
leader=""
for _ in $(seq 300); do
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [[ $(awk '/^NSpid:/ { print $NF }' "/proc/$p/status" 2>/dev/null) == 1 ]] || continue
    [[ $(awk '/^PPid:/ { print $2 }' "/proc/$p/status" 2>/dev/null) == "$container" ]] ||
      continue
    leader=$p
  done
  [[ -n $leader ]] && break
  kill -0 "$container" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $leader ]]; then
  tail -n 20 "$work/container.log"
  skip "systemd-nspawn could not boot the container here (log above)"
fi
cd / # the processes entering the container start from here
inside() {
  nsenter --target "$leader" --mount --uts --ipc --net --pid --cgroup --root --wd -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
state=""
for _ in $(seq 600); do
  state=$(inside systemctl is-system-running 2>/dev/null)
  [[ $state == running || $state == degraded ]] && break
  sleep 0.1
done
if [[ $state != running && $state != degraded ]]; then
  tail -n 20 "$work/container.log"
  skip "the container's systemd did not come up (state '$state')"
fi
echo "container booted ($state) in $((SECONDS - start)) s"
inside /bin/bash /lifecycle/package_lifecycle.sh || fail "the lifecycle failed (above)"
inside systemctl poweroff >/dev/null 2>&1
for _ in $(seq 300); do kill -0 "$container" 2>/dev/null || break; sleep 0.1; done
wait "$container" 2>/dev/null
container=""
echo "lifecycle: $((SECONDS - start)) s"
