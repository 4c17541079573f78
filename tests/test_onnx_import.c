/* ONNX import and per-layer weight access.
 *  - advnn_weight_*: names, shapes and layouts of every layer's blocks, checked against forward
 *    passes computed by hand; get/set round trips; bad nodes, names, sizes and values refused.
 *  - advnn_onnx_load on PyTorch exports (tests/fixtures/onnx/, written by tools/make_onnx_fixtures.py):
 *    a dense net, an NCHW conv net, an LSTM with sequence_lens, a sequence net (MatMul + Add, NCL
 *    Conv1d and pooling, an LSTM's output sequence, opset 11), small W1/W2/W3 composites. The
 *    outputs must match PyTorch's (computed in float64) within a relative error of 1e-5, defined as
 *    max_i |advnn_i - torch_i| / max_i |torch_i| over the whole output tensor. The imported graph must
 *    save and reload as an advnn model file with bit-identical outputs.
 *  - Refusals: an unsupported operator, opsets outside 11..21, every truncation of every fixture,
 *    random byte mutations (no crash), crafted files (allocation bombs, malformed wire data, layouts
 *    advnn cannot reproduce): NULL with a message naming what is wrong, bounded allocation.
 *  - tools/advnn_inspect.c on fixtures (included here without its main). */
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* allocation accounting through the allocator macros: current and peak bytes. Not inlined: gcc
 * would otherwise see malloc through it and warn (maybe-uninitialized) about buffers the library
 * fills in loops. */
#if defined(__GNUC__) || defined(__clang__)
#define TA_NOINLINE __attribute__((noinline))
#else
#define TA_NOINLINE
#endif
static size_t ta_cur, ta_peak;
static TA_NOINLINE void *ta_malloc(size_t n) {
    size_t *p = (size_t *)malloc(n + 16);
    if (!p) return NULL;
    p[0] = n; ta_cur += n; if (ta_cur > ta_peak) ta_peak = ta_cur;
    return (char *)p + 16;
}
static TA_NOINLINE void ta_free(void *q) {
    if (!q) return;
    size_t *p = (size_t *)(void *)((char *)q - 16);
    ta_cur -= p[0];
    free(p);
}
static TA_NOINLINE void *ta_realloc(void *q, size_t n) {
    void *r;
    if (!q) return ta_malloc(n);
    r = ta_malloc(n);
    if (!r) return NULL;
    {
        size_t old = ((size_t *)(void *)((char *)q - 16))[0];
        memcpy(r, q, old < n ? old : n);
    }
    ta_free(q);
    return r;
}
#define ADVNN_MALLOC(sz) ta_malloc(sz)
#define ADVNN_REALLOC(p, sz) ta_realloc(p, sz)
#define ADVNN_FREE(p) ta_free(p)
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#define ADVNN_INSPECT_NO_MAIN
#include "../tools/advnn_inspect.c"

#define FIXDIR "tests/fixtures/onnx/"

static uint64_t rs = 88172645463325252ull;
static double urand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (double)(rs >> 11) / 9007199254740992.0; }
static void fill(float *p, int64_t n, double scale) { for (int64_t i = 0; i < n; i++) p[i] = (float)((2 * urand() - 1) * scale); }
static double sigm(double z) { return 1 / (1 + exp(-z)); }

static int infer1(advnn_graph *g, int n, const float *const *in, int node, float *out) {
    advnn_ws *ws = advnn_ws_new(g, n);
    advnn_status st = ws ? advnn_infer(ws, n, in, node, out) : ADVNN_ERR_NOMEM;
    advnn_ws_free(ws);
    return st == ADVNN_OK;
}

static void set_random(advnn_graph *g, int node, double scale) {
    for (int k = 0; k < advnn_weight_count(g, node); k++) {
        const char *nm; int nd; int64_t sh[4], n = 1;
        advnn_weight_info(g, node, k, &nm, &nd, sh);
        for (int d = 0; d < nd; d++) n *= sh[d];
        float *w = (float *)malloc((size_t)n * sizeof *w);
        fill(w, n, scale);
        if (!strcmp(nm, "moving_variance")) for (int64_t i = 0; i < n; i++) w[i] = 0.5f + fabsf(w[i]);
        CHECK(advnn_weight_set(g, node, nm, w, n) == ADVNN_OK, "set %s: %s", nm, advnn_last_error());
        free(w);
    }
}
static void get(advnn_graph *g, int node, const char *name, float *out, int64_t n) {
    CHECK(advnn_weight_get(g, node, name, out, n) == ADVNN_OK, "get %s: %s", name, advnn_last_error());
}
static void expect_shape(advnn_graph *g, int node, int k, const char *name, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    const char *nm = NULL; int ndim = 0; int64_t sh[4] = {0, 0, 0, 0}, want[4] = {a, b, c, d};
    CHECK(advnn_weight_info(g, node, k, &nm, &ndim, sh) == ADVNN_OK, "info %d/%d: %s", node, k, advnn_last_error());
    CHECK(nm && !strcmp(nm, name), "node %d block %d is '%s', expected '%s'", node, k, nm ? nm : "(null)", name);
    CHECK(ndim == nd, "node %d block %s: ndim %d, expected %d", node, name, ndim, nd);
    for (int i = 0; i < nd && i < 4; i++) CHECK(sh[i] == want[i], "node %d block %s axis %d: %lld, expected %lld", node, name, i, (long long)sh[i], (long long)want[i]);
}

