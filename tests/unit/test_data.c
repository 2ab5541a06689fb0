/* Deterministic data and parameter init (workloads/data.c, workloads/mlp.c),
 * pinned golden values of the generator, and the .npy writer.
 *
 * Every strategy must see the same global batch and the same initial
 * parameters, whatever the split, so the generator is a pure function of
 * (seed, step, index). The golden values below were printed by the C library
 * and, independently, by tests/data_reference.py (a pure-Python
 * re-implementation from the specification); both agree bit for bit. A change
 * to the generator must update both on purpose. */
#include "tests/common/test_util.h" /* first: it defines _GNU_SOURCE for the libc headers */

#include <math.h>

#include "harness/npy.h"
#include "harness/registry.h"
#include "workloads/mlp.h"

#define SEED 1234

static pb_layout xs_layout(void)
{
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&pb_find_workload("mlp-xs")->shape, &layout), PB_OK);
    return layout;
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* FNV-1a 64 over bytes: the whole-array checksum data_reference.py prints. */
static uint64_t fnv1a(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 0x100000001B3ULL;
    return h;
}

/* A batch of `count` samples of `step` generated in one call. */
typedef struct batch {
    float *x;
    int32_t *labels;
} batch;

static batch fill_batch(const pb_layout *layout, uint64_t seed, int64_t step, int count)
{
    float *proto = malloc(sizeof(float) * (size_t)layout->classes * (size_t)layout->in);
    assert_non_null(proto);
    pb_data_prototypes(layout, seed, proto);
    batch b = {malloc(sizeof(float) * (size_t)count * (size_t)layout->in),
               malloc(sizeof(int32_t) * (size_t)count)};
    assert_true(b.x && b.labels);
    pb_data_fill(layout, seed, step, 0, count, proto, b.x, b.labels);
    free(proto);
    return b;
}

static void free_batch(batch *b)
{
    free(b->x);
    free(b->labels);
}

/* Sample i depends on (seed, step, i) alone: the devices of a split batch each
 * generate their own shard, and it must be the same bytes as the whole. */
static void test_fill_split_is_bitwise_equal(void **state)
{
    (void)state;
    pb_layout layout = xs_layout();
    const int n = 64, in = layout.in;
    batch whole = fill_batch(&layout, SEED, 5, n);

    float *proto = malloc(sizeof(float) * (size_t)layout.classes * (size_t)in);
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)in);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    assert_true(proto && x && labels);
    pb_data_prototypes(&layout, SEED, proto);
    /* fill x with a pattern so a chunk that writes nothing is caught */
    memset(x, 0xAB, sizeof(float) * (size_t)n * (size_t)in);
    memset(labels, 0xAB, sizeof(int32_t) * (size_t)n);
    static const int cuts[] = {0, 17, 40, 64};
    /* generate the chunks out of order: no hidden state may carry over */
    static const int order[] = {2, 0, 1};
    for (int c = 0; c < 3; c++) {
        int lo = cuts[order[c]], hi = cuts[order[c] + 1];
        pb_data_fill(&layout, SEED, 5, lo, hi - lo, proto, x + (size_t)lo * (size_t)in, labels + lo);
    }
    assert_memory_equal(whole.x, x, sizeof(float) * (size_t)n * (size_t)in);
    assert_memory_equal(whole.labels, labels, sizeof(int32_t) * (size_t)n);
    free(proto);
    free(x);
    free(labels);
    free_batch(&whole);
}

static double fraction_different(const float *a, const float *b, size_t n)
{
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return (double)diff / (double)n;
}

/* A different step or seed must be fresh data, not a shifted copy: almost
 * every feature differs (equal values happen only by chance). */
