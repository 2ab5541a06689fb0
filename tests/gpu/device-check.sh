#!/usr/bin/env bash
# Device check: on a machine with one NVIDIA GPU, in one go and in well under
# 8 minutes: build for that GPU, make test-gpu, single-GPU runs of mlp-s,
# mlp-m and mlp-l in fp32, tf32 and bf16, --cuda-graph on mlp-s, bench
# calibrate, and the GEMM-alone reference, gpt2-124m and gpt2-350m in bf16
# where the cuda backend runs the GPT workload; writes the CSV, logs and a
# short summary into the folder given as the argument.
#
#   tests/gpu/device-check.sh OUT_DIR
#
# The CUDA libraries may sit in a Python environment's nvidia packages rather
# than under CUDA_HOME; this script looks in both. OpenBLAS and cmocka (for
# the CPU reference in test-gpu) come from .device/debs when the machine has
# no Debian packages of its own (unpacked into a private folder, not /).
#
# Strategies on the one GPU: dp and mp on 2 logical devices both mapped onto
# it (--device-map 0,0) with --verify on mlp-s in fp32 and bf16; ddp with one
# rank (the launcher's mpirun -np 1) and --verify, through NCCL (--comm nccl)
# and through the host-staged --comm mpi. All rows go into the same CSV and
# the summary table. ddp through NCCL with 2 and 4 ranks on the one GPU
# (test-only --device-map 0,0,..): --verify, the comm stream priorities, a
# stuck rank; its own CSVs (nccl-*.csv), PASS/FAIL lines in the summary.
# tp with 2 ranks on the one GPU (--device-map 0,0) through nccl and mpi,
# --verify on mlp-s: tp.csv, a PASS/FAIL line.
#
# Open MPI: the device machine may have neither mpicc nor mpirun (it has no
# Debian packages). Without them `make` builds the MPI and NCCL stubs and the
# ddp runs are skipped with a message. To carry Open MPI, download its debs
# beside the OpenBLAS ones on a Debian 12 machine with network, e.g.
#   cd .device/debs && apt-get download openmpi-bin openmpi-common \
#       libopenmpi-dev libopenmpi3 libhwloc15 libevent-core-2.1-7 \
#       libevent-pthreads-2.1-7 libpmix2 libfabric1 libucx0 libibverbs1 \
#       librdmacm1 libpsm2-2 libpsm-infinipath1 libnl-3-200 libnl-route-3-200 \
#       libxnvctrl0 libmunge2 libltdl7 libnuma1
# (7 MB; that set, unpacked this way, gave a working mpicc --showme and
# mpirun -np 2 on this machine). Only where the machine has no mpicc does this
# script unpack them, into a private root of their own, and point OPAL_PREFIX
# at it, so mpicc --showme and mpirun find their relocated files. Where it has
# an Open MPI of its own (the H100 image has 4.1), the carried libraries stay
# off LD_LIBRARY_PATH: its mpirun's plugins fail against the carried PMIx.
set -uo pipefail
# Prebuilt binaries (.device/prebuilt/bench and test_gpu, built here for
# sm_80 and sm_90 to save device time) are used only when they were built
# from these very sources: the device machine has no .git, so
# .device/prebuilt/SOURCES holds what `device-check.sh --source-hash` printed
# when they were built.
src_hash() { find harness strategies kernels workloads tests/gpu tests/unit tests/e2e tests/common -type f \
    \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) | LC_ALL=C sort | xargs cat Makefile ./*.mk tests/*.mk 2>/dev/null \
    | sha1sum | cut -c1-16; }
if [ "${1:-}" = --source-hash ]; then cd "$(dirname "$0")/../.." && src_hash; exit 0; fi
out=${1:?usage: tests/gpu/device-check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
log() { printf '[device-check %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$out/summary.txt"; }
t_start=$(date +%s)

# --- toolchain and libraries --------------------------------------------------
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
[ -x "$CUDA_HOME/bin/nvcc" ] || CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")")
export PATH="$CUDA_HOME/bin:$PATH"
find_lib_home() { # $1: library file, $2: header; prints a folder with lib/ (or lib64/) and include/
    for d in "$CUDA_HOME" /usr/local/cuda /usr; do
        if { [ -e "$d/lib64/$1" ] || [ -e "$d/lib/$1" ] || [ -e "$d/lib/x86_64-linux-gnu/$1" ]; } && [ -e "$d/include/$2" ]; then echo "$d"; return; fi
    done
    local py; py=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
    for sp in $py /opt/torch/.venv/lib/python3*/site-packages; do
        for d in "$sp"/nvidia/*; do
            if [ -e "$d/lib/$1" ] && [ -e "$d/include/$2" ]; then echo "$d"; return; fi
        done
    done
}
fix_soname() { # wheels ship libX.so.N only; the linker wants libX.so
    local home=$1 name=$2
    [ -e "$home/lib/$name.so" ] || [ -e "$home/lib64/$name.so" ] && return
    local real; real=$(ls "$home"/lib/"$name".so.* 2>/dev/null | head -1)
    [ -n "$real" ] && mkdir -p /tmp/pb_libs && ln -sf "$real" "/tmp/pb_libs/$name.so"
}
CUBLAS_HOME=$(find_lib_home libcublasLt.so.13 cublasLt.h)
[ -n "$CUBLAS_HOME" ] || CUBLAS_HOME=$(find_lib_home libcublasLt.so.12 cublasLt.h)
NCCL_HOME=$(find_lib_home libnccl.so.2 nccl.h)
log "nvcc: $(nvcc --version | tail -1); CUBLAS_HOME=$CUBLAS_HOME NCCL_HOME=$NCCL_HOME"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$out/summary.txt"
for n in libcublasLt libcublas libnccl libcudart; do
    for h in "$CUBLAS_HOME" "$NCCL_HOME" "$CUDA_HOME"; do [ -n "$h" ] && fix_soname "$h" "$n"; done
done

extra_cflags="" extra_ldflags="-L/tmp/pb_libs -Wl,-rpath,/tmp/pb_libs"
if ! ldconfig -p | grep -q 'libopenblas.so.0 ' || ! ldconfig -p | grep -q 'libcmocka.so.0 '; then
    root=/tmp/pb_sysroot
    mkdir -p "$root"
    # only what BLAS and cmocka need: the machine's own Open MPI, if any,
    # must not find the carried MPI libraries on LD_LIBRARY_PATH
    for f in .device/debs/libopenblas*.deb .device/debs/libcmocka*.deb .device/debs/libgfortran*.deb \
             .device/debs/libquadmath*.deb; do dpkg-deb -x "$f" "$root"; done
    ob=$root/usr/lib/x86_64-linux-gnu
    ln -sf "$ob/openblas-pthread/libopenblas.so.0" "$ob/libopenblas.so"
    ln -sf "$ob/openblas-pthread/libopenblas.so.0" "$ob/libopenblas.so.0"
    ln -sf "$ob/libcmocka.so.0" "$ob/libcmocka.so" 2>/dev/null
    extra_cflags="-I$root/usr/include -I$root/usr/include/x86_64-linux-gnu/openblas-pthread"
    extra_ldflags="$extra_ldflags -L$ob -L$ob/openblas-pthread -Wl,-rpath,$ob -Wl,-rpath,$ob/openblas-pthread"
    export LD_LIBRARY_PATH="$ob:$ob/openblas-pthread:${LD_LIBRARY_PATH:-}"
    log "OpenBLAS/cmocka unpacked from .device/debs into $root"
fi
# Open MPI from .device/debs when the machine has none (see the header)
if ! command -v mpicc >/dev/null 2>&1 && ls .device/debs/openmpi-bin_*.deb >/dev/null 2>&1; then
    root=/tmp/pb_mpiroot
    mkdir -p "$root"
    for f in .device/debs/*.deb; do dpkg-deb -x "$f" "$root"; done
    # Debian's mpicc and mpirun are alternatives that only postinst creates
    ln -sf mpicc.openmpi "$root/usr/bin/mpicc"
    ln -sf mpirun.openmpi "$root/usr/bin/mpirun"
    export OPAL_PREFIX="$root/usr"
    export PATH="$root/usr/bin:$PATH"
    export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}"
    log "Open MPI unpacked from .device/debs into $root (OPAL_PREFIX=$OPAL_PREFIX)"
fi
if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
    have_mpi=1
    log "MPI: $(mpirun --version 2>&1 | head -1)"
else
    have_mpi=0
    log "MPI: none (no mpicc/mpirun): ddp runs will be skipped"
fi
for h in "$CUBLAS_HOME" "$NCCL_HOME" "$CUDA_HOME"; do
    [ -n "$h" ] && export LD_LIBRARY_PATH="$h/lib:$h/lib64:${LD_LIBRARY_PATH:-}"
done
export LD_LIBRARY_PATH="/tmp/pb_libs:${LD_LIBRARY_PATH:-}"

# --- build (or use binaries built beforehand for sm_80+sm_90 and carried
# in .device/prebuilt, which saves device time when they load here) --------------
cc_major=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
gencode="-gencode arch=compute_${cc_major},code=sm_${cc_major}"
mkdir -p build/tests
if [ -x .device/prebuilt/bench ] && [ "$(cat .device/prebuilt/SOURCES 2>/dev/null)" = "$(src_hash)" ] \
        && ! LD_LIBRARY_PATH=$LD_LIBRARY_PATH ldd .device/prebuilt/bench | grep -q "not found" \
        && ! ldd .device/prebuilt/test_gpu | grep -q "not found"; then
    cp .device/prebuilt/bench ./bench
    cp .device/prebuilt/test_gpu build/tests/test_gpu
    log "using prebuilt binaries (.device/prebuilt: $(cat .device/prebuilt/REVISION 2>/dev/null))"
else
    log "building for sm_$cc_major"
    if ! CFLAGS="-O3 -g $extra_cflags" LDFLAGS="$extra_ldflags" make -j"$(nproc)" CUDA=1 WERROR=1 \
            CUDA_HOME="$CUDA_HOME" CUBLAS_HOME="${CUBLAS_HOME:-$CUDA_HOME}" NCCL_HOME="${NCCL_HOME:-$CUDA_HOME}" \
            NVCC_GENCODE="$gencode" bench build/tests/test_gpu >"$out/build.log" 2>&1; then
        log "BUILD FAILED (tail of build.log follows)"; tail -40 "$out/build.log"; exit 1
    fi
    log "build ok in $(( $(date +%s) - t_start )) s"
fi
./bench list 2>&1 | sed -n '/^backends:/,/^comms:/p' | tee -a "$out/summary.txt"
./bench list 2>&1 | sed -n '/^comms:/,/^workloads:/p' | tee -a "$out/summary.txt"

# --- make test-gpu --------------------------------------------------------------
timeout 150 build/tests/test_gpu >"$out/test-gpu.log" 2>&1
rc=$?
grep -E "rel err|loss step|PASSED|FAILED|skipped" "$out/test-gpu.log" | tee -a "$out/summary.txt"
log "test-gpu exit code $rc"

# --- runs ------------------------------------------------------------------------
csv="$out/gpu.csv"
run() { timeout 120 ./bench --backend cuda --quiet --out "$csv" "$@" 2>>"$out/runs.log" || log "run FAILED ($?): $*"; }
# mlp-s steps are short: 50 warm-up steps let the clocks settle (with 5, the
# first run on a fresh machine once read 2.2 ms instead of 0.4)
for wl in mlp-s mlp-m mlp-l; do
    w=5; [ "$wl" = mlp-s ] && w=50
    for p in fp32 tf32 bf16; do run --workload "$wl" --precision "$p" --iters 20 --warmup $w; done
done
run --workload mlp-s --precision fp32 --iters 50 --warmup 50
run --workload mlp-s --precision fp32 --iters 50 --warmup 50 --cuda-graph
timeout 120 ./bench calibrate --workload mlp-l --precision bf16 --backend cuda >>"$out/summary.txt" 2>&1 || log "calibrate mlp-l FAILED"

# >>> GPT on cuda (issue 16) >>>
# gpt2-124m and gpt2-350m, bf16, batch 16 x 1024 tokens, one GPU: tokens/s,
# MFU and step/GEMMs from their rows (the summary table below has them too).
# Guarded: should the cuda backend's transformer ops lack an op the GPT
# stage needs (workloads/transformer_check.c), bench refuses with exit 2 and
# one line before opening the device, and this block says so and goes on;
# should they lack bf16 activations only, it runs tf32 instead and says so. About a minute
# of device time when it runs (25 steps each).
gcsv="$out/gpt.csv"
for wl in gpt2-124m gpt2-350m; do
    for prec in bf16 tf32; do
        msg=$(timeout 240 ./bench --backend cuda --quiet --out "$gcsv" --workload "$wl" --precision "$prec" \
              --batch 16 --seq 1024 --iters 20 --warmup 5 2>&1); rc=$?
        refused=""; [ "$rc" = 2 ] && printf '%s' "$msg" | grep -q "transformer ops" && refused=1
        [ -n "$refused" ] && log "gpt $wl $prec refused: $msg"
        if [ -n "$refused" ] && [ "$prec" = bf16 ] && printf '%s' "$msg" | grep -q "bf16 activations"; then continue; fi
        [ -n "$refused" ] && break 2
        [ "$rc" = 0 ] || log "gpt $wl $prec FAILED ($rc): $(printf '%s' "$msg" | tail -3)"
        printf '%s\n' "$msg" >>"$out/runs.log"
        break
    done
done
[ -e "$gcsv" ] && python3 - "$gcsv" <<'PY' | tee -a "$out/summary.txt"
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    try: ratio = "%.2f" % (float(r["step_ms_p50"]) / float(r["gemm_ms"]))
    except (ValueError, ZeroDivisionError): ratio = "-"
    print("gpt %s %s batch %s seq %s: status %s, %s tokens/s, mfu %s (peak %s TFLOP/s), step %s ms p50, "
          "step/GEMMs %s, loss %s -> %s, peak mem %s MB" % (r["workload"], r["precision"], r["batch_global"],
          r["seq"], r["status"], r["tokens_per_s"], r["mfu"], r["peak_tflops"], r["step_ms_p50"], ratio,
          r["loss_first"], r["loss_last"], r["peak_mem_mb"]))
PY
# <<< GPT on cuda <<<

# --- strategies on the one GPU ----------------------------------------------------
# dp and mp: 2 logical devices sharing physical device 0. Such rows should
# say oversubscribed=1 (devices share hardware); check the column.
for p in fp32 bf16; do
    for s in dp mp; do
        run --strategy "$s" --gpus 2 --device-map 0,0 --workload mlp-s --precision "$p" --iters 20 --warmup 5 --verify
    done
done
# ddp, one rank: NCCL on device buffers, then the host-staged MPI fallback.
# The launcher re-executes under mpirun -np 1 (--allow-run-as-root as root).
if [ "$have_mpi" = 1 ] && ./bench list 2>&1 | grep -q "MPI collectives on host"; then
    if ./bench list 2>&1 | grep -q "nccl .*on GPU buffers, on a comm stream"; then
        run --strategy ddp --gpus 1 --workload mlp-s --precision fp32 --iters 20 --warmup 5 --verify --comm nccl
        run --strategy ddp --gpus 1 --workload mlp-s --precision bf16 --iters 20 --warmup 5 --verify --comm nccl
    else
        log "ddp through NCCL skipped: this build has the nccl stub (needs CUDA and MPI)"
    fi
    run --strategy ddp --gpus 1 --workload mlp-s --precision fp32 --iters 20 --warmup 5 --verify --comm mpi
    # weak scaling's one-GPU point: ddp (one rank, NCCL) beside single on mlp-m
    run --strategy single --gpus 1 --workload mlp-m --precision bf16 --iters 30 --warmup 5
    run --strategy ddp --gpus 1 --workload mlp-m --precision bf16 --iters 30 --warmup 5 --comm nccl
else
    log "ddp skipped: no mpirun/mpicc here, or bench was built without MPI (see the header: Open MPI debs)"
fi
# ==== BEGIN nccl block (issue 13: NCCL with several ranks on one GPU) =============
# Test-only mode: ddp with --device-map 0,0[,0,0] puts every rank on GPU 0.
# Each rank gets its own NCCL_HOSTID (NCCL < 2.30; NCCL_MULTI_RANK_GPU_ENABLE=1
# from 2.30) and NCCL talks over sockets on loopback, so these rows are
# oversubscribed and their timings mean nothing: they check correctness
# (--verify against single), the comm stream priority switch, and that a stuck
# rank ends the job within --timeout + 10 s through ncclCommAbort. Never quote
# their timings as figures (docs/gpu.md, "NCCL: non-blocking communicator,
# deadlines, one-GPU multi-rank mode").
nccl_ok() { [ "$have_mpi" = 1 ] && ./bench list 2>&1 | grep -q "nccl .*on GPU buffers, on a comm stream"; }
if nccl_ok; then
    ncsv="$out/nccl-ranks.csv"
    for np in 2 4; do
        map=$(printf '0,%.0s' $(seq "$np")); map=${map%,}
        for variant in "--bucket-mb 1" "--bucket-mb 25" "--no-overlap"; do
            # shellcheck disable=SC2086 # $variant is two words or one on purpose
            timeout 120 ./bench --backend cuda --quiet --out "$ncsv" --strategy ddp --gpus "$np" --device-map "$map" \
                --comm nccl --workload mlp-s --precision fp32 --iters 10 --warmup 2 --verify $variant \
                2>>"$out/nccl.log" || log "nccl one-GPU run FAILED ($?): ddp $np ranks $variant"
        done
    done
    python3 - "$ncsv" <<'PY' | tee -a "$out/summary.txt"
import csv, os, sys
rows = list(csv.DictReader(open(sys.argv[1]))) if os.path.exists(sys.argv[1]) else []
bad = [r for r in rows if r["status"] != "ok" or r["oversubscribed"] != "1" or not r["verify_max_rel_err"]]
for r in rows:
    print("nccl one-GPU: ddp %s ranks map %s bucket_mb %s no_overlap %s: status %s, oversubscribed %s, "
          "verify_max_rel_err %s (timings not reported: sockets on one GPU)" % (r["devices"], r["device_map"],
          r["bucket_mb"] or "-", r["no_overlap"], r["status"], r["oversubscribed"], r["verify_max_rel_err"]))
print("nccl one-GPU verify: %s (%d of 6 rows, %d bad)" % ("PASS" if len(rows) == 6 and not bad else "FAIL",
      len(rows), len(bad)))
PY
    # Comm stream priority (issue 13, item 8): overlap with the NCCL stream at
    # the compute stream's priority (high, the default) and at the least
    # (low, the old choice). On one GPU with socket transport this says
    # little (the all-reduce waits on the network proxy, not on SMs): the
    # figure to decide by comes from a multi-GPU node (docs/gpu.md).
    for prio in high low; do
        PB_NCCL_STREAM_PRIORITY=$prio timeout 120 ./bench --backend cuda --quiet --out "$out/nccl-prio-$prio.csv" \
            --strategy ddp --gpus 2 --device-map 0,0 --comm nccl --workload mlp-m --precision bf16 --iters 20 \
            --warmup 5 --bucket-mb 25 2>>"$out/nccl.log" || log "nccl priority $prio run FAILED ($?)"
    done
    python3 - "$out/nccl-prio-high.csv" "$out/nccl-prio-low.csv" <<'PY' | tee -a "$out/summary.txt"
import csv, os, sys
for path in sys.argv[1:]:
    prio = path.rsplit("-", 1)[1][:-4]
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    for r in rows:
        print("nccl stream priority %s (one GPU, 2 ranks: indicative only): status %s overlap_pct %s comm_ms %s "
              "step_ms_p50 %s" % (prio, r["status"], r["overlap_pct"], r["comm_ms"], r["step_ms_p50"]))
    if not rows: print("nccl stream priority %s: no row" % prio)
PY
    # A stuck rank: rank 1 hangs (PB_FAULT, test-only) at step S; rank 0's
    # deadline must fire (step 0: while NCCL may still be setting up
    # connections; step 2: in a wait), name rank 1, abort the communicator,
    # and the whole job must end within --timeout + 10 s of the fault, with
    # no row written as ok.
    to=10
    for step in 0 2; do
        flog="$out/nccl-hang-step$step.log" fcsv="$out/nccl-hang-step$step.csv" t_run=$(date +%s.%N)
        PB_FAULT="rank=1,step=$step,kind=hang" timeout 120 ./bench --backend cuda --out "$fcsv" --strategy ddp \
            --gpus 2 --device-map 0,0 --comm nccl --workload mlp-s --iters 10 --warmup 2 --timeout "$to" \
            >"$flog" 2>&1 &
        pid=$! fired=""
        while kill -0 "$pid" 2>/dev/null; do
            [ -z "$fired" ] && grep -q "PB_FAULT (test-only)" "$flog" && fired=$(date +%s.%N)
            sleep 0.2
        done
        wait "$pid"; frc=$?; end=$(date +%s.%N)
        # fired before the first look: count from the launch (stricter)
        [ -z "$fired" ] && grep -q "PB_FAULT (test-only)" "$flog" && fired=$t_run
        ok_rows=0
        [ -e "$fcsv" ] && ok_rows=$(python3 -c 'import csv,sys; print(sum(r["status"]=="ok" for r in csv.DictReader(open(sys.argv[1]))))' "$fcsv")
        after=$(python3 -c "print('%.1f' % (float('$end') - float('${fired:-0}')))")
        verdict=PASS why=""
        [ -n "$fired" ] || { verdict=FAIL; why="$why; the fault never fired"; }
        [ "$frc" != 0 ] || { verdict=FAIL; why="$why; exit code 0"; }
        [ "$frc" != 124 ] || { verdict=FAIL; why="$why; killed by the script's 120 s timeout"; }
        python3 -c "import sys; sys.exit(0 if $after <= $to + 10 else 1)" || { verdict=FAIL; why="$why; ended $after s after the fault"; }
        grep -q "rank 1 on .* (pid [0-9]*) is stuck" "$flog" || { verdict=FAIL; why="$why; rank 1 not named as stuck"; }
        grep -q "communicator aborted" "$flog" || { verdict=FAIL; why="$why; no ncclCommAbort message"; }
        [ "$ok_rows" = 0 ] || { verdict=FAIL; why="$why; $ok_rows row(s) written as ok"; }
        log "nccl stuck rank (step $step, --timeout $to): $verdict: exit $frc, ended ${after} s after the fault${why}"
        grep -m1 "did not complete within" "$flog" | tee -a "$out/summary.txt"
    done
else
    log "nccl one-GPU multi-rank checks skipped: no MPI, or this build has the nccl stub"
fi
# ==== END nccl block ================================================================
# tp (issue 17): 2 ranks on the one GPU (--device-map 0,0, test-only as the
# nccl block's ddp): the activation all-reduces in place on the device
# (nccl), then host-staged (mpi); --verify against single on mlp-s, whose
# pairs use the bias_act/relu_bwd kernels. Oversubscribed: no timings.
if nccl_ok; then
    for comm in nccl mpi; do
        timeout 120 ./bench --backend cuda --quiet --out "$out/tp.csv" --strategy tp --gpus 2 --device-map 0,0 \
            --comm "$comm" --workload mlp-s --precision fp32 --iters 10 --warmup 2 --verify 2>>"$out/tp.log" ||
            log "tp one-GPU run FAILED ($?): --comm $comm"
    done
    python3 - "$out/tp.csv" <<'PY' | tee -a "$out/summary.txt"
import csv, os, sys
rows = list(csv.DictReader(open(sys.argv[1]))) if os.path.exists(sys.argv[1]) else []
bad = [r for r in rows if r["status"] != "ok" or not r["verify_max_rel_err"]]
for r in rows:
    print("tp one-GPU: 2 ranks --comm %s: status %s, verify_max_rel_err %s, allreduce_bytes_per_step %s"
          % (r["comm"], r["status"], r["verify_max_rel_err"], r["allreduce_bytes_per_step"]))
print("tp one-GPU verify: %s (%d of 2 rows, %d bad)" % ("PASS" if len(rows) == 2 and not bad else "FAIL",
      len(rows), len(bad)))
PY
fi
# More devices than this machine's GPUs, without a device map: exit 2, one
# line, before any work (dp, and ddp before its launch).
ngpu=$(nvidia-smi -L | wc -l)
for s in dp ddp; do
    msg=$(timeout 60 ./bench --backend cuda --strategy "$s" --gpus $((ngpu + 1)) --workload mlp-xs --quiet \
          --out "$out/never.csv" 2>&1); rc=$?
    if [ "$rc" = 2 ] && [ ! -e "$out/never.csv" ]; then log "$s --gpus $((ngpu + 1)) on $ngpu GPU(s): exit 2 ok: $msg"
    else log "$s --gpus $((ngpu + 1)) on $ngpu GPU(s): expected exit 2 and no file, got $rc: $msg"; fi
done
grep -E "error|abort" "$out/runs.log" 2>/dev/null | tail -20 | tee -a "$out/summary.txt"

# >>> comm conformance on nccl (tests/unit/test_comm_conformance.c) >>>
# The suite `make test` runs on local and mpi, here on nccl with 2 and 4
# ranks all on device 0: NCCL's one-GPU multi-rank mode (a host id per rank,
# sockets on loopback; NCCL_MULTI_RANK_GPU_ENABLE on 2.30+). Each rank prints
# "comm conformance: nccl rank R of N passed K cases".
if [ "$have_mpi" = 1 ] && ./bench list 2>&1 | grep -q "nccl .*on GPU buffers"; then
    [ -x build/tests/test_comm_conformance ] || CFLAGS="-O3 -g $extra_cflags" LDFLAGS="$extra_ldflags" \
        make -j"$(nproc)" CUDA=1 WERROR=1 CUDA_HOME="$CUDA_HOME" CUBLAS_HOME="${CUBLAS_HOME:-$CUDA_HOME}" \
        NCCL_HOME="${NCCL_HOME:-$CUDA_HOME}" NVCC_GENCODE="$gencode" build/tests/test_comm_conformance \
        >>"$out/build.log" 2>&1 || log "comm conformance: build FAILED (build.log)"
    for np in 2 4; do
        timeout 180 mpirun $([ "$(id -u)" = 0 ] && echo --allow-run-as-root) --oversubscribe -np $np \
            -x NCCL_SOCKET_IFNAME=lo -x NCCL_IB_DISABLE=1 -x NCCL_MULTI_RANK_GPU_ENABLE=1 \
            sh -c 'NCCL_HOSTID=pbconf$OMPI_COMM_WORLD_RANK exec build/tests/test_comm_conformance --rank nccl 0' \
            >"$out/conformance-nccl-$np.log" 2>&1; rc=$?
        ok=$(grep -c "passed" "$out/conformance-nccl-$np.log")
        log "comm conformance nccl, $np ranks on device 0: exit $rc, $ok of $np ranks passed"
        grep -E "FAILED|passed" "$out/conformance-nccl-$np.log" | head -5 | tee -a "$out/summary.txt"
    done
else
    log "comm conformance on nccl skipped: no MPI, or the nccl stub"
fi
# <<< comm conformance on nccl <<<

# --- summary -------------------------------------------------------------------------
python3 - "$csv" <<'PY' | tee -a "$out/summary.txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ["strategy", "devices", "comm", "oversubscribed", "workload", "precision", "cuda_graph", "status",
        "verify_max_rel_err", "step_ms_p50", "gemm_ms", "step/gemm", "step_ms_cv",
        "samples_per_s", "model_tflops", "peak_tflops", "mfu", "load_ms", "h2d_ms", "fwd_ms", "bwd_ms", "opt_ms",
        "comm_ms", "sync_ms", "loss_first", "loss_last", "peak_mem_mb"]
def val(r, c):
    if c == "step/gemm":
        try: return "%.3f" % (float(r["step_ms_p50"]) / float(r["gemm_ms"]))
        except (ValueError, ZeroDivisionError): return ""
    return r.get(c) or ""
print(" ".join(f"{c[:11]:>11}" for c in cols))
for r in rows:
    print(" ".join(f"{val(r, c)[:11]:>11}" for c in cols))
PY
log "done in $(( $(date +%s) - t_start )) s"
