/* wtagger: mass-decorrelated W tagger (W1 of WORKLOADS.md; PHYSICS.md sections 1.2, 1.3, 1.6, 5).
 *
 * A classifier (10 standardised substructure features -> [BN -> Dense 64 ReLU] x 3 -> Dense 1) separates
 * W jets from QCD. Cutting on it sculpts the QCD mass spectrum towards m_W. An adversary sees the
 * classifier's score (through a gradient-reversal node) and the scaled log pT and predicts the QCD jet
 * mass with a 20-component truncated Gaussian mixture; training L_clf - lambda * L_adv removes the mass
 * information from the score. lambda = 0 is the plain NN.
 *
 * Schedule (Louppe et al. / ATLAS): the classifier is pre-trained once; every lambda starts from that
 * network. lambda = 0 continues training the classifier alone for as many epochs as the adversarial runs
 * train it jointly (the same total number of classifier epochs), then an adversary is trained on the
 * frozen NN only to show how much mass information its score carries. lambda > 0: adversary pre-training
 * on the frozen classifier, then joint epochs through the reversal node with the classifier's learning rate
 * well below the adversary's, and a final annealing phase (both rates / 10) so that the minimax settles
 * instead of stopping mid-oscillation (see tests/test_adversarial.c, test_louppe_toy).
 *
 * The other decorrelation methods on the same data and the same classifier (--method, DECORRELATION.md):
 * disco (BCE + kappa * DisCo of the probability and the mass, background only), mode (BCE + alpha *
 * MoDe[0]; 10 m bins on batches of 16384, the reference's W-tagging settings: with 32 bins on the shared
 * 1024 rows each bin's CDF has ~16 background jets and cannot see the ~3% tail that passes the cut,
 * README), ddt (the NN's score minus a DDT threshold map in rho = log(m^2/pT) and pT), planing (the
 * classifier trained from scratch on weights that flatten each class's mass spectrum, to the power
 * alpha). DisCo and MoDe continue from the pre-trained classifier for the joint epochs, as the NN does.
 * --method all prints one table (method, strength, AUC, R50, 1/JSD, floor, training seconds), a
 * PASS/FAIL line per method at a moderate strength (1/JSD >= 5x the NN's) and writes methods.csv
 * (plot: tools/plot_wtagger.py draws R50 vs 1/JSD, every method's front). --full scans 4-5 strengths.
 *
 * Data: build/data/wtag_{train,test}_{x,m,pt,y,w}.npy from tools/gen_wtagger.c.
 * Output (--out, default build/wtagger): summary.csv, epochs.csv, roc.csv, mass_hists.csv, profile.csv;
 * tools/plot_wtagger.py OUTDIR turns them into PNGs.
 */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "cli.h"
#include "workloads.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NFEAT 10
#define MAX_LAMBDAS 16
#define NBINS 50          /* JSD and mass histograms: 50 bins on [50, 300) GeV (ATLAS) */
#define MLO 50.0
#define MHI 300.0
#define NPROF 10          /* <score> vs mass profile bins */
#define NPT_ENT 8         /* pT bins for the conditional entropy H(m | pT) */
#define FLOOR_REPEATS 10  /* random splits for the JSD statistical floor */
#define TOL_MONO 0.10     /* relative tolerance of the monotonicity check */
#define WLO 65.0          /* W mass window for the rejection at fixed mass */
#define WHI 95.0

/* decorrelation methods compared by --method */
enum { M_NN, M_ADV, M_DISCO, M_MODE, M_DDT, M_PLANE, NMETH };
static const char *const meth_name[NMETH] = { "nn", "adversary", "disco", "mode", "ddt", "planing" };
static const char *const meth_knob[NMETH] = { "-", "lambda", "kappa", "alpha", "eff_B", "alpha" };
/* the moderate strength of the PASS lines and the default scan (the demo); --full scans more */
static const double meth_moderate[NMETH] = { 0, 10, 30, 1000, 0.05, 1 };
static const double meth_full[NMETH][5] = { {0}, {1, 3, 10, 30, 100}, {3, 10, 30, 100, 300}, {30, 100, 300, 1000, 3000},
                                            {0.03, 0.05, 0.1, 0.2, 0}, {0.25, 0.5, 0.75, 1, 0} };
static const int meth_nfull[NMETH] = { 1, 5, 5, 5, 4, 4 };
#define RHO_LO 0.5        /* DDT map: rho = log(m^2 / pT) in 25 bins on [0.5, 5.8), pT in 4 bins on [300, 1500) GeV */
#define RHO_HI 5.8
#define NRHO 25
#define NPTB 4

static const char *prog = "wtagger";

/* ------------------------------------------------------------------ configuration */
typedef struct {
    const char *out, *data;
    long seed, threads, ntrain, ntest, batch, mode_bins, mode_batch;   /* mode_batch 0: batch */
    int quick, nlam;
    double lam[MAX_LAMBDAS];
    int pre_clf, pre_adv, joint, anneal, ramp;   /* epochs */
    double lr_pre, lr_clf, lr_adv;
    unsigned methods;                            /* bit k: method k; 0 = the classic NN + adversary scan */
    int full, nstr[NMETH];
    double str[NMETH][MAX_LAMBDAS];              /* strengths per method (--scan) */
} config;

static void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    c->out = "build/wtagger"; c->data = "build/data";
    c->seed = 1; c->threads = 1; c->ntrain = 200000; c->ntest = 200000; c->batch = 1024; c->mode_bins = 10; c->mode_batch = 16384;
    c->nlam = 4; c->lam[0] = 0; c->lam[1] = 1; c->lam[2] = 10; c->lam[3] = 30;
    c->pre_clf = 10; c->pre_adv = 5; c->joint = 20; c->anneal = -1; c->ramp = 0;
    c->lr_pre = 1e-3; c->lr_clf = 1e-4; c->lr_adv = 1e-2;
}

