/* Adversarial building blocks. Gradient reversal: in a joint step the classifier's parameter
 * gradient is -lambda times the gradient of L_adv alone (to rounding), the adversary's gradient
 * equals that of L_adv alone, and lambda can change between steps. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "gradcheck.h"

/* x -> classifier dense(4 tanh) -> dense(1) = z -> [reverse(lambda)] -> adversary dense(3 tanh) -> dense(1)
 * losses: BCE(z, y) with coefficient c_clf, MSE(adversary, m) with coefficient 1. */
typedef struct { fixture f; int rev, loss_clf, clf_last; } grl_net;

static grl_net make_grl(float lambda) {
    grl_net n;
    advnn__rng r;
    int four = 4, one = 1, x, y, m, h, z, a;
    memset(&n, 0, sizeof n);
    advnn__rng_seed(&r, 3);
    n.f.g = advnn_graph_new(); n.f.d = advnn_dataset_new();
    x = advnn_input(n.f.g, "x", 1, &four);
    y = advnn_input(n.f.g, "y", 1, &one);
    m = advnn_input(n.f.g, "m", 1, &one);
    advnn_group(n.f.g, "clf");
    h = advnn_dense(n.f.g, x, 4, ADVNN_ACT_TANH);
    z = n.clf_last = advnn_dense(n.f.g, h, 1, ADVNN_ACT_LINEAR);
    n.loss_clf = advnn_loss_bce_logits(n.f.g, z, y, -1);
    advnn_group(n.f.g, "adv");
    n.rev = advnn_grad_reverse(n.f.g, z, lambda);
    a = advnn_dense(n.f.g, advnn_dense(n.f.g, n.rev, 3, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    advnn_loss_mse(n.f.g, a, m, -1);
    add_data(&n.f, "x", rand_tensor(&r, NB, 4, -2, 2));
    add_data(&n.f, "y", rand_tensor(&r, NB, 1, 0, 1));
    add_data(&n.f, "m", rand_tensor(&r, NB, 1, -1, 1));
    CHECK(advnn_graph_finalize(n.f.g, 9) == ADVNN_OK, "%s", advnn_last_error());
    return n;
}

/* Parameter gradients of one joint backward pass (copied out). */
static float *joint_grads(grl_net *n) {
    advnn_trainer *tr = advnn_trainer_new(n->f.g, NB, 1);
    int64_t idx[NB];
    int i;
    float *gr = (float *)malloc((size_t)n->f.g->n_params * sizeof(float));
    for (i = 0; i < NB; i++) idx[i] = i;
    objective(tr, n->f.d, idx);
    advnn__backward(tr->ws, NB);
    memcpy(gr, tr->ws->pgrad, (size_t)n->f.g->n_params * sizeof(float));
    advnn_trainer_free(tr);
    return gr;
}

static void test_grad_reverse_joint_step(void) {
    const float lambda = 2.5f;
    grl_net n = make_grl(lambda);
    float *joint, *adv_only, *plain;
    int k, clf_blocks = 0;
    double maxrel = 0;
    advnn_loss_scale(n.f.g, n.loss_clf, 0.0f);           /* L_adv alone through the reversal */
    adv_only = joint_grads(&n);
    advnn_set_grad_reverse(n.f.g, n.rev, -1.0f);          /* -lambda = 1: the plain gradient of L_adv */
    plain = joint_grads(&n);
    for (k = 0; k < n.f.g->n_par; k++) {
        const advnn__param *p = &n.f.g->par[k];
        int64_t j;
        for (j = 0; j < p->size; j++) {
            double a = adv_only[p->off + j], b = plain[p->off + j];
            if (p->group == advnn__find_group(n.f.g, "clf")) {
                /* scaling by -2.5 does not commute exactly with float rounding: each of the ~10 roundings
                 * along dense backward, tanh' and the GEMM sums contributes up to 6e-8 relative */
                CHECK(fabs(a - (-lambda) * b) <= 4e-6 * fabs(lambda * b) + 1e-9, "classifier block %d: %g vs -lambda * %g", k, a, b);
                if (b != 0) maxrel = fmax(maxrel, fabs(a / (-lambda * b) - 1));
            } else
                CHECK(a == b, "adversary block %d: %g differs from the plain gradient %g", k, a, b);
        }
        clf_blocks += p->group == advnn__find_group(n.f.g, "clf");
    }
    CHECK(clf_blocks == 4, "expected 4 classifier blocks, found %d", clf_blocks);
    /* the joint objective: classifier gradient = grad L_clf - lambda grad L_adv */
    advnn_loss_scale(n.f.g, n.loss_clf, 1.0f);
    advnn_set_grad_reverse(n.f.g, n.rev, lambda);
    joint = joint_grads(&n);
    advnn_set_grad_reverse(n.f.g, n.rev, 0.0f);
    {
        float *clf_only = joint_grads(&n);   /* lambda 0: only L_clf reaches the classifier */
        for (k = 0; k < n.f.g->n_par; k++) {
            const advnn__param *p = &n.f.g->par[k];
            int64_t j;
            if (p->group != advnn__find_group(n.f.g, "clf")) continue;
            for (j = 0; j < p->size; j++) {
                double want = (double)clf_only[p->off + j] + adv_only[p->off + j];
                CHECK(fabs(joint[p->off + j] - want) <= 4e-6 * (fabs(want) + fabs(adv_only[p->off + j])) + 1e-9,
                      "joint classifier gradient %g, expected %g", joint[p->off + j], want);
            }
        }
        free(clf_only);
    }
    printf("     max relative deviation from -lambda * grad: %.2g\n", maxrel);
    free(joint); free(adv_only); free(plain);
    free_fixture(&n.f);
}

/* Bad uses are refused, and lambda travels with the model file. */
static void test_grad_reverse_errors_and_file(void) {
    grl_net n = make_grl(1.0f);
    void *buf;
    size_t len;
    advnn_graph *h;
    CHECK(advnn_set_grad_reverse(n.f.g, n.clf_last, 1.0f) == ADVNN_ERR_ARG, "set_grad_reverse on a dense node accepted");
    CHECK(advnn_set_grad_reverse(n.f.g, n.rev, NAN) == ADVNN_ERR_ARG, "NaN lambda accepted");
    advnn_set_grad_reverse(n.f.g, n.rev, 3.0f);
    CHECK(advnn_model_save_mem(n.f.g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h && h->nodes[n.rev].kind == ADVNN__GRAD_REVERSE && h->nodes[n.rev].fp[0] == 3.0f, "lambda not kept by the model file");
    advnn_graph_free(h);
    free(buf);
    free_fixture(&n.f);
}

/* x(3) -> dense(6 tanh) -> three Dense(K) heads (packed: one Dense(3K)) -> MDN loss against m in
 * (0, 1), weighted; zero_w: rows 1 and 4 get weight 0 (skipped by the loss; with K = 100 the other
 * four rows then go through it two per chunk). fan: the first head also feeds Dense(1) -> MSE
 * against m, built after the loss (1: its backward runs first, the loss adds to what it wrote) or
 * before it (2: the loss writes first). */
static fixture mdn_fixture_ex(int K, int truncate, int zero_w, int packed, int fan) {
    fixture f;
    advnn__rng r;
    int three = 3, one = 1, x, m, w, h, a, u, v;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 77);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &three);
    m = advnn_input(f.g, "m", 1, &one);
    w = advnn_input(f.g, "w", 1, &one);
    h = advnn_dense(f.g, x, 6, ADVNN_ACT_TANH);
    a = advnn_dense(f.g, h, packed ? 3 * K : K, ADVNN_ACT_LINEAR);
    if (fan == 2) advnn_loss_mse(f.g, advnn_dense(f.g, a, 1, ADVNN_ACT_LINEAR), m, w);
    if (packed) advnn_loss_mdn(f.g, a, -1, -1, m, w, truncate, 0.01f);
    else {
        u = advnn_dense(f.g, h, K, ADVNN_ACT_LINEAR);
        v = advnn_dense(f.g, h, K, ADVNN_ACT_LINEAR);
        advnn_loss_mdn(f.g, a, u, v, m, w, truncate, 0.01f);
    }
    if (fan == 1) advnn_loss_mse(f.g, advnn_dense(f.g, a, 1, ADVNN_ACT_LINEAR), m, w);
    add_data(&f, "x", rand_tensor(&r, NB, 3, -2, 2));
    add_data(&f, "m", rand_tensor(&r, NB, 1, 0.02f, 0.98f));
    add_data(&f, "w", rand_tensor(&r, NB, 1, 0.3f, 1.7f));
    if (zero_w) f.t[f.nt - 1]->data[1] = f.t[f.nt - 1]->data[4] = 0.0f;
    CHECK(advnn_graph_finalize(f.g, 4) == ADVNN_OK, "%s", advnn_last_error());
    return f;
}

static fixture mdn_fixture(int K, int truncate, int zero_w) { return mdn_fixture_ex(K, truncate, zero_w, 0, 0); }

static void test_mdn_gradients(void) {
    fixture f;
    f = mdn_fixture_ex(4, 1, 0, 1, 0); gradcheck(&f, "MDN loss, packed head, 4 components truncated"); free_fixture(&f);
    f = mdn_fixture_ex(5, 1, 1, 1, 0); gradcheck(&f, "MDN loss, packed head, 5 components, two zero-weight rows"); free_fixture(&f);
    /* a head with a second consumer, whose backward runs before the loss's or after it */
    f = mdn_fixture_ex(5, 1, 1, 1, 1); gradcheck(&f, "MDN loss, packed head also under an MSE, loss second"); free_fixture(&f);
    f = mdn_fixture_ex(5, 1, 1, 1, 2); gradcheck(&f, "MDN loss, packed head also under an MSE, loss first"); free_fixture(&f);
    f = mdn_fixture_ex(4, 1, 1, 0, 1); gradcheck(&f, "MDN loss, coefficients also under an MSE, loss second"); free_fixture(&f);
    f = mdn_fixture_ex(4, 1, 1, 0, 2); gradcheck(&f, "MDN loss, coefficients also under an MSE, loss first"); free_fixture(&f);
    f = mdn_fixture(3, 0, 0); gradcheck(&f, "MDN loss, 3 components"); free_fixture(&f);
    f = mdn_fixture(4, 1, 0); gradcheck(&f, "MDN loss, 4 components truncated to [0, 1]"); free_fixture(&f);
    f = mdn_fixture(1, 1, 0); gradcheck(&f, "MDN loss, 1 component truncated"); free_fixture(&f);
    f = mdn_fixture(100, 1, 1); gradcheck(&f, "MDN loss, 100 components truncated, two zero-weight rows"); free_fixture(&f);
}

/* Rows of weight 0 get no gradient even when the heads' buffers hold the last pass's: a backward
 * over rows weighted 0 after one where they were not gives, bit for bit, a fresh trainer's gradients
 * (the loss writes the heads' first gradient over what the buffers held). */
static void test_mdn_zero_rows_fresh(void) {
    int packed;
    for (packed = 0; packed <= 1; packed++) {
        fixture f = mdn_fixture_ex(5, 1, 0, packed, 0);
        advnn_trainer *t1 = advnn_trainer_new(f.g, NB, 1), *t2 = advnn_trainer_new(f.g, NB, 1);
        advnn_tensor *w = f.t[f.nt - 1];
        int64_t idx[NB];
        int i;
        for (i = 0; i < NB; i++) idx[i] = i;
        CHECK(t1 && t2, "trainer: %s", advnn_last_error());
        if (t1 && t2) {
            objective(t1, f.d, idx); advnn__backward(t1->ws, NB);   /* every row weighted */
            w->data[1] = w->data[4] = 0.0f;
            objective(t1, f.d, idx); advnn__backward(t1->ws, NB);
            objective(t2, f.d, idx); advnn__backward(t2->ws, NB);
            CHECK(!memcmp(t1->ws->pgrad, t2->ws->pgrad, (size_t)f.g->n_params * sizeof(float)),
                  "%s heads: zero-weight rows kept the last pass's gradient", packed ? "packed" : "three");
        }
        advnn_trainer_free(t1); advnn_trainer_free(t2);
        free_fixture(&f);
    }
}

/* A head that needs no gradient (its layer frozen, its input data) gets none, and the others get
 * the gradients they get when it is trained too, bit for bit. */
static void test_mdn_frozen_head(void) {
    enum { K = 4 };
    fixture f;
    advnn_trainer *tr[2];
    advnn__rng r;
    int three = 3, one = 1, x, m, w, h, a, u, v, k, i, fz, bad = 0;
    int64_t idx[NB];
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 78);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", 1, &three); m = advnn_input(f.g, "m", 1, &one); w = advnn_input(f.g, "w", 1, &one);
    h = advnn_dense(f.g, x, 6, ADVNN_ACT_TANH);
    a = advnn_dense(f.g, h, K, ADVNN_ACT_LINEAR);
    v = advnn_dense(f.g, h, K, ADVNN_ACT_LINEAR);
    fz = advnn_group(f.g, "means");
    u = advnn_dense(f.g, x, K, ADVNN_ACT_LINEAR);   /* from the data: frozen, it needs no gradient */
    advnn_loss_mdn(f.g, a, u, v, m, w, 1, 0.01f);
    add_data(&f, "x", rand_tensor(&r, NB, 3, -2, 2));
    add_data(&f, "m", rand_tensor(&r, NB, 1, 0.02f, 0.98f));
    add_data(&f, "w", rand_tensor(&r, NB, 1, 0.3f, 1.7f));
    f.t[f.nt - 1]->data[2] = 0.0f;
    CHECK(advnn_graph_finalize(f.g, 4) == ADVNN_OK, "%s", advnn_last_error());
    for (i = 0; i < NB; i++) idx[i] = i;
    for (k = 0; k < 2; k++) {
        advnn_ws *ws;
        tr[k] = advnn_trainer_new(f.g, NB, 1);
        CHECK(tr[k] != NULL, "trainer: %s", advnn_last_error());
        if (!tr[k]) break;
        if (k == 1) CHECK(advnn_trainer_set_trainable(tr[k], "means", 0) == ADVNN_OK, "%s", advnn_last_error());
        ws = tr[k]->ws;
        ws->training = 1; ws->input_grads = 0;
        advnn__mark_needed(ws, -1); advnn__mark_grad(ws);
        CHECK(advnn__gather(ws, f.d, idx, 0, NB) == ADVNN_OK && advnn__forward(ws, NB) == ADVNN_OK, "%s", advnn_last_error());
        advnn__backward(ws, NB);
        if (k == 1) CHECK(!ws->needg[u], "the frozen head still needs a gradient");
    }
    if (tr[0] && tr[1])
        for (i = 0; i < f.g->n_par; i++) {
            const advnn__param *p = &f.g->par[i];
            if (p->group == fz || !p->trainable) continue;
            if (memcmp(tr[0]->ws->pgrad + p->off, tr[1]->ws->pgrad + p->off, (size_t)p->size * sizeof(float)) && bad++ < 3)
                CHECK(0, "parameter block %d (node %d): another gradient with the means head frozen", i, p->node);
        }
    advnn_trainer_free(tr[0]); advnn_trainer_free(tr[1]);
    free_fixture(&f);
}

