/* Sequence and image layers: finite-difference gradient checks (tests/gradcheck.h) of Conv1D, Conv2D,
 * pooling, upsampling, reshape, LSTM (last state, sequence, masked), shared layers and dropout on
 * sequences, with odd sizes; plus the invariance of a masked LSTM to the padding length. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "gradcheck.h"

typedef int (*body_fn)(advnn_graph *g, int x, int arg);

/* x (per-sample shape) -> body -> flatten -> dense(3) -> MSE against random targets */
static fixture image_fixture(int ndim, const int *shape, body_fn body, int arg, uint64_t seed) {
    fixture f;
    advnn__rng r;
    int three = 3, x, y, h, i, per = 1;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, seed);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    x = advnn_input(f.g, "x", ndim, shape);
    y = advnn_input(f.g, "y", 1, &three);
    h = body(f.g, x, arg);
    h = advnn_dense(f.g, advnn_flatten(f.g, h), 3, ADVNN_ACT_LINEAR);
    advnn_loss_mse(f.g, h, y, -1);
    for (i = 0; i < ndim; i++) per *= shape[i];
    add_data(&f, "x", rand_tensor(&r, NB, per, -2, 2));
    add_data(&f, "y", rand_tensor(&r, NB, 3, -1, 1));
    CHECK(advnn_graph_finalize(f.g, seed) == ADVNN_OK, "finalize: %s", advnn_last_error());
    return f;
}

static void check_body(int ndim, int d0, int d1, int d2, body_fn body, int arg, const char *what) {
    int shape[3];
    fixture f;
    shape[0] = d0; shape[1] = d1; shape[2] = d2;
    f = image_fixture(ndim, shape, body, arg, 17);
    if (f.g->err == ADVNN_OK) gradcheck(&f, what);
    free_fixture(&f);
}

static int B_conv1d_k1(advnn_graph *g, int x, int a) { (void)a; return advnn_conv1d(g, x, 4, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_TANH); }
static int B_conv1d_k3_same(advnn_graph *g, int x, int a) { (void)a; return advnn_conv1d(g, x, 4, 3, 1, ADVNN_PAD_SAME, ADVNN_ACT_ELU); }
static int B_conv1d_k2_same_s2(advnn_graph *g, int x, int a) { (void)a; return advnn_conv1d(g, x, 3, 2, 2, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR); }
static int B_conv1d_k3_valid_s2(advnn_graph *g, int x, int a) { (void)a; return advnn_conv1d(g, x, 3, 3, 2, ADVNN_PAD_VALID, ADVNN_ACT_SIGMOID); }
static int B_conv2d_3x3_same(advnn_graph *g, int x, int a) { (void)a; return advnn_prelu(g, advnn_conv2d(g, x, 3, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR)); }
static int B_conv2d_2x2_valid_s2(advnn_graph *g, int x, int a) { (void)a; return advnn_conv2d(g, x, 2, 2, 2, 2, 2, ADVNN_PAD_VALID, ADVNN_ACT_TANH); }
static int B_conv2d_4x3_same_s2(advnn_graph *g, int x, int a) { (void)a; return advnn_conv2d(g, x, 2, 4, 3, 2, 2, ADVNN_PAD_SAME, ADVNN_ACT_SOFTPLUS); }
static int B_conv2d_1x1(advnn_graph *g, int x, int a) { (void)a; return advnn_conv2d(g, x, 3, 1, 1, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH); }
static int B_maxpool1d(advnn_graph *g, int x, int a) { (void)a; return advnn_maxpool1d(g, advnn_conv1d(g, x, 3, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR), 2, 0); }
static int B_avgpool1d(advnn_graph *g, int x, int a) { (void)a; return advnn_avgpool1d(g, advnn_conv1d(g, x, 3, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR), 3, 2); }
static int B_maxpool2d(advnn_graph *g, int x, int a) { (void)a; return advnn_maxpool2d(g, x, 2, 2, 0, 0); }
static int B_avgpool2d(advnn_graph *g, int x, int a) { (void)a; return advnn_avgpool2d(g, advnn_conv2d(g, x, 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH), 2, 3, 2, 1); }
static int B_upsample(advnn_graph *g, int x, int a) { (void)a; return advnn_conv2d(g, advnn_upsample2d(g, x, 2, 3), 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH); }
static int B_reshape(advnn_graph *g, int x, int a) {
    int sh[2];
    (void)a;
    sh[0] = 3; sh[1] = 4;   /* (2, 3, 2) -> (3, 4) -> conv1d */
    return advnn_conv1d(g, advnn_reshape(g, x, 2, sh), 2, 2, 1, ADVNN_PAD_VALID, ADVNN_ACT_TANH);
}
static int B_lstm_last(advnn_graph *g, int x, int a) { (void)a; return advnn_lstm(g, x, 5, 0, -1); }
static int B_lstm_seq(advnn_graph *g, int x, int a) { (void)a; return advnn_lstm(g, advnn_lstm(g, x, 4, 1, -1), 3, 0, -1); }
static int B_seq_dropout(advnn_graph *g, int x, int a) { (void)a; return advnn_dropout(g, advnn_conv1d(g, x, 4, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU), 0.25f); }

