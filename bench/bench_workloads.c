/* Whole-workload benchmark of the three reference workloads (WORKLOADS.md), measured the way
 * ../shared/peers/torch_workloads.py measures PyTorch, so that the two sets of JSON lines compare
 * field by field (bench/compare.sh puts them side by side).
 *
 * Each (workload, threads) runs in a fresh child process (fork), so that its peak RSS is its own.
 * Random data with a fixed seed, fp32, per-sample weights in every loss; NB batches made up front
 * and cycled (8 for W1, 4 for W2 and W3, as the torch script). One training step is one
 * advnn_adv_step() in ADVNN_ADV_ALTERNATING mode, i.e. the torch script's step:
 *   W1 (batch 1024, --batch 256/8192): one adversary update (classifier frozen, background-only
 *      weights w(1-y) rescaled to sum(w) per batch, advnn_background_weights), then one classifier
 *      update on L_clf - 10 L_adv with the adversary frozen. Classifier [BN, Dense 64 ReLU] x 3,
 *      Dense 1; adversary [sigmoid(z), lpt] -> Dense 64 ReLU -> MDN of 20 truncated Gaussians
 *      (sigma floor 1e-3). Adam 1e-3 both. The signal rows (adversary weight 0) are skipped by the
 *      adversary and by the frozen classifier's forward in the adversary update (advnn_adv_fit's
 *      zero-weight rows); torch computes them and multiplies by 0.
 *   W2 (512 main + 512 control region): two adversary updates on the control-region batch (each
 *      with its own forward of the frozen tagger, dropout live), then one tagger update on
 *      CE(main) - 10 BCE(adv(softmax(tagger(CR)))); the CR stream is a second set of inputs
 *      ("cr_*") through the same (shared) tagger weights, read from a second dataset (adv_data).
 *      Nadam 8e-4 both.
 *   W3 (batch 512): three adversary updates on the log per-image MSE of the frozen autoencoder,
 *      then one autoencoder update on L_AE - 1e-3 CE_adv. Adam 1e-3 (AE), 1e-2 (adversary).
 *      torch runs two AE forwards per step (one no_grad forward for its 3 adversary updates, one
 *      with gradients for the AE update); advnn_adv_step runs one and reuses it in all four
 *      updates, as the AE's weights do not change before the AE update and it has no BatchNorm or
 *      dropout ("ae_forwards_per_step").
 * (torch orders W1/W2 adversary-first and W3 main-first; the per-step work is the same.)
 *
 * Timing (as torch_workloads.py): warm-up steps (30, or 3 s, at least 3), then every step timed on
 * its own for at least 50 steps and 3 s (--quick: 10 steps, 0.5 s); median, p10, p90. Inference
 * in eval mode on the main network's output only (W1 sigmoid score, W2 softmax scores, W3
 * per-image MSE): batch 1 through advnn_infer with a batch-1 workspace, per call, median over chunks
 * of calls (~50 ms each, at least 15 chunks and the minimum time); batch 512 every call timed,
 * median / 512. `threads` applies to training and to batch-512 inference (advnn_ws_set_threads:
 * the batch split once per call, as torch's intra-op threads do); batch 1 runs on one thread.
 * cpu_per_wall_* = this process's CPU time / wall time over a timed loop (getrusage);
 * other_cpus_* = cores used by other processes during it (/proc/stat); well above 0 = disturbed.
 * peak_rss_train_mb = ru_maxrss of the child after the timed training loop, peak_rss_mb at its end.
 * FLOPs (step_gflop, step_gflops, step_peak_frac, infer_*_gflops, *_peak_frac): counted once from the
 * architecture with advnn_flops (weight products of dense, convolution and LSTM layers, 2 per
 * multiply-add; activations, BatchNorm, losses and the optimizer not counted) over the rows each part
 * of the step runs on: a forward pass counts 1x, the backward of a trained part 2x (input and weight
 * gradients), of a frozen part that passes gradients on 1x (input gradients). Per step (B = batch,
 * b = W1's rows with a non-zero adversary weight, which is all the adversary runs on):
 *   W1  adversary update: clf(b) + 3 adv(b); classifier update: 3 clf(B) + 2 adv(b)
 *   W2  2 x [tagger on CR(B) + 3 adv(B)]; tagger update: 3 tagger(B) + 3 tagger on CR(B) + 2 adv(B)
 *   W3  AE forward (once) AE(B); AE update: 2 AE(B) + 2 adv(B); 3 x 3 adv(B)
 * Inference: the main output's forward FLOPs per sample. peak_gflops: one core's measured FMA peak
 * (bench/bench_common.h, measured once before the workloads; --peak G sets it), so a fraction of 1 is
 * one core's peak also at 2 threads (2 threads can reach 2).
 *
 * Usage: bench_workloads [--workload w1,w2,w3] [--threads 1,2] [--batch N (W1)] [--quick]
 *                        [--repeats R] [--warmup N] [--min-steps N] [--min-seconds S] [--no-fork] [--peak G]
 *                        [--threads-policy measure|team|alone|ab]
 * --threads-policy: how a threaded step runs (advnn.h "the team or the calling thread alone"): as the
 * library chooses from measured times (default), always on the team, always on the calling thread;
 * ab: the three in turn, 3 steps each, in one process (the same conditions for each: a fair
 * comparison on a noisy machine), reported as ab_{alone,team,measure}_ms_{median,mean}; the other
 * step fields then cover all of them.
 * passes_threaded / passes_alone: the timed steps' passes that could use the team, and those that ran alone.
 * Prints one JSON line per (workload, threads, repeat) on stdout. bench/compare.sh runs it beside torch.
 * advnn-build: -pthread */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fork, sysconf under -std=c11 */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include <time.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include "bench/bench_common.h"
