/* Numbers given on a command line (run's flags, sweep's, compare's), parsed
 * strictly and alike everywhere: the whole text is the number, with no
 * space before or after it and no '+' sign, so " 5", "+5" and "5 " are all
 * refused, as "5x" is. Ranges are the caller's. */
#ifndef PB_PARSE_H
#define PB_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* An optional '-' and decimal digits. A value beyond long long reads as
 * LLONG_MIN/LLONG_MAX, so the caller's range check calls it out of range. */
bool pb_parse_int(const char *text, long long *out);

/* Decimal digits only, at most UINT64_MAX. */
bool pb_parse_u64(const char *text, uint64_t *out);

/* The next integer of a comma-separated list at *p (as pb_parse_int), *p
 * moved past it and its comma; false when it is not one, or a comma ends
 * the list. */
bool pb_parse_list_int(const char **p, long long *out);

/* A finite number as strtod reads it ("0.5", "-1e-3", ".5"), starting with
 * a digit, '-' or '.'. */
bool pb_parse_double(const char *text, double *out);

#endif /* PB_PARSE_H */