/* a convolution's input gradient into another convolution (advnn_conv_dgrad writes it at stride 1 with
 * few filters; col2im adds it otherwise), and into a node with two consumers: the second adds */
static int B_conv2d_chain(advnn_graph *g, int x, int a) {
    int h = advnn_conv2d(g, x, 3, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH);
    return advnn_conv2d(g, h, a, 3, 3, a > 10 ? 2 : 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH);
}
static int B_conv2d_two_consumers(advnn_graph *g, int x, int a) {
    int h = advnn_conv2d(g, x, 4, 3, 2, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH), in[2];
    in[0] = advnn_flatten(g, advnn_conv2d(g, h, 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH));
    in[1] = advnn_flatten(g, advnn_conv2d(g, h, a, 2, 3, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR));
    return advnn_concat(g, 2, in);
}

static void test_conv1d(void) {
    check_body(2, 7, 3, 0, B_conv1d_k1, 0, "conv1d k=1");
    check_body(2, 7, 3, 0, B_conv1d_k3_same, 0, "conv1d k=3 same");
    check_body(2, 7, 3, 0, B_conv1d_k2_same_s2, 0, "conv1d k=2 same stride 2 (extra pad after)");
    check_body(2, 8, 2, 0, B_conv1d_k3_valid_s2, 0, "conv1d k=3 valid stride 2");
}
static void test_conv2d(void) {
    check_body(3, 5, 4, 2, B_conv2d_3x3_same, 0, "conv2d 3x3 same + prelu");
    check_body(3, 5, 5, 3, B_conv2d_2x2_valid_s2, 0, "conv2d 2x2 valid stride 2");
    check_body(3, 5, 4, 1, B_conv2d_4x3_same_s2, 0, "conv2d 4x3 same stride 2");
    check_body(3, 3, 3, 4, B_conv2d_1x1, 0, "conv2d 1x1");
    check_body(3, 5, 4, 2, B_conv2d_chain, 2, "conv2d 3x3 -> conv2d 3x3 (2 filters)");
    check_body(3, 5, 4, 2, B_conv2d_chain, 12, "conv2d 3x3 -> conv2d 3x3 (12 filters, stride 2x1)");
    check_body(3, 4, 5, 1, B_conv2d_two_consumers, 3, "conv2d -> two conv2d (3x3 same, 2x3 valid)");
    check_body(3, 4, 5, 1, B_conv2d_two_consumers, 11, "conv2d -> two conv2d (the second 11 filters)");
}
static void test_pool_upsample_reshape(void) {
    check_body(2, 7, 3, 0, B_maxpool1d, 0, "maxpool1d 2");
    check_body(2, 7, 3, 0, B_avgpool1d, 0, "avgpool1d 3 stride 2");
    check_body(3, 4, 6, 2, B_maxpool2d, 0, "maxpool2d 2x2");
    check_body(3, 5, 5, 1, B_avgpool2d, 0, "avgpool2d 2x3 stride 2x1");
    check_body(3, 2, 3, 2, B_upsample, 0, "upsample 2x3 + conv");
    check_body(3, 2, 3, 2, B_reshape, 0, "reshape (2,3,2) -> (3,4)");
}
static void test_lstm(void) {
    check_body(2, 6, 3, 0, B_lstm_last, 0, "lstm last state");
    check_body(2, 5, 2, 0, B_lstm_seq, 0, "lstm sequence -> lstm");
    check_body(2, 6, 3, 0, B_seq_dropout, 0, "dropout on a sequence");
}

/* Masked LSTM: x (T, F), mask m (T) from the data; rows of each sample have a random valid length
 * with zeros after it. The gradient of the padded steps must be zero (checked by the finite
 * differences: moving a padded value changes nothing). */
