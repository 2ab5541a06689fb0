# Tests, run by `make test` (no GPU needed) and `make test-gpu`.
#  - tests/unit/test_*.c: cmocka programs linked against libparbench.a; the
#    CLI tests among them run ./bench as a child process.
#  - tests/*/module.mk: extra pieces a test needs (e.g. the NVTX recorder)
#    add their targets to TEST_DEPS.
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
TEST_DEPS :=

-include $(wildcard tests/*/module.mk)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libparbench.a tests/unit/test_util.h tests/unit/test_csv.h tests/unit/test_run.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -D_GNU_SOURCE -DPB_EXPECT_CUDA=$(CUDA_ON) -DPB_EXPECT_MPI=$(MPI_ON) -DPB_TEST_GPU_BIN=\"$(BUILD)/tests/test_gpu\" -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(TEST_LIBS) $(LDLIBS)

test: $(BENCH_BIN) $(TEST_BIN) $(TEST_DEPS)
	@BENCH=$(if $(filter /%,$(BENCH_BIN)),,./)$(BENCH_BIN) $(SAN_ENV) tests/run_tests.sh $(TEST_BIN)

# test_layers reads the sources' #include lines wherever it runs
$(BUILD)/tests/test_layers: private CFLAGS += -DPB_SRC_DIR='"$(abspath .)"'
