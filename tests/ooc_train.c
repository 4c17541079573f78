/* tests/ooc_train.c -- the program behind tests/ooc_limit.sh and the out-of-core figures of
 * bench/README: writes a large two-class data set as .npy files without holding it in memory, and
 * trains a small network on it from the files (advnn_dataset_add_npy_file) or, for comparison,
 * loaded into memory. Prints one line of key=value results (times, rows/s, peak RSS, a hash of the
 * final weights).
 *   ooc_train gen PREFIX ROWS FEATURES SEED         -> PREFIX_x.npy (ROWS, FEATURES), PREFIX_y.npy (ROWS, 1)
 *   ooc_train train PREFIX [--memory] [--window ROWS] [--chunk ROWS] [--epochs N] [--seed N] [--threads N] [--cold]
 *                 --cold: drop the page cache (root) before loading/opening, and for files again before training
 *   ooc_train readbench PREFIX ROW_BYTES WINDOW CHUNK [--cold]   one epoch of shuffled chunks read into
 *                 a window buffer with fread (what the library does), with mmap + memcpy + MADV_DONTNEED
 *                 after each window, and with mmap + memcpy alone (RSS grows to the file size): MB/s, peak RSS
 * (not a tests/test_*.c: run_all.sh does not run it by itself) */
#define _DEFAULT_SOURCE   /* getrusage, mmap, madvise, sync */
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

static void drop_caches(void) {
    FILE *f;
    sync();
    if (!(f = fopen("/proc/sys/vm/drop_caches", "w")) || fputs("3\n", f) == EOF || fclose(f)) {
        fprintf(stderr, "ooc_train: cannot drop the page cache (needs root)\n");
        exit(1);
    }
}

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* a version-1 .npy header for a float32 (rows, cols) array, padded to 64 bytes */
static int write_header(FILE *f, long long rows, long long cols) {
    char h[128];
    int n = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }", rows, cols);
    while ((10 + n + 1) % 64) h[n++] = ' ';
    h[n++] = '\n';
    return fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fputc(n & 255, f) != EOF && fputc(n >> 8, f) != EOF && fwrite(h, 1, (size_t)n, f) == (size_t)n;
}

static int gen(const char *prefix, long long rows, int cols, unsigned long long seed) {
    char px[1024], py[1024];
    FILE *fx, *fy;
    float *row = (float *)malloc((size_t)cols * sizeof(float));
    unsigned long long s = seed * 0x9E3779B97F4A7C15ULL + 1;
    long long i;
    int j;
    snprintf(px, sizeof px, "%s_x.npy", prefix); snprintf(py, sizeof py, "%s_y.npy", prefix);
    fx = fopen(px, "wb"); fy = fopen(py, "wb");
    if (!row || !fx || !fy || !write_header(fx, rows, cols) || !write_header(fy, rows, 1)) { fprintf(stderr, "ooc_train: cannot write %s\n", px); return 1; }
    for (i = 0; i < rows; i++) {   /* label: sign of a fixed linear form plus a product term (learnable, not trivial) */
        double z = 0;
        float y;
        for (j = 0; j < cols; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            row[j] = (float)((double)(s >> 40) / (double)(1 << 24) * 2.0 - 1.0);
            if (j < 16) z += (j % 3 ? 1.0 : -1.3) * row[j];
        }
        z += 2.0 * row[0] * row[1];
        y = z > 0 ? 1.0f : 0.0f;
        if (fwrite(row, sizeof(float), (size_t)cols, fx) != (size_t)cols || fwrite(&y, sizeof y, 1, fy) != 1) { fprintf(stderr, "ooc_train: write failed (disk full?)\n"); return 1; }
    }
    free(row);
    if (fclose(fx) || fclose(fy)) { fprintf(stderr, "ooc_train: close failed\n"); return 1; }
    printf("wrote %s (%lld x %d float32, %.1f MB) and %s\n", px, rows, cols, (double)rows * cols * 4 / 1e6, py);
    return 0;
}

static long maxrss_kb(void) { struct rusage ru; getrusage(RUSAGE_SELF, &ru); return ru.ru_maxrss; }

