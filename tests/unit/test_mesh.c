/* The hybrid mesh's rank order (harness/mesh.h): coordinates and back for
 * every mesh up to 4 x 4 x 4; Megatron's own example layout (16 ranks,
 * tp 2, pp 4); the split groups along each axis partition the ranks, hold
 * the ranks that share the other coordinates, in index order, tp groups
 * being consecutive ranks; the size check; and the groups as the `local`
 * comm forms them (dp 2 x tp 2 x pp 2 threads, each group's allgather of
 * world ranks in its order). */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <pthread.h>

#include "harness/config.h"
#include "harness/mesh.h"
#include "kernels/comm_local.h"

#define MAXR 64

/* The members of rank's group along axis, in key order (the order split
 * gives them); returns the count. */
static int group_of(pb_mesh m, int rank, pb_mesh_axis axis, int *members)
{
    int color = 0, key = 0, n = pb_mesh_ranks(m), count = 0;
    pb_mesh_split_args(m, rank, axis, &color, &key);
    for (int k = 0; k < n; k++) /* keys are small: find each in turn */
        for (int r = 0; r < n; r++) {
            int c2 = 0, k2 = 0;
            pb_mesh_split_args(m, r, axis, &c2, &k2);
            if (c2 == color && k2 == k) members[count++] = r;
        }
    return count;
}

/* check on every mesh up to 4 x 4 x 4 */
static void each_mesh(void (*check)(pb_mesh m, int d, int t, int p))
{
    for (int d = 1; d <= 4; d++)
        for (int t = 1; t <= 4; t++)
            for (int p = 1; p <= 4; p++) check((pb_mesh){.dp = d, .tp = t, .pp = p}, d, t, p);
}

static void check_round_trip(pb_mesh m, int d, int t, int p)
{
    int n = pb_mesh_ranks(m);
    assert_int_equal(n, d * t * p);
    for (int r = 0; r < n; r++) {
        pb_mesh_coord c = pb_mesh_coord_of(m, r);
        assert_in_range(c.dp, 0, d - 1);
        assert_in_range(c.tp, 0, t - 1);
        assert_in_range(c.pp, 0, p - 1);
        assert_int_equal(pb_mesh_rank_of(m, c), r);
        /* tp innermost, then dp, pp outermost */
        assert_int_equal(r, c.tp + t * (c.dp + d * c.pp));
        assert_int_equal(pb_mesh_index(m, r, PB_MESH_TP), c.tp);
        assert_int_equal(pb_mesh_index(m, r, PB_MESH_DP), c.dp);
        assert_int_equal(pb_mesh_index(m, r, PB_MESH_PP), c.pp);
    }
}

static void test_coordinates_round_trip(void **state)
{
    (void)state;
    each_mesh(check_round_trip);
}

/* initialize_model_parallel's docstring: 16 GPUs, tensor 2, pipeline 4
 * (so data 2): tp groups [g0, g1], [g2, g3], ...; dp groups [g0, g2],
 * [g1, g3], [g4, g6], ...; pp groups [g0, g4, g8, g12], [g1, g5, g9, g13], ... */
/* rank's group along axis is want[0..n), in that order */
static void expect_group(pb_mesh m, int rank, pb_mesh_axis axis, const int *want, int n)
{
    int g[MAXR];
    assert_int_equal(group_of(m, rank, axis, g), n);
    for (int i = 0; i < n; i++) assert_int_equal(g[i], want[i]);
}

static void test_megatron_example(void **state)
{
    (void)state;
    pb_mesh m = {.dp = 2, .tp = 2, .pp = 4};
    expect_group(m, 0, PB_MESH_TP, (const int[]){0, 1}, 2);
    expect_group(m, 7, PB_MESH_TP, (const int[]){6, 7}, 2);
    expect_group(m, 1, PB_MESH_DP, (const int[]){1, 3}, 2);
    expect_group(m, 6, PB_MESH_DP, (const int[]){4, 6}, 2);
    expect_group(m, 9, PB_MESH_PP, (const int[]){1, 5, 9, 13}, 4);
}

/* Along each axis the groups partition the ranks; a group has the axis's
 * size, its members share the other two coordinates and stand at their
 * index; a tp group is consecutive ranks; a rank's tp and dp groups meet in
 * it alone. */
static void check_groups(pb_mesh m, int d, int t, int p)
{
    (void)d, (void)t, (void)p;
    int n = pb_mesh_ranks(m);
    for (int a = 0; a < PB_MESH_AXES; a++) {
        int seen[MAXR] = {0}, g[MAXR];
        for (int r = 0; r < n; r++) {
            int count = group_of(m, r, (pb_mesh_axis)a, g);
            assert_int_equal(count, pb_mesh_size(m, (pb_mesh_axis)a));
            pb_mesh_coord c = pb_mesh_coord_of(m, r);
            int mine = 0;
            for (int i = 0; i < count; i++) {
                pb_mesh_coord o = pb_mesh_coord_of(m, g[i]);
                assert_int_equal(pb_mesh_index(m, g[i], (pb_mesh_axis)a), i);
                if (a != PB_MESH_TP) assert_int_equal(o.tp, c.tp);
                if (a != PB_MESH_DP) assert_int_equal(o.dp, c.dp);
                if (a != PB_MESH_PP) assert_int_equal(o.pp, c.pp);
                if (a == PB_MESH_TP && i > 0) assert_int_equal(g[i], g[i - 1] + 1);
                mine += g[i] == r;
                if (g[0] == r) seen[g[i]]++; /* each group counted once, from its first */
            }
            assert_int_equal(mine, 1);
        }
        for (int r = 0; r < n; r++) assert_int_equal(seen[r], 1);
    }
    for (int r = 0; r < n; r++) {
        int tpg[MAXR], dpg[MAXR], both = 0;
        int nt = group_of(m, r, PB_MESH_TP, tpg), nd = group_of(m, r, PB_MESH_DP, dpg);
        for (int i = 0; i < nt; i++)
            for (int j = 0; j < nd; j++) both += tpg[i] == dpg[j];
        assert_int_equal(both, 1);
    }
}

