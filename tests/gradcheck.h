/* Finite-difference gradient checking shared by the layer tests (include after advnn.h with
 * ADVNN_IMPLEMENTATION: it uses the library's internals).
 *
 * Method: central differences on the training objective, d = (L(p+h) - L(p-h)) / 2h, h = 1e-3, with
 * the forward pass in float32 and the loss summed in double. Every trainable parameter block is
 * checked (at most 24 entries each) and, with input gradients switched on, every data input.
 * Dropout draws the same mask in every pass (the PRNG is reset), BatchNorm runs in train mode.
 * Tolerance: |analytic - fd| <= 2e-2 |fd| + 2e-3 max|grad of the block| + 1e-4 |L|. The float32
 * rounding of the objective L (a few 1e-8 |L| after the reductions) divided by 2h = 2e-3 gives a
 * noise floor near 2e-5 |L|, hence the last term (also what a true zero gradient, such as a bias
 * just before BatchNorm, is held to); the O(h^2) truncation error is smaller still. */
#ifndef ADVNN_GRADCHECK_H
#define ADVNN_GRADCHECK_H
#define NB 6  /* batch */

typedef struct { advnn_graph *g; advnn_dataset *d; advnn_tensor *t[8]; const char *tname[8]; int nt; } fixture;

static inline advnn_tensor *rand_tensor(advnn__rng *r, int64_t n, int per, float lo, float hi) {
    int64_t shape[2];
    advnn_tensor *t;
    int64_t i;
    shape[0] = n; shape[1] = per;
    t = advnn_tensor_new(2, shape);
    for (i = 0; i < t->size; i++) t->data[i] = (float)(lo + (hi - lo) * advnn__rng_uniform(r));
    return t;
}

/* Gives t the per-sample shape of graph input `name` (the data is generated flat). */
static inline void shape_like_input(advnn_graph *g, const char *name, advnn_tensor *t) {
    int sh[3], nd = advnn_node_shape(g, advnn_find(g, name), sh), i;
    if (nd < 1) return;
    t->ndim = nd + 1;
    for (i = 0; i < nd; i++) t->shape[i + 1] = sh[i];
}

static inline void add_data(fixture *f, const char *name, advnn_tensor *t) {
    shape_like_input(f->g, name, t);
    f->tname[f->nt] = name;
    f->t[f->nt++] = t;
    advnn_dataset_add(f->d, name, t);
}

static inline void free_fixture(fixture *f) {
    int i;
    for (i = 0; i < f->nt; i++) advnn_tensor_free(f->t[i]);
    advnn_dataset_free(f->d);
    advnn_graph_free(f->g);
}

/* Objective of the current parameters on the fixed batch, train mode, fixed dropout mask. */
static inline double objective(advnn_trainer *tr, const advnn_dataset *d, const int64_t *idx) {
    advnn_ws *ws = tr->ws;
    ws->training = 1;
    ws->input_grads = 1;
    advnn__rng_seed(&tr->rng, 99);
    advnn__mark_needed(ws, -1);
    advnn__mark_grad(ws);
    if (advnn__gather(ws, d, idx, 0, NB) != ADVNN_OK || advnn__forward(ws, NB) != ADVNN_OK) {
        CHECK(0, "forward: %s", advnn_last_error());
        return NAN;
    }
    return advnn__objective(ws);
}

/* Checks every trainable parameter (at most 24 entries per block) against finite differences. */
static inline int gradcheck(fixture *f, const char *what) {
    advnn_trainer *tr = advnn_trainer_new(f->g, NB, 1);
    int64_t idx[NB];
    int i, k, bad = 0;
    double l0, gall = 0;
    float *grad, *dins[8];
    if (!tr) { CHECK(0, "%s: trainer: %s", what, advnn_last_error()); return 1; }
    for (i = 0; i < NB; i++) idx[i] = i;
    l0 = fabs(objective(tr, f->d, idx));
    advnn__backward(tr->ws, NB);
    grad = (float *)malloc((size_t)f->g->n_params * sizeof(float));
    memcpy(grad, tr->ws->pgrad, (size_t)f->g->n_params * sizeof(float));
    for (i = 0; i < f->nt; i++) {   /* input gradients of this batch (the data is used contiguously: idx = 0..NB-1) */
        int id = advnn_find(f->g, f->tname[i]);
        size_t cnt = (size_t)(f->t[i]->size / f->t[i]->shape[0]) * NB;
        dins[i] = (float *)calloc(cnt, sizeof(float));
        if (id >= 0 && tr->ws->needg[id]) memcpy(dins[i], tr->ws->dout[id], cnt * sizeof(float));
    }
    for (i = 0; i < f->g->n_par; i++) {
        const advnn__param *p = &f->g->par[i];
        double gmax = 0;
        int64_t step = p->size > 24 ? p->size / 24 : 1;
        if (!p->trainable) continue;
        for (k = 0; k < p->size; k++) gmax = fmax(gmax, fabs(grad[p->off + k]));
        for (k = 0; k < p->size; k += (int)step) {
            float *w = &f->g->params[p->off + k], w0 = *w;
            double h = 1e-3, lp, lm, fd, an = grad[p->off + k];
            *w = (float)(w0 + h); lp = objective(tr, f->d, idx);
            *w = (float)(w0 - h); lm = objective(tr, f->d, idx);
            *w = w0;
            fd = (lp - lm) / (2 * h);
            if (!(fabs(an - fd) <= 2e-2 * fabs(fd) + 2e-3 * gmax + 1e-4 * l0)) {
                if (bad < 5) CHECK(0, "%s: param block %d (node %d) entry %d: analytic %.6g, finite difference %.6g", what, i, p->node, k, an, fd);
                bad++;
            }
        }
        gall = fmax(gall, gmax);
    }
    CHECK(gall > 1e-3, "%s: the gradient is (nearly) zero everywhere: the check would prove nothing", what);
    /* gradients with respect to the data inputs (labels and weights included: they are inputs too,
     * but only continuous ones are checked: names starting with 'x') */
    for (i = 0; i < f->nt; i++) {
        int id = advnn_find(f->g, f->tname[i]);
        advnn_tensor *t = f->t[i];
        double gmax = 0;
        int64_t step, per;
        if (id < 0 || f->tname[i][0] != 'x' || !tr->ws->needg[id]) continue;
        per = t->size / t->shape[0];
        step = NB * per > 30 ? NB * per / 30 : 1;
        for (k = 0; k < NB * per; k++) gmax = fmax(gmax, fabs(dins[i][k]));
        for (k = 0; k < NB * per; k += (int)step) {
            float *v = &t->data[k], v0 = *v;
            double h = 1e-3, lp, lm, fd, an = dins[i][k];
            *v = (float)(v0 + h); lp = objective(tr, f->d, idx);
            *v = (float)(v0 - h); lm = objective(tr, f->d, idx);
            *v = v0;
            fd = (lp - lm) / (2 * h);
            if (!(fabs(an - fd) <= 2e-2 * fabs(fd) + 2e-3 * gmax + 1e-4 * l0)) {
                if (bad < 5) CHECK(0, "%s: input '%s' value %d: analytic %.6g, finite difference %.6g", what, f->tname[i], k, an, fd);
                bad++;
            }
        }
        CHECK(gmax > 0, "%s: input '%s' has an all-zero gradient", what, f->tname[i]);
    }
    for (i = 0; i < f->nt; i++) free(dins[i]);
    free(grad);
    advnn_trainer_free(tr);
    return bad;
}

#endif
