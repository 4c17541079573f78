/* Inference caches (advnn_infer, advnn_predict): a workspace keeps values derived from the weights
 * (BatchNorm folded into the Dense after it, other BatchNorms' 1/std). After any change of the
 * weights -- advnn_weight_set, a write through advnn_params (fresh pointer, or a kept pointer and
 * advnn_params_changed), a training step, advnn_fit restoring its best epoch after a callback that
 * ran inference, a model file loaded -- a workspace used before the change gives bit for bit what a
 * fresh workspace gives. And the folded arithmetic agrees with the layer formulas computed in double
 * within float rounding (1e-5 x max(1, |value|) per output). Non-finite inputs are refused. An LSTM's
 * packed inference kernel gives a sample's bits whatever the batch. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

#define NR 5   /* rows per call */

typedef struct { advnn_graph *g; int x, y, bn1, d1, bn2, d2, bnl, out, loss; } net;

/* x (6) -> BN -> Dense 8 ReLU -> BN -> Dense 5 tanh -> BN (last: not folded) -> out; a BCE loss on a
 * Dense 1 of the last BN, so that it has two consumers (out node, Dense) and stays a BatchNorm. */
static net make_net(uint64_t seed) {
    net n;
    int six = 6, one = 1, i, j;
    n.g = advnn_graph_new();
    n.x = advnn_input(n.g, "x", 1, &six);
    n.y = advnn_input(n.g, "y", 1, &one);
    n.bn1 = advnn_batchnorm(n.g, n.x);
    n.d1 = advnn_dense(n.g, n.bn1, 8, ADVNN_ACT_RELU);
    n.bn2 = advnn_batchnorm(n.g, n.d1);
    n.d2 = advnn_name(n.g, advnn_dense(n.g, n.bn2, 5, ADVNN_ACT_TANH), "d2");
    n.bnl = advnn_name(n.g, advnn_batchnorm(n.g, n.d2), "out");
    n.out = n.bnl;
    n.loss = advnn_loss_bce_logits(n.g, advnn_dense(n.g, n.bnl, 1, ADVNN_ACT_LINEAR), n.y, -1);
    if (advnn_graph_finalize(n.g, seed) != ADVNN_OK) { fprintf(stderr, "finalize: %s\n", advnn_last_error()); exit(1); }
    {   /* BatchNorm parameters away from identity */
        static const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        int bns[3];
        float v[8];
        unsigned s = (unsigned)seed * 2654435761u + 1;
        bns[0] = n.bn1; bns[1] = n.bn2; bns[2] = n.bnl;
        for (i = 0; i < 3; i++) {
            int sh[3], C;
            advnn_node_shape(n.g, bns[i], sh);
            C = sh[0];
            for (j = 0; j < 4; j++) {
                int k;
                for (k = 0; k < C; k++) {
                    double u;
                    s = s * 1664525u + 1013904223u;
                    u = (s >> 8) / 16777216.0;
                    v[k] = (float)(j == 0 ? 0.5 + u : j == 3 ? 0.3 + 2 * u : u - 0.5);
                }
                advnn_weight_set(n.g, bns[i], names[j], v, C);
            }
        }
    }
    return n;
}

static float X[NR * 6];
static void fill_x(void) {
    int i;
    for (i = 0; i < NR * 6; i++) X[i] = (float)sin(1.7 * i + 0.3) * 1.5f;
}

/* out node of n on X (NR rows) through ws */
static advnn_status run(advnn_ws *ws, const net *n, int out, float *y) {
    const float *in[2];
    (void)n;
    in[0] = X; in[1] = NULL;
    return advnn_infer(ws, NR, in, out, y);
}
/* the same through a workspace made now */
static void fresh(const net *n, int out, float *y) {
    advnn_ws *ws = advnn_ws_new(n->g, NR);
    if (!ws || run(ws, n, out, y) != ADVNN_OK) { fprintf(stderr, "fresh: %s\n", advnn_last_error()); exit(1); }
    advnn_ws_free(ws);
}

/* old ws vs fresh ws after a change, on both output nodes (d2: both BatchNorms folded; out: a
 * BatchNorm that is not); returns whether the change moved the outputs at all */
