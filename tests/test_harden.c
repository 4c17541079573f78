/* Hardening against hostile files and careless use (issue 19): crafted model and .npy files of a few
 * hundred bytes that declare gigabytes, the model file's test vector, validation beyond the checksum,
 * the rule for non-finite updates, and the status codes and messages of misuse. Peak memory is
 * measured through the allocator macros (no timers). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* counting allocator: a 16-byte header keeps each block's size; atomic, since the trainer's worker
 * threads free their start-up argument through ADVNN_FREE (the peak is approximate under threads) */
static size_t cnt_now, cnt_peak;
static size_t cnt_get(const size_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }
static void cnt_add(size_t n, int sub) {
    size_t now = sub ? __atomic_sub_fetch(&cnt_now, n, __ATOMIC_RELAXED) : __atomic_add_fetch(&cnt_now, n, __ATOMIC_RELAXED);
    if (!sub && now > __atomic_load_n(&cnt_peak, __ATOMIC_RELAXED)) __atomic_store_n(&cnt_peak, now, __ATOMIC_RELAXED);
}
static void *cnt_malloc(size_t n) {
    unsigned char *p = (unsigned char *)malloc(n + 16);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    cnt_add(n, 0);
    return p + 16;
}
static void cnt_free(void *q) {
    size_t n;
    if (!q) return;
    memcpy(&n, (unsigned char *)q - 16, sizeof n);
    cnt_add(n, 1);
    free((unsigned char *)q - 16);
}
static void *cnt_realloc(void *q, size_t n) {
    size_t old = 0;
    unsigned char *p;
    if (!q) return cnt_malloc(n);
    memcpy(&old, (unsigned char *)q - 16, sizeof old);
    if (!(p = (unsigned char *)realloc((unsigned char *)q - 16, n + 16))) return NULL;
    memcpy(p, &n, sizeof n);
    if (n >= old) cnt_add(n - old, 0);
    else cnt_add(old - n, 1);
    return p + 16;
}
#define ADVNN_MALLOC(sz) cnt_malloc(sz)
#define ADVNN_REALLOC(p, sz) cnt_realloc(p, sz)
#define ADVNN_FREE(p) cnt_free(p)
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include "examples/workloads.h"

/* ---- a model file written by hand, in the documented layout, from an unfinalized graph: the
 * architecture of any size without the weights (nothing of the declared size is ever allocated) */
typedef struct { unsigned char *b; size_t n, cap; } mbuf;
static void mput(mbuf *m, const void *p, size_t n) {
    if (m->n + n > m->cap) { m->cap = 2 * (m->n + n) + 256; m->b = (unsigned char *)realloc(m->b, m->cap); }
    memcpy(m->b + m->n, p, n); m->n += n;
}
static void m32(mbuf *m, uint32_t v) { unsigned char b[4]; advnn__put_u32(b, v); mput(m, b, 4); }
static void mstr(mbuf *m, const char *s) { m32(m, (uint32_t)strlen(s)); mput(m, s, strlen(s)); }
static void mfix(mbuf *m, uint32_t flags) {   /* header, payload length, checksum */
    unsigned char z[8] = {0};
    mput(m, z, 8);
    memcpy(m->b, "ADVNNMDL", 8);
    advnn__put_u32(m->b + 8, ADVNN_MODEL_FORMAT_VERSION); advnn__put_u32(m->b + 12, flags);
    advnn__put_u64(m->b + 16, (uint64_t)(m->n - 32));
    advnn__put_u64(m->b + m->n - 8, (uint64_t)XXH3_64bits(m->b, m->n - 8));
}
static mbuf arch_only(const advnn_graph *g, uint32_t flags) {
    mbuf m;
    unsigned char z[24] = {0};
    memset(&m, 0, sizeof m);
    int i, j;
    mput(&m, z, 24);
    m32(&m, (uint32_t)g->n_groups);
    for (i = 0; i < g->n_groups; i++) mstr(&m, g->groups[i]);
    m32(&m, (uint32_t)g->n_nodes);
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        m32(&m, (uint32_t)n->kind); m32(&m, (uint32_t)n->group); m32(&m, (uint32_t)n->share); m32(&m, (uint32_t)n->n_in);
        for (j = 0; j < n->n_in; j++) m32(&m, (uint32_t)n->in[j]);
        m32(&m, (uint32_t)n->ndim);
        for (j = 0; j < 3; j++) m32(&m, (uint32_t)n->shape[j]);
        for (j = 0; j < 8; j++) m32(&m, (uint32_t)n->ip[j]);
        for (j = 0; j < 4; j++) { uint32_t u; memcpy(&u, &n->fp[j], 4); m32(&m, u); }
        mstr(&m, n->name);
    }
    m32(&m, (uint32_t)g->n_par);
    mfix(&m, flags);
    return m;
}

