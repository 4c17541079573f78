/* Multi-threaded training (advnn_set_threads): the weights do not depend on the thread count (1, 2,
 * 3, 8) nor on the scheduling (cores kept busy by other threads), with dropout, BatchNorm, both
 * adversarial schedules, a second stream and skipped zero-weight rows; one step on 2 or 3 threads
 * equals one thread's (whole-batch losses, gradients and BatchNorm statistics); errors in any chunk
 * are reported without hanging (every error path, under a time limit); batches smaller than the
 * thread count work. Inference split over a workspace's threads (advnn_ws_set_threads) equals one
 * thread bit for bit.
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

/* One step on 2 and 3 threads equals one step on 1 thread exactly: gradients, the loss and
 * BatchNorm's running statistics are whole-batch quantities summed in chunk order. */
static void test_same_step_as_one_thread(void) {
    int T;
    for (T = 2; T <= 3; T++) {
        setup a = make(0), b = make(0);
        advnn_trainer *ta, *tb;
        int64_t idx[200], i;   /* 6 chunks */
        double la = NAN, lb = NAN, maxd = 0; /* NaN: a failed step fails the loss check too */
        for (i = 0; i < 200; i++) idx[i] = (i * 7) % N;
        ta = advnn_trainer_new(a.g, 256, 1);
        advnn_set_threads(T); tb = advnn_trainer_new(b.g, 256, 1); advnn_set_threads(1);
        advnn_trainer_set_optim(ta, NULL, advnn_sgd(0.1f, 0, 0)); advnn_trainer_set_optim(tb, NULL, advnn_sgd(0.1f, 0, 0));
        CHECK(advnn_train_step(ta, a.d, idx, 200, &la) == ADVNN_OK && advnn_train_step(tb, b.d, idx, 200, &lb) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(la == lb, "%d threads: loss %.17g vs %.17g", T, lb, la);
        for (i = 0; i < a.g->n_params; i++) maxd = fmax(maxd, fabs((double)a.g->params[i] - b.g->params[i]));
        CHECK(maxd == 0, "%d threads: weights differ from 1 thread by %g after one step", T, maxd);
        {
            const float *rma = a.g->params + a.g->par[a.g->nodes[a.bn].param0 + 2].off;
            const float *rmb = b.g->params + b.g->par[b.g->nodes[b.bn].param0 + 2].off;
            const float *rva = rma + (a.g->par[a.g->nodes[a.bn].param0 + 3].off - a.g->par[a.g->nodes[a.bn].param0 + 2].off);
            const float *rvb = rmb + (b.g->par[b.g->nodes[b.bn].param0 + 3].off - b.g->par[b.g->nodes[b.bn].param0 + 2].off);
            for (i = 0; i < 6; i++)
                CHECK(rma[i] == rmb[i] && rva[i] == rvb[i],
                      "%d threads: BatchNorm running statistics (%g, %g) vs (%g, %g): not whole-batch", T, rmb[i], rvb[i], rma[i], rva[i]);
        }
        printf("     %d threads: |loss - loss_1| = %.2g, max |w - w_1| = %.2g\n", T, fabs(la - lb), maxd);
        advnn_trainer_free(ta); advnn_trainer_free(tb); drop(&a); drop(&b);
    }
}

/* Training with 2 threads learns, exactly as with 1 (with dropout). */
static void test_two_threads_train(void) {
    double l1, l2;
    float *a = train(1, 1, 8, &l1), *b = train(2, 1, 8, &l2);
    setup s = make(1);
    printf("     loss after 8 epochs: 1 thread %.4f, 2 threads %.4f\n", l1, l2);
    CHECK(l2 < 0.6 && l1 == l2, "2-thread training differs from 1-thread: %g vs %g", l2, l1);
    CHECK(memcmp(a, b, (size_t)s.g->n_params * sizeof(float)) == 0, "2-thread weights differ from 1-thread");
    drop(&s);
    free(a); free(b);
}

/* A bad target in the second chunk is reported (no hang); tiny batches work. */
static void test_errors_and_small_batches(void) {
    setup s = make(0);
    advnn_trainer *tr;
    int64_t idx[64], i;
    double l;
    for (i = 0; i < 64; i++) idx[i] = i;
    advnn_set_threads(2); tr = advnn_trainer_new(s.g, 64, 1); advnn_set_threads(1);
    s.y->data[50] = 2.0f;   /* outside [0, 1]: rows 32..63 are the second chunk */
    CHECK(advnn_train_step(tr, s.d, idx, 64, &l) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "outside [0, 1]"),
          "error in the second chunk not reported: %s", advnn_last_error());
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
    CHECK(memcmp(a, c, (size_t)n1 * sizeof(float)) == 0, "adversarial training on 2 threads differs from 1 thread");
    free(a); free(b); free(c);
}

