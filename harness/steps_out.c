/* --steps-out: see steps_out.h. */
#define _POSIX_C_SOURCE 200809L
#include "steps_out.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void pb_out_num(FILE *f, double v, char sep)
{
    if (isfinite(v)) fprintf(f, "%.6g%c", v, sep);
    else fputc(sep, f);
}

pb_status pb_out_file_open(const char *flag, const char *path, char *tmp, size_t tmp_len, FILE **out)
{
    *out = NULL;
    tmp[0] = '\0';
    if (snprintf(tmp, tmp_len, "%s.tmp-%ld", path, (long)getpid()) >= (int)tmp_len) {
        tmp[0] = '\0';
        return pb_user_error(PB_ERR_IO, "%s %s: path too long", flag, path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        pb_status st = pb_user_error(PB_ERR_IO, "%s %s: cannot create %s: %s", flag, path, tmp, strerror(e));
        unlink(tmp);
        tmp[0] = '\0';
        return st;
    }
    *out = f;
    return PB_OK;
}

pb_status pb_out_file_close(const char *flag, const char *path, FILE *f, char *tmp)
{
    /* a full disk or a file size limit shows at the flush or the close */
    bool bad = fflush(f) != 0 || ferror(f);
    int e = errno;
    if (fclose(f) != 0 && !bad) {
        bad = true;
        e = errno;
    }
    if (!bad) return PB_OK;
    unlink(tmp);
    tmp[0] = '\0';
    return pb_user_error(PB_ERR_IO, "%s %s: cannot write it: %s; no file is left", flag, path, strerror(e));
}

pb_status pb_out_file_finish(const char *flag, const char *tmp, const char *path, bool keep)
{
    if (!tmp[0]) return PB_OK;
    if (!keep) {
        unlink(tmp);
        return PB_OK;
    }
    if (rename(tmp, path) == 0) return PB_OK;
    int e = errno;
    unlink(tmp);
    return pb_user_error(PB_ERR_IO, "%s %s: cannot rename %s onto it: %s; no file is left", flag, path, tmp,
                         strerror(e));
}

pb_status pb_steps_out_write(const char *path, const char *run_id, const double *v, int ranks, int iters,
                             int first_step, char *tmp, size_t tmp_len)
{
    FILE *f = NULL;
    pb_status st = pb_out_file_open("--steps-out", path, tmp, tmp_len, &f);
    if (st != PB_OK) return st;
    fprintf(f, "run_id,rank,step");
    for (int p = 0; p < PB_PHASE_COUNT; p++) fprintf(f, ",%s_ms", pb_phase_name((pb_phase)p));
    fprintf(f, ",step_ms,loss\n");
    for (int r = 0; r < ranks; r++)
        for (int i = 0; i < iters; i++) {
            const double *row = v + ((size_t)r * (size_t)iters + (size_t)i) * PB_STEPS_WIDTH;
            fprintf(f, "%s,%d,%d,", run_id, r, first_step + i);
            for (int c = 0; c < PB_STEPS_WIDTH; c++) pb_out_num(f, row[c], c + 1 == PB_STEPS_WIDTH ? '\n' : ',');
        }
    return pb_out_file_close("--steps-out", path, f, tmp);
}

pb_status pb_steps_out_finish(const char *tmp, const char *path, bool keep)
{
    return pb_out_file_finish("--steps-out", tmp, path, keep);
}
