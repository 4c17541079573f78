/* llp_tagger: the CalRatio per-jet LLP tagger (W2 of WORKLOADS.md, PHYSICS.md section 2) trained with
 * and without a data-vs-simulation adversary on a control region.
 *
 *   main player  W2 tagger (Conv1D + 3 LSTMs + dense head), 3 classes QCD / signal / BIB, weighted CE
 *   adversary    the same tagger (shared weights) on control-region jets -> softmax scores ->
 *                BN/Dense 24-12-6 tanh -> data vs simulation, weighted BCE
 *   schedule     alternating: 2 adversary steps per batch (tagger frozen), then one tagger step on
 *                CE - SF * BCE (adversary frozen); Nadam; batch 512 main + 512 control region
 *   runs         SF = 0 (no adversarial term; the adversary still trains, as a probe) and SF = 10
 *   --method disco  (or all) a run with DisCo instead of the adversary's term: kappa times the mean over
 *                the 3 softmax scores of dCorr^2(score, data/simulation label) on the control-region
 *                batch (for a binary label an energy distance between the data and simulation score
 *                distributions). Trained by advnn_adv_fit at lambda = 0: the DisCo node is a loss of
 *                the main step, fed by the control-region stream like the adversary, and the
 *                adversary still trains as a probe (its held-out BCE is one of the printed metrics).
 *   selection    per epoch AUC (signal vs QCD+BIB, main test split) and sum of the KS distances data
 *                vs simulation of the 3 scores (control-region test split); the trainer restores the
 *                epoch with the lowest sum KS among those within 0.01 of the best AUC.
 *   defaults     24k main + 24k control-region training jets, 12 epochs, 12k main / 24k CR test jets:
 *                ~0.07 s (SF = 0) and ~0.15 s (SF = 10) per batch single-threaded, both runs with the
 *                per-epoch evaluation in ~2 minutes. KS and AUC are computed on the logits of the
 *                scores (same ordering, no float32 saturation of the softmax).
 *
 * Usage: llp_tagger [--help] [--seed N] [--epochs N] [--sf X] [--method adversary|disco|all] [--kappa X]
 *                   [--ntrain N] [--ntest N] [--ncrtest N] [--lr-main X] [--out DIR] [--data DIR] [--threads N] [--quick]
 * Data: build/data/llp_{train,test}_* and llpcr_{train,test}_* from tools/gen_calratio.c. */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "cli.h"
#include "workloads.h"
#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#define PROG "llp_tagger"
#define MAX_EPOCHS 200
#define NBINS 48          /* score histograms: logit of the score on [-HLIM, HLIM] */
#define HLIM 12.0
#define KS_C_ALPHA 1.358  /* c(0.05) = sqrt(-ln(0.025) / 2) */

enum { CLU, TRK, MSG, JET, LAB, WGT, NPART };
static const char *const file_part[NPART] = { "clusters", "tracks", "msegs", "jet", "y", "w" };
static const char *const in_name[4] = { "clusters", "tracks", "muons", "jet" };
static const int64_t in_shape[4][2] = { { 30, 12 }, { 20, 10 }, { 30, 6 }, { 3, 0 } };
static const char *const score_name[3] = { "QCD", "signal", "BIB" };

typedef struct { advnn_tensor *t[NPART]; int64_t n; } split_t;

typedef struct {                 /* one epoch's (or the final network's) metrics */
    int    epoch, phase;
    double ce, bce, bce_test, ks[3], p[3], sumks, auc, sec;
} row_t;

typedef struct {
    double sf, kappa;            /* kappa > 0: the DisCo run (lambda 0, the adversary a probe) */
    char   name[32];             /* "SF=10", "DisCo kappa=3": the PASS/FAIL lines' run names */
    row_t  rows[MAX_EPOCHS];
    int    nrows, chosen;
    row_t  fin;                  /* recomputed on the restored weights */
    double r50, thr;             /* rejection at 50% signal efficiency; KS threshold per score */
    int    r50_low;              /* r50 is a lower limit (no background jet passes) */
    double hist[3][2][NBINS];    /* [score][sim, data][bin], unit area */
    double *roc_s, *roc_b;
    int64_t nroc;
    double seconds;
} run_t;

typedef struct {
    split_t tr, te, crtr, crte;
    advnn_dataset *train, *cr_train;
    float *sig_label;            /* main test: 1 for signal */
    float *cr_sim, *cr_dat, *w_sim, *w_dat; int64_t n_sim, n_dat;   /* CR test scratch */
    run_t *run;
    advnn_ws *ws;                /* inference workspace of the current run's graph */
    int ws_batch;
} ctx_t;

typedef struct { int main_loss, adv_loss; } net_ids;

