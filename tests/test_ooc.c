/* Datasets backed by .npy files (advnn_dataset_add_npy_file): training, evaluation and prediction
 * read them in windows. Checks: one window = the in-memory advnn_fit bit for bit; several windows
 * without shuffling = the in-memory file-order fit bit for bit (so the carried rows between windows
 * keep every batch as in memory); with shuffling, each training row is used exactly once per epoch
 * (the epoch's mean loss with frozen weights equals the full evaluation), the same seed gives the
 * same weights and another seed other ones, and the network learns; advnn_adv_fit (both schedules)
 * equal to in-memory with one window and with windows in file order; float64 files; errors (NaN/Inf
 * with row and column, truncation, missing file, row counts, advnn_train_step on file data). The
 * memory bound itself is checked by tests/ooc_limit.sh under prlimit --as. */
#define ADVNN_IMPLEMENTATION
#define ADVNN_SIMD_IMPLEMENTATION
#include "advnn.h"
#include "harness.h"
#include <unistd.h>

#define F 6
#define N 2000
static char px[256], py[256], pbad[256];
static advnn_tensor *X, *Y, *Wt, *M;

static void toy(void) {
    int64_t sx[2] = {N, F}, sy[2] = {N, 1};
    uint64_t s = 0x12345678ULL;
    int64_t i, j;
    X = advnn_tensor_new(2, sx); Y = advnn_tensor_new(2, sy); Wt = advnn_tensor_new(2, sy); M = advnn_tensor_new(2, sy);
    for (i = 0; i < N; i++) {
        double z = 0;
        for (j = 0; j < F; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            X->data[i * F + j] = (float)((double)(s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
            z += (j % 2 ? 1.0 : -0.7) * X->data[i * F + j] * (j + 1);
        }
        Y->data[i] = z + 0.3 * X->data[i * F] * X->data[i * F + 1] > 0 ? 1.0f : 0.0f;
        Wt->data[i] = 0.5f + (float)(i % 7) / 7.0f;
        M->data[i] = X->data[i * F] * X->data[i * F] + 0.2f * X->data[i * F + 3];   /* what the adversary predicts */
    }
}

/* x -> dense 16 relu [-> batchnorm] -> dense 1 logit (BCE with weights w), output "prob" */
static advnn_graph *net(int bn) {
    advnn_graph *g = advnn_graph_new();
    int f = F, one = 1, x, y, w, h, z;
    x = advnn_input(g, "x", 1, &f); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one);
    h = advnn_dense(g, x, 16, ADVNN_ACT_RELU);
    if (bn) h = advnn_batchnorm(g, h);
    z = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_bce_logits(g, z, y, w);
    if (advnn_graph_finalize(g, 7) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); exit(1); }
    return g;
}

static advnn_dataset *mem_set(void) {
    advnn_dataset *d = advnn_dataset_new();
    advnn_dataset_add(d, "x", X); advnn_dataset_add(d, "y", Y); advnn_dataset_add(d, "w", Wt);
    return d;
}
/* x and y from files, w in memory (mixed columns) */
static advnn_dataset *file_set(const char *xpath, int64_t window, int64_t chunk) {
    advnn_dataset *d = advnn_dataset_new();
    CHECK(advnn_dataset_add_npy_file(d, "x", xpath) == ADVNN_OK, "add x: %s", advnn_last_error());
    CHECK(advnn_dataset_add_npy_file(d, "y", py) == ADVNN_OK, "add y: %s", advnn_last_error());
    CHECK(advnn_dataset_add(d, "w", Wt) == ADVNN_OK, "add w: %s", advnn_last_error());
    if (window) CHECK(advnn_dataset_set_window(d, window, chunk) == ADVNN_OK, "window: %s", advnn_last_error());
    return d;
}

