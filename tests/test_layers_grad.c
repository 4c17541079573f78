/* Finite-difference gradient checks for every dense-family layer, activation and loss (method and
 * tolerance: tests/gradcheck.h). */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "gradcheck.h"

/* input(4) -> dense(5, linear) -> [layer] -> dense(3) -> MSE(weighted) */
static fixture chain(int (*layer)(advnn_graph *, int, int), int arg, int loss_kind) {
    fixture f;
    advnn__rng r;
    int four = 4, three = 3, one = 1, x, y, w, h, o;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 5);
    f.g = advnn_graph_new();
    f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &four);
    w = advnn_input(f.g, "w", 1, &one);
    h = advnn_dense(f.g, x, 5, ADVNN_ACT_LINEAR);
    h = layer(f.g, h, arg);
    if (loss_kind == 0) {
        y = advnn_input(f.g, "y", 1, &three);
        o = advnn_dense(f.g, h, 3, ADVNN_ACT_LINEAR);
        advnn_loss_mse(f.g, o, y, w);
        add_data(&f, "y", rand_tensor(&r, NB, 3, -1, 1));
    } else if (loss_kind == 1) {
        y = advnn_input(f.g, "y", 1, &one);
        o = advnn_dense(f.g, h, 1, ADVNN_ACT_LINEAR);
        advnn_loss_bce_logits(f.g, o, y, w);
        add_data(&f, "y", rand_tensor(&r, NB, 1, 0, 1));   /* soft labels exercise the general formula */
    } else {
        y = advnn_input(f.g, "y", 1, &one);
        o = advnn_dense(f.g, h, 3, ADVNN_ACT_LINEAR);
        advnn_loss_cce_logits(f.g, o, y, w);
        {
            advnn_tensor *t = rand_tensor(&r, NB, 1, 0, 1);
            int i;
            for (i = 0; i < NB; i++) t->data[i] = (float)(i % 3);
            add_data(&f, "y", t);
        }
    }
    add_data(&f, "x", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&f, "w", rand_tensor(&r, NB, 1, 0.2f, 2.0f));
    CHECK(advnn_graph_finalize(f.g, 11) == ADVNN_OK, "finalize: %s", advnn_last_error());
    return f;
}

static int L_dense(advnn_graph *g, int in, int act) { return advnn_dense(g, in, 6, (advnn_act)act); }
static int L_act(advnn_graph *g, int in, int act) { return advnn_activation(g, in, (advnn_act)act); }
static int L_prelu(advnn_graph *g, int in, int unused) { (void)unused; return advnn_prelu(g, in); }
static int L_dropout(advnn_graph *g, int in, int unused) { (void)unused; return advnn_dropout(g, in, 0.3f); }
static int L_bn(advnn_graph *g, int in, int unused) { (void)unused; return advnn_batchnorm(g, in); }
static int L_softmax(advnn_graph *g, int in, int unused) { (void)unused; return advnn_softmax(g, in); }
static int L_none(advnn_graph *g, int in, int unused) { (void)unused; (void)g; return in; }

static const char *act_names[] = {"linear", "relu", "leaky_relu", "prelu", "elu", "sigmoid", "tanh", "softplus"};

static void test_dense_every_activation(void) {
    int a;
    for (a = 0; a < (int)ADVNN_ACT_COUNT; a++) {
        fixture f;
        char what[64];
        if (a == ADVNN_ACT_PRELU) continue;
        f = chain(L_dense, a, 0);
        snprintf(what, sizeof what, "dense+%s", act_names[a]);
        gradcheck(&f, what);
        free_fixture(&f);
    }
}

static void test_activation_nodes(void) {
    int a;
    for (a = 1; a < (int)ADVNN_ACT_COUNT; a++) {
        fixture f;
        char what[64];
        if (a == ADVNN_ACT_PRELU) continue;
        f = chain(L_act, a, 0);
        snprintf(what, sizeof what, "activation %s", act_names[a]);
        gradcheck(&f, what);
        free_fixture(&f);
    }
}