/* load under the counting allocator; *peak = the most it held at once beyond what was held before */
static advnn_graph *load_counted(const void *b, size_t n, size_t *peak) {
    size_t base = cnt_get(&cnt_now);
    advnn_graph *g;
    __atomic_store_n(&cnt_peak, base, __ATOMIC_RELAXED);
    g = advnn_model_load_mem(b, n);
    *peak = cnt_get(&cnt_peak) - base;
    return g;
}

static void test_model_allocation_bombs(void) {
    static const int sizes[3] = {16384, 32768, 46000};   /* 1 GiB, 4 GiB, 8 GiB of weights declared */
    int k, sn;
    size_t most = 0, longest = 0;
    for (k = 0; k < 3; k++)
        for (sn = 0; sn < 2; sn++) {
            advnn_graph *g = advnn_graph_new(), *h;
            int x = advnn_input(g, "x", 1, &sizes[k]);
            mbuf m;
            size_t peak;
            if (sn) advnn_dense_sn(g, x, sizes[k], ADVNN_ACT_RELU); else advnn_dense(g, x, sizes[k], ADVNN_ACT_RELU);
            m = arch_only(g, 0);
            h = load_counted(m.b, m.n, &peak);
            CHECK(h == NULL && strstr(advnn_last_error(), "declares"), "Dense(%d)%s from %zu bytes: %s", sizes[k], sn ? " SN" : "", m.n,
                  h ? "loaded" : advnn_last_error());
            CHECK(peak < (64 << 10), "Dense(%d)%s: a %zu-byte file made the loader hold %zu bytes", sizes[k], sn ? " SN" : "", m.n, peak);
            CHECK(m.n < 500, "the crafted file has %zu bytes", m.n);
            if (peak > most) most = peak;
            if (m.n > longest) longest = m.n;
            advnn_graph_free(h); advnn_graph_free(g); free(m.b);
        }
    printf("     files of up to %zu bytes declaring up to 8 GiB: the loader held at most %zu bytes\n", longest, most);
}

/* A file whose test vector would need a huge workspace (activations cost no bytes in the file): refused
 * before the workspace is allocated. Two rows of 4096 x 4096 after the upsampling, twice. */
static void test_model_testvec_workspace_bomb(void) {
    advnn_graph *g = advnn_graph_new(), *h;
    int shp[3] = {64, 64, 1}, x, u, leaf;
    mbuf m;
    size_t peak, i, nv;
    x = advnn_input(g, "x", 3, shp);
    u = advnn_activation(g, advnn_upsample2d(g, x, 64, 64), ADVNN_ACT_TANH);
    leaf = advnn_maxpool2d(g, u, 64, 64, 0, 0);
    CHECK(leaf >= 0, "%s", advnn_last_error());
    nv = 2 * (size_t)g->nodes[leaf].size;
    m = arch_only(g, 0);
    m.n -= 8;   /* the test vector: rows, seed, 1 leaf, its id and its values */
    m32(&m, 2); m32(&m, 1); m32(&m, 0); m32(&m, 1); m32(&m, (uint32_t)leaf);
    for (i = 0; i < nv; i++) m32(&m, 0);
    mfix(&m, 1);
    h = load_counted(m.b, m.n, &peak);
    CHECK(h == NULL && strstr(advnn_last_error(), "workspace"), "upsampling bomb: %s", h ? "loaded" : advnn_last_error());
    CHECK(peak < (64 << 10), "a %zu-byte file made the loader hold %zu bytes", m.n, peak);
    advnn_graph_free(h); advnn_graph_free(g); free(m.b);
}

/* .npy of shape (2^28, 0) (no data) fed to advnn_predict: a shape error before any allocation of its size */
static void test_npy_zero_width_predict(void) {
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (268435456, 0), }";
    unsigned char buf[256];
    size_t hl = strlen(dict) + 1, pad = (64 - (10 + hl) % 64) % 64, n = 10 + hl + pad, peak, base;
    advnn_tensor *t, *p = NULL;
    advnn_dataset *d = advnn_dataset_new();
    advnn_graph *g = advnn_graph_new();
    int four = 4;
    advnn_status st;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((hl + pad) & 0xff); buf[9] = (unsigned char)((hl + pad) >> 8);
    memcpy(buf + 10, dict, hl - 1); memset(buf + 10 + hl - 1, ' ', pad); buf[n - 1] = '\n';
    advnn_name(g, advnn_dense(g, advnn_input(g, "x", 1, &four), 1, ADVNN_ACT_SIGMOID), "p");
    advnn_graph_finalize(g, 1);
    base = cnt_get(&cnt_now); __atomic_store_n(&cnt_peak, base, __ATOMIC_RELAXED);
    t = advnn_npy_load_mem(buf, n);
    CHECK(t != NULL && t->size == 0, "(2^28, 0) should load as an empty array: %s", t ? "" : advnn_last_error());
    if (t) {
        CHECK(advnn_dataset_add(d, "x", t) == ADVNN_OK, "%s", advnn_last_error());
        st = advnn_predict(g, d, "p", &p);
        CHECK(st == ADVNN_ERR_SHAPE && p == NULL && strstr(advnn_last_error(), "4 values"), "predict: %s %s", advnn_status_name(st), advnn_last_error());
    }
    peak = cnt_get(&cnt_peak) - base;
    CHECK(peak < (1 << 20), "a %zu-byte .npy and predict held %zu bytes", n, peak);
    advnn_tensor_free(t); advnn_tensor_free(p); advnn_dataset_free(d); advnn_graph_free(g);
}