static void usage(void) {
    printf("usage: %s [options]\n"
           "Trains the plain NN (lambda 0) and the mass-decorrelated adversarial NN for each lambda and\n"
           "prints AUC, R50, 1/JSD of the QCD mass (pass vs fail at eps_S = 50%%) with its random-split\n"
           "floor, the adversary's NLL vs the QCD mass entropy and the <score> vs mass profile.\n"
           "  --data DIR        input .npy files (default build/data)\n"
           "  --out DIR         output directory (default build/wtagger)\n"
           "  --lambdas L,L,..  lambda values (default 0,1,10,30; 0 = plain NN)\n"
           "  --lambda X        a single lambda\n"
           "  --epochs N        joint adversarial epochs (default 20; the NN trains as many extra epochs)\n"
           "  --pre-epochs N    classifier pre-training epochs (default 10)\n"
           "  --adv-epochs N    adversary pre-training epochs (default 5)\n"
           "  --anneal N        last joint epochs with both learning rates / 10 (default: a quarter, 5)\n"
           "  --ramp N          lambda ramps up linearly over the first N joint epochs (default 0)\n"
           "  --lr-pre X --lr-clf X --lr-adv X   Adam rates: pre-training, classifier and adversary in\n"
           "                    the joint phase (defaults 1e-3, 1e-4, 1e-2)\n"
           "  --batch N         mini-batch size (default 1024)\n"
           "  --mode-bins N     MoDe's m bins (default 10) and --mode-batch N its batch (default 16384): the\n"
           "                    reference's W-tagging settings; each bin's CDF needs enough background jets\n"
           "  --ntrain N --ntest N   use at most N rows of each split (default 200000 each)\n"
           "  --seed N          weight initialisation and shuffling (default 1)\n"
           "  --threads N       worker threads (default 1)\n"
           "  --method M,M,..   compare methods: nn adversary disco mode ddt planing, or all; each at its\n"
           "                    moderate strength (adversary lambda 10, disco kappa 30, mode alpha 1000, ddt\n"
           "                    eff_B 0.05, planing alpha 1) unless --scan or --full; prints one table and\n"
           "                    writes methods.csv (without --method: the NN and the adversary per --lambdas)\n"
           "  --scan M:S,S,..   strengths of method M (repeatable), e.g. --scan disco:1,10,100\n"
           "  --full            scan 4-5 strengths of every selected method (the comparison's fronts)\n"
           "  --quick           tiny smoke test (not expected to pass the acceptance criteria)\n", prog);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "0,1,10,30" -> sorted, de-duplicated list (the monotonicity check reads it in order). */
static int parse_lambdas(const char *s, config *c) {
    char buf[512], *tok, *save = NULL;
    int n = 0, i, k = 0;
    if (strlen(s) >= sizeof buf) return 0;
    strcpy(buf, s);
    for (tok = buf; ; tok = NULL) {
        char *t = tok ? tok : save, *comma;
        if (!t) break;
        comma = strchr(t, ',');
        if (comma) { *comma = 0; save = comma + 1; } else save = NULL;
        if (n == MAX_LAMBDAS || !parse_double(t, 0, 1e6, &c->lam[n])) return 0;
        n++;
    }
    if (n == 0) return 0;
    qsort(c->lam, (size_t)n, sizeof(double), cmp_double);
    for (i = 0; i < n; i++) if (k == 0 || c->lam[i] != c->lam[k - 1]) c->lam[k++] = c->lam[i];
    c->nlam = k;
    return 1;
}

/* the next comma-separated token of *p (NULL at the end); *p moves past it */
static char *tok_next(char **p) {
    char *t = *p, *comma;
    if (!t) return NULL;
    comma = strchr(t, ',');
    if (comma) { *comma = 0; *p = comma + 1; } else *p = NULL;
    return t;
}

/* "disco,mode" or "all" -> bit set; 0 on an unknown name */
static unsigned parse_methods(const char *s) {
    char buf[256], *t, *rest = buf;
    unsigned m = 0;
    int k;
    if (strlen(s) >= sizeof buf) return 0;
    strcpy(buf, s);
    while ((t = tok_next(&rest)) != NULL) {
        if (!strcmp(t, "all")) { m |= (1u << NMETH) - 1; continue; }
        for (k = 0; k < NMETH; k++) if (!strcmp(t, meth_name[k])) break;
        if (k == NMETH) return 0;
        m |= 1u << k;
    }
    return m;
}

/* "disco:1,3,10" -> c->str[M_DISCO] */
static int parse_scan(const char *s, config *c) {
    const char *colon = strchr(s, ':');
    char name[32], buf[512], *t, *rest = buf;
    int k, n = 0;
    if (!colon || colon - s >= (long)sizeof name || strlen(colon + 1) >= sizeof buf) return 0;
    memcpy(name, s, (size_t)(colon - s)); name[colon - s] = 0;
    for (k = 1; k < NMETH; k++) if (!strcmp(name, meth_name[k])) break;
    if (k == NMETH) return 0;
    strcpy(buf, colon + 1);
    while ((t = tok_next(&rest)) != NULL) {
        double v;
        if (n == MAX_LAMBDAS || !parse_double(t, k == M_DDT ? 1e-4 : 1e-6, k == M_DDT ? 0.9999 : 1e6, &v)) return 0;
        c->str[k][n++] = v;
    }
    if (n == 0) return 0;
    qsort(c->str[k], (size_t)n, sizeof(double), cmp_double);
    c->nstr[k] = n;
    return 1;
}

static int bad_arg(const char *a) {
    fprintf(stderr, "%s: bad or incomplete argument '%s' (try --help)\n", prog, a);
    return 2;
}

/* Returns 0 to continue, 1 after --help, 2 on a bad argument. */
static int parse_args(int argc, char **argv, config *c) {
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 1; }
        if (!strcmp(a, "--quick")) { c->quick = 1; continue; }
        if (!strcmp(a, "--full")) { c->full = 1; continue; }
        if (!v) return bad_arg(a);
        i++;
        if (!strcmp(a, "--out")) c->out = v;
        else if (!strcmp(a, "--data")) c->data = v;
        else if (!strcmp(a, "--lambdas") || !strcmp(a, "--lambda")) {
            if (!parse_lambdas(v, c) || (!strcmp(a, "--lambda") && c->nlam != 1)) return bad_arg(v);
        }
        else if (!strcmp(a, "--method")) { if (!(c->methods = parse_methods(v))) return bad_arg(v); }
        else if (!strcmp(a, "--scan")) { if (!parse_scan(v, c)) return bad_arg(v); }
        else if (!strcmp(a, "--seed") && parse_long(v, 0, 2147483647L, &c->seed)) {}
        else if (!strcmp(a, "--threads") && parse_long(v, 1, 64, &c->threads)) {}
        else if (!strcmp(a, "--batch") && parse_long(v, 16, 65536, &c->batch)) {}
        else if (!strcmp(a, "--mode-bins") && parse_long(v, 1, 1024, &c->mode_bins)) {}
        else if (!strcmp(a, "--mode-batch") && parse_long(v, 16, 1 << 20, &c->mode_batch)) {}
        else if (!strcmp(a, "--ntrain") && parse_long(v, 100, 100000000L, &c->ntrain)) {}
        else if (!strcmp(a, "--ntest") && parse_long(v, 100, 100000000L, &c->ntest)) {}
        else if (!strcmp(a, "--epochs") && parse_long(v, 1, 100000, &l)) c->joint = (int)l;
        else if (!strcmp(a, "--pre-epochs") && parse_long(v, 1, 100000, &l)) c->pre_clf = (int)l;
        else if (!strcmp(a, "--adv-epochs") && parse_long(v, 0, 100000, &l)) c->pre_adv = (int)l;
        else if (!strcmp(a, "--anneal") && parse_long(v, 0, 100000, &l)) c->anneal = (int)l;
        else if (!strcmp(a, "--ramp") && parse_long(v, 0, 100000, &l)) c->ramp = (int)l;
        else if (!strcmp(a, "--lr-pre") && parse_double(v, 1e-8, 1, &c->lr_pre)) {}
        else if (!strcmp(a, "--lr-clf") && parse_double(v, 1e-8, 1, &c->lr_clf)) {}
        else if (!strcmp(a, "--lr-adv") && parse_double(v, 1e-8, 1, &c->lr_adv)) {}
        else { fprintf(stderr, "%s: bad value '%s' for %s (try --help)\n", prog, v, a); return 2; }
    }
    if (c->anneal < 0) c->anneal = c->joint / 4;   /* default: the last quarter of the joint epochs */
    if (c->anneal > c->joint) { fprintf(stderr, "%s: --anneal %d exceeds --epochs %d\n", prog, c->anneal, c->joint); return 2; }
    if (c->methods) {   /* the comparison: the NN always (the reference of the PASS lines); strengths per method */
        int k, j;
        c->methods |= 1u << M_NN;
        for (k = 1; k < NMETH; k++) {
            if (c->nstr[k] > 0) continue;
            if (c->full) { c->nstr[k] = meth_nfull[k]; for (j = 0; j < meth_nfull[k]; j++) c->str[k][j] = meth_full[k][j]; }
            else { c->nstr[k] = 1; c->str[k][0] = meth_moderate[k]; }
        }
        c->nlam = 1; c->lam[0] = 0;   /* lambdas: 0 and the adversary's strengths */
        if (c->methods & (1u << M_ADV))
            for (j = 0; j < c->nstr[M_ADV] && c->nlam < MAX_LAMBDAS; j++) c->lam[c->nlam++] = c->str[M_ADV][j];
    }
    return 0;
}

/* ------------------------------------------------------------------ data */
typedef struct {
    advnn_tensor *x, *m, *pt, *y, *w;    /* from the files */
    advnn_tensor *ms, *lpt, *wadv;       /* scaled mass, scaled log pT, background-only adversary weights */
    int64_t n;
    advnn_dataset *d;
} split;

static void split_free(split *s) {
    advnn_tensor *t[8];
    int i;
    t[0] = s->x; t[1] = s->m; t[2] = s->pt; t[3] = s->y; t[4] = s->w; t[5] = s->ms; t[6] = s->lpt; t[7] = s->wadv;
    for (i = 0; i < 8; i++) advnn_tensor_free(t[i]);
    advnn_dataset_free(s->d);
    memset(s, 0, sizeof *s);
}

static void generator_hint(const char *path) {
    fprintf(stderr, "%s: missing data file %s\n"
            "  make it with: mkdir -p build/tools build/data && gcc -O2 -std=c11 -I. tools/gen_wtagger.c -o build/tools/gen_wtagger -lsleef -lm\n"
            "                build/tools/gen_wtagger --out build/data --n 100000 --seed 1   (or: make demo)\n", prog, path);
}

