/* Minimal test harness: a test is a function; it passes when none of its CHECKs failed.
 * Each test program ends with "N passed, N failed" (tests/run_all.sh sums these lines). */
#ifndef ADVNN_TEST_HARNESS_H
#define ADVNN_TEST_HARNESS_H
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <math.h>

static int th_pass_count, th_fail_count, th_cur_failed;
static const char *th_cur_name;

/* CHECK(cond, fmt, ...): records a failure of the current test with a message; never aborts. */
#define CHECK(cond, ...) do { if (!(cond)) { \
    if (!th_cur_failed) fprintf(stderr, "FAIL %s\n", th_cur_name); \
    th_cur_failed++; \
    if (th_cur_failed <= 20) { fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } } } while (0)

#define RUN(fn) do { th_cur_name = #fn; th_cur_failed = 0; fn(); \
    if (th_cur_failed) th_fail_count++; else { th_pass_count++; printf("ok   %s\n", #fn); } \
    fflush(stdout); } while (0)

static inline int th_report(void) {
    printf("%d passed, %d failed\n", th_pass_count, th_fail_count);
    return th_fail_count ? 1 : 0;
}

/* |a-b| <= atol + rtol*|b| */
static inline int th_close(double a, double b, double rtol, double atol) {
    if (isnan(a) || isnan(b)) return 0;
    return fabs(a - b) <= atol + rtol * fabs(b);
}
#endif
