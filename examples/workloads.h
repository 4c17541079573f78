/* The three reference networks of WORKLOADS.md built with the advnn builder API. Used by the tests
 * (parameter counts), the benchmarks and the examples. Include after advnn.h.
 *
 *   W1  mass-decorrelated W tagger: classifier [BN -> Dense 64 ReLU] x 3 -> Dense 1 (logit);
 *       adversary [z, log pT] -> Dense 64 ReLU -> mixture-density head of 20 components
 *       (here: its three Dense 20 heads for coefficients, means and widths).
 *   W2  CalRatio LLP tagger: clusters (30,12) and tracks (20,10) through Conv1D(k=1) 64-32-32-16 ReLU
 *       with dropout 0.2 after all but the first, LSTM 10; muon segments (30,6) through Conv1D 32-16-8,
 *       LSTM 5; concat with the jet (3) -> Dense 512 ReLU -> dropout -> Dense 64 ReLU -> dropout ->
 *       Dense 3 (logits of QCD, signal, BIB). Adversary on the 3 scores: BN -> Dense 24 tanh -> BN ->
 *       Dense 12 tanh -> BN -> Dense 6 tanh -> BN -> Dense 1 (logit of data vs simulation).
 *   W3  adversarial anomaly autoencoder on 40x40 images (encoder/decoder as WORKLOADS.md, PReLU after
 *       every conv but the last and after the decoder's dense layers, linear bottleneck 32);
 *       adversary: BN -> Dense 10 ReLU -> Dense 10 ReLU -> Dense 10 (logits of the mass bin). */
#ifndef ADVNN_WORKLOADS_H
#define ADVNN_WORKLOADS_H

/* ---- W2: the tagger as a function, so it can be applied again to another stream with shared
 * weights: pass like == NULL to create the layers (their ids are recorded in rec), or the recorded
 * ids of a first application to share them. */
typedef struct { int layer[24]; int n; } wl_rec;

static inline int wl_layer(wl_rec *rec, int made) {
    if (rec && rec->n < 24) rec->layer[rec->n++] = made;
    return made;
}
/* Conv1D(k=1) stack with ReLU, dropout 0.2 after all but the first, then an LSTM (last state, masked). */
static inline int wl_branch(advnn_graph *g, int x, const int *filters, int nf, int lstm_units, wl_rec *rec, const wl_rec *like, int *k) {
    int h = x, i, mask = advnn_mask_nonzero(g, x);
    for (i = 0; i < nf; i++) {
        if (like) h = advnn_shared(g, like->layer[(*k)++], h, -1);
        else h = wl_layer(rec, advnn_conv1d(g, h, filters[i], 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU));
        if (i > 0) h = advnn_dropout(g, h, 0.2f);
    }
    if (like) return advnn_shared(g, like->layer[(*k)++], h, mask);
    return wl_layer(rec, advnn_lstm(g, h, lstm_units, 0, mask));
}
/* Returns the logits node of the tagger on inputs in[0..3] = clusters, tracks, muon segments, jet. */
static inline int wl_w2_tagger(advnn_graph *g, const int *in, wl_rec *rec, const wl_rec *like) {
    static const int f_ct[4] = {64, 32, 32, 16}, f_mu[3] = {32, 16, 8};
    int k = 0, b[4], h;
    if (rec) rec->n = 0;
    b[0] = wl_branch(g, in[0], f_ct, 4, 10, rec, like, &k);
    b[1] = wl_branch(g, in[1], f_ct, 4, 10, rec, like, &k);
    b[2] = wl_branch(g, in[2], f_mu, 3, 5, rec, like, &k);
    b[3] = in[3];
    h = advnn_concat(g, 4, b);
    h = like ? advnn_shared(g, like->layer[k++], h, -1) : wl_layer(rec, advnn_dense(g, h, 512, ADVNN_ACT_RELU));
    h = advnn_dropout(g, h, 0.2f);
    h = like ? advnn_shared(g, like->layer[k++], h, -1) : wl_layer(rec, advnn_dense(g, h, 64, ADVNN_ACT_RELU));
    h = advnn_dropout(g, h, 0.2f);
    return like ? advnn_shared(g, like->layer[k++], h, -1) : wl_layer(rec, advnn_dense(g, h, 3, ADVNN_ACT_LINEAR));
}
/* The W2 inputs of one stream, named prefix+"clusters" etc.; ids into in[0..3]. */
static inline void wl_w2_inputs(advnn_graph *g, const char *prefix, int *in) {
    static const char *names[4] = {"clusters", "tracks", "muons", "jet"};
    static const int shapes[4][2] = {{30, 12}, {20, 10}, {30, 6}, {3, 0}};
    char name[40];
    int i;
    for (i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, names[i]);
        in[i] = advnn_input(g, name, i == 3 ? 1 : 2, shapes[i]);
    }
}
/* Adversary on the softmax scores: returns its logit. */
static inline int wl_w2_adversary(advnn_graph *g, int scores) {
    int h = advnn_batchnorm(g, scores);
    h = advnn_batchnorm(g, advnn_dense(g, h, 24, ADVNN_ACT_TANH));
    h = advnn_batchnorm(g, advnn_dense(g, h, 12, ADVNN_ACT_TANH));
    h = advnn_batchnorm(g, advnn_dense(g, h, 6, ADVNN_ACT_TANH));
    return advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
}

