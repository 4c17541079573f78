/* Batch-1 inference, the per-jet call of reconstruction software (issue 18 part 4): advnn_infer on a
 * workspace of max_batch 1, reused, one thread. Three networks of WORKLOADS.md, eval mode:
 *   w1      W1's classifier, x (10) -> [BatchNorm -> Dense 64 ReLU] x 3 -> Dense 1 -> sigmoid
 *   w2b     W2's cluster branch without mask and dropout (the shape RTNeural runs as a model of
 *           per-step layers): (30, 12) -> Conv1D k=1 64-32-32-16 ReLU -> LSTM 10, last state
 *   w3      W3's autoencoder, 40x40x1 image -> per-image MSE of the reconstruction
 * Weights from the seeded initialisation; BatchNorm statistics set to non-trivial values (means in
 * [-0.5, 0.5), variances in [0.5, 2), gamma and beta random) so that nothing folds to identity.
 * Inputs: 256 rows of uniform [-1, 1) values (never 0), cycled, so a call does not reread one row.
 *
 * Per network: median over chunks of calls (~20 ms each, at least 25 chunks and --seconds) of the
 * time per call; GFLOP/s counts 2 x the multiply-adds of the dense, convolution and LSTM weights
 * (advnn_flops: nothing for BatchNorm, activations, pooling); fraction of one core's fp32 FMA peak
 * (bench/bench_common.h), or --peak G.
 * Usage: bench_infer1 [--net w1,w2b,w3] [--seconds S] [--peak G]   (one human and one JSON line per net) */
#define _POSIX_C_SOURCE 200809L
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "examples/workloads.h"
#include <time.h>
#include <sys/resource.h>
#include "bench/bench_common.h"

static void die(const char *what) { fprintf(stderr, "bench_infer1: %s: %s\n", what, advnn_last_error()); exit(1); }

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (double)(rs >> 11) / 9007199254740992.0; }

/* BatchNorm statistics and affine parameters away from identity */
static void randomize_bn(advnn_graph *g) {
    int i, j;
    for (i = 0; i < advnn_node_count(g); i++)
        if (!strcmp(advnn_node_kind(g, i), "batchnorm")) {
            int sh[3], nd = advnn_node_shape(g, i, sh), C = sh[nd - 1];
            float *v = (float *)malloc((size_t)C * sizeof(float));
            static const char *names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
            int b;
            for (b = 0; b < 4; b++) {
                for (j = 0; j < C; j++)
                    v[j] = (float)(b == 0 ? 0.5 + urand() : b == 3 ? 0.5 + 1.5 * urand() : urand() - 0.5);
                if (advnn_weight_set(g, i, names[b], v, C) != ADVNN_OK) die("weight_set");
            }
            free(v);
        }
}

/* The networks; *out is the output node, *in_size the input values per call. */
static advnn_graph *build(const char *net, int *out, int *in_size) {
    advnn_graph *g = advnn_graph_new();
    if (!strcmp(net, "w1")) {
        int ten = 10, x = advnn_input(g, "x", 1, &ten);
        *out = advnn_activation(g, wl_w1_classifier(g, x), ADVNN_ACT_SIGMOID);
        *in_size = 10;
    } else if (!strcmp(net, "w2b")) {
        static const int f[4] = {64, 32, 32, 16};
        int sh[2] = {30, 12}, h = advnn_input(g, "clusters", 2, sh), i;
        for (i = 0; i < 4; i++) h = advnn_conv1d(g, h, f[i], 1, 1, ADVNN_PAD_VALID, ADVNN_ACT_RELU);
        *out = advnn_lstm(g, h, 10, 0, -1);
        *in_size = 360;
    } else {
        int img[3] = {40, 40, 1}, x = advnn_input(g, "img", 3, img);
        *out = advnn_sample_mse(g, wl_w3_autoencoder(g, x), x, 0);
        *in_size = 1600;
    }
    if (advnn_graph_finalize(g, 11) != ADVNN_OK) die(net);
    randomize_bn(g);
    return g;
}