static void test_weight_layouts(void) {
    advnn_graph *g = advnn_graph_new();
    int three = 3, ishp[3] = {4, 5, 2}, sshp[2] = {4, 2};
    int x = advnn_input(g, "x", 1, &three);
    int d = advnn_dense(g, x, 2, ADVNN_ACT_LINEAR), sn = advnn_dense_sn(g, x, 2, ADVNN_ACT_LINEAR);
    int bn = advnn_batchnorm_ex(g, d, 0.1f, 1e-3f), pr = advnn_prelu(g, bn);
    int img = advnn_input(g, "img", 3, ishp), cv = advnn_conv2d(g, img, 3, 2, 3, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR);
    int seq = advnn_input(g, "seq", 2, sshp), c1 = advnn_conv1d(g, seq, 3, 2, 1, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR);
    int ls = advnn_lstm(g, seq, 3, 0, -1);
    int x2 = advnn_input(g, "x2", 1, &three), dsh = advnn_shared(g, d, x2, -1), act = advnn_activation(g, d, ADVNN_ACT_TANH);
    float buf[64];
    CHECK(advnn_weight_get(g, d, "kernel", buf, 6) == ADVNN_ERR_STATE, "unfinalized graph must be refused");
    CHECK(advnn_graph_finalize(g, 3) == ADVNN_OK, "finalize: %s", advnn_last_error());
    /* names and shapes */
    CHECK(advnn_weight_count(g, d) == 2 && advnn_weight_count(g, sn) == 4 && advnn_weight_count(g, bn) == 4 && advnn_weight_count(g, pr) == 1 &&
          advnn_weight_count(g, cv) == 2 && advnn_weight_count(g, c1) == 2 && advnn_weight_count(g, ls) == 3 && advnn_weight_count(g, act) == 0 &&
          advnn_weight_count(g, x) == 0 && advnn_weight_count(g, 999) == -1, "block counts");
    expect_shape(g, d, 0, "kernel", 2, 3, 2, 0, 0); expect_shape(g, d, 1, "bias", 1, 2, 0, 0, 0);
    expect_shape(g, sn, 2, "u", 1, 3, 0, 0, 0); expect_shape(g, sn, 3, "v", 1, 2, 0, 0, 0);
    expect_shape(g, bn, 0, "gamma", 1, 2, 0, 0, 0); expect_shape(g, bn, 3, "moving_variance", 1, 2, 0, 0, 0);
    expect_shape(g, pr, 0, "alpha", 1, 2, 0, 0, 0);
    expect_shape(g, cv, 0, "kernel", 4, 2, 3, 2, 3); expect_shape(g, cv, 1, "bias", 1, 3, 0, 0, 0);
    expect_shape(g, c1, 0, "kernel", 3, 2, 2, 3, 0);
    expect_shape(g, ls, 0, "kernel", 2, 2, 12, 0, 0); expect_shape(g, ls, 1, "recurrent_kernel", 2, 3, 12, 0, 0); expect_shape(g, ls, 2, "bias", 1, 12, 0, 0, 0);
    CHECK(!strcmp(advnn_node_kind(g, cv), "conv2d") && !strcmp(advnn_node_kind(g, c1), "conv1d") && !strcmp(advnn_node_kind(g, ls), "lstm") &&
          !strcmp(advnn_node_kind(g, sn), "dense_sn") && !strcmp(advnn_node_kind(g, -1), ""), "node kinds");
    for (int id = 0; id < advnn_node_count(g); id++) if (id != dsh && advnn_weight_count(g, id) > 0) set_random(g, id, 0.7);
    /* round trip, and a shared layer reads its owner's weights */
    {
        float w[6] = {1, 2, 3, 4, 5, 6}, r[6];
        CHECK(advnn_weight_set(g, d, "kernel", w, 6) == ADVNN_OK && advnn_weight_get(g, dsh, "kernel", r, 6) == ADVNN_OK && !memcmp(w, r, sizeof w), "shared layer");
    }
    set_random(g, d, 0.7);
    /* refusals leave the weights unchanged */
    {
        float before[6], after[6], bad[6] = {1, 1, 1, 1, 1, NAN}, neg[2] = {1, -0.5f};
        advnn_weight_get(g, d, "kernel", before, 6);
        CHECK(advnn_weight_set(g, d, "kernel", bad, 6) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "not finite"), "NaN: %s", advnn_last_error());
        CHECK(advnn_weight_set(g, d, "kernel", bad, 5) == ADVNN_ERR_SHAPE && strstr(advnn_last_error(), "has 6 values"), "size: %s", advnn_last_error());
        CHECK(advnn_weight_set(g, d, "kernal", bad, 6) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "no weight block 'kernal'"), "name: %s", advnn_last_error());
        CHECK(advnn_weight_set(g, bn, "moving_variance", neg, 2) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "negative"), "variance: %s", advnn_last_error());
        CHECK(advnn_weight_get(g, act, "kernel", after, 6) == ADVNN_ERR_ARG, "activation has no weights");
        CHECK(advnn_weight_get(g, 1000, "kernel", after, 6) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "does not exist"), "bad node");
        CHECK(advnn_weight_info(g, d, 2, NULL, NULL, NULL) == ADVNN_ERR_ARG, "block index out of range");
        advnn_weight_get(g, d, "kernel", after, 6);
        CHECK(!memcmp(before, after, sizeof before), "refused set changed the weights");
    }
    /* layouts against forward passes computed here */
    {
        float xin[2 * 3], y[2 * 2], yp[2 * 2];
        const float *in[4] = {xin, NULL, NULL, NULL};
        fill(xin, 6, 1.0);
        float W[6], b[2], ga[2], be[2], mu[2];
        get(g, d, "kernel", W, 6); get(g, d, "bias", b, 2);
        CHECK(infer1(g, 2, in, d, y), "dense infer: %s", advnn_last_error());
        float var[2], al[2];
        get(g, bn, "gamma", ga, 2); get(g, bn, "beta", be, 2); get(g, bn, "moving_mean", mu, 2);
        advnn_weight_get(g, bn, "moving_variance", var, 2); advnn_weight_get(g, pr, "alpha", al, 2);
        CHECK(infer1(g, 2, in, pr, yp), "bn infer");
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < 2; j++) {
                double z = b[j];
                for (int k = 0; k < 3; k++) z += (double)xin[r * 3 + k] * W[k * 2 + j];   /* kernel (in, units) */
                CHECK(th_close(y[r * 2 + j], z, 1e-5, 1e-6), "dense [%d,%d] %g vs %g", r, j, y[r * 2 + j], z);
                double h = ga[j] * (z - mu[j]) / sqrt(var[j] + 1e-3) + be[j];
                h = h > 0 ? h : al[j] * h;
                CHECK(th_close(yp[r * 2 + j], h, 1e-5, 1e-6), "bn+prelu [%d,%d] %g vs %g", r, j, yp[r * 2 + j], h);
            }
    }
    {
        float im[4 * 5 * 2], y[3 * 3 * 3];
        const float *in[4] = {NULL, im, NULL, NULL};
        fill(im, 40, 1.0);
        float K[2 * 3 * 2 * 3], B[3];
        advnn_weight_get(g, cv, "kernel", K, 36); advnn_weight_get(g, cv, "bias", B, 3);
        CHECK(infer1(g, 1, in, cv, y), "conv2d infer");
        for (int oh = 0; oh < 3; oh++) for (int ow = 0; ow < 3; ow++) for (int f = 0; f < 3; f++) {
            double z = B[f];
            for (int a = 0; a < 2; a++) for (int bb = 0; bb < 3; bb++) for (int c = 0; c < 2; c++)
                z += (double)im[((oh + a) * 5 + ow + bb) * 2 + c] * K[((a * 3 + bb) * 2 + c) * 3 + f];   /* (KH, KW, Cin, F) */
            CHECK(th_close(y[(oh * 3 + ow) * 3 + f], z, 1e-5, 1e-6), "conv2d (%d,%d,%d) %g vs %g", oh, ow, f, y[(oh * 3 + ow) * 3 + f], z);
        }
    }
    {
        float s[4 * 2], y1[3 * 3], yl[3];
        const float *in[4] = {NULL, NULL, s, NULL};
        fill(s, 8, 1.0);
        float K[2 * 2 * 3], B[3], Wk[2 * 12], U[3 * 12], bl[12];
        advnn_weight_get(g, c1, "kernel", K, 12); advnn_weight_get(g, c1, "bias", B, 3);
        advnn_weight_get(g, ls, "kernel", Wk, 24); advnn_weight_get(g, ls, "recurrent_kernel", U, 36); advnn_weight_get(g, ls, "bias", bl, 12);
        CHECK(infer1(g, 1, in, c1, y1) && infer1(g, 1, in, ls, yl), "seq infer");
        for (int t = 0; t < 3; t++) for (int f = 0; f < 3; f++) {
            double z = B[f];
            for (int k = 0; k < 2; k++) for (int c = 0; c < 2; c++) z += (double)s[(t + k) * 2 + c] * K[(k * 2 + c) * 3 + f];   /* (K, Cin, F) */
            CHECK(th_close(y1[t * 3 + f], z, 1e-5, 1e-6), "conv1d (%d,%d) %g vs %g", t, f, y1[t * 3 + f], z);
        }
        double h[3] = {0, 0, 0}, c[3] = {0, 0, 0};
        for (int t = 0; t < 4; t++) {
            double z[12], hn[3];
            for (int j = 0; j < 12; j++) {
                z[j] = bl[j];
                for (int k = 0; k < 2; k++) z[j] += (double)s[t * 2 + k] * Wk[k * 12 + j];
                for (int k = 0; k < 3; k++) z[j] += h[k] * U[k * 12 + j];
            }
            for (int j = 0; j < 3; j++) {   /* gate blocks i, f, c, o */
                double ig = sigm(z[j]), fg = sigm(z[3 + j]), cc = tanh(z[6 + j]), og = sigm(z[9 + j]);
                c[j] = fg * c[j] + ig * cc; hn[j] = og * tanh(c[j]);
            }
            memcpy(h, hn, sizeof h);
        }
        for (int j = 0; j < 3; j++) CHECK(th_close(yl[j], h[j], 1e-5, 1e-6), "lstm h[%d] %g vs %g", j, yl[j], h[j]);
    }
    advnn_graph_free(g);
}