/* ---- the test vector and validation beyond the checksum */
static advnn_graph *bn_model(void) {
    advnn_graph *g = advnn_graph_new();
    int five = 5, one = 1, x, y, h, a, b, c[2];
    x = advnn_input(g, "x", 1, &five);
    y = advnn_input(g, "y", 1, &one);
    h = advnn_batchnorm(g, x);
    a = advnn_dense(g, h, 8, ADVNN_ACT_RELU);
    b = advnn_dense(g, h, 8, ADVNN_ACT_RELU);
    c[0] = a; c[1] = b;
    h = advnn_dense(g, advnn_concat(g, 2, c), 1, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_activation(g, h, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_bce_logits(g, h, y, -1);
    if (advnn_graph_finalize(g, 3) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); exit(1); }
    {   /* running statistics away from their initial values */
        int i;
        for (i = 0; i < g->n_par; i++) if (g->nodes[g->par[i].node].kind == ADVNN__BATCHNORM) {
            int64_t k;
            for (k = 0; k < g->par[i].size; k++) g->params[g->par[i].off + k] += 0.1f * (float)(k + 1);
        }
    }
    return g;
}

/* offsets of each node record in a saved file (the layout of advnn_model_save) */
static size_t node_offset(const unsigned char *b, int node, int field /* 0 kind, 1 inputs, 2 ip, 3 fp */) {
    size_t p = 24;
    uint32_t ng = advnn__get_u32(b + p), i, nn;
    p += 4;
    for (i = 0; i < ng; i++) p += 4 + advnn__get_u32(b + p);
    nn = advnn__get_u32(b + p); p += 4;
    for (i = 0; i < nn; i++) {
        uint32_t nin = advnn__get_u32(b + p + 12);
        if ((int)i == node) return field == 0 ? p : field == 1 ? p + 16 : field == 2 ? p + 16 + 4 * nin + 16 : p + 16 + 4 * nin + 48;
        p += 16 + 4 * nin + 4 + 12 + 32 + 16;
        p += 4 + advnn__get_u32(b + p);
    }
    return 0;
}
static void resum(unsigned char *b, size_t n) { advnn__put_u64(b + n - 8, (uint64_t)XXH3_64bits(b, n - 8)); }

static void test_model_testvec(void) {
    advnn_graph *g = bn_model(), *h;
    void *vb;
    unsigned char *b, *c;
    size_t n, n0;
    int bn = 2, act = 7, cat = 5;
    CHECK(g->nodes[bn].kind == ADVNN__BATCHNORM && g->nodes[act].kind == ADVNN__ACT && g->nodes[cat].kind == ADVNN__CONCAT, "layout of bn_model");
    CHECK(advnn_model_save_mem(g, &vb, &n) == ADVNN_OK, "%s", advnn_last_error());
    b = (unsigned char *)vb;
    CHECK(advnn__get_u32(b + 12) == 1, "the default save has the test-vector flag");
    c = (unsigned char *)malloc(n);
    h = advnn_model_load_mem(b, n);
    CHECK(h != NULL, "intact file: %s", advnn_last_error());
    advnn_graph_free(h);
    /* each edit keeps the checksum valid and the architecture buildable, but changes the outputs */
    {   /* BatchNorm eps 1e-3 -> 0.5 */
        float e = 0.5f; uint32_t u; memcpy(&u, &e, 4);
        memcpy(c, b, n); advnn__put_u32(c + node_offset(c, bn, 3) + 4, u); resum(c, n);
        h = advnn_model_load_mem(c, n);
        CHECK(h == NULL && strstr(advnn_last_error(), "computes"), "BN eps edit: %s", h ? "loaded" : advnn_last_error());
        advnn_graph_free(h);
    }
    {   /* the output activation sigmoid -> tanh */
        memcpy(c, b, n); advnn__put_u32(c + node_offset(c, act, 2), ADVNN_ACT_TANH); resum(c, n);
        h = advnn_model_load_mem(c, n);
        CHECK(h == NULL && strstr(advnn_last_error(), "computes"), "activation edit: %s", h ? "loaded" : advnn_last_error());
        advnn_graph_free(h);
    }
    {   /* concat(a, b) -> concat(b, b): a rewired input of the same shape */
        memcpy(c, b, n); advnn__put_u32(c + node_offset(c, cat, 1), 4); resum(c, n);
        h = advnn_model_load_mem(c, n);
        CHECK(h == NULL && strstr(advnn_last_error(), "test vector"), "rewired concat: %s", h ? "loaded" : advnn_last_error());
        advnn_graph_free(h);
    }
    {   /* one weight of the last dense layer changed by 0.05 */
        /* bn_model's only leaf is prob (1 value): the test vector is 16 + 4 + 2 x 4 bytes before the
         * checksum, and the float before it is the output layer's bias */
        size_t p = n - 8 - (16 + 4 + 4 * 2) - 4;
        float w; uint32_t u;
        CHECK(advnn__tv_outputs(g, NULL) == 1, "bn_model has %d leaves", advnn__tv_outputs(g, NULL));
        memcpy(c, b, n);
        w = advnn__get_f32(c + p) + 0.05f; memcpy(&u, &w, 4); advnn__put_u32(c + p, u); resum(c, n);
        h = advnn_model_load_mem(c, n);
        CHECK(h == NULL && strstr(advnn_last_error(), "computes"), "weight edit: %s", h ? "loaded" : advnn_last_error());
        advnn_graph_free(h);
    }
    {   /* a saved model computed on AVX2 loads with the scalar kernels (the tolerance covers ISAs) */
        const char *was = advnn_simd_name();
        advnn_simd_force("scalar");
        h = advnn_model_load_mem(b, n);
        CHECK(h != NULL, "scalar load of a %s-saved file: %s", was, advnn_last_error());
        advnn_graph_free(h);
        advnn_simd_force("auto");
    }
    /* without a test vector the edits are not caught, and the file is shorter */
    {
        void *v2;
        CHECK(advnn_model_save_mem_ex(g, ADVNN_SAVE_NO_TESTVEC, &v2, &n0) == ADVNN_OK && n0 < n, "NO_TESTVEC: %zu vs %zu bytes", n0, n);
        CHECK(advnn__get_u32((unsigned char *)v2 + 12) == 0, "NO_TESTVEC writes flags 0 (files of earlier builds)");
        h = advnn_model_load_mem(v2, n0);
        CHECK(h != NULL, "a file without test vector loads: %s", advnn_last_error());
        advnn_graph_free(h);
        cnt_free(v2);
    }
    CHECK(advnn_model_save_mem_ex(g, 2, &vb, &n0) == ADVNN_ERR_ARG, "unknown save flags refused");
    cnt_free(b); free(c);
    advnn_graph_free(g);
}

static void test_model_invalid_values(void) {
    advnn_graph *g = bn_model(), *h;
    void *vb;
    size_t n;
    int i;
    advnn__param *var = NULL;
    for (i = 0; i < g->n_par; i++) if (g->nodes[g->par[i].node].kind == ADVNN__BATCHNORM && i == g->nodes[g->par[i].node].param0 + 3) var = &g->par[i];
    CHECK(var != NULL, "no BN variance block");
    if (!var) { advnn_graph_free(g); return; }
    /* negative running variance: save refuses; a file holding one (saved without the check) is refused */
    g->params[var->off + 1] = -1.0f;
    CHECK(advnn_model_save_mem(g, &vb, &n) == ADVNN_ERR_FORMAT && strstr(advnn_last_error(), "variance"), "save, var -1: %s", advnn_last_error());
    {
        mbuf m = arch_only(g, 0);
        int64_t k;
        m.n -= 8;
        for (i = 0; i < g->n_par; i++) {
            m32(&m, (uint32_t)g->par[i].rows); m32(&m, (uint32_t)g->par[i].cols);
            for (k = 0; k < g->par[i].size; k++) { uint32_t u; memcpy(&u, &g->params[g->par[i].off + k], 4); m32(&m, u); }
        }
        mfix(&m, 0);
        h = advnn_model_load_mem(m.b, m.n);
        CHECK(h == NULL && strstr(advnn_last_error(), "variance"), "load, var -1: %s", h ? "loaded" : advnn_last_error());
        advnn_graph_free(h); free(m.b);
    }
    g->params[var->off + 1] = 1.0f;
    /* Inf and NaN weights: save refuses (it would write a file that load refuses) */
    g->params[g->par[1].off] = INFINITY;
    CHECK(advnn_model_save_mem(g, &vb, &n) == ADVNN_ERR_NAN, "save with an Inf weight: %s", advnn_last_error());
    g->params[g->par[1].off] = NAN;
    CHECK(advnn_model_save_mem(g, &vb, &n) == ADVNN_ERR_NAN, "save with a NaN weight: %s", advnn_last_error());
    advnn_graph_free(g);
}

/* Loading a model of 40k named nodes works (the name index; its time is measured in the closing note,
 * not asserted) and every name resolves to its node. */
static void test_many_names(void) {
    advnn_graph *g = advnn_graph_new(), *h;
    int one = 1, x, i, ok = 1;
    char nm[32];
    void *b;
    size_t n;
    x = advnn_input(g, "x", 1, &one);
    for (i = 0; i < 40000; i++) { snprintf(nm, sizeof nm, "n%d", i); x = advnn_name(g, advnn_activation(g, x, ADVNN_ACT_LINEAR), nm); }
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK, "%s", advnn_last_error());
    CHECK(advnn_name(g, 5, "n7") < 0, "a used name is refused");
    CHECK(advnn_model_save_mem_ex(g, ADVNN_SAVE_NO_TESTVEC, &b, &n) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(b, n);
    CHECK(h != NULL, "%s", advnn_last_error());
    for (i = 0; h && i < 40000; i++) { snprintf(nm, sizeof nm, "n%d", i); ok &= advnn_find(h, nm) == i + 1; }
    CHECK(ok && advnn_find(h, "x") == 0 && advnn_find(h, "nope") == -1, "names resolve after load");
    cnt_free(b); advnn_graph_free(g); advnn_graph_free(h);
}

/* ---- non-finite updates are refused with the weights as they were */
static advnn_graph *mse_model(void) {
    advnn_graph *g = advnn_graph_new();
    int three = 3, one = 1, x, t, h;
    x = advnn_input(g, "x", 1, &three);
    t = advnn_input(g, "t", 1, &one);
    h = advnn_dense(g, advnn_dense(g, x, 8, ADVNN_ACT_RELU), 1, ADVNN_ACT_LINEAR);
    advnn_name(g, h, "out");
    advnn_loss_mse(g, h, t, -1);
    advnn_graph_finalize(g, 9);
    return g;
}
static void test_nonfinite_update(void) {
    advnn_graph *g = mse_model(), *g2 = mse_model();
    advnn_tensor *X, *T;
    advnn_dataset *d = advnn_dataset_new();
    advnn_trainer *tr, *tr2;
    int64_t shx[2] = {8, 3}, sht[2] = {8, 1}, idx[8] = {0, 1, 2, 3, 4, 5, 6, 7}, P;
    float *w0;
    double l1, l2;
    advnn_status st;
    int i, kind;
    X = advnn_tensor_new(2, shx); T = advnn_tensor_new(2, sht);
    for (i = 0; i < 24; i++) X->data[i] = (float)sin(i);
    for (i = 0; i < 8; i++) T->data[i] = 3e38f;
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "t", T);
    for (kind = 0; kind < 3; kind++) {
        advnn_optim o = kind == 0 ? advnn_adam(1e-3f) : kind == 1 ? advnn_sgd(0.1f, 0.9f, 0) : advnn_nadam(1e-3f);
        advnn_graph_free(g); advnn_graph_free(g2); g = mse_model(); g2 = mse_model();
        tr = advnn_trainer_new(g, 8, 1); tr2 = advnn_trainer_new(g2, 8, 1);
        advnn_trainer_set_optim(tr, NULL, o); advnn_trainer_set_optim(tr2, NULL, o);
        P = g->n_params;
        w0 = (float *)malloc((size_t)P * sizeof(float));
        memcpy(w0, g->params, (size_t)P * sizeof(float));
        for (i = 0; i < 8; i++) T->data[i] = 3e38f;   /* the gradient overflows (the loss itself may be finite or not) */
        st = advnn_train_step(tr, d, idx, 8, &l1);
        CHECK(st == ADVNN_ERR_NAN, "optimizer %d: targets 3e38 gave %s", kind, advnn_status_name(st));
        CHECK(memcmp(w0, g->params, (size_t)P * sizeof(float)) == 0, "optimizer %d: the refused step changed the weights", kind);
        /* the refused step left no trace: the next good step equals a fresh trainer's first step */
        for (i = 0; i < 8; i++) T->data[i] = (float)cos(i);
        st = advnn_train_step(tr, d, idx, 8, &l1);
        CHECK(st == ADVNN_OK && advnn_train_step(tr2, d, idx, 8, &l2) == ADVNN_OK, "good step: %s", advnn_last_error());
        CHECK(l1 == l2 && memcmp(g->params, g2->params, (size_t)P * sizeof(float)) == 0, "optimizer %d: state changed by the refused step", kind);
        /* a learning rate that overflows the weights from a finite gradient: targets 1e18 keep the loss
         * finite (1e36) and give gradients near 1e17, which a rate of 1e22 takes past FLT_MAX */
        {
            advnn_trainer_set_optim(tr, NULL, advnn_sgd(1e22f, 0, 0));
            for (i = 0; i < 8; i++) T->data[i] = 1e18f;
            memcpy(w0, g->params, (size_t)P * sizeof(float));
            st = advnn_train_step(tr, d, idx, 8, &l1);
            CHECK(st == ADVNN_ERR_NAN && strstr(advnn_last_error(), "learning rate") && memcmp(w0, g->params, (size_t)P * sizeof(float)) == 0,
                  "optimizer %d, lr 1e22: %s %s", kind, advnn_status_name(st), advnn_last_error());
        }
        free(w0);
        advnn_trainer_free(tr); advnn_trainer_free(tr2);
    }
    /* a NaN written into a weight: training refuses, predict refuses (no ReLU swallows it) */
    {
        advnn_tensor *p = NULL;
        float *w = advnn_params(g, &P);
        tr = advnn_trainer_new(g, 8, 1);
        w[g->par[0].off + 2] = NAN;
        st = advnn_train_step(tr, d, idx, 8, &l1);
        CHECK(st == ADVNN_ERR_NAN, "NaN weight: training gave %s", advnn_status_name(st));
        st = advnn_predict(g, d, "out", &p);
        CHECK(st == ADVNN_ERR_NAN && p == NULL && strstr(advnn_last_error(), "advnn_predict"), "NaN weight: predict gave %s %s",
              advnn_status_name(st), advnn_last_error());
        advnn_trainer_free(tr);
    }
    advnn_graph_free(g); advnn_graph_free(g2); advnn_dataset_free(d); advnn_tensor_free(X); advnn_tensor_free(T);
}

