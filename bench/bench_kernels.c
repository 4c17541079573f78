/* bench_kernels.c - single-thread kernel benchmarks for advnn_simd.h.
 *
 * Build (from the repo root):
 *   gcc -O2 -mavx2 -mfma -I. bench/bench_kernels.c -o bench_kernels -lsleef -lm
 *   with OpenBLAS beside it:
 *   gcc -O2 -mavx2 -mfma -I. -DADVNN_BENCH_OPENBLAS bench/bench_kernels.c -o bench_kernels -lsleef -lopenblas -lm
 * Run:
 *   ./bench_kernels [--peak GFLOPS] [--quick]
 * Prints one human-readable line and one JSON line per measurement. Timings are the median of
 * several repetitions after a warm-up. Peak = measured 1-core fp32 FMA throughput (12 independent
 * FMA chains) unless --peak is given.
 */
#define _POSIX_C_SOURCE 200809L
#define ADVNN_SIMD_IMPLEMENTATION
#include "advnn_simd.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef ADVNN_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int);
#endif

#include "bench/bench_common.h"
static volatile float bench_sink;   /* keeps results alive */

static void fill(float *p, size_t n, unsigned *seed) {
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)((*seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

static double peak;
static int reps_scale = 1;

static void bench_gemm(int tA, int tB, int M, int N, int K) {
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *A = (float *)malloc(na * sizeof(float)), *B = (float *)malloc(nb * sizeof(float));
    float *C = (float *)malloc(nc * sizeof(float));
    float *work = (float *)aligned_alloc(64, ((size_t)ADVNN_SGEMM_WORK_FLOATS * sizeof(float) + 63) / 64 * 64);
    unsigned seed = 1;
    fill(A, na, &seed); fill(B, nb, &seed); fill(C, nc, &seed);
    int lda = tA ? M : K, ldb = tB ? K : N;
    double flop = 2.0 * M * N * K;
    /* inner repetitions so that one sample is ~>= 2 ms */
    int inner = (int)(2e-3 * 50e9 / flop) + 1;
    int nsamp = 11 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double));
    for (int w = 0; w < inner; w++) advnn_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N, work);
    for (int s = 0; s < nsamp; s++) {
        double t0 = now();
        for (int w = 0; w < inner; w++) advnn_sgemm(tA, tB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N, work);
        ts[s] = (now() - t0) / inner;
    }
    double gf = flop / median(ts, nsamp) * 1e-9;
    double ob = 0.0;
#ifdef ADVNN_BENCH_OPENBLAS
    for (int w = 0; w < inner; w++)
        cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                    lda, B, ldb, 0.0f, C, N);
    for (int s = 0; s < nsamp; s++) {
        double t0 = now();
        for (int w = 0; w < inner; w++)
            cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                        A, lda, B, ldb, 0.0f, C, N);
        ts[s] = (now() - t0) / inner;
    }
    ob = flop / median(ts, nsamp) * 1e-9;
#endif
    printf("sgemm  tA=%d tB=%d  M=%5d N=%5d K=%5d  %7.1f GFLOP/s  %5.1f%% of peak", tA, tB, M, N, K, gf,
           peak > 0 ? 100 * gf / peak : 0.0);
    if (ob > 0) printf("   openblas %7.1f GFLOP/s  ratio %.2f", ob, gf / ob);
    printf("\n");
    printf("{\"kernel\":\"sgemm\",\"isa\":\"%s\",\"transA\":%d,\"transB\":%d,\"M\":%d,\"N\":%d,\"K\":%d,"
           "\"gflops\":%.2f,\"peak_gflops\":%.1f,\"peak_frac\":%.3f,\"openblas_gflops\":%.2f,\"ratio\":%.3f}\n",
           advnn_simd_name(), tA, tB, M, N, K, gf, peak, peak > 0 ? gf / peak : 0.0, ob, ob > 0 ? gf / ob : 0.0);
    fflush(stdout);
    free(A); free(B); free(C); free(work); free(ts);
}

/* advnn_sgemm_bias_relu (a layer's forward, bias and ReLU in the GEMM's epilogue, in place) against
 * the three calls it replaces: advnn_sgemm, advnn_add_bias, advnn_act_forward */