/* Loads <dir>/wtag_<split>_<name>.npy, keeping at most maxrows rows; cols = 0 for a 1-D column (N or N x 1). */
static advnn_tensor *load_col(const char *dir, const char *sp, const char *name, int cols, int64_t maxrows) {
    char path[1024];
    advnn_tensor *t, *r;
    int64_t n, shp[2];
    FILE *f;
    snprintf(path, sizeof path, "%s/wtag_%s_%s.npy", dir, sp, name);
    if (!(f = fopen(path, "rb"))) { generator_hint(path); return NULL; }
    fclose(f);
    if (!(t = advnn_npy_load(path))) { fprintf(stderr, "%s: %s: %s\n", prog, path, advnn_last_error()); return NULL; }
    if (cols ? (t->ndim != 2 || t->shape[1] != cols) : !(t->ndim == 1 || (t->ndim == 2 && t->shape[1] == 1)) || t->shape[0] < 1) {
        fprintf(stderr, "%s: %s: expected shape (N%s), got %d dimensions\n", prog, path, cols ? ", 10" : "", t->ndim);
        advnn_tensor_free(t);
        return NULL;
    }
    n = t->shape[0] < maxrows ? t->shape[0] : maxrows;
    shp[0] = n; shp[1] = cols;
    if (!(r = advnn_tensor_new(cols ? 2 : 1, shp))) { advnn_tensor_free(t); return NULL; }
    memcpy(r->data, t->data, (size_t)r->size * sizeof(float));   /* rows are shuffled: the first n are a fair sample */
    advnn_tensor_free(t);
    return r;
}

static advnn_tensor *new_col(int64_t n) {
    int64_t s[1];
    s[0] = n;
    return advnn_tensor_new(1, s);
}

/* Loads one split and checks it; returns 0 ok, 1 error (message printed). */
static int load_split(const char *dir, const char *sp, int64_t maxrows, split *s) {
    int64_t j, nsig = 0;
    memset(s, 0, sizeof *s);
    /* stop at the first file that is missing or bad */
    if (!(s->x = load_col(dir, sp, "x", NFEAT, maxrows)) || !(s->m = load_col(dir, sp, "m", 0, maxrows)) ||
        !(s->pt = load_col(dir, sp, "pt", 0, maxrows)) || !(s->y = load_col(dir, sp, "y", 0, maxrows)) ||
        !(s->w = load_col(dir, sp, "w", 0, maxrows))) return 1;
    s->n = s->x->shape[0];
    if (s->m->shape[0] != s->n || s->pt->shape[0] != s->n || s->y->shape[0] != s->n || s->w->shape[0] != s->n) {
        fprintf(stderr, "%s: %s split: the files have different numbers of rows\n", prog, sp);
        return 1;
    }
    for (j = 0; j < s->n; j++) {
        float y = s->y->data[j];
        if ((y != 0.0f && y != 1.0f) || !(s->pt->data[j] > 0) || !isfinite(s->m->data[j]) || !(s->w->data[j] >= 0)) {
            fprintf(stderr, "%s: %s split, row %lld: label %g (need 0/1), pT %g (> 0), mass %g, weight %g (>= 0)\n", prog, sp,
                    (long long)j, y, s->pt->data[j], s->m->data[j], s->w->data[j]);
            return 1;
        }
        nsig += y == 1.0f;
    }
    if (nsig == 0 || nsig == s->n) { fprintf(stderr, "%s: %s split has only one class\n", prog, sp); return 1; }
    return 0;
}

/* Standardises x with the training split's mean and standard deviation (the test split reuses them). */
static void standardise(split *tr, split *te) {
    int k;
    for (k = 0; k < NFEAT; k++) {
        double s = 0, s2 = 0, mu, sd;
        int64_t i;
        for (i = 0; i < tr->n; i++) { double v = tr->x->data[i * NFEAT + k]; s += v; s2 += v * v; }
        mu = s / (double)tr->n;
        sd = sqrt(fmax(s2 / (double)tr->n - mu * mu, 0.0));
        if (!(sd > 0)) sd = 1;
        for (i = 0; i < tr->n; i++) tr->x->data[i * NFEAT + k] = (float)((tr->x->data[i * NFEAT + k] - mu) / sd);
        for (i = 0; i < te->n; i++) te->x->data[i * NFEAT + k] = (float)((te->x->data[i * NFEAT + k] - mu) / sd);
    }
}

