/* ONNX export (advnn_onnx_save). In every configuration: the file's wire format read back field by
 * field (producer, opset, IR version, checksum metadata, graph inputs/outputs, which operators appear
 * in portable mode), byte-identical repeat exports, and the errors (losses on the path, unknown or
 * duplicate outputs, bad opsets, an unfinalized graph, NULL arguments).
 *
 * With ADVNN_ONNX_ORT=DIR set (tests/onnx_export_check.sh does it once per `make test`): every case
 * below (each layer type, masks padding at the end / in the middle / nowhere, the reference networks
 * W1-W3), at batch 1 and 300, default and portable, and at batch 300 with opset 17, is also written
 * to DIR with its inputs and advnn's outputs; ONNX Runtime runs the files (tests/onnx_run.js, one
 * intra-op thread) and each output is compared: max_i |ort_i - advnn_i| / max(1, |advnn_i|) <= 1e-5
 * (relative, absolute below 1). One test per file. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

#define ORT_TOL 1e-5

/* ---- random numbers and weights */
static uint64_t rng_state = 12345;
static double urand(void) {   /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static float uni(double lo, double hi) { return (float)(lo + (hi - lo) * urand()); }

/* Biases, BatchNorm statistics and PReLU slopes start as constants: make them per-channel random so
 * that a mix-up of channels or gates shows. */
static void randomize(advnn_graph *g) {
    int i, k;
    int64_t j;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        if (n->share >= 0) continue;
        for (k = 0; k < n->n_param; k++) {
            const advnn__param *p = &g->par[n->param0 + k];
            float *v = g->params + p->off;
            for (j = 0; j < p->size; j++) {
                if (n->kind == ADVNN__BATCHNORM) v[j] = k == 0 ? uni(0.5, 1.5) : k == 1 ? uni(-0.5, 0.5) : k == 2 ? uni(-0.5, 0.5) : uni(0.3, 2.0);
                else if (n->kind == ADVNN__PRELU) v[j] = uni(-0.3, 0.6);
                else if (n->kind == ADVNN__STANDARDIZE) v[j] = k == 0 ? uni(-1, 1) : uni(0.5, 2.0);
                else if ((n->kind == ADVNN__DENSE || n->kind == ADVNN__CONV) && k == 1) v[j] = uni(-0.3, 0.3);
                else if (n->kind == ADVNN__LSTM && k == 2) v[j] = uni(-0.5, 0.5);
                else if (n->kind == ADVNN__LSTM) v[j] *= 2.0f;   /* Glorot is gentle: reach the nonlinear range */
            }
        }
    }
}

/* ---- a minimal protobuf reader for the checks (fields of one message) */
typedef struct { const unsigned char *p, *end; } pbr;
static int pb_varint(pbr *r, uint64_t *v) {
    int s = 0;
    *v = 0;
    while (r->p < r->end && s < 64) {
        unsigned char c = *r->p++;
        *v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return 1;
        s += 7;
    }
    return 0;
}
/* Next field: number, wire type, varint value or (ptr, len) of a length-delimited one. 0 at the end or on error. */
static int pb_next(pbr *r, int *field, int *wire, uint64_t *v, const unsigned char **d, size_t *len) {
    uint64_t key;
    if (r->p >= r->end || !pb_varint(r, &key)) return 0;
    *field = (int)(key >> 3); *wire = (int)(key & 7);
    if (*wire == 0) return pb_varint(r, v);
    if (*wire == 5) { if (r->end - r->p < 4) return 0; *d = r->p; r->p += 4; return 1; }
    if (*wire == 2) {
        if (!pb_varint(r, v) || *v > (uint64_t)(r->end - r->p)) return 0;
        *d = r->p; *len = (size_t)*v; r->p += *len;
        return 1;
    }
    return 0;
}
/* The string field f of a message, copied into out (empty if absent). */
static void pb_string(const unsigned char *m, size_t n, int f, char *out, size_t cap) {
    pbr r;
    int fi, w;
    uint64_t v;
    const unsigned char *d;
    size_t l;
    r.p = m; r.end = m + n; out[0] = 0;
    while (pb_next(&r, &fi, &w, &v, &d, &l))
        if (fi == f && w == 2) { size_t c = l < cap - 1 ? l : cap - 1; memcpy(out, d, c); out[c] = 0; }
}

