#!/usr/bin/env bash
# make valgrind: one short run of each strategy on the CPU backend (mlp-xs,
# tp also gpt-xs's split heads and its sequence parallelism, mesh gpt-xs's
# pipeline; 1 warmup + 2 measured steps) under
# valgrind's memcheck, with full leak
# checking. Prints one verdict line per run and fails when any run reports a
# memory error, a definitely or indirectly lost block, or exits non-zero.
#   usage: tests/valgrind/run.sh [BENCH]   (default ./bench; not a SAN=1 build)
# Third-party noise (Open MPI, PMIx) is suppressed by tests/valgrind.supp and,
# when installed, Open MPI's own openmpi-valgrind.supp. ddp runs valgrind per
# rank under mpirun (so do tp and zero): bench sees the MPI launch and runs
# as a rank.
# Keeps the logs in the temporary folder when a run fails, and says where.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=${1:-./bench}
VG_EXIT=97 # valgrind's exit code when it found an error; bench never uses it

command -v valgrind >/dev/null 2>&1 || {
    echo "make valgrind: valgrind is not installed (Debian: apt-get install valgrind)" >&2
    exit 2
}
[ -x "$BENCH" ] || { echo "make valgrind: no executable $BENCH (run make first)" >&2; exit 2; }
if nm -D "$BENCH" 2>/dev/null | grep -q __asan_init; then
    echo "make valgrind: $BENCH is a sanitizer build; valgrind needs the normal one" >&2
    exit 2
fi

work=$(mktemp -d /tmp/pb_valgrind_XXXXXX)
vg=(valgrind --tool=memcheck --leak-check=full
    --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
    --error-exitcode=$VG_EXIT
    --keep-debuginfo=yes  # frames in plugins unloaded by MPI_Finalize stay named
    --num-callers=50      # deep enough for the suppressions' frames
    --suppressions="$ROOT/tests/valgrind.supp")
ompi_supp=/usr/share/openmpi/openmpi-valgrind.supp
[ -r "$ompi_supp" ] && vg+=(--suppressions="$ompi_supp")

mpirun_args=(mpirun --oversubscribe --timeout 900)
[ "$(id -u)" -eq 0 ] && mpirun_args+=(--allow-run-as-root)

common=(--backend cpu --iters 2 --warmup 1 --threads 1 --quiet --out "$work/runs.csv")

failed=0
# [WORKLOAD=W] run NAME RANKS BENCH-ARGS...   (RANKS 0: one process, no
# mpirun; W: the workload, default mlp-xs)
run() {
    local name=$1 ranks=$2
    shift 2
    local log="$work/$name"
    local cmd=("${vg[@]}" --log-file="$log.%p.vg" "$BENCH" "$@" --workload "${WORKLOAD:-mlp-xs}" "${common[@]}")
    [ "$ranks" -gt 0 ] && cmd=("${mpirun_args[@]}" -np "$ranks" "${cmd[@]}")
    local rows_before rows_after start=$SECONDS
    rows_before=$(cat "$work/runs.csv" 2>/dev/null | wc -l)
    timeout 900 "${cmd[@]}" >"$log.out" 2>&1
    local rc=$?
    local secs=$((SECONDS - start))
    rows_after=$(cat "$work/runs.csv" 2>/dev/null | wc -l)
    # every process's log: its error count and its lost bytes
    local errors=0 lost=0 logs=0 f n
    for f in "$log".*.vg; do
        [ -e "$f" ] || continue
        logs=$((logs + 1))
        n=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tail -1 | tr -d ,)
        errors=$((errors + ${n:-1}))
        for kind in definitely indirectly; do
            n=$(sed -n "s/.*$kind lost: \([0-9,]*\) bytes.*/\1/p" "$f" | tail -1 | tr -d ,)
            lost=$((lost + ${n:-0}))
        done
    done
    local want_logs=$((ranks > 0 ? ranks : 1)) why=""
    if [ "$rc" -ne 0 ]; then why="exit $rc"; fi
    if [ "$errors" -ne 0 ] || [ "$lost" -ne 0 ]; then why="${why:+$why, }$errors errors, $lost bytes lost"; fi
    if [ "$logs" -ne "$want_logs" ]; then why="${why:+$why, }$logs valgrind logs for $want_logs processes"; fi
    if [ -z "$why" ] && [ $((rows_after - rows_before)) -lt 1 ]; then why="no row appended"; fi
    local what="$name ($* ${WORKLOAD:-mlp-xs})"
    if [ -z "$why" ]; then
        printf 'valgrind: ok    %-16s %3d s  0 errors, 0 bytes lost  [%s]\n' "$name" "$secs" "$*"
    else
        printf 'valgrind: FAIL  %-16s %3d s  %s  [%s]\n' "$name" "$secs" "$why" "$*"
        failed=$((failed + 1))
        echo "--- $what: output"
        cat "$log.out"
        for f in "$log".*.vg; do
            [ -e "$f" ] || continue
            echo "--- $what: $f (errors and lost blocks)"
            # the report without the banner and the summaries' blank lines
            grep -v -e '^==[0-9]*== *$' -e 'Warning: set address range perms' "$f" |
                sed -n '/Command:/,$p' | sed 1d
        done
    fi
}

total_start=$SECONDS
run single-sgd 0 --strategy single --optimizer sgd
run dp-adamw 0 --strategy dp --gpus 2 --optimizer adamw --verify
run mp-mb1-sgd 0 --strategy mp --gpus 2 --microbatches 1 --optimizer sgd
run mp-mb4-adamw 0 --strategy mp --gpus 2 --microbatches 4 --optimizer adamw --verify
run mp-1f1b-sgd 0 --strategy mp --gpus 2 --microbatches 4 --schedule 1f1b --optimizer sgd --verify
run ddp-sgd 2 --strategy ddp --gpus 2 --optimizer sgd
run zero1-adamw 2 --strategy zero --gpus 2 --zero-stage 1 --optimizer adamw
run zero3-sgd 2 --strategy zero --gpus 2 --zero-stage 3 --optimizer sgd
run tp-sgd 2 --strategy tp --gpus 2 --optimizer sgd
WORKLOAD=gpt-xs run tp-gpt-adamw 2 --strategy tp --gpus 2 --optimizer adamw
WORKLOAD=gpt-xs run tp-sp-gpt-sgd 2 --strategy tp --gpus 2 --sequence-parallel --optimizer sgd
WORKLOAD=gpt-xs run mesh-pp2-1f1b 2 --strategy mesh --gpus 2 --pp 2 --microbatches 2 --schedule 1f1b --optimizer adamw
WORKLOAD=gpt-xs run mesh-zero3-adamw 4 --strategy mesh --gpus 4 --dp 2 --tp 2 --zero-stage 3 --optimizer adamw

runs=13
echo "valgrind: $((runs - failed)) of $runs runs clean in $((SECONDS - total_start)) s"
if [ "$failed" -ne 0 ]; then
    echo "valgrind: logs kept in $work"
    exit 1
fi
rm -rf "$work"
