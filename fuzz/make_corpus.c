/* make_corpus DIR -- writes the seed corpora for the fuzz targets:
 *   DIR/corpus_npy/    .npy files: float32 written by advnn_npy_save (1-D, 2-D, 3-D), and hand-made
 *                      NPY v1.0/v2.0 files for other dtypes, byte orders and malformed headers
 *   DIR/corpus_model/  model files written by advnn_model_save (a small dense net, a multi-input one,
 *                      a sequence one, an image one)
 *   DIR/corpus_onnx/   the ONNX import fixtures of tests/fixtures/onnx (run from the repo root)
 *   DIR/npy.dict, DIR/model.dict, DIR/onnx.dict   libFuzzer dictionaries (tokens of the formats)
 * Build: gcc -O1 -std=c11 -I. fuzz/make_corpus.c -lsleef -lm   (`make fuzz` does it). */
#define _POSIX_C_SOURCE 200809L   /* mkdir */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

static char dir_npy[4096], dir_model[4096];
static int n_written, n_errors;

static void fail(const char *what) {
    fprintf(stderr, "make_corpus: %s: %s\n", what, advnn_last_error());
    n_errors++;
}

/* for seeds of layers that may not be implemented yet: a warning, not an error */
static void soft_fail(const char *what) {
    fprintf(stderr, "make_corpus: warning: no %s seed: %s\n", what, advnn_last_error());
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len) {
    char path[8192];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len) { perror(path); n_errors++; if (f) fclose(f); return; }
    fclose(f);
    n_written++;
}

/* An NPY file by hand: magic, version, header length (u16 for v1, u32 for v2), the header dict
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64, then `nbytes`
 * bytes of data. */
static void npy_raw(const char *name, int major, const char *descr, const char *fortran,
                    const char *shape, const void *data, size_t nbytes) {
    char dict[512], *buf;
    size_t pre = major == 1 ? 10 : 12, dlen, hlen, total;
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fortran, shape);
    dlen = strlen(dict);
    hlen = dlen + 1;                          /* + '\n' */
    hlen += (64 - (pre + hlen) % 64) % 64;    /* spaces before the '\n' */
    total = pre + hlen + nbytes;
    buf = (char *)malloc(total);
    if (!buf) { n_errors++; return; }
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (char)major; buf[7] = 0;
    if (major == 1) { buf[8] = (char)(hlen & 0xff); buf[9] = (char)(hlen >> 8); }
    else { buf[8] = (char)(hlen & 0xff); buf[9] = (char)((hlen >> 8) & 0xff); buf[10] = (char)((hlen >> 16) & 0xff); buf[11] = (char)(hlen >> 24); }
    memcpy(buf + pre, dict, dlen);
    memset(buf + pre + dlen, ' ', hlen - dlen - 1);
    buf[pre + hlen - 1] = '\n';
    if (nbytes) memcpy(buf + pre + hlen, data, nbytes);
    write_file(dir_npy, name, buf, total);
    free(buf);
}

static void npy_float32(const char *name, int ndim, const int64_t *shape) {
    char path[8192];
    advnn_tensor *t = advnn_tensor_new(ndim, shape);
    if (!t) { fail(name); return; }
    for (int64_t i = 0; i < t->size; i++) t->data[i] = (float)i * 0.5f - 1.0f;
    snprintf(path, sizeof path, "%s/%s", dir_npy, name);
    if (advnn_npy_save(path, t) != ADVNN_OK) fail(name); else n_written++;
    advnn_tensor_free(t);
}

