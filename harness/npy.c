#define _GNU_SOURCE
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

pb_status pb_npy_write(const char *path, const char *dtype, const void *data, size_t elem_size,
                       int ndim, const size_t *shape)
{
    char dict[256];
    size_t count = 1;
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", dtype);
    if (ndim < 1 || ndim > 8) return pb_error(PB_ERR_INTERNAL, "npy: %d dimensions (1 to 8 supported)", ndim);
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%zu%s", shape[i], ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
        count *= shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* magic(6) + version(2) + header length(2) + dict, padded with spaces to
     * a multiple of 64 and ended by '\n', as the format requires */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    /* Written under a temporary name in the same folder and renamed when
     * complete, so a full disk or a killed run never leaves a truncated
     * array under the final name; the temporary is removed on failure. */
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return pb_user_error(PB_ERR_IO, "cannot write %s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); /* the umask applies, as for fopen */
    if (fd < 0) return pb_user_error(PB_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return pb_user_error(PB_ERR_IO, "cannot write %s: %s", path, strerror(err));
    }
    errno = 0;
    bool ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, elem_size, count, f) == count;
    int err = errno;
    ok = (fclose(f) == 0) && ok;
    if (!err) err = errno;
    if (ok && rename(tmp, path) == 0) return PB_OK;
    if (ok) err = errno;
    unlink(tmp);
    return pb_user_error(PB_ERR_IO, "cannot write %s: %s", path, strerror(err ? err : EIO));
}
