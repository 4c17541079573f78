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


/* ------------------------------------------------------------ fixtures (tools/make_decorr_fixtures.py) */
static double ref_at(const advnn_tensor *t, int c, int r) {   /* float64 stored as a float32 pair */
    const float *q = t->data + ((size_t)c * t->shape[1] + r) * 2;
    return (double)q[0] + (double)q[1];
}

static void test_fixtures(void) {
    advnn_tensor *in = advnn_npy_load("tests/fixtures/decorr_in.npy"), *dr = advnn_npy_load("tests/fixtures/decorr_disco_ref.npy");
    advnn_tensor *mr = advnn_npy_load("tests/fixtures/decorr_mode_ref.npy");
    int n, i, c, bad = 0;
    float *m, *s, *w, *ones;
    double *g;
    if (!in || !dr || !mr) { CHECK(0, "fixtures: %s", advnn_last_error()); goto out; }
    n = (int)in->shape[0];
    CHECK(dr->shape[1] == n + 1 && mr->shape[1] == n + 1, "fixture shapes");
    m = (float *)malloc(n * sizeof(float)); s = (float *)malloc(n * sizeof(float)); w = (float *)malloc(n * sizeof(float));
    ones = (float *)malloc(n * sizeof(float)); g = (double *)malloc(n * sizeof(double));
    for (i = 0; i < n; i++) { m[i] = in->data[3 * i]; s[i] = in->data[3 * i + 1]; w[i] = in->data[3 * i + 2]; ones[i] = 1; }
    for (c = 0; c < 3; c++) {   /* DisCo: torch on the reference's N x N matrices */
        double v, gmax = 0;
        CHECK(advnn_disco(m, s, c ? w : NULL, n, c == 2 ? 2.0 : 1.0, &v, NULL, g) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(th_close(v, ref_at(dr, c, 0), 1e-10, 0), "DisCo case %d: %.15g, torch %.15g", c, v, ref_at(dr, c, 0));
        for (i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref_at(dr, c, i + 1)));
        for (i = 0; i < n; i++)
            if (!(fabs(g[i] - ref_at(dr, c, i + 1)) <= 1e-9 * gmax)) { if (bad++ < 5) CHECK(0, "DisCo case %d row %d: %g, torch %g", c, i, g[i], ref_at(dr, c, i + 1)); }
    }
    for (c = 0; c < 6; c++) {   /* MoDe: numpy port of the reference's forward and backward */
        static const int ord[6] = {0, 1, 2, 1, 0, 0}, bins[6] = {8, 8, 8, 8, 8, 10}, sb[6] = {32, 32, 32, 32, 32, 20}, fl[6] = {0, 0, 0, 0, 1, 0};
        static const float ms[6] = {0, 0, 0, 0.5f, 0, 0};
        advnn_mode_opts o = advnn_mode_defaults();
        double v, gmax = 0;
        o.order = ord[c]; o.bins = bins[c]; o.sbins = sb[c]; o.max_slope = ms[c]; o.flatness = fl[c];
        CHECK(advnn_mode(s, m, c == 5 ? ones : w, n, &o, &v, g) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(th_close(v, ref_at(mr, c, 0), 1e-9, 1e-15), "MoDe case %d: %.15g, numpy %.15g", c, v, ref_at(mr, c, 0));
        for (i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref_at(mr, c, i + 1)));
        CHECK(gmax > 0, "MoDe case %d: zero reference gradient", c);
        for (i = 0; i < n; i++)
            if (!(fabs(g[i] - ref_at(mr, c, i + 1)) <= 1e-9 * gmax)) { if (bad++ < 5) CHECK(0, "MoDe case %d row %d: %g, numpy %g", c, i, g[i], ref_at(mr, c, i + 1)); }
    }
    free(m); free(s); free(w); free(ones); free(g);
out:
    advnn_tensor_free(in); advnn_tensor_free(dr); advnn_tensor_free(mr);
}

/* ------------------------------------------------------------ MoDe orders on constructed inputs */
/* m uniform; s drawn from a mixture of a low-s and a high-s shape with a fraction q(m) of the low
 * one, so each bin's CDF is q(m) G1(s) + (1 - q(m)) G2(s): flat, linear or quadratic in m. */
static void mixture_rows(advnn__rng *r, int n, int kind, float *s, float *m) {
    int i;
    for (i = 0; i < n; i++) {
        double mm = 2 * urand(r) - 1, q = kind == 0 ? 0.5 : kind == 1 ? 0.5 + 0.4 * mm : 0.3 + 0.6 * mm * mm, u = urand(r);
        m[i] = (float)(100 + 50 * mm);
        s[i] = (float)(urand(r) < q ? u * u : 1 - u * u);
    }
}