static void make_npy(void) {
    static const int64_t s1[1] = {5}, s2[2] = {3, 4}, s3[3] = {2, 3, 2};
    double f8[6] = {0.0, 1.0, -2.5, 3.25, 1e30, -1e-30};
    int32_t i4[4] = {0, 1, -1, 2147483647};
    int64_t i8[4] = {0, -1, 1LL << 40, 7};
    uint8_t b1[5] = {0, 1, 1, 0, 1};
    int16_t i2[3] = {-3, 0, 300};
    uint8_t u1[4] = {0, 1, 128, 255};
    uint8_t f4be[12] = {0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0xc0, 0x40, 0, 0};   /* 1, 2, -3 big endian */
    float f4[4] = {1.0f, 2.0f, 3.0f, 4.0f};

    npy_float32("f4_1d.npy", 1, s1);
    npy_float32("f4_2d.npy", 2, s2);
    npy_float32("f4_3d.npy", 3, s3);

    npy_raw("f8_2x3.npy", 1, "<f8", "False", "(2, 3)", f8, sizeof f8);
    npy_raw("i4_4.npy", 1, "<i4", "False", "(4,)", i4, sizeof i4);
    npy_raw("i8_2x2.npy", 1, "<i8", "False", "(2, 2)", i8, sizeof i8);
    npy_raw("b1_5.npy", 1, "|b1", "False", "(5,)", b1, sizeof b1);
    npy_raw("bool_5.npy", 1, "?", "False", "(5,)", b1, sizeof b1);
    npy_raw("i2_3.npy", 1, "<i2", "False", "(3,)", i2, sizeof i2);
    npy_raw("u1_4.npy", 1, "|u1", "False", "(4,)", u1, sizeof u1);
    npy_raw("f4_be_3.npy", 1, ">f4", "False", "(3,)", f4be, sizeof f4be);
    npy_raw("f4_scalar.npy", 1, "<f4", "False", "()", f4, 4);
    npy_raw("f4_empty.npy", 1, "<f4", "False", "(0, 3)", NULL, 0);
    npy_raw("f4_v2.npy", 2, "<f4", "False", "(2, 2)", f4, sizeof f4);
    /* rejected ones: they seed the error paths */
    npy_raw("bad_fortran.npy", 1, "<f4", "True", "(2, 2)", f4, sizeof f4);
    npy_raw("bad_object.npy", 1, "|O", "False", "(2,)", f4, 16);
    npy_raw("bad_truncated.npy", 1, "<f8", "False", "(2, 3)", f8, sizeof f8 - 5);
    npy_raw("bad_shape.npy", 1, "<f4", "False", "(2, -1)", f4, sizeof f4);
    npy_raw("bad_structured.npy", 1, "[('a', '<f4')]", "False", "(4,)", f4, sizeof f4);
}

static void save_model(advnn_graph *g, const char *name) {
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir_model, name);
    if (advnn_model_save(g, path) != ADVNN_OK) { fail(name); return; }
    n_written++;
    advnn_graph *back = advnn_model_load(path);   /* a seed must be a valid model */
    if (!back) fail(name);
    advnn_graph_free(back);
}

