/* The environment variables that change what a run measures (NCCL_ALGO,
 * OMPI_MCA_btl, OMP_NUM_THREADS, OPENBLAS_CORETYPE, ...), as the row's
 * env_vars column records them and as bench compare reads them back
 * (docs/csv-schema.md, "env_vars"). Secrets never: a name that reads like
 * one, or a value that looks like a token, is left out entirely. */
#ifndef PB_ENVVARS_H
#define PB_ENVVARS_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the variable NAME is recorded: it starts with a listed prefix or
 * is a listed name, is not one an MPI launcher sets in every rank for its
 * own wiring, and is not named like a secret. */
bool pb_envvars_listed(const char *name);
/* NAME contains KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL or AUTH
 * (any case). */
bool pb_envvars_secret_name(const char *name);
/* VALUE looks like a secret: credentials in a URL (scheme://user:pass@),
 * a known token prefix (ghp_, github_pat_, glpat-, xox?-, sk-, AKIA, eyJ),
 * or a run of 32 or more base64 characters ([A-Za-z0-9+/=_]) mixing upper
 * case, lower case and digits. */
bool pb_envvars_secret_value(const char *value);

/* The recorded variables of env ("NAME=value" strings, NULL-ended, as
 * environ) into out: "NAME=value;NAME=value", sorted by name, each value
 * escaped ('\\' as "\\\\", ';' as "\\;", a control character as "\\xHH") so
 * an entry never spans a ';'. Whole entries only: when they do not all fit
 * in len, the last is the marker "..." (no '='), so a reader knows the
 * names after it were not recorded. Returns the number of variables
 * recorded. */
size_t pb_envvars_format(char *const *env, char *out, size_t len);

/* Reads the next entry of a formatted list at *p into name and value
 * (unescaped; each cut to its buffer) and moves *p past it. False at the
 * end. *cut: the entry is the "..." marker (name and value empty). */
bool pb_envvars_next(const char **p, char *name, size_t nlen, char *value, size_t vlen, bool *cut);

/* The value of NAME in a formatted list, into value: 1 when the list has
 * it, 0 when it does not (the variable was unset), -1 when it does not but
 * the list was cut ("...": not recorded). */
int pb_envvars_get(const char *list, const char *name, char *value, size_t vlen);

#ifdef __cplusplus
}
#endif

#endif /* PB_ENVVARS_H */
