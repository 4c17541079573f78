/* bench_onnx -- W1, W2, W3 inference in advnn and in ONNX Runtime on the same exported networks, in
 * the same run, one thread each; and the export and import times of W3 (892k parameters).
 *
 * The inference graphs are those of bench_workloads (W1 sigmoid score, W2 softmax scores, W3 per-image
 * MSE), random weights and inputs (features never 0, so W2's masks keep every step). advnn: advnn_infer
 * on one thread, every call timed, median (3000 / 600 calls at batch 1 for W1, W2 / W3; 40 / 15 at
 * batch 512): a median of single calls stays honest on a busy machine where long timed loops
 * include other processes' time slices. ONNX Runtime: the file advnn_onnx_save wrote, run by tests/onnx_run.js
 * --bench (onnxruntime-node, intraOpNumThreads 1, sequential, all graph optimisations): median of
 * session.run, which includes node's per-call overhead (tensor wrapping, a promise). At batch 512
 * the best call of each side is printed too: long calls on a loaded machine all include waiting. Without node or
 * onnxruntime-node (tools/deps.sh test installs them) the ORT columns say so and the rest still runs.
 * Export: median of 7 advnn_onnx_save_mem calls (serialising to memory; the file write is not timed).
 * The machine's load average is printed before and after: timings on a shared machine are noisy.
 *
 * Usage: bench_onnx [--dir DIR (default build/bench/onnx)] [--quick] */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, popen under -std=c11 */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "examples/workloads.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmpd); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }
static void die(const char *what) { fprintf(stderr, "bench_onnx: %s: %s\n", what, advnn_last_error()); exit(1); }
static void loadavg(const char *when) {
    FILE *f = fopen("/proc/loadavg", "r");
    char b[128] = "?";
    if (f) { if (!fgets(b, sizeof b, f)) strcpy(b, "?\n"); fclose(f); }
    printf("load average (1, 5, 15 min) %s: %s", when, b);
}

static uint64_t rs = 99;
static float rnd(void) {   /* uniform in [-1, 1], never 0 */
    uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);
    float v;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL; z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL; z ^= z >> 31;
    v = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    return v == 0.0f ? 0.5f : v;
}

static advnn_graph *build(const char *w, const char **out) {
    advnn_graph *g = advnn_graph_new();
    if (!strcmp(w, "w1")) {
        int ten = 10;
        advnn_name(g, advnn_activation(g, wl_w1_classifier(g, advnn_input(g, "x", 1, &ten)), ADVNN_ACT_SIGMOID), "prob");
        *out = "prob";
    } else if (!strcmp(w, "w2")) {
        int in[4];
        wl_w2_inputs(g, "", in);
        advnn_name(g, advnn_softmax(g, wl_w2_tagger(g, in, NULL, NULL)), "scores");
        *out = "scores";
    } else {
        int sh[3] = {40, 40, 1}, x = advnn_input(g, "img", 3, sh);
        /* the reconstruction is named too: the import time is measured on a file of it (the importer
         * does not read the Sub of the per-image MSE back) */
        advnn_name(g, advnn_sample_mse(g, advnn_name(g, wl_w3_autoencoder(g, x), "recon"), x, 0), "mse");
        *out = "mse";
    }
    if (advnn_graph_finalize(g, 5) != ADVNN_OK) die("finalize");
    return g;
}

/* Median µs of one `node tests/onnx_run.js --bench` run (best in *best), or -1 (message in *why). */
static double ort_bench(const char *dir, const char *w, int nb, int reps, const advnn_graph *g, char *why, double *best) {
    char cmd[2048], line[256];
    FILE *p;
    double us = -1;
    int i;
    snprintf(cmd, sizeof cmd, "node tests/onnx_run.js --bench %d %s/%s.onnx", reps, dir, w);
    for (i = 0; i < advnn_input_count(g); i++) {
        const char *n = advnn_node_name(g, advnn_input_node(g, i));
        snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s=%s/%s_%s_b%d.npy", n, dir, w, n, nb);
    }
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " 2>&1");
    if (!(p = popen(cmd, "r"))) { strcpy(why, "cannot run node"); return -1; }
    strcpy(why, "no result");
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "ort_median_us %lf ort_min_us %lf", &us, best) == 2) continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(why, 256, "%.200s", line);
    }
    i = pclose(p);
    if (i != 0) { us = -1; if ((i >> 8) == 127) strcpy(why, "node is missing (tools/deps.sh test)"); }
    return us;
}

