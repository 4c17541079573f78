/* bench_common.h - what the benchmarks share: a monotonic clock, medians and percentiles, the load
 * during a timed loop (this process's CPU per wall second, other processes' busy cores from
 * /proc/stat), peak RSS, and one core's measured fp32 FMA peak for the "fraction of peak" figures
 * (12 independent chains of 8-wide FMAs, best of 10 short runs, robust to other processes on a
 * shared machine; 0 where AVX2+FMA are not compiled in: pass --peak). Needs _POSIX_C_SOURCE. */
#ifndef ADVNN_BENCH_COMMON_H
#define ADVNN_BENCH_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

static inline double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static inline int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static inline double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_d); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }
/* the torch script's percentile: sorted[min(n - 1, int(p n))] (v sorted by median()) */
static inline double pct(const double *v, int n, double p) { int k = (int)(p * n); return v[k < n - 1 ? k : n - 1]; }

/* ---------------------------------------------------------------- load: own CPU and other processes' */
static inline double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}
static inline double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* kB on Linux */
}
/* busy and total jiffies of the whole machine (first line of /proc/stat); 0 if unreadable */
static inline int jiffies(double *busy, double *total) {
    unsigned long long v[8] = {0};
    int i, got;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got != 8) return 0;
    *total = 0;
    for (i = 0; i < 8; i++) *total += (double)v[i];
    *busy = *total - (double)v[3] - (double)v[4];   /* less idle and iowait */
    return 1;
}
typedef struct { double c0, w0, b0, t0; int ok; } load_t;
static inline void load_start(load_t *l) { l->ok = jiffies(&l->b0, &l->t0); l->c0 = cpu_seconds(); l->w0 = now(); }
/* own cores (CPU / wall) and other processes' cores (-1 when /proc/stat is unreadable) */
static inline void load_done(const load_t *l, double *own, double *other) {
    double w = now() - l->w0, b1, t1, hz = (double)sysconf(_SC_CLK_TCK);
    *own = (cpu_seconds() - l->c0) / w;
    *other = -1;
    if (l->ok && jiffies(&b1, &t1) && hz > 0) {
        double busy = (b1 - l->b0) / hz / w;
        *other = busy - *own > 0 ? busy - *own : 0;
    }
}

/* ---- FMA peak (1 core) */
static volatile float bench_peak_sink;
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline double measure_peak(void) {
    double best = 0; /* best of 10 short runs: robust to other processes on a shared machine */
    for (int r = 0; r < 10; r++) {
        __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        /* distinct starting values so the compiler cannot merge identical chains */
        __m256 x0 = _mm256_set1_ps(1.00f), x1 = _mm256_set1_ps(1.01f), x2 = _mm256_set1_ps(1.02f);
        __m256 x3 = _mm256_set1_ps(1.03f), x4 = _mm256_set1_ps(1.04f), x5 = _mm256_set1_ps(1.05f);
        __m256 x6 = _mm256_set1_ps(1.06f), x7 = _mm256_set1_ps(1.07f), x8 = _mm256_set1_ps(1.08f);
        __m256 x9 = _mm256_set1_ps(1.09f), x10 = _mm256_set1_ps(1.10f), x11 = _mm256_set1_ps(1.11f);
        long iters = 20000000L;
        double t0 = now();
        for (long i = 0; i < iters; i++) {
            x0 = _mm256_fmadd_ps(x0, m, c); x1 = _mm256_fmadd_ps(x1, m, c); x2 = _mm256_fmadd_ps(x2, m, c);
            x3 = _mm256_fmadd_ps(x3, m, c); x4 = _mm256_fmadd_ps(x4, m, c); x5 = _mm256_fmadd_ps(x5, m, c);
            x6 = _mm256_fmadd_ps(x6, m, c); x7 = _mm256_fmadd_ps(x7, m, c); x8 = _mm256_fmadd_ps(x8, m, c);
            x9 = _mm256_fmadd_ps(x9, m, c); x10 = _mm256_fmadd_ps(x10, m, c); x11 = _mm256_fmadd_ps(x11, m, c);
            __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
            __asm__ volatile("" : "+x"(x6), "+x"(x7), "+x"(x8), "+x"(x9), "+x"(x10), "+x"(x11));
        }
        double t = now() - t0;
        __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                                 _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
        s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
        float o[8];
        _mm256_storeu_ps(o, s);
        bench_peak_sink = o[0];
        double gf = (double)iters * 12 * 16 / t * 1e-9;
        if (gf > best) best = gf;
    }
    return best;
}
#else
static inline double measure_peak(void) { return 0.0; } /* pass --peak on other machines */
#endif
#endif
