/* bench_wl.h - the reference workloads W1, W2, W3 of WORKLOADS.md as the benchmarks train them: the
 * graphs with their adversaries (built from examples/workloads.h) and NB batches of random rows with
 * a fixed seed. The includer defines bench_die(what, workload name) (it must not return); w->batch
 * must be set before build (the benchmarks use 1024 for W1, 512 for W2 and W3). Needs advnn.h's implementation. */
#ifndef ADVNN_BENCH_WL_H
#define ADVNN_BENCH_WL_H
#include "examples/workloads.h"

#define MAX_IN 16
static void bench_die(const char *what, const char *name);

typedef struct {
    const char *name;
    int batch, nb, adv_steps, ae_fwd;
    float lambda;
    advnn_graph *g;
    int out, lmain, ladv;
    advnn_dataset *d, *dcr;                  /* main stream; control-region stream (W2) or NULL */
    advnn_tensor *t[MAX_IN];                 /* per graph input (advnn_input_node order) */
} wl;

static inline void build(wl *w) {
    advnn_graph *g = advnn_graph_new();
    int one = 1;
    w->g = g;
    if (!strcmp(w->name, "w1")) {
        int ten = 10, x, y, wt, lpt, m, wa, logit, prob, h, ins[2];
        x = advnn_input(g, "x", 1, &ten); y = advnn_input(g, "y", 1, &one); wt = advnn_input(g, "w", 1, &one);
        lpt = advnn_input(g, "lpt", 1, &one); m = advnn_input(g, "m", 1, &one); wa = advnn_input(g, "wadv", 1, &one);
        advnn_group(g, "main");
        logit = wl_w1_classifier(g, x);
        prob = advnn_name(g, advnn_activation(g, logit, ADVNN_ACT_SIGMOID), "prob");
        w->lmain = advnn_loss_bce_logits(g, logit, y, wt);
        advnn_group(g, "adv");
        ins[0] = prob; ins[1] = lpt;
        h = advnn_dense(g, advnn_concat(g, 2, ins), 64, ADVNN_ACT_RELU);
        /* one Linear(64, 60) head, [logits | means | widths], as the PyTorch workload */
        w->ladv = advnn_loss_mdn(g, advnn_dense(g, h, 60, ADVNN_ACT_LINEAR), -1, -1, m, wa, 1, 1e-3f);
        w->out = prob;
        w->adv_steps = 1; w->lambda = 10.0f; w->nb = 8; w->ae_fwd = 0;
    } else if (!strcmp(w->name, "w2")) {
        int in[4], cin[4], y, wt, cy, cw, logits, cr_logits;
        wl_rec rec;
        wl_w2_inputs(g, "", in);
        y = advnn_input(g, "y", 1, &one); wt = advnn_input(g, "w", 1, &one);
        wl_w2_inputs(g, "cr_", cin);
        cy = advnn_input(g, "cr_y", 1, &one); cw = advnn_input(g, "cr_w", 1, &one);
        advnn_group(g, "main");
        logits = wl_w2_tagger(g, in, &rec, NULL);
        w->out = advnn_name(g, advnn_softmax(g, logits), "scores");
        w->lmain = advnn_loss_cce_logits(g, logits, y, wt);
        cr_logits = wl_w2_tagger(g, cin, NULL, &rec);          /* the same weights on the control region */
        advnn_group(g, "adv");
        w->ladv = advnn_loss_bce_logits(g, wl_w2_adversary(g, advnn_softmax(g, cr_logits)), cy, cw);
        w->adv_steps = 2; w->lambda = 10.0f; w->nb = 4; w->ae_fwd = 0;
    } else {
        int img[3] = {40, 40, 1}, x, wt, bin, recon;
        x = advnn_input(g, "img", 3, img); wt = advnn_input(g, "w", 1, &one); bin = advnn_input(g, "mbin", 1, &one);
        advnn_group(g, "main");
        recon = wl_w3_autoencoder(g, x);
        w->lmain = advnn_loss_mse(g, recon, x, wt);
        w->out = advnn_name(g, advnn_sample_mse(g, recon, x, 0), "mse");   /* inference: per-image MSE */
        advnn_group(g, "adv");
        w->ladv = advnn_loss_cce_logits(g, wl_w3_adversary(g, advnn_sample_mse(g, recon, x, 1)), bin, wt);
        w->adv_steps = 3; w->lambda = 1e-3f; w->nb = 4; w->ae_fwd = 1;   /* reused by the 3 adversary updates and the AE update (torch: 2) */
    }
    if (advnn_graph_finalize(g, 1) != ADVNN_OK) bench_die("building the graph", w->name);
}