/* advnn_infer on 2 and 3 threads vs 1, bit for bit, on W1's classifier (BatchNorm on running
 * statistics, trained a little so they are not the defaults), W2's tagger (masked Conv1D + LSTM
 * towers) and W3's autoencoder (convolutions, pooling, upsampling); batches that split unevenly,
 * that are too small to split, and a bad input reported from the last chunk. */
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
            {   /* a NaN in the last rows (the last chunk) is refused with the row named */
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

/* ---- errors never hang (issue 19, defect 1) ----
 * Every way a threaded step can fail (a bad row index in the gather, a target outside its range, a NaN
 * loss), in the first and in the last thread's rows, on 2 and 3 threads, with and without BatchNorm,
 * through advnn_train_step, advnn_evaluate, advnn_fit and both adversarial schedules, returns the
 * error. Each call runs on a thread of its own and the test waits for it with a time limit, so a hang
 * fails the test (and ends the program) instead of blocking forever. Each case runs several times:
 * the hang was a race, most but not all runs hit it. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define EN 150         /* rows */
#define EB 128         /* batch: 4 chunks */
#define ELIMIT 60      /* seconds per call (asan under qemu is slow; a correct call takes milliseconds) */

typedef struct {
    advnn_graph *g; advnn_dataset *d; advnn_tensor *x, *y, *w, *m, *wa;
    int main_loss, adv_loss, rev;
} esetup;

/* x(6) -> [BN] -> dense 8 relu -> dense 1 (main, BCE on y weighted by w); adversary (group "adv")
 * behind a reversal node: dense 4 tanh -> dense 1, BCE on m weighted by wa (background only: the
 * zero-weight rows are skipped) */
static esetup emake(int bn) {
    esetup s;
    int six = 6, one = 1, x, y, w, m, wa, h, z, a;
    int64_t sx[2] = { EN, 6 }, s1[1] = { EN }, i;
    advnn__rng r;
    advnn__rng_seed(&r, 11);
    s.g = advnn_graph_new();
    x = advnn_input(s.g, "x", 1, &six); y = advnn_input(s.g, "y", 1, &one); w = advnn_input(s.g, "w", 1, &one);
    m = advnn_input(s.g, "m", 1, &one); wa = advnn_input(s.g, "wa", 1, &one);
    h = bn ? advnn_batchnorm(s.g, x) : x;
    h = advnn_dense(s.g, h, 8, ADVNN_ACT_RELU);
    z = advnn_dense(s.g, h, 1, ADVNN_ACT_LINEAR);
    s.main_loss = advnn_loss_bce_logits(s.g, z, y, w);
    advnn_group(s.g, "adv");
    s.rev = advnn_grad_reverse(s.g, z, 1.0f);
    a = advnn_dense(s.g, s.rev, 4, ADVNN_ACT_TANH);
    if (bn) a = advnn_batchnorm(s.g, a);
    s.adv_loss = advnn_loss_bce_logits(s.g, advnn_dense(s.g, a, 1, ADVNN_ACT_LINEAR), m, wa);
    CHECK(advnn_graph_finalize(s.g, 8) == ADVNN_OK, "%s", advnn_last_error());
    s.x = advnn_tensor_new(2, sx); s.y = advnn_tensor_new(1, s1); s.w = advnn_tensor_new(1, s1);
    s.m = advnn_tensor_new(1, s1); s.wa = advnn_tensor_new(1, s1);
    for (i = 0; i < EN; i++) {
        int k;
        s.y->data[i] = (float)(i % 2);
        s.w->data[i] = (float)(0.5 + advnn__rng_uniform(&r));
        s.m->data[i] = (float)((i / 2) % 2);
        s.wa->data[i] = i % 2 ? 0.0f : 2.0f;
        for (k = 0; k < 6; k++) s.x->data[i * 6 + k] = (float)(gauss(&r) + 0.5 * k * s.y->data[i]);
    }
    s.d = advnn_dataset_new();
    advnn_dataset_add(s.d, "x", s.x); advnn_dataset_add(s.d, "y", s.y); advnn_dataset_add(s.d, "w", s.w);
    advnn_dataset_add(s.d, "m", s.m); advnn_dataset_add(s.d, "wa", s.wa);
    return s;
}
static void edrop(esetup *s) {
    advnn_graph_free(s->g); advnn_dataset_free(s->d);
    advnn_tensor_free(s->x); advnn_tensor_free(s->y); advnn_tensor_free(s->w);
    advnn_tensor_free(s->m); advnn_tensor_free(s->wa);
}

enum { E_STEP, E_EVAL, E_FIT, E_ADV_JOINT, E_ADV_ALT, E_NCALLS };
static const char *const ecall_name[E_NCALLS] = { "advnn_train_step", "advnn_evaluate", "advnn_fit", "advnn_adv_step (joint)",
                                                   "advnn_adv_step (alternating)" };
typedef struct {
    int call;
    advnn_trainer *tr;
    esetup *s;
    const int64_t *idx;
    advnn_status st;
    char msg[600];
    int done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} ecall;

static void *ecall_run(void *p) {
    ecall *c = (ecall *)p;
    double l = 0, l2 = 0;
    advnn_status st = ADVNN_OK;
    if (c->call == E_STEP) st = advnn_train_step(c->tr, c->s->d, c->idx, EB, &l);
    else if (c->call == E_EVAL) st = advnn_evaluate(c->tr, c->s->d, &l);
    else if (c->call == E_FIT) {
        advnn_fit_opts o = advnn_fit_defaults();
        o.epochs = 2; o.verbose = 0;
        st = advnn_fit(c->tr, c->s->d, NULL, &o, NULL);
    } else {
        advnn_adv_opts o = advnn_adv_defaults();
        o.mode = c->call == E_ADV_JOINT ? ADVNN_ADV_JOINT : ADVNN_ADV_ALTERNATING;
        o.main_loss = c->s->main_loss; o.adv_loss = c->s->adv_loss; o.grad_reverse = c->s->rev; o.adv_steps = 2;
        st = advnn_adv_step(c->tr, &o, 1.0f, c->s->d, c->idx, NULL, EB, &l, &l2);
    }
    pthread_mutex_lock(&c->mu);
    c->st = st;
    snprintf(c->msg, sizeof c->msg, "%s", advnn_last_error());
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Runs call c on its own thread; 0 when it did not return within ELIMIT seconds. */
static int ecall_timed(ecall *c) {
    pthread_t th;
    struct timespec until;
    int ok = 1;
    c->done = 0;
    pthread_mutex_init(&c->mu, NULL); pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&th, NULL, ecall_run, c) != 0) { CHECK(0, "pthread_create failed"); return 0; }
    timespec_get(&until, TIME_UTC);
    until.tv_sec += ELIMIT;
    pthread_mutex_lock(&c->mu);
    while (!c->done && ok) if (pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0 && !c->done) ok = 0;
    pthread_mutex_unlock(&c->mu);
    if (!ok) return 0;   /* the hung thread is left behind: the caller ends the program */
    pthread_join(th, NULL);
    pthread_mutex_destroy(&c->mu); pthread_cond_destroy(&c->cv);
    return 1;
}

