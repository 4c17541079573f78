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

#include "fuzz_forward.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    advnn_onnx_meta meta;
    advnn_graph *g;
    if (advnn_onnx_meta_mem(data, size, &meta) != ADVNN_OK && !advnn_last_error()[0]) __builtin_trap();
    g = advnn_onnx_load_mem(data, size);
    if (!g) {
        if (!advnn_last_error()[0]) __builtin_trap();   /* every failure leaves a message */
        return 0;
    }
    fuzz_forward(g, 2, 4096);
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
