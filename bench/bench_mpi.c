/* MPI data-parallel training throughput (advnn_trainer_set_mpi) of a reference workload, and the
 * cost of its gradient exchange. Built with mpicc -DADVNN_MPI by bench/bench_mpi.sh (`make bench-mpi`),
 * which runs it as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread, alternating.
 *
 * The step is bench_workloads.c's: one advnn_adv_step in ADVNN_ADV_ALTERNATING mode (W2: 512 jets +
 * 512 control-region jets, two adversary updates then one tagger update, Nadam 8e-4; W1 batch 1024,
 * one adversary update; W3 batch 512, three adversary updates), on NB batches of random data made
 * up front and cycled. Every rank runs the same steps (each its own chunks of them).
 * Timing: warm-up steps, then at least --steps steps and --seconds, each step timed on rank 0 after
 * the ranks left the previous one together (no barrier inside the loop: the collectives inside the
 * step keep the ranks in step); median and p10/p90. "mpi_share" = advnn_trainer_mpi_seconds over
 * the timed loop / its wall time: the time inside the trainer's MPI calls, waits for the slower rank
 * included. Then the gradient exchange alone (the trainer's own code, advnn__mpi_grad, on a full
 * batch's chunks, after a barrier, 200 times) and MPI_Allreduce of the same number of floats, for
 * the cost model in bench/README.md. With one rank these are 0.
 * Load: cpu_per_wall (this rank's CPU / wall over the timed loop) and other_cpus (cores used by
 * other processes during it, from /proc/stat, minus this process's; with two ranks it includes the
 * other rank).
 *
 * Usage: mpirun -np R bench_mpi [--workload w2] [--threads T] [--steps N] [--seconds S]
 * Prints one JSON line on rank 0. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf under -std=c11 */
#define ADVNN_MPI
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include "bench/bench_common.h"
#include "bench/bench_wl.h"

static int rank, nrank;
static void die(const char *what);
static void bench_die(const char *what, const char *name) { (void)name; die(what); }
static void die(const char *what) {
    fprintf(stderr, "bench_mpi (rank %d): %s: %s\n", rank, what, advnn_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
}

int main(int argc, char **argv) {
    const char *name = "w2";
    int threads = 1, min_steps = 40, warm = 5, i, steps = 0, a;
    double min_s = 4.0, *t_step, w0, c0, b0 = 0, tt0 = 0, b1, t1, mpi0, mpi1, cw, other = -1;
    double grad_us = 0, allred_us = 0, med, p10, p90;
    wl w;
    advnn_trainer *tr;
    advnn_adv_opts o;
    int64_t *idx, N, nx0, nx1, ng0, ng1;
    int jok;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank); MPI_Comm_size(MPI_COMM_WORLD, &nrank);
    for (a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--workload") && a + 1 < argc) name = argv[++a];
        else if (!strcmp(argv[a], "--threads") && a + 1 < argc) threads = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--steps") && a + 1 < argc) min_steps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--seconds") && a + 1 < argc) min_s = atof(argv[++a]);
        else {
            if (rank == 0) fprintf(stderr, "usage: mpirun -np R %s [--workload w1|w2|w3] [--threads T] [--steps N] [--seconds S]\n", argv[0]);
            MPI_Finalize();
            return 2;
        }
    }
    if (strcmp(name, "w1") && strcmp(name, "w2") && strcmp(name, "w3")) { if (rank == 0) fprintf(stderr, "unknown workload %s\n", name); MPI_Finalize(); return 2; }
    memset(&w, 0, sizeof w);
    w.name = name;
    w.batch = !strcmp(name, "w1") ? 1024 : 512;
    build(&w);
    make_data(&w);
    N = (int64_t)w.batch * w.nb;
    advnn_set_threads(threads);
    tr = wl_trainer(&w, &o);
    if (nrank > 1 && advnn_trainer_set_mpi(tr, MPI_COMM_WORLD) != ADVNN_OK) die("advnn_trainer_set_mpi");
    idx = (int64_t *)malloc((size_t)N * sizeof *idx);
    t_step = (double *)malloc(100000 * sizeof *t_step);
    if (!idx || !t_step) die("out of memory");
    for (i = 0; i < N; i++) idx[i] = i;
