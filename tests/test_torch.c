/* Layers checked against PyTorch: forward output, input gradient and every trainable parameter
 * gradient of loss = MSE(y, t) (torch's mean over all elements = advnn_loss_mse with unit weights),
 * compared with reference values computed by PyTorch in float64 from the same float32 inputs and
 * weights. The fixtures are tests/fixtures/<case>_{x,t,y,dx,p<k>,g<k>}.npy, written by
 * tools/make_torch_fixtures.py (parameter blocks already converted to advnn's layouts and block
 * order); this test needs no Python. Run from the repo root.
 *
 * Tolerance: |advnn - torch| <= RTOL * (max|torch| + |torch|) per compared array, RTOL = 1e-5.
 * advnn computes in float32 (unit roundoff 6e-8); each value here is a short sum (at most a few
 * hundred products: conv/dense dot products of <= 32 terms, weight gradients summed over
 * N x positions <= 200 terms, LSTM backpropagation through T = 5 steps), so the accumulated
 * rounding, relative to the array's largest value, stays at a few 1e-7 -- well inside 1e-5. The
 * scale max|torch| is needed because individual entries can be near zero after cancellation. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

#define RTOL 1e-5
#define FIX "tests/fixtures/"

static advnn_tensor *load(const char *cs, const char *suffix, int must) {
    char path[256];
    advnn_tensor *t;
    snprintf(path, sizeof path, FIX "%s_%s.npy", cs, suffix);
    t = advnn_npy_load(path);
    if (!t && must) CHECK(0, "%s: cannot load %s: %s", cs, path, advnn_last_error());
    return t;
}

/* Compares n floats of a with the fixture; returns max |a-b| / max|b|. */
static double compare(const char *cs, const char *what, const float *a, const advnn_tensor *ref, int64_t n) {
    double bmax = 0, emax = 0;
    int64_t i, bad = 0;
    if (!ref) return INFINITY;
    if (ref->size != n) { CHECK(0, "%s %s: advnn has %lld values, the fixture %lld", cs, what, (long long)n, (long long)ref->size); return INFINITY; }
    for (i = 0; i < n; i++) bmax = fmax(bmax, fabs(ref->data[i]));
    for (i = 0; i < n; i++) {
        double b = ref->data[i], e = fabs((double)a[i] - b);
        if (!(e <= RTOL * (bmax + fabs(b)))) {
            if (bad < 3) CHECK(0, "%s %s[%lld]: advnn %.8g, torch %.8g (max|torch| %.4g)", cs, what, (long long)i, a[i], b, bmax);
            bad++;
        }
        if (isnan(a[i])) e = INFINITY;
        emax = fmax(emax, e);
    }
    CHECK(bmax > 0, "%s %s: the reference is all zero: the check would prove nothing", cs, what);
    return bmax > 0 ? emax / bmax : emax;
}

/* A case builds its layers on input x (and j) and returns the output node. */
typedef int (*build_fn)(advnn_graph *g, int x, int j);