static double now_s(void) {   /* wall clock (C11) */
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- arguments */
typedef struct {
    long seed, epochs, ntrain, ntest, ncrtest, threads;
    double sf, lr_main, lr_adv, kappa;
    int quick, method;           /* method: 0 adversary, 1 disco, 2 all (SF = 0, the adversary, DisCo) */
    const char *out, *data;
} args_t;

static void usage(void) {
    printf("usage: " PROG " [--seed N] [--epochs N] [--sf X | --lambda X] [--method adversary|disco|all] [--kappa X]\n"
           "                  [--ntrain N] [--ntest N] [--ncrtest N] [--lr-main X] [--out DIR] [--data DIR] [--threads N] [--quick]\n"
           "CalRatio LLP tagger (W2) with a data-vs-simulation adversary on a control region. Trains twice:\n"
           "SF = 0 (no adversarial term) and SF = X (default 10), alternating schedule, 2 adversary steps per\n"
           "batch, Nadam, batch 512 main + 512 control-region jets. Prints per-epoch CE, adversary BCE,\n"
           "KS data vs simulation of the 3 scores with p-values, AUC; the before/after summary; PASS/FAIL.\n"
           "  --seed N      seed of the weights and the batches (default 1)\n"
           "  --epochs N    epochs per run (default 12)\n"
           "  --sf X        adversary weight SF of the second run (default 10); --lambda is the same\n"
           "  --method M    adversary (default): SF = 0 and SF = X; disco: SF = 0 and a DisCo run (kappa times the\n"
           "                mean over the 3 scores of dCorr^2(score, data/sim label) on control-region batches, no\n"
           "                adversarial term; the adversary trains as a probe); all: the three runs\n"
           "  --kappa X     DisCo strength (default 10)\n"
           "  --ntrain N    main training jets, and as many control-region jets (default 24000)\n"
           "  --ntest N     main test jets, for the AUC (default 12000)\n"
           "  --ncrtest N   control-region test jets, for the KS tests (default 24000)\n"
           "  --lr-main X   Nadam learning rate of the tagger (default 8e-4; the adversary's is 8e-4)\n"
           "  --out DIR     outputs (default build/llp_tagger)\n"
           "  --data DIR    input .npy files (default build/data)\n"
           "  --threads N   threads (default 1)\n"
           "  --quick       smoke test: tiny subsample, 2 epochs per run\n");
}

/* Returns 0 to go on, 1 after --help, 2 on a bad argument. */
static int parse_args(int argc, char **argv, args_t *a) {
    int i, got_epochs = 0, got_n = 0, got_nt = 0, got_nc = 0;
    a->seed = 1; a->epochs = 12; a->ntrain = 24000; a->ntest = 12000; a->ncrtest = 24000; a->threads = 1;
    a->sf = 10; a->lr_main = 8e-4; a->lr_adv = 8e-4; a->quick = 0; a->kappa = 10; a->method = 0;
    a->out = "build/" PROG; a->data = "build/data";
    for (i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { usage(); return 1; }
        static const char *const valued[] = { "--seed", "--epochs", "--sf", "--lambda", "--ntrain", "--ntest", "--ncrtest",
                                              "--lr-main", "--threads", "--out", "--data", "--method", "--kappa" };
        size_t j, known = 0;
        if (!strcmp(o, "--quick")) { a->quick = 1; continue; }
        for (j = 0; j < sizeof valued / sizeof valued[0]; j++) known |= !strcmp(o, valued[j]);
        if (!known) { fprintf(stderr, PROG ": unknown argument '%s' (try --help)\n", o); return 2; }
        if (!v) { fprintf(stderr, PROG ": %s needs a value (try --help)\n", o); return 2; }
        if (!strcmp(o, "--seed")) ok = parse_long(v, 0, 2147483647L, &a->seed);
        else if (!strcmp(o, "--epochs")) ok = got_epochs = parse_long(v, 1, MAX_EPOCHS, &a->epochs);
        else if (!strcmp(o, "--sf") || !strcmp(o, "--lambda")) ok = parse_double(v, 0, 1e6, &a->sf);
        else if (!strcmp(o, "--ntrain")) ok = got_n = parse_long(v, 64, 100000000L, &a->ntrain);
        else if (!strcmp(o, "--ntest")) ok = got_nt = parse_long(v, 64, 100000000L, &a->ntest);
        else if (!strcmp(o, "--ncrtest")) ok = got_nc = parse_long(v, 64, 100000000L, &a->ncrtest);
        else if (!strcmp(o, "--lr-main")) ok = parse_double(v, 1e-7, 1, &a->lr_main);
        else if (!strcmp(o, "--threads")) ok = parse_long(v, 1, 64, &a->threads);
        else if (!strcmp(o, "--kappa")) ok = parse_double(v, 1e-6, 1e6, &a->kappa);
        else if (!strcmp(o, "--method")) {
            a->method = !strcmp(v, "adversary") ? 0 : !strcmp(v, "disco") ? 1 : !strcmp(v, "all") ? 2 : -1;
            ok = a->method >= 0;
        }
        else if (!strcmp(o, "--out")) a->out = v;
        else a->data = v;   /* --data */
        if (!ok) { fprintf(stderr, PROG ": bad value '%s' for %s (try --help)\n", v, o); return 2; }
        i++;
    }
    if (a->quick) {   /* explicit sizes still win */
        if (!got_epochs) a->epochs = 2;
        if (!got_n) a->ntrain = 1024;
        if (!got_nt) a->ntest = 1000;
        if (!got_nc) a->ncrtest = 1000;
    }
    return 0;
}

/* ---------------------------------------------------------------- data */
static void missing_data_hint(const char *path, const char *dir) {
    fprintf(stderr, PROG ": cannot read '%s': %s\n"
            "  make the CalRatio data (as make demo does) with:\n"
            "    mkdir -p build/tools && gcc -O2 -std=c11 -I. tools/gen_calratio.c -o build/tools/gen_calratio -lsleef -lm\n"
            "    build/tools/gen_calratio --out %s --n 40000 --seed 2\n", path, advnn_last_error(), dir);
}

/* The first n rows (the generator shuffles rows) as a new tensor; frees t. */
static advnn_tensor *take_rows(advnn_tensor *t, int64_t n) {
    advnn_tensor *r;
    int64_t shape[ADVNN_MAX_DIMS], per;
    int j;
    if (!t || n >= t->shape[0]) return t;
    for (j = 0; j < t->ndim; j++) shape[j] = t->shape[j];
    shape[0] = n;
    per = t->size / t->shape[0];
    if ((r = advnn_tensor_new(t->ndim, shape))) memcpy(r->data, t->data, (size_t)(n * per) * sizeof(float));
    advnn_tensor_free(t);
    return r;
}

static int shape_ok(const advnn_tensor *t, int part) {
    if (part >= LAB) return t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1);
    if (part == JET) return t->ndim == 2 && t->shape[1] == 3;
    return t->ndim == 3 && t->shape[1] == in_shape[part][0] && t->shape[2] == in_shape[part][1];
}