/* ---------------------------------------------------------------- fixtures */
static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* An array as PyTorch holds it (batch first, channels-first images) in advnn's per-sample layout
 * `shape` (nd axes): as it is, or moved channels-last. Returns malloc'd data or NULL. */
static float *to_advnn(const advnn_tensor *t, int nd, const int *shape) {
    int64_t N = t->shape[0], S = t->size / (N ? N : 1);
    float *o = (float *)malloc((size_t)t->size * sizeof *o);
    int same = t->ndim - 1 == nd, cl = t->ndim - 1 == nd && nd >= 2;
    for (int k = 0; k < nd && same; k++) same = t->shape[k + 1] == shape[k];
    if (cl) { cl = t->shape[1] == shape[nd - 1]; for (int k = 0; k + 1 < nd; k++) cl = cl && t->shape[k + 2] == shape[k]; }
    if (t->ndim == 1 && nd == 1 && shape[0] == 1) same = 1;
    if (same) { memcpy(o, t->data, (size_t)t->size * sizeof *o); return o; }
    if (!cl) { free(o); return NULL; }
    {
        int64_t C = shape[nd - 1], P = S / C;
        for (int64_t n = 0; n < N; n++) for (int64_t c = 0; c < C; c++) for (int64_t p = 0; p < P; p++)
            o[n * S + p * C + c] = t->data[n * S + c * P + p];
    }
    return o;
}

