# Benchmarks, included by the Makefile. Not part of `make test`: they print
# figures and take minutes.
#
#   make bench-cpu   the CPU step against its GEMMs alone (--threads 1, mlp-s,
#                    mlp-m and gpt-xs, ABAB rounds), then the allocation check
#                    of ./bench's measured steps with tests/alloc_count.c
#                    preloaded (single, and dp and mp with their comm, on
#                    mlp-s; single on gpt-xs).
#   make bench-cpu-exact   the optimised CPU kernels against the plain loops
#                    they replaced, bit for bit (and the row exp against expf
#                    over all 2^32 floats per implementation; ~2 minutes).
#   BENCH_ROUNDS_S / BENCH_ROUNDS_M / BENCH_ROUNDS_GPT  rounds per preset
#                    (each round: one step and one GEMM-only pass);
#                    BENCH_WARMUP warmup rounds; BENCH_LIMIT the allowed
#                    step/GEMM ratio of the MLPs, BENCH_LIMIT_GPT gpt-xs's;
#                    BENCH_STRICT=1 makes a ratio over the limit fail the target.
.PHONY: bench-cpu bench-cpu-exact
BENCH_ROUNDS_S ?= 30
BENCH_ROUNDS_M ?= 7
BENCH_ROUNDS_GPT ?= 60
BENCH_WARMUP ?= 2
BENCH_LIMIT ?= 1.10
BENCH_LIMIT_GPT ?= 1.25
BENCH_STRICT ?= 0

BENCH_CPU := $(BUILD)/benchmarks/bench_cpu
CPU_EXACT := $(BUILD)/benchmarks/cpu_exact
ALLOC_COUNT_LIB := $(BUILD)/benchmarks/libpb_alloc_count.so

$(BENCH_CPU): benchmarks/bench_cpu.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

# includes kernels/cpu/backend_cpu.c to reach its static kernels, so it is
# built with that file's flags
$(CPU_EXACT): CFLAGS += -fno-math-errno
$(CPU_EXACT): benchmarks/cpu_exact.c kernels/cpu/backend_cpu.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

bench-cpu-exact: $(CPU_EXACT)
	@$(CPU_EXACT)

# Interposes malloc and friends; exports pb_alloc_count(), which bench looks
# up as a weak dynamic symbol (harness/run.c).
$(ALLOC_COUNT_LIB): tests/alloc_count.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $< -ldl

bench-cpu: bench $(BENCH_CPU) $(ALLOC_COUNT_LIB)
	@$(BENCH_CPU) --warmup $(BENCH_WARMUP) --limit $(BENCH_LIMIT) --limit-gpt $(BENCH_LIMIT_GPT) \
		$(if $(filter 1,$(BENCH_STRICT)),--strict) mlp-s:$(BENCH_ROUNDS_S) mlp-m:$(BENCH_ROUNDS_M) gpt-xs:$(BENCH_ROUNDS_GPT)
ifeq ($(SAN),1)
	@echo "allocation check: skipped under SAN=1 (AddressSanitizer's allocator must come first and would hide the counter's)"
else
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	for strat in "single --workload mlp-s" "dp --gpus 2 --workload mlp-s" "mp --gpus 2 --microbatches 4 --workload mlp-s" \
		"single --workload gpt-xs"; do \
	cmd="./bench --strategy $$strat --threads 1 --iters 5 --warmup 2 --backend cpu --out $$tmp/run.csv" && \
	LD_PRELOAD=$(abspath $(ALLOC_COUNT_LIB)) $$cmd 2>"$$tmp/err" || { cat "$$tmp/err"; exit 1; }; \
	n=$$(sed -n 's/^bench: allocations during measured steps: \([0-9]*\)$$/\1/p' "$$tmp/err"); \
	if [ -z "$$n" ]; then \
		echo "allocation check: FAIL: the counter was not seen by bench (no count line)"; cat "$$tmp/err"; exit 1; \
	fi; \
	echo "allocation check: LD_PRELOAD=$(ALLOC_COUNT_LIB) $$cmd"; \
	if [ "$$n" -eq 0 ]; then v=PASS; else v=FAIL; fi; \
	echo "  allocations during measured steps: $$n (target 0) $$v"; \
	[ "$$n" -eq 0 ] || exit 1; \
	done
endif

