/* Weighted ROC AUC against the O(N^2) definition: sum over (signal i, background j) of
 * w_i w_j [s_i > s_j] + half for ties, divided by W_S W_B. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

static double brute_auc(const float *s, const float *y, const float *w, int n) {
    double num = 0, ws = 0, wb = 0;
    int i, j;
    for (i = 0; i < n; i++) { if (y[i] > 0.5f) ws += w[i]; else wb += w[i]; }
    for (i = 0; i < n; i++) for (j = 0; j < n; j++)
        if (y[i] > 0.5f && y[j] <= 0.5f) num += w[i] * w[j] * (s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0);
    return num / (ws * wb);
}

static void test_auc_weighted_with_ties(void) {
    enum { N = 500 };
    float s[N], y[N], w[N];
    advnn__rng r;
    int i, trial;
    advnn__rng_seed(&r, 4);
    for (trial = 0; trial < 5; trial++) {
        double a, b;
        for (i = 0; i < N; i++) {
            y[i] = advnn__rng_uniform(&r) < 0.4 ? 1.0f : 0.0f;
            /* coarse scores: many ties; signal a bit higher */
            s[i] = (float)floor(10 * advnn__rng_uniform(&r) + 3 * y[i] * advnn__rng_uniform(&r)) / 10.0f;
            w[i] = (float)(trial == 0 ? 1.0 : 0.1 + 2 * advnn__rng_uniform(&r));
        }
        if (trial == 4) w[7] = -0.3f;   /* negative event weights (NLO generators) are legitimate */
        CHECK(advnn_auc(s, y, w, N, &a) == ADVNN_OK, "%s", advnn_last_error());
        b = brute_auc(s, y, w, N);
        CHECK(fabs(a - b) < 1e-9, "trial %d: AUC %.12f, brute force %.12f", trial, a, b);
    }
    {   /* NULL weights equal unit weights; perfect and inverted separation */
        float s2[4] = {0.1f, 0.2f, 0.8f, 0.9f}, y2[4] = {0, 0, 1, 1}, y3[4] = {1, 1, 0, 0};
        double a;
        CHECK(advnn_auc(s2, y2, NULL, 4, &a) == ADVNN_OK && a == 1.0, "perfect separation gave %g", a);
        CHECK(advnn_auc(s2, y3, NULL, 4, &a) == ADVNN_OK && a == 0.0, "inverted separation gave %g", a);
    }
}

static void test_auc_errors(void) {
    float s[3] = {0.1f, NAN, 0.3f}, y[3] = {0, 1, 1}, y0[3] = {0, 0, 0};
    double a;
    CHECK(advnn_auc(s, y, NULL, 3, &a) == ADVNN_ERR_NAN, "NaN score accepted");
    s[1] = 0.2f;
    CHECK(advnn_auc(s, y0, NULL, 3, &a) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "signal"), "one class only: %s", advnn_last_error());
    CHECK(advnn_auc(s, y, NULL, 0, &a) == ADVNN_ERR_ARG, "n = 0 accepted");
}

int main(void) {
    RUN(test_auc_weighted_with_ties);
    RUN(test_auc_errors);
    return th_report();
}