/* Adversary inputs and targets; the mixture lives on [0, 1], so masses are clipped just inside it. */
static int derive(split *s, const char *sp) {
    int64_t i, clipped = 0;
    const double l0 = log(300.0), l1 = log(1500.0);
    s->ms = new_col(s->n); s->lpt = new_col(s->n); s->wadv = new_col(s->n);
    if (!s->ms || !s->lpt || !s->wadv) return 1;
    for (i = 0; i < s->n; i++) {
        double m = (s->m->data[i] - MLO) / (MHI - MLO);
        if (m < 0 || m >= 1) clipped++;
        m = fmin(fmax(m, 1e-4), 1 - 1e-4);
        s->ms->data[i] = (float)m;
        s->lpt->data[i] = (float)((log(s->pt->data[i]) - l0) / (l1 - l0));
    }
    if (clipped) fprintf(stderr, "%s: note: %lld %s jets outside [50, 300) GeV clipped for the adversary\n", prog, (long long)clipped, sp);
    if (advnn_background_weights(s->y->data, s->w->data, s->n, s->wadv->data) != ADVNN_OK) {
        fprintf(stderr, "%s: %s split: %s\n", prog, sp, advnn_last_error());
        return 1;
    }
    s->d = advnn_dataset_new();
    if (!s->d || advnn_dataset_add(s->d, "x", s->x) || advnn_dataset_add(s->d, "y", s->y) || advnn_dataset_add(s->d, "w", s->w) ||
        advnn_dataset_add(s->d, "lpt", s->lpt) || advnn_dataset_add(s->d, "ms", s->ms) || advnn_dataset_add(s->d, "wadv", s->wadv)) {
        fprintf(stderr, "%s: %s split: %s\n", prog, sp, advnn_last_error());
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ network */
typedef struct { advnn_graph *g; int lc, la, rev; } net;

/* Classifier (group "clf") and adversary (group "adv"): [rev(score), scaled log pT] -> Dense 64 ReLU ->
 * three Dense 20 heads -> truncated 20-component mixture NLL of the scaled mass, background only. */
static int build_net(net *nt, uint64_t seed) {
    int ten = NFEAT, one = 1, x, y, w, lpt, ms, wa, logit, s, h, ins[2];
    advnn_graph *g = advnn_graph_new();
    if (!g) return 1;
    nt->g = g;
    x = advnn_input(g, "x", 1, &ten); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
    lpt = advnn_input(g, "lpt", 1, &one); ms = advnn_input(g, "ms", 1, &one); wa = advnn_input(g, "wadv", 1, &one);
    advnn_group(g, "clf");
    logit = wl_w1_classifier(g, x);
    s = advnn_name(g, advnn_activation(g, logit, ADVNN_ACT_SIGMOID), "prob");
    nt->lc = advnn_loss_bce_logits(g, logit, y, w);
    advnn_group(g, "adv");
    ins[0] = nt->rev = advnn_grad_reverse(g, s, 0.0f);
    ins[1] = lpt;
    h = advnn_dense(g, advnn_concat(g, 2, ins), 64, ADVNN_ACT_RELU);
    nt->la = advnn_loss_mdn(g, advnn_dense(g, h, 20, ADVNN_ACT_LINEAR), advnn_dense(g, h, 20, ADVNN_ACT_LINEAR),
                            advnn_dense(g, h, 20, ADVNN_ACT_LINEAR), ms, wa, 1, 0.01f);
    if (advnn_graph_finalize(g, seed) != ADVNN_OK) { fprintf(stderr, "%s: building the network: %s\n", prog, advnn_last_error()); return 1; }
    return 0;
}

/* ------------------------------------------------------------------ metrics */
typedef struct {
    double lambda, auc, r50, r50_win, eps_b, cut, jsd, jsd_floor, adv_nll;
    double h_all[NBINS], h_pass[NBINS], h_fail[NBINS];
    double prof[NPROF], prof_err[NPROF];
} result;

/* Score threshold keeping a weighted fraction eff of the signal (events pass when score >= cut): the
 * largest t with W_S(score >= t) >= eff * W_S, by bisection between the smallest and largest score. */
static double signal_cut(const float *score, const float *y, const float *w, int64_t n, double eff) {
    double tot = 0, lo = INFINITY, hi = -INFINITY;
    int64_t i;
    int it;
    for (i = 0; i < n; i++) { if (y[i] > 0.5f) tot += w[i]; lo = fmin(lo, score[i]); hi = fmax(hi, score[i]); }
    for (it = 0; it < 50; it++) {
        double mid = 0.5 * (lo + hi), acc = 0;
        for (i = 0; i < n; i++) if (y[i] > 0.5f && score[i] >= mid) acc += w[i];
        if (acc >= eff * tot) lo = mid; else hi = mid;
    }
    return lo;
}

/* Background-only copies of score, mass and weight. */
typedef struct { float *s, *m, *w; int64_t n; } bkg;

static int bkg_make(const split *te, const float *score, bkg *b) {
    int64_t i;
    b->s = (float *)malloc((size_t)te->n * sizeof(float));
    b->m = (float *)malloc((size_t)te->n * sizeof(float));
    b->w = (float *)malloc((size_t)te->n * sizeof(float));
    b->n = 0;
    if (!b->s || !b->m || !b->w) return 1;
    for (i = 0; i < te->n; i++)
        if (te->y->data[i] < 0.5f) { b->s[b->n] = score[i]; b->m[b->n] = te->m->data[i]; b->w[b->n] = te->w->data[i]; b->n++; }
    return 0;
}

static void bkg_free(bkg *b) { free(b->s); free(b->m); free(b->w); }

/* Pass/fail mass histograms at the cut and the weighted <score> per mass bin. */
static void mass_hists(const bkg *b, double cut, result *r) {
    float *wp = (float *)malloc((size_t)b->n * sizeof(float)), *wf = (float *)malloc((size_t)b->n * sizeof(float));
    double sw[NPROF] = {0}, sws[NPROF] = {0}, sws2[NPROF] = {0}, sw2[NPROF] = {0};
    int64_t i;
    int k;
    if (wp && wf) {
        for (i = 0; i < b->n; i++) { int pass = b->s[i] >= cut; wp[i] = pass ? b->w[i] : 0.0f; wf[i] = pass ? 0.0f : b->w[i]; }
        advnn_histogram(b->m, b->w, b->n, MLO, MHI, NBINS, r->h_all);
        advnn_histogram(b->m, wp, b->n, MLO, MHI, NBINS, r->h_pass);
        advnn_histogram(b->m, wf, b->n, MLO, MHI, NBINS, r->h_fail);
    }
    free(wp); free(wf);
    for (i = 0; i < b->n; i++) {
        k = (int)floor((b->m[i] - MLO) / (MHI - MLO) * NPROF);
        if (k < 0 || k >= NPROF) continue;
        sw[k] += b->w[i]; sw2[k] += (double)b->w[i] * b->w[i];
        sws[k] += b->w[i] * b->s[i]; sws2[k] += b->w[i] * (double)b->s[i] * b->s[i];
    }
    for (k = 0; k < NPROF; k++) {
        double mu = sw[k] > 0 ? sws[k] / sw[k] : NAN, var = sw[k] > 0 ? fmax(sws2[k] / sw[k] - mu * mu, 0) : NAN;
        double neff = sw2[k] > 0 ? sw[k] * sw[k] / sw2[k] : 0;
        r->prof[k] = mu;
        r->prof_err[k] = neff > 1 ? sqrt(var / neff) : NAN;
    }
}

/* Differential entropy (nats) of the background mass scaled to [0, 1], from a 50-bin histogram, and the
 * same conditional on pT (NPT_ENT equal bins of scaled log pT): the adversary also sees pT, so a
 * score-blind adversary can reach H(m | pT) <= H(m). */
static double entropy_hist(const double *h, int nb) {
    double tot = 0, H = 0, d = 1.0 / nb;
    int k;
    for (k = 0; k < nb; k++) tot += h[k];
    if (!(tot > 0)) return NAN;
    for (k = 0; k < nb; k++) if (h[k] > 0) { double p = h[k] / tot; H -= p * log(p / d); }
    return H;
}

static void mass_entropy(const split *te, double *h_m, double *h_m_pt) {
    double hist[NPT_ENT][NBINS], all[NBINS], wsum[NPT_ENT], tot = 0, hc = 0;
    int64_t i;
    int k, j;
    memset(hist, 0, sizeof hist); memset(all, 0, sizeof all); memset(wsum, 0, sizeof wsum);
    for (i = 0; i < te->n; i++) {
        double w = te->w->data[i];
        if (te->y->data[i] > 0.5f) continue;
        k = (int)floor(te->ms->data[i] * NBINS);
        j = (int)floor(te->lpt->data[i] * NPT_ENT);
        if (k < 0 || k >= NBINS) continue;
        j = j < 0 ? 0 : j >= NPT_ENT ? NPT_ENT - 1 : j;
        hist[j][k] += w; all[k] += w; wsum[j] += w; tot += w;
    }
    *h_m = entropy_hist(all, NBINS);
    for (j = 0; j < NPT_ENT; j++) if (wsum[j] > 0) hc += wsum[j] / tot * entropy_hist(hist[j], NBINS);
    *h_m_pt = hc;
}

/* The adversary's mean -log p(m | score, pT) over the test background: the eval-mode objective on a copy
 * of the test set whose classifier weights are 0 and whose adversary weights have unit mean. */
static int adv_nll(advnn_trainer *tr, const split *te, double *nll) {
    advnn_tensor *w0 = new_col(te->n), *wa = new_col(te->n);
    advnn_dataset *d = advnn_dataset_new();
    double sw = 0;
    int64_t i;
    int rc = 1;
    if (w0 && wa && d) {
        for (i = 0; i < te->n; i++) if (te->y->data[i] < 0.5f) sw += te->w->data[i];
        for (i = 0; i < te->n; i++) wa->data[i] = te->y->data[i] < 0.5f ? (float)(te->w->data[i] * (double)te->n / sw) : 0.0f;
        if (!advnn_dataset_add(d, "x", te->x) && !advnn_dataset_add(d, "y", te->y) && !advnn_dataset_add(d, "w", w0) &&
            !advnn_dataset_add(d, "lpt", te->lpt) && !advnn_dataset_add(d, "ms", te->ms) && !advnn_dataset_add(d, "wadv", wa) &&
            advnn_evaluate(tr, d, nll) == ADVNN_OK) rc = 0;
    }
    if (rc) fprintf(stderr, "%s: adversary NLL: %s\n", prog, advnn_last_error());
    advnn_dataset_free(d); advnn_tensor_free(w0); advnn_tensor_free(wa);
    return rc;
}

/* ------------------------------------------------------------------ output files */
typedef struct {
    FILE *epochs, *roc, *hists, *prof, *summary;
} outputs;

static FILE *open_out(const char *dir, const char *name, const char *header) {
    char path[1024];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!(f = fopen(path, "w"))) { fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno)); return NULL; }
    fputs(header, f);
    return f;
}

static int outputs_open(const char *dir, outputs *o) {
    memset(o, 0, sizeof *o);
    o->epochs = open_out(dir, "epochs.csv", "lambda,epoch,phase,lambda_eff,clf_loss,adv_loss,seconds,lr_clf,lr_adv\n");
    o->roc = open_out(dir, "roc.csv", "lambda,eff_sig,eff_bkg\n");
    o->hists = open_out(dir, "mass_hists.csv", "lambda,m_lo,m_hi,all,pass,fail\n");
    o->prof = open_out(dir, "profile.csv", "lambda,m_lo,m_hi,mean_score,err\n");
    o->summary = open_out(dir, "summary.csv", "lambda,auc,r50,r50_window,eps_b,cut,inv_jsd,inv_jsd_floor,adv_nll,h_m,h_m_given_pt\n");
    return !(o->epochs && o->roc && o->hists && o->prof && o->summary);
}

static int outputs_close(outputs *o) {
    FILE *f[5];
    int i, bad = 0;
    f[0] = o->epochs; f[1] = o->roc; f[2] = o->hists; f[3] = o->prof; f[4] = o->summary;
    for (i = 0; i < 5; i++) if (f[i] && (ferror(f[i]) | fclose(f[i]))) bad = 1;
    if (bad) fprintf(stderr, "%s: error writing the output files\n", prog);
    return bad;
}

/* About 1000 ROC points (every k-th threshold). */
static int write_roc(FILE *f, double lam, const float *score, const split *te) {
    double *es = (double *)malloc((size_t)(te->n + 1) * sizeof(double)), *eb = (double *)malloc((size_t)(te->n + 1) * sizeof(double));
    int64_t np = 0, i, step;
    int rc = 1;
    if (es && eb && advnn_roc(score, te->y->data, te->w->data, te->n, es, eb, &np) == ADVNN_OK) {
        step = np / 1000 + 1;
        for (i = 0; i < np; i += step) fprintf(f, "%g,%.6g,%.6g\n", lam, es[i], eb[i]);
        if ((np - 1) % step) fprintf(f, "%g,%.6g,%.6g\n", lam, es[np - 1], eb[np - 1]);
        rc = 0;
    } else fprintf(stderr, "%s: ROC: %s\n", prog, advnn_last_error());
    free(es); free(eb);
    return rc;
}

