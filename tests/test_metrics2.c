/* Weighted metrics (ROC, rejection, KS, histograms, JSD, Pearson) against references from
 * tools/make_metric_fixtures.py (scikit-learn, scipy, numpy; see that file for the fixture layout
 * and how each reference is computed) and against brute-force implementations in this file.
 *
 * Tolerances: AUC, KS D, JSD, Pearson r, rejection: 1e-6 relative (measured agreement is ~1e-13);
 * KS p-value: 1e-4 absolute; histogram bins: 1e-9 relative. The references are float64 values
 * stored as float32 hi/lo pairs (value = hi + lo) so that advnn_npy_load keeps ~1e-14 of them.
 * Run from the repository root (fixture paths are relative to it). */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

#define FIX(name) "tests/fixtures/metrics_" name ".npy"

enum { R_AUC_W, R_AUC_U, R_KS_D_U, R_KS_P_U, R_KS_P_U_SCIPY, R_KS_D_W, R_KS_P_W, R_JSD, R_R_W, R_R_U,
       R_REJ, R_HSUM, R_CUT, R_LO, R_HI, R_NBINS, R_TARGET, R_NDIST, R_COUNT };

static advnn_tensor *T_score, *T_label, *T_weight, *T_var, *T_y2, *T_a, *T_wa, *T_b, *T_wb, *T_hist, *T_ref;
static int64_t N;

static advnn_tensor *load(const char *path, int ndim, int64_t len) {
    advnn_tensor *t = advnn_npy_load(path);
    CHECK(t != NULL, "%s: %s", path, advnn_last_error());
    if (t && (t->ndim != ndim || (len >= 0 && t->shape[0] != len))) {
        CHECK(0, "%s: unexpected shape (ndim %d, first dim %lld)", path, t->ndim, (long long)t->shape[0]);
        advnn_tensor_free(t);
        t = NULL;
    }
    return t;
}
static double ref(int k) { return (double)T_ref->data[2 * k] + (double)T_ref->data[2 * k + 1]; }
static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1.0); }
static void report(const char *what, double got, double want) {
    printf("     %-26s advnn %.15g  ref %.15g  rel diff %.2e\n", what, got, want, rel(got, want));
}

static int fixtures_ok;
static void test_load_fixtures(void) {
    T_score = load(FIX("score"), 1, -1);
    N = T_score ? T_score->shape[0] : 0;
    T_label = load(FIX("label"), 1, N); T_weight = load(FIX("weight"), 1, N);
    T_var = load(FIX("var"), 1, N); T_y2 = load(FIX("y2"), 1, N);
    T_a = load(FIX("ks_a"), 1, -1); T_wa = load(FIX("ks_wa"), 1, T_a ? T_a->shape[0] : -1);
    T_b = load(FIX("ks_b"), 1, -1); T_wb = load(FIX("ks_wb"), 1, T_b ? T_b->shape[0] : -1);
    T_ref = load(FIX("ref"), 2, R_COUNT);
    T_hist = T_ref ? load(FIX("hist"), 2, (int64_t)ref(R_NBINS)) : NULL;
    fixtures_ok = T_score && T_label && T_weight && T_var && T_y2 && T_a && T_wa && T_b && T_wb && T_hist && T_ref;
    CHECK(fixtures_ok, "fixtures missing: run /usr/bin/python3 tools/make_metric_fixtures.py from the repo root");
}

static void test_auc_vs_sklearn(void) {
    double a;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    CHECK(advnn_auc(T_score->data, T_label->data, T_weight->data, N, &a) == ADVNN_OK, "%s", advnn_last_error());
    report("AUC weighted", a, ref(R_AUC_W));
    CHECK(rel(a, ref(R_AUC_W)) < 1e-6, "weighted AUC %.12f, sklearn %.12f", a, ref(R_AUC_W));
    CHECK(advnn_auc(T_score->data, T_label->data, NULL, N, &a) == ADVNN_OK, "%s", advnn_last_error());
    report("AUC unweighted", a, ref(R_AUC_U));
    CHECK(rel(a, ref(R_AUC_U)) < 1e-6, "unweighted AUC %.12f, sklearn %.12f", a, ref(R_AUC_U));
}

