/* demo: the whole advnn workflow on a generated two-class problem (examples/toy_data.h).
 *   generate -> write .npy -> read .npy -> build a weighted dense tagger -> train with Adam and
 *   early stopping -> save the model -> load it back -> predict -> test AUC.
 * Usage: demo [--out DIR] [--seed N] [--epochs N] [--n N]      (make run-demo runs it with defaults) */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "cli.h"
#include "toy_data.h"
#include <errno.h>
#include <sys/stat.h>

static int die(const char *what) {
    fprintf(stderr, "demo: %s: %s\n", what, advnn_last_error());
    return 1;
}

static advnn_status write_split(const char *dir, const char *split, uint64_t seed, int64_t n) {
    int64_t sx[2], s1[1];
    advnn_tensor *x, *y, *w;
    char path[1024];
    advnn_status st;
    sx[0] = n; sx[1] = TOY_FEATURES; s1[0] = n;
    x = advnn_tensor_new(2, sx); y = advnn_tensor_new(1, s1); w = advnn_tensor_new(1, s1);
    if (!x || !y || !w) return ADVNN_ERR_NOMEM;
    toy_generate(seed, n, x->data, y->data, w->data);
    snprintf(path, sizeof path, "%s/%s_x.npy", dir, split);
    st = advnn_npy_save(path, x);
    snprintf(path, sizeof path, "%s/%s_y.npy", dir, split);
    if (st == ADVNN_OK) st = advnn_npy_save(path, y);
    snprintf(path, sizeof path, "%s/%s_w.npy", dir, split);
    if (st == ADVNN_OK) st = advnn_npy_save(path, w);
    advnn_tensor_free(x); advnn_tensor_free(y); advnn_tensor_free(w);
    return st;
}

/* Loads <dir>/<split>_{x,y,w}.npy into a dataset; t[] keeps the tensors to free later. */
static advnn_dataset *load_split(const char *dir, const char *split, advnn_tensor **t) {
    const char *names[3] = {"x", "y", "w"};
    advnn_dataset *d = advnn_dataset_new();
    char path[1024];
    int i;
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s_%s.npy", dir, split, names[i]);
        if (!(t[i] = advnn_npy_load(path)) || advnn_dataset_add(d, names[i], t[i]) != ADVNN_OK) { advnn_dataset_free(d); return NULL; }
    }
    return d;
}

int main(int argc, char **argv) {
    const char *out = "build/demo";
    long seed = 1, epochs = 40, n = 20000;
    char path[1024];
    advnn_graph *g, *loaded;
    advnn_trainer *tr;
    advnn_dataset *train, *test;
    advnn_tensor *tt[3], *te[3], *p = NULL;
    advnn_fit_opts o;
    advnn_fit_result res;
    double auc;
    int i, f = TOY_FEATURES, one = 1, x, y, w, h, z;

    setvbuf(stdout, NULL, _IOLBF, 0);  /* keep our lines in order with the trainer's stderr log */
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [--out DIR] [--seed N] [--epochs N] [--n N]\n"
                   "Trains a weighted dense tagger (10 -> 64 -> 64 -> 1, BatchNorm, Adam, early stopping) on a\n"
                   "generated two-class problem, saves and reloads it, and prints its test AUC.\n", argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc && parse_long(argv[i + 1], 0, 2147483647L, &seed)) i++;
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc && parse_long(argv[i + 1], 1, 100000, &epochs)) i++;
        else if (!strcmp(argv[i], "--n") && i + 1 < argc && parse_long(argv[i + 1], 100, 100000000L, &n)) i++;
        else { fprintf(stderr, "demo: bad argument '%s' (try --help)\n", argv[i]); return 2; }
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) { fprintf(stderr, "demo: cannot create '%s': %s\n", out, strerror(errno)); return 1; }

    printf("advnn %d.%d.%d, kernels: %s\n", ADVNN_VERSION_MAJOR, ADVNN_VERSION_MINOR, ADVNN_VERSION_PATCH, advnn_simd_name());
    if (write_split(out, "train", (uint64_t)seed * 2 + 1, n) != ADVNN_OK || write_split(out, "test", (uint64_t)seed * 2 + 2, n / 2) != ADVNN_OK)
        return die("writing data");
    printf("data: %ld training and %ld test jets written to %s/*.npy\n", n, n / 2, out);
    if (!(train = load_split(out, "train", tt)) || !(test = load_split(out, "test", te))) return die("reading data");

    g = advnn_graph_new();
    x = advnn_input(g, "x", 1, &f);
    y = advnn_input(g, "y", 1, &one);
    w = advnn_input(g, "w", 1, &one);
    h = advnn_batchnorm(g, x);
    h = advnn_dense(g, h, 64, ADVNN_ACT_RELU);
    h = advnn_dense(g, h, 64, ADVNN_ACT_RELU);
    z = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
    advnn_loss_bce_logits(g, z, y, w);
    if (advnn_graph_finalize(g, (uint64_t)seed) != ADVNN_OK) return die("building the network");
    printf("network: %lld trainable parameters\n", (long long)advnn_param_count(g, NULL));

    tr = advnn_trainer_new(g, 256, (uint64_t)seed);
    if (!tr) return die("trainer");
    advnn_trainer_set_optim(tr, NULL, advnn_adam(3e-3f));
    o = advnn_fit_defaults();
    o.epochs = (int)epochs; o.val_split = 0.2f; o.patience = 5;
    if (advnn_fit(tr, train, NULL, &o, &res) != ADVNN_OK) return die("training");
    printf("trained %d epochs, best epoch %d (val loss %.5f), weights restored to it\n", res.epochs_run, res.best_epoch + 1, res.best_loss);

    snprintf(path, sizeof path, "%s/tagger.advnn", out);
    if (advnn_model_save(g, path) != ADVNN_OK) return die("saving");
    if (!(loaded = advnn_model_load(path))) return die("loading");
    if (advnn_predict(loaded, test, "prob", &p) != ADVNN_OK) return die("predicting");
    if (advnn_auc(p->data, te[1]->data, te[2]->data, p->shape[0], &auc) != ADVNN_OK) return die("AUC");
    printf("model saved to %s and reloaded\n", path);
    printf("test AUC (weighted, %lld jets): %.4f\n", (long long)p->shape[0], auc);

    advnn_tensor_free(p);
    advnn_graph_free(loaded); advnn_trainer_free(tr); advnn_graph_free(g);
    advnn_dataset_free(train); advnn_dataset_free(test);
    for (i = 0; i < 3; i++) { advnn_tensor_free(tt[i]); advnn_tensor_free(te[i]); }
    return 0;
}