static void test_prelu(void) {
    fixture f = chain(L_prelu, 0, 0);
    /* move the slopes off their common initial value so a mix-up between channels shows */
    int i;
    for (i = 0; i < f.g->n_par; i++)
        if (f.g->nodes[f.g->par[i].node].kind == ADVNN__PRELU) {
            int k;
            for (k = 0; k < f.g->par[i].size; k++) f.g->params[f.g->par[i].off + k] = 0.1f + 0.15f * (float)k;
        }
    gradcheck(&f, "prelu");
    free_fixture(&f);
}

static void test_softmax(void) { fixture f = chain(L_softmax, 0, 0); gradcheck(&f, "softmax"); free_fixture(&f); }

static int L_std(advnn_graph *g, int in, int unused) { (void)unused; return advnn_standardize(g, in); }
static void test_standardize(void) {
    fixture f = chain(L_std, 0, 0);
    int i;
    for (i = 0; i < f.g->n_par; i++)   /* offsets and scales away from 0 and 1, different per channel */
        if (f.g->nodes[f.g->par[i].node].kind == ADVNN__STANDARDIZE) {
            int k;
            for (k = 0; k < f.g->par[i].size; k++) f.g->params[f.g->par[i].off + k] = 0.3f + 0.4f * (float)k;
        }
    gradcheck(&f, "standardize");
    free_fixture(&f);
}

static void test_dropout(void) { fixture f = chain(L_dropout, 0, 0); gradcheck(&f, "dropout"); free_fixture(&f); }

static void test_batchnorm_train(void) {
    fixture f = chain(L_bn, 0, 0);
    int i;
    for (i = 0; i < f.g->n_par; i++)  /* non-trivial gamma and beta */
        if (f.g->nodes[f.g->par[i].node].kind == ADVNN__BATCHNORM && f.g->par[i].trainable) {
            int k;
            for (k = 0; k < f.g->par[i].size; k++) f.g->params[f.g->par[i].off + k] += 0.3f * (float)(k + 1) - 0.5f;
        }
    gradcheck(&f, "batchnorm (train mode)");
    free_fixture(&f);
}

static void test_losses(void) {
    fixture f;
    f = chain(L_none, 0, 0); gradcheck(&f, "weighted MSE"); free_fixture(&f);
    f = chain(L_none, 0, 1); gradcheck(&f, "weighted BCE from logits"); free_fixture(&f);
    f = chain(L_none, 0, 2); gradcheck(&f, "weighted CCE from logits (class indices)"); free_fixture(&f);
}

/* CCE with probability targets, and two losses with coefficients in one objective. */
static void test_cce_probs_and_loss_sum(void) {
    fixture f;
    advnn__rng r;
    int four = 4, three = 3, one = 1, x, y, yb, w, h, o, ob, lb;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 8);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &four);
    y = advnn_input(f.g, "y", 1, &three);
    yb = advnn_input(f.g, "yb", 1, &one);
    w = advnn_input(f.g, "w", 1, &one);
    h = advnn_dense(f.g, x, 5, ADVNN_ACT_TANH);
    o = advnn_dense(f.g, h, 3, ADVNN_ACT_LINEAR);
    advnn_loss_cce_logits(f.g, o, y, w);
    ob = advnn_dense(f.g, h, 1, ADVNN_ACT_LINEAR);
    lb = advnn_loss_bce_logits(f.g, ob, yb, -1);
    advnn_loss_scale(f.g, lb, -0.7f);
    {
        advnn_tensor *t = rand_tensor(&r, NB, 3, 0, 1);
        int i;
        for (i = 0; i < NB; i++) {  /* rows of probabilities */
            float s = t->data[3 * i] + t->data[3 * i + 1] + t->data[3 * i + 2];
            t->data[3 * i] /= s; t->data[3 * i + 1] /= s; t->data[3 * i + 2] /= s;
        }
        add_data(&f, "y", t);
    }
    add_data(&f, "yb", rand_tensor(&r, NB, 1, 0, 1));
    add_data(&f, "x", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&f, "w", rand_tensor(&r, NB, 1, 0.2f, 2.0f));
    CHECK(advnn_graph_finalize(f.g, 3) == ADVNN_OK, "%s", advnn_last_error());
    gradcheck(&f, "CCE(probabilities) - 0.7 BCE");
    free_fixture(&f);
}

