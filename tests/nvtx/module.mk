# NVTX recorder: an NVTX v3 injection library (NVTX_INJECTION64_PATH) that
# writes every range push/pop to NVTX_RECORD_FILE, so tests/e2e/test_nvtx.c
# can check the ranges bench emits without Nsight. Built only when the NVTX
# headers were found (without them the ranges are no-ops and the test skips).
ifneq ($(NVTX_DIR),)
NVTX_RECORDER := $(BUILD)/tests/libnvtx_recorder.so

$(NVTX_RECORDER): tests/nvtx/nvtx_recorder.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared -fvisibility=hidden -o $@ $< -lpthread

TEST_DEPS += $(NVTX_RECORDER)

# the test finds the library by absolute path, wherever BUILD points
$(BUILD)/tests/test_nvtx: CFLAGS += -DPB_NVTX_RECORDER='"$(abspath $(NVTX_RECORDER))"'
endif
