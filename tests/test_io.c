/* .npy reading/writing and model files: round trips, every dtype, malformed files, every byte flip
 * and every truncation of a saved model. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"

/* Builds a v1.0 .npy in buf from a header dict and raw data; returns its length. */
static size_t make_npy(unsigned char *buf, const char *dict, const void *data, size_t dlen) {
    size_t hl = strlen(dict) + 1, pad = (64 - (10 + hl) % 64) % 64, i;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)((hl + pad) & 0xff); buf[9] = (unsigned char)((hl + pad) >> 8);
    memcpy(buf + 10, dict, hl - 1);
    for (i = 0; i < pad; i++) buf[10 + hl - 1 + i] = ' ';
    buf[10 + hl + pad - 1] = '\n';
    memcpy(buf + 10 + hl + pad, data, dlen);
    return 10 + hl + pad + dlen;
}

static void test_npy_dtypes(void) {
    unsigned char buf[1024];
    size_t n;
    advnn_tensor *t;
    double f8[3] = {1.5, -2.25, 1e10};
    int32_t i4[3] = {-7, 0, 123456};
    int64_t i8[3] = {-9000000000LL, 5, 7};
    unsigned char b1[3] = {1, 0, 1}, u1[3] = {255, 0, 17};
    int16_t i2[3] = {-300, 2, 300};
    unsigned char be[8] = {0x3f, 0x80, 0, 0, 0xc0, 0x00, 0, 0};  /* >f4: 1.0, -2.0 */
    float f4[6] = {1, 2, 3, 4, 5, 6};
#define EXPECT3(dict, arr, a, b, c) do { n = make_npy(buf, dict, arr, sizeof arr); t = advnn_npy_load_mem(buf, n); \
        CHECK(t && t->size == 3 && t->data[0] == (float)(a) && t->data[1] == (float)(b) && t->data[2] == (float)(c), \
              "%s: %s", dict, t ? "wrong values" : advnn_last_error()); advnn_tensor_free(t); } while (0)
    EXPECT3("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", f8, 1.5, -2.25, 1e10);
    EXPECT3("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", i4, -7, 0, 123456);
    EXPECT3("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", i8, -9e9, 5, 7);
    EXPECT3("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b1, 1, 0, 1);
    EXPECT3("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", u1, 255, 0, 17);
    EXPECT3("{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }", i2, -300, 2, 300);
    n = make_npy(buf, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", be, 8);
    t = advnn_npy_load_mem(buf, n);
    CHECK(t && t->data[0] == 1.0f && t->data[1] == -2.0f, "big-endian float32");
    advnn_tensor_free(t);
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4);
    t = advnn_npy_load_mem(buf, n);
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->data[5] == 6.0f, "2-d float32");
    advnn_tensor_free(t);
}

static int contains(const void *hay, size_t n, const char *needle) {
    size_t k = strlen(needle), i;
    for (i = 0; i + k <= n; i++) if (memcmp((const char *)hay + i, needle, k) == 0) return 1;
    return 0;
}

