/* test_dispatch.c - runtime ISA dispatch of advnn_simd.h (issue 6).
 *
 * In the runtime-dispatch build (x86-64 gcc/clang without -mavx2 -mfma, e.g. `gcc -O2 -march=x86-64`):
 *  - the first choice: AVX2+FMA when the CPU has both, scalar when it does not or ADVNN_SIMD=scalar;
 *  - advnn_simd_force(): "scalar", "avx2", "avx2+fma", "auto"/""/NULL switch, unknown names and (on a
 *    CPU without AVX2/FMA) "avx2" return -1 and change nothing; advnn_simd_name() follows;
 *  - a representative set of kernels, run once with the scalar path forced and once with the AVX2
 *    path forced, agree within the tolerances below; under "scalar" the kernels whose scalar body is
 *    the reference give the reference's bits (so the forced path really is the scalar one).
 * In builds with a compile-time ISA (-mavx2 -mfma, NEON, ADVNN_FORCE_SCALAR) only the force rules
 * are checked (that path's name and "auto" accepted, anything else -1); the kernel comparison is
 * skipped (one path only; tests/test_simd.c checks it against the reference).
 *
 * Tolerances, AVX2 vs scalar (|v - s| <= atol + rtol*|s|; each path is within its own bound of the
 * exact value, so the bound here is the sum of the two):
 *  - sgemm: 2*(K+2)*6e-8*|alpha|*sum_k|a_ik b_kj| + 4*6e-8*|beta c| + 1e-30 per element;
 *  - dot / sum: 2*n*6e-8*sum|terms|; axpy: 2.4e-7 relative (one FMA rounding vs two); max exact;
 *  - exp/log/tanh (SLEEF u10 exp/log, u35 tanh, vs glibc): rtol 8e-7, atol 1e-37;
 *  - activations: relu, leaky relu, prelu, linear forward and backward equal (relu' of a negative
 *    dy may be -0 or +0); others rtol 4e-6,
 *    atol 2e-6 (y-based derivatives, cancellation in 1 - y*y);
 *  - softmax rtol 4e-6 atol 1e-7; log_softmax rtol 4e-6 atol 4e-5;
 *  - im2col, col2im, maxpool (values and argmax), maxpool_bwd, upsample fwd/bwd: bitwise (the
 *    contract); avgpool fwd/bwd: rtol 2.4e-7 (one multiply rounding);
 *  - lstm cell fwd/bwd: rtol 8e-6, atol 2e-6 (compositions of a few u10 functions); dh_prev equal.
 */
#define ADVNN_SIMD_IMPLEMENTATION
#include "advnn_simd.h"
#include "harness.h"
#include <stdint.h>

static uint32_t rng_state = 777u;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffffff) / 8388608.0f - 1.0f;
}
static float *fnew(size_t n) { /* n floats (+1 so n == 0 is fine), deliberately misaligned by one */
    float *p = (float *)malloc((n + 2) * sizeof(float));
    for (size_t i = 0; i < n + 2; i++) p[i] = 12345.25f;
    return p + 1;
}
static void fdel(float *p) { free(p - 1); }
static void frnd(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = scale * frand();
}
static int close_f(double v, double s, double rtol, double atol) {
    if (isinf(v) || isinf(s)) return v == s;
    return th_close(v, s, rtol, atol);
}
/* mismatches of a vs b over n floats: bitwise when rtol < 0, else close_f */
static int ndiff(const float *a, const float *b, size_t n, double rtol, double atol) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (rtol < 0) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
        else bad += !close_f(a[i], b[i], rtol, atol);
    }
    return bad;
}