/* Loads <dir>/<sample>_<split>_<part>.npy for every part, keeping at most nmax rows. Returns 0 or an exit code. */
static int load_split(const char *dir, const char *sample, const char *split, int64_t nmax, split_t *s) {
    char path[1024];
    int64_t rows = 0;
    int k;
    memset(s, 0, sizeof *s);
    for (k = 0; k < NPART; k++) {
        snprintf(path, sizeof path, "%s/%s_%s_%s.npy", dir, sample, split, file_part[k]);
        if (!(s->t[k] = advnn_npy_load(path))) { missing_data_hint(path, dir); return 1; }
        if (!shape_ok(s->t[k], k)) { fprintf(stderr, PROG ": '%s' has an unexpected shape (%d-d)\n", path, s->t[k]->ndim); return 1; }
        if (k == 0) rows = s->t[0]->shape[0];
        else if (s->t[k]->shape[0] != rows) {
            fprintf(stderr, PROG ": '%s' has %lld rows, the clusters file %lld\n", path, (long long)s->t[k]->shape[0], (long long)rows);
            return 1;
        }
        if (!(s->t[k] = take_rows(s->t[k], nmax))) { fprintf(stderr, PROG ": out of memory\n"); return 1; }
    }
    s->n = s->t[0]->shape[0];
    return 0;
}
static void free_split(split_t *s) { int k; for (k = 0; k < NPART; k++) advnn_tensor_free(s->t[k]); }

/* Per-feature mean and std of input `part` over the main training split, padded rows (all zero)
 * excluded, so the standardisation does not count the padding and keeps it at exactly zero. */
static void feature_stats(const advnn_tensor *t, int nf, double *mean, double *sd) {
    int64_t r, rows = t->size / nf, used = 0;
    int f;
    for (f = 0; f < nf; f++) mean[f] = sd[f] = 0;
    for (r = 0; r < rows; r++) {
        const float *x = t->data + r * nf;
        int any = 0;
        for (f = 0; f < nf; f++) any |= x[f] != 0.0f;
        if (!any) continue;
        used++;
        for (f = 0; f < nf; f++) { mean[f] += x[f]; sd[f] += (double)x[f] * x[f]; }
    }
    for (f = 0; f < nf; f++) {
        double m = used ? mean[f] / (double)used : 0, v = used ? sd[f] / (double)used - m * m : 1;
        mean[f] = m;
        sd[f] = v > 1e-12 ? sqrt(v) : 1.0;
    }
}
static void standardise(advnn_tensor *t, int nf, int keep_padding, const double *mean, const double *sd) {
    int64_t r, rows = t->size / nf;
    int f;
    for (r = 0; r < rows; r++) {
        float *x = t->data + r * nf;
        int any = 0;
        for (f = 0; f < nf; f++) any |= x[f] != 0.0f;
        if (!any && keep_padding) continue;
        for (f = 0; f < nf; f++) x[f] = (float)((x[f] - mean[f]) / sd[f]);
    }
}
static void standardise_all(ctx_t *c) {
    int k;
    for (k = 0; k < 4; k++) {
        int nf = (int)(k == JET ? 3 : in_shape[k][1]);
        double mean[12], sd[12];
        feature_stats(c->tr.t[k], nf, mean, sd);
        standardise(c->tr.t[k], nf, k != JET, mean, sd);
        standardise(c->te.t[k], nf, k != JET, mean, sd);
        standardise(c->crtr.t[k], nf, k != JET, mean, sd);
        standardise(c->crte.t[k], nf, k != JET, mean, sd);
    }
}

/* Rescale weights so every class (label value 0..ncls-1) has the same total and the mean weight is 1:
 * QCD, signal and BIB count equally in the CE; simulation and data equally in the adversary's BCE,
 * so BCE = ln 2 means a blind adversary. */
static int balance_weights(split_t *s, int ncls) {
    double sum[3] = { 0, 0, 0 };
    int64_t i;
    int k;
    for (i = 0; i < s->n; i++) {
        int y = (int)s->t[LAB]->data[i];
        if (y < 0 || y >= ncls || (float)y != s->t[LAB]->data[i]) {
            fprintf(stderr, PROG ": label %g at row %lld is not one of 0..%d\n", (double)s->t[LAB]->data[i], (long long)i, ncls - 1);
            return 1;
        }
        sum[y] += s->t[WGT]->data[i];
    }
    for (k = 0; k < ncls; k++)
        if (!(sum[k] > 0)) { fprintf(stderr, PROG ": class %d has no (positive) weight in a split of %lld jets\n", k, (long long)s->n); return 1; }
    for (i = 0; i < s->n; i++) {
        int y = (int)s->t[LAB]->data[i];
        s->t[WGT]->data[i] = (float)(s->t[WGT]->data[i] * ((double)s->n / ncls) / sum[y]);
    }
    return 0;
}

static advnn_dataset *make_dataset(const split_t *s, const char *prefix) {
    advnn_dataset *d = advnn_dataset_new();
    char name[40];
    int k;
    if (!d) return NULL;
    for (k = 0; k < NPART; k++) {
        snprintf(name, sizeof name, "%s%s", prefix, k < 4 ? in_name[k] : k == LAB ? "y" : "w");
        if (advnn_dataset_add(d, name, s->t[k]) != ADVNN_OK) { advnn_dataset_free(d); return NULL; }
    }
    return d;
}