/* trains a fresh net(bn) on d; returns its parameters (malloc'd copy) */
static float *train(advnn_dataset *d, int bn, int shuffle, uint64_t seed, int64_t *np, double *val_loss) {
    advnn_graph *g = net(bn);
    advnn_trainer *tr = advnn_trainer_new(g, 100, seed);
    advnn_fit_opts o = advnn_fit_defaults();
    advnn_fit_result r;
    float *p, *copy;
    o.epochs = 3; o.val_split = 0.2f; o.verbose = 0; o.shuffle = shuffle;
    advnn_trainer_set_optim(tr, NULL, advnn_adam(5e-3f));
    CHECK(advnn_fit(tr, d, NULL, &o, &r) == ADVNN_OK, "fit: %s", advnn_last_error());
    if (val_loss) *val_loss = r.best_loss;
    p = advnn_params(g, np);
    copy = (float *)malloc((size_t)*np * sizeof(float));
    memcpy(copy, p, (size_t)*np * sizeof(float));
    advnn_trainer_free(tr);
    advnn_graph_free(g);
    return copy;
}

static void test_one_window_equals_memory(void) {
    advnn_dataset *m = mem_set(), *f = file_set(px, 0, 0);
    int64_t n1, n2;
    float *a = train(m, 1, 1, 11, &n1, NULL), *b = train(f, 1, 1, 11, &n2, NULL);
    advnn_graph *g = net(1);
    advnn_tensor *pm = NULL, *pf = NULL;
    advnn_trainer *tr;
    double lm = 0, lf = 1;
    CHECK(n1 == n2 && memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "weights differ from the in-memory fit");
    CHECK(advnn_predict(g, m, "prob", &pm) == ADVNN_OK && advnn_predict(g, f, "prob", &pf) == ADVNN_OK, "predict: %s", advnn_last_error());
    CHECK(pm && pf && pf->shape[0] == N && memcmp(pm->data, pf->data, N * sizeof(float)) == 0, "predictions differ");
    tr = advnn_trainer_new(g, 100, 1);
    CHECK(advnn_evaluate(tr, m, &lm) == ADVNN_OK && advnn_evaluate(tr, f, &lf) == ADVNN_OK && lm == lf, "evaluate %.17g vs %.17g", lm, lf);
    advnn_trainer_free(tr); advnn_graph_free(g);
    advnn_tensor_free(pm); advnn_tensor_free(pf);
    free(a); free(b); advnn_dataset_free(m); advnn_dataset_free(f);
}

/* windows of 256 rows (4 chunks of 64), batches of 100: rows carried over between windows */
static void test_windows_in_file_order_equal_memory(void) {
    advnn_dataset *m = mem_set(), *f = file_set(px, 300, 64);
    int64_t n1, n2;
    float *a = train(m, 1, 0, 5, &n1, NULL), *b = train(f, 1, 0, 5, &n2, NULL);
    advnn_graph *g = net(1);
    advnn_tensor *pm = NULL, *pf = NULL;
    CHECK(n1 == n2 && memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "windows without shuffling: weights differ from the in-memory fit");
    advnn_params(g, &n1);
    memcpy(advnn_params(g, &n1), b, (size_t)n1 * sizeof(float));
    CHECK(advnn_predict(g, m, "prob", &pm) == ADVNN_OK && advnn_predict(g, f, "prob", &pf) == ADVNN_OK, "predict: %s", advnn_last_error());
    CHECK(pm && pf && memcmp(pm->data, pf->data, N * sizeof(float)) == 0, "predictions through windows differ");
    advnn_tensor_free(pm); advnn_tensor_free(pf); advnn_graph_free(g);
    free(a); free(b); advnn_dataset_free(m); advnn_dataset_free(f);
}

