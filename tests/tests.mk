# Unit and CLI tests (cmocka), run by `make test`. GPU tests: `make test-gpu`.
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libparbench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(BUILD)/libparbench.a $(TEST_LIBS) $(LDLIBS)

test: bench $(TEST_BIN) $(TEST_EXTRA)
	@tests/run_tests.sh $(TEST_BIN)