/* The packed head is the three heads side by side: inputs a, u, v (K each) and their concat give
 * the same loss and the same input gradients bit for bit; bad shapes are refused; the packed form
 * survives the model file. */
static void test_mdn_packed(void) {
    enum { K = 7 };
    advnn_graph *g = advnn_graph_new(), *h;
    advnn_dataset *d = advnn_dataset_new();
    advnn_trainer *tr;
    advnn__rng r;
    advnn_tensor *ta, *tu, *tv, *tm, *tw;
    int kk = K, one = 1, a, u, v, m, w, ins[3], cat, l3, lp, i, bad = 0;
    int64_t idx[NB];
    double L3, LP;
    void *buf;
    size_t len;
    advnn__rng_seed(&r, 5);
    a = advnn_input(g, "a", 1, &kk); u = advnn_input(g, "u", 1, &kk); v = advnn_input(g, "v", 1, &kk);
    m = advnn_input(g, "m", 1, &one); w = advnn_input(g, "w", 1, &one);
    ins[0] = a; ins[1] = u; ins[2] = v;
    cat = advnn_concat(g, 3, ins);
    l3 = advnn_loss_mdn(g, a, u, v, m, w, 1, 0.01f);
    lp = advnn_loss_mdn(g, cat, -1, -1, m, w, 1, 0.01f);
    CHECK(l3 >= 0 && lp >= 0, "%s", advnn_last_error());
    {   /* refused shapes, on a graph of their own (builder errors stick to the graph) */
        advnn_graph *e = advnn_graph_new();
        int ea = advnn_input(e, "a", 1, &kk), em = advnn_input(e, "m", 1, &one), ec;
        ins[0] = ins[1] = ins[2] = ea;
        ec = advnn_concat(e, 3, ins);
        CHECK(advnn_loss_mdn(e, ea, -1, -1, em, -1, 1, 0.01f) < 0 && strstr(advnn_last_error(), "3K"),
              "packed head of 7 values (not 3K) accepted: %s", advnn_last_error());
        CHECK(advnn_loss_mdn(e, ec, -1, ea, em, -1, 1, 0.01f) < 0, "means -1 with a widths node accepted");
        advnn_graph_free(e);
    }
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "a", ta = rand_tensor(&r, NB, K, -2, 2));
    advnn_dataset_add(d, "u", tu = rand_tensor(&r, NB, K, -2, 2));
    advnn_dataset_add(d, "v", tv = rand_tensor(&r, NB, K, -2, 1));
    advnn_dataset_add(d, "m", tm = rand_tensor(&r, NB, 1, 0.02f, 0.98f));
    tw = rand_tensor(&r, NB, 1, 0.3f, 1.7f);
    tw->data[2] = 0.0f;
    advnn_dataset_add(d, "w", tw);
    for (i = 0; i < NB; i++) idx[i] = i;
    tr = advnn_trainer_new(g, NB, 3);
    CHECK(tr != NULL, "%s", advnn_last_error());
    if (tr) {
        advnn_ws *ws = tr->ws;
        ws->training = 1; ws->input_grads = 1;
        advnn__mark_needed(ws, -1);
        advnn__mark_grad(ws);
        CHECK(advnn__gather(ws, d, idx, 0, NB) == ADVNN_OK && advnn__forward(ws, NB) == ADVNN_OK, "%s", advnn_last_error());
        L3 = ws->loss[l3]; LP = ws->loss[lp];
        CHECK(L3 == LP && isfinite(L3), "packed loss %.17g, three heads %.17g", LP, L3);
        /* input gradients: the three-head loss alone, then the packed loss alone (through concat) */
        advnn_loss_scale(g, lp, 0.0f);
        advnn__backward(ws, NB);
        {
            float *ga = (float *)malloc(3 * NB * K * sizeof(float));
            for (i = 0; i < NB * K; i++) { ga[i] = ws->dout[a][i]; ga[NB * K + i] = ws->dout[u][i]; ga[2 * NB * K + i] = ws->dout[v][i]; }
            advnn_loss_scale(g, lp, 1.0f); advnn_loss_scale(g, l3, 0.0f);
            advnn__backward(ws, NB);
            for (i = 0; i < NB * K; i++)
                bad += ga[i] != ws->dout[a][i] || ga[NB * K + i] != ws->dout[u][i] || ga[2 * NB * K + i] != ws->dout[v][i];
            for (i = 0; i < 3 * NB * K; i++) bad += i % (NB * K) / K == 2 && ga[i] != 0.0f;   /* the zero-weight row */
            for (i = 0; i < NB * K; i++) bad += i / K != 2 && ga[i] == 0.0f;                  /* the others are not zero */
            CHECK(!bad, "packed vs three-head input gradients: %d differ", bad);
            free(ga);
        }
        advnn_trainer_free(tr);
    }
    CHECK(advnn_model_save_mem(g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h && h->nodes[lp].kind == ADVNN__LOSS_MDN && h->nodes[lp].ip[1] == 1 && h->nodes[lp].n_in == 3 &&
          h->nodes[lp].in[0] == cat && h->nodes[lp].fp[0] == 1.0f && h->nodes[lp].fp[1] == 0.01f && h->nodes[l3].ip[1] == 0 &&
          h->nodes[l3].n_in == 5 && h->nodes[l3].fp[0] == 0.0f,
          "the packed mixture-density loss did not survive the model file");
    advnn_graph_free(h);
    free(buf);
    advnn_dataset_free(d);
    advnn_tensor_free(ta); advnn_tensor_free(tu); advnn_tensor_free(tv); advnn_tensor_free(tm); advnn_tensor_free(tw);
    advnn_graph_free(g);
}

