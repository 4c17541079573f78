/* MPI data-parallel training (advnn_trainer_set_mpi), driven by tests/mpi_check.sh under mpirun.
 * Built with mpicc and -DADVNN_MPI; not a tests/test_*.c file, so the per-configuration runner (which
 * has no MPI) does not build it.
 *
 *   mpi_train CASE THREADS OUT [nompi]
 *
 * Training cases (fit, step, joint, alt, disco) train a small network and rank 0 writes the weights
 * and the evaluation loss to OUT (raw bytes), which the script compares between runs: 1 process
 * without MPI, 1 rank x 2 threads, 2 ranks x 1 thread, 3 ranks, 2 ranks x 2 threads. Every rank also
 * sends its weights to rank 0, which compares them byte for byte. nompi: no advnn_trainer_set_mpi
 * (each rank trains alone; run with -np 1).
 * ooc, oocx: advnn_fit and advnn_evaluate on features read from a .npy file of 4 KiB rows in windows
 * (384 rows, chunks of 64); written like the training cases, and every rank prints "CASE rank R read
 * B bytes" (the file's data bytes it read in training and evaluation: with MPI its chunks' rows).
 * ooc: 1200 rows, so a window can end in a partial batch whose rows lead the next window; oocx: 1280
 * (1152 training rows: 3 windows of 3 batches of 128; 128 validation rows; evaluation 10 batches),
 * every batch in 4 chunks of 32 rows, so rank r of R reads exactly the share of its chunks.
 * Failure cases (badlabel, diverge, rows, seed, kill, exit, io) make one rank differ or fail; the
 * script checks each rank's report (lines "rank R: ...") or, for kill/exit/io, that mpirun ends.
 * Rank 0 ends every run with "RESULT ok" or "RESULT FAIL <why>". */
#define _DEFAULT_SOURCE   /* truncate */
#define ADVNN_MPI
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>   /* truncate */

#define DN 600   /* main rows: 540 train + 60 validation in advnn_fit (batches 256, 256, 28) */
#define DC 233   /* control-region rows */

static int rank, nrank;
static char fail_msg[512];
static void fail(const char *why) { if (!fail_msg[0]) snprintf(fail_msg, sizeof fail_msg, "%s", why); }

