/* Built without MPI: no world to join (the rank-per-device strategies say
 * so in their validation, exit 2), and one process has nothing to agree
 * with. */
#include "world.h"

#include <string.h>

bool pb_mpi_available(void) { return false; }

void pb_world_prepare_env(void) {} /* no MPI: nothing to prepare */

pb_status pb_world_init(pb_world *w)
{
    memset(w, 0, sizeof *w);
    return pb_user_error(PB_ERR_UNAVAILABLE, PB_NO_MPI);
}

void pb_world_finalize(void) {}

bool pb_world_up(void) { return false; }

pb_status pb_world_max_to_root(double *v, int n)
{
    (void)v;
    (void)n;
    return pb_user_error(PB_ERR_UNAVAILABLE, PB_NO_MPI);
}

pb_status pb_world_gather_text(const char *mine, char *all, int each)
{
    (void)mine;
    (void)all;
    (void)each;
    return pb_user_error(PB_ERR_UNAVAILABLE, PB_NO_MPI);
}

pb_status pb_world_slowest_to_root(double *v, double *rows, int n, int width)
{
    (void)v;
    (void)rows;
    (void)n;
    (void)width;
    return pb_user_error(PB_ERR_UNAVAILABLE, PB_NO_MPI);
}

pb_status pb_world_bcast_int_lazy(int *value)
{
    (void)value;
    return pb_user_error(PB_ERR_UNAVAILABLE, PB_NO_MPI);
}

void pb_world_abort(int code) { (void)code; }

const char *pb_world_version(void) { return ""; }

pb_status pb_world_agree_signal(int *sig, int *failed_rank, double deadline_s, int64_t step)
{
    (void)sig;
    (void)failed_rank;
    (void)deadline_s;
    (void)step;
    return PB_OK;
}

pb_status pb_world_share_text(char *text, size_t len, int root, double deadline_s)
{
    (void)text;
    (void)len;
    (void)root;
    (void)deadline_s;
    return PB_OK;
}

pb_status pb_world_agree_config(const uint64_t *hashes, const char *const *names, const char *const *texts, int n,
                                bool usable, double deadline_s, bool *differs)
{
    (void)hashes;
    (void)names;
    (void)texts;
    (void)n;
    (void)usable;
    (void)deadline_s;
    *differs = false;
    return PB_OK;
}