static void write_result(outputs *o, const result *r, double h_m, double h_m_pt) {
    int k;
    for (k = 0; k < NBINS; k++)
        fprintf(o->hists, "%g,%g,%g,%.8g,%.8g,%.8g\n", r->lambda, MLO + k * (MHI - MLO) / NBINS, MLO + (k + 1) * (MHI - MLO) / NBINS,
                r->h_all[k], r->h_pass[k], r->h_fail[k]);
    for (k = 0; k < NPROF; k++)
        fprintf(o->prof, "%g,%g,%g,%.6g,%.6g\n", r->lambda, MLO + k * (MHI - MLO) / NPROF, MLO + (k + 1) * (MHI - MLO) / NPROF,
                r->prof[k], r->prof_err[k]);
    fprintf(o->summary, "%g,%.6f,%.4f,%.4f,%.6f,%.6f,%.4f,%.4f,%.5f,%.5f,%.5f\n", r->lambda, r->auc, r->r50, r->r50_win, r->eps_b, r->cut,
            1.0 / r->jsd, 1.0 / r->jsd_floor, r->adv_nll, h_m, h_m_pt);
}

/* R50 among jets with WLO <= m < WHI only: the rejection the score gets from substructure at fixed mass
 * (the part a mass-decorrelated tagger can keep). NAN when the window lacks a class. */
static double r50_window(const float *score, const split *te) {
    float *s = (float *)malloc((size_t)te->n * sizeof(float)), *y = (float *)malloc((size_t)te->n * sizeof(float));
    float *w = (float *)malloc((size_t)te->n * sizeof(float));
    int64_t i, k = 0, ns = 0;
    double r = NAN;
    if (s && y && w) {
        for (i = 0; i < te->n; i++)
            if (te->m->data[i] >= WLO && te->m->data[i] < WHI) {
                s[k] = score[i]; y[k] = te->y->data[i]; w[k] = te->w->data[i]; ns += y[k] > 0.5f; k++;
            }
        if (ns == 0 || ns == k || advnn_rejection_at(s, y, w, k, 0.5, &r, NULL, NULL) != ADVNN_OK) r = NAN;
    }
    free(s); free(y); free(w);
    return r;
}

/* The metrics of a score on the test split (AUC, R50, the pass/fail JSD and its floor, histograms). */
static int score_metrics(const float *score, const split *te, double lam, uint64_t seed, result *r) {
    bkg b;
    int rc = 1;
    double ach, wpass = 0, wtot = 0;
    int64_t i;
    memset(r, 0, sizeof *r);
    memset(&b, 0, sizeof b);
    r->lambda = lam; r->adv_nll = NAN;
    if (advnn_auc(score, te->y->data, te->w->data, te->n, &r->auc) != ADVNN_OK ||
        advnn_rejection_at(score, te->y->data, te->w->data, te->n, 0.5, &r->r50, &ach, NULL) != ADVNN_OK) {
        fprintf(stderr, "%s: metrics: %s\n", prog, advnn_last_error());
        goto done;
    }
    r->r50_win = r50_window(score, te);
    r->cut = signal_cut(score, te->y->data, te->w->data, te->n, 0.5);
    if (bkg_make(te, score, &b)) { fprintf(stderr, "%s: out of memory\n", prog); goto done; }
    for (i = 0; i < b.n; i++) { wtot += b.w[i]; if (b.s[i] >= r->cut) wpass += b.w[i]; }
    r->eps_b = wpass / wtot;
    /* an empty pass or fail histogram (tiny samples) leaves the JSD undefined: report NAN, go on */
    if (advnn_jsd_pass_fail(b.s, b.m, b.w, b.n, r->cut, MLO, MHI, NBINS, &r->jsd) != ADVNN_OK ||
        advnn_jsd_floor(b.m, b.w, b.n, r->eps_b, MLO, MHI, NBINS, FLOOR_REPEATS, seed, &r->jsd_floor) != ADVNN_OK) {
        fprintf(stderr, "%s: lambda %g: JSD undefined: %s\n", prog, lam, advnn_last_error());
        r->jsd = r->jsd_floor = NAN;
    }
    mass_hists(&b, r->cut, r);
    rc = 0;
done:
    bkg_free(&b);
    return rc;
}

/* All metrics of one trained network on the test split. */
static int evaluate_run(advnn_trainer *tr, net *nt, const split *te, double lam, uint64_t seed, outputs *o, result *r) {
    advnn_tensor *p = NULL;
    int rc = 1;
    if (advnn_predict(nt->g, te->d, "prob", &p) != ADVNN_OK) { fprintf(stderr, "%s: predict: %s\n", prog, advnn_last_error()); return 1; }
    if (!score_metrics(p->data, te, lam, seed, r) && !adv_nll(tr, te, &r->adv_nll) && !write_roc(o->roc, lam, p->data, te)) rc = 0;
    advnn_tensor_free(p);
    return rc;
}

/* ------------------------------------------------------------------ training */
typedef struct {
    const config *c;
    FILE *log;
    double lam;
    int offset;           /* epochs already run by earlier calls on this network (for the log) */
    int anneal_from;      /* epoch at which both rates drop / 10, -1 = none */
    double lr_clf, lr_adv;
    float *snap;          /* when set, the parameters are copied here after epoch snap_at */
    int snap_at;
    int64_t nparams;
} run_ctx;

static void set_rates(run_ctx *rc, advnn_trainer *tr, double clf, double adv) {
    rc->lr_clf = clf; rc->lr_adv = adv;
    advnn_trainer_set_optim(tr, "clf", advnn_adam((float)clf));
    advnn_trainer_set_optim(tr, "adv", advnn_adam((float)adv));
}

/* Per epoch: log, the annealing of both learning rates from the next epoch on, the pre-training snapshot. */
static int on_epoch(advnn_adv_epoch *e, void *user) {
    run_ctx *rc = (run_ctx *)user;
    static const char *const ph[3] = { "clf", "adv-pre", "joint" };
    fprintf(rc->log, "%g,%d,%s,%g,%.6f,%.6f,%.3f,%g,%g\n", rc->lam, rc->offset + e->epoch, ph[e->phase], e->lambda,
            e->main_loss, e->adv_loss, e->seconds, rc->lr_clf, rc->lr_adv);
    if (rc->snap && e->epoch == rc->snap_at) memcpy(rc->snap, advnn_params(e->graph, NULL), (size_t)rc->nparams * sizeof(float));
    if (e->epoch + 1 == rc->anneal_from) set_rates(rc, e->trainer, rc->c->lr_clf / 10, rc->c->lr_adv / 10);
    return 0;
}

static advnn_adv_opts adv_opts(const net *nt, run_ctx *rc) {
    advnn_adv_opts o = advnn_adv_defaults();
    o.mode = ADVNN_ADV_JOINT; o.main_group = "clf"; o.adv_group = "adv";
    o.main_loss = nt->lc; o.adv_loss = nt->la; o.grad_reverse = nt->rev;
    o.verbose = 0; o.callback = on_epoch; o.user = rc;
    return o;
}

/* Classifier pre-training (shared by every lambda); the weights afterwards go to snap. */
static int pretrain(advnn_trainer *tr, const net *nt, const split *trn, const config *c, FILE *log, float *snap, int64_t np) {
    run_ctx rc;
    advnn_adv_opts o;
    memset(&rc, 0, sizeof rc);
    rc.c = c; rc.log = log; rc.lam = -1; rc.anneal_from = -1;
    rc.snap = snap; rc.snap_at = c->pre_clf - 1; rc.nparams = np;
    set_rates(&rc, tr, c->lr_pre, c->lr_adv);
    o = adv_opts(nt, &rc);
    o.pretrain_main_epochs = c->pre_clf; o.epochs = 0;
    if (advnn_adv_fit(tr, trn->d, &o, NULL) != ADVNN_OK) { fprintf(stderr, "%s: pre-training: %s\n", prog, advnn_last_error()); return 1; }
    return 0;
}

/* lambda = 0: the pre-training trainer continues on the classifier alone (same Adam state, same rate) for
 * the joint epochs, then an adversary learns the mass from the frozen NN's score (diagnostic only). */