typedef struct {
    int ir, opset, n_in, n_out, n_nodes, n_init, wire_ok;
    char producer[32], version[32], checksum[64], ins[8][48], outs[8][48], ops[4096];
} model_info;

static model_info parse_model(const void *buf, size_t len) {
    model_info mi;
    pbr r;
    int f, w;
    uint64_t v;
    const unsigned char *d;
    size_t l;
    memset(&mi, 0, sizeof mi);
    r.p = (const unsigned char *)buf; r.end = r.p + len;
    while (pb_next(&r, &f, &w, &v, &d, &l)) {
        if (f == 1 && w == 0) mi.ir = (int)v;
        else if (f == 2 && w == 2) snprintf(mi.producer, sizeof mi.producer, "%.*s", (int)l, (const char *)d);
        else if (f == 3 && w == 2) snprintf(mi.version, sizeof mi.version, "%.*s", (int)l, (const char *)d);
        else if (f == 8 && w == 2) {
            pbr o; int f2, w2; uint64_t v2; const unsigned char *d2; size_t l2;
            o.p = d; o.end = d + l;
            while (pb_next(&o, &f2, &w2, &v2, &d2, &l2)) if (f2 == 2 && w2 == 0) mi.opset = (int)v2;
        } else if (f == 14 && w == 2) {
            char key[64], val[64];
            pb_string(d, l, 1, key, sizeof key); pb_string(d, l, 2, val, sizeof val);
            if (strcmp(key, "advnn_model_xxh3") == 0) snprintf(mi.checksum, sizeof mi.checksum, "%s", val);
        } else if (f == 7 && w == 2) {
            pbr gr; int f2, w2; uint64_t v2; const unsigned char *d2; size_t l2;
            gr.p = d; gr.end = d + l;
            while (pb_next(&gr, &f2, &w2, &v2, &d2, &l2)) {
                if (f2 == 1 && w2 == 2) {
                    char op[48];
                    pb_string(d2, l2, 4, op, sizeof op);
                    if (strlen(mi.ops) + strlen(op) + 3 < sizeof mi.ops) { strcat(mi.ops, " "); strcat(mi.ops, op); }
                    mi.n_nodes++;
                } else if (f2 == 5) mi.n_init++;
                else if (f2 == 11 && mi.n_in < 8) pb_string(d2, l2, 1, mi.ins[mi.n_in++], 48);
                else if (f2 == 12 && mi.n_out < 8) pb_string(d2, l2, 1, mi.outs[mi.n_out++], 48);
            }
            if (gr.p == gr.end) mi.wire_ok++;
        }
    }
    if (r.p == r.end) mi.wire_ok++;
    strcat(mi.ops, " ");
    return mi;
}
static int has_op(const model_info *m, const char *op) {
    char k[64];
    snprintf(k, sizeof k, " %s ", op);
    return strstr(m->ops, k) != NULL;
}

/* ---- the cases: a graph, its outputs, how to fill its inputs */
typedef struct {
    const char *name;
    advnn_graph *g;
    int n_out;
    const char *outs[8];
    int seq_mask;        /* fill sequences with masked steps: 0 none, 1 at the end, 2 in the middle */
} tcase;

/* Random inputs for n samples; sequence inputs (T, F) get all-zero steps as seq_mask says, and an
 * input named "m*" (a user mask) gets zeros where steps are masked and other values elsewhere. */
static advnn_tensor *make_input(const advnn_graph *g, int node, int nb, int seq_mask) {
    int shp[3], nd = advnn_node_shape(g, node, shp), k, r, t;
    int64_t dims[4];
    advnn_tensor *x;
    const char *name = advnn_node_name(g, node);
    dims[0] = nb;
    for (k = 0; k < nd; k++) dims[k + 1] = shp[k];
    x = advnn_tensor_new(nd + 1, dims);
    for (k = 0; k < x->size; k++) x->data[k] = uni(-2, 2);
    if (name[0] == 'm' && nd == 1) {   /* a user mask: values like 2, -1, 0.5 active, 0 masked */
        int T = shp[0];
        for (r = 0; r < nb; r++) for (t = 0; t < T; t++) {
            int masked = seq_mask == 1 ? t >= T - (r % (T + 1)) : seq_mask == 2 ? (t > 0 && t < T - 1 && (r + t) % 3 == 0) || (r % 7 == 3) : 0;
            x->data[(size_t)r * T + t] = masked ? 0.0f : (t % 2 ? 2.0f : -1.0f);
        }
    } else if (nd == 2 && seq_mask) {   /* zero steps: padding (end) or gaps (middle); some samples fully masked */
        int T = shp[0], F = shp[1];
        for (r = 0; r < nb; r++) for (t = 0; t < T; t++) {
            int masked = seq_mask == 1 ? t >= T - (r % (T + 1)) : (t > 0 && t < T - 1 && (r * 5 + t) % 4 == 0) || r % 11 == 5;
            if (masked) memset(x->data + ((size_t)r * T + t) * F, 0, (size_t)F * sizeof(float));
        }
    }
    return x;
}

