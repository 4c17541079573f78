/* libFuzzer target for the ONNX importer: advnn_onnx_load_mem and advnn_onnx_meta_mem must reject
 * every malformed buffer with a message and never crash or allocate beyond what the bytes justify;
 * a model they accept must run (a forward pass of every node) and save and reload as an advnn model
 * file. Seeds: the PyTorch exports in tests/fixtures/onnx (fuzz/make_corpus.c copies them).
 * Build: clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_onnx.c -lsleef -lm */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_BATCH = 2, FUZZ_MAX_SAMPLE = 1 << 16 };

static int64_t sample_size(const advnn_graph *g, int node) {
    int shape[ADVNN_MAX_DIMS];
    int nd = advnn_node_shape(g, node, shape);
    int64_t n = 1;
    if (nd < 0 || nd > ADVNN_MAX_DIMS) return -1;
    for (int i = 0; i < nd; i++) {
        if (shape[i] <= 0) return -1;
        n *= shape[i];
        if (n > FUZZ_MAX_SAMPLE) return -1;
    }
    return n;
}

/* every node of an accepted model on a small batch (skipped when per-sample sizes are so large that
 * the fuzzer's memory limit, not the library, would be tested) */
static void forward(const advnn_graph *g) {
    int nin = advnn_input_count(g), nn = advnn_node_count(g);
    float *in[16] = {0};
    float *out = NULL;
    advnn_ws *ws = NULL;
    int64_t omax = 0;
    if (nin <= 0 || nin > 16 || nn <= 0 || nn > 4096) return;
    for (int i = 0; i < nn; i++) {
        int64_t s = sample_size(g, i);
        if (s < 0) return;
        if (s > omax) omax = s;
    }
    for (int i = 0; i < nin; i++) {
        int64_t s = sample_size(g, advnn_input_node(g, i));
        if (s < 0) goto done;
        in[i] = (float *)malloc((size_t)(s * FUZZ_BATCH) * sizeof(float));
        if (!in[i]) goto done;
        for (int64_t k = 0; k < s * FUZZ_BATCH; k++) in[i][k] = (float)((k * 37 + i * 11) % 17) / 17.0f;
    }
    out = (float *)malloc((size_t)(omax * FUZZ_BATCH) * sizeof(float));
    ws = advnn_ws_new(g, FUZZ_BATCH);
    if (!out || !ws) goto done;
    for (int node = 0; node < nn; node++) (void)advnn_infer(ws, FUZZ_BATCH, (const float *const *)in, node, out);
done:
    advnn_ws_free(ws);
    free(out);
    for (int i = 0; i < 16; i++) free(in[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    advnn_onnx_meta meta;
    advnn_graph *g;
    if (advnn_onnx_meta_mem(data, size, &meta) != ADVNN_OK && !advnn_last_error()[0]) __builtin_trap();
    g = advnn_onnx_load_mem(data, size);
    if (!g) {
        if (!advnn_last_error()[0]) __builtin_trap();   /* every failure leaves a message */
        return 0;
    }
    forward(g);
    {   /* an imported graph is an ordinary advnn graph: it saves and loads back */
        void *buf = NULL;
        size_t len = 0;
        advnn_graph *g2;
        if (advnn_model_save_mem(g, &buf, &len) != ADVNN_OK) __builtin_trap();
        g2 = advnn_model_load_mem(buf, len);
        if (!g2) __builtin_trap();
        advnn_graph_free(g2);
        free(buf);
    }
    advnn_graph_free(g);
    return 0;
}