/* ---- path control ---- */
#if defined(ADVNN__RUNTIME)
static int cpu_avx2(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#endif
static int both_paths; /* scalar and AVX2 can both be forced: the kernel comparisons run */
static const char *const PATH[2] = {"scalar", "avx2"};
static const char *const PATH_NAME[2] = {"scalar", "avx2+fma"};
static void use_path(int p) {
    int rc = advnn_simd_force(PATH[p]);
    CHECK(rc == 0 && strcmp(advnn_simd_name(), PATH_NAME[p]) == 0, "force(%s) = %d, name %s", PATH[p], rc,
          advnn_simd_name());
}

/* ------------------------------------------------------------------------------------------ */
/* Must run first: the choice made at the first use. */
static void test_initial_choice(void) {
    const char *n = advnn_simd_name();
#if defined(ADVNN__RUNTIME)
    const char *e = getenv("ADVNN_SIMD");
    const char *want = (e && strcmp(e, "scalar") == 0) || !cpu_avx2() ? "scalar" : "avx2+fma";
    CHECK(strcmp(n, want) == 0, "first choice %s, expected %s (ADVNN_SIMD=%s)", n, want, e ? e : "(unset)");
    printf("     runtime dispatch, ADVNN_SIMD=%s, CPU avx2+fma: %s, first choice: %s\n", e ? e : "(unset)",
           cpu_avx2() ? "yes" : "no", n);
#else
    printf("     compile-time ISA: %s (no dispatch)\n", n);
#endif
}

static void test_force(void) {
    const char *first = advnn_simd_name();
    CHECK(advnn_simd_force("no-such-isa") == -1, "unknown name accepted");
    CHECK(strcmp(advnn_simd_name(), first) == 0, "a failed force changed the path");
    CHECK(advnn_simd_force("auto") == 0 && advnn_simd_force(NULL) == 0 && advnn_simd_force("") == 0, "auto refused");
#if defined(ADVNN__RUNTIME)
    CHECK(strcmp(advnn_simd_name(), first) == 0, "auto gave %s, first choice was %s", advnn_simd_name(), first);
    CHECK(advnn_simd_force("scalar") == 0 && strcmp(advnn_simd_name(), "scalar") == 0, "force scalar");
    CHECK(advnn_simd_force("neon") == -1 && strcmp(advnn_simd_name(), "scalar") == 0, "neon accepted on x86");
    int want = cpu_avx2() ? 0 : -1;
    CHECK(advnn_simd_force("avx2") == want, "force avx2 != %d", want);
    CHECK(strcmp(advnn_simd_name(), cpu_avx2() ? "avx2+fma" : "scalar") == 0, "after force avx2: %s", advnn_simd_name());
    CHECK(advnn_simd_force("scalar") == 0 && advnn_simd_force("avx2+fma") == want, "force avx2+fma != %d", want);
    both_paths = cpu_avx2();
    CHECK(advnn_simd_force(NULL) == 0 && strcmp(advnn_simd_name(), first) == 0, "back to auto: %s", advnn_simd_name());
#else
    CHECK(advnn_simd_force(first) == 0, "own path %s refused", first);
    if (strcmp(first, "avx2+fma") == 0) CHECK(advnn_simd_force("avx2") == 0, "avx2 refused on the avx2 build");
    if (strcmp(first, "scalar") != 0) CHECK(advnn_simd_force("scalar") == -1, "scalar accepted without dispatch");
    else CHECK(advnn_simd_force("avx2") == -1, "avx2 accepted on the scalar build");
    CHECK(strcmp(advnn_simd_name(), first) == 0, "the path changed to %s", advnn_simd_name());
#endif
    if (!both_paths) printf("     one path only: the scalar-vs-avx2 kernel comparisons are skipped\n");
}

/* ------------------------------------------------------------------------------------------ */
static void check_gemm(int tA, int tB, int M, int N, int K, float alpha, float beta, int ld_pad, int use_work) {
    static float work[ADVNN_SGEMM_WORK_FLOATS];
    int lda = (tA ? M : K) + ld_pad, ldb = (tB ? K : N) + ld_pad, ldc = N + ld_pad;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    size_t sa = (size_t)(tA ? K : M) * lda, sb = (size_t)(tB ? N : K) * ldb, sc = (size_t)M * ldc;
    float *A = fnew(sa), *B = fnew(sb), *C0 = fnew(sc), *C[2];
    frnd(A, sa, 1.0f); frnd(B, sb, 1.0f); frnd(C0, sc, 1.0f);
    for (int p = 0; p < 2; p++) {
        use_path(p);
        C[p] = fnew(sc);
        memcpy(C[p], C0, sc * sizeof(float));
        advnn_sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C[p], ldc, use_work ? work : NULL);
    }
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            size_t q = (size_t)i * ldc + j;
            if (j >= N) { bad += C[0][q] != C0[q] || C[1][q] != C0[q]; continue; } /* outside the window */
            double mag = 0;
            for (int k = 0; k < K; k++)
                mag += fabs((double)(tA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                            (tB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]));
            double tol = 2.0 * (K + 2) * 6e-8 * fabs(alpha) * mag + 4 * 6e-8 * fabs(beta * C0[q]) + 1e-30;
            bad += !(fabs((double)C[1][q] - C[0][q]) <= tol);
        }
    CHECK(!bad, "sgemm tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d work=%d: %d mismatches", tA, tB, M, N, K,
          alpha, beta, ld_pad, use_work, bad);
    fdel(A); fdel(B); fdel(C0); fdel(C[0]); fdel(C[1]);
}

