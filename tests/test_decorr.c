/* Decorrelation losses and tools: DisCo (O(N log N) against the O(N^2) definition, gradients,
 * degenerate inputs, fixtures from a numpy port of the reference code), MoDe (fixtures from a numpy
 * port of the reference, orders on constructed inputs, the flatness variant), the graph nodes
 * (finite differences, model files, trainer), DDT and reweighting. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "gradcheck.h"

/* ------------------------------------------------------------ the definition, O(N^2), in double */
/* Reference formula (Disco.py): normalised weights p, double-centred A, B; R = S_ab / sqrt(S_aa S_bb),
 * value R^power. Gradient of R^power w.r.t. y (and x by symmetry) from the same matrices. */
static double disco_direct(int n, const float *x, const float *y, const float *w, double power, double *gx, double *gy) {
    int m = 0, i, j, *rows = (int *)malloc((size_t)(n + 1) * sizeof(int));
    double W = 0, *p, *A, *B, *ar, *br, ab = 0, ad = 0, bd = 0, sab = 0, saa = 0, sbb = 0, R, f, df;
    for (i = 0; i < n; i++) if (!w || w[i] != 0) { rows[m++] = i; W += w ? w[i] : 1; }
    if (gx) for (i = 0; i < n; i++) gx[i] = 0;
    if (gy) for (i = 0; i < n; i++) gy[i] = 0;
    if (m < 2) { free(rows); return 0; }
    p = (double *)malloc((size_t)m * sizeof(double)); ar = (double *)calloc((size_t)m, sizeof(double)); br = (double *)calloc((size_t)m, sizeof(double));
    A = (double *)malloc((size_t)m * m * sizeof(double)); B = (double *)malloc((size_t)m * m * sizeof(double));
    for (i = 0; i < m; i++) p[i] = (w ? w[rows[i]] : 1) / W;
    for (i = 0; i < m; i++) for (j = 0; j < m; j++) {
        A[(size_t)i * m + j] = fabs((double)x[rows[i]] - x[rows[j]]);
        B[(size_t)i * m + j] = fabs((double)y[rows[i]] - y[rows[j]]);
        ar[i] += p[j] * A[(size_t)i * m + j]; br[i] += p[j] * B[(size_t)i * m + j];
    }
    for (i = 0; i < m; i++) { ad += p[i] * ar[i]; bd += p[i] * br[i]; }
    for (i = 0; i < m; i++) for (j = 0; j < m; j++) {
        double a = A[(size_t)i * m + j] - ar[i] - ar[j] + ad, b = B[(size_t)i * m + j] - br[i] - br[j] + bd;
        A[(size_t)i * m + j] = a; B[(size_t)i * m + j] = b;
        sab += p[i] * p[j] * a * b; saa += p[i] * p[j] * a * a; sbb += p[i] * p[j] * b * b;
    }
    (void)ab;
    if (!(saa > 1e-300) || !(sbb > 1e-300)) f = 0, R = 0, df = 0;
    else {
        R = sab / sqrt(saa * sbb); if (R < 0) R = 0;
        f = pow(R, power); df = power * pow(R, power - 1);
        for (i = 0; i < m; i++) {
            double tx = 0, ty = 0, txx = 0, tyy = 0;
            for (j = 0; j < m; j++) {
                double sy = (y[rows[i]] > y[rows[j]]) - (y[rows[i]] < y[rows[j]]), sx = (x[rows[i]] > x[rows[j]]) - (x[rows[i]] < x[rows[j]]);
                ty += p[j] * A[(size_t)i * m + j] * sy; tyy += p[j] * B[(size_t)i * m + j] * sy;
                tx += p[j] * B[(size_t)i * m + j] * sx; txx += p[j] * A[(size_t)i * m + j] * sx;
            }
            if (gy) gy[rows[i]] = df * (2 * p[i] * ty / sqrt(saa * sbb) - 0.5 * R * 4 * p[i] * tyy / sbb);
            if (gx) gx[rows[i]] = df * (2 * p[i] * tx / sqrt(saa * sbb) - 0.5 * R * 4 * p[i] * txx / saa);
        }
    }
    free(p); free(ar); free(br); free(A); free(B); free(rows);
    return f;
}

static double urand(advnn__rng *r) { return advnn__rng_uniform(r); }

