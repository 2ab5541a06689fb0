# Benchmarks, included by the Makefile. Not part of `make test`: they print
# figures and take minutes.
#
#   make bench-cpu   the CPU step against its GEMMs alone (--threads 1, mlp-s
#                    and mlp-m, ABAB rounds), then the allocation check of
#                    ./bench's measured steps with tests/alloc_count.c preloaded.
#   make bench-cpu-exact   the optimised CPU kernels against the plain loops
#                    they replaced, bit for bit (and the row exp against expf
#                    over all 2^32 floats per implementation; ~2 minutes).
#   BENCH_ROUNDS_S / BENCH_ROUNDS_M  rounds per preset (each round: one step
#                    and one GEMM-only pass); BENCH_WARMUP warmup rounds;
#                    BENCH_LIMIT the allowed step/GEMM ratio;
#                    BENCH_STRICT=1 makes a ratio over the limit fail the target.
.PHONY: bench-cpu bench-cpu-exact
BENCH_ROUNDS_S ?= 30
BENCH_ROUNDS_M ?= 7
BENCH_WARMUP ?= 2
BENCH_LIMIT ?= 1.10
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
	@$(BENCH_CPU) --warmup $(BENCH_WARMUP) --limit $(BENCH_LIMIT) $(if $(filter 1,$(BENCH_STRICT)),--strict) \
		mlp-s:$(BENCH_ROUNDS_S) mlp-m:$(BENCH_ROUNDS_M)
ifeq ($(SAN),1)
	@echo "allocation check: skipped under SAN=1 (AddressSanitizer's allocator must come first and would hide the counter's)"
else
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cmd="./bench --workload mlp-s --threads 1 --iters 5 --warmup 2 --backend cpu --out $$tmp/run.csv" && \
	LD_PRELOAD=$(abspath $(ALLOC_COUNT_LIB)) $$cmd 2>"$$tmp/err" || { cat "$$tmp/err"; exit 1; }; \
	n=$$(sed -n 's/^bench: allocations during measured steps: \([0-9]*\)$$/\1/p' "$$tmp/err"); \
	if [ -z "$$n" ]; then \
		echo "allocation check: FAIL: the counter was not seen by bench (no count line)"; cat "$$tmp/err"; exit 1; \
	fi; \
	echo "allocation check: LD_PRELOAD=$(ALLOC_COUNT_LIB) $$cmd"; \
	if [ "$$n" -eq 0 ]; then v=PASS; else v=FAIL; fi; \
	echo "  allocations during measured steps: $$n (target 0) $$v"; \
	[ "$$n" -eq 0 ]
endif