static int train_nn(advnn_trainer *tr, const net *nt, const split *trn, const config *c, FILE *log) {
    run_ctx rc;
    advnn_adv_opts o;
    memset(&rc, 0, sizeof rc);
    rc.c = c; rc.log = log; rc.lam = 0; rc.offset = c->pre_clf; rc.anneal_from = -1;
    rc.lr_clf = c->lr_pre; rc.lr_adv = c->lr_adv;
    o = adv_opts(nt, &rc);
    o.pretrain_main_epochs = c->joint; o.pretrain_adv_epochs = c->pre_adv; o.epochs = 0;
    if (advnn_adv_fit(tr, trn->d, &o, NULL) != ADVNN_OK) { fprintf(stderr, "%s: lambda 0: %s\n", prog, advnn_last_error()); return 1; }
    return 0;
}

/* lambda > 0: adversary pre-training on the frozen classifier, joint epochs, annealing. */
static int train_ann(advnn_trainer *tr, const net *nt, const split *trn, const config *c, double lam, FILE *log) {
    run_ctx rc;
    advnn_adv_opts o;
    memset(&rc, 0, sizeof rc);
    rc.c = c; rc.log = log; rc.lam = lam; rc.offset = c->pre_clf;
    rc.anneal_from = c->anneal > 0 ? c->pre_adv + c->joint - c->anneal : -1;
    /* the classifier is frozen during the adversary's pre-training, so its joint-phase rate can be set now */
    if (rc.anneal_from == 0) set_rates(&rc, tr, c->lr_clf / 10, c->lr_adv / 10);
    else set_rates(&rc, tr, c->lr_clf, c->lr_adv);
    o = adv_opts(nt, &rc);
    o.pretrain_adv_epochs = c->pre_adv; o.epochs = c->joint; o.lambda = (float)lam; o.lambda_ramp_epochs = c->ramp;
    if (advnn_adv_fit(tr, trn->d, &o, NULL) != ADVNN_OK) { fprintf(stderr, "%s: lambda %g: %s\n", prog, lam, advnn_last_error()); return 1; }
    return 0;
}

/* ------------------------------------------------------------------ report */
static void print_header(void) {
    printf("\n%-7s %7s %7s %7s %7s %8s %8s %6s %8s %8s %8s\n", "lambda", "AUC", "R50", "R50win", "eps_B", "1/JSD", "floor", "ratio",
           "advNLL", "H(m)", "H(m|pT)");
}

static void print_row(const result *r, double h_m, double h_m_pt) {
    printf("%-7g %7.4f %7.2f %7.2f %7.4f %8.2f %8.1f %6.3f %8.4f %8.4f %8.4f\n", r->lambda, r->auc, r->r50, r->r50_win, r->eps_b, 1.0 / r->jsd,
           1.0 / r->jsd_floor, r->jsd_floor / r->jsd, r->adv_nll, h_m, h_m_pt);
}

static void print_profiles(const result *r, int n) {
    int i, k;
    printf("\n<score> of QCD jets vs mass (GeV):\n%-7s", "lambda");
    for (k = 0; k < NPROF; k++) printf(" %3.0f-%-3.0f", MLO + k * (MHI - MLO) / NPROF, MLO + (k + 1) * (MHI - MLO) / NPROF);
    printf("\n");
    for (i = 0; i < n; i++) {
        printf("%-7g", r[i].lambda);
        for (k = 0; k < NPROF; k++) printf(" %7.3f", r[i].prof[k]);
        printf("\n");
    }
}

static int find_lambda(const result *r, int n, double lam) {
    int i;
    for (i = 0; i < n; i++) if (r[i].lambda == lam) return i;
    return -1;
}

static void acceptance(const result *r, int n, int quick, double h_m) {
    int i0 = find_lambda(r, n, 0), i10 = find_lambda(r, n, 10), i, ok;
    printf("\n");
    if (quick) printf("note: --quick runs a tiny setting; its acceptance lines are not expected to pass\n");
    if (i0 < 0) printf("SKIP NN sculpts: lambda 0 not in the list\n");
    else printf("%s NN sculpts (1/JSD < floor/3): 1/JSD %.2f vs random-split floor %.1f (ratio %.1fx)\n",
                1.0 / r[i0].jsd * 3 < 1.0 / r[i0].jsd_floor ? "PASS" : "FAIL", 1.0 / r[i0].jsd, 1.0 / r[i0].jsd_floor,
                r[i0].jsd / r[i0].jsd_floor);
    if (i0 < 0 || i10 < 0) printf("SKIP ANN(10) decorrelates / keeps rejection: needs lambda 0 and 10\n");
    else {
        printf("%s ANN(10) 1/JSD >= 5x NN: %.2f vs %.2f (%.1fx)\n", r[i0].jsd >= 5 * r[i10].jsd ? "PASS" : "FAIL",
               1.0 / r[i10].jsd, 1.0 / r[i0].jsd, r[i0].jsd / r[i10].jsd);
        printf("%s ANN(10) R50 >= 0.35x NN: %.2f vs %.2f (%.2fx; the NN's R50 among %.0f-%.0f GeV jets only: %.2f)\n",
               r[i10].r50 >= 0.35 * r[i0].r50 ? "PASS" : "FAIL", r[i10].r50, r[i0].r50, r[i10].r50 / r[i0].r50, WLO, WHI, r[i0].r50_win);
    }
    if (i10 >= 0)   /* PHYSICS.md 1.6: the adversary of the lambda = 10 ANN should end up blind */
        printf("%s ANN(10) adversary blind (|NLL - H(m)| < 0.1 nats): NLL %.4f, H(m) %.4f\n",
               fabs(r[i10].adv_nll - h_m) < 0.1 ? "PASS" : "FAIL", r[i10].adv_nll, h_m);
    if (n < 2) { printf("SKIP monotone trade-off: needs at least two lambdas\n"); return; }
    ok = 1;
    for (i = 1; i < n; i++)
        if (1.0 / r[i].jsd < (1 - TOL_MONO) / r[i - 1].jsd || r[i].r50 > (1 + TOL_MONO) * r[i - 1].r50) ok = 0;
    printf("%s monotone trade-off (1/JSD non-decreasing, R50 non-increasing in lambda, %.0f%% tolerance): 1/JSD",
           ok ? "PASS" : "FAIL", TOL_MONO * 100);
    for (i = 0; i < n; i++) printf(" %.1f", 1.0 / r[i].jsd);
    printf("; R50");
    for (i = 0; i < n; i++) printf(" %.2f", r[i].r50);
    printf("\n");
}

/* ------------------------------------------------------------------ main */
static int make_dir(const char *path) {
    char buf[1024], *p;
    if (strlen(path) >= sizeof buf) return 1;
    strcpy(buf, path);
    for (p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(buf, 0777) != 0 && errno != EEXIST) return 1; *p = '/'; }
    return mkdir(buf, 0777) != 0 && errno != EEXIST;
}

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void quick_settings(config *c) {
    c->ntrain = 3000; c->ntest = 3000; c->batch = 256;
    c->pre_clf = 1; c->pre_adv = 1; c->joint = 2; c->anneal = 1;
}


/* ------------------------------------------------------------------ the other decorrelation methods */
typedef struct { int method; double strength, auc, r50, jsd, jsd_floor, seconds; } mrow;

static void mrow_add(mrow *rows, int *nr, int method, double strength, const result *r, double secs) {
    mrow *m = &rows[(*nr)++];
    m->method = method; m->strength = strength; m->auc = r->auc; m->r50 = r->r50; m->jsd = r->jsd; m->jsd_floor = r->jsd_floor;
    m->seconds = secs;
}

/* The NN's classifier (same layers, same input names, so its parameters are a prefix of the adversarial
 * network's and the same seed draws the same initial weights) with BCE weighted by input `wname`; for
 * DisCo and MoDe plus strength times the penalty on the probability vs the scaled mass, background only. */