/* random rows: ties when `levels` > 0 (values on a grid of that many steps), some zero weights */
static void make_rows(advnn__rng *r, int n, int levels, int weighted, float *x, float *y, float *w) {
    int i;
    for (i = 0; i < n; i++) {
        double a = urand(r), b = 0.6 * a + 0.4 * urand(r) * urand(r);
        if (levels > 0) { a = floor(a * levels) / levels; b = floor(b * levels) / levels; }
        x[i] = (float)(80 + 100 * a); y[i] = (float)b;
        w[i] = weighted ? (urand(r) < 0.2 ? 0.0f : (float)(0.2 + 2 * urand(r))) : 1.0f;
    }
}

static double maxabs(const double *g, int n) { double m = 0; int i; for (i = 0; i < n; i++) m = fmax(m, fabs(g[i])); return m; }

static void test_disco_vs_direct_small(void) {
    advnn__rng r;
    int n, bad = 0;
    float x[300], y[300], w[300];
    double gx[300], gy[300], hx[300], hy[300];
    advnn__rng_seed(&r, 5);
    for (n = 1; n <= 300; n += (n < 40 ? 1 : 7)) {
        int mode;
        for (mode = 0; mode < 4; mode++) {   /* bit 0: weighted, bit 1: ties */
            double v, d, power = (n % 3 == 0) ? 2.0 : 1.0;
            int i;
            make_rows(&r, n, (mode & 2) ? 7 : 0, mode & 1, x, y, w);
            if (advnn_disco(x, y, (mode & 1) ? w : NULL, n, power, &v, gx, gy) != ADVNN_OK) { CHECK(0, "%s", advnn_last_error()); return; }
            d = disco_direct(n, x, y, (mode & 1) ? w : NULL, power, hx, hy);
            if (!th_close(v, d, 1e-9, 1e-12)) { if (bad++ < 5) CHECK(0, "n %d mode %d: value %.15g, direct %.15g", n, mode, v, d); }
            for (i = 0; i < n; i++) {
                double sy = 1e-9 * maxabs(hy, n) + 1e-11, sx = 1e-9 * maxabs(hx, n) + 1e-11;
                if (fabs(gy[i] - hy[i]) > sy || fabs(gx[i] - hx[i]) > sx) {
                    if (bad++ < 5) CHECK(0, "n %d mode %d row %d: grad (%g, %g), direct (%g, %g)", n, mode, i, gx[i], gy[i], hx[i], hy[i]);
                }
            }
        }
    }
    CHECK(bad == 0, "%d mismatches", bad);
}

/* central differences of the direct definition (no ties: |.| is smooth there) */
static void test_disco_grad_fd(void) {
    advnn__rng r;
    int n = 40, i, bad = 0;
    float x[40], y[40], w[40];
    double gx[40], gy[40], v;
    advnn__rng_seed(&r, 11);
    make_rows(&r, n, 0, 1, x, y, w);
    CHECK(advnn_disco(x, y, w, n, 1.0, &v, gx, gy) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(v > 0.05, "rows built to be correlated: dCorr^2 %g", v);
    for (i = 0; i < n; i++) {
        float y0 = y[i], x0 = x[i];
        double hy = 1e-4, hx = 1e-2, p, m, fdy, fdx;
        y[i] = (float)(y0 + hy); p = disco_direct(n, x, y, w, 1.0, NULL, NULL);
        y[i] = (float)(y0 - hy); m = disco_direct(n, x, y, w, 1.0, NULL, NULL);
        fdy = (p - m) / ((double)(float)(y0 + hy) - (double)(float)(y0 - hy)); y[i] = y0;
        x[i] = (float)(x0 + hx); p = disco_direct(n, x, y, w, 1.0, NULL, NULL);
        x[i] = (float)(x0 - hx); m = disco_direct(n, x, y, w, 1.0, NULL, NULL);
        fdx = (p - m) / ((double)(float)(x0 + hx) - (double)(float)(x0 - hx)); x[i] = x0;
        if (fabs(fdy - gy[i]) > 1e-3 * maxabs(gy, n) + 1e-3 * fabs(fdy) || fabs(fdx - gx[i]) > 1e-3 * maxabs(gx, n) + 1e-3 * fabs(fdx))
            if (bad++ < 5) CHECK(0, "row %d: grad (%g, %g), finite differences (%g, %g)", i, gx[i], gy[i], fdx, fdy);
    }
    CHECK(maxabs(gy, n) > 0 && maxabs(gx, n) > 0, "zero gradient");
}

static void test_disco_large(void) {
    advnn__rng r;
    int n = 5000, i;
    float *x = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float)), *w = (float *)malloc(n * sizeof(float));
    double *gx = (double *)malloc(n * sizeof(double)), *gy = (double *)malloc(n * sizeof(double));
    double *hx = (double *)malloc(n * sizeof(double)), *hy = (double *)malloc(n * sizeof(double)), v, d, e = 0;
    advnn__rng_seed(&r, 17);
    make_rows(&r, n, 0, 1, x, y, w);
    for (i = 0; i < n; i += 10) y[i] = y[i + 1];   /* some ties */
    CHECK(advnn_disco(x, y, w, n, 1.0, &v, gx, gy) == ADVNN_OK, "%s", advnn_last_error());
    d = disco_direct(n, x, y, w, 1.0, hx, hy);
    CHECK(fabs(v - d) <= 1e-6 * fabs(d), "N 5000: O(N log N) %.15g, O(N^2) %.15g", v, d);
    for (i = 0; i < n; i++) e = fmax(e, fabs(gy[i] - hy[i]));
    CHECK(e <= 1e-6 * maxabs(hy, n), "N 5000: gradient max deviation %g (max |g| %g)", e, maxabs(hy, n));
    free(x); free(y); free(w); free(gx); free(gy); free(hx); free(hy);
}