static void bench_gemm_epi(int M, int N, int K, int relu) {
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *A = (float *)malloc(na * sizeof(float)), *B = (float *)malloc(nb * sizeof(float));
    float *C = (float *)malloc(nc * sizeof(float)), *bias = (float *)malloc((size_t)N * sizeof(float));
    float *work = (float *)aligned_alloc(64, ((size_t)ADVNN_SGEMM_WORK_FLOATS * sizeof(float) + 63) / 64 * 64);
    unsigned seed = 2;
    fill(A, na, &seed); fill(B, nb, &seed); fill(bias, (size_t)N, &seed);
    double flop = 2.0 * M * N * K, t[2];
    int inner = (int)(2e-3 * 50e9 / flop) + 1, nsamp = 11 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double));
    for (int v = 0; v < 2; v++) {
        for (int s = -1; s < nsamp; s++) {   /* s = -1: warm-up */
            double t0 = now();
            for (int w = 0; w < inner; w++) {
                if (v) advnn_sgemm_bias_relu(M, N, K, A, K, B, N, bias, relu, C, N, C, N, work);
                else {
                    advnn_sgemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N, work);
                    advnn_add_bias(M, N, C, N, bias);
                    if (relu) advnn_act_forward(ADVNN_ACT_RELU, M, N, C, N, C, N, 0.0f, NULL);
                }
            }
            if (s >= 0) ts[s] = (now() - t0) / inner;
        }
        t[v] = median(ts, nsamp);
    }
    double gf = flop / t[1] * 1e-9;
    printf("sgemm_bias_relu M=%5d N=%5d K=%5d relu=%d  %7.1f GFLOP/s  %5.1f%% of peak   %.1f us (3 calls: %.1f us)\n", M, N,
           K, relu, gf, peak > 0 ? 100 * gf / peak : 0.0, t[1] * 1e6, t[0] * 1e6);
    printf("{\"kernel\":\"sgemm_bias_relu\",\"isa\":\"%s\",\"M\":%d,\"N\":%d,\"K\":%d,\"relu\":%d,\"gflops\":%.2f,"
           "\"peak_frac\":%.3f,\"us\":%.2f,\"us_three_calls\":%.2f}\n",
           advnn_simd_name(), M, N, K, relu, gf, peak > 0 ? gf / peak : 0.0, t[1] * 1e6, t[0] * 1e6);
    fflush(stdout);
    free(A); free(B); free(C); free(bias); free(work); free(ts);
}

/* ns per element of run(ctx, live) over n elements, live path (ns[1]) and scalar reference (ns[0]):
 * a warm-up batch, then the median of 9 (x reps_scale) batches of ~4e6 elements each */
typedef void (*run_fn)(void *ctx, int live);
static void time_live_ref(run_fn run, void *ctx, double n, double ns[2]) {
    int inner = (int)(4e6 / n) + 1, nsamp = 9 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double));
    for (int live = 1; live >= 0; live--) {
        for (int s = -1; s < nsamp; s++) {   /* s = -1: warm-up */
            double t0 = now();
            for (int w = 0; w < inner; w++) run(ctx, live);
            if (s >= 0) ts[s] = (now() - t0) / inner;
        }
        ns[live] = median(ts, nsamp) * 1e9 / n;
    }
    free(ts);
}

/* ---- element-wise kernels: live path vs scalar libm reference ---- */
enum { K_EXP, K_LOG, K_TANH, K_SIGMOID, K_SOFTPLUS, K_ELU, K_RELU, K_NK };
static const char *kname[K_NK] = {"exp", "log", "tanh", "sigmoid", "softplus", "elu", "relu"};

static void run_elem(int k, int live, int n, const float *x, float *y) {
    switch (k) {
    case K_EXP: if (live) advnn_vexp(n, x, y); else advnn__vexp_ref(n, x, y); break;
    case K_LOG: if (live) advnn_vlog(n, x, y); else advnn__vlog_ref(n, x, y); break;
    case K_TANH: if (live) advnn_vtanh(n, x, y); else advnn__vtanh_ref(n, x, y); break;
    default: {
        advnn_act a = k == K_SIGMOID ? ADVNN_ACT_SIGMOID : k == K_SOFTPLUS ? ADVNN_ACT_SOFTPLUS
                    : k == K_ELU ? ADVNN_ACT_ELU : ADVNN_ACT_RELU;
        if (live) advnn_act_forward(a, 1, n, x, n, y, n, 1.0f, NULL);
        else advnn__act_forward_ref(a, 1, n, x, n, y, n, 1.0f, NULL);
    }
    }
}