static void test_sgemm(void) {
    if (!both_paths) return;
    static const int SZ[][3] = {{1, 1, 1},   {1, 64, 64},  {64, 1, 64}, {1, 37, 300}, {37, 1, 300}, {6, 16, 8},
                                {7, 17, 9},  {13, 29, 31}, {96, 128, 256}, {100, 70, 300}, {200, 33, 17}, {5, 300, 2}};
    int n = (int)(sizeof SZ / sizeof SZ[0]), cnt = 0;
    for (int s = 0; s < n; s++)
        for (int t = 0; t < 4; t++, cnt++) {
            float alpha = cnt % 3 == 0 ? 1.0f : -0.75f, beta = cnt % 4 == 0 ? 0.0f : cnt % 4 == 1 ? 1.0f : 0.5f;
            check_gemm(t & 1, t >> 1, SZ[s][0], SZ[s][1], SZ[s][2], alpha, beta, cnt % 3, cnt % 2);
        }
    /* the blocked driver itself, A read in place and packed, and A^T with a long stride (packed) */
    check_gemm(1, 0, 40, 50, 30, 1.0f, 0.0f, 900, 1);
    for (int packA = 0; packA < 2; packA++) {
        enum { M = 31, N = 45, K = 70 };
        static float work[ADVNN_SGEMM_WORK_FLOATS];
        float *A = fnew(M * K), *B = fnew(K * N), *C[2];
        frnd(A, M * K, 1.0f); frnd(B, K * N, 1.0f);
        for (int p = 0; p < 2; p++) {
            use_path(p);
            C[p] = fnew(M * N);
            advnn__sgemm_blocked(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C[p], N, work, packA);
        }
        CHECK(!ndiff(C[1], C[0], M * N, 2.0 * (K + 2) * 6e-8, 2.0 * (K + 2) * 6e-8 * K), "blocked packA=%d", packA);
        fdel(A); fdel(B); fdel(C[0]); fdel(C[1]);
    }
    /* switching back and forth: the scalar path gives the same bits as before the switch */
    {
        float A[12], B[20], C1[15], C2[15];
        frnd(A, 12, 1.0f); frnd(B, 20, 1.0f);
        use_path(0);
        advnn_sgemm(0, 0, 3, 5, 4, 1.0f, A, 4, B, 5, 0.0f, C1, 5, NULL);
        use_path(1);
        advnn_sgemm(0, 0, 3, 5, 4, 1.0f, A, 4, B, 5, 0.0f, C2, 5, NULL);
        use_path(0);
        advnn_sgemm(0, 0, 3, 5, 4, 1.0f, A, 4, B, 5, 0.0f, C2, 5, NULL);
        CHECK(!ndiff(C1, C2, 15, -1, 0), "scalar sgemm not deterministic across a switch");
    }
}

