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
    double W = 0, *p, *ar, *br, *xs, *ys, ad = 0, bd = 0, sab = 0, saa = 0, sbb = 0, R, f, df;
    for (i = 0; i < n; i++) if (!w || w[i] != 0) { rows[m++] = i; W += w ? w[i] : 1; }
    if (gx) for (i = 0; i < n; i++) gx[i] = 0;
    if (gy) for (i = 0; i < n; i++) gy[i] = 0;
    if (m < 2) { free(rows); return 0; }
    p = (double *)malloc((size_t)m * sizeof(double)); ar = (double *)calloc((size_t)m, sizeof(double)); br = (double *)calloc((size_t)m, sizeof(double));
    xs = (double *)malloc((size_t)m * sizeof(double)); ys = (double *)malloc((size_t)m * sizeof(double));
    for (i = 0; i < m; i++) { p[i] = (w ? w[rows[i]] : 1) / W; xs[i] = x[rows[i]]; ys[i] = y[rows[i]]; }
    for (i = 0; i < m; i++) for (j = 0; j < m; j++) { ar[i] += p[j] * fabs(xs[i] - xs[j]); br[i] += p[j] * fabs(ys[i] - ys[j]); }
    for (i = 0; i < m; i++) { ad += p[i] * ar[i]; bd += p[i] * br[i]; }
    /* the double-centred matrices, element by element (no N x N storage) */
#define A_(i, j) (fabs(xs[i] - xs[j]) - ar[i] - ar[j] + ad)
#define B_(i, j) (fabs(ys[i] - ys[j]) - br[i] - br[j] + bd)
    for (i = 0; i < m; i++) for (j = 0; j < m; j++) {
        double a = A_(i, j), b = B_(i, j);
        sab += p[i] * p[j] * a * b; saa += p[i] * p[j] * a * a; sbb += p[i] * p[j] * b * b;
    }
    if (!(saa > 1e-300) || !(sbb > 1e-300)) f = 0, R = 0, df = 0;
    else {
        R = sab / sqrt(saa * sbb); if (R < 0) R = 0;
        f = pow(R, power); df = power * pow(R, power - 1);
        for (i = 0; i < m; i++) {
            double tx = 0, ty = 0, txx = 0, tyy = 0;
            for (j = 0; j < m; j++) {
                double sy = (ys[i] > ys[j]) - (ys[i] < ys[j]), sx = (xs[i] > xs[j]) - (xs[i] < xs[j]), a = A_(i, j), b = B_(i, j);
                ty += p[j] * a * sy; tyy += p[j] * b * sy; tx += p[j] * b * sx; txx += p[j] * a * sx;
            }
            if (gy) gy[rows[i]] = df * (2 * p[i] * ty / sqrt(saa * sbb) - 0.5 * R * 4 * p[i] * tyy / sbb);
            if (gx) gx[rows[i]] = df * (2 * p[i] * tx / sqrt(saa * sbb) - 0.5 * R * 4 * p[i] * txx / saa);
        }
    }
#undef A_
#undef B_
    free(p); free(ar); free(br); free(xs); free(ys); free(rows);
    return f;
}

static double urand(advnn__rng *r) { return advnn__rng_uniform(r); }
static int advnn__cmp_float_test(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return (x > y) - (x < y); }

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
/* Why MoDe needs enough background jets per m bin (the W tagger's finding, README): background whose
 * bulk (97%, s < 0.02) is independent of m but whose tail (3%, the jets a tight cut passes) is 0% at
 * low m and 6% at high m. The loss compares per-bin CDFs; with k jets per bin their sampling noise is
 * ~0.03 / k in the tail, the sculpting ~(0.06 m - 0.03)^2 ~ 3e-4. At 16 jets per bin (32 bins on a
 * batch of 512 background jets) the sculpted sample's value is within noise of an independent one's;
 * at ~800 per bin (10 bins, 8192 jets) it stands far above it. */