# --- bench-comm ----------------------------------------------------------------
#   make bench-comm  the `mpi` comm's all-reduce (allreduce + wait, as ddp
#                    issues a bucket) against a bare MPI_Allreduce of the same
#                    buffer, 2 ranks under mpirun, ABBA rounds, per size
#                    (BENCH_COMM_SIZES: MiB of floats or presets' exact
#                    gradients), verdict busbw ratio >= BENCH_COMM_LIMIT; then
#                    ./bench ddp (--gpus 2 --threads 1) overlap on vs
#                    --no-overlap on mlp-s (BENCH_COMM_REPEATS alternating
#                    repeats each) and mlp-m (BENCH_COMM_M_REPEATS; 0 skips it),
#                    summarised from a temporary CSV by bench_comm --summarise.
#   BENCH_COMM_ROUNDS / BENCH_COMM_WARMUP  timed / warm-up rounds per size;
#   BENCH_STRICT=1 makes a ratio under the limit fail the target.
.PHONY: bench-comm
BENCH_COMM_SIZES ?= 1 4 16 64 mlp-s mlp-m
BENCH_COMM_ROUNDS ?= 20
BENCH_COMM_WARMUP ?= 3
BENCH_COMM_LIMIT ?= 0.9
BENCH_COMM_REPEATS ?= 3
BENCH_COMM_M_REPEATS ?= 1
BENCH_COMM_S_BUCKET_MB ?= 4
BENCH_COMM_MPIRUN := mpirun $(if $(filter 0,$(shell id -u)),--allow-run-as-root) \
	$(if $(shell [ "$$(nproc)" -lt 2 ] && echo y),--oversubscribe) -np 2

BENCH_COMM := $(BUILD)/benchmarks/bench_comm

$(BENCH_COMM): benchmarks/bench_comm.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

bench-comm: bench $(BENCH_COMM)
ifneq ($(MPI_ON),1)
	@echo "bench-comm: needs MPI (this build has the stub)"; exit 1
endif
	@$(BENCH_COMM_MPIRUN) $(BENCH_COMM) --rounds $(BENCH_COMM_ROUNDS) --warmup $(BENCH_COMM_WARMUP) \
		--limit $(BENCH_COMM_LIMIT) $(if $(filter 1,$(BENCH_STRICT)),--strict) $(BENCH_COMM_SIZES)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	run() { ./bench --strategy ddp --gpus 2 --threads 1 --backend cpu --quiet --out "$$tmp/ddp.csv" "$$@" \
		>"$$tmp/log" 2>&1 || { cat "$$tmp/log"; exit 1; }; } && \
	echo "ddp overlap on vs off: ./bench --strategy ddp --gpus 2 --threads 1 (mlp-s: --iters 10 --warmup 2," \
		"$(BENCH_COMM_REPEATS) repeats each; mlp-m: --iters 2 --warmup 1, $(BENCH_COMM_M_REPEATS) each; alternating)" && \
	for i in $$(seq 1 $(BENCH_COMM_REPEATS)); do \
		run --workload mlp-s --iters 10 --warmup 2 && \
		run --workload mlp-s --iters 10 --warmup 2 --no-overlap && \
		$(if $(BENCH_COMM_S_BUCKET_MB),run --workload mlp-s --iters 10 --warmup 2 --bucket-mb $(BENCH_COMM_S_BUCKET_MB) &&) true || exit 1; \
	done && \
	for i in $$(seq 1 $(BENCH_COMM_M_REPEATS)); do \
		run --workload mlp-m --iters 2 --warmup 1 && \
		run --workload mlp-m --iters 2 --warmup 1 --no-overlap || exit 1; \
	done && \
	$(BENCH_COMM) --summarise "$$tmp/ddp.csv"

# make bench-aa: how often bench compare's defaults cry wolf on this machine
# (A/A: nothing changed) and how often they catch a real 10% slowdown;
# scripts/aa-test.sh, docs/statistics.md "How often compare is wrong".
# AA_TRIALS trials (about 30 s each on an idle 2-core machine).
.PHONY: bench-aa
AA_TRIALS ?= 20
bench-aa: bench
	@TRIALS=$(AA_TRIALS) scripts/aa-test.sh

# --- bench-gpt-ops -------------------------------------------------------------
#   make bench-gpt-ops  the CPU attention op (forward + backward) against the
#                    same sgemm calls alone, one BLAS thread, at a gpt-xs-like
#                    shape (B 8, T 64, d 128, 4 heads), alternating rounds;
#                    a few seconds. BENCH_GPT_OPS_ARGS passes flags
#                    (--rounds --reps --limit --shape B,T,C,NH);
#                    BENCH_STRICT=1 makes a ratio over the limit (1.25) fail.
.PHONY: bench-gpt-ops
BENCH_GPT_OPS_ARGS ?=
BENCH_GPT_OPS := $(BUILD)/benchmarks/bench_gpt_ops

$(BENCH_GPT_OPS): benchmarks/bench_gpt_ops.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

bench-gpt-ops: $(BENCH_GPT_OPS)
	@$(BENCH_GPT_OPS) $(BENCH_GPT_OPS_ARGS) $(if $(filter 1,$(BENCH_STRICT)),--strict)

# --- predict-validate -------------------------------------------------------
#   make predict-validate  bench predict against every configuration that runs
#                          here (docs/predict.md, "Validation"): single inputs,
#                          bench comm fits, ddp/dp/mp on 1 to 4 CPU devices
#                          with --bucket-mb and --no-overlap variants, zero
#                          1/2/3 and tp on 2 ranks, mp 1f1b (2 stages, 8
#                          microbatches), in
#                          PREDICT_ROUNDS interleaved rounds; prints each
#                          error; exit 1 over the limits (median 10%, max 25%).
.PHONY: predict-validate
PREDICT_ROUNDS ?= 3
predict-validate: bench
	@BENCH=./bench scripts/predict-validate.sh results/predict-validate all $(PREDICT_ROUNDS)