static void test_disco_degenerate(void) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c[8] = {3, 3, 3, 3, 3, 3, 3, 3}, y[8] = {0.1f, 0.5f, 0.2f, 0.9f, 0.4f, 0.4f, 0.8f, 0.3f};
    float w1[8] = {0, 0, 2, 0, 0, 0, 0, 0}, w0[8] = {0}, we[8] = {3, 3, 3, 3, 3, 3, 3, 3}, wneg[8] = {1, 1, -1, 1, 1, 1, 1, 1};
    float xn[8] = {1, 2, 3, NAN, 5, 6, 7, 8};
    double v, g[8], gx[8], v1;
    int i;
    CHECK(advnn_disco(x, c, NULL, 8, 1.0, &v, NULL, g) == ADVNN_OK && v == 0 && maxabs(g, 8) == 0, "constant score: %g", v);
    CHECK(advnn_disco(c, y, NULL, 8, 1.0, &v, g, NULL) == ADVNN_OK && v == 0 && maxabs(g, 8) == 0, "constant variable: %g", v);
    CHECK(advnn_disco(x, y, w1, 8, 1.0, &v, gx, g) == ADVNN_OK && v == 0 && maxabs(g, 8) == 0, "one row: %g", v);
    CHECK(advnn_disco(x, y, w0, 8, 1.0, &v, NULL, NULL) == ADVNN_OK && v == 0, "no rows: %g", v);
    CHECK(advnn_disco(x, y, NULL, 0, 1.0, &v, NULL, NULL) == ADVNN_OK && v == 0, "n = 0: %g", v);
    CHECK(advnn_disco(x, y, NULL, 8, 1.0, &v1, NULL, NULL) == ADVNN_OK && advnn_disco(x, y, we, 8, 1.0, &v, NULL, NULL) == ADVNN_OK &&
          fabs(v - v1) < 1e-14, "equal weights %g vs unweighted %g", v, v1);
    CHECK(advnn_disco(x, x, NULL, 8, 1.0, &v, NULL, NULL) == ADVNN_OK && fabs(v - 1) < 1e-12, "dCorr(x, x) = %g (1)", v);
    CHECK(advnn_disco(x, y, NULL, 8, 2.0, &v, NULL, NULL) == ADVNN_OK && fabs(v - v1 * v1) < 1e-14, "power 2: %g vs %g^2", v, v1);
    CHECK(advnn_disco(x, y, wneg, 8, 1.0, &v, NULL, NULL) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "weight"), "negative weight: %s", advnn_last_error());
    CHECK(advnn_disco(xn, y, NULL, 8, 1.0, &v, NULL, NULL) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "row 3"), "NaN: %s", advnn_last_error());
    CHECK(advnn_disco(x, y, NULL, 8, 0.5, &v, NULL, NULL) == ADVNN_ERR_ARG, "power 0.5 accepted");
    for (i = 0; i < 8; i++) y[i] = (float)(i % 2);   /* a binary variable (the LLP tagger's data/simulation label) */
    CHECK(advnn_disco(x, y, NULL, 8, 1.0, &v, NULL, NULL) == ADVNN_OK && fabs(v - disco_direct(8, x, y, NULL, 1, NULL, NULL)) < 1e-14, "binary y");
}

int main(void) {
    RUN(test_disco_vs_direct_small);
    RUN(test_disco_grad_fd);
    RUN(test_disco_large);
    RUN(test_disco_degenerate);
    return th_report();
}
