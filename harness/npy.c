#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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
    FILE *f = fopen(path, "wb");
    if (!f) return pb_error(PB_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    bool ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, elem_size, count, f) == count;
    ok = (fclose(f) == 0) && ok;
    return ok ? PB_OK : pb_error(PB_ERR_IO, "cannot write %s: %s", path, strerror(errno));
}