/* what: 0 bad row index (the gather), 1 target y outside [0, 1], 2 the adversary's target m outside
 * [0, 1], 3 a NaN sample weight (a NaN loss); row: where in the batch */
static void test_errors_never_hang(void) {
    static const char *const what_name[4] = { "bad row index", "main target out of range", "adversary target out of range", "NaN weight" };
    int T, bn, call, what, wrow, rep, ncases = 0;
    for (T = 2; T <= 3; T++)
        for (bn = 0; bn < 2; bn++)
            for (call = 0; call < E_NCALLS; call++)
                for (what = 0; what < 4; what++)
                    for (wrow = 0; wrow < 2; wrow++) {
                        /* row 2: the first chunk; row 126: the last chunk (of the first
                         * batch of advnn_evaluate); advnn_fit shuffles: somewhere */
                        int64_t row = wrow ? 126 : 2, idx[EB], i;
                        esetup s;
                        if (what == 0 && (call == E_EVAL || call == E_FIT)) continue;   /* they take no row indices */
                        if (what == 2 && call != E_ADV_JOINT && call != E_ADV_ALT) continue;   /* only they compute the adversary */
                        s = emake(bn);
                        for (i = 0; i < EB; i++) idx[i] = i;
                        for (rep = 0; rep < 3; rep++) {
                            ecall c;
                            advnn_status want = what == 3 ? ADVNN_ERR_NAN : ADVNN_ERR_ARG;
                            float keep = 0;
                            memset(&c, 0, sizeof c);
                            advnn_set_threads(T); c.tr = advnn_trainer_new(s.g, EB, 3 + (uint64_t)rep); advnn_set_threads(1);
                            CHECK(c.tr != NULL, "%s", advnn_last_error());
                            if (!c.tr) break;
                            c.call = call; c.s = &s; c.idx = idx;
                            if (what == 0) idx[row] = EN + 7;
                            if (what == 1) { keep = s.y->data[row]; s.y->data[row] = 3.0f; }
                            if (what == 2) { keep = s.m->data[row]; s.m->data[row] = -1.0f; s.wa->data[row] = 2.0f; }
                            if (what == 3) { keep = s.w->data[row]; s.w->data[row] = NAN; }
                            if (!ecall_timed(&c)) {
                                CHECK(0, "%s, %d threads, %s BatchNorm, %s in row %lld: no return within %d s (hang)",
                                      ecall_name[call], T, bn ? "with" : "without", what_name[what], (long long)row, ELIMIT);
                                fflush(stdout); fflush(stderr);
                                th_fail_count++;
                                printf("%d passed, %d failed\n", th_pass_count, th_fail_count);
                                fflush(stdout);
                                _exit(1);   /* a thread is stuck inside the trainer: nothing can be freed */
                            }
                            CHECK(c.st == want, "%s, %d threads, %s BatchNorm, %s in row %lld: status %d (want %d): %s",
                                  ecall_name[call], T, bn ? "with" : "without", what_name[what], (long long)row, (int)c.st, (int)want, c.msg);
                            CHECK(c.msg[0] != 0, "%s: no error message", ecall_name[call]);
                            if (what == 0) idx[row] = row;
                            if (what == 1) s.y->data[row] = keep;
                            if (what == 2) { s.m->data[row] = keep; s.wa->data[row] = row % 2 ? 0.0f : 2.0f; }
                            if (what == 3) s.w->data[row] = keep;
                            {   /* the trainer still works after the error */
                                double l = NAN;
                                CHECK(advnn_train_step(c.tr, s.d, idx, EB, &l) == ADVNN_OK && isfinite(l), "after %s: %s",
                                      ecall_name[call], advnn_last_error());
                            }
                            advnn_trainer_free(c.tr);
                            ncases++;
                        }
                        edrop(&s);
                    }
    printf("     %d failing calls returned their error\n", ncases);
}