static void make_models(void) {
    /* the small dense net: x(4) -> dense 8 relu -> dense 1 */
    advnn_graph *g = advnn_graph_new();
    int x = advnn_input(g, "x", 1, (const int[]){4});
    int h = advnn_dense(g, x, 8, ADVNN_ACT_RELU);
    int o = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    (void)o;
    if (advnn_graph_finalize(g, 42) != ADVNN_OK) fail("dense model");
    else save_model(g, "dense_4_8_1.advnn");
    advnn_graph_free(g);

    /* two inputs, two parameter groups, batchnorm, dropout, concat, shared weights, a loss */
    g = advnn_graph_new();
    x = advnn_input(g, "x", 1, (const int[]){6});
    int x2 = advnn_input(g, "x_cr", 1, (const int[]){6});
    int y = advnn_input(g, "y", 1, (const int[]){1});
    int w = advnn_input(g, "w", 1, (const int[]){1});
    advnn_group(g, "clf");
    int bn = advnn_batchnorm(g, x);
    int d1 = advnn_dense(g, bn, 5, ADVNN_ACT_TANH);
    int d1s = advnn_shared(g, d1, x2, -1);
    int dr = advnn_dropout(g, d1, 0.25f);
    int cat = advnn_concat(g, 2, (const int[]){dr, d1s});
    int z = advnn_dense(g, cat, 1, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
    advnn_group(g, "adv");
    int a = advnn_dense(g, z, 3, ADVNN_ACT_RELU);
    int a2 = advnn_dense(g, a, 1, ADVNN_ACT_LINEAR);
    advnn_loss_bce_logits(g, z, y, w);
    advnn_loss_mse(g, a2, y, -1);
    if (advnn_graph_finalize(g, 7) != ADVNN_OK) fail("multi-input model");
    else save_model(g, "multi_input.advnn");
    advnn_graph_free(g);

    /* sequences: masked LSTM over (T, F) constituents, conv1d + pooling, prelu */
    g = advnn_graph_new();
    x = advnn_input(g, "tracks", 2, (const int[]){6, 3});
    int m = advnn_mask_nonzero(g, x);
    int l = advnn_lstm(g, x, 4, 0, m);
    int c = advnn_conv1d(g, x, 2, 3, 1, ADVNN_PAD_SAME, ADVNN_ACT_ELU);
    int p = advnn_maxpool1d(g, c, 2, 0);
    int f = advnn_flatten(g, p);
    int pr = advnn_prelu(g, advnn_dense(g, advnn_concat(g, 2, (const int[]){l, f}), 3, ADVNN_ACT_LINEAR));
    advnn_dense(g, pr, 1, ADVNN_ACT_LINEAR);
    if (advnn_graph_finalize(g, 11) != ADVNN_OK) soft_fail("sequence model");
    else save_model(g, "sequence.advnn");
    advnn_graph_free(g);

    /* images: conv2d, pooling, upsampling, reshape */
    g = advnn_graph_new();
    x = advnn_input(g, "img", 3, (const int[]){6, 6, 1});
    c = advnn_conv2d(g, x, 2, 3, 3, 1, 1, ADVNN_PAD_SAME, ADVNN_ACT_RELU);
    p = advnn_avgpool2d(g, advnn_maxpool2d(g, c, 2, 2, 0, 0), 1, 1, 0, 0);
    int u = advnn_upsample2d(g, p, 2, 2);
    int r = advnn_reshape(g, u, 2, (const int[]){6, 12});
    advnn_dense(g, advnn_flatten(g, r), 1, ADVNN_ACT_SIGMOID);
    if (advnn_graph_finalize(g, 13) != ADVNN_OK) soft_fail("image model");
    else save_model(g, "image.advnn");
    advnn_graph_free(g);
}

/* libFuzzer dictionary: one quoted token a line */
static void write_dict(const char *dir, const char *name, const char *const *tokens, int n) {
    char path[8192];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    if (!f) { perror(path); n_errors++; return; }
    for (int i = 0; i < n; i++) fprintf(f, "\"%s\"\n", tokens[i]);
    fclose(f);
}

static void make_dicts(const char *dir) {
    static const char *const npy[] = {
        "\\x93NUMPY", "\\x01\\x00", "\\x02\\x00", "\\x03\\x00", "{'descr': ", "'fortran_order': ", "'shape': ",
        "False", "True", "<f4", ">f4", "<f8", ">f8", "<f2", "<i1", "|i1", "<i2", "<i4", "<i8", ">i8", "|u1",
        "<u2", "<u4", "<u8", "|b1", "?", "|O", "<U8", "|V4", "<c8", "()", "(0,)", "(1,)", ", ", ",)", "}",
        "\\x0a", "                "};
    static const char *const model[] = {
        "ADVNNMDL", "\\x01\\x00\\x00\\x00", "\\x00\\x00\\x00\\x00", "\\xff\\xff\\xff\\xff",
        "\\xff\\xff\\xff\\x7f", "\\x00\\x00\\x80\\x7f", "\\x00\\x00\\xc0\\x7f", "main", "clf", "adv", "x", "prob"};
    write_dict(dir, "npy.dict", npy, (int)(sizeof npy / sizeof npy[0]));
    write_dict(dir, "model.dict", model, (int)(sizeof model / sizeof model[0]));
}

/* ---- ONNX: the committed PyTorch exports, and the operator names the importer knows */
static void make_onnx(const char *dir) {
    static const char *const fixtures[] = {"dense", "conv", "lstm", "w1", "w2", "w3", "unsupported_op"};
    static const char *const tokens[] = {
        "Gemm", "MatMul", "Add", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization", "Relu",
        "PRelu", "Softmax", "Reshape", "Flatten", "Transpose", "Concat", "Squeeze", "Unsqueeze", "Resize", "LSTM",
        "Gather", "Shape", "ConstantOfShape", "Constant", "Identity", "Dropout", "Pad", "perm", "axis", "axes",
        "pads", "strides", "kernel_shape", "hidden_size", "value", "nearest", "asymmetric", "floor", "layout",
        "\\x08\\x0d", "\\x42\\x02\\x10\\x0d", "\\x10\\x01", "\\x10\\x07", "\\xff\\xff\\xff\\xff\\x0f"};
    char odir[4096];
    snprintf(odir, sizeof odir, "%s/corpus_onnx", dir);
    mkdir(odir, 0755);
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char path[4200];
        FILE *f;
        long n;
        unsigned char *b;
        snprintf(path, sizeof path, "tests/fixtures/onnx/%s.onnx", fixtures[i]);
        if (!(f = fopen(path, "rb"))) { perror(path); n_errors++; continue; }
        fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
        b = (unsigned char *)malloc((size_t)n + 1);
        if (b && fread(b, 1, (size_t)n, f) == (size_t)n) {
            snprintf(path, sizeof path, "%s.onnx", fixtures[i]);
            write_file(odir, path, b, (size_t)n);
        } else n_errors++;
        free(b);
        fclose(f);
    }
    write_dict(dir, "onnx.dict", tokens, (int)(sizeof tokens / sizeof tokens[0]));
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "build/fuzz";
    mkdir(dir, 0755);
    snprintf(dir_npy, sizeof dir_npy, "%s/corpus_npy", dir);
    snprintf(dir_model, sizeof dir_model, "%s/corpus_model", dir);
    mkdir(dir_npy, 0755);
    mkdir(dir_model, 0755);
    make_npy();
    make_models();
    make_dicts(dir);
    make_onnx(dir);
    printf("make_corpus: %d seed files in %s/corpus_npy and %s/corpus_model%s\n", n_written, dir, dir,
           n_errors ? " (with errors)" : "");
    return n_errors ? 1 : 0;
}
