/* examples/cli.h -- command-line number parsing shared by the examples (static inline: a program
 * that uses only one of them compiles without unused-function warnings). */
#ifndef ADVNN_EXAMPLES_CLI_H
#define ADVNN_EXAMPLES_CLI_H
#include <errno.h>
#include <stdlib.h>

/* *out = s as a base-10 integer in [lo, hi]; 0 (and *out untouched) for junk, overflow or range */
static inline int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* *out = s as a finite number in [lo, hi]; 0 (and *out untouched) otherwise (NaN included) */
static inline int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) return 0;
    *out = v;
    return 1;
}
#endif