/* ---- weights independent of the thread count and the scheduling (issue 18, part 1) ----
 * Training on 1, 2, 3 and 8 threads, and on 2 threads while two busy threads of this process
 * compete for the cores (other schedules), gives the same weights bit for bit: advnn_fit with
 * dropout and BatchNorm (batches of 150 rows: 4 chunks of 37-38; a last batch of 60: one), and both
 * adversarial schedules with a control-region second stream (adv_data) through shared layers,
 * BatchNorm and dropout on both sides, background-only adversary weights (zero-weight rows
 * skipped) and a partial last batch. Also the evaluation loss. */
static int busy_stop;
static void *busy_loop(void *p) {
    volatile double x = 1.0;
    (void)p;
    while (!__atomic_load_n(&busy_stop, __ATOMIC_RELAXED)) x = x * 1.0000001 + 1e-9;
    return NULL;
}

#define DN 400   /* main rows */
#define DC 233   /* control-region rows */
typedef struct { float *w; int64_t n; double loss; } dresult;

/* kind 0: advnn_fit; 1: adversarial, joint schedule; 2: alternating (2 adversary steps) */
static dresult det_run(int kind, int threads) {
    advnn_graph *g = advnn_graph_new();
    int six = 6, one = 1, x, y, w, cx, cy, cw, h1, bn, z, hc, zc, a, lm, la, rev = -1, batch = kind ? 150 : 150;
    int64_t sx[2] = { DN, 6 }, s1[1] = { DN }, i;
    advnn_tensor *X, *Y, *W, *CX, *CY, *CW;
    advnn_dataset *d = advnn_dataset_new(), *cr = advnn_dataset_new();
    advnn_trainer *tr;
    advnn__rng r;
    dresult res;
    X = advnn_tensor_new(2, sx); Y = advnn_tensor_new(1, s1); W = advnn_tensor_new(1, s1);
    sx[0] = DC; s1[0] = DC;
    CX = advnn_tensor_new(2, sx); CY = advnn_tensor_new(1, s1); CW = advnn_tensor_new(1, s1);
    advnn__rng_seed(&r, 21);
    for (i = 0; i < DN; i++) {
        int k;
        Y->data[i] = (float)(i % 3 == 0);
        W->data[i] = (float)(0.5 + advnn__rng_uniform(&r));
        for (k = 0; k < 6; k++) X->data[i * 6 + k] = (float)(gauss(&r) + 0.7 * k * Y->data[i]);
    }
    for (i = 0; i < DC; i++) {
        int k;
        CY->data[i] = (float)(i % 2);
        CW->data[i] = i % 3 == 1 ? 0.0f : (float)(0.5 + advnn__rng_uniform(&r));   /* a third skipped */
        for (k = 0; k < 6; k++) CX->data[i * 6 + k] = (float)(gauss(&r) + 0.3 * k * CY->data[i]);
    }
    x = advnn_input(g, "x", 1, &six); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
    cx = advnn_input(g, "cx", 1, &six); cy = advnn_input(g, "cy", 1, &one); cw = advnn_input(g, "cw", 1, &one);
    h1 = advnn_dense(g, advnn_dropout(g, x, 0.1f), 16, ADVNN_ACT_RELU);
    bn = advnn_batchnorm(g, h1);
    z = advnn_dense(g, advnn_dropout(g, bn, 0.2f), 1, ADVNN_ACT_LINEAR);
    lm = advnn_loss_bce_logits(g, z, y, w);
    la = -1;
    if (kind) {   /* the adversary sees the main network's output on the control region */
        hc = advnn_shared(g, h1, advnn_dropout(g, cx, 0.1f), -1);
        zc = advnn_shared(g, z, advnn_shared(g, bn, hc, -1), -1);
        advnn_group(g, "adv");
        rev = advnn_grad_reverse(g, zc, 1.0f);
        a = advnn_dense(g, rev, 8, ADVNN_ACT_TANH);
        a = advnn_dropout(g, advnn_batchnorm(g, a), 0.1f);
        la = advnn_loss_bce_logits(g, advnn_dense(g, a, 1, ADVNN_ACT_LINEAR), cy, cw);
    }
    CHECK(advnn_graph_finalize(g, 4) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y); advnn_dataset_add(d, "w", W);
    advnn_dataset_add(cr, "cx", CX); advnn_dataset_add(cr, "cy", CY); advnn_dataset_add(cr, "cw", CW);
    advnn_set_threads(threads); tr = advnn_trainer_new(g, batch, 9); advnn_set_threads(1);
    CHECK(tr != NULL, "%s", advnn_last_error());
    if (kind == 0) {
        advnn_fit_opts o = advnn_fit_defaults();
        o.epochs = 2; o.verbose = 0; o.val_split = 0.1f;
        CHECK(advnn_fit(tr, d, NULL, &o, NULL) == ADVNN_OK, "%s", advnn_last_error());
    } else {
        advnn_adv_opts o = advnn_adv_defaults();
        o.mode = kind == 1 ? ADVNN_ADV_JOINT : ADVNN_ADV_ALTERNATING;
        o.main_loss = lm; o.adv_loss = la; o.grad_reverse = rev; o.adv_data = cr; o.adv_steps = kind == 2 ? 2 : 1;
        o.epochs = 1; o.pretrain_adv_epochs = 1; o.verbose = 0; o.lambda = 2.0f;
        CHECK(advnn_adv_fit(tr, d, &o, NULL) == ADVNN_OK, "%s", advnn_last_error());
    }
    {
        advnn_dataset *e = advnn_dataset_new();   /* the main loss alone on the main rows */
        advnn_dataset_add(e, "x", X); advnn_dataset_add(e, "y", Y); advnn_dataset_add(e, "w", W);
        if (kind) { advnn_dataset_add(e, "cx", X); advnn_dataset_add(e, "cy", Y); advnn_dataset_add(e, "cw", W); }
        res.loss = NAN;
        CHECK(advnn_evaluate(tr, e, &res.loss) == ADVNN_OK, "%s", advnn_last_error());
        advnn_dataset_free(e);
    }
    res.n = g->n_params;
    res.w = (float *)malloc((size_t)g->n_params * sizeof(float));
    memcpy(res.w, g->params, (size_t)g->n_params * sizeof(float));
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d); advnn_dataset_free(cr);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(W); advnn_tensor_free(CX); advnn_tensor_free(CY); advnn_tensor_free(CW);
    return res;
}

