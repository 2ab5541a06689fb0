#include "shape.h"

/* the flags' spellings (--precision, --optimizer) and the CSV's */
static const char *const precision_names[PB_PRECISION_COUNT] = {"fp32", "tf32", "bf16"};
static const char *const optimizer_names[PB_OPTIMIZER_COUNT] = {"sgd", "adamw"};
static const char *const schedule_names[PB_SCHEDULE_COUNT] = {"gpipe", "1f1b"};

const char *pb_precision_name(pb_precision p) { return p < PB_PRECISION_COUNT ? precision_names[p] : "?"; }
const char *pb_optimizer_name(pb_optimizer o) { return o < PB_OPTIMIZER_COUNT ? optimizer_names[o] : "?"; }
const char *pb_schedule_name(pb_schedule s) { return s < PB_SCHEDULE_COUNT ? schedule_names[s] : "?"; }