static advnn_graph *finish(advnn_graph *g) {
    if (advnn_graph_finalize(g, 7) != ADVNN_OK) { fprintf(stderr, "finalize: %s\n", advnn_last_error()); return NULL; }
    randomize(g);
    return g;
}

/* Dense on vectors with every activation, standardize, BatchNorm, PReLU, softmax, dropout, gradient
 * reversal, spectral norm, concat; the label/weight inputs and the loss are not exported. */
static advnn_graph *case_dense(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int seven = 7, one = 1, x, y, h, a[8], cat;
    x = advnn_input(g, "x", 1, &seven);
    y = advnn_input(g, "y", 1, &one);
    h = advnn_batchnorm(g, advnn_standardize(g, x));
    h = advnn_dropout(g, advnn_dense(g, h, 12, ADVNN_ACT_LINEAR), 0.3f);
    a[0] = advnn_activation(g, h, ADVNN_ACT_RELU);
    a[1] = advnn_activation_ex(g, h, ADVNN_ACT_LEAKY_RELU, 0.2f);
    a[2] = advnn_activation_ex(g, h, ADVNN_ACT_ELU, 0.7f);
    a[3] = advnn_activation(g, h, ADVNN_ACT_SIGMOID);
    a[4] = advnn_activation(g, h, ADVNN_ACT_TANH);
    a[5] = advnn_activation(g, advnn_grad_reverse(g, h, 2.0f), ADVNN_ACT_SOFTPLUS);
    a[6] = advnn_prelu(g, h);
    a[7] = advnn_dense_sn(g, h, 5, ADVNN_ACT_ELU);
    cat = advnn_concat(g, 8, a);
    advnn_name(g, advnn_softmax(g, advnn_dense(g, cat, 4, ADVNN_ACT_LEAKY_RELU)), "probs");
    advnn_name(g, advnn_dense(g, advnn_batchnorm(g, cat), 3, ADVNN_ACT_SOFTPLUS), "soft");
    advnn_name(g, advnn_dense(g, x, 2, ADVNN_ACT_SIGMOID), "sig");
    advnn_loss_bce_logits(g, advnn_dense(g, cat, 1, ADVNN_ACT_LINEAR), y, -1);
    c->n_out = 3; c->outs[0] = "probs"; c->outs[1] = "soft"; c->outs[2] = "sig";
    return finish(g);
}

/* Dense, BatchNorm, PReLU, activation and softmax on sequences (T, F). */
static advnn_graph *case_seq(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[2] = {6, 5}, x, h;
    x = advnn_input(g, "seq", 2, sh);
    h = advnn_dense(g, advnn_standardize(g, x), 7, ADVNN_ACT_TANH);
    h = advnn_batchnorm(g, h);
    h = advnn_prelu(g, h);
    h = advnn_activation_ex(g, h, ADVNN_ACT_ELU, 1.3f);
    advnn_name(g, advnn_softmax(g, advnn_dense(g, h, 3, ADVNN_ACT_LINEAR)), "seqprob");
    c->n_out = 1; c->outs[0] = "seqprob";
    return finish(g);
}

