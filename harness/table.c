#include "table.h"

#include <stdbool.h>
#include <string.h>

enum { MAX_CELLS = 8 };

/* The next line of a cell at *p, at most width bytes, ending at a space
 * where there is one; *p moves past it and the spaces after it. */
static int take_line(const char **p, int width)
{
    const char *s = *p;
    int len = (int)strlen(s);
    if (len > width) {
        int cut = width;
        while (cut > 0 && s[cut] != ' ') cut--;
        len = cut > 0 ? cut : width;
    }
    const char *next = s + len;
    while (*next == ' ') next++;
    *p = next;
    return len;
}

void pb_table_row(FILE *out, int n, const int *widths, const char *const *cells)
{
    const char *rest[MAX_CELLS];
    if (n > MAX_CELLS) n = MAX_CELLS;
    for (int i = 0; i < n; i++) rest[i] = cells[i] ? cells[i] : "";
    bool first = true;
    for (;;) {
        bool more = false;
        for (int i = 0; i < n; i++) more |= *rest[i] != '\0';
        if (!more && !first) return;
        first = false;
        char line[4 * PB_TABLE_COLUMNS];
        int used = snprintf(line, sizeof line, "  ");
        for (int i = 0; i < n && used < (int)sizeof line; i++) {
            const char *s = rest[i];
            int len = take_line(&rest[i], widths[i]);
            used += snprintf(line + used, sizeof line - used, "%s%-*.*s", i ? "  " : "", widths[i], len, s);
        }
        if (used >= (int)sizeof line) used = (int)sizeof line - 1;
        while (used > 0 && line[used - 1] == ' ') used--;
        fprintf(out, "%.*s\n", used, line);
    }
}

int pb_table_rest(int n, const int *widths)
{
    int used = 2;
    for (int i = 0; i < n; i++) used += widths[i] + 2;
    return PB_TABLE_COLUMNS - used;
}
