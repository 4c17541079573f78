/* The reference networks of WORKLOADS.md build with the builder API and have the parameter counts
 * PyTorch/Keras give for the same architectures (trainable parameters; BatchNorm statistics excluded;
 * LSTMs with one bias per gate as in Keras, i.e. PyTorch's count minus 4*units per LSTM). */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

static void test_w1_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int ten = 10, two = 2, x, a, h;
    x = advnn_input(g, "x", 1, &ten);
    advnn_group(g, "clf");
    wl_w1_classifier(g, x);
    advnn_group(g, "adv");
    a = advnn_input(g, "zpt", 1, &two);
    h = advnn_dense(g, a, 64, ADVNN_ACT_RELU);
    advnn_dense(g, h, 20, ADVNN_ACT_LINEAR); advnn_dense(g, h, 20, ADVNN_ACT_LINEAR); advnn_dense(g, h, 20, ADVNN_ACT_LINEAR);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    /* BN(10) 20 + 10*64+64 + BN(64) 128 + 64*64+64 + BN(64) 128 + 64*64+64 + 64+1 = 9365 */
    CHECK(advnn_param_count(g, "clf") == 9365, "W1 classifier: %lld, expected 9365", (long long)advnn_param_count(g, "clf"));
    /* 2*64+64 + 3 heads of 64*20+20 = 192 + 3900 = 4092 */
    CHECK(advnn_param_count(g, "adv") == 4092, "W1 adversary: %lld, expected 4092", (long long)advnn_param_count(g, "adv"));
    advnn_graph_free(g);
}

static void test_w2_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int in[4], cr[4], z, zc, one = 1;
    wl_rec rec;
    advnn_group(g, "tagger");
    wl_w2_inputs(g, "", in);
    wl_w2_inputs(g, "cr_", cr);
    z = wl_w2_tagger(g, in, &rec, NULL);
    zc = wl_w2_tagger(g, cr, NULL, &rec);        /* the same tagger on the control region: no new weights */
    advnn_group(g, "adv");
    wl_w2_adversary(g, advnn_activation(g, zc, ADVNN_ACT_SIGMOID));
    (void)z; (void)one;
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    /* clusters: 12*64+64 + 64*32+32 + 32*32+32 + 32*16+16 + LSTM 4*(16*10+10*10+10) = 832+2080+1056+528+1080 = 5576
     * tracks:   10*64+64 + ...same...                                              = 704+2080+1056+528+1080 = 5448
     * muons:    6*32+32 + 32*16+16 + 16*8+8 + LSTM 4*(8*5+5*5+5)                    = 224+528+136+280        = 1168
     * head:     28*512+512 + 512*64+64 + 64*3+3                                     = 14848+32832+195        = 47875
     * total 60067 (PyTorch, two LSTM biases: 60067 + 4*(10+10+5) = 60167) */
    CHECK(advnn_param_count(g, "tagger") == 60067, "W2 tagger: %lld, expected 60067", (long long)advnn_param_count(g, "tagger"));
    /* BN(3) 6 + 3*24+24 + BN(24) 48 + 24*12+12 + BN(12) 24 + 12*6+6 + BN(6) 12 + 6+1 = 571 */
    CHECK(advnn_param_count(g, "adv") == 571, "W2 adversary: %lld, expected 571", (long long)advnn_param_count(g, "adv"));
    CHECK(rec.n == 3 * 5 - 1 + 3, "recorded %d layers", rec.n);
    advnn_graph_free(g);
}

static void test_w3_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int sh[3], one = 1, x, y, s;
    sh[0] = 40; sh[1] = 40; sh[2] = 1;
    advnn_group(g, "ae");
    x = advnn_input(g, "img", 3, sh);
    y = wl_w3_autoencoder(g, x);
    CHECK(advnn_node_shape(g, y, sh) == 3 && sh[0] == 40 && sh[1] == 40 && sh[2] == 1, "reconstruction shape %dx%dx%d", sh[0], sh[1], sh[2]);
    advnn_group(g, "adv");
    s = advnn_input(g, "score", 1, &one);
    wl_w3_adversary(g, s);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    /* encoder: conv 1->10 (9*1*10+10) + PReLU 10 = 110; 10->10: 910+10 = 920; (pool) 920; 10->5: 455+5 = 460;
     *          5->5: 230+5 = 235; dense 2000->400 + PReLU: 800400+400; 400->100 + PReLU: 40100+100; 100->32: 3232
     *          = 846877
     * decoder: 32->100 + PReLU 3400; 100->400 + PReLU 40800; conv 1->5 55; 5->5 235; (up) 5->5 235; 5->10 470;
     *          10->1 (linear) 91 = 45286;   total 892163 */
    CHECK(advnn_param_count(g, "ae") == 892163, "W3 autoencoder: %lld, expected 892163", (long long)advnn_param_count(g, "ae"));
    /* BN(1) 2 + 1*10+10 + 10*10+10 + 10*10+10 = 242 */
    CHECK(advnn_param_count(g, "adv") == 242, "W3 adversary: %lld, expected 242", (long long)advnn_param_count(g, "adv"));
    advnn_graph_free(g);
}

int main(void) {
    RUN(test_w1_counts);
    RUN(test_w2_counts);
    RUN(test_w3_counts);
    return th_report();
}
