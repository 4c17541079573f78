/* fuzz_forward.h -- shared by the fuzz targets (include after advnn.h): every node of a graph a loader
 * accepted, run on a small batch of made-up inputs in [0, 1) (valid targets too). Skipped for graphs
 * whose per-sample sizes are so large that the fuzzer's memory limit, not the library, would be
 * tested, and for graphs of more than max_nodes nodes (0: no limit). */
#ifndef ADVNN_FUZZ_FORWARD_H
#define ADVNN_FUZZ_FORWARD_H
#include <stdint.h>
#include <stdlib.h>

enum { FUZZ_MAX_SAMPLE = 1 << 16 };

static int64_t fuzz_sample_size(const advnn_graph *g, int node) {
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

static void fuzz_forward(const advnn_graph *g, int batch, int max_nodes) {
    int nin = advnn_input_count(g), nn = advnn_node_count(g);
    float *in[16] = {0};
    float *out = NULL;
    advnn_ws *ws = NULL;
    int64_t omax = 0;
    if (nin <= 0 || nin > 16 || nn <= 0 || (max_nodes > 0 && nn > max_nodes)) return;
    for (int i = 0; i < nn; i++) {
        int64_t s = fuzz_sample_size(g, i);
        if (s < 0) return;
        if (s > omax) omax = s;
    }
    for (int i = 0; i < nin; i++) {
        int64_t s = fuzz_sample_size(g, advnn_input_node(g, i));
        if (s < 0) goto done;
        in[i] = (float *)malloc((size_t)(s * batch) * sizeof(float));
        if (!in[i]) goto done;
        for (int64_t k = 0; k < s * batch; k++) in[i][k] = (float)((k * 37 + i * 11) % 17) / 17.0f;
    }
    out = (float *)malloc((size_t)(omax * batch) * sizeof(float));
    ws = advnn_ws_new(g, batch);
    if (!out || !ws) goto done;
    for (int node = 0; node < nn; node++) (void)advnn_infer(ws, batch, (const float *const *)in, node, out);
done:
    advnn_ws_free(ws);
    free(out);
    for (int i = 0; i < 16; i++) free(in[i]);
}
#endif