#include "bench/bench_wl.h"


static void bench_die(const char *what, const char *name) {
    fprintf(stderr, "bench_workloads: %s: %s: %s\n", name, what, advnn_last_error());
    exit(1);
}

typedef struct {
    int threads, quick, warmup, min_steps, max_steps;
    double min_seconds, peak;
    int tune;                                /* --threads-policy: 0 measure, 1 team, 2 alone, 3 ab (all three in turn) */
} cfg;

/* The step's FLOPs from the architecture (see the top of this file); *infer gets the inference
 * output's forward FLOPs per sample. */
static double step_flops(const wl *w, double *infer) {
    const advnn_graph *g = w->g;
    double B = w->batch;
    *infer = advnn_flops(g, w->out, NULL);
    if (!strcmp(w->name, "w1")) {
        double clf = advnn_flops(g, w->out, "main"), adv = advnn_flops(g, w->ladv, "adv"), b = 0;
        int i, k;
        for (i = 0; i < advnn_input_count(g); i++)   /* rows with a non-zero adversary weight, per batch */
            if (!strcmp(advnn_node_name(g, advnn_input_node(g, i)), "wadv"))
                for (k = 0; k < w->t[i]->size; k++) b += w->t[i]->data[k] != 0;
        b /= w->nb;
        return clf * b + 3 * adv * b + 3 * clf * B + 2 * adv * b;
    }
    if (!strcmp(w->name, "w2")) {
        double tag = advnn_flops(g, w->out, "main"), cr = advnn_flops(g, w->ladv, "main"), adv = advnn_flops(g, w->ladv, "adv");
        return 2 * (cr * B + 3 * adv * B) + 3 * tag * B + 3 * cr * B + 2 * adv * B;
    }
    {
        double ae = advnn_flops(g, w->lmain, "main"), adv = advnn_flops(g, w->ladv, "adv");
        return ae * B + 2 * ae * B + 2 * adv * B + 3 * 3 * adv * B;
    }
}

static void run(const char *name, int batch_w1, int threads, const cfg *c) {
    wl w;
    advnn_trainer *tr;
    advnn_adv_opts o;
    advnn_ws *ws1, *ws512;
    const float *ins[MAX_IN];
    float *out;
    int64_t *idx, N;
    double *t_step, *t_b1, *t_b512, t0, w0, min_s = c->min_seconds;
    double mean = 0, cw_train, ot_train, cw_b1, ot_b1, cw_b512, ot_b512, rss_train, per, p10, p90, med, fstep, finf;
    int i, n_in, steps = 0, warm = 0, nb1 = 0, n512 = 0, chunk, outsz = 1, osh[3], ond;
    int64_t tune_n = 0, tune_alone = 0;
    double *t_ab[3], ab_med[3] = { 0, 0, 0 }, ab_mean[3] = { 0, 0, 0 };
    int n_ab[3] = { 0, 0, 0 };
    load_t L;

    memset(&w, 0, sizeof w);
    w.name = name;
    w.batch = !strcmp(name, "w1") ? batch_w1 : 512;
    build(&w);
    make_data(&w);
    n_in = advnn_input_count(w.g);
    N = (int64_t)w.batch * w.nb;
    fstep = step_flops(&w, &finf);

    advnn_set_threads(threads);
#ifndef ADVNN_NO_THREADS
    advnn__tune_force = c->tune == 3 ? 0 : c->tune;
#endif
    tr = wl_trainer(&w, &o);

    idx = (int64_t *)malloc((size_t)N * sizeof *idx);
    t_step = (double *)malloc((size_t)c->max_steps * sizeof *t_step);
    t_b1 = (double *)malloc(400 * sizeof *t_b1);
    t_b512 = (double *)malloc(4000 * sizeof *t_b512);
    if (!idx || !t_step || !t_b1 || !t_b512) bench_die("out of memory", name);
    for (i = 0; i < N; i++) idx[i] = i;

    /* ---- training: warm-up, then >= min_steps and >= min_seconds, each step timed */
#define STEP(k) do { \
        const int64_t *ix_ = idx + (size_t)((k) % w.nb) * w.batch; \
        double lm_, la_; \
        if (advnn_adv_step(tr, &o, w.lambda, w.d, ix_, w.dcr ? ix_ : NULL, w.batch, &lm_, &la_) != ADVNN_OK) bench_die("training step", name); \
    } while (0)
    w0 = now();
    while (warm < c->warmup && (warm < 3 || now() - w0 < (c->quick ? 0.3 : 3.0))) { STEP(warm); warm++; }
    load_start(&L);
