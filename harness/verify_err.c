/* --verify's measure (verify_err.h). */
#include "verify_err.h"

#include <math.h>

double pb_max_rel_diff(const float *got, const float *want, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / (fabs((double)want[i]) + PB_VERIFY_FLOOR);
        if (isnan(d)) return d; /* a later element must not hide it */
        if (d > worst) worst = d;
    }
    return worst;
}

/* ||got - want||_2 / ||want||_2 over n floats, summed in double */
static double tensor_rel_diff(const float *got, const float *want, size_t n)
{
    double dd = 0.0, ww = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - want[i];
        dd += d * d;
        ww += (double)want[i] * want[i];
    }
    if (isnan(dd) || isnan(ww)) return NAN;
    if (dd == 0.0) return 0.0;
    return ww > 0.0 ? sqrt(dd / ww) : INFINITY;
}

double pb_max_tensor_rel_diff(const pb_model *m, const float *got, const float *want, int *worst)
{
    double max = 0.0;
    int at = -1;
    for (int t = 0; t < m->n_tensors; t++) {
        const pb_tensor_desc *d = &m->tensor[t];
        double e = tensor_rel_diff(got + d->off, want + d->off, d->size);
        if (e > max || isnan(e)) {
            max = e;
            at = t;
        }
        if (isnan(e)) break; /* a later tensor must not hide it */
    }
    if (worst) *worst = at;
    return max;
}

double pb_verify_error(const pb_model *m, pb_optimizer o, const float *got, const float *want, int *worst)
{
    if (o == PB_OPT_ADAMW) return pb_max_tensor_rel_diff(m, got, want, worst);
    if (worst) *worst = -1;
    return pb_max_rel_diff(got, want, m->n_params);
}