/* -log p(m) of one row through the library's batch function */
static double mdn_sample(int K, const float *a, const float *u, const float *v, double m, int trunc, double floor_) {
    int r0 = 0;
    double nll;
    advnn_mdn_nll(1, K, K, &r0, a, u, v, &m, trunc, floor_, NULL, &nll);
    return nll;
}

/* -log p against closed forms computed here in double:
 *   two components, untruncated: -log(sum_k pi_k N(m; mu_k, s_k));
 *   one component truncated to [0, 1]: -log(N(m; mu, s) / (Phi((1-mu)/s) - Phi(-mu/s))). */
static void test_mdn_closed_form(void) {
    float a[2] = {0.3f, -0.8f}, u[2] = {-0.5f, 1.2f}, v[2] = {-1.0f, 0.4f};
    double m = 0.42, pi0 = exp((double)a[0]) / (exp((double)a[0]) + exp((double)a[1])), pi1 = 1 - pi0, p = 0, want, got;
    int k;
    for (k = 0; k < 2; k++) {
        double mu = 1 / (1 + exp(-(double)u[k])), s = log1p(exp((double)v[k])) + 0.001, z = (m - mu) / s;
        p += (k ? pi1 : pi0) * exp(-0.5 * z * z) / (s * sqrt(2 * 3.14159265358979323846));
    }
    want = -log(p);
    got = mdn_sample(2, a, u, v, m, 0, 0.001);
    CHECK(fabs(got - want) < 1e-12 * fabs(want) + 1e-12, "2-component NLL %.15g, closed form %.15g", got, want);
    {
        double mu = 1 / (1 + exp(-(double)u[1])), s = log1p(exp((double)v[1])) + 0.001, z = (m - mu) / s;
        double Z = 0.5 * (1 + erf((1 - mu) / s / sqrt(2.0))) - 0.5 * (1 + erf(-mu / s / sqrt(2.0)));
        want = -log(exp(-0.5 * z * z) / (s * sqrt(2 * 3.14159265358979323846)) / Z);
        got = mdn_sample(1, a + 1, u + 1, v + 1, m, 1, 0.001);
        CHECK(fabs(got - want) < 1e-12 * fabs(want) + 1e-12, "truncated NLL %.15g, closed form %.15g", got, want);
    }
    {   /* a truncated density integrates to 1 over [0, 1] (midpoint rule, 20000 cells) */
        double integral = 0;
        int i;
        for (i = 0; i < 20000; i++) integral += exp(-mdn_sample(2, a, u, v, (i + 0.5) / 20000, 1, 0.001)) / 20000;
        CHECK(fabs(integral - 1) < 1e-6, "truncated mixture integrates to %.9f over [0, 1]", integral);
    }
}

