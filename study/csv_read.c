#define _POSIX_C_SOURCE 200809L
#include "csv_read.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../harness/paths.h"

typedef enum line_result {
    LINE_OK,
    LINE_OPEN_QUOTE, /* ended inside a quoted field */
    LINE_BAD_QUOTE,  /* a quote inside an unquoted field, or text after a closing quote */
    LINE_TOO_MANY,   /* more than max_fields fields */
    LINE_OVERFLOW,   /* decoded text would pass its buffer: a bug, never input */
} line_result;

/* Decodes one line s[0..n) (no newline) into text at *w, recording each
 * field's offset in off[0..max_fields). *nfields is the number of fields
 * started; *bad_field the 1-based field of a LINE_BAD_QUOTE. */
static line_result parse_line(const char *s, size_t n, char *text, size_t cap, size_t *w, uint32_t *off,
                              size_t max_fields, size_t *nfields, size_t *bad_field)
{
    size_t f = 0, i = 0, p = *w;
    line_result res = LINE_OK;
    for (;;) {
        if (f == max_fields) {
            res = LINE_TOO_MANY;
            break;
        }
        if (p >= cap) {
            res = LINE_OVERFLOW;
            break;
        }
        off[f++] = (uint32_t)p;
        if (i < n && s[i] == '"') {
            bool closed = false;
            for (i++; i < n; i++) {
                if (s[i] == '"') {
                    if (i + 1 < n && s[i + 1] == '"') {
                        i++;
                    } else {
                        i++;
                        closed = true;
                        break;
                    }
                }
                if (p + 1 >= cap) return LINE_OVERFLOW;
                text[p++] = s[i];
            }
            if (!closed) {
                text[p++] = '\0';
                res = LINE_OPEN_QUOTE;
                break;
            }
            if (i < n && s[i] != ',') {
                *bad_field = f;
                res = LINE_BAD_QUOTE;
                break;
            }
        } else {
            for (; i < n && s[i] != ','; i++) {
                if (s[i] == '"') {
                    *bad_field = f;
                    res = LINE_BAD_QUOTE;
                    break;
                }
                if (p + 1 >= cap) return LINE_OVERFLOW;
                text[p++] = s[i];
            }
            if (res != LINE_OK) break;
        }
        text[p++] = '\0';
        if (i >= n) break;
        i++; /* the comma: another field follows */
    }
    *nfields = f;
    *w = p;
    return res;
}

/* Makes room for `more` offsets after `used`. */
static bool grow_offsets(uint32_t **off, size_t *cap, size_t used, size_t more)
{
    if (used + more <= *cap) return true;
    size_t want = *cap ? *cap : 1024;
    while (want < used + more) {
        if (want > SIZE_MAX / 2 / sizeof **off) return false;
        want *= 2;
    }
    uint32_t *p = realloc(*off, want * sizeof *p);
    if (!p) return false;
    *off = p;
    *cap = want;
    return true;
}

static bool grow_lines(size_t **line, size_t *cap, size_t used)
{
    if (used < *cap) return true;
    size_t want = *cap ? *cap * 2 : 256;
    if (want > SIZE_MAX / sizeof **line) return false;
    size_t *p = realloc(*line, want * sizeof *p);
    if (!p) return false;
    *line = p;
    *cap = want;
    return true;
}