/* Conv1D with strides and 'same'/'valid', pooling, BatchNorm and PReLU channels-first, flatten. */
static advnn_graph *case_conv1d(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[2] = {17, 3}, x, h;
    x = advnn_input(g, "x1d", 2, sh);
    h = advnn_standardize(g, advnn_conv1d(g, x, 4, 3, 2, ADVNN_PAD_SAME, ADVNN_ACT_RELU));   /* channels-first */
    h = advnn_conv1d(g, h, 5, 4, 1, ADVNN_PAD_SAME, ADVNN_ACT_LINEAR);
    h = advnn_batchnorm(g, h);
    h = advnn_maxpool1d(g, h, 2, 0);
    h = advnn_conv1d(g, h, 6, 2, 1, ADVNN_PAD_VALID, ADVNN_ACT_ELU);
    h = advnn_prelu(g, h);
    h = advnn_avgpool1d(g, h, 3, 2);
    advnn_name(g, h, "feat");
    advnn_name(g, advnn_dense(g, advnn_flatten(g, h), 3, ADVNN_ACT_TANH), "out1d");
    c->n_out = 2; c->outs[0] = "out1d"; c->outs[1] = "feat";
    return finish(g);
}

/* Conv2D with strides and both paddings, BatchNorm, PReLU, overlapping max pooling, upsampling by
 * unequal factors, average pooling, a pointwise convolution, reshape. */
static advnn_graph *case_conv2d(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[3] = {9, 11, 2}, x, h, r[3];
    x = advnn_input(g, "img", 3, sh);
    h = advnn_conv2d(g, x, 4, 3, 2, 2, 1, ADVNN_PAD_SAME, ADVNN_ACT_SIGMOID);
    h = advnn_batchnorm(g, h);
    h = advnn_conv2d(g, h, 3, 2, 3, 1, 2, ADVNN_PAD_VALID, ADVNN_ACT_LINEAR);
    h = advnn_prelu(g, h);
    h = advnn_maxpool2d(g, h, 2, 2, 1, 1);
    h = advnn_upsample2d(g, h, 2, 3);
    h = advnn_avgpool2d(g, h, 2, 2, 0, 0);
    h = advnn_conv2d(g, h, 2, 1, 1, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_LEAKY_RELU);
    advnn_name(g, h, "map");
    advnn_node_shape(g, h, r);   /* (H, W, C) -> (H, W*C) */
    r[1] *= r[2];
    advnn_name(g, advnn_dense(g, advnn_reshape(g, h, 2, r), 2, ADVNN_ACT_RELU), "rows");
    c->n_out = 2; c->outs[0] = "map"; c->outs[1] = "rows";
    return finish(g);
}

/* LSTMs, last state and sequence, masked by mask_nonzero and unmasked. */
static advnn_graph *case_lstm(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[2] = {8, 4}, x, m, h;
    x = advnn_input(g, "steps", 2, sh);
    m = advnn_mask_nonzero(g, x);
    advnn_name(g, m, "mask");
    advnn_name(g, advnn_lstm(g, x, 5, 0, m), "last");
    h = advnn_lstm(g, x, 3, 1, m);
    advnn_name(g, h, "seqout");
    advnn_name(g, advnn_lstm(g, h, 4, 0, m), "stacked");
    advnn_name(g, advnn_lstm(g, x, 3, 1, -1), "nomask_seq");
    advnn_name(g, advnn_lstm(g, x, 2, 0, -1), "nomask_last");
    c->n_out = 6; c->outs[0] = "last"; c->outs[1] = "seqout"; c->outs[2] = "stacked";
    c->outs[3] = "nomask_seq"; c->outs[4] = "nomask_last"; c->outs[5] = "mask";
    return finish(g);
}

/* An LSTM masked by a user mask input (arbitrary non-zero values active) over non-zero features. */
static advnn_graph *case_lstm_user_mask(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[2] = {6, 3}, six = 6, x, m;
    x = advnn_input(g, "feat", 2, sh);
    m = advnn_input(g, "m", 1, &six);
    advnn_name(g, advnn_lstm(g, x, 4, 1, m), "useq");
    advnn_name(g, advnn_lstm(g, x, 3, 0, m), "ulast");
    c->n_out = 2; c->outs[0] = "useq"; c->outs[1] = "ulast";
    return finish(g);
}

/* Per-sample MSE and its log between differently shaped inputs of the same size. */
static advnn_graph *case_mse(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[2] = {4, 5}, twenty = 20, a, b;
    a = advnn_input(g, "a", 2, sh);
    b = advnn_input(g, "b", 1, &twenty);
    advnn_name(g, advnn_sample_mse(g, a, b, 0), "mse");
    advnn_name(g, advnn_sample_mse(g, advnn_dense(g, a, 5, ADVNN_ACT_LINEAR), b, 1), "logmse");
    c->n_out = 2; c->outs[0] = "mse"; c->outs[1] = "logmse";
    return finish(g);
}