static long mode_bins = 10;   /* --mode-bins */
static advnn_graph *build_clf(int method, double strength, const char *wname, uint64_t seed) {
    int ten = NFEAT, one = 1, x, y, w, ms, wa, logit, s, l = -1;
    advnn_graph *g = advnn_graph_new();
    if (!g) return NULL;
    x = advnn_input(g, "x", 1, &ten); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, wname, 1, &one);
    advnn_group(g, "clf");
    logit = wl_w1_classifier(g, x);
    s = advnn_name(g, advnn_activation(g, logit, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_bce_logits(g, logit, y, w);
    if (method == M_DISCO || method == M_MODE) {
        ms = advnn_input(g, "ms", 1, &one); wa = advnn_input(g, "wadv", 1, &one);
        if (method == M_DISCO) l = advnn_loss_disco(g, s, ms, wa, 1.0f);
        else { advnn_mode_opts mo = advnn_mode_defaults(); mo.bins = (int)mode_bins; l = advnn_loss_mode(g, s, ms, wa, &mo); }
        advnn_loss_scale(g, l, (float)strength);
    }
    if (advnn_graph_finalize(g, seed) != ADVNN_OK) {
        fprintf(stderr, "%s: building the %s classifier: %s\n", prog, meth_name[method], advnn_last_error());
        advnn_graph_free(g);
        return NULL;
    }
    return g;
}

/* Trains g on d for `epochs` epochs (Adam at the pre-training rate, as the NN's continuation), then the metrics. */
static int train_eval(advnn_graph *g, advnn_dataset *d, const config *c, int epochs, const split *te, int method, double strength,
                      mrow *rows, int *nr) {
    advnn_trainer *tr = advnn_trainer_new(g, (int)(method == M_MODE && c->mode_batch ? c->mode_batch : c->batch), (uint64_t)c->seed + 2);
    advnn_fit_opts fo = advnn_fit_defaults();
    advnn_tensor *p = NULL;
    result r;
    double t0 = now(), secs;
    int rc = 1;
    if (!tr) { fprintf(stderr, "%s: trainer: %s\n", prog, advnn_last_error()); return 1; }
    advnn_trainer_set_optim(tr, NULL, advnn_adam((float)c->lr_pre));
    fo.epochs = epochs; fo.verbose = 0; fo.val_split = 0; fo.restore_best = 0;
    if (advnn_fit(tr, d, NULL, &fo, NULL) != ADVNN_OK) fprintf(stderr, "%s: %s %g: %s\n", prog, meth_name[method], strength, advnn_last_error());
    else if (advnn_predict(g, te->d, "prob", &p) != ADVNN_OK) fprintf(stderr, "%s: predict: %s\n", prog, advnn_last_error());
    else if (!score_metrics(p->data, te, strength, (uint64_t)c->seed + 100, &r)) {
        secs = now() - t0;
        mrow_add(rows, nr, method, strength, &r, secs);
        fprintf(stderr, "%s: %s %s %g done in %.1f s\n", prog, meth_name[method], meth_knob[method], strength, secs);
        rc = 0;
    }
    advnn_tensor_free(p);
    advnn_trainer_free(tr);
    return rc;
}

/* DisCo / MoDe: from the pre-trained classifier (snap's prefix), the joint epochs with the penalty. */
static int run_penalty(const config *c, int method, const float *snap, int64_t nclf, split *trn, const split *te, mrow *rows, int *nr) {
    int j;
    for (j = 0; j < c->nstr[method]; j++) {
        advnn_graph *g = build_clf(method, c->str[method][j], "w", (uint64_t)c->seed);
        int64_t n = 0;
        int rc;
        if (!g) return 1;
        advnn_params(g, &n);
        if (n > nclf) { fprintf(stderr, "%s: classifier has %lld parameters, expected at most %lld\n", prog, (long long)n, (long long)nclf); advnn_graph_free(g); return 1; }
        memcpy(advnn_params(g, NULL), snap, (size_t)n * sizeof(float));
        rc = train_eval(g, trn->d, c, c->joint, te, method, c->str[method][j], rows, nr);
        advnn_graph_free(g);
        if (rc) return 1;
    }
    return 0;
}

/* Planing: from scratch (the NN's initial weights), pre-training + joint epochs on w * (flat / w)^alpha, where
 * flat flattens each class's mass spectrum (25 bins on [50, 300) GeV; jets outside get weight 0). */
static int run_planing(const config *c, const split *trn, const split *te, mrow *rows, int *nr) {
    advnn_tensor *flat = new_col(trn->n), *wp = new_col(trn->n);
    advnn_dataset *d = advnn_dataset_new();
    int j, rc = 1;
    int64_t i;
    if (!flat || !wp || !d || advnn_reweight(trn->m->data, trn->y->data, trn->w->data, trn->n, MLO, MHI, NBINS / 2, ADVNN_REWEIGHT_FLAT, flat->data) != ADVNN_OK ||
        advnn_dataset_add(d, "x", trn->x) || advnn_dataset_add(d, "y", trn->y) || advnn_dataset_add(d, "wp", wp)) {
        fprintf(stderr, "%s: planing weights: %s\n", prog, advnn_last_error());
        goto done;
    }
    for (j = 0; j < c->nstr[M_PLANE]; j++) {
        double a = c->str[M_PLANE][j];
        advnn_graph *g;
        for (i = 0; i < trn->n; i++) {
            double w = trn->w->data[i];
            wp->data[i] = w > 0 ? (float)(w * pow(flat->data[i] / w, a)) : 0.0f;
        }
        if (!(g = build_clf(M_PLANE, a, "wp", (uint64_t)c->seed))) goto done;
        rc = train_eval(g, d, c, c->pre_clf + c->joint, te, M_PLANE, a, rows, nr);
        advnn_graph_free(g);
        if (rc) goto done;
    }
    rc = 0;
done:
    advnn_dataset_free(d); advnn_tensor_free(flat); advnn_tensor_free(wp);
    return rc;
}

/* DDT on the trained NN (nt's current weights): a threshold map at each background efficiency fitted on
 * the training background, applied to the test jets; the score is s - threshold(rho, pT). */
static int run_ddt(const config *c, net *nt, const split *trn, const split *te, mrow *rows, int *nr) {
    advnn_tensor *ptr = NULL, *pte = NULL;
    float *rtr = (float *)malloc((size_t)trn->n * sizeof(float)), *rte = (float *)malloc((size_t)te->n * sizeof(float));
    float *out = (float *)malloc((size_t)te->n * sizeof(float));
    int j, rc = 1;
    int64_t i;
    if (!rtr || !rte || !out || advnn_predict(nt->g, trn->d, "prob", &ptr) != ADVNN_OK || advnn_predict(nt->g, te->d, "prob", &pte) != ADVNN_OK) {
        fprintf(stderr, "%s: DDT: %s\n", prog, advnn_last_error());
        goto done;
    }
    for (i = 0; i < trn->n; i++) rtr[i] = (float)log((double)trn->m->data[i] * trn->m->data[i] / trn->pt->data[i]);
    for (i = 0; i < te->n; i++) rte[i] = (float)log((double)te->m->data[i] * te->m->data[i] / te->pt->data[i]);
    for (j = 0; j < c->nstr[M_DDT]; j++) {
        double eff = c->str[M_DDT][j], t0 = now();
        result r;
        advnn_ddt *d = advnn_ddt_fit(ptr->data, rtr, trn->pt->data, trn->wadv->data, trn->n, eff, NRHO, RHO_LO, RHO_HI, NPTB, 300, 1500, 0.5);
        if (!d || advnn_ddt_apply(d, pte->data, rte, te->pt->data, te->n, out) != ADVNN_OK) {
            fprintf(stderr, "%s: DDT at eff_B %g: %s\n", prog, eff, advnn_last_error());
            advnn_ddt_free(d);
            goto done;
        }
        advnn_ddt_free(d);
        if (score_metrics(out, te, eff, (uint64_t)c->seed + 100, &r)) goto done;
        mrow_add(rows, nr, M_DDT, eff, &r, now() - t0);
    }
    rc = 0;
done:
    advnn_tensor_free(ptr); advnn_tensor_free(pte);
    free(rtr); free(rte); free(out);
    return rc;
}

static void print_methods(const mrow *rows, int nr, const config *c, double pre_secs) {
    int i, k, inn = -1;
    FILE *f;
    char path[1024];
    printf("\n%-10s %-7s %9s %7s %8s %9s %8s %8s\n", "method", "knob", "strength", "AUC", "R50", "1/JSD", "floor", "train_s");
    for (i = 0; i < nr; i++) {
        const mrow *m = &rows[i];
        if (m->method == M_NN) inn = i;
        printf("%-10s %-7s %9g %7.4f %8.2f %9.2f %8.1f %8.1f\n", meth_name[m->method], meth_knob[m->method], m->strength, m->auc, m->r50,
               1.0 / m->jsd, 1.0 / m->jsd_floor, m->seconds);
    }
    printf("(train_s: each method's own training, after the shared classifier pre-training of %.1f s that the NN, the\n"
           " adversary, DisCo and MoDe start from; ddt: the map's fit on the trained NN; planing trains from scratch)\n", pre_secs);
    snprintf(path, sizeof path, "%s/methods.csv", c->out);
    if ((f = fopen(path, "w")) != NULL) {
        fprintf(f, "method,strength,auc,r50,inv_jsd,inv_jsd_floor,seconds\n");
        for (i = 0; i < nr; i++)
            fprintf(f, "%s,%g,%.6f,%.4f,%.4f,%.4f,%.3f\n", meth_name[rows[i].method], rows[i].strength, rows[i].auc, rows[i].r50,
                    1.0 / rows[i].jsd, 1.0 / rows[i].jsd_floor, rows[i].seconds);
        if (ferror(f) | fclose(f)) fprintf(stderr, "%s: error writing %s\n", prog, path);
    } else fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno));
    printf("\n");
    for (k = 1; k < NMETH; k++) {
        int at = -1;
        if (!(c->methods & (1u << k))) continue;
        for (i = 0; i < nr; i++) if (rows[i].method == k && rows[i].strength == meth_moderate[k]) at = i;
        if (inn < 0 || at < 0) { printf("SKIP %s at %s %g: not in the scan\n", meth_name[k], meth_knob[k], meth_moderate[k]); continue; }
        printf("%s %s (%s %g) 1/JSD >= 5x NN: %.2f vs %.2f (%.1fx), R50 %.2f vs %.2f\n",
               rows[inn].jsd >= 5 * rows[at].jsd ? "PASS" : "FAIL", meth_name[k], meth_knob[k], meth_moderate[k], 1.0 / rows[at].jsd,
               1.0 / rows[inn].jsd, rows[inn].jsd / rows[at].jsd, rows[at].r50, rows[inn].r50);
    }
}

