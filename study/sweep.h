/* bench sweep: every strategy x device-count combination of one workload,
 * each run as its own `bench run` child process appending to one CSV, then
 * a scaling table computed from that CSV (docs/sweep.md).
 *
 * A child that fails loses only its own row; combinations that already have
 * their `--repeats` ok rows in --out are skipped (unless --force), so an
 * interrupted sweep is resumed by running the same command again. */
#ifndef PB_SWEEP_H
#define PB_SWEEP_H

#ifdef __cplusplus
extern "C" {
#endif

/* argv holds what follows "sweep". Prints progress and notices on stderr,
 * the scaling table on stdout. Returns the exit code: 0 every run ok, 1 a
 * run failed (or the sweep was interrupted), 2 bad sweep flags or nothing
 * valid to run. */
int pb_cmd_sweep(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* PB_SWEEP_H */
