# make test-gpu: CUDA kernels and `single` against the CPU backend on a GPU.
# Where there is none, test_gpu prints "test-gpu skipped: no usable GPU (why)"
# and exits 77 (automake's "skipped", which device-check.sh and
# test_cuda_build read); the target turns that one code into success, so
# `make test-gpu` on a CPU machine exits 0 having said it skipped, while any
# other non-zero code (a failed test, a crash) still fails it.
$(BUILD)/tests/test_gpu: tests/gpu/test_gpu.c tests/gpu/gpt_ops_checks.h $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -D_GNU_SOURCE -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(TEST_LIBS) $(LDLIBS)

test-gpu: $(BENCH_BIN) $(BUILD)/tests/test_gpu
	@$(BUILD)/tests/test_gpu; rc=$$?; [ $$rc -eq 77 ] && rc=0; exit $$rc

# With the CUDA backend built, `make test` compiles test_gpu too (CI has no
# GPU, but the program must still build without warnings) and checks that it
# skips with exit 77 where there is no device (test_cuda_build).
ifeq ($(CUDA_ON),1)
TEST_DEPS += $(BUILD)/tests/test_gpu
endif
