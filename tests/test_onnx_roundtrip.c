/* advnn -> ONNX (advnn_onnx_save) -> advnn (advnn_onnx_load): the re-imported graph computes the
 * same outputs bit for bit, for every layer type the importer reads back (dense with each activation,
 * spectral-normalised dense (outputs only), PReLU, softmax, BatchNorm, dropout, gradient reversal, concat, dense on sequences, conv1d/conv2d
 * 'same'/'valid' with strides, max/avg pooling 1-D and 2-D, upsampling, reshape/flatten, LSTM last
 * state and sequence) and for W1, W3 and an unmasked W2 tagger (WORKLOADS.md sizes); the whole
 * parameter array (every block, BatchNorm statistics included) comes back identical too. What the importer does not read back (the export's masked-LSTM
 * construction, the per-sample MSE, portable mode's PReLU) is refused with a message naming the
 * operator. Per-layer weights are set at random through advnn_weight_set. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static double urand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (double)(rs >> 11) / 9007199254740992.0; }

static void randomize(advnn_graph *g) {
    for (int id = 0; id < advnn_node_count(g); id++)
        for (int k = 0; k < advnn_weight_count(g, id); k++) {
            const char *nm; int nd; int64_t sh[4], n = 1;
            advnn_weight_info(g, id, k, &nm, &nd, sh);
            for (int d = 0; d < nd; d++) n *= sh[d];
            float *w = (float *)malloc((size_t)n * sizeof *w);
            float lo = -0.6f, hi = 0.6f;
            if (!strcmp(nm, "moving_variance") || !strcmp(nm, "gamma")) lo = 0.4f, hi = 1.6f;
            for (int64_t i = 0; i < n; i++) w[i] = lo + (hi - lo) * (float)urand();
            if (strcmp(nm, "u") && strcmp(nm, "v")) CHECK(advnn_weight_set(g, id, nm, w, n) == ADVNN_OK, "set: %s", advnn_last_error());
            free(w);
        }
}

static int64_t per_sample(const advnn_graph *g, int node) {
    int shape[3], nd = advnn_node_shape(g, node, shape);
    int64_t s = 1;
    for (int d = 0; d < nd; d++) s *= shape[d];
    return s;
}

/* exports `out` of g, imports it, and compares outputs (bit for bit) and every layer's weights */
static void roundtrip(advnn_graph *g, const char *out, const char *label) {
    void *buf = NULL;
    size_t len = 0;
    const char *outs[1] = {out};
    enum { N = 3 };
    CHECK(advnn_onnx_save_mem(g, 1, outs, NULL, &buf, &len) == ADVNN_OK, "%s: export: %s", label, advnn_last_error());
    if (!buf) return;
    advnn_graph *h = advnn_onnx_load_mem(buf, len);
    CHECK(h, "%s: import: %s", label, advnn_last_error());
    free(buf);
    if (!h) return;
    int ni = advnn_input_count(g), oa = advnn_find(g, out), ob = advnn_find(h, out);
    CHECK(ob >= 0 && per_sample(g, oa) == per_sample(h, ob), "%s: output '%s' missing or of another size", label, out);
    float *in[8] = {0}, *in2[8] = {0};
    for (int i = 0; i < ni && i < 8; i++) {
        int id = advnn_input_node(g, i), j = advnn_find(h, advnn_node_name(g, id));
        int64_t s = per_sample(g, id);
        in[i] = (float *)malloc((size_t)(s * N) * sizeof(float));
        for (int64_t k = 0; k < s * N; k++) in[i][k] = (float)(2 * urand() - 1);
        if (j < 0) continue;   /* an input the output does not depend on is not exported */
        CHECK(per_sample(h, j) == s, "%s: input %s has another size", label, advnn_node_name(g, id));
        for (int q = 0; q < advnn_input_count(h); q++) if (advnn_input_node(h, q) == j) in2[q] = in[i];
    }
    if (ob >= 0) {
        int64_t s = per_sample(g, oa);
        float *ya = (float *)calloc((size_t)(s * N), sizeof(float)), *yb = (float *)calloc((size_t)(s * N), sizeof(float));
        advnn_ws *wa = advnn_ws_new(g, N), *wb = advnn_ws_new(h, N);
        CHECK(advnn_infer(wa, N, (const float *const *)in, oa, ya) == ADVNN_OK, "%s: infer: %s", label, advnn_last_error());
        CHECK(advnn_infer(wb, N, (const float *const *)in2, ob, yb) == ADVNN_OK, "%s: infer imported: %s", label, advnn_last_error());
        int64_t diff = 0;
        for (int64_t k = 0; k < s * N; k++) diff += memcmp(&ya[k], &yb[k], sizeof(float)) != 0;
        CHECK(diff == 0, "%s: %lld of %lld outputs differ (first: %.9g vs %.9g)", label, (long long)diff, (long long)(s * N), ya[0], yb[0]);
        advnn_ws_free(wa); advnn_ws_free(wb);
        free(ya); free(yb);
    }
    /* the same parameters, in the same order (so the saved advnn files hold the same numbers) */
    {
        int64_t na, nb;
        float *pa = advnn_params(g, &na), *pb = advnn_params(h, &nb);
        int64_t sa = advnn_param_count(g, NULL), sb = advnn_param_count(h, NULL);
        CHECK(sa == sb, "%s: %lld trainable parameters, %lld after the round trip", label, (long long)sa, (long long)sb);
        CHECK(na == nb && !memcmp(pa, pb, (size_t)na * sizeof *pa), "%s: the parameter arrays differ (%lld, %lld floats)", label, (long long)na, (long long)nb);
    }
    for (int i = 0; i < 8; i++) free(in[i]);
    advnn_graph_free(h);
}

