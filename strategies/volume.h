/* Communication volume per collective kind, per rank and step, as a ring
 * sends it on the wire (docs/strategies.md, "Communication volume"): the
 * allreduce_bytes_per_step, reduce_scatter_bytes_per_step,
 * allgather_bytes_per_step and p2p_bytes_per_step columns. */
#ifndef PB_VOLUME_H
#define PB_VOLUME_H

#include "../harness/results.h"

typedef struct pb_comm_bytes {
    double allreduce, reduce_scatter, allgather, p2p;
} pb_comm_bytes;

/* A ring all-reduce of n floats over `ranks`: 2 n (N-1)/N x 4 bytes sent */
double pb_ring_allreduce_bytes(double n, int ranks);

/* Every kind NaN: not used (its column stays empty) */
pb_comm_bytes pb_comm_bytes_none(void);
/* The four columns; a NaN kind's stays empty */
void pb_comm_bytes_record(const pb_comm_bytes *b, pb_record *row);

#endif /* PB_VOLUME_H */
