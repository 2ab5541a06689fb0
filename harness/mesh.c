/* Mesh coordinates and split groups (mesh.h). */
#include "mesh.h"

#include <limits.h>

const char *pb_mesh_axis_name(pb_mesh_axis axis)
{
    static const char *const names[PB_MESH_AXES] = {"tp", "dp", "pp"};
    return axis >= 0 && axis < PB_MESH_AXES ? names[axis] : "?";
}

int pb_mesh_ranks(pb_mesh m)
{
    if (m.dp < 1 || m.tp < 1 || m.pp < 1) return 0;
    long long n = (long long)m.dp * m.tp * m.pp;
    return n > INT_MAX ? 0 : (int)n;
}

pb_status pb_mesh_check(pb_mesh m, int ranks)
{
    if (m.dp < 1 || m.tp < 1 || m.pp < 1)
        return pb_usage_error("--dp %d --tp %d --pp %d: each must be at least 1", m.dp, m.tp, m.pp);
    long long n = (long long)m.dp * m.tp * m.pp;
    if (n != ranks)
        return pb_usage_error("--dp %d --tp %d --pp %d make %lld ranks, but the run has %d devices; allowed: D x T "
                              "x P = the devices (--gpus)",
                              m.dp, m.tp, m.pp, n, ranks);
    return PB_OK;
}

pb_mesh_coord pb_mesh_coord_of(pb_mesh m, int rank)
{
    /* rank = tp + T * (dp + D * pp): tp innermost, pp outermost (mesh.h) */
    return (pb_mesh_coord){.tp = rank % m.tp, .dp = rank / m.tp % m.dp, .pp = rank / (m.tp * m.dp)};
}

int pb_mesh_rank_of(pb_mesh m, pb_mesh_coord c) { return c.tp + m.tp * (c.dp + m.dp * c.pp); }

int pb_mesh_size(pb_mesh m, pb_mesh_axis axis)
{
    return axis == PB_MESH_TP ? m.tp : axis == PB_MESH_DP ? m.dp : m.pp;
}

int pb_mesh_index(pb_mesh m, int rank, pb_mesh_axis axis)
{
    pb_mesh_coord c = pb_mesh_coord_of(m, rank);
    return axis == PB_MESH_TP ? c.tp : axis == PB_MESH_DP ? c.dp : c.pp;
}

void pb_mesh_split_args(pb_mesh m, int rank, pb_mesh_axis axis, int *color, int *key)
{
    pb_mesh_coord c = pb_mesh_coord_of(m, rank);
    /* the color numbers the other two coordinates */
    switch (axis) {
    case PB_MESH_TP:
        *color = c.dp + m.dp * c.pp;
        *key = c.tp;
        break;
    case PB_MESH_DP:
        *color = c.tp + m.tp * c.pp;
        *key = c.dp;
        break;
    default:
        *color = c.tp + m.tp * c.dp;
        *key = c.pp;
        break;
    }
}

pb_status pb_mesh_split(const pb_comm *comm, pb_comm_ctx *world, pb_mesh m, int rank, double deadline_s,
                        pb_comm_ctx *groups[PB_MESH_AXES])
{
    pb_status st = PB_OK;
    for (int a = 0; a < PB_MESH_AXES; a++) groups[a] = NULL;
    PB_REQUIRE(comm->split, PB_ERR_UNAVAILABLE, "comm %s cannot split into the mesh's groups (%s)", comm->name,
               comm->description);
    for (int a = 0; a < PB_MESH_AXES; a++) {
        int color = 0, key = 0;
        pb_mesh_split_args(m, rank, (pb_mesh_axis)a, &color, &key);
        PB_TRY(comm->split(world, color, key, deadline_s, &groups[a]));
    }
cleanup:
    if (st != PB_OK)
        for (int a = 0; a < PB_MESH_AXES; a++) {
            if (groups[a]) comm->destroy(groups[a]);
            groups[a] = NULL;
        }
    return st;
}