/* Louppe, Kagan, Cranmer (1611.01046) section 5.1: x|y=0 ~ N((0,0), [[1,-0.5],[-0.5,1]]),
 * x|y=1,Z=z ~ N((1, 1+z), I), z ~ N(0,1). Rows alternate background/signal; fixed_z = NAN draws z.
 * zs is z mapped into (0, 1) for the mixture-density adversary: (z + 3)/6, clipped. */
static void louppe_gen(uint64_t seed, int64_t n, float *x, float *y, float *zs, double fixed_z, int only_sig) {
    advnn__rng r;
    int64_t i;
    advnn__rng_seed(&r, seed);
    for (i = 0; i < n; i++) {
        int sig = only_sig ? 1 : (int)(i & 1);
        double u1 = advnn__rng_uniform(&r), u2 = advnn__rng_uniform(&r), u3 = advnn__rng_uniform(&r), u4 = advnn__rng_uniform(&r);
        double a = sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2), b = sqrt(-2 * log(1 - u1)) * sin(6.283185307179586 * u2);
        double z = isnan(fixed_z) ? sqrt(-2 * log(1 - u3)) * cos(6.283185307179586 * u4) : fixed_z;
        if (sig) { x[2 * i] = (float)(1 + a); x[2 * i + 1] = (float)(1 + z + b); }
        else { x[2 * i] = (float)a; x[2 * i + 1] = (float)(-0.5 * a + sqrt(0.75) * b); }
        y[i] = (float)sig;
        zs[i] = (float)fmin(fmax((z + 3.0) / 6.0, 0.001), 0.999);
    }
}

