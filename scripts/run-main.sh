#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: the default study
# (docs/sweep.md) on the best backend present (cuda when a GPU is usable,
# else cpu): strong scaling of mlp-s, its rows in results/study.csv and its plots in plots/out.
# A study already in results/study.csv is resumed, not repeated (delete the
# file, or pass --force, to run it again). Extra arguments go to bench sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
make -j"$(nproc)" all
rc=0
./bench sweep --strategies single,dp,mp,ddp --gpus 1,2 --workload mlp-s --scaling strong --iters 20 --repeats 3 \
    --out results/study.csv "$@" || rc=$?
# a failed run (exit 1) still leaves the others' rows to plot
[ "$rc" -le 1 ] || exit "$rc"
./bench plot results/study.csv --scaling strong --out plots/out
echo "results: $(pwd)/results/study.csv, plots: $(pwd)/plots/out"
exit "$rc"
