/* bench predict's targets and outputs: the configurations to predict (a grid
 * or a measured CSV's runs), the CSV of predictions (PB_PREDICT_COLUMNS,
 * docs/predict.md) and its plot. */
#ifndef PB_PREDICT_OUT_H
#define PB_PREDICT_OUT_H

#include "predict.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_PRED_MAX_REPS 32

typedef struct pb_pred_row {
    pb_pred_target t;
    pb_pred_result r;
    bool ok;           /* predicted */
    bool has_measured; /* --against: a measured run of this configuration */
    double measured_step_ms, measured_samples_per_s, measured_efficiency, error_pct, measured_mem_mb;
    int nrep; /* measured runs pooled (their medians) */
    double rep_ms[PB_PRED_MAX_REPS], rep_sps[PB_PRED_MAX_REPS], rep_mem[PB_PRED_MAX_REPS];
} pb_pred_row;

typedef struct pb_pred_rows {
    pb_pred_row *v;
    size_t n, cap;
} pb_pred_rows;

typedef struct pb_pred_grid {
    const char *strategies, *devices; /* comma lists; devices "" for the default */
    int default_max;                  /* the default list's largest count */
    double batch, batch_per_device;   /* one of them, or neither (the single row's batch per device) */
    int microbatches;
    bool one_f_one_b; /* mp: --schedule 1f1b */
    int zero_stage;   /* zero: 1 to 3 */
    int mesh_tp;      /* mesh: T of each --dp x --tp grid point (D = devices / T) */
    int mesh_pp;      /* mesh: P stages (D = devices / (T x P)); 0: 1 */
    double bucket_mb;
    bool no_overlap;
    int threads;
} pb_pred_grid;

pb_status pb_pred_targets_grid(const pb_pred_grid *g, const pb_pred_work *w, pb_pred_rows *rows);
/* Every ok run of a known strategy, workload, backend and precision as w's. */
pb_status pb_pred_targets_against(const pb_csv *c, const char *path, const pb_pred_work *w, pb_pred_step which,
                                  pb_pred_rows *rows);
/* Writes the predicted rows to path (a new file renamed over it). */
pb_status pb_pred_write_csv(const char *path, const pb_pred_work *w, const pb_pred_net *net, const pb_pred_rows *rows);
/* Draws the predict CSV at csv_path into outdir (plots/predict.gp):
 * throughput and efficiency against devices, a line per strategy and
 * variant, the measured points beside. */
pb_status pb_pred_plot(const char *outdir, const char *plots_dir, const char *csv_path, const pb_pred_work *w,
                       const pb_pred_net *net, const pb_pred_rows *rows);
/* bench plot of a predict CSV: true when c is one */
bool pb_pred_csv_is(const pb_csv *c);
pb_status pb_pred_plot_csv(const pb_csv *c, const char *csv_path, const char *outdir, const char *plots_dir);

#ifdef __cplusplus
}
#endif
#endif /* PB_PREDICT_OUT_H */