/* ------------------------------------------------------------------------------------------ */
static void test_vectors_vmath(void) {
    if (!both_paths) return;
    static const int NS[] = {0, 1, 7, 8, 9, 31, 32, 33, 100, 1000};
    for (int si = 0; si < (int)(sizeof NS / sizeof NS[0]); si++) {
        int n = NS[si];
        float *x = fnew(n), *y0 = fnew(n), *y[2], *e[2], *l[2], *t[2], *xp = fnew(n);
        frnd(x, n, 4.0f); frnd(y0, n, 1.0f);
        for (int i = 0; i < n; i++) xp[i] = fabsf(x[i]) * 100.0f + 1e-30f;
        float d[2], s[2], m[2];
        for (int p = 0; p < 2; p++) {
            use_path(p);
            y[p] = fnew(n); e[p] = fnew(n); l[p] = fnew(n); t[p] = fnew(n);
            memcpy(y[p], y0, (size_t)n * sizeof(float));
            advnn_axpy(n, 0.75f, x, 1, y[p], 1);
            d[p] = advnn_dot(n, x, 1, y0, 1);
            s[p] = advnn_sum(n, x, 1);
            m[p] = advnn_max(n, x, 1);
            advnn_vexp(n, x, e[p]);
            advnn_vlog(n, xp, l[p]);
            advnn_vtanh(n, x, t[p]);
            if (p == 0) { /* scalar path: the reference's bits */
                float *r = fnew(n);
                advnn__vexp_ref(n, x, r);
                CHECK(!ndiff(e[0], r, n, -1, 0), "forced scalar vexp != ref n=%d", n);
                fdel(r);
            }
        }
        double mag = 0, smag = 0;
        for (int i = 0; i < n; i++) { mag += fabs((double)x[i] * y0[i]); smag += fabs(x[i]); }
        CHECK(fabs((double)d[1] - d[0]) <= 2 * n * 6e-8 * mag + 1e-30, "dot n=%d: %g vs %g", n, d[1], d[0]);
        CHECK(fabs((double)s[1] - s[0]) <= 2 * n * 6e-8 * smag + 1e-30, "sum n=%d: %g vs %g", n, s[1], s[0]);
        CHECK(m[1] == m[0], "max n=%d: %g vs %g", n, m[1], m[0]);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += !(fabs((double)y[1][i] - y[0][i]) <= 2.4e-7 * (fabs(y0[i]) + fabs(0.75 * x[i])));
        CHECK(!bad, "axpy n=%d: %d mismatches", n, bad);
        CHECK(!ndiff(e[1], e[0], n, 8e-7, 1e-37), "vexp n=%d", n);
        CHECK(!ndiff(l[1], l[0], n, 8e-7, 1e-37), "vlog n=%d", n);
        CHECK(!ndiff(t[1], t[0], n, 8e-7, 1e-37), "vtanh n=%d", n);
        for (int p = 0; p < 2; p++) { fdel(y[p]); fdel(e[p]); fdel(l[p]); fdel(t[p]); }
        fdel(x); fdel(y0); fdel(xp);
    }
}

static void test_activations_softmax(void) {
    if (!both_paths) return;
    enum { M = 5, N = 37, LD = 40 };
    const size_t sz = (size_t)M * LD;
    float *x = fnew(sz), *dy = fnew(sz), *alpha = fnew(N), *y[2], *dx[2], *da[2];
    frnd(x, sz, 6.0f); frnd(dy, sz, 1.0f); frnd(alpha, N, 0.5f);
    x[3] = 0.0f; x[50] = 90.0f; x[51] = -90.0f; /* a zero and saturating values */
    for (int a = 0; a < ADVNN_ACT_COUNT; a++) {
        advnn_act act = (advnn_act)a;
        for (int p = 0; p < 2; p++) {
            use_path(p);
            y[p] = fnew(sz); dx[p] = fnew(sz); da[p] = fnew(N);
            memset(da[p], 0, N * sizeof(float));
            advnn_act_forward(act, M, N, x, LD, y[p], LD, 0.2f, alpha);
            advnn_act_backward(act, M, N, x, LD, y[p], LD, dy, LD, dx[p], LD, 0.2f, alpha, da[p]);
            if (p == 0) {
                float *r = fnew(sz);
                advnn__act_forward_ref(act, M, N, x, LD, r, LD, 0.2f, alpha);
                CHECK(!ndiff(y[0], r, sz, -1, 0), "forced scalar act %d fwd != ref", a);
                fdel(r);
            }
        }
        int exact = act == ADVNN_ACT_LINEAR || act == ADVNN_ACT_RELU || act == ADVNN_ACT_LEAKY_RELU || act == ADVNN_ACT_PRELU;
        double rt = exact ? 0 : 4e-6, at = exact ? 0 : 2e-6; /* exact: equal values (relu' may give -0 or +0) */
        CHECK(!ndiff(y[1], y[0], sz, rt, at), "act %d forward: %d mismatches", a, ndiff(y[1], y[0], sz, rt, at));
        for (int p = 0; p < 2; p++) { /* the backward of both paths from the same y (the scalar one) */
            use_path(p);
            advnn_act_backward(act, M, N, x, LD, y[0], LD, dy, LD, dx[p], LD, 0.2f, alpha, NULL);
        }
        CHECK(!ndiff(dx[1], dx[0], sz, rt, at), "act %d backward: %d mismatches", a, ndiff(dx[1], dx[0], sz, rt, at));
        CHECK(!ndiff(da[1], da[0], N, 4e-6, 1e-6), "act %d dalpha", a);
        for (int p = 0; p < 2; p++) { fdel(y[p]); fdel(dx[p]); fdel(da[p]); }
    }
    for (int lg = 0; lg < 2; lg++) {
        for (int p = 0; p < 2; p++) {
            use_path(p);
            y[p] = fnew(sz);
            if (lg) advnn_log_softmax_rows(M, N, x, LD, y[p], LD);
            else advnn_softmax_rows(M, N, x, LD, y[p], LD);
        }
        CHECK(!ndiff(y[1], y[0], sz, 4e-6, lg ? 4e-5 : 1e-7), "%s: %d mismatches", lg ? "log_softmax" : "softmax",
              ndiff(y[1], y[0], sz, 4e-6, lg ? 4e-5 : 1e-7));
        fdel(y[0]); fdel(y[1]);
    }
    fdel(x); fdel(dy); fdel(alpha);
}