static void test_windows_shuffled(void) {
    advnn_dataset *f = file_set(px, 300, 64);
    advnn_graph *g0 = net(1);
    advnn_trainer *tr0 = advnn_trainer_new(g0, 100, 1);
    int64_t n1, n2, n3;
    double l0 = 0, l1 = 0, l2 = 0;
    float *a, *b, *c;
    CHECK(advnn_evaluate(tr0, f, &l0) == ADVNN_OK, "evaluate: %s", advnn_last_error());
    a = train(f, 1, 1, 21, &n1, &l1); b = train(f, 1, 1, 21, &n2, &l2); c = train(f, 1, 1, 22, &n3, NULL);
    CHECK(memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "same seed, different weights");
    CHECK(memcmp(a, c, (size_t)n1 * sizeof(float)) != 0, "another seed gave the same weights (no shuffling?)");
    CHECK(l1 == l2 && l1 < 0.7 * l0, "validation loss %g after 3 epochs, %g untrained", l1, l0);
    free(a); free(b); free(c); advnn_trainer_free(tr0); advnn_graph_free(g0); advnn_dataset_free(f);
}

static double first_loss;
static int grab(const advnn_epoch_info *info, void *user) { (void)user; if (info->epoch == 0) first_loss = info->train_loss; return 0; }

/* frozen weights, no batchnorm: the epoch's mean training loss is a per-row mean, so it equals the
 * evaluation over all rows only if every row came exactly once (a duplicate moves it by ~1e-4) */
static void test_each_row_once(void) {
    advnn_dataset *m = mem_set(), *f = file_set(px, 300, 64);
    advnn_graph *g = net(0);
    advnn_trainer *tr = advnn_trainer_new(g, 100, 3);
    advnn_fit_opts o = advnn_fit_defaults();
    double full = 0;
    o.epochs = 1; o.verbose = 0; o.callback = grab; o.restore_best = 0;
    advnn_trainer_set_trainable(tr, NULL, 0);
    CHECK(advnn_evaluate(tr, m, &full) == ADVNN_OK, "evaluate: %s", advnn_last_error());
    first_loss = -1;
    CHECK(advnn_fit(tr, f, NULL, &o, NULL) == ADVNN_OK, "fit: %s", advnn_last_error());
    CHECK(th_close(first_loss, full, 2e-6, 0), "epoch mean loss %.9g, evaluation %.9g", first_loss, full);
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(m); advnn_dataset_free(f);
}

