# Tests, run by `make test` (no GPU needed) and `make test-gpu`.
#  - tests/unit/test_*.c: cmocka programs that call the library
#    (libparbench.a) directly.
#  - tests/e2e/test_*.c: cmocka programs that run ./bench (alone, under
#    mpirun, or as a ddp launcher) as a child process and check its exit code,
#    output and files.
#  - tests/common/*.h: helpers both include (running bench, temporary
#    folders, reading results CSVs).
#  - tests/*/module.mk: extra pieces a test needs (e.g. the NVTX recorder)
#    add their targets to TEST_DEPS.
# Every program builds to $(BUILD)/tests/<name>, so names are unique across
# both folders; `make test` runs the unit programs, then the e2e ones.
TEST_UNIT_SRC := $(wildcard tests/unit/test_*.c)
TEST_E2E_SRC := $(wildcard tests/e2e/test_*.c)
TEST_BIN := $(TEST_UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%) $(TEST_E2E_SRC:tests/e2e/%.c=$(BUILD)/tests/%)
TEST_HDR := $(wildcard tests/common/*.h)
# A dependency file an older build left names the program's source where
# it was then (tests/unit/ before a program moved to tests/e2e/), and make
# would look for that missing file: drop such files, the program is rebuilt.
$(foreach d,$(wildcard $(BUILD)/tests/test_*.d),$(if $(wildcard $(word 2,$(file < $(d)))),,$(shell rm -f $(d))))
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
TEST_DEPS :=

-include $(wildcard tests/*/module.mk)

define test_link
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -D_GNU_SOURCE -DPB_EXPECT_CUDA=$(CUDA_ON) -DPB_EXPECT_MPI=$(MPI_ON) -DPB_TEST_GPU_BIN=\"$(BUILD)/tests/test_gpu\" -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(TEST_LIBS) $(LDLIBS)
endef

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libparbench.a $(TEST_HDR)
	$(test_link)

$(BUILD)/tests/%: tests/e2e/%.c $(BUILD)/libparbench.a $(TEST_HDR)
	$(test_link)

test: $(BENCH_BIN) $(TEST_BIN) $(TEST_DEPS)
	@BENCH=$(if $(filter /%,$(BENCH_BIN)),,./)$(BENCH_BIN) $(SAN_ENV) tests/run_tests.sh $(TEST_BIN)

# test_layers reads the sources' #include lines wherever it runs
$(BUILD)/tests/test_layers: private CFLAGS += -DPB_SRC_DIR='"$(abspath .)"'