/* NB batches of random rows for every graph input, in w->d or (names "cr_*") w->dcr: features
 * uniform in [-1, 1] and never 0 (so W2's masks keep every step), labels valid for their loss,
 * weights in [0.5, 1.5], W1's mass and log pT in (0, 1), W3's images unit-sum, W1's adversary
 * weights background-only per batch. */
static inline void make_data(wl *w) {
    advnn_graph *g = w->g;
    int64_t N = (int64_t)w->batch * w->nb, j;
    int i, k, iy = -1, iw = -1, iwa = -1;
    advnn__rng r;
    advnn__rng_seed(&r, 12345);
    w->d = advnn_dataset_new();
    w->dcr = !strcmp(w->name, "w2") ? advnn_dataset_new() : NULL;
    for (i = 0; i < advnn_input_count(g) && i < MAX_IN; i++) {
        int id = advnn_input_node(g, i), sh[3], nd = advnn_node_shape(g, id, sh);
        const char *name = advnn_node_name(g, id), *base = strncmp(name, "cr_", 3) ? name : name + 3;
        int64_t shape[4], per;
        advnn_tensor *t;
        shape[0] = N;
        for (k = 0; k < nd; k++) shape[k + 1] = sh[k];
        t = w->t[i] = advnn_tensor_new(nd + 1, shape);
        if (!t) bench_die("out of memory", w->name);
        per = t->size / N;
        for (j = 0; j < t->size; j++) {
            double u = advnn__rng_uniform(&r);
            float v;
            if (!strcmp(base, "y")) v = (float)(int)(u * (!strcmp(name, "y") && !strcmp(w->name, "w2") ? 3 : 2));
            else if (!strcmp(base, "mbin")) v = (float)(int)(u * 10);
            else if (!strcmp(base, "w") || !strcmp(base, "wadv")) v = (float)(0.5 + u);
            else if (!strcmp(base, "m") || !strcmp(base, "lpt")) v = (float)(0.001 + 0.998 * u);
            else if (!strcmp(base, "img")) v = (float)(1e-3 + u);
            else v = (float)(2 * u - 1 + (u < 0.5 ? -1e-3 : 1e-3));
            t->data[j] = v;
        }
        if (!strcmp(base, "img"))
            for (j = 0; j < N; j++) {
                double s = 0;
                for (k = 0; k < per; k++) s += t->data[j * per + k];
                for (k = 0; k < per; k++) t->data[j * per + k] = (float)(t->data[j * per + k] / s);
            }
        if (!strcmp(name, "y")) iy = i;
        if (!strcmp(name, "w")) iw = i;
        if (!strcmp(name, "wadv")) iwa = i;
    }
    if (iwa >= 0)   /* background only, normalised per batch as the torch script does */
        for (j = 0; j < w->nb; j++) {
            size_t o = (size_t)j * w->batch;
            if (advnn_background_weights(w->t[iy]->data + o, w->t[iw]->data + o, w->batch, w->t[iwa]->data + o) != ADVNN_OK)
                bench_die("background weights", w->name);
        }
    for (i = 0; i < advnn_input_count(g) && i < MAX_IN; i++) {
        const char *name = advnn_node_name(g, advnn_input_node(g, i));
        if (advnn_dataset_add(strncmp(name, "cr_", 3) ? w->d : w->dcr, name, w->t[i]) != ADVNN_OK) bench_die("dataset", w->name);
    }
}

/* The trainer (seed 7; NAdam for W2, Adam otherwise) and the alternating adversarial schedule the
 * benchmarks time; threads as advnn_set_threads left them. */
static inline advnn_trainer *wl_trainer(const wl *w, advnn_adv_opts *o) {
    advnn_trainer *tr = advnn_trainer_new(w->g, w->batch, 7);
    if (!tr) bench_die("trainer", w->name);
    if (!strcmp(w->name, "w2")) {
        advnn_trainer_set_optim(tr, "main", advnn_nadam(8e-4f));
        advnn_trainer_set_optim(tr, "adv", advnn_nadam(8e-4f));
    } else {
        advnn_trainer_set_optim(tr, "main", advnn_adam(1e-3f));
        advnn_trainer_set_optim(tr, "adv", advnn_adam(!strcmp(w->name, "w3") ? 1e-2f : 1e-3f));
    }
    *o = advnn_adv_defaults();
    o->mode = ADVNN_ADV_ALTERNATING;
    o->main_loss = w->lmain; o->adv_loss = w->ladv; o->grad_reverse = -1;
    o->adv_steps = w->adv_steps; o->lambda = w->lambda; o->adv_data = w->dcr; o->verbose = 0;
    return tr;
}
#endif