/* one epoch of chunk-shuffled windows of the data part of PREFIX_x.npy, by fread or by mmap */
static int readbench(const char *prefix, long long rowb, long long window, long long chunk, int cold) {
    char px[1024];
    FILE *f;
    long long size, rows, nch, c, *order, cpw = window / chunk, w0;
    unsigned long long s = 7;
    char *buf = (char *)malloc((size_t)(window * rowb)), *map;
    double t0, sum = 0;
    int mode, fd;
    snprintf(px, sizeof px, "%s_x.npy", prefix);
    if (!buf || !(f = fopen(px, "rb")) || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 128) { fprintf(stderr, "ooc_train: cannot read %s\n", px); return 1; }
    rows = (size - 128) / rowb; nch = (rows + chunk - 1) / chunk;   /* (the header of gen's files is 128 bytes) */
    order = (long long *)malloc((size_t)nch * sizeof *order);
    for (mode = 0; mode < 3; mode++) {   /* fread, mmap + MADV_DONTNEED, mmap alone */
        long rss0 = maxrss_kb();
        for (c = 0; c < nch; c++) order[c] = c;
        for (c = nch - 1; c > 0; c--) { long long j, t; s = s * 6364136223846793005ULL + 1; j = (long long)((s >> 33) % (unsigned long long)(c + 1)); t = order[c]; order[c] = order[j]; order[j] = t; }
        if (cold) drop_caches();
        fd = open(px, O_RDONLY);
        map = mode ? (char *)mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0) : NULL;
        if (mode && map == MAP_FAILED) { fprintf(stderr, "ooc_train: mmap failed\n"); return 1; }
        t0 = now();
        for (w0 = 0; w0 < nch; w0 += cpw) {
            long long at = 0;
            for (c = w0; c < w0 + cpw && c < nch; c++) {
                long long r0 = order[c] * chunk, len = rows - r0 < chunk ? rows - r0 : chunk;
                if (mode) memcpy(buf + at, map + 128 + r0 * rowb, (size_t)(len * rowb));
                else if (fseek(f, (long)(128 + r0 * rowb), SEEK_SET) || fread(buf + at, 1, (size_t)(len * rowb), f) != (size_t)(len * rowb)) { fprintf(stderr, "short read\n"); return 1; }
                at += len * rowb;
            }
            sum += buf[at / 2];
            if (mode == 1) madvise(map, (size_t)size, MADV_DONTNEED);
        }
        printf("read=%s cold=%d MB_per_s=%.0f maxrss_kb=%ld (before: %ld)\n", mode == 0 ? "fread" : mode == 1 ? "mmap+memcpy+dontneed" : "mmap+memcpy", cold, (double)rows * rowb / 1e6 / (now() - t0), maxrss_kb(), rss0);
        if (mode) munmap(map, (size_t)size);
        close(fd);
    }
    fclose(f); free(buf); free(order);
    return sum == 12345.0;   /* (keeps the reads from being optimised away) */
}

