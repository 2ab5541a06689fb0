/* The MPI world of a rank-per-device run: its bootstrap (world and node
 * ranks, which host ran which ranks), the node's progress slots, the
 * gathers of per-rank timings to rank 0, and the ranks' agreements between
 * steps (the signal to stop on, the configuration hash). One place below
 * both its users: the comms that run over it (mpi, nccl) and the run
 * (harness/run.c, strategies/ddp.c).
 *
 * kernels/world_mpi.c implements it when the build found MPI (PB_HAVE_MPI);
 * kernels/world_stub.c otherwise: pb_mpi_available() is false, the world
 * functions fail with "built without MPI", and the agreements succeed (one
 * process has nothing to agree with).
 *
 * Threading: MPI is initialised with MPI_THREAD_SERIALIZED. The functions
 * below are called by the main thread only while no comm operation is
 * outstanding (the `mpi` comm's thread is idle between steps), so no two
 * threads are ever inside MPI at once. */
#ifndef PB_WORLD_H
#define PB_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the stubs say (the world's and the `mpi` comm's) */
#define PB_NO_MPI "built without MPI (install Open MPI and rebuild; `make` detects mpicc)"

typedef struct pb_world {
    int rank, ranks;             /* MPI_COMM_WORLD */
    int local_rank, local_ranks; /* MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): this node */
    int nodes;                   /* nodes (shared-memory domains) of the run */
    bool oversubscribed;         /* some node has more ranks than online cores */
    char host[256];
    char node_map[512];          /* rank 0: "vm1 (ranks 0-7), vm2 (ranks 8-15)"; else empty */
    char version[256];           /* MPI_Get_library_version, first line */
} pb_world;

bool pb_mpi_available(void);
/* MPI_Init_thread (SERIALIZED) and the rank's place in the world (its
 * node's ranks, and for rank 0 which host ran which ranks); also
 * the node's shared progress slots (kernels/progress.h), which the comms'
 * and the step boundary's deadline messages read to name a stuck rank. Best effort: without
 * them the messages are generic. pb_world_finalize frees them. */
/* The environment MPI should start in (Open MPI's ranks yield while they
 * wait), unless the user's says otherwise: pb_world_init calls it, and a
 * run calls it first so that its row's env_vars records it. */
void pb_world_prepare_env(void);
pb_status pb_world_init(pb_world *w);
void pb_world_finalize(void);
/* Between pb_world_init succeeding and pb_world_finalize (the comms check
 * that the world they run over was started). */
bool pb_world_up(void);
/* Elementwise MAX of n doubles over ranks into rank 0's v (in place). */
pb_status pb_world_max_to_root(double *v, int n);
/* Every rank's `each`-char text (NUL-terminated, cut to fit) into rank 0's
 * all[rank * each ..] (all: ranks x each chars on rank 0, unused
 * elsewhere). */
pb_status pb_world_gather_text(const char *mine, char *all, int each);
/* Per step i of n, the slowest rank: rank 0's v[i] becomes the MAX over
 * ranks and rank 0's rows[i*width .. +width) that rank's row (ties: the
 * lowest rank), so a row's parts still add up to its step. In place. */
pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width);
/* Rank 0's *value to every rank; the others poll with short sleeps, so a
 * rank 0 busy with long work (--verify) is not slowed by spinning ranks. */
pb_status pb_world_bcast_int_lazy(int *value);
/* Ends every rank of the run (MPI_Abort); returns only without MPI. */
void pb_world_abort(int code);
/* The MPI library's version, the first line of MPI_Get_library_version
 * ("" without MPI). */
const char *pb_world_version(void);

/* Multi-rank, at a step boundary: every rank passes the signal it caught
 * (0: none) and gets back the largest any rank caught; and passes
 * *failed_rank, its own rank when it failed since the last boundary (-1:
 * not), and gets back the lowest rank that failed (-1: none), so that every
 * rank stops at the same boundary and MPI ends cleanly. Within deadline_s;
 * a rank that does not join in time is an error naming this rank, its host
 * and the step. */
pb_status pb_world_agree_signal(int *sig, int *failed_rank, double deadline_s, int64_t step);
/* Rank root's text (len bytes, NUL-terminated) to every rank, within
 * deadline_s: the failed rank's message, for rank 0 to tell. */
pb_status pb_world_share_text(char *text, size_t len, int root, double deadline_s);

/* Multi-rank, before the first step: the ranks' n configuration values
 * (names[i]: the flag, texts[i]: its value as a user writes it, hashes[i]:
 * a hash of it) must agree. When they do not, a usage error naming the
 * first differing flag and the first rank that holds another value than
 * rank 0, with both ("rank 1's --lr 0.1 differs from rank 0's 0.01"), the
 * same on every rank, and *differs is set. When any rank says it cannot run
 * (usable false: it has recorded why), a usage error on every rank, so that
 * every rank stops together instead of waiting for it. PB_ERR_COMM when a
 * rank does not join within deadline_s (the caller must then abort the
 * ranks). */
pb_status pb_world_agree_config(const uint64_t *hashes, const char *const *names, const char *const *texts, int n,
                                bool usable, double deadline_s, bool *differs);

#ifdef __cplusplus
}
#endif
#endif /* PB_WORLD_H */