/* W1: the classifier's probability (the adversary and its inputs are not exported). */
static advnn_graph *case_w1(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int ten = 10, two = 2, one = 1, x, y, z, a, h;
    x = advnn_input(g, "x", 1, &ten);
    y = advnn_input(g, "label", 1, &one);
    z = wl_w1_classifier(g, x);
    advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_bce_logits(g, z, y, -1);
    advnn_group(g, "adv");
    a = advnn_input(g, "zpt", 1, &two);
    h = advnn_dense(g, advnn_concat(g, 1, &a), 64, ADVNN_ACT_RELU);
    advnn_dense(g, h, 20, ADVNN_ACT_LINEAR);
    c->n_out = 1; c->outs[0] = "prob";
    return finish(g);
}

/* W2: the tagger's scores (softmax of its logits), masked sequences. */
static advnn_graph *case_w2(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int in[4], z;
    wl_rec rec;
    wl_w2_inputs(g, "", in);
    z = wl_w2_tagger(g, in, &rec, NULL);
    advnn_name(g, advnn_softmax(g, z), "scores");
    advnn_group(g, "adv");
    wl_w2_adversary(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID));
    c->n_out = 1; c->outs[0] = "scores";
    return finish(g);
}

/* W3: the reconstruction and the log-MSE anomaly score. */
static advnn_graph *case_w3(tcase *c) {
    advnn_graph *g = advnn_graph_new();
    int sh[3] = {40, 40, 1}, x, y;
    x = advnn_input(g, "img", 3, sh);
    y = wl_w3_autoencoder(g, x);
    advnn_name(g, y, "recon");
    advnn_name(g, advnn_sample_mse(g, y, x, 1), "score");
    advnn_group(g, "adv");
    wl_w3_adversary(g, advnn_find(g, "score"));
    c->n_out = 2; c->outs[0] = "recon"; c->outs[1] = "score";
    return finish(g);
}