static void test_fill_differs_by_step_and_seed(void **state)
{
    (void)state;
    pb_layout layout = xs_layout();
    const int n = 64;
    size_t elems = (size_t)n * (size_t)layout.in;
    batch base = fill_batch(&layout, SEED, 0, n);
    batch again = fill_batch(&layout, SEED, 0, n);
    batch step1 = fill_batch(&layout, SEED, 1, n);
    batch seed2 = fill_batch(&layout, SEED + 1, 0, n);
    assert_memory_equal(base.x, again.x, elems * sizeof(float));
    assert_true(fraction_different(base.x, step1.x, elems) > 0.99);
    assert_true(fraction_different(base.x, seed2.x, elems) > 0.99);
    /* labels: 64 draws from 10 classes agree about 1 time in 10 by chance */
    int same_step = 0, same_seed = 0;
    for (int i = 0; i < n; i++) {
        same_step += base.labels[i] == step1.labels[i];
        same_seed += base.labels[i] == seed2.labels[i];
    }
    assert_true(same_step < n / 2);
    assert_true(same_seed < n / 2);
    free_batch(&base);
    free_batch(&again);
    free_batch(&step1);
    free_batch(&seed2);
}

/* Labels lie in [0, classes), are roughly uniform, and each sample is half
 * its label's prototype plus half noise in [-1, 1): so x - proto/2 lies in
 * [-0.5, 0.5), which ties each label to its features (what makes it
 * learnable). */
static void test_labels_and_features(void **state)
{
    (void)state;
    pb_layout layout = xs_layout();
    const int n = 10000, in = layout.in, classes = layout.classes;
    float *proto = malloc(sizeof(float) * (size_t)classes * (size_t)in);
    assert_non_null(proto);
    pb_data_prototypes(&layout, SEED, proto);
    batch b = fill_batch(&layout, SEED, 3, n);
    int count[16] = {0};
    assert_true(classes <= 16);
    for (int i = 0; i < n; i++) {
        int32_t label = b.labels[i];
        assert_true(label >= 0 && label < classes);
        count[label]++;
        const float *row = b.x + (size_t)i * (size_t)in;
        const float *pr = proto + (size_t)label * (size_t)in;
        for (int j = 0; j < in; j++) {
            assert_true(row[j] >= -1.0f && row[j] < 1.0f);
            float noise = row[j] - 0.5f * pr[j];
            assert_true(noise >= -0.5f - 1e-6f && noise < 0.5f + 1e-6f);
        }
    }
    /* chi-square with 9 degrees of freedom: 27.9 is the 0.1% tail; the data
     * are fixed by the seed, so this is a check of the generator, not luck */
    double expect = (double)n / classes, chi2 = 0.0;
    for (int c = 0; c < classes; c++) {
        double d = count[c] - expect;
        chi2 += d * d / expect;
        assert_true(fabs(d) < 0.1 * expect);
    }
    assert_true(chi2 < 27.9);
    /* prototypes are U[-1, 1): spread over the range, distinct per class */
    float lo = 1.0f, hi = -1.0f;
    for (size_t i = 0; i < (size_t)classes * (size_t)in; i++) {
        lo = fminf(lo, proto[i]);
        hi = fmaxf(hi, proto[i]);
    }
    assert_true(lo >= -1.0f && lo < -0.95f && hi < 1.0f && hi > 0.95f);
    assert_true(fraction_different(proto, proto + in, (size_t)in) > 0.99);
    free(proto);
    free_batch(&b);
}

/* W [out, in] then b [out] per layer, contiguous, in layer order. */
static void test_layout_offsets(void **state)
{
    (void)state;
    pb_layout layout = xs_layout();
    assert_int_equal(layout.n_layers, 3);
    assert_int_equal(layout.in, 256);
    assert_int_equal(layout.classes, 10);
    static const int in[] = {256, 256, 256}, out[] = {256, 256, 10}, relu[] = {1, 1, 0};
    size_t off = 0;
    for (int l = 0; l < 3; l++) {
        const pb_layer_desc *d = &layout.layer[l];
        assert_int_equal(d->in, in[l]);
        assert_int_equal(d->out, out[l]);
        assert_int_equal(d->relu, relu[l]);
        assert_int_equal(d->w_off, off);
        off += (size_t)in[l] * (size_t)out[l];
        assert_int_equal(d->b_off, off);
        off += (size_t)out[l];
    }
    assert_int_equal(layout.n_params, 134154);
    assert_int_equal(off, layout.n_params);

    /* one layer goes straight from in to classes */
    pb_shape one = {.in = 7, .hidden = 99, .layers = 1, .classes = 3, .batch = 4};
    assert_int_equal(pb_mlp_layout(&one, &layout), PB_OK);
    assert_int_equal(layout.layer[0].in, 7);
    assert_int_equal(layout.layer[0].out, 3);
    assert_int_equal(layout.layer[0].relu, 0);
    assert_int_equal(layout.n_params, 7 * 3 + 3);
    /* 6 * batch * sum(in * out) */
    assert_true(pb_mlp_step_flops(&layout, 4) == 6.0 * 4 * 21);

    pb_shape bad = one;
    bad.layers = PB_MAX_LAYERS + 1;
    assert_int_equal(pb_mlp_layout(&bad, &layout), PB_ERR_USAGE);
}

