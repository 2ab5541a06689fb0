#!/usr/bin/env bash
# The false-alarm and detection rates of `bench compare`'s default settings,
# measured on this machine (docs/statistics.md, "How often compare is wrong").
#
# Each trial runs three blocks of RUNS runs back to back, nothing changed
# between the first two:
#   before.csv   RUNS runs
#   after.csv    RUNS runs, same configuration        -> A/A: before vs after
#   slow.csv     RUNS runs, each step SLOW_PCT% longer -> after vs slow
# The slowdown is injected honestly: PB_FAULT=kind=slow (test-only,
# docs/reliability.md) sleeps, in every step, SLOW_PCT% of the mean step time
# that the trial's `after` block just measured, so the work is the same and
# the step is SLOW_PCT% longer (samples_per_s 1 - 1/(1 + SLOW_PCT/100) lower:
# -9.1% for 10).
# A trial is a false alarm when A/A exits 1 (a regression verdict) and a
# detection when after-vs-slow does. Not part of `make test`: it takes
# minutes (`make bench-aa`).
#
#   scripts/aa-test.sh                   run TRIALS trials into OUT, then compare
#   scripts/aa-test.sh --compare-only D  only the comparisons, over the CSVs a
#                                        previous run left in D (after a change
#                                        to compare, on the same data)
# Environment (defaults): TRIALS (20), RUNS (3), ITERS (20), WARMUP (3),
# WORKLOAD (mlp-s), BACKEND (cpu), THREADS (1: each run on one of this
# machine's 2 cores; empty: bench's default),
# SLOW_PCT (10), BENCH (./bench),
# OUT (build/aa-test), COMPARE_ARGS (empty: compare's defaults).
set -euo pipefail

TRIALS=${TRIALS:-20}
RUNS=${RUNS:-3}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-3}
WORKLOAD=${WORKLOAD:-mlp-s}
BACKEND=${BACKEND:-cpu}
THREADS=${THREADS-1}
SLOW_PCT=${SLOW_PCT:-10}
BENCH=${BENCH:-./bench}
OUT=${OUT:-build/aa-test}
COMPARE_ARGS=${COMPARE_ARGS:-}

compare_only=""
if [ "${1:-}" = "--compare-only" ]; then
    compare_only=${2:?--compare-only needs the folder of a previous run}
    OUT=$compare_only
elif [ $# -gt 0 ]; then
    echo "usage: scripts/aa-test.sh [--compare-only DIR]  (settings: see the script's header)" >&2
    exit 2
fi
[ -x "$BENCH" ] || { echo "aa-test: $BENCH is not built (make all)" >&2; exit 2; }

# A column of `bench compare --format csv`'s one data row, counted from the
# end of the line: the key columns before it may hold quoted commas, the
# statistics after it never do.
compare_field() { # FILE_A FILE_B COLUMN [compare args...]
    local a=$1 b=$2 col=$3
    shift 3
    "$BENCH" compare "$a" "$b" --format csv "$@" 2>/dev/null |
        awk -F, -v col="$col" 'NR == 1 { back = -1; for (i = 1; i <= NF; i++) if ($i == col) back = NF - i }
                               NR == 2 && back >= 0 { print $(NF - back) }'
}

start=$(date +%s)
if [ -z "$compare_only" ]; then
    mkdir -p "$OUT"
    # a rebuild during the minutes this takes must not change what is measured
    cp "$BENCH" "$OUT/bench.bin"
    run=("$OUT/bench.bin" run --backend "$BACKEND" --workload "$WORKLOAD" --iters "$ITERS" --warmup "$WARMUP" --quiet)
    [ -n "$THREADS" ] && run+=(--threads "$THREADS")
    echo "workload $WORKLOAD on $BACKEND${THREADS:+ --threads $THREADS}, $RUNS runs per block, $ITERS iters after" \
        "$WARMUP warmup" >"$OUT/settings"
    for t in $(seq 1 "$TRIALS"); do
        d=$(printf '%s/trial-%02d' "$OUT" "$t")
        rm -rf "$d"
        mkdir -p "$d"
        for _ in $(seq 1 "$RUNS"); do "${run[@]}" --out "$d/before.csv"; done
        for _ in $(seq 1 "$RUNS"); do "${run[@]}" --out "$d/after.csv"; done
        step=$(compare_field "$d/after.csv" "$d/after.csv" baseline --metric step_ms_mean)
        ms=$(awk -v s="$step" -v p="$SLOW_PCT" 'BEGIN { printf "%.3f", s * p / 100 }')
        echo "$ms" >"$d/slow_ms"
        for _ in $(seq 1 "$RUNS"); do
            PB_FAULT="kind=slow,phase=fwd,ms=$ms" "${run[@]}" --out "$d/slow.csv" 2>/dev/null
        done
        echo "aa-test: trial $t/$TRIALS measured ($(($(date +%s) - start)) s)" >&2
    done
    echo "$(($(date +%s) - start))" >"$OUT/measure_s"
fi

# shellcheck disable=SC2086 # COMPARE_ARGS is a list of flags
verdicts() { # A B -> "change verdict mde"
    printf '%s %s %s\n' "$(compare_field "$1" "$2" change_pct $COMPARE_ARGS)" \
        "$(compare_field "$1" "$2" verdict $COMPARE_ARGS)" "$(compare_field "$1" "$2" mde_pct $COMPARE_ARGS)"
}

false_alarms=0 detections=0 n=0
summary="$OUT/summary.txt"
{
    printf '%-8s %10s %-13s %8s   %10s %-13s %8s  %s\n' trial aa_change aa_verdict aa_mde slow_change slow_verdict \
        slow_mde sleep_ms
    for d in "$OUT"/trial-*; do
        [ -s "$d/slow.csv" ] || continue
        n=$((n + 1))
        read -r ac av am <<<"$(verdicts "$d/before.csv" "$d/after.csv")"
        read -r sc sv sm <<<"$(verdicts "$d/after.csv" "$d/slow.csv")"
        [ "$av" = regression ] && false_alarms=$((false_alarms + 1))
        [ "$sv" = regression ] && detections=$((detections + 1))
        printf '%-8s %9.1f%% %-13s %7.1f%%   %9.1f%% %-13s %7.1f%%  %s\n' "$(basename "$d")" "$ac" "$av" "${am:-nan}" \
            "$sc" "$sv" "${sm:-nan}" "$(cat "$d/slow_ms")"
    done
    echo
    echo "$(cat "$OUT/settings"); compare ${COMPARE_ARGS:-defaults}"
    echo "false alarms (A/A regression verdicts): $false_alarms/$n"
    echo "detections of a ${SLOW_PCT}% longer step: $detections/$n"
    [ -f "$OUT/measure_s" ] && echo "measuring took $(cat "$OUT/measure_s") s"
} | tee "$summary"
