/* Text tables for a terminal: cells side by side, each wrapped at spaces
 * to its column's width, so a long description or reason stays in its own
 * column instead of running into the next (bench list). */
#ifndef PB_TABLE_H
#define PB_TABLE_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The width a listing is laid out for: lines stay within it. */
#define PB_TABLE_COLUMNS 80

/* One row of n cells after a two-space indent, two spaces between cells:
 * cell i wrapped to widths[i] columns (a word longer than that is cut),
 * continuation lines blank in the other cells; no trailing blanks. */
void pb_table_row(FILE *out, int n, const int *widths, const char *const *cells);
/* The width PB_TABLE_COLUMNS leaves to a column after the n given ones. */
int pb_table_rest(int n, const int *widths);

#ifdef __cplusplus
}
#endif
#endif /* PB_TABLE_H */
