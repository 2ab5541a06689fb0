/* The multi-GPU paths' decisions, with the device layer faked (no GPU here):
 *
 * 1. peer access (kernels/p2p.c): which pairs dp (device 0 with each other)
 *    and mp (each stage with the next) enable, both directions, each pair
 *    once, none for logical devices on one GPU; the row's `p2p` is the
 *    slowest pair's link (nvlink from native atomics, pcie without,
 *    host-staged without peer access), `none` without a driver (the cpu);
 *    a driver failure is the run's error, except a GPU out of peer slots
 *    (cudaErrorTooManyPeers), whose pair is host-staged.
 * 2. copy ordering in the `local` comm on a fake backend with streams: each
 *    fake device counts the work enqueued on its stream, a mark records the
 *    stream's position together with every other stream's position it
 *    already waits for (a vector clock), and mark_wait merges one in. A copy
 *    then shows exactly which work of every device it waits for:
 *    - a message waits for the sender's work up to the send's post, not
 *      the sender's later work (mp's microbatch 0 used to wait for every
 *      forward of the stage), and the sender's device waits for the copy
 *      once the sender waits for its send;
 *    - a broadcast's copies and dp's scatter (sends posted together) do
 *      not wait for one another: the destinations copy in parallel. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <stdbool.h>

#include "harness/config.h"
#include "kernels/comm_local.h"
#include "kernels/p2p.h"

/* --- 1. the peer-access decision ------------------------------------------------- */

#define GPUS 8

static pb_p2p_facts fake_link[GPUS][GPUS];
static int enabled[GPUS][GPUS]; /* enable calls per direction */
static int facts_asked;
static bool fail_enable;
static int peer_room = -1; /* peers a GPU may map (-1: no limit) */

static pb_status fake_facts(int a, int b, pb_p2p_facts *out)
{
    facts_asked++;
    *out = fake_link[a][b];
    return PB_OK;
}

static pb_status fake_enable(int a, int b)
{
    if (fail_enable) return pb_error(PB_ERR_BACKEND, "fake: cannot enable %d -> %d", a, b);
    if (peer_room >= 0) {
        int used = 0;
        for (int p = 0; p < GPUS; p++) used += enabled[a][p] > 0;
        if (used >= peer_room) return pb_user_error(PB_ERR_UNAVAILABLE, "fake: peer mapping resources exhausted");
    }
    enabled[a][b]++;
    return PB_OK;
}

static const pb_p2p_driver fake_driver = {.facts = fake_facts, .enable = fake_enable};

static void set_link(int a, int b, pb_p2p_link link)
{
    fake_link[a][b] = (pb_p2p_facts){.can_access = link == PB_P2P_NVLINK || link == PB_P2P_PCIE,
                                     .native_atomic = link == PB_P2P_NVLINK,
                                     .perf_rank = link == PB_P2P_NVLINK ? 0 : 1,
                                     .nvlink = -1}; /* no NVML: the atomics decide */
}

/* every pair of GPUS linked as `link` (nvlink, pcie, or none) */
static void fake_node(pb_p2p_link link)
{
    memset(fake_link, 0, sizeof fake_link);
    memset(enabled, 0, sizeof enabled);
    facts_asked = 0;
    fail_enable = false;
    peer_room = -1;
    for (int a = 0; a < GPUS; a++)
        for (int b = 0; b < GPUS; b++)
            if (a != b) set_link(a, b, link);
}

static void test_star_enables_device0_with_each(void **state)
{
    (void)state;
    fake_node(PB_P2P_NVLINK);
    int ord[] = {0, 1, 2, 3};
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_STAR, ord, 4, &plan), PB_OK);
    assert_int_equal(plan.n, 3);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(enabled[0][i], 1);
        assert_int_equal(enabled[i][0], 1);
    }
    assert_int_equal(enabled[1][2] + enabled[2][3] + enabled[1][3], 0); /* dp never copies between those */
    assert_string_equal(pb_p2p_link_name(plan.worst), "nvlink");
}

static void test_chain_enables_neighbours(void **state)
{
    (void)state;
    fake_node(PB_P2P_NVLINK);
    set_link(2, 3, PB_P2P_PCIE); /* one slow hop: the row shows it */
    set_link(3, 2, PB_P2P_PCIE);
    int ord[] = {0, 1, 2, 3};
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_CHAIN, ord, 4, &plan), PB_OK);
    assert_int_equal(plan.n, 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(enabled[k][k + 1], 1);
        assert_int_equal(enabled[k + 1][k], 1);
    }
    assert_int_equal(enabled[0][2] + enabled[0][3] + enabled[1][3], 0);
    assert_string_equal(pb_p2p_link_name(plan.worst), "pcie");
}