static void run_case(const char *cs, int xnd, int x0, int x1, int x2, int jn, build_fn build) {
    advnn_graph *g = advnn_graph_new();
    advnn_dataset *d = advnn_dataset_new();
    advnn_trainer *tr = NULL;
    advnn_tensor *X, *T, *J = NULL, *Y, *DX, *DJ = NULL, *extra;
    int xs[3], sh[3], x, j = -1, y, t, nd, k, n;
    double e, ey, edx, edj = 0, eg = 0;
    char suf[16];
    xs[0] = x0; xs[1] = x1; xs[2] = x2;
    x = advnn_input(g, "x", xnd, xs);
    if (jn > 0) j = advnn_input(g, "j", 1, &jn);
    y = build(g, x, j);
    nd = advnn_node_shape(g, y, sh);
    t = advnn_input(g, "t", nd, sh);
    advnn_loss_mse(g, y, t, -1);
    if (advnn_graph_finalize(g, 1) != ADVNN_OK) { CHECK(0, "%s: finalize: %s", cs, advnn_last_error()); advnn_graph_free(g); advnn_dataset_free(d); return; }

    /* weights: one fixture file per parameter block, in block order, and no more */
    for (k = 0; k < g->n_par; k++) {
        advnn_tensor *p;
        snprintf(suf, sizeof suf, "p%d", k);
        p = load(cs, suf, 1);
        if (!p) continue;
        if (p->size != (int64_t)g->par[k].rows * g->par[k].cols)
            CHECK(0, "%s: block %d is %dx%d, the fixture has %lld values", cs, k, g->par[k].rows, g->par[k].cols, (long long)p->size);
        else memcpy(g->params + g->par[k].off, p->data, (size_t)p->size * sizeof(float));
        advnn_tensor_free(p);
    }
    snprintf(suf, sizeof suf, "p%d", g->n_par);
    extra = load(cs, suf, 0);
    CHECK(!extra, "%s: the fixture has more parameter blocks than the graph (%d)", cs, g->n_par);
    advnn_tensor_free(extra);

    X = load(cs, "x", 1); T = load(cs, "t", 1); Y = load(cs, "y", 1); DX = load(cs, "dx", 1);
    if (jn > 0) { J = load(cs, "j", 1); DJ = load(cs, "dj", 1); }
    if (!X || !T || !Y || !DX || (jn > 0 && (!J || !DJ))) goto done;
    n = (int)X->shape[0];
    if (advnn_dataset_add(d, "x", X) != ADVNN_OK || advnn_dataset_add(d, "t", T) != ADVNN_OK ||
        (J && advnn_dataset_add(d, "j", J) != ADVNN_OK)) { CHECK(0, "%s: dataset: %s", cs, advnn_last_error()); goto done; }

    /* one forward/backward pass in training mode (BatchNorm uses batch statistics) */
    tr = advnn_trainer_new(g, n, 1);
    if (!tr) { CHECK(0, "%s: trainer: %s", cs, advnn_last_error()); goto done; }
    tr->ws->training = 1;
    tr->ws->input_grads = 1;
    advnn__mark_needed(tr->ws, -1);
    advnn__mark_grad(tr->ws);
    if (advnn__gather(tr->ws, d, NULL, 0, n) != ADVNN_OK || advnn__forward(tr->ws, n) != ADVNN_OK) {
        CHECK(0, "%s: forward: %s", cs, advnn_last_error());
        goto done;
    }
    advnn__backward(tr->ws, n);

    ey = compare(cs, "y", tr->ws->out[y], Y, (int64_t)n * g->nodes[y].size);
    CHECK(tr->ws->needg[x], "%s: no gradient for x", cs);
    edx = tr->ws->needg[x] ? compare(cs, "dx", tr->ws->dout[x], DX, (int64_t)n * g->nodes[x].size) : INFINITY;
    if (jn > 0) edj = tr->ws->needg[j] ? compare(cs, "dj", tr->ws->dout[j], DJ, (int64_t)n * jn) : INFINITY;
    for (k = 0; k < g->n_par; k++) {
        advnn_tensor *gr;
        char what[32];
        snprintf(suf, sizeof suf, "g%d", k);
        gr = load(cs, suf, g->par[k].trainable);
        if (!g->par[k].trainable) { CHECK(!gr, "%s: block %d is not trainable but has a gradient file", cs, k); advnn_tensor_free(gr); continue; }
        snprintf(what, sizeof what, "grad of block %d", k);
        e = compare(cs, what, tr->ws->pgrad + g->par[k].off, gr, g->par[k].size);
        eg = fmax(eg, e);
        advnn_tensor_free(gr);
    }
    printf("     %-22s max rel err: y %.2e  dx %.2e%s", cs, ey, edx, jn > 0 ? "  dj " : "");
    if (jn > 0) printf("%.2e", edj);
    printf("  params %.2e (%d blocks)\n", eg, g->n_par);
done:
    advnn_trainer_free(tr);
    advnn_dataset_free(d);
    advnn_tensor_free(X); advnn_tensor_free(T); advnn_tensor_free(J);
    advnn_tensor_free(Y); advnn_tensor_free(DX); advnn_tensor_free(DJ);
    advnn_graph_free(g);
}

