#!/usr/bin/env bash
# Installs the Debian packages parbench needs that are missing, saying which.
# Sourced by scripts/run-main.sh and scripts/run-tests.sh; safe to rerun.
# The CUDA toolkit, cuBLAS(Lt), NCCL and NVTX headers are not Debian packages
# here: they come with the CUDA toolkit under /usr/local/cuda (CUDA_HOME), and
# the build falls back to the CPU backend alone when nvcc is absent.
set -euo pipefail

PB_PACKAGES=(
    build-essential   # gcc, make
    pkg-config        # finds OpenBLAS and cmocka
    libopenblas-dev   # CBLAS for the cpu backend
    libcmocka-dev     # the unit-test framework
    openmpi-bin       # mpirun: multi-process strategies
    libopenmpi-dev    # mpicc and MPI headers
    gnuplot-nox       # scaling plots
    valgrind          # make valgrind: memcheck of one run per strategy (CI)
    git               # the revision recorded in each row
    iproute2          # ip netns: the two-node tests (tests/netns/two-nodes.sh)
)

pb_install_missing() {
    local missing=()
    for p in "${PB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "deps: all Debian packages present"
        return 0
    fi
    echo "deps: installing missing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

pb_install_missing