/* a pair without peer access is not enabled, is host-staged, and one way
 * only counts as none (a copy back would be staged) */
static void test_no_access_is_host_staged(void **state)
{
    (void)state;
    fake_node(PB_P2P_NVLINK);
    set_link(0, 1, PB_P2P_NONE);
    int ord[] = {0, 1};
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_STAR, ord, 2, &plan), PB_OK);
    assert_int_equal(enabled[0][1], 0);
    assert_int_equal(enabled[1][0], 1);
    assert_false(plan.enabled[0]);
    assert_string_equal(pb_p2p_link_name(plan.worst), "host-staged");
}

/* --device-map: repeated ordinals are one pair, logical devices on one GPU
 * ask the driver nothing (peer access to oneself is an error in CUDA) */
static void test_device_map_pairs(void **state)
{
    (void)state;
    fake_node(PB_P2P_PCIE);
    int same[] = {0, 0};
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_CHAIN, same, 2, &plan), PB_OK);
    assert_int_equal(facts_asked, 0);
    assert_string_equal(pb_p2p_link_name(plan.worst), "same-device");

    int mixed[] = {0, 0, 1, 1}; /* chain: (0,0) (0,1) (1,1) */
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_CHAIN, mixed, 4, &plan), PB_OK);
    assert_int_equal(plan.n, 3);
    assert_int_equal(enabled[0][1], 1);
    assert_int_equal(enabled[1][0], 1);
    assert_string_equal(pb_p2p_link_name(plan.worst), "pcie");

    int star[] = {2, 5, 2, 5}; /* star: (2,5) (2,2) (2,5) again */
    memset(enabled, 0, sizeof enabled);
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_STAR, star, 4, &plan), PB_OK);
    assert_int_equal(plan.n, 2);
    assert_int_equal(enabled[2][5], 1); /* once, not per logical device */
}

/* NVML's answer, where there is one, overrides the atomics heuristic */
static void test_nvml_decides(void **state)
{
    (void)state;
    pb_p2p_facts f = {.can_access = true, .native_atomic = true, .nvlink = -1};
    assert_int_equal(pb_p2p_classify(&f), PB_P2P_NVLINK);
    f.nvlink = 0; /* PCIe with peer atomics: NVML knows better */
    assert_int_equal(pb_p2p_classify(&f), PB_P2P_PCIE);
    f.native_atomic = false;
    f.nvlink = 1;
    assert_int_equal(pb_p2p_classify(&f), PB_P2P_NVLINK);
    f.can_access = false; /* no peer access at all: staged, whatever the wires */
    assert_int_equal(pb_p2p_classify(&f), PB_P2P_HOST_STAGED);
}

static void test_cpu_and_driver_failure(void **state)
{
    (void)state;
    int ord[] = {0, 1};
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(NULL, PB_P2P_STAR, ord, 2, &plan), PB_OK);
    assert_string_equal(pb_p2p_link_name(plan.worst), "none");
    fake_node(PB_P2P_NVLINK);
    fail_enable = true;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_STAR, ord, 2, &plan), PB_ERR_BACKEND);
    pb_error_clear();
}

/* a GPU maps a limited number of peers (cudaErrorTooManyPeers): dp's
 * device 0 needs one per other device; the pairs past the limit are
 * host-staged (copies still work), not a failed run */
static void test_out_of_peer_slots_is_host_staged(void **state)
{
    (void)state;
    fake_node(PB_P2P_NVLINK);
    peer_room = 3;
    int ord[GPUS];
    for (int i = 0; i < GPUS; i++) ord[i] = i;
    pb_p2p_plan plan;
    assert_int_equal(pb_p2p_setup(&fake_driver, PB_P2P_STAR, ord, GPUS, &plan), PB_OK);
    assert_int_equal(plan.n, GPUS - 1);
    for (int i = 0; i < plan.n; i++) {
        assert_int_equal(plan.enabled[i], i < 3);
        assert_int_equal(plan.link[i], i < 3 ? PB_P2P_NVLINK : PB_P2P_HOST_STAGED);
    }
    assert_string_equal(pb_p2p_link_name(plan.worst), "host-staged");
    assert_string_equal(pb_error_message(), ""); /* handled, not left as an error */
}

/* --- 2. copy ordering in the local comm ------------------------------------------- */

#define DEVS 4

/* A fake device: a stream that counts its work, and what it waits for. */
struct pb_device {
    int id;
    int pos;          /* work enqueued on the stream */
    int clock[DEVS];  /* each stream's position this one waits for (own: pos) */
};

struct pb_mark {
    int clock[DEVS];
};

