/* bench compare --predicted P.csv M.csv: each measured configuration's
 * throughput against bench predict's for it. A cluster that runs more than
 * --threshold percent below its model is what an upgrade check should catch
 * (docs/predict.md, "Measured against predicted"). A prediction has no
 * spread, so there is no test here: the measured side is the mean of its
 * ok runs, and the threshold is the margin the model's own error needs (the
 * default, 25%, is the largest error the validation allows). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../harness/log.h"
#include "../harness/parse.h"
#include "predict.h"
#include "predict_out.h"

#define DEFAULT_THRESHOLD 25.0

bool pb_predict_compare_wanted(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--predicted") == 0 || strncmp(argv[i], "--predicted=", 12) == 0) return true;
    return false;
}

/* the columns a prediction and a run are paired by */
static const char *const key_cols[] = {"strategy",  "workload",     "backend",   "precision", "devices",
                                       "batch_global", "microbatches", "bucket_mb", "no_overlap", "threads",
                                       "schedule",     "zero_stage", "dp",        "tp",         "pp"};
#define NKEY (sizeof key_cols / sizeof key_cols[0])

static bool same_value(const char *a, const char *b)
{
    double x, y;
    if (pb_csv_number(a, &x) && pb_csv_number(b, &y)) return fabs(x - y) <= 1e-9 * fmax(1, fabs(x));
    return strcmp(a, b) == 0;
}

static const char *get(const pb_csv *c, size_t row, int col) { return col < 0 ? "" : pb_csv_get(c, row, (size_t)col); }

int pb_predict_compare(int argc, char **argv)
{
    const char *pred_path = NULL, *meas_path = NULL;
    double threshold = DEFAULT_THRESHOLD;
    pb_status st = PB_OK;
    for (int i = 0; i < argc && st == PB_OK; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--predicted") == 0 && i + 1 < argc) {
            pred_path = argv[++i];
        } else if (strncmp(a, "--predicted=", 12) == 0) {
            pred_path = a + 12;
        } else if (strcmp(a, "--threshold") == 0 || strncmp(a, "--threshold=", 12) == 0) {
            const char *v = a[11] == '=' ? a + 12 : (i + 1 < argc ? argv[++i] : "");
            if (!pb_parse_double(v, &threshold) || !(threshold >= 0 && threshold <= 100))
                st = pb_usage_error("compare: --threshold '%s': give a percentage from 0 to 100", v);
        } else if (a[0] != '-' && !meas_path) {
            meas_path = a;
        } else {
            st = pb_usage_error("compare --predicted P.csv M.csv: unexpected '%s'; allowed: --threshold PCT", a);
        }
    }
    if (st == PB_OK && (!pred_path || !*pred_path || !meas_path))
        st = pb_usage_error("compare: --predicted takes the prediction's CSV, then the measured runs' CSV: bench "
                            "compare --predicted P.csv M.csv");
    pb_csv pred, meas;
    memset(&pred, 0, sizeof pred);
    memset(&meas, 0, sizeof meas);
    if (st == PB_OK) st = pb_csv_load(pred_path, &pred);
    if (st == PB_OK) st = pb_csv_load(meas_path, &meas);
    if (st == PB_OK && !pb_pred_csv_is(&pred))
        st = pb_usage_error("compare: --predicted %s is not a bench predict CSV (no efficiency, collectives or "
                            "comm_exposed_ms column)",
                            pred_path);
    if (st == PB_OK && (pb_csv_find(&meas, "samples_per_s") < 0 || pb_csv_find(&meas, "status") < 0))
        st = pb_usage_error("compare: %s is not a results CSV of runs (no status or samples_per_s column)", meas_path);
    int pk[NKEY], mk[NKEY];
    for (size_t k = 0; st == PB_OK && k < NKEY; k++) {
        pk[k] = pb_csv_find(&pred, key_cols[k]);
        mk[k] = pb_csv_find(&meas, key_cols[k]);
    }
    int code = 2;
    if (st != PB_OK) {
        pb_log_error("%s", pb_error_message());
        goto cleanup;
    }
    int p_sps = pb_csv_find(&pred, "samples_per_s"), m_sps = pb_csv_find(&meas, "samples_per_s"),
        m_status = pb_csv_find(&meas, "status");
    bool *used = calloc(meas.nrows + 1, sizeof *used);
    if (!used) {
        pb_log_error("compare: out of memory");
        goto cleanup;
    }
    printf("# measured (%s) against predicted (%s): below-model when more than %.0f%% under the prediction\n",
           meas_path, pred_path, threshold);
    printf("%-6s %-8s %6s %7s %6s %7s %6s %12s %12s %8s  %s\n", "strat", "workload", "dev", "batch", "micro",
           "bucket", "nooverl", "predicted/s", "measured/s", "change", "verdict");
    size_t paired = 0, below = 0, unpaired = 0;
    for (size_t i = 0; i < meas.nrows; i++) {
        if (used[i] || strcmp(get(&meas, i, m_status), "ok") != 0) continue;
        /* this configuration's ok runs, pooled */
        double sum = 0, v;
        int n = 0;
        for (size_t j = i; j < meas.nrows; j++) {
            bool same = strcmp(get(&meas, j, m_status), "ok") == 0;
            for (size_t k = 0; same && k < NKEY; k++) same = same_value(get(&meas, i, mk[k]), get(&meas, j, mk[k]));
            if (!same) continue;
            used[j] = true;
            if (pb_csv_number(get(&meas, j, m_sps), &v)) {
                sum += v;
                n++;
            }
        }
        if (!n) continue;
        double m = sum / n, p = NAN;
        for (size_t r = 0; r < pred.nrows && !isfinite(p); r++) {
            bool same = true;
            for (size_t k = 0; same && k < NKEY; k++) {
                /* threads only where the prediction has cores to share */
                if (strcmp(key_cols[k], "threads") == 0 && strcmp(get(&pred, r, pk[2]), "cuda") == 0) continue;
                same = same_value(get(&pred, r, pk[k]), get(&meas, i, mk[k]));
            }
            if (same && pb_csv_number(get(&pred, r, p_sps), &v)) p = v;
        }
        if (!isfinite(p)) {
            unpaired++;
            continue;
        }
        paired++;
        double change = (m / p - 1) * 100;
        bool bad = change < -threshold;
        below += bad;
        printf("%-6s %-8s %6s %7s %6s %7s %6s %12.1f %12.1f %+7.1f%%  %s\n", get(&meas, i, mk[0]),
               get(&meas, i, mk[1]), get(&meas, i, mk[4]), get(&meas, i, mk[5]), get(&meas, i, mk[6]),
               get(&meas, i, mk[7]), get(&meas, i, mk[8]), p, m, change, bad ? "below-model" : "ok");
    }
    free(used);
    if (unpaired) pb_log_info("compare: %zu measured configurations have no prediction in %s", unpaired, pred_path);
    if (!paired) {
        pb_log_error("compare: no measured ok run of %s has a prediction in %s; nothing was compared", meas_path,
                     pred_path);
        goto cleanup;
    }
    printf("# %zu configurations compared, %zu below-model\n", paired, below);
    code = below ? 1 : 0;
cleanup:
    fflush(stdout);
    pb_csv_free(&pred);
    pb_csv_free(&meas);
    return code;
}