/* ---- status codes and messages of misuse */
static void test_misuse_messages(void) {
    advnn_graph *g = advnn_graph_new();
    advnn_dataset *d = advnn_dataset_new();
    advnn_tensor *p = NULL, *X;
    int four = 4;
    int64_t sh[2] = {3, 4}, cnt = 7;
    X = advnn_tensor_new(2, sh);
    advnn_dataset_add(d, "x", X);
    advnn_name(g, advnn_dense(g, advnn_input(g, "x", 1, &four), 1, ADVNN_ACT_SIGMOID), "p");
    CHECK(advnn_predict(g, d, "p", &p) == ADVNN_ERR_STATE && strstr(advnn_last_error(), "not finalized"), "predict unfinalized: %s", advnn_last_error());
    CHECK(advnn_params(g, &cnt) == NULL && cnt == 0 && strstr(advnn_last_error(), "not finalized"), "params unfinalized: %s", advnn_last_error());
#ifndef ADVNN_NO_STDIO
    CHECK(advnn_model_load("tests") == NULL && strstr(advnn_last_error(), "cannot read") && !strstr(advnn_last_error(), "memory"),
          "loading a directory: %s", advnn_last_error());
#endif
    {   /* a file with an architecture and no tensors says so */
        mbuf m;
        advnn_graph *h;
        advnn_graph_finalize(g, 1);
        m = arch_only(g, 0);
        h = advnn_model_load_mem(m.b, m.n);
        CHECK(h == NULL && strstr(advnn_last_error(), "declares 36 bytes of tensors"), "no tensors: %s", advnn_last_error());
        free(m.b);
    }
    advnn_tensor_free(X); advnn_dataset_free(d); advnn_graph_free(g);
}

