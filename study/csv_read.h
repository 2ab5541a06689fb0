/* Reading results CSVs back: an RFC 4180 reader (quoted fields, doubled
 * quotes) that loads a whole file into rows of fields, for `bench compare`
 * and anything else that reads the CSV.
 *
 * One physical line is one record. bench never writes a newline inside a
 * field (pb_record_set folds them), so a row torn by a writer killed
 * mid-line damages only its own line and the rows after it stay readable.
 *
 * What a reader meets and what it does (docs/compare.md):
 * - line 1 is the header: names must be non-empty and unique;
 * - a row with fewer fields than the header, or ending inside a quoted
 *   field, is a torn row: skipped and recorded in pb_csv.skip (the caller
 *   prints a notice); so is a last line without its final newline, whatever
 *   it holds, since bench writes a row and its newline in one write();
 * - blank lines are skipped silently; a trailing "\r" is dropped (CRLF);
 * - garbage is an error (exit 2) with "FILE:LINE: ..." and nothing else:
 *   a NUL byte, more fields than the header, a quote inside an unquoted
 *   field or text after a closing quote, a malformed header.
 *
 * Memory is bounded: at most PB_CSV_MAX_BYTES of input; the decoded fields
 * take at most the input's size plus one byte, and the field offsets four
 * bytes per stored field (a stored row has as many fields as the header and
 * at least that many bytes). Any input, valid or not, returns a status
 * without crashing: pb_csv_parse() works on a buffer so a fuzzer can call it. */
#ifndef PB_CSV_READ_H
#define PB_CSV_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../harness/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PB_CSV_MAX_BYTES ((size_t)64 << 20) /* 64 MiB */
#define PB_CSV_MAX_COLS 4096
#define PB_CSV_SKIP_KEPT 8 /* skipped lines remembered in detail */

typedef enum pb_csv_skip_reason {
    PB_CSV_SKIP_SHORT,      /* fewer fields than the header */
    PB_CSV_SKIP_OPEN_QUOTE, /* ends inside a quoted field */
    PB_CSV_SKIP_NO_NEWLINE, /* the last line, without its final newline */
} pb_csv_skip_reason;

typedef struct pb_csv_skip {
    size_t line;   /* 1-based line number */
    size_t fields; /* fields found on it */
    pb_csv_skip_reason reason;
} pb_csv_skip;

typedef struct pb_csv {
    char *text;     /* decoded fields, each NUL-terminated */
    uint32_t *off;  /* offsets into text: the header's ncols, then ncols per row */
    size_t *line;   /* line number of each row */
    size_t ncols;   /* fields in the header */
    size_t nrows;   /* complete rows stored */
    size_t nskipped;                    /* torn lines skipped */
    pb_csv_skip skip[PB_CSV_SKIP_KEPT]; /* the first min(nskipped, PB_CSV_SKIP_KEPT) */
} pb_csv;

/* Parses len bytes of text (need not be NUL-terminated). `name` (the file's
 * path) starts every error message. On failure *out is empty and the error
 * is recorded (PB_ERR_USAGE or PB_ERR_SCHEMA: exit 2; PB_ERR_NOMEM). A
 * header with no rows is not an error here; the caller decides. */
pb_status pb_csv_parse(const char *name, const char *text, size_t len, pb_csv *out);

/* Reads the file at path (a regular file, at most PB_CSV_MAX_BYTES) and
 * parses it. Missing, unreadable, not a regular file (a directory, a FIFO,
 * a device: refused without blocking), too large: PB_ERR_USAGE naming the
 * path. */
pb_status pb_csv_load(const char *path, pb_csv *out);

void pb_csv_free(pb_csv *c);

/* Header name of column col; field of a row ("" for an empty field). The
 * indices must be in range. */
const char *pb_csv_name(const pb_csv *c, size_t col);
const char *pb_csv_get(const pb_csv *c, size_t row, size_t col);
/* Column index by header name, -1 when absent. */
int pb_csv_find(const pb_csv *c, const char *name);

/* A whole field as a finite number, the rule every study tool reads a
 * numeric field by (and the configuration key compares by): strtod's
 * reading of all of it, so "0.5", "1e3" and " 2" are numbers and "",
 * "5x", "inf" and "nan" are not. Looser than a command-line flag's
 * (harness/parse.h): a field is what some program wrote, not what a person
 * typed, so the CLI's refusals ('+', spaces) would only lose rows. */
bool pb_csv_number(const char *field, double *out);

/* Copies at most 48 characters of s into buf for an error message, control
 * characters as '?', "..." when cut, so a message stays one line. */
const char *pb_csv_excerpt(const char *s, char *buf, size_t len);

/* A one-line description of a skipped line ("12 of 77 fields", ...). */
const char *pb_csv_skip_text(const pb_csv_skip *s, size_t ncols, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* PB_CSV_READ_H */