static void tail_rows(advnn__rng *r, int n, int sculpted, float *s, float *m) {
    int i;
    for (i = 0; i < n; i++) {
        double mi = urand(r), pt = sculpted ? 0.06 * mi : 0.03;
        m[i] = (float)mi;
        s[i] = (float)(urand(r) < pt ? 0.5 + 0.5 * urand(r) : 0.02 * urand(r));
    }
}
static void test_mode_needs_rows_per_bin(void) {
    static float s[8192], m[8192];
    advnn__rng r;
    advnn_mode_opts o = advnn_mode_defaults();
    double v[2][2] = { { 0, 0 }, { 0, 0 } }, x;   /* [small, large][independent, sculpted] */
    int cfg, kind, rep;
    advnn__rng_seed(&r, 61);
    for (cfg = 0; cfg < 2; cfg++)
        for (kind = 0; kind < 2; kind++)
            for (rep = 0; rep < 8; rep++) {
                int n = cfg ? 8192 : 512;
                o.bins = cfg ? 10 : 32;
                tail_rows(&r, n, kind, s, m);
                CHECK(advnn_mode(s, m, NULL, n, &o, &x, NULL) == ADVNN_OK, "%s", advnn_last_error());
                v[cfg][kind] += x / 8;
            }
    printf("  MoDe[0] sculpted tail / independent: 16 jets per bin %.3g / %.3g = %.2f, 819 per bin %.3g / %.3g = %.2f\n",
           v[0][1], v[0][0], v[0][1] / v[0][0], v[1][1], v[1][0], v[1][1] / v[1][0]);
    CHECK(v[0][1] < 2 * v[0][0], "16 jets per bin: sculpted %g vs independent %g (expected within noise)", v[0][1], v[0][0]);
    CHECK(v[1][1] > 4 * v[1][0], "819 jets per bin: sculpted %g vs independent %g (expected well above)", v[1][1], v[1][0]);
}

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

/* ------------------------------------------------------------ graph nodes */
/* x(3) -> dense(4 tanh) -> dense(1) -> sigmoid = s; BCE(logit, y) + kappa DisCo(s, xm, w); xm is a data
 * input named 'x...' so gradcheck also checks d/d m (DisCo is symmetric and differentiable in m). */
