/* libFuzzer target for the .npy reader: advnn_npy_load_mem must reject every malformed buffer with
 * an error (NULL + advnn_last_error()) and never read out of bounds, leak or hit undefined behaviour.
 * Build: clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -I. fuzz/fuzz_npy.c -lsleef -lm
 * (`make fuzz` does it and seeds it with build/fuzz/corpus_npy from fuzz/make_corpus.c). */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    advnn_tensor *t = advnn_npy_load_mem(data, size);
    if (t) {
        /* a tensor handed back must be self-consistent: touch every element */
        int64_t n = 1;
        volatile float sink = 0.0f;
        for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
        if (n != t->size) __builtin_trap();
        for (int64_t i = 0; i < t->size; i++) sink += t->data[i];
        (void)sink;
    } else {
        const char *msg = advnn_last_error();
        if (!msg || !msg[0]) __builtin_trap();   /* every failure leaves a message */
    }
    advnn_tensor_free(t);
    return 0;
}