int main(int argc, char **argv) {
    config c;
    split trn, te;
    net nt;
    outputs out;
    result res[MAX_LAMBDAS];
    mrow mrows[NMETH * MAX_LAMBDAS + MAX_LAMBDAS];
    int nm = 0;
    double pre_secs;
    advnn_trainer *tr0 = NULL;
    float *snap = NULL;
    int64_t np = 0;
    double h_m, h_m_pt, t0 = now();
    int i, rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    config_defaults(&c);
    for (i = 1; i < argc; i++) if (!strcmp(argv[i], "--quick")) quick_settings(&c);   /* other flags still override it */
    if ((rc = parse_args(argc, argv, &c)) != 0) return rc == 1 ? 0 : rc;
    mode_bins = c.mode_bins;
    if (make_dir(c.out)) { fprintf(stderr, "%s: cannot create '%s': %s\n", prog, c.out, strerror(errno)); return 1; }
    advnn_set_threads((int)c.threads);

    if (load_split(c.data, "train", c.ntrain, &trn) || load_split(c.data, "test", c.ntest, &te)) return 1;
    standardise(&trn, &te);
    if (derive(&trn, "train") || derive(&te, "test")) return 1;
    mass_entropy(&te, &h_m, &h_m_pt);
    if (build_net(&nt, (uint64_t)c.seed)) return 1;
    printf("advnn %d.%d.%d (%s), %ld thread(s); W tagger: %lld training, %lld test jets; classifier %lld, adversary %lld parameters\n",
           ADVNN_VERSION_MAJOR, ADVNN_VERSION_MINOR, ADVNN_VERSION_PATCH, advnn_simd_name(), c.threads, (long long)trn.n,
           (long long)te.n, (long long)advnn_param_count(nt.g, "clf"), (long long)advnn_param_count(nt.g, "adv"));
    printf("schedule: classifier %d epochs (Adam %g), then per lambda: adversary %d epochs (Adam %g), joint %d epochs "
           "(clf %g, adv %g; last %d at /10), batch %ld; lambda 0 = NN trained %d more epochs\n",
           c.pre_clf, c.lr_pre, c.pre_adv, c.lr_adv, c.joint, c.lr_clf, c.lr_adv, c.anneal, c.batch, c.joint);
    if (c.methods & (1u << M_MODE)) printf("MoDe: %ld m bins, batch %ld\n", c.mode_bins, c.mode_batch);
    if (outputs_open(c.out, &out)) return 1;

    advnn_params(nt.g, &np);
    snap = (float *)malloc((size_t)np * sizeof(float));
    tr0 = advnn_trainer_new(nt.g, (int)c.batch, (uint64_t)c.seed);
    if (!snap || !tr0) { fprintf(stderr, "%s: trainer: %s\n", prog, advnn_last_error()); return 1; }
    if (pretrain(tr0, &nt, &trn, &c, out.epochs, snap, np)) return 1;
    pre_secs = now() - t0;
    printf("classifier pre-trained (%.1f s)\n", pre_secs);

    for (i = 0; i < c.nlam; i++) {
        double lam = c.lam[i], t1 = now();
        advnn_trainer *tr = tr0;
        memcpy(advnn_params(nt.g, NULL), snap, (size_t)np * sizeof(float));   /* every lambda starts from the same NN */
        if (lam == 0) rc = train_nn(tr0, &nt, &trn, &c, out.epochs);
        else {
            if (!(tr = advnn_trainer_new(nt.g, (int)c.batch, (uint64_t)c.seed + 1))) { fprintf(stderr, "%s: trainer: %s\n", prog, advnn_last_error()); return 1; }
            rc = train_ann(tr, &nt, &trn, &c, lam, out.epochs);
        }
        if (!rc) rc = evaluate_run(tr, &nt, &te, lam, (uint64_t)c.seed + 100, &out, &res[i]);
        if (tr != tr0) advnn_trainer_free(tr);
        if (rc) return 1;
        write_result(&out, &res[i], h_m, h_m_pt);
        mrow_add(mrows, &nm, lam == 0 ? M_NN : M_ADV, lam, &res[i], now() - t1);
        fprintf(stderr, "%s: lambda %g done in %.1f s\n", prog, lam, now() - t1);
        if (lam == 0 && (c.methods & (1u << M_DDT)) && run_ddt(&c, &nt, &trn, &te, mrows, &nm)) return 1;   /* needs the NN */
    }
    if (c.methods) {
        int64_t nclf = np - advnn_param_count(nt.g, "adv");   /* the classifier's parameters (blocks aligned) come first */
        if ((c.methods & (1u << M_DISCO)) && run_penalty(&c, M_DISCO, snap, nclf, &trn, &te, mrows, &nm)) return 1;
        if ((c.methods & (1u << M_MODE)) && run_penalty(&c, M_MODE, snap, nclf, &trn, &te, mrows, &nm)) return 1;
        if ((c.methods & (1u << M_PLANE)) && run_planing(&c, &trn, &te, mrows, &nm)) return 1;
    }
    print_header();
    for (i = 0; i < c.nlam; i++) print_row(&res[i], h_m, h_m_pt);
    printf("(R50 = 1/eps_B at eps_S = 50%%; R50win = the same among jets with %.0f <= m < %.0f GeV only;\n"
           " 1/JSD of the QCD mass pass vs fail, 50 bins on [50, 300) GeV, base 2; floor = 1/JSD of random splits with\n"
           " pass fraction eps_B, %d repeats; ratio = JSD_floor/JSD; advNLL = adversary -log p(m|score,pT) on test QCD\n"
           " in nats, m scaled to [0, 1]; H = histogram entropies of that mass; a score-blind adversary reaches H(m|pT))\n",
           WLO, WHI, FLOOR_REPEATS);
    print_profiles(res, c.nlam);
    acceptance(res, c.nlam, c.quick, h_m);
    if (c.methods) print_methods(mrows, nm, &c, pre_secs);
    printf("wall time %.1f s; outputs in %s (plots: /usr/bin/python3 tools/plot_wtagger.py %s)\n", now() - t0, c.out, c.out);

    {   /* the classifier of the last lambda for ONNX runtimes: input "x" (standardised features), output "prob" */
        const char *onnx_out[1] = {"prob"};
        char path[1024];
        snprintf(path, sizeof path, "%s/wtagger.onnx", c.out);
        if (advnn_onnx_save(nt.g, path, 1, onnx_out, NULL) != ADVNN_OK) { fprintf(stderr, "%s: %s\n", prog, advnn_last_error()); return 1; }
        printf("ONNX: %s (the classifier of lambda %g; input x = the standardised features)\n", path, c.lam[c.nlam - 1]);
    }
    rc = outputs_close(&out);
    free(snap);
    advnn_trainer_free(tr0);
    advnn_graph_free(nt.g);
    split_free(&trn); split_free(&te);
    return rc;
}