static void test_same_weights_any_thread_count(void) {
    static const char *const kname[3] = { "advnn_fit", "adversarial (joint)", "adversarial (alternating)" };
    static const char *const pname[4] = { "", " (the calling thread alone)", " (team and alone in turn)", " (chosen by time)" };
    /* threads; policy (advnn__tune_force: 1 team, 2 alone, 3 in turn, 0 measured); busy threads beside */
    static const int threads[7] = { 2, 3, 8, 2, 2, 3, 2 }, policy[7] = { 1, 1, 1, 1, 2, 3, 0 }, busyn[7] = { 0, 0, 0, 2, 0, 0, 2 };
    int kind, q;
    for (kind = 0; kind < 3; kind++) {
        dresult ref = det_run(kind, 1);
        int finite = 1;
        int64_t i;
        for (i = 0; i < ref.n; i++) finite &= isfinite(ref.w[i]) != 0;
        CHECK(finite && isfinite(ref.loss), "%s: non-finite weights or loss", kname[kind]);
        for (q = 0; q < 7; q++) {
            pthread_t busy[2];
            int nb = busyn[q], b, saved = advnn__tune_force;
            dresult o;
            __atomic_store_n(&busy_stop, 0, __ATOMIC_RELAXED);
            for (b = 0; b < nb; b++) pthread_create(&busy[b], NULL, busy_loop, NULL);
            advnn__tune_force = policy[q];
            o = det_run(kind, threads[q]);
            advnn__tune_force = saved;
            __atomic_store_n(&busy_stop, 1, __ATOMIC_RELAXED);
            for (b = 0; b < nb; b++) pthread_join(busy[b], NULL);
            CHECK(o.n == ref.n && memcmp(o.w, ref.w, (size_t)ref.n * sizeof(float)) == 0,
                  "%s: %d threads%s%s give other weights than 1 thread", kname[kind], threads[q], pname[policy[q] ? policy[q] - 1 : 3],
                  nb ? " (cores busy)" : "");
            CHECK(o.loss == ref.loss, "%s: %d threads%s%s: evaluation loss %.17g vs %.17g", kname[kind], threads[q],
                  pname[policy[q] ? policy[q] - 1 : 3], nb ? " (cores busy)" : "", o.loss, ref.loss);
            free(o.w);
        }
        printf("     %s: 1, 2, 3, 8 threads, 2 beside busy ones, steps alone, in turn and as timed: the same weights (loss %.6f)\n",
               kname[kind], ref.loss);
        free(ref.w);
    }
}

