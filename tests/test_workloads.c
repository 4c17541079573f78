/* The reference networks of WORKLOADS.md build with the builder API and have the parameter counts
 * PyTorch/Keras give for the same architectures (trainable parameters; BatchNorm statistics excluded;
 * LSTMs with one bias per gate as in Keras, i.e. PyTorch's count minus 4*units per LSTM). */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

/* advnn_flops: forward FLOPs per sample, 2 per multiply-add, by hand below for each network */
static void check_flops(const advnn_graph *g, int node, const char *group, double want, const char *what) {
    double f = advnn_flops(g, node, group);
    CHECK(f == want, "%s: advnn_flops %.0f, expected %.0f", what, f, want);
}

static void test_w1_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int ten = 10, two = 2, x, a, h, z, head;
    x = advnn_input(g, "x", 1, &ten);
    advnn_group(g, "clf");
    z = wl_w1_classifier(g, x);
    advnn_group(g, "adv");
    a = advnn_input(g, "zpt", 1, &two);
    h = advnn_dense(g, a, 64, ADVNN_ACT_RELU);
    head = advnn_dense(g, h, 20, ADVNN_ACT_LINEAR); advnn_dense(g, h, 20, ADVNN_ACT_LINEAR); advnn_dense(g, h, 20, ADVNN_ACT_LINEAR);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    /* BN(10) 20 + 10*64+64 + BN(64) 128 + 64*64+64 + BN(64) 128 + 64*64+64 + 64+1 = 9365 */
    CHECK(advnn_param_count(g, "clf") == 9365, "W1 classifier: %lld, expected 9365", (long long)advnn_param_count(g, "clf"));
    /* 2*64+64 + 3 heads of 64*20+20 = 192 + 3900 = 4092 */
    CHECK(advnn_param_count(g, "adv") == 4092, "W1 adversary: %lld, expected 4092", (long long)advnn_param_count(g, "adv"));
    check_flops(g, z, NULL, 2 * (10 * 64 + 64 * 64 + 64 * 64 + 64), "W1 classifier");     /* BatchNorm not counted */
    check_flops(g, z, "clf", 2 * (10 * 64 + 64 * 64 + 64 * 64 + 64), "W1 classifier, its group");
    check_flops(g, z, "adv", 0, "W1 classifier, adversary group");
    check_flops(g, head, NULL, 2 * (2 * 64 + 64 * 20), "W1 adversary head");          /* one head, not its siblings */
    check_flops(g, x, NULL, 0, "an input");
    CHECK(advnn_flops(g, z, "nope") == -1 && advnn_flops(g, 9999, NULL) == -1 && advnn_flops(NULL, 0, NULL) == -1, "bad arguments");
    advnn_graph_free(g);
}

static void test_w2_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int in[4], cr[4], z, zc, one = 1, adv;
    wl_rec rec;
    advnn_group(g, "tagger");
    wl_w2_inputs(g, "", in);
    wl_w2_inputs(g, "cr_", cr);
    z = wl_w2_tagger(g, in, &rec, NULL);
    zc = wl_w2_tagger(g, cr, NULL, &rec);        /* the same tagger on the control region: no new weights */
    advnn_group(g, "adv");
    adv = wl_w2_adversary(g, advnn_activation(g, zc, ADVNN_ACT_SIGMOID));
    (void)one;
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
    {   /* Conv1D k=1 chains per step, LSTMs per step (input and recurrent kernels), the dense head */
        double clusters = 30 * (12 * 64 + 64 * 32 + 32 * 32 + 32 * 16) + 30 * (16 * 40 + 10 * 40);
        double tracks = 20 * (10 * 64 + 64 * 32 + 32 * 32 + 32 * 16) + 20 * (16 * 40 + 10 * 40);
        double muons = 30 * (6 * 32 + 32 * 16 + 16 * 8) + 30 * (8 * 20 + 5 * 20);
        double head = 28 * 512 + 512 * 64 + 64 * 3, advf = 3 * 24 + 24 * 12 + 12 * 6 + 6;
        check_flops(g, z, NULL, 2 * (clusters + tracks + muons + head), "W2 tagger");
        check_flops(g, zc, "tagger", 2 * (clusters + tracks + muons + head), "W2 tagger on the control region (shared)");
        check_flops(g, adv, NULL, 2 * (clusters + tracks + muons + head + advf), "W2 tagger + adversary");
        check_flops(g, adv, "adv", 2 * advf, "W2 adversary alone");
    }
    advnn_graph_free(g);
}

static void test_w3_counts(void) {
    advnn_graph *g = advnn_graph_new();
    int sh[3], one = 1, x, y, s, a;
    sh[0] = 40; sh[1] = 40; sh[2] = 1;
    advnn_group(g, "ae");
    x = advnn_input(g, "img", 3, sh);
    y = wl_w3_autoencoder(g, x);
    CHECK(advnn_node_shape(g, y, sh) == 3 && sh[0] == 40 && sh[1] == 40 && sh[2] == 1, "reconstruction shape %dx%dx%d", sh[0], sh[1], sh[2]);
    advnn_group(g, "adv");
    s = advnn_input(g, "score", 1, &one);
    a = wl_w3_adversary(g, s);
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    /* encoder: conv 1->10 (9*1*10+10) + PReLU 10 = 110; 10->10: 910+10 = 920; (pool) 920; 10->5: 455+5 = 460;
     *          5->5: 230+5 = 235; dense 2000->400 + PReLU: 800400+400; 400->100 + PReLU: 40100+100; 100->32: 3232
     *          = 846877
     * decoder: 32->100 + PReLU 3400; 100->400 + PReLU 40800; conv 1->5 55; 5->5 235; (up) 5->5 235; 5->10 470;
     *          10->1 (linear) 91 = 45286;   total 892163 */
    CHECK(advnn_param_count(g, "ae") == 892163, "W3 autoencoder: %lld, expected 892163", (long long)advnn_param_count(g, "ae"));
    /* BN(1) 2 + 1*10+10 + 10*10+10 + 10*10+10 = 242 */
    CHECK(advnn_param_count(g, "adv") == 242, "W3 adversary: %lld, expected 242", (long long)advnn_param_count(g, "adv"));
    /* 3x3 same convolutions: positions x 9 x Cin x F; 40x40 = 1600 positions, 20x20 = 400 */
    check_flops(g, y, NULL, 2 * (1600 * 9 * (1 * 10 + 10 * 10) + 400 * 9 * (10 * 10 + 10 * 5 + 5 * 5) +
                                 2000 * 400 + 400 * 100 + 100 * 32 + 32 * 100 + 100 * 400 +
                                 400 * 9 * (1 * 5 + 5 * 5) + 1600 * 9 * (5 * 5 + 5 * 10 + 10 * 1)), "W3 autoencoder");
    check_flops(g, a, NULL, 2 * (10 + 100 + 100), "W3 adversary");
    advnn_graph_free(g);
}

int main(void) {
    RUN(test_w1_counts);
    RUN(test_w2_counts);
    RUN(test_w3_counts);
    return th_report();
}
