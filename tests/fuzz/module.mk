# Fuzzing (libFuzzer, from clang + libclang-rt-14-dev on Debian). Not part of
# `make test` or CI; the corpus and every kept crash input are replayed by
# tests/unit/test_fuzz_regressions.c under `make test` without libFuzzer.
#   make fuzz              both targets, FUZZ_SECONDS each
#   make fuzz-csv          the results-CSV reader (bench compare, sweep resume)
#   make fuzz-cli          the command-line parser and validation
#   FUZZ_SECONDS ?= 60, FUZZ_CC ?= clang, FUZZ_ARGS: extra libFuzzer flags
# New corpus entries go to $(BUILD)/fuzz/corpus/, crash inputs to
# $(BUILD)/fuzz/crashes/; copy a crash input into tests/fuzz/regressions/csv
# or .../cli once it is fixed, so `make test` keeps replaying it.
# The library is compiled again with clang and the fuzzer's instrumentation
# into $(BUILD)/fuzz/ (CPU backend, CUDA/MPI/NCCL stubs), not libparbench.a.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ARGS ?=
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c11 -g -O1 -Wall -Wextra -pthread -MMD -MP $(BLAS_CFLAGS) $(FUZZ_SAN)
FUZZ_LIB_SRC := $(filter-out harness/main.c,$(wildcard harness/*.c study/*.c strategies/*.c workloads/*.c kernels/cpu/*.c)) \
                kernels/comm_local.c kernels/p2p.c kernels/driver_version.c kernels/progress.c kernels/comm_mpi_stub.c kernels/world_stub.c kernels/comm_nccl_stub.c \
                kernels/nccl_local_stub.c kernels/cuda/backend_cuda_stub.c
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_TARGETS := csv cli
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-check fuzz-build $(FUZZ_TARGETS:%=fuzz-%)

fuzz: $(FUZZ_TARGETS:%=fuzz-%)
fuzz-build: $(FUZZ_BIN)

# exit 2 with the package to install when libFuzzer is missing
fuzz-check:
	@printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
	  | $(FUZZ_CC) -x c - -fsanitize=fuzzer,address,undefined -o /dev/null 2>/dev/null || { \
	  echo "make fuzz: '$(FUZZ_CC) -fsanitize=fuzzer' does not link: install clang and libFuzzer" \
	       "(Debian: apt-get install clang libclang-rt-14-dev), or set FUZZ_CC" >&2; exit 2; }

$(FUZZ_BUILD)/obj/%.o: %.c | fuzz-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libparbench-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_targets.h $(FUZZ_BUILD)/libparbench-fuzz.a | fuzz-check
	$(FUZZ_CC) $(FUZZ_CFLAGS) -I. -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libparbench-fuzz.a $(BLAS_LIBS) -lm -lpthread -ldl

# -max_len: CSV files get room for a header and a few rows; a command line
# of 32 arguments fits in 1 KiB
FUZZ_MAX_LEN_csv := 4096
FUZZ_MAX_LEN_cli := 1024
$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/crashes
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) -timeout=10 -print_final_stats=1 \
	  -dict=tests/fuzz/$*.dict -artifact_prefix=$(FUZZ_BUILD)/crashes/$*- $(FUZZ_ARGS) \
	  $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$* tests/fuzz/regressions/$*

# the replay test reads the inputs from the source tree wherever it runs
$(BUILD)/tests/test_fuzz_regressions: tests/fuzz/fuzz_targets.h
$(BUILD)/tests/test_fuzz_regressions: private CFLAGS += -DPB_FUZZ_DIR='"$(abspath tests/fuzz)"'