/* ---- .npy header dict: keys inside string values are not keys; a repeated key's last value counts */
static advnn_tensor *npy_from_dict(const char *dict, const float *data, size_t n) {
    unsigned char buf[512];
    size_t hl = strlen(dict) + 1, pad = (64 - (10 + hl) % 64) % 64, len = 10 + hl + pad;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((hl + pad) & 0xff); buf[9] = (unsigned char)((hl + pad) >> 8);
    memcpy(buf + 10, dict, hl - 1); memset(buf + 10 + hl - 1, ' ', pad); buf[len - 1] = '\n';
    memcpy(buf + len, data, n * sizeof(float));
    return advnn_npy_load_mem(buf, len + n * sizeof(float));
}
static void test_npy_header_dict(void) {
    const float v[6] = {1, 2, 3, 4, 5, 6};
    advnn_tensor *t;
    /* numpy writes this for a structured-looking descr string; 'shape' inside descr's value is text */
    t = npy_from_dict("{'descr': '<f4', 'note': 'shape', 'fortran_order': False, 'shape': (2, 3), }", v, 6);
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "key name inside a value: %s", t ? "wrong shape" : advnn_last_error());
    advnn_tensor_free(t);
    t = npy_from_dict("{'descr': '<f4', 'fortran_order': False, 'x': \"'shape': (6,)\", 'shape': (3, 2), }", v, 6);
    CHECK(t && t->ndim == 2 && t->shape[0] == 3, "quoted 'shape': inside a value: %s", t ? "wrong shape" : advnn_last_error());
    advnn_tensor_free(t);
    /* duplicated key: the last wins, as np.load (a Python dict literal) */
    t = npy_from_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'shape': (2, 3), }", v, 6);
    CHECK(t && t->ndim == 2 && t->shape[1] == 3, "duplicated key: %s", t ? "the first was kept" : advnn_last_error());
    advnn_tensor_free(t);
    t = npy_from_dict("{'descr': '<f4', 'fortran_order': True, 'fortran_order': False, 'shape': (6,), }", v, 6);
    CHECK(t && t->ndim == 1, "duplicated fortran_order: %s", t ? "" : advnn_last_error());
    advnn_tensor_free(t);
    t = npy_from_dict("{'note': 'descr', 'fortran_order': False, 'shape': (6,), }", v, 6);
    CHECK(!t && strstr(advnn_last_error(), "no 'descr'"), "descr only inside a value: %s", t ? "loaded" : advnn_last_error());
    advnn_tensor_free(t);
}