const char *pb_csv_excerpt(const char *s, char *buf, size_t len)
{
    if (!len) return "";
    size_t k = 0, limit = len - 1 < 48 ? len - 1 : 48;
    const char *p = s;
    for (; *p && k < limit; p++) buf[k++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p;
    if (*p && len >= 4) {
        k = k > len - 4 ? len - 4 : k;
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

const char *pb_csv_skip_text(const pb_csv_skip *s, size_t ncols, char *buf, size_t len)
{
    switch (s->reason) {
    case PB_CSV_SKIP_SHORT: snprintf(buf, len, "%zu of %zu fields, a torn row", s->fields, ncols); break;
    case PB_CSV_SKIP_OPEN_QUOTE: snprintf(buf, len, "ends inside a quoted field, a torn row"); break;
    case PB_CSV_SKIP_NO_NEWLINE: snprintf(buf, len, "the last line has no final newline, a row cut short"); break;
    }
    return buf;
}

static size_t line_of(const char *text, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos; i++) line += text[i] == '\n';
    return line;
}

void pb_csv_free(pb_csv *c)
{
    if (!c) return;
    free(c->text);
    free(c->off);
    free(c->line);
    memset(c, 0, sizeof *c);
}

pb_status pb_csv_parse(const char *name, const char *data, size_t len, pb_csv *out)
{
    pb_status st = PB_OK;
    pb_csv c;
    memset(&c, 0, sizeof c);
    memset(out, 0, sizeof *out);
    size_t off_cap = 0, line_cap = 0, used = 0, w = 0;
    char ex[64];

    if (!data || len == 0)
        return pb_user_error(PB_ERR_USAGE, "%s: empty file; expected a parbench results CSV (a header line, then rows)",
                             name);
    if (len > PB_CSV_MAX_BYTES)
        return pb_user_error(PB_ERR_USAGE, "%s: larger than %zu MiB, more than a results CSV this reader takes", name,
                             PB_CSV_MAX_BYTES >> 20);
    const char *nul = memchr(data, '\0', len);
    if (nul)
        return pb_user_error(PB_ERR_USAGE, "%s:%zu: binary data (a NUL byte); not a CSV file", name,
                             line_of(data, (size_t)(nul - data)));

    size_t cap = len + 1; /* decoded fields never outgrow the raw text plus one NUL */
    c.text = malloc(cap);
    PB_CHECK_ALLOC(c.text, cap);

    size_t pos = 0, lineno = 0;
    while (pos < len) {
        lineno++;
        const char *eol = memchr(data + pos, '\n', len - pos);
        bool has_nl = eol != NULL;
        size_t end = has_nl ? (size_t)(eol - data) : len;
        size_t n = end - pos;
        if (n > 0 && data[pos + n - 1] == '\r') n--;
        const char *s = data + pos;
        size_t next = has_nl ? end + 1 : len;

        if (lineno == 1) {
            PB_REQUIRE(grow_offsets(&c.off, &off_cap, 0, PB_CSV_MAX_COLS), PB_ERR_NOMEM,
                       "host allocation of the header's offsets failed");
            size_t nf = 0, bad = 0;
            line_result r = parse_line(s, n, c.text, cap, &w, c.off, PB_CSV_MAX_COLS, &nf, &bad);
            if (r == LINE_TOO_MANY) {
                st = pb_user_error(PB_ERR_SCHEMA,
                                   "%s:1: the header has more than %d columns; not a parbench results CSV", name,
                                   PB_CSV_MAX_COLS);
                goto cleanup;
            }
            if (r == LINE_OPEN_QUOTE || r == LINE_BAD_QUOTE) {
                st = pb_user_error(PB_ERR_SCHEMA, "%s:1: malformed header (%s); not a parbench results CSV", name,
                                   r == LINE_OPEN_QUOTE ? "an unclosed quote" : "a stray quote");
                goto cleanup;
            }
            PB_REQUIRE(r == LINE_OK, PB_ERR_INTERNAL, "%s:1: decoded header outgrew its buffer", name);
            for (size_t i = 0; i < nf; i++) {
                const char *h = c.text + c.off[i];
                if (!*h) {
                    st = pb_user_error(PB_ERR_SCHEMA, "%s:1: header column %zu has no name; not a parbench results CSV",
                                       name, i + 1);
                    goto cleanup;
                }
                for (size_t j = 0; j < i; j++)
                    if (strcmp(h, c.text + c.off[j]) == 0) {
                        st = pb_user_error(PB_ERR_SCHEMA, "%s:1: header names column '%s' twice (columns %zu and %zu)",
                                           name, pb_csv_excerpt(h, ex, sizeof ex), j + 1, i + 1);
                        goto cleanup;
                    }
            }
            c.ncols = nf;
            used = nf;
            pos = next;
            continue;
        }

        if (n == 0) { /* blank line */
            pos = next;
            continue;
        }
        PB_REQUIRE(grow_offsets(&c.off, &off_cap, used, c.ncols) && grow_lines(&c.line, &line_cap, c.nrows),
                   PB_ERR_NOMEM, "host allocation for the rows of %s failed", name);
        size_t nf = 0, bad = 0, w0 = w;
        line_result r = parse_line(s, n, c.text, cap, &w, c.off + used, c.ncols, &nf, &bad);
        PB_REQUIRE(r != LINE_OVERFLOW, PB_ERR_INTERNAL, "%s:%zu: decoded row outgrew its buffer", name, lineno);
        bool skip = false;
        pb_csv_skip_reason why = PB_CSV_SKIP_SHORT;
        if (!has_nl) {
            skip = true; /* a write() cut short: whatever it holds */
            why = PB_CSV_SKIP_NO_NEWLINE;
        } else if (r == LINE_TOO_MANY) {
            st = pb_user_error(PB_ERR_SCHEMA,
                               "%s:%zu: more fields than the header's %zu; rows and header do not match "
                               "(files of different schemas joined?)",
                               name, lineno, c.ncols);
            goto cleanup;
        } else if (r == LINE_BAD_QUOTE) {
            st = pb_user_error(PB_ERR_USAGE,
                               "%s:%zu: malformed CSV in field %zu (column '%s'): a quote inside an unquoted "
                               "field or text after a closing quote",
                               name, lineno, bad,
                               bad <= c.ncols ? pb_csv_excerpt(c.text + c.off[bad - 1], ex, sizeof ex) : "?");
            goto cleanup;
        } else if (r == LINE_OPEN_QUOTE) {
            skip = true;
            why = PB_CSV_SKIP_OPEN_QUOTE;
        } else if (nf < c.ncols) {
            skip = true;
            why = PB_CSV_SKIP_SHORT;
        }
        if (skip) {
            if (c.nskipped < PB_CSV_SKIP_KEPT) c.skip[c.nskipped] = (pb_csv_skip){lineno, nf, why};
            c.nskipped++;
            w = w0; /* drop what was decoded */
        } else {
            c.line[c.nrows++] = lineno;
            used += c.ncols;
        }
        pos = next;
    }
    *out = c;
    return PB_OK;
cleanup:
    pb_csv_free(&c);
    return st;
}

pb_status pb_csv_load(const char *path, pb_csv *out)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: opening a FIFO with no writer must not wait for one; it
     * is refused below with the other files that are not regular */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return pb_user_error(PB_ERR_USAGE, "%s: cannot open (%s)", path, strerror(errno));
    struct stat sb;
    pb_status fst = PB_OK;
    if (fstat(fd, &sb) != 0)
        fst = pb_user_error(PB_ERR_USAGE, "%s: cannot stat (%s)", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        fst = pb_user_error(PB_ERR_USAGE, "%s: is %s; give a results CSV file (regular files only)", path,
                            pb_path_kind(sb.st_mode));
    if (fst != PB_OK) {
        close(fd);
        return fst;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    pb_status st = PB_OK;
    PB_CHECK_ALLOC(buf, cap);
    for (;;) {
        if (n == cap) {
            if (cap > PB_CSV_MAX_BYTES) {
                st = pb_user_error(PB_ERR_USAGE, "%s: larger than %zu MiB, more than a results CSV this reader takes",
                                   path, PB_CSV_MAX_BYTES >> 20);
                goto cleanup;
            }
            size_t want = cap * 2;
            char *p = realloc(buf, want);
            PB_CHECK_ALLOC(p, want);
            buf = p;
            cap = want;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            st = pb_user_error(PB_ERR_USAGE, "%s: read failed (%s)", path, strerror(errno));
            goto cleanup;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    st = pb_csv_parse(path, buf, n, out);
cleanup:
    free(buf);
    close(fd);
    return st;
}

const char *pb_csv_name(const pb_csv *c, size_t col) { return c->text + c->off[col]; }

const char *pb_csv_get(const pb_csv *c, size_t row, size_t col) { return c->text + c->off[(row + 1) * c->ncols + col]; }

int pb_csv_find(const pb_csv *c, const char *name)
{
    for (size_t i = 0; i < c->ncols; i++)
        if (strcmp(pb_csv_name(c, i), name) == 0) return (int)i;
    return -1;
}

bool pb_csv_number(const char *field, double *out)
{
    if (!*field) return false;
    char *end = NULL;
    double x = strtod(field, &end);
    if (end == field || *end || !isfinite(x)) return false;
    *out = x;
    return true;
}
