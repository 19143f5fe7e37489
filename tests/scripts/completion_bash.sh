#!/usr/bin/env bash
# The generated bash completion driven the way bash drives it: every subcommand `--help` lists
# after `conncheck`, every option of each subcommand's --help after `--`, running pids after
# --pid (also as --pid=), process names after --name, the choices after --source and
# `completions`; zsh's and fish's descriptions are whole phrases.
# Usage: completion_bash.sh COMPLETION_SCRIPT CONNCHECK. Exits 77 (skipped) without bash-completion.
script=${1:?usage: completion_bash.sh COMPLETION_SCRIPT CONNCHECK}
bin=${2:?usage: completion_bash.sh COMPLETION_SCRIPT CONNCHECK}
framework=/usr/share/bash-completion/bash_completion
if [[ ! -r $framework ]]; then
  echo "SKIP: $framework not found (Debian package bash-completion)"
  exit 77
fi
# bash-completion is written for interactive shells: no -u or -e while it loads.
source "$framework"
source "$script"
set -uo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
target=""
cleanup() { if [[ -n $target ]]; then kill "$target" 2>/dev/null; fi; }
trap cleanup EXIT

# Completes the last word of a command line given as bash splits it (at COMP_WORDBREAKS).
complete_line() {
  local word previous="" line=""
  for word in "$@"; do # no blanks around "=": bash splits --pid=1 into --pid, =, 1
    if [[ -z $line || $word == "=" || $previous == "=" ]]; then line+=$word; else line+=" $word"; fi
    previous=$word
  done
  COMP_LINE=$line
  COMP_POINT=${#COMP_LINE}
  COMP_WORDS=("$@")
  COMP_CWORD=$(($# - 1))
  COMPREPLY=()
  _conncheck conncheck "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}"
}
contains() { # LIST WORD
  grep -qxF -- "$2" <<<"$1"
}
# Subcommands and options as --help prints them (CLI11's layout).
help_subcommands() { "$bin" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }'; }
help_options() { # [SUBCOMMAND]
  "$bin" "$@" --help | awk '/^  +-/ { print $1 }' | tr ',' '\n'
}

subcommands=$(help_subcommands)
[[ -n $subcommands ]] || fail "no subcommands found in conncheck --help"
offered=$(complete_line conncheck "")
for s in $subcommands; do
  contains "$offered" "$s" || fail "\`conncheck <TAB>' does not offer $s: $offered"
done
[[ $(complete_line conncheck wa) == watch ]] || fail "\`conncheck wa<TAB>' is not watch"

for s in "" $subcommands; do
  options=$(help_options $s)
  [[ -n $options ]] || fail "no options found in conncheck $s --help"
  offered=$(complete_line conncheck $s -)
  for o in $options; do
    contains "$offered" "$o" || fail "\`conncheck $s -<TAB>' does not offer $o"
  done
done

# A flag takes no value: after it come options and subcommands again.
contains "$(complete_line conncheck --json -)" --pid || fail "\`conncheck --json -<TAB>' offers no --pid"
contains "$(complete_line conncheck --no-color "")" watch || fail "\`conncheck --no-color <TAB>' offers no watch"

sleep 300 &
target=$!
for line in "conncheck --pid" "conncheck watch --pid" "conncheck check -p" "conncheck export --pid ="; do
  offered=$(complete_line $line "")
  contains "$offered" "$target" || fail "\`$line <TAB>' does not offer the running pid $target"
  offered=$(complete_line $line "${target:0:1}")
  contains "$offered" "$target" || fail "\`$line ${target:0:1}<TAB>' does not offer $target"
done
offered=$(complete_line conncheck --source "")
[[ $(sort <<<"$offered" | tr '\n' ' ') == "auto netlink proc " ]] ||
  fail "\`conncheck --source <TAB>' offers: $offered"

# --name offers the names of running processes (the sleep started above among them).
comm=$(cat "/proc/$target/comm")
for line in "conncheck --name" "conncheck check --name" "conncheck trace --name ="; do
  offered=$(complete_line $line "")
  contains "$offered" "$comm" || fail "\`$line <TAB>' does not offer the running $comm"
  contains "$(complete_line $line "${comm:0:2}")" "$comm" ||
    fail "\`$line ${comm:0:2}<TAB>' does not offer $comm"
done
offered=$(complete_line conncheck completions "")
[[ $(sort <<<"$offered" | tr '\n' ' ') == "bash fish zsh " ]] ||
  fail "\`conncheck completions <TAB>' offers: $offered"

# zsh and fish show a description beside each option: never one cut inside its parentheses.
for shell in zsh fish; do
  "$bin" completions "$shell" | python3 -c '
import re, sys
shell = sys.argv[1]
text = sys.stdin.read()
if shell == "fish":
    found = re.findall(r" -d \x27((?:[^\x27\\]|\\.)*)\x27", text)
else:
    found = re.findall(r"\x27\*?-[^\[\x27]*\[((?:[^\]\\]|\\.)*)\]", text)
assert len(found) > 20, f"{shell}: only {len(found)} descriptions found"
for d in found:
    assert d.count("(") == d.count(")"), f"{shell}: description cut inside parentheses: {d}"
    assert not re.search(r"\b(e\.g|i\.e|default|the|a|of|or)$", d), f"{shell}: cut mid-phrase: {d}"
' "$shell" || fail "\`conncheck completions $shell' cuts a description mid-phrase"
done
echo "bash completion: $(wc -w <<<"$subcommands") subcommands, their options, pids, process names and choices"