static void test_mode_orders(void) {
    advnn__rng r;
    int n = 40000, kind, ord;
    float *s = (float *)malloc(n * sizeof(float)), *m = (float *)malloc(n * sizeof(float));
    double v[3][3];
    advnn_mode_opts o = advnn_mode_defaults();
    advnn__rng_seed(&r, 23);
    o.bins = 10;
    for (kind = 0; kind < 3; kind++) {
        mixture_rows(&r, n, kind, s, m);
        for (ord = 0; ord < 3; ord++) {
            o.order = ord;
            CHECK(advnn_mode(s, m, NULL, n, &o, &v[kind][ord], NULL) == ADVNN_OK, "%s", advnn_last_error());
        }
    }
    printf("  MoDe value [dependence flat/linear/quadratic][order 0/1/2]: %.3g %.3g %.3g | %.3g %.3g %.3g | %.3g %.3g %.3g\n",
           v[0][0], v[0][1], v[0][2], v[1][0], v[1][1], v[1][2], v[2][0], v[2][1], v[2][2]);
    CHECK(v[1][0] > 20 * v[0][0], "linear dependence at order 0: %g, independent %g", v[1][0], v[0][0]);
    CHECK(v[1][1] < 0.1 * v[1][0], "linear dependence is (nearly) free at order 1: %g vs order 0 %g", v[1][1], v[1][0]);
    CHECK(v[2][1] > 0.5 * v[2][0] && v[2][2] < 0.1 * v[2][1], "quadratic: order 0 %g, 1 %g, 2 %g", v[2][0], v[2][1], v[2][2]);
    CHECK(v[0][0] < 2e-4, "independent: order 0 %g is noise only", v[0][0]);
    free(s); free(m);
}

/* order 0 with flatness = 1 is the binned flatness loss: each bin's CDF against the global CDF */
static void test_flatness_equivalence(void) {
    advnn__rng r;
    int n = 3000, M = 10, S = 50, i, j, b, k = n / M;
    float *s = (float *)malloc(n * sizeof(float)), *m = (float *)malloc(n * sizeof(float));
    int *ord = (int *)malloc(n * sizeof(int));
    double v, fl = 0;
    advnn_mode_opts o = advnn_mode_defaults();
    advnn__rng_seed(&r, 29);
    mixture_rows(&r, n, 1, s, m);
    o.bins = M; o.sbins = S; o.flatness = 1;
    CHECK(advnn_mode(s, m, NULL, n, &o, &v, NULL) == ADVNN_OK, "%s", advnn_last_error());
    for (i = 0; i < n; i++) ord[i] = i;
    for (i = 1; i < n; i++) { int t = ord[i]; j = i; while (j > 0 && m[ord[j - 1]] > m[t]) { ord[j] = ord[j - 1]; j--; } ord[j] = t; }
    for (j = 0; j < S; j++) {   /* FL = sum_b (1/M) integral (F_b(s) - F(s))^2 ds, F from all rows */
        double sj = (j + 0.5) / S, Fg = 0;
        for (i = 0; i < n; i++) Fg += (s[i] < sj) + 0.5 * (s[i] == sj);
        Fg /= n;
        for (b = 0; b < M; b++) {
            double F = 0;
            for (i = 0; i < k; i++) { float q = s[ord[b * k + i]]; F += (q < sj) + 0.5 * (q == sj); }
            F /= k;
            fl += (F - Fg) * (F - Fg) / M / S;
        }
    }
    CHECK(fabs(v - fl) < 1e-12 * fl, "flatness %.15g, direct %.15g", v, fl);
    o.flatness = 0;
    CHECK(advnn_mode(s, m, NULL, n, &o, &v, NULL) == ADVNN_OK && fabs(v - fl) > 1e-6 * fl, "MoDe order 0 (widths max - min) %.15g differs from flatness %.15g", v, fl);
    free(s); free(m); free(ord);
}

static void test_mode_degenerate(void) {
    float s[6] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, m[6] = {1, 2, 3, 4, 5, 6}, c[6] = {2, 2, 2, 2, 2, 2};
    double v, g[6];
    advnn_mode_opts o = advnn_mode_defaults();
    CHECK(advnn_mode(s, m, NULL, 6, &o, &v, g) == ADVNN_OK && v == 0 && maxabs(g, 6) == 0, "fewer rows than bins: %g", v);
    o.bins = 2;
    CHECK(advnn_mode(s, c, NULL, 6, &o, &v, g) == ADVNN_OK && v == 0 && maxabs(g, 6) == 0, "constant m: %g", v);
    CHECK(advnn_mode(s, m, NULL, 6, &o, &v, g) == ADVNN_OK && v > 0 && maxabs(g, 6) > 0, "2 bins: %g", v);
    o.order = 3;
    CHECK(advnn_mode(s, m, NULL, 6, &o, &v, g) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "order"), "order 3: %s", advnn_last_error());
}

int main(void) {
    RUN(test_disco_vs_direct_small);
    RUN(test_disco_grad_fd);
    RUN(test_disco_large);
    RUN(test_disco_degenerate);
    RUN(test_fixtures);
    RUN(test_mode_orders);
    RUN(test_flatness_equivalence);
    RUN(test_mode_degenerate);
    return th_report();
}
