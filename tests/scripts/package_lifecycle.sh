#!/usr/bin/env bash
# The operator's day inside a booted Debian 12 container (run by package.sh as root, with
# /lifecycle holding conncheck.deb, conncheck-upgrade.deb and upgrade-version): install, enable
# the timers, the unit, a root shell, sudo and cron checking one process in turn, the export unit
# with and without node_exporter's directory, upgrade, remove, purge.
set -uo pipefail
fail() {
  echo "FAIL: $*" >&2
  journalctl --no-pager -n 30 -o short-monotonic >&2 2>/dev/null
  exit 1
}
export DEBIAN_FRONTEND=noninteractive
cd /
# A machine made from a container image may refuse service starts and stops to package scripts
# (policy-rc.d, exit 101); this booted system is one where they run.
rm -f /usr/sbin/policy-rc.d
# It installs, deletes and adds users: only ever inside the container package.sh made.
[[ $(systemd-detect-virt --container) == systemd-nspawn && -f /lifecycle/upgrade-version ]] ||
  { echo "FAIL: not in package.sh's container" >&2; exit 1; }
examples=/usr/share/doc/conncheck/examples
state=/var/lib/conncheck
textfile=/var/lib/prometheus/node-exporter/conncheck.prom

# Waits up to 20 s for a oneshot unit's run started with --no-block to end; prints its Result.
unit_result() {
  local unit=$1 active
  for _ in $(seq 200); do
    active=$(systemctl show -P ActiveState "$unit")
    [[ $active == activating ]] || break
    sleep 0.1
  done
  systemctl show -P Result "$unit"
}
run_unit() { # UNIT: one run, which must succeed
  systemctl start "$1" || true
  local result
  result=$(unit_result "$1")
  [[ $result == success ]] || fail "$1 ended with result '$result'"
  journalctl --no-pager -o cat -u "$1" | grep CONNCHECK | tail -n 1 | sed "s/^/$1: /"
}
# A check's exit status: 0-2 is a verdict, 3 (UNKNOWN) a failure to check.
judged() { # WHO STATUS OUTPUT
  [[ $2 -le 2 ]] || fail "$1: the check ended UNKNOWN ($2): $3"
  echo "$1: $3"
}

echo "== install"
dpkg -i /lifecycle/conncheck.deb >/dev/null || fail "dpkg -i failed"
for timer in conncheck-check.timer conncheck-export.timer; do
  [[ $(systemctl is-enabled "$timer") == disabled ]] || fail "$timer is enabled on install"
done

