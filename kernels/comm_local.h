/* The `local` comm: collectives between the devices of one process, each
 * driven by a thread of it (the one-process strategies dp and mp).
 *
 * A group forms from the participants' init calls: each device calls
 * pb_comm_local.init(opts, be, dev, rank, ranks) with its own rank and the
 * same opts pointer and ranks, from one thread or from several; the calls
 * join the group of that (opts, ranks) that is still forming. Groups of the
 * same opts form one at a time.
 * A split (comm.h) forms sub-groups the same way: the participants of a
 * group with one color join the group of (that group, that split, that
 * color), which has a lock, slots and abort of its own.
 *
 * A participant's k-th collective matches the other participants' k-th, and
 * a send from a to b matches b's recv from a in the order each side posted
 * them. An operation runs when its last participant posts it, on that
 * caller's thread, so one thread may post an operation for every
 * participant (as NCCL's single-process groups allow) or each device's
 * thread may post its own; wait() sleeps until the operation has run.
 *
 * One thread at a time posts and waits for a given participant. Up to
 * PB_COMM_LOCAL_DEPTH collectives per participant, and as many messages per
 * (sender, receiver) pair, may be posted before being waited for, and they
 * may be waited for in any order. A deadline counts time without progress:
 * a wait sees an operation that every participant has posted through. */
#ifndef PB_COMM_LOCAL_H
#define PB_COMM_LOCAL_H

#include "comm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_COMM_LOCAL_DEPTH 16

extern const pb_comm pb_comm_local;

#ifdef __cplusplus
}
#endif
#endif /* PB_COMM_LOCAL_H */
