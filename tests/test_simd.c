/* test_simd.c - every kernel of advnn_simd.h: live path (AVX2 / NEON / scalar) vs the scalar
 * reference, and the scalar reference vs a double-precision computation.
 *
 * Build and run from the repo root, e.g.
 *   gcc -std=c11 -O2 -mavx2 -mfma -I. tests/test_simd.c -o test_simd -lsleef -lm && ./test_simd
 *
 * Tolerances (|got - want| <= atol + rtol*|want| unless noted):
 *  - reductions (dot/sum/sumsq) live vs ref: the two sum in different orders, so the error of
 *    each vs the exact sum is <= n*eps*sum|terms| (eps = 2^-24 ~ 6e-8); we allow 2*n*6e-8*sum|terms|
 *    (+1e-30). The ref vs double check uses the same bound (one order only, so it is 2x loose).
 *  - bn_rows: xhat bitwise, y within one rounding of the ref
 *  - bn_sums, bn_sums2, bn_bwd_dx: bitwise (the same double operations in the same order); the
 *    ref's sums within 2 (M + 2) * 1.2e-16 * sum|terms| of a long double sum
 *  - max, add_bias, col_sums, axpy, scale: exact or 1 rounding: bitwise or rtol 1.2e-7 (axpy: the
 *    vector path uses one FMA rounding, the ref two).
 *  - SGEMM: |C - C_ref| <= 2*K*6e-8*|alpha|*sum_k|a_ik*b_kj| + 2*6e-8*|beta*c| + 1e-30, i.e. the
 *    classical gamma_K bound of each of the two summation orders, computed per element. The ref
 *    vs double uses the same per-element bound.
 *  - exp/log/tanh: SLEEF u10 exp/log (<= 1 ulp), u35 tanh (<= 3.5 ulp; measured 1.9e-7 relative) vs
 *    glibc (<= 1-2 ulp): rtol 4e-7 + atol 1e-37.
 *  - erf given exp(-x^2) (advnn_verf_e_f64): live and ref within 2 ulp of glibc's erf (its series and
 *    polynomial fit measure 2.0 at worst).
 *  - exp/log/log1p/erf in double: SLEEF u10 (<= 1 ulp) vs glibc (<= 1 ulp for these four): within
 *    2 ulp of the glibc value (ulp of the result's binade; exact for 0, +-inf and +-1).
 *  - activations vs double: each output is a short composition of u10 functions (sigmoid:
 *    exp, add, divide; softplus: exp, log1p, add), so rtol 2e-6 (~16 ulp); atol 1e-6 for the
 *    derivatives computed from y (y*(1-y), 1-y*y suffer cancellation of y's own rounding ~6e-8)
 *    and 1e-7 elsewhere, with dy in [-1,1].
 *  - dropout_mask: live vs ref bitwise (the same generator and compares); the kept fraction of
 *    2^20 draws within 6 binomial sigmas of 1 - rate, overall and per position mod 8 (one
 *    position per stream half), and keeps 1..16 apart uncorrelated (|r| < 6/sqrt(n)).
 *  - softmax: row sums to 1 within 1e-5 (N <= 257 terms of relative error 2e-6); log_softmax
 *    vs log(softmax double) with rtol 2e-6 + atol 2e-5 (log of sum: absolute error ~ N*eps).
 */
#define ADVNN_SIMD_IMPLEMENTATION
#include "advnn_simd.h"
#include "harness.h"
#include <float.h>
#include <stdint.h>

static const int SIZES[] = {1, 3, 7, 8, 9, 17, 63, 64, 65, 257};
#define NSIZES ((int)(sizeof SIZES / sizeof SIZES[0]))
static const float SENT = 12345.25f; /* sentinel in memory a kernel must not touch */

static uint32_t rng_state = 12345u;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}
static void fill_rand(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}
static void fill_val(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++) p[i] = v;
}
/* malloc'd and deliberately misaligned by one float */
static float *falloc(size_t n) {
    float *p = (float *)malloc((n + 1) * sizeof(float));
    return p + 1;
}
static void ffree(float *p) { free(p - 1); }

static int same_float(float a, float b) { return (isnan(a) && isnan(b)) || a == b; }
static int close_f(double got, double want, double rtol, double atol) {
    if (isinf(want) || isinf(got)) return got == want;
    return th_close(got, want, rtol, atol);
}

/* ------------------------------------------------------------------------------------------ */
static void test_name(void) {
    const char *n = advnn_simd_name();
    CHECK(n != NULL, "name is NULL");
#if defined(ADVNN_FORCE_SCALAR)
    CHECK(strcmp(n, "scalar") == 0, "expected scalar, got %s", n);
#elif defined(__AVX2__) && defined(__FMA__)
    CHECK(strcmp(n, "avx2+fma") == 0, "expected avx2+fma, got %s", n);
#elif defined(__ARM_NEON) && defined(__aarch64__)
    CHECK(strcmp(n, "neon") == 0, "expected neon, got %s", n);
#endif
    printf("     live path: %s\n", n);
}

/* ------------------------------------------------------------------------------------------ */
/* Vectors                                                                                     */
static void test_vector_kernels(void) {
    const double eps = 6e-8;
    for (int si = -1; si < NSIZES; si++) {
        int n = si < 0 ? 0 : SIZES[si];
        for (int incx = 1; incx <= 3; incx++)
            for (int incy = 1; incy <= 3; incy++) {
                size_t lx = (size_t)(n > 0 ? (n - 1) * incx + 1 : 0) + 4, ly = (size_t)(n > 0 ? (n - 1) * incy + 1 : 0) + 4;
                float *x = falloc(lx), *y = falloc(ly), *y2 = falloc(ly);
                fill_val(x, lx, SENT); fill_val(y, ly, SENT);
                for (int i = 0; i < n; i++) { x[(size_t)i * incx] = frand(); y[(size_t)i * incy] = frand(); }
                memcpy(y2, y, ly * sizeof(float));
                float *y0 = falloc(ly);
                memcpy(y0, y, ly * sizeof(float));
                /* dot */
                double exact = 0, mag = 0;
                for (int i = 0; i < n; i++) {
                    double t = (double)x[(size_t)i * incx] * y[(size_t)i * incy];
                    exact += t; mag += fabs(t);
                }
                double tol = 2 * n * eps * mag + 1e-30;
                float d = advnn_dot(n, x, incx, y, incy), dr = advnn__dot_ref(n, x, incx, y, incy);
                CHECK(fabs(d - exact) <= tol, "dot n=%d inc=%d,%d: %g vs %g", n, incx, incy, d, exact);
                CHECK(fabs(dr - exact) <= tol, "dot_ref n=%d: %g vs %g", n, dr, exact);
                if (incy == 1) {
                    /* sum, sumsq, max on x */
                    double s = 0, sm = 0, q = 0, mx = -INFINITY;
                    for (int i = 0; i < n; i++) {
                        double v = x[(size_t)i * incx];
                        s += v; sm += fabs(v); q += v * v; mx = v > mx ? v : mx;
                    }
                    float a = advnn_sum(n, x, incx), ar = advnn__sum_ref(n, x, incx);
                    CHECK(fabs(a - s) <= 2 * n * eps * sm + 1e-30, "sum n=%d inc=%d: %g vs %g", n, incx, a, s);
                    CHECK(fabs(ar - s) <= 2 * n * eps * sm + 1e-30, "sum_ref n=%d: %g vs %g", n, ar, s);
                    a = advnn_sumsq(n, x, incx); ar = advnn__sumsq_ref(n, x, incx);
                    CHECK(fabs(a - q) <= 2 * n * eps * q + 1e-30, "sumsq n=%d inc=%d: %g vs %g", n, incx, a, q);
                    CHECK(fabs(ar - q) <= 2 * n * eps * q + 1e-30, "sumsq_ref n=%d: %g vs %g", n, ar, q);
                    a = advnn_max(n, x, incx); ar = advnn__max_ref(n, x, incx);
                    CHECK(a == (float)mx && ar == (float)mx, "max n=%d inc=%d: %g %g vs %g", n, incx, a, ar, mx);
                }
                /* axpy: y += a x */
                float al = 0.75f;
                advnn_axpy(n, al, x, incx, y, incy);
                advnn__axpy_ref(n, al, x, incx, y2, incy);
                for (size_t k = 0; k < ly; k++) {
                    int on = k % (size_t)incy == 0 && k / (size_t)incy < (size_t)n;
                    if (!on) { CHECK(y[k] == SENT, "axpy touched y[%zu] n=%d inc=%d", k, n, incy); continue; }
                    /* one rounding (FMA) vs two: both within 1.2e-7*(|y0|+|a x|) of the exact value */
                    double ax = (double)al * x[k / (size_t)incy * incx], exact = y0[k] + ax;
                    double want = (double)y2[k], tl = 1.2e-7 * (fabs(y0[k]) + fabs(ax)) + 1e-30;
                    CHECK(fabs(y2[k] - exact) <= tl, "axpy_ref n=%d k=%zu: %g vs %g", n, k, y2[k], exact);
                    CHECK(fabs(y[k] - want) <= 2 * tl, "axpy n=%d inc=%d,%d k=%zu: %g vs %g", n, incx, incy, k, y[k], want);
                }
                /* scale x *= a */
                float *x2 = falloc(lx);
                memcpy(x2, x, lx * sizeof(float));
                advnn_scale(n, -1.5f, x, incx);
                for (size_t k = 0; k < lx; k++) {
                    int on = k % (size_t)incx == 0 && k / (size_t)incx < (size_t)n;
                    float want = on ? x2[k] * -1.5f : SENT;
                    CHECK(x[k] == want, "scale n=%d inc=%d k=%zu: %g vs %g", n, incx, k, x[k], want);
                }
                ffree(x2); ffree(x); ffree(y); ffree(y2); ffree(y0);
            }
    }
    /* the ref axpy vs double */
    {
        float x[5] = {1, 2, 3, 4, 5}, y[5] = {0.5f, -1, 2, 0, 1e-3f};
        advnn__axpy_ref(5, 0.25f, x, 1, y, 1);
        double want[5] = {0.75, -0.5, 2.75, 1.0, 1.25 + 1e-3};
        for (int i = 0; i < 5; i++) CHECK(close_f(y[i], want[i], 1.2e-7, 0), "axpy_ref %d", i);
    }
    CHECK(advnn_max(0, NULL, 1) == -INFINITY, "max of empty");
    CHECK(advnn_sum(0, NULL, 1) == 0.0f && advnn_dot(0, NULL, 1, NULL, 1) == 0.0f, "empty sums");
}

/* ------------------------------------------------------------------------------------------ */
/* Matrices                                                                                    */
static void test_matrix_kernels(void) {
    for (int mi = 0; mi < NSIZES; mi++)
        for (int ni = 0; ni < NSIZES; ni++) {
            int M = SIZES[mi], N = SIZES[ni];
            if (M == 257 && N == 257) continue;
            for (int pad = 0; pad <= 3; pad += 3) {
                int ld = N + pad;
                size_t sz = (size_t)M * ld;
                float *X = falloc(sz), *X2 = falloc(sz), *b = falloc((size_t)N + 1);
                float *o = falloc((size_t)(M > N ? M : N) + 1), *o2 = falloc((size_t)(M > N ? M : N) + 1);
                fill_val(X, sz, SENT);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) X[(size_t)i * ld + j] = frand();
                fill_rand(b, (size_t)N, 1.0f);
                b[N] = SENT;
                memcpy(X2, X, sz * sizeof(float));
                /* add_bias: bitwise equal to the ref (one add per element) */
                advnn_add_bias(M, N, X, ld, b);
                advnn__add_bias_ref(M, N, X2, ld, b);
                int bad = 0;
                for (size_t k = 0; k < sz; k++) bad += !same_float(X[k], X2[k]);
                CHECK(!bad, "add_bias M=%d N=%d ld=%d: %d mismatches", M, N, ld, bad);
                for (int i = 0; i < M; i++)
                    for (int j = N; j < ld; j++) CHECK(X[(size_t)i * ld + j] == SENT, "add_bias wrote padding");
                /* col_sums accumulates; same order as ref -> bitwise */
                for (int j = 0; j < N; j++) o[j] = o2[j] = (float)j;
                o[N] = o2[N] = SENT;
                advnn_col_sums(M, N, X, ld, o);
                advnn__col_sums_ref(M, N, X, ld, o2);
                bad = 0;
                for (int j = 0; j <= N; j++) bad += !same_float(o[j], o2[j]);
                CHECK(!bad, "col_sums M=%d N=%d: %d mismatches", M, N, bad);
                CHECK(o[N] == SENT, "col_sums wrote past N");
                for (int j = 0; j < N; j++) { /* ref vs double */
                    double s = j, sm = fabs((double)j);
                    for (int i = 0; i < M; i++) { s += X[(size_t)i * ld + j]; sm += fabs(X[(size_t)i * ld + j]); }
                    CHECK(fabs(o2[j] - s) <= 2 * (M + 1) * 6e-8 * sm, "col_sums_ref j=%d: %g vs %g", j, o2[j], s);
                }
                /* bn_rows: xhat bitwise (one subtract, one multiply), y within one rounding of the ref
                 * (bitwise unless a compiler fuses the ref's multiply-add) */
                {
                    float *mu = falloc((size_t)N + 1), *is = falloc((size_t)N + 1), *ga = falloc((size_t)N + 1);
                    float *h1 = falloc(sz), *h2 = falloc(sz), *y1 = falloc(sz), *y2 = falloc(sz);
                    fill_rand(mu, (size_t)N, 1.0f); fill_rand(is, (size_t)N, 2.0f); fill_rand(ga, (size_t)N, 1.5f);
                    fill_val(h1, sz, SENT); fill_val(y1, sz, SENT);
                    advnn_bn_rows(M, N, X, ld, mu, is, ga, b, h1, y1);
                    advnn__bn_rows_ref(M, N, X, ld, mu, is, ga, b, h2, y2);
                    bad = 0;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            size_t k = (size_t)i * ld + j;
                            double want = (double)ga[j] * h2[k];
                            bad += !same_float(h1[k], h2[k]);
                            bad += !(fabs((double)y1[k] - y2[k]) <= 1.2e-7 * (fabs(want) + fabs((double)b[j])));
                            bad += !(fabs(h2[k] - ((double)X[k] - mu[j]) * is[j]) <= 1.2e-7 * (fabs((double)X[k] - mu[j]) + 1e-30) * fabs(is[j]) * 2 + 1e-30);
                        }
                    CHECK(!bad, "bn_rows M=%d N=%d ld=%d: %d mismatches", M, N, ld, bad);
                    for (int i = 0; i < M; i++)
                        for (int j = N; j < ld; j++) CHECK(h1[(size_t)i * ld + j] == SENT && y1[(size_t)i * ld + j] == SENT, "bn_rows wrote padding");
                    /* xhat NULL (inference): the same y, live and ref */
                    fill_val(h2, sz, SENT);
                    advnn_bn_rows(M, N, X, ld, mu, is, ga, b, NULL, h2);
                    bad = 0;
                    for (size_t k = 0; k < sz; k++) bad += !same_float(h2[k], y1[k]);
                    advnn__bn_rows_ref(M, N, X, ld, mu, is, ga, b, NULL, h2);
                    for (size_t k = 0; k < sz; k++) bad += !same_float(h2[k], y2[k]) && (size_t)(k % ld) < (size_t)N;
                    CHECK(!bad, "bn_rows without xhat M=%d N=%d ld=%d: %d outputs differ", M, N, ld, bad);
                    ffree(mu); ffree(is); ffree(ga); ffree(h1); ffree(h2); ffree(y1); ffree(y2);
                }
                /* bn_sums / bn_sums2 / bn_bwd_dx (double sums in row order, multiply and add, no FMA):
                 * bitwise equal to the ref; the ref within the double rounding of a long double sum */
                {
                    double *s1 = (double *)malloc(3 * ((size_t)N + 1) * sizeof(double)), *s2 = (double *)malloc(3 * ((size_t)N + 1) * sizeof(double));
                    double *c = (double *)malloc(((size_t)N + 1) * sizeof(double)), *kk = (double *)malloc(((size_t)N + 1) * sizeof(double));
                    float *d1 = falloc(sz), *d2 = falloc(sz);
                    for (int j = 0; j < N; j++) { c[j] = 0.3 * frand(); kk[j] = 0.01 * frand(); }
                    for (int pass = 0; pass < 3; pass++) {
                        for (int j = 0; j < 2 * N + 1; j++) s1[j] = s2[j] = 0.25 * j;
                        if (pass == 0) { advnn_bn_sums(M, N, X, ld, NULL, s1); advnn__bn_sums_ref(M, N, X, ld, NULL, s2); }
                        if (pass == 1) { advnn_bn_sums(M, N, X, ld, c, s1); advnn__bn_sums_ref(M, N, X, ld, c, s2); }
                        if (pass == 2) { advnn_bn_sums2(M, N, X, X2, ld, s1); advnn__bn_sums2_ref(M, N, X, X2, ld, s2); }
                        bad = 0;
                        for (int j = 0; j < 2 * N + 1; j++) bad += s1[j] != s2[j];
                        CHECK(!bad, "bn_sums pass %d M=%d N=%d ld=%d: %d mismatches (or writes past the columns)", pass, M, N, ld, bad);
                        for (int j = 0; j < N; j++) {
                            long double w = 0.25L * j, a = fabsl(w);
                            for (int i = 0; i < M; i++) {
                                long double x = X[(size_t)i * ld + j], t = pass == 0 ? x : pass == 1 ? (x - c[j]) * (x - c[j]) : x;
                                w += t; a += fabsl(t);
                            }
                            CHECK(fabsl(s2[j] - w) <= 2 * (M + 2) * 1.2e-16L * a + 1e-300L, "bn_sums_ref pass %d j=%d: %.17g vs %.17Lg", pass, j, s2[j], w);
                        }
                    }
                    fill_rand(d1, sz, 1.0f);
                    for (int i = 0; i < M; i++) for (int j = N; j < ld; j++) d1[(size_t)i * ld + j] = SENT;
                    memcpy(d2, d1, sz * sizeof(float));
                    advnn_bn_bwd_dx(M, N, X, X2, ld, kk, (double)M, s2, d1);
                    advnn__bn_bwd_dx_ref(M, N, X, X2, ld, kk, (double)M, s2, d2, 0);
                    bad = 0;
                    for (size_t k = 0; k < sz; k++) bad += !same_float(d1[k], d2[k]);
                    CHECK(!bad, "bn_bwd_dx M=%d N=%d ld=%d: %d mismatches (padding included)", M, N, ld, bad);
                    /* bn_bwd_dx_set: the bits bn_bwd_dx leaves on zeros (-0 terms from a -0 and a +0 factor
                     * included), dx's old contents never read (NaN), the padding untouched */
                    kk[0] = -0.0; kk[N / 2] = N > 1 ? 0.0 : kk[N / 2];
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < ld; j++) {
                            d1[(size_t)i * ld + j] = j < N ? 0.0f : SENT;
                            d2[(size_t)i * ld + j] = j < N ? NAN : SENT;
                        }
                    advnn_bn_bwd_dx(M, N, X, X2, ld, kk, (double)M, s2, d1);
                    advnn_bn_bwd_dx_set(M, N, X, X2, ld, kk, (double)M, s2, d2);
                    CHECK(!memcmp(d1, d2, sz * sizeof(float)), "bn_bwd_dx_set M=%d N=%d ld=%d: not the sums onto zeros", M, N, ld);
                    for (int i = 0; i < M; i++) for (int j = 0; j < ld; j++) d2[(size_t)i * ld + j] = j < N ? NAN : SENT;
                    advnn__bn_bwd_dx_ref(M, N, X, X2, ld, kk, (double)M, s2, d2, 1);
                    CHECK(!memcmp(d1, d2, sz * sizeof(float)), "bn_bwd_dx_ref set M=%d N=%d ld=%d: not the sums onto zeros", M, N, ld);
                    free(s1); free(s2); free(c); free(kk); ffree(d1); ffree(d2);
                }
                /* row_max: exact */
                o[M] = SENT;
                advnn_row_max(M, N, X, ld, o);
                for (int i = 0; i < M; i++) {
                    float m = -INFINITY;
                    for (int j = 0; j < N; j++) m = X[(size_t)i * ld + j] > m ? X[(size_t)i * ld + j] : m;
                    CHECK(o[i] == m, "row_max M=%d N=%d i=%d: %g vs %g", M, N, i, o[i], m);
                }
                CHECK(o[M] == SENT, "row_max wrote past M");
                ffree(X); ffree(X2); ffree(b); ffree(o); ffree(o2);
            }
        }
    /* M == 0 / N == 0: nothing touched */
    float z[4] = {SENT, SENT, SENT, SENT};
    advnn_add_bias(0, 4, z, 4, z);
    advnn_add_bias(4, 0, z, 1, z);
    advnn_col_sums(0, 4, z, 4, z);
    for (int i = 0; i < 4; i++) CHECK(z[i] == SENT, "size-0 matrix kernels touched memory");
}

