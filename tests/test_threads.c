/* Multi-threaded training (advnn_set_threads): a fixed seed and thread count give bit-identical
 * weights; 2 or 3 threads compute the same step as 1 thread up to summation order (gradients, losses,
 * whole-batch BatchNorm statistics); errors in any slice are reported without hanging; batches
 * smaller than the thread count work; the adversarial trainer with a second stream runs threaded.
 * Inference split over a workspace's threads (advnn_ws_set_threads) equals one thread bit for bit.
 * advnn-build: -pthread */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

#define N 300

typedef struct { advnn_graph *g; advnn_dataset *d; advnn_tensor *x, *y, *w; int bn, loss; } setup;

static double gauss(advnn__rng *r) {
    double u = advnn__rng_uniform(r), v = advnn__rng_uniform(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* x(6) -> BN -> dense 16 relu -> [dropout] -> BN -> dense 1; weighted BCE */
static setup make(int dropout) {
    setup s;
    int six = 6, one = 1, x, y, w, h;
    int64_t sx[2] = { N, 6 }, s1[1] = { N }, i;
    advnn__rng r;
    advnn__rng_seed(&r, 4);
    s.g = advnn_graph_new();
    x = advnn_input(s.g, "x", 1, &six); y = advnn_input(s.g, "y", 1, &one); w = advnn_input(s.g, "w", 1, &one);
    s.bn = advnn_batchnorm(s.g, x);
    h = advnn_dense(s.g, s.bn, 16, ADVNN_ACT_RELU);
    if (dropout) h = advnn_dropout(s.g, h, 0.3f);
    h = advnn_dense(s.g, advnn_batchnorm(s.g, h), 1, ADVNN_ACT_LINEAR);
    s.loss = advnn_loss_bce_logits(s.g, h, y, w);
    CHECK(advnn_graph_finalize(s.g, 8) == ADVNN_OK, "%s", advnn_last_error());
    s.x = advnn_tensor_new(2, sx); s.y = advnn_tensor_new(1, s1); s.w = advnn_tensor_new(1, s1);
    for (i = 0; i < N; i++) {
        int k;
        s.y->data[i] = (float)(i % 2);
        s.w->data[i] = (float)(0.5 + advnn__rng_uniform(&r));
        for (k = 0; k < 6; k++) s.x->data[i * 6 + k] = (float)(gauss(&r) + 0.5 * k * s.y->data[i] + 3.0 * (k == 2));
    }
    s.d = advnn_dataset_new();
    advnn_dataset_add(s.d, "x", s.x); advnn_dataset_add(s.d, "y", s.y); advnn_dataset_add(s.d, "w", s.w);
    return s;
}
static void drop(setup *s) {
    advnn_graph_free(s->g); advnn_dataset_free(s->d);
    advnn_tensor_free(s->x); advnn_tensor_free(s->y); advnn_tensor_free(s->w);
}

/* Weights after `epochs` of advnn_fit with `threads` threads. */
static float *train(int threads, int dropout, int epochs, double *loss) {
    setup s = make(dropout);
    advnn_trainer *tr;
    advnn_fit_opts o = advnn_fit_defaults();
    advnn_fit_result res;
    float *w = (float *)malloc((size_t)s.g->n_params * sizeof(float));
    advnn_set_threads(threads);
    tr = advnn_trainer_new(s.g, 64, 3);
    advnn_set_threads(1);
    CHECK(tr != NULL, "%s", advnn_last_error());
    o.epochs = epochs; o.verbose = 0; o.restore_best = 0;
    CHECK(advnn_fit(tr, s.d, NULL, &o, &res) == ADVNN_OK, "%s", advnn_last_error());
    if (loss) CHECK(advnn_evaluate(tr, s.d, loss) == ADVNN_OK, "%s", advnn_last_error());
    memcpy(w, s.g->params, (size_t)s.g->n_params * sizeof(float));
    advnn_trainer_free(tr);
    drop(&s);
    return w;
}

static void test_bit_identical_per_thread_count(void) {
    int T, dr;
    for (dr = 0; dr < 2; dr++)
        for (T = 2; T <= 3; T++) {
            float *a = train(T, dr, 3, NULL), *b = train(T, dr, 3, NULL);
            setup s = make(dr);
            CHECK(memcmp(a, b, (size_t)s.g->n_params * sizeof(float)) == 0, "%d threads%s: two runs differ", T, dr ? " with dropout" : "");
            drop(&s); free(a); free(b);
        }
}

/* One step on 2 and 3 threads equals one step on 1 thread to rounding (no dropout): gradients, the
 * loss and BatchNorm's running statistics are whole-batch quantities. */
static void test_same_step_as_one_thread(void) {
    int T;
    for (T = 2; T <= 3; T++) {
        setup a = make(0), b = make(0);
        advnn_trainer *ta, *tb;
        int64_t idx[61], i;
        double la = NAN, lb = NAN, maxd = 0; /* NaN: a failed step fails the loss check too */
        for (i = 0; i < 61; i++) idx[i] = (i * 7) % N;
        ta = advnn_trainer_new(a.g, 64, 1);
        advnn_set_threads(T); tb = advnn_trainer_new(b.g, 64, 1); advnn_set_threads(1);
        advnn_trainer_set_optim(ta, NULL, advnn_sgd(0.1f, 0, 0)); advnn_trainer_set_optim(tb, NULL, advnn_sgd(0.1f, 0, 0));
        CHECK(advnn_train_step(ta, a.d, idx, 61, &la) == ADVNN_OK && advnn_train_step(tb, b.d, idx, 61, &lb) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(fabs(la - lb) <= 1e-12 * fabs(la) + 1e-15 || fabs(la - lb) <= 2e-7 * fabs(la), "%d threads: loss %.17g vs %.17g", T, lb, la);
        for (i = 0; i < a.g->n_params; i++) maxd = fmax(maxd, fabs((double)a.g->params[i] - b.g->params[i]));
        CHECK(maxd < 2e-6, "%d threads: weights differ from 1 thread by %g after one step", T, maxd);
        {
            const float *rma = a.g->params + a.g->par[a.g->nodes[a.bn].param0 + 2].off;
            const float *rmb = b.g->params + b.g->par[b.g->nodes[b.bn].param0 + 2].off;
            const float *rva = rma + (a.g->par[a.g->nodes[a.bn].param0 + 3].off - a.g->par[a.g->nodes[a.bn].param0 + 2].off);
            const float *rvb = rmb + (b.g->par[b.g->nodes[b.bn].param0 + 3].off - b.g->par[b.g->nodes[b.bn].param0 + 2].off);
            for (i = 0; i < 6; i++)
                CHECK(fabs(rma[i] - rmb[i]) < 1e-6 && fabs(rva[i] - rvb[i]) < 1e-6,
                      "%d threads: BatchNorm running statistics (%g, %g) vs (%g, %g): not whole-batch", T, rmb[i], rvb[i], rma[i], rva[i]);
        }
        printf("     %d threads: |loss - loss_1| = %.2g, max |w - w_1| = %.2g\n", T, fabs(la - lb), maxd);
        advnn_trainer_free(ta); advnn_trainer_free(tb); drop(&a); drop(&b);
    }
}

/* Training with 2 threads learns as well as with 1 (not bitwise: summation order). */
static void test_two_threads_train(void) {
    double l1, l2;
    float *a = train(1, 1, 8, &l1), *b = train(2, 1, 8, &l2);
    printf("     loss after 8 epochs: 1 thread %.4f, 2 threads %.4f\n", l1, l2);
    CHECK(l2 < 0.6 && fabs(l1 - l2) < 0.05, "2-thread training diverged from 1-thread: %g vs %g", l2, l1);
    free(a); free(b);
}

/* A bad target in the second thread's slice is reported (no hang); tiny batches work. */
static void test_errors_and_small_batches(void) {
    setup s = make(0);
    advnn_trainer *tr;
    int64_t idx[64], i;
    double l;
    for (i = 0; i < 64; i++) idx[i] = i;
    advnn_set_threads(2); tr = advnn_trainer_new(s.g, 64, 1); advnn_set_threads(1);
    s.y->data[50] = 2.0f;   /* outside [0, 1]: rows 32..63 belong to thread 1 */
    CHECK(advnn_train_step(tr, s.d, idx, 64, &l) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "outside [0, 1]"),
          "error in a worker's slice not reported: %s", advnn_last_error());
    s.y->data[50] = 0.0f;
    idx[3] = N + 5;
    CHECK(advnn_train_step(tr, s.d, idx, 64, &l) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "outside"), "bad row index: %s", advnn_last_error());
    idx[3] = 3;
    CHECK(advnn_train_step(tr, s.d, idx, 1, &l) == ADVNN_OK && isfinite(l), "batch of 1 on 2 threads: %s", advnn_last_error());
    CHECK(advnn_train_step(tr, s.d, idx, 64, &l) == ADVNN_OK && isfinite(l), "after errors: %s", advnn_last_error());
    CHECK(advnn_evaluate(tr, s.d, &l) == ADVNN_OK && isfinite(l), "%s", advnn_last_error());
    advnn_trainer_free(tr);
    drop(&s);
}

/* Alternating adversarial training with a second stream, an LSTM and BatchNorm in the adversary:
 * deterministic on 2 threads. */
static float *adv_run(int threads, int64_t *np) {
    advnn_graph *g = advnn_graph_new();
    int seq[2] = { 5, 3 }, one = 1, x, y, cx, cy, l, z, lc, zc, a, lm, la;
    int64_t sx[3] = { 200, 5, 3 }, s1[1] = { 200 }, i;
    advnn_tensor *X = advnn_tensor_new(3, sx), *Y = advnn_tensor_new(1, s1), *CX, *CY;
    advnn_dataset *d = advnn_dataset_new(), *cr = advnn_dataset_new();
    advnn_trainer *tr;
    advnn_adv_opts o = advnn_adv_defaults();
    advnn__rng r;
    float *w;
    sx[0] = 77; s1[0] = 77;
    CX = advnn_tensor_new(3, sx); CY = advnn_tensor_new(1, s1);
    advnn__rng_seed(&r, 2);
    for (i = 0; i < X->size; i++) X->data[i] = (float)gauss(&r);
    for (i = 0; i < CX->size; i++) CX->data[i] = (float)gauss(&r);
    for (i = 0; i < 200; i++) Y->data[i] = X->data[i * 15] > 0;
    for (i = 0; i < 77; i++) CY->data[i] = (float)(i % 2);
    x = advnn_input(g, "x", 2, seq); y = advnn_input(g, "y", 1, &one);
    cx = advnn_input(g, "cr_x", 2, seq); cy = advnn_input(g, "cr_y", 1, &one);
    l = advnn_lstm(g, advnn_dropout(g, x, 0.2f), 4, 0, -1); z = advnn_dense(g, l, 1, ADVNN_ACT_LINEAR);
    lc = advnn_shared(g, l, advnn_dropout(g, cx, 0.2f), -1); zc = advnn_shared(g, z, lc, -1);
    lm = advnn_loss_bce_logits(g, z, y, -1);
    advnn_group(g, "adv");
    a = advnn_dense(g, advnn_batchnorm(g, zc), 4, ADVNN_ACT_TANH);
    la = advnn_loss_bce_logits(g, advnn_dense(g, advnn_batchnorm(g, a), 1, ADVNN_ACT_LINEAR), cy, -1);
    CHECK(advnn_graph_finalize(g, 5) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y);
    advnn_dataset_add(cr, "cr_x", CX); advnn_dataset_add(cr, "cr_y", CY);
    advnn_set_threads(threads); tr = advnn_trainer_new(g, 32, 6); advnn_set_threads(1);
    o.main_loss = lm; o.adv_loss = la; o.adv_data = cr; o.adv_steps = 2; o.lambda = 3; o.epochs = 3; o.verbose = 0;
    o.pretrain_adv_epochs = 1;
    CHECK(advnn_adv_fit(tr, d, &o, NULL) == ADVNN_OK, "%s", advnn_last_error());
    *np = g->n_params;
    w = (float *)malloc((size_t)g->n_params * sizeof(float));
    memcpy(w, g->params, (size_t)g->n_params * sizeof(float));
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d); advnn_dataset_free(cr);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(CX); advnn_tensor_free(CY);
    return w;
}
static void test_adversarial_threaded(void) {
    int64_t n1, n2;
    float *a = adv_run(2, &n1), *b = adv_run(2, &n2), *c = adv_run(1, &n2);
    int64_t i;
    int finite = 1;
    for (i = 0; i < n1; i++) finite &= isfinite(a[i]) != 0;
    CHECK(finite, "non-finite weights");
    CHECK(memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "adversarial training on 2 threads is not reproducible");
    CHECK(memcmp(a, c, (size_t)n1 * sizeof(float)) != 0, "2 threads should use their own dropout streams");
    free(a); free(b); free(c);
}