static int same_as_fresh(advnn_ws *ws, const net *n, const float *before, const char *what) {
    float a[NR * 8], b[NR * 8];
    int moved;
    CHECK(run(ws, n, n->d2, a) == ADVNN_OK, "%s: infer: %s", what, advnn_last_error());
    fresh(n, n->d2, b);
    CHECK(memcmp(a, b, sizeof(float) * NR * 5) == 0, "%s: d2 from the old workspace %.9g, fresh %.9g", what, a[0], b[0]);
    moved = memcmp(a, before, sizeof(float) * NR * 5) != 0;
    CHECK(run(ws, n, n->out, a) == ADVNN_OK, "%s: infer: %s", what, advnn_last_error());
    fresh(n, n->out, b);
    CHECK(memcmp(a, b, sizeof(float) * NR * 5) == 0, "%s: out from the old workspace %.9g, fresh %.9g", what, a[0], b[0]);
    return moved;
}

static void test_writers_refresh_the_cache(void) {
    net n = make_net(3);
    advnn_ws *ws = advnn_ws_new(n.g, NR);
    float y0[NR * 8], w[64];
    int64_t np;
    float *p = advnn_params(n.g, &np);   /* kept for a raw write later */
    CHECK(ws && run(ws, &n, n.d2, y0) == ADVNN_OK, "first infer: %s", advnn_last_error());
    /* advnn_weight_set on a folded BatchNorm, on the Dense it is folded into, on the last BatchNorm */
    CHECK(advnn_weight_get(n.g, n.bn2, "moving_variance", w, 8) == ADVNN_OK, "get");
    w[3] *= 2.5f;
    CHECK(advnn_weight_set(n.g, n.bn2, "moving_variance", w, 8) == ADVNN_OK, "set");
    CHECK(same_as_fresh(ws, &n, y0, "weight_set BatchNorm variance"), "changing a variance did not change the output");
    CHECK(run(ws, &n, n.d2, y0) == ADVNN_OK, "infer");
    CHECK(advnn_weight_get(n.g, n.d2, "kernel", w, 40) == ADVNN_OK, "get");
    w[7] += 0.5f;
    CHECK(advnn_weight_set(n.g, n.d2, "kernel", w, 40) == ADVNN_OK, "set");
    CHECK(same_as_fresh(ws, &n, y0, "weight_set Dense kernel"), "changing a kernel did not change the output");
    CHECK(run(ws, &n, n.d2, y0) == ADVNN_OK, "infer");
    CHECK(advnn_weight_get(n.g, n.d1, "bias", w, 8) == ADVNN_OK, "get");
    w[2] += 0.25f;
    CHECK(advnn_weight_set(n.g, n.d1, "bias", w, 8) == ADVNN_OK, "set");
    CHECK(same_as_fresh(ws, &n, y0, "weight_set Dense bias"), "changing a bias did not change the output");
    /* a raw write through the pointer kept from before the inference calls, then advnn_params_changed */
    CHECK(run(ws, &n, n.d2, y0) == ADVNN_OK, "infer");
    {
        int k;
        for (k = 0; k < np; k++) p[k] = p[k] * 1.0625f;   /* every block: gamma, beta, stats, kernels */
    }
    advnn_params_changed(n.g);
    CHECK(same_as_fresh(ws, &n, y0, "raw write + advnn_params_changed"), "scaling every parameter did not change the output");
    /* a write through a pointer fetched after the inference calls (advnn_params marks the cache stale) */
    CHECK(run(ws, &n, n.d2, y0) == ADVNN_OK, "infer");
    {
        float *q = advnn_params(n.g, NULL);
        int k;
        for (k = 0; k < np; k++) q[k] = q[k] * 0.96875f;
    }
    CHECK(same_as_fresh(ws, &n, y0, "write through a fresh advnn_params pointer"), "scaling every parameter did not change the output");
    advnn_ws_free(ws);
    advnn_graph_free(n.g);
}

/* a dataset of `rows` rows: x from X (repeated with a shift), y alternating 0/1; the dataset borrows
 * its tensors: free_data frees both */
