/* DisCo forward + backward (value and d value / d score) on one core: advnn_disco at N = 1024, 8192,
 * 65536 and 10^6 rows (weighted, ~half the rows with weight 0 as background-only weights leave them).
 * Median wall and CPU time of repeated calls (at least 5 and 0.5 s per size; 3 at 10^6); the CPU time
 * (user + system of this process) is what to read on a loaded machine. Compare with
 * tools/bench_disco_torch.py, the reference's O(N^2) formulation in PyTorch at the sizes it can hold.
 * Usage: bench_disco [N ...]   (default 1024 8192 65536 1000000) */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime: CPU time, steadier than wall time on a shared machine */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    static const long def[4] = {1024, 8192, 65536, 1000000};
    long sizes[16];
    int ns = 0, k;
    for (k = 1; k < argc && ns < 16; k++) { sizes[ns] = atol(argv[k]); if (sizes[ns] >= 2) ns++; }
    if (ns == 0) for (k = 0; k < 4; k++) sizes[ns++] = def[k];
    printf("DisCo forward+backward, advnn %s, one thread (times on a shared machine are noisy)\n", advnn_simd_name());
    printf("%10s %12s %12s %12s %6s %14s\n", "N", "median_ms", "min_ms", "cpu_med_ms", "reps", "dCorr^2");
    for (k = 0; k < ns; k++) {
        long n = sizes[k], i;
        float *x = (float *)malloc((size_t)n * sizeof(float)), *y = (float *)malloc((size_t)n * sizeof(float));
        float *w = (float *)malloc((size_t)n * sizeof(float));
        double *g = (double *)malloc((size_t)n * sizeof(double)), t[200], tc[200], v = 0, t0;
        int reps = 0, minreps = n >= 1000000 ? 3 : 5;
        uint64_t s = 12345;
        if (!x || !y || !w || !g) { fprintf(stderr, "out of memory at N = %ld\n", n); return 1; }
        for (i = 0; i < n; i++) {   /* a mass and a score that depends on it; half the rows signal (weight 0) */
            double u1, u2;
            s = s * 6364136223846793005ULL + 1442695040888963407ULL; u1 = (double)(s >> 11) / 9007199254740992.0;
            s = s * 6364136223846793005ULL + 1442695040888963407ULL; u2 = (double)(s >> 11) / 9007199254740992.0;
            x[i] = (float)(50 + 250 * u1); y[i] = (float)(0.3 * u1 + 0.7 * u2); w[i] = (i & 1) ? 0.0f : (float)(0.5 + u2);
        }
        t0 = now();
        while (reps < 200 && (reps < minreps || now() - t0 < 0.5)) {
            double a = now(), ac = cpu();
            if (advnn_disco(x, y, w, n, 1.0, &v, NULL, g) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); return 1; }
            tc[reps] = cpu() - ac;
            t[reps++] = now() - a;
        }
        qsort(t, (size_t)reps, sizeof(double), cmpd);
        qsort(tc, (size_t)reps, sizeof(double), cmpd);
        printf("%10ld %12.3f %12.3f %12.3f %6d %14.6g\n", n, 1e3 * t[reps / 2], 1e3 * t[0], 1e3 * tc[reps / 2], reps, v);
        free(x); free(y); free(w); free(g);
    }
    return 0;
}