int main(int argc, char **argv) {
    const char *dir = "build/bench/onnx", *ws_[3] = {"w1", "w2", "w3"};
    int quick = 0, i, k;
    double t_export = 0, t_import = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else { fprintf(stderr, "usage: %s [--dir DIR] [--quick]\n", argv[0]); return 2; }
    }
    { char c[600]; snprintf(c, sizeof c, "mkdir -p '%s'", dir); if (system(c) != 0) { fprintf(stderr, "bench_onnx: cannot create %s\n", dir); return 1; } }
    printf("advnn %d.%d.%d (%s) vs ONNX Runtime (onnxruntime-node, tests/onnx_run.js), one thread each, inference in eval mode\n",
           ADVNN_VERSION_MAJOR, ADVNN_VERSION_MINOR, ADVNN_VERSION_PATCH, advnn_simd_name());
    loadavg("before");
    printf("%-4s %12s %12s %8s   %14s %14s %8s\n", "", "b1 advnn us", "b1 ORT us", "ORT/adv", "b512 advnn us", "b512 ORT us", "ORT/adv");
    for (k = 0; k < 3; k++) {
        const char *out;
        advnn_graph *g = build(ws_[k], &out);
        advnn_ws *ws1 = advnn_ws_new(g, 1), *ws512 = advnn_ws_new(g, 512);
        int ni = advnn_input_count(g), node = advnn_find(g, out), c, j, n512 = quick ? 5 : (k == 2 ? 15 : 40);
        float *in[4], *y = NULL;
        const float *row[4];
        static double tc[4000];
        double t512[64], b1, b512, o1, o512, t, best512, obest1, obest512;
        char path[600], why1[256], why512[256];
        if (!ws1 || !ws512) die("workspace");
        for (i = 0; i < ni; i++) {   /* 512 rows per input, saved as the batch-1 (row 0) and batch-512 files */
            int sh[3], nd = advnn_node_shape(g, advnn_input_node(g, i), sh), s = 1, d;
            int64_t dims[4];
            advnn_tensor *tt;
            for (d = 0; d < nd; d++) s *= sh[d];
            in[i] = (float *)malloc((size_t)512 * s * sizeof(float));
            for (j = 0; j < 512 * s; j++) in[i][j] = rnd();
            for (c = 0; c < 2; c++) {
                dims[0] = c ? 512 : 1;
                for (d = 0; d < nd; d++) dims[d + 1] = sh[d];
                tt = advnn_tensor_new(nd + 1, dims);
                memcpy(tt->data, in[i], (size_t)tt->size * sizeof(float));
                snprintf(path, sizeof path, "%s/%s_%s_b%d.npy", dir, ws_[k], advnn_node_name(g, advnn_input_node(g, i)), c ? 512 : 1);
                if (advnn_npy_save(path, tt) != ADVNN_OK) die(path);
                advnn_tensor_free(tt);
            }
        }
        y = (float *)malloc((size_t)512 * 1600 * sizeof(float));
        if (k == 2) {   /* export time of W3, in memory */
            double te[7];
            for (j = 0; j < 7; j++) {
                void *b;
                size_t len;
                t = now();
                if (advnn_onnx_save_mem(g, 1, &out, NULL, &b, &len) != ADVNN_OK) die("export");
                te[j] = now() - t;
                free(b);
            }
            t_export = median(te, 7);
            {   /* import time: the autoencoder's reconstruction exported, then read back 7 times */
                const char *rec = "recon";
                void *b;
                size_t len;
                if (advnn_onnx_save_mem(g, 1, &rec, NULL, &b, &len) != ADVNN_OK) die("export recon");
                for (j = 0; j < 7; j++) {
                    advnn_graph *h;
                    t = now();
                    if (!(h = advnn_onnx_load_mem(b, len))) die("import");
                    te[j] = now() - t;
                    advnn_graph_free(h);
                }
                t_import = median(te, 7);
                free(b);
            }
        }
        snprintf(path, sizeof path, "%s/%s.onnx", dir, ws_[k]);
        if (advnn_onnx_save(g, path, 1, &out, NULL) != ADVNN_OK) die(path);
        /* advnn batch 1: every call timed (as onnx_run.js times ORT's), median; cycling over 64 rows */
        {
            int sz[4], nc = quick ? 200 : (k == 2 ? 600 : 3000);
            for (i = 0; i < ni; i++) {
                int sh[3], nd = advnn_node_shape(g, advnn_input_node(g, i), sh), d;
                for (sz[i] = 1, d = 0; d < nd; d++) sz[i] *= sh[d];
            }
            for (c = -20; c < nc; c++) {   /* 20 warm-up calls */
                for (i = 0; i < ni; i++) row[i] = in[i] + (size_t)((c + 20) % 64) * sz[i];
                t = now();
                if (advnn_infer(ws1, 1, row, node, y) != ADVNN_OK) die("infer b1");
                if (c >= 0) tc[c] = now() - t;
            }
            b1 = 1e6 * median(tc, nc);
        }
        for (i = 0; i < ni; i++) row[i] = in[i];
        for (j = 0; j < 3; j++) if (advnn_infer(ws512, 512, row, node, y) != ADVNN_OK) die("infer b512");
        for (j = 0; j < n512; j++) { t = now(); advnn_infer(ws512, 512, row, node, y); t512[j] = now() - t; }
        b512 = 1e6 * median(t512, n512);
        best512 = 1e6 * t512[0];   /* sorted by median() */
        o1 = ort_bench(dir, ws_[k], 1, quick ? 200 : (k == 2 ? 600 : 3000), g, why1, &obest1);
        o512 = ort_bench(dir, ws_[k], 512, n512, g, why512, &obest512);
        printf("%-4s %12.2f ", ws_[k], b1);
        if (o1 > 0) printf("%12.2f %8.2f   ", o1, o1 / b1); else printf("%12s %8s   ", "n/a", "");
        printf("%14.1f ", b512);
        if (o512 > 0) printf("%14.1f %8.2f\n", o512, o512 / b512); else printf("%14s\n", "n/a");
        if (o1 <= 0) printf("     ORT batch 1: %s\n", why1);
        if (o512 <= 0) printf("     ORT batch 512: %s\n", why512);
        if (o512 > 0) printf("     batch 512 best call: advnn %.1f us, ORT %.1f us (%.2f)\n", best512, obest512, obest512 / best512);
        printf("{\"workload\": \"%s\", \"advnn_b1_us\": %.3f, \"ort_b1_us\": %.3f, \"advnn_b512_us\": %.2f, \"ort_b512_us\": %.2f, "
               "\"advnn_b512_best_us\": %.2f, \"ort_b512_best_us\": %.2f}\n", ws_[k], b1, o1, b512, o512, best512, o512 > 0 ? obest512 : -1.0);
        for (i = 0; i < ni; i++) free(in[i]);
        free(y);
        advnn_ws_free(ws1); advnn_ws_free(ws512);
        if (k == 2) printf("W3 export (advnn_onnx_save_mem, %lld parameters): %.1f ms, import of its autoencoder (advnn_onnx_load_mem): %.1f ms "
                           "(medians of 7)\n", (long long)advnn_param_count(g, NULL), 1e3 * t_export, 1e3 * t_import);
        advnn_graph_free(g);
    }
    loadavg("after");
    return 0;
}