static void run_fixture(const char *name, int n_in) {
    char path[256];
    snprintf(path, sizeof path, FIXDIR "%s.onnx", name);
    advnn_graph *g = advnn_onnx_load(path);
    CHECK(g, "%s: %s", name, advnn_last_error());
    if (!g) return;
    CHECK(advnn_input_count(g) == n_in, "%s: %d inputs, expected %d", name, advnn_input_count(g), n_in);
    float *in[8] = {0};
    int64_t N = -1;
    for (int k = 0; k < n_in && k < advnn_input_count(g); k++) {
        int shape[3], nd = advnn_node_shape(g, advnn_input_node(g, k), shape);
        snprintf(path, sizeof path, FIXDIR "%s_in%d.npy", name, k);
        advnn_tensor *t = advnn_npy_load(path);
        CHECK(t, "%s: %s", path, advnn_last_error());
        if (!t) continue;
        in[k] = to_advnn(t, nd, shape);
        CHECK(in[k], "%s input %d: npy layout does not match the advnn input", name, k);
        N = t->shape[0];
        advnn_tensor_free(t);
    }
    snprintf(path, sizeof path, FIXDIR "%s_out.npy", name);
    advnn_tensor *ref = advnn_npy_load(path);
    int out = advnn_find(g, "y");
    CHECK(ref && out >= 0, "%s: no reference or no output 'y'", name);
    if (ref && out >= 0 && N > 0) {
        int shape[3], nd = advnn_node_shape(g, out, shape);
        float *r = to_advnn(ref, nd, shape), *y = (float *)calloc((size_t)ref->size, sizeof *y), *y2 = (float *)calloc((size_t)ref->size, sizeof *y2);
        CHECK(r && ref->shape[0] == N, "%s: reference layout", name);
        CHECK(infer1(g, (int)N, (const float *const *)in, out, y), "%s infer: %s", name, advnn_last_error());
        double emax = 0, rmax = 0;
        for (int64_t i = 0; r && i < ref->size; i++) { emax = fmax(emax, fabs((double)y[i] - r[i])); rmax = fmax(rmax, fabs((double)r[i])); }
        double rel = emax / (rmax > 0 ? rmax : 1);
        printf("     %-6s %lld outputs, max |advnn - torch| / max |torch| = %.2e\n", name, (long long)ref->size, rel);
        CHECK(rel <= 1e-5, "%s: relative error %.3g > 1e-5", name, rel);
        /* the imported graph as an advnn model file: same outputs, bit for bit */
        void *buf = NULL; size_t len = 0;
        CHECK(advnn_model_save_mem(g, &buf, &len) == ADVNN_OK, "%s save: %s", name, advnn_last_error());
        advnn_graph *g2 = buf ? advnn_model_load_mem(buf, len) : NULL;
        CHECK(g2, "%s reload: %s", name, advnn_last_error());
        if (g2) {
            CHECK(infer1(g2, (int)N, (const float *const *)in, advnn_find(g2, "y"), y2), "%s reload infer", name);
            CHECK(!memcmp(y, y2, (size_t)ref->size * sizeof *y), "%s: reloaded model computes different outputs", name);
        }
        advnn_graph_free(g2);
        ADVNN_FREE(buf);
        free(r); free(y); free(y2);
    }
    advnn_tensor_free(ref);
    for (int k = 0; k < 8; k++) free(in[k]);
    advnn_graph_free(g);
}
static void test_fixture_dense(void) { run_fixture("dense", 1); }
static void test_fixture_conv_nchw(void) { run_fixture("conv", 1); }
static void test_fixture_lstm_seqlens(void) { run_fixture("lstm", 2); }
static void test_fixture_seq(void) { run_fixture("seq", 1); }
static void test_fixture_w1(void) { run_fixture("w1", 1); }
static void test_fixture_w2(void) { run_fixture("w2", 4); }
static void test_fixture_w3(void) { run_fixture("w3", 1); }