typedef struct copy_rec {
    int dst, src;
    int clock[DEVS]; /* what the copy waits for */
    int pos;         /* its place on dst's stream */
} copy_rec;

static copy_rec copies[64];
static int n_copies;
static struct pb_device fake_dev[DEVS];

static void tick(struct pb_device *d) { d->clock[d->id] = ++d->pos; }

static pb_status f_alloc(pb_device *dev, size_t bytes, void **ptr)
{
    (void)dev;
    *ptr = calloc(1, bytes ? bytes : 1);
    return *ptr ? PB_OK : PB_ERR_NOMEM;
}
static void f_free(pb_device *dev, void *ptr) { (void)dev, free(ptr); }
static pb_status f_copy(pb_device *dev, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    tick(dev);
    return PB_OK;
}
static pb_status f_copy_peer(pb_device *dst_dev, void *dst, pb_device *src_dev, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    tick(dst_dev);
    copy_rec *c = &copies[n_copies++];
    c->dst = dst_dev->id;
    c->src = src_dev->id;
    memcpy(c->clock, dst_dev->clock, sizeof c->clock);
    c->pos = dst_dev->pos;
    return PB_OK;
}
static pb_status f_axpy(pb_device *dev, size_t n, float alpha, const float *x, float *y)
{
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
    tick(dev);
    return PB_OK;
}
static pb_status f_mark_create(pb_device *dev, pb_mark **mark)
{
    (void)dev;
    *mark = calloc(1, sizeof **mark);
    return *mark ? PB_OK : PB_ERR_NOMEM;
}
static void f_mark_destroy(pb_device *dev, pb_mark *mark) { (void)dev, free(mark); }
static pb_status f_mark_record(pb_device *dev, pb_mark *mark)
{
    memcpy(mark->clock, dev->clock, sizeof mark->clock);
    return PB_OK;
}
static pb_status f_mark_wait(pb_device *dev, const pb_mark *mark)
{
    for (int i = 0; i < DEVS; i++)
        if (mark->clock[i] > dev->clock[i]) dev->clock[i] = mark->clock[i];
    return PB_OK;
}

static const pb_backend streams = {
    .name = "streams",
    .host_is_device = false,
    .alloc = f_alloc,
    .free = f_free,
    .copy = f_copy,
    .copy_peer = f_copy_peer,
    .axpy = f_axpy,
    .mark_create = f_mark_create,
    .mark_destroy = f_mark_destroy,
    .mark_record = f_mark_record,
    .mark_wait = f_mark_wait,
};

static pb_comm_opts comm_opts;
static pb_comm_ctx *cc[DEVS];

static void group(int ranks)
{
    memset(fake_dev, 0, sizeof fake_dev);
    n_copies = 0;
    pb_config comm_cfg;
    pb_config_defaults(&comm_cfg);
    comm_opts = pb_config_comm_opts(&comm_cfg);
    for (int i = 0; i < ranks; i++) {
        fake_dev[i].id = i;
        assert_int_equal(pb_comm_local.init(&comm_opts, &streams, &fake_dev[i], i, ranks, &cc[i]), PB_OK);
    }
}

static void ungroup(int ranks)
{
    for (int i = 0; i < ranks; i++) pb_comm_local.destroy(cc[i]);
}

#define WAIT(c, r) assert_int_equal(pb_comm_local.wait((c), (r), 5.0), PB_OK)

/* mp's pattern: stage 0 sends microbatch j's activations after its forward
 * of j and goes on with the next forwards; stage 1 receives late. */
static void test_message_waits_for_its_data_only(void **state)
{
    (void)state;
    group(2);
    float a[2][4] = {{1, 2, 3, 4}, {5, 6, 7, 8}}, b[2][4] = {{0}};
    pb_comm_req *s[2], *r[2];
    int at_post[2];
    for (int j = 0; j < 2; j++) {
        tick(&fake_dev[0]); /* forward of j */
        tick(&fake_dev[0]);
        at_post[j] = fake_dev[0].pos;
        assert_int_equal(pb_comm_local.send(cc[0], a[j], sizeof a[j], 1, &s[j]), PB_OK);
    }
    for (int i = 0; i < 5; i++) tick(&fake_dev[0]); /* stage 0 runs on: more forwards */
    for (int j = 0; j < 2; j++) {
        assert_int_equal(pb_comm_local.recv(cc[1], b[j], sizeof b[j], 0, &r[j]), PB_OK);
        WAIT(cc[1], r[j]);
        assert_memory_equal(a[j], b[j], sizeof a[j]);
    }
    assert_int_equal(n_copies, 2);
    for (int j = 0; j < 2; j++)
        if (copies[j].clock[0] != at_post[j])
            fail_msg("message %d's copy waits for stage 0's work up to %d; its data was ready at %d (stage 0 had "
                     "enqueued %d by the recv)",
                     j, copies[j].clock[0], at_post[j], fake_dev[0].pos);
    /* the send's buffer is the sender's again after its wait: later work
     * on device 0 goes after the copies */
    WAIT(cc[0], s[0]);
    WAIT(cc[0], s[1]);
    assert_true(fake_dev[0].clock[1] >= copies[1].pos);
    ungroup(2);
}

