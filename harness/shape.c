#include "shape.h"

/* the flags' spellings (--precision, --optimizer) and the CSV's */
static const char *const precision_names[PB_PRECISION_COUNT] = {"fp32", "tf32", "bf16"};
static const char *const optimizer_names[PB_OPTIMIZER_COUNT] = {"sgd", "adamw"};

const char *pb_precision_name(pb_precision p) { return p < PB_PRECISION_COUNT ? precision_names[p] : "?"; }
const char *pb_optimizer_name(pb_optimizer o) { return o < PB_OPTIMIZER_COUNT ? optimizer_names[o] : "?"; }