/* concat of two branches, one of them a shared dense applied to a second stream. */
static void test_concat_and_shared(void) {
    fixture f;
    advnn__rng r;
    int four = 4, two = 2, one = 1, x1, x2, y, a, b, c, o, s;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 9);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x1 = advnn_input(f.g, "x1", 1, &four);
    x2 = advnn_input(f.g, "x2", 1, &four);
    y = advnn_input(f.g, "y", 1, &two);
    a = advnn_dense(f.g, x1, 3, ADVNN_ACT_TANH);
    s = advnn_shared(f.g, a, x2, -1);
    b = advnn_dense(f.g, x2, 2, ADVNN_ACT_SIGMOID);
    { int ins[3]; ins[0] = a; ins[1] = b; ins[2] = s; c = advnn_concat(f.g, 3, ins); }
    o = advnn_dense(f.g, c, 2, ADVNN_ACT_LINEAR);
    advnn_loss_mse(f.g, o, y, -1);
    (void)one;
    add_data(&f, "x1", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&f, "x2", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&f, "y", rand_tensor(&r, NB, 2, -1, 1));
    CHECK(advnn_graph_finalize(f.g, 4) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_param_count(f.g, NULL) == (4 * 3 + 3) + (4 * 2 + 2) + (8 * 2 + 2), "shared layer must not add parameters: %lld",
          (long long)advnn_param_count(f.g, NULL));
    gradcheck(&f, "concat + shared dense");
    free_fixture(&f);
}

/* One node read by an activation, a PReLU, a reshape, two gradient reversals in a row (-2 x -0.5: the
 * gradient passes unchanged, which finite differences can check), a dropout and two BatchNorms (the
 * last made runs backward first): the first of them to run backward writes the node's gradient
 * (advnn__dadd, advnn_bn_bwd_dx_set), each of the others adds to it. */
static int L_fanout(advnn_graph *g, int in, int unused) {
    int five = 5, ins[7];
    (void)unused;
    ins[0] = advnn_batchnorm(g, in);
    ins[1] = advnn_activation(g, in, ADVNN_ACT_TANH);
    ins[2] = advnn_prelu(g, in);
    ins[3] = advnn_reshape(g, in, 1, &five);
    ins[4] = advnn_grad_reverse(g, advnn_grad_reverse(g, in, 2.0f), 0.5f);
    ins[5] = advnn_dropout(g, in, 0.3f);
    ins[6] = advnn_batchnorm(g, in);
    return advnn_concat(g, 7, ins);
}
static void test_fanout(void) { fixture f = chain(L_fanout, 0, 0); gradcheck(&f, "fan-out to six kinds"); free_fixture(&f); }

/* Dense on a (T, F) input acts on the last axis (a kernel-1 Conv1D), BatchNorm over N*T rows. */
static void test_sequence_dense_bn(void) {
    fixture f;
    advnn__rng r;
    int sh[2], one = 1, x, y, h;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 10);
    sh[0] = 3; sh[1] = 4;
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 2, sh);
    h = advnn_dense(f.g, x, 5, ADVNN_ACT_ELU);
    h = advnn_batchnorm(f.g, h);
    h = advnn_dense(f.g, h, 1, ADVNN_ACT_LINEAR);
    sh[1] = 1;
    y = advnn_input(f.g, "y", 2, sh);
    advnn_loss_mse(f.g, h, y, -1);
    (void)one;
    add_data(&f, "x", rand_tensor(&r, NB, 12, -2, 2));
    add_data(&f, "y", rand_tensor(&r, NB, 3, -1, 1));
    f.t[0]->ndim = 3; f.t[0]->shape[1] = 3; f.t[0]->shape[2] = 4; /* x viewed as (N, 3, 4) */
    f.t[1]->ndim = 3; f.t[1]->shape[1] = 3; f.t[1]->shape[2] = 1; /* y viewed as (N, 3, 1) */
    CHECK(advnn_graph_finalize(f.g, 4) == ADVNN_OK, "%s", advnn_last_error());
    gradcheck(&f, "dense + batchnorm on a (3,4) sequence");
    free_fixture(&f);
}

