#define _POSIX_C_SOURCE 200809L
#include "gnuplot.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness/child.h"
#include "../harness/log.h"
#include "../harness/status.h"

static bool is_exec_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

bool pb_gnuplot_find(char *out, size_t len)
{
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        int w = n ? snprintf(out, len, "%.*s/gnuplot", (int)n, p) : snprintf(out, len, "./gnuplot");
        if (w > 0 && (size_t)w < len && is_exec_file(out)) return true;
        if (!colon) break;
        p = colon + 1;
    }
    return false;
}

void pb_gnuplot_str(pb_strbuf *b, const char *name, const char *value)
{
    pb_strbuf_printf(b, "%s='", name);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) continue;
        if (*p == '\'') pb_strbuf_putc(b, '\'');
        pb_strbuf_putc(b, (char)*p);
    }
    pb_strbuf_puts(b, "'; ");
}

void pb_gnuplot_num(pb_strbuf *b, const char *name, double v)
{
    pb_strbuf_printf(b, "%s=%.9g; ", name, isfinite(v) ? v : 0.0);
}

static volatile sig_atomic_t caught;
static void on_signal(int sig) { caught = sig; }

void pb_gnuplot_catch_signals(pb_gnuplot_signals *saved)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the wait for gnuplot returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &saved->old_int);
    sigaction(SIGTERM, &sa, &saved->old_term);
}

void pb_gnuplot_restore_signals(const pb_gnuplot_signals *saved)
{
    sigaction(SIGINT, &saved->old_int, NULL);
    sigaction(SIGTERM, &saved->old_term, NULL);
}

int pb_gnuplot_signal(void) { return (int)caught; }

static bool nonempty_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0;
}

pb_gnuplot_result pb_gnuplot_draw(const char *who, const char *exe, const char *script, const char *outdir,
                                  const char *outname, pb_strbuf *vars, char *png, char *svg)
{
    char tmpbase[PATH_MAX], partial[2][PATH_MAX + 300];
    if (caught) { /* stopping: draw nothing more */
        free(pb_strbuf_take(vars));
        return PB_GNUPLOT_STOPPED;
    }
    snprintf(tmpbase, sizeof tmpbase, "%.3800s/.%.250s.partial", outdir, outname);
    snprintf(png, PATH_MAX + 8, "%.3800s/%.250s.png", outdir, outname);
    snprintf(svg, PATH_MAX + 8, "%.3800s/%.250s.svg", outdir, outname);
    snprintf(partial[0], sizeof partial[0], "%s.png", tmpbase);
    snprintf(partial[1], sizeof partial[1], "%s.svg", tmpbase);
    pb_gnuplot_str(vars, "outbase", tmpbase);
    char *assign = pb_strbuf_take(vars);
    if (!assign) {
        pb_log_error("%s: out of memory", who);
        return PB_GNUPLOT_FAILED;
    }
    remove(png);
    remove(svg);

    char *argv[] = {(char *)exe, "-d", "-e", assign, (char *)script, NULL};
    pid_t pid;
    /* gnuplot's stdout to our stderr; it dies with us (SIGKILL) */
    pb_error_clear();
    pb_status st = pb_child_spawn(exe, argv, 2, -1, &pid);
    free(assign);
    if (st != PB_OK) {
        pb_log_error("%s: %s", who, pb_error_message());
        pb_error_clear();
        return PB_GNUPLOT_FAILED;
    }
    int status = 0;
    if (caught) kill(pid, SIGTERM);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        if (caught) kill(pid, SIGTERM); /* SIGINT/SIGTERM: gnuplot stops with us */
    pb_gnuplot_result res = PB_GNUPLOT_FAILED;
    if (caught) {
        res = PB_GNUPLOT_STOPPED;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status))
            pb_log_error("%s: gnuplot failed on %s (exit %d)", who, script, WEXITSTATUS(status));
        else
            pb_log_error("%s: gnuplot was killed by signal %d on %s", who, WTERMSIG(status), script);
    } else if (!nonempty_file(partial[0]) || !nonempty_file(partial[1])) {
        pb_log_error("%s: gnuplot ran %s but did not write %s and %s", who, script, png, svg);
    } else if (rename(partial[0], png) != 0 || rename(partial[1], svg) != 0) {
        pb_log_error("%s: cannot write %s and %s: %s", who, png, svg, strerror(errno));
        remove(png);
    } else {
        return PB_GNUPLOT_DRAWN;
    }
    /* failed or stopped: no empty or half image under either name */
    remove(partial[0]);
    remove(partial[1]);
    return res;
}

bool pb_gnuplot_find_scripts(const char *script, char *dir, size_t len)
{
    char probe[PATH_MAX + 64], exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(probe, sizeof probe, "%s/plots/%s", exe, script);
            if (access(probe, R_OK) == 0) {
                snprintf(dir, len, "%.*s/plots", PATH_MAX - 8, exe);
                return true;
            }
        }
    }
    snprintf(probe, sizeof probe, "plots/%s", script);
    if (access(probe, R_OK) != 0) return false;
    snprintf(dir, len, "plots");
    return true;
}