typedef advnn_graph *(*case_fn)(tcase *);
static const struct { const char *name; case_fn fn; int masks; } cases[] = {
    {"dense", case_dense, 0}, {"seq", case_seq, 0}, {"conv1d", case_conv1d, 0}, {"conv2d", case_conv2d, 0},
    {"lstm", case_lstm, 1}, {"lstm_user_mask", case_lstm_user_mask, 1}, {"mse", case_mse, 0},
    {"w1", case_w1, 0}, {"w2", case_w2, 1}, {"w3", case_w3, 0},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- checks in every configuration */
static void test_wire_format(void) {
    int i, opset;
    for (i = 0; i < N_CASES; i++) {
        tcase c;
        advnn_graph *g;
        memset(&c, 0, sizeof c);
        g = cases[i].fn(&c);
        CHECK(g != NULL, "%s: graph", cases[i].name);
        if (!g) continue;
        for (opset = 13; opset <= 17; opset += 4) {
            advnn_onnx_opts o;
            void *b1 = NULL, *b2 = NULL, *mb = NULL;
            size_t l1 = 0, l2 = 0, ml = 0;
            model_info mi;
            char want[24];
            int k, j;
            o.portable = opset == 17; o.opset = opset;
            CHECK(advnn_onnx_save_mem(g, c.n_out, c.outs, &o, &b1, &l1) == ADVNN_OK, "%s: %s", cases[i].name, advnn_last_error());
            CHECK(advnn_onnx_save_mem(g, c.n_out, c.outs, &o, &b2, &l2) == ADVNN_OK, "%s: %s", cases[i].name, advnn_last_error());
            CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0, "%s: two exports differ (%zu, %zu bytes)", cases[i].name, l1, l2);
            if (!b1) { free(b2); continue; }
            mi = parse_model(b1, l1);
            CHECK(mi.wire_ok == 2, "%s: the model or graph message does not parse to its end", cases[i].name);
            CHECK(strcmp(mi.producer, "advnn") == 0 && strcmp(mi.version, "0.1.0") == 0, "%s: producer '%s' '%s'", cases[i].name, mi.producer, mi.version);
            CHECK(mi.opset == opset && mi.ir == (opset <= 14 ? 7 : 8), "%s: opset %d ir %d", cases[i].name, mi.opset, mi.ir);
            CHECK(advnn_model_save_mem(g, &mb, &ml) == ADVNN_OK, "%s", advnn_last_error());
            if (mb) {
                snprintf(want, sizeof want, "%016llx", (unsigned long long)advnn__get_u64((unsigned char *)mb + ml - 8));
                CHECK(strcmp(mi.checksum, want) == 0, "%s: checksum metadata '%s', model file's %s", cases[i].name, mi.checksum, want);
            }
            CHECK(mi.n_out == c.n_out, "%s: %d outputs", cases[i].name, mi.n_out);
            for (k = 0; k < mi.n_out && k < c.n_out; k++) CHECK(strcmp(mi.outs[k], c.outs[k]) == 0, "%s: output %d is '%s'", cases[i].name, k, mi.outs[k]);
            for (k = 0; k < mi.n_in; k++) {   /* only inputs the outputs read: no labels, no adversary inputs */
                CHECK(strcmp(mi.ins[k], "y") && strcmp(mi.ins[k], "label") && strcmp(mi.ins[k], "zpt"), "%s: exported input '%s'", cases[i].name, mi.ins[k]);
                for (j = 0; j < k; j++) CHECK(strcmp(mi.ins[j], mi.ins[k]) != 0, "%s: input '%s' twice", cases[i].name, mi.ins[k]);
            }
            CHECK(mi.n_in >= 1 && mi.n_nodes > 0 && mi.n_init > 0, "%s: %d inputs, %d nodes, %d initializers", cases[i].name, mi.n_in, mi.n_nodes, mi.n_init);
            if (o.portable) CHECK(!has_op(&mi, "PRelu") && !has_op(&mi, "Resize"), "%s: portable file uses%s", cases[i].name, mi.ops);
            if (!o.portable && (i == 0 || i == 3)) CHECK(has_op(&mi, "PRelu"), "%s: no PRelu:%s", cases[i].name, mi.ops);
            if (!o.portable && i == 3) CHECK(has_op(&mi, "Resize"), "%s: no Resize:%s", cases[i].name, mi.ops);
            CHECK(!has_op(&mi, "Dropout"), "%s: dropout exported", cases[i].name);
            free(b1); free(b2); free(mb);
        }
        advnn_graph_free(g);
    }
}

static void test_errors(void) {
    advnn_graph *g = advnn_graph_new();
    int two = 2, one = 1, x, y, z, l;
    const char *outs[2];
    void *b = (void *)&two;
    size_t len = 9;
    advnn_onnx_opts o;
    x = advnn_input(g, "x", 1, &two);
    y = advnn_input(g, "y", 1, &one);
    z = advnn_dense(g, x, 1, ADVNN_ACT_LINEAR);
    advnn_name(g, z, "z");
    l = advnn_loss_bce_logits(g, z, y, -1);
    advnn_name(g, l, "bce");
    outs[0] = "z"; outs[1] = "bce";
    CHECK(advnn_onnx_save_mem(g, 1, outs, NULL, &b, &len) == ADVNN_ERR_STATE, "not finalized: %s", advnn_last_error());
    CHECK(b == NULL && len == 0, "outputs not cleared on error");
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_onnx_save_mem(g, 2, outs, NULL, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "BCE loss")
          && strstr(advnn_last_error(), "bce"), "loss output: %s", advnn_last_error());
    outs[1] = "nope";
    CHECK(advnn_onnx_save_mem(g, 2, outs, NULL, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "'nope'"), "unknown: %s", advnn_last_error());
    outs[1] = "z";
    CHECK(advnn_onnx_save_mem(g, 2, outs, NULL, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "twice"), "twice: %s", advnn_last_error());
    outs[1] = "x";
    CHECK(advnn_onnx_save_mem(g, 2, outs, NULL, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "graph input"), "input as output: %s", advnn_last_error());
    o.portable = 0; o.opset = 12;
    CHECK(advnn_onnx_save_mem(g, 1, outs, &o, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "opset 12"), "opset 12: %s", advnn_last_error());
    o.opset = 18;
    CHECK(advnn_onnx_save_mem(g, 1, outs, &o, &b, &len) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "opset 18"), "opset 18: %s", advnn_last_error());
    CHECK(advnn_onnx_save_mem(g, 0, outs, NULL, &b, &len) == ADVNN_ERR_ARG, "0 outputs");
    CHECK(advnn_onnx_save_mem(NULL, 1, outs, NULL, &b, &len) == ADVNN_ERR_ARG, "NULL graph");
    CHECK(advnn_onnx_save_mem(g, 1, NULL, NULL, &b, &len) == ADVNN_ERR_ARG, "NULL outputs");
    CHECK(advnn_onnx_save_mem(g, 1, outs, NULL, NULL, &len) == ADVNN_ERR_ARG, "NULL buffer");
