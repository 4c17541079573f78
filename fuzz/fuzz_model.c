/* libFuzzer target for the model loader: advnn_model_load_mem must reject every malformed buffer
 * with an error and never crash; a model it accepts must be usable (a forward pass runs).
 *
 * Model files end with an XXH3-64 checksum over everything before it, so random mutations almost
 * never get past the checksum. Each input is therefore loaded twice: as it is (exercises the size,
 * magic and checksum checks), and with its last 8 bytes replaced by the correct checksum of the
 * rest (exercises the parser behind the checksum).
 * Build: clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_model.c -lsleef -lm */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { FUZZ_BATCH = 3, FUZZ_MAX_SAMPLE = 1 << 16 };

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

/* Run every node of an accepted model on a small batch of made-up inputs (skipped for models whose
 * per-sample sizes are so large that the fuzzer's memory limit, not the library, would be tested). */
static void forward(const advnn_graph *g) {
    int nin = advnn_input_count(g), nn = advnn_node_count(g);
    float *in[16] = {0};
    float *out = NULL;
    advnn_ws *ws = NULL;
    int64_t omax = 0;
    if (nin <= 0 || nin > 16 || nn <= 0) return;
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
        for (int64_t k = 0; k < s * FUZZ_BATCH; k++) in[i][k] = (float)((k * 37 + i * 11) % 17) / 17.0f;   /* in [0, 1): valid targets too */
    }
    out = (float *)malloc((size_t)(omax * FUZZ_BATCH) * sizeof(float));
    ws = advnn_ws_new(g, FUZZ_BATCH);
    if (!out || !ws) goto done;
    for (int node = 0; node < nn; node++)
        (void)advnn_infer(ws, FUZZ_BATCH, (const float *const *)in, node, out);
done:
    advnn_ws_free(ws);
    free(out);
    for (int i = 0; i < 16; i++) free(in[i]);
}

static void load_one(const uint8_t *buf, size_t size) {
    advnn_graph *g = advnn_model_load_mem(buf, size);
    if (g) forward(g);
    else {
        const char *msg = advnn_last_error();
        if (!msg || !msg[0]) __builtin_trap();   /* every failure leaves a message */
    }
    advnn_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_one(data, size);
    if (size >= 8) {
        uint8_t *copy = (uint8_t *)malloc(size);
        if (!copy) return 0;
        memcpy(copy, data, size);
        uint64_t h = XXH3_64bits(copy, size - 8);
        for (int i = 0; i < 8; i++) copy[size - 8 + i] = (uint8_t)(h >> (8 * i));
        load_one(copy, size);
        free(copy);
    }
    return 0;
}
