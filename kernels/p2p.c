/* Peer-access decision (p2p.h): pure over the driver layer it is given. */
#include "p2p.h"

#include <string.h>

#include "../harness/log.h"

static const char *const link_names[] = {"none", "same-device", "nvlink", "pcie", "host-staged"};

const char *pb_p2p_link_name(pb_p2p_link link)
{
    return (unsigned)link < sizeof link_names / sizeof *link_names ? link_names[link] : "?";
}

pb_p2p_link pb_p2p_classify(const pb_p2p_facts *f)
{
    if (!f->can_access) return PB_P2P_HOST_STAGED;
    if (f->nvlink >= 0) return f->nvlink ? PB_P2P_NVLINK : PB_P2P_PCIE;
    return f->native_atomic ? PB_P2P_NVLINK : PB_P2P_PCIE;
}

static void add_pair(pb_p2p_plan *p, int x, int y)
{
    if (x > y) {
        int t = x;
        x = y;
        y = t;
    }
    for (int i = 0; i < p->n; i++)
        if (p->a[i] == x && p->b[i] == y) return;
    if (p->n >= PB_MAX_STAGES) return; /* a star or chain of PB_MAX_STAGES has fewer */
    p->a[p->n] = x;
    p->b[p->n] = y;
    p->link[p->n] = x == y ? PB_P2P_SAME_DEVICE : PB_P2P_NONE;
    p->enabled[p->n] = false;
    p->n++;
}

void pb_p2p_plan_pairs(pb_p2p_topology topo, const int *ordinal, int n, pb_p2p_plan *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 1; i < n; i++) add_pair(out, ordinal[topo == PB_P2P_STAR ? 0 : i - 1], ordinal[i]);
}

/* Enables a -> b; a driver out of peer slots (PB_ERR_UNAVAILABLE: a GPU
 * maps at most a few peers, and dp's device 0 needs one per other device)
 * leaves the pair host-staged, as without peer access, instead of failing
 * the run: copies still work, through host memory. */
static pb_status enable_or_stage(const pb_p2p_driver *drv, int a, int b, bool *on)
{
    pb_status st = drv->enable(a, b);
    *on = st == PB_OK;
    if (st != PB_ERR_UNAVAILABLE) return st;
    pb_log_info("peer access: cuda:%d -> cuda:%d not enabled (%s): copies between them are staged through host "
                "memory",
                a, b, pb_error_message());
    pb_error_clear();
    return PB_OK;
}

pb_status pb_p2p_setup(const pb_p2p_driver *drv, pb_p2p_topology topo, const int *ordinal, int n,
                       pb_p2p_plan *out)
{
    pb_status st = PB_OK;
    pb_p2p_plan_pairs(topo, ordinal, n, out);
    out->worst = PB_P2P_NONE;
    if (!drv) return PB_OK;
    for (int i = 0; i < out->n; i++) {
        int x = out->a[i], y = out->b[i];
        if (x != y) {
            pb_p2p_facts fx, fy;
            PB_TRY(drv->facts(x, y, &fx));
            PB_TRY(drv->facts(y, x, &fy));
            pb_p2p_link lx = pb_p2p_classify(&fx), ly = pb_p2p_classify(&fy);
            out->link[i] = lx > ly ? lx : ly; /* the slower direction */
            bool on_x = false, on_y = false;
            if (fx.can_access) PB_TRY(enable_or_stage(drv, x, y, &on_x));
            if (fy.can_access) PB_TRY(enable_or_stage(drv, y, x, &on_y));
            out->enabled[i] = on_x && on_y;
            if (!out->enabled[i] && fx.can_access && fy.can_access) {
                out->link[i] = PB_P2P_HOST_STAGED;
            } else if (!out->enabled[i]) {
                pb_log_info("peer access: none between cuda:%d and cuda:%d (the driver reports none%s): copies "
                            "between them are staged through host memory",
                            x, y, fx.can_access || fy.can_access ? " in one direction" : "");
            }
        }
        if (out->link[i] > out->worst) out->worst = out->link[i];
    }
cleanup:
    return st;
}