static void expect_refused(const unsigned char *b, size_t len, const char *const *words, const char *what) {
    advnn_graph *g = advnn_onnx_load_mem(b, len);
    CHECK(!g, "%s: loaded", what);
    for (int i = 0; words && words[i]; i++) CHECK(strstr(advnn_last_error(), words[i]), "%s: message lacks '%s': %s", what, words[i], advnn_last_error());
    advnn_graph_free(g);
}

static void test_unsupported_and_opsets(void) {
    size_t len;
    unsigned char *b = read_all(FIXDIR "unsupported_op.onnx", &len);
    CHECK(b, "missing fixture");
    if (b) { const char *w[] = {"'Sin'", "'/Sin'", "opset 13", NULL}; expect_refused(b, len, w, "Sin"); free(b); }
    CHECK(!advnn_onnx_load(FIXDIR "opset7.onnx") && strstr(advnn_last_error(), "opset 7") && strstr(advnn_last_error(), "opset7.onnx"),
          "opset 7: %s", advnn_last_error());
    CHECK(!advnn_onnx_load(FIXDIR "opset22.onnx") && strstr(advnn_last_error(), "opset 22"), "opset 22: %s", advnn_last_error());
    CHECK(!advnn_onnx_load(FIXDIR "no_such_file.onnx") && advnn_last_error()[0], "missing file");
}

static const char *const FIXTURES[] = {"dense", "conv", "lstm", "seq", "w1", "w2", "w3", "unsupported_op", "opset7"};

static void test_every_truncation(void) {
    size_t total = 0;
    for (size_t f = 0; f < sizeof FIXTURES / sizeof FIXTURES[0]; f++) {
        char path[256];
        size_t len, bad = 0;
        snprintf(path, sizeof path, FIXDIR "%s.onnx", FIXTURES[f]);
        unsigned char *b = read_all(path, &len);
        CHECK(b, "missing %s", path);
        if (!b) continue;
        for (size_t n = 0; n < len; n++) {
            unsigned char *c = (unsigned char *)malloc(n + 1);   /* exactly n bytes visible to ASan */
            memcpy(c, b, n);
            advnn_graph *g = advnn_onnx_load_mem(c, n);
            if (g || !advnn_last_error()[0]) bad++;
            advnn_graph_free(g);
            free(c);
        }
        CHECK(bad == 0, "%s: %zu of %zu truncations were not refused with a message", FIXTURES[f], bad, len);
        total += len;
        free(b);
    }
    printf("     %zu truncations refused\n", total);
}

/* Random byte mutations: no crash, a message on refusal, an accepted model runs. */
static void test_mutations(void) {
    int loaded = 0, refused = 0;
    for (size_t f = 0; f < sizeof FIXTURES / sizeof FIXTURES[0]; f++) {
        char path[256];
        size_t len;
        snprintf(path, sizeof path, FIXDIR "%s.onnx", FIXTURES[f]);
        unsigned char *b = read_all(path, &len);
        if (!b) { CHECK(0, "missing %s", path); continue; }
        for (int it = 0; it < 150; it++) {
            unsigned char *c = (unsigned char *)malloc(len);
            memcpy(c, b, len);
            for (int m = 0; m < 1 + it % 3; m++) c[(size_t)(urand() * len) % len] = (unsigned char)(urand() * 256);
            advnn_graph *g = advnn_onnx_load_mem(c, len);
            if (g) {
                int node = advnn_node_count(g) - 1, sizes = 1;
                float *in[8] = {0}, *out = NULL;
                for (int k = 0; k < advnn_input_count(g) && k < 8; k++) {
                    int shape[3], nd = advnn_node_shape(g, advnn_input_node(g, k), shape), s = 1;
                    for (int d = 0; d < nd; d++) s *= shape[d];
                    sizes = sizes && s < (1 << 16);
                    in[k] = (float *)calloc((size_t)s * 2, sizeof(float));
                }
                if (sizes && advnn_input_count(g) <= 8) {
                    int shape[3], nd = advnn_node_shape(g, node, shape), s = 1;
                    for (int d = 0; d < nd; d++) s *= shape[d];
                    out = (float *)calloc((size_t)s * 2, sizeof(float));
                    (void)infer1(g, 2, (const float *const *)in, node, out);
                }
                free(out);
                for (int k = 0; k < 8; k++) free(in[k]);
                loaded++;
            } else {
                CHECK(advnn_last_error()[0], "refused without a message");
                refused++;
            }
            advnn_graph_free(g);
            free(c);
        }
        free(b);
    }
    printf("     mutations: %d refused, %d loaded and ran\n", refused, loaded);
}