static advnn_tensor *borrowed[16];
static int nborrowed;
static void free_data(advnn_dataset *d) {
    advnn_dataset_free(d);
    while (nborrowed > 0) advnn_tensor_free(borrowed[--nborrowed]);
}
static advnn_dataset *make_data(int rows) {
    int64_t sx[2], sy[2];
    advnn_tensor *tx, *ty;
    advnn_dataset *d = advnn_dataset_new();
    int i;
    sx[0] = rows; sx[1] = 6; sy[0] = rows; sy[1] = 1;
    tx = advnn_tensor_new(2, sx); ty = advnn_tensor_new(2, sy);
    for (i = 0; i < rows * 6; i++) tx->data[i] = X[i % (NR * 6)] + 0.01f * (float)(i / (NR * 6));
    for (i = 0; i < rows; i++) ty->data[i] = (float)(i % 2);
    advnn_dataset_add(d, "x", tx); advnn_dataset_add(d, "y", ty);
    borrowed[nborrowed++] = tx; borrowed[nborrowed++] = ty;
    return d;
}

static void test_training_refreshes_the_cache(void) {
    net n = make_net(5);
    advnn_ws *ws = advnn_ws_new(n.g, NR);
    advnn_dataset *d = make_data(40);
    advnn_trainer *tr = advnn_trainer_new(n.g, 8, 1);
    float y0[NR * 8];
    int64_t idx[8];
    double loss;
    int i;
    for (i = 0; i < 8; i++) idx[i] = i;
    CHECK(ws && tr && run(ws, &n, n.d2, y0) == ADVNN_OK, "setup: %s", advnn_last_error());
    advnn_trainer_set_optim(tr, NULL, advnn_adam(1e-2f));
    /* one step: new weights and new BatchNorm running statistics */
    CHECK(advnn_train_step(tr, d, idx, 8, &loss) == ADVNN_OK, "train_step: %s", advnn_last_error());
    CHECK(same_as_fresh(ws, &n, y0, "after a training step"), "a training step did not change the output");
    advnn_trainer_free(tr);
    free_data(d);
    advnn_ws_free(ws);
    advnn_graph_free(n.g);
}

/* advnn_fit restores its best epoch after the last callback, which ran inference on the user's
 * workspace (so that workspace's cache was made from the last epoch's weights) */
typedef struct { advnn_ws *ws; const net *n; int calls; } cbdata;
static int infer_cb(const advnn_epoch_info *e, void *user) {
    cbdata *c = (cbdata *)user;
    float y[NR * 8];
    (void)e;
    if (run(c->ws, c->n, c->n->d2, y) == ADVNN_OK) c->calls++;
    return 0;
}
static void test_fit_restore_refreshes_the_cache(void) {
    net n = make_net(7);
    advnn_ws *ws = advnn_ws_new(n.g, NR);
    advnn_dataset *d = make_data(40), *v = make_data(16);
    advnn_trainer *tr = advnn_trainer_new(n.g, 8, 2);
    advnn_fit_opts o = advnn_fit_defaults();
    advnn_fit_result res;
    cbdata c;
    float y0[NR * 8], ylast[NR * 8];
    c.ws = ws; c.n = &n; c.calls = 0;
    CHECK(ws && tr && run(ws, &n, n.d2, y0) == ADVNN_OK, "setup: %s", advnn_last_error());
    advnn_trainer_set_optim(tr, NULL, advnn_sgd(3.0f, 0.9f, 0));   /* large steps: a later epoch is worse */
    o.epochs = 4; o.verbose = 0; o.restore_best = 1; o.callback = infer_cb; o.user = &c;
    CHECK(advnn_fit(tr, d, v, &o, &res) == ADVNN_OK, "fit: %s", advnn_last_error());
    CHECK(c.calls == res.epochs_run, "the callback ran inference %d times in %d epochs", c.calls, res.epochs_run);
    CHECK(res.best_epoch < res.epochs_run - 1, "best epoch %d is the last (%d run): this test needs a restore", res.best_epoch, res.epochs_run);
    memcpy(ylast, y0, sizeof y0);
    same_as_fresh(ws, &n, ylast, "after advnn_fit restored its best epoch");
    advnn_trainer_free(tr);
    advnn_dataset_free(v); free_data(d);
    advnn_ws_free(ws);
    advnn_graph_free(n.g);
}