/* ------------------------------------------------------------------------------------------ */
/* exp / log / tanh                                                                            */
static void test_vmath(void) {
    for (int si = -1; si < NSIZES; si++) {
        int n = si < 0 ? 0 : SIZES[si];
        float *x = falloc((size_t)n + 2), *y = falloc((size_t)n + 2), *r = falloc((size_t)n + 2);
        for (int f = 0; f < 3; f++) {
            for (int i = 0; i < n; i++) {
                float u = frand();
                x[i] = f == 0 ? 87.0f * u : f == 1 ? expf(40.0f * u) : 12.0f * u;
            }
            if (n >= 7 && f == 0) { x[0] = 0; x[1] = -0.0f; x[2] = -100; x[3] = 88.5f; x[4] = 1e-30f; x[5] = -1e30f; x[6] = 1e30f; }
            if (n >= 5 && f == 1) { x[0] = 1; x[1] = FLT_MIN; x[2] = FLT_MAX; x[3] = 0; x[4] = 1e-40f; }
            if (n >= 5 && f == 2) { x[0] = 0; x[1] = 1e-30f; x[2] = -100; x[3] = 1e30f; x[4] = -9.5f; }
            x[n] = y[n] = SENT;
            if (f == 0) { advnn_vexp(n, x, y); advnn__vexp_ref(n, x, r); }
            if (f == 1) { advnn_vlog(n, x, y); advnn__vlog_ref(n, x, r); }
            if (f == 2) { advnn_vtanh(n, x, y); advnn__vtanh_ref(n, x, r); }
            for (int i = 0; i < n; i++) {
                double d = f == 0 ? exp((double)x[i]) : f == 1 ? log((double)x[i]) : tanh((double)x[i]);
                if (f == 0 && d > FLT_MAX) d = INFINITY;
                /* denormal results: absolute tolerance */
                CHECK(close_f(y[i], d, 4e-7, 1e-37), "f%d n=%d x=%g: live %.9g vs %.9g", f, n, x[i], y[i], d);
                CHECK(close_f(r[i], d, 4e-7, 1e-37), "f%d ref x=%g: %.9g vs %.9g", f, x[i], r[i], d);
            }
            CHECK(y[n] == SENT, "vmath f%d wrote past n=%d", f, n);
            /* in place */
            memcpy(r, x, (size_t)n * sizeof(float));
            if (f == 0) advnn_vexp(n, r, r);
            if (f == 1) advnn_vlog(n, r, r);
            if (f == 2) advnn_vtanh(n, r, r);
            int bad = 0;
            for (int i = 0; i < n; i++) bad += !same_float(r[i], y[i]);
            CHECK(!bad, "vmath f%d in place differs (n=%d)", f, n);
        }
        ffree(x); ffree(y); ffree(r);
    }
}

/* the double vector math: live vs libm (the scalar path) */
static double ulp_of(double v) {
    v = fabs(v);
    return isfinite(v) ? nextafter(v, INFINITY) - v : 0;
}
static void test_vmath_f64(void) {
    static const char *name[4] = {"exp", "log", "log1p", "erf"};
    double x[260], y[260], r[260];
    for (int si = -1; si < NSIZES; si++) {
        int n = si < 0 ? 0 : SIZES[si];
        for (int f = 0; f < 4; f++) {
            double worst = 0;
            int bad = 0;
            for (int i = 0; i < n; i++) {
                double u = frand(), w = frand();
                x[i] = f == 0 ? 720.0 * u + 1e-3 * w : f == 1 ? exp(690.0 * u) * (1 + 1e-7 * w)
                     : f == 2 ? (u < 0 ? -(0.5 * u + 0.5) * (1 + 1e-7 * w) : exp(40.0 * u) - 1) : 6.0 * u + 1e-5 * w;
            }
            if (n >= 8) {   /* edges: under/overflow, the singular points, zeros, tiny arguments */
                static const double e[4][8] = {{-1000, 710, 0, -0.0, 1e-300, -745.2, 709.7, -1e-17},
                                               {0, 1, INFINITY, 1e-310, 2.2250738585072014e-308, 1e300, 1 + 1e-15, 0.5},
                                               {-1, 0, -0.0, 1e-300, -0.999999, INFINITY, 1e-17, -1e-17},
                                               {0, -0.0, INFINITY, -INFINITY, 1e-300, 27, -27, 0.47}};
                memcpy(x, e[f], sizeof e[f]);
            }
            x[n] = y[n] = 12345.25;
            if (f == 0) { advnn_vexp_f64(n, x, y); advnn__vexp_f64_ref(n, x, r); }
            if (f == 1) { advnn_vlog_f64(n, x, y); advnn__vlog_f64_ref(n, x, r); }
            if (f == 2) { advnn_vlog1p_f64(n, x, y); advnn__vlog1p_f64_ref(n, x, r); }
            if (f == 3) { advnn_verf_f64(n, x, y); advnn__verf_f64_ref(n, x, r); }
            for (int i = 0; i < n; i++) {
                double d = fabs(y[i] - r[i]), tol = 2 * ulp_of(r[i]);
                int ok = y[i] == r[i] || (isfinite(r[i]) && d <= tol);
                if (tol > 0 && d / (tol / 2) > worst) worst = d / (tol / 2);
                if (!ok && bad++ < 3) CHECK(0, "%s(%.17g): live %.17g, libm %.17g (n=%d)", name[f], x[i], y[i], r[i], n);
            }
            CHECK(y[n] == 12345.25, "%s_f64 wrote past n=%d", name[f], n);
            bad = 0;
            memcpy(r, x, (size_t)n * sizeof(double));   /* in place: the same values as out of place */
            if (f == 0) advnn_vexp_f64(n, r, r);
            if (f == 1) advnn_vlog_f64(n, r, r);
            if (f == 2) advnn_vlog1p_f64(n, r, r);
            if (f == 3) advnn_verf_f64(n, r, r);
            for (int i = 0; i < n; i++) bad += !(r[i] == y[i] || (isnan(r[i]) && isnan(y[i])));
            CHECK(!bad, "%s_f64 in place (n=%d): %d values differ", name[f], n, bad);
            if (n == 257) printf("     %s_f64: live vs libm within %.2f ulp\n", name[f], worst);
        }
    }
}

/* erf given exp(-x^2): live and ref within 2 ulp of glibc's erf over 200000 points of [-7, 7]
 * (both sides of the 0.75 and 6 seams, e from libm), the edges exact (0, -0, +-inf -> +-1, NaN
 * stays NaN), in place equal to out of place, nothing written past n */
/* advnn_mdn_nll's element-wise passes: vector vs scalar form on the same buffers (bitwise with gcc,
 * which contracts nothing at -std=c11; within 4 ulp otherwise), with tails (n, K not multiples of
 * 4). The loss itself is checked against closed forms and finite differences in test_adversarial. */
#ifdef ADVNN__AVX2
static int mdn_close(double x, double y) { return x == y || (isnan(x) && isnan(y)) || fabs(x - y) <= 4 * ulp_of(y); }
#endif
static void test_mdn_passes(void) {
    {   /* more than ADVNN_MDN_CHUNK components: NaN results, nothing else touched */
        int ri[13];
        float a[3 * 13 * 20] = {0}, g[3 * 13 * 20];
        double m[13], nll[13];
        for (int r = 0; r < 13; r++) { ri[r] = r; m[r] = 0.5; nll[r] = 1.0; }
        fill_val(g, 3 * 13 * 20, SENT);
        advnn_mdn_nll(13, 20, 60, ri, a, a + 20, a + 40, m, 1, 1e-3, g, nll);
        int bad = 0;
        for (int r = 0; r < 13; r++) bad += !isnan(nll[r]);
        for (int k = 0; k < 3 * 13 * 20; k++) bad += g[k] != SENT;
        CHECK(!bad, "mdn_nll over its chunk: %d results not NaN or gradients written", bad);
    }
#ifdef ADVNN__AVX2
    if (!ADVNN__VEC_LIVE()) return;
    static advnn__mdn_buf b0, b1, b2;
    double *arr0[12] = {b0.A, b0.EA, b0.V, b0.MU, b0.SG, b0.IS, b0.SV, b0.T1, b0.T2, b0.DM, b0.DS, b0.L};
    int bad = 0;
    for (int i = 0; i < 12; i++)
        for (int e = 0; e < ADVNN_MDN_CHUNK; e++) {
            double u = frand(), w = frand();
            arr0[i][e] = i == 2 ? 6 * u : i == 4 || i == 5 || i == 7 || i == 8 || i == 1 ? 0.01 + 2 * (u + 1) : u * (1 + w);
        }
    b0.V[3] = 0.0; b0.V[4] = -0.0; b0.T1[5] = 1e-320; b0.T2[6] = 0.0;   /* the selects' edges */
    for (int n = 1; n <= 23; n += 11) {
        for (int pass = 1; pass <= 6; pass++) {
            float g1[3 * 32], g2[3 * 32];
            double l1 = 0, l2 = 0;
            bad = 0;
            b1 = b0; b2 = b0;
            switch (pass) {
            case 1: advnn__mdn_p1_v(&b1, 0, n); advnn__mdn_p1_ref(&b2, 0, n); break;
            case 2: advnn__mdn_p2_v(&b1, 0, n, 1e-3); advnn__mdn_p2_ref(&b2, 0, n, 1e-3); break;
            case 3: advnn__mdn_p3_v(&b1, 0, n); advnn__mdn_p3_ref(&b2, 0, n); break;
            case 4: advnn__mdn_p4_v(&b1, 0, n); advnn__mdn_p4_ref(&b2, 0, n); break;
            case 5: l1 = advnn__mdn_p5_v(&b1, 3, 0, n, 0.4, -1.2); l2 = advnn__mdn_p5_ref(&b2, 3, 0, n, 0.4, -1.2); break;
            default:
                advnn__mdn_p6_v(&b1, 2, 0, n, 0.4, 1.3, 0.7, g1, g1 + n, g1 + 2 * n);
                advnn__mdn_p6_ref(&b2, 2, 0, n, 0.4, 1.3, 0.7, g2, g2 + n, g2 + 2 * n);
                for (int k = 0; k < 3 * n; k++) bad += !(g1[k] == g2[k] || fabs(g1[k] - g2[k]) <= 2 * 1.2e-7 * fabs(g2[k]));
            }
            bad += !mdn_close(l1, l2);
            {
                double *x1[12] = {b1.A, b1.EA, b1.V, b1.MU, b1.SG, b1.IS, b1.SV, b1.T1, b1.T2, b1.DM, b1.DS, b1.L};
                double *x2[12] = {b2.A, b2.EA, b2.V, b2.MU, b2.SG, b2.IS, b2.SV, b2.T1, b2.T2, b2.DM, b2.DS, b2.L};
                for (int i = 0; i < 12; i++)
                    for (int e = 0; e < ADVNN_MDN_CHUNK; e++) bad += !mdn_close(x1[i][e], x2[i][e]);
            }
            CHECK(!bad, "mdn pass %d n=%d: %d values differ beyond 4 ulp", pass, n, bad);
        }
    }
#endif
}

static void test_verf_e_f64(void) {
    enum { N = 200000 };
    static const double edge[] = {0.0, -0.0, INFINITY, -INFINITY, 0.75, -0.75, 6.0, -6.0, 5.999999999, 0.7499999999};
    double *x = (double *)malloc((N + 1) * sizeof(double)), *e = (double *)malloc(N * sizeof(double));
    double *y = (double *)malloc((N + 1) * sizeof(double)), *r = (double *)malloc(N * sizeof(double)), worst[2] = {0, 0};
    int bad = 0, ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < N; i++) {
        double u = frand(), w = frand();
        x[i] = i < ne ? edge[i] : i % 3 == 0 ? 7.0 * u : i % 3 == 1 ? 0.75 + 0.02 * u + 1e-9 * w : 6.0 + 0.02 * u;
        e[i] = exp(-x[i] * x[i]);
    }
    x[N] = y[N] = 12345.25;
    advnn_verf_e_f64(N, x, e, y);
    advnn__verf_e_f64_ref(N, x, e, r);
    for (int i = 0; i < N; i++) {
        double want = erf(x[i]), u = ulp_of(want);
        for (int k = 0; k < 2; k++) {
            double got = k ? r[i] : y[i], d = fabs(got - want);
            if (u > 0 && d / u > worst[k]) worst[k] = d / u;
            if (!(got == want || d <= 2 * u) && bad++ < 3)
                CHECK(0, "verf_e %s erf(%.17g) = %.17g, libm %.17g", k ? "ref" : "live", x[i], got, want);
        }
    }
    CHECK(!bad, "verf_e: %d values beyond 2 ulp", bad);
    CHECK(y[N] == 12345.25, "verf_e wrote past n");
    {
        double xn[5] = {NAN, 0.5, 1.0, -NAN, 7.0}, en[5], yn[5];
        for (int i = 0; i < 5; i++) en[i] = exp(-xn[i] * xn[i]);
        advnn_verf_e_f64(5, xn, en, yn);
        CHECK(isnan(yn[0]) && isnan(yn[3]) && yn[4] == 1.0, "verf_e: NaN gave %g %g, erf(7) %g", yn[0], yn[3], yn[4]);
        advnn__verf_e_f64_ref(5, xn, en, yn);
        CHECK(isnan(yn[0]) && isnan(yn[3]) && yn[4] == 1.0, "verf_e ref: NaN gave %g %g", yn[0], yn[3]);
    }
    for (int n = 0; n <= 9; n++) {   /* tails, in place */
        double t[10], o[10];
        memcpy(t, x + 100, (size_t)n * sizeof(double));
        advnn_verf_e_f64(n, x + 100, e + 100, o);
        advnn_verf_e_f64(n, t, e + 100, t);
        for (int i = 0; i < n; i++) bad += t[i] != o[i] || !(fabs(o[i] - erf(x[100 + i])) <= 2 * ulp_of(erf(x[100 + i])));
    }
    CHECK(!bad, "verf_e in place differs from out of place");
    printf("     verf_e_f64: live within %.2f ulp of libm, ref %.2f\n", worst[0], worst[1]);
    free(x); free(e); free(y); free(r);
}

/* ------------------------------------------------------------------------------------------ */
/* Activations                                                                                 */
static const char *ACT_NAMES[] = {"linear", "relu", "leaky", "prelu", "elu", "sigmoid", "tanh", "softplus"};

static double act_d(advnn_act a, double x, double p, double al) {
    switch (a) {
    case ADVNN_ACT_RELU: return x > 0 ? x : 0;
    case ADVNN_ACT_LEAKY_RELU: return x > 0 ? x : p * x;
    case ADVNN_ACT_PRELU: return x > 0 ? x : al * x;
    case ADVNN_ACT_ELU: return x > 0 ? x : p * expm1(x);
    case ADVNN_ACT_SIGMOID: return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
    case ADVNN_ACT_TANH: return tanh(x);
    case ADVNN_ACT_SOFTPLUS: return log1p(exp(-fabs(x))) + (x > 0 ? x : 0);
    default: return x;
    }
}
static double dact_d(advnn_act a, double x, double p, double al) {
    switch (a) {
    case ADVNN_ACT_RELU: return x > 0 ? 1 : 0;
    case ADVNN_ACT_LEAKY_RELU: return x > 0 ? 1 : p;
    case ADVNN_ACT_PRELU: return x > 0 ? 1 : al;
    case ADVNN_ACT_ELU: return x > 0 ? 1 : p * exp(x);
    case ADVNN_ACT_SIGMOID: { double s = act_d(a, x, p, al); return s * (1 - s); }
    case ADVNN_ACT_TANH: { double t = tanh(x); return 1 - t * t; }
    case ADVNN_ACT_SOFTPLUS: return act_d(ADVNN_ACT_SIGMOID, x, p, al);
    default: return 1;
    }
}

static const float EXTREMES[] = {0.0f, -0.0f, 100.0f, -100.0f, 1e30f, -1e30f, 1e-30f, -1e-30f, 1e-40f,
                                 20.0f, -20.0f, 88.0f, -88.0f, 89.0f, -104.0f, 3.0f};
#define NEXT ((int)(sizeof EXTREMES / sizeof EXTREMES[0]))