static advnn_graph *finish(advnn_graph *g) {
    CHECK(advnn_graph_finalize(g, 7) == ADVNN_OK, "finalize: %s", advnn_last_error());
    randomize(g);
    return g;
}

static void test_dense_activations(void) {
    static const advnn_act acts[] = {ADVNN_ACT_LINEAR, ADVNN_ACT_RELU, ADVNN_ACT_LEAKY_RELU, ADVNN_ACT_ELU, ADVNN_ACT_SIGMOID, ADVNN_ACT_TANH, ADVNN_ACT_SOFTPLUS};
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        advnn_graph *g = advnn_graph_new();
        int ten = 10, x = advnn_input(g, "x", 1, &ten), h = advnn_dense(g, x, 7, acts[a]);
        h = advnn_activation(g, advnn_dense(g, h, 6, ADVNN_ACT_LINEAR), acts[a]);
        advnn_name(g, h, "y");
        char label[32];
        snprintf(label, sizeof label, "dense act %d", (int)acts[a]);
        roundtrip(finish(g), "y", label);
        advnn_graph_free(g);
    }
}

/* spectral normalisation is exported as its effective kernel W / sigma and comes back as a plain
 * Dense (so only the outputs are compared: the imported graph has no u, v blocks) */
static void test_dense_sn(void) {
    advnn_graph *g = advnn_graph_new(), *h;
    int ten = 10, x = advnn_input(g, "x", 1, &ten);
    advnn_name(g, advnn_dense(g, advnn_dense_sn(g, x, 6, ADVNN_ACT_TANH), 2, ADVNN_ACT_LINEAR), "y");
    finish(g);
    void *buf = NULL; size_t len = 0;
    const char *o[1] = {"y"};
    float in[4 * 10], ya[4 * 2], yb[4 * 2];
    const float *ins[1] = {in};
    for (int i = 0; i < 40; i++) in[i] = (float)(2 * urand() - 1);
    CHECK(advnn_onnx_save_mem(g, 1, o, NULL, &buf, &len) == ADVNN_OK, "export: %s", advnn_last_error());
    h = buf ? advnn_onnx_load_mem(buf, len) : NULL;
    CHECK(h, "import: %s", advnn_last_error());
    if (h) {
        advnn_ws *wa = advnn_ws_new(g, 4), *wb = advnn_ws_new(h, 4);
        CHECK(advnn_infer(wa, 4, ins, advnn_find(g, "y"), ya) == ADVNN_OK && advnn_infer(wb, 4, ins, advnn_find(h, "y"), yb) == ADVNN_OK, "infer");
        CHECK(!memcmp(ya, yb, sizeof ya), "dense_sn: outputs differ (%.9g vs %.9g)", ya[0], yb[0]);
        advnn_ws_free(wa); advnn_ws_free(wb);
    }
    free(buf);
    advnn_graph_free(h);
    advnn_graph_free(g);
}