/* Folded BatchNorm + Dense against the layer formulas in double; advnn_predict and advnn_infer
 * agree bit for bit (both use the caches); a saved and loaded model computes the same bits. */
static void test_folded_values(void) {
    net n = make_net(9);
    advnn_ws *ws = advnn_ws_new(n.g, NR), *w1 = advnn_ws_new(n.g, 1);
    float y[NR * 8], g1[6], b1[6], m1[6], v1[6], g2[8], b2[8], m2[8], v2[8], W1[48], c1[8], W2[40], c2[5];
    int r, j, k, bad = 0;
    double worst = 0;
    CHECK(ws && w1 && run(ws, &n, n.d2, y) == ADVNN_OK, "infer: %s", advnn_last_error());
    advnn_weight_get(n.g, n.bn1, "gamma", g1, 6); advnn_weight_get(n.g, n.bn1, "beta", b1, 6);
    advnn_weight_get(n.g, n.bn1, "moving_mean", m1, 6); advnn_weight_get(n.g, n.bn1, "moving_variance", v1, 6);
    advnn_weight_get(n.g, n.bn2, "gamma", g2, 8); advnn_weight_get(n.g, n.bn2, "beta", b2, 8);
    advnn_weight_get(n.g, n.bn2, "moving_mean", m2, 8); advnn_weight_get(n.g, n.bn2, "moving_variance", v2, 8);
    advnn_weight_get(n.g, n.d1, "kernel", W1, 48); advnn_weight_get(n.g, n.d1, "bias", c1, 8);
    advnn_weight_get(n.g, n.d2, "kernel", W2, 40); advnn_weight_get(n.g, n.d2, "bias", c2, 5);
    for (r = 0; r < NR; r++) {
        double h0[6], h1[8], h2[8];
        for (k = 0; k < 6; k++) h0[k] = (X[r * 6 + k] - m1[k]) / sqrt((double)v1[k] + 1e-3) * g1[k] + b1[k];
        for (j = 0; j < 8; j++) {
            double z = c1[j];
            for (k = 0; k < 6; k++) z += h0[k] * W1[k * 8 + j];
            h1[j] = z > 0 ? z : 0;
        }
        for (k = 0; k < 8; k++) h2[k] = (h1[k] - m2[k]) / sqrt((double)v2[k] + 1e-3) * g2[k] + b2[k];
        for (j = 0; j < 5; j++) {
            double z = c2[j], ref, err;
            for (k = 0; k < 8; k++) z += h2[k] * W2[k * 5 + j];
            ref = tanh(z);
            err = fabs(y[r * 5 + j] - ref) / (fabs(ref) > 1 ? fabs(ref) : 1);
            if (err > worst) worst = err;
            if (err > 1e-5) bad++;
        }
    }
    CHECK(bad == 0, "%d outputs off the double-precision formula by more than 1e-5 (worst %.3g)", bad, worst);
    {   /* batch 1, row by row, within the same tolerance of the batch-5 call */
        float y1[8];
        for (r = 0; r < NR; r++) {
            const float *in[2];
            in[0] = X + r * 6; in[1] = NULL;
            CHECK(advnn_infer(w1, 1, in, n.d2, y1) == ADVNN_OK, "batch 1: %s", advnn_last_error());
            for (j = 0; j < 5; j++) CHECK(th_close(y1[j], y[r * 5 + j], 1e-5, 1e-5), "row %d: batch 1 %.9g, batch 5 %.9g", r, y1[j], y[r * 5 + j]);
        }
    }
    {
        advnn_dataset *d = make_data(NR);
        advnn_tensor *p = NULL;
        CHECK(advnn_predict(n.g, d, "d2", &p) == ADVNN_OK && p, "predict: %s", advnn_last_error());
        if (p) {
            float yy[NR * 8];
            CHECK(run(ws, &n, n.d2, yy) == ADVNN_OK, "infer");
            /* make_data(NR) rows are X itself (shift 0) */
            CHECK(memcmp(p->data, yy, sizeof(float) * NR * 5) == 0, "advnn_predict %.9g, advnn_infer %.9g", p->data[0], yy[0]);
            advnn_tensor_free(p);
        }
        free_data(d);
    }
    {
        void *buf = NULL;
        size_t len = 0;
        advnn_graph *h;
        CHECK(advnn_model_save_mem(n.g, &buf, &len) == ADVNN_OK, "save: %s", advnn_last_error());
        h = buf ? advnn_model_load_mem(buf, len) : NULL;
        CHECK(h != NULL, "load: %s", advnn_last_error());
        if (h) {
            advnn_ws *wh = advnn_ws_new(h, NR);
            float yh[NR * 8];
            const float *in[2];
            in[0] = X; in[1] = NULL;
            CHECK(wh && advnn_infer(wh, NR, in, advnn_find(h, "d2"), yh) == ADVNN_OK, "loaded infer: %s", advnn_last_error());
            CHECK(memcmp(yh, y, sizeof(float) * NR * 5) == 0, "loaded model: %.9g, original %.9g", yh[0], y[0]);
            advnn_ws_free(wh);
            advnn_graph_free(h);
        }
        ADVNN_FREE(buf);
    }
    advnn_ws_free(ws); advnn_ws_free(w1);
    advnn_graph_free(n.g);
}

