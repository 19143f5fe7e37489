#!/bin/bash
# --cgroup and --unit against a real cgroup: the test creates a cgroup v2 group shaped like a
# systemd unit ("/conncheck-test-PID.slice/conncheck-test-PID.service") under the cgroup2 mount
# (found in mountinfo: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host), moves a child
# it starts into it, and expects exactly that child to be selected.
# Usage: cgroup_test.sh CONNCHECK_BINARY. Exits 77 (skipped) when cgroup2 is not writable here.
set -u

bin=${1:?usage: cgroup_test.sh CONNCHECK_BINARY}
skip() {
    echo "SKIP: $*"
    exit 77
}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ -x "$bin" ] || fail "$bin is not an executable"
command -v jq >/dev/null || skip "needs jq"

# Field 5 is the mount point; the file system type follows the " - " separator.
mount=$(awk '{ for (i = 7; i <= NF; ++i) if ($i == "-") { if ($(i + 1) == "cgroup2") print $5; break } }' \
    /proc/self/mountinfo | head -n 1)
[ -n "$mount" ] || skip "cgroup2 is not mounted"
[ "$(awk '{ for (i = 7; i <= NF; ++i) if ($i == "-") { if ($(i + 1) == "cgroup2") print $4; break } }' \
    /proc/self/mountinfo | head -n 1)" = / ] || skip "cgroup2 is mounted from a sub-cgroup here"

name=conncheck-test-$$
slice=/$name.slice
group=$slice/$name.service
child=
cleanup() {
    if [ -n "$child" ]; then
        kill -KILL "$child" 2>/dev/null
        wait "$child" 2>/dev/null
    fi
    # A cgroup can be removed once its last process is gone, which follows the kill shortly.
    for _ in $(seq 100); do
        rmdir "$mount$group" 2>/dev/null
        [ -d "$mount$group" ] || break
        sleep 0.05
    done
    rmdir "$mount$slice" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

mkdir -p "$mount$group" 2>/dev/null || skip "cannot create a cgroup under $mount (needs root)"

sleep 600 &
child=$!
echo "$child" >"$mount$group/cgroup.procs" 2>/dev/null || skip "cannot move a process into $group"
grep -qx "0::$group" "/proc/$child/cgroup" || fail "the child is not in $group: $(cat "/proc/$child/cgroup")"

selected() {
    local out
    out=$("$bin" "$@" --json) || fail "conncheck $* exited $?"
    jq -c '[.processes[].pid]' <<<"$out"
}

want="[$child]"
for args in "--cgroup $group" "--cgroup $mount$group" "--cgroup $slice" \
    "--unit $name" "--unit $name.service" "--unit $name.slice"; do
    # shellcheck disable=SC2086 # the arguments are split on purpose
    got=$(selected $args)
    [ "$got" = "$want" ] || fail "conncheck $args selected $got, expected $want"
    echo "ok: $args -> $got"
done

"$bin" --cgroup "$group-nothing" >/dev/null 2>/dev/null
code=$?
[ "$code" -eq 3 ] || fail "--cgroup of an empty cgroup exited $code, expected 3"
"$bin" --unit "$name-nothing" >/dev/null 2>/dev/null
code=$?
[ "$code" -eq 3 ] || fail "--unit of a unit without processes exited $code, expected 3"
echo "ok: empty selections exit 3"