/* ------------------------------------------------------------------------------------------ */
static void test_conv_pool(void) {
    if (!both_paths) return;
    static const int SH_[][7] = { /* H W C K S (square), pad T L for im2col */
        {5, 5, 1, 3, 1, 1, 1}, {7, 6, 3, 3, 2, 1, 0}, {6, 9, 8, 2, 2, 0, 0}, {9, 9, 17, 3, 1, 1, 1}, {4, 11, 10, 3, 1, 1, 1}};
    for (int s = 0; s < (int)(sizeof SH_ / sizeof SH_[0]); s++) {
        int H = SH_[s][0], W = SH_[s][1], C = SH_[s][2], K = SH_[s][3], S = SH_[s][4], PT = SH_[s][5], PL = SH_[s][6];
        int Ho = (H + 2 * PT - K) / S + 1, Wo = (W + 2 * PL - K) / S + 1, ld = K * K * C + 2;
        int Hp = (H - K) / S + 1, Wp = (W - K) / S + 1; /* pooling (valid) */
        size_t nx = (size_t)H * W * C, nc = (size_t)Ho * Wo * ld, np = (size_t)Hp * Wp * C;
        float *x = fnew(nx), *dyc = fnew(nc), *dyp = fnew(np), *cols[2], *dx[2], *my[2], *ay[2], *mdx[2], *adx[2];
        float *uy[2], *udx[2];
        int32_t *am[2];
        size_t nu = nx * 2 * 3;
        float *du = fnew(nu);
        frnd(x, nx, 1.0f); frnd(dyc, nc, 1.0f); frnd(dyp, np, 1.0f); frnd(du, nu, 1.0f);
        for (int p = 0; p < 2; p++) {
            use_path(p);
            cols[p] = fnew(nc); dx[p] = fnew(nx); my[p] = fnew(np); ay[p] = fnew(np); mdx[p] = fnew(nx);
            adx[p] = fnew(nx); uy[p] = fnew(nu); udx[p] = fnew(nx);
            am[p] = (int32_t *)malloc((np + 1) * sizeof(int32_t));
            memset(dx[p], 0, nx * sizeof(float)); memset(mdx[p], 0, nx * sizeof(float));
            memset(adx[p], 0, nx * sizeof(float)); memset(udx[p], 0, nx * sizeof(float));
            advnn_im2col(H, W, C, K, K, S, S, PT, PL, Ho, Wo, x, cols[p], ld);
            advnn_col2im(H, W, C, K, K, S, S, PT, PL, Ho, Wo, dyc, ld, dx[p]);
            advnn_maxpool_fwd(H, W, C, K, K, S, S, x, my[p], am[p]);
            advnn_maxpool_bwd(Hp, Wp, C, dyp, am[p], mdx[p]);
            advnn_avgpool_fwd(H, W, C, K, K, S, S, x, ay[p]);
            advnn_avgpool_bwd(H, W, C, K, K, S, S, dyp, adx[p]);
            advnn_upsample_fwd(H, W, C, 2, 3, x, uy[p]);
            advnn_upsample_bwd(H, W, C, 2, 3, du, udx[p]);
        }
        int bad_am = 0;
        for (size_t k = 0; k < np; k++) bad_am += am[0][k] != am[1][k];
        CHECK(!ndiff(cols[1], cols[0], nc, -1, 0), "im2col case %d", s);
        CHECK(!ndiff(dx[1], dx[0], nx, -1, 0), "col2im case %d", s);
        CHECK(!ndiff(my[1], my[0], np, -1, 0) && !bad_am, "maxpool_fwd case %d", s);
        CHECK(!ndiff(mdx[1], mdx[0], nx, -1, 0), "maxpool_bwd case %d", s);
        CHECK(!ndiff(ay[1], ay[0], np, 2.4e-7, 1e-30), "avgpool_fwd case %d", s);
        CHECK(!ndiff(adx[1], adx[0], nx, 2.4e-7, 1e-30), "avgpool_bwd case %d", s);
        CHECK(!ndiff(uy[1], uy[0], nu, -1, 0), "upsample_fwd case %d", s);
        CHECK(!ndiff(udx[1], udx[0], nx, -1, 0), "upsample_bwd case %d", s);
        for (int p = 0; p < 2; p++) {
            fdel(cols[p]); fdel(dx[p]); fdel(my[p]); fdel(ay[p]); fdel(mdx[p]); fdel(adx[p]); fdel(uy[p]); fdel(udx[p]);
            free(am[p]);
        }
        fdel(x); fdel(dyc); fdel(dyp); fdel(du);
    }
}