static void check_act(advnn_act act, int M, int N, int ldx, int ldy, int extreme, int inplace) {
    const float param = act == ADVNN_ACT_ELU ? 1.3f : 0.07f;
    size_t sx = (size_t)M * ldx, sy = (size_t)M * ldy;
    float *x = falloc(sx), *y = falloc(inplace ? sx : sy), *yr = falloc(sy), *alpha = falloc((size_t)N);
    float *dy = falloc(sy), *dx = falloc(sy), *dxr = falloc(sy), *da = falloc((size_t)N), *dar = falloc((size_t)N);
    if (inplace) ldy = ldx, sy = sx;
    fill_val(x, sx, SENT);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            size_t k = (size_t)i * ldx + j;
            x[k] = extreme ? EXTREMES[(i * N + j) % NEXT] * (j % 3 == 2 ? frand() : 1.0f) : 6.0f * frand();
        }
    float *da0 = falloc((size_t)N);
    for (int j = 0; j < N; j++) { alpha[j] = 0.3f * frand(); da0[j] = da[j] = dar[j] = 0.5f * frand(); }
    float *x0 = falloc(sx);
    memcpy(x0, x, sx * sizeof(float)); /* keep x: y may overwrite it */
    if (!inplace) fill_val(y, sy, SENT);
    advnn__act_forward_ref(act, M, N, x0, ldx, yr, ldy, param, alpha);
    advnn_act_forward(act, M, N, x, ldx, inplace ? x : y, ldy, param, act == ADVNN_ACT_PRELU ? alpha : NULL);
    float *yy = inplace ? x : y;
    int bad = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            size_t kx = (size_t)i * ldx + j, ky = (size_t)i * ldy + j;
            double want = act_d(act, x0[kx], param, alpha[j]);
            int ok = close_f(yy[ky], want, 2e-6, 1e-7) && close_f(yr[ky], want, 2e-6, 1e-7) && isfinite(yy[ky]);
            if (!ok && bad++ < 5)
                CHECK(0, "%s fwd M=%d N=%d x=%g: live %.9g ref %.9g double %.9g", ACT_NAMES[act], M, N, x0[kx], yy[ky],
                      yr[ky], want);
        }
        for (int j = N; j < ldy; j++)
            if (yy[(size_t)i * ldy + j] != SENT && bad++ < 5) CHECK(0, "%s fwd wrote padding", ACT_NAMES[act]);
    }
    /* backward: dx = dy * f'(x), dx aliasing dy when inplace */
    for (size_t k = 0; k < sy; k++) dy[k] = frand();
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldy; j++) dy[(size_t)i * ldy + j] = SENT;
    memcpy(dx, dy, sy * sizeof(float));
    memcpy(dxr, dy, sy * sizeof(float));
    const float *xin = act == ADVNN_ACT_SIGMOID || act == ADVNN_ACT_TANH || act == ADVNN_ACT_LINEAR ? NULL : x0;
    const float *yin = act == ADVNN_ACT_SIGMOID || act == ADVNN_ACT_TANH ? yy : NULL;
    advnn__act_backward_ref(act, M, N, x0, ldx, yy, ldy, dy, ldy, dxr, ldy, param, alpha, dar);
    if (inplace)
        advnn_act_backward(act, M, N, xin, ldx, yin, ldy, dx, ldy, dx, ldy, param, alpha, da);
    else {
        fill_val(dx, sy, SENT);
        advnn_act_backward(act, M, N, xin, ldx, yin, ldy, dy, ldy, dx, ldy, param, alpha,
                           act == ADVNN_ACT_PRELU ? da : NULL);
    }
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            size_t kx = (size_t)i * ldx + j, ky = (size_t)i * ldy + j;
            double want = dy[ky] * dact_d(act, x0[kx], param, alpha[j]);
            double atol = (act == ADVNN_ACT_SIGMOID || act == ADVNN_ACT_TANH) ? 1e-6 : 1e-7;
            int ok = close_f(dx[ky], want, 2e-6, atol) && close_f(dxr[ky], want, 2e-6, atol) && isfinite(dx[ky]);
            if (!ok && bad++ < 5)
                CHECK(0, "%s bwd M=%d N=%d x=%g dy=%g: live %.9g ref %.9g double %.9g", ACT_NAMES[act], M, N, x0[kx],
                      dy[ky], dx[ky], dxr[ky], want);
        }
        for (int j = N; j < ldy; j++)
            if (dx[(size_t)i * ldy + j] != SENT && bad++ < 5) CHECK(0, "%s bwd wrote padding", ACT_NAMES[act]);
    }
    if (act == ADVNN_ACT_PRELU) { /* live vs ref (summation-order bound); ref vs double: test_prelu_dalpha */
        for (int j = 0; j < N; j++) {
            double want = dar[j], sm = fabs(da0[j]);
            for (int i = 0; i < M; i++) {
                double v = x0[(size_t)i * ldx + j];
                if (v <= 0) sm += fabs(v * dy[(size_t)i * ldy + j]);
            }
            if (!(fabs(da[j] - want) <= 4 * (M + 1) * 6e-8 * sm + 1e-30) && bad++ < 5)
                CHECK(0, "prelu dalpha j=%d: %.9g vs ref %.9g", j, da[j], want);
        }
    }
    ffree(x); ffree(y); ffree(yr); ffree(alpha); ffree(dy); ffree(dx); ffree(dxr); ffree(da); ffree(dar); ffree(x0); ffree(da0);
}

static void test_activations(void) {
    for (int a = 0; a < ADVNN_ACT_COUNT; a++) {
        for (int mi = 0; mi < NSIZES; mi += 3)
            for (int ni = 0; ni < NSIZES; ni++) {
                int M = SIZES[mi] > 64 ? 5 : SIZES[mi], N = SIZES[ni];
                check_act((advnn_act)a, M, N, N, N, 0, 0);
                check_act((advnn_act)a, M, N, N + 3, N + 2, (mi + ni) % 2, 0);
                check_act((advnn_act)a, M, N, N + 1, N + 1, 1, 1);
            }
        check_act((advnn_act)a, 0, 5, 5, 5, 0, 0);
        check_act((advnn_act)a, 3, 0, 1, 1, 0, 0);
    }
}

/* dalpha of PRELU vs a double computation (the ref accumulation in check_act only compares paths). */
static void test_prelu_dalpha(void) {
    int M = 37, N = 19;
    float *x = falloc((size_t)M * N), *dy = falloc((size_t)M * N), *dx = falloc((size_t)M * N);
    float al[19], da[19];
    fill_rand(x, (size_t)M * N, 2.0f);
    fill_rand(dy, (size_t)M * N, 1.0f);
    for (int j = 0; j < N; j++) { al[j] = 0.1f * (float)j; da[j] = 1.0f; }
    advnn_act_backward(ADVNN_ACT_PRELU, M, N, x, N, NULL, 0, dy, N, dx, N, 0, al, da);
    for (int j = 0; j < N; j++) {
        double s = 1.0, sm = 1.0;
        for (int i = 0; i < M; i++) {
            double v = x[i * N + j];
            if (v <= 0) { s += dy[i * N + j] * v; sm += fabs(dy[i * N + j] * v); }
        }
        CHECK(fabs(da[j] - s) <= 2 * (M + 1) * 6e-8 * sm + 1e-7, "dalpha[%d] %g vs %g", j, da[j], s);
    }
    /* derivative at exactly 0: relu'(0)=0, leaky uses slope, elu uses alpha*exp(0)=alpha */
    float z[1] = {0.0f}, g[1] = {2.0f}, o[1];
    advnn_act_backward(ADVNN_ACT_RELU, 1, 1, z, 1, NULL, 1, g, 1, o, 1, 0, NULL, NULL);
    CHECK(o[0] == 0.0f, "relu'(0) = %g", o[0]);
    advnn_act_backward(ADVNN_ACT_LEAKY_RELU, 1, 1, z, 1, NULL, 1, g, 1, o, 1, 0.25f, NULL, NULL);
    CHECK(o[0] == 0.5f, "leaky'(0) = %g", o[0]);
    advnn_act_backward(ADVNN_ACT_ELU, 1, 1, z, 1, NULL, 1, g, 1, o, 1, 0.5f, NULL, NULL);
    CHECK(o[0] == 1.0f, "elu'(0) = %g", o[0]);
    ffree(x); ffree(dy); ffree(dx);
}

/* ------------------------------------------------------------------------------------------ */
/* Softmax                                                                                     */
static void test_softmax(void) {
    for (int mi = 0; mi < NSIZES; mi += 2)
        for (int ni = 0; ni < NSIZES; ni++) {
            int M = SIZES[mi] > 64 ? 4 : SIZES[mi], N = SIZES[ni];
            for (int v = 0; v < 3; v++) {
                int ldx = N + (v == 1 ? 3 : 0), ldy = N + (v == 1 ? 1 : 0), inplace = v == 2;
                if (inplace) ldy = ldx;
                size_t sx = (size_t)M * ldx, sy = (size_t)M * ldy;
                float *x = falloc(sx), *y = falloc(sy), *l = falloc(sy), *r = falloc(sy), *x0 = falloc(sx);
                fill_val(x, sx, SENT);
                fill_val(y, sy, SENT);
                fill_val(l, sy, SENT);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++)
                        x[(size_t)i * ldx + j] = i == 1 ? EXTREMES[j % NEXT] * 1e-1f : i == 2 ? 1e30f * frand() : 10 * frand();
                memcpy(x0, x, sx * sizeof(float));
                if (inplace) { /* run on x itself, then move the results to y / l */
                    advnn_softmax_rows(M, N, x, ldx, x, ldx);
                    memcpy(y, x, sx * sizeof(float));
                    memcpy(x, x0, sx * sizeof(float));
                    advnn_log_softmax_rows(M, N, x, ldx, x, ldx);
                    memcpy(l, x, sx * sizeof(float));
                    memcpy(x, x0, sx * sizeof(float));
                } else {
                    advnn_softmax_rows(M, N, x, ldx, y, ldy);
                    advnn_log_softmax_rows(M, N, x, ldx, l, ldy);
                }
                for (int i = 0; i < M; i++) {
                    const float *xr = x0 + (size_t)i * ldx;
                    double m = -INFINITY, s = 0, sum = 0;
                    for (int j = 0; j < N; j++) m = xr[j] > m ? xr[j] : m;
                    for (int j = 0; j < N; j++) s += exp((double)xr[j] - m);
                    for (int j = 0; j < N; j++) {
                        double p = exp((double)xr[j] - m) / s, lp = (double)xr[j] - m - log(s);
                        float gs = y[(size_t)i * ldy + j], gl = l[(size_t)i * ldy + j];
                        sum += gs;
                        CHECK(close_f(gs, p, 2e-5, 1e-37), "softmax M=%d N=%d v=%d (%d,%d): %.9g vs %.9g", M, N, v, i, j, gs, p);
                        CHECK(close_f(gl, lp, 2e-6, 2e-5), "log_softmax M=%d N=%d v=%d (%d,%d): %.9g vs %.9g", M, N, v, i,
                              j, gl, lp);
                        /* log_softmax == log(softmax) where softmax does not underflow */
                        if (p > 1e-30)
                            CHECK(close_f(logf(gs), gl, 2e-5, 2e-5), "log(softmax) %.9g != log_softmax %.9g", logf(gs), gl);
                    }
                    CHECK(fabs(sum - 1.0) <= 1e-5, "softmax row %d sum %.9g (N=%d)", i, sum, N);
                    for (int j = N; j < ldy && !inplace; j++)
                        CHECK(y[(size_t)i * ldy + j] == SENT && l[(size_t)i * ldy + j] == SENT, "softmax wrote padding");
                }
                /* ref vs live */
                advnn__softmax_rows_ref(M, N, x0, ldx, r, ldy);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++)
                        CHECK(close_f(y[(size_t)i * ldy + j], r[(size_t)i * ldy + j], 2e-5, 1e-37), "softmax ref");
                advnn__log_softmax_rows_ref(M, N, x0, ldx, r, ldy);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++)
                        CHECK(close_f(l[(size_t)i * ldy + j], r[(size_t)i * ldy + j], 2e-6, 2e-5), "log_softmax ref");
                ffree(x); ffree(y); ffree(l); ffree(r); ffree(x0);
            }
        }
    /* in-place softmax explicitly */
    float a[5] = {1, 2, 3, 4, 1000}, e[5];
    advnn_softmax_rows(1, 5, a, 5, a, 5);
    for (int j = 0; j < 5; j++) e[j] = (float)exp((double)(j < 4 ? j + 1 : 1000) - 1000.0);
    for (int j = 0; j < 5; j++) CHECK(close_f(a[j], e[j], 2e-6, 1e-37), "inplace softmax %d: %g vs %g", j, a[j], e[j]);
}

/* ------------------------------------------------------------------------------------------ */
/* SGEMM                                                                                       */
/* op(A)(i,k) and op(B)(k,j) */
#define OPA(i, k) (tA ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OPB(k, j) (tB ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

static float *gemm_work;
enum { PATH_PUBLIC_NULL, PATH_PUBLIC_WORK, PATH_BLOCKED_UNPACKED, PATH_BLOCKED_PACKED };

/* Runs one product on a fresh C (with sentinels around/inside the window) and checks it. */
static void check_gemm(int tA, int tB, int M, int N, int K, float alpha, float beta, int pad, int path, int nan_c) {
    int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    if (ldc < 1) ldc = 1;
    size_t sa = (size_t)(tA ? K : M) * lda, sb = (size_t)(tB ? N : K) * ldb, sc = (size_t)M * ldc + 8;
    float *A = falloc(sa + 1), *B = falloc(sb + 1), *C = falloc(sc), *R = falloc(sc), *C0 = falloc(sc);
    fill_rand(A, sa, 1.0f);
    fill_rand(B, sb, 1.0f);
    fill_val(C, sc, SENT);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = nan_c ? NAN : frand();
    memcpy(R, C, sc * sizeof(float));
    memcpy(C0, C, sc * sizeof(float));
    advnn_sgemm_ref(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    switch (path) {
    case PATH_PUBLIC_NULL: advnn_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL); break;
    case PATH_PUBLIC_WORK: advnn_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_work); break;
    default:
        if (M > 0 && N > 0 && K > 0)
            advnn__sgemm_blocked(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_work,
                                 path == PATH_BLOCKED_PACKED);
        else
            advnn_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, gemm_work);
    }
    int bad = 0;
    for (int i = 0; i < M && bad < 3; i++) {
        for (int j = 0; j < N && bad < 3; j++) {
            double exact = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double t = (double)OPA(i, k) * OPB(k, j);
                exact += t;
                mag += fabs(t);
            }
            double c0 = C0[(size_t)i * ldc + j];
            double bc = beta == 0.0f ? 0.0 : (double)beta * c0;
            exact = alpha * exact + bc;
            double tol = 2.0 * (K + 2) * 6e-8 * fabs(alpha) * mag + 2 * 6e-8 * fabs(bc) + 1e-30;
            float got = C[(size_t)i * ldc + j], ref = R[(size_t)i * ldc + j];
            if (!(fabs(got - ref) <= 2 * tol) || !(fabs(ref - exact) <= tol)) {
                bad++;
                CHECK(0, "sgemm tA=%d tB=%d M=%d N=%d K=%d a=%g b=%g pad=%d path=%d nanC=%d (%d,%d): live %.9g ref %.9g exact %.9g",
                      tA, tB, M, N, K, alpha, beta, pad, path, nan_c, i, j, got, ref, exact);
            }
        }
    }
    /* everything outside the M x N window untouched (padding columns and the tail) */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            if (C[(size_t)i * ldc + j] != SENT && bad++ < 3) CHECK(0, "sgemm wrote C padding (%d,%d)", i, j);
    for (size_t k = (size_t)M * ldc; k < sc; k++)
        if (C[k] != SENT && bad++ < 3) CHECK(0, "sgemm wrote past C");
    ffree(A); ffree(B); ffree(C); ffree(R); ffree(C0);
}

static void test_sgemm_grid(void) {
    static const int G[] = {1, 3, 5, 7, 8, 9, 10, 17, 63, 64, 65}; /* 5, 10: the edge kernel's two cases at W3's widths */
    const int NG = (int)(sizeof G / sizeof G[0]);
    static const float AB[][2] = {{1.0f, 0.0f}, {0.5f, 1.0f}, {-1.25f, 0.75f}, {2.0f, -1.0f}};
    int cnt = 0;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++)
            for (int mi = 0; mi < NG; mi++)
                for (int ni = 0; ni < NG; ni++)
                    for (int ki = 0; ki < NG; ki++, cnt++) {
                        const float *ab = AB[cnt % 4];
                        int pad = (cnt / 4) % 3 == 0 ? 0 : 3;
                        int path = (cnt / 2) % 4;
                        check_gemm(tA, tB, G[mi], G[ni], G[ki], ab[0], ab[1], pad, path, ab[1] == 0.0f && cnt % 8 == 0);
                    }
}

/* A column of C must not depend on how many columns follow it (beta = 0): the right-edge kernel sums
 * in the full kernel's order, so narrow outputs (N = 5, 10) match the same columns of a zero-padded
 * N = 16 or 32 product bit for bit. Trained weights then do not depend on which tiles are edges. */
static void test_sgemm_edge_bitwise(void) {
    enum { M = 67, K = 45, NW = 32 };
    static float A[M * K], B[K * NW], C[M * NW], W[M * NW];
    static const int NS[] = {5, 8, 10, 15, 17, 26};   /* N = 1 takes the GEMV path */
    for (int i = 0; i < M * K; i++) A[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    for (int t = 0; t < (int)(sizeof NS / sizeof NS[0]); t++) {
        int N = NS[t], bad = 0;
        for (int tB = 0; tB < 2; tB++) {
            /* B (K x N) and the same columns inside a K x 32 matrix padded with zeros */
            static float Bn[K * NW];
            for (int p = 0; p < K; p++)
                for (int j = 0; j < NW; j++) {
                    float v = j < N ? (float)(((p * NW + j) * 53) % 97) / 48.0f - 1.0f : 0.0f;
                    B[tB ? j * K + p : p * NW + j] = v;
                    if (j < N) Bn[tB ? j * K + p : p * N + j] = v;
                }
            advnn_sgemm(0, tB, M, N, K, 0.75f, A, K, Bn, tB ? K : N, 0.0f, C, N, NULL);
            advnn_sgemm(0, tB, M, NW, K, 0.75f, A, K, B, tB ? K : NW, 0.0f, W, NW, NULL);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                    if (memcmp(&C[i * N + j], &W[i * NW + j], sizeof(float)) != 0) bad++;
        }
        CHECK(!bad, "sgemm N=%d: %d entries differ from the zero-padded N=32 product", N, bad);
    }
}

static int count_bitwise_diff(const float *a, const float *b, size_t n) {
    int bad = 0;
    for (size_t k = 0; k < n; k++) bad += !same_float(a[k], b[k]);
    return bad;
}

/* The blocked path reads A in place (packA 0) down to the last rows of each block, where the rows
 * past M repeat the last one, and reads B in place for a weight gradient (A^T B, M <= 96). The bits
 * must be those of packed panels: rows 0..M-1 of the product are computed (1) with A in place, (2)
 * with A packed, and (3) as the first rows of a 100-row product (B packed), for every M % 6, both
 * layouts of A and B, narrow and wide N, one and two K blocks, beta 0 and 1. A and B of (1) and (2)
 * are allocated to size, so the sanitizer configurations catch a read past their rows or columns. */
static void test_sgemm_rows_in_place(void) {
    static const int MS[] = {1, 2, 3, 4, 5, 7, 11, 13, 64, 95}, NS[] = {5, 16, 20, 33}, KS[] = {7, 300};
    enum { MB = 100 };
    int bad = 0, cases = 0;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++)
            for (int mi = 0; mi < 10; mi++)
                for (int ni = 0; ni < 4; ni++)
                    for (int ki = 0; ki < 2; ki++) {
                        int M = MS[mi], N = NS[ni], K = KS[ki], lda = tA ? M : K, ldab = tA ? MB : K, ldb = tB ? K : N;
                        float beta = (float)((mi + ni + ki) & 1);
                        float *A = falloc((size_t)M * K), *Ab = falloc((size_t)MB * K), *B = falloc((size_t)K * N);
                        float *C1 = falloc((size_t)M * N), *C2 = falloc((size_t)M * N), *C3 = falloc((size_t)MB * N);
                        fill_rand(Ab, (size_t)MB * K, 1.0f);
                        for (int i = 0; i < M; i++)   /* A = the first M rows of op(Ab) */
                            for (int p = 0; p < K; p++)
                                A[tA ? (size_t)p * lda + i : (size_t)i * lda + p] =
                                    Ab[tA ? (size_t)p * ldab + i : (size_t)i * ldab + p];
                        fill_rand(B, (size_t)K * N, 1.0f);
                        fill_rand(C3, (size_t)MB * N, 1.0f);
                        memcpy(C1, C3, (size_t)M * N * sizeof(float));
                        memcpy(C2, C3, (size_t)M * N * sizeof(float));
                        advnn__sgemm_blocked(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, beta, C1, N, gemm_work, 0);
                        advnn__sgemm_blocked(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, beta, C2, N, gemm_work, 1);
                        advnn__sgemm_blocked(tA, tB, MB, N, K, 1.0f, Ab, ldab, B, ldb, beta, C3, N, gemm_work, 1);
                        bad += count_bitwise_diff(C1, C2, (size_t)M * N) + count_bitwise_diff(C1, C3, (size_t)M * N) > 0;
                        cases++;
                        ffree(A); ffree(Ab); ffree(B); ffree(C1); ffree(C2); ffree(C3);
                    }
    CHECK(!bad, "sgemm, A or B in place vs packed: %d of %d products differ bitwise", bad, cases);
}