/* main: x -> dense 8 tanh -> z, BCE(z, y, w); adversary ("adv"): reverse(z) -> dense 4 tanh -> 1, MSE vs m */
static float *adv_train(advnn_dataset *d, advnn_adv_mode mode, int shuffle, int64_t *np) {
    advnn_graph *g = advnn_graph_new();
    int f = F, one = 1, x, y, w, m, z, rev, a, lm, la;
    advnn_trainer *tr;
    advnn_adv_opts o = advnn_adv_defaults();
    float *p, *copy;
    x = advnn_input(g, "x", 1, &f); y = advnn_input(g, "y", 1, &one); w = advnn_input(g, "w", 1, &one); m = advnn_input(g, "m", 1, &one);
    z = advnn_dense(g, advnn_dense(g, x, 8, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    lm = advnn_loss_bce_logits(g, z, y, w);
    advnn_group(g, "adv");
    rev = advnn_grad_reverse(g, z, 1.0f);
    a = advnn_dense(g, advnn_dense(g, rev, 4, ADVNN_ACT_TANH), 1, ADVNN_ACT_LINEAR);
    la = advnn_loss_mse(g, a, m, -1);
    CHECK(advnn_graph_finalize(g, 9) == ADVNN_OK, "%s", advnn_last_error());
    tr = advnn_trainer_new(g, 100, 13);
    o.mode = mode; o.main_loss = lm; o.adv_loss = la; o.grad_reverse = rev; o.verbose = 0; o.shuffle = shuffle;
    o.pretrain_main_epochs = 1; o.pretrain_adv_epochs = 1; o.epochs = 2; o.lambda = 2;
    CHECK(advnn_adv_fit(tr, d, &o, NULL) == ADVNN_OK, "adv_fit: %s", advnn_last_error());
    p = advnn_params(g, np);
    copy = (float *)malloc((size_t)*np * sizeof(float));
    memcpy(copy, p, (size_t)*np * sizeof(float));
    advnn_trainer_free(tr); advnn_graph_free(g);
    return copy;
}

static void test_adversarial_from_files(void) {
    advnn_dataset *m = mem_set(), *f1 = file_set(px, 0, 0), *fw = file_set(px, 300, 64);
    int64_t n1, n2, n3, n4;
    float *a, *b, *c, *e;
    advnn_dataset_add(m, "m", M); advnn_dataset_add(f1, "m", M); advnn_dataset_add(fw, "m", M);
    a = adv_train(m, ADVNN_ADV_JOINT, 1, &n1); b = adv_train(f1, ADVNN_ADV_JOINT, 1, &n2);
    CHECK(n1 == n2 && memcmp(a, b, (size_t)n1 * sizeof(float)) == 0, "JOINT, one window: weights differ from in memory");
    c = adv_train(m, ADVNN_ADV_ALTERNATING, 0, &n3); e = adv_train(fw, ADVNN_ADV_ALTERNATING, 0, &n4);
    CHECK(n3 == n4 && memcmp(c, e, (size_t)n3 * sizeof(float)) == 0, "ALTERNATING, windows in file order: weights differ from in memory");
    CHECK(memcmp(a, c, (size_t)n1 * sizeof(float)) != 0, "the two schedules gave the same weights");
    free(a); free(b); free(c); free(e);
    advnn_dataset_free(m); advnn_dataset_free(f1); advnn_dataset_free(fw);
}

/* a little-endian float64 .npy written by hand: same values, same predictions */
static void test_float64_file(void) {
    char p8[256], hdr[128];
    FILE *fp;
    int n, i;
    advnn_dataset *a, *b;
    advnn_graph *g = net(0);
    advnn_tensor *pa = NULL, *pb = NULL;
    snprintf(p8, sizeof p8, "build_test_ooc_%d_x8.npy", (int)getpid());
    n = snprintf(hdr, sizeof hdr, "{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }", N, F);
    while ((10 + n + 1) % 64) hdr[n++] = ' ';
    hdr[n++] = '\n';
    fp = fopen(p8, "wb");
    CHECK(fp != NULL, "cannot write %s", p8);
    if (!fp) return;
    fwrite("\x93NUMPY\x01\x00", 1, 8, fp);
    fputc(n & 255, fp); fputc(n >> 8, fp);
    fwrite(hdr, 1, (size_t)n, fp);
    for (i = 0; i < N * F; i++) { double v = X->data[i]; unsigned char b8[8]; uint64_t u; int k; memcpy(&u, &v, 8); for (k = 0; k < 8; k++) b8[k] = (unsigned char)(u >> (8 * k)); fwrite(b8, 1, 8, fp); }
    fclose(fp);
    a = file_set(px, 128, 32); b = file_set(p8, 128, 32);
    CHECK(advnn_predict(g, a, "prob", &pa) == ADVNN_OK && advnn_predict(g, b, "prob", &pb) == ADVNN_OK, "predict: %s", advnn_last_error());
    CHECK(pa && pb && memcmp(pa->data, pb->data, N * sizeof(float)) == 0, "float64 file: other predictions");
    advnn_tensor_free(pa); advnn_tensor_free(pb); advnn_graph_free(g); advnn_dataset_free(a); advnn_dataset_free(b);
    remove(p8);
}

static void test_errors(void) {
    advnn_dataset *d = advnn_dataset_new();
    advnn_tensor *bad = advnn_tensor_new(2, X->shape), *short1;
    int64_t s1[2] = {N - 1, 1}, idx[3] = {0, 1, 2};
    advnn_graph *g = net(0);
    advnn_trainer *tr = advnn_trainer_new(g, 100, 1);
    char ptr[256];
    unsigned char *buf;
    long len;
    FILE *fp;
    memcpy(bad->data, X->data, (size_t)X->size * sizeof(float));
    bad->data[17 * F + 2] = NAN;
    CHECK(advnn_npy_save(pbad, bad) == ADVNN_OK, "save: %s", advnn_last_error());
    CHECK(advnn_dataset_add_npy_file(d, "x", pbad) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "row 17, column 2"), "NaN: %s", advnn_last_error());
    bad->data[17 * F + 2] = 1; bad->data[1999 * F + 5] = -INFINITY;
    advnn_npy_save(pbad, bad);
    CHECK(advnn_dataset_add_npy_file(d, "x", pbad) == ADVNN_ERR_NAN && strstr(advnn_last_error(), "row 1999, column 5"), "Inf: %s", advnn_last_error());
    CHECK(advnn_dataset_add_npy_file(d, "x", "no/such/file.npy") == ADVNN_ERR_IO && strstr(advnn_last_error(), "no/such/file.npy"), "missing: %s", advnn_last_error());
    /* truncated: the file minus its last 4 bytes */
    fp = fopen(px, "rb"); fseek(fp, 0, SEEK_END); len = ftell(fp); fseek(fp, 0, SEEK_SET);
    buf = (unsigned char *)malloc((size_t)len); CHECK(fread(buf, 1, (size_t)len, fp) == (size_t)len, "read"); fclose(fp);
    snprintf(ptr, sizeof ptr, "build_test_ooc_%d_trunc.npy", (int)getpid());
    fp = fopen(ptr, "wb"); fwrite(buf, 1, (size_t)len - 4, fp); fclose(fp); free(buf);
    CHECK(advnn_dataset_add_npy_file(d, "x", ptr) == ADVNN_ERR_FORMAT && strstr(advnn_last_error(), ptr), "truncated: %s", advnn_last_error());
    remove(ptr);
    CHECK(advnn_dataset_size(d) == 0, "failed adds left %lld rows", (long long)advnn_dataset_size(d));
    /* row counts must agree; a name only once */
    short1 = advnn_tensor_new(2, s1);
    CHECK(advnn_dataset_add_npy_file(d, "x", px) == ADVNN_OK, "add: %s", advnn_last_error());
    CHECK(advnn_dataset_add(d, "y", short1) == ADVNN_ERR_SHAPE, "short column accepted");
    CHECK(advnn_dataset_add_npy_file(d, "x", px) == ADVNN_ERR_ARG, "x added twice");
    CHECK(advnn_dataset_set_window(d, 10, 20) == ADVNN_ERR_ARG && advnn_dataset_set_window(d, 10, 0) == ADVNN_ERR_ARG, "bad windows accepted");
    advnn_dataset_add_npy_file(d, "y", py); advnn_dataset_add(d, "w", Wt);
    CHECK(advnn_train_step(tr, d, idx, 3, NULL) == ADVNN_ERR_STATE && strstr(advnn_last_error(), "advnn_dataset_add_npy_file"),
          "train_step on file data: %s", advnn_last_error());
    advnn_tensor_free(bad); advnn_tensor_free(short1);
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d);
}

int main(void) {
    int pid = (int)getpid();
    toy();
    snprintf(px, sizeof px, "build_test_ooc_%d_x.npy", pid);
    snprintf(py, sizeof py, "build_test_ooc_%d_y.npy", pid);
    snprintf(pbad, sizeof pbad, "build_test_ooc_%d_bad.npy", pid);
    if (advnn_npy_save(px, X) != ADVNN_OK || advnn_npy_save(py, Y) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); return 1; }
    RUN(test_one_window_equals_memory);
    RUN(test_windows_in_file_order_equal_memory);
    RUN(test_windows_shuffled);
    RUN(test_each_row_once);
    RUN(test_adversarial_from_files);
    RUN(test_float64_file);
    RUN(test_errors);
    remove(px); remove(py); remove(pbad);
    advnn_tensor_free(X); advnn_tensor_free(Y); advnn_tensor_free(Wt); advnn_tensor_free(M);
    return th_report();
}
