/* advnn_inspect FILE... -- describes model files: advnn model files and ONNX models, told apart by
 * their content. Prints the format, checksum, inputs and outputs with their per-sample shapes, the
 * layers with their parameter counts, and whether advnn can run the model; for ONNX also the opset,
 * producer and the first operator advnn refuses (its error message), if any.
 * Exit status: 0 when every file was described (even one advnn cannot run), 1 when one could not be
 * read or is of neither format. Built by `make` as build/tools/advnn_inspect.
 * (tests/test_onnx_import.c includes this file with ADVNN_INSPECT_NO_MAIN to test it.) */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void inspect_shape(FILE *out, const advnn_graph *g, int node) {
    int shape[3], nd = advnn_node_shape(g, node, shape), k;
    fprintf(out, "(");
    for (k = 0; k < nd; k++) fprintf(out, "%s%d", k ? ", " : "", shape[k]);
    fprintf(out, nd == 1 ? ",)" : ")");
}

/* The graph as advnn sees it: inputs, named outputs, layers with weights. */
static void inspect_graph(FILE *out, const advnn_graph *g) {
    int i, n = advnn_node_count(g), k;
    fprintf(out, "inputs (per sample, channels-last):\n");
    for (i = 0; i < advnn_input_count(g); i++) {
        int id = advnn_input_node(g, i);
        fprintf(out, "  %-24s ", advnn_node_name(g, id));
        inspect_shape(out, g, id);
        fprintf(out, "\n");
    }
    fprintf(out, "named nodes (outputs):\n");
    for (i = 0; i < n; i++) {
        if (!advnn_node_name(g, i)[0] || !strcmp(advnn_node_kind(g, i), "input")) continue;
        fprintf(out, "  %-24s %-12s ", advnn_node_name(g, i), advnn_node_kind(g, i));
        inspect_shape(out, g, i);
        fprintf(out, "\n");
    }
    fprintf(out, "layers:\n");
    for (i = 0; i < n; i++) {
        int64_t p = 0, shape[4];
        int nb = advnn_weight_count(g, i), nd;
        const char *bn;
        fprintf(out, "  %4d %-12s ", i, advnn_node_kind(g, i));
        inspect_shape(out, g, i);
        for (k = 0; k < nb; k++) {
            int64_t s = 1;
            int d;
            if (advnn_weight_info(g, i, k, &bn, &nd, shape) != ADVNN_OK) continue;
            for (d = 0; d < nd; d++) s *= shape[d];
            p += s;
        }
        if (nb > 0) fprintf(out, "  %lld parameters in %d blocks", (long long)p, nb);
        fprintf(out, "\n");
    }
    fprintf(out, "trainable parameters: %lld\n", (long long)advnn_param_count(g, NULL));
}

/* Describes one file; returns 0 when described, 1 when unreadable or of neither format. */
static int advnn_inspect_file(const char *path, FILE *out) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;
    advnn_onnx_meta meta;
    advnn_graph *g;
    int rc = 0;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
        !(buf = (unsigned char *)malloc((size_t)len + 1)) || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(out, "%s: cannot read\n", path);
        if (f) fclose(f);
        free(buf);
        return 1;
    }
    fclose(f);
    fprintf(out, "%s: %ld bytes\n", path, len);
    if (len >= 32 && memcmp(buf, "ADVNNMDL", 8) == 0) {
        uint64_t stored = 0;
        int k;
        for (k = 0; k < 8; k++) stored |= (uint64_t)buf[len - 8 + k] << (8 * k);
        fprintf(out, "format: advnn model file, version %u\n", (unsigned)(buf[8] | buf[9] << 8 | buf[10] << 16 | (unsigned)buf[11] << 24));
        fprintf(out, "checksum: XXH3-64 %016llx (stored), %s\n", (unsigned long long)stored,
                stored == (uint64_t)XXH3_64bits(buf, (size_t)len - 8) ? "matches" : "DOES NOT MATCH");
        g = advnn_model_load_mem(buf, (size_t)len);
    } else if (advnn_onnx_meta_mem(buf, (size_t)len, &meta) == ADVNN_OK) {
        fprintf(out, "format: ONNX, ir_version %lld\nopset: %lld\nproducer: %s\n", (long long)meta.ir_version, (long long)meta.opset, meta.producer);
        fprintf(out, "graph: %d nodes, %d initializers (%lld weights), %d inputs, %d outputs\n", meta.n_nodes, meta.n_initializers,
                (long long)meta.n_weights, meta.n_inputs, meta.n_outputs);
        fprintf(out, "checksum: XXH3-64 %016llx (of the file)\n", (unsigned long long)XXH3_64bits(buf, (size_t)len));
        g = advnn_onnx_load_mem(buf, (size_t)len);
    } else {
        fprintf(out, "format: neither an advnn model file nor ONNX (%s)\n", advnn_last_error());
        free(buf);
        return 1;
    }
    if (g) {
        inspect_graph(out, g);
        fprintf(out, "runs in advnn: yes\n");
    } else fprintf(out, "runs in advnn: no: %s\n", advnn_last_error());
    advnn_graph_free(g);
    free(buf);
    return rc;
}

#ifndef ADVNN_INSPECT_NO_MAIN
int main(int argc, char **argv) {
    int i, rc = 0;
    if (argc < 2) { fprintf(stderr, "usage: %s MODEL_FILE...  (advnn model files or ONNX)\n", argv[0]); return 2; }
    for (i = 1; i < argc; i++) { if (i > 1) printf("\n"); rc |= advnn_inspect_file(argv[i], stdout); }
    return rc;
}
#endif