/* ------------------------------------------------------------------------------------------ */
static void test_lstm(void) {
    if (!both_paths) return;
    static const int HS[] = {1, 5, 8, 10, 17};
    for (int hi = 0; hi < (int)(sizeof HS / sizeof HS[0]); hi++) {
        const int n = 4, H = HS[hi], ldz = 4 * H + 1, ldc = H + 2, ldh = H + 1;
        size_t sz = (size_t)n * ldz, sc = (size_t)n * ldc, sh = (size_t)n * ldh;
        float mask[4] = {1.0f, 0.0f, 1.0f, 0.5f};
        float *z0 = fnew(sz), *cp = fnew(sc), *hp = fnew(sh), *dh = fnew(sh), *dc = fnew(sc);
        float *z[2], *c[2], *h[2], *dz[2], *dcp[2], *dhp[2];
        frnd(z0, sz, 4.0f); frnd(cp, sc, 2.0f); frnd(hp, sh, 1.0f); frnd(dh, sh, 1.0f); frnd(dc, sc, 1.0f);
        for (int p = 0; p < 2; p++) {
            use_path(p);
            z[p] = fnew(sz); c[p] = fnew(sc); h[p] = fnew(sh); dz[p] = fnew(sz); dcp[p] = fnew(sc); dhp[p] = fnew(sh);
            memcpy(z[p], z0, sz * sizeof(float));
            advnn_lstm_cell_fwd(n, H, z[p], ldz, cp, hp, c[p], h[p], ldc, ldh, hi % 2 ? mask : NULL);
        }
        CHECK(!ndiff(z[1], z[0], sz, 8e-6, 2e-6), "lstm fwd gates H=%d", H);
        CHECK(!ndiff(c[1], c[0], sc, 8e-6, 2e-6), "lstm fwd c H=%d", H);
        CHECK(!ndiff(h[1], h[0], sh, 8e-6, 2e-6), "lstm fwd h H=%d", H);
        for (int p = 0; p < 2; p++) { /* both from the scalar forward's state */
            use_path(p);
            advnn_lstm_cell_bwd(n, H, z[0], ldz, cp, c[0], dh, dc, dz[p], dcp[p], dhp[p], ldc, ldh, mask);
        }
        CHECK(!ndiff(dz[1], dz[0], sz, 8e-6, 2e-6), "lstm bwd dz H=%d", H);
        CHECK(!ndiff(dcp[1], dcp[0], sc, 8e-6, 2e-6), "lstm bwd dc_prev H=%d", H);
        CHECK(!ndiff(dhp[1], dhp[0], sh, 0, 0), "lstm bwd dh_prev H=%d", H);
        for (int p = 0; p < 2; p++) { fdel(z[p]); fdel(c[p]); fdel(h[p]); fdel(dz[p]); fdel(dcp[p]); fdel(dhp[p]); }
        fdel(z0); fdel(cp); fdel(hp); fdel(dh); fdel(dc);
    }
}

int main(void) {
    RUN(test_initial_choice);
    RUN(test_force);
    RUN(test_sgemm);
    RUN(test_vectors_vmath);
    RUN(test_activations_softmax);
    RUN(test_conv_pool);
    RUN(test_lstm);
    advnn_simd_force(NULL);
    return th_report();
}