static int prepare(ctx_t *c, const args_t *a) {
    int64_t i;
    int rc;
    if ((rc = load_split(a->data, "llp", "train", a->ntrain, &c->tr)) || (rc = load_split(a->data, "llp", "test", a->ntest, &c->te)) ||
        (rc = load_split(a->data, "llpcr", "train", a->ntrain, &c->crtr)) || (rc = load_split(a->data, "llpcr", "test", a->ncrtest, &c->crte)))
        return rc;
    if (balance_weights(&c->tr, 3) || balance_weights(&c->te, 3) || balance_weights(&c->crtr, 2) || balance_weights(&c->crte, 2)) return 1;
    standardise_all(c);
    c->train = make_dataset(&c->tr, "");
    c->cr_train = make_dataset(&c->crtr, "cr_");
    if (!c->train || !c->cr_train) {
        fprintf(stderr, PROG ": building the datasets: %s\n", advnn_last_error());
        return 1;
    }
    c->sig_label = (float *)malloc((size_t)c->te.n * sizeof(float));
    c->cr_sim = (float *)malloc((size_t)c->crte.n * sizeof(float));
    c->cr_dat = (float *)malloc((size_t)c->crte.n * sizeof(float));
    c->w_sim = (float *)malloc((size_t)c->crte.n * sizeof(float));
    c->w_dat = (float *)malloc((size_t)c->crte.n * sizeof(float));
    if (!c->sig_label || !c->cr_sim || !c->cr_dat || !c->w_sim || !c->w_dat) { fprintf(stderr, PROG ": out of memory\n"); return 1; }
    for (i = 0; i < c->te.n; i++) c->sig_label[i] = c->te.t[LAB]->data[i] == 1.0f ? 1.0f : 0.0f;
    c->n_sim = c->n_dat = 0;
    for (i = 0; i < c->crte.n; i++) {
        if (c->crte.t[LAB]->data[i] > 0.5f) c->w_dat[c->n_dat++] = c->crte.t[WGT]->data[i];
        else c->w_sim[c->n_sim++] = c->crte.t[WGT]->data[i];
    }
    return 0;
}

