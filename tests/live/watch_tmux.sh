#!/usr/bin/env bash
# The watch screen in a real terminal: a private tmux server runs an interactive shell, the test
# types `conncheck watch` into it against watch_target (a process whose sockets it changes on
# command), reads the pane with capture-pane and checks the counts, exact vs by-peer TIME_WAIT,
# resizing, the too-small notice, pause, sort, and that q, SIGTERM and the exit of the watched
# process all give the shell its normal screen and terminal modes back.
# Usage: watch_tmux.sh CONNCHECK WATCH_TARGET. Exit 77 (skipped) without tmux.
set -euo pipefail

conncheck=$1
target=$2
if ! command -v tmux >/dev/null; then
  echo "SKIP: tmux is not installed (Debian package tmux)"
  exit 77
fi

work=$(mktemp -d)
target_pid=
tm() { tmux -S "$work/tmux.sock" -f /dev/null "$@"; }
cleanup() {
  tm kill-server 2>/dev/null || true
  if [[ -n $target_pid ]]; then
    kill "$target_pid" 2>/dev/null || true
    wait "$target_pid" 2>/dev/null || true
  fi
  # kill-server returns before the server and its shells are gone, and they may still write
  # into $work: retry the removal for a bounded time instead of failing a passed test.
  local tries=0
  until rm -rf "$work" 2>/dev/null || ((++tries >= 50)); do sleep 0.1; done
  [[ ! -e $work ]] || echo "warning: could not remove $work" >&2
}
trap cleanup EXIT

pane() { tm capture-pane -p -t watch; }
dump() {
  echo "--- pane ($(tm display -p -t watch '#{window_width}x#{window_height} alternate_on=#{alternate_on}'))"
  pane
  echo "---"
}
# wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds, fail with the pane after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: timed out waiting for $what"
      dump
      exit 1
    fi
    sleep 0.05
  done
  echo "ok: $what"
}
shows() { pane | grep -Eq -- "$1"; }
alternate() { [[ $(tm display -p -t watch '#{alternate_on}') == "$1" ]]; }
cursor_visible() { [[ $(tm display -p -t watch '#{cursor_flag}') == 1 ]]; }
last_line_is_prompt() { pane | sed '/^$/d' | tail -n 1 | grep -q '^PROMPT\$ *$'; }
# Exactly ROWS lines, none reaching the last of COLS columns (so nothing wraps).
size_is() { [[ $(pane | wc -l) -eq $1 && $(pane | LC_ALL=C.UTF-8 wc -L) -lt $2 ]]; }

# target_do CMD N: send one command to watch_target and wait until it has carried it out.
commands=0
target_do() {
  commands=$((commands + 1))
  echo "$*" >"$work/cmd"
  wait_for 10 "watch_target: $*" grep -q "^done $commands " "$work/status"
}

mkfifo "$work/cmd"
"$target" "$work/cmd" "$work/status" &
target_pid=$!
wait_for 10 "watch_target to listen" test -s "$work/status"

tm new-session -d -s watch -x 100 -y 32 "env -i PATH=$PATH HOME=$work HISTFILE=/dev/null TERM=screen PS1='PROMPT\$ ' bash --norc --noprofile -i"
wait_for 10 "the shell prompt" shows '^PROMPT\$'

start_watch() {
  tm send-keys -t watch "$conncheck watch --pid $target_pid --interval 200ms --no-color $*" Enter
  wait_for 10 "the watch screen" shows '^conncheck watch +pid '"$target_pid"' watch_target'
  wait_for 5 "the alternate screen" alternate 1
}
watch_pid() { pgrep -P "$(tm display -p -t watch '#{pane_pid}')" | head -n 1; }

# The terminal's modes before watch, to compare with what it leaves behind.
tm send-keys -t watch "stty -g >$work/stty.before" Enter
wait_for 5 "stty -g before watch" test -s "$work/stty.before"
# Polling: what watch sees where no connection events are to be had.
start_watch --no-events
wait_for 5 "ESTABLISHED 0 at the start" shows '^ESTABLISHED +0 '
if cursor_visible; then
  echo "FAIL: the cursor is visible while watch draws"
  exit 1
fi