typedef struct { int k, n; const float *x; float *y; } elem_ctx;
static void run_elem_ctx(void *c, int live) { elem_ctx *e = (elem_ctx *)c; run_elem(e->k, live, e->n, e->x, e->y); }
static void bench_elem(int k, int n) {
    float *x = (float *)malloc((size_t)n * sizeof(float)), *y = (float *)malloc((size_t)n * sizeof(float));
    unsigned seed = 7;
    fill(x, (size_t)n, &seed);
    for (int i = 0; i < n; i++) x[i] = k == K_LOG ? 0.01f + 10.0f * (x[i] + 0.5f) : 8.0f * x[i];
    double ns[2];
    elem_ctx c = {k, n, x, y};
    time_live_ref(run_elem_ctx, &c, n, ns);
    bench_sink = y[n / 2];
    printf("%-8s n=%8d  %s %6.3f ns/elem   scalar-libm %6.3f ns/elem   speedup %5.1fx\n", kname[k], n,
           advnn_simd_name(), ns[1], ns[0], ns[0] / ns[1]);
    printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n", kname[k],
           advnn_simd_name(), n, ns[1], ns[0]);
    fflush(stdout);
    free(x); free(y);
}

/* ---- the same in double (the mixture-density loss): live path vs libm ---- */
static void run_elem64(int f, int live, int n, const double *x, double *y) {
    if (f == 0) { if (live) advnn_vexp_f64(n, x, y); else advnn__vexp_f64_ref(n, x, y); }
    if (f == 1) { if (live) advnn_vlog_f64(n, x, y); else advnn__vlog_f64_ref(n, x, y); }
    if (f == 2) { if (live) advnn_vlog1p_f64(n, x, y); else advnn__vlog1p_f64_ref(n, x, y); }
    if (f == 3) { if (live) advnn_verf_f64(n, x, y); else advnn__verf_f64_ref(n, x, y); }
    if (f == 4) { if (live) advnn_verf_e_f64(n, x, x + n, y); else advnn__verf_e_f64_ref(n, x, x + n, y); }   /* e after x */
}
typedef struct { int f, n; const double *x; double *y; } elem64_ctx;
static void run_elem64_ctx(void *c, int live) { elem64_ctx *e = (elem64_ctx *)c; run_elem64(e->f, live, e->n, e->x, e->y); }
static void bench_elem64(int f, int n) {
    static const char *name[5] = {"exp_f64", "log_f64", "log1p_f64", "erf_f64", "erf_e_f64"};
    double *x = (double *)malloc(2 * (size_t)n * sizeof(double)), *y = (double *)malloc((size_t)n * sizeof(double));
    float *t = (float *)malloc((size_t)n * sizeof(float));
    unsigned seed = 7;
    fill(t, (size_t)n, &seed);   /* in [-0.5, 0.5) */
    for (int i = 0; i < n; i++) x[i] = f == 1 || f == 2 ? 0.01 + 10.0 * (t[i] + 0.5) : 8.0 * t[i];
    for (int i = 0; i < n; i++) x[n + i] = exp(-x[i] * x[i]);   /* erf_e's exp(-x^2) */
    double ns[2];
    elem64_ctx c = {f, n, x, y};
    time_live_ref(run_elem64_ctx, &c, n, ns);
    bench_sink = (float)y[n / 2];
    printf("%-9s n=%7d  %s %6.3f ns/elem   %s %6.3f ns/elem   speedup %5.1fx\n", name[f], n,
           advnn_simd_name(), ns[1], f == 4 ? "scalar-ref " : "scalar-libm", ns[0], ns[0] / ns[1]);
    printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n", name[f],
           advnn_simd_name(), n, ns[1], ns[0]);
    fflush(stdout);
    free(x); free(y); free(t);
}