/* C = A^T B with a narrow C (the weight gradient of a convolution with few filters) takes its own
 * AVX2 kernel (lanes over C's rows); it must give the blocked path's bits: M with and without a
 * partial vector, N = 2..12, K across several 256-row blocks, beta 0, 1 and 0.5, padded strides. */
static void test_sgemm_tn_narrow(void) {
#ifdef ADVNN__VECTOR
    if (!ADVNN__VEC_LIVE()) return;   /* (run-time dispatch on the scalar path: neither is used) */
    static const int MS[] = {5, 9, 16, 31, 33, 45, 90, 97}, NS[] = {2, 3, 5, 7, 10, 12}, KS[] = {1, 7, 256, 300, 1100};
    static const float BETA[] = {0.0f, 1.0f, 0.5f};
    float *work = falloc(ADVNN_SGEMM_WORK_FLOATS);
    int bad = 0, cases = 0;
    for (int a = 0; a < 8; a++)
        for (int b = 0; b < 6; b++)
            for (int c = 0; c < 5; c++) {
                int M = MS[a], N = NS[b], K = KS[c], lda = M + (c & 1) * 3, ldb = N + (a & 1), ldc = N + 1;
                float *A = falloc((size_t)K * lda), *B = falloc((size_t)K * ldb);
                float *C1 = falloc((size_t)M * ldc), *C2 = falloc((size_t)M * ldc);
                fill_rand(A, (size_t)K * lda, 1.0f); fill_rand(B, (size_t)K * ldb, 1.0f);
                for (int e = 0; e < 3; e++, cases++) {
                    fill_rand(C1, (size_t)M * ldc, 1.0f);
                    memcpy(C2, C1, (size_t)M * ldc * sizeof(float));
                    advnn_sgemm(1, 0, M, N, K, 1.0f, A, lda, B, ldb, BETA[e], C1, ldc, work);
                    advnn__sgemm_blocked_v(1, 0, M, N, K, 1.0f, A, lda, B, ldb, NULL, BETA[e], C2, ldc, work, 0);
                    bad += count_bitwise_diff(C1, C2, (size_t)M * ldc) != 0;   /* padding columns included */
                }
                ffree(A); ffree(B); ffree(C1); ffree(C2);
            }
    CHECK(!bad, "sgemm A^T B narrow: %d of %d cases differ from the blocked path", bad, cases);
    ffree(work);
#endif
}

/* advnn_sgemm_bias_relu against advnn_sgemm, advnn_add_bias and advnn_act_forward(RELU) in turn,
 * bit for bit: full and edge tiles, several K blocks (the epilogue runs at the last), bias or none,
 * separate or in-place output, a NaN row, padding columns left alone, no work buffer, and B with
 * padded or contiguous rows (M = 1: the one-row GEMV; with N = 1 too, the dot product). */
static void test_sgemm_bias_relu(void) {
    static const int MS[] = {1, 2, 5, 6, 7, 13, 97}, NS[] = {1, 2, 5, 8, 9, 16, 17, 40, 130}, KS[] = {1, 16, 256, 257, 600};
    float *work = falloc(ADVNN_SGEMM_WORK_FLOATS);
    int cases = 0, bad = 0, touched = 0;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 9; b++)
            for (int c = 0; c < 5; c++)
                for (int v = 0; v < 8; v++) {
                    int M = MS[a], N = NS[b], K = KS[c], relu = v & 1, hasb = (v >> 1) & 1, inpl = (v >> 2) & 1;
                    int lda = K + 3, ldb = N + (c & 1), ldc = N + 2, ldy = inpl ? ldc : N + 5;
                    float *A = falloc((size_t)M * lda), *B = falloc((size_t)K * ldb), *bias = falloc((size_t)N);
                    float *C1 = falloc((size_t)M * ldc), *C2 = falloc((size_t)M * ldc);
                    float *Y1 = falloc((size_t)M * ldy), *Y2 = falloc((size_t)M * ldy);
                    fill_rand(A, (size_t)M * lda, 1.0f);
                    fill_rand(B, (size_t)K * ldb, 1.0f);
                    fill_rand(bias, (size_t)N, 1.0f);
                    if (M > 2) A[lda] = NAN; /* row 1: NaN through bias and ReLU */
                    fill_val(C1, (size_t)M * ldc, SENT); fill_val(C2, (size_t)M * ldc, SENT);
                    fill_val(Y1, (size_t)M * ldy, SENT); fill_val(Y2, (size_t)M * ldy, SENT);
                    float *y1 = inpl ? C1 : Y1, *y2 = inpl ? C2 : Y2;
                    advnn_sgemm(0, 0, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C1, ldc, work);
                    if (hasb) advnn_add_bias(M, N, C1, ldc, bias);
                    if (relu) advnn_act_forward(ADVNN_ACT_RELU, M, N, C1, ldc, y1, ldy, 0.0f, NULL);
                    advnn_sgemm_bias_relu(M, N, K, A, lda, B, ldb, hasb ? bias : NULL, relu, C2, ldc, y2, ldy,
                                          c == 3 ? NULL : work);
                    cases++;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < ldc; j++) {
                            if (!same_float(C1[i * ldc + j], C2[i * ldc + j])) bad++;
                            if (j >= N && C2[i * ldc + j] != SENT) touched++;
                        }
                    if (!inpl)
                        for (int i = 0; i < M; i++)
                            for (int j = 0; j < ldy; j++) {
                                if (!same_float(Y1[i * ldy + j], Y2[i * ldy + j])) bad++;
                                if ((j >= N || !relu) && Y2[i * ldy + j] != SENT) touched++;
                            }
                    ffree(A); ffree(B); ffree(bias); ffree(C1); ffree(C2); ffree(Y1); ffree(Y2);
                }
    CHECK(!bad, "%d entries differ from sgemm + add_bias + ReLU (%d cases)", bad, cases);
    CHECK(!touched, "%d entries written outside the M x N windows", touched);
    ffree(work);
}

/* advnn_sgemm_p and advnn_sgemm_bias_relu_p with B packed ahead by advnn_sgemm_pack_b give advnn_sgemm's
 * and advnn_sgemm_bias_relu's results bit for bit: both transposes, several blocks of K (> 256) and of
 * N (> 128), partial last panels, weight gradients whose full panels are read in place (A^T B, M <= 96),
 * M = 1 (paths that pack nothing read B), no work buffer; the packing stays within
 * advnn_sgemm_pack_floats(K, N) floats. */
static void test_sgemm_packed_b(void) {
    static const int MS[] = {1, 5, 13, 97, 200}, NS[] = {1, 3, 16, 17, 40, 130, 260}, KS[] = {1, 7, 257, 600};
    float *work = falloc(ADVNN_SGEMM_WORK_FLOATS);
    int cases = 0, bad = 0, over = 0;
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++)
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 7; b++)
                    for (int c = 0; c < 4; c++, cases++) {
                        int M = MS[a], N = NS[b], K = KS[c], pad = cases % 3, lda = (tA ? M : K) + pad;
                        int ldb = (tB ? K : N) + pad, ldc = N + 1, relu = cases & 1;
                        float beta = cases % 4 < 2 ? 0.0f : 0.5f, alpha = cases % 5 ? 1.0f : -0.75f;
                        size_t sa = (size_t)(tA ? K : M) * lda, sb = (size_t)(tB ? N : K) * ldb, sc = (size_t)M * ldc;
                        size_t np = advnn_sgemm_pack_floats(K, N);
                        float *A = falloc(sa), *B = falloc(sb), *P = falloc(np + 16), *bias = falloc((size_t)N);
                        float *C1 = falloc(sc), *C2 = falloc(sc), *Y1 = falloc(sc), *Y2 = falloc(sc);
                        fill_rand(A, sa, 1.0f); fill_rand(B, sb, 1.0f); fill_rand(bias, (size_t)N, 1.0f);
                        fill_rand(C1, sc, 1.0f); memcpy(C2, C1, sc * sizeof(float));
                        fill_val(P, np + 16, SENT);
                        advnn_sgemm_pack_b(tB, K, N, B, ldb, P);
                        for (size_t k = np; k < np + 16; k++) over += P[k] != SENT;
                        float *w = cases % 7 == 3 ? NULL : work;
                        advnn_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc, w);
                        advnn_sgemm_p(tA, tB, M, N, K, alpha, A, lda, B, ldb, P, beta, C2, ldc, w);
                        for (size_t k = 0; k < sc; k++) bad += !same_float(C1[k], C2[k]);
                        if (!tA && !tB) {
                            advnn_sgemm_bias_relu(M, N, K, A, lda, B, ldb, bias, relu, C1, ldc, Y1, ldc, w);
                            advnn_sgemm_bias_relu_p(M, N, K, A, lda, B, ldb, P, bias, relu, C2, ldc, Y2, ldc, w);
                            for (size_t k = 0; k < sc; k++) bad += !same_float(C1[k], C2[k]);
                            if (relu)
                                for (int i = 0; i < M; i++)
                                    for (int j = 0; j < N; j++) bad += !same_float(Y1[i * ldc + j], Y2[i * ldc + j]);
                        }
                        ffree(A); ffree(B); ffree(P); ffree(bias); ffree(C1); ffree(C2); ffree(Y1); ffree(Y2);
                    }
    CHECK(!bad, "%d entries with B packed ahead differ from advnn_sgemm's (%d cases)", bad, cases);
    CHECK(!over, "advnn_sgemm_pack_b wrote %d floats past advnn_sgemm_pack_floats", over);
    ffree(work);
}

static void test_sgemm_special(void) {
    for (int tA = 0; tA < 2; tA++)
        for (int tB = 0; tB < 2; tB++) {
            /* 257 in each dimension, every path */
            for (int path = 0; path < 4; path++) {
                check_gemm(tA, tB, 257, 9, 17, 1.0f, 0.0f, 1, path, 1);
                check_gemm(tA, tB, 7, 257, 9, 0.5f, 1.0f, 0, path, 0);
                check_gemm(tA, tB, 9, 17, 257, -1.0f, 0.5f, 2, path, 0);
            }
            /* crosses KC (256), MC (96), NC (128 / 120) blocking boundaries */
            check_gemm(tA, tB, 130, 150, 300, 0.75f, 0.25f, 5, PATH_BLOCKED_PACKED, 0);
            check_gemm(tA, tB, 130, 150, 300, 0.75f, 0.0f, 0, PATH_BLOCKED_UNPACKED, 1);
            check_gemm(tA, tB, 101, 131, 270, 1.0f, 1.0f, 3, PATH_PUBLIC_NULL, 0);
            /* A^T with a long row stride: the public path packs A */
            check_gemm(tA, tB, 900, 20, 40, 1.0f, 0.0f, 0, PATH_PUBLIC_WORK, 0);
            /* M == 1 / N == 1 (matrix-vector paths), tight and padded ld */
            for (int pad = 0; pad <= 2; pad += 2)
                for (int si = 0; si < NSIZES; si++) {
                    int s = SIZES[si];
                    check_gemm(tA, tB, 1, s, 65, 1.0f, 0.0f, pad, PATH_PUBLIC_NULL, 1);
                    check_gemm(tA, tB, 1, 65, s, 0.5f, -2.0f, pad, PATH_PUBLIC_NULL, 0);
                    check_gemm(tA, tB, s, 1, 63, 1.0f, 0.0f, pad, PATH_PUBLIC_NULL, 1);
                    check_gemm(tA, tB, 63, 1, s, -1.0f, 1.0f, pad, PATH_PUBLIC_WORK, 0);
                    check_gemm(tA, tB, 1, 1, s, 2.0f, 0.5f, pad, PATH_PUBLIC_NULL, 0);
                }
            /* zero sizes, alpha == 0 */
            check_gemm(tA, tB, 0, 5, 5, 1.0f, 0.5f, 1, PATH_PUBLIC_NULL, 0);
            check_gemm(tA, tB, 5, 0, 5, 1.0f, 0.5f, 1, PATH_PUBLIC_NULL, 0);
            check_gemm(tA, tB, 5, 7, 0, 1.0f, 0.5f, 1, PATH_PUBLIC_NULL, 0);
            check_gemm(tA, tB, 5, 7, 0, 1.0f, 0.0f, 1, PATH_PUBLIC_NULL, 1);
            check_gemm(tA, tB, 9, 17, 8, 0.0f, 0.5f, 1, PATH_PUBLIC_NULL, 0);
            check_gemm(tA, tB, 9, 17, 8, 0.0f, 0.0f, 1, PATH_PUBLIC_WORK, 1);
        }
    /* sgemm_ref vs hand-computed values */
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, -1, 2, 0.5f, 1}, C[4] = {NAN, NAN, 1, 1};
    advnn_sgemm_ref(0, 0, 2, 2, 3, 1.0f, A, 3, B, 2, 0.0f, C, 2); /* [1 2 3;4 5 6] * [1 0;-1 2;.5 1] */
    CHECK(C[0] == 0.5f && C[1] == 7.0f && C[2] == 2.0f && C[3] == 16.0f, "sgemm_ref values %g %g %g %g", C[0], C[1],
          C[2], C[3]);
}

/* ------------------------------------------------------------------------------------------ */
/* Convolution (im2col / col2im), pooling, upsampling                                          */
static const int CV_C[] = {1, 3, 5, 7, 8, 9, 17};   /* 2..7: col2im's gather path (AVX2) */
static const int CV_HW[][2] = {{1, 1}, {1, 7}, {2, 5}, {5, 2}, {5, 5}, {7, 7}, {2, 1}};
static const int CV_K[][2] = {{1, 1}, {2, 2}, {3, 3}, {1, 3}, {3, 2}};
static const int CV_S[][2] = {{1, 1}, {2, 2}, {1, 2}};
#define NCV_C ((int)(sizeof CV_C / sizeof CV_C[0]))
#define NCV_HW ((int)(sizeof CV_HW / sizeof CV_HW[0]))
#define NCV_K ((int)(sizeof CV_K / sizeof CV_K[0]))
#define NCV_S ((int)(sizeof CV_S / sizeof CV_S[0]))

/* Output size and leading pad of one dimension. mode 0: Keras "valid"; 1: Keras "same" (the odd
 * extra pad after); 2: explicit pad 1 on both sides (windows may lie entirely in the padding);
 * 3: pad k + 1 on both sides (whole windows beyond either edge, not a Keras mode but allowed). */
static int conv_dim(int n, int k, int s, int mode, int *pad) {
    if (mode == 0) { *pad = 0; return n >= k ? (n - k) / s + 1 : 0; }
    if (mode == 1) {
        int o = (n + s - 1) / s, t = (o - 1) * s + k - n;
        *pad = t > 0 ? t / 2 : 0;
        return o;
    }
    *pad = mode == 2 ? 1 : k + 1;
    return n + 2 * *pad >= k ? (n + 2 * *pad - k) / s + 1 : 0;
}

static void check_conv(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int colpad) {
    int PT, PL, Ho = conv_dim(H, KH, SH, mode, &PT), Wo = conv_dim(W, KW, SW, mode, &PL);
    if (Ho <= 0 || Wo <= 0) return;
    const int K = KH * KW * C, ld = K + colpad, P = Ho * Wo, CO = 3;
    size_t nx = (size_t)H * W * C, nc = (size_t)P * ld;
    float *x = falloc(nx), *cols = falloc(nc), *colr = falloc(nc), *R = falloc(nc);
    float *dx = falloc(nx), *dxr = falloc(nx), *dxa = falloc(nx), *kern = falloc((size_t)K * CO), *y = falloc((size_t)P * CO);
    fill_rand(x, nx, 1.0f);
    fill_val(cols, nc, SENT);
    fill_val(colr, nc, SENT);
    advnn_im2col(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, cols, ld);
    advnn__im2col_ref(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, colr, ld);
    int bad = count_bitwise_diff(cols, colr, nc); /* includes the padding columns: SENT in both */
    char what[160];
    snprintf(what, sizeof what, "H=%d W=%d C=%d K=%dx%d S=%dx%d mode=%d (Ho=%d Wo=%d PT=%d PL=%d) ld=%d", H, W, C, KH, KW,
             SH, SW, mode, Ho, Wo, PT, PL, ld);
    CHECK(!bad, "im2col live vs ref %s: %d mismatches", what, bad);
    /* ref vs the definition */
    bad = 0;
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++)
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++)
                    for (int c = 0; c < C; c++) {
                        int ih = oh * SH - PT + kh, iw = ow * SW - PL + kw;
                        float want = ih >= 0 && ih < H && iw >= 0 && iw < W ? x[((size_t)ih * W + iw) * C + c] : 0.0f;
                        bad += colr[(size_t)(oh * Wo + ow) * ld + (kh * KW + kw) * C + c] != want;
                    }
    CHECK(!bad, "im2col ref vs definition %s: %d mismatches", what, bad);
    /* im2col + GEMM with the Keras kernel layout (KH, KW, Cin, Cout) == direct convolution (double) */
    fill_rand(kern, (size_t)K * CO, 1.0f);
    advnn_sgemm(0, 0, P, CO, K, 1.0f, cols, ld, kern, CO, 0.0f, y, CO, NULL);
    bad = 0;
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++)
            for (int co = 0; co < CO; co++) {
                double s = 0, mag = 0;
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) {
                        int ih = oh * SH - PT + kh, iw = ow * SW - PL + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        for (int c = 0; c < C; c++) {
                            double t = (double)x[((size_t)ih * W + iw) * C + c] * kern[(((size_t)kh * KW + kw) * C + c) * CO + co];
                            s += t;
                            mag += fabs(t);
                        }
                    }
                bad += !(fabs(y[(size_t)(oh * Wo + ow) * CO + co] - s) <= 2.0 * (K + 1) * 6e-8 * mag + 1e-30);
            }
    CHECK(!bad, "im2col+sgemm vs direct convolution %s: %d mismatches", what, bad);
    /* col2im: live vs ref bitwise (accumulating into the same random dx); padding columns are NaN
     * (must not be read) */
    for (int p = 0; p < P; p++)
        for (int k = 0; k < ld; k++) R[(size_t)p * ld + k] = k < K ? frand() : NAN;
    fill_rand(dx, nx, 1.0f);
    memcpy(dxr, dx, nx * sizeof(float));
    advnn_col2im(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, R, ld, dx);
    advnn__col2im_ref(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, R, ld, dxr);
    bad = count_bitwise_diff(dx, dxr, nx);
    CHECK(!bad, "col2im live vs ref %s: %d mismatches", what, bad);
    /* ref is the adjoint of im2col: <im2col(x), R> == <x, col2im(R)> */
    fill_val(dxa, nx, 0.0f);
    advnn__col2im_ref(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, R, ld, dxa);
    double lhs = 0, rhs = 0, mag = 0;
    for (int p = 0; p < P; p++)
        for (int k = 0; k < K; k++) {
            double t = (double)colr[(size_t)p * ld + k] * R[(size_t)p * ld + k];
            lhs += t;
            mag += fabs(t);
        }
    for (size_t k = 0; k < nx; k++) rhs += (double)x[k] * dxa[k];
    CHECK(fabs(lhs - rhs) <= KH * KW * 6e-8 * mag + 1e-30, "col2im adjoint %s: %.12g vs %.12g", what, lhs, rhs);
    ffree(x); ffree(cols); ffree(colr); ffree(R); ffree(dx); ffree(dxr); ffree(dxa); ffree(kern); ffree(y);
}

