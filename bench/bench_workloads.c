/* Whole-network timings of the reference workloads (WORKLOADS.md), one thread, random data:
 *   training step (forward + backward + Adam) in ms, median over the timed steps;
 *   inference in us per sample at batch 1 (one jet at a time, advnn_infer) and batch 512.
 * Prints one JSON object per workload with the fields of ../shared/peers/torch_workloads.py.
 * This measures the main networks (W1 classifier, W2 tagger, W3 autoencoder) with their losses;
 * the adversaries join when the adversarial trainer exists.
 * Usage: bench_workloads [--quick] [--workload w1,w2,w3] */
#define _POSIX_C_SOURCE 199309L  /* clock_gettime under -std=c11 */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "examples/workloads.h"
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_d); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

typedef struct { const char *name; advnn_graph *g; int out, batch; } workload;

/* A tensor of n samples for every graph input: features uniform in [-1, 1] (never exactly 0, so
 * masks keep every step), labels valid for their loss, weights in [0.5, 1.5]. */
static advnn_dataset *random_data(advnn_graph *g, int64_t n, advnn_tensor **keep, int *nkeep, int n_classes) {
    advnn_dataset *d = advnn_dataset_new();
    advnn__rng r;
    int i;
    advnn__rng_seed(&r, 12345);
    for (i = 0; i < advnn_input_count(g); i++) {
        int id = advnn_input_node(g, i), sh[3], nd = advnn_node_shape(g, id, sh), k;
        const char *name = advnn_node_name(g, id);
        int64_t shape[4], j;
        advnn_tensor *t;
        shape[0] = n;
        for (k = 0; k < nd; k++) shape[k + 1] = sh[k];
        t = advnn_tensor_new(nd + 1, shape);
        for (j = 0; j < t->size; j++) {
            double u = advnn__rng_uniform(&r);
            if (!strcmp(name, "y")) t->data[j] = n_classes > 1 ? (float)(int)(u * n_classes) : (float)(u < 0.5);
            else if (!strcmp(name, "w")) t->data[j] = (float)(0.5 + u);
            else t->data[j] = (float)(2 * u - 1 + (u < 0.5 ? -1e-3 : 1e-3));
        }
        advnn_dataset_add(d, name, t);
        keep[(*nkeep)++] = t;
    }
    return d;
}

