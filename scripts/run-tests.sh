#!/usr/bin/env bash
# Installs what is missing, builds, and runs the test suite (`make test`).
# No GPU needed: every strategy is tested on the CPU backend; the CUDA
# backend is compiled and linked when nvcc is present.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
make -j"$(nproc)" WERROR=1 all
make WERROR=1 test