/* nn.Linear's default init: W and b of layer l are U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)). Checked with a shape whose layers have different fan-ins
 * so a bound taken from the wrong dimension is caught. */
static void test_init_params(void **state)
{
    (void)state;
    pb_shape shape = {.in = 300, .hidden = 64, .layers = 3, .classes = 10, .batch = 8};
    pb_layout layout;
    assert_int_equal(pb_mlp_layout(&shape, &layout), PB_OK);
    size_t n = layout.n_params;
    float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float)), *r = malloc(n * sizeof(float));
    assert_true(p && q && r);
    pb_mlp_init_params(&layout, SEED, p);
    pb_mlp_init_params(&layout, SEED, q);
    pb_mlp_init_params(&layout, SEED + 1, r);
    assert_memory_equal(p, q, n * sizeof(float));
    assert_true(fraction_different(p, r, n) > 0.99);

    for (int l = 0; l < layout.n_layers; l++) {
        const pb_layer_desc *d = &layout.layer[l];
        double bound = 1.0 / sqrt((double)d->in);
        size_t nw = (size_t)d->in * (size_t)d->out;
        double sum = 0.0, sum2 = 0.0, lo = 0.0, hi = 0.0;
        for (size_t i = 0; i < nw; i++) {
            double w = p[d->w_off + i];
            assert_true(fabs(w) <= bound * (1.0 + 1e-6));
            sum += w;
            sum2 += w * w;
            lo = fmin(lo, w);
            hi = fmax(hi, w);
        }
        double mean = sum / (double)nw, var = sum2 / (double)nw - mean * mean;
        /* the mean of nw uniforms has sd bound/sqrt(3 nw); allow 4 sd */
        assert_true(fabs(mean) < 4.0 * bound / sqrt(3.0 * (double)nw));
        /* U(-B, B) has variance B^2/3; 10% covers the smallest layer (640) */
        assert_true(fabs(var / (bound * bound / 3.0) - 1.0) < 0.1);
        /* the range is used: not a narrower distribution inside the bound */
        assert_true(hi > 0.95 * bound && lo < -0.95 * bound);
        for (int o = 0; o < d->out; o++) assert_true(fabs(p[d->b_off + (size_t)o]) <= bound * (1.0 + 1e-6));
        /* biases are not all zero (nn.Linear initialises them too) */
        assert_true(fabs(p[d->b_off]) + fabs(p[d->b_off + 1]) > 0.0);
    }
    free(p);
    free(q);
    free(r);
}

/* Golden values for seed 1234 on mlp-xs, float32 bit patterns. Printed by the
 * library and by tests/data_reference.py (run it to regenerate). */