/* advnn_conv_implicit against im2col + advnn_sgemm_bias_relu, bit for bit: z and y, with and without
 * bias and ReLU, every padding mode and stride of the im2col tests, filters across the 8- and 16-wide
 * panels, rows of positions not a multiple of 6; x and work allocated to size (ASan sees a read past
 * either); F = 1 (the matrix-vector path's sums); PReLU in the store against advnn_act_forward; and
 * nothing written where it declines (F = 1 with kernel rows under 8 taps, KKC > 256, one position, no
 * AVX2, ReLU and PReLU both asked). */
/* whether advnn_conv_implicit can run here (its kernels are AVX2's; NEON and the scalar path decline) */
static int conv_implicit_live(void) {
#ifdef ADVNN__AVX2
    return ADVNN__VEC_LIVE();
#else
    return 0;
#endif
}
static int check_conv_implicit(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int F, int var) {
    int PT, PL, Ho = conv_dim(H, KH, SH, mode, &PT), Wo = conv_dim(W, KW, SW, mode, &PL);
    if (Ho <= 0 || Wo <= 0) return 0;
    const int K = KH * KW * C, P = Ho * Wo, relu = var & 1, use_bias = !(var & 2);
    const int live = conv_implicit_live() && (F >= 2 || KW * C >= 8) && K <= 256 && P >= 2;
    size_t nx = (size_t)H * W * C, nw = advnn_conv_implicit_floats(C, KH, KW, SH, SW, Ho, Wo, F);
    float *x = falloc(nx), *cols = falloc((size_t)P * K), *kern = falloc((size_t)K * F), *bias = falloc((size_t)F);
    float *z1 = falloc((size_t)P * F), *y1 = falloc((size_t)P * F);
    float *z2 = falloc((size_t)P * F), *y2 = falloc((size_t)P * F);
    float *work = falloc(nw);
    fill_rand(x, nx, 1.0f);
    for (size_t i = 0; i < nx; i += 7) x[i] = 0.0f;   /* exact zeros among the taps, as after a ReLU */
    if (var & 4) fill_val(x, nx, 0.0f);                 /* z = +0 everywhere (no bias): PReLU's z > 0 exactly */
    fill_rand(kern, (size_t)K * F, 0.5f);
    fill_rand(bias, (size_t)F, 0.5f);
    fill_val(z1, (size_t)P * F, SENT); fill_val(y1, (size_t)P * F, SENT);
    fill_val(z2, (size_t)P * F, SENT); fill_val(y2, (size_t)P * F, SENT);
    advnn_im2col(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, cols, K);
    advnn_sgemm_bias_relu(P, F, K, cols, K, kern, F, use_bias ? bias : NULL, relu, z1, F, y1, F, gemm_work);
    int got = advnn_conv_implicit(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, F, kern, use_bias ? bias : NULL, relu,
                                  NULL, z2, y2, work);
    int bad = got != live;
    if (got) bad += count_bitwise_diff(z1, z2, (size_t)P * F) + count_bitwise_diff(y1, y2, (size_t)P * F);
    else for (size_t i = 0; i < (size_t)P * F; i++) bad += !(z2[i] == SENT && y2[i] == SENT);
    if (got && relu) {   /* ReLU in place (y == z), as the library runs a ReLU convolution */
        advnn_sgemm_bias_relu(P, F, K, cols, K, kern, F, use_bias ? bias : NULL, 1, z1, F, z1, F, gemm_work);
        advnn_conv_implicit(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, F, kern, use_bias ? bias : NULL, 1, NULL, z2, z2,
                            work);
        bad += count_bitwise_diff(z1, z2, (size_t)P * F);
    }
    if (got && !relu) {   /* PReLU in the store: y as advnn_act_forward(PRELU) on z, z kept */
        float *sl = falloc((size_t)F);
        fill_rand(sl, (size_t)F, 0.5f);
        for (int f = 0; f < F; f++) sl[f] = (f % 2 ? 1.0f : -1.0f) * (0.1f + fabsf(sl[f]));   /* both signs */
        advnn_act_forward(ADVNN_ACT_PRELU, P, F, z1, F, y1, F, 0.0f, sl);
        fill_val(z2, (size_t)P * F, SENT); fill_val(y2, (size_t)P * F, SENT);
        bad += !advnn_conv_implicit(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, F, kern, use_bias ? bias : NULL, 0, sl,
                                    z2, y2, work);
        bad += count_bitwise_diff(z1, z2, (size_t)P * F);
        bad += memcmp(y1, y2, (size_t)P * F * sizeof(float)) != 0;   /* with zeros' signs: slope * +0 */
        bad += advnn_conv_implicit(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, F, kern, NULL, 1, sl, z2, y2, work);
        ffree(sl);
    }
    CHECK(!bad, "conv_implicit H=%d W=%d C=%d K=%dx%d S=%dx%d mode=%d F=%d relu=%d bias=%d: returned %d, %d mismatches",
          H, W, C, KH, KW, SH, SW, mode, F, relu, use_bias, got, bad);
    ffree(x); ffree(cols); ffree(kern); ffree(bias); ffree(z1); ffree(y1); ffree(z2); ffree(y2); ffree(work);
    return got;
}
/* f over the im2col tests' grid of shapes (every channel count, image, kernel, stride and padding mode,
 * H == 1: the 1-D case), the cases numbered; the sum of what f returns */
typedef int (*conv_case_fn)(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int cnt);
static int conv_grid(conv_case_fn f) {
    int ran = 0, cnt = 0;
    for (int ci = 0; ci < NCV_C; ci++)
        for (int hw = 0; hw < NCV_HW; hw++)
            for (int ki = 0; ki < NCV_K; ki++)
                for (int si = 0; si < NCV_S; si++)
                    for (int mode = 0; mode < 4; mode++, cnt++) {
                        int H = CV_HW[hw][0], W = CV_HW[hw][1], KH = H == 1 ? 1 : CV_K[ki][0];
                        ran += f(H, W, CV_C[ci], KH, CV_K[ki][1], CV_S[si][0], CV_S[si][1], mode, cnt);
                    }
    return ran;
}
static int implicit_case(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int cnt) {
    static const int FS[] = {1, 2, 5, 8, 10, 16, 17, 33};
    return check_conv_implicit(H, W, C, KH, KW, SH, SW, mode, FS[cnt % 8], cnt % 4);
}
static void test_conv_implicit(void) {
    int ran = conv_grid(implicit_case);
    /* W3's layers (40x40 and 20x20, "same"), with every filter count; KKC 256 and 261 */
    static const int W3[][3] = {{40, 1, 10}, {40, 10, 10}, {20, 10, 5}, {20, 5, 5},
                                {20, 1, 5},  {40, 5, 10},  {40, 10, 1}};
    for (int i = 0; i < 7; i++)
        for (int v = 0; v < 4; v++)
            ran += check_conv_implicit(W3[i][0], W3[i][0], W3[i][1], 3, 3, 1, 1, 1, W3[i][2] + v % 2, v);
    /* rows of >= 8 pixels at 3, 9 and 13 channels (the planar copy's 8 x 8 blocks, overlapping above 8) */
    for (int v = 0; v < 4; v++) {
        ran += check_conv_implicit(5, 17, 3, 3, 3, 1, 1, v % 3, 7, v);
        ran += check_conv_implicit(6, 19, 9, 3, 3, 1, 1, v % 3, 12, v);
        ran += check_conv_implicit(4, 23, 13, 3, 3, 1, 1, v % 3, 9 + v, v);
    }
    ran += check_conv_implicit(9, 11, 64, 2, 2, 1, 1, 1, 12, 1);
    for (int f = 1; f <= 17; f += 4) ran += check_conv_implicit(6, 7, 3, 3, 3, 1 + f / 16, 1, 1, f, 6);   /* zeros */
    check_conv_implicit(9, 11, 29, 3, 3, 1, 1, 1, 12, 0);
    if (conv_implicit_live()) CHECK(ran > 100, "conv_implicit: only %d of the shapes took the implicit path", ran);
}

/* advnn_conv_wgrad against im2col of each image + advnn_sgemm(A^T B) into an accumulating dW, bit for
 * bit: the im2col tests' shapes and modes, several images (K blocks of 256 rows that cross images, many
 * images a block for small ones), W3's layers; x, dz and work allocated to size; nothing written where
 * it declines (F outside 2..12, KKC outside 5..800, kernel rows under 8 taps, no AVX2). */
static int check_conv_wgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int F, int n) {
    int PT, PL, Ho = conv_dim(H, KH, SH, mode, &PT), Wo = conv_dim(W, KW, SW, mode, &PL);
    if (Ho <= 0 || Wo <= 0) return 0;
    const int K = KH * KW * C, P = Ho * Wo, live = conv_implicit_live() && F >= 2 && F <= 12 && K >= 5 && K <= 800 &&
                                                   KW * C >= 8;
    size_t nx = (size_t)n * H * W * C, nz = (size_t)n * P * F, nw = advnn_conv_wgrad_floats(C, KH, KW, SH, SW, Ho, Wo);
    float *x = falloc(nx), *cols = falloc((size_t)n * P * K), *dz = falloc(nz), *work = falloc(nw);
    float *w0 = falloc((size_t)K * F), *w1 = falloc((size_t)K * F), *w2 = falloc((size_t)K * F);
    fill_rand(x, nx, 1.0f);
    for (size_t i = 0; i < nx; i += 7) x[i] = 0.0f;
    fill_val(cols, (size_t)n * P * K, 0.0f);   /* (written below; aarch64 gcc 12 cannot tell at -O2) */
    fill_rand(dz, nz, 1.0f);
    fill_rand(w0, (size_t)K * F, 0.5f);
    memcpy(w1, w0, (size_t)K * F * sizeof(float));
    memcpy(w2, w0, (size_t)K * F * sizeof(float));
    for (int j = 0; j < n; j++)
        advnn_im2col(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x + (size_t)j * H * W * C, cols + (size_t)j * P * K, K);
    advnn_sgemm(1, 0, K, F, n * P, 1.0f, cols, K, dz, F, 1.0f, w1, F, gemm_work);
    int got = advnn_conv_wgrad(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, n, dz, F, w2, work);
    int bad = (got != live) + count_bitwise_diff(got ? w1 : w0, w2, (size_t)K * F);   /* declined: untouched */
    CHECK(!bad, "conv_wgrad H=%d W=%d C=%d K=%dx%d S=%dx%d mode=%d F=%d n=%d: returned %d, %d mismatches", H, W, C, KH,
          KW, SH, SW, mode, F, n, got, bad);
    ffree(x); ffree(cols); ffree(dz); ffree(work); ffree(w0); ffree(w1); ffree(w2);
    return got;
}
static int wgrad_case(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int cnt) {
    static const int FS[] = {1, 2, 3, 5, 10, 12, 13};
    return check_conv_wgrad(H, W, C, KH, KW, SH, SW, mode, FS[cnt % 7], 1 + cnt % 3);
}
static void test_conv_wgrad(void) {
    int ran = conv_grid(wgrad_case);
    /* W3's layers over 3 images (1600 or 400 positions: blocks cross images), 2x2 images 150 at a time
     * (a block spans 65), KKC 792 and 801 */
    static const int W3[][3] = {{40, 1, 10}, {40, 10, 10}, {20, 10, 5}, {20, 5, 5}, {20, 1, 5}, {40, 5, 10}};
    for (int i = 0; i < 6; i++) ran += check_conv_wgrad(W3[i][0], W3[i][0], W3[i][1], 3, 3, 1, 1, 1, W3[i][2], 3);
    ran += check_conv_wgrad(2, 2, 3, 3, 3, 1, 1, 1, 4, 150);
    ran += check_conv_wgrad(4, 5, 88, 3, 3, 1, 1, 1, 6, 2);
    check_conv_wgrad(4, 5, 89, 3, 3, 1, 1, 1, 6, 2);
    if (conv_implicit_live()) CHECK(ran > 100, "conv_wgrad: only %d of the shapes took the implicit path", ran);
}

/* advnn_conv_dgrad against, per image, the dcols GEMM (advnn_sgemm(0, 1), K = F) and col2im onto zeros,
 * bit for bit with memcmp (the signs of zeros too: dz holds -0 and whole pixels of zeros, the kernel
 * zeros, and the padding taps col2im skips are read as zeros there); the im2col tests' grid with 1 to 33
 * filters over 1 to 3 images, W3's layers; dz, dx and work allocated to size (ASan sees a read past
 * either); nothing written where it declines (stride 2, C > 12, padding >= the kernel, KKC < 5, one
 * position, no AVX2, a kernel holding Inf or NaN), and advnn_conv_dgrad_ok answers as it returns. */
static int check_conv_dgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int F, int n, int nonfinite) {
    int PT, PL, Ho = conv_dim(H, KH, SH, mode, &PT), Wo = conv_dim(W, KW, SW, mode, &PL);
    if (Ho <= 0 || Wo <= 0) return 0;
    const int K = KH * KW * C, P = Ho * Wo, live = conv_implicit_live() && SH == 1 && SW == 1 && C <= 12 && PT < KH &&
                                                   PL < KW && P >= 2 && K >= 5 && !nonfinite;
    size_t nx = (size_t)n * H * W * C, nz = (size_t)n * P * F, nk = (size_t)K * F;
    float *dz = falloc(nz), *kern = falloc(nk), *dcols = falloc((size_t)P * K), *dx1 = falloc(nx), *dx2 = falloc(nx);
    float *work = falloc(advnn_conv_dgrad_floats(H, W, KH, KW, F));
    fill_rand(dz, nz, 1.0f);
    for (size_t i = 0; i < nz; i += 5) dz[i] = -0.0f;
    for (size_t p = 0; p < (size_t)n * P; p += 4)   /* whole pixels of zeros, as where a ReLU was off */
        for (int f = 0; f < F; f++) dz[p * F + f] = p % 8 ? -0.0f : 0.0f;
    fill_rand(kern, nk, 0.5f);
    for (size_t i = 0; i < nk; i += 6) kern[i] = 0.0f;
    if (nonfinite) kern[nk / 2] = nonfinite == 1 ? INFINITY : NAN;
    fill_val(dx1, nx, 0.0f);
    for (int j = 0; j < n; j++) {
        advnn_sgemm(0, 1, P, K, F, 1.0f, dz + (size_t)j * P * F, F, kern, F, 0.0f, dcols, K, gemm_work);
        advnn_col2im(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, dcols, K, dx1 + (size_t)j * H * W * C);
    }
    fill_val(dx2, nx, SENT);
    int ok = advnn_conv_dgrad_ok(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, n, F, kern);
    int got = advnn_conv_dgrad(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, dz, n, F, kern, dx2, work), bad = got != live;
    bad += ok != got;   /* advnn_conv_dgrad_ok says beforehand what advnn_conv_dgrad does */
    if (got) bad += memcmp(dx1, dx2, nx * sizeof(float)) != 0;
    else for (size_t i = 0; i < nx; i++) bad += !(dx2[i] == SENT);
    CHECK(!bad, "conv_dgrad H=%d W=%d C=%d K=%dx%d S=%dx%d mode=%d F=%d n=%d nonfinite=%d: returned %d, %d mismatches", H,
          W, C, KH, KW, SH, SW, mode, F, n, nonfinite, got, bad);
    ffree(dz); ffree(kern); ffree(dcols); ffree(dx1); ffree(dx2); ffree(work);
    return got;
}
static int dgrad_case(int H, int W, int C, int KH, int KW, int SH, int SW, int mode, int cnt) {
    static const int FS[] = {1, 2, 3, 5, 10, 12, 13, 33};
    return check_conv_dgrad(H, W, C, KH, KW, SH, SW, mode, FS[cnt % 8], 1 + cnt % 3, 0);
}
static void test_conv_dgrad(void) {
    int ran = conv_grid(dgrad_case);
    /* W3's layers with their filters and a few more; 10-12 channels (two groups of lanes), wide rows */
    static const int W3[][3] = {{40, 10, 10}, {20, 10, 10}, {20, 10, 5}, {20, 5, 5}, {20, 1, 5}, {40, 5, 5},
                                {40, 5, 10},  {40, 10, 1}};
    for (int i = 0; i < 8; i++)
        for (int f = 0; f < 2; f++) ran += check_conv_dgrad(W3[i][0], W3[i][0], W3[i][1], 3, 3, 1, 1, 1, W3[i][2] + f, 2, 0);
    for (int c = 10; c <= 13; c++) ran += check_conv_dgrad(6, 37, c, 3, 3, 1, 1, c % 3, 4 + c, 2, 0);
    ran += check_conv_dgrad(3, 70, 7, 5, 5, 1, 1, 1, 6, 1, 0);
    for (int v = 1; v <= 2; v++) check_conv_dgrad(9, 9, 4, 3, 3, 1, 1, 1, 5, 1, v);
    if (conv_implicit_live()) CHECK(ran > 100, "conv_dgrad: only %d of the shapes took the direct path", ran);
}