static void test_prelu_softmax_bn_concat(void) {
    advnn_graph *g = advnn_graph_new();
    int ten = 10, three = 3, x = advnn_input(g, "x", 1, &ten), j = advnn_input(g, "jet", 1, &three);
    int h = advnn_batchnorm_ex(g, x, 0.1f, 1e-3f);
    h = advnn_dropout(g, advnn_prelu(g, advnn_dense(g, h, 8, ADVNN_ACT_LINEAR)), 0.3f);
    h = advnn_grad_reverse(g, h, 2.0f);
    int ins[2] = {h, advnn_batchnorm(g, j)};
    h = advnn_concat(g, 2, ins);
    advnn_name(g, advnn_softmax(g, advnn_dense(g, h, 4, ADVNN_ACT_LINEAR)), "y");
    roundtrip(finish(g), "y", "prelu/softmax/bn/concat");
    advnn_graph_free(g);
}

static void test_sequence_conv1d_pool(void) {
    advnn_graph *g = advnn_graph_new();
    int shp[2] = {12, 5}, x = advnn_input(g, "seq", 2, shp);
    int h = advnn_dense(g, x, 6, ADVNN_ACT_RELU);                            /* dense on a sequence */
    h = advnn_conv1d(g, h, 7, 3, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH);
    h = advnn_maxpool1d(g, h, 2, 0);
    h = advnn_conv1d(g, h, 4, 2, 2, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR);
    h = advnn_prelu(g, h);
    h = advnn_avgpool1d(g, advnn_conv1d(g, h, 4, 3, 2, ADVNN_PAD_SAME, ADVNN_ACT_ELU), 1, 1);
    advnn_name(g, advnn_dense(g, advnn_flatten(g, h), 3, ADVNN_ACT_SIGMOID), "y");
    roundtrip(finish(g), "y", "seq/conv1d/pool");
    advnn_graph_free(g);
}

static void test_conv2d_pool_upsample(void) {
    advnn_graph *g = advnn_graph_new();
    int shp[3] = {9, 8, 2}, x = advnn_input(g, "img", 3, shp);
    int h = advnn_conv2d(g, x, 4, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_RELU);
    h = advnn_prelu(g, advnn_conv2d(g, h, 5, 3, 2, 2, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR));
    h = advnn_maxpool2d(g, h, 2, 2, 0, 0);
    h = advnn_upsample2d(g, advnn_batchnorm(g, h), 2, 3);
    h = advnn_avgpool2d(g, advnn_conv2d(g, h, 3, 2, 2, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_TANH), 2, 2, 1, 2);
    h = advnn_dense(g, advnn_flatten(g, h), 12, ADVNN_ACT_RELU);
    int rs2[3] = {2, 3, 2};
    h = advnn_conv2d(g, advnn_reshape(g, h, 3, rs2), 2, 2, 2, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR);
    advnn_name(g, h, "y");
    roundtrip(finish(g), "y", "conv2d/pool/upsample/reshape");
    advnn_graph_free(g);
}

static void test_lstm(void) {
    for (int rsq = 0; rsq < 2; rsq++) {
        advnn_graph *g = advnn_graph_new();
        int shp[2] = {7, 4}, x = advnn_input(g, "seq", 2, shp);
        int h = advnn_lstm(g, advnn_dense(g, x, 5, ADVNN_ACT_TANH), 6, rsq, -1);
        advnn_name(g, advnn_dense(g, rsq ? advnn_flatten(g, h) : h, 2, ADVNN_ACT_LINEAR), "y");
        roundtrip(finish(g), "y", rsq ? "lstm sequence" : "lstm last state");
        advnn_graph_free(g);
    }
}