/* ---------------------------------------------------------------- network */
static advnn_graph *build_net(uint64_t seed, double kappa, net_ids *ids) {
    advnn_graph *g = advnn_graph_new();
    int in[4], cin[4], one = 1, y, w, cy, cw, logits, cr_logits, cr_scores, adv;
    wl_rec rec;
    if (!g) return NULL;
    wl_w2_inputs(g, "", in);
    y = advnn_input(g, "y", 1, &one);
    w = advnn_input(g, "w", 1, &one);
    wl_w2_inputs(g, "cr_", cin);
    cy = advnn_input(g, "cr_y", 1, &one);
    cw = advnn_input(g, "cr_w", 1, &one);
    logits = wl_w2_tagger(g, in, &rec, NULL);
    advnn_name(g, logits, "logits");
    advnn_name(g, advnn_softmax(g, logits), "scores");
    ids->main_loss = advnn_loss_cce_logits(g, logits, y, w);
    cr_logits = wl_w2_tagger(g, cin, NULL, &rec);            /* the same weights on the control region */
    cr_scores = advnn_softmax(g, cr_logits);
    if (kappa > 0)   /* DisCo(scores, data/sim label): one node over the 3 score columns (their mean) */
        advnn_loss_scale(g, advnn_loss_disco(g, cr_scores, cy, cw, 1.0f), (float)kappa);
    advnn_group(g, "adv");
    adv = advnn_name(g, wl_w2_adversary(g, cr_scores), "adv_logit");
    ids->adv_loss = advnn_loss_bce_logits(g, adv, cy, cw);
    if (advnn_graph_finalize(g, seed) != ADVNN_OK) {
        fprintf(stderr, PROG ": building the network: %s\n", advnn_last_error());
        advnn_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---------------------------------------------------------------- metrics */
static double weighted_bce(const float *logit, const float *y, const float *w, int64_t n) {
    double s = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        double z = logit[i];
        s += w[i] * (fmax(z, 0) - z * y[i] + log1p(exp(-fabs(z))));
    }
    return s / (double)n;
}

/* KS data vs simulation of score k on the control-region test split. */
static advnn_status ks_score(ctx_t *c, const advnn_tensor *sc, int k, double *D, double *p) {
    int64_t i, ns = 0, nd = 0;
    for (i = 0; i < c->crte.n; i++) {
        float v = sc->data[i * 3 + k];
        if (c->crte.t[LAB]->data[i] > 0.5f) c->cr_dat[nd++] = v; else c->cr_sim[ns++] = v;
    }
    return advnn_ks(c->cr_dat, c->w_dat, nd, c->cr_sim, c->w_sim, ns, D, p);
}

/* Eval-mode output `node` for every jet of split s fed to the inputs named prefix + clusters etc.
 * One workspace per run, reused every epoch: advnn_predict would allocate (and zero) a new one
 * sized for 1024 rows of the whole two-stream graph (~280 MB) on every call. */
static advnn_status infer_split(ctx_t *c, const advnn_graph *g, const split_t *s, const char *prefix, const char *node, advnn_tensor **out) {
    const float *ptr[16];
    int64_t shape[2], r0;
    int id = advnn_find(g, node), nin = advnn_input_count(g), i, k, oshape[4], osize;
    size_t plen = strlen(prefix);
    advnn_status st = ADVNN_OK;
    if (id < 0 || nin > 16) return ADVNN_ERR_ARG;
    osize = advnn_node_shape(g, id, oshape) == 1 ? oshape[0] : 1;
    shape[0] = s->n; shape[1] = osize;
    if (!(*out = advnn_tensor_new(2, shape))) return ADVNN_ERR_NOMEM;
    for (r0 = 0; r0 < s->n && st == ADVNN_OK; r0 += c->ws_batch) {
        int nb = (int)(s->n - r0 < c->ws_batch ? s->n - r0 : c->ws_batch);
        for (i = 0; i < nin; i++) {
            const char *name = advnn_node_name(g, advnn_input_node(g, i));
            ptr[i] = NULL;
            if (strncmp(name, prefix, plen) != 0) continue;
            for (k = 0; k < 4; k++)
                if (!strcmp(name + plen, in_name[k])) ptr[i] = s->t[k]->data + r0 * (s->t[k]->size / s->n);
        }
        st = advnn_infer(c->ws, nb, ptr, id, (*out)->data + r0 * osize);
    }
    if (st != ADVNN_OK) { advnn_tensor_free(*out); *out = NULL; }
    return st;
}

/* Turns the tagger's logits z (N, 3) in place into the logit of each softmax score,
 * log(p_k / (1 - p_k)) = z_k - log(sum_{j != k} exp z_j), in double. Monotone in p_k, so KS, AUC and
 * ROC are those of the scores, but without float32 saturation: a well-trained tagger puts most QCD
 * jets at p_QCD = 1.0f exactly, where data and simulation would tie. */
static void score_logits(advnn_tensor *z) {
    int64_t i, n = z->shape[0];
    int k, j;
    for (i = 0; i < n; i++) {
        double v[3], m, s;
        for (k = 0; k < 3; k++) v[k] = z->data[i * 3 + k];
        for (k = 0; k < 3; k++) {
            m = -INFINITY;
            for (j = 0; j < 3; j++) if (j != k && v[j] > m) m = v[j];
            for (s = 0, j = 0; j < 3; j++) if (j != k) s += exp(v[j] - m);
            z->data[i * 3 + k] = (float)(v[k] - m - log(s));
        }
    }
}

/* Every per-epoch metric of the current weights of g. scores_cr/scores_te (may be NULL) receive
 * the control-region score logits (N, 3) and the main test split's signal-score logit (N). */
static advnn_status eval_net(ctx_t *c, const advnn_graph *g, row_t *r, advnn_tensor **scores_cr, advnn_tensor **scores_te) {
    advnn_tensor *st = NULL, *sc = NULL, *al = NULL, *sig = NULL;
    advnn_status s;
    int64_t i, shp[1];
    int k;
    s = infer_split(c, g, &c->te, "", "logits", &st);
    if (s == ADVNN_OK) {
        score_logits(st);
        shp[0] = c->te.n;
        if (!(sig = advnn_tensor_new(1, shp))) s = ADVNN_ERR_NOMEM;
        else {
            for (i = 0; i < c->te.n; i++) sig->data[i] = st->data[i * 3 + 1];
            s = advnn_auc(sig->data, c->sig_label, c->te.t[WGT]->data, c->te.n, &r->auc);
        }
    }
    if (s == ADVNN_OK) s = infer_split(c, g, &c->crte, "", "logits", &sc);       /* CR jets through the main stream */
    if (s == ADVNN_OK) score_logits(sc);
    r->sumks = 0;
    for (k = 0; k < 3 && s == ADVNN_OK; k++) {
        s = ks_score(c, sc, k, &r->ks[k], &r->p[k]);
        r->sumks += r->ks[k];
    }
    /* the adversary on held-out CR jets: only for the final networks (one more CR pass per epoch otherwise) */
    r->bce_test = NAN;
    if (scores_cr && s == ADVNN_OK) s = infer_split(c, g, &c->crte, "cr_", "adv_logit", &al);
    if (scores_cr && s == ADVNN_OK) r->bce_test = weighted_bce(al->data, c->crte.t[LAB]->data, c->crte.t[WGT]->data, c->crte.n);
    if (scores_cr && s == ADVNN_OK) { *scores_cr = sc; sc = NULL; }
    if (scores_te && s == ADVNN_OK) { *scores_te = sig; sig = NULL; }
    advnn_tensor_free(st); advnn_tensor_free(sc); advnn_tensor_free(al); advnn_tensor_free(sig);
    return s;
}

static void print_header(void) {
    printf("  ep    main CE  adv BCE   KS QCD (p)        KS sig (p)        KS BIB (p)        sum KS    AUC      s\n");
}
static void print_row(const row_t *r, const char *tag) {
    printf("  %-4s  %.4f   %.4f    %.4f (%.1e)  %.4f (%.1e)  %.4f (%.1e)  %.4f   %.4f  %5.1f\n", tag, r->ce, r->bce,
           r->ks[0], r->p[0], r->ks[1], r->p[1], r->ks[2], r->p[2], r->sumks, r->auc, r->sec);
}

static int epoch_cb(advnn_adv_epoch *e, void *user) {
    ctx_t *c = (ctx_t *)user;
    run_t *run = c->run;
    row_t *r = &run->rows[run->nrows];
    char tag[16];
    memset(r, 0, sizeof *r);
    r->epoch = e->epoch; r->phase = (int)e->phase; r->ce = e->main_loss; r->bce = e->adv_loss; r->sec = e->seconds;
    if (eval_net(c, e->graph, r, NULL, NULL) != ADVNN_OK) {
        fprintf(stderr, PROG ": evaluating epoch %d: %s\n", e->epoch + 1, advnn_last_error());
        return 1;   /* stop; main() sees the missing rows */
    }
    if (e->phase == ADVNN_PHASE_ADVERSARIAL) { e->quality = r->auc; e->cost = r->sumks; }
    snprintf(tag, sizeof tag, "%d", e->epoch + 1);
    print_row(r, tag);
    run->nrows++;
    return 0;
}

/* ---------------------------------------------------------------- one run */
static int finish_run(ctx_t *c, advnn_graph *g, run_t *run) {
    advnn_tensor *sc = NULL, *sig = NULL;
    double ne_s, ne_d, sw, sw2;
    int64_t i;
    int k, j, low;
    if (eval_net(c, g, &run->fin, &sc, &sig) != ADVNN_OK) { fprintf(stderr, PROG ": evaluating: %s\n", advnn_last_error()); return 1; }
    if (advnn_rejection_at(sig->data, c->sig_label, c->te.t[WGT]->data, c->te.n, 0.5, &run->r50, NULL, &low) != ADVNN_OK) { run->r50 = NAN; low = 0; }
    run->r50_low = low;
    run->roc_s = (double *)malloc((size_t)(c->te.n + 1) * sizeof(double));
    run->roc_b = (double *)malloc((size_t)(c->te.n + 1) * sizeof(double));
    if (!run->roc_s || !run->roc_b || advnn_roc(sig->data, c->sig_label, c->te.t[WGT]->data, c->te.n, run->roc_s, run->roc_b, &run->nroc) != ADVNN_OK) run->nroc = 0;
    for (k = 0; k < 3; k++) {   /* data vs simulation histograms of the score logits, unit area, clipped into the edge bins */
        int64_t ns = 0, nd = 0;
        for (i = 0; i < c->crte.n; i++) {
            float v = sc->data[i * 3 + k];
            v = v < (float)-HLIM ? (float)-HLIM : v > (float)(HLIM - 1e-3) ? (float)(HLIM - 1e-3) : v;
            if (c->crte.t[LAB]->data[i] > 0.5f) c->cr_dat[nd++] = v; else c->cr_sim[ns++] = v;
        }
        advnn_histogram(c->cr_sim, c->w_sim, ns, -HLIM, HLIM, NBINS, run->hist[k][0]);
        advnn_histogram(c->cr_dat, c->w_dat, nd, -HLIM, HLIM, NBINS, run->hist[k][1]);
        for (j = 0; j < 2; j++) {
            double s = 0;
            int b;
            for (b = 0; b < NBINS; b++) s += run->hist[k][j][b];
            for (b = 0; b < NBINS; b++) run->hist[k][j][b] = s > 0 ? run->hist[k][j][b] / (s * 2 * HLIM / NBINS) : 0;
        }
    }
    /* KS rejection threshold at alpha = 0.05 with the effective sizes of the weighted samples */
    for (sw = sw2 = 0, i = 0; i < c->n_sim; i++) { sw += c->w_sim[i]; sw2 += (double)c->w_sim[i] * c->w_sim[i]; }
    ne_s = sw * sw / sw2;
    for (sw = sw2 = 0, i = 0; i < c->n_dat; i++) { sw += c->w_dat[i]; sw2 += (double)c->w_dat[i] * c->w_dat[i]; }
    ne_d = sw * sw / sw2;
    run->thr = KS_C_ALPHA * sqrt((ne_s + ne_d) / (ne_s * ne_d));
    advnn_tensor_free(sc); advnn_tensor_free(sig);
    return 0;
}

static int train_run(ctx_t *c, const args_t *a, run_t *run) {
    net_ids ids;
    advnn_graph *g = build_net((uint64_t)a->seed, run->kappa, &ids);
    advnn_trainer *tr;
    advnn_adv_opts o;
    advnn_adv_result res;
    int rc = 0;
    double t0 = now_s();
    if (!g) return 1;
    c->ws_batch = 256;
    tr = advnn_trainer_new(g, 512, (uint64_t)a->seed + 1000);
    c->ws = advnn_ws_new(g, c->ws_batch);
    if (!tr || !c->ws) {
        fprintf(stderr, PROG ": trainer / workspace: %s\n", advnn_last_error());
        advnn_trainer_free(tr); advnn_ws_free(c->ws); c->ws = NULL; advnn_graph_free(g);
        return 1;
    }
    advnn_trainer_set_optim(tr, "main", advnn_nadam((float)a->lr_main));
    advnn_trainer_set_optim(tr, "adv", advnn_nadam((float)a->lr_adv));
    o = advnn_adv_defaults();
    o.mode = ADVNN_ADV_ALTERNATING; o.main_loss = ids.main_loss; o.adv_loss = ids.adv_loss; o.grad_reverse = -1;
    o.adv_steps = 2; o.epochs = (int)a->epochs; o.adv_data = c->cr_train;
    o.lambda = run->kappa > 0 ? 0.0f : (float)run->sf;   /* DisCo: no adversarial term, the adversary a probe */
    o.select_tolerance = 0.01; o.verbose = 0; o.callback = epoch_cb; o.user = c;
    c->run = run;
    if (run->kappa > 0)
        printf("\n=== run DisCo kappa = %g (no adversarial term; the adversary trains as a probe): %lld + %lld parameters "
               "(tagger + adversary), %ld epochs ===\n", run->kappa, (long long)advnn_param_count(g, "main"),
               (long long)advnn_param_count(g, "adv"), a->epochs);
    else
        printf("\n=== run SF = %g: %lld + %lld parameters (tagger + adversary), %ld epochs ===\n", run->sf,
               (long long)advnn_param_count(g, "main"), (long long)advnn_param_count(g, "adv"), a->epochs);
    print_header();
    if (advnn_adv_fit(tr, c->train, &o, &res) != ADVNN_OK) { fprintf(stderr, PROG ": training: %s\n", advnn_last_error()); rc = 1; }
    else if (run->nrows != a->epochs) { fprintf(stderr, PROG ": training stopped after %d epochs\n", run->nrows); rc = 1; }
    if (!rc) {
        run->chosen = res.selected_epoch;
        rc = finish_run(c, g, run);
        run->seconds = now_s() - t0;
        if (!rc) {
            printf("  chosen epoch %d (min sum KS within 0.01 of the best AUC); recomputed on the restored weights:\n", run->chosen + 1);
            run->fin.ce = run->chosen >= 0 ? run->rows[run->chosen].ce : NAN;
            run->fin.bce = run->chosen >= 0 ? run->rows[run->chosen].bce : NAN;
            print_row(&run->fin, "sel");
            printf("  held-out adversary BCE of the chosen epoch: %.4f (ln 2 = 0.6931: blind)\n", run->fin.bce_test);
            printf("  run time %.1f s\n", run->seconds);
        }
    }
    if (!rc && run->sf == a->sf) {   /* the tagger of the adversarial run, for ONNX runtimes (as the analysis put on HEPData) */
        const char *onnx_out[1] = {"scores"};
        char path[1024];
        snprintf(path, sizeof path, "%s/llp_tagger.onnx", a->out);
        if (advnn_onnx_save(g, path, 1, onnx_out, NULL) != ADVNN_OK) { fprintf(stderr, PROG ": %s\n", advnn_last_error()); rc = 1; }
        else printf("  ONNX: %s (inputs clusters, tracks, muons, jet as advnn's; output scores)\n", path);
    }
    advnn_trainer_free(tr);
    advnn_ws_free(c->ws);
    c->ws = NULL;
    advnn_graph_free(g);
    return rc;
}

/* ---------------------------------------------------------------- outputs */
static FILE *open_out(const char *dir, const char *name) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "w"))) fprintf(stderr, PROG ": cannot write '%s': %s\n", path, strerror(errno));
    return f;
}