static void test_npy_round_trip(void) {
    int64_t shapes[4][3] = {{0, 0, 0}, {7, 0, 0}, {3, 5, 0}, {2, 3, 4}};
    int nd;
    for (nd = 0; nd < 4; nd++) {
        advnn_tensor *t = advnn_tensor_new(nd, shapes[nd]), *u;
        void *buf;
        size_t len;
        int64_t i;
        for (i = 0; i < t->size; i++) t->data[i] = (float)i * 0.37f - 1.0f;
        CHECK(advnn_npy_save_mem(t, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
        CHECK((len - t->size * 4) % 64 == 0, "data of a %d-d array does not start 64-aligned", nd);
        u = advnn_npy_load_mem(buf, len);
        CHECK(u && u->ndim == nd && u->size == t->size && memcmp(u->data, t->data, (size_t)t->size * 4) == 0, "%d-d round trip", nd);
        if (nd == 1) CHECK(contains(buf, len, "(7,)"), "1-d shape not written as numpy does: (7,)");
        if (nd == 2) CHECK(contains(buf, len, "(3, 5)"), "2-d shape not written as numpy does: (3, 5)");
        free(buf);
        advnn_tensor_free(t); advnn_tensor_free(u);
    }
#ifndef ADVNN_NO_STDIO
    {
        int64_t s[2] = {4, 2};
        advnn_tensor *t = advnn_tensor_new(2, s), *u;
        t->data[3] = 42;
        CHECK(advnn_npy_save("build_test_tmp.npy", t) == ADVNN_OK, "%s", advnn_last_error());
        u = advnn_npy_load("build_test_tmp.npy");
        CHECK(u && u->data[3] == 42, "file round trip");
        remove("build_test_tmp.npy");
        advnn_tensor_free(t); advnn_tensor_free(u);
        CHECK(advnn_npy_load("/nonexistent/x.npy") == NULL && strstr(advnn_last_error(), "/nonexistent/x.npy"), "missing file: %s", advnn_last_error());
    }
#endif
}

static void expect_npy_error(const char *dict, size_t dlen, const char *what, const char *msg_part) {
    unsigned char buf[1024], data[256];
    size_t n;
    advnn_tensor *t;
    memset(data, 0, sizeof data);
    n = make_npy(buf, dict, data, dlen);
    t = advnn_npy_load_mem(buf, n);
    CHECK(t == NULL, "%s: accepted", what);
    CHECK(strstr(advnn_last_error(), msg_part) != NULL, "%s: message '%s' lacks '%s'", what, advnn_last_error(), msg_part);
    advnn_tensor_free(t);
}

static void test_npy_malformed(void) {
    unsigned char buf[1024], data[64] = {0};
    size_t n, k;
    expect_npy_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "Fortran order", "Fortran");
    expect_npy_error("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16, "object dtype", "not supported");
    expect_npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured dtype", "structured");
    expect_npy_error("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "complex dtype", "not supported");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", 16, "bad shape", "shape");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, }", 16, "no shape", "shape");
    expect_npy_error("{'fortran_order': False, 'shape': (2,), }", 8, "no descr", "descr");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 12, "truncated data", "truncated");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, "trailing bytes", "trailing");
    expect_npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "9 dims", "dimensions");
    CHECK(advnn_npy_load_mem("garbage!!!!!", 12) == NULL && strstr(advnn_last_error(), "magic"), "bad magic: %s", advnn_last_error());
    /* every truncation of a valid file is rejected */
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", data, 24);
    for (k = 0; k < n; k++) {
        advnn_tensor *t = advnn_npy_load_mem(buf, k);
        CHECK(t == NULL, "truncation to %zu of %zu bytes accepted", k, n);
        advnn_tensor_free(t);
    }
    /* header length pointing past the end */
    buf[8] = 0xff; buf[9] = 0x7f;
    CHECK(advnn_npy_load_mem(buf, n) == NULL && strstr(advnn_last_error(), "header"), "oversized header length: %s", advnn_last_error());
}

/* A model using every layer kind of this release. */
static advnn_graph *small_model(void) {
    advnn_graph *g = advnn_graph_new();
    int four = 4, two = 2, one = 1, x, x2, y, h, a, s, c, z, ins[2];
    x = advnn_input(g, "x", 1, &four);
    x2 = advnn_input(g, "x2", 1, &two);
    y = advnn_input(g, "y", 1, &one);
    h = advnn_batchnorm(g, x);
    h = advnn_dense(g, h, 6, ADVNN_ACT_ELU);
    h = advnn_prelu(g, h);
    h = advnn_dropout(g, h, 0.2f);
    advnn_group(g, "adv");
    a = advnn_dense(g, x2, 4, ADVNN_ACT_TANH);
    s = advnn_shared(g, a, x2, -1);
    ins[0] = h; ins[1] = advnn_activation_ex(g, s, ADVNN_ACT_LEAKY_RELU, 0.2f);
    advnn_group(g, "main");
    c = advnn_concat(g, 2, ins);
    z = advnn_dense(g, c, 1, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_scale(g, advnn_loss_bce_logits(g, z, y, -1), 0.5f);
    if (advnn_graph_finalize(g, 77) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); exit(1); }
    {   /* non-trivial BatchNorm statistics and PReLU slopes */
        int i;
        for (i = 0; i < g->n_params; i++) if (g->params[i] == 0.0f || g->params[i] == 1.0f || g->params[i] == 0.25f) g->params[i] += 0.01f * (float)(i % 7);
    }
    return g;
}

static void predict_small(advnn_graph *g, float *out) {
    float x[3 * 4], x2[3 * 2];
    const float *ins[3];
    advnn_ws *ws = advnn_ws_new(g, 3);
    int i;
    for (i = 0; i < 12; i++) x[i] = (float)sin(i * 1.3);
    for (i = 0; i < 6; i++) x2[i] = (float)cos(i * 0.7);
    ins[0] = x; ins[1] = x2; ins[2] = NULL;
    CHECK(advnn_infer(ws, 3, ins, advnn_find(g, "prob"), out) == ADVNN_OK, "%s", advnn_last_error());
    advnn_ws_free(ws);
}

