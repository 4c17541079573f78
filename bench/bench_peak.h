/* bench_peak.h - one core's measured fp32 FMA peak, for the benchmarks' "fraction of peak" figures
 * (bench_kernels.c, bench_workloads.c). 12 independent chains of 8-wide FMAs, best of 10 short runs
 * (robust to other processes on a shared machine); 0 where AVX2+FMA are not compiled in (pass --peak). */
#ifndef ADVNN_BENCH_PEAK_H
#define ADVNN_BENCH_PEAK_H
#include <time.h>

static double bench_peak_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static volatile float bench_peak_sink;
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static double measure_peak(void) {
    double best = 0; /* best of 10 short runs: robust to other processes on a shared machine */
    for (int r = 0; r < 10; r++) {
        __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
        /* distinct starting values so the compiler cannot merge identical chains */
        __m256 x0 = _mm256_set1_ps(1.00f), x1 = _mm256_set1_ps(1.01f), x2 = _mm256_set1_ps(1.02f);
        __m256 x3 = _mm256_set1_ps(1.03f), x4 = _mm256_set1_ps(1.04f), x5 = _mm256_set1_ps(1.05f);
        __m256 x6 = _mm256_set1_ps(1.06f), x7 = _mm256_set1_ps(1.07f), x8 = _mm256_set1_ps(1.08f);
        __m256 x9 = _mm256_set1_ps(1.09f), x10 = _mm256_set1_ps(1.10f), x11 = _mm256_set1_ps(1.11f);
        long iters = 20000000L;
        double t0 = bench_peak_now();
        for (long i = 0; i < iters; i++) {
            x0 = _mm256_fmadd_ps(x0, m, c); x1 = _mm256_fmadd_ps(x1, m, c); x2 = _mm256_fmadd_ps(x2, m, c);
            x3 = _mm256_fmadd_ps(x3, m, c); x4 = _mm256_fmadd_ps(x4, m, c); x5 = _mm256_fmadd_ps(x5, m, c);
            x6 = _mm256_fmadd_ps(x6, m, c); x7 = _mm256_fmadd_ps(x7, m, c); x8 = _mm256_fmadd_ps(x8, m, c);
            x9 = _mm256_fmadd_ps(x9, m, c); x10 = _mm256_fmadd_ps(x10, m, c); x11 = _mm256_fmadd_ps(x11, m, c);
            __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
            __asm__ volatile("" : "+x"(x6), "+x"(x7), "+x"(x8), "+x"(x9), "+x"(x10), "+x"(x11));
        }
        double t = bench_peak_now() - t0;
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
static double measure_peak(void) { return 0.0; } /* pass --peak on other machines */
#endif
#endif