static int train(const char *prefix, int memory, long long window, long long chunk, int epochs, unsigned long long seed, int threads, int cold) {
    char px[1024], py[1024];
    advnn_dataset *d = advnn_dataset_new();
    advnn_tensor *X = NULL, *Y = NULL;
    advnn_graph *g = advnn_graph_new();
    advnn_trainer *tr;
    advnn_fit_opts o = advnn_fit_defaults();
    advnn_fit_result r;
    struct rusage ru;
    int f, one = 1, x, y, h, z;
    int64_t np, i, N;
    double t0, t1, t2;
    unsigned long long hash = 1469598103934665603ULL;
    const unsigned char *pb;
    snprintf(px, sizeof px, "%s_x.npy", prefix); snprintf(py, sizeof py, "%s_y.npy", prefix);
    if (cold) drop_caches();
    t0 = now();
    if (memory) {
        if (!(X = advnn_npy_load(px)) || !(Y = advnn_npy_load(py)) || advnn_dataset_add(d, "x", X) != ADVNN_OK || advnn_dataset_add(d, "y", Y) != ADVNN_OK) {
            fprintf(stderr, "ooc_train: in memory: %s\n", advnn_last_error()); return 1;
        }
    } else if (advnn_dataset_add_npy_file(d, "x", px) != ADVNN_OK || advnn_dataset_add_npy_file(d, "y", py) != ADVNN_OK ||
               advnn_dataset_set_window(d, window, chunk) != ADVNN_OK) {
        fprintf(stderr, "ooc_train: from files: %s\n", advnn_last_error()); return 1;
    }
    if (cold && !memory) drop_caches();   /* the scan in add_npy_file read the file: cold again for the epochs */
    t1 = now();
    N = advnn_dataset_size(d);
    f = memory ? (int)X->shape[1] : 0;
    if (!memory) {   /* the feature count from the header, through a one-row prediction-free route: the file's shape */
        FILE *fp = fopen(px, "rb");
        char hb[256] = {0};
        const char *p;
        if (!fp || fread(hb, 1, sizeof hb - 1, fp) < 10) { fprintf(stderr, "ooc_train: cannot read %s\n", px); return 1; }
        fclose(fp);
        p = strstr(hb + 10, "'shape': (");
        if (!p || !(p = strchr(p, ',')) || sscanf(p + 1, "%d", &f) != 1) { fprintf(stderr, "ooc_train: no shape in %s\n", px); return 1; }
    }
    advnn_set_threads(threads);
    x = advnn_input(g, "x", 1, &f); y = advnn_input(g, "y", 1, &one);
    h = advnn_dense(g, x, 32, ADVNN_ACT_RELU);
    h = advnn_dense(g, h, 16, ADVNN_ACT_RELU);
    z = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
    advnn_loss_bce_logits(g, z, y, -1);
    if (advnn_graph_finalize(g, seed) != ADVNN_OK || !(tr = advnn_trainer_new(g, 256, seed))) { fprintf(stderr, "ooc_train: %s\n", advnn_last_error()); return 1; }
    o.epochs = epochs; o.val_split = 0.05f; o.verbose = 0;
    if (advnn_fit(tr, d, NULL, &o, &r) != ADVNN_OK) { fprintf(stderr, "ooc_train: fit: %s\n", advnn_last_error()); return 1; }
    t2 = now();
    pb = (const unsigned char *)advnn_params(g, &np);
    for (i = 0; i < np * (int64_t)sizeof(float); i++) { hash ^= pb[i]; hash *= 1099511628211ULL; }
    getrusage(RUSAGE_SELF, &ru);
    printf("mode=%s rows=%lld features=%d epochs=%d load_s=%.2f fit_s=%.2f rows_per_s=%.0f best_val_loss=%.5f maxrss_kb=%ld weights_hash=%016llx\n",
           memory ? "memory" : "files", (long long)N, f, epochs, t1 - t0, t2 - t1, (double)N * epochs / (t2 - t1), r.best_loss, ru.ru_maxrss, hash);
    advnn_trainer_free(tr); advnn_graph_free(g); advnn_dataset_free(d); advnn_tensor_free(X); advnn_tensor_free(Y);
    return 0;
}

int main(int argc, char **argv) {
    int i, memory = 0, epochs = 1, threads = 1, cold = 0;
    long long window = 8192, chunk = 256, seed = 1;
    if (argc >= 6 && !strcmp(argv[1], "readbench"))
        return readbench(argv[2], atoll(argv[3]), atoll(argv[4]), atoll(argv[5]), argc > 6 && !strcmp(argv[6], "--cold"));
    if (argc >= 6 && !strcmp(argv[1], "gen")) return gen(argv[2], atoll(argv[3]), atoi(argv[4]), (unsigned long long)atoll(argv[5]));
    if (argc >= 3 && !strcmp(argv[1], "train")) {
        for (i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--memory")) { memory = 1; continue; }
            if (!strcmp(argv[i], "--cold")) { cold = 1; continue; }
            if (i + 1 >= argc) break;
            if (!strcmp(argv[i], "--window")) window = atoll(argv[++i]);
            else if (!strcmp(argv[i], "--chunk")) chunk = atoll(argv[++i]);
            else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[++i]);
            else if (!strcmp(argv[i], "--seed")) seed = atoll(argv[++i]);
            else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
            else break;
        }
        if (i == argc && epochs > 0 && threads > 0) return train(argv[2], memory, window, chunk, epochs, (unsigned long long)seed, threads, cold);
    }
    fprintf(stderr, "usage: %s gen PREFIX ROWS FEATURES SEED | train PREFIX [--memory] [--window R] [--chunk R] [--epochs N] [--seed N] [--threads N] [--cold] | readbench PREFIX ROW_BYTES WINDOW CHUNK [--cold]\n", argv[0]);
    return 2;
}