/* BatchNorm in eval mode: the frozen-statistics backward. */
static void test_batchnorm_eval_backward(void) {
    fixture f = chain(L_bn, 0, 0);
    advnn_trainer *tr = advnn_trainer_new(f.g, NB, 1);
    int64_t idx[NB];
    int i, bn = -1;
    double an, fd, lp, lm;
    float *gam;
    for (i = 0; i < NB; i++) idx[i] = i;
    for (i = 0; i < f.g->n_nodes; i++) if (f.g->nodes[i].kind == ADVNN__BATCHNORM) bn = i;
    /* running statistics away from the identity */
    for (i = 0; i < 5; i++) { advnn__P(tr->ws, &f.g->nodes[bn], 2)[i] = 0.1f * (float)i; advnn__P(tr->ws, &f.g->nodes[bn], 3)[i] = 0.5f + 0.2f * (float)i; }
    tr->ws->training = 0;
    advnn__mark_needed(tr->ws, -1); advnn__mark_grad(tr->ws);
    advnn__gather(tr->ws, f.d, idx, 0, NB);
    advnn__forward(tr->ws, NB);
    advnn__backward(tr->ws, NB);
    an = tr->ws->pgrad[f.g->par[0].off + 3];  /* first dense's weight: through the eval-mode BN backward */
    gam = &f.g->params[f.g->par[0].off + 3];
    {
        float w0 = *gam;
        *gam = w0 + 1e-3f; advnn__forward(tr->ws, NB); lp = advnn__objective(tr->ws);
        *gam = w0 - 1e-3f; advnn__forward(tr->ws, NB); lm = advnn__objective(tr->ws);
        *gam = w0;
        fd = (lp - lm) / (2 * (double)1e-3f);
    }
    CHECK(fabs(an - fd) <= 2e-2 * fabs(fd) + 1e-4, "eval-mode batchnorm backward: analytic %g, fd %g", an, fd);
    advnn_trainer_free(tr);
    free_fixture(&f);
}

/* Spectral normalisation: finite-difference gradients through W / (u^T W v), also when the layer is
 * shared by a second stream; sigma from the stored vectors matches the largest singular value, the
 * trainer's one iteration per update keeps it matched, and the vectors travel with the model file. */
static int L_dense_sn(advnn_graph *g, int in, int act) { return advnn_dense_sn(g, in, 6, (advnn_act)act); }

static double top_singular(const float *W, int K, int U) {   /* power iteration on W^T W in double */
    double v[64], t[64], s = 0;
    int it, i, j;
    for (j = 0; j < U; j++) v[j] = 1.0 + 0.1 * j;
    for (it = 0; it < 2000; it++) {
        double n = 0;
        for (j = 0; j < U; j++) t[j] = 0;
        for (i = 0; i < K; i++) {
            double r = 0;
            for (j = 0; j < U; j++) r += W[i * U + j] * v[j];
            for (j = 0; j < U; j++) t[j] += W[i * U + j] * r;
        }
        for (j = 0; j < U; j++) n += t[j] * t[j];
        n = sqrt(n);
        for (j = 0; j < U; j++) v[j] = t[j] / n;
        s = sqrt(n);
    }
    return s;
}

