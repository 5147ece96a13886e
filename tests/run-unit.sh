#!/bin/sh
# Runs every cmocka unit-test binary given, then prints one closing summary line.  A skipped
# test counts against the run: each is named, and the run fails, so that nothing is left out
# unseen (a test that needs something the unit tier lacks belongs to the system tier).
set -u
passed=0
failed=0
skipped=0
for t in "$@"; do
    out=$("$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
    if [ -n "$s" ]; then
        printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([^0-9].*\)/unit: skipped in '"$(basename "$t")"': \1/p'
    fi
    if [ "$rc" -ne 0 ] && [ -z "$f" ]; then
        echo "unit: $t exited with status $rc"
        failed=$((failed + 1))
    fi
done
echo "unit: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