/* ---- classification helpers */
static void test_classification_helpers(void) {
    const float s3[4 * 3] = {0.1f, 0.7f, 0.2f,  2, 1, 0,  0, 0, 5,  1, 1, 0};   /* rows: 1, 0, 2, 0 (first max) */
    const float lab[4] = {1, 2, 2, 0}, w[4] = {1, 2, 3, 4}, p1[3] = {0.2f, 0.5f, 0.9f}, l1[3] = {0, 0, 1};
    int am[4];
    double acc, c[9];
    CHECK(advnn_argmax(s3, 4, 3, am) == ADVNN_OK && am[0] == 1 && am[1] == 0 && am[2] == 2 && am[3] == 0, "argmax %d %d %d %d", am[0], am[1], am[2], am[3]);
    CHECK(advnn_accuracy(s3, lab, NULL, 4, 3, &acc) == ADVNN_OK && acc == 0.75, "accuracy %g", acc);
    CHECK(advnn_accuracy(s3, lab, w, 4, 3, &acc) == ADVNN_OK && fabs(acc - 8.0 / 10.0) < 1e-12, "weighted accuracy %g", acc);
    CHECK(advnn_confusion(s3, lab, w, 4, 3, c) == ADVNN_OK && c[1 * 3 + 1] == 1 && c[2 * 3 + 0] == 2 && c[2 * 3 + 2] == 3 && c[0] == 4,
          "confusion %g %g %g %g", c[4], c[6], c[8], c[0]);
    CHECK(advnn_accuracy(p1, l1, NULL, 3, 1, &acc) == ADVNN_OK && fabs(acc - 2.0 / 3.0) < 1e-12, "binary accuracy %g", acc);
    {
        const float bad[3] = {0, 3, 1};
        CHECK(advnn_accuracy(s3, bad, NULL, 3, 3, &acc) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "row 1"), "label 3 of 3 classes: %s", advnn_last_error());
    }
}

