/* The two-player trainer (advnn_adv_fit / advnn_adv_step): each schedule does exactly the steps it
 * documents (replayed by hand with groups and loss coefficients, bit for bit), frozen players keep
 * their weights and BatchNorm statistics, lambda ramps, the adversary reads a second data stream,
 * epoch selection restores the right checkpoint, background-only weights, bad options are refused,
 * and on a small data/simulation toy the adversary removes the simulation dependence. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

#define N 64
#define B 16

static void fill(advnn__rng *r, advnn_tensor *t, float lo, float hi) {
    int64_t i;
    for (i = 0; i < t->size; i++) t->data[i] = lo + (hi - lo) * (float)advnn__rng_uniform(r);
}
static double gauss(advnn__rng *r) {   /* Box-Muller */
    double u = advnn__rng_uniform(r), v = advnn__rng_uniform(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}
static advnn_tensor *tens(int64_t n, int64_t per) {
    int64_t s[2];
    s[0] = n; s[1] = per;
    return advnn_tensor_new(per > 0 ? 2 : 1, s);
}

/* x(4) -> main: BN -> dense 5 tanh -> dense 1 = z; BCE(z, y)
 *         adv:  [reverse] -> BN -> dense 4 tanh -> dense 1; MSE against m, weights aw */
typedef struct { advnn_graph *g; int lm, la, rev, bn_main, bn_adv; } net;
static net make_net(int with_rev, uint64_t seed) {
    net n;
    int four = 4, one = 1, x, y, m, aw, z, a;
    n.g = advnn_graph_new();
    x = advnn_input(n.g, "x", 1, &four); y = advnn_input(n.g, "y", 1, &one);
    m = advnn_input(n.g, "m", 1, &one); aw = advnn_input(n.g, "aw", 1, &one);
    n.bn_main = advnn_batchnorm(n.g, x);
    z = advnn_dense(n.g, advnn_dense(n.g, n.bn_main, 5, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    n.lm = advnn_loss_bce_logits(n.g, z, y, -1);
    advnn_group(n.g, "adv");
    n.rev = with_rev ? advnn_grad_reverse(n.g, z, 1.0f) : -1;
    n.bn_adv = advnn_batchnorm(n.g, with_rev ? n.rev : z);
    a = advnn_dense(n.g, advnn_dense(n.g, n.bn_adv, 4, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    n.la = advnn_loss_mse(n.g, a, m, aw);
    CHECK(advnn_graph_finalize(n.g, seed) == ADVNN_OK, "%s", advnn_last_error());
    return n;
}

typedef struct { advnn_dataset *d; advnn_tensor *t[4]; } data;
static data make_data(uint64_t seed, int64_t n) {
    data D;
    advnn__rng r;
    advnn__rng_seed(&r, seed);
    D.d = advnn_dataset_new();
    D.t[0] = tens(n, 4); D.t[1] = tens(n, 1); D.t[2] = tens(n, 1); D.t[3] = tens(n, 1);
    fill(&r, D.t[0], -2, 2); fill(&r, D.t[2], -1, 1); fill(&r, D.t[3], 0.5f, 1.5f);
    {
        int64_t i;
        for (i = 0; i < n; i++) D.t[1]->data[i] = (float)(D.t[0]->data[4 * i] + 0.3f * D.t[2]->data[i] > 0);
    }
    advnn_dataset_add(D.d, "x", D.t[0]); advnn_dataset_add(D.d, "y", D.t[1]);
    advnn_dataset_add(D.d, "m", D.t[2]); advnn_dataset_add(D.d, "aw", D.t[3]);
    return D;
}
static void free_data(data *D) { int i; advnn_dataset_free(D->d); for (i = 0; i < 4; i++) advnn_tensor_free(D->t[i]); }

static advnn_adv_opts opts_for(const net *n, advnn_adv_mode mode) {
    advnn_adv_opts o = advnn_adv_defaults();
    o.mode = mode; o.main_loss = n->lm; o.adv_loss = n->la; o.grad_reverse = n->rev; o.verbose = 0;
    return o;
}
static int same_params(const advnn_graph *a, const advnn_graph *b) {
    return a->n_params == b->n_params && memcmp(a->params, b->params, (size_t)a->n_params * sizeof(float)) == 0;
}
static float *param_block(advnn_graph *g, int node, int k) { return g->params + g->par[g->nodes[node].param0 + k].off; }

/* Alternating: k adversary steps (main frozen), then one main step on L_main - lambda L_adv
 * (adversary frozen, its BatchNorm on running statistics), replayed with advnn_train_step. */
static void test_alternating_replay(void) {
    const float lambda = 2.0f;
    net a = make_net(0, 5), b = make_net(0, 5);
    data D = make_data(1, N);
    advnn_trainer *ta = advnn_trainer_new(a.g, B, 9), *tb = advnn_trainer_new(b.g, B, 9);
    advnn_adv_opts o = opts_for(&a, ADVNN_ADV_ALTERNATING);
    int64_t idx[B];
    int i, step, k;
    o.adv_steps = 2;
    advnn_trainer_set_optim(ta, "adv", advnn_adam(1e-2f)); advnn_trainer_set_optim(tb, "adv", advnn_adam(1e-2f));
    for (step = 0; step < 3; step++) {
        float rm_before[1], rv_before[1];
        double lm, la;
        for (i = 0; i < B; i++) idx[i] = (step * 5 + i * 3) % N;
        CHECK(advnn_adv_step(ta, &o, lambda, D.d, idx, NULL, B, &lm, &la) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(isfinite(lm) && isfinite(la), "losses %g %g", lm, la);
        /* by hand */
        advnn_trainer_set_trainable(tb, "main", 0); advnn_trainer_set_trainable(tb, "adv", 1);
        advnn_loss_scale(b.g, b.lm, 0.0f); advnn_loss_scale(b.g, b.la, 1.0f);
        for (k = 0; k < 2; k++) CHECK(advnn_train_step(tb, D.d, idx, B, NULL) == ADVNN_OK, "%s", advnn_last_error());
        advnn_trainer_set_trainable(tb, "main", 1); advnn_trainer_set_trainable(tb, "adv", 0);
        advnn_loss_scale(b.g, b.lm, 1.0f); advnn_loss_scale(b.g, b.la, -lambda);
        rm_before[0] = param_block(b.g, b.bn_adv, 2)[0]; rv_before[0] = param_block(b.g, b.bn_adv, 3)[0];
        CHECK(advnn_train_step(tb, D.d, idx, B, NULL) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(param_block(b.g, b.bn_adv, 2)[0] == rm_before[0] && param_block(b.g, b.bn_adv, 3)[0] == rv_before[0],
              "a frozen BatchNorm updated its running statistics");
        advnn_trainer_set_trainable(tb, "adv", 1); advnn_loss_scale(b.g, b.la, 1.0f);
        CHECK(same_params(a.g, b.g), "step %d: advnn_adv_step differs from the hand-made alternating step", step);
    }
    CHECK(a.g->nodes[a.la].fp[0] == 1.0f, "the adversary loss coefficient was not restored");
    CHECK(ta->gon[0] && ta->gon[1], "the trainable flags were not restored");
    advnn_trainer_free(ta); advnn_trainer_free(tb); advnn_graph_free(a.g); advnn_graph_free(b.g); free_data(&D);
}

/* The alternating step computes a frozen main network without BatchNorm once per batch and reuses
 * it in the later adversary steps and in the main step (up to the first dropout, which draws a new
 * mask): the weights equal a hand replay that recomputes every pass, bit for bit, on 1 and 2 threads.
 * x(4) -> dense 6 PReLU -> dense 5 tanh [-> dropout] -> dense 1 = z; adversary on z as in make_net. */
static net make_plain_net(int dropout, uint64_t seed) {
    net n;
    int four = 4, one = 1, x, y, m, aw, z, a, h;
    n.g = advnn_graph_new();
    x = advnn_input(n.g, "x", 1, &four); y = advnn_input(n.g, "y", 1, &one);
    m = advnn_input(n.g, "m", 1, &one); aw = advnn_input(n.g, "aw", 1, &one);
    h = advnn_dense(n.g, advnn_prelu(n.g, advnn_dense(n.g, x, 6, ADVNN_ACT_LINEAR)), 5, ADVNN_ACT_TANH);
    if (dropout) h = advnn_dropout(n.g, h, 0.25f);
    z = advnn_dense(n.g, h, 1, ADVNN_ACT_LINEAR);
    n.lm = advnn_loss_bce_logits(n.g, z, y, -1);
    advnn_group(n.g, "adv");
    n.rev = -1; n.bn_main = -1;
    n.bn_adv = advnn_batchnorm(n.g, z);
    a = advnn_dense(n.g, advnn_dense(n.g, n.bn_adv, 4, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    n.la = advnn_loss_mse(n.g, a, m, aw);
    CHECK(advnn_graph_finalize(n.g, seed) == ADVNN_OK, "%s", advnn_last_error());
    return n;
}
/* Two trainers of the same seed on `threads` threads, adversary on Adam 1e-2, to run side by side. */
static void twin_trainers(const net *a, const net *b, int threads, advnn_trainer **ta, advnn_trainer **tb) {
    advnn_set_threads(threads);
    *ta = advnn_trainer_new(a->g, B, 9); *tb = advnn_trainer_new(b->g, B, 9);
    advnn_set_threads(1);
    advnn_trainer_set_optim(*ta, "adv", advnn_adam(1e-2f)); advnn_trainer_set_optim(*tb, "adv", advnn_adam(1e-2f));
}
static void test_reuse_replay(void) {
    const float lambda = 1.5f;
    data D = make_data(3, N);
    int dropout, threads;
    for (dropout = 0; dropout <= 1; dropout++)
        for (threads = 1; threads <= 2; threads++) {
            net a = make_plain_net(dropout, 6), b = make_plain_net(dropout, 6);
            advnn_trainer *ta, *tb;
            advnn_adv_opts o = opts_for(&a, ADVNN_ADV_ALTERNATING);
            int64_t idx[B];
            int i, step, k;
            twin_trainers(&a, &b, threads, &ta, &tb);
            o.adv_steps = 3;
            for (step = 0; step < 3; step++) {
                for (i = 0; i < B; i++) idx[i] = (step * 7 + i * 3) % N;
                CHECK(advnn_adv_step(ta, &o, lambda, D.d, idx, NULL, B, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
                advnn_trainer_set_trainable(tb, "main", 0); advnn_trainer_set_trainable(tb, "adv", 1);
                advnn_loss_scale(b.g, b.lm, 0.0f); advnn_loss_scale(b.g, b.la, 1.0f);
                for (k = 0; k < 3; k++) CHECK(advnn_train_step(tb, D.d, idx, B, NULL) == ADVNN_OK, "%s", advnn_last_error());
                advnn_trainer_set_trainable(tb, "main", 1); advnn_trainer_set_trainable(tb, "adv", 0);
                advnn_loss_scale(b.g, b.lm, 1.0f); advnn_loss_scale(b.g, b.la, -lambda);
                CHECK(advnn_train_step(tb, D.d, idx, B, NULL) == ADVNN_OK, "%s", advnn_last_error());
                advnn_trainer_set_trainable(tb, "adv", 1); advnn_loss_scale(b.g, b.la, 1.0f);
                CHECK(same_params(a.g, b.g), "dropout %d, %d thread(s), step %d: the reusing step differs from the replay",
                      dropout, threads, step);
            }
            advnn_trainer_free(ta); advnn_trainer_free(tb); advnn_graph_free(a.g); advnn_graph_free(b.g);
        }
    free_data(&D);
}

/* The same alternating step through a reversal node equals the coefficient version (to rounding),
 * and the joint step equals one advnn_train_step with the reversal node at lambda (bit for bit). */
static void test_reversal_variants(void) {
    net a = make_net(1, 5), b = make_net(0, 5), c = make_net(1, 5), d = make_net(1, 5);
    data D = make_data(2, N);
    advnn_trainer *ta = advnn_trainer_new(a.g, B, 4), *tb = advnn_trainer_new(b.g, B, 4);
    advnn_trainer *tc = advnn_trainer_new(c.g, B, 4), *td = advnn_trainer_new(d.g, B, 4);
    advnn_adv_opts oa = opts_for(&a, ADVNN_ADV_ALTERNATING), ob = opts_for(&b, ADVNN_ADV_ALTERNATING), oc = opts_for(&c, ADVNN_ADV_JOINT);
    int64_t idx[B], j;
    int i;
    double maxd = 0;
    advnn_trainer_set_optim(ta, NULL, advnn_sgd(0.1f, 0, 0)); advnn_trainer_set_optim(tb, NULL, advnn_sgd(0.1f, 0, 0));
    for (i = 0; i < B; i++) idx[i] = i * 2;
    CHECK(advnn_adv_step(ta, &oa, 3.0f, D.d, idx, NULL, B, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_adv_step(tb, &ob, 3.0f, D.d, idx, NULL, B, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
    /* node ids differ by the reversal node; compare parameter blocks in order */
    for (i = 0; i < a.g->n_par; i++)
        for (j = 0; j < a.g->par[i].size; j++) {
            double x = a.g->params[a.g->par[i].off + j], y = b.g->params[b.g->par[i].off + j];
            maxd = fmax(maxd, fabs(x - y));
        }
    CHECK(maxd < 1e-6, "reversal and coefficient variants differ by %g", maxd);
    CHECK(a.g->nodes[a.rev].fp[0] == 3.0f, "the trainer should leave the reversal node at the lambda it used");
    CHECK(advnn_adv_step(tc, &oc, 3.0f, D.d, idx, NULL, B, NULL, NULL) == ADVNN_OK, "%s", advnn_last_error());
    advnn_set_grad_reverse(d.g, d.rev, 3.0f);
    CHECK(advnn_train_step(td, D.d, idx, B, NULL) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(same_params(c.g, d.g), "the joint step differs from one train step through the reversal node");
    advnn_trainer_free(ta); advnn_trainer_free(tb); advnn_trainer_free(tc); advnn_trainer_free(td);
    advnn_graph_free(a.g); advnn_graph_free(b.g); advnn_graph_free(c.g); advnn_graph_free(d.g); free_data(&D);
}

/* Pre-training phases touch only their player; lambda ramps; the callback sees every epoch. */
typedef struct { int n, phase[16]; double lambda[16], lm[16], la[16]; float *snap[16]; } log_t;
static int log_cb(advnn_adv_epoch *e, void *user) {
    log_t *L = (log_t *)user;
    L->phase[L->n] = (int)e->phase; L->lambda[L->n] = e->lambda; L->lm[L->n] = e->main_loss; L->la[L->n] = e->adv_loss;
    L->snap[L->n] = (float *)malloc((size_t)e->graph->n_params * sizeof(float));
    memcpy(L->snap[L->n], e->graph->params, (size_t)e->graph->n_params * sizeof(float));
    L->n++;
    return 0;
}
static int group_changed(const advnn_graph *g, const float *a, const float *b, const char *group) {
    int k, gi = advnn__find_group(g, group);
    for (k = 0; k < g->n_par; k++)
        if (g->par[k].group == gi && memcmp(a + g->par[k].off, b + g->par[k].off, (size_t)g->par[k].size * sizeof(float)) != 0) return 1;
    return 0;
}
static void test_phases_and_ramp(void) {
    net a = make_net(1, 6);
    data D = make_data(3, N);
    advnn_trainer *tr = advnn_trainer_new(a.g, B, 1);
    advnn_adv_opts o = opts_for(&a, ADVNN_ADV_JOINT);
    advnn_adv_result res;
    log_t L;
    float *init = (float *)malloc((size_t)a.g->n_params * sizeof(float));
    const double want[6] = { 0, 0, 1.5, 3, 3, 3 };
    int i;
    memset(&L, 0, sizeof L);
    memcpy(init, a.g->params, (size_t)a.g->n_params * sizeof(float));
    o.pretrain_main_epochs = 1; o.pretrain_adv_epochs = 1; o.epochs = 4; o.lambda = 3; o.lambda_ramp_epochs = 2;
    o.callback = log_cb; o.user = &L;
    CHECK(advnn_adv_fit(tr, D.d, &o, &res) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(L.n == 6 && res.epochs_run == 6 && res.selected_epoch == -1, "epochs %d/%d, selected %d", L.n, res.epochs_run, res.selected_epoch);
    for (i = 0; i < L.n && i < 6; i++) {
        CHECK(L.lambda[i] == want[i], "epoch %d: lambda %g, expected %g", i, L.lambda[i], want[i]);
        CHECK(L.phase[i] == (i == 0 ? ADVNN_PHASE_PRETRAIN_MAIN : i == 1 ? ADVNN_PHASE_PRETRAIN_ADV : ADVNN_PHASE_ADVERSARIAL), "epoch %d: phase %d", i, L.phase[i]);
        CHECK((i == 1 ? isnan(L.lm[i]) : isfinite(L.lm[i])) && (i == 0 ? isnan(L.la[i]) : isfinite(L.la[i])),
              "epoch %d: losses %g %g (NAN only for the player not run)", i, L.lm[i], L.la[i]);
    }
    if (L.n >= 3) {
        CHECK(group_changed(a.g, init, L.snap[0], "main") && !group_changed(a.g, init, L.snap[0], "adv"), "main pre-training must touch only the main network");
        CHECK(!group_changed(a.g, L.snap[0], L.snap[1], "main") && group_changed(a.g, L.snap[0], L.snap[1], "adv"),
              "adversary pre-training must leave the main network (and its BatchNorm statistics) alone");
        CHECK(group_changed(a.g, L.snap[1], L.snap[2], "main") && group_changed(a.g, L.snap[1], L.snap[2], "adv"), "adversarial epochs train both");
    }
    CHECK(same_params(a.g, a.g) && memcmp(a.g->params, L.snap[L.n - 1], (size_t)a.g->n_params * sizeof(float)) == 0,
          "without candidates the weights are those of the last epoch");
    for (i = 0; i < L.n; i++) free(L.snap[i]);
    free(init);
    advnn_trainer_free(tr); advnn_graph_free(a.g); free_data(&D);
}

/* Epoch selection: min cost among epochs within tol of the best quality. */
typedef struct { const double *q, *c; log_t L; } sel_t;
static int sel_cb(advnn_adv_epoch *e, void *user) {
    sel_t *S = (sel_t *)user;
    int k = S->L.n;
    log_cb(e, &S->L);
    e->quality = S->q[k]; e->cost = S->c[k];
    return 0;
}
static void test_epoch_selection(void) {
    static const double q[7] = { 0.80, 0.90, 0.85, 0.895, 0.70, 0.91, 0.905 };
    static const double c[7] = { 0.10, 0.50, 0.20, 0.30, 0.05, 0.60, NAN };
    const double tols[4] = { 0.01, INFINITY, 0.0, 0.065 };
    const int expect[4] = { 1, 4, 5, 2 };
    int t;
    for (t = 0; t < 4; t++) {
        net a = make_net(1, 7);
        data D = make_data(4, N);
        advnn_trainer *tr = advnn_trainer_new(a.g, B, 2);
        advnn_adv_opts o = opts_for(&a, ADVNN_ADV_JOINT);
        advnn_adv_result res;
        sel_t S;
        int i;
        memset(&S, 0, sizeof S);
        S.q = q; S.c = c;
        o.epochs = 7; o.callback = sel_cb; o.user = &S; o.select_tolerance = tols[t];
        CHECK(advnn_adv_fit(tr, D.d, &o, &res) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(res.selected_epoch == expect[t], "tolerance %g: selected epoch %d, expected %d", tols[t], res.selected_epoch, expect[t]);
        if (res.selected_epoch >= 0 && res.selected_epoch < S.L.n)
            CHECK(memcmp(a.g->params, S.L.snap[res.selected_epoch], (size_t)a.g->n_params * sizeof(float)) == 0,
                  "tolerance %g: the restored weights are not those of epoch %d", tols[t], res.selected_epoch);
        CHECK(res.selected_cost == c[expect[t]] && res.selected_quality == q[expect[t]], "reported quality/cost %g %g", res.selected_quality, res.selected_cost);
        for (i = 0; i < S.L.n; i++) free(S.L.snap[i]);
        advnn_trainer_free(tr); advnn_graph_free(a.g); free_data(&D);
    }
}

/* The adversary reads a second stream with another number of rows; missing inputs are named. */
static void test_second_stream_and_errors(void) {
    advnn_graph *g = advnn_graph_new();
    int two = 2, one = 1, x, y, cx, cy, h, z, hc, zc, a, lm, la, rev;
    advnn__rng r;
    advnn_tensor *X = tens(50, 2), *Y = tens(50, 1), *CX = tens(37, 2), *CY = tens(37, 1);
    advnn_dataset *d = advnn_dataset_new(), *cr = advnn_dataset_new(), *bad = advnn_dataset_new();
    advnn_trainer *tr;
    advnn_adv_opts o = advnn_adv_defaults();
    advnn_adv_result res;
    advnn__rng_seed(&r, 3);
    fill(&r, X, -1, 1); fill(&r, CX, -1, 1);
    { int i; for (i = 0; i < 50; i++) Y->data[i] = X->data[2 * i] > 0; for (i = 0; i < 37; i++) CY->data[i] = (float)(i % 2); }
    x = advnn_input(g, "x", 1, &two); y = advnn_input(g, "y", 1, &one);
    cx = advnn_input(g, "cr_x", 1, &two); cy = advnn_input(g, "cr_y", 1, &one);
    h = advnn_dense(g, x, 3, ADVNN_ACT_TANH); z = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    hc = advnn_shared(g, h, cx, -1); zc = advnn_shared(g, z, hc, -1);
    lm = advnn_loss_bce_logits(g, z, y, -1);
    advnn_group(g, "adv");
    rev = advnn_grad_reverse(g, zc, 1.0f);
    a = advnn_dense(g, advnn_dense(g, rev, 3, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    la = advnn_loss_bce_logits(g, a, cy, -1);
    CHECK(advnn_graph_finalize(g, 2) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y);
    advnn_dataset_add(cr, "cr_x", CX); advnn_dataset_add(cr, "cr_y", CY);
    advnn_dataset_add(bad, "cr_x", CX);
    tr = advnn_trainer_new(g, 8, 1);
    o.main_loss = lm; o.adv_loss = la; o.grad_reverse = rev; o.verbose = 0; o.epochs = 3; o.adv_steps = 2;
    o.adv_data = cr;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_OK, "%s", advnn_last_error());
    o.adv_data = bad;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "cr_y"), "missing input not named: %s", advnn_last_error());
    o.adv_data = NULL;
    CHECK(advnn_adv_fit(tr, d, &o, &res) != ADVNN_OK && strstr(advnn_last_error(), "cr_x"), "missing stream not reported: %s", advnn_last_error());
    o.adv_data = cr;
    o.grad_reverse = -1; o.mode = ADVNN_ADV_JOINT;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG, "joint without a reversal node accepted");
    o.mode = ADVNN_ADV_ALTERNATING; o.adv_loss = lm;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG, "adv_loss == main_loss accepted");
    o.adv_loss = la; o.adv_group = "nope";
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "nope"), "unknown group accepted");
    o.adv_group = NULL; o.grad_reverse = z;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG, "a dense node accepted as the reversal node");
    o.grad_reverse = rev; o.adv_steps = 0;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG, "adv_steps 0 accepted");
    o.adv_steps = 1; o.lambda = NAN;
    CHECK(advnn_adv_fit(tr, d, &o, &res) == ADVNN_ERR_ARG, "NaN lambda accepted");
    advnn_trainer_free(tr); advnn_graph_free(g);
    advnn_dataset_free(d); advnn_dataset_free(cr); advnn_dataset_free(bad);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(CX); advnn_tensor_free(CY);
}

/* Rows where the adversary's loss weight is 0 are skipped (the gather puts the others first and the
 * adversary, and the frozen classifier during adversary steps, run on them only). The weights after
 * a few alternating steps match the full computation to rounding (the sums run in another order),
 * on 1 and 2 threads, with a BatchNorm classifier (batch statistics in the main step: the classifier
 * runs on every row there) and without one (the frozen classifier runs on the key rows in the adversary
 * steps and must be recomputed, not reused, for the main step), for an MSE and a packed mixture-density
 * adversary, including a thread slice with no key row at all and a batch without zero weights (then
 * nothing changes, bit for bit).
 * x(4) -> [BN] -> dense 6 relu -> dense 1 = z; adversary [sigmoid z, x] -> dense 5 tanh -> head. */
/* direct: the adversary's first layer reads the classifier's hidden layer itself, so a layer that
 * runs on the key rows only writes the gradient of one that runs on all of them */
static net make_skip_net(int bn, int mdn, int direct, uint64_t seed) {
    net n;
    int four = 4, one = 1, x, y, m, aw, z, h, h1, ins[2];
    n.g = advnn_graph_new();
    x = advnn_input(n.g, "x", 1, &four); y = advnn_input(n.g, "y", 1, &one);
    m = advnn_input(n.g, "m", 1, &one); aw = advnn_input(n.g, "aw", 1, &one);
    h = bn ? advnn_batchnorm(n.g, x) : x;
    h1 = advnn_dense(n.g, h, 6, ADVNN_ACT_RELU);
    z = advnn_dense(n.g, h1, 1, ADVNN_ACT_LINEAR);
    n.lm = advnn_loss_bce_logits(n.g, z, y, -1);
    advnn_group(n.g, "adv");
    n.rev = -1; n.bn_main = n.bn_adv = -1;
    ins[0] = advnn_activation(n.g, z, ADVNN_ACT_SIGMOID); ins[1] = x;
    h = advnn_dense(n.g, direct ? h1 : advnn_concat(n.g, 2, ins), 5, ADVNN_ACT_TANH);
    n.la = mdn ? advnn_loss_mdn(n.g, advnn_dense(n.g, h, 6, ADVNN_ACT_LINEAR), -1, -1, m, aw, 1, 1e-3f)
               : advnn_loss_mse(n.g, advnn_dense(n.g, h, 1, ADVNN_ACT_LINEAR), m, aw);
    CHECK(advnn_graph_finalize(n.g, seed) == ADVNN_OK, "%s", advnn_last_error());
    return n;
}
static double max_rel_diff(const advnn_graph *a, const advnn_graph *b) {
    double worst = 0;
    int64_t i;
    for (i = 0; i < a->n_params; i++) {
        double d = fabs((double)a->params[i] - b->params[i]) / (1e-3 + fabs((double)b->params[i]));
        if (!(d <= worst)) worst = d;   /* NaN wins */
    }
    return worst;
}
static void test_zero_weight_rows(void) {
    int bn, mdn, threads, zeros, direct;
    for (bn = 0; bn <= 1; bn++)
        for (mdn = 0; mdn <= 1; mdn++)
            for (threads = 1; threads <= 2; threads++)
                for (zeros = 0; zeros <= 1; zeros++)
                for (direct = 0; direct <= 1; direct++) {
                    data D = make_data(7, N);
                    net a = make_skip_net(bn, mdn, direct, 4), b = make_skip_net(bn, mdn, direct, 4);
                    advnn_trainer *ta, *tb;
                    advnn_adv_opts o = opts_for(&a, ADVNN_ADV_ALTERNATING);
                    int64_t idx[B], i;
                    int step;
                    double lma, laa, lmb, lab, diff;
                    for (i = 0; i < N; i++) {
                        D.t[2]->data[i] = 0.05f + 0.9f * (0.5f + 0.5f * D.t[2]->data[i]);   /* m in (0, 1) */
                        if (zeros && (D.t[1]->data[i] > 0.5f || i < B / 2)) D.t[3]->data[i] = 0.0f;
                    }
                    twin_trainers(&a, &b, threads, &ta, &tb);
                    o.adv_steps = 2;
                    for (step = 0; step < 4; step++) {
                        /* step 0: rows 0..B-1, so the first thread's slice (rows 0..7) has no key row */
                        for (i = 0; i < B; i++) idx[i] = step ? (step * 5 + i * 3) % N : i;
                        advnn__skip_rows = 1;
                        CHECK(advnn_adv_step(ta, &o, 2.0f, D.d, idx, NULL, B, &lma, &laa) == ADVNN_OK, "%s", advnn_last_error());
                        CHECK(ta->ws->part == zeros, "bn %d mdn %d threads %d: rows skipped %d, expected %d", bn, mdn, threads, ta->ws->part, zeros);
                        advnn__skip_rows = 0;
                        CHECK(advnn_adv_step(tb, &o, 2.0f, D.d, idx, NULL, B, &lmb, &lab) == ADVNN_OK, "%s", advnn_last_error());
                        advnn__skip_rows = 1;
                        diff = max_rel_diff(a.g, b.g);
                        if (zeros)
                            CHECK(diff < 1e-4 && fabs(lma - lmb) < 1e-5 * (1 + fabs(lmb)) && fabs(laa - lab) < 1e-5 * (1 + fabs(lab)),
                                  "bn %d mdn %d threads %d direct %d step %d: skipping zero-weight rows changed the step: params %.3g, losses %.9g/%.9g %.9g/%.9g",
                                  bn, mdn, threads, direct, step, diff, lma, lmb, laa, lab);
                        else
                            CHECK(same_params(a.g, b.g) && lma == lmb && laa == lab,
                                  "bn %d mdn %d threads %d step %d: without zero weights the step changed", bn, mdn, threads, step);
                    }
                    advnn_trainer_free(ta); advnn_trainer_free(tb); advnn_graph_free(a.g); advnn_graph_free(b.g); free_data(&D);
                }
}

/* The same with the adversary on a second stream (the control-region set-up) whose weight input has
 * zeros: the main rows and their paired second-stream rows are reordered together, so the step
 * matches the full computation to rounding on 1 and 2 threads. */
static void test_zero_weight_rows_second_stream(void) {
    int threads;
    for (threads = 1; threads <= 2; threads++) {
        advnn_graph *g[2];
        int two = 2, one = 1, k, lm = -1, la = -1, step;
        advnn__rng r;
        advnn_tensor *X = tens(50, 2), *Y = tens(50, 1), *CX = tens(37, 2), *CY = tens(37, 1), *CW = tens(37, 1);
        advnn_dataset *d = advnn_dataset_new(), *cr = advnn_dataset_new();
        advnn_trainer *tr[2];
        advnn_adv_opts o = advnn_adv_defaults();
        int64_t idx[B], idx2[B], i;
        double l[2][2];
        advnn__rng_seed(&r, 11);
        fill(&r, X, -1, 1); fill(&r, CX, -1, 1);
        for (i = 0; i < 50; i++) Y->data[i] = X->data[2 * i] > 0;
        for (i = 0; i < 37; i++) { CY->data[i] = (float)(i % 2); CW->data[i] = i % 3 ? 0.0f : 1.0f + 0.1f * (float)(i % 5); }
        advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y);
        advnn_dataset_add(cr, "cr_x", CX); advnn_dataset_add(cr, "cr_y", CY); advnn_dataset_add(cr, "cr_w", CW);
        for (k = 0; k < 2; k++) {
            int x, y, cx, cy, cw, h, z, hc, zc, a;
            g[k] = advnn_graph_new();
            x = advnn_input(g[k], "x", 1, &two); y = advnn_input(g[k], "y", 1, &one);
            cx = advnn_input(g[k], "cr_x", 1, &two); cy = advnn_input(g[k], "cr_y", 1, &one); cw = advnn_input(g[k], "cr_w", 1, &one);
            h = advnn_dense(g[k], x, 3, ADVNN_ACT_TANH); z = advnn_dense(g[k], h, 1, ADVNN_ACT_LINEAR);
            hc = advnn_shared(g[k], h, cx, -1); zc = advnn_shared(g[k], z, hc, -1);
            lm = advnn_loss_bce_logits(g[k], z, y, -1);
            advnn_group(g[k], "adv");
            a = advnn_dense(g[k], advnn_dense(g[k], zc, 3, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
            la = advnn_loss_bce_logits(g[k], a, cy, cw);
            CHECK(advnn_graph_finalize(g[k], 2) == ADVNN_OK, "%s", advnn_last_error());
            advnn_set_threads(threads);
            tr[k] = advnn_trainer_new(g[k], B, 1);
            advnn_set_threads(1);
        }
        o.main_loss = lm; o.adv_loss = la; o.grad_reverse = -1; o.verbose = 0; o.adv_steps = 2; o.adv_data = cr;
        for (step = 0; step < 4; step++) {
            for (i = 0; i < B; i++) { idx[i] = (step * 7 + i * 3) % 50; idx2[i] = (step * 5 + i * 2) % 37; }
            for (k = 0; k < 2; k++) {
                advnn__skip_rows = k == 0;
                CHECK(advnn_adv_step(tr[k], &o, 3.0f, d, idx, idx2, B, &l[k][0], &l[k][1]) == ADVNN_OK, "%s", advnn_last_error());
                if (k == 0) CHECK(tr[0]->ws->part, "%d thread(s): no rows were skipped", threads);
            }
            advnn__skip_rows = 1;
            CHECK(max_rel_diff(g[0], g[1]) < 1e-4 && fabs(l[0][0] - l[1][0]) < 1e-5 * (1 + fabs(l[1][0]))
                  && fabs(l[0][1] - l[1][1]) < 1e-5 * (1 + fabs(l[1][1])),
                  "%d thread(s), step %d: skipping zero-weight rows of the second stream changed the step: params %.3g, losses %.9g/%.9g %.9g/%.9g",
                  threads, step, max_rel_diff(g[0], g[1]), l[0][0], l[1][0], l[0][1], l[1][1]);
        }
        for (k = 0; k < 2; k++) { advnn_trainer_free(tr[k]); advnn_graph_free(g[k]); }
        advnn_dataset_free(d); advnn_dataset_free(cr);
        advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(CX); advnn_tensor_free(CY); advnn_tensor_free(CW);
    }
}

static void test_background_weights(void) {
    const float y[5] = { 0, 1, 0, 1, 0 }, w[5] = { 1, 2, 3, 4, 0.5f }, ones[3] = { 1, 1, 1 };
    float out[5];
    double s = 0;
    int i;
    CHECK(advnn_background_weights(y, w, 5, out) == ADVNN_OK, "%s", advnn_last_error());
    for (i = 0; i < 5; i++) s += out[i];
    CHECK(out[1] == 0 && out[3] == 0 && fabs(s - 10.5) < 1e-5 && fabs(out[2] / out[0] - 3) < 1e-6, "weights %g %g %g sum %g", out[0], out[2], out[4], s);
    CHECK(advnn_background_weights(ones, NULL, 3, out) == ADVNN_ERR_ARG, "no background accepted");
    CHECK(advnn_background_weights(y, NULL, 5, out) == ADVNN_OK && fabs(out[0] - 5.0f / 3.0f) < 1e-6, "unit weights: %g", out[0]);
}

/* Data vs simulation toy (the CalRatio set-up in two variables): signal and background differ in x0
 * and x1; in the control region "data" have x1 shifted by +0.6 relative to simulation. The plain
 * classifier's score differs between data and simulation; with the adversary on the control region
 * (alternating, 2 adversary steps) the KS distance drops at least 2x. */
static double ks_data_mc(advnn_graph *g, advnn_tensor *CX, advnn_tensor *CY) {
    advnn_dataset *d = advnn_dataset_new();
    advnn_tensor *p = NULL;
    float a[4000] = {0}, b[4000] = {0};   /* (initialised: gcc 12 cannot see the loop fills them) */
    int64_t i, na = 0, nb = 0;
    double D = 1;
    advnn_dataset_add(d, "x", CX);
    if (advnn_predict(g, d, "score", &p) == ADVNN_OK) {
        for (i = 0; i < CX->shape[0]; i++) { if (CY->data[i] > 0.5f) a[na++] = p->data[i]; else b[nb++] = p->data[i]; }
        advnn_ks(a, NULL, na, b, NULL, nb, &D, NULL);
    }
    advnn_tensor_free(p); advnn_dataset_free(d);
    return D;
}
static double auc_of(advnn_graph *g, advnn_dataset *d, advnn_tensor *Y) {
    advnn_tensor *p = NULL;
    double auc = 0;
    if (advnn_predict(g, d, "score", &p) == ADVNN_OK) advnn_auc(p->data, Y->data, NULL, Y->shape[0], &auc);
    advnn_tensor_free(p);
    return auc;
}
static void test_data_mc_toy(void) {
    const int64_t n = 8000, ncr = 4000;
    double ks[2], auc[2];
    int run;
    for (run = 0; run < 2; run++) {
        advnn_graph *g = advnn_graph_new();
        int two = 2, one = 1, x, y, cx, cy, h1, h2, z, zc, lm, la, a, s;
        advnn__rng r;
        advnn_tensor *X = tens(n, 2), *Y = tens(n, 1), *CX = tens(ncr, 2), *CY = tens(ncr, 1);
        advnn_dataset *d = advnn_dataset_new(), *cr = advnn_dataset_new();
        advnn_trainer *tr;
        advnn_adv_opts o = advnn_adv_defaults();
        int64_t i;
        advnn__rng_seed(&r, 11);
        for (i = 0; i < n; i++) {
            int sig = (int)(i & 1);
            Y->data[i] = (float)sig;
            X->data[2 * i] = (float)(gauss(&r) + sig);
            X->data[2 * i + 1] = (float)(gauss(&r) + sig);
        }
        for (i = 0; i < ncr; i++) {
            int dat = (int)(i & 1);
            CY->data[i] = (float)dat;
            CX->data[2 * i] = (float)gauss(&r);
            CX->data[2 * i + 1] = (float)(gauss(&r) + 0.6 * dat);
        }
        x = advnn_input(g, "x", 1, &two); y = advnn_input(g, "y", 1, &one);
        cx = advnn_input(g, "cr_x", 1, &two); cy = advnn_input(g, "cr_y", 1, &one);
        h1 = advnn_dense(g, x, 16, ADVNN_ACT_RELU); h2 = advnn_dense(g, h1, 16, ADVNN_ACT_RELU);
        z = advnn_dense(g, h2, 1, ADVNN_ACT_LINEAR);
        s = advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "score");
        zc = advnn_shared(g, z, advnn_shared(g, h2, advnn_shared(g, h1, cx, -1), -1), -1);
        lm = advnn_loss_bce_logits(g, z, y, -1);
        advnn_group(g, "adv");
        a = advnn_dense(g, advnn_batchnorm(g, advnn_activation(g, zc, ADVNN_ACT_SIGMOID)), 12, ADVNN_ACT_TANH);
        la = advnn_loss_bce_logits(g, advnn_dense(g, a, 1, ADVNN_ACT_LINEAR), cy, -1);
        (void)s;
        CHECK(advnn_graph_finalize(g, 3) == ADVNN_OK, "%s", advnn_last_error());
        advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y);
        advnn_dataset_add(cr, "cr_x", CX); advnn_dataset_add(cr, "cr_y", CY);
        tr = advnn_trainer_new(g, 128, 5);
        advnn_trainer_set_optim(tr, "main", advnn_adam(run ? 1e-3f : 3e-3f));
        advnn_trainer_set_optim(tr, "adv", advnn_adam(1e-2f));
        o.main_loss = lm; o.adv_loss = la; o.verbose = 0; o.adv_data = cr; o.adv_steps = 2;
        o.pretrain_main_epochs = 4; o.pretrain_adv_epochs = 1;
        o.epochs = run ? 12 : 0; o.lambda = 10;
        CHECK(advnn_adv_fit(tr, d, &o, NULL) == ADVNN_OK, "%s", advnn_last_error());
        ks[run] = ks_data_mc(g, CX, CY); auc[run] = auc_of(g, d, Y);
        advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d); advnn_dataset_free(cr);
        advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(CX); advnn_tensor_free(CY);
    }
    printf("     data/simulation toy: KS %.4f -> %.4f (%.1fx), AUC %.4f -> %.4f\n", ks[0], ks[1], ks[0] / ks[1], auc[0], auc[1]);
    CHECK(ks[0] > 0.1, "the plain classifier should see the shift (KS %.3f)", ks[0]);
    CHECK(ks[1] * 2 <= ks[0], "KS dropped only from %.4f to %.4f", ks[0], ks[1]);
    CHECK(auc[1] >= 0.70, "AUC %.4f below the x0-only floor of 0.70", auc[1]);
}

int main(void) {
    RUN(test_alternating_replay);
    RUN(test_reuse_replay);
    RUN(test_reversal_variants);
    RUN(test_phases_and_ramp);
    RUN(test_epoch_selection);
    RUN(test_second_stream_and_errors);
    RUN(test_background_weights);
    RUN(test_zero_weight_rows);
    RUN(test_zero_weight_rows_second_stream);
    RUN(test_data_mc_toy);
    return th_report();
}