# The process every run checks: a client holding two connections to a local listener, one of
# them closed by the peer (CLOSE_WAIT), as "collector" with its pid in /run/collector.pid.
cat >/usr/local/bin/collector <<'PY'
#!/usr/bin/python3
import os, signal, socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
kept = socket.create_connection(listener.getsockname())
peer_kept, _ = listener.accept()
closed = socket.create_connection(listener.getsockname())
peer_closed, _ = listener.accept()
peer_closed.close()
with open("/run/collector.pid.tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.rename("/run/collector.pid.tmp", "/run/collector.pid")
signal.pause()
PY
chmod 0755 /usr/local/bin/collector
systemd-run --quiet --unit=collector /usr/local/bin/collector || fail "cannot start the collector"
for _ in $(seq 100); do [[ -s /run/collector.pid ]] && break; sleep 0.1; done
[[ -s /run/collector.pid ]] || fail "the collector wrote no pid file"

echo "== enable the timers; each way of checking in turn, twice"
systemctl enable --now conncheck-check.timer conncheck-export.timer >/dev/null 2>&1 ||
  fail "cannot enable the timers"
id nagios >/dev/null 2>&1 || useradd --system --no-create-home nagios ||
  fail "cannot add the user nagios"
install -m 0440 $examples/monitoring/sudoers /etc/sudoers.d/conncheck
visudo -c >/dev/null || fail "visudo rejects the example sudoers file"
nrpe_line=$(sed -n 's/^command\[check_conncheck\]=//p' $examples/monitoring/nrpe.cfg)
cron_line=$(grep -m 1 '^\* \* \* \* \* root .*conncheck check' $examples/cron/conncheck |
  sed 's/^\* \* \* \* \* root //')
[[ -n $nrpe_line && -n $cron_line ]] || fail "no check line in the NRPE or cron example"
for round in 1 2; do
  run_unit conncheck-check.service
  out=$(conncheck check --name collector)
  judged "root shell" $? "$out"
  out=$(runuser -u nagios -- $nrpe_line)
  judged "sudo (NRPE)" $? "$out"
  # As cron runs it: /bin/sh, cron's environment, the line's output to the journal.
  env -i SHELL=/bin/sh PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LOGNAME=root \
    /bin/sh -c "$cron_line"
  judged "cron" $? "(to the journal)"
done
for f in $state/name-collector.json $state/nagios-collector.json $state/cron-collector.json; do
  [[ -f $f && $(stat -c %u "$f") == 0 ]] || fail "$f is missing or not root's"
done
[[ -L $state/units ]] || fail "$state/units is not systemd's link to the unit's private state"
unit_file=/var/lib/private/conncheck/units/name-collector.json
[[ -f $unit_file && $(stat -c %u "$unit_file") != 0 ]] ||
  fail "$unit_file is missing or not the unit's"

echo "== the export unit without node_exporter's directory"
rm -rf /var/lib/prometheus/node-exporter
systemctl start conncheck-export.service 2>/dev/null
[[ $(unit_result conncheck-export.service) != success ]] || fail "the export succeeded without its directory"
why=$(journalctl --no-pager -o cat -t conncheck-export | tail -n 1)
[[ $why == *"/var/lib/prometheus/node-exporter"*"prometheus-node-exporter"* ]] ||
  fail "the export unit's journal does not say what is missing: ${why:-nothing}"
echo "journal: $why"
mkdir -p /var/lib/prometheus/node-exporter
systemctl reset-failed conncheck-export.service
run_unit conncheck-export.service
grep -q '^conncheck_up 1' $textfile || fail "$textfile does not say conncheck_up 1"
[[ $(stat -c %a $textfile) == 644 ]] || fail "node_exporter may not read $textfile"

echo "== upgrade to $(cat /lifecycle/upgrade-version), with /etc/default/conncheck edited"
sed -i 's/^CHECK_ARGS="\(.*\)"/CHECK_ARGS="\1 --idle 120"/' /etc/default/conncheck
grep -q -- '--idle 120"$' /etc/default/conncheck || fail "cannot edit /etc/default/conncheck"
before=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["taken_at_ms"])' \
  $unit_file)
dpkg -i --force-confold /lifecycle/conncheck-upgrade.deb >/dev/null || fail "the upgrade failed"
[[ $(dpkg-query -W -f='${Version}' conncheck) == "$(cat /lifecycle/upgrade-version)" ]] ||
  fail "the upgrade did not install the new version"
grep -q -- '--idle 120"$' /etc/default/conncheck || fail "the upgrade lost the edited conffile"
for timer in conncheck-check.timer conncheck-export.timer; do
  [[ $(systemctl is-enabled "$timer") == enabled ]] || fail "the upgrade disabled $timer"
  [[ $(systemctl is-active "$timer") == active ]] || fail "the upgrade stopped $timer"
done
for f in $state/name-collector.json $state/nagios-collector.json $state/cron-collector.json \
  $unit_file; do
  [[ -f $f ]] || fail "the upgrade lost $f"
done
sleep 1 # the next run's taken_at_ms must differ from the last one's
run_unit conncheck-check.service
after=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["taken_at_ms"])' \
  $unit_file)
((after > before)) || fail "the unit did not update its state after the upgrade"
out=$(conncheck check --name collector)
judged "root shell" $? "$out"

echo "== remove"
dpkg -r conncheck >/dev/null || fail "dpkg -r failed"
for timer in conncheck-check.timer conncheck-export.timer; do
  active=$(systemctl is-active "$timer")
  [[ $active == inactive ]] || fail "$timer is $active after removal"
  [[ ! -e /etc/systemd/system/timers.target.wants/$timer ]] || fail "$timer is still enabled"
done
failed=$(systemctl list-units --failed --all --plain --no-legend 'conncheck*')
[[ -z $failed ]] || fail "units failed after removal: $failed"
[[ -d $state ]] || fail "removal (not purge) dropped the state"

echo "== purge"
dpkg --purge conncheck >/dev/null || fail "dpkg --purge failed"
files=$(dpkg -L conncheck 2>/dev/null)
[[ -z $files ]] || fail "dpkg -L still lists: $files"
for f in $state /var/lib/private/conncheck $textfile /etc/default/conncheck; do
  [[ ! -e $f && ! -L $f ]] || fail "$f is left after purge"
done
failed=$(systemctl list-units --failed --all --plain --no-legend 'conncheck*')
[[ -z $failed ]] || fail "units failed after purge: $failed"
systemctl stop collector.service
echo "lifecycle: installed, run side by side, upgraded, removed and purged"
