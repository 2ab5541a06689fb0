#define _GNU_SOURCE
#include "paths.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *pb_path_kind(mode_t mode)
{
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

pb_status pb_path_check_folder(const char *flag, const char *path, const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0) return pb_usage_error("%s %s: folder '%s' does not exist", flag, path, dir);
    if (!S_ISDIR(sb.st_mode)) return pb_usage_error("%s %s: '%s' is not a folder", flag, path, dir);
    if (access(dir, W_OK | X_OK) != 0) return pb_usage_error("%s %s: folder '%s' is not writable", flag, path, dir);
    /* access() says yes to root almost everywhere (even /proc): create a
     * probe file and remove it, so a run never ends unable to write. Not
     * the target itself: a concurrent run may be creating that one. */
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.parbench-probe-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0)
        return pb_usage_error("%s %s: cannot create a file in folder '%s' (%s)", flag, path, dir, strerror(errno));
    close(fd);
    unlink(probe);
    return PB_OK;
}

pb_status pb_path_check_dump(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return pb_usage_error("--dump %s: is %s, not a folder; give a folder for the .npy files", dir,
                                  pb_path_kind(sb.st_mode));
        return pb_path_check_folder("--dump", dir, dir);
    }
    if (errno != ENOENT) return pb_usage_error("--dump %s: cannot use it (%s)", dir, strerror(errno));
    /* the run creates the last folder of the path, not the ones above it */
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", dir);
    const char *parent = dirname(copy);
    if (stat(parent, &sb) != 0)
        return pb_usage_error("--dump %s: folder '%s' does not exist (--dump creates only the last folder of its path)",
                              dir, parent);
    return pb_path_check_folder("--dump", dir, parent);
}

pb_status pb_path_check_out_file(const char *flag, const char *path, const char *out)
{
    struct stat sb, osb;
    if (stat(path, &sb) == 0) {
        /* the file is replaced whole (written beside it, then renamed), so
         * only a regular file may stand there */
        if (!S_ISREG(sb.st_mode))
            return pb_usage_error("%s %s: is %s; give a file path (the run replaces it)", flag, path,
                                  pb_path_kind(sb.st_mode));
        if (out && *out && stat(out, &osb) == 0 && osb.st_dev == sb.st_dev && osb.st_ino == sb.st_ino)
            return pb_usage_error("%s %s: is the --out results file; give another file", flag, path);
    } else if (errno != ENOENT) {
        return pb_usage_error("%s %s: cannot use it (%s)", flag, path, strerror(errno));
    }
    if (out && strcmp(path, out) == 0)
        return pb_usage_error("%s %s: is the --out results file; give another file", flag, path);
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    return pb_path_check_folder(flag, path, dirname(copy));
}