#ifndef ADVNN_NO_THREADS
    tune_n = -tr->tune.steps; tune_alone = -tr->tune.alone;
#endif
    w0 = now();
    for (i = 0; i < 3; i++) if (!(t_ab[i] = (double *)malloc((size_t)c->max_steps * sizeof(double)))) bench_die("out of memory", name);
    while (steps < c->max_steps && (steps < c->min_steps || now() - w0 < min_s)) {
        int pol = (steps / 3) % 3;   /* ab: 0 alone, 1 team, 2 measure */
#ifndef ADVNN_NO_THREADS
        if (c->tune == 3) advnn__tune_force = pol == 0 ? 2 : pol == 1 ? 1 : 0;
#endif
        t0 = now();
        STEP(warm + steps);
        t_step[steps] = now() - t0;
        t_ab[pol][n_ab[pol]++] = t_step[steps++];
    }
#ifndef ADVNN_NO_THREADS
    if (c->tune == 3) advnn__tune_force = 0;
#endif
    for (i = 0; i < 3 && c->tune == 3; i++) {
        int k;
        for (k = 0; k < n_ab[i]; k++) ab_mean[i] += t_ab[i][k] / n_ab[i];
        ab_med[i] = n_ab[i] ? median(t_ab[i], n_ab[i]) : 0;
    }
    for (i = 0; i < 3; i++) free(t_ab[i]);
    load_done(&L, &cw_train, &ot_train);
#ifndef ADVNN_NO_THREADS
    tune_n += tr->tune.steps; tune_alone += tr->tune.alone;
#endif
    rss_train = peak_rss_mb();
    for (i = 0; i < steps; i++) mean += t_step[i] / steps;
    med = median(t_step, steps);
    p10 = pct(t_step, steps, 0.1); p90 = pct(t_step, steps, 0.9);

    /* ---- inference, eval mode, main network's output only */
    ws1 = advnn_ws_new(w.g, 1); ws512 = advnn_ws_new(w.g, 512);
    if (!ws1 || !ws512 || advnn_ws_set_threads(ws512, threads) != ADVNN_OK) bench_die("inference workspace", name);
    ond = advnn_node_shape(w.g, w.out, osh);
    for (i = 0; i < ond; i++) outsz *= osh[i];
    out = (float *)malloc((size_t)512 * outsz * sizeof(float));
    if (!out) bench_die("out of memory", name);
    for (i = 0; i < n_in; i++) ins[i] = strncmp(advnn_node_name(w.g, advnn_input_node(w.g, i)), "cr_", 3) ? w.t[i]->data : NULL;
    {
        /* batch 1: calibrate a chunk of ~50 ms, then chunks until >= 15 and >= min_seconds */
        int k, calls = 0;
        double tc;
#define INFER1(k) do { \
            const float *row_[MAX_IN]; \
            int j_; \
            for (j_ = 0; j_ < n_in; j_++) row_[j_] = ins[j_] ? ins[j_] + (size_t)((k) % 512) * (size_t)(w.t[j_]->size / N) : NULL; \
            if (advnn_infer(ws1, 1, row_, w.out, out) != ADVNN_OK) bench_die("inference (batch 1)", name); \
        } while (0)
        for (k = 0; k < 200; k++) INFER1(k);
        tc = now();
        for (k = 0; k < 200; k++) INFER1(k);
        per = (now() - tc) / 200;
        chunk = (int)(0.05 / (per > 1e-7 ? per : 1e-7));
        if (chunk < 20) chunk = 20;
        if (c->quick && chunk > 2000) chunk = 2000;
        load_start(&L);
        w0 = now();
        while (nb1 < 400 && (nb1 < 15 || now() - w0 < min_s)) {
            tc = now();
            for (k = 0; k < chunk; k++, calls++) INFER1(calls);
            t_b1[nb1++] = (now() - tc) / chunk;
        }
        load_done(&L, &cw_b1, &ot_b1);