#ifndef ADVNN_NO_STDIO
    CHECK(advnn_onnx_save(g, "/nonexistent-dir/x.onnx", 1, outs, NULL) == ADVNN_ERR_IO, "bad path: %s", advnn_last_error());
#endif
    CHECK(advnn_onnx_save_mem(g, 1, outs, NULL, &b, &len) == ADVNN_OK && len > 0, "%s", advnn_last_error());
    free(b);
    advnn_graph_free(g);
}

/* ---- ONNX Runtime comparison (ADVNN_ONNX_ORT=DIR) */
typedef struct { char label[96], dir[256]; int n_out; char outs[8][48]; } ort_job;

static int write_case(const char *root, const char *label, advnn_graph *g, const tcase *c, int nb, int portable, int opset,
                      int seq_mask, FILE *jobs, ort_job *job) {
    char path[512], line[4096];
    advnn_onnx_opts o;
    advnn_ws *ws = advnn_ws_new(g, nb);
    const float *ins[8];
    advnn_tensor *in[8];
    int k, n_in = advnn_input_count(g), ok = 1;
    memset(in, 0, sizeof in);
    o.portable = portable; o.opset = opset;
    snprintf(job->label, sizeof job->label, "%s", label);
    snprintf(job->dir, sizeof job->dir, "%s/%s", root, label);
    snprintf(path, sizeof path, "mkdir -p '%s/expect'", job->dir);
    if (system(path) != 0 || !ws) { advnn_ws_free(ws); return 0; }
    snprintf(path, sizeof path, "%s/model.onnx", job->dir);
    if (advnn_onnx_save(g, path, c->n_out, c->outs, &o) != ADVNN_OK) { fprintf(stderr, "%s: %s\n", label, advnn_last_error()); advnn_ws_free(ws); return 0; }
    snprintf(line, sizeof line, "%s %s/ort", path, job->dir);
    for (k = 0; k < n_in && k < 8; k++) {
        int node = advnn_input_node(g, k);
        in[k] = make_input(g, node, nb, seq_mask);
        ins[k] = in[k]->data;
        snprintf(path, sizeof path, "%s/%s.npy", job->dir, advnn_node_name(g, node));
        ok &= advnn_npy_save(path, in[k]) == ADVNN_OK;
        snprintf(line + strlen(line), sizeof line - strlen(line), " %s=%s", advnn_node_name(g, node), path);
    }
    job->n_out = c->n_out;
    for (k = 0; k < c->n_out && ok; k++) {
        int node = advnn_find(g, c->outs[k]), shp[3], nd = advnn_node_shape(g, node, shp), j;
        int64_t dims[4];
        advnn_tensor *y;
        dims[0] = nb;
        for (j = 0; j < nd; j++) dims[j + 1] = shp[j];
        y = advnn_tensor_new(nd + 1, dims);
        ok &= advnn_infer(ws, nb, ins, node, y->data) == ADVNN_OK;
        snprintf(path, sizeof path, "%s/expect/%s.npy", job->dir, c->outs[k]);
        ok &= advnn_npy_save(path, y) == ADVNN_OK;
        snprintf(job->outs[k], sizeof job->outs[k], "%s", c->outs[k]);
        advnn_tensor_free(y);
    }
    fprintf(jobs, "%s\n", line);
    for (k = 0; k < 8; k++) advnn_tensor_free(in[k]);
    advnn_ws_free(ws);
    return ok;
}