/* recv_ready makes the receiver's stream wait for the posted send's data
 * before the recv (mp puts it ahead of its p2p span's first mark) */
static void test_recv_ready(void **state)
{
    (void)state;
    group(2);
    float a[4] = {1, 2, 3, 4}, b[4] = {0};
    pb_comm_req *s, *r;
    tick(&fake_dev[0]);
    assert_int_equal(pb_comm_local.send(cc[0], a, sizeof a, 1, &s), PB_OK);
    tick(&fake_dev[0]);
    assert_int_equal(pb_comm_local.recv_ready(cc[1], 0), PB_OK);
    assert_int_equal(fake_dev[1].clock[0], 1);
    assert_int_equal(pb_comm_local.recv(cc[1], b, sizeof b, 0, &r), PB_OK);
    WAIT(cc[1], r);
    WAIT(cc[0], s);
    assert_int_equal(pb_comm_local.recv_ready(cc[1], 0), PB_OK); /* nothing posted: nothing to wait for */
    ungroup(2);
}

/* no copy of the root's data waits for another destination's copy */
static void expect_parallel(const char *what, int ranks)
{
    for (int i = 0; i < n_copies; i++)
        for (int k = 0; k < n_copies; k++) {
            if (i == k || copies[k].dst == copies[i].dst) continue;
            if (copies[i].clock[copies[k].dst] >= copies[k].pos)
                fail_msg("%s: the copy to device %d waits for the copy to device %d", what, copies[i].dst,
                         copies[k].dst);
        }
    assert_int_equal(n_copies, ranks - 1);
}

/* dp's replicate: one thread posts every device's part */
static void test_broadcast_in_parallel(void **state)
{
    (void)state;
    group(DEVS);
    float p[DEVS][8] = {{0}};
    for (int i = 0; i < 8; i++) p[0][i] = (float)i;
    pb_comm_req *r[DEVS];
    for (int i = 0; i < DEVS; i++) assert_int_equal(pb_comm_local.broadcast(cc[i], p[i], sizeof p[i], 0, &r[i]), PB_OK);
    for (int i = 0; i < DEVS; i++) WAIT(cc[i], r[i]);
    for (int i = 1; i < DEVS; i++) assert_memory_equal(p[0], p[i], sizeof p[0]);
    expect_parallel("broadcast", DEVS);
    /* the root's later work goes after every copy */
    for (int i = 0; i < n_copies; i++) assert_true(fake_dev[0].clock[copies[i].dst] >= copies[i].pos);
    ungroup(DEVS);
}

/* dp's scatter: device 0 sends each device its rows, all posted first */
static void test_scatter_in_parallel(void **state)
{
    (void)state;
    group(DEVS);
    float full[DEVS][4], mine[DEVS][4] = {{0}};
    for (int i = 0; i < DEVS; i++)
        for (int k = 0; k < 4; k++) full[i][k] = (float)(10 * i + k);
    pb_comm_req *s[DEVS], *r[DEVS];
    for (int i = 1; i < DEVS; i++) {
        assert_int_equal(pb_comm_local.send(cc[0], full[i], sizeof full[i], i, &s[i]), PB_OK);
        assert_int_equal(pb_comm_local.recv(cc[i], mine[i], sizeof mine[i], 0, &r[i]), PB_OK);
    }
    for (int i = 1; i < DEVS; i++) {
        WAIT(cc[i], r[i]);
        WAIT(cc[0], s[i]);
        assert_memory_equal(full[i], mine[i], sizeof mine[i]);
    }
    expect_parallel("scatter", DEVS);
    ungroup(DEVS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_star_enables_device0_with_each),
        cmocka_unit_test(test_chain_enables_neighbours),
        cmocka_unit_test(test_no_access_is_host_staged),
        cmocka_unit_test(test_device_map_pairs),
        cmocka_unit_test(test_nvml_decides),
        cmocka_unit_test(test_cpu_and_driver_failure),
        cmocka_unit_test(test_out_of_peer_slots_is_host_staged),
        cmocka_unit_test(test_message_waits_for_its_data_only),
        cmocka_unit_test(test_recv_ready),
        cmocka_unit_test(test_broadcast_in_parallel),
        cmocka_unit_test(test_scatter_in_parallel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