#undef INFER1
    }
    for (i = 0; i < 5; i++) if (advnn_infer(ws512, 512, ins, w.out, out) != ADVNN_OK) bench_die("inference (batch 512)", name);
    load_start(&L);
    w0 = now();
    while (n512 < 4000 && (n512 < 15 || now() - w0 < min_s)) {
        t0 = now();
        advnn_infer(ws512, 512, ins, w.out, out);
        t_b512[n512++] = (now() - t0) / 512;
    }
    load_done(&L, &cw_b512, &ot_b512);

    printf("{\"workload\": \"%s\", \"framework\": \"advnn\", \"threads\": %d, \"batch\": %d, "
           "\"step_ms_median\": %.4f, \"step_ms_mean\": %.4f, \"infer_us_per_sample_b1\": %.3f, \"infer_us_per_sample_b512\": %.4f, "
           "\"step_ms_p10\": %.4f, \"step_ms_p90\": %.4f, \"steps_timed\": %d, \"warmup_steps\": %d, "
           "\"cpu_per_wall_train\": %.2f, \"cpu_per_wall_b1\": %.2f, \"cpu_per_wall_b512\": %.2f, "
           "\"other_cpus_train\": %.2f, \"other_cpus_b1\": %.2f, \"other_cpus_b512\": %.2f, "
           "\"params_main\": %lld, \"params_adv\": %lld, \"params\": %lld, "
           "\"peak_rss_train_mb\": %.1f, \"peak_rss_mb\": %.1f, \"kernels\": \"%s\", "
           "\"adv_steps\": %d, \"lambda\": %g, \"ae_forwards_per_step\": %d, \"infer_threads_b1\": 1, \"infer_threads_b512\": %d, "
           "\"step_gflop\": %.5f, \"step_gflops\": %.2f, \"infer_mflop_per_sample\": %.4f, \"infer_gflops_b1\": %.2f, "
           "\"infer_gflops_b512\": %.2f, \"peak_gflops\": %.1f, \"step_peak_frac\": %.3f, \"infer_b1_peak_frac\": %.3f, "
           "\"infer_b512_peak_frac\": %.3f, \"tune\": \"%s\", \"passes_threaded\": %lld, \"passes_alone\": %lld, "
           "\"ab_alone_ms_median\": %.4f, \"ab_team_ms_median\": %.4f, \"ab_measure_ms_median\": %.4f, "
           "\"ab_alone_ms_mean\": %.4f, \"ab_team_ms_mean\": %.4f, \"ab_measure_ms_mean\": %.4f}\n",
           name, threads, w.batch, 1e3 * med, 1e3 * mean, 1e6 * median(t_b1, nb1), 1e6 * median(t_b512, n512),
           1e3 * p10, 1e3 * p90, steps, warm, cw_train, cw_b1, cw_b512, ot_train, ot_b1, ot_b512,
           (long long)advnn_param_count(w.g, "main"), (long long)advnn_param_count(w.g, "adv"),
           (long long)advnn_param_count(w.g, NULL), rss_train, peak_rss_mb(), advnn_simd_name(),
           w.adv_steps, (double)w.lambda, w.ae_fwd, threads,
           1e-9 * fstep, 1e-9 * fstep / med, 1e-6 * finf, 1e-9 * finf / median(t_b1, nb1), 1e-9 * finf / median(t_b512, n512),
           c->peak, c->peak > 0 ? 1e-9 * fstep / med / c->peak : 0.0,
           c->peak > 0 ? 1e-9 * finf / median(t_b1, nb1) / c->peak : 0.0, c->peak > 0 ? 1e-9 * finf / median(t_b512, n512) / c->peak : 0.0,
           c->tune == 1 ? "team" : c->tune == 2 ? "alone" : c->tune == 3 ? "ab" : "measure", (long long)tune_n, (long long)tune_alone,
           1e3 * ab_med[0], 1e3 * ab_med[1], 1e3 * ab_med[2], 1e3 * ab_mean[0], 1e3 * ab_mean[1], 1e3 * ab_mean[2]);
    fflush(stdout);