/* ---- the mixture-density loss (W1: 512 background rows x 20 components, chunks of 12 rows) ---- */
static void bench_mdn(void) {
    enum { ROWS = 512, K = 20, PER = ADVNN_MDN_CHUNK / K };
    float *a = (float *)malloc(3 * ROWS * K * sizeof(float)), *g = (float *)malloc(3 * ROWS * K * sizeof(float));
    double m[ROWS], nll[PER], best = 1e30;
    int ri[ROWS];
    unsigned seed = 7;
    fill(a, 3 * ROWS * K, &seed);   /* in [-0.5, 0.5): logits, mean and width logits */
    for (int r = 0; r < ROWS; r++) { ri[r] = r; m[r] = 0.05 + 0.9 * (r % 97) / 97.0; }
    for (int rep = 0; rep < 50 * reps_scale; rep++) {
        double t0 = now();
        for (int r0 = 0; r0 < ROWS; r0 += PER) {
            int R = ROWS - r0 < PER ? ROWS - r0 : PER;
            advnn_mdn_nll(R, K, 3 * K, ri + r0, a, a + K, a + 2 * K, m + r0, 1, 1e-3, g, nll);
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    bench_sink = g[7];
    printf("mdn_nll   %d x %d truncated, with gradients  %s %6.2f ns/component  (%.0f us per call of the loss)\n", ROWS, K,
           advnn_simd_name(), best * 1e9 / (ROWS * K), best * 1e6);
    printf("{\"kernel\":\"mdn_nll\",\"isa\":\"%s\",\"rows\":%d,\"components\":%d,\"ns_per_component\":%.3f,\"us\":%.1f}\n",
           advnn_simd_name(), ROWS, K, best * 1e9 / (ROWS * K), best * 1e6);
    fflush(stdout);
    free(a); free(g);
}

/* ---- dropout masks and their backward (W2: rate 0.2 over 512 x 30 x 32 conv outputs) ---- */
typedef struct { int n; const float *x; float *y, *m; } drop_ctx;
static int drop_which;   /* 0: the masks (forward), 1: the backward's dx += dy .* m (advnn_mul_acc) */
static void run_drop(void *c, int live) {
    drop_ctx *d = (drop_ctx *)c;
    if (drop_which) {
        if (live) advnn_mul_acc(d->n, d->x, d->m, d->y); else advnn__mul_acc_ref(d->n, d->x, d->m, d->y);
    } else if (live) advnn_dropout_mask(d->n, 99u, 0.2f, d->x, d->y, d->m);
    else advnn__dropout_ref(d->n, 99u, 0.2f, d->x, d->y, d->m, 0);
}
static void bench_dropout(int which, int n) {
    float *x = (float *)malloc((size_t)n * sizeof(float)), *y = (float *)malloc((size_t)n * sizeof(float));
    float *m = (float *)malloc((size_t)n * sizeof(float));
    unsigned seed = 7;
    double ns[2];
    drop_ctx c = {n, x, y, m};
    const char *name = which ? "mul_acc" : "dropout";
    fill(x, (size_t)n, &seed);
    fill(y, (size_t)n, &seed);
    advnn_dropout_mask(n, 98u, 0.2f, x, y, m);
    drop_which = which;
    time_live_ref(run_drop, &c, n, ns);
    bench_sink = y[n / 2];
    printf("%-9s n=%7d  %s %6.3f ns/elem   scalar-ref  %6.3f ns/elem   speedup %5.1fx\n", name, n,
           advnn_simd_name(), ns[1], ns[0], ns[0] / ns[1]);
    printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n",
           name, advnn_simd_name(), n, ns[1], ns[0]);
    fflush(stdout);
    free(x); free(y); free(m);
}

/* ---- BatchNorm normalisation rows (W1's hidden layers: 512 x 64, and its 10 inputs) ---- */
typedef struct { int M, N, which; const float *x; float *h; const float *par; float *y, *dx; const double *k; double *s; } bn_ctx;
static void run_bn_rows(void *c, int live) {
    bn_ctx *b = (bn_ctx *)c;
    const float *p = b->par;
    int N = b->N;
    if (live) advnn_bn_rows(b->M, N, b->x, N, p, p + N, p + 2 * N, p + 3 * N, b->h, b->y);
    else advnn__bn_rows_ref(b->M, N, b->x, N, p, p + N, p + 2 * N, p + 3 * N, b->h, b->y);
}
static void bench_bn_rows(int M, int N) {
    size_t n = (size_t)M * N;
    float *x = (float *)malloc(n * sizeof(float)), *h = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float));
    float *par = (float *)malloc(4 * (size_t)N * sizeof(float));
    unsigned seed = 11;
    double ns[2];
    bn_ctx c = {M, N, 0, x, h, par, y, NULL, NULL, NULL};
    fill(x, n, &seed);
    fill(par, 4 * (size_t)N, &seed);
    time_live_ref(run_bn_rows, &c, (double)n, ns);
    bench_sink = y[n / 2];
    printf("bn_rows  %4dx%-3d   %s %6.3f ns/elem   scalar-ref %6.3f ns/elem   speedup %5.1fx\n", M, N,
           advnn_simd_name(), ns[1], ns[0], ns[0] / ns[1]);
    printf("{\"kernel\":\"bn_rows\",\"isa\":\"%s\",\"m\":%d,\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n",
           advnn_simd_name(), M, N, ns[1], ns[0]);
    fflush(stdout);
    free(x); free(h); free(y); free(par);
}

