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

#include "fuzz_forward.h"

static void load_one(const uint8_t *buf, size_t size) {
    advnn_graph *g = advnn_model_load_mem(buf, size);
    if (g) fuzz_forward(g, 3, 0);
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