static void test_roc_points(void) {
    double *es, *eb, area = 0, auc;
    int64_t np = -1, k;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    es = (double *)malloc((size_t)(N + 1) * sizeof *es);
    eb = (double *)malloc((size_t)(N + 1) * sizeof *eb);
    CHECK(advnn_roc(T_score->data, T_label->data, T_weight->data, N, es, eb, &np) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(np == (int64_t)ref(R_NDIST) + 1, "%lld ROC points, expected distinct scores + 1 = %lld", (long long)np, (long long)ref(R_NDIST) + 1);
    if (np >= 2) {
        CHECK(es[0] == 0 && eb[0] == 0, "first point (%g, %g), expected (0, 0)", es[0], eb[0]);
        CHECK(es[np - 1] == 1 && eb[np - 1] == 1, "last point (%g, %g), expected (1, 1)", es[np - 1], eb[np - 1]);
        for (k = 1; k < np; k++) {
            CHECK(es[k] >= es[k - 1] && eb[k] >= eb[k - 1], "ROC not monotone at point %lld", (long long)k);
            area += 0.5 * (es[k] + es[k - 1]) * (eb[k] - eb[k - 1]);  /* area under eps_S(eps_B), trapezoids = ties count half */
        }
        CHECK(advnn_auc(T_score->data, T_label->data, T_weight->data, N, &auc) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(fabs(area - auc) < 1e-12, "trapezoid area of the ROC %.15f, advnn_auc %.15f", area, auc);
        /* a middle point against a direct count: threshold = the k-th largest distinct score */
        {
            const float *s = T_score->data, *y = T_label->data, *w = T_weight->data;
            float thr = INFINITY;
            int64_t i, kk;
            double ps = 0, pb = 0, ws = 0, wb = 0;
            for (kk = 0; kk < np / 2; kk++) {  /* walk down np/2 distinct scores */
                float next = -INFINITY;
                for (i = 0; i < N; i++) if (s[i] < thr && s[i] > next) next = s[i];
                thr = next;
            }
            for (i = 0; i < N; i++) {
                if (y[i] > 0.5f) { ws += w[i]; if (s[i] >= thr) ps += w[i]; }
                else { wb += w[i]; if (s[i] >= thr) pb += w[i]; }
            }
            CHECK(fabs(es[np / 2] - ps / ws) < 1e-12 && fabs(eb[np / 2] - pb / wb) < 1e-12,
                  "point %lld: (%g, %g), direct count (%g, %g)", (long long)(np / 2), es[np / 2], eb[np / 2], ps / ws, pb / wb);
        }
    }
    free(es); free(eb);
}

/* Brute force: every distinct score as a threshold, highest first, eps by direct sums; first point
 * with eps_S >= target, linear interpolation from the one before. */
static double brute_rejection(const float *s, const float *y, const float *w, int64_t n, double target, double *achieved) {
    double ws = 0, wb = 0, ps0 = 0, pb0 = 0;
    float thr = INFINITY;
    int64_t i;
    for (i = 0; i < n; i++) { if (y[i] > 0.5f) ws += w[i]; else wb += w[i]; }
    for (;;) {
        float next = -INFINITY;
        double ps = 0, pb = 0;
        for (i = 0; i < n; i++) if (s[i] < thr && s[i] > next) next = s[i];
        thr = next;
        for (i = 0; i < n; i++) if (s[i] >= thr) { if (y[i] > 0.5f) ps += w[i]; else pb += w[i]; }
        ps /= ws; pb /= wb;
        if (ps >= target) {
            if (ps == target) { *achieved = ps; return 1.0 / pb; }
            *achieved = target;
            return 1.0 / (pb0 + (target - ps0) / (ps - ps0) * (pb - pb0));
        }
        ps0 = ps; pb0 = pb;
    }
}

static void test_rejection(void) {
    double rj = 0, ach = 0, bref, bach = 0;
    int lim = -1;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    CHECK(advnn_rejection_at(T_score->data, T_label->data, T_weight->data, N, ref(R_TARGET), &rj, &ach, &lim) == ADVNN_OK,
          "%s", advnn_last_error());
    bref = brute_rejection(T_score->data, T_label->data, T_weight->data, N, ref(R_TARGET), &bach);
    report("rejection @ eps_S 0.5", rj, bref);
    CHECK(rel(rj, bref) < 1e-6 && lim == 0, "rejection %.12g (lower limit %d), brute force %.12g", rj, lim, bref);
    CHECK(rel(rj, ref(R_REJ)) < 1e-6, "rejection %.12g, sklearn roc_curve + interpolation %.12g", rj, ref(R_REJ));
    CHECK(ach == bach && ach == ref(R_TARGET), "achieved eps_S %.12g, brute force %.12g", ach, bach);
    {   /* a target hit exactly with no background passing: lower limit W_B / min background weight */
        float s[5] = {0.9f, 0.8f, 0.2f, 0.1f, 0.1f}, y[5] = {1, 1, 0, 0, 0}, w[5] = {1, 1, 2, 0.5f, 1.5f};
        CHECK(advnn_rejection_at(s, y, w, 5, 0.5, &rj, &ach, &lim) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(lim == 1 && fabs(rj - 8.0) < 1e-12 && ach == 0.5, "lower limit case: rejection %g (expected 4/0.5 = 8), limit %d, achieved %g", rj, lim, ach);
        /* target between points: signal (0.5 -> 1) with no background -> still a lower limit */
        CHECK(advnn_rejection_at(s, y, w, 5, 0.75, &rj, &ach, &lim) == ADVNN_OK && lim == 1 && ach == 0.75, "interpolated lower limit");
        /* target 1 reached only at the (1,1) end? no: at threshold 0.8 already; eps_B = 0 */
        CHECK(advnn_rejection_at(s, y, NULL, 5, 1.0, &rj, &ach, &lim) == ADVNN_OK && lim == 1 && fabs(rj - 3.0) < 1e-12, "unit weights: %g", rj);
    }
    {   /* interpolation between (0.5, 0.25) and (1, 0.75): at 0.6 eps_B = 0.35 */
        float s[4] = {0.9f, 0.7f, 0.5f, 0.3f}, y[4] = {1, 0, 1, 0};
        CHECK(advnn_rejection_at(s, y, NULL, 4, 0.6, &rj, &ach, &lim) == ADVNN_OK, "%s", advnn_last_error());
        /* ROC: (0,0) (0.5,0) (0.5,0.5) (1,0.5) (1,1); first point with eps_S >= 0.6 is (1, 0.5), previous (0.5, 0.5) */
        CHECK(fabs(rj - 2.0) < 1e-12 && lim == 0 && ach == 0.6, "rejection %g (expected 2), achieved %g", rj, ach);
    }
}

static void test_ks(void) {
    double D = -1, p = -1, D2, p2;
    const float *a, *b;
    int64_t na, nb;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    a = T_a->data; b = T_b->data; na = T_a->shape[0]; nb = T_b->shape[0];
    CHECK(advnn_ks(a, NULL, na, b, NULL, nb, &D, &p) == ADVNN_OK, "%s", advnn_last_error());
    report("KS D unweighted", D, ref(R_KS_D_U));
    report("KS p unweighted", p, ref(R_KS_P_U));
    printf("     %-26s advnn %.6g  scipy ks_2samp asymp %.6g (kstwo.sf, information only)\n", "KS p vs scipy", p, ref(R_KS_P_U_SCIPY));
    CHECK(rel(D, ref(R_KS_D_U)) < 1e-6, "unweighted D %.12g, scipy %.12g", D, ref(R_KS_D_U));
    CHECK(fabs(p - ref(R_KS_P_U)) < 1e-4, "unweighted p %.8g, kolmogorov(lambda) %.8g", p, ref(R_KS_P_U));
    CHECK(fabs(p - ref(R_KS_P_U_SCIPY)) < 5e-3, "unweighted p %.8g far from scipy's asymptotic %.8g", p, ref(R_KS_P_U_SCIPY));
    CHECK(advnn_ks(a, T_wa->data, na, b, T_wb->data, nb, &D, &p) == ADVNN_OK, "%s", advnn_last_error());
    report("KS D weighted", D, ref(R_KS_D_W));
    report("KS p weighted", p, ref(R_KS_P_W));
    CHECK(rel(D, ref(R_KS_D_W)) < 1e-6, "weighted D %.12g, numpy %.12g", D, ref(R_KS_D_W));
    CHECK(fabs(p - ref(R_KS_P_W)) < 1e-4, "weighted p %.8g, kolmogorov(lambda) %.8g", p, ref(R_KS_P_W));
    CHECK(advnn_ks(b, T_wb->data, nb, a, T_wa->data, na, &D2, &p2) == ADVNN_OK && D2 == D && p2 == p, "not symmetric: D %g vs %g", D2, D);
    /* identical samples: D = 0, p = 1; a single shifted point: D = 1/n, p ~ 1 */
    CHECK(advnn_ks(a, NULL, na, a, NULL, na, &D, &p) == ADVNN_OK && D == 0 && p == 1, "identical samples: D %g p %g", D, p);
    {
        float x[3] = {1, 2, 3}, z[3] = {10, 20, 30};
        CHECK(advnn_ks(x, NULL, 3, z, NULL, 3, &D, &p) == ADVNN_OK && D == 1 && p > 0 && p < 0.2, "disjoint: D %g p %g", D, p);
        CHECK(advnn_ks(x, NULL, 3, z, NULL, 3, &D, NULL) == ADVNN_OK, "pvalue may be NULL");
    }
    {   /* the two series of the Kolmogorov function agree where they switch (lambda = 1.18) */
        double lo = advnn__kolmogorov_q(nextafter(1.18, 0.0)), hi = advnn__kolmogorov_q(1.18);  /* mpmath: 0.12345380942976571 */
        CHECK(fabs(lo - 0.12345380942976571) < 1e-14 && fabs(hi - 0.12345380942976571) < 1e-14, "Q(1.18-) %.17g, Q(1.18) %.17g", lo, hi);
        CHECK(fabs(advnn__kolmogorov_q(0.2) - 0.99999999999949496) < 1e-15, "Q(0.2) %.17g", advnn__kolmogorov_q(0.2));
        CHECK(fabs(advnn__kolmogorov_q(1.5) - 0.022217962616525129) < 1e-15, "Q(1.5) %.17g", advnn__kolmogorov_q(1.5));
        CHECK(advnn__kolmogorov_q(1e-6) == 1 && advnn__kolmogorov_q(0) == 1 && advnn__kolmogorov_q(40) == 0, "Q limits");
        CHECK(fabs(advnn__kolmogorov_q(1.0) - 0.26999967167735456) < 1e-14, "Q(1) %.17g", advnn__kolmogorov_q(1.0));
        CHECK(fabs(advnn__kolmogorov_q(0.5) - 0.9639452436648751) < 1e-14, "Q(0.5) %.17g", advnn__kolmogorov_q(0.5));
    }
}

static void test_histogram(void) {
    int nb, k;
    double *h, lo, hi, sum = 0, worst = 0;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    nb = (int)ref(R_NBINS); lo = ref(R_LO); hi = ref(R_HI);
    h = (double *)malloc((size_t)nb * sizeof *h);
    for (k = 0; k < nb; k++) h[k] = 1e300;  /* written, not accumulated */
    CHECK(advnn_histogram(T_var->data, T_weight->data, N, lo, hi, nb, h) == ADVNN_OK, "%s", advnn_last_error());
    for (k = 0; k < nb; k++) {
        double want = (double)T_hist->data[2 * k] + (double)T_hist->data[2 * k + 1];
        if (rel(h[k], want) > worst) worst = rel(h[k], want);
        CHECK(rel(h[k], want) < 1e-9, "bin %d: %.12g, numpy %.12g", k, h[k], want);
        sum += h[k];
    }
    printf("     %-26s worst bin rel diff %.2e over %d bins\n", "histogram vs numpy", worst, nb);
    report("histogram sum", sum, ref(R_HSUM));
    CHECK(rel(sum, ref(R_HSUM)) < 1e-9, "histogram sum %.12g, numpy %.12g", sum, ref(R_HSUM));
    free(h);
    {   /* edges: lo is in bin 0, hi is out, values on inner edges start the next bin */
        float x[7] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, -0.01f, 0.9999f};
        double c[4];
        CHECK(advnn_histogram(x, NULL, 7, 0, 1, 4, c) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(c[0] == 1 && c[1] == 1 && c[2] == 1 && c[3] == 2, "edge bins %g %g %g %g, expected 1 1 1 2", c[0], c[1], c[2], c[3]);
        /* 0.1 steps are not exact in binary: the edge lo + k*step decides, as in numpy.linspace */
        {
            float y[3] = {0.3f, 0.6f, 0.7f};
            double d[10];
            int i, want[3];
            for (i = 0; i < 3; i++) {   /* numpy: bin k such that k*0.1 <= y < (k+1)*0.1 with edges k*(1.0/10) */
                int j = 0;
                while (j + 1 < 10 && (double)y[i] >= (double)(j + 1) * 0.1) j++;
                want[i] = j;
            }
            CHECK(advnn_histogram(y, NULL, 3, 0, 1, 10, d) == ADVNN_OK, "%s", advnn_last_error());
            for (i = 0; i < 3; i++) CHECK(d[want[i]] >= 1, "value %.9g not in bin %d", (double)y[i], want[i]);
        }
    }
}

static void test_jsd(void) {
    double j = -1;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    CHECK(advnn_jsd_pass_fail(T_score->data, T_var->data, T_weight->data, N, ref(R_CUT), ref(R_LO), ref(R_HI), (int)ref(R_NBINS), &j) == ADVNN_OK,
          "%s", advnn_last_error());
    report("JSD pass/fail", j, ref(R_JSD));
    CHECK(rel(j, ref(R_JSD)) < 1e-6, "JSD %.12g, scipy jensenshannon^2 %.12g", j, ref(R_JSD));
    {
        double p[4] = {1, 2, 3, 4}, q[4] = {2, 4, 6, 8}, r[4] = {0, 0, 5, 5}, s[4] = {3, 3, 0, 0}, z[4] = {0, 0, 0, 0}, neg[4] = {1, -1, 1, 1};
        double u[2] = {1, 0}, v[2] = {1, 1};
        CHECK(advnn_jsd(p, q, 4) == 0, "identical shapes: %g", advnn_jsd(p, q, 4));
        CHECK(advnn_jsd(r, s, 4) == 1, "disjoint: %g", advnn_jsd(r, s, 4));
        CHECK(isnan(advnn_jsd(p, z, 4)) && isnan(advnn_jsd(z, p, 4)) && isnan(advnn_jsd(p, neg, 4)) && isnan(advnn_jsd(NULL, p, 4)) && isnan(advnn_jsd(p, q, 0)),
              "NAN for an empty, negative or missing histogram");
        /* (1,0) vs (1/2,1/2): m = (3/4, 1/4); JSD = 1/2 [log2(4/3)] + 1/2 [1/2 log2(2/3) + 1/2 log2(2)] */
        {
            double want = 0.5 * log2(4.0 / 3.0) + 0.5 * (0.5 * log2(2.0 / 3.0) + 0.5);
            CHECK(fabs(advnn_jsd(u, v, 2) - want) < 1e-15, "JSD((1,0),(1,1)) %.17g, expected %.17g", advnn_jsd(u, v, 2), want);
            CHECK(advnn_jsd(u, v, 2) == advnn_jsd(v, u, 2), "not symmetric");
        }
    }
}

static void test_jsd_floor(void) {
    double f1 = -1, f2 = -1, f3 = -1, j = -1, expect, fpass;
    int64_t i, nin = 0, npass = 0;
    int nb;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    nb = (int)ref(R_NBINS);
    for (i = 0; i < N; i++) {
        if (T_score->data[i] >= (float)ref(R_CUT)) npass++;
        if (T_var->data[i] >= ref(R_LO) && T_var->data[i] < ref(R_HI)) nin++;
    }
    fpass = (double)npass / (double)N;
    CHECK(advnn_jsd_floor(T_var->data, NULL, N, fpass, ref(R_LO), ref(R_HI), nb, 400, 7, &f1) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_jsd_floor(T_var->data, NULL, N, fpass, ref(R_LO), ref(R_HI), nb, 400, 7, &f2) == ADVNN_OK && f1 == f2, "not deterministic: %g vs %g", f1, f2);
    CHECK(advnn_jsd_floor(T_var->data, NULL, N, fpass, ref(R_LO), ref(R_HI), nb, 400, 8, &f3) == ADVNN_OK && f3 != f1, "seed ignored");
    /* small-difference expansion: JSD ~ sum (p-q)^2/m / (8 ln 2), and for a random split of the
     * nin in-range events E sum (p-q)^2/m = (B-1)(1/n_pass + 1/n_fail) */
    expect = (nb - 1) * (1.0 / (fpass * (double)nin) + 1.0 / ((1 - fpass) * (double)nin)) / (8.0 * log(2.0));
    printf("     %-26s %.6g (seed 7), %.6g (seed 8), small-difference expectation %.6g\n", "JSD floor (unweighted)", f1, f3, expect);
    CHECK(fabs(f1 / expect - 1) < 0.15 && fabs(f3 / expect - 1) < 0.15, "floor %g / %g far from the expectation %g", f1, f3, expect);
    CHECK(advnn_jsd_floor(T_var->data, T_weight->data, N, fpass, ref(R_LO), ref(R_HI), nb, 100, 7, &f1) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_jsd_pass_fail(T_score->data, T_var->data, T_weight->data, N, ref(R_CUT), ref(R_LO), ref(R_HI), nb, &j) == ADVNN_OK, "%s", advnn_last_error());
    printf("     %-26s %.6g weighted floor, %.6g for the sculpting cut\n", "JSD floor (weighted)", f1, j);
    CHECK(f1 > 0 && f1 < 0.5 * j, "weighted floor %g not well below the sculpted JSD %g", f1, j);
}

static void test_pearson(void) {
    double r = 2;
    if (!fixtures_ok) { CHECK(0, "no fixtures"); return; }
    CHECK(advnn_pearson(T_score->data, T_y2->data, T_weight->data, N, &r) == ADVNN_OK, "%s", advnn_last_error());
    report("Pearson weighted", r, ref(R_R_W));
    CHECK(rel(r, ref(R_R_W)) < 1e-6, "weighted r %.12g, numpy %.12g", r, ref(R_R_W));
    CHECK(advnn_pearson(T_score->data, T_y2->data, NULL, N, &r) == ADVNN_OK, "%s", advnn_last_error());
    report("Pearson unweighted", r, ref(R_R_U));
    CHECK(rel(r, ref(R_R_U)) < 1e-6, "unweighted r %.12g, scipy %.12g", r, ref(R_R_U));
    {
        float x[4] = {1, 2, 3, 5}, y[4] = {-2, -4, -6, -10}, w[4] = {1, 2, 0.5f, 3};
        CHECK(advnn_pearson(x, x, w, 4, &r) == ADVNN_OK && fabs(r - 1) < 1e-15, "r(x, x) = %.17g", r);
        CHECK(advnn_pearson(x, y, w, 4, &r) == ADVNN_OK && fabs(r + 1) < 1e-15, "r(x, -2x) = %.17g", r);
    }
}

static void test_errors(void) {
    float s[4] = {0.1f, 0.2f, 0.3f, 0.4f}, y[4] = {0, 1, 0, 1}, y0[4] = {0, 0, 0, 0}, bad[4] = {0.1f, NAN, 0.3f, 0.4f};
    float wz[4] = {1, 0, 1, 0}, winf[4] = {1, 1, INFINITY, 1}, wneg[4] = {-1, -1, -1, -1};
    double es[5], eb[5], d, p, c[4];
    int64_t np;
    int lim;
    CHECK(advnn_roc(NULL, y, NULL, 4, es, eb, &np) == ADVNN_ERR_ARG, "NULL score");
    CHECK(advnn_roc(s, y, NULL, 0, es, eb, &np) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "n = 0"), "n = 0: %s", advnn_last_error());
    CHECK(advnn_roc(s, y, NULL, 4, NULL, eb, &np) == ADVNN_ERR_ARG, "NULL output");
    CHECK(advnn_roc(bad, y, NULL, 4, es, eb, &np) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "at 1"), "NaN score: %s", advnn_last_error());
    CHECK(advnn_roc(s, y, winf, 4, es, eb, &np) == ADVNN_ERR_NAN, "Inf weight");
    CHECK(advnn_roc(s, y0, NULL, 4, es, eb, &np) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "signal 0"), "no signal: %s", advnn_last_error());
    CHECK(advnn_roc(s, y, wz, 4, es, eb, &np) == ADVNN_ERR_ARG, "zero signal weight");
    CHECK(advnn_rejection_at(s, y, NULL, 4, 0.0, &d, NULL, NULL) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "outside (0, 1]"), "target 0: %s", advnn_last_error());
    CHECK(advnn_rejection_at(s, y, NULL, 4, 1.5, &d, NULL, NULL) == ADVNN_ERR_ARG, "target 1.5");
    CHECK(advnn_rejection_at(s, y, NULL, 4, NAN, &d, NULL, NULL) == ADVNN_ERR_ARG, "target NaN");
    CHECK(advnn_rejection_at(s, y, wneg, 4, 0.5, &d, NULL, &lim) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "advnn_rejection_at"), "negative totals: %s", advnn_last_error());
    CHECK(advnn_rejection_at(bad, y, NULL, 4, 0.5, &d, NULL, NULL) == ADVNN_ERR_NAN, "NaN score");
    CHECK(advnn_ks(s, NULL, 4, NULL, NULL, 4, &d, &p) == ADVNN_ERR_ARG, "KS NULL b");
    CHECK(advnn_ks(s, NULL, 0, s, NULL, 4, &d, &p) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "na = 0"), "KS empty: %s", advnn_last_error());
    CHECK(advnn_ks(s, NULL, 4, bad, NULL, 4, &d, &p) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "sample b"), "KS NaN: %s", advnn_last_error());
    CHECK(advnn_ks(s, wneg, 4, s, NULL, 4, &d, &p) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "positive total weight"), "KS negative weight: %s", advnn_last_error());
    CHECK(advnn_histogram(s, NULL, 4, 1, 1, 4, c) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "range"), "empty range: %s", advnn_last_error());
    CHECK(advnn_histogram(s, NULL, 4, 0, INFINITY, 4, c) == ADVNN_ERR_ARG, "infinite range");
    CHECK(advnn_histogram(s, NULL, 4, 0, 1, 0, c) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "nbins = 0"), "nbins 0: %s", advnn_last_error());
    c[0] = 42;
    CHECK(advnn_histogram(bad, NULL, 4, 0, 1, 4, c) == ADVNN_ERR_NAN && c[0] == 42, "NaN value (and output untouched)");
    CHECK(advnn_histogram(s, NULL, 0, 0, 1, 4, c) == ADVNN_ERR_ARG, "histogram n = 0");
    CHECK(advnn_jsd_pass_fail(s, s, NULL, 4, 0.0, 0, 1, 4, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "both sides"), "all pass: %s", advnn_last_error());
    CHECK(advnn_jsd_pass_fail(s, s, NULL, 4, 0.25, 5, 6, 4, &d) == ADVNN_ERR_ARG, "nothing in range");
    CHECK(advnn_jsd_pass_fail(s, bad, NULL, 4, 0.25, 0, 1, 4, &d) == ADVNN_ERR_NAN, "NaN variable");
    CHECK(advnn_jsd_pass_fail(s, s, NULL, 4, NAN, 0, 1, 4, &d) == ADVNN_ERR_ARG, "NaN cut");
    CHECK(advnn_jsd_pass_fail(s, s, NULL, 4, 0.25, 0, 1, 4, &d) == ADVNN_OK && d == 1, "separated pass/fail: JSD %g", d);
    CHECK(advnn_jsd_floor(s, NULL, 4, 0.0, 0, 1, 4, 10, 1, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "pass fraction"), "fraction 0: %s", advnn_last_error());
    CHECK(advnn_jsd_floor(s, NULL, 4, 0.05, 0, 1, 4, 10, 1, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "empty"), "fraction rounds to 0: %s", advnn_last_error());
    CHECK(advnn_jsd_floor(s, NULL, 4, 0.5, 0, 1, 4, 0, 1, &d) == ADVNN_ERR_ARG, "repeats 0");
    CHECK(advnn_jsd_floor(s, NULL, 1, 0.5, 0, 1, 4, 10, 1, &d) == ADVNN_ERR_ARG, "n = 1");
    CHECK(advnn_jsd_floor(bad, NULL, 4, 0.5, 0, 1, 4, 10, 1, &d) == ADVNN_ERR_NAN, "NaN var");
    CHECK(advnn_jsd_floor(s, NULL, 4, 0.5, 5, 6, 4, 10, 1, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "empty"), "nothing in range: %s", advnn_last_error());
    CHECK(advnn_jsd_floor(s, NULL, 4, 0.5, 0, 1, 4, 10, 1, &d) == ADVNN_OK && d >= 0 && d <= 1, "4 events: %g", d);
    CHECK(advnn_pearson(s, s, NULL, 0, &d) == ADVNN_ERR_ARG, "pearson n = 0");
    CHECK(advnn_pearson(s, bad, NULL, 4, &d) == ADVNN_ERR_NAN, "pearson NaN");
    CHECK(advnn_pearson(s, y0, NULL, 4, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "y has zero"), "constant y: %s", advnn_last_error());
    CHECK(advnn_pearson(s, y, wneg, 4, &d) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "positive total weight"), "negative weights: %s", advnn_last_error());
    CHECK(advnn_pearson(s, y, NULL, 1, &d) == ADVNN_ERR_ARG, "one point: zero variance");
}

static void free_fixtures(void) {
    advnn_tensor *all[11];
    int i;
    all[0] = T_score; all[1] = T_label; all[2] = T_weight; all[3] = T_var; all[4] = T_y2; all[5] = T_a;
    all[6] = T_wa; all[7] = T_b; all[8] = T_wb; all[9] = T_hist; all[10] = T_ref;
    for (i = 0; i < 11; i++) advnn_tensor_free(all[i]);
}

int main(void) {
    RUN(test_load_fixtures);
    RUN(test_auc_vs_sklearn);
    RUN(test_roc_points);
    RUN(test_rejection);
    RUN(test_ks);
    RUN(test_histogram);
    RUN(test_jsd);
    RUN(test_jsd_floor);
    RUN(test_pearson);
    RUN(test_errors);
    free_fixtures();
    return th_report();
}