/* ---------------------------------------------------------------- crafted protobuf */
typedef struct { unsigned char b[1 << 16]; size_t n; } pbw;
static void pv(pbw *w, uint64_t v) { do { w->b[w->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v); }
static void pint(pbw *w, int field, int64_t v) { pv(w, (uint64_t)field << 3); pv(w, (uint64_t)v); }
static void pbytes(pbw *w, int field, const void *p, size_t n) { pv(w, (uint64_t)field << 3 | 2); pv(w, n); memcpy(w->b + w->n, p, n); w->n += n; }
static void pstr(pbw *w, int field, const char *s) { pbytes(w, field, s, strlen(s)); }
static void pmsg(pbw *w, int field, const pbw *m) { pbytes(w, field, m->b, m->n); }
static void value_info(pbw *g, int field, const char *name, int ndim, const int64_t *dims, int elem) {
    pbw vi = {{0}, 0}, tp = {{0}, 0}, tt = {{0}, 0}, sh = {{0}, 0};
    for (int k = 0; k < ndim; k++) {
        pbw d = {{0}, 0};
        if (dims[k] < 0) pstr(&d, 2, "batch"); else pint(&d, 1, dims[k]);
        pmsg(&sh, 1, &d);
    }
    pint(&tt, 1, elem); pmsg(&tt, 2, &sh); pmsg(&tp, 1, &tt);
    pstr(&vi, 1, name); pmsg(&vi, 2, &tp);
    pmsg(g, field, &vi);
}
static void tensor(pbw *g, int field, const char *name, int ndim, const int64_t *dims, const float *v, int64_t nv) {
    pbw t = {{0}, 0};
    for (int k = 0; k < ndim; k++) pint(&t, 1, dims[k]);
    pint(&t, 2, 1); pstr(&t, 8, name);
    pbytes(&t, 9, v, (size_t)nv * 4);
    pmsg(g, field, &t);
}
/* node with up to 3 inputs, one output, an optional int attribute */
static void node(pbw *g, const char *op, const char *name, const char *i0, const char *i1, const char *i2, const char *out, const char *attr, int64_t av) {
    pbw n = {{0}, 0};
    if (i0) pstr(&n, 1, i0);
    if (i1) pstr(&n, 1, i1);
    if (i2) pstr(&n, 1, i2);
    pstr(&n, 2, out); pstr(&n, 3, name); pstr(&n, 4, op);
    if (attr) { pbw a = {{0}, 0}; pstr(&a, 1, attr); pint(&a, 3, av); pint(&a, 20, 2); pmsg(&n, 5, &a); }
    pmsg(g, 1, &n);
}
static void model(pbw *m, const pbw *g, int opset) {
    pbw o = {{0}, 0};
    m->n = 0;
    pint(m, 1, 8); pstr(m, 2, "crafted"); pmsg(m, 7, g);
    pint(&o, 2, opset); pmsg(m, 8, &o);
}

static pbw G, M;
static void test_crafted(void) {
    int64_t d2[2] = {-1, 4}, d4[4] = {-1, 3, 5, 5}, wd[2] = {3, 4};
    float w[64];
    fill(w, 64, 1.0);
    /* a valid baseline: x (N, 4) -> Gemm -> y */
    G.n = 0; node(&G, "Gemm", "fc", "x", "W", NULL, "y", "transB", 1); tensor(&G, 5, "W", 2, wd, w, 12);
    value_info(&G, 11, "x", 2, d2, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
    advnn_graph *g = advnn_onnx_load_mem(M.b, M.n);
    CHECK(g && advnn_find(g, "y") >= 0, "baseline: %s", advnn_last_error());
    advnn_graph_free(g);
    /* allocation bomb: a 2^20 x 2^20 initializer holding 12 values */
    {
        int64_t big[2] = {1 << 20, 1 << 20};
        G.n = 0; node(&G, "Gemm", "fc", "x", "W", NULL, "y", NULL, 0); tensor(&G, 5, "W", 2, big, w, 12);
        value_info(&G, 11, "x", 2, d2, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
        ta_peak = ta_cur = 0;
        const char *wd1[] = {"initializer 0", "1099511627776 values", NULL};
        expect_refused(M.b, M.n, wd1, "bomb");
        CHECK(ta_peak < (1 << 20), "bomb: peak allocation %zu bytes", ta_peak);
    }
    /* a length prefix beyond the end; field 0; wire types 3 and 7; an 11-byte varint */
    {
        unsigned char a[] = {0x3a, 0xff, 0xff, 0xff, 0x0f, 0x00}, b0[] = {0x00, 0x01}, b3[] = {0x0b, 0x01}, b7[] = {0x0f, 0x01},
                      v11[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
        const char *wd1[] = {"not a valid protobuf", NULL};
        expect_refused(a, sizeof a, wd1, "long length");
        expect_refused(b0, sizeof b0, wd1, "field 0");
        expect_refused(b3, sizeof b3, wd1, "group");
        expect_refused(b7, sizeof b7, wd1, "wire type 7");
        expect_refused(v11, sizeof v11, wd1, "11-byte varint");
        expect_refused((const unsigned char *)"\x08\x01", 2, (const char *const[]){"no graph", NULL}, "no graph");
    }
    /* undefined input, a residual Add, grouped conv, dilated conv, a bidirectional LSTM, 'same' with the pad before */
    {
        G.n = 0; node(&G, "Relu", "r", "nope", NULL, NULL, "y", NULL, 0);
        value_info(&G, 11, "x", 2, d2, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"'nope' is not defined", "'r'", NULL}, "undefined");
        G.n = 0; node(&G, "Relu", "r", "x", NULL, NULL, "h", NULL, 0); node(&G, "Add", "res", "x", "h", NULL, "y", NULL, 0);
        value_info(&G, 11, "x", 2, d2, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"'res' (Add, opset 13)", "bias of the MatMul", NULL}, "residual add");
        int64_t cw[4] = {2, 3, 3, 3};
        G.n = 0; node(&G, "Conv", "cv", "img", "K", NULL, "y", "group", 3); tensor(&G, 5, "K", 4, cw, w, 54);
        value_info(&G, 11, "img", 4, d4, 1); value_info(&G, 12, "y", 4, d4, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"group = 3", "'cv'", NULL}, "grouped conv");
        G.n = 0; node(&G, "Conv", "cv", "img", "K", NULL, "y", NULL, 0); tensor(&G, 5, "K", 4, cw, w, 54);
        value_info(&G, 11, "img", 4, d4, 1); value_info(&G, 12, "y", 4, d4, 1); model(&M, &G, 13);
        g = advnn_onnx_load_mem(M.b, M.n);
        CHECK(g, "valid conv: %s", advnn_last_error());
        advnn_graph_free(g);
        pbw n = {{0}, 0}, a = {{0}, 0};   /* pads (0, 0, 1, 1): the 'same' pad put before, as Keras does not */
        pstr(&n, 1, "img"); pstr(&n, 1, "K"); pstr(&n, 2, "y"); pstr(&n, 3, "cv"); pstr(&n, 4, "Conv");
        pstr(&a, 1, "pads"); pint(&a, 8, 1); pint(&a, 8, 1); pint(&a, 8, 0); pint(&a, 8, 0); pint(&a, 20, 7); pmsg(&n, 5, &a);
        int64_t cw2[4] = {2, 3, 2, 2};
        G.n = 0; pmsg(&G, 1, &n); tensor(&G, 5, "K", 4, cw2, w, 24);
        value_info(&G, 11, "img", 4, d4, 1); value_info(&G, 12, "y", 4, d4, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"pads (1, 1, 0, 0)", NULL}, "same pad before");
        int64_t d3[3] = {-1, 5, 2}, lw[3] = {1, 8, 2}, lr[3] = {1, 8, 2};
        n.n = 0; a.n = 0;
        pstr(&n, 1, "xt"); pstr(&n, 1, "W"); pstr(&n, 1, "R"); pstr(&n, 2, "Y"); pstr(&n, 2, "y"); pstr(&n, 3, "rnn"); pstr(&n, 4, "LSTM");
        pstr(&a, 1, "direction"); pstr(&a, 4, "bidirectional"); pint(&a, 20, 3); pmsg(&n, 5, &a);
        a.n = 0; pstr(&a, 1, "hidden_size"); pint(&a, 3, 2); pint(&a, 20, 2); pmsg(&n, 5, &a);
        G.n = 0;
        { pbw t = {{0}, 0}, at = {{0}, 0}; pstr(&t, 1, "x"); pstr(&t, 2, "xt"); pstr(&t, 3, "tr"); pstr(&t, 4, "Transpose");
          pstr(&at, 1, "perm"); pint(&at, 8, 1); pint(&at, 8, 0); pint(&at, 8, 2); pint(&at, 20, 7); pmsg(&t, 5, &at); pmsg(&G, 1, &t); }
        pmsg(&G, 1, &n); tensor(&G, 5, "W", 3, lw, w, 16); tensor(&G, 5, "R", 3, lr, w, 16);
        value_info(&G, 11, "x", 3, d3, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"direction 'bidirectional'", "'rnn'", NULL}, "bidirectional");
    }
    /* a channels-first reshape that would reorder data, and a softmax over the batch */
    {
        int64_t cw[4] = {2, 3, 1, 1}, shp[3] = {0, 2, 25};
        float sv[3] = {0, 0, 0};
        (void)sv;
        G.n = 0; node(&G, "Conv", "cv", "img", "K", NULL, "h", NULL, 0); tensor(&G, 5, "K", 4, cw, w, 6);
        { pbw t = {{0}, 0}; int64_t one = 3; pint(&t, 1, one); pint(&t, 2, 7); pstr(&t, 8, "shape");
          for (int k = 0; k < 3; k++) pint(&t, 7, shp[k]);
          pmsg(&G, 5, &t); }
        node(&G, "Reshape", "rs", "h", "shape", NULL, "y", NULL, 0);
        value_info(&G, 11, "img", 4, d4, 1); value_info(&G, 12, "y", 3, d4, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"'rs' (Reshape", "reorder", NULL}, "reordering reshape");
        G.n = 0; node(&G, "Softmax", "sm", "x", NULL, NULL, "y", "axis", 0);
        value_info(&G, 11, "x", 2, d2, 1); value_info(&G, 12, "y", 2, d2, 1); model(&M, &G, 13);
        expect_refused(M.b, M.n, (const char *const[]){"'sm' (Softmax", NULL}, "softmax over batch");
    }
    /* many empty nodes: refused by count, with bounded memory */
    {
        static unsigned char many[2 * 120000 + 64];
        size_t n = 0;
        pbw o = {{0}, 0};
        many[n++] = 0x3a;   /* graph, length 240000 as a varint */
        { uint64_t L = 2 * 120000; do { many[n++] = (unsigned char)((L & 0x7f) | (L > 0x7f ? 0x80 : 0)); L >>= 7; } while (L); }
        for (int k = 0; k < 120000; k++) { many[n++] = 0x0a; many[n++] = 0x00; }
        pint(&o, 2, 13); many[n++] = 0x42; many[n++] = (unsigned char)o.n; memcpy(many + n, o.b, o.n); n += o.n;
        ta_peak = ta_cur = 0;
        expect_refused(many, n, (const char *const[]){"120000 nodes", NULL}, "many nodes");
        CHECK(ta_peak < (1 << 20), "many nodes: peak allocation %zu", ta_peak);
    }
}

