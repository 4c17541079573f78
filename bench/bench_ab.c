/* bench_ab.c - two versions of advnn in one process, one training step of each in turn, so that a
 * change of a few percent shows on a host whose speed drifts by more than that between runs
 * (bench/README.md: "Weights packed once per step"). bench/bench_ab.sh builds it three times: with
 * -DAB_SIDE=old and the old headers first on the include path, with -DAB_SIDE=new and the working
 * tree's (each a private copy of the library: ADVNN_STATIC), and the driver (no AB_SIDE).
 * Usage: bench_ab WORKLOAD THREADS ROUNDS STEPS [BATCH]: ROUNDS x STEPS step pairs after 10 of warm-up; prints
 * each version's median and 10th percentile of the step times and new / old. Both versions train the
 * same workload from the same seed, so they also print the same losses when the change keeps bits. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef AB_SIDE
#define ADVNN_STATIC
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
static void bench_die(const char *what, const char *name) { fprintf(stderr, "bench_ab: %s: %s\n", name, what); exit(1); }
#include "bench/bench_wl.h"
#define AB_CAT2(a, b) a##b
#define AB_CAT(a, b) AB_CAT2(a, b)
typedef struct { wl w; int64_t *idx; advnn_trainer *tr; advnn_adv_opts o; int i; double lm; } ab_state;
void *AB_CAT(ab_new_, AB_SIDE)(const char *name, int threads, int batch);
double AB_CAT(ab_step_, AB_SIDE)(void *p, double *loss);
void *AB_CAT(ab_new_, AB_SIDE)(const char *name, int threads, int batch) {
    ab_state *s = (ab_state *)calloc(1, sizeof *s);
    int64_t N, i;
    if (!s) bench_die("out of memory", name);
    advnn_set_threads(threads);
    s->w.name = name; s->w.batch = batch;
    build(&s->w); make_data(&s->w);
    N = (int64_t)s->w.batch * s->w.nb;
    if (!(s->idx = (int64_t *)malloc((size_t)N * sizeof *s->idx))) bench_die("out of memory", name);
    for (i = 0; i < N; i++) s->idx[i] = i;
    s->tr = wl_trainer(&s->w, &s->o);
    return s;
}
double AB_CAT(ab_step_, AB_SIDE)(void *p, double *loss) {
    ab_state *s = (ab_state *)p;
    struct timespec a, b;
    double la;
    const int64_t *ix = s->idx + (size_t)(s->i++ % s->w.nb) * s->w.batch;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (advnn_adv_step(s->tr, &s->o, s->w.lambda, s->w.d, ix, s->w.dcr ? ix : NULL, s->w.batch, loss, &la) != ADVNN_OK)
        bench_die("training step", s->w.name);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
#else
void *ab_new_old(const char *name, int threads, int batch);
double ab_step_old(void *p, double *loss);
void *ab_new_new(const char *name, int threads, int batch);
double ab_step_new(void *p, double *loss);
static int ab_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
int main(int argc, char **argv) {
    int th, R, S, k, m, batch;
    double *to, *tn, lo = 0, ln = 0;
    void *o, *n;
    if ((argc != 5 && argc != 6) || (strcmp(argv[1], "w1") && strcmp(argv[1], "w2") && strcmp(argv[1], "w3")) ||
        (th = atoi(argv[2])) < 1 || (R = atoi(argv[3])) < 1 || (S = atoi(argv[4])) < 1 ||
        (batch = argc == 6 ? atoi(argv[5]) : !strcmp(argv[1], "w1") ? 1024 : 512) < 1) {
        fprintf(stderr, "usage: %s w1|w2|w3 THREADS ROUNDS STEPS [BATCH (W1 1024, W2 and W3 512)]\n", argv[0]);
        return 2;
    }
    m = R * S;
    o = ab_new_old(argv[1], th, batch);
    n = ab_new_new(argv[1], th, batch);
    to = (double *)malloc((size_t)m * sizeof *to);
    tn = (double *)malloc((size_t)m * sizeof *tn);
    if (!to || !tn) return 1;
    for (k = 0; k < 10; k++) { ab_step_old(o, &lo); ab_step_new(n, &ln); }
    for (k = 0; k < m; k++) {   /* in turn; which goes first alternates by round */
        if ((k / S) & 1) { tn[k] = ab_step_new(n, &ln); to[k] = ab_step_old(o, &lo); }
        else { to[k] = ab_step_old(o, &lo); tn[k] = ab_step_new(n, &ln); }
    }
    qsort(to, (size_t)m, sizeof *to, ab_cmp);
    qsort(tn, (size_t)m, sizeof *tn, ab_cmp);
    printf("%s, batch %d, %d thread(s), %d step pairs: old median %.4f ms p10 %.4f | new median %.4f ms p10 %.4f | new/old median "
           "%.4f p10 %.4f | last main loss old %.9g new %.9g\n", argv[1], batch, th, m, 1e3 * to[m / 2], 1e3 * to[m / 10],
           1e3 * tn[m / 2], 1e3 * tn[m / 10], tn[m / 2] / to[m / 2], tn[m / 10] / to[m / 10], lo, ln);
    return 0;
}
#endif