/* Non-finite inputs are refused with the sample and value named; finite values whose sum overflows
 * (the fast check's false alarm) are accepted. */
static void test_nonfinite_inputs(void) {
    net n = make_net(11);
    advnn_ws *ws = advnn_ws_new(n.g, NR);
    float x[NR * 6], y[NR * 8];
    const float *in[2];
    int k;
    in[0] = x; in[1] = NULL;
    for (k = 0; k < NR * 6; k++) x[k] = X[k];
    x[2 * 6 + 4] = NAN;
    CHECK(advnn_infer(ws, NR, in, n.d2, y) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "sample 2, value 4"), "NaN: %s", advnn_last_error());
    x[2 * 6 + 4] = X[16];
    x[4 * 6 + 1] = -INFINITY;
    CHECK(advnn_infer(ws, NR, in, n.d2, y) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "sample 4, value 1"), "-Inf: %s", advnn_last_error());
    for (k = 0; k < NR * 6; k++) x[k] = 3e38f;
    CHECK(advnn_infer(ws, NR, in, n.d2, y) == ADVNN_OK, "large finite inputs refused: %s", advnn_last_error());
    advnn_ws_free(ws);
    advnn_graph_free(n.g);
}

/* An LSTM in inference runs its packed sequence kernel (advnn_lstm_seq_fwd, weights packed once per
 * weight generation): a sample gives the same bits alone (batch 1) as in a batch of 9, as the
 * per-step kernels give it in that batch (where the packed kernel does not run, no vector body or
 * 300 inputs to 5 units: within 1e-6); 200 inputs: the inputs projected by a GEMM first; after advnn_weight_set on the LSTM a used workspace gives what a
 * fresh one gives, bit for bit. With and without mask, last state and whole sequence. */