static void test_im2col_col2im(void) {
    int cnt = 0;
    for (int ci = 0; ci < NCV_C; ci++)
        for (int hw = 0; hw < NCV_HW; hw++)
            for (int ki = 0; ki < NCV_K; ki++)
                for (int si = 0; si < NCV_S; si++)
                    for (int mode = 0; mode < 3; mode++, cnt++) {
                        int H = CV_HW[hw][0], W = CV_HW[hw][1];
                        int KH = H == 1 ? 1 : CV_K[ki][0], KW = CV_K[ki][1]; /* H == 1: the 1-D case */
                        check_conv(H, W, CV_C[ci], KH, KW, CV_S[si][0], CV_S[si][1], mode, cnt % 3 == 0 ? 3 : 0);
                    }
    /* rows wider than col2im's gather block (1024 floats: 204 pixels of 5 channels) */
    check_conv(3, 450, 5, 3, 3, 1, 1, 1, 0);
    check_conv(2, 300, 3, 3, 3, 2, 1, 2, 3);
    /* col2im's gather at 8 to 15 channels (a whole vector and a partial one), rows of 4-pixel groups */
    check_conv(3, 60, 10, 3, 3, 1, 1, 1, 0);
    check_conv(4, 33, 8, 3, 3, 1, 1, 1, 3);
    check_conv(5, 21, 15, 3, 2, 1, 1, 2, 0);
    /* a strided Keras "same" with an even kernel: 7 wide, k 2, s 2: Wo 4, pad 1 after */
    check_conv(7, 7, 3, 2, 2, 2, 2, 1, 1);
    /* padding wider than the kernel: rows and columns of windows entirely outside the image */
    for (int ci = 0; ci < NCV_C; ci++) {
        check_conv(5, 5, CV_C[ci], 2, 3, 1, 2, 3, 0);
        check_conv(1, 7, CV_C[ci], 1, 2, 1, 1, 3, 2);
    }
    /* empty: nothing written */
    float s[4] = {SENT, SENT, SENT, SENT};
    advnn_im2col(3, 3, 1, 3, 3, 1, 1, 1, 1, 0, 3, s, s, 9);
    advnn_col2im(3, 3, 0, 3, 3, 1, 1, 1, 1, 3, 3, s, 9, s);
    for (int i = 0; i < 4; i++) CHECK(s[i] == SENT, "empty im2col/col2im touched memory");
}

static void test_pooling(void) {
    for (int ci = 0; ci < NCV_C; ci++)
        for (int hw = 0; hw < NCV_HW; hw++)
            for (int ki = 0; ki < NCV_K; ki++)
                for (int si = 0; si < NCV_S; si++) {
                    int H = CV_HW[hw][0], W = CV_HW[hw][1], C = CV_C[ci];
                    int KH = H == 1 ? 1 : CV_K[ki][0], KW = CV_K[ki][1], SH = CV_S[si][0], SW = CV_S[si][1];
                    if (H < KH || W < KW) continue;
                    int Ho = (H - KH) / SH + 1, Wo = (W - KW) / SW + 1, ties = (ci + hw + ki) % 2;
                    size_t nx = (size_t)H * W * C, ny = (size_t)Ho * Wo * C;
                    float *x = falloc(nx), *y = falloc(ny + 1), *yr = falloc(ny + 1), *y2 = falloc(ny + 1);
                    float *dy = falloc(ny), *dx = falloc(nx), *dxr = falloc(nx), *dx0 = falloc(nx);
                    int32_t *am = (int32_t *)malloc((ny + 1) * sizeof(int32_t)), *amr = (int32_t *)malloc((ny + 1) * sizeof(int32_t));
                    char what[128];
                    snprintf(what, sizeof what, "H=%d W=%d C=%d K=%dx%d S=%dx%d ties=%d", H, W, C, KH, KW, SH, SW, ties);
                    for (size_t k = 0; k < nx; k++) x[k] = ties ? (float)((int)(3.0f * frand()) - 1) : frand();
                    fill_val(y, ny + 1, SENT); fill_val(yr, ny + 1, SENT); fill_val(y2, ny + 1, SENT);
                    am[ny] = amr[ny] = -7;
                    /* max: live vs ref bitwise, argmax equal, argmax NULL gives the same y */
                    advnn_maxpool_fwd(H, W, C, KH, KW, SH, SW, x, y, am);
                    advnn__maxpool_fwd_ref(H, W, C, KH, KW, SH, SW, x, yr, amr);
                    advnn_maxpool_fwd(H, W, C, KH, KW, SH, SW, x, y2, NULL);
                    int bad = count_bitwise_diff(y, yr, ny + 1) + count_bitwise_diff(y2, yr, ny + 1);
                    for (size_t k = 0; k <= ny; k++) bad += am[k] != amr[k];
                    CHECK(!bad, "maxpool live vs ref %s: %d mismatches", what, bad);
                    /* ref vs definition: first maximum in scan order */
                    bad = 0;
                    for (int oh = 0; oh < Ho; oh++)
                        for (int ow = 0; ow < Wo; ow++)
                            for (int c = 0; c < C; c++) {
                                double best = -INFINITY;
                                long bi = -1;
                                for (int kh = 0; kh < KH; kh++)
                                    for (int kw = 0; kw < KW; kw++) {
                                        long k = ((long)(oh * SH + kh) * W + ow * SW + kw) * C + c;
                                        if (x[k] > best) { best = x[k]; bi = k; }
                                    }
                                size_t o = ((size_t)oh * Wo + ow) * C + c;
                                bad += yr[o] != (float)best || amr[o] != bi;
                            }
                    CHECK(!bad, "maxpool ref vs definition %s: %d mismatches", what, bad);
                    /* maxpool_bwd vs double: dx(k) = dx0(k) + sum of dy over the outputs choosing k */
                    fill_rand(dy, ny, 1.0f);
                    fill_rand(dx0, nx, 1.0f);
                    memcpy(dx, dx0, nx * sizeof(float));
                    advnn_maxpool_bwd(Ho, Wo, C, dy, am, dx);
                    bad = 0;
                    for (size_t k = 0; k < nx; k++) {
                        double s = dx0[k], m = fabs(dx0[k]);
                        int cntk = 0;
                        for (size_t o = 0; o < ny; o++)
                            if ((size_t)am[o] == k) { s += dy[o]; m += fabs(dy[o]); cntk++; }
                        bad += !(fabs(dx[k] - s) <= (cntk + 1) * 6e-8 * m + 1e-30);
                    }
                    CHECK(!bad, "maxpool_bwd vs double %s: %d mismatches", what, bad);
                    /* avg: live vs ref bitwise (same order of the sum, one multiply) */
                    fill_val(y, ny + 1, SENT); fill_val(yr, ny + 1, SENT);
                    advnn_avgpool_fwd(H, W, C, KH, KW, SH, SW, x, y);
                    advnn__avgpool_fwd_ref(H, W, C, KH, KW, SH, SW, x, yr);
                    bad = count_bitwise_diff(y, yr, ny + 1);
                    CHECK(!bad, "avgpool live vs ref %s: %d mismatches", what, bad);
                    bad = 0;
                    for (int oh = 0; oh < Ho; oh++)
                        for (int ow = 0; ow < Wo; ow++)
                            for (int c = 0; c < C; c++) {
                                double s = 0, m = 0;
                                for (int kh = 0; kh < KH; kh++)
                                    for (int kw = 0; kw < KW; kw++) {
                                        double v = x[((size_t)(oh * SH + kh) * W + ow * SW + kw) * C + c];
                                        s += v; m += fabs(v);
                                    }
                                s /= KH * KW; m /= KH * KW;
                                bad += !(fabs(yr[((size_t)oh * Wo + ow) * C + c] - s) <= (KH * KW + 1) * 6e-8 * m + 1e-30);
                            }
                    CHECK(!bad, "avgpool ref vs double %s: %d mismatches", what, bad);
                    /* avgpool_bwd: live vs ref (one rounding of dy/(KH*KW) may be fused), ref vs double */
                    memcpy(dx, dx0, nx * sizeof(float));
                    memcpy(dxr, dx0, nx * sizeof(float));
                    advnn_avgpool_bwd(H, W, C, KH, KW, SH, SW, dy, dx);
                    advnn__avgpool_bwd_ref(H, W, C, KH, KW, SH, SW, dy, dxr);
                    bad = 0;
                    for (int h = 0; h < H; h++)
                        for (int w = 0; w < W; w++)
                            for (int c = 0; c < C; c++) {
                                size_t k = ((size_t)h * W + w) * C + c;
                                double s = dx0[k], m = fabs(dx0[k]);
                                int cntk = 0;
                                for (int oh = 0; oh < Ho; oh++)
                                    for (int ow = 0; ow < Wo; ow++)
                                        if (h >= oh * SH && h < oh * SH + KH && w >= ow * SW && w < ow * SW + KW) {
                                            double g = dy[((size_t)oh * Wo + ow) * C + c] / (double)(KH * KW);
                                            s += g; m += fabs(g); cntk++;
                                        }
                                double tol = 2 * (cntk + 1) * 6e-8 * m + 1e-30;
                                bad += !(fabs(dxr[k] - s) <= tol) + !(fabs(dx[k] - dxr[k]) <= 2 * tol);
                            }
                    CHECK(!bad, "avgpool_bwd %s: %d mismatches", what, bad);
                    free(am); free(amr);
                    ffree(x); ffree(y); ffree(yr); ffree(y2); ffree(dy); ffree(dx); ffree(dxr); ffree(dx0);
                }
}

static void test_upsample(void) {
    static const int F[][2] = {{1, 1}, {2, 2}, {1, 3}, {3, 2}, {2, 1}};
    for (int ci = 0; ci < NCV_C; ci++)
        for (int hw = 0; hw < NCV_HW; hw++)
            for (int fi = 0; fi < 5; fi++) {
                int H = CV_HW[hw][0], W = CV_HW[hw][1], C = CV_C[ci], FH = F[fi][0], FW = F[fi][1];
                size_t nx = (size_t)H * W * C, ny = nx * FH * FW;
                float *x = falloc(nx), *y = falloc(ny + 1), *yr = falloc(ny + 1), *dy = falloc(ny);
                float *dx = falloc(nx + 1), *dxr = falloc(nx + 1), *dx0 = falloc(nx + 1);
                char what[96];
                snprintf(what, sizeof what, "H=%d W=%d C=%d F=%dx%d", H, W, C, FH, FW);
                fill_rand(x, nx, 1.0f);
                fill_val(y, ny + 1, SENT); fill_val(yr, ny + 1, SENT);
                advnn_upsample_fwd(H, W, C, FH, FW, x, y);
                advnn__upsample_fwd_ref(H, W, C, FH, FW, x, yr);
                int bad = count_bitwise_diff(y, yr, ny + 1);
                CHECK(!bad, "upsample_fwd live vs ref %s: %d mismatches", what, bad);
                bad = 0;
                for (int h = 0; h < H * FH; h++)
                    for (int w = 0; w < W * FW; w++)
                        for (int c = 0; c < C; c++)
                            bad += yr[((size_t)h * W * FW + w) * C + c] != x[((size_t)(h / FH) * W + w / FW) * C + c];
                CHECK(!bad, "upsample_fwd ref vs definition %s: %d mismatches", what, bad);
                fill_rand(dy, ny, 1.0f);
                fill_rand(dx0, nx, 1.0f);
                dx0[nx] = SENT;
                memcpy(dx, dx0, (nx + 1) * sizeof(float));
                memcpy(dxr, dx0, (nx + 1) * sizeof(float));
                advnn_upsample_bwd(H, W, C, FH, FW, dy, dx);
                advnn__upsample_bwd_ref(H, W, C, FH, FW, dy, dxr);
                bad = count_bitwise_diff(dx, dxr, nx + 1);
                CHECK(!bad, "upsample_bwd live vs ref %s: %d mismatches", what, bad);
                bad = 0;
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++)
                        for (int c = 0; c < C; c++) {
                            size_t k = ((size_t)h * W + w) * C + c;
                            double s = dx0[k], m = fabs(dx0[k]);
                            for (int i = 0; i < FH; i++)
                                for (int j = 0; j < FW; j++) {
                                    double g = dy[((size_t)(h * FH + i) * W * FW + w * FW + j) * C + c];
                                    s += g; m += fabs(g);
                                }
                            bad += !(fabs(dxr[k] - s) <= (FH * FW + 1) * 6e-8 * m + 1e-30);
                        }
                CHECK(!bad, "upsample_bwd ref vs double %s: %d mismatches", what, bad);
                ffree(x); ffree(y); ffree(yr); ffree(dy); ffree(dx); ffree(dxr); ffree(dx0);
            }
}

/* ------------------------------------------------------------------------------------------ */
/* LSTM cell                                                                                   */
static double sig_d(double v) { return 1.0 / (1.0 + exp(-v)); }

/* mask patterns: 0 none (NULL), 1 alternating 1/0, 2 values 0.5, 0, -1, 1 (non-zero = active) */
static const float MASKV[4] = {0.5f, 0.0f, -1.0f, 1.0f};
static float mask_val(int mode, int r) { return mode == 1 ? (r % 2 ? 0.0f : 1.0f) : MASKV[r % 4]; }

/* Runs fwd and bwd, live and ref, on one configuration; checks live vs ref, ref vs double formulas
 * and that nothing outside the n x H (4H) windows is written. inplace: c == c_prev, h == h_prev in
 * the forward, dz == z, dc_prev == dc, dh_prev == dh in the backward. */
static void check_lstm(int n, int H, int zpad, int cpad, int hpad, int mmode, int inplace, int with_dc, int with_dhp) {
    const int ldz = 4 * H + zpad, ldc = H + cpad, ldh = H + hpad;
    size_t sz = (size_t)n * ldz, sc = (size_t)n * ldc, sh = (size_t)n * ldh;
    float *z = falloc(sz), *zr = falloc(sz), *z0 = falloc(sz), *cp = falloc(sc), *hp = falloc(sh);
    float *c = falloc(sc), *h = falloc(sh), *cr = falloc(sc), *hr = falloc(sh);
    float *dh = falloc(sh), *dc = falloc(sc), *dz = falloc(sz), *dzr = falloc(sz), *dcp = falloc(sc), *dcpr = falloc(sc);
    float *dhp = falloc(sh), *dhpr = falloc(sh), mask[32];   /* n <= 32 */
    for (int r = 0; r < n; r++) mask[r] = mask_val(mmode, r);
    const float *mk = mmode ? mask : NULL;
    char what[128];
    snprintf(what, sizeof what, "n=%d H=%d ld=%d,%d,%d mask=%d inplace=%d dc=%d dhp=%d", n, H, ldz, ldc, ldh, mmode,
             inplace, with_dc, with_dhp);
    fill_val(z, sz, SENT); fill_val(cp, sc, SENT); fill_val(hp, sh, SENT);
    for (int r = 0; r < n; r++) {
        for (int k = 0; k < 4 * H; k++) z[(size_t)r * ldz + k] = r == 2 ? EXTREMES[k % NEXT] * 0.3f : 4.0f * frand();
        for (int j = 0; j < H; j++) { cp[(size_t)r * ldc + j] = 2.0f * frand(); hp[(size_t)r * ldh + j] = frand(); }
    }
    memcpy(z0, z, sz * sizeof(float));
    memcpy(zr, z, sz * sizeof(float));
    /* ---- forward ---- */
    fill_val(cr, sc, SENT); fill_val(hr, sh, SENT);
    advnn__lstm_cell_fwd_ref(n, H, zr, ldz, cp, hp, cr, hr, ldc, ldh, mk);
    if (inplace) {
        memcpy(c, cp, sc * sizeof(float));
        memcpy(h, hp, sh * sizeof(float));
        advnn_lstm_cell_fwd(n, H, z, ldz, c, h, c, h, ldc, ldh, mk);
    } else {
        fill_val(c, sc, SENT); fill_val(h, sh, SENT);
        advnn_lstm_cell_fwd(n, H, z, ldz, cp, hp, c, h, ldc, ldh, mk);
    }
    int bad = 0;
    for (int r = 0; r < n; r++) {
        int act = !mk || mk[r] != 0.0f;
        for (int k = 0; k < ldz; k++) {
            size_t q = (size_t)r * ldz + k;
            if (k >= 4 * H) { bad += z[q] != SENT || zr[q] != SENT; continue; }
            double v = z0[q], want = k >= 2 * H && k < 3 * H ? tanh(v) : sig_d(v);
            bad += !close_f(z[q], zr[q], 2e-6, 1e-7) || !close_f(zr[q], want, 2e-6, 1e-7);
        }
        for (int j = 0; j < ldc; j++) {
            size_t q = (size_t)r * ldc + j;
            if (j >= H) { bad += c[q] != (inplace ? cp[q] : SENT) || cr[q] != SENT; continue; }
            const float *zz = zr + (size_t)r * ldz; /* the ref's activated gates */
            double i = zz[j], f = zz[H + j], g = zz[2 * H + j];
            double want = act ? f * cp[q] + i * g : cp[q];
            bad += !close_f(c[q], cr[q], 2e-6, 5e-7) || !close_f(cr[q], want, 2e-6, 5e-7);
        }
        for (int j = 0; j < ldh; j++) {
            size_t q = (size_t)r * ldh + j;
            if (j >= H) { bad += h[q] != (inplace ? hp[q] : SENT) || hr[q] != SENT; continue; }
            double o = zr[(size_t)r * ldz + 3 * H + j];
            double want = act ? o * tanh((double)cr[(size_t)r * ldc + j]) : hp[q];
            bad += !close_f(h[q], hr[q], 2e-6, 1e-6) || !close_f(hr[q], want, 2e-6, 5e-7);
        }
    }
    CHECK(!bad, "lstm_cell_fwd %s: %d mismatches", what, bad);
    /* ---- backward, from the ref's forward state ---- */
    fill_val(dh, sh, SENT); fill_val(dc, sc, SENT);
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < H; j++) { dh[(size_t)r * ldh + j] = frand(); dc[(size_t)r * ldc + j] = frand(); }
    }
    const float *dcin = with_dc ? dc : NULL;
    fill_val(dzr, sz, SENT); fill_val(dcpr, sc, SENT); fill_val(dhpr, sh, SENT);
    advnn__lstm_cell_bwd_ref(n, H, zr, ldz, cp, cr, dh, dcin, dzr, dcpr, with_dhp ? dhpr : NULL, ldc, ldh, mk);
    if (inplace) {
        memcpy(dz, zr, sz * sizeof(float));
        memcpy(dcp, dc, sc * sizeof(float));
        memcpy(dhp, dh, sh * sizeof(float));
        advnn_lstm_cell_bwd(n, H, dz, ldz, cp, cr, dhp, with_dc ? dcp : NULL, dz, dcp, with_dhp ? dhp : NULL, ldc, ldh, mk);
        if (!with_dhp) fill_val(dhp, sh, SENT); /* dh_prev not written: compare as such */
    } else {
        fill_val(dz, sz, SENT); fill_val(dcp, sc, SENT); fill_val(dhp, sh, SENT);
        advnn_lstm_cell_bwd(n, H, zr, ldz, cp, cr, dh, dcin, dz, dcp, with_dhp ? dhp : NULL, ldc, ldh, mk);
    }
    bad = 0;
    for (int r = 0; r < n; r++) {
        int act = !mk || mk[r] != 0.0f;
        const float *zz = zr + (size_t)r * ldz;
        for (int j = 0; j < H; j++) {
            size_t qc = (size_t)r * ldc + j, qh = (size_t)r * ldh + j;
            double i = zz[j], f = zz[H + j], g = zz[2 * H + j], o = zz[3 * H + j];
            double dhv = dh[qh], dcv = with_dc ? dc[qc] : 0.0, tc = tanh((double)cr[qc]);
            double dct = dcv + dhv * o * (1 - tc * tc);
            double want[6] = {dct * g * i * (1 - i), dct * cp[qc] * f * (1 - f), dct * i * (1 - g * g),
                              dhv * tc * o * (1 - o), dct * f, 0.0};
            if (!act) { want[0] = want[1] = want[2] = want[3] = 0; want[4] = dcv; want[5] = dhv; }
            const float *gl[6] = {dz + (size_t)r * ldz + j, dz + (size_t)r * ldz + H + j, dz + (size_t)r * ldz + 2 * H + j,
                                  dz + (size_t)r * ldz + 3 * H + j, dcp + qc, dhp + qh};
            const float *gr[6] = {dzr + (size_t)r * ldz + j, dzr + (size_t)r * ldz + H + j, dzr + (size_t)r * ldz + 2 * H + j,
                                  dzr + (size_t)r * ldz + 3 * H + j, dcpr + qc, dhpr + qh};
            for (int u = 0; u < (with_dhp ? 6 : 5); u++) {
                int ok = close_f(*gl[u], *gr[u], 1e-5, 1e-6) && close_f(*gr[u], want[u], 1e-5, 1e-6);
                if (!ok && bad++ < 3)
                    CHECK(0, "lstm_cell_bwd %s r=%d j=%d out%d: live %.9g ref %.9g double %.9g", what, r, j, u, *gl[u], *gr[u],
                          want[u]);
            }
            if (!with_dhp) bad += dhp[qh] != SENT || dhpr[qh] != SENT;
        }
        for (int k = 4 * H; k < ldz; k++) bad += dz[(size_t)r * ldz + k] != (inplace ? zr[(size_t)r * ldz + k] : SENT);
        for (int j = H; j < ldc; j++) bad += dcp[(size_t)r * ldc + j] != (inplace ? dc[(size_t)r * ldc + j] : SENT);
        for (int j = H; j < ldh; j++) bad += dhp[(size_t)r * ldh + j] != SENT && with_dhp && !inplace;
    }
    CHECK(!bad, "lstm_cell_bwd %s: %d mismatches", what, bad);
    ffree(z); ffree(zr); ffree(z0); ffree(cp); ffree(hp); ffree(c); ffree(h); ffree(cr); ffree(hr);
    ffree(dh); ffree(dc); ffree(dz); ffree(dzr); ffree(dcp); ffree(dcpr); ffree(dhp); ffree(dhpr);
}