/* ---- a bad label is reported by its row in the caller's data, not its place in a shuffled batch */
static void test_loss_error_names_row(void) {
    advnn_graph *g = advnn_graph_new();
    int two = 2, one = 1, x, y, z, rep;
    int64_t sx[2] = {100, 2}, sy[2] = {100, 1}, i;
    advnn_tensor *X = advnn_tensor_new(2, sx), *Y = advnn_tensor_new(2, sy);
    advnn_dataset *d = advnn_dataset_new();
    advnn_trainer *tr;
    advnn_fit_opts o = advnn_fit_defaults();
    x = advnn_input(g, "x", 1, &two); y = advnn_input(g, "y", 1, &one);
    z = advnn_dense(g, x, 3, ADVNN_ACT_LINEAR);
    advnn_loss_cce_logits(g, z, y, -1);
    advnn_graph_finalize(g, 1);
    for (i = 0; i < 200; i++) X->data[i] = (float)sin((double)i);
    for (i = 0; i < 100; i++) Y->data[i] = (float)(i % 3);
    Y->data[37] = 5;
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y);
    o.epochs = 1; o.verbose = 0;
    for (rep = 0; rep < 4; rep++) {   /* shuffled, then in order; on 1 thread, then on 3 */
        int old = advnn_set_threads(rep < 2 ? 1 : 3);
        tr = advnn_trainer_new(g, 96, 4);   /* 96 rows: three chunks of 32 */
        advnn_set_threads(old);
        o.shuffle = !(rep & 1);
        CHECK(advnn_fit(tr, d, NULL, &o, NULL) == ADVNN_ERR_ARG && strstr(advnn_last_error(), "label 5 in row 37 of the data"),
              "shuffle %d, %d threads: %s", o.shuffle, rep < 2 ? 1 : 3, advnn_last_error());
        advnn_trainer_free(tr);
    }
    advnn_graph_free(g); advnn_dataset_free(d); advnn_tensor_free(X); advnn_tensor_free(Y);
}