static fixture masked_fixture(int T, int return_sequences, int mask_from_data) {
    fixture f;
    advnn__rng r;
    int sh[2], three = 3, x, m = -1, y, h, i, t;
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 23);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    sh[0] = T; sh[1] = 3;
    x = advnn_input(f.g, "x", 2, sh);
    if (mask_from_data) m = advnn_input(f.g, "m", 1, &T);
    else m = advnn_mask_nonzero(f.g, x);
    y = advnn_input(f.g, "y", 1, &three);
    h = advnn_conv1d(f.g, x, 4, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_TANH);
    h = advnn_lstm(f.g, h, 4, return_sequences, m);
    if (return_sequences) h = advnn_flatten(f.g, h);
    h = advnn_dense(f.g, h, 3, ADVNN_ACT_LINEAR);
    advnn_loss_mse(f.g, h, y, -1);
    add_data(&f, "x", rand_tensor(&r, NB, T * 3, -2, 2));
    add_data(&f, "y", rand_tensor(&r, NB, 3, -1, 1));
    if (mask_from_data) add_data(&f, "m", rand_tensor(&r, NB, T, 0, 1));
    for (i = 0; i < NB; i++) {
        int len = 1 + i % T;      /* lengths 1..T; padded steps are zero and masked out */
        for (t = 0; t < T; t++) {
            if (t >= len) memset(f.t[0]->data + ((size_t)i * T + t) * 3, 0, 3 * sizeof(float));
            if (mask_from_data) f.t[2]->data[i * T + t] = t < len ? 1.0f : 0.0f;
        }
    }
    CHECK(advnn_graph_finalize(f.g, 5) == ADVNN_OK, "finalize: %s", advnn_last_error());
    return f;
}

static void test_lstm_masked(void) {
    fixture f;
    f = masked_fixture(5, 0, 1); gradcheck(&f, "masked lstm, last state, mask from data"); free_fixture(&f);
    f = masked_fixture(4, 1, 1); gradcheck(&f, "masked lstm, sequence, mask from data"); free_fixture(&f);
    {   /* mask_nonzero from the raw input: parameter gradients only (moving a zero would unmask it) */
        fixture g = masked_fixture(5, 0, 0);
        g.tname[0] = "not-checked";
        gradcheck(&g, "masked lstm, mask_nonzero");
        free_fixture(&g);
    }
}

/* A masked LSTM gives identical outputs whether the sequences are padded to 20 or to 30 steps. */
static void test_lstm_padding_invariance(void) {
    int sh[2], n = 9, i, t, k;
    advnn_graph *g[2];
    float *out[2];
    advnn__rng r;
    advnn__rng_seed(&r, 31);
    for (k = 0; k < 2; k++) {
        int T = k ? 30 : 20, x, h, m;
        sh[0] = T; sh[1] = 4;
        g[k] = advnn_graph_new();
        x = advnn_input(g[k], "x", 2, sh);
        m = advnn_mask_nonzero(g[k], x);
        h = advnn_conv1d(g[k], x, 6, 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU);
        h = advnn_lstm(g[k], h, 5, 0, m);
        advnn_name(g[k], advnn_dense(g[k], h, 1, ADVNN_ACT_SIGMOID), "out");
        CHECK(advnn_graph_finalize(g[k], 3) == ADVNN_OK, "%s", advnn_last_error());
    }
    /* same weights in both (the parameter shapes do not depend on T) */
    CHECK(g[0]->n_params == g[1]->n_params, "parameter layouts differ");
    memcpy(g[1]->params, g[0]->params, (size_t)g[0]->n_params * sizeof(float));
    {
        float *x20 = (float *)calloc((size_t)n * 20 * 4, sizeof(float)), *x30 = (float *)calloc((size_t)n * 30 * 4, sizeof(float));
        const float *in[1];
        advnn_ws *w0 = advnn_ws_new(g[0], n), *w1 = advnn_ws_new(g[1], n);
        for (i = 0; i < n; i++) {
            int len2 = 1 + (i * 7) % 20;
            for (t = 0; t < len2; t++)
                for (k = 0; k < 4; k++) {
                    float v = (float)(4 * advnn__rng_uniform(&r) - 2);
                    x20[((size_t)i * 20 + t) * 4 + k] = v;
                    x30[((size_t)i * 30 + t) * 4 + k] = v;
                }
        }
        out[0] = (float *)malloc((size_t)n * sizeof(float)); out[1] = (float *)malloc((size_t)n * sizeof(float));
        in[0] = x20; CHECK(advnn_infer(w0, n, in, advnn_find(g[0], "out"), out[0]) == ADVNN_OK, "%s", advnn_last_error());
        in[0] = x30; CHECK(advnn_infer(w1, n, in, advnn_find(g[1], "out"), out[1]) == ADVNN_OK, "%s", advnn_last_error());
        CHECK(memcmp(out[0], out[1], (size_t)n * sizeof(float)) == 0, "padding to 20 and to 30 steps gives different outputs: %g vs %g",
              out[0][0], out[1][0]);
        free(x20); free(x30); free(out[0]); free(out[1]);
        advnn_ws_free(w0); advnn_ws_free(w1);
    }
    advnn_graph_free(g[0]); advnn_graph_free(g[1]);
}