static void test_w1(void) {
    advnn_graph *g = advnn_graph_new();
    int ten = 10, x = advnn_input(g, "x", 1, &ten);
    advnn_name(g, advnn_activation(g, wl_w1_classifier(g, x), ADVNN_ACT_SIGMOID), "prob");
    roundtrip(finish(g), "prob", "W1");
    advnn_graph_free(g);
}

static void test_w2_unmasked(void) {   /* W2's tagger with its LSTMs unmasked (see the refusal test for the masked one) */
    advnn_graph *g = advnn_graph_new();
    int cs[2] = {30, 12}, ts[2] = {20, 10}, ms[2] = {30, 6}, three = 3;
    int c = advnn_input(g, "clusters", 2, cs), t = advnn_input(g, "tracks", 2, ts), m = advnn_input(g, "muons", 2, ms), j = advnn_input(g, "jet", 1, &three);
    int br[3], f1[4] = {64, 32, 32, 16}, f2[3] = {32, 16, 8};
    int xs[3] = {c, t, m};
    for (int b = 0; b < 3; b++) {
        int h = xs[b];
        for (int k = 0; k < (b < 2 ? 4 : 3); k++) {
            h = advnn_conv1d(g, h, b < 2 ? f1[k] : f2[k], 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU);
            if (k) h = advnn_dropout(g, h, 0.2f);
        }
        br[b] = advnn_lstm(g, h, b < 2 ? 10 : 5, 0, -1);
    }
    int ins[4] = {br[0], br[1], br[2], j};
    int h = advnn_dropout(g, advnn_dense(g, advnn_concat(g, 4, ins), 512, ADVNN_ACT_RELU), 0.2f);
    h = advnn_dense(g, advnn_dense(g, h, 64, ADVNN_ACT_RELU), 3, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_softmax(g, h), "scores");
    roundtrip(finish(g), "scores", "W2 (unmasked)");
    advnn_graph_free(g);
}

static void test_w3(void) {
    advnn_graph *g = advnn_graph_new();
    int shp[3] = {40, 40, 1}, x = advnn_input(g, "img", 3, shp);
    advnn_name(g, wl_w3_autoencoder(g, x), "recon");
    roundtrip(finish(g), "recon", "W3 autoencoder");
    advnn_graph_free(g);
}

/* exports the importer does not read back: refused, naming the operator */
static void test_refused_forms(void) {
    advnn_graph *g = advnn_graph_new();
    int shp[2] = {6, 3}, x = advnn_input(g, "seq", 2, shp);
    advnn_name(g, advnn_lstm(g, x, 4, 0, advnn_mask_nonzero(g, x)), "y");
    int d = advnn_dense(g, advnn_flatten(g, x), 18, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_sample_mse(g, d, x, 1), "score");
    advnn_name(g, advnn_prelu(g, advnn_dense(g, advnn_flatten(g, x), 4, ADVNN_ACT_LINEAR)), "p");
    finish(g);
    const char *outs[3][1] = {{"y"}, {"score"}, {"p"}};
    for (int k = 0; k < 3; k++) {
        void *buf = NULL; size_t len = 0;
        advnn_onnx_opts o = {k == 2, 13};
        CHECK(advnn_onnx_save_mem(g, 1, outs[k], &o, &buf, &len) == ADVNN_OK, "export %s: %s", outs[k][0], advnn_last_error());
        advnn_graph *h = buf ? advnn_onnx_load_mem(buf, len) : NULL;
        CHECK(!h && strstr(advnn_last_error(), "operator '") && strstr(advnn_last_error(), "opset 13"), "%s: %s", outs[k][0], h ? "imported" : advnn_last_error());
        printf("     %s: %s\n", outs[k][0], advnn_last_error());
        advnn_graph_free(h);
        free(buf);
    }
    advnn_graph_free(g);
}

int main(void) {
    RUN(test_dense_activations);
    RUN(test_dense_sn);
    RUN(test_prelu_softmax_bn_concat);
    RUN(test_sequence_conv1d_pool);
    RUN(test_conv2d_pool_upsample);
    RUN(test_lstm);
    RUN(test_w1);
    RUN(test_w2_unmasked);
    RUN(test_w3);
    RUN(test_refused_forms);
    return th_report();
}