target_do open 4
wait_for 10 "ESTABLISHED 8 (both ends of 4 connections)" shows '^ESTABLISHED +8 '
wait_for 5 "the change since the start" shows '^ESTABLISHED +8 +(0|\+8) +\+8 '
target_do leak 2
wait_for 10 "CLOSE_WAIT 2" shows '^CLOSE_WAIT +2 '
wait_for 5 "ESTABLISHED 4" shows '^ESTABLISHED +4 '
wait_for 5 "the CLOSE_WAIT finding" shows '^(WARN|CRIT) .*CLOSE_WAIT'
target_do tw 1
wait_for 10 "a TIME_WAIT attributed exactly (watch saw it live)" shows '^TIME_WAIT 1 exact'
target_do churn 2
wait_for 10 "TIME_WAIT never seen live attributed by peer" shows '· 2 by peer'
wait_for 5 "TIME_WAIT 3" shows '^TIME_WAIT +3 '
wait_for 5 "churn counted" shows '^CHURN opened [0-9.]+/min +closed [0-9.]+/min'
wait_for 5 "the footer says watch polls, and why" shows '^q quit .* polling \(turned off with --no-events\)'

tm resize-window -t watch -x 70 -y 20
wait_for 10 "a redraw at 70x20" size_is 20 70
wait_for 5 "the footer on the last row at 70x20" bash -c "tmux -S '$work/tmux.sock' capture-pane -p -t watch | tail -n 1 | grep -q '^q quit'"
tm resize-window -t watch -x 40 -y 10
wait_for 10 "the too-small notice" shows '^terminal too small \(40x10\)'
tm resize-window -t watch -x 100 -y 32
wait_for 10 "the full screen again at 100x32" shows '^ESTABLISHED +2 '

tm send-keys -t watch p
wait_for 5 "PAUSED" shows 'PAUSED'
tm send-keys -t watch p
wait_for 5 "resumed" bash -c "! tmux -S '$work/tmux.sock' capture-pane -p -t watch | grep -q PAUSED"
tm send-keys -t watch s
wait_for 5 "peers sorted by CLOSE_WAIT" shows '^PEERS by CLOSE_WAIT'

tm send-keys -t watch q
wait_for 10 "q to leave the alternate screen" alternate 0
wait_for 5 "the prompt back after q" last_line_is_prompt
wait_for 5 "the cursor visible again" cursor_visible
if shows '^ESTABLISHED +[0-9]'; then
  echo "FAIL: the watch screen is still on the normal screen after q"
  dump
  exit 1
fi
tm send-keys -t watch 'echo restored-$((6*7)) rc=$?' Enter
wait_for 5 "echo and line editing work again" shows '^PROMPT\$ echo restored-\$\(\(6\*7\)\) rc=\$\?$'
wait_for 5 "the shell runs commands, watch exited 0" shows '^restored-42 rc=0$'
tm send-keys -t watch "stty -g >$work/stty.after" Enter
wait_for 5 "stty -g after watch" test -s "$work/stty.after"
if ! cmp -s "$work/stty.before" "$work/stty.after"; then
  echo "FAIL: terminal modes differ after q: $(cat "$work/stty.before") vs $(cat "$work/stty.after")"
  exit 1
fi
echo "ok: termios restored exactly (stty -g)"

# SIGTERM: the terminal is restored before the process dies of the signal. Without --no-events
# this time: where trace can load its probe, the footer says events and each peer has an age.
tm send-keys -t watch clear Enter
start_watch
trace_rc=0
"$conncheck" trace --pid $$ --for 1ms >/dev/null 2>&1 || trace_rc=$?
if [ "$trace_rc" -eq 6 ]; then
  wait_for 5 "the footer says watch polls, and why" shows '^q quit .* polling \('
else
  wait_for 5 "the footer says events" shows '^q quit .* events'
  wait_for 5 "the OLDEST column" shows '^PEERS .*OLDEST'
fi
kill -TERM "$(watch_pid)"
wait_for 10 "SIGTERM to leave the alternate screen" alternate 0
wait_for 5 "the prompt back after SIGTERM" last_line_is_prompt
tm send-keys -t watch 'echo status=$?' Enter
wait_for 5 "watch died of SIGTERM (status 143)" shows '^status=143$'

# The watched process exits: watch says so on the normal screen and exits 0.
tm send-keys -t watch clear Enter
start_watch
echo quit >"$work/cmd"
wait "$target_pid" || true
wait_for 10 "watch to end when its process is gone" alternate 0
wait_for 5 "the exit summary" shows "^conncheck watch: pid $target_pid \(watch_target\) exited after"
wait_for 5 "the prompt back" last_line_is_prompt
tm send-keys -t watch 'echo status=$?' Enter
wait_for 5 "exit status 0" shows '^status=0$'
target_pid=
echo "PASS"