static void test_lstm_packed(void) {
    static const int HS[] = {2, 5, 10, 13, 17, 10, 5}, FS[] = {6, 6, 6, 6, 6, 200, 300};
    int hi, mm, seq, k, r;
    for (hi = 0; hi < 7; hi++)
        for (mm = 0; mm < 2; mm++)
            for (seq = 0; seq < 2; seq++) {
                enum { T = 6, F = 4, B = 9 };
                /* packed: weights that fit in L1 (the kernel projects the inputs) or z rows that fit G, Cs, Hs */
                int H = HS[hi], C = FS[hi], sh[2] = {T, F}, mt = T, L = advnn_lstm_packed_width(H);
                int packed = L > 0 && ((C + H) * L <= 8192 || L <= 6 * H);
                advnn_graph *g = advnn_graph_new();
                int x = advnn_input(g, "x", 2, sh), m = mm ? advnn_input(g, "m", 1, &mt) : -1, y, osz = seq ? T * H : H, bad = 0;
                float xi[B * T * F], mi[B * T], o1[B * T * 17], on[B * T * 17], of[B * T * 17], u[17 * 68];
                const float *in[2];
                advnn_ws *w1, *wn, *wf;
                y = advnn_lstm(g, advnn_conv1d(g, x, C, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_TANH), H, seq, m);
                if (advnn_graph_finalize(g, 7 + (uint64_t)H) != ADVNN_OK) { CHECK(0, "finalize: %s", advnn_last_error()); return; }
                for (k = 0; k < B * T * F; k++) xi[k] = (float)sin(0.37 * k + H) * 1.8f;
                for (k = 0; k < B * T; k++) mi[k] = (k * 7 + H) % 5 == 0 ? 0.0f : 1.0f;
                w1 = advnn_ws_new(g, 1); wn = advnn_ws_new(g, B);
                for (r = 0; r < B; r++) {
                    in[0] = xi + r * T * F; in[1] = mi + r * T;
                    CHECK(advnn_infer(w1, 1, in, y, o1 + r * osz) == ADVNN_OK, "%s", advnn_last_error());
                }
                in[0] = xi; in[1] = mi;
                CHECK(advnn_infer(wn, B, in, y, on) == ADVNN_OK, "%s", advnn_last_error());
                for (k = 0; k < B * osz; k++)
                    if (packed ? o1[k] != on[k] : fabsf(o1[k] - on[k]) > 1e-6f) bad++;
                CHECK(!bad, "LSTM H=%d mask %d seq %d: %d values of batch 1 differ from batch %d", H, mm, seq, bad, B);
                /* a change of the recurrent kernel reaches the packed copy */
                CHECK(advnn_weight_get(g, y, "recurrent_kernel", u, (int64_t)H * 4 * H) == ADVNN_OK, "%s", advnn_last_error());
                for (k = 0; k < H * 4 * H; k++) u[k] *= -0.5f;
                CHECK(advnn_weight_set(g, y, "recurrent_kernel", u, (int64_t)H * 4 * H) == ADVNN_OK, "%s", advnn_last_error());
                wf = advnn_ws_new(g, B);
                CHECK(advnn_infer(wn, B, in, y, on) == ADVNN_OK && advnn_infer(wf, B, in, y, of) == ADVNN_OK, "%s", advnn_last_error());
                CHECK(!memcmp(on, of, (size_t)B * osz * sizeof(float)), "LSTM H=%d: a used workspace missed the new weights", H);
                CHECK(memcmp(on, o1, (size_t)B * osz * sizeof(float)), "LSTM H=%d: new weights, same outputs", H);
                advnn_ws_free(w1); advnn_ws_free(wn); advnn_ws_free(wf);
                advnn_graph_free(g);
            }
}

/* advnn_infer runs a call's rows in slices (advnn__infer_sub: the widest layer's activations of a
 * slice in L2): a call of 61 rows on a network whose 40 x 64 convolution output makes slices of 25
 * rows (25, 25, 11) gives the bits of one pass over all 61, of a call on 2 threads, and of every
 * 2-row call; the last slice never has 1 row (that is the batch-1 path, which sums a 648-input Dense
 * otherwise): 51 rows -> 25, 26. And a network with a loss is not sliced (the loss sums over the call). */