static void test_groups_are_consistent(void **state)
{
    (void)state;
    each_mesh(check_groups);
}

static void test_check(void **state)
{
    (void)state;
    pb_error_clear();
    assert_int_equal(pb_mesh_check((pb_mesh){2, 2, 2}, 8), PB_OK);
    assert_int_equal(pb_mesh_check((pb_mesh){1, 1, 1}, 1), PB_OK);
    pb_status st = pb_mesh_check((pb_mesh){2, 2, 2}, 6);
    assert_int_equal(pb_status_exit_code(st), 2);
    assert_non_null(strstr(pb_error_message(), "--dp 2 --tp 2 --pp 2 make 8 ranks, but the run has 6 devices"));
    pb_error_clear();
    st = pb_mesh_check((pb_mesh){2, 0, 2}, 4);
    assert_int_equal(pb_status_exit_code(st), 2);
    assert_non_null(strstr(pb_error_message(), "at least 1"));
    pb_error_clear();
    st = pb_mesh_check((pb_mesh){65536, 65536, 2}, 8); /* the product overflows an int */
    assert_int_equal(pb_status_exit_code(st), 2);
    assert_non_null(strstr(pb_error_message(), "make 8589934592 ranks"));
    pb_error_clear();
    assert_int_equal(pb_mesh_ranks((pb_mesh){65536, 65536, 2}), 0);
}

/* --- the groups a comm forms: dp 2 x tp 2 x pp 2 threads -------------------------- */

#define MESH_RANKS 8

typedef struct mesh_part {
    int rank;
    pb_mesh m;
    const pb_comm_opts *opts;
    pb_device *dev;
    int got[PB_MESH_AXES][MESH_RANKS]; /* the world ranks each group gathered */
    pb_status st;
    char err[1024];
} mesh_part;

static void *mesh_main(void *arg)
{
    mesh_part *p = arg;
    pb_status st = PB_OK;
    pb_comm_ctx *world = NULL, *groups[PB_MESH_AXES] = {NULL};
    const pb_comm *c = &pb_comm_local;
    PB_TRY(c->init(p->opts, &pb_backend_cpu, p->dev, p->rank, MESH_RANKS, &world));
    PB_TRY(pb_mesh_split(c, world, p->m, p->rank, 30.0, groups));
    for (int a = 0; a < PB_MESH_AXES; a++) {
        int me = pb_mesh_index(p->m, p->rank, (pb_mesh_axis)a);
        pb_comm_req *req = NULL;
        p->got[a][me] = p->rank; /* in place: the cpu's memory is the host's */
        PB_TRY(c->allgather(groups[a], &p->got[a][me], p->got[a], sizeof(int), &req));
        PB_TRY(c->wait(groups[a], req, 30.0));
    }
cleanup:
    if (st != PB_OK) snprintf(p->err, sizeof p->err, "%s", pb_error_message());
    p->st = st;
    for (int a = 0; a < PB_MESH_AXES; a++)
        if (groups[a]) c->destroy(groups[a]);
    if (world) c->destroy(world);
    return NULL;
}

static void test_local_comm_forms_the_groups(void **state)
{
    (void)state;
    pb_config cfg;
    pb_config_defaults(&cfg);
    cfg.threads = 1;
    pb_device_opts dev_opts = pb_config_device_opts(&cfg);
    pb_comm_opts opts = pb_config_comm_opts(&cfg);
    mesh_part parts[MESH_RANKS];
    pthread_t t[MESH_RANKS];
    pb_mesh m = {.dp = 2, .tp = 2, .pp = 2};
    for (int r = 0; r < MESH_RANKS; r++) {
        parts[r] = (mesh_part){.rank = r, .m = m, .opts = &opts};
        memset(parts[r].got, 0xff, sizeof parts[r].got);
        assert_int_equal(pb_backend_cpu.open(&dev_opts, r, &parts[r].dev), PB_OK);
    }
    for (int r = 0; r < MESH_RANKS; r++) assert_int_equal(pthread_create(&t[r], NULL, mesh_main, &parts[r]), 0);
    for (int r = 0; r < MESH_RANKS; r++) pthread_join(t[r], NULL);
    for (int r = 0; r < MESH_RANKS; r++) {
        pb_backend_cpu.close(parts[r].dev);
        if (parts[r].st != PB_OK) fail_msg("rank %d: %s", r, parts[r].err);
        for (int a = 0; a < PB_MESH_AXES; a++) {
            int g[MAXR], n = group_of(m, r, (pb_mesh_axis)a, g);
            for (int i = 0; i < n; i++)
                if (parts[r].got[a][i] != g[i])
                    fail_msg("rank %d's %s group: member %d is world rank %d, want %d", r,
                             pb_mesh_axis_name((pb_mesh_axis)a), i, parts[r].got[a][i], g[i]);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coordinates_round_trip),
        cmocka_unit_test(test_megatron_example),
        cmocka_unit_test(test_groups_are_consistent),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_local_comm_forms_the_groups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