/* ---------------------------------------------------------------- cases (must mirror the script) */
static int b_dense_tanh(advnn_graph *g, int x, int j) { (void)j; return advnn_dense(g, x, 3, ADVNN_ACT_TANH); }
static int b_dense_elu(advnn_graph *g, int x, int j) { (void)j; return advnn_dense(g, x, 4, ADVNN_ACT_ELU); }
static int b_dense_sigmoid(advnn_graph *g, int x, int j) { (void)j; return advnn_dense(g, x, 3, ADVNN_ACT_SIGMOID); }
static int b_conv1d_k1(advnn_graph *g, int x, int j) { (void)j; return advnn_conv1d(g, x, 5, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU); }
static int b_conv1d_k3(advnn_graph *g, int x, int j) { (void)j; return advnn_conv1d(g, x, 4, 3, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR); }
static int b_conv1d_k2s2(advnn_graph *g, int x, int j) { (void)j; return advnn_conv1d(g, x, 4, 2, 2, ADVNN_PAD_SAME, ADVNN_ACT_SOFTPLUS); }
static int b_conv2d_same_prelu(advnn_graph *g, int x, int j) {
    (void)j;
    return advnn_prelu(g, advnn_conv2d(g, x, 3, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR));
}
static int b_conv2d_valid_s2(advnn_graph *g, int x, int j) { (void)j; return advnn_conv2d(g, x, 3, 2, 2, 2, 2, ADVNN_PAD_VALID, ADVNN_ACT_TANH); }
static int b_maxpool(advnn_graph *g, int x, int j) { (void)j; return advnn_maxpool2d(g, x, 2, 2, 0, 0); }
static int b_avgpool(advnn_graph *g, int x, int j) { (void)j; return advnn_avgpool2d(g, x, 2, 2, 0, 0); }
static int b_upsample_conv(advnn_graph *g, int x, int j) {
    (void)j;
    return advnn_conv2d(g, advnn_upsample2d(g, x, 2, 2), 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_SIGMOID);
}
static int b_lstm_last(advnn_graph *g, int x, int j) { (void)j; return advnn_lstm(g, x, 4, 0, -1); }
static int b_lstm_seq(advnn_graph *g, int x, int j) { (void)j; return advnn_lstm(g, x, 4, 1, -1); }
static int b_batchnorm(advnn_graph *g, int x, int j) { (void)j; return advnn_batchnorm(g, x); }   /* eps 1e-3 */
/* W1-like: batchnorm -> dense 8 relu -> dense 1 */
static int b_w1(advnn_graph *g, int x, int j) {
    int h;
    (void)j;
    h = advnn_batchnorm(g, x);
    h = advnn_dense(g, h, 8, ADVNN_ACT_RELU);
    return advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
}
/* W2-like: conv1d k=1 8 relu -> lstm 4 -> concat with the jet vector j (3) -> dense 3 */
static int b_w2(advnn_graph *g, int x, int j) {
    int ins[2];
    ins[0] = advnn_lstm(g, advnn_conv1d(g, x, 8, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU), 4, 0, -1);
    ins[1] = j;
    return advnn_dense(g, advnn_concat(g, 2, ins), 3, ADVNN_ACT_LINEAR);
}
/* W3-like: conv2d 3x3 same 2 + prelu -> avgpool 2 -> flatten -> dense 6 relu -> dense 16 ->
 * reshape (4,4,1) -> upsample 2 -> conv2d 3x3 same 1 linear */
static int b_w3(advnn_graph *g, int x, int j) {
    int h, rs[3];
    (void)j;
    rs[0] = 4; rs[1] = 4; rs[2] = 1;
    h = advnn_prelu(g, advnn_conv2d(g, x, 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR));
    h = advnn_flatten(g, advnn_avgpool2d(g, h, 2, 2, 0, 0));
    h = advnn_dense(g, h, 6, ADVNN_ACT_RELU);
    h = advnn_dense(g, h, 16, ADVNN_ACT_LINEAR);
    h = advnn_upsample2d(g, advnn_reshape(g, h, 3, rs), 2, 2);
    return advnn_conv2d(g, h, 1, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR);
}

static void test_torch_dense(void) {
    run_case("dense_tanh", 1, 5, 0, 0, 0, b_dense_tanh);
    run_case("dense_elu", 1, 5, 0, 0, 0, b_dense_elu);
    run_case("dense_sigmoid", 1, 5, 0, 0, 0, b_dense_sigmoid);
}
static void test_torch_conv1d(void) {
    run_case("conv1d_k1_relu", 2, 6, 4, 0, 0, b_conv1d_k1);
    run_case("conv1d_k3_same", 2, 7, 3, 0, 0, b_conv1d_k3);
    run_case("conv1d_k2_s2_same", 2, 7, 3, 0, 0, b_conv1d_k2s2);
}
static void test_torch_conv2d(void) {
    run_case("conv2d_3x3_same_prelu", 3, 5, 6, 2, 0, b_conv2d_same_prelu);
    run_case("conv2d_2x2_valid_s2", 3, 6, 5, 2, 0, b_conv2d_valid_s2);
}
static void test_torch_pool_upsample(void) {
    run_case("maxpool2d", 3, 4, 6, 2, 0, b_maxpool);
    run_case("avgpool2d", 3, 4, 6, 2, 0, b_avgpool);
    run_case("upsample_conv", 3, 3, 3, 2, 0, b_upsample_conv);
}
static void test_torch_lstm(void) {
    run_case("lstm_last", 2, 5, 3, 0, 0, b_lstm_last);
    run_case("lstm_seq", 2, 5, 3, 0, 0, b_lstm_seq);
}
static void test_torch_batchnorm(void) { run_case("batchnorm", 1, 5, 0, 0, 0, b_batchnorm); }
static void test_torch_w1(void) { run_case("w1", 1, 6, 0, 0, 0, b_w1); }
static void test_torch_w2(void) { run_case("w2", 2, 5, 4, 0, 3, b_w2); }
static void test_torch_w3(void) { run_case("w3", 3, 8, 8, 1, 0, b_w3); }

int main(void) {
    RUN(test_torch_dense);
    RUN(test_torch_conv1d);
    RUN(test_torch_conv2d);
    RUN(test_torch_pool_upsample);
    RUN(test_torch_lstm);
    RUN(test_torch_batchnorm);
    RUN(test_torch_w1);
    RUN(test_torch_w2);
    RUN(test_torch_w3);
    return th_report();
}