/* advnn_infer on 2 and 3 threads vs 1, bit for bit, on W1's classifier (BatchNorm on running
 * statistics, trained a little so they are not the defaults), W2's tagger (masked Conv1D + LSTM
 * towers) and W3's autoencoder (convolutions, pooling, upsampling); batches that split unevenly,
 * that are too small to split, and a bad input reported from a worker's slice. */
static void test_threaded_inference(void) {
    int w;
    for (w = 1; w <= 3; w++) {
        advnn_graph *g = advnn_graph_new();
        int in[4], ten = 10, img[3] = {40, 40, 1}, out, i, t, ni = 0, maxb = w == 3 ? 96 : 300;   /* W3: fewer images (qemu runs this too) */
        static const int ns[5] = {300, 160, 97, 63, 1};
        float *x[4], *y1, *y2;
        advnn__rng r;
        advnn__rng_seed(&r, 50 + w);
        if (w == 1) { in[0] = advnn_input(g, "x", 1, &ten); out = wl_w1_classifier(g, in[0]); ni = 1; }
        else if (w == 2) { wl_w2_inputs(g, "", in); out = advnn_softmax(g, wl_w2_tagger(g, in, NULL, NULL)); ni = 4; }
        else { in[0] = advnn_input(g, "img", 3, img); out = wl_w3_autoencoder(g, in[0]); ni = 1; }
        CHECK(advnn_graph_finalize(g, 3) == ADVNN_OK, "%s", advnn_last_error());
        if (w == 1)   /* non-default BatchNorm statistics and affine parameters (variances kept positive) */
            for (i = 0; i < g->n_nodes; i++)
                if (g->nodes[i].kind == ADVNN__BATCHNORM) {
                    int c, C = g->nodes[i].cols, b;
                    for (b = 0; b < 4; b++)
                        for (c = 0; c < C; c++) {
                            float *p = g->params + g->par[g->nodes[i].param0 + b].off + c;
                            *p = b == 3 ? (float)(0.5 + 0.3 * advnn__rng_uniform(&r)) : *p + (float)(0.2 * gauss(&r));
                        }
                }
        for (i = 0; i < ni; i++) {
            int sz = g->nodes[in[i]].size, j;
            x[i] = (float *)malloc((size_t)maxb * sz * sizeof(float));
            for (j = 0; j < maxb * sz; j++) x[i][j] = (float)gauss(&r);
            if (w == 2 && i < 3)   /* padded sequences: zero rows at the end of some samples */
                for (j = 0; j < maxb; j++) {
                    int T = g->nodes[in[i]].shape[0], F = g->nodes[in[i]].shape[1], len = 1 + j % T, q;
                    for (q = len * F; q < T * F; q++) x[i][(size_t)j * T * F + q] = 0.0f;
                }
        }
        {
            int osz = g->nodes[out].size;
            advnn_ws *ws1 = advnn_ws_new(g, maxb), *wsT = advnn_ws_new(g, maxb);
            y1 = (float *)malloc((size_t)maxb * osz * sizeof(float)); y2 = (float *)malloc((size_t)maxb * osz * sizeof(float));
            for (t = 2; t <= 3; t++) {
                CHECK(advnn_ws_set_threads(wsT, t) == ADVNN_OK, "%s", advnn_last_error());
                for (i = 0; i < 5; i++) {
                    int n = ns[i] > maxb ? maxb : ns[i];
                    CHECK(advnn_infer(ws1, n, (const float *const *)x, out, y1) == ADVNN_OK, "%s", advnn_last_error());
                    CHECK(advnn_infer(wsT, n, (const float *const *)x, out, y2) == ADVNN_OK, "%s", advnn_last_error());
                    CHECK(memcmp(y1, y2, (size_t)n * osz * sizeof(float)) == 0, "W%d, %d threads, n = %d: outputs differ from one thread", w, t, n);
                }
            }
            {   /* a NaN in the last rows (a worker's slice) is refused with the row named */
                float keep = x[0][(size_t)(maxb - 1) * g->nodes[in[0]].size];
                x[0][(size_t)(maxb - 1) * g->nodes[in[0]].size] = NAN;
                CHECK(advnn_infer(wsT, maxb, (const float *const *)x, out, y2) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "sample"),
                      "W%d: NaN input not reported: %s", w, advnn_last_error());
                x[0][(size_t)(maxb - 1) * g->nodes[in[0]].size] = keep;
            }
            CHECK(advnn_ws_set_threads(wsT, 0) == ADVNN_ERR_ARG && advnn_ws_set_threads(wsT, 65) == ADVNN_ERR_ARG, "bad thread counts accepted");
            CHECK(advnn_ws_set_threads(wsT, 1) == ADVNN_OK && advnn_infer(wsT, 63, (const float *const *)x, out, y2) == ADVNN_OK &&
                  advnn_infer(ws1, 63, (const float *const *)x, out, y1) == ADVNN_OK && memcmp(y1, y2, (size_t)63 * osz * sizeof(float)) == 0,
                  "W%d: back to one thread", w);
            advnn_ws_free(ws1); advnn_ws_free(wsT);
            free(y1); free(y2);
        }
        for (i = 0; i < ni; i++) free(x[i]);
        advnn_graph_free(g);
    }
}

int main(void) {
    CHECK(advnn_get_threads() == 1, "default thread count %d", advnn_get_threads());
    RUN(test_bit_identical_per_thread_count);
    RUN(test_same_step_as_one_thread);
    RUN(test_two_threads_train);
    RUN(test_errors_and_small_batches);
    RUN(test_adversarial_threaded);
    RUN(test_threaded_inference);
    return th_report();
}
