#!/usr/bin/env bash
# make bench-strategies: strategies against each other on one workload and
# rank count, paired round by round (every configuration once per round, the
# order rotated each round so none always runs first), then the median
# step-time ratios against their targets (build/benchmarks/bench_strategies).
#
# To add a strategy's figures: append to CONFIGS ("name|bench flags") and
# PAIRS ("name:baseline:limit"; the verdict is the median of the per-round
# ratios of step_ms_p50).
#
# Environment: BENCH (./bench), SUMMARY (the summariser), WORKLOAD (mlp-s),
# RANKS (2), ROUNDS (5), ITERS (10), WARMUP (3), FLAGS (given to every run:
# "--bucket-mb 4", a bucket per mlp-s layer, so ddp's all-reduces and zero's
# reduce-scatters overlap backward alike; mlp-s's 16 MB is one default
# 25 MB bucket), STRICT=1 (a ratio over its limit fails), KEEP=FILE (keep
# the runs' CSV).
set -u
BIN=${BENCH:-./bench}
SUMMARY=${SUMMARY:-build/benchmarks/bench_strategies}
WORKLOAD=${WORKLOAD:-mlp-s}
RANKS=${RANKS:-2}
ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-3}
FLAGS=${FLAGS---bucket-mb 4}

CONFIGS=(
    "ddp|--strategy ddp"
    "zero1|--strategy zero --zero-stage 1"
    "zero2|--strategy zero --zero-stage 2"
    "zero3|--strategy zero --zero-stage 3"
)
PAIRS=(
    "zero1:ddp:1.10"
    "zero2:ddp:1.10"
    "zero3:ddp:1.25"
)

tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
csv="$tmp/runs.csv"
echo "bench-strategies: $BIN --workload $WORKLOAD --gpus $RANKS --threads 1 --backend cpu --iters $ITERS" \
    "--warmup $WARMUP $FLAGS, $ROUNDS rounds of ${#CONFIGS[@]} configurations (rotated)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
n=${#CONFIGS[@]}
for ((r = 0; r < ROUNDS; r++)); do
    for ((k = 0; k < n; k++)); do
        entry=${CONFIGS[$(((k + r) % n))]}
        name=${entry%%|*}
        flags=${entry#*|}
        # shellcheck disable=SC2086 # flags are words
        if ! "$BIN" $flags $FLAGS --workload "$WORKLOAD" --gpus "$RANKS" --threads 1 --backend cpu --iters "$ITERS" \
            --warmup "$WARMUP" --quiet --tag "$name.r$r" --out "$csv" >"$tmp/log" 2>&1; then
            echo "bench-strategies: $name (round $r) failed:"
            cat "$tmp/log"
            exit 1
        fi
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${KEEP:-}" ] && cp "$csv" "$KEEP"
"$SUMMARY" ${STRICT:+--strict} "$csv" "${PAIRS[@]}"
