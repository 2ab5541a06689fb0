#include "volume.h"

#include <math.h>

double pb_ring_allreduce_bytes(double n, int ranks)
{
    return ranks > 0 ? 2.0 * n * (ranks - 1) / ranks * 4.0 : 0.0;
}

pb_comm_bytes pb_comm_bytes_none(void) { return (pb_comm_bytes){NAN, NAN, NAN, NAN}; }

/* every digit (a volume is a sum of whole floats; 2P(N-1)/N need not be a
 * whole number of bytes), empty where the kind is not used */
static void set_bytes(pb_record *row, pb_column c, double v)
{
    if (isfinite(v)) pb_record_set(row, c, "%.15g", v);
}

void pb_comm_bytes_record(const pb_comm_bytes *b, pb_record *row)
{
    set_bytes(row, PB_COL_ALLREDUCE_BYTES_PER_STEP, b->allreduce);
    set_bytes(row, PB_COL_REDUCE_SCATTER_BYTES_PER_STEP, b->reduce_scatter);
    set_bytes(row, PB_COL_ALLGATHER_BYTES_PER_STEP, b->allgather);
    set_bytes(row, PB_COL_P2P_BYTES_PER_STEP, b->p2p);
}