/* ---- BatchNorm's double column sums (forward statistics, backward sums) and the backward's dx ---- */
static void run_bn_bwd(void *c, int live) {
    bn_ctx *b = (bn_ctx *)c;
    int M = b->M, N = b->N;
    if (b->which == 0) { if (live) advnn_bn_sums(M, N, b->x, N, b->k, b->s); else advnn__bn_sums_ref(M, N, b->x, N, b->k, b->s); }
    if (b->which == 1) { if (live) advnn_bn_sums2(M, N, b->x, b->h, N, b->s); else advnn__bn_sums2_ref(M, N, b->x, b->h, N, b->s); }
    if (b->which == 2) {
        if (live) advnn_bn_bwd_dx(M, N, b->x, b->h, N, b->k, M, b->s, b->dx);
        else advnn__bn_bwd_dx_ref(M, N, b->x, b->h, N, b->k, M, b->s, b->dx, 0);
    }
}
static void bench_bn_bwd(int M, int N) {
    static const char *name[3] = {"bn_sums", "bn_sums2", "bn_bwd_dx"};
    size_t n = (size_t)M * N;
    float *x = (float *)malloc(n * sizeof(float)), *h = (float *)malloc(n * sizeof(float)), *dx = (float *)malloc(n * sizeof(float));
    double *k = (double *)malloc((size_t)N * sizeof(double)), *s = (double *)calloc(2 * (size_t)N, sizeof(double));
    unsigned seed = 13;
    fill(x, n, &seed); fill(h, n, &seed); fill(dx, n, &seed);
    for (int j = 0; j < N; j++) k[j] = 1e-3 * (j + 1);
    for (int which = 0; which < 3; which++) {
        double ns[2];
        bn_ctx c = {M, N, which, x, h, NULL, NULL, dx, k, s};
        time_live_ref(run_bn_bwd, &c, (double)n, ns);
        bench_sink = (float)s[N / 2] + dx[n / 2];
        printf("%-9s %4dx%-3d %s %6.3f ns/elem   scalar-ref %6.3f ns/elem   speedup %5.1fx\n", name[which], M, N,
               advnn_simd_name(), ns[1], ns[0], ns[0] / ns[1]);
        printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"m\":%d,\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n",
               name[which], advnn_simd_name(), M, N, ns[1], ns[0]);
        fflush(stdout);
    }
    free(x); free(h); free(dx); free(k); free(s);
}

/* ---- Adam / Nadam update (the optimizers' inner loop): ns per weight, live vs scalar reference ---- */
typedef struct { int n, nadam; float *w, *m, *v, *g; } adam_ctx;
static void run_adam(void *c, int live) {
    adam_ctx *a = (adam_ctx *)c;
    /* the check pass (commit 0, writes nothing), as a training step runs it before the writing one */
    if (live) bench_sink += (float)advnn_adam_update(a->n, a->w, a->m, a->v, a->g, 1.0, 1e-3f, 2e-4f, 1.0f, 0.9f, 0.999f,
                                                     1e-7f, 0.0f, a->nadam, 0);
    else bench_sink += (float)advnn__adam_ref(a->n, a->w, a->m, a->v, a->g, 1.0, 1e-3f, 2e-4f, 1.0f, 0.9f, 0.999f, 1e-7f,
                                              0.0f, a->nadam, 0);
}
static void bench_adam(int n) {
    float *w = (float *)malloc((size_t)n * sizeof(float)), *m = (float *)malloc((size_t)n * sizeof(float));
    float *v = (float *)malloc((size_t)n * sizeof(float)), *g = (float *)malloc((size_t)n * sizeof(float));
    unsigned seed = 21;
    fill(w, (size_t)n, &seed); fill(m, (size_t)n, &seed); fill(g, (size_t)n, &seed);
    for (int j = 0; j < n; j++) v[j] = w[j] * w[j];
    for (int nadam = 0; nadam < 2; nadam++) {
        double ns[2];
        adam_ctx c = {n, nadam, w, m, v, g};
        time_live_ref(run_adam, &c, (double)n, ns);
        printf("%-9s n %-8d %s %6.3f ns/weight   scalar-ref %6.3f ns/weight   speedup %5.1fx\n",
               nadam ? "nadam" : "adam", n, advnn_simd_name(), ns[1], ns[0], ns[0] / ns[1]);
        printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"n\":%d,\"ns_per_elem\":%.4f,\"scalar_ns_per_elem\":%.4f}\n",
               nadam ? "nadam" : "adam", advnn_simd_name(), n, ns[1], ns[0]);
        fflush(stdout);
    }
    free(w); free(m); free(v); free(g);
}

