/* A growable string for the study tools (gnuplot's -e assignments, lists in
 * notices). Out of memory is sticky: later appends do nothing and take
 * returns NULL, so a caller checks once, at the end. */
#ifndef PB_STRBUF_H
#define PB_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct pb_strbuf {
    char *p;
    size_t n, cap;
    bool oom;
} pb_strbuf;

void pb_strbuf_putc(pb_strbuf *b, char c);
void pb_strbuf_puts(pb_strbuf *b, const char *s);
/* Appends at most 2047 bytes of the formatted text. */
void pb_strbuf_printf(pb_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The string (the caller frees it; "" when nothing was appended), NULL when
 * an append ran out of memory; b is empty again either way. */
char *pb_strbuf_take(pb_strbuf *b);

#endif /* PB_STRBUF_H */