static void test_lstm_cell(void) {
    static const int HS[] = {1, 3, 5, 8, 9, 10, 17};
    static const int NS[] = {1, 6, 19};   /* 19: two whole tiles of 8 rows and a part (narrow cells) */
    int cnt = 0;
    for (int hi = 0; hi < 7; hi++)
        for (int ni = 0, n = NS[0]; ni < 3; n = NS[++ni < 3 ? ni : 0])
            for (int mmode = 0; mmode < 3; mmode++)
                for (int v = 0; v < 4; v++, cnt++) {
                    int pad = v % 2, inplace = v >= 2;
                    check_lstm(n, HS[hi], pad ? 3 : 0, pad ? 2 : 0, pad ? 1 : 0, mmode, inplace, (cnt / 2) % 2 == 0, cnt % 3 != 1);
                }
    advnn_lstm_cell_fwd(0, 5, NULL, 20, NULL, NULL, NULL, NULL, 5, 5, NULL); /* n == 0: no access */
    advnn_lstm_cell_bwd(0, 5, NULL, 20, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 5, 5, NULL);
}

/* The AVX2 kernels run the last H % 8 units (1-4) of the next 2-8 active rows in one vector: the bits
 * must be those of one row at a time (n = 1 calls, where no rows can be grouped), with masked rows
 * between the grouped ones, rows left over, in place and not, dc and dh_prev given or NULL. */
static void test_lstm_cell_rows_bitwise(void) {
    static const int HS[] = {1, 2, 3, 4, 5, 9, 10, 11, 12, 17, 20};
    int bad = 0, cases = 0;
    for (int hi = 0; hi < 11; hi++)
        for (int n = 7; n <= 19; n += 12)
            for (int v = 0; v < 8; v++, cases++) {
                const int H = HS[hi], ldz = 4 * H + (v & 1), ldc = H + (v & 1), ldh = H, inplace = (v >> 1) & 1;
                const int mm = v >> 2, with_dc = (hi + v) % 2, with_dhp = (hi + v) % 3 != 0;
                size_t sz = (size_t)n * ldz, sc = (size_t)n * ldc, sh = (size_t)n * ldh;
                float *z = falloc(sz), *z1 = falloc(sz), *cp = falloc(sc), *hp = falloc(sh), *c = falloc(sc), *c1 = falloc(sc);
                float *h = falloc(sh), *h1 = falloc(sh), *dh = falloc(sh), *dh1 = falloc(sh), *dc = falloc(sc), *dc1 = falloc(sc);
                float *dz = falloc(sz), *dz1 = falloc(sz), mask[19];
                for (int r = 0; r < n; r++) mask[r] = mm ? mask_val(1 + r % 2, r / 2) : 1.0f;
                fill_rand(z, sz, 4.0f); fill_rand(cp, sc, 2.0f); fill_rand(hp, sh, 1.0f);
                fill_rand(dh, sh, 1.0f); fill_rand(dc, sc, 1.0f);
                z[0] = 90.0f; z[sz - 1] = -90.0f;   /* saturated gates */
                memcpy(z1, z, sz * sizeof(float)); memcpy(dh1, dh, sh * sizeof(float)); memcpy(dc1, dc, sc * sizeof(float));
                /* forward: all rows, then row by row */
                memcpy(c, cp, sc * sizeof(float)); memcpy(h, hp, sh * sizeof(float));
                memcpy(c1, cp, sc * sizeof(float)); memcpy(h1, hp, sh * sizeof(float));
                if (inplace) advnn_lstm_cell_fwd(n, H, z, ldz, c, h, c, h, ldc, ldh, mm ? mask : NULL);
                else advnn_lstm_cell_fwd(n, H, z, ldz, cp, hp, c, h, ldc, ldh, mm ? mask : NULL);
                for (int r = 0; r < n; r++) {
                    float *zr = z1 + (size_t)r * ldz, *cr = c1 + (size_t)r * ldc, *hr = h1 + (size_t)r * ldh;
                    const float *cpr = cp + (size_t)r * ldc, *hpr = hp + (size_t)r * ldh;
                    if (inplace) advnn_lstm_cell_fwd(1, H, zr, ldz, cr, hr, cr, hr, ldc, ldh, mm ? mask + r : NULL);
                    else advnn_lstm_cell_fwd(1, H, zr, ldz, cpr, hpr, cr, hr, ldc, ldh, mm ? mask + r : NULL);
                }
                bad += memcmp(z, z1, sz * sizeof(float)) != 0 || memcmp(c, c1, sc * sizeof(float)) != 0 ||
                       memcmp(h, h1, sh * sizeof(float)) != 0;
                /* backward on the activated gates: in place (dz == z, dc_prev == dc, dh_prev == dh) or into
                 * fresh buffers */
                float *dcin = with_dc ? dc : NULL, *dcin1 = with_dc ? dc1 : NULL;
                float *xc = falloc(sc), *xc1 = falloc(sc), *xh = falloc(sh), *xh1 = falloc(sh);
                fill_val(dz, sz, SENT); fill_val(dz1, sz, SENT); fill_val(xc, sc, SENT); fill_val(xc1, sc, SENT);
                fill_val(xh, sh, SENT); fill_val(xh1, sh, SENT);
                float *oz = inplace ? z : dz, *oz1 = inplace ? z1 : dz1, *oc = inplace ? dc : xc, *oc1 = inplace ? dc1 : xc1;
                float *oh = inplace ? dh : xh, *oh1 = inplace ? dh1 : xh1;
                advnn_lstm_cell_bwd(n, H, z, ldz, cp, c, dh, dcin, oz, oc, with_dhp ? oh : NULL, ldc, ldh, mm ? mask : NULL);
                for (int r = 0; r < n; r++)
                    advnn_lstm_cell_bwd(1, H, z1 + (size_t)r * ldz, ldz, cp + (size_t)r * ldc, c1 + (size_t)r * ldc,
                                        dh1 + (size_t)r * ldh, dcin1 ? dcin1 + (size_t)r * ldc : NULL, oz1 + (size_t)r * ldz,
                                        oc1 + (size_t)r * ldc, with_dhp ? oh1 + (size_t)r * ldh : NULL, ldc, ldh,
                                        mm ? mask + r : NULL);
                bad += memcmp(oz, oz1, sz * sizeof(float)) != 0 || memcmp(oc, oc1, sc * sizeof(float)) != 0 ||
                       memcmp(oh, oh1, sh * sizeof(float)) != 0;
                ffree(xc); ffree(xc1); ffree(xh); ffree(xh1);
                bad += memcmp(dc, dc1, sc * sizeof(float)) != 0 || memcmp(dh, dh1, sh * sizeof(float)) != 0;
                ffree(z); ffree(z1); ffree(cp); ffree(hp); ffree(c); ffree(c1); ffree(h); ffree(h1);
                ffree(dh); ffree(dh1); ffree(dc); ffree(dc1); ffree(dz); ffree(dz1);
            }
    CHECK(!bad, "lstm cells, all rows vs one row at a time: %d arrays differ bitwise in %d cases", bad, cases);
}

/* The backward against central differences of a double-precision forward (its own formulas):
 * L = sum a*h + b*c over the step's outputs; dh = a, dc = b. dL/dz, dL/dc_prev and the part of
 * dL/dh_prev that does not pass through z (z is an independent input here) must match dz, dc_prev
 * and dh_prev, masked rows included. */
static double lstm_loss_d(int n, int H, const double *zp, const double *cp, const double *hp, const float *a,
                          const float *b, const float *mask) {
    double L = 0;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < H; j++) {
            const double *zz = zp + (size_t)r * 4 * H;
            size_t q = (size_t)r * H + j;
            double cv, hv;
            if (mask[r] != 0.0f) {
                cv = sig_d(zz[H + j]) * cp[q] + sig_d(zz[j]) * tanh(zz[2 * H + j]);
                hv = sig_d(zz[3 * H + j]) * tanh(cv);
            } else {
                cv = cp[q];
                hv = hp[q];
            }
            L += a[q] * hv + b[q] * cv;
        }
    return L;
}

static void test_lstm_cell_fd(void) {
    enum { N = 3 };
    static const int HS[] = {1, 5, 9};
    const float mask[N] = {1.0f, 0.0f, 1.0f};
    for (int hi = 0; hi < 3; hi++) {
        const int H = HS[hi], nz = N * 4 * H, nh = N * H;
        float *z = falloc((size_t)nz), *cp = falloc((size_t)nh), *hp = falloc((size_t)nh), *c = falloc((size_t)nh);
        float *h = falloc((size_t)nh), *a = falloc((size_t)nh), *b = falloc((size_t)nh), *dz = falloc((size_t)nz);
        float *dcp = falloc((size_t)nh), *dhp = falloc((size_t)nh);
        double *zd = (double *)malloc((size_t)nz * sizeof(double)), *cd = (double *)malloc((size_t)nh * sizeof(double));
        double *hd = (double *)malloc((size_t)nh * sizeof(double));
        fill_rand(z, (size_t)nz, 2.0f);
        fill_rand(cp, (size_t)nh, 1.5f);
        fill_rand(hp, (size_t)nh, 1.0f);
        fill_rand(a, (size_t)nh, 1.0f);
        fill_rand(b, (size_t)nh, 1.0f);
        for (int k = 0; k < nz; k++) zd[k] = z[k];
        for (int k = 0; k < nh; k++) { cd[k] = cp[k]; hd[k] = hp[k]; }
        advnn_lstm_cell_fwd(N, H, z, 4 * H, cp, hp, c, h, H, H, mask);
        advnn_lstm_cell_bwd(N, H, z, 4 * H, cp, c, a, b, dz, dcp, dhp, H, H, mask);
        const double e = 1e-5;
        int bad = 0;
        for (int which = 0; which < 3; which++) {
            double *v = which == 0 ? zd : which == 1 ? cd : hd;
            const float *gk = which == 0 ? dz : which == 1 ? dcp : dhp;
            for (int k = 0; k < (which == 0 ? nz : nh); k++) {
                double s = v[k];
                v[k] = s + e;
                double lp = lstm_loss_d(N, H, zd, cd, hd, a, b, mask);
                v[k] = s - e;
                double lm = lstm_loss_d(N, H, zd, cd, hd, a, b, mask);
                v[k] = s;
                double fd = (lp - lm) / (2 * e);
                if (!close_f(gk[k], fd, 1e-5, 2e-6) && bad++ < 5)
                    CHECK(0, "lstm fd H=%d %s[%d]: kernel %.9g fd %.9g", H, which == 0 ? "dz" : which == 1 ? "dc_prev" : "dh_prev",
                          k, gk[k], fd);
            }
        }
        ffree(z); ffree(cp); ffree(hp); ffree(c); ffree(h); ffree(a); ffree(b); ffree(dz); ffree(dcp); ffree(dhp);
        free(zd); free(cd); free(hd);
    }
}

/* advnn_lstm_seq_fwd, the packed inference sequence: the vector body gives bit for bit what the
 * per-step kernels give for the same sample in a batch of two rows (input projection by advnn_sgemm
 * and advnn_add_bias on 2T rows, then per step advnn_sgemm with beta 1 and advnn_lstm_cell_fwd),
 * whether it projects the inputs itself (z NULL) or is given them, one sample or two in a call; 11
 * samples in a call (8 of them at once, one in each lane, masks differing by lane) as each alone;
 * live and reference within 2e-5 of
 * the layer computed in double; nothing written past hseq / hlast; masked steps carry the state.
 * Every H % 8 (each packed tail: none, 2 and 4 lanes a gate, a padded block); F = 300 sums two
 * blocks of 256 inputs. */
