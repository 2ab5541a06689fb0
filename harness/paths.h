/* Paths the harness writes to or reads from, checked before any work so a
 * bad one is a usage error (exit 2, nothing written) and not a run that
 * ends unable to keep its results. Files the harness reads or appends to
 * must be regular files: a FIFO would block a reader with no writer, or
 * swallow a row that no file keeps. */
#ifndef PB_PATHS_H
#define PB_PATHS_H

#include <sys/stat.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "a FIFO (named pipe)", "a directory", "a character device", ... for a
 * message; "a regular file" for one. */
const char *pb_path_kind(mode_t mode);

/* `dir` (the folder `path` of flag `flag` goes into) exists, is a folder,
 * and a file can be created in it: a probe file is created and removed,
 * since access() says yes to root almost everywhere. A usage error names
 * the flag, the path and the folder. */
pb_status pb_path_check_folder(const char *flag, const char *path, const char *dir);

/* --dump DIR: an existing folder a file can be created in, or a missing
 * last folder whose parent is such a folder (the run creates it). */
pb_status pb_path_check_dump(const char *dir);

/* --steps-out FILE, --ranks-out FILE (flag): a regular file or none yet,
 * not --out's file (out may be "" or NULL), in a folder a file can be
 * created in (the run writes FILE.tmp-PID there and renames it). */
pb_status pb_path_check_out_file(const char *flag, const char *path, const char *out);

#ifdef __cplusplus
}
#endif
#endif /* PB_PATHS_H */