/* Shared conv and LSTM applied to two streams: both streams' gradients reach the one set of weights. */
static void test_shared_seq_layers(void) {
    fixture f;
    advnn__rng r;
    int sh[2], one = 1, x1, x2, y, c1, c2, l1, l2, d, ins[2];
    memset(&f, 0, sizeof f);
    advnn__rng_seed(&r, 41);
    f.g = advnn_graph_new(); f.d = advnn_dataset_new();
    sh[0] = 4; sh[1] = 3;
    x1 = advnn_input(f.g, "x1", 2, sh);
    x2 = advnn_input(f.g, "x2", 2, sh);
    y = advnn_input(f.g, "y", 1, &one);
    c1 = advnn_conv1d(f.g, x1, 3, 2, 1, ADVNN_PAD_SAME, ADVNN_ACT_TANH);
    c2 = advnn_shared(f.g, c1, x2, -1);
    l1 = advnn_lstm(f.g, c1, 3, 0, -1);
    l2 = advnn_shared(f.g, l1, c2, -1);
    ins[0] = l1; ins[1] = l2;
    d = advnn_dense(f.g, advnn_concat(f.g, 2, ins), 1, ADVNN_ACT_LINEAR);
    advnn_loss_mse(f.g, d, y, -1);
    add_data(&f, "x1", rand_tensor(&r, NB, 12, -2, 2));
    add_data(&f, "x2", rand_tensor(&r, NB, 12, -2, 2));
    add_data(&f, "y", rand_tensor(&r, NB, 1, -1, 1));
    CHECK(advnn_graph_finalize(f.g, 2) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_param_count(f.g, NULL) == (2 * 3 * 3 + 3) + 4 * (3 * 3 + 3 * 3 + 3) + (6 + 1), "shared layers added parameters: %lld",
          (long long)advnn_param_count(f.g, NULL));
    CHECK(advnn_shared(f.g, y, x1, -1) == -1, "sharing an input node accepted");
    f.g->err = ADVNN_OK;
    gradcheck(&f, "shared conv1d + shared lstm");
    free_fixture(&f);
}

static void test_shape_errors(void) {
    advnn_graph *g = advnn_graph_new();
    int sh[3], x, img;
    sh[0] = 5; sh[1] = 3;
    x = advnn_input(g, "x", 2, sh);
    sh[0] = 4; sh[1] = 4; sh[2] = 1;
    img = advnn_input(g, "img", 3, sh);
    CHECK(advnn_conv1d(g, x, 2, 7, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU) == -1, "kernel 7 > length 5 accepted with 'valid'");
    g->err = ADVNN_OK;
    CHECK(advnn_conv2d(g, x, 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_RELU) == -1, "conv2d on a sequence accepted");
    g->err = ADVNN_OK;
    CHECK(advnn_lstm(g, img, 3, 0, -1) == -1, "lstm on an image accepted");
    g->err = ADVNN_OK;
    CHECK(advnn_maxpool2d(g, img, 5, 5, 0, 0) == -1, "5x5 pool on 4x4 accepted");
    g->err = ADVNN_OK;
    sh[0] = 7;
    CHECK(advnn_reshape(g, img, 1, sh) == -1 && strstr(advnn_last_error(), "16"), "reshape 16 -> 7 accepted: %s", advnn_last_error());
    g->err = ADVNN_OK;
    CHECK(advnn_lstm(g, x, 3, 0, img) == -1, "mask with 16 values for 5 steps accepted");
    advnn_graph_free(g);
}

int main(void) {
    RUN(test_conv1d);
    RUN(test_conv2d);
    RUN(test_pool_upsample_reshape);
    RUN(test_lstm);
    RUN(test_lstm_masked);
    RUN(test_lstm_padding_invariance);
    RUN(test_shared_seq_layers);
    RUN(test_shape_errors);
    return th_report();
}