# --- bench-pipeline ------------------------------------------------------------
#   make bench-pipeline  mp's schedules side by side (issue 17): each of
#                    BENCH_PIPE_CONFIGS (workload:stages:microbatches) under
#                    --schedule gpipe and 1f1b, alternating, BENCH_PIPE_REPEATS
#                    times (--threads 1 --iters BENCH_PIPE_ITERS --warmup 1,
#                    the cpu backend); then build/benchmarks/bench_pipeline
#                    prints per configuration the median bubble_frac against
#                    (p-1)/(m+p-1), the peak memory of both schedules, and the
#                    verdicts for m >= 4p (1F1B's bubble within 0.05 of the
#                    theory; its peak below GPipe's). The machine's load
#                    and the cores free for the most stages (bench_pipeline
#                    --cores) before and after are printed: a stage waiting
#                    for a core counts as bubble. BENCH_STRICT=1 makes a
#                    missed verdict fail.
.PHONY: bench-pipeline
BENCH_PIPE_CONFIGS ?= mlp-m:2:8 mlp-s:2:8 mlp-s:2:16 gpt-xs:2:8
BENCH_PIPE_REPEATS ?= 3
BENCH_PIPE_ITERS ?= 5
BENCH_PIPELINE := $(BUILD)/benchmarks/bench_pipeline

$(BENCH_PIPELINE): benchmarks/bench_pipeline.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

bench-pipeline: bench $(BENCH_PIPELINE)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	maxp=$$(for c in $(BENCH_PIPE_CONFIGS); do r=$${c#*:}; echo $${r%%:*}; done | sort -n | tail -1) && \
	echo "bench-pipeline: load before: $$(cut -d' ' -f1-3 /proc/loadavg) ($$(nproc) cores)" && \
	$(BENCH_PIPELINE) --cores $$maxp && \
	for i in $$(seq 1 $(BENCH_PIPE_REPEATS)); do \
		for c in $(BENCH_PIPE_CONFIGS); do \
			w=$${c%%:*}; r=$${c#*:}; p=$${r%%:*}; m=$${r#*:}; \
			for s in gpipe 1f1b; do \
				./bench --strategy mp --backend cpu --workload $$w --gpus $$p --microbatches $$m --schedule $$s \
					--threads 1 --iters $(BENCH_PIPE_ITERS) --warmup 1 --quiet --out "$$tmp/mp.csv" \
					>"$$tmp/log" 2>&1 || { cat "$$tmp/log"; exit 1; }; \
			done; \
		done; \
	done && \
	echo "bench-pipeline: load after: $$(cut -d' ' -f1-3 /proc/loadavg)" && \
	$(BENCH_PIPELINE) --cores $$maxp && \
	$(BENCH_PIPELINE) $(if $(filter 1,$(BENCH_STRICT)),--strict) "$$tmp/mp.csv"

# --- bench-strategies ----------------------------------------------------------
#   make bench-strategies  issue 17's figures in one target: bench-zero,
#                    then bench-pipeline (above), one after the other so
#                    neither times the other's load.
#   make bench-zero  ddp and zero stages 1-3 (and whatever strategies
#                    benchmarks/bench_strategies.sh lists) on the same
#                    workload and ranks, --threads 1 --bucket-mb 4, paired
#                    rounds with the order rotated; prints the load average and
#                    the median step-time ratios against their targets
#                    (zero1/2 <= 1.10 x ddp, zero3 <= 1.25 x).
#   BENCH_STRAT_WORKLOAD (mlp-s), BENCH_STRAT_RANKS (2), BENCH_STRAT_ROUNDS (5),
#   BENCH_STRAT_ITERS (10); BENCH_STRICT=1 makes a ratio over its limit fail.
.PHONY: bench-strategies bench-zero
BENCH_STRAT_WORKLOAD ?= mlp-s
BENCH_STRAT_RANKS ?= 2
BENCH_STRAT_ROUNDS ?= 5
BENCH_STRAT_ITERS ?= 10
BENCH_STRATEGIES := $(BUILD)/benchmarks/bench_strategies

$(BENCH_STRATEGIES): benchmarks/bench_strategies.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(LDLIBS)

bench-strategies:
	@$(MAKE) --no-print-directory bench-zero && $(MAKE) --no-print-directory bench-pipeline

bench-zero: bench $(BENCH_STRATEGIES)
ifneq ($(MPI_ON),1)
	@echo "bench-zero: needs MPI (this build has the stub)"; exit 1
endif
	@BENCH=./bench SUMMARY=$(BENCH_STRATEGIES) WORKLOAD=$(BENCH_STRAT_WORKLOAD) RANKS=$(BENCH_STRAT_RANKS) \
		ROUNDS=$(BENCH_STRAT_ROUNDS) ITERS=$(BENCH_STRAT_ITERS) $(if $(filter 1,$(BENCH_STRICT)),STRICT=1) \
		benchmarks/bench_strategies.sh