static void run(workload *w, int quick) {
    advnn_tensor *keep[16];
    int nkeep = 0, i, steps = 0, n_classes = !strcmp(w->name, "w2") ? 3 : 1;
    int64_t N = 4096, *idx;
    advnn_dataset *d = random_data(w->g, N, keep, &nkeep, n_classes);
    advnn_trainer *tr = advnn_trainer_new(w->g, w->batch, 1);
    double t_step[400], t_b1[64], t_b512[32], t0, min_s = quick ? 0.5 : 3.0;
    advnn_ws *ws1 = advnn_ws_new(w->g, 1), *ws512 = advnn_ws_new(w->g, 512);
    const float *ins[16];
    float *out = (float *)malloc((size_t)512 * 1600 * sizeof(float));
    if (!tr || !ws1 || !ws512 || !d) { fprintf(stderr, "%s: %s\n", w->name, advnn_last_error()); exit(1); }
    idx = (int64_t *)malloc((size_t)w->batch * sizeof(int64_t));
    /* training: 5 warm-up steps, then at least 20 steps and min_s seconds */
    for (i = 0; i < 5 + 400; i++) {
        int k;
        double l;
        for (k = 0; k < w->batch; k++) idx[k] = (int64_t)(advnn__rng_below(&tr->rng, (uint64_t)N));
        t0 = now();
        if (advnn_train_step(tr, d, idx, w->batch, &l) != ADVNN_OK) { fprintf(stderr, "%s: %s\n", w->name, advnn_last_error()); exit(1); }
        if (i >= 5) {
            t_step[steps++] = now() - t0;
            if (steps >= 20) { double s = 0; int k2; for (k2 = 0; k2 < steps; k2++) s += t_step[k2]; if (s > min_s) break; }
        }
    }
    /* inference at batch 1: chunks of calls, median chunk */
    for (i = 0; i < advnn_input_count(w->g); i++) {
        const advnn_tensor *t = keep[i];
        ins[i] = t->data;
    }
    for (i = 0; i < (quick ? 8 : 32); i++) {
        int k, calls = 200;
        t0 = now();
        for (k = 0; k < calls; k++) {
            const float *row[16];
            int j;
            for (j = 0; j < advnn_input_count(w->g); j++) row[j] = ins[j] + (size_t)(k % 512) * (keep[j]->size / N);
            advnn_infer(ws1, 1, row, w->out, out);
        }
        t_b1[i] = (now() - t0) / calls;
    }
    for (i = 0; i < (quick ? 4 : 16); i++) {
        t0 = now();
        if (advnn_infer(ws512, 512, ins, w->out, out) != ADVNN_OK) { fprintf(stderr, "%s: %s\n", w->name, advnn_last_error()); exit(1); }
        t_b512[i] = (now() - t0) / 512;
    }
    printf("{\"workload\": \"%s\", \"framework\": \"advnn\", \"kernels\": \"%s\", \"threads\": 1, \"batch\": %d, "
           "\"step_ms_median\": %.3f, \"steps_timed\": %d, \"infer_us_per_sample_b1\": %.2f, \"infer_us_per_sample_b512\": %.3f, "
           "\"params\": %lld, \"scope\": \"main network + its loss (no adversary yet)\"}\n",
           w->name, advnn_simd_name(), w->batch, 1e3 * median(t_step, steps), steps, 1e6 * median(t_b1, quick ? 8 : 32),
           1e6 * median(t_b512, quick ? 4 : 16), (long long)advnn_param_count(w->g, NULL));
    fflush(stdout);
    free(idx); free(out);
    advnn_ws_free(ws1); advnn_ws_free(ws512); advnn_trainer_free(tr); advnn_dataset_free(d);
    for (i = 0; i < nkeep; i++) advnn_tensor_free(keep[i]);
}

static advnn_graph *build(const char *name, int *out) {
    advnn_graph *g = advnn_graph_new();
    int one = 1, ten = 10, y, w, in[4], z, sh[3];
    if (!strcmp(name, "w1")) {
        int x = advnn_input(g, "x", 1, &ten);
        y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
        z = wl_w1_classifier(g, x);
        advnn_loss_bce_logits(g, z, y, w);
        *out = advnn_activation(g, z, ADVNN_ACT_SIGMOID);
    } else if (!strcmp(name, "w2")) {
        wl_w2_inputs(g, "", in);
        y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
        z = wl_w2_tagger(g, in, NULL, NULL);
        advnn_loss_cce_logits(g, z, y, w);
        *out = z;
    } else {
        int x;
        sh[0] = 40; sh[1] = 40; sh[2] = 1;
        x = advnn_input(g, "img", 3, sh);
        w = advnn_input(g, "w", 1, &one);
        z = wl_w3_autoencoder(g, x);
        advnn_loss_mse(g, z, x, w);
        *out = z;
    }
    if (advnn_graph_finalize(g, 1) != ADVNN_OK) { fprintf(stderr, "%s: %s\n", name, advnn_last_error()); exit(1); }
    return g;
}

int main(int argc, char **argv) {
    const char *list = "w1,w2,w3";
    int quick = 0, i;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--workload") && i + 1 < argc) list = argv[++i];
        else { fprintf(stderr, "usage: %s [--quick] [--workload w1,w2,w3]\n", argv[0]); return 2; }
    }
    for (i = 1; i <= 3; i++) {
        char name[4];
        workload w;
        snprintf(name, sizeof name, "w%d", i);
        if (!strstr(list, name)) continue;
        w.name = i == 1 ? "w1" : i == 2 ? "w2" : "w3";
        w.g = build(w.name, &w.out);
        w.batch = i == 1 ? 1024 : 512;
        run(&w, quick);
        advnn_graph_free(w.g);
    }
    return 0;
}