/* ---- im2col / col2im (W3 shapes, k3 "same", stride 1): live vs scalar reference ---- */
static void bench_im2col(int H, int W, int C) {
    const int K = 3, P = H * W, kc = K * K * C; /* "same", stride 1: Ho = H, Wo = W, pad 1 */
    size_t nx = (size_t)H * W * C, nc = (size_t)P * kc;
    float *x = (float *)malloc(nx * sizeof(float)), *cols = (float *)malloc(nc * sizeof(float));
    unsigned seed = 3;
    fill(x, nx, &seed);
    fill(cols, nc, &seed);
    int inner = (int)(4e6 / (double)nc) + 1, nsamp = 9 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double)), t[2][2]; /* [col2im?][live?] */
    for (int op = 0; op < 2; op++)
        for (int live = 1; live >= 0; live--) {
            for (int s = -1; s < nsamp; s++) { /* s == -1: warm-up */
                double t0 = now();
                for (int w = 0; w < inner; w++) {
                    if (op == 0 && live) advnn_im2col(H, W, C, K, K, 1, 1, 1, 1, H, W, x, cols, kc);
                    else if (op == 0) advnn__im2col_ref(H, W, C, K, K, 1, 1, 1, 1, H, W, x, cols, kc);
                    else if (live) advnn_col2im(H, W, C, K, K, 1, 1, 1, 1, H, W, cols, kc, x);
                    else advnn__col2im_ref(H, W, C, K, K, 1, 1, 1, 1, H, W, cols, kc, x);
                }
                if (s >= 0) ts[s] = (now() - t0) / inner;
            }
            t[op][live] = median(ts, nsamp);
        }
    bench_sink = cols[nc / 2] + x[nx / 2];
    for (int op = 0; op < 2; op++) {
        const char *nm = op ? "col2im" : "im2col";
        double ns = t[op][1] * 1e9 / (double)nc, nsr = t[op][0] * 1e9 / (double)nc;
        double gbs = (double)nc * sizeof(float) / t[op][1] * 1e-9; /* cols bytes written (read for col2im) */
        printf("%-7s %2dx%2dx%-2d k3 same  %s %6.3f ns/elem %6.2f GB/s (cols)   scalar-ref %6.3f ns/elem   speedup %4.1fx\n",
               nm, H, W, C, advnn_simd_name(), ns, gbs, nsr, nsr / ns);
        printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"H\":%d,\"W\":%d,\"C\":%d,\"k\":3,\"ns_per_elem\":%.4f,\"gb_per_s\":%.3f,"
               "\"scalar_ns_per_elem\":%.4f}\n", nm, advnn_simd_name(), H, W, C, ns, gbs, nsr);
    }
    fflush(stdout);
    free(x); free(cols); free(ts);
}

/* ---- a convolution's input gradient (k3 same, stride 1, 8 images): advnn_conv_dgrad against what it
 * replaces, dx zeroed, the dcols GEMM (K = F) and col2im, image by image as the trainer ran them ---- */
static void bench_dgrad(int H, int W, int C, int F) {
    const int n = 8, P = H * W, kc = 9 * C;
    size_t ndz = (size_t)n * P * F, nx = (size_t)n * H * W * C;
    float *dz = (float *)malloc(ndz * sizeof(float)), *k = (float *)malloc((size_t)kc * F * sizeof(float));
    float *dx = (float *)malloc(nx * sizeof(float)), *dcols = (float *)malloc((size_t)P * kc * sizeof(float));
    float *work = (float *)malloc(advnn_conv_dgrad_floats(H, W, 3, 3, F) * sizeof(float));
    float *gw = (float *)aligned_alloc(64, ((size_t)ADVNN_SGEMM_WORK_FLOATS * sizeof(float) + 63) / 64 * 64);
    unsigned seed = 9;
    fill(dz, ndz, &seed); fill(k, (size_t)kc * F, &seed);
    int inner = (int)(2e6 / ((double)P * kc * F)) + 1, nsamp = 9 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double)), t[2], flop = 2.0 * n * P * kc * F;
    for (int direct = 1; direct >= 0; direct--) {
        for (int s = -1; s < nsamp; s++) {   /* s == -1: warm-up */
            double t0 = now();
            for (int w = 0; w < inner; w++) {
                if (direct && !advnn_conv_dgrad(H, W, C, 3, 3, 1, 1, 1, 1, H, W, dz, n, F, k, dx, work)) {
                    printf("conv_dgrad %dx%dx%d F %d: not applicable (%s)\n", H, W, C, F, advnn_simd_name());
                    goto out;
                }
                if (direct) continue;
                memset(dx, 0, nx * sizeof(float));
                for (int j = 0; j < n; j++) {
                    advnn_sgemm(0, 1, P, kc, F, 1.0f, dz + (size_t)j * P * F, F, k, F, 0.0f, dcols, kc, gw);
                    advnn_col2im(H, W, C, 3, 3, 1, 1, 1, 1, H, W, dcols, kc, dx + (size_t)j * H * W * C);
                }
            }
            if (s >= 0) ts[s] = (now() - t0) / inner;
        }
        t[direct] = median(ts, nsamp);
    }
    bench_sink = dx[nx / 2];
    printf("conv_dgrad %2dx%2dx%-2d F %-2d k3 same  %s %7.1f GFLOP/s %5.1f%% of peak %6.2f us/image   "
           "gemm+col2im %7.1f GFLOP/s %6.2f us/image   speedup %4.2fx\n", H, W, C, F, advnn_simd_name(),
           flop / t[1] * 1e-9, peak > 0 ? 100 * flop / t[1] * 1e-9 / peak : 0.0, t[1] * 1e6 / n,
           flop / t[0] * 1e-9, t[0] * 1e6 / n, t[0] / t[1]);
    printf("{\"kernel\":\"conv_dgrad\",\"isa\":\"%s\",\"H\":%d,\"W\":%d,\"C\":%d,\"F\":%d,\"k\":3,\"gflops\":%.2f,"
           "\"peak_frac\":%.3f,\"us_per_image\":%.3f,\"gemm_col2im_us_per_image\":%.3f}\n", advnn_simd_name(), H, W, C, F,
           flop / t[1] * 1e-9, peak > 0 ? flop / t[1] * 1e-9 / peak : 0.0, t[1] * 1e6 / n, t[0] * 1e6 / n);