static int write_outputs(const char *dir, const run_t *runs, int nrun) {
    FILE *f;
    int r, i, k, b;
    if (!(f = open_out(dir, "epochs.csv"))) return 1;
    fprintf(f, "sf,epoch,main_ce,adv_bce,ks_qcd,ks_sig,ks_bib,p_qcd,p_sig,p_bib,sum_ks,auc,seconds,kappa\n");
    for (r = 0; r < nrun; r++)
        for (i = 0; i < runs[r].nrows; i++) {
            const row_t *x = &runs[r].rows[i];
            fprintf(f, "%g,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.6g,%.6g,%.6f,%.6f,%.3f,%g\n", runs[r].sf, x->epoch + 1, x->ce, x->bce,
                    x->ks[0], x->ks[1], x->ks[2], x->p[0], x->p[1], x->p[2], x->sumks, x->auc, x->sec, runs[r].kappa);
        }
    fclose(f);
    if (!(f = open_out(dir, "summary.csv"))) return 1;
    fprintf(f, "sf,chosen_epoch,auc,r50,r50_is_lower_limit,sum_ks,ks_qcd,ks_sig,ks_bib,p_qcd,p_sig,p_bib,ks_threshold,adv_bce,adv_bce_test,kappa\n");
    for (r = 0; r < nrun; r++) {
        const row_t *x = &runs[r].fin;
        fprintf(f, "%g,%d,%.6f,%.4f,%d,%.6f,%.6f,%.6f,%.6f,%.6g,%.6g,%.6g,%.6f,%.6f,%.6f,%g\n", runs[r].sf, runs[r].chosen + 1, x->auc, runs[r].r50, runs[r].r50_low,
                x->sumks, x->ks[0], x->ks[1], x->ks[2], x->p[0], x->p[1], x->p[2], runs[r].thr, x->bce, x->bce_test, runs[r].kappa);
    }
    fclose(f);
    if (!(f = open_out(dir, "score_hists.csv"))) return 1;
    fprintf(f, "sf,score,logit_lo,logit_hi,sim,data,kappa\n");
    for (r = 0; r < nrun; r++)
        for (k = 0; k < 3; k++)
            for (b = 0; b < NBINS; b++)
                fprintf(f, "%g,%s,%.4f,%.4f,%.6g,%.6g,%g\n", runs[r].sf, score_name[k], -HLIM + 2 * HLIM * b / NBINS, -HLIM + 2 * HLIM * (b + 1) / NBINS,
                        runs[r].hist[k][0][b], runs[r].hist[k][1][b], runs[r].kappa);
    fclose(f);
    if (!(f = open_out(dir, "roc.csv"))) return 1;
    fprintf(f, "sf,eff_sig,eff_bkg,kappa\n");
    for (r = 0; r < nrun; r++) {   /* at most ~500 points per curve, always the end points */
        int64_t n = runs[r].nroc, step = n > 500 ? n / 500 : 1, j;
        for (j = 0; j < n; j++)
            if (j % step == 0 || j == n - 1) fprintf(f, "%g,%.6g,%.6g,%g\n", runs[r].sf, runs[r].roc_s[j], runs[r].roc_b[j], runs[r].kappa);
    }
    fclose(f);
    return 0;
}