#define ROWS 256
static void run(const char *net, double min_s, double peak) {
    int out, in_size, k, nch = 0, chunk, calls = 0, osz = 1, sh[3], nd, j;
    advnn_graph *g = build(net, &out, &in_size);
    advnn_ws *ws = advnn_ws_new(g, 1);
    float *x = (float *)malloc((size_t)ROWS * in_size * sizeof(float)), *y;
    double t[2000], t0, w0, per, fl = advnn_flops(g, out, NULL), med;
    struct rusage r0, r1;
    if (!ws || !x) die("workspace");
    nd = advnn_node_shape(g, out, sh);
    for (j = 0; j < nd; j++) osz *= sh[j];
    y = (float *)malloc((size_t)osz * sizeof(float));
    for (k = 0; k < ROWS * in_size; k++) { double u = urand(); x[k] = (float)(2 * u - 1 + (u < 0.5 ? -1e-3 : 1e-3)); }
#define CALL(c) do { const float *in_ = x + (size_t)((c) % ROWS) * in_size; \
        if (advnn_infer(ws, 1, &in_, out, y) != ADVNN_OK) die("advnn_infer"); } while (0)
    for (k = 0; k < 100; k++) CALL(k);
    t0 = now();
    for (k = 0; k < 100; k++) CALL(k);
    per = (now() - t0) / 100;
    chunk = (int)(0.02 / (per > 1e-8 ? per : 1e-8));
    if (chunk < 5) chunk = 5;
    getrusage(RUSAGE_SELF, &r0);
    w0 = now();
    while (nch < 2000 && (nch < 25 || now() - w0 < min_s)) {
        t0 = now();
        for (k = 0; k < chunk; k++, calls++) CALL(calls);
        t[nch++] = (now() - t0) / chunk;
    }
    getrusage(RUSAGE_SELF, &r1);
#undef CALL
    qsort(t, (size_t)nch, sizeof *t, cmp_d);
    med = t[nch / 2];
    {
        double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + 1e-6 * (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec);
        double gf = fl / med * 1e-9;
        printf("%-4s batch 1: %9.3f us per call (p10 %.3f, p90 %.3f)  %.1f kFLOP  %6.1f GFLOP/s  %5.1f%% of peak  cpu/wall %.2f\n",
               net, med * 1e6, t[nch / 10] * 1e6, t[nch * 9 / 10] * 1e6, fl * 1e-3, gf, peak > 0 ? 100 * gf / peak : 0.0,
               cpu / (now() - w0));
        printf("{\"net\": \"%s\", \"batch\": 1, \"us_per_call\": %.4f, \"us_p10\": %.4f, \"us_p90\": %.4f, \"flop\": %.0f, "
               "\"gflops\": %.2f, \"peak_gflops\": %.1f, \"peak_frac\": %.3f, \"chunks\": %d, \"calls_per_chunk\": %d, \"kernels\": \"%s\"}\n",
               net, med * 1e6, t[nch / 10] * 1e6, t[nch * 9 / 10] * 1e6, fl, gf, peak, peak > 0 ? gf / peak : 0.0, nch, chunk,
               advnn_simd_name());
        fflush(stdout);
    }
    free(x); free(y);
    advnn_ws_free(ws);
    advnn_graph_free(g);
}

int main(int argc, char **argv) {
    const char *list = "w1,w2b,w3";
    double min_s = 2.0, peak = 0;
    int i;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--net") && i + 1 < argc) list = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) min_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "--peak") && i + 1 < argc) peak = atof(argv[++i]);
        else { fprintf(stderr, "usage: %s [--net w1,w2b,w3] [--seconds S] [--peak GFLOPS]\n", argv[0]); return 2; }
    }
    if (peak <= 0) peak = measure_peak();
    printf("advnn %s, 1 thread, fp32 FMA peak %.1f GFLOP/s\n", advnn_simd_name(), peak);
    {
        const char *s = list;
        while (*s) {
            size_t n = strcspn(s, ",");
            char name[8];
            if (n == 0 || n >= sizeof name) { fprintf(stderr, "bench_infer1: bad --net list\n"); return 2; }
            memcpy(name, s, n); name[n] = 0;
            if (strcmp(name, "w1") && strcmp(name, "w2b") && strcmp(name, "w3")) { fprintf(stderr, "bench_infer1: unknown net '%s'\n", name); return 2; }
            run(name, min_s, peak);
            s += n + (s[n] == ',');
        }
    }
    return 0;
}