static void test_inspect(void) {
    const char *cases[][3] = {{"w2", "opset: 13", "runs in advnn: yes"}, {"unsupported_op", "'Sin'", "runs in advnn: no"}};
    for (int c = 0; c < 2; c++) {
        char path[256], text[1 << 16];
        FILE *f = tmpfile();
        size_t n;
        snprintf(path, sizeof path, FIXDIR "%s.onnx", cases[c][0]);
        CHECK(f, "tmpfile");
        if (!f) return;
        CHECK(advnn_inspect_file(path, f) == 0, "inspect %s", path);
        rewind(f);
        n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
        CHECK(strstr(text, "format: ONNX") && strstr(text, cases[c][1]) && strstr(text, cases[c][2]), "inspect %s:\n%s", path, text);
        if (c == 0) CHECK(strstr(text, "clusters") && strstr(text, "lstm") && strstr(text, "parameters in 3 blocks") && strstr(text, "XXH3-64"), "inspect w2:\n%s", text);
    }
    /* an advnn model file: the imported W1 saved */
    {
        advnn_graph *g = advnn_onnx_load(FIXDIR "w1.onnx");
        char path[512], text[1 << 15];
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/advnn_test_onnx_inspect_%d.advnn", tmp && tmp[0] ? tmp : "/tmp", (int)(urand() * 1e6));
        CHECK(g && advnn_model_save(g, path) == ADVNN_OK, "save: %s", advnn_last_error());
        FILE *f = tmpfile();
        if (f && g) {
            CHECK(advnn_inspect_file(path, f) == 0, "inspect advnn file");
            rewind(f);
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = 0;
            CHECK(strstr(text, "format: advnn model file") && strstr(text, "matches") && strstr(text, "batchnorm") && strstr(text, "runs in advnn: yes"),
                  "inspect advnn:\n%s", text);
        }
        if (f) fclose(f);
        remove(path);
        advnn_graph_free(g);
    }
}

int main(void) {
    RUN(test_weight_layouts);
    RUN(test_fixture_dense);
    RUN(test_fixture_conv_nchw);
    RUN(test_fixture_lstm_seqlens);
    RUN(test_fixture_seq);
    RUN(test_fixture_w1);
    RUN(test_fixture_w2);
    RUN(test_fixture_w3);
    RUN(test_unsupported_and_opsets);
    RUN(test_every_truncation);
    RUN(test_mutations);
    RUN(test_crafted);
    RUN(test_inspect);
    return th_report();
}