static void test_lstm_seq(void) {
    static const int HS[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 16, 17, 20, 33};
    for (int hi = 0; hi < 16; hi++)
        for (int T = 1; T <= 7; T += 6)
            for (int v = 0; v < 4; v++) {
                const int mm = v & 1, fz = v >> 1;   /* mask; the kernel projects the inputs itself */
                const int H = HS[hi], F = fz && hi % 4 == 1 ? 300 : 5, H4 = 4 * H, L = advnn__lstm_width(H);
                const int live = advnn_lstm_packed_width(H);
                float *W = falloc((size_t)F * H4), *U = falloc((size_t)H * H4), *b = falloc((size_t)H4);
                float *Wp = falloc((size_t)F * L), *Up = falloc((size_t)H * L), *bp = falloc((size_t)L);
                float *x = falloc((size_t)2 * T * F), *G = falloc((size_t)2 * T * H4), *z = falloc((size_t)2 * T * L);
                float *c = falloc((size_t)2 * H), *h = falloc((size_t)2 * H), *hs = falloc((size_t)T * H + 1);
                float *hl = falloc((size_t)H + 1), *st = falloc((size_t)6 * H + 32), *hsr = falloc((size_t)T * H);
                float *hist = falloc((size_t)T * 2 * H), mask[7] = {1, 0, 1, 1, 0, 0, 1}, m2[2];
                double *cd = (double *)calloc((size_t)H, sizeof(double)), *hd = (double *)calloc((size_t)H, sizeof(double));
                double *hn = (double *)calloc((size_t)H, sizeof(double));
                const float *mk = mm ? mask : NULL;
                float *zin = fz ? NULL : z;
                int bad = 0;
                fill_rand(W, (size_t)F * H4, F > 64 ? 0.1f : 0.6f); fill_rand(U, (size_t)H * H4, 0.6f);
                fill_rand(b, (size_t)H4, 0.5f); fill_rand(x, (size_t)2 * T * F, 1.5f);
                if (live) CHECK(live == L, "lstm_packed_width(%d) = %d, want %d", H, live, L);
                CHECK(L >= H4 && L % 8 == 0, "packed width %d for H %d", L, H);
                advnn_lstm_pack(F, H, L, W, U, b, Wp, Up, bp);
                /* the per-step kernels on two rows (row-major (2, T, 4H) as advnn__lstm_fwd keeps them) */
                advnn_sgemm(0, 0, 2 * T, H4, F, 1.0f, x, F, W, H4, 0.0f, G, H4, NULL);
                advnn_add_bias(2 * T, H4, G, H4, b);
                memset(c, 0, (size_t)2 * H * sizeof(float)); memset(h, 0, (size_t)2 * H * sizeof(float));
                for (int t = 0; t < T; t++) {
                    if (t) advnn_sgemm(0, 0, 2, H4, H, 1.0f, h, H, U, H4, 1.0f, G + (size_t)t * H4, T * H4, NULL);
                    m2[0] = m2[1] = mk ? mk[t] : 1.0f;
                    advnn_lstm_cell_fwd(2, H, G + (size_t)t * H4, T * H4, c, h, c, h, H, H, m2);
                    memcpy(hist + (size_t)t * 2 * H, h, (size_t)2 * H * sizeof(float));
                }
                /* the packed sequence of row 0 (given z: its input projection on the same 2T rows) */
                advnn_sgemm(0, 0, 2 * T, L, F, 1.0f, x, F, Wp, L, 0.0f, z, L, NULL);
                advnn_add_bias(2 * T, L, z, L, bp);
                hs[T * H] = hl[H] = 12345.0f;
                advnn_lstm_seq_fwd(1, T, F, H, x, Wp, bp, Up, zin, mk, hs, hl, st);
                CHECK(hs[T * H] == 12345.0f && hl[H] == 12345.0f, "lstm_seq_fwd H=%d wrote past its outputs", H);
                /* the reference on row 0 and the layer in double */
                advnn_sgemm(0, 0, 2 * T, L, F, 1.0f, x, F, Wp, L, 0.0f, z, L, NULL);
                advnn_add_bias(2 * T, L, z, L, bp);
                advnn__lstm_seq_fwd_ref(T, F, H, x, Wp, bp, Up, zin, mk, hsr, NULL, st);
                for (int t = 0; t < T; t++) {
                    int act = !mk || mk[t] != 0.0f;
                    for (int j = 0; j < H && act; j++) {
                        double zz[4];
                        for (int q = 0; q < 4; q++) {
                            double a = b[q * H + j];
                            for (int k = 0; k < F; k++) a += (double)x[(size_t)t * F + k] * W[(size_t)k * H4 + q * H + j];
                            for (int k = 0; k < H; k++) a += hd[k] * U[(size_t)k * H4 + q * H + j];
                            zz[q] = a;
                        }
                        cd[j] = sig_d(zz[1]) * cd[j] + sig_d(zz[0]) * tanh(zz[2]);
                        hn[j] = sig_d(zz[3]) * tanh(cd[j]);
                    }
                    if (act) memcpy(hd, hn, (size_t)H * sizeof(double));
                    for (int j = 0; j < H; j++) {
                        float lv = hs[(size_t)t * H + j], rv = hsr[(size_t)t * H + j], sv = hist[(size_t)t * 2 * H + j];
                        if (!close_f(lv, hd[j], 2e-5, 2e-5) || !close_f(rv, hd[j], 2e-5, 2e-5) || (live && lv != sv) ||
                            (t == T - 1 && hl[j] != lv))
                            if (bad++ < 5)
                                CHECK(0, "lstm_seq H=%d F=%d T=%d mask %d z %s t=%d j=%d: live %.9g ref %.9g per-step %.9g double %.9g",
                                      H, F, T, mm, zin ? "given" : "NULL", t, j, lv, rv, sv, hd[j]);
                    }
                }
                CHECK(!bad, "lstm_seq H=%d F=%d T=%d mask %d: %d mismatches", H, F, T, mm, bad);
                {   /* both rows in one call: each row as alone, row 1 as the per-step path */
                    float *hs2 = falloc((size_t)2 * T * H), *hl2 = falloc((size_t)2 * H), mk2[14];
                    for (int t = 0; t < T; t++) mk2[t] = mk2[T + t] = mk ? mk[t] : 1.0f;
                    advnn_sgemm(0, 0, 2 * T, L, F, 1.0f, x, F, Wp, L, 0.0f, z, L, NULL);
                    advnn_add_bias(2 * T, L, z, L, bp);
                    advnn_lstm_seq_fwd(2, T, F, H, x, Wp, bp, Up, zin, mk ? mk2 : NULL, hs2, hl2, st);
                    for (int t = 0; t < T; t++)
                        for (int j = 0; j < H; j++) {
                            float a = hs2[(size_t)t * H + j], b1 = hs2[(size_t)(T + t) * H + j];
                            float want1 = hist[(size_t)t * 2 * H + H + j];
                            if (a != hs[(size_t)t * H + j] || (live ? b1 != want1 : !close_f(b1, want1, 1e-5, 1e-5)) ||
                                (t == T - 1 && (hl2[j] != a || hl2[H + j] != b1)))
                                if (bad++ < 5)
                                    CHECK(0, "lstm_seq n=2 H=%d F=%d T=%d t=%d j=%d: row 0 %.9g (alone %.9g), row 1 %.9g (per-step %.9g)",
                                          H, F, T, t, j, a, hs[(size_t)t * H + j], b1, want1);
                        }
                    ffree(hs2); ffree(hl2);
                }
                {   /* 11 samples in one call (8 at once, one in each lane, then 3 alone): each as alone */
                    enum { NS = 11 };
                    float *xs = falloc((size_t)NS * T * F), *ms = falloc((size_t)NS * T), *zs = falloc((size_t)NS * T * L);
                    float *hsn = falloc((size_t)NS * T * H + 1), *hln = falloc((size_t)NS * H + 1);
                    float *hs1 = falloc((size_t)T * H), *hl1 = falloc((size_t)H);
                    fill_rand(xs, (size_t)NS * T * F, 1.5f);
                    for (int k = 0; k < NS * T; k++) ms[k] = (k * 5 + H) % 3 == 0 ? 0.0f : 1.0f;   /* masks differ by lane */
                    float *za = falloc((size_t)NS * T * L);   /* given z: each sample's rows of one projection (overwritten) */
                    advnn_sgemm(0, 0, NS * T, L, F, 1.0f, xs, F, Wp, L, 0.0f, za, L, NULL);
                    advnn_add_bias(NS * T, L, za, L, bp);
                    memcpy(zs, za, (size_t)NS * T * L * sizeof(float));
                    hsn[NS * T * H] = hln[NS * H] = 12345.0f;
                    advnn_lstm_seq_fwd(NS, T, F, H, xs, Wp, bp, Up, zin ? zs : NULL, mk ? ms : NULL, hsn, hln, st);
                    CHECK(hsn[NS * T * H] == 12345.0f && hln[NS * H] == 12345.0f, "lstm_seq n=%d H=%d wrote past its outputs", NS, H);
                    for (int r = 0; r < NS; r++) {
                        memcpy(zs, za + (size_t)r * T * L, (size_t)T * L * sizeof(float));
                        advnn_lstm_seq_fwd(1, T, F, H, xs + (size_t)r * T * F, Wp, bp, Up, zin ? zs : NULL, mk ? ms + r * T : NULL,
                                           hs1, hl1, st);
                        int d = memcmp(hs1, hsn + (size_t)r * T * H, (size_t)T * H * sizeof(float)) != 0 ||
                                memcmp(hl1, hln + (size_t)r * H, (size_t)H * sizeof(float)) != 0;
                        if (d && bad++ < 5) CHECK(0, "lstm_seq n=%d H=%d F=%d T=%d mask %d z %s: sample %d differs from alone", NS, H, F, T,
                                                  mm, zin ? "given" : "NULL", r);
                    }
                    ffree(xs); ffree(ms); ffree(zs); ffree(za); ffree(hsn); ffree(hln); ffree(hs1); ffree(hl1);
                }
                ffree(W); ffree(U); ffree(b); ffree(Wp); ffree(Up); ffree(bp); ffree(x); ffree(G); ffree(z); ffree(c);
                ffree(h); ffree(hs); ffree(hl); ffree(st); ffree(hsr); ffree(hist); free(cd); free(hd); free(hn);
            }
}

/* y += a.*b: live == ref bit for bit (both multiply, then add), the ref within two roundings of
 * double, nothing written past n */
static void test_mul_acc(void) {
    for (int si = 0; si < NSIZES; si++) {
        int n = SIZES[si], bad = 0;
        float *a = falloc((size_t)n), *b = falloc((size_t)n), *y = falloc((size_t)n + 1), *y2 = falloc((size_t)n + 1);
        float *y0 = falloc((size_t)n);
        fill_rand(a, (size_t)n, 2.0f); fill_rand(b, (size_t)n, 3.0f); fill_rand(y0, (size_t)n, 1.0f);
        memcpy(y, y0, (size_t)n * sizeof(float));
        memcpy(y2, y0, (size_t)n * sizeof(float));
        y[n] = y2[n] = SENT;
        advnn_mul_acc(n, a, b, y);
        advnn__mul_acc_ref(n, a, b, y2);
        for (int i = 0; i < n; i++) {
            double ab = (double)a[i] * b[i], want = y0[i] + ab;
            bad += !same_float(y[i], y2[i]);
            bad += !(fabs(y2[i] - want) <= 2 * 6e-8 * (fabs(y0[i]) + fabs(ab)) + 1e-30);
        }
        CHECK(!bad && y[n] == SENT && y2[n] == SENT, "mul_acc n=%d: %d mismatches (or wrote past n)", n, bad);
        ffree(a); ffree(b); ffree(y); ffree(y2); ffree(y0);
    }
}

/* advnn_axpy_set: the bits advnn_axpy leaves on zeros (memcmp: the signs of zeros too; -0 inputs, tiny
 * products, Inf and NaN among the inputs), y's old contents never read (NaN there), nothing written
 * past n */
static void test_first_term(void) {
    for (int si = 0; si < NSIZES; si++) {
        int n = SIZES[si], bad = 0;
        float *a = falloc((size_t)n), *y1 = falloc((size_t)n + 1), *y2 = falloc((size_t)n + 1);
        fill_rand(a, (size_t)n, 2.0f);
        for (int i = 0; i < n; i += 5) a[i] = i % 10 ? -0.0f : 0.0f;
        for (int i = 3; i < n; i += 11) a[i] = i % 2 ? 1e-38f : -1e-38f;   /* products under FLT_MIN */
        if (n > 7) { a[7] = INFINITY; a[6] = NAN; }
        for (int pass = 0; pass < 2; pass++) {   /* a = 0.75 and -10 (gradient reversal) */
            float al = pass ? -10.0f : 0.75f;
            fill_val(y1, (size_t)n, 0.0f); fill_val(y2, (size_t)n, NAN);
            y1[n] = y2[n] = SENT;
            advnn_axpy(n, al, a, 1, y1, 1);
            advnn_axpy_set(n, al, a, y2);
            bad += memcmp(y1, y2, ((size_t)n + 1) * sizeof(float)) != 0;
        }
        CHECK(!bad, "axpy_set n=%d: %d of 2 differ from the sums onto zeros", n, bad);
        ffree(a); ffree(y1); ffree(y2);
    }
}

/* Dropout masks: live == ref bit for bit (masks, outputs, aliasing, m NULL), the exact
 * edge rates, and the statistics of the draws. */
static void test_dropout_mask(void) {
    static const float RATES[] = {0.0f, 0.2f, 0.5f, 0.9f, 0.999f, 1.0f};
    const int big = 1 << 20;
    float *x = falloc(big + 8), *y = falloc(big + 8), *m = falloc(big + 8), *y2 = falloc(big + 8), *m2 = falloc(big + 8);
    fill_rand(x, big, 3.0f);
    for (int ri = 0; ri < (int)(sizeof RATES / sizeof RATES[0]); ri++) {
        float rate = RATES[ri], keep = 1.0f / (1.0f - rate);
        for (int si = 0; si < NSIZES + 2; si++) {
            int n = si < NSIZES ? SIZES[si] : si == NSIZES ? 0 : 4099;
            int bad = 0;
            fill_val(y, n + 1, SENT); fill_val(m, n + 1, SENT); fill_val(y2, n + 1, SENT); fill_val(m2, n + 1, SENT);
            advnn_dropout_mask(n, 77u + (uint64_t)n, rate, x, y, m);
            advnn__dropout_ref(n, 77u + (uint64_t)n, rate, x, y2, m2, 0);
            for (int i = 0; i < n; i++) {
                if (!same_float(y[i], y2[i]) || !same_float(m[i], m2[i])) bad++;
                if (!(m[i] == 0.0f || m[i] == keep) || !same_float(y[i], x[i] * m[i])) bad++;
                if (rate == 0.0f && m[i] != 1.0f) bad++;
                if (rate == 1.0f && m[i] != 0.0f) bad++;
            }
            CHECK(!bad, "dropout_mask rate=%g n=%d: %d mismatches (live vs ref, or mask values)", rate, n, bad);
            CHECK(y[n] == SENT && m[n] == SENT, "dropout_mask rate=%g wrote past n=%d", rate, n);
            /* y == x in place, and m NULL: the same outputs */
            memcpy(y2, x, (size_t)n * sizeof(float));
            advnn_dropout_mask(n, 77u + (uint64_t)n, rate, y2, y2, NULL);
            for (int i = 0; i < n; i++) bad += !same_float(y2[i], y[i]);
            CHECK(!bad, "dropout_mask rate=%g n=%d in place without a mask: %d differ", rate, n, bad);
            /* advnn_dropout_grad (and the ref) redraws m: the bits advnn_mul_acc leaves with the stored mask,
             * onto zeros for the set (dy holding -0 and NaN, dx's old contents NaN), in place too */
            for (int add = 0; add < 2; add++)
                for (int path = 0; path < 3; path++) {   /* live, ref, live in place */
                    float *dy = y2, *want = falloc((size_t)n + 1), *got = falloc((size_t)n + 1);
                    fill_rand(dy, (size_t)n, 2.0f);
                    for (int i = 0; i < n; i += 3) dy[i] = i % 2 ? -0.0f : 0.0f;
                    if (n > 5) dy[5] = NAN;
                    for (int i = 0; i < n; i++) want[i] = add ? (float)(i % 7) - 3.0f : 0.0f;
                    for (int i = 0; i < n; i++) got[i] = add ? want[i] : NAN;
                    if (path == 2 && !add) memcpy(got, dy, (size_t)n * sizeof(float));
                    want[n] = got[n] = SENT;
                    advnn_mul_acc(n, dy, m, want);   /* onto zeros for the set */
                    if (path == 0) advnn_dropout_grad(n, 77u + (uint64_t)n, rate, dy, got, add);
                    if (path == 1) advnn__dropout_ref(n, 77u + (uint64_t)n, rate, dy, got, NULL, add ? 2 : 1);
                    if (path == 2 && !add) advnn_dropout_grad(n, 77u + (uint64_t)n, rate, got, got, 0);
                    if (path == 2 && add) { memcpy(dy, got, (size_t)n * sizeof(float)); memcpy(want, got, (size_t)n * sizeof(float));
                                            advnn_mul_acc(n, dy, m, want); advnn_dropout_grad(n, 77u + (uint64_t)n, rate, got, got, 1); }
                    CHECK(!memcmp(want, got, ((size_t)n + 1) * sizeof(float)), "dropout_grad rate=%g n=%d add=%d path=%d: not the stored mask's bits",
                          rate, n, add, path);
                    ffree(want); ffree(got);
                }
        }
    }
    /* statistics at rate 0.2 and 0.5 over 2^20 draws */
    for (int ri = 0; ri < 2; ri++) {
        float rate = ri ? 0.5f : 0.2f;
        double p = 1.0 - rate, pos[8] = {0}, kept = 0;
        advnn_dropout_mask(big, 2024u, rate, x, y, m);
        for (int i = 0; i < big; i++) {
            double k = m[i] != 0.0f;
            kept += k; pos[i % 8] += k;
        }
        CHECK(fabs(kept / big - p) < 6 * sqrt(p * (1 - p) / big), "dropout rate %g: kept %.5f", rate, kept / big);
        for (int j = 0; j < 8; j++)
            CHECK(fabs(pos[j] / (big / 8) - p) < 6 * sqrt(p * (1 - p) / (big / 8)), "dropout rate %g: position %d mod 8 kept %.5f",
                  rate, j, pos[j] / (big / 8));
        for (int lag = 1; lag <= 16; lag++) {   /* correlation of keep indicators lag apart (within and across streams) */
            double sxy = 0, r;
            for (int i = lag; i < big; i++) sxy += (m[i] != 0.0f) && (m[i - lag] != 0.0f);
            r = (sxy / (big - lag) - p * p) / (p * (1 - p));
            CHECK(fabs(r) < 6.0 / sqrt((double)big), "dropout rate %g: lag-%d correlation %.5f", rate, lag, r);
        }
        advnn_dropout_mask(big, 2025u, rate, x, y2, m2);
        {
            int same = 0;
            for (int i = 0; i < big; i++) same += (m[i] != 0.0f) == (m2[i] != 0.0f);
            double q = p * p + (1 - p) * (1 - p);   /* agreement of two independent masks */
            CHECK(fabs((double)same / big - q) < 6 * sqrt(q * (1 - q) / big), "dropout rate %g: seeds 2024 and 2025 agree on %.5f of the mask",
                  rate, (double)same / big);
        }
    }
    ffree(x); ffree(y); ffree(m); ffree(y2); ffree(m2);
}

/* advnn_adam_update: the live path (8 weights at a time) against the scalar reference, bit for bit,
 * for Adam and Nadam, lengths with and without a tail, a gradient scale (clipping) and weight decay;
 * the check pass finds a value that would not be finite wherever it is (vector body or tail) and
 * writes nothing. */
static void test_adam_update(void) {
    static const int NS[] = {1, 7, 8, 9, 64, 67};
    for (int ni = 0; ni < 6; ni++)
        for (int nadam = 0; nadam < 2; nadam++) {
            int n = NS[ni];
            float *w = falloc(n), *m = falloc(n), *v = falloc(n), *g = falloc(n);
            float *w2 = falloc(n), *m2 = falloc(n), *v2 = falloc(n);
            fill_rand(w, n, 1.0f); fill_rand(m, n, 0.1f); fill_rand(g, n, 2.0f);
            for (int j = 0; j < n; j++) { float r = frand(); v[j] = 0.01f * r * r; }
            memcpy(w2, w, n * sizeof(float)); memcpy(m2, m, n * sizeof(float)); memcpy(v2, v, n * sizeof(float));
            CHECK(advnn_adam_update(n, w, m, v, g, 0.37, 1e-3f, 2e-4f, 1.7f, 0.9f, 0.999f, 1e-7f, 1e-5f, nadam, 0) == 1,
                  "adam n=%d nadam=%d: finite values reported non-finite", n, nadam);
            CHECK(!count_bitwise_diff(w, w2, n), "adam check pass wrote the weights");
            advnn_adam_update(n, w, m, v, g, 0.37, 1e-3f, 2e-4f, 1.7f, 0.9f, 0.999f, 1e-7f, 1e-5f, nadam, 1);
            advnn__adam_ref(n, w2, m2, v2, g, 0.37, 1e-3f, 2e-4f, 1.7f, 0.9f, 0.999f, 1e-7f, 1e-5f, nadam, 1);
            CHECK(!count_bitwise_diff(w, w2, n) && !count_bitwise_diff(m, m2, n) && !count_bitwise_diff(v, v2, n),
                  "adam n=%d nadam=%d: live vs ref differ", n, nadam);
            for (int bad = 0; bad < n; bad += (n > 8 ? 5 : 1)) {   /* an overflowing gradient at each place */
                float keep = g[bad];
                g[bad] = 3e38f;
                memcpy(w2, w, n * sizeof(float));
                CHECK(!advnn_adam_update(n, w, m, v, g, 1.0, 1e-3f, 2e-4f, 1.7f, 0.9f, 0.999f, 1e-7f, 0.0f, nadam, 0),
                      "adam n=%d nadam=%d: an infinite v at %d not reported", n, nadam, bad);
                CHECK(!count_bitwise_diff(w, w2, n), "adam check pass wrote the weights");
                g[bad] = keep;
            }
            ffree(w); ffree(m); ffree(v); ffree(g); ffree(w2); ffree(m2); ffree(v2);
        }
}

int main(void) {
    gemm_work = (float *)malloc(ADVNN_SGEMM_WORK_FLOATS * sizeof(float) + 64);
    float *work_base = gemm_work;
    gemm_work = (float *)(((uintptr_t)gemm_work + 63) & ~(uintptr_t)63);
    RUN(test_name);
    RUN(test_vector_kernels);
    RUN(test_matrix_kernels);
    RUN(test_vmath);
    RUN(test_vmath_f64);
    RUN(test_verf_e_f64);
    RUN(test_mdn_passes);
    RUN(test_activations);
    RUN(test_prelu_dalpha);
    RUN(test_dropout_mask);
    RUN(test_mul_acc);
    RUN(test_first_term);
    RUN(test_softmax);
    RUN(test_sgemm_grid);
    RUN(test_sgemm_special);
    RUN(test_sgemm_edge_bitwise);
    RUN(test_sgemm_rows_in_place);
    RUN(test_sgemm_tn_narrow);
    RUN(test_sgemm_bias_relu);
    RUN(test_sgemm_packed_b);
    RUN(test_im2col_col2im);
    RUN(test_conv_implicit);
    RUN(test_conv_wgrad);
    RUN(test_conv_dgrad);
    RUN(test_pooling);
    RUN(test_upsample);
    RUN(test_lstm_cell);
    RUN(test_lstm_cell_rows_bitwise);
    RUN(test_lstm_cell_fd);
    RUN(test_lstm_seq);
    RUN(test_adam_update);
    free(work_base);
    return th_report();
}
