# make test-gpu: CUDA kernels and `single` against the CPU backend on a GPU.
# Exits 77 with "skipped: no CUDA device" where there is none.
$(BUILD)/tests/test_gpu: tests/gpu/test_gpu.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -D_GNU_SOURCE -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(TEST_LIBS) $(LDLIBS)

test-gpu: bench $(BUILD)/tests/test_gpu
	@$(BUILD)/tests/test_gpu

# With the CUDA backend built, `make test` compiles test_gpu too (CI has no
# GPU, but the program must still build without warnings) and checks that it
# skips with exit 77 where there is no device (test_cuda_build).
ifeq ($(CUDA_ON),1)
TEST_DEPS += $(BUILD)/tests/test_gpu
endif