static fixture disco_fixture(int weighted, float power) {
    fixture f;
    advnn__rng r;
    int three = 3, one = 1, x, y, m, w = -1, z, s, l;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 41);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &three);
    m = advnn_input(f.g, "xm", 1, &one);
    y = advnn_input(f.g, "y", 1, &one);
    if (weighted) w = advnn_input(f.g, "w", 1, &one);
    z = advnn_dense(f.g, advnn_dense(f.g, x, 4, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    s = advnn_activation(f.g, z, ADVNN_ACT_SIGMOID);
    advnn_loss_bce_logits(f.g, z, y, -1);
    l = advnn_loss_disco(f.g, s, m, w, power);
    advnn_loss_scale(f.g, l, 3.0f);
    add_data(&f, "x", rand_tensor(&r, NB, 3, -2, 2));
    add_data(&f, "xm", rand_tensor(&r, NB, 1, -1, 1));
    add_data(&f, "y", rand_tensor(&r, NB, 1, 0, 1));
    if (weighted) {
        advnn_tensor *t = rand_tensor(&r, NB, 1, 0.5f, 2);
        t->data[1] = 0; t->data[4] = 0;   /* two rows left out (signal under background-only weights) */
        add_data(&f, "w", t);
    }
    CHECK(advnn_graph_finalize(f.g, 9) == ADVNN_OK, "%s", advnn_last_error());
    return f;
}

static void test_disco_node_gradcheck(void) {
    fixture f;
    f = disco_fixture(0, 1.0f); gradcheck(&f, "DisCo node, unweighted"); free_fixture(&f);
    f = disco_fixture(1, 1.0f); gradcheck(&f, "DisCo node, two zero-weight rows"); free_fixture(&f);
    f = disco_fixture(1, 2.0f); gradcheck(&f, "DisCo node, power 2"); free_fixture(&f);
}

/* A score with several columns (a 3-class softmax, as the LLP tagger's): the node's value is the mean
 * of advnn_disco over the columns, its gradient checks against finite differences (through the
 * softmax, which mixes the columns), and MoDe still refuses it. */
static void test_disco_node_multicolumn(void) {
    fixture f;
    advnn__rng r;
    int three = 3, one = 1, x, m, w, s, l, c, i;
    int64_t idx[NB];
    advnn_trainer *tr;
    advnn_mode_opts o = advnn_mode_defaults();
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 47);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &three);
    m = advnn_input(f.g, "xm", 1, &one);
    w = advnn_input(f.g, "w", 1, &one);
    s = advnn_softmax(f.g, advnn_dense(f.g, advnn_dense(f.g, x, 4, ADVNN_ACT_TANH), 3, ADVNN_ACT_LINEAR));
    l = advnn_loss_disco(f.g, s, m, w, 1.0f);
    CHECK(l >= 0, "3-column DisCo: %s", advnn_last_error());
    advnn_loss_scale(f.g, l, 2.0f);
    add_data(&f, "x", rand_tensor(&r, NB, 3, -2, 2));
    add_data(&f, "xm", rand_tensor(&r, NB, 1, -1, 1));
    {
        advnn_tensor *t = rand_tensor(&r, NB, 1, 0.5f, 2);
        t->data[2] = 0;
        add_data(&f, "w", t);
    }
    CHECK(advnn_graph_finalize(f.g, 11) == ADVNN_OK, "%s", advnn_last_error());
    tr = advnn_trainer_new(f.g, NB, 1);
    if (tr) {
        const float *mw = NULL, *ww = NULL;
        float col[NB];
        double v, mean = 0;
        for (i = 0; i < NB; i++) idx[i] = i;
        for (i = 0; i < f.nt; i++) {
            if (!strcmp(f.tname[i], "xm")) mw = f.t[i]->data;
            if (!strcmp(f.tname[i], "w")) ww = f.t[i]->data;
        }
        tr->ws->training = 1;
        advnn__mark_needed(tr->ws, -1); advnn__mark_grad(tr->ws);
        CHECK(advnn__gather(tr->ws, f.d, idx, 0, NB) == ADVNN_OK && advnn__forward(tr->ws, NB) == ADVNN_OK, "%s", advnn_last_error());
        for (c = 0; c < 3 && mw && ww; c++) {
            for (i = 0; i < NB; i++) col[i] = tr->ws->out[s][i * 3 + c];
            CHECK(advnn_disco(col, mw, ww, NB, 1.0, &v, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
            mean += v / 3;
        }
        CHECK(mw && ww && mean > 1e-3 && fabs(tr->ws->loss[l] - mean) <= 1e-12, "node %.17g, mean of the columns %.17g",
              tr->ws->loss[l], mean);
        advnn_trainer_free(tr);
    }
    {   /* the model file keeps the column count */
        void *buf = NULL;
        size_t len = 0;
        advnn_graph *h = NULL;
        CHECK(advnn_model_save_mem(f.g, &buf, &len) == ADVNN_OK && (h = advnn_model_load_mem(buf, len)) != NULL, "%s", advnn_last_error());
        CHECK(h && h->nodes[l].kind == ADVNN__LOSS_DISCO && h->nodes[l].ip[0] == 3, "3-column DisCo node after loading");
        advnn_graph_free(h); free(buf);
    }
    gradcheck(&f, "DisCo node, 3 score columns");
    free_fixture(&f);
    f.g = advnn_graph_new();   /* (a builder error poisons its graph: a graph of its own) */
    s = advnn_input(f.g, "s", 1, &three); m = advnn_input(f.g, "m", 1, &one);
    CHECK(advnn_loss_mode(f.g, s, m, -1, &o) < 0 && strstr(advnn_last_error(), "1 value per sample"), "3-column MoDe: %s",
          advnn_last_error());
    advnn_graph_free(f.g);
}

/* The MoDe node's backward adds coef times advnn_mode's gradient (which is the reference's, not a
 * finite difference of the step-function value), and its loss is advnn_mode's value. */
static void test_mode_node(void) {
    advnn__rng r;
    int one = 1, n = 64, s_in, m_in, w_in, l, i;
    advnn_graph *g = advnn_graph_new();
    advnn_dataset *d = advnn_dataset_new();
    advnn_tensor *S = NULL, *Mt = NULL, *Wt = NULL;
    advnn_trainer *tr;
    advnn_mode_opts o = advnn_mode_defaults();
    int64_t idx[64];
    double v, gref[64], e = 0, gm = 0;
    advnn__rng_seed(&r, 43);
    o.order = 1; o.bins = 4; o.sbins = 16;
    s_in = advnn_input(g, "xs", 1, &one); m_in = advnn_input(g, "m", 1, &one); w_in = advnn_input(g, "w", 1, &one);
    l = advnn_loss_mode(g, s_in, m_in, w_in, &o);
    advnn_loss_scale(g, l, 2.5f);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    S = rand_tensor(&r, n, 1, 0, 1); Mt = rand_tensor(&r, n, 1, 50, 150); Wt = rand_tensor(&r, n, 1, 0.5f, 1.5f);
    for (i = 0; i < n; i++) { S->data[i] = 0.5f * S->data[i] + 0.4f * (Mt->data[i] - 50) / 100; if (i % 5 == 0) Wt->data[i] = 0; idx[i] = i; }
    advnn_dataset_add(d, "xs", S); advnn_dataset_add(d, "m", Mt); advnn_dataset_add(d, "w", Wt);
    tr = advnn_trainer_new(g, n, 1);
    CHECK(advnn_mode(S->data, Mt->data, Wt->data, n, &o, &v, gref) == ADVNN_OK, "%s", advnn_last_error());
    tr->ws->training = 1; tr->ws->input_grads = 1;
    advnn__mark_needed(tr->ws, -1); advnn__mark_grad(tr->ws);
    CHECK(advnn__gather(tr->ws, d, idx, 0, n) == ADVNN_OK && advnn__forward(tr->ws, n) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(fabs(tr->ws->loss[l] - v) < 1e-15, "node value %.17g, advnn_mode %.17g", tr->ws->loss[l], v);
    CHECK(fabs(advnn__objective(tr->ws) - 2.5 * v) < 1e-12, "objective %g, 2.5 x %g", advnn__objective(tr->ws), v);
    advnn__backward(tr->ws, n);
    gm = maxabs(gref, n);
    for (i = 0; i < n; i++) {   /* (one max per loop: aarch64 gcc 12 hits an internal error vectorising two) */
        double d = fabs(tr->ws->dout[s_in][i] - 2.5 * gref[i]);
        if (d > e) e = d;
    }
    CHECK(gm > 0 && e <= 1e-6 * 2.5 * gm, "node gradient deviates by %g (max %g)", e, gm);
    advnn_trainer_free(tr);
    advnn_dataset_free(d); advnn_graph_free(g);
    advnn_tensor_free(S); advnn_tensor_free(Mt); advnn_tensor_free(Wt);
}

static void test_nodes_model_file_and_errors(void) {
    int one = 1, two = 2, s, m, w, v2, ld, lm;
    advnn_graph *g = advnn_graph_new(), *h;
    advnn_mode_opts o = advnn_mode_defaults();
    void *buf = NULL;
    size_t len = 0;
    s = advnn_input(g, "s", 1, &one); m = advnn_input(g, "m", 1, &one); w = advnn_input(g, "w", 1, &one); v2 = advnn_input(g, "v2", 1, &two);
    o.order = 2; o.bins = 7; o.sbins = 9; o.power = 3; o.max_slope = 0.25f; o.flatness = 1;
    ld = advnn_loss_disco(g, s, m, w, 2.0f);
    lm = advnn_loss_mode(g, s, m, -1, &o);
    advnn_loss_scale(g, ld, 7.0f); advnn_loss_scale(g, lm, 0.5f);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_model_save_mem(g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h != NULL, "load: %s", advnn_last_error());
    if (h) {
        const advnn__node *a = &h->nodes[ld], *b = &h->nodes[lm];
        CHECK(a->kind == ADVNN__LOSS_DISCO && a->fp[0] == 7.0f && a->fp[1] == 2.0f && a->n_in == 3, "DisCo node after loading");
        CHECK(b->kind == ADVNN__LOSS_MODE && b->fp[0] == 0.5f && b->ip[0] == 2 && b->ip[1] == 7 && b->ip[2] == 9 && b->ip[3] == 1 &&
              b->fp[1] == 3.0f && b->fp[2] == 0.25f && b->n_in == 2, "MoDe node after loading");
        advnn_graph_free(h);
    }
    free(buf);
    advnn_graph_free(g);
    g = advnn_graph_new();
    s = advnn_input(g, "s", 1, &one); v2 = advnn_input(g, "v2", 1, &two);
    CHECK(advnn_loss_disco(g, s, v2, -1, 1.0f) < 0 && strstr(advnn_last_error(), "1 value per sample"), "2-wide var: %s", advnn_last_error());
    advnn_graph_free(g);
    g = advnn_graph_new();
    s = advnn_input(g, "s", 1, &one);
    CHECK(advnn_loss_disco(g, s, s, -1, 0.0f) < 0 && strstr(advnn_last_error(), "power"), "power 0: %s", advnn_last_error());
    advnn_graph_free(g);
    g = advnn_graph_new();
    s = advnn_input(g, "s", 1, &one);
    o = advnn_mode_defaults(); o.bins = 0;
    CHECK(advnn_loss_mode(g, s, s, -1, &o) < 0 && strstr(advnn_last_error(), "bins"), "0 bins: %s", advnn_last_error());
    CHECK(advnn_graph_finalize(g, 1) != ADVNN_OK, "finalize after a builder error");
    advnn_graph_free(g);
}

/* Training: a classifier that can read m from its inputs; with a DisCo penalty on the background its
 * score ends up far less correlated with m. Also: 2 threads requested, the trainer runs on one. */
static double train_disco(float kappa, double *auc) {
    advnn__rng r;
    int four = 4, one = 1, n = 4000, i, x, y, m, w, z, s, l;
    advnn_graph *g = advnn_graph_new();
    advnn_dataset *d = advnn_dataset_new();
    int64_t sh[2] = {4000, 4}, sh1[2] = {4000, 1};
    advnn_tensor *X = advnn_tensor_new(2, sh), *Y = advnn_tensor_new(2, sh1), *M = advnn_tensor_new(2, sh1), *W = advnn_tensor_new(2, sh1), *P = NULL;
    advnn_trainer *tr;
    advnn_fit_opts fo = advnn_fit_defaults();
    double dc = -1;
    float *bs, *bm;
    int nb = 0;
    advnn__rng_seed(&r, 47);
    for (i = 0; i < n; i++) {   /* signal: mass near 80 and a feature shift; background: falling mass */
        int sig = i % 2;
        double mass = sig ? 80 + 8 * (urand(&r) + urand(&r) - 1) * 2 : 40 + 160 * urand(&r) * urand(&r);
        Y->data[i] = (float)sig; M->data[i] = (float)mass; W->data[i] = sig ? 0.0f : 2.0f;
        X->data[4 * i] = (float)((mass - 100) / 50);
        X->data[4 * i + 1] = (float)((sig ? 0.8 : 0.0) + urand(&r) - 0.5);
        X->data[4 * i + 2] = (float)(urand(&r) - 0.5); X->data[4 * i + 3] = (float)(urand(&r) - 0.5);
    }
    x = advnn_input(g, "x", 1, &four); y = advnn_input(g, "y", 1, &one); m = advnn_input(g, "m", 1, &one); w = advnn_input(g, "w", 1, &one);
    z = advnn_dense(g, advnn_dense(g, advnn_dense(g, x, 16, ADVNN_ACT_RELU), 16, ADVNN_ACT_RELU), 1, ADVNN_ACT_LINEAR);
    s = advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "p");
    advnn_loss_bce_logits(g, z, y, -1);
    l = advnn_loss_disco(g, s, m, w, 1.0f);
    advnn_loss_scale(g, l, kappa);
    CHECK(advnn_graph_finalize(g, 3) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y); advnn_dataset_add(d, "m", M); advnn_dataset_add(d, "w", W);
    advnn_set_threads(2);
    tr = advnn_trainer_new(g, 256, 5);
    advnn_set_threads(1);
    CHECK(tr && tr->T == 1, "a graph with a DisCo loss trains on one thread");
    advnn_trainer_set_optim(tr, NULL, advnn_adam(3e-3f));
    fo.epochs = 12; fo.verbose = 0; fo.val_split = 0; fo.restore_best = 0;
    CHECK(advnn_fit(tr, d, NULL, &fo, NULL) == ADVNN_OK, "fit: %s", advnn_last_error());
    CHECK(advnn_predict(g, d, "p", &P) == ADVNN_OK, "%s", advnn_last_error());
    bs = (float *)malloc(n * sizeof(float)); bm = (float *)malloc(n * sizeof(float));
    for (i = 0; i < n; i++) if (Y->data[i] < 0.5f) { bs[nb] = P->data[i]; bm[nb++] = M->data[i]; }
    CHECK(advnn_disco(bm, bs, NULL, nb, 1.0, &dc, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_auc(P->data, Y->data, NULL, n, auc) == ADVNN_OK, "%s", advnn_last_error());
    free(bs); free(bm);
    advnn_trainer_free(tr); advnn_dataset_free(d); advnn_graph_free(g);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(M); advnn_tensor_free(W); advnn_tensor_free(P);
    return dc;
}

static void test_disco_training(void) {
    double a0, a1, d0 = train_disco(0.0f, &a0), d1 = train_disco(5.0f, &a1);
    printf("  background dCorr^2(m, score): kappa 0 %.4f (AUC %.3f), kappa 5 %.4f (AUC %.3f)\n", d0, a0, d1, a1);
    CHECK(d0 > 0.02, "without the penalty the score uses m: dCorr^2 %g", d0);
    CHECK(d1 < 0.25 * d0, "DisCo penalty: dCorr^2 %g, without %g", d1, d0);
    CHECK(a1 > 0.6, "still a classifier: AUC %g", a1);
}

/* ------------------------------------------------------------ DDT and reweighting */
static void test_ddt(void) {
    advnn__rng r;
    int n = 20000, i, b, nr = 6, np = 3, a, c;
    float *s = (float *)malloc(n * sizeof(float)), *rho = (float *)malloc(n * sizeof(float)), *pt = (float *)malloc(n * sizeof(float));
    float *w = (float *)malloc(n * sizeof(float)), *o = (float *)malloc(n * sizeof(float));
    double pass[18], tot[18], dmax = 0, jraw = 0, jddt = 0;
    advnn_ddt *d;
    const double *map;
    advnn__rng_seed(&r, 53);
    for (i = 0; i < n; i++) {   /* background whose score rises with rho (a sculpting tagger); a quarter signal (w = 0) */
        rho[i] = (float)(-6 + 4 * urand(&r)); pt[i] = (float)(200 + 800 * urand(&r));
        s[i] = (float)(0.15 * (rho[i] + 6) + 0.3 * urand(&r) + 0.0002 * pt[i]);
        w[i] = i % 4 == 0 ? 0.0f : (float)(0.5 + urand(&r));
    }
    d = advnn_ddt_fit(s, rho, pt, w, n, 0.1, nr, -6, -2, np, 200, 1000, 0);
    CHECK(d != NULL, "%s", advnn_last_error());
    if (!d) return;
    CHECK(advnn_ddt_apply(d, s, rho, pt, n, o) == ADVNN_OK, "%s", advnn_last_error());
    for (b = 0; b < nr * np; b++) pass[b] = tot[b] = 0;
    for (i = 0; i < n; i++) {
        if (w[i] == 0) continue;
        a = (int)floor((rho[i] + 6) / 4 * nr); c = (int)floor((pt[i] - 200) / 800 * np);
        if (a >= nr) a = nr - 1;
        if (c >= np) c = np - 1;
        tot[a * np + c] += w[i];
        if (o[i] > 0) pass[a * np + c] += w[i];
    }
    for (b = 0; b < nr * np; b++) dmax = fmax(dmax, fabs(pass[b] / tot[b] - 0.1));
    CHECK(dmax < 0.01, "every bin keeps 10%% of its background weight: worst deviation %g", dmax);
    map = advnn_ddt_map(d, &a, &c);
    CHECK(map && a == nr && c == np && map[(nr - 1) * np] > map[0] + 0.4, "thresholds rise with rho: %g .. %g", map ? map[0] : 0, map ? map[(nr - 1) * np] : 0);
    /* the mass-like variable (rho) is no longer sculpted by a cut at 0 on the DDT score, unlike a global cut */
    {
        float *sb = (float *)malloc(n * sizeof(float)), *ob = (float *)malloc(n * sizeof(float)), *rb = (float *)malloc(n * sizeof(float)), *wb = (float *)malloc(n * sizeof(float));
        int m = 0;
        double cut;
        for (i = 0; i < n; i++) if (w[i] > 0) { sb[m] = s[i]; ob[m] = o[i]; rb[m] = rho[i]; wb[m++] = w[i]; }
        memcpy(o, sb, m * sizeof(float)); qsort(o, m, sizeof(float), advnn__cmp_float_test);
        cut = o[(int)(0.9 * m)];
        CHECK(advnn_jsd_pass_fail(sb, rb, wb, m, cut, -6, -2, 10, &jraw) == ADVNN_OK && advnn_jsd_pass_fail(ob, rb, wb, m, 0, -6, -2, 10, &jddt) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(jddt < 0.1 * jraw, "JSD of rho pass/fail: DDT %g, raw score %g", jddt, jraw);
        free(sb); free(ob); free(rb); free(wb);
    }
    advnn_ddt_free(d);
    /* smoothing: thresholds move towards their neighbours, an empty bin gets one; rho only */
    for (i = 0; i < n; i++) if (rho[i] > -3.0f) w[i] = 0;   /* bins above -3 empty */
    d = advnn_ddt_fit(s, rho, NULL, w, n, 0.2, 8, -6, -2, 1, 0, 0, 1.0);
    CHECK(d != NULL, "%s", advnn_last_error());
    if (d) { map = advnn_ddt_map(d, &a, &c); CHECK(a == 8 && c == 1 && isfinite(map[7]) && map[7] > map[0], "smoothed map fills the empty bins: %g %g", map[0], map[7]); advnn_ddt_free(d); }
    CHECK(advnn_ddt_fit(s, rho, NULL, w, n, 1.5, 8, -6, -2, 1, 0, 0, 0) == NULL && strstr(advnn_last_error(), "efficiency"), "eff 1.5: %s", advnn_last_error());
    for (i = 0; i < n; i++) w[i] = 0;
    CHECK(advnn_ddt_fit(s, rho, NULL, w, n, 0.5, 8, -6, -2, 1, 0, 0, 0) == NULL && strstr(advnn_last_error(), "no row"), "no rows: %s", advnn_last_error());
    s[7] = NAN;
    CHECK(advnn_ddt_fit(s, rho, NULL, NULL, n, 0.5, 8, -6, -2, 1, 0, 0, 0) == NULL && strstr(advnn_last_error(), "row 7"), "NaN: %s", advnn_last_error());
    free(s); free(rho); free(pt); free(w); free(o);
}

static void test_reweight(void) {
    advnn__rng r;
    int n = 5000, i, k;
    float *m = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float)), *w = (float *)malloc(n * sizeof(float)), *o = (float *)malloc(n * sizeof(float));
    double hb[10], hs[10], tb = 0, ts = 0, ob = 0, os = 0, sb = 0, ss = 0;
    advnn__rng_seed(&r, 59);
    for (i = 0; i < n; i++) {
        y[i] = (float)(i % 3 == 0);
        m[i] = (float)(y[i] > 0 ? 80 + 15 * (urand(&r) - 0.5) * 2 : 50 + 250 * urand(&r) * urand(&r));
        w[i] = (float)(0.5 + urand(&r));
        if (m[i] >= 50 && m[i] < 300) { if (y[i] > 0) ts += w[i]; else tb += w[i]; }
    }
    CHECK(advnn_reweight(m, y, w, n, 50, 300, 10, ADVNN_REWEIGHT_FLAT, o) == ADVNN_OK, "%s", advnn_last_error());
    for (k = 0; k < 10; k++) hb[k] = hs[k] = 0;
    for (i = 0; i < n; i++) { k = (int)floor((m[i] - 50) / 25); if (k < 0 || k > 9) { CHECK(o[i] == 0, "outside the range: weight %g", o[i]); continue; }
        if (y[i] > 0) { hs[k] += o[i]; os += o[i]; } else { hb[k] += o[i]; ob += o[i]; } }
    for (k = 0; k < 10; k++) CHECK(fabs(hb[k] - tb / 10) < 1e-4 * tb, "background bin %d: %g, flat %g", k, hb[k], tb / 10);
    CHECK(fabs(ob - tb) < 1e-4 * tb, "background total kept: %g vs %g", ob, tb);
    CHECK(fabs(os - ts) < 1e-4 * ts, "signal total kept: %g vs %g", os, ts);
    CHECK(advnn_reweight(m, y, w, n, 50, 300, 10, ADVNN_REWEIGHT_SIG_TO_BKG, o) == ADVNN_OK, "%s", advnn_last_error());
    for (k = 0; k < 10; k++) hb[k] = hs[k] = 0;
    for (i = 0; i < n; i++) { k = (int)floor((m[i] - 50) / 25); if (k < 0 || k > 9) continue; if (y[i] > 0) { hs[k] += o[i]; ss += o[i]; } else { hb[k] += o[i]; sb += o[i]; } }
    CHECK(fabs(sb - tb) < 1e-4 * tb, "background unchanged");
    CHECK(fabs(ss - ts) < 1e-4 * ts, "signal total kept: %g vs %g", ss, ts);
    {   /* the signal's shape is the background's over the bins the signal fills (50..100 GeV: bins 0, 1) */
        double bb = hb[0] + hb[1];
        for (k = 0; k < 10; k++) CHECK(k < 2 ? fabs(hs[k] / ss - hb[k] / bb) < 1e-5 : hs[k] == 0, "bin %d: signal share %g, background %g", k, hs[k] / ss, hb[k] / bb);
    }
    CHECK(advnn_reweight(m, NULL, w, n, 50, 300, 10, ADVNN_REWEIGHT_SIG_TO_BKG, o) == ADVNN_ERR_ARG, "labels required");
    w[3] = -1;
    CHECK(advnn_reweight(m, y, w, n, 50, 300, 10, ADVNN_REWEIGHT_FLAT, o) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "row 3"), "negative weight: %s", advnn_last_error());
    free(m); free(y); free(w); free(o);
}

int main(void) {
    RUN(test_disco_vs_direct_small);
    RUN(test_disco_grad_fd);
    RUN(test_disco_large);
    RUN(test_disco_degenerate);
    RUN(test_fixtures);
    RUN(test_mode_orders);
    RUN(test_mode_needs_rows_per_bin);
    RUN(test_flatness_equivalence);
    RUN(test_mode_degenerate);
    RUN(test_disco_node_gradcheck);
    RUN(test_disco_node_multicolumn);
    RUN(test_mode_node);
    RUN(test_nodes_model_file_and_errors);
    RUN(test_disco_training);
    RUN(test_ddt);
    RUN(test_reweight);
    return th_report();
}
