#!/usr/bin/env bash
# make mutants: plants each one-line bug of tests/mutants/mutants.txt in turn
# (the derived metrics, the phase accounting, resume and pairing), rebuilds,
# runs the test programs the mutant names, and restores the file. Prints a
# table and "N of M caught". Slow (minutes): not part of `make test` or CI.
#   usage: tests/mutants/run.sh [ID...]       (default: every mutant)
#   MUTANTS_LIST   the list (default tests/mutants/mutants.txt)
#   MUTANTS_TIMEOUT  seconds per test program (default 300; a hang is caught)
#   MUTANTS_LOG    folder for each mutant's build and test output
#                  (default: a temporary folder, kept, and named at the end)
#   MUTANTS_BASELINE=0  skip running the named programs on the unmutated
#                  tree first (they must pass there, or "caught" means nothing)
# A mutant is caught when a named program exits non-zero (a failed test, a
# crash or the timeout). The source file is restored after each mutant, on
# any exit and on Ctrl-C; nothing of the mutants stays in the tree.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
LIST=${MUTANTS_LIST:-tests/mutants/mutants.txt}
TIMEOUT=${MUTANTS_TIMEOUT:-300}
MAKE=${MAKE:-make}
TOOL=tests/mutants/mutants.py
LOG=${MUTANTS_LOG:-$(mktemp -d /tmp/pb_mutants_XXXXXX)}
# the rebuilds are this script's own (not a dry run or a jobserver of the
# make that started it)
unset MAKEFLAGS MFLAGS MAKELEVEL
mkdir -p "$LOG" || exit 2

mapfile -t entries < <(python3 "$TOOL" list "$LIST") || exit 2
[ "${#entries[@]}" -gt 0 ] || { echo "make mutants: no mutants in $LIST" >&2; exit 2; }

# the file being mutated and its pristine copy
backup="$LOG/.original"
mutated=""
restore() {
    if [ -n "$mutated" ]; then
        # a plain copy gives the file a new mtime, so make rebuilds it
        cat "$backup" >"$mutated" && mutated=""
    fi
}
# a test program runs in the background (timeout gives it a process group
# of its own) and is waited for, so a signal is handled at once: the
# program and its children are ended (timeout passes the signal to its
# group), and the file restored
child=""
trap 'restore' EXIT
trap 'was=$mutated; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null; restore
      echo "make mutants: interrupted${was:+; $was restored}" >&2; exit 130' INT TERM

# the working tree must be clean where mutants go, or a restore would
# hide nothing but a rebuild would test someone's edit
for e in "${entries[@]}"; do
    f=$(cut -f2 <<<"$e")
    if ! git diff --quiet -- "$f" 2>/dev/null; then
        echo "make mutants: $f has uncommitted changes; commit or stash them first" >&2
        exit 2
    fi
done

# run_prog NAME OUT: build/tests/NAME with its output in OUT; its exit code
run_prog() {
    BENCH=./bench timeout "$TIMEOUT" "build/tests/$1" >"$2" 2>&1 &
    child=$!
    wait "$child"
    local rc=$?
    child=""
    return $rc
}

declare -a want=("$@")
selected() {
    [ "${#want[@]}" -eq 0 ] && return 0
    local w
    for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

start=$SECONDS
# the programs the selected mutants name must pass without any mutant
if [ "${MUTANTS_BASELINE:-1}" != 0 ]; then
    progs=$(for e in "${entries[@]}"; do
        IFS=$'\t' read -r id _ tests <<<"$e"
        selected "$id" && printf '%s\n' $tests
    done | sort -u)
    bins=()
    for t in $progs; do bins+=("build/tests/$t"); done
    $MAKE -j2 all "${bins[@]}" >"$LOG/baseline.build" 2>&1 ||
        { echo "make mutants: the unmutated tree does not build: $LOG/baseline.build" >&2; exit 2; }
    for t in $progs; do
        if ! run_prog "$t" "$LOG/baseline.$t.out"; then
            echo "make mutants: build/tests/$t fails without a mutant ($LOG/baseline.$t.out); fix that first" >&2
            exit 2
        fi
    done
    echo "make mutants: $(wc -w <<<"$progs") test programs pass unmutated ($((SECONDS - start)) s)" >&2
fi

caught=0 total=0 broken=0
rows=()
for e in "${entries[@]}"; do
    IFS=$'\t' read -r id file tests <<<"$e"
    selected "$id" || continue
    total=$((total + 1))
    t0=$SECONDS
    cp "$file" "$backup" || exit 2
    mutated=$file
    if ! python3 "$TOOL" apply "$LIST" "$id" 2>"$LOG/$id.apply"; then
        restore
        rows+=("$(printf '%-30s %-20s %-9s %4ds  %s' "$id" "$file" "STALE" 0 "$(head -c 200 "$LOG/$id.apply")")")
        broken=$((broken + 1))
        continue
    fi
    bins=()
    for t in $tests; do bins+=("build/tests/$t"); done
    # the library must have been rebuilt from the mutant (newer than the
    # pristine copy taken before it was applied), or the run proves nothing
    if ! $MAKE -j2 all "${bins[@]}" >"$LOG/$id.build" 2>&1 || [ -z "$(find build/libparbench.a -newer "$backup" 2>/dev/null)" ]; then
        restore
        rows+=("$(printf '%-30s %-20s %-9s %4ds  %s' "$id" "$file" "NO-BUILD" $((SECONDS - t0)) "see $LOG/$id.build")")
        broken=$((broken + 1))
        continue
    fi
    by=""
    for t in $tests; do
        run_prog "$t" "$LOG/$id.$t.out"
        rc=$?
        [ "$rc" -eq 0 ] && continue
        # the failed tests' names from cmocka's summary ("[  FAILED  ] name")
        names=$(sed -n 's/^\[  FAILED  \] \(test_[A-Za-z0-9_]*\).*/\1/p' "$LOG/$id.$t.out" | sort -u | paste -sd, -)
        [ "$rc" -eq 124 ] && names="timeout"
        by="${by:+$by; }$t:${names:-exit $rc}"
    done
    restore
    if [ -n "$by" ]; then
        caught=$((caught + 1))
        rows+=("$(printf '%-30s %-20s %-9s %4ds  %s' "$id" "$file" "caught" $((SECONDS - t0)) "$by")")
    else
        rows+=("$(printf '%-30s %-20s %-9s %4ds  %s' "$id" "$file" "SURVIVED" $((SECONDS - t0)) "ran: $tests")")
    fi
    printf '%s\n' "${rows[-1]}" >&2
done

# the tree's own build again, so nothing built from a mutant is left
$MAKE -j2 all >"$LOG/restore.build" 2>&1 || echo "make mutants: rebuilding the unmutated tree failed: $LOG/restore.build" >&2

echo
printf '%-30s %-20s %-9s %5s  %s\n' "mutant" "file" "result" "time" "caught by (program:tests)"
printf '%s\n' "${rows[@]}"
echo
echo "$caught of $total caught$([ "$broken" -gt 0 ] && echo " ($broken did not apply or build)") in $((SECONDS - start)) s; logs in $LOG"
[ "$caught" -eq "$total" ]
