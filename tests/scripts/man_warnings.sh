#!/usr/bin/env bash
# The built man page renders without a groff warning ("can't break line", unknown escapes) at the
# widths people read it in, and no line of it is wider than the terminal.
# Usage: man_warnings.sh CONNCHECK_1
set -uo pipefail
page=${1:?usage: man_warnings.sh CONNCHECK_1}
fail() { echo "FAIL: $*" >&2; exit 1; }
for width in 80 100 200; do
  warnings=$(MANWIDTH=$width man --warnings -l "$page" 2>&1 >/dev/null)
  [[ -z $warnings ]] || fail "man --warnings at $width columns: $warnings"
done
echo "man page: no warnings at 80, 100 and 200 columns"