/* ---------------------------------------------------------------- summary */
/* The SF = 0 run r[0] beside each other run (the adversary's SF > 0, DisCo), one column each. */
static void print_summary(const run_t *r, int nrun, int quick) {
    const row_t *a = &r[0].fin;
    double thr3 = 3 * r[0].thr;
    int k, j;
    char cell[48];
    printf("\n=== before / after (chosen epochs; control-region test split for KS, main test split for AUC) ===\n");
    printf("                          SF = 0            ");
    for (j = 1; j < nrun; j++) {
        if (r[j].kappa > 0) snprintf(cell, sizeof cell, "DisCo kappa = %g", r[j].kappa);
        else snprintf(cell, sizeof cell, "SF = %g", r[j].sf);
        printf(" %-22s", cell);
    }
    printf("\n  chosen epoch            %-18d", r[0].chosen + 1);
    for (j = 1; j < nrun; j++) printf(" %-22d", r[j].chosen + 1);
    printf("\n  AUC sig vs QCD+BIB      %-18.4f", a->auc);
    for (j = 1; j < nrun; j++) printf(" %-22.4f", r[j].fin.auc);
    printf("\n  rejection at eps_S 0.5  ");
    for (j = 0; j < nrun; j++) {
        snprintf(cell, sizeof cell, "%s%.1f", r[j].r50_low ? "> " : "", r[j].r50);
        printf(j ? " %-22s" : "%-18s", cell);
    }
    for (j = 0; j < nrun; j++) if (r[j].r50_low) { printf("   (\"> \": no test background jet passes the cut)"); break; }
    for (k = 0; k < 3; k++) {
        printf("\n  KS %-6s (p)           ", score_name[k]);
        for (j = 0; j < nrun; j++) {
            snprintf(cell, sizeof cell, "%.4f (%.2e)", r[j].fin.ks[k], r[j].fin.p[k]);
            printf(j ? " %-22s" : "%-18s", cell);
        }
    }
    printf("\n  sum KS                  %-18.4f", a->sumks);
    for (j = 1; j < nrun; j++) printf(" %-22.4f", r[j].fin.sumks);
    printf("\n  adversary BCE train/test");
    for (j = 0; j < nrun; j++) {
        snprintf(cell, sizeof cell, "%.4f / %.4f", r[j].fin.bce, r[j].fin.bce_test);
        printf(j ? " %-22s" : " %-17s", cell);
    }
    printf("   (ln 2 = 0.6931: blind)\n");
    printf("  KS threshold (alpha 0.05, effective N): %.4f per score, %.4f for the sum of 3\n", r[0].thr, thr3);
    printf("  for reference, last epoch: AUC %.4f, sum KS %.4f (SF = 0)", r[0].rows[r[0].nrows - 1].auc, r[0].rows[r[0].nrows - 1].sumks);
    for (j = 1; j < nrun; j++)
        printf(";  AUC %.4f, sum KS %.4f (%s)", r[j].rows[r[j].nrows - 1].auc, r[j].rows[r[j].nrows - 1].sumks, r[j].name);
    printf("\n");
    if (quick) printf("\n(quick mode: tiny sample and 2 epochs, the criteria below are not expected to pass)\n");
    printf("%s SF=0 sum KS above 3x the summed statistical threshold: %.4f vs 3 x %.4f = %.4f\n",
           a->sumks > 3 * thr3 ? "PASS" : "FAIL", a->sumks, thr3, 3 * thr3);
    for (j = 1; j < nrun; j++) {
        const row_t *b = &r[j].fin, *last = &r[j].rows[r[j].nrows - 1];
        double drop = b->sumks > 0 ? a->sumks / b->sumks : INFINITY, dauc = a->auc - b->auc;
        printf("%s %s sum KS drops >= 2x at AUC loss <= 0.02: sum KS %.4f -> %.4f (%.2fx), AUC %.4f -> %.4f (loss %.4f)\n",
               drop >= 2 && dauc <= 0.02 ? "PASS" : "FAIL", r[j].name, a->sumks, b->sumks, drop, a->auc, b->auc, dauc);
        if (r[j].kappa > 0)   /* the probe was never in DisCo's loss: a blind probe is independent evidence */
            printf("%s %s probe adversary (not in the loss) is blind on held-out jets: BCE %.4f within 0.03 of ln 2 (train %.4f)\n",
                   fabs(b->bce_test - log(2.0)) <= 0.03 ? "PASS" : "FAIL", r[j].name, b->bce_test, b->bce);
        else
            printf("%s %s adversary BCE ends within 0.03 of ln 2: last epoch %.4f (training batches); chosen epoch %.4f, held out %.4f\n",
                   fabs(last->bce - log(2.0)) <= 0.03 ? "PASS" : "FAIL", r[j].name, last->bce, b->bce, b->bce_test);
    }
}