static void test_model_round_trip(void) {
    advnn_graph *g = small_model(), *h;
    void *buf, *buf2;
    size_t len, len2;
    float p1[3], p2[3];
    CHECK(advnn_model_save_mem(g, &buf, &len) == ADVNN_OK, "%s", advnn_last_error());
    h = advnn_model_load_mem(buf, len);
    CHECK(h != NULL, "load: %s", advnn_last_error());
    if (!h) { free(buf); advnn_graph_free(g); return; }
    predict_small(g, p1);
    predict_small(h, p2);
    CHECK(memcmp(p1, p2, sizeof p1) == 0, "predictions differ after save/load: %g vs %g", p1[0], p2[0]);
    CHECK(advnn_param_count(h, "adv") == advnn_param_count(g, "adv") && advnn_param_count(h, "adv") == 12, "groups lost");
    CHECK(h->nodes[advnn_find(h, "prob") - 1].kind == ADVNN__DENSE && h->nodes[8].share == 7, "shared layer lost");
    CHECK(h->nodes[h->n_nodes - 1].fp[0] == 0.5f, "loss coefficient lost");
    /* saving the loaded model gives the same bytes */
    CHECK(advnn_model_save_mem(h, &buf2, &len2) == ADVNN_OK && len2 == len && memcmp(buf, buf2, len) == 0, "re-saved model differs");
    free(buf2);
#ifndef ADVNN_NO_STDIO
    CHECK(advnn_model_save(g, "build_test_tmp.advnn") == ADVNN_OK, "%s", advnn_last_error());
    advnn_graph_free(h);
    h = advnn_model_load("build_test_tmp.advnn");
    CHECK(h != NULL, "file load: %s", advnn_last_error());
    remove("build_test_tmp.advnn");
    CHECK(advnn_model_load("/nonexistent/m.advnn") == NULL && strstr(advnn_last_error(), "cannot open"), "%s", advnn_last_error());
#endif
    free(buf);
    advnn_graph_free(g); advnn_graph_free(h);
}

static void test_model_corruption(void) {
    advnn_graph *g = small_model(), *h;
    unsigned char *buf;
    void *vb;
    size_t len, k;
    int bit, accepted = 0, checksum_or_format = 0, total = 0;
    advnn_model_save_mem(g, &vb, &len);
    buf = (unsigned char *)vb;
    for (k = 0; k < len; k++) {
        for (bit = 0; bit < 8; bit += 3) {   /* three bits of every byte */
            buf[k] ^= (unsigned char)(1u << bit);
            h = advnn_model_load_mem(buf, len);
            total++;
            if (h) { accepted++; advnn_graph_free(h); }
            else if (strstr(advnn_last_error(), "checksum") || strstr(advnn_last_error(), "magic") || strstr(advnn_last_error(), "version") ||
                     strstr(advnn_last_error(), "payload") || strstr(advnn_last_error(), "flags")) checksum_or_format++;
            buf[k] ^= (unsigned char)(1u << bit);
        }
    }
    CHECK(accepted == 0, "%d of %d bit flips were accepted", accepted, total);
    CHECK(checksum_or_format == total, "%d of %d flips were rejected with another message", total - checksum_or_format, total);
    for (k = 0; k < len; k++) {
        h = advnn_model_load_mem(buf, k);
        CHECK(h == NULL, "truncation to %zu of %zu bytes accepted", k, len);
        advnn_graph_free(h);
    }
    h = advnn_model_load_mem(buf, len);
    CHECK(h != NULL, "the intact model no longer loads: %s", advnn_last_error());
    advnn_graph_free(h);
    free(buf);
    advnn_graph_free(g);
}

/* A file whose checksum is right but whose architecture is inconsistent (as a buggy writer could
 * make): the loader's structural checks must catch it. */
static void test_model_bad_structure(void) {
    advnn_graph *g = small_model(), *h;
    unsigned char *buf;
    void *vb;
    size_t len, off;
    advnn_model_save_mem(g, &vb, &len);
    buf = (unsigned char *)vb;
    /* first node record: after the 24-byte header, u32 group count, groups "main"(4+4) and "adv"(4+3), u32 node count */
    off = 24 + 4 + 8 + 7 + 4;
    CHECK(advnn__get_u32(buf + off) == ADVNN__INPUT, "test's offset arithmetic is off");
    advnn__put_u32(buf + off + 16 + 4, 0);        /* input ndim 1 -> 0 */
    advnn__put_u64(buf + len - 8, XXH3_64bits(buf, len - 8));
    h = advnn_model_load_mem(buf, len);
    CHECK(h == NULL && strstr(advnn_last_error(), "invalid architecture"), "ndim 0 accepted: %s", advnn_last_error());
    advnn__put_u32(buf + off + 16 + 4, 1);
    advnn__put_u32(buf + off + 16 + 8, 5);        /* input width 4 -> 5: the next layer's weights no longer fit */
    advnn__put_u64(buf + len - 8, XXH3_64bits(buf, len - 8));
    h = advnn_model_load_mem(buf, len);
    CHECK(h == NULL, "inconsistent input width accepted");
    advnn_graph_free(h);
    free(buf);
    advnn_graph_free(g);
}

int main(void) {
    RUN(test_npy_dtypes);
    RUN(test_npy_round_trip);
    RUN(test_npy_malformed);
    RUN(test_model_round_trip);
    RUN(test_model_corruption);
    RUN(test_model_bad_structure);
    return th_report();
}
