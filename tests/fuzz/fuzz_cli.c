/* libFuzzer target: the command-line parser (`make fuzz-cli`). */
#include "tests/fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return pb_fuzz_cli(data, size); }