#define STEP(k) do { \
        const int64_t *ix_ = idx + (size_t)((k) % w.nb) * w.batch; \
        double lm_, la_; \
        if (advnn_adv_step(tr, &o, w.lambda, w.d, ix_, w.dcr ? ix_ : NULL, w.batch, &lm_, &la_) != ADVNN_OK) die("training step"); \
    } while (0)
    for (i = 0; i < warm; i++) STEP(i);
    MPI_Barrier(MPI_COMM_WORLD);
    jok = jiffies(&b0, &tt0);
    c0 = cpu_seconds();
    mpi0 = advnn_trainer_mpi_seconds(tr);
    nx0 = tr->mpi_nx; ng0 = tr->mpi_ng;
    w0 = now();
    for (;;) {   /* rank 0 decides when to stop; the decision travels with the next step's collectives */
        int go;
        double t0 = now();
        STEP(warm + steps);
        t_step[steps++] = now() - t0;
        go = steps < 100000 && (steps < min_steps || now() - w0 < min_s);
        if (nrank > 1) MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (!go) break;
    }
    w0 = now() - w0;
    mpi1 = advnn_trainer_mpi_seconds(tr);
    nx1 = tr->mpi_nx; ng1 = tr->mpi_ng;
    cw = (cpu_seconds() - c0) / w0;
    if (jok && jiffies(&b1, &t1)) { other = (b1 - b0) / (double)sysconf(_SC_CLK_TCK) / w0 - cw; if (other < 0) other = 0; }
    med = median(t_step, steps); p10 = pct(t_step, steps, 0.1); p90 = pct(t_step, steps, 0.9);
    if (nrank > 1) {   /* the exchange alone: the trainer's gradient fold over a full batch's chunks */
        float *buf = (float *)malloc((size_t)w.g->n_params * sizeof(float)), *res = (float *)malloc((size_t)w.g->n_params * sizeof(float));
        double t0;
        int reps = 200;
        tr->job->nck = advnn__chunk_count(w.batch);
        for (i = 0; i < 10; i++) advnn__mpi_grad(tr, tr->job);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (i = 0; i < reps; i++) advnn__mpi_grad(tr, tr->job);
        grad_us = 1e6 * (now() - t0) / reps;
        memset(buf, 0, (size_t)w.g->n_params * sizeof(float));
        for (i = 0; i < 10; i++) MPI_Allreduce(buf, res, (int)w.g->n_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        for (i = 0; i < reps; i++) MPI_Allreduce(buf, res, (int)w.g->n_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        allred_us = 1e6 * (now() - t0) / reps;
        free(buf); free(res);
    }
    if (rank == 0) {
        printf("{\"workload\": \"%s\", \"ranks\": %d, \"threads\": %d, \"batch\": %d, \"updates_per_step\": %d, "
               "\"step_ms_median\": %.3f, \"step_ms_p10\": %.3f, \"step_ms_p90\": %.3f, \"steps_timed\": %d, "
               "\"jets_per_s\": %.1f, \"mpi_share\": %.4f, \"params\": %lld, \"grad_exchange_us\": %.1f, "
               "\"allreduce_us\": %.1f, \"small_exchanges_per_step\": %.1f, \"exchange_row_doubles\": %d, \"grad_exchanges_per_step\": %.1f, \"cpu_per_wall\": %.2f, \"other_cpus\": %.2f, \"kernels\": \"%s\"}\n",
               name, nrank, threads, w.batch, w.adv_steps + 1, 1e3 * med, 1e3 * p10, 1e3 * p90, steps,
               w.batch / med, (mpi1 - mpi0) / w0, (long long)w.g->n_params, grad_us, allred_us, (double)(nx1 - nx0) / steps, 2 + (tr->bnld > w.g->n_nodes ? tr->bnld : w.g->n_nodes), (double)(ng1 - ng0) / steps, cw, other, advnn_simd_name());
        fflush(stdout);
    }
#undef STEP
    free(idx); free(t_step);
    advnn_trainer_free(tr);
    advnn_dataset_free(w.d); if (w.dcr) advnn_dataset_free(w.dcr);
    for (i = 0; i < advnn_input_count(w.g) && i < MAX_IN; i++) advnn_tensor_free(w.t[i]);
    advnn_graph_free(w.g);
    MPI_Finalize();
    return 0;
}