out:
    fflush(stdout);
    free(dz); free(k); free(dx); free(dcols); free(work); free(gw); free(ts);
}

/* ---- LSTM cell forward + backward (W2 shapes): ns per (row x hidden unit) per step ---- */
static void bench_lstm(int n, int H) {
    size_t nz = (size_t)n * 4 * H, nh = (size_t)n * H;
    float *z0 = (float *)malloc(nz * sizeof(float)), *z = (float *)malloc(nz * sizeof(float));
    float *dz = (float *)malloc(nz * sizeof(float)), *cp = (float *)malloc(nh * sizeof(float));
    float *hp = (float *)malloc(nh * sizeof(float)), *c = (float *)malloc(nh * sizeof(float));
    float *h = (float *)malloc(nh * sizeof(float)), *dh = (float *)malloc(nh * sizeof(float));
    float *dc = (float *)malloc(nh * sizeof(float)), *dcp = (float *)malloc(nh * sizeof(float));
    float *dhp = (float *)malloc(nh * sizeof(float));
    unsigned seed = 5;
    fill(z0, nz, &seed); fill(cp, nh, &seed); fill(hp, nh, &seed); fill(dh, nh, &seed); fill(dc, nh, &seed);
    for (size_t k = 0; k < nz; k++) z0[k] *= 6.0f; /* pre-activations in [-3, 3] */
    int inner = (int)(2e6 / (double)nh) + 1, nsamp = 9 * reps_scale;
    double *ts = (double *)malloc((size_t)nsamp * sizeof(double)), tf[2], tb[2], tcopy;
    /* the forward overwrites z: each repetition restores it; that copy is timed alone and subtracted */
    for (int s = -1; s < nsamp; s++) {
        double t0 = now();
        for (int w = 0; w < inner; w++) { memcpy(z, z0, nz * sizeof(float)); bench_sink = z[w % nz]; }
        if (s >= 0) ts[s] = (now() - t0) / inner;
    }
    tcopy = median(ts, nsamp);
    for (int live = 1; live >= 0; live--) {
        for (int s = -1; s < nsamp; s++) {
            double t0 = now();
            for (int w = 0; w < inner; w++) {
                memcpy(z, z0, nz * sizeof(float));
                if (live) advnn_lstm_cell_fwd(n, H, z, 4 * H, cp, hp, c, h, H, H, NULL);
                else advnn__lstm_cell_fwd_ref(n, H, z, 4 * H, cp, hp, c, h, H, H, NULL);
            }
            if (s >= 0) ts[s] = (now() - t0) / inner;
        }
        tf[live] = median(ts, nsamp) - tcopy;
        for (int s = -1; s < nsamp; s++) {
            double t0 = now();
            for (int w = 0; w < inner; w++) {
                if (live) advnn_lstm_cell_bwd(n, H, z, 4 * H, cp, c, dh, dc, dz, dcp, dhp, H, H, NULL);
                else advnn__lstm_cell_bwd_ref(n, H, z, 4 * H, cp, c, dh, dc, dz, dcp, dhp, H, H, NULL);
            }
            if (s >= 0) ts[s] = (now() - t0) / inner;
        }
        tb[live] = median(ts, nsamp);
    }
    bench_sink = h[nh / 2] + dz[nz / 2];
    double e = (double)nh;
    printf("lstm_cell n=%d H=%-3d fwd %s %6.3f / scalar %6.3f ns/elem   bwd %s %6.3f / scalar %6.3f ns/elem   "
           "fwd+bwd %6.3f / %6.3f (%4.1fx)\n", n, H, advnn_simd_name(), tf[1] * 1e9 / e, tf[0] * 1e9 / e, advnn_simd_name(),
           tb[1] * 1e9 / e, tb[0] * 1e9 / e, (tf[1] + tb[1]) * 1e9 / e, (tf[0] + tb[0]) * 1e9 / e,
           (tf[0] + tb[0]) / (tf[1] + tb[1]));
    printf("{\"kernel\":\"lstm_cell\",\"isa\":\"%s\",\"n\":%d,\"H\":%d,\"fwd_ns_per_elem\":%.4f,\"bwd_ns_per_elem\":%.4f,"
           "\"scalar_fwd_ns_per_elem\":%.4f,\"scalar_bwd_ns_per_elem\":%.4f,\"step_us\":%.3f,\"scalar_step_us\":%.3f}\n",
           advnn_simd_name(), n, H, tf[1] * 1e9 / e, tb[1] * 1e9 / e, tf[0] * 1e9 / e, tb[0] * 1e9 / e,
           (tf[1] + tb[1]) * 1e6, (tf[0] + tb[0]) * 1e6);
    fflush(stdout);
    free(z0); free(z); free(dz); free(cp); free(hp); free(c); free(h); free(dh); free(dc); free(dcp); free(dhp); free(ts);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--peak") && i + 1 < argc) peak = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps_scale = atoi(argv[++i]);
    }