static double gauss(advnn__rng *r) {
    double u = advnn__rng_uniform(r), v = advnn__rng_uniform(r);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

typedef struct {
    advnn_graph *g;
    advnn_dataset *d, *cr;
    advnn_tensor *t[6];
    int lm, la, rev;
} net;

/* kind: 0 classifier (BatchNorm, dropout), 1 with an adversary on a control-region stream, 2 with a
 * DisCo term (one chunk per step), 3 three-class classifier (CCE, class-index labels) */
static net make(int kind, uint64_t seed, int rows) {
    net s;
    int six = 6, one = 1, x, y, w, h1, bn, z;
    int64_t sx[2] = { rows, 6 }, s1[1] = { rows }, i;
    advnn__rng r;
    memset(&s, 0, sizeof s);
    s.rev = -1; s.la = -1;
    s.t[0] = advnn_tensor_new(2, sx); s.t[1] = advnn_tensor_new(1, s1); s.t[2] = advnn_tensor_new(1, s1);
    sx[0] = DC; s1[0] = DC;
    s.t[3] = advnn_tensor_new(2, sx); s.t[4] = advnn_tensor_new(1, s1); s.t[5] = advnn_tensor_new(1, s1);
    advnn__rng_seed(&r, 21);
    for (i = 0; i < rows; i++) {
        int k;
        s.t[1]->data[i] = kind == 3 ? (float)(i % 3) : (float)(i % 3 == 0);
        s.t[2]->data[i] = (float)(0.5 + advnn__rng_uniform(&r));
        for (k = 0; k < 6; k++) s.t[0]->data[i * 6 + k] = (float)(gauss(&r) + 0.7 * k * (s.t[1]->data[i] > 0));
    }
    for (i = 0; i < DC; i++) {
        int k;
        s.t[4]->data[i] = (float)(i % 2);
        s.t[5]->data[i] = i % 3 == 1 ? 0.0f : (float)(0.5 + advnn__rng_uniform(&r));   /* a third skipped */
        for (k = 0; k < 6; k++) s.t[3]->data[i * 6 + k] = (float)(gauss(&r) + 0.3 * k * s.t[4]->data[i]);
    }
    s.g = advnn_graph_new();
    x = advnn_input(s.g, "x", 1, &six); y = advnn_input(s.g, "y", 1, &one); w = advnn_input(s.g, "w", 1, &one);
    h1 = advnn_dense(s.g, advnn_dropout(s.g, x, 0.1f), 16, ADVNN_ACT_RELU);
    bn = advnn_batchnorm(s.g, h1);
    z = advnn_dense(s.g, advnn_dropout(s.g, bn, 0.2f), kind == 3 ? 3 : 1, ADVNN_ACT_LINEAR);
    s.lm = kind == 3 ? advnn_loss_cce_logits(s.g, z, y, w) : advnn_loss_bce_logits(s.g, z, y, w);
    if (kind == 1) {   /* the adversary sees the main network's output on the control region */
        int cx = advnn_input(s.g, "cx", 1, &six), cy = advnn_input(s.g, "cy", 1, &one), cw = advnn_input(s.g, "cw", 1, &one);
        int hc = advnn_shared(s.g, h1, advnn_dropout(s.g, cx, 0.1f), -1);
        int zc = advnn_shared(s.g, z, advnn_shared(s.g, bn, hc, -1), -1), a;
        advnn_group(s.g, "adv");
        s.rev = advnn_grad_reverse(s.g, zc, 1.0f);
        a = advnn_dense(s.g, s.rev, 8, ADVNN_ACT_TANH);
        a = advnn_dropout(s.g, advnn_batchnorm(s.g, a), 0.1f);
        s.la = advnn_loss_bce_logits(s.g, advnn_dense(s.g, a, 1, ADVNN_ACT_LINEAR), cy, cw);
    }
    if (kind == 2) advnn_loss_scale(s.g, advnn_loss_disco(s.g, advnn_activation(s.g, z, ADVNN_ACT_SIGMOID), w, -1, 1.0f), 0.5f);
    if (advnn_graph_finalize(s.g, seed) != ADVNN_OK) { fprintf(stderr, "finalize: %s\n", advnn_last_error()); exit(2); }
    s.d = advnn_dataset_new(); s.cr = advnn_dataset_new();
    advnn_dataset_add(s.d, "x", s.t[0]); advnn_dataset_add(s.d, "y", s.t[1]); advnn_dataset_add(s.d, "w", s.t[2]);
    advnn_dataset_add(s.cr, "cx", s.t[3]); advnn_dataset_add(s.cr, "cy", s.t[4]); advnn_dataset_add(s.cr, "cw", s.t[5]);
    return s;
}
static void drop(net *s) {
    int k;
    advnn_graph_free(s->g); advnn_dataset_free(s->d); advnn_dataset_free(s->cr);
    for (k = 0; k < 6; k++) advnn_tensor_free(s->t[k]);
}

/* Every rank's weights equal rank 0's, byte for byte. */
static void compare_ranks(const advnn_graph *g) {
    size_t bytes = (size_t)g->n_params * sizeof(float);
    unsigned char *all = rank == 0 ? (unsigned char *)malloc(bytes * (size_t)nrank) : NULL;
    int r;
    MPI_Gather(g->params, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rank != 0) return;
    for (r = 1; r < nrank; r++)
        if (memcmp(all, all + (size_t)r * bytes, bytes) != 0) {
            char m[64];
            snprintf(m, sizeof m, "rank %d's weights differ from rank 0's", r);
            fail(m);
        }
    free(all);
}

static int kill_cb(const advnn_epoch_info *info, void *user) {
    const char *how = (const char *)user;
    if (rank == 1 && info->epoch == 1) {
        if (strcmp(how, "kill") == 0) raise(SIGKILL);
        exit(5);
    }
    return 0;
}

/* An error case: prints "rank R: <status>: <message>" (or "rank R: ok") on every rank. */
static void report(advnn_status st) {
    char line[700];
    snprintf(line, sizeof line, "rank %d: %s: %s\n", rank, advnn_status_name(st), st == ADVNN_OK ? "" : advnn_last_error());
    fputs(line, stdout);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *cas, *out;
    int threads, use_mpi;
    MPI_Init(&argc, &argv);
    advnn__chunk_min_rows = 32;   /* batches of 256 in 8 chunks (the library's default: 2), so ranks x threads up to 8 */
    MPI_Comm_rank(MPI_COMM_WORLD, &rank); MPI_Comm_size(MPI_COMM_WORLD, &nrank);
    if (argc < 4) { if (rank == 0) fprintf(stderr, "usage: mpi_train CASE THREADS OUT [nompi]\n"); MPI_Finalize(); return 2; }
    cas = argv[1]; threads = atoi(argv[2]); out = argv[3];
    use_mpi = !(argc > 4 && strcmp(argv[4], "nompi") == 0);
    advnn_set_threads(threads);

    if (!strcmp(cas, "fit") || !strcmp(cas, "step") || !strcmp(cas, "joint") || !strcmp(cas, "alt") || !strcmp(cas, "disco")) {
        int kind = !strcmp(cas, "joint") || !strcmp(cas, "alt") ? 1 : !strcmp(cas, "disco") ? 2 : 0;
        net s = make(kind, 4, DN);
        advnn_trainer *tr = advnn_trainer_new(s.g, 256, 9);
        advnn_status st;
        double loss = NAN;
        if (!tr) { fprintf(stderr, "trainer: %s\n", advnn_last_error()); return 2; }
        if (use_mpi && advnn_trainer_set_mpi(tr, MPI_COMM_WORLD) != ADVNN_OK) { fprintf(stderr, "set_mpi: %s\n", advnn_last_error()); return 2; }
        if (!strcmp(cas, "step")) {   /* one step on 200 rows (7 chunks), then one of 40 (one chunk) */
            int64_t idx[200];
            int i;
            double l1, l2;
            for (i = 0; i < 200; i++) idx[i] = (i * 7) % DN;
            advnn_trainer_set_optim(tr, NULL, advnn_sgd(0.1f, 0.5f, 0));
            st = advnn_train_step(tr, s.d, idx, 200, &l1);
            if (st == ADVNN_OK) st = advnn_train_step(tr, s.d, idx + 100, 40, &l2);
        } else if (kind != 1) {
            advnn_fit_opts o = advnn_fit_defaults();
            o.epochs = 3; o.val_split = 0.1f; o.verbose = rank == 0;
            st = advnn_fit(tr, s.d, NULL, &o, NULL);
        } else {
            advnn_adv_opts o = advnn_adv_defaults();
            o.mode = !strcmp(cas, "joint") ? ADVNN_ADV_JOINT : ADVNN_ADV_ALTERNATING;
            o.main_loss = s.lm; o.adv_loss = s.la; o.grad_reverse = s.rev; o.adv_data = s.cr;
            o.adv_steps = o.mode == ADVNN_ADV_ALTERNATING ? 2 : 1;
            o.epochs = 2; o.pretrain_main_epochs = 1; o.pretrain_adv_epochs = 1; o.lambda = 2.0f; o.verbose = rank == 0;
            st = advnn_adv_fit(tr, s.d, &o, NULL);
        }
        if (st != ADVNN_OK) { fprintf(stderr, "rank %d: training failed: %s\n", rank, advnn_last_error()); fail("training failed"); }
        if (kind == 1) {   /* the evaluation loss needs the control-region inputs: the main rows again */
            advnn_dataset *e = advnn_dataset_new();
            advnn_dataset_add(e, "x", s.t[0]); advnn_dataset_add(e, "y", s.t[1]); advnn_dataset_add(e, "w", s.t[2]);
            advnn_dataset_add(e, "cx", s.t[0]); advnn_dataset_add(e, "cy", s.t[1]); advnn_dataset_add(e, "cw", s.t[2]);
            if (advnn_evaluate(tr, e, &loss) != ADVNN_OK) fail("evaluate failed");
            advnn_dataset_free(e);
        } else if (advnn_evaluate(tr, s.d, &loss) != ADVNN_OK) fail("evaluate failed");
        {
            int64_t i, bad = 0;
            for (i = 0; i < s.g->n_params; i++) bad += !isfinite(s.g->params[i]);
            if (bad || !isfinite(loss)) fail("non-finite weights or loss");
        }
        compare_ranks(s.g);
        if (rank == 0) {
            FILE *f = fopen(out, "wb");
            if (!f || fwrite(s.g->params, sizeof(float), (size_t)s.g->n_params, f) != (size_t)s.g->n_params
                || fwrite(&loss, sizeof loss, 1, f) != 1 || fclose(f) != 0) fail("cannot write the weights");
            printf("%s: %lld parameters, loss %.9g, %.4f s in MPI\n", cas, (long long)s.g->n_params, loss, advnn_trainer_mpi_seconds(tr));
        }
        advnn_trainer_free(tr);
        drop(&s);
    } else if (!strcmp(cas, "ooc") || !strcmp(cas, "oocx")) {
        enum { OF = 1024 };   /* features: 4 KiB per row, a page */
        const int64_t ON = !strcmp(cas, "oocx") ? 1280 : 1200;
        int64_t sx[2], s1[1], i, nread;
        advnn_tensor *X, *Y, *W;
        advnn_graph *g = advnn_graph_new();
        advnn_dataset *d = advnn_dataset_new();
        advnn_trainer *tr;
        advnn_fit_opts o = advnn_fit_defaults();
        advnn__rng r;
        char path[300];
        int of = OF, one = 1, x, y, w, z;
        double loss = NAN;
        sx[0] = ON; sx[1] = OF; s1[0] = ON;
        X = advnn_tensor_new(2, sx); Y = advnn_tensor_new(1, s1); W = advnn_tensor_new(1, s1);
        advnn__rng_seed(&r, 5);
        for (i = 0; i < ON; i++) {
            int k;
            Y->data[i] = (float)(i % 2);
            W->data[i] = (float)(0.5 + advnn__rng_uniform(&r));
            for (k = 0; k < OF; k++) X->data[i * OF + k] = (float)(gauss(&r) + (k % 7 == 0 ? 0.5 * Y->data[i] : 0.0));
        }
        x = advnn_input(g, "x", 1, &of); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
        z = advnn_dense(g, advnn_batchnorm(g, advnn_dense(g, x, 8, ADVNN_ACT_RELU)), 1, ADVNN_ACT_LINEAR);
        advnn_loss_bce_logits(g, z, y, w);
        if (advnn_graph_finalize(g, 3) != ADVNN_OK) { fprintf(stderr, "finalize: %s\n", advnn_last_error()); return 2; }
        snprintf(path, sizeof path, "%s.rank%d.npy", out, rank);   /* each rank its own copy, as on separate nodes */
        if (advnn_npy_save(path, X) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); return 2; }
        if (advnn_dataset_add_npy_file(d, "x", path) != ADVNN_OK || advnn_dataset_add(d, "y", Y) != ADVNN_OK ||
            advnn_dataset_add(d, "w", W) != ADVNN_OK || advnn_dataset_set_window(d, 384, 64) != ADVNN_OK) {
            fprintf(stderr, "dataset: %s\n", advnn_last_error()); return 2;
        }
        tr = advnn_trainer_new(g, 128, 9);   /* 4 chunks of 32 rows per batch */
        if (!tr || (use_mpi && advnn_trainer_set_mpi(tr, MPI_COMM_WORLD) != ADVNN_OK)) { fprintf(stderr, "trainer: %s\n", advnn_last_error()); return 2; }
        nread = d->cols[0].file->nread;   /* (the values were all read once when the file was added) */
        o.epochs = 2; o.val_split = 0.1f; o.verbose = 0;
        if (advnn_fit(tr, d, NULL, &o, NULL) != ADVNN_OK || advnn_evaluate(tr, d, &loss) != ADVNN_OK) {
            fprintf(stderr, "rank %d: %s\n", rank, advnn_last_error());
            fail("training or evaluation from the file failed");
        }
        nread = d->cols[0].file->nread - nread;
        printf("%s rank %d read %lld bytes\n", cas, rank, (long long)nread);
        fflush(stdout);
        compare_ranks(g);
        if (rank == 0) {
            FILE *f = fopen(out, "wb");
            if (!isfinite(loss) || !f || fwrite(g->params, sizeof(float), (size_t)g->n_params, f) != (size_t)g->n_params
                || fwrite(&loss, sizeof loss, 1, f) != 1 || fclose(f) != 0) fail("non-finite loss or cannot write the weights");
            printf("%s: %lld parameters, loss %.9g\n", cas, (long long)g->n_params, loss);
        }
        remove(path);
        advnn_trainer_free(tr); advnn_dataset_free(d); advnn_graph_free(g);
        advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(W);
    } else if (!strcmp(cas, "badlabel")) {   /* row 200 (chunk 6 of 8: rank 1's) has class 7 of 3 */
        net s = make(3, 4, DN);
        advnn_trainer *tr = advnn_trainer_new(s.g, 256, 9);
        int64_t idx[256];
        int i;
        double l;
        for (i = 0; i < 256; i++) idx[i] = i;
        s.t[1]->data[200] = 7.0f;
        advnn_trainer_set_mpi(tr, MPI_COMM_WORLD);
        report(advnn_train_step(tr, s.d, idx, 256, &l));
        s.t[1]->data[200] = 1.0f;   /* then every rank goes on training together */
        report(advnn_train_step(tr, s.d, idx, 256, &l));
        compare_ranks(s.g);
        advnn_trainer_free(tr); drop(&s);
    } else if (!strcmp(cas, "diverge") || !strcmp(cas, "rows") || !strcmp(cas, "seed") || !strcmp(cas, "kill") || !strcmp(cas, "exit")) {
        net s = make(0, !strcmp(cas, "seed") && rank == 1 ? 5 : 4, !strcmp(cas, "rows") && rank == 1 ? DN - 1 : DN);
        advnn_trainer *tr = advnn_trainer_new(s.g, 256, 9);
        advnn_fit_opts o = advnn_fit_defaults();
        advnn_status st = advnn_trainer_set_mpi(tr, MPI_COMM_WORLD);
        o.epochs = !strcmp(cas, "kill") || !strcmp(cas, "exit") ? 1000 : 3; o.verbose = 0; o.val_split = 0.1f;
        if (!strcmp(cas, "kill") || !strcmp(cas, "exit")) { o.callback = kill_cb; o.user = (void *)(uintptr_t)cas; }
        if (!strcmp(cas, "diverge") && rank == 1) advnn_trainer_set_optim(tr, NULL, advnn_adam(2e-3f));   /* rank 0: 1e-3 */
        if (st == ADVNN_OK) st = advnn_fit(tr, s.d, NULL, &o, NULL);
        report(st);
        advnn_trainer_free(tr); drop(&s);
    } else if (!strcmp(cas, "io")) {   /* rank 1's copy of the features file is cut short during training */
        net s = make(0, 4, DN);
        char path[256];
        advnn_dataset *d = advnn_dataset_new();
        advnn_trainer *tr = advnn_trainer_new(s.g, 64, 9);
        advnn_fit_opts o = advnn_fit_defaults();
        advnn_status st;
        snprintf(path, sizeof path, "%s.rank%d.npy", out, rank);
        if (advnn_npy_save(path, s.t[0]) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); return 2; }
        advnn_dataset_add_npy_file(d, "x", path); advnn_dataset_add(d, "y", s.t[1]); advnn_dataset_add(d, "w", s.t[2]);
        advnn_dataset_set_window(d, 128, 64);
        advnn_trainer_set_mpi(tr, MPI_COMM_WORLD);
        if (rank == 1 && truncate(path, 128 + 6 * 4 * 300) != 0) perror("truncate");
        o.epochs = 2; o.verbose = 0;
        st = advnn_fit(tr, d, NULL, &o, NULL);
        report(st);
        remove(path);
        advnn_trainer_free(tr); advnn_dataset_free(d); drop(&s);
    } else {
        if (rank == 0) fprintf(stderr, "mpi_train: unknown case '%s'\n", cas);
        MPI_Finalize();
        return 2;
    }
    if (rank == 0) { if (fail_msg[0]) printf("RESULT FAIL %s\n", fail_msg); else printf("RESULT ok\n"); }
    fflush(stdout);
    MPI_Finalize();
    return fail_msg[0] ? 1 : 0;
}
