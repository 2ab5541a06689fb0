#!/usr/bin/env bash
# Runs each cmocka test program, shows its output, and ends with one total
# line "N passed, N failed" that CI reads. Exits non-zero when any failed.
set -u
passed=0 failed=0 broken=0
for t in "$@"; do
    out=$(BENCH="${BENCH:-./bench}" "$t" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    # a crash or early exit that printed no summary still counts as a failure
    if [ $rc -ne 0 ] && [ -z "${f:-}" ]; then
        echo "$t: exited with $rc without a cmocka summary"
        broken=$((broken + 1))
    fi
done
failed=$((failed + broken))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