#ifdef ADVNN_BENCH_OPENBLAS
    openblas_set_num_threads(1);
#endif
    if (peak <= 0) peak = measure_peak();
    printf("advnn_simd %s, 1 thread, fp32 FMA peak %.1f GFLOP/s%s\n", advnn_simd_name(), peak,
           peak > 0 ? "" : " (unknown: pass --peak)");
    printf("{\"kernel\":\"fma_peak\",\"gflops\":%.1f}\n", peak);
    static const int shapes[][5] = {{0, 0, 256, 64, 64},  {0, 0, 256, 128, 128}, {0, 0, 256, 256, 256},
                                    {0, 0, 1024, 1024, 1024}, {0, 0, 1, 64, 64},
                                    {1, 0, 64, 64, 256}, /* dW = X^T dY : X 256x64, dY 256x64 */
                                    {0, 1, 256, 64, 64}, /* dX = dY W^T : dY 256x64, W 64x64 */
                                    {1, 0, 256, 64, 64}, {0, 1, 256, 128, 128},
                                    /* W3's narrow convolutions (8 images of 40x40, 3x3, 10 or 5 filters): all
                                     * right-edge tiles. Forward cols x W, dW = cols^T dZ (the narrow A^T B
                                     * kernel since 2026-12-02), dcols = dZ W^T */
                                    {0, 0, 12800, 10, 90}, {0, 0, 12800, 5, 45}, {1, 0, 90, 10, 12800},
                                    {1, 0, 45, 5, 12800}, {0, 1, 12800, 90, 10}};
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < nshapes; s++) {
        if (quick && shapes[s][2] == 1024) continue;
        bench_gemm(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4]);
    }
    /* layer forwards: W1's hidden layers at batch 512, W2's first 1-D convolutions (512 x 30 rows),
     * a W3 convolution (8 images; no ReLU there, the bias alone) */
    bench_gemm_epi(512, 64, 64, 1);
    bench_gemm_epi(15360, 64, 12, 1);
    bench_gemm_epi(15360, 32, 64, 1);
    bench_gemm_epi(12800, 10, 90, 0);
    for (int k = 0; k < K_NK; k++) {
        bench_elem(k, 4096);
        if (!quick) bench_elem(k, 1 << 20);
    }
    for (int f = 0; f < 5; f++) bench_elem64(f, 4096);
    bench_mdn();
    for (int w = 0; w < 2; w++) {
        bench_dropout(w, 4096);
        if (!quick) bench_dropout(w, 512 * 30 * 32);
    }
    bench_bn_rows(512, 64);
    bench_bn_rows(512, 10);
    bench_bn_bwd(1024, 64);   /* W1's hidden BatchNorms at batch 1024, and its 10 inputs */
    bench_bn_bwd(1024, 10);
    bench_adam(13457);   /* W1's parameters (tagger + adversary) */
    /* W3 convolution inputs (k3 same) and W2 LSTM cells (batch 512, H 10 and 5) */
    bench_im2col(40, 40, 1);
    bench_im2col(40, 40, 10);
    bench_im2col(40, 40, 5);
    bench_im2col(20, 20, 10);
    /* W3's decoder output layer (10 channels, 1 filter) and where the GEMM takes over (5, 10 filters) */
    for (int f = 1; f <= 10; f += f < 5 ? 1 : 5) bench_dgrad(40, 40, 10, f);
    bench_dgrad(40, 40, 5, 5);
    bench_lstm(512, 10);
    bench_lstm(512, 5);
    return 0;
}
