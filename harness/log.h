/* Logs go to stderr; stdout carries only what the user asked for. Errors are
 * prefixed with rank and host once a run has several ranks. */
#ifndef PB_LOG_H
#define PB_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

void pb_log_set_rank(int rank, int ranks);
void pb_log_set_quiet(int quiet);
void pb_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "bench: warning: ...": rank 0 only (what it found over every rank), shown
 * even with --quiet (which silences progress, not findings). */
void pb_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pb_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "bench: warning: ...", for something that makes the run's figures slower
 * than the machine allows, with its fix: rank 0 only; --quiet drops it like
 * the progress (the row records the finding itself, so a quiet run or a
 * sweep loses nothing). */
void pb_log_advise(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif /* PB_LOG_H */