/* ---- W1 */
static inline int wl_w1_classifier(advnn_graph *g, int x) {
    int h = x, i;
    for (i = 0; i < 3; i++) h = advnn_dense(g, advnn_batchnorm(g, h), 64, ADVNN_ACT_RELU);
    return advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
}

/* ---- W3 */
static inline int wl_conv_prelu(advnn_graph *g, int x, int filters) {
    return advnn_prelu(g, advnn_conv2d(g, x, filters, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR));
}
/* Returns the reconstruction (40, 40, 1) of image input x (40, 40, 1). */
static inline int wl_w3_autoencoder(advnn_graph *g, int x) {
    int h, sh[3];
    h = wl_conv_prelu(g, x, 10);
    h = wl_conv_prelu(g, h, 10);
    h = advnn_avgpool2d(g, h, 2, 2, 0, 0);
    h = wl_conv_prelu(g, h, 10);
    h = wl_conv_prelu(g, h, 5);
    h = wl_conv_prelu(g, h, 5);
    h = advnn_flatten(g, h);
    h = advnn_prelu(g, advnn_dense(g, h, 400, ADVNN_ACT_LINEAR));
    h = advnn_prelu(g, advnn_dense(g, h, 100, ADVNN_ACT_LINEAR));
    h = advnn_dense(g, h, 32, ADVNN_ACT_LINEAR);                      /* bottleneck */
    h = advnn_prelu(g, advnn_dense(g, h, 100, ADVNN_ACT_LINEAR));
    h = advnn_prelu(g, advnn_dense(g, h, 400, ADVNN_ACT_LINEAR));
    sh[0] = 20; sh[1] = 20; sh[2] = 1;
    h = advnn_reshape(g, h, 3, sh);
    h = wl_conv_prelu(g, h, 5);
    h = wl_conv_prelu(g, h, 5);
    h = advnn_upsample2d(g, h, 2, 2);
    h = wl_conv_prelu(g, h, 5);
    h = wl_conv_prelu(g, h, 10);
    return advnn_conv2d(g, h, 1, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR);
}
static inline int wl_w3_adversary(advnn_graph *g, int score) {
    int h = advnn_batchnorm(g, score);
    h = advnn_dense(g, h, 10, ADVNN_ACT_RELU);
    h = advnn_dense(g, h, 10, ADVNN_ACT_RELU);
    return advnn_dense(g, h, 10, ADVNN_ACT_LINEAR);
}
#endif