int main(int argc, char **argv) {
    args_t a;
    ctx_t c;
    run_t *runs;
    int rc, i, nrun = 0;
    double t0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((rc = parse_args(argc, argv, &a)) != 0) return rc == 1 ? 0 : rc;
    if (mkdir(a.out, 0777) != 0 && errno != EEXIST) { fprintf(stderr, PROG ": cannot create '%s': %s\n", a.out, strerror(errno)); return 1; }
    advnn_set_threads((int)a.threads);
    t0 = now_s();
    memset(&c, 0, sizeof c);
    runs = (run_t *)calloc(3, sizeof(run_t));
    if (!runs) { fprintf(stderr, PROG ": out of memory\n"); return 1; }
    rc = prepare(&c, &a);
    if (!rc) {
        char what[64];
        if (a.method == 0) snprintf(what, sizeof what, "SF = %g", a.sf);
        else if (a.method == 1) snprintf(what, sizeof what, "DisCo kappa = %g", a.kappa);
        else snprintf(what, sizeof what, "SF = %g vs DisCo kappa = %g", a.sf, a.kappa);
        printf("advnn %d.%d.%d (%s, %d thread%s): CalRatio LLP tagger, SF = 0 vs %s\n", ADVNN_VERSION_MAJOR, ADVNN_VERSION_MINOR,
               ADVNN_VERSION_PATCH, advnn_simd_name(), (int)a.threads, a.threads > 1 ? "s" : "", what);
        printf("data: %lld + %lld training jets (main + control region), %lld + %lld test jets; %ld epochs of %lld batches of 512 + 512;\n"
               "      Nadam lr %.1e (tagger) / %.1e (adversary), 2 adversary steps per batch, seed %ld%s\n",
               (long long)c.tr.n, (long long)c.crtr.n, (long long)c.te.n, (long long)c.crte.n, a.epochs, (long long)((c.tr.n + 511) / 512),
               a.lr_main, a.lr_adv, a.seed, a.quick ? "  [quick mode]" : "");
        runs[0].sf = 0;
        nrun = 1;
        if (a.method != 1) runs[nrun++].sf = a.sf;
        if (a.method != 0) runs[nrun++].kappa = a.kappa;
        for (i = 0; i < nrun; i++) {
            if (runs[i].kappa > 0) snprintf(runs[i].name, sizeof runs[i].name, "DisCo kappa=%g", runs[i].kappa);
            else snprintf(runs[i].name, sizeof runs[i].name, "SF=%g", runs[i].sf);
        }
        for (i = 0; i < nrun && !rc; i++) rc = train_run(&c, &a, &runs[i]);
    }
    if (!rc) rc = write_outputs(a.out, runs, nrun);
    if (!rc) {
        print_summary(runs, nrun, a.quick);
        printf("outputs in %s (epochs.csv, summary.csv, score_hists.csv, roc.csv); plots: /usr/bin/python3 tools/plot_llp_tagger.py %s\n", a.out, a.out);
        printf("total wall time %.1f s\n", now_s() - t0);
    }
    for (i = 0; i < 3; i++) { free(runs[i].roc_s); free(runs[i].roc_b); }
    free(runs);
    advnn_dataset_free(c.train); advnn_dataset_free(c.cr_train);
    free_split(&c.tr); free_split(&c.te); free_split(&c.crtr); free_split(&c.crte);
    free(c.sig_label); free(c.cr_sim); free(c.cr_dat); free(c.w_sim); free(c.w_dat);
    return rc;
}