#undef STEP
    free(idx); free(out); free(t_step); free(t_b1); free(t_b512);
    advnn_ws_free(ws1); advnn_ws_free(ws512); advnn_trainer_free(tr);
    advnn_dataset_free(w.d); if (w.dcr) advnn_dataset_free(w.dcr);
    for (i = 0; i < n_in && i < MAX_IN; i++) advnn_tensor_free(w.t[i]);
    advnn_graph_free(w.g);
}

static int parse_list(const char *s, int *v, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1 || x > 64) return -1;
        v[n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int usage(const char *prog) {
    fprintf(stderr, "usage: %s [--workload w1,w2,w3] [--threads 1,2] [--batch N (W1, default 1024)] [--quick]\n"
                    "       [--repeats R] [--warmup N] [--min-steps N] [--min-seconds S] [--no-fork] [--peak GFLOPS]\n"
                    "       [--threads-policy measure|team|alone|ab]\n", prog);
    return 2;
}

int main(int argc, char **argv) {
    const char *list = "w1,w2,w3";
    int threads[16], nth = 1, batch = 1024, repeats = 1, fork_each = 1, i, r, t, fails = 0;
    int min_steps = -1, warmup = -1;
    double min_seconds = -1;
    cfg c;
    threads[0] = 1;
    memset(&c, 0, sizeof c);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) c.quick = 1;
        else if (!strcmp(a, "--no-fork")) fork_each = 0;
        else if (!v) return usage(argv[0]);
        else if (!strcmp(a, "--workload")) { list = v; i++; }
        else if (!strcmp(a, "--threads")) { if ((nth = parse_list(v, threads, 16)) < 1) return usage(argv[0]); i++; }
        else if (!strcmp(a, "--batch")) { batch = atoi(v); i++; if (batch < 1) return usage(argv[0]); }
        else if (!strcmp(a, "--repeats")) { repeats = atoi(v); i++; if (repeats < 1) return usage(argv[0]); }
        else if (!strcmp(a, "--warmup")) { warmup = atoi(v); i++; }
        else if (!strcmp(a, "--min-steps")) { min_steps = atoi(v); i++; }
        else if (!strcmp(a, "--min-seconds")) { min_seconds = atof(v); i++; }
        else if (!strcmp(a, "--threads-policy")) {
            c.tune = !strcmp(v, "measure") ? 0 : !strcmp(v, "team") ? 1 : !strcmp(v, "alone") ? 2 : !strcmp(v, "ab") ? 3 : -1;
            i++;
            if (c.tune < 0) return usage(argv[0]);
        }
        else if (!strcmp(a, "--peak")) { c.peak = atof(v); i++; if (!(c.peak > 0)) return usage(argv[0]); }
        else return usage(argv[0]);
    }
    if (!strcmp(list, "all")) list = "w1,w2,w3";
    {   /* every name in the list must be a workload */
        const char *s = list;
        while (*s) {
            size_t n = strcspn(s, ",");
            if (!(n == 2 && s[0] == 'w' && s[1] >= '1' && s[1] <= '3')) { fprintf(stderr, "bench_workloads: unknown workload '%.*s'\n", (int)n, s); return 2; }
            s += n + (s[n] == ',');
        }
    }
    c.warmup = warmup >= 0 ? warmup : (c.quick ? 3 : 30);
    c.min_steps = min_steps >= 1 ? min_steps : (c.quick ? 10 : 50);
    c.min_seconds = min_seconds >= 0 ? min_seconds : (c.quick ? 0.5 : 3.0);
    c.max_steps = 5000;
    if (c.peak <= 0) c.peak = measure_peak();
    if (c.min_steps > c.max_steps) c.max_steps = c.min_steps;
    for (r = 0; r < repeats; r++)
        for (i = 1; i <= 3; i++) {
            char name[3];
            name[0] = 'w'; name[1] = (char)('0' + i); name[2] = 0;
            if (!strstr(list, name)) continue;
            for (t = 0; t < nth; t++) {
                pid_t pid;
                int st = 0;
                if (!fork_each) { run(name, batch, threads[t], &c); continue; }
                fflush(stdout); fflush(stderr);
                pid = fork();
                if (pid < 0) { perror("bench_workloads: fork"); return 1; }
                if (pid == 0) { run(name, batch, threads[t], &c); fflush(stdout); _exit(0); }
                if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                    fprintf(stderr, "bench_workloads: %s at %d threads failed (status %d)\n", name, threads[t], st);
                    fails++;
                }
            }
        }
    return fails ? 1 : 0;
}