static void test_spectral_norm(void) {
    fixture f = chain(L_dense_sn, ADVNN_ACT_TANH, 0);
    int id = -1, i;
    const advnn__node *n;
    double sig_true, sig_est, r;
    advnn_trainer *tr;
    int64_t idx[NB];
    void *buf; size_t len;
    advnn_graph *h;
    for (i = 0; i < f.g->n_nodes; i++) if (f.g->nodes[i].kind == ADVNN__DENSE && f.g->nodes[i].ip[2]) id = i;
    CHECK(id >= 0, "no spectrally normalised node");
    if (id < 0) { free_fixture(&f); return; }
    n = &f.g->nodes[id];
    CHECK(advnn_param_count(f.g, NULL) == 4 * 5 + 5 + 5 * 6 + 6 + 6 * 3 + 3, "u and v must not count as trainable (%lld)",
          (long long)advnn_param_count(f.g, NULL));
    gradcheck(&f, "dense_sn+tanh");
    {
        const float *W = f.g->params + f.g->par[n->param0].off, *u = f.g->params + f.g->par[n->param0 + 2].off;
        const float *v = f.g->params + f.g->par[n->param0 + 3].off;
        int j;
        sig_true = top_singular(W, 5, 6);
        sig_est = 0;
        for (i = 0; i < 5; i++) for (j = 0; j < 6; j++) sig_est += (double)u[i] * W[i * 6 + j] * v[j];
        CHECK(fabs(sig_est / sig_true - 1) < 1e-4, "initial sigma %g, true %g", sig_est, sig_true);
    }
    tr = advnn_trainer_new(f.g, NB, 3);
    advnn_trainer_set_optim(tr, NULL, advnn_adam(0.05f));
    for (i = 0; i < NB; i++) idx[i] = i;
    for (i = 0; i < 50; i++) CHECK(advnn_train_step(tr, f.d, idx, NB, NULL) == ADVNN_OK, "%s", advnn_last_error());
    {
        const float *W = f.g->params + f.g->par[n->param0].off, *u = f.g->params + f.g->par[n->param0 + 2].off;
        const float *v = f.g->params + f.g->par[n->param0 + 3].off;
        int j;
        sig_true = top_singular(W, 5, 6);
        sig_est = 0;
        for (i = 0; i < 5; i++) for (j = 0; j < 6; j++) sig_est += (double)u[i] * W[i * 6 + j] * v[j];
        r = sig_est / sig_true;
        CHECK(fabs(r - 1) < 1e-2, "after 50 updates sigma estimate %g, true %g", sig_est, sig_true);
    }
    /* the vectors travel with the model file: the reloaded model computes the same outputs */
    CHECK(advnn_model_save_mem(f.g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h != NULL, "%s", advnn_last_error());
    if (h) {
        float out1[NB * 6], out2[NB * 6];
        const float *in[3];
        advnn_ws *w1 = advnn_ws_new(f.g, NB), *w2 = advnn_ws_new(h, NB);
        for (i = 0; i < advnn_input_count(f.g); i++) in[i] = f.t[0]->data;
        for (i = 0; i < f.nt; i++) {
            int k;
            for (k = 0; k < advnn_input_count(f.g); k++)
                if (strcmp(advnn_node_name(f.g, advnn_input_node(f.g, k)), f.tname[i]) == 0) in[k] = f.t[i]->data;
        }
        CHECK(h->nodes[id].ip[2] == 1, "spectral norm flag lost by the model file");
        CHECK(advnn_infer(w1, NB, in, id, out1) == ADVNN_OK && advnn_infer(w2, NB, in, id, out2) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(memcmp(out1, out2, sizeof out1) == 0, "reloaded spectrally normalised layer differs");
        advnn_ws_free(w1); advnn_ws_free(w2);
    }
    advnn_graph_free(h);
    free(buf);
    advnn_trainer_free(tr);
    free_fixture(&f);
    /* shared: the second use adds its gradient through the same normalisation */
    {
        fixture s;
        advnn__rng rr;
        int four = 4, one = 1, x1, x2, y, d1, d2, o1, o2;
        memset(&s, 0, sizeof s);
        advnn__rng_seed(&rr, 8);
        s.g = advnn_graph_new(); s.d = advnn_dataset_new();
        x1 = advnn_input(s.g, "x1", 1, &four); x2 = advnn_input(s.g, "x2", 1, &four); y = advnn_input(s.g, "y", 1, &one);
        d1 = advnn_dense_sn(s.g, x1, 3, ADVNN_ACT_TANH);
        d2 = advnn_shared(s.g, d1, x2, -1);
        o1 = advnn_dense(s.g, d1, 1, ADVNN_ACT_LINEAR); o2 = advnn_dense(s.g, d2, 1, ADVNN_ACT_LINEAR);
        advnn_loss_mse(s.g, o1, y, -1); advnn_loss_bce_logits(s.g, o2, y, -1);
        add_data(&s, "x1", rand_tensor(&rr, NB, 4, -2, 2)); add_data(&s, "x2", rand_tensor(&rr, NB, 4, -2, 2));
        add_data(&s, "y", rand_tensor(&rr, NB, 1, 0, 1));
        CHECK(advnn_graph_finalize(s.g, 4) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(s.g->nodes[d2].ip[2] == 1 && s.g->nodes[d2].n_param == 4, "the shared copy must be normalised too");
        gradcheck(&s, "dense_sn shared by two streams");
        free_fixture(&s);
    }
}

/* Per-sample (log) MSE node: gradients to both the prediction and the target. */
static void test_sample_mse(void) {
    int lg;
    for (lg = 0; lg < 2; lg++) {
        fixture f;
        advnn__rng r;
        int four = 4, one = 1, x, t, y, p, e;
        memset(&f, 0, sizeof f);
        advnn__rng_seed(&r, 21);
        f.g = advnn_graph_new(); f.d = advnn_dataset_new();
        x = advnn_input(f.g, "x", 1, &four); t = advnn_input(f.g, "xt", 1, &four); y = advnn_input(f.g, "y", 1, &one);
        p = advnn_dense(f.g, x, 4, ADVNN_ACT_TANH);
        e = advnn_sample_mse(f.g, p, advnn_dense(f.g, t, 4, ADVNN_ACT_LINEAR), lg);
        advnn_loss_mse(f.g, advnn_dense(f.g, e, 1, ADVNN_ACT_LINEAR), y, -1);
        add_data(&f, "x", rand_tensor(&r, NB, 4, -2, 2)); add_data(&f, "xt", rand_tensor(&r, NB, 4, -1, 1));
        add_data(&f, "y", rand_tensor(&r, NB, 1, -1, 1));
        CHECK(advnn_graph_finalize(f.g, 3) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(advnn_sample_mse(f.g, p, y, 0) < 0, "shape mismatch accepted after finalize");
        gradcheck(&f, lg ? "log per-sample MSE" : "per-sample MSE");
        free_fixture(&f);
    }
    {
        advnn_graph *g = advnn_graph_new();
        int four = 4, three = 3, a = advnn_input(g, "a", 1, &four), b = advnn_input(g, "b", 1, &three);
        CHECK(advnn_sample_mse(g, a, b, 1) < 0 && advnn_graph_finalize(g, 1) == ADVNN_ERR_SHAPE, "4 vs 3 values accepted");
        advnn_graph_free(g);
    }
}

int main(void) {
    RUN(test_dense_every_activation);
    RUN(test_activation_nodes);
    RUN(test_prelu);
    RUN(test_dropout);
    RUN(test_softmax);
    RUN(test_standardize);
    RUN(test_batchnorm_train);
    RUN(test_batchnorm_eval_backward);
    RUN(test_losses);
    RUN(test_cce_probs_and_loss_sum);
    RUN(test_concat_and_shared);
    RUN(test_fanout);
    RUN(test_sequence_dense_bn);
    RUN(test_spectral_norm);
    RUN(test_sample_mse);
    return th_report();
}
