#define _POSIX_C_SOURCE 200809L
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pb_strbuf_putc(pb_strbuf *b, char c)
{
    if (b->oom) return;
    if (b->n + 2 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
}

void pb_strbuf_puts(pb_strbuf *b, const char *s)
{
    for (; *s; s++) pb_strbuf_putc(b, *s);
}

void pb_strbuf_printf(pb_strbuf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    pb_strbuf_puts(b, tmp);
}

char *pb_strbuf_take(pb_strbuf *b)
{
    if (b->oom) {
        free(b->p);
        *b = (pb_strbuf){0};
        return NULL;
    }
    char *p = b->p ? b->p : strdup("");
    *b = (pb_strbuf){0};
    return p;
}