static void test_slices(void) {
    int sh[2] = {40, 24}, one = 1, x, y, h, k, r, cat[2];
    advnn_graph *g = advnn_graph_new();
    float *xi = (float *)malloc(61 * 40 * 24 * sizeof(float)), a[61 * 3], b[61 * 3], c[61 * 3], d[61 * 3];
    const float *in[2];
    advnn_ws *ws, *w2;
    x = advnn_input(g, "x", 2, sh); y = advnn_input(g, "y", 1, &one);
    h = advnn_batchnorm(g, advnn_conv1d(g, x, 64, 3, 1, ADVNN_PAD_SAME, ADVNN_ACT_RELU));
    h = advnn_conv1d(g, h, 16, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU);
    cat[0] = advnn_lstm(g, h, 8, 0, -1); cat[1] = advnn_flatten(g, h);
    h = advnn_dense(g, advnn_concat(g, 2, cat), 3, ADVNN_ACT_LINEAR);   /* K = 648: batch 1 sums otherwise */
    advnn_loss_cce_logits(g, h, y, -1);
    if (!xi || advnn_graph_finalize(g, 11) != ADVNN_OK) { CHECK(0, "setup: %s", advnn_last_error()); free(xi); return; }
    for (k = 0; k < 61 * 40 * 24; k++) xi[k] = (float)sin(0.11 * k + 0.5) * 1.3f;
    in[0] = xi; in[1] = NULL;
    ws = advnn_ws_new(g, 61); w2 = advnn_ws_new(g, 61);
    CHECK(ws && w2 && advnn_ws_set_threads(w2, 2) == ADVNN_OK, "workspaces: %s", advnn_last_error());
    CHECK(advnn_infer(ws, 61, in, h, a) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(ws->psub == 25, "slices of %d rows, expected 25 (256 KiB / (40 x 64 x 4 B))", ws->psub);
    ws->psub = 61;   /* one pass */
    CHECK(advnn_infer(ws, 61, in, h, b) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_infer(w2, 61, in, h, c) == ADVNN_OK, "%s", advnn_last_error());
    for (r = 0; r + 1 < 61; r += 2) {
        in[0] = xi + (size_t)r * 40 * 24;
        CHECK(advnn_infer(ws, r + 3 == 61 ? 3 : 2, in, h, d + r * 3) == ADVNN_OK, "%s", advnn_last_error());
        if (r + 3 == 61) break;
    }
    CHECK(!memcmp(a, b, sizeof a), "sliced call differs from one pass");
    CHECK(!memcmp(a, c, sizeof a), "sliced call differs from 2 threads");
    CHECK(!memcmp(a, d, sizeof a), "sliced call differs from calls of 2-3 rows");
    /* 51 rows: 25 and 26, not 25, 25 and a row on the batch-1 path (which sums the K = 648 Dense
     * differently: the last row would differ from a 51-row pass) */
    ws->psub = 25;
    in[0] = xi;
    CHECK(advnn_infer(ws, 51, in, h, c) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_infer(ws, 1, in, h, d) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(!memcmp(a, c, 51 * 3 * sizeof(float)), "51 rows in slices differ from one pass");
#ifdef ADVNN__VECTOR   /* (the scalar kernels sum a row alike at batch 1) */
    if (ADVNN__VEC_LIVE()) CHECK(memcmp(a, d, 3 * sizeof(float)), "batch 1 gives a pass's bits: the 51-row case tests nothing");
#endif
    {   /* the loss: one pass */
        advnn_ws *w3 = advnn_ws_new(g, 61);
        float yv[61], lo[61];
        int loss = advnn_node_count(g) - 1;
        for (k = 0; k < 61; k++) yv[k] = (float)(k % 3);
        in[0] = xi; in[1] = yv;
        CHECK(w3 && advnn_infer(w3, 61, in, loss, lo) == ADVNN_OK, "loss: %s", advnn_last_error());
        CHECK(w3 && w3->psub == 61, "a loss sliced into %d rows", w3 ? w3->psub : -1);
        advnn_ws_free(w3);
    }
    advnn_ws_free(ws); advnn_ws_free(w2);
    advnn_graph_free(g);
    free(xi);
}

/* Dropout (outside training), reshape and gradient reversal copy their input; in an inference
 * workspace their output is a view of it. Asked for directly, such a node gives the input's rows
 * bit for bit (a dropout right after an input: the caller's rows); a network through them gives what
 * the same network without them gives (the same weights), in slices, on 2 threads, and call after
 * call on inputs in fresh buffers, each freed after its call (ASan: no view outlives its call). */
static void test_identity_views(void) {
    enum { VR = 37, ND = 6 };
    int six = ND, sh[2] = {2, 3}, x, d1, r1, g1, h, d2, o, x2, h2, o2, c, k, r, bad = 0;
    advnn_graph *g = advnn_graph_new(), *g2 = advnn_graph_new();
    float out[VR * ND], want[VR * ND], w[64 * ND];
    const float *in[1];
    advnn_ws *ws[3], *wt;
    x = advnn_input(g, "x", 1, &six);
    d1 = advnn_dropout(g, x, 0.3f);
    r1 = advnn_reshape(g, d1, 2, sh);
    g1 = advnn_grad_reverse(g, advnn_flatten(g, r1), 1.0f);
    h = advnn_dense(g, g1, 5, ADVNN_ACT_RELU);
    d2 = advnn_dropout(g, h, 0.5f);
    o = advnn_dense(g, d2, 2, ADVNN_ACT_LINEAR);
    x2 = advnn_input(g2, "x", 1, &six);
    h2 = advnn_dense(g2, x2, 5, ADVNN_ACT_RELU);
    o2 = advnn_dense(g2, h2, 2, ADVNN_ACT_LINEAR);
    if (advnn_graph_finalize(g, 3) != ADVNN_OK || advnn_graph_finalize(g2, 4) != ADVNN_OK) { CHECK(0, "finalize: %s", advnn_last_error()); return; }
    {   /* g2's weights = g's */
        static const char *names[2] = {"kernel", "bias"};
        int pairs[2][2] = {{h, h2}, {o, o2}}, sz[2][2] = {{ND * 5, 5}, {5 * 2, 2}}, p, b;
        for (p = 0; p < 2; p++)
            for (b = 0; b < 2; b++)
                CHECK(advnn_weight_get(g, pairs[p][0], names[b], w, sz[p][b]) == ADVNN_OK &&
                      advnn_weight_set(g2, pairs[p][1], names[b], w, sz[p][b]) == ADVNN_OK, "weights: %s", advnn_last_error());
    }
    ws[0] = advnn_ws_new(g, VR); ws[1] = advnn_ws_new(g, VR); ws[2] = advnn_ws_new(g, VR); wt = advnn_ws_new(g2, VR);
    CHECK(ws[0] && ws[1] && ws[2] && wt && advnn_ws_set_threads(ws[1], 2) == ADVNN_OK, "workspaces: %s", advnn_last_error());
    if (!ws[0] || !ws[1] || !ws[2] || !wt) return;
    for (c = 0; c < 4; c++) {   /* four calls, each on a fresh buffer */
        float *xi = (float *)malloc(VR * ND * sizeof(float));
        int n = c == 3 ? 1 : VR, node[4] = {d1, r1, g1, o};
        for (k = 0; k < VR * ND; k++) xi[k] = (float)sin(0.37 * k + c) * 2.0f;
        in[0] = xi;
        CHECK(advnn_infer(wt, n, in, o2, want) == ADVNN_OK, "%s", advnn_last_error());
        if (c == 0) {   /* ws[2]: slices of 5 rows (37 = 5 x 6 + 7), set once its plan for o is made */
            CHECK(advnn_infer(ws[2], n, in, o, out) == ADVNN_OK, "%s", advnn_last_error());
            ws[2]->psub = 5;
        }
        for (int wi = 0; wi < 3; wi++)
            for (int q = wi == 2 ? 3 : 0; q < 4; q++) {   /* (a plan for another node resizes the slices) */
                const int m = q < 3 ? ND : 2;
                CHECK(advnn_infer(ws[wi], n, in, node[q], out) == ADVNN_OK, "%s", advnn_last_error());
                for (r = 0; r < n * m; r++)
                    if (memcmp(&out[r], q < 3 ? &xi[r] : &want[r], sizeof(float))) bad++;
            }
        free(xi);
    }
    CHECK(!bad, "%d values differ from the input or from the network without the identity nodes", bad);
    CHECK(ws[2]->psub == 5, "the sliced workspace ran slices of %d rows", ws[2]->psub);
    for (k = 0; k < 3; k++) advnn_ws_free(ws[k]);
    advnn_ws_free(wt);
    advnn_graph_free(g); advnn_graph_free(g2);
}

int main(void) {
    fill_x();
    RUN(test_writers_refresh_the_cache);
    RUN(test_training_refreshes_the_cache);
    RUN(test_fit_restore_refreshes_the_cache);
    RUN(test_folded_values);
    RUN(test_nonfinite_inputs);
    RUN(test_lstm_packed);
    RUN(test_slices);
    RUN(test_identity_views);
    return th_report();
}