/* KS distance between the classifier outputs for signal at z = -1 and at z = +1 (4000 each), or the
 * AUC on a fresh mixed sample. */
static double louppe_eval(advnn_graph *g, int want_auc) {
    int64_t n = 4000, s2[2], s1[1];
    advnn_tensor *x, *y, *z, *pa = NULL, *pb = NULL;
    advnn_dataset *d = advnn_dataset_new();
    double v = NAN, p;
    s2[0] = n; s2[1] = 2; s1[0] = n;
    x = advnn_tensor_new(2, s2); y = advnn_tensor_new(1, s1); z = advnn_tensor_new(1, s1);
    advnn_dataset_add(d, "x", x);
    if (want_auc) {
        louppe_gen(79, n, x->data, y->data, z->data, NAN, 0);
        CHECK(advnn_predict(g, d, "prob", &pa) == ADVNN_OK && advnn_auc(pa->data, y->data, NULL, n, &v) == ADVNN_OK, "%s", advnn_last_error());
    } else {
        louppe_gen(77, n, x->data, y->data, z->data, -1.0, 1);
        CHECK(advnn_predict(g, d, "prob", &pa) == ADVNN_OK, "%s", advnn_last_error());
        louppe_gen(78, n, x->data, y->data, z->data, +1.0, 1);
        CHECK(advnn_predict(g, d, "prob", &pb) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(advnn_ks(pa->data, NULL, n, pb->data, NULL, n, &v, &p) == ADVNN_OK, "%s", advnn_last_error());
    }
    advnn_tensor_free(pa); advnn_tensor_free(pb);
    advnn_tensor_free(x); advnn_tensor_free(y); advnn_tensor_free(z); advnn_dataset_free(d);
    return v;
}

/* Without the adversary the classifier's output depends on z; with the MDN adversary behind a
 * gradient-reversal layer (lambda 50) the KS distance between z = -sigma and z = +sigma must drop by
 * at least 3x with the AUC above 0.74. Schedule: classifier 10 epochs alone, adversary 5 epochs
 * alone, then 40 joint epochs with the classifier's learning rate lowered to 2e-4 (adversary 1e-2),
 * then 10 epochs with both rates / 10. Without that last annealing phase the end point depended on
 * where the minimax oscillation stopped (1.9x-17x across ISAs and seeds). Measured with it: KS
 * 0.54 -> 0.04-0.06 (9.3x-13.7x over trainer seeds 2-7 on AVX2; 6.0x on NEON under qemu),
 * AUC 0.86 -> 0.77-0.78. */
static double louppe_auc0;
/* After classifier pre-training: record the plain classifier's KS and AUC. Joint phase: Adam 2e-4 for
 * the classifier, then both rates / 10 for the last 10 epochs. */
static int louppe_schedule(advnn_adv_epoch *e, void *user) {
    if (e->epoch == 9) { *(double *)user = louppe_eval(e->graph, 0); louppe_auc0 = louppe_eval(e->graph, 1); }
    if (e->epoch == 14) { advnn_trainer_set_optim(e->trainer, "clf", advnn_adam(2e-4f)); advnn_trainer_set_optim(e->trainer, "adv", advnn_adam(1e-2f)); }
    if (e->epoch == 54) { advnn_trainer_set_optim(e->trainer, "adv", advnn_adam(1e-3f)); advnn_trainer_set_optim(e->trainer, "clf", advnn_adam(2e-5f)); }
    return 0;
}

static void test_louppe_toy(void) {
    int64_t n = 20000, s2[2], s1[1];
    advnn_tensor *X, *Y, *Z;
    advnn_dataset *d = advnn_dataset_new();
    advnn_graph *g = advnn_graph_new();
    advnn_trainer *tr;
    advnn_adv_opts ao = advnn_adv_defaults();
    int two = 2, one = 1, x, y, zs, h, logit, s, lc, a, la, rev;
    double ks0, auc0, ks1, auc1;
    s2[0] = n; s2[1] = 2; s1[0] = n;
    X = advnn_tensor_new(2, s2); Y = advnn_tensor_new(1, s1); Z = advnn_tensor_new(1, s1);
    louppe_gen(1, n, X->data, Y->data, Z->data, NAN, 0);
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y); advnn_dataset_add(d, "zs", Z);
    x = advnn_input(g, "x", 1, &two); y = advnn_input(g, "y", 1, &one); zs = advnn_input(g, "zs", 1, &one);
    advnn_group(g, "clf");
    h = advnn_dense(g, advnn_dense(g, x, 20, ADVNN_ACT_TANH), 20, ADVNN_ACT_RELU);
    logit = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    s = advnn_name(g, advnn_activation(g, logit, ADVNN_ACT_SIGMOID), "prob");
    lc = advnn_loss_bce_logits(g, logit, y, -1);
    advnn_group(g, "adv");
    rev = advnn_grad_reverse(g, s, 50.0f);
    a = advnn_dense(g, advnn_dense(g, rev, 20, ADVNN_ACT_RELU), 20, ADVNN_ACT_RELU);
    la = advnn_loss_mdn(g, advnn_dense(g, a, 5, ADVNN_ACT_LINEAR), advnn_dense(g, a, 5, ADVNN_ACT_LINEAR),
                        advnn_dense(g, a, 5, ADVNN_ACT_LINEAR), zs, -1, 1, 0.01f);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    tr = advnn_trainer_new(g, 128, 2);
    /* the packaged two-player trainer: classifier alone (10 epochs), adversary alone on the frozen
     * classifier (5), joint epochs through the reversal (50; the callback anneals both learning rates
     * /10 for the last 10, so the players settle instead of stopping mid-oscillation) */
    ao.mode = ADVNN_ADV_JOINT; ao.main_group = "clf"; ao.main_loss = lc; ao.adv_loss = la; ao.grad_reverse = rev;
    ao.pretrain_main_epochs = 10; ao.pretrain_adv_epochs = 5; ao.epochs = 50; ao.lambda = 50; ao.verbose = 0;
    ao.callback = louppe_schedule; ao.user = &ks0;
    CHECK(advnn_adv_fit(tr, d, &ao, NULL) == ADVNN_OK, "%s", advnn_last_error());
    auc0 = louppe_auc0;
    ks1 = louppe_eval(g, 0); auc1 = louppe_eval(g, 1);
    printf("     Louppe toy: KS(z=-1, z=+1) %.4f -> %.4f (%.1fx), AUC %.4f -> %.4f\n", ks0, ks1, ks0 / ks1, auc0, auc1);
    CHECK(ks0 > 0.3, "without the adversary the output should depend on z (KS %.3f)", ks0);
    CHECK(ks1 * 3 <= ks0, "KS dropped only from %.4f to %.4f", ks0, ks1);
    CHECK(auc1 >= 0.74, "AUC %.4f below the 0.74 floor", auc1);
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(Z);
}

int main(void) {
    advnn__chunk_min_rows = 32;   /* the tests' small batches in several chunks, as before the default became 128 */
    RUN(test_mdn_gradients);
    RUN(test_mdn_zero_rows_fresh);
    RUN(test_mdn_frozen_head);
    RUN(test_mdn_packed);
    RUN(test_mdn_closed_form);
    RUN(test_grad_reverse_joint_step);
    RUN(test_grad_reverse_errors_and_file);
    RUN(test_louppe_toy);
    return th_report();
}