/* The library's own chunking (chunks of at least 128 rows; the other tests cut small batches into
 * chunks of 32 to exercise many chunks cheaply): a batch of 512 is 4 chunks, one of 255 a single
 * chunk, and a step on 2 or 3 threads equals 1 thread's bit for bit. */
static void test_default_chunking(void) {
    int saved = advnn__chunk_min_rows, T;
    advnn__chunk_min_rows = 128;
    CHECK(advnn__chunk_count(512) == 4 && advnn__chunk_count(255) == 1 && advnn__chunk_count(4096) == 8,
          "chunks of 512, 255, 4096 rows: %d, %d, %d", advnn__chunk_count(512), advnn__chunk_count(255), advnn__chunk_count(4096));
    {   /* the workspace sizes: every chunk of every step of up to B rows fits its workspace, and they are tight */
        static const int bs[7] = { 255, 256, 300, 512, 1024, 1500, 5000 };
        int q, n, c, bad = 0, tight = 1;
        for (q = 0; q < 7; q++) {
            int B = bs[q], most[ADVNN__CHUNKS_MAX + 1] = { 0 };
            for (n = 1; n <= B; n++) {
                int nck = advnn__chunk_count(n);
                for (c = 0; c < nck; c++) {
                    int sz = advnn__chunk_lo_of(n, nck, c + 1) - advnn__chunk_lo_of(n, nck, c);
                    bad += sz > (c ? advnn__chunk_rows(B, c) : advnn__chunk_cap(B)) || (nck > 1 && sz > advnn__chunk_rows(B, -1));
                    if (nck > 1 && sz > most[c]) most[c] = sz;
                    if (nck > 1 && sz > most[ADVNN__CHUNKS_MAX]) most[ADVNN__CHUNKS_MAX] = sz;
                }
            }
            /* exact up to 8 x 128 rows; beyond, ceil(B / 8) bounds chunks of B / 8 rounded either way */
            for (c = 1; c < advnn__chunk_count(B); c++) tight &= advnn__chunk_rows(B, c) - most[c] <= (B > 1024);
            tight &= advnn__chunk_count(B) < 2 || advnn__chunk_rows(B, -1) - most[ADVNN__CHUNKS_MAX] <= (B > 1024);
        }
        CHECK(bad == 0 && tight, "chunk workspaces: %d chunks larger than theirs, sizes %s", bad, tight ? "tight" : "not tight");
        CHECK(advnn__chunk_rows(512, 1) == 192 && advnn__chunk_rows(512, 2) == 171 && advnn__chunk_rows(512, 3) == 128,
              "batch 512: chunk workspaces of %d, %d, %d rows", advnn__chunk_rows(512, 1), advnn__chunk_rows(512, 2), advnn__chunk_rows(512, 3));
    }
    for (T = 2; T <= 3; T++) {
        setup a = make(1), b = make(1);   /* with dropout */
        advnn_trainer *ta, *tb;
        int64_t idx[512], i;
        double la = NAN, lb = NAN;
        for (i = 0; i < 512; i++) idx[i] = (i * 7) % N;
        ta = advnn_trainer_new(a.g, 512, 3);
        advnn_set_threads(T); tb = advnn_trainer_new(b.g, 512, 3); advnn_set_threads(1);
        for (i = 0; i < 3; i++)
            CHECK(advnn_train_step(ta, a.d, idx, 512, &la) == ADVNN_OK && advnn_train_step(tb, b.d, idx, 512, &lb) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(la == lb && memcmp(a.g->params, b.g->params, (size_t)a.g->n_params * sizeof(float)) == 0,
              "%d threads: 3 steps of 512 rows differ from 1 thread's (loss %.17g vs %.17g)", T, lb, la);
        advnn_trainer_free(ta); advnn_trainer_free(tb); drop(&a); drop(&b);
    }
    advnn__chunk_min_rows = saved;
}

/* advnn__tune_pick/note, the choice between the team and the calling thread alone, on made-up times:
 * the faster way runs, the other is tried at the documented rate, a change of times is followed
 * within a few steps, and step shapes are told apart (more shapes than slots evict the oldest). */
static int tune_run(advnn__tune *u, uint64_t key, int steps, double team, double alone) {
    int i, na = 0;
    for (i = 0; i < steps; i++) {
        int a = advnn__tune_pick(u, key);
        na += a;
        advnn__tune_note(u, a, a ? alone : team);
    }
    return na;
}
static void test_tune_choice(void) {
    advnn__tune u;
    int saved = advnn__tune_force, na, k;
    advnn__tune_force = 0;
    memset(&u, 0, sizeof u);
    na = tune_run(&u, 7, 8, 1e-3, 2e-3);   /* the first 8: each way in turn (the first of each dropped) */
    CHECK(na == 4, "first 8 steps: %d alone, want 4 (in turn)", na);
    na = tune_run(&u, 7, 1000, 1e-3, 2e-3);   /* alone 2x slower: tried every 50th step */
    CHECK(na >= 15 && na <= 25, "team 2x faster: %d of 1000 steps alone, want ~20", na);
    na = tune_run(&u, 7, 1000, 1e-3, 4e-3);   /* 4x: every 64th */
    CHECK(na >= 12 && na <= 20, "team 4x faster: %d of 1000 steps alone, want ~16", na);
    /* the team becomes slower (load): alone once a trial (every 16th step: alone's last times were 4 ms)
     * finds it faster, then the team every 25th step */
    na = tune_run(&u, 7, 70, 3e-3, 2e-3);
    k = tune_run(&u, 7, 100, 3e-3, 2e-3);
    CHECK(na >= 50 && k >= 94 && k <= 98, "team 1.5x slower: %d of the first 70, %d of the next 100 steps alone (want >= 50, ~96)", na, k);
    k = tune_run(&u, 7, 1000, 2.1e-3, 2e-3);  /* 5% apart: the other every 4th step */
    CHECK(k >= 740 && k <= 770, "team 5%% slower: %d of 1000 alone, want ~750", k);
    na = tune_run(&u, 7, 30, 1e-3, 2e-3);     /* the load goes: back to the team within a few steps */
    k = tune_run(&u, 7, 100, 1e-3, 2e-3);
    CHECK(na <= 10 && k <= 4, "team 2x faster again: %d of 30, %d of the next 100 steps alone", na, k);
    /* two shapes, each with its own times */
    memset(&u, 0, sizeof u);
    for (k = 0; k < 400; k++) {
        int a = advnn__tune_pick(&u, 100), b;
        advnn__tune_note(&u, a, a ? 2e-3 : 1e-3);
        b = advnn__tune_pick(&u, 200);
        advnn__tune_note(&u, b, b ? 1e-3 : 2e-3);
        if (k >= 100) na += a, na -= b;
        else if (k == 99) na = 0;
    }
    CHECK(na <= -280, "two shapes: alone %d more often on the shape where the team is faster (want <= -280)", na);
    for (k = 0; k < 50; k++) tune_run(&u, 1000 + (uint64_t)k, 3, 1e-3, 1e-3);   /* evicting: no crash, no stale reuse */
    na = tune_run(&u, 100, 8, 1e-3, 2e-3);
    CHECK(na == 4, "an evicted shape starts over (in turn): %d of 8 alone", na);
    advnn__tune_force = 1; na = tune_run(&u, 5, 10, 9e-3, 1e-3);
    advnn__tune_force = 2; k = tune_run(&u, 5, 10, 1e-3, 9e-3);
    CHECK(na == 0 && k == 10, "forced: team %d alone of 10, alone %d of 10", na, k);
    advnn__tune_force = saved;
}

int main(void) {
    CHECK(advnn_get_threads() == 1, "default thread count %d", advnn_get_threads());
    RUN(test_tune_choice);
    advnn__tune_force = 1;   /* threaded steps on the team (the others test it beside the measured choice) */
    RUN(test_default_chunking);
    advnn__chunk_min_rows = 32;   /* small batches in many chunks: the mechanism, cheaply */
    RUN(test_bit_identical_per_thread_count);
    RUN(test_same_step_as_one_thread);
    RUN(test_two_threads_train);
    RUN(test_errors_and_small_batches);
    RUN(test_errors_never_hang);
    RUN(test_same_weights_any_thread_count);
    RUN(test_adversarial_threaded);
    RUN(test_threaded_inference);
    advnn__tune_force = 3;   /* inference calls on the team and on the calling thread in turn: the same outputs */
    RUN(test_threaded_inference);
    return th_report();
}
