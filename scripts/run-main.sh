#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: a default run on
# the best backend present (cuda when a GPU is usable, else cpu), appending
# its row to results/runs.csv. Extra arguments go to bench.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
make -j"$(nproc)" all
./bench --strategy single --workload mlp-s "$@"
echo "results: $(pwd)/results/runs.csv"