static void compare_job(const ort_job *j) {
    int k;
    for (k = 0; k < j->n_out; k++) {
        char pe[512], po[512];
        advnn_tensor *e, *o;
        double worst = 0;
        int64_t i, at = -1;
        snprintf(pe, sizeof pe, "%s/expect/%s.npy", j->dir, j->outs[k]);
        snprintf(po, sizeof po, "%s/ort/%s.npy", j->dir, j->outs[k]);
        e = advnn_npy_load(pe);
        o = advnn_npy_load(po);
        CHECK(e && o, "%s: output '%s': %s", j->label, j->outs[k], advnn_last_error());
        if (e && o) {
            int same = e->ndim == o->ndim && e->size == o->size;
            for (i = 0; same && i < e->ndim; i++) same = e->shape[i] == o->shape[i];
            CHECK(same, "%s: output '%s' has %d dims / %lld values in ORT, %d / %lld in advnn", j->label, j->outs[k],
                  o->ndim, (long long)o->size, e->ndim, (long long)e->size);
            for (i = 0; same && i < e->size; i++) {
                double b = e->data[i], a = o->data[i], d = fabs(a - b) / (fabs(b) > 1 ? fabs(b) : 1);
                if (!(d <= worst)) { worst = d; at = i; }   /* NaN counts as the worst */
            }
            CHECK(same && worst <= ORT_TOL, "%s: output '%s': max relative error %.3g at %lld (advnn %.9g, ORT %.9g)", j->label, j->outs[k],
                  worst, (long long)at, at >= 0 ? e->data[at] : 0.0, at >= 0 ? o->data[at] : 0.0);
            if (same) printf("     %-44s %-12s max rel err %.2e\n", j->label, j->outs[k], worst);
        }
        advnn_tensor_free(e); advnn_tensor_free(o);
    }
}

static void run_ort(const char *root) {
    static ort_job jobs[256];
    int nj = 0, i, v, m, rc;
    char path[512], cmd[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/jobs.txt", root);
    f = fopen(path, "w");
    if (!f) { th_cur_name = "ort_setup"; th_cur_failed = 0; CHECK(0, "cannot write %s", path); th_fail_count++; return; }
    for (i = 0; i < N_CASES; i++) {
        for (m = 0; m <= (cases[i].masks ? 2 : 0); m++)
            for (v = 0; v < 5; v++) {   /* batch 1 and 300, default and portable; batch 300 at opset 17 */
                    int nb = v < 2 ? 1 : 300, portable = v == 1 || v == 3, opset = v == 4 ? 17 : 13;
                    tcase c;
                    advnn_graph *g;
                    char label[96];
                    static const char *mk[3] = {"", "_maskend", "_maskmid"};
                    memset(&c, 0, sizeof c);
                    rng_state = 1000u + (uint64_t)i * 7 + (uint64_t)m;
                    g = cases[i].fn(&c);
                    snprintf(label, sizeof label, "%s%s%s_b%d%s", cases[i].name, cases[i].masks && m == 0 ? "_nomask" : mk[m],
                             portable ? "_portable" : "", nb, opset != 13 ? "_opset17" : "");
                    th_cur_name = label; th_cur_failed = 0;
                    CHECK(g && write_case(root, label, g, &c, nb, portable, opset, m, f, &jobs[nj]), "%s: could not write the case", label);
                    if (th_cur_failed) th_fail_count++; else nj++;
                    advnn_graph_free(g);
                }
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "node tests/onnx_run.js '%s' 2>&1", path);
    rc = system(cmd);
    th_cur_name = "onnx_runtime_runs"; th_cur_failed = 0;
    CHECK(rc == 0, "tests/onnx_run.js: wait status %d (exit %d)%s", rc, rc >> 8,
          (rc >> 8) == 3 ? ": onnxruntime-node is missing (run tools/deps.sh test)" :
          (rc >> 8) == 127 ? ": node is missing (run tools/deps.sh test)" : "");
    if (th_cur_failed) th_fail_count++; else { th_pass_count++; printf("ok   onnx_runtime_runs (%d files)\n", nj); }
    for (i = 0; i < nj; i++) {
        th_cur_name = jobs[i].label; th_cur_failed = 0;
        compare_job(&jobs[i]);
        if (th_cur_failed) th_fail_count++; else { th_pass_count++; printf("ok   ort %s\n", jobs[i].label); }
    }
}

int main(void) {
    const char *ort = getenv("ADVNN_ONNX_ORT");
    RUN(test_errors);
    RUN(test_wire_format);
#ifndef ADVNN_NO_STDIO
    if (ort && *ort) run_ort(ort);
#endif
    return th_report();
}