static void test_golden_values(void **state)
{
    (void)state;
    pb_layout layout = xs_layout();
    batch b = fill_batch(&layout, SEED, 0, 64);
    static const uint32_t x0[4] = {0x3de04fa0, 0x3e12d714, 0x3f35a5c2, 0x3f0cd263};
    for (int j = 0; j < 4; j++) assert_int_equal(float_bits(b.x[j]), x0[j]);
    assert_int_equal(b.labels[0], 3);
    assert_int_equal(b.labels[1], 2);
    assert_int_equal(b.labels[63], 4);
    assert_int_equal(float_bits(b.x[63 * 256 + 255]), 0xbedfd9de);
    assert_int_equal(fnv1a(b.x, 64 * 256 * sizeof(float)), 0xae6a992d0197e838ULL);
    assert_int_equal(fnv1a(b.labels, 64 * sizeof(int32_t)), 0x06bd245b5ac03a06ULL);

    float proto[10 * 256];
    pb_data_prototypes(&layout, SEED, proto);
    assert_int_equal(float_bits(proto[0]), 0x3f010eba);

    float *p = malloc(layout.n_params * sizeof(float));
    assert_non_null(p);
    pb_mlp_init_params(&layout, SEED, p);
    assert_int_equal(float_bits(p[0]), 0xbd3717ca);
    assert_int_equal(float_bits(p[1]), 0xbc9ec050);
    assert_int_equal(float_bits(p[layout.layer[0].b_off]), 0x3c1d3d18);
    assert_int_equal(float_bits(p[layout.layer[1].w_off]), 0x3bd464f0);
    assert_int_equal(float_bits(p[layout.layer[2].w_off]), 0xbd216cf0);
    assert_int_equal(float_bits(p[layout.layer[2].b_off + 9]), 0xbcbdbbd4);
    assert_int_equal(fnv1a(p, layout.n_params * sizeof(float)), 0x409b71de27037625ULL);
    free(p);
    free_batch(&b);
}

/* --- npy --------------------------------------------------------------- */

/* Checks a .npy file: magic, version 1.0, header length, the dict text
 * (padded with spaces, ended by '\n'), the 64-byte aligned data start and the
 * data bytes. */
static void check_npy(const char *path, const char *dict, const void *data, size_t bytes)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);

    assert_true(size >= 10);
    assert_memory_equal(buf, "\x93NUMPY", 6);
    assert_int_equal(buf[6], 1);
    assert_int_equal(buf[7], 0);
    size_t hlen = (size_t)buf[8] | ((size_t)buf[9] << 8);
    size_t start = 10 + hlen;
    assert_int_equal(start % 64, 0);
    assert_int_equal((size_t)size, start + bytes);
    size_t dlen = strlen(dict);
    assert_true(hlen > dlen);
    assert_memory_equal(buf + 10, dict, dlen);
    for (size_t i = 10 + dlen; i < start - 1; i++) assert_int_equal(buf[i], ' ');
    assert_int_equal(buf[start - 1], '\n');
    assert_memory_equal(buf + start, data, bytes);
    free(buf);
}

static void test_npy_write(void **state)
{
    (void)state;
    char *dir = make_temp_dir();
    char path[256];

    float m[3][5];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) m[i][j] = (float)(i * 5 + j) * 0.25f - 1.0f;
    size_t mshape[2] = {3, 5};
    snprintf(path, sizeof path, "%s/m.npy", dir);
    assert_int_equal(pb_npy_write(path, "<f4", m, sizeof(float), 2, mshape), PB_OK);
    check_npy(path, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", m, sizeof m);
    unlink(path);

    /* a 1-D shape is written as a one-element Python tuple: (7,) */
    int32_t v[7] = {0, -1, 2, 2147483647, -2147483647 - 1, 9, 42};
    size_t vshape[1] = {7};
    snprintf(path, sizeof path, "%s/v.npy", dir);
    assert_int_equal(pb_npy_write(path, "<i4", v, sizeof(int32_t), 1, vshape), PB_OK);
    check_npy(path, "{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }", v, sizeof v);
    unlink(path);

    /* a path that cannot be written is an I/O error, not a crash */
    snprintf(path, sizeof path, "%s/missing/v.npy", dir);
    assert_int_equal(pb_npy_write(path, "<i4", v, sizeof(int32_t), 1, vshape), PB_ERR_IO);
    pb_error_clear();

    rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fill_split_is_bitwise_equal),
        cmocka_unit_test(test_fill_differs_by_step_and_seed),
        cmocka_unit_test(test_labels_and_features),
        cmocka_unit_test(test_layout_offsets),
        cmocka_unit_test(test_init_params),
        cmocka_unit_test(test_golden_values),
        cmocka_unit_test(test_npy_write),
    };
    return cmocka_run_group_tests_name("data", tests, NULL, NULL);
}
