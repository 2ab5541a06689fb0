/* libFuzzer target: the results-CSV reader (`make fuzz-csv`). */
#include "tests/fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return pb_fuzz_csv(data, size); }