/* ---- standardisation fitted on data, applied by the graph, saved with the model */
static void test_standardize(void) {
    advnn_graph *g = advnn_graph_new(), *h = NULL;
    int shp[2] = {3, 2}, x, sn, out;
    int64_t sh[3] = {50, 3, 2}, i;
    advnn_tensor *X = advnn_tensor_new(3, sh), *p = NULL, *q = NULL;
    advnn_dataset *d = advnn_dataset_new();
    float w[50];
    void *b;
    size_t n;
    double m0 = 0, v0 = 0, sw = 0;
    x = advnn_input(g, "x", 2, shp);
    sn = advnn_standardize(g, x);
    out = advnn_name(g, advnn_reshape(g, sn, 2, shp), "z");
    CHECK(advnn_graph_finalize(g, 1) == ADVNN_OK && out >= 0, "%s", advnn_last_error());
    for (i = 0; i < X->size; i++) X->data[i] = (i % 2 ? 100.0f : -3.0f) + (float)sin((double)i) * (i % 2 ? 20.0f : 0.5f);
    for (i = 0; i < 50; i++) w[i] = 0.5f + (float)(i % 4);
    CHECK(advnn_standardize_fit(g, sn, X, w) == ADVNN_OK, "%s", advnn_last_error());
    advnn_dataset_add(d, "x", X);
    CHECK(advnn_predict(g, d, "z", &p) == ADVNN_OK, "%s", advnn_last_error());
    for (i = 0; p && i < 150; i++) { double ww = w[i / 3]; sw += ww; m0 += ww * p->data[2 * i + 1]; }   /* channel 1 */
    m0 /= sw;
    for (i = 0; p && i < 150; i++) { double e = p->data[2 * i + 1] - m0; v0 += w[i / 3] * e * e; }
    v0 /= sw;
    CHECK(fabs(m0) < 1e-5 && fabs(v0 - 1) < 1e-5, "standardized channel 1: weighted mean %g, variance %g", m0, v0);
    CHECK(advnn_model_save_mem(g, &b, &n) == ADVNN_OK && (h = advnn_model_load_mem(b, n)) != NULL, "%s", advnn_last_error());
    CHECK(advnn_predict(h, d, "z", &q) == ADVNN_OK && memcmp(p->data, q->data, (size_t)p->size * sizeof(float)) == 0, "the saved model scales otherwise");
    CHECK(advnn_standardize_fit(g, out, X, NULL) == ADVNN_ERR_ARG, "fit on a reshape node accepted");
    {   /* the fitted values by name: channel 0 is -3 + 0.5 sin(.) around -3, channel 1 around 100 */
        float off[2] = {0, 0}, sc[2] = {0, 0};
        CHECK(advnn_weight_get(g, sn, "offset", off, 2) == ADVNN_OK && advnn_weight_get(g, sn, "scale", sc, 2) == ADVNN_OK,
              "%s", advnn_last_error());
        CHECK(fabs(off[0] + 3) < 0.5 && fabs(off[1] - 100) < 20 && sc[0] > 1 && sc[1] < 1, "offset %g %g, scale %g %g", off[0], off[1], sc[0], sc[1]);
    }
    advnn_tensor_free(p); advnn_tensor_free(q); advnn_tensor_free(X); advnn_dataset_free(d);
    cnt_free(b); advnn_graph_free(g); advnn_graph_free(h);
}

int main(void) {
    advnn__chunk_min_rows = 32;   /* the tests' small batches in several chunks, as before the default became 128 */
    RUN(test_model_allocation_bombs);
    RUN(test_model_testvec_workspace_bomb);
    RUN(test_npy_zero_width_predict);
    RUN(test_model_testvec);
    RUN(test_model_invalid_values);
    RUN(test_many_names);
    RUN(test_nonfinite_update);
    RUN(test_misuse_messages);
    RUN(test_npy_header_dict);
    RUN(test_classification_helpers);
    RUN(test_loss_error_names_row);
    RUN(test_standardize);
    return th_report();
}
