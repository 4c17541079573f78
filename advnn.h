/* advnn.h — small neural networks with first-class adversarial training, in one header.
 * MIT licence (see LICENSE). Needs advnn_simd.h beside it, SLEEF (-lsleef) and xxHash (header only).
 *
 * USE
 *   In exactly one C or C++ file:
 *       #define ADVNN_IMPLEMENTATION
 *       #include "advnn.h"
 *   Everywhere else just #include "advnn.h". Link with -lsleef -lm.
 *
 * EXAMPLE (a weighted binary tagger: build, train with early stopping, save, load, predict)
 *
 *   advnn_graph *g = advnn_graph_new();
 *   int shp[1] = {10}, one[1] = {1};
 *   int x = advnn_input(g, "x", 1, shp);            // per-sample shape (10)
 *   int y = advnn_input(g, "y", 1, one);            // labels 0/1
 *   int w = advnn_input(g, "w", 1, one);            // per-sample weights
 *   int h = advnn_batchnorm(g, x);
 *   h = advnn_dense(g, h, 64, ADVNN_ACT_RELU);
 *   h = advnn_dense(g, h, 64, ADVNN_ACT_RELU);
 *   int z = advnn_dense(g, h, 1, ADVNN_ACT_LINEAR);
 *   advnn_name(g, advnn_activation(g, z, ADVNN_ACT_SIGMOID), "prob");
 *   advnn_loss_bce_logits(g, z, y, w);
 *   if (advnn_graph_finalize(g, 42) != ADVNN_OK) { fprintf(stderr, "%s\n", advnn_last_error()); ... }
 *
 *   advnn_dataset *train = advnn_dataset_new();     // tensors from advnn_npy_load("x.npy") etc.
 *   advnn_dataset_add(train, "x", X); advnn_dataset_add(train, "y", Y); advnn_dataset_add(train, "w", W);
 *   advnn_trainer *tr = advnn_trainer_new(g, 256, 7);      // batch 256, seed 7
 *   advnn_trainer_set_optim(tr, NULL, advnn_adam(1e-3f));   // NULL = every parameter group
 *   advnn_fit_opts o = advnn_fit_defaults(); o.epochs = 50; o.val_split = 0.2f; o.patience = 5;
 *   advnn_fit(tr, train, NULL, &o, NULL);
 *   advnn_model_save(g, "tagger.advnn");
 *
 *   advnn_graph *m = advnn_model_load("tagger.advnn");     // another program
 *   advnn_tensor *p = NULL; advnn_predict(m, test, "prob", &p);   // batched, eval mode
 *
 * CONCEPTS
 *   graph     A DAG of layer nodes (ids are ints, in creation order, which is topological). Builder
 *             calls return -1 on a bad argument and remember the first error; advnn_graph_finalize()
 *             reports it. After finalize the graph holds the weights and is read-only for inference.
 *   groups    Every parameter belongs to the group current when its layer was made (advnn_group()).
 *             The trainer keeps per-group optimizer settings, state and a trainable flag.
 *   sharing   advnn_shared(g, like, in, -1) applies the weights of layer `like` to another stream;
 *             gradients from every use add up in the same parameters.
 *   losses    Loss nodes take (prediction, target, weight-or--1). The training objective is
 *             sum_k coef_k * L_k with coef set by advnn_loss_scale(); each L_k = sum_i w_i l_i / N
 *             (Keras' convention for weighted losses).
 *   ws        A workspace (activations, gradients, GEMM packing) sized once for a maximum batch.
 *             No allocation happens in forward/backward/optimizer steps.
 *   layout    float32, batch-major, row-major. Dense and BatchNorm act on the last axis, so a Dense on
 *             a (T, F) input is a kernel-1 Conv1D over T. Images are (H, W, C) (channels last, as
 *             Keras): flattening one gives the order h, w, c, where PyTorch's NCHW gives c, h, w.
 *   activations  advnn_act (declared in advnn_simd.h): ADVNN_ACT_LINEAR, ADVNN_ACT_RELU,
 *             ADVNN_ACT_LEAKY_RELU (slope param, default 0.01), ADVNN_ACT_PRELU (only through
 *             advnn_prelu: learned slopes), ADVNN_ACT_ELU (alpha param, default 1), ADVNN_ACT_SIGMOID,
 *             ADVNN_ACT_TANH, ADVNN_ACT_SOFTPLUS. Dense and convolution layers take one as their act.
 *   non-finite  Inputs with NaN/Inf are refused. A training step whose gradient, new weights or new
 *             optimizer moments would not be finite is refused as a whole (ADVNN_ERR_NAN, weights and
 *             optimizer state unchanged); advnn_fit then restores its fallback weights and stops.
 *             advnn_predict and advnn_model_save refuse non-finite weights; advnn_infer (the per-call
 *             hot path) does not check the weights, so write only finite values into advnn_params().
 *
 * THREAD SAFETY
 *   - advnn_last_error() is per thread.
 *   - A finalized graph may be read by any number of threads at once (advnn_infer, advnn_predict,
 *     advnn_model_save) provided each thread uses its own advnn_ws and nobody trains or changes it
 *     (advnn_fit/advnn_train_step/advnn_loss_scale/parameter writes, advnn_params included: it marks
 *     the workspaces' cached weight values stale) at the same time.
 *   - A trainer, workspace or dataset is used by one thread at a time. A trainer created after
 *     advnn_set_threads(n), and a workspace given advnn_ws_set_threads(ws, n), run on n threads of
 *     their own (a small pthread pool that sleeps between calls); that is internal and does not
 *     change these rules, nor the results: trained weights, losses and outputs are bit for bit the
 *     same for any thread count and any scheduling of the threads (advnn_set_threads). n is an upper
 *     bound: a step or call runs on the calling thread alone while that measures faster (another
 *     process busy on the cores), trying the threads again every few steps.
 *
 * ERRORS
 *   Functions that can fail return advnn_status (or NULL / -1) and leave a message for
 *   advnn_last_error(): what failed, where, the numbers involved. Inputs are validated (shapes,
 *   NaN/Inf, file contents) before anything the caller owns is touched.
 *
 * CONFIG MACROS (define before including)
 *   ADVNN_MALLOC(sz) ADVNN_REALLOC(p,sz) ADVNN_FREE(p)   allocator (default malloc/realloc/free);
 *                          with threads it is also called from the pool's threads: make it thread-safe
 *   ADVNN_ASSERT(x)        internal invariant checks (default assert)
 *   ADVNN_STATIC           all functions static (private copy in one translation unit)
 *   ADVNN_FORCE_SCALAR     use the scalar kernels even where AVX2/NEON is available
 *   ADVNN_NO_DISPATCH      x86-64 without -mavx2: scalar kernels only (default: AVX2+FMA chosen at
 *                          run time when the CPU has it; ADVNN_SIMD=scalar or advnn_simd_force() override)
 *   ADVNN_NO_THREADS       no pthreads: advnn_set_threads() is accepted but training runs on one thread
 *   ADVNN_NO_STDIO         leave out the functions that open files or print
 *   ADVNN_MPI              include <mpi.h>, add advnn_trainer_set_mpi (data-parallel training over MPI ranks)
 *   Link with -pthread on C libraries older than glibc 2.34 (where pthreads is a separate library).
 */
#ifndef ADVNN_H
#define ADVNN_H

#define ADVNN_VERSION_MAJOR 0
#define ADVNN_VERSION_MINOR 1
#define ADVNN_VERSION_PATCH 0

#include <stddef.h>
#include <stdint.h>
#include "advnn_simd.h"
#ifdef ADVNN_MPI
#include <mpi.h>   /* data-parallel training over MPI ranks: advnn_trainer_set_mpi */
#endif

#ifdef ADVNN_STATIC
#  if defined(__GNUC__) || defined(__clang__)
#    define ADVNN_DEF static __attribute__((unused))
#  else
#    define ADVNN_DEF static
#  endif
#else
#  define ADVNN_DEF extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */
typedef enum {
    ADVNN_OK = 0,
    ADVNN_ERR_ARG,       /* bad argument (NULL, out of range, unknown name) */
    ADVNN_ERR_SHAPE,     /* shapes do not fit */
    ADVNN_ERR_NOMEM,     /* allocation failed */
    ADVNN_ERR_IO,        /* file could not be opened/read/written */
    ADVNN_ERR_FORMAT,    /* file or buffer is malformed, truncated or of an unsupported kind */
    ADVNN_ERR_CHECKSUM,  /* model checksum mismatch */
    ADVNN_ERR_NAN,       /* NaN/Inf in inputs or in the loss */
    ADVNN_ERR_STATE      /* call not valid in this state (e.g. graph not finalized) */
} advnn_status;

ADVNN_DEF const char *advnn_last_error(void);           /* message of the last failure on this thread */
ADVNN_DEF const char *advnn_status_name(advnn_status s);

/* ---------------------------------------------------------------- tensors */
#define ADVNN_MAX_DIMS 8
typedef struct advnn_tensor {
    float  *data;                    /* 64-byte aligned, row-major, owned by the tensor */
    int     ndim;
    int64_t shape[ADVNN_MAX_DIMS];
    int64_t size;                    /* product of shape */
} advnn_tensor;

ADVNN_DEF advnn_tensor *advnn_tensor_new(int ndim, const int64_t *shape);   /* zero-filled */
ADVNN_DEF void          advnn_tensor_free(advnn_tensor *t);

/* ---------------------------------------------------------------- .npy I/O
 * Reads float32/float64/int8-64/uint8-64/bool (little or big endian) C-order arrays as float32.
 * Fortran order, object/structured dtypes, bad headers, truncation: ADVNN_ERR_FORMAT. */
ADVNN_DEF advnn_tensor *advnn_npy_load_mem(const void *buf, size_t len);
ADVNN_DEF advnn_status  advnn_npy_save_mem(const advnn_tensor *t, void **buf, size_t *len); /* *buf: free with ADVNN_FREE (free) */
#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_tensor *advnn_npy_load(const char *path);
ADVNN_DEF advnn_status  advnn_npy_save(const char *path, const advnn_tensor *t);           /* writes float32 '<f4' */
#endif

/* ---------------------------------------------------------------- graph builder */
typedef struct advnn_graph advnn_graph;

ADVNN_DEF advnn_graph *advnn_graph_new(void);
ADVNN_DEF void         advnn_graph_free(advnn_graph *g);
/* Make `name` the current parameter group (created on first use; the default group is "main"). */
ADVNN_DEF int  advnn_group(advnn_graph *g, const char *name);
/* Layers. Each returns the new node id, or -1 (see advnn_graph_finalize for the message). */
ADVNN_DEF int  advnn_input(advnn_graph *g, const char *name, int ndim, const int *shape); /* per-sample shape, ndim 1..3 */
ADVNN_DEF int  advnn_dense(advnn_graph *g, int in, int units, advnn_act act);             /* on the last axis */
/* Dense with spectral normalisation (Miyato et al. 2018): uses W / sigma(W), sigma estimated by power
 * iteration with stored vectors u, v (saved with the model); the trainer runs one iteration after
 * each update of the layer's group. Bounds the layer's Lipschitz constant, e.g. for an adversary. */
ADVNN_DEF int  advnn_dense_sn(advnn_graph *g, int in, int units, advnn_act act);
ADVNN_DEF int  advnn_activation(advnn_graph *g, int in, advnn_act act);                   /* not PRELU: see advnn_prelu */
ADVNN_DEF int  advnn_activation_ex(advnn_graph *g, int in, advnn_act act, float param);   /* leaky slope / elu alpha */
ADVNN_DEF int  advnn_prelu(advnn_graph *g, int in);                                       /* one slope per channel, init 0.25 */
ADVNN_DEF int  advnn_dropout(advnn_graph *g, int in, float rate);                         /* inverted dropout, train only */
ADVNN_DEF int  advnn_batchnorm(advnn_graph *g, int in);                                   /* momentum 0.1, eps 1e-3 */
ADVNN_DEF int  advnn_batchnorm_ex(advnn_graph *g, int in, float momentum, float eps);
/* Input standardisation saved with the model (as lwtnn keeps per-input offset and scale): y = (x -
 * offset) * scale per channel of the last axis, offset 0 and scale 1 until advnn_standardize_fit sets
 * them from data. Not trained; gradients pass through (x scale). */
ADVNN_DEF int  advnn_standardize(advnn_graph *g, int in);
ADVNN_DEF int  advnn_concat(advnn_graph *g, int n, const int *ins);                      /* along the last axis */
/* Sequences (T, C) and images (H, W, C). Padding follows Keras/TensorFlow: 'same' gives
 * ceil(in/stride) outputs and puts the odd extra pad after; kernel layout (KH, KW, Cin, Cout). */
typedef enum { ADVNN_PAD_VALID = 0, ADVNN_PAD_SAME = 1 } advnn_padding;
ADVNN_DEF int  advnn_conv1d(advnn_graph *g, int in, int filters, int kernel, int stride, advnn_padding pad, advnn_act act);
ADVNN_DEF int  advnn_conv2d(advnn_graph *g, int in, int filters, int kh, int kw, int sh, int sw, advnn_padding pad, advnn_act act);
/* Pooling windows lie inside the input ('valid'); stride 0 means stride = window. */
ADVNN_DEF int  advnn_maxpool1d(advnn_graph *g, int in, int pool, int stride);
ADVNN_DEF int  advnn_avgpool1d(advnn_graph *g, int in, int pool, int stride);
ADVNN_DEF int  advnn_maxpool2d(advnn_graph *g, int in, int ph, int pw, int sh, int sw);
ADVNN_DEF int  advnn_avgpool2d(advnn_graph *g, int in, int ph, int pw, int sh, int sw);
ADVNN_DEF int  advnn_upsample2d(advnn_graph *g, int in, int fh, int fw);                  /* nearest neighbour */
ADVNN_DEF int  advnn_reshape(advnn_graph *g, int in, int ndim, const int *shape);         /* same number of values */
ADVNN_DEF int  advnn_flatten(advnn_graph *g, int in);
/* LSTM over (T, F), Keras semantics: gates i, f, c, o (sigmoid, tanh cell), one bias per gate,
 * forget-gate bias initialised to 1. Returns the last state (units) or the sequence (T, units).
 * mask: -1, or a node with T values per sample; a step whose mask is 0 leaves the state unchanged
 * (and, for sequences, repeats the previous output), as Keras' Masking layer does. */
ADVNN_DEF int  advnn_lstm(advnn_graph *g, int in, int units, int return_sequences, int mask);
ADVNN_DEF int  advnn_mask_nonzero(advnn_graph *g, int in);      /* (T, F) -> (T): 1 where any feature != 0 */
/* Per-sample mean squared error between pred and target (same number of values), one value per
 * sample; with take_log its natural log (the anomaly score of an autoencoder, fed to an adversary). */
ADVNN_DEF int  advnn_sample_mse(advnn_graph *g, int pred, int target, int take_log);
/* Softmax over the last axis (scores from logits; losses take logits directly). */
ADVNN_DEF int  advnn_softmax(advnn_graph *g, int in);
/* Gradient reversal: identity forward; backward multiplies the gradient by -lambda. The adversary
 * after it then trains to minimise its loss while everything before it maximises lambda times it. */
ADVNN_DEF int  advnn_grad_reverse(advnn_graph *g, int in, float lambda);
ADVNN_DEF advnn_status advnn_set_grad_reverse(advnn_graph *g, int node, float lambda);   /* ramps */
/* The same layer (its weights) applied to another stream: `like` is a dense, conv, LSTM, PReLU or
 * BatchNorm node; gradients from every use add up. mask: for an LSTM, else -1. */
ADVNN_DEF int  advnn_shared(advnn_graph *g, int like, int in, int mask);
/* Losses: weight = -1 for unit weights. Targets: BCE (N,1)-like 0..1; CCE class index (N,1) or
 * probabilities (N,K); MSE same shape as the prediction. */
ADVNN_DEF int  advnn_loss_bce_logits(advnn_graph *g, int logits, int target, int weight);
ADVNN_DEF int  advnn_loss_cce_logits(advnn_graph *g, int logits, int target, int weight);
ADVNN_DEF int  advnn_loss_mse(advnn_graph *g, int pred, int target, int weight);
/* Mixture-density negative log-likelihood -log p(target | K Gaussians) for a scalar target:
 * coefficients softmax(logits), means sigmoid(means_raw) in (0, 1), widths softplus(widths_raw) +
 * sigma_floor; with truncate, each component is renormalised by its mass inside [0, 1]. The three
 * parameter nodes have K values per sample each (e.g. three Dense(K) heads); or, with means_raw and
 * widths_raw -1, `logits` is one head of 3K values per sample, [logits | means_raw | widths_raw]
 * (one Dense(3K), as PyTorch's nn.Linear(h, 3K) head; a third of the GEMM calls, wider ones). */
ADVNN_DEF int  advnn_loss_mdn(advnn_graph *g, int logits, int means_raw, int widths_raw, int target, int weight,
                              int truncate, float sigma_floor);
ADVNN_DEF advnn_status advnn_loss_scale(advnn_graph *g, int loss, float coef);          /* default 1 */
ADVNN_DEF int  advnn_name(advnn_graph *g, int node, const char *name);                   /* returns node */
ADVNN_DEF int  advnn_find(const advnn_graph *g, const char *name);                       /* node id or -1 */
/* Allocate and initialise the weights (Glorot uniform; He uniform before ReLU-like activations)
 * from a PRNG seeded with `seed`. Reports the first builder error, if any. */
ADVNN_DEF advnn_status advnn_graph_finalize(advnn_graph *g, uint64_t seed);

/* Sets a finalized graph's standardize node from training data x (N rows of the node's input shape;
 * weight: N values or NULL): offset = weighted mean, scale = 1 / weighted standard deviation (1 for
 * a constant channel), per channel over every row and position. Apply the result to every later
 * input as it is: it is part of the graph and of the saved model. */
ADVNN_DEF advnn_status advnn_standardize_fit(advnn_graph *g, int node, const advnn_tensor *x, const float *weight);

/* Introspection */
ADVNN_DEF int         advnn_node_count(const advnn_graph *g);
ADVNN_DEF int         advnn_node_shape(const advnn_graph *g, int node, int *shape);       /* returns ndim */
ADVNN_DEF int         advnn_input_count(const advnn_graph *g);
ADVNN_DEF int         advnn_input_node(const advnn_graph *g, int i);                      /* i-th input */
ADVNN_DEF const char *advnn_node_name(const advnn_graph *g, int node);                    /* "" if unnamed */
ADVNN_DEF int64_t     advnn_param_count(const advnn_graph *g, const char *group);         /* trainable; NULL = all */
/* Forward FLOPs per sample (2 per multiply-add) of the weight products that `node` depends on, itself
 * included: dense (rows x in x units), convolutions (output positions x kernel size) and LSTMs
 * (steps x both kernels, every step counted even under a mask), counting only the layers whose weights
 * are in `group` (NULL: all; a shared layer counts in its owner's group and at every use). Activations,
 * BatchNorm, pooling and losses are not counted. -1 for a bad graph, node or group. The benchmarks
 * count a training step's FLOPs from this (forward, plus the same again for each gradient computed). */
ADVNN_DEF double      advnn_flops(const advnn_graph *g, int node, const char *group);
/* All parameters (trainable and BatchNorm statistics) as one float array, for copying or hashing.
 * Writing through it is allowed; inference workspaces cache values derived from the weights (folded
 * BatchNorm, see advnn_infer), which every library function that changes weights refreshes, and
 * which advnn_params() itself marks stale. A write through a pointer kept from an earlier call must
 * be followed by advnn_params_changed(g) before the next advnn_infer/advnn_predict, else those may
 * run on the values cached before the write. Not thread-safe with inference on g. */
ADVNN_DEF float      *advnn_params(advnn_graph *g, int64_t *count);
ADVNN_DEF void        advnn_params_changed(advnn_graph *g);

/* ---------------------------------------------------------------- workspaces and inference */
typedef struct advnn_ws advnn_ws;
ADVNN_DEF advnn_ws    *advnn_ws_new(const advnn_graph *g, int max_batch);   /* inference workspace */
ADVNN_DEF void         advnn_ws_free(advnn_ws *ws);
/* Run the graph (eval mode) on n samples. inputs[i] points at n rows of the i-th input node
 * (advnn_input_node order); only inputs the output depends on are read (others may be NULL).
 * Writes n * size(out_node) floats to out.
 * Made for a per-jet call: the workspace keeps what depends only on the weights and the output
 * node (the nodes to run; each BatchNorm whose only consumer is a Dense folded into that Dense's
 * weights and bias, W' = diag(gamma / sqrt(var + eps)) W, other BatchNorms' 1/std), made on the first
 * call and again only after the weights changed (every library function that writes weights marks
 * them; raw writes: see advnn_params), so a call does only the arithmetic. A folded pair rounds
 * once where the unfolded layers round twice: outputs differ from a training workspace's eval pass
 * (advnn_evaluate) by float rounding (~1e-7 relative; test_infer holds them to 1e-5 of the layer
 * formulas in double). advnn_predict uses the same caches (the same rows give the same bits). */
ADVNN_DEF advnn_status advnn_infer(advnn_ws *ws, int n, const float *const *inputs, int out_node, float *out);
/* Let advnn_infer on this workspace run batches of at least 256 rows on n threads (n - 1 workers of
 * its own, each with a workspace for one chunk; default 1, at most 64): the rows are cut into at
 * most 8 chunks of at least 128 rows, which the threads take as they become free (a thread the OS
 * deschedules delays only its chunk). The rows are independent in eval mode, so the outputs are
 * bit for bit those of one thread. Under ADVNN_NO_THREADS accepted and ignored. Not thread-safe
 * with advnn_infer on the same workspace. */
ADVNN_DEF advnn_status advnn_ws_set_threads(advnn_ws *ws, int n);

/* ---------------------------------------------------------------- datasets */
typedef struct advnn_dataset advnn_dataset;
ADVNN_DEF advnn_dataset *advnn_dataset_new(void);
ADVNN_DEF void           advnn_dataset_free(advnn_dataset *d);                  /* does not free tensors */
/* Borrow tensor t as the data of the graph input `name`. All tensors share the first dimension N.
 * Rejects NaN/Inf (reports the row and column). */
ADVNN_DEF advnn_status   advnn_dataset_add(advnn_dataset *d, const char *name, const advnn_tensor *t);
ADVNN_DEF int64_t        advnn_dataset_size(const advnn_dataset *d);
#ifndef ADVNN_NO_STDIO
/* Data larger than memory: the input `name` is read from the .npy file at `path` (any dtype
 * advnn_npy_load reads, C order) in windows, never whole. The header is checked and every value is
 * scanned once here (NaN/Inf rejected with row and column, as advnn_dataset_add; reads re-check).
 * advnn_fit, advnn_adv_fit (its training data), advnn_evaluate and advnn_predict accept such datasets
 * (mixed with in-memory columns); advnn_train_step, advnn_adv_step and advnn_adv_opts.adv_data need
 * in-memory data (they report an error).
 * Memory: about window_rows x (the sum of all columns' row sizes) floats, plus batch rows.
 * Shuffling in advnn_fit and advnn_adv_fit (PRNG: the trainer's): the training rows are cut into
 * chunks of chunk_rows consecutive rows; each epoch the chunk order is a Fisher-Yates shuffle, every
 * window_rows / chunk_rows chunks of that order form a window, read in that order, whose rows are
 * shuffled (Fisher-Yates); the < batch rows left at a window's end open the next window's batches,
 * so every batch but the epoch's last is full. When all training rows fit in one window, the order
 * is exactly the in-memory one (same weights, bit for bit). shuffle = 0: file order. Evaluation and
 * prediction read consecutive windows. A dataset with files is not safe to use from two threads. */
ADVNN_DEF advnn_status   advnn_dataset_add_npy_file(advnn_dataset *d, const char *name, const char *path);
#endif
/* Window and chunk sizes (rows) for file-backed columns: defaults 65536 and 1024; chunk_rows <=
 * window_rows. Smaller windows: less memory, a less thorough shuffle. */
ADVNN_DEF advnn_status   advnn_dataset_set_window(advnn_dataset *d, int64_t window_rows, int64_t chunk_rows);
/* Batched eval-mode prediction of node `output` for every row: *out gets shape (N, node shape...).
 * Allocates a temporary workspace of at most ~64 MiB (chunks of up to 1024 rows, fewer for wide
 * graphs); for repeated calls on small inputs keep an advnn_ws and use advnn_infer instead. */
ADVNN_DEF advnn_status   advnn_predict(const advnn_graph *g, const advnn_dataset *d, const char *output, advnn_tensor **out);

/* ---------------------------------------------------------------- optimizers and training */
typedef enum { ADVNN_SGD = 0, ADVNN_ADAM, ADVNN_NADAM } advnn_optim_kind;
typedef struct advnn_optim {
    advnn_optim_kind kind;
    float lr;
    float momentum;       /* SGD */
    int   nesterov;       /* SGD */
    float beta1, beta2, eps;   /* Adam, Nadam */
    float weight_decay;   /* SGD: L2 added to the gradient; Adam/Nadam: decoupled (AdamW) */
    float clip_norm;      /* > 0: rescale the group's gradient to at most this L2 norm */
} advnn_optim;
ADVNN_DEF advnn_optim advnn_sgd(float lr, float momentum, int nesterov);
ADVNN_DEF advnn_optim advnn_adam(float lr);    /* beta1 0.9, beta2 0.999, eps 1e-7 */
ADVNN_DEF advnn_optim advnn_nadam(float lr);   /* PyTorch/Keras NAdam with momentum decay 0.004 */

/* Threads used by trainers created afterwards (default 1; at most 64, and no more than the chunks
 * of a full batch; inference runs on the calling thread unless its workspace got threads of its
 * own, advnn_ws_set_threads). Every step cuts its n rows into min(8, max(1, n / 128)) chunks fixed
 * by n alone (shorter chunks cost more than threads gain, see advnn__chunk_min_rows); the threads
 * take chunks as they become free, and every sum across chunks (gradients, losses, BatchNorm
 * statistics) is added in chunk order, each chunk drawing its own dropout mask
 * from the seed. So a fixed seed gives bit-identical weights whatever the thread count and however
 * the OS schedules the threads; a step of fewer than 256 rows runs on the calling thread. With
 * another process busy on the cores a worker the OS deschedules mid-chunk stalls the step, so each
 * kind of step times both ways and runs on the calling thread alone while that is faster, trying the
 * threads every 4th-64th step (the results are the same either way; "the team or the calling thread
 * alone" in the implementation). Not thread-safe (call it at start-up). Returns the previous value. */
ADVNN_DEF int advnn_set_threads(int n);
ADVNN_DEF int advnn_get_threads(void);

typedef struct advnn_trainer advnn_trainer;
/* A trainer for g with mini-batches of at most batch_size rows and its own PRNG (shuffling,
 * dropout). Every group starts with Adam(1e-3) and trainable. */
ADVNN_DEF advnn_trainer *advnn_trainer_new(advnn_graph *g, int batch_size, uint64_t seed);
ADVNN_DEF void           advnn_trainer_free(advnn_trainer *tr);
ADVNN_DEF advnn_status   advnn_trainer_set_optim(advnn_trainer *tr, const char *group, advnn_optim o);  /* NULL = all */
ADVNN_DEF advnn_status   advnn_trainer_set_trainable(advnn_trainer *tr, const char *group, int trainable);
/* One step on rows idx[0..n) of d (n <= batch_size): forward, backward, update trainable groups.
 * *loss (may be NULL) gets the objective sum_k coef_k L_k of this batch. */
ADVNN_DEF advnn_status   advnn_train_step(advnn_trainer *tr, const advnn_dataset *d, const int64_t *idx, int n, double *loss);
/* Eval-mode objective over all of d. */
ADVNN_DEF advnn_status   advnn_evaluate(advnn_trainer *tr, const advnn_dataset *d, double *loss);

typedef struct advnn_epoch_info {
    int    epoch;             /* 0-based */
    double train_loss;        /* mean objective over the epoch's batches (weighted by batch size) */
    double val_loss;          /* eval-mode objective on the validation data, NAN if none */
    double seconds;
    advnn_trainer *trainer;
    advnn_graph   *graph;
} advnn_epoch_info;
/* Return non-zero to stop training after this epoch. */
typedef int (*advnn_epoch_cb)(const advnn_epoch_info *info, void *user);

typedef struct advnn_fit_opts {
    int   epochs;             /* default 10 */
    float val_split;          /* used when val == NULL: the last fraction of rows, before shuffling */
    int   shuffle;            /* default 1 */
    int   patience;           /* epochs without improvement before stopping; 0 = never stop early */
    float min_delta;          /* improvement must exceed this */
    int   restore_best;       /* default 1: end with the weights of the best monitored epoch */
    int   verbose;            /* default 1: one line per epoch on stderr */
    advnn_epoch_cb callback;  /* may be NULL */
    void *user;
} advnn_fit_opts;
typedef struct advnn_fit_result { int epochs_run, best_epoch; double best_loss; } advnn_fit_result;
ADVNN_DEF advnn_fit_opts advnn_fit_defaults(void);
/* Train on `train`; validate on `val` (or on opts->val_split of train). The monitored quantity (for
 * patience and restore_best) is the validation loss when there is validation data, else the mean
 * training loss of the epoch: without validation data restore_best picks the epoch with the lowest
 * training loss, which rewards overfitting; pass validation data or set restore_best = 0. Every
 * row trains once per epoch: when batch_size does not divide the rows, the last batch of an epoch
 * is smaller (it is not dropped). The per-epoch line shows val_loss only with validation data. */
ADVNN_DEF advnn_status advnn_fit(advnn_trainer *tr, const advnn_dataset *train, const advnn_dataset *val,
                                 const advnn_fit_opts *opts, advnn_fit_result *res);

#ifdef ADVNN_MPI
/* Data-parallel training over MPI ranks (define ADVNN_MPI before every #include "advnn.h", build with
 * mpicc; without ADVNN_MPI nothing here exists and the header needs no MPI). Every rank builds the same
 * graph (same advnn_graph_finalize seed), the same trainer (batch size, seed, optimizers) and the same
 * data, then calls advnn_trainer_set_mpi(tr, comm) (collective). From then on every training and
 * evaluation call on tr is collective over comm: all ranks call advnn_fit / advnn_adv_fit /
 * advnn_train_step / advnn_adv_step / advnn_evaluate with the same arguments, in the same order.
 *   How: every rank draws the same shuffles and step seeds; a step's rows are cut into the chunks of
 * advnn_set_threads (at most 8, fixed by the row count alone) and rank r of R runs chunks
 * [nck r / R, nck (r + 1) / R) on its own threads, gathering only those rows. BatchNorm's batch sums
 * and the losses are exchanged per chunk (MPI_Allgatherv) and added in chunk order; each rank then
 * adds every chunk's gradient, in chunk order, for 1/R of the parameters (MPI_Isend/Irecv) and the
 * parts are shared (MPI_Allgatherv). Every sum has the order of one process: R ranks x T threads give
 * bit for bit the weights of one rank with any thread count (tests/mpi_check.sh: 2 ranks x 1 thread
 * against 1 rank x 2 threads, 3 ranks, BatchNorm, dropout, both adversarial schedules, a second stream).
 * Limits: a step uses at most 8 ranks (ranks beyond its chunk count repeat a chunk, to keep BatchNorm's
 * running statistics in step, and contribute nothing); every rank holds the workspaces of the whole
 * batch. With data read from files (advnn_dataset_add_npy_file) each rank reads only the rows of its
 * chunks (every rank knows the shuffle), so (R - 1) / R of the reading is saved, except: pages are
 * read whole, so rows of under a page share reads (a gap of less than 4 KiB between a rank's rows is
 * read through: with 40-byte rows every rank reads nearly everything, with CalRatio's kilobyte rows
 * its share); the < batch rows carried from one window to the next are read by every rank; and
 * training rows that fit one window are read whole by every rank (once).
 *   A graph with a batch-statistic loss (DisCo, MoDe) runs each
 * step as one chunk: every rank then computes the whole batch (the same weights, no speed-up).
 *   Rank 0 prints the epoch lines; advnn_fit's and advnn_adv_fit's callbacks run on every rank (they
 * may use MPI; write files from rank 0 only) and rank 0's return value, quality and cost are used.
 * Checks, each an error on every rank (never a hang): set-up (parameter count, batch, initial weights,
 * seed) and each fit's arguments (rows, epochs) must match rank 0's; after every epoch the weights,
 * optimizer moments and PRNG state are compared by XXH3 hash ("advnn_fit: MPI rank 1's weights differ
 * from rank 0's after epoch 3"); a chunk's error (bad label, non-finite loss) stops every rank with
 * that chunk's message. A rank that dies makes mpirun end the job (OpenMPI aborts on a rank that
 * exits or is killed); an error only one rank can see (a file read failing during training) is
 * printed by that rank, which then calls MPI_Abort. Free the trainer before MPI_Finalize (it holds a
 * duplicate of comm). Returns ADVNN_ERR_STATE when MPI is not initialised or tr already has a comm. */
ADVNN_DEF advnn_status advnn_trainer_set_mpi(advnn_trainer *tr, MPI_Comm comm);
/* Seconds tr spent in MPI exchanges since advnn_trainer_set_mpi (including waits for slower ranks). */
ADVNN_DEF double       advnn_trainer_mpi_seconds(const advnn_trainer *tr);
#endif

/* ---------------------------------------------------------------- adversarial training
 * A graph with two players: the main network (group "main") with its loss, and an adversary (group
 * "adv") whose loss depends on the main network's output. The trainer optimises
 *     main:      min  L_main - lambda * L_adv        adversary:  min  L_adv
 * with one of the two schedules of the literature:
 *   ADVNN_ADV_JOINT        one forward/backward per batch through a gradient-reversal node placed
 *                          between the main output and the adversary (advnn_grad_reverse); the
 *                          trainer sets its lambda. Both players update on every batch.
 *   ADVNN_ADV_ALTERNATING  per batch, adv_steps adversary steps with the main network frozen, then
 *                          one main step on L_main - lambda * L_adv with the adversary frozen (through
 *                          the reversal node if there is one, else by scaling the adversary loss).
 * Frozen players keep dropout active but run BatchNorm on its running statistics (as Keras).
 * The alternating schedule computes what does not change between its sub-steps once per batch: a
 * main network without BatchNorm or dropout (up to its first one) runs its forward once, for all
 * adversary steps and the main step (results equal recomputing it, bit for bit).
 * Phases: pretrain_main_epochs on L_main alone, then pretrain_adv_epochs of the adversary on the
 * frozen main network, then `epochs` adversarial epochs; lambda can ramp up linearly.
 *
 * Learning rates: set one optimizer per player with advnn_trainer_set_optim(tr, "main", ...) and
 * (tr, "adv", ...). Under Adam/Nadam the step size does not depend on the gradient's scale (m/sqrt(v)),
 * so the Keras recipes that slow the classifier by scaling its loss by 1e-8 act only through Adam's
 * eps and are fragile; a smaller learning rate for "main" (e.g. 10-100x below the adversary's) is the
 * knob that does what they meant. lambda then sets the balance of the two terms in the main gradient.
 *
 * The adversary's inputs may come from another data stream (e.g. a control region of simulation vs
 * data, fed through advnn_shared copies of the main network): every graph input that `train` lacks is
 * read from `adv_data`, whose rows are drawn as a second shuffled stream, one row per main row.
 * Per-sample adversary weights (e.g. background only) are an ordinary weight input of the adversary's
 * loss; advnn_background_weights makes them. When that weight is a graph input with one value per
 * sample, the rows where it is 0 cost nothing: each batch's rows are reordered so that the others
 * come first, and the adversary (and a frozen main network without batch-statistics BatchNorm, in
 * the adversary's steps) runs on those rows only. The result is the full computation's up to the
 * order of floating-point sums (and which dropout mask a row draws).
 *
 * Epoch selection: the callback may set info->quality (higher is better, e.g. AUC) and info->cost
 * (lower is better, e.g. the sum of KS distances) for an adversarial epoch. At the end the trainer
 * restores the epoch with the lowest cost among those whose quality is within select_tolerance of the
 * best quality (ties: higher quality, then earlier). It keeps only checkpoints that can still win. */
typedef enum { ADVNN_ADV_JOINT = 0, ADVNN_ADV_ALTERNATING = 1 } advnn_adv_mode;
typedef enum { ADVNN_PHASE_PRETRAIN_MAIN = 0, ADVNN_PHASE_PRETRAIN_ADV = 1, ADVNN_PHASE_ADVERSARIAL = 2 } advnn_adv_phase;

typedef struct advnn_adv_epoch {
    int    epoch;             /* 0-based over all phases */
    advnn_adv_phase phase;
    double lambda;            /* in force during this epoch (0 in pre-training) */
    double main_loss;         /* mean L_main over the epoch's batches (NAN when not computed) */
    double adv_loss;          /* mean L_adv as the adversary saw it (NAN when not computed) */
    double seconds;
    advnn_trainer *trainer;
    advnn_graph   *graph;
    double quality, cost;     /* NAN on entry; set them to make this epoch a selection candidate */
} advnn_adv_epoch;
/* Return non-zero to stop after this epoch. The callback may change optimizers (learning-rate
 * schedules: advnn_trainer_set_optim keeps Adam's moments when only the rate changes). */
typedef int (*advnn_adv_cb)(advnn_adv_epoch *info, void *user);

typedef struct advnn_adv_opts {
    advnn_adv_mode mode;          /* default ADVNN_ADV_ALTERNATING */
    const char *main_group;       /* default "main" */
    const char *adv_group;        /* default "adv" */
    int    main_loss;             /* loss node of the main network (required) */
    int    adv_loss;              /* loss node of the adversary (required) */
    int    grad_reverse;          /* reversal node (required for JOINT; optional otherwise), -1 = none */
    int    adv_steps;             /* ALTERNATING: adversary steps per main step, default 1 */
    int    epochs;                /* adversarial epochs, default 10 */
    int    pretrain_main_epochs;  /* default 0 */
    int    pretrain_adv_epochs;   /* default 0 */
    float  lambda;                /* default 1 */
    int    lambda_ramp_epochs;    /* lambda grows linearly, reaching `lambda` at this adversarial epoch; 0 = constant */
    const advnn_dataset *adv_data;/* second stream for inputs `train` lacks, or NULL */
    int    shuffle;               /* default 1 */
    int    verbose;               /* default 1: one line per epoch on stderr */
    double select_tolerance;      /* default INFINITY: the lowest-cost epoch */
    advnn_adv_cb callback;
    void  *user;
} advnn_adv_opts;
typedef struct advnn_adv_result {
    int    epochs_run;            /* over all phases */
    int    selected_epoch;        /* restored epoch, or -1 (no candidates: the weights of the last epoch) */
    double selected_quality, selected_cost;
} advnn_adv_result;

ADVNN_DEF advnn_adv_opts advnn_adv_defaults(void);
/* Trains tr's graph as described above. On error the weights are those of the last completed epoch.
 * Not thread-safe with respect to tr and its graph. */
ADVNN_DEF advnn_status advnn_adv_fit(advnn_trainer *tr, const advnn_dataset *train, const advnn_adv_opts *o,
                                     advnn_adv_result *res);
/* One adversarial batch as advnn_adv_fit runs it (JOINT: one step; ALTERNATING: adv_steps + 1 steps)
 * on rows idx[0..n) of d and rows adv_idx[0..n) of o->adv_data (ignored, may be NULL, without a
 * second stream), at the given lambda. Losses may be NULL; *adv_loss is the mean over adversary steps. */
ADVNN_DEF advnn_status advnn_adv_step(advnn_trainer *tr, const advnn_adv_opts *o, float lambda, const advnn_dataset *d,
                                      const int64_t *idx, const int64_t *adv_idx, int n, double *main_loss, double *adv_loss);
/* Adversary weights for "background only": out[i] = w[i] for label[i] < 0.5, else 0, rescaled so that
 * sum(out) = sum(w) over all rows (the adversary's loss then has the classifier's normalisation).
 * w may be NULL (unit weights). out may alias w. */
ADVNN_DEF advnn_status advnn_background_weights(const float *label, const float *w, int64_t n, float *out);

/* ---------------------------------------------------------------- metrics (weighted) */
/* ROC AUC of score for label > 0.5 (signal) vs the rest; weight may be NULL; ties count half. */
ADVNN_DEF advnn_status advnn_auc(const float *score, const float *label, const float *weight, int64_t n, double *auc);
/* ROC curve, one point per distinct score threshold t (an event passes when score >= t), in
 * decreasing-threshold order: eff_*[0] = (0, 0) for t = +inf, ..., eff_*[npoints-1] = (1, 1).
 * eff_sig and eff_bkg need room for n + 1 points; *npoints = 1 + number of distinct scores. */
ADVNN_DEF advnn_status advnn_roc(const float *score, const float *label, const float *weight, int64_t n,
                                 double *eff_sig, double *eff_bkg, int64_t *npoints);
/* Background rejection 1/eps_B at signal efficiency target_eff_sig in (0, 1]: eps_B is linearly
 * interpolated in eps_S between the two ROC points bracketing the target (the first point with
 * eps_S >= target and the one before it); *achieved_eff_sig is the target when interpolated, else
 * the eps_S of the ROC point hit exactly. When eps_B <= 0 there, *rejection = W_B / (smallest
 * positive background weight) and *is_lower_limit = 1 (else 0). The last two outputs may be NULL. */
ADVNN_DEF advnn_status advnn_rejection_at(const float *score, const float *label, const float *weight, int64_t n,
                                          double target_eff_sig, double *rejection, double *achieved_eff_sig,
                                          int *is_lower_limit);
/* Weighted two-sample Kolmogorov-Smirnov test: D = max |F_a - F_b| of the weighted empirical CDFs;
 * p-value from the Kolmogorov distribution at lambda = (sqrt(n_e) + 0.12 + 0.11/sqrt(n_e)) D with
 * n_e = n_a n_b / (n_a + n_b), n_k = (sum w)^2 / sum w^2 (Numerical Recipes / Stephens 1970).
 * wa, wb may be NULL; pvalue may be NULL. */
ADVNN_DEF advnn_status advnn_ks(const float *a, const float *wa, int64_t na, const float *b, const float *wb, int64_t nb,
                                double *D, double *pvalue);
/* Weighted histogram with nbins equal bins on [lo, hi) (edges lo + k (hi - lo)/nbins, as
 * numpy.linspace); values outside [lo, hi) are dropped. counts[0..nbins-1] is overwritten. */
ADVNN_DEF advnn_status advnn_histogram(const float *x, const float *weight, int64_t n, double lo, double hi, int nbins,
                                       double *counts);
/* Jensen-Shannon divergence (base 2, in [0, 1]) of two histograms, each normalised to unit sum;
 * 0 log 0 = 0. NAN when an argument is NULL, nbins < 1, a bin is negative or not finite, or a sum <= 0. */
ADVNN_DEF double advnn_jsd(const double *p, const double *q, int nbins);
/* Mass-sculpting measure: JSD between the histograms of var (nbins on [lo, hi)) for events with
 * score >= cut (pass) and score < cut (fail). Both histograms need positive total weight. */
ADVNN_DEF advnn_status advnn_jsd_pass_fail(const float *score, const float *var, const float *weight, int64_t n,
                                           double cut, double lo, double hi, int nbins, double *jsd);
/* Statistical floor of advnn_jsd_pass_fail: the mean JSD over `repeats` random splits that put
 * round(pass_fraction * n) events (chosen uniformly without replacement, from a splitmix64 stream
 * seeded with `seed`) in the pass histogram and the rest in the fail histogram. */
ADVNN_DEF advnn_status advnn_jsd_floor(const float *var, const float *weight, int64_t n, double pass_fraction,
                                       double lo, double hi, int nbins, int repeats, uint64_t seed, double *jsd_mean);
/* Weighted Pearson correlation coefficient of x and y (weight may be NULL); both need non-zero variance. */
ADVNN_DEF advnn_status advnn_pearson(const float *x, const float *y, const float *weight, int64_t n, double *r);
/* Classification. scores is (n, k) row-major: class probabilities or logits for k >= 2 classes, or
 * for k == 1 one probability of class 1 (class 1 when score >= 0.5). labels hold class indices
 * 0..k-1 (0/1 for k == 1) as floats. advnn_argmax: out[i] = predicted class of row i (first maximum).
 * advnn_accuracy: weighted fraction of rows whose predicted class is the label (weight may be NULL).
 * advnn_confusion: counts[t * K + p] = summed weight of rows with label t predicted as p, where K =
 * max(k, 2); counts is overwritten. Non-finite scores or weights, and labels that are not a class
 * index, are errors that name the row. */
ADVNN_DEF advnn_status advnn_argmax(const float *scores, int64_t n, int k, int *out);
ADVNN_DEF advnn_status advnn_accuracy(const float *scores, const float *labels, const float *weight, int64_t n, int k, double *acc);
ADVNN_DEF advnn_status advnn_confusion(const float *scores, const float *labels, const float *weight, int64_t n, int k, double *counts);

/* ---------------------------------------------------------------- decorrelation (DisCo, MoDe, DDT, reweighting)
 * Penalties that make a score independent of a variable m (the jet mass) on the rows with a non-zero
 * weight (background-only weights: advnn_background_weights), and post-hoc tools. Unlike the other
 * losses these are statistics of the whole batch, not means over rows: L = coef * value (coef from
 * advnn_loss_scale: kappa, alpha; advnn_evaluate averages the values of its batches), and a trainer
 * of a graph with one runs on one thread.
 *
 * DisCo (Kasieczka & Shih, arXiv 2001.05310): the weighted distance correlation of the reference
 * code, R = dCov^2(m, s) / sqrt(dCov^2(m, m) dCov^2(s, s)) with the weights normalised over the
 * rows (w_i > 0), value R^power (power 1: R, the reference's default; 2: its square; power >= 1).
 * Exact value and gradient in O(N log N) time and O(N) memory (sorting, prefix sums, a merge-sort pass
 * for the pair sums), not the reference's N x N matrices. Ties count with |d| = 0 and sign(0) = 0 (as
 * torch's abs). Fewer than 2 rows, or a constant s or m (dCorr is 0/0 there): value 0, gradient 0:
 * a constant carries no information about the other variable, and a NaN would end the training.
 * The score is usually the probability (sigmoid of the logit), as in the reference. Weights must be
 * >= 0 and finite. A score node with k > 1 values per sample (a softmax's class scores): the value is
 * the mean over the k columns of each column's DisCo with var (one node, not k slices; a class score
 * that still depends on var then costs 1/k of its own value). */
ADVNN_DEF int  advnn_loss_disco(advnn_graph *g, int score, int var, int weight, float power);
/* The same computation on arrays, for metrics and tests: value, and (each may be NULL) d value / d x_i
 * and d value / d y_i (n values each, 0 on zero-weight rows). w may be NULL (unit weights). */
ADVNN_DEF advnn_status advnn_disco(const float *x, const float *y, const float *w, int64_t n, double power,
                                   double *value, double *grad_x, double *grad_y);

/* MoDe (Kitouni et al., arXiv 2010.09745), as the reference code defines value and gradient; the
 * details (bins, grid, the slope limit, the flatness variant) are at its implementation. The score
 * should be a probability in [0, 1] (the CDF grid covers [0, 1]); no gradient flows to var. Each m
 * bin's CDF comes from the batch's rows in it: they must resolve the score quantiles the analysis
 * cuts at (16 rows per bin cannot see a 3% tail: test_mode_needs_rows_per_bin; the W tagger trains
 * MoDe with 10 bins on batches of 16384, the reference's W-tagging settings). */
typedef struct advnn_mode_opts {
    int   order;       /* Legendre order of the allowed m dependence: 0 flat, 1 linear, 2 quadratic (default 0) */
    int   bins;        /* equal-occupancy m bins (default 32) */
    int   sbins;       /* s grid points of the value's integral (default 32; the gradient does not use it) */
    float power;       /* |F - fit|^power (default 2, the reference's; >= 1) */
    float max_slope;   /* order >= 1: limit on the slope as a fraction of a0 (the reference's max_slope); 0 = none */
    int   flatness;    /* 1: every bin width 2/bins, so order 0 is hep_ml's binned flatness loss (default 0) */
} advnn_mode_opts;
ADVNN_DEF advnn_mode_opts advnn_mode_defaults(void);
ADVNN_DEF int  advnn_loss_mode(advnn_graph *g, int score, int var, int weight, const advnn_mode_opts *o);
/* On arrays: value and (may be NULL) d value / d score_i, n values, 0 on the rows left out. */
ADVNN_DEF advnn_status advnn_mode(const float *score, const float *var, const float *w, int64_t n, const advnn_mode_opts *o,
                                  double *value, double *grad_score);

/* DDT (Dolen et al., arXiv 1603.00027, generalised to any score as in the ATLAS study): a map of the
 * score threshold that keeps background efficiency bkg_eff in bins of rho = log(m^2 / pT) (nrho
 * bins on [rho_lo, rho_hi)) and pT (npt bins on [pt_lo, pt_hi); npt = 1: rho only, pt may be NULL);
 * values outside the ranges go to the edge bins. Fitted on the rows with w > 0 (pass background
 * weights; w NULL: every row). Per bin the threshold is the weighted quantile: the smallest score
 * with at most bkg_eff of the bin's weight above it. smooth > 0: each bin's threshold becomes the
 * average over all bins with Gaussian weights exp(-d^2 / 2 smooth^2) (d in bins) times their
 * background weight; smooth = 0: raw thresholds, an empty bin takes the nearest filled bin's.
 * Apply: out = score - threshold(bin): the background passing out > 0 is bkg_eff in every bin. */
typedef struct advnn_ddt advnn_ddt;
ADVNN_DEF advnn_ddt *advnn_ddt_fit(const float *score, const float *rho, const float *pt, const float *w, int64_t n, double bkg_eff,
                                   int nrho, double rho_lo, double rho_hi, int npt, double pt_lo, double pt_hi, double smooth);
ADVNN_DEF advnn_status advnn_ddt_apply(const advnn_ddt *d, const float *score, const float *rho, const float *pt, int64_t n, float *out);
ADVNN_DEF const double *advnn_ddt_map(const advnn_ddt *d, int *nrho, int *npt);   /* nrho x npt thresholds, [rho][pt] */
ADVNN_DEF void         advnn_ddt_free(advnn_ddt *d);
/* Training weights for planing (data-level decorrelation), from a weighted histogram of var with
 * nbins equal bins on [lo, hi) (as advnn_histogram). label > 0.5 is signal.
 *   FLAT        every class's var spectrum flat: each bin the class fills gets an equal share of the
 *               class's weight in [lo, hi) (a bin it leaves empty stays empty)
 *   BKG_FLAT    the background's flat, the signal's weights unchanged
 *   SIG_TO_BKG  the signal takes the background's var shape over the bins the signal fills (its
 *               total in [lo, hi) kept), the background unchanged
 * Rows outside [lo, hi) get 0 (the target spectrum is defined on the range). label may be NULL for FLAT. */
typedef enum { ADVNN_REWEIGHT_FLAT = 0, ADVNN_REWEIGHT_BKG_FLAT = 1, ADVNN_REWEIGHT_SIG_TO_BKG = 2 } advnn_reweight_mode;
ADVNN_DEF advnn_status advnn_reweight(const float *var, const float *label, const float *w, int64_t n, double lo, double hi, int nbins,
                                      advnn_reweight_mode mode, float *out);

/* ---------------------------------------------------------------- model files
 * Layout: "ADVNNMDL", u32 format version, u32 flags, u64 payload length, payload (architecture,
 * groups, tensors, test vector), u64 XXH3-64 of everything before it. All integers little endian.
 * Loading checks size, magic, version and checksum; rebuilds the graph through the builder (which
 * validates every shape and setting) and requires every node to come out exactly as saved; checks
 * that the file holds every declared tensor before allocating any (a file of a few hundred bytes
 * cannot make the loader allocate more than a small multiple of its size); refuses non-finite
 * weights and negative BatchNorm variances; and, when the file has a test vector, runs it.
 * Test vector (written by default, flag 1 of the header): the outputs that the model gave for two
 * rows of seeded inputs in [-1, 1) when it was saved, for every leaf of the graph (each node that
 * is not a loss and that only losses read). Loading recomputes them and refuses the file when any
 * value differs by more than 1e-4 x max(1, largest |value| of that output): a file that runs
 * differently from how it was saved (a corrupted but checksum-valid field, a kernel or ISA path that
 * computes something else) does not load. It costs 8 bytes per leaf value and one batch-2 forward
 * pass at save and load, whose workspace may not pass max(64 MiB, 64 x the file's size) at load
 * (a model with larger activations is saved with ADVNN_SAVE_NO_TESTVEC, which leaves it out). Saving refuses (ADVNN_ERR_NAN /
 * ADVNN_ERR_FORMAT) weights that loading would refuse. Files of older builds (no test vector) load. */
#define ADVNN_MODEL_FORMAT_VERSION 1
#define ADVNN_SAVE_NO_TESTVEC 1u
ADVNN_DEF advnn_status advnn_model_save_mem(const advnn_graph *g, void **buf, size_t *len);
ADVNN_DEF advnn_status advnn_model_save_mem_ex(const advnn_graph *g, unsigned flags, void **buf, size_t *len);
ADVNN_DEF advnn_graph *advnn_model_load_mem(const void *buf, size_t len);
#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_status advnn_model_save(const advnn_graph *g, const char *path);
ADVNN_DEF advnn_status advnn_model_save_ex(const advnn_graph *g, const char *path, unsigned flags);
ADVNN_DEF advnn_graph *advnn_model_load(const char *path);
#endif

/* ---------------------------------------------------------------- per-layer weights
 * A finalized graph's parameter blocks, read and written by layer (node id, e.g. from advnn_find)
 * and block name. Values are float32, row-major in the shape advnn_weight_info reports:
 *   dense (and dense_sn)  "kernel" (in, units), "bias" (units); dense_sn also "u" (in), "v" (units),
 *                         its power-iteration vectors (sigma = u . W v, re-estimated by training)
 *   conv1d / conv2d       "kernel" (K, Cin, F) / (KH, KW, Cin, F), "bias" (F)
 *   lstm                  "kernel" (F, 4H), "recurrent_kernel" (H, 4H), "bias" (4H); each 4H axis holds
 *                         the gates in Keras order i, f, c, o (H values each), one bias per gate
 *   batchnorm             "gamma", "beta", "moving_mean", "moving_variance" (C each: the last axis)
 *   prelu                 "alpha" (C: one slope per value of the last axis)
 *   standardize           "offset", "scale" (C each: y = (x - offset) * scale)
 * A layer made by advnn_shared reads and writes its owner's blocks. advnn_params() holds every block
 * in this order, layer after layer, each padded with zeros to a multiple of 16 floats.
 * advnn_weight_set copies n values (n must be the block's size) and refuses non-finite values and
 * negative variances, leaving the graph unchanged. */
ADVNN_DEF int          advnn_weight_count(const advnn_graph *g, int node);   /* blocks of the layer (0 if none), -1: bad node */
ADVNN_DEF advnn_status advnn_weight_info(const advnn_graph *g, int node, int k, const char **name, int *ndim, int64_t *shape);
ADVNN_DEF advnn_status advnn_weight_get(const advnn_graph *g, int node, const char *name, float *out, int64_t n);
ADVNN_DEF advnn_status advnn_weight_set(advnn_graph *g, int node, const char *name, const float *in, int64_t n);
/* The layer kind of a node: "input", "dense", "conv2d", "lstm", "batchnorm", ... ("" for a bad id). */
ADVNN_DEF const char  *advnn_node_kind(const advnn_graph *g, int node);

/* ---------------------------------------------------------------- ONNX import
 * advnn_onnx_load builds a finalized inference graph from an ONNX model file (default domain, opsets
 * 11..21) made of the operators torch.onnx.export and tf2onnx write for advnn-like networks: Gemm,
 * MatMul (+ Add as its bias), Conv (1-D, 2-D; 'valid' or Keras-'same' pads), MaxPool/AveragePool
 * (no padding), GlobalAveragePool/GlobalMaxPool, BatchNormalization, Relu/LeakyRelu/PRelu/Elu/
 * Sigmoid/Tanh/Softmax, Reshape/Flatten/Transpose/Squeeze/Unsqueeze/Gather/Concat where they only
 * relabel the layout, Resize/Upsample (nearest, integer factors), LSTM (forward, with sequence_lens;
 * its zero initial state also as the exporters' Shape/Gather/Unsqueeze/Concat/ConstantOfShape),
 * Identity/Dropout/Constant, Pad of zero. Anything else is refused with an error naming the operator,
 * the node and the opset, never run approximately.
 * Layout: inputs and outputs keep their ONNX names; their per-sample shapes drop the batch axis (the
 * first one). advnn is channels-last: an NCHW (NCL) image input read directly by a Conv, pooling,
 * Resize or BatchNormalization (PyTorch's exports) becomes an (H, W, C) ((L, C)) input, so feed
 * x.transpose(0, 2, 3, 1); other inputs keep their order (advnn's own exports: NHWC and a Transpose);
 * a feature-map output comes out channels-last; weights are
 * permuted at load (conv kernels, and the rows of a Dense after a channels-first Flatten). An LSTM's
 * sequence_lens input becomes an input of one float per sample (the length; steps at or beyond it
 * leave the state unchanged). The graph saves with advnn_model_save like any other. */
typedef struct advnn_onnx_meta {
    int64_t ir_version, opset;     /* opset of the default domain (0 if absent) */
    char    producer[64];          /* producer_name and version, truncated */
    int     n_nodes, n_initializers, n_inputs, n_outputs;
    int64_t n_weights;             /* float values in the initializers */
} advnn_onnx_meta;
ADVNN_DEF advnn_graph *advnn_onnx_load_mem(const void *buf, size_t len);
ADVNN_DEF advnn_status advnn_onnx_meta_mem(const void *buf, size_t len, advnn_onnx_meta *m);  /* no graph built */
#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_graph *advnn_onnx_load(const char *path);
#endif

/* ---------------------------------------------------------------- ONNX
 * Export: the inference graph that computes the named outputs (no losses; dropout and gradient
 * reversal dropped; BatchNorm on its running statistics), inputs and outputs with advnn's names and
 * channels-last shapes (N, per-sample shape...), N symbolic. Opset 13 unless opts->opset (13..17).
 * portable: only operators ROOT SOFIE and lwtnn also read (PReLU as Relu(x) - a Relu(-x), upsampling
 * as Reshape + Expand + Reshape instead of PRelu and Resize); the same numbers. opts may be NULL. */
typedef struct advnn_onnx_opts { int portable; int opset; } advnn_onnx_opts;
ADVNN_DEF advnn_status advnn_onnx_save_mem(const advnn_graph *g, int n_outputs, const char *const *outputs,
                                           const advnn_onnx_opts *opts, void **buf, size_t *len); /* free *buf with ADVNN_FREE */
#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_status advnn_onnx_save(const advnn_graph *g, const char *path, int n_outputs, const char *const *outputs,
                                       const advnn_onnx_opts *opts);
#endif

#ifdef __cplusplus
}
#endif
#endif /* ADVNN_H */

/* ======================================================================== implementation */
#ifdef ADVNN_IMPLEMENTATION
#ifndef ADVNN_IMPLEMENTATION_DONE
#define ADVNN_IMPLEMENTATION_DONE

#ifndef ADVNN_SIMD_IMPLEMENTATION
#define ADVNN_SIMD_IMPLEMENTATION
#include "advnn_simd.h"
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <math.h>
#include <time.h>
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#if defined(ADVNN_MALLOC) != defined(ADVNN_FREE) || defined(ADVNN_MALLOC) != defined(ADVNN_REALLOC)
#error "advnn.h: define ADVNN_MALLOC, ADVNN_REALLOC and ADVNN_FREE together (or none of them)"
#endif
#ifndef ADVNN_MALLOC
#define ADVNN_MALLOC(sz) malloc(sz)
#define ADVNN_REALLOC(p, sz) realloc(p, sz)
#define ADVNN_FREE(p) free(p)
#endif
#ifndef ADVNN_ASSERT
#include <assert.h>
#define ADVNN_ASSERT(x) assert(x)
#endif

#if defined(__cplusplus)
#define ADVNN__TLS thread_local
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
#define ADVNN__TLS _Thread_local
#else
#define ADVNN__TLS __thread
#endif

/* for functions with large stack arrays, so that they do not enlarge their callers' frames; and
 * (ADVNN__INL) for the few whose constant arguments should specialise their loops */
#if defined(__GNUC__) || defined(__clang__)
#define ADVNN__NOINL __attribute__((noinline))
#define ADVNN__INL inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define ADVNN__NOINL __declspec(noinline)
#define ADVNN__INL __forceinline
#else
#define ADVNN__NOINL
#define ADVNN__INL
#endif

#define ADVNN__NAME_MAX 48
#define ADVNN__MAX_IN 8          /* inputs per node (concat of up to 8 streams) */
#define ADVNN__ALIGN 64

/* ---------------------------------------------------------------- errors */
static ADVNN__TLS char advnn__errbuf[512];

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static advnn_status advnn__fail(advnn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(advnn__errbuf, sizeof advnn__errbuf, fmt, ap);
    va_end(ap);
    return st;
}

ADVNN_DEF const char *advnn_last_error(void) { return advnn__errbuf; }

ADVNN_DEF const char *advnn_status_name(advnn_status s) {
    switch (s) {
    case ADVNN_OK: return "ok";
    case ADVNN_ERR_ARG: return "bad argument";
    case ADVNN_ERR_SHAPE: return "shape mismatch";
    case ADVNN_ERR_NOMEM: return "out of memory";
    case ADVNN_ERR_IO: return "I/O error";
    case ADVNN_ERR_FORMAT: return "bad format";
    case ADVNN_ERR_CHECKSUM: return "checksum mismatch";
    case ADVNN_ERR_NAN: return "NaN or Inf";
    case ADVNN_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}

/* ---------------------------------------------------------------- memory */
/* Aligned allocation on top of the user's allocator: the original pointer sits just before the block. */
static void *advnn__alloc(size_t bytes) {
    unsigned char *raw, *p;
    if (bytes > (size_t)-1 - ADVNN__ALIGN - sizeof(void *)) return NULL;
    raw = (unsigned char *)ADVNN_MALLOC(bytes + ADVNN__ALIGN + sizeof(void *));
    if (!raw) return NULL;
    p = raw + sizeof(void *);
    p += (ADVNN__ALIGN - ((uintptr_t)p % ADVNN__ALIGN)) % ADVNN__ALIGN;
    memcpy(p - sizeof(void *), &raw, sizeof(void *));
    return p;
}
static void *advnn__zalloc(size_t bytes) {
    void *p = advnn__alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}
static void advnn__free(void *p) {
    void *raw;
    if (!p) return;
    memcpy(&raw, (unsigned char *)p - sizeof(void *), sizeof(void *));
    ADVNN_FREE(raw);
}
static size_t advnn__round(size_t n) { return (n + 15) & ~(size_t)15; }  /* floats, to 64 bytes */

/* ---------------------------------------------------------------- PRNG: xoshiro256** seeded by splitmix64 */
typedef struct { uint64_t s[4]; } advnn__rng;
static uint64_t advnn__splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static void advnn__rng_seed(advnn__rng *r, uint64_t seed) {
    int i;
    for (i = 0; i < 4; i++) r->s[i] = advnn__splitmix(&seed);
}
static uint64_t advnn__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t advnn__rng_next(advnn__rng *r) {
    uint64_t *s = r->s, res = advnn__rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = advnn__rotl(s[3], 45);
    return res;
}
static double advnn__rng_uniform(advnn__rng *r) { return (double)(advnn__rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static uint64_t advnn__rng_below(advnn__rng *r, uint64_t n) {  /* unbiased, by rejection */
    uint64_t lim = (uint64_t)-1 - ((uint64_t)-1 % n), x;
    do { x = advnn__rng_next(r); } while (x >= lim);
    return x % n;
}

/* ---------------------------------------------------------------- tensors */
static advnn_status advnn__shape_size(int ndim, const int64_t *shape, int64_t *size) {
    int64_t s = 1;
    int i;
    if (ndim < 0 || ndim > ADVNN_MAX_DIMS) return advnn__fail(ADVNN_ERR_SHAPE, "tensor: ndim %d outside 0..%d", ndim, ADVNN_MAX_DIMS);
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0) return advnn__fail(ADVNN_ERR_SHAPE, "tensor: dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] && s > ((int64_t)1 << 40) / shape[i])
            return advnn__fail(ADVNN_ERR_SHAPE, "tensor: %d-d shape too large (over 2^40 elements)", ndim);
        s *= shape[i];
    }
    *size = s;
    return ADVNN_OK;
}

ADVNN_DEF advnn_tensor *advnn_tensor_new(int ndim, const int64_t *shape) {
    advnn_tensor *t;
    int64_t size = 0;   /* (set unless an error returns; gcc cannot tell with ADVNN_STATIC) */
    int i;
    if (ndim > 0 && !shape) { advnn__fail(ADVNN_ERR_ARG, "advnn_tensor_new: shape is NULL"); return NULL; }
    if (advnn__shape_size(ndim, shape, &size) != ADVNN_OK) return NULL;
    t = (advnn_tensor *)ADVNN_MALLOC(sizeof *t);
    if (!t) { advnn__fail(ADVNN_ERR_NOMEM, "advnn_tensor_new: out of memory"); return NULL; }
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->size = size;
    t->data = (float *)advnn__zalloc((size_t)(size ? size : 1) * sizeof(float));
    if (!t->data) {
        ADVNN_FREE(t);
        advnn__fail(ADVNN_ERR_NOMEM, "advnn_tensor_new: cannot allocate %lld floats", (long long)size);
        return NULL;
    }
    return t;
}

ADVNN_DEF void advnn_tensor_free(advnn_tensor *t) {
    if (!t) return;
    advnn__free(t->data);
    ADVNN_FREE(t);
}

/* ---------------------------------------------------------------- little-endian byte helpers */
static void advnn__put_u32(unsigned char *p, uint32_t v) { int i; for (i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void advnn__put_u64(unsigned char *p, uint64_t v) { int i; for (i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t advnn__get_u32(const unsigned char *p) { uint32_t v = 0; int i; for (i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static float advnn__get_f32(const unsigned char *p) { uint32_t u = advnn__get_u32(p); float f; memcpy(&f, &u, 4); return f; }
static uint64_t advnn__get_u64(const unsigned char *p) { uint64_t v = 0; int i; for (i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

/* ---------------------------------------------------------------- .npy */
typedef struct { char kind; int bytes; int big; } advnn__dtype;

/* The value of 'key' in the header dict: a pointer to its first character, or NULL. The dict is
 * walked entry by entry, so a key's name inside another entry's string value is not taken for it,
 * and of a key given twice the last one counts (as Python's dict literal, and numpy, do). */
static const char *advnn__npy_key(const char *h, const char *end, const char *key) {
    size_t kl = strlen(key);
    const char *p = h + 1, *found = NULL;   /* h[0] == '{' */
    for (;;) {
        const char *k, *v;
        char qc;
        while (p < end && (*p == ' ' || *p == ',')) p++;
        if (p >= end || *p == '}' || (*p != '\'' && *p != '"')) return found;
        qc = *p; k = ++p;
        while (p < end && *p != qc) p++;
        if (p >= end) return found;
        v = p + 1;
        while (v < end && *v == ' ') v++;
        if (v >= end || *v != ':') return found;
        v++;
        while (v < end && *v == ' ') v++;
        if (v >= end) return found;   /* a key with no value is as bad as no key */
        if ((size_t)(p - k) == kl && memcmp(k, key, kl) == 0) found = v;
        p = v;   /* skip the value: a string, a tuple, or a bare word */
        if (*p == '\'' || *p == '"') { qc = *p++; while (p < end && *p != qc) p++; p++; }
        else if (*p == '(') { while (p < end && *p != ')') p++; p++; }
        else while (p < end && *p != ',' && *p != '}') p++;
    }
}

static advnn_status advnn__npy_parse_header(const char *h, size_t hl, advnn__dtype *dt, int *ndim, int64_t *shape) {
    const char *end = h + hl, *p, *q;
    char descr[16];
    size_t dl;
    if (hl < 2 || h[0] != '{') return advnn__fail(ADVNN_ERR_FORMAT, "npy: header is not a dict");
    if (memchr(h, 0, hl)) return advnn__fail(ADVNN_ERR_FORMAT, "npy: NUL byte in header");
    /* descr */
    p = advnn__npy_key(h, end, "descr");
    if (!p) return advnn__fail(ADVNN_ERR_FORMAT, "npy: header has no 'descr'");
    if (*p != '\'' && *p != '"') return advnn__fail(ADVNN_ERR_FORMAT, "npy: 'descr' is not a simple dtype string (structured dtypes are not supported)");
    q = (const char *)memchr(p + 1, *p, (size_t)(end - p - 1));
    if (!q) return advnn__fail(ADVNN_ERR_FORMAT, "npy: unterminated 'descr'");
    dl = (size_t)(q - p - 1);
    if (dl < 2 || dl >= sizeof descr) return advnn__fail(ADVNN_ERR_FORMAT, "npy: unsupported dtype descriptor of length %zu", dl);
    memcpy(descr, p + 1, dl);
    descr[dl] = 0;
    {
        const char *d = descr;
        char *ep;
        long nb;
        dt->big = 0;
        if (*d == '<' || *d == '|' || *d == '=') d++;
        else if (*d == '>') { dt->big = 1; d++; }
        dt->kind = *d++;
        nb = strtol(d, &ep, 10);
        if (*ep || ep == d) return advnn__fail(ADVNN_ERR_FORMAT, "npy: dtype '%s' is not supported (float32/64, int/uint 8-64, bool are)", descr);
        dt->bytes = (int)nb;
        if (dt->kind == 'f' && (nb == 4 || nb == 8)) {}
        else if ((dt->kind == 'i' || dt->kind == 'u') && (nb == 1 || nb == 2 || nb == 4 || nb == 8)) {}
        else if (dt->kind == 'b' && nb == 1) {}
        else return advnn__fail(ADVNN_ERR_FORMAT, "npy: dtype '%s' is not supported (float32/64, int/uint 8-64, bool are)", descr);
    }
    /* fortran_order */
    p = advnn__npy_key(h, end, "fortran_order");
    if (!p) return advnn__fail(ADVNN_ERR_FORMAT, "npy: header has no 'fortran_order'");
    if (end - p >= 4 && memcmp(p, "True", 4) == 0)
        return advnn__fail(ADVNN_ERR_FORMAT, "npy: Fortran-order arrays are not supported; save with np.ascontiguousarray");
    if (!(end - p >= 5 && memcmp(p, "False", 5) == 0)) return advnn__fail(ADVNN_ERR_FORMAT, "npy: bad 'fortran_order' value");
    /* shape */
    p = advnn__npy_key(h, end, "shape");
    if (!p || *p != '(') return advnn__fail(ADVNN_ERR_FORMAT, "npy: header has no 'shape' tuple");
    p++;
    *ndim = 0;
    for (;;) {
        int64_t v = 0;
        while (p < end && *p == ' ') p++;
        if (p >= end) return advnn__fail(ADVNN_ERR_FORMAT, "npy: unterminated shape");
        if (*p == ')') break;
        if (*p < '0' || *p > '9') return advnn__fail(ADVNN_ERR_FORMAT, "npy: bad character '%c' in shape", *p);
        while (p < end && *p >= '0' && *p <= '9') {
            if (v > ((int64_t)1 << 40)) return advnn__fail(ADVNN_ERR_FORMAT, "npy: dimension too large");
            v = v * 10 + (*p++ - '0');
        }
        if (*ndim >= ADVNN_MAX_DIMS) return advnn__fail(ADVNN_ERR_FORMAT, "npy: more than %d dimensions", ADVNN_MAX_DIMS);
        shape[(*ndim)++] = v;
        while (p < end && *p == ' ') p++;
        if (p < end && *p == ',') p++;
        else if (p < end && *p == ')') break;
        else return advnn__fail(ADVNN_ERR_FORMAT, "npy: bad shape tuple");
    }
    return ADVNN_OK;
}

static double advnn__npy_elem(const unsigned char *p, const advnn__dtype *dt) {
    unsigned char b[8];
    int i;
    uint64_t u = 0;
    for (i = 0; i < dt->bytes; i++) b[i] = dt->big ? p[dt->bytes - 1 - i] : p[i];
    for (i = dt->bytes - 1; i >= 0; i--) u = (u << 8) | b[i];
    switch (dt->kind) {
    case 'f':
        if (dt->bytes == 4) { uint32_t u32 = (uint32_t)u; float f; memcpy(&f, &u32, 4); return f; }
        else { double d; memcpy(&d, &u, 8); return d; }
    case 'b': return u ? 1.0 : 0.0;
    case 'u': return (double)u;
    default: /* signed: sign-extend */
        if (dt->bytes < 8 && (u >> (8 * dt->bytes - 1)) & 1) u |= ~(uint64_t)0 << (8 * dt->bytes);
        return (double)(int64_t)u;
    }
}

ADVNN_DEF advnn_tensor *advnn_npy_load_mem(const void *buf, size_t len) {
    const unsigned char *b = (const unsigned char *)buf;
    size_t hl, off, need;
    int ndim = 0, major;
    int64_t shape[ADVNN_MAX_DIMS] = {0}, size, i;
    advnn__dtype dt = {0, 0, 0};
    advnn_tensor *t;
    if (!b) { advnn__fail(ADVNN_ERR_ARG, "npy: buffer is NULL"); return NULL; }
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0) { advnn__fail(ADVNN_ERR_FORMAT, "npy: not a .npy file (bad magic, %zu bytes)", len); return NULL; }
    major = b[6];
    if (major == 1) { hl = (size_t)b[8] | ((size_t)b[9] << 8); off = 10; }
    else if (major == 2 || major == 3) {
        if (len < 12) { advnn__fail(ADVNN_ERR_FORMAT, "npy: truncated header"); return NULL; }
        hl = advnn__get_u32(b + 8); off = 12;
    } else { advnn__fail(ADVNN_ERR_FORMAT, "npy: unsupported format version %d.%d", major, b[7]); return NULL; }
    if (hl > len - off) { advnn__fail(ADVNN_ERR_FORMAT, "npy: header of %zu bytes but only %zu bytes in file", hl, len - off); return NULL; }
    if (advnn__npy_parse_header((const char *)b + off, hl, &dt, &ndim, shape) != ADVNN_OK) return NULL;
    if (advnn__shape_size(ndim, shape, &size) != ADVNN_OK) return NULL;
    off += hl;
    need = (size_t)size * (size_t)dt.bytes;
    if (len - off < need) {
        advnn__fail(ADVNN_ERR_FORMAT, "npy: truncated data: %lld elements need %zu bytes, file has %zu", (long long)size, need, len - off);
        return NULL;
    }
    if (len - off > need) {
        advnn__fail(ADVNN_ERR_FORMAT, "npy: %zu trailing bytes after the data", len - off - need);
        return NULL;
    }
    t = advnn_tensor_new(ndim, shape);
    if (!t) return NULL;
    if (dt.kind == 'f' && dt.bytes == 4 && !dt.big) memcpy(t->data, b + off, need);
    else for (i = 0; i < size; i++) t->data[i] = (float)advnn__npy_elem(b + off + (size_t)i * dt.bytes, &dt);
    return t;
}

ADVNN_DEF advnn_status advnn_npy_save_mem(const advnn_tensor *t, void **out, size_t *outlen) {
    char hdr[512];
    int n, i, k;
    size_t hl, total;
    unsigned char *b;
    if (!t || !out || !outlen) return advnn__fail(ADVNN_ERR_ARG, "npy save: NULL argument");
    if (t->ndim < 0 || t->ndim > ADVNN_MAX_DIMS) return advnn__fail(ADVNN_ERR_SHAPE, "npy save: bad ndim %d", t->ndim);
    n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (i = 0; i < t->ndim; i++)  /* numpy's repr: (), (3,), (3, 4) */
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld%s", (long long)t->shape[i],
                      t->ndim == 1 ? "," : (i + 1 < t->ndim ? ", " : ""));
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    hl = (size_t)n + 1;                               /* + '\n' */
    hl += (64 - (10 + hl) % 64) % 64;                 /* pad so data starts 64-aligned */
    total = 10 + hl + (size_t)t->size * 4;
    b = (unsigned char *)ADVNN_MALLOC(total);
    if (!b) return advnn__fail(ADVNN_ERR_NOMEM, "npy save: out of memory (%zu bytes)", total);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hl & 0xff); b[9] = (unsigned char)(hl >> 8);
    memcpy(b + 10, hdr, (size_t)n);
    for (k = n; k < (int)hl - 1; k++) b[10 + k] = ' ';
    b[10 + hl - 1] = '\n';
    {
        int64_t j;
        for (j = 0; j < t->size; j++) {
            uint32_t u;
            memcpy(&u, &t->data[j], 4);
            advnn__put_u32(b + 10 + hl + (size_t)j * 4, u);
        }
    }
    *out = b;
    *outlen = total;
    return ADVNN_OK;
}

#ifndef ADVNN_NO_STDIO
/* Reads a whole file. The size from ftell is only a first guess: a directory reports LONG_MAX on
 * Linux and fails at the first read, which is the error to report (not an allocation of that size). */
static advnn_status advnn__read_file(const char *path, unsigned char **buf, size_t *len) {
    FILE *f;
    long sz;
    size_t cap, n = 0;
    unsigned char *b;
    if (!path) return advnn__fail(ADVNN_ERR_ARG, "path is NULL");
    f = fopen(path, "rb");
    if (!f) return advnn__fail(ADVNN_ERR_IO, "cannot open '%s' for reading", path);
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) sz = 0;
    cap = sz > 0 && sz < (1L << 30) ? (size_t)sz + 1 : (size_t)1 << 16;
    if (!(b = (unsigned char *)ADVNN_MALLOC(cap))) { fclose(f); return advnn__fail(ADVNN_ERR_NOMEM, "out of memory reading '%s' (%zu bytes)", path, cap); }
    for (;;) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        {
            unsigned char *q = cap < SIZE_MAX / 2 ? (unsigned char *)ADVNN_REALLOC(b, 2 * cap) : NULL;
            if (!q) { fclose(f); ADVNN_FREE(b); return advnn__fail(ADVNN_ERR_NOMEM, "out of memory reading '%s' (more than %zu bytes)", path, cap); }
            b = q; cap *= 2;
        }
    }
    if (ferror(f)) {
        fclose(f); ADVNN_FREE(b);
        return advnn__fail(ADVNN_ERR_IO, "cannot read '%s' (a directory, or an I/O error)", path);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return ADVNN_OK;
}
static advnn_status advnn__write_file(const char *path, const void *buf, size_t len) {
    FILE *f;
    if (!path) return advnn__fail(ADVNN_ERR_ARG, "path is NULL");
    f = fopen(path, "wb");
    if (!f) return advnn__fail(ADVNN_ERR_IO, "cannot open '%s' for writing", path);
    if (fwrite(buf, 1, len, f) != len) { fclose(f); return advnn__fail(ADVNN_ERR_IO, "short write on '%s'", path); }
    if (fclose(f) != 0) return advnn__fail(ADVNN_ERR_IO, "cannot close '%s' (disk full?)", path);
    return ADVNN_OK;
}
/* A graph from a file through one of the in-memory loaders; a failure's message gets the path. */
static advnn_graph *advnn__load_graph_file(const char *path, advnn_graph *(*load_mem)(const void *, size_t)) {
    unsigned char *b;
    size_t len;
    advnn_graph *g;
    if (advnn__read_file(path, &b, &len) != ADVNN_OK) return NULL;
    g = load_mem(b, len);
    ADVNN_FREE(b);
    if (!g) {
        char msg[sizeof advnn__errbuf];
        memcpy(msg, advnn__errbuf, sizeof msg);
        advnn__fail(ADVNN_ERR_FORMAT, "%s: %s", path, msg);
    }
    return g;
}
ADVNN_DEF advnn_tensor *advnn_npy_load(const char *path) {
    unsigned char *b;
    size_t len;
    advnn_tensor *t;
    if (advnn__read_file(path, &b, &len) != ADVNN_OK) return NULL;
    t = advnn_npy_load_mem(b, len);
    ADVNN_FREE(b);
    if (!t) {  /* prefix the message with the file name */
        char msg[sizeof advnn__errbuf];
        memcpy(msg, advnn__errbuf, sizeof msg);
        advnn__fail(ADVNN_ERR_FORMAT, "%s: %s", path, msg);
    }
    return t;
}
ADVNN_DEF advnn_status advnn_npy_save(const char *path, const advnn_tensor *t) {
    void *b;
    size_t len;
    advnn_status st = advnn_npy_save_mem(t, &b, &len);
    if (st != ADVNN_OK) return st;
    st = advnn__write_file(path, b, len);
    ADVNN_FREE(b);
    return st;
}
#endif

/* ---------------------------------------------------------------- graph */
/* Node kinds. The numbers are part of the model file format: append, never renumber. */
enum {
    ADVNN__INPUT = 1, ADVNN__DENSE = 2, ADVNN__ACT = 3, ADVNN__PRELU = 4, ADVNN__DROPOUT = 5,
    ADVNN__BATCHNORM = 6, ADVNN__CONCAT = 7, ADVNN__LOSS_BCE = 8, ADVNN__LOSS_CCE = 9, ADVNN__LOSS_MSE = 10,
    ADVNN__CONV = 11, ADVNN__POOL = 12, ADVNN__UPSAMPLE = 13, ADVNN__RESHAPE = 14, ADVNN__LSTM = 15, ADVNN__MASK = 16,
    ADVNN__GRAD_REVERSE = 17, ADVNN__SOFTMAX = 18, ADVNN__LOSS_MDN = 19, ADVNN__SAMPLE_MSE = 20,
    ADVNN__LOSS_DISCO = 21, ADVNN__LOSS_MODE = 22,   /* batch statistics: see decorrelation losses */
    ADVNN__STANDARDIZE = 23,
    ADVNN__KIND_END
};
#define ADVNN__IS_LOSS(k) ((k) == ADVNN__LOSS_BCE || (k) == ADVNN__LOSS_CCE || (k) == ADVNN__LOSS_MSE || (k) == ADVNN__LOSS_MDN || \
                           (k) == ADVNN__LOSS_DISCO || (k) == ADVNN__LOSS_MODE)

typedef struct {
    int   kind;
    int   n_in, in[ADVNN__MAX_IN];
    int   ndim, shape[3], size;      /* per-sample output shape (losses: a scalar of size 1) */
    int   rows, cols;                /* dense/bn/prelu/act view: rows per sample x last axis */
    int   group;
    int   param0, n_param;           /* parameter blocks [param0, param0+n_param) */
    int   share;                     /* node whose parameters this one uses, or -1 */
    int   ip[8];                     /* integer config (dense: units, act; conv: filters, act, kh, kw, sh, sw, pad) */
    float fp[4];                     /* float config (act param, rate, momentum, eps, loss coef) */
    char  name[ADVNN__NAME_MAX];
} advnn__node;

typedef struct {
    int     node, group, trainable;  /* trainable = 0 for BatchNorm running statistics */
    int     rows, cols;              /* shape (rows x cols, rows = 1 for vectors) */
    int64_t size, off;               /* offset into graph->params */
} advnn__param;

struct advnn_graph {
    advnn__node  *nodes;  int n_nodes, cap_nodes;
    advnn__param *par;    int n_par, cap_par;
    char (*groups)[ADVNN__NAME_MAX]; int n_groups, cur_group;
    int    *inputs;       int n_inputs;
    float  *params;       int64_t n_params;
    uint64_t wgen;        /* weight generation: every writer of params adds 1 (advnn__weights_changed), so
                           * that inference workspaces know when their cached values are stale */
    int    *name_ht;      int name_cap, name_n;   /* open-addressing index of node names (advnn_find) */
    int     finalized;
    advnn_status err;     char errmsg[512];
};

/* Records the first builder error on the graph (and on this thread) and returns -1. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static int advnn__gfail(advnn_graph *g, advnn_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(advnn__errbuf, sizeof advnn__errbuf, fmt, ap);
    va_end(ap);
    if (g && g->err == ADVNN_OK) {
        g->err = st;
        snprintf(g->errmsg, sizeof g->errmsg, "%s", advnn__errbuf);
    }
    return -1;
}

static int advnn__grow(void **p, int *cap, int need, size_t elem) {
    void *q;
    int nc;
    if (need <= *cap) return 1;
    nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    q = ADVNN_REALLOC(*p, (size_t)nc * elem);
    if (!q) return 0;
    *p = q;
    *cap = nc;
    return 1;
}

ADVNN_DEF advnn_graph *advnn_graph_new(void) {
    advnn_graph *g = (advnn_graph *)ADVNN_MALLOC(sizeof *g);
    if (!g) { advnn__fail(ADVNN_ERR_NOMEM, "advnn_graph_new: out of memory"); return NULL; }
    memset(g, 0, sizeof *g);
    g->cur_group = -1;
    g->wgen = 1;
    if (advnn_group(g, "main") < 0) { advnn_graph_free(g); return NULL; }
    return g;
}

ADVNN_DEF void advnn_graph_free(advnn_graph *g) {
    if (!g) return;
    ADVNN_FREE(g->nodes); ADVNN_FREE(g->par); ADVNN_FREE(g->groups); ADVNN_FREE(g->inputs);
    ADVNN_FREE(g->name_ht);
    advnn__free(g->params);
    ADVNN_FREE(g);
}

static int advnn__valid_name(const char *name) {
    size_t n;
    if (!name) return 0;
    n = strlen(name);
    return n > 0 && n < ADVNN__NAME_MAX;
}

ADVNN_DEF int advnn_group(advnn_graph *g, const char *name) {
    int i, cap;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_group: graph is NULL"), -1;
    if (g->finalized) return advnn__gfail(g, ADVNN_ERR_STATE, "advnn_group: graph already finalized");
    if (!advnn__valid_name(name)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_group: name must have 1..%d characters", ADVNN__NAME_MAX - 1);
    for (i = 0; i < g->n_groups; i++)
        if (strcmp(g->groups[i], name) == 0) return g->cur_group = i;
    cap = g->n_groups;
    {   /* groups are few: grow one at a time */
        void *q = ADVNN_REALLOC(g->groups, (size_t)(cap + 1) * sizeof *g->groups);
        if (!q) return advnn__gfail(g, ADVNN_ERR_NOMEM, "advnn_group: out of memory");
        g->groups = (char (*)[ADVNN__NAME_MAX])q;
    }
    snprintf(g->groups[g->n_groups], ADVNN__NAME_MAX, "%s", name);
    return g->cur_group = g->n_groups++;
}

static int advnn__find_group(const advnn_graph *g, const char *name) {
    int i;
    for (i = 0; i < g->n_groups; i++) if (strcmp(g->groups[i], name) == 0) return i;
    return -1;
}

/* Node names are indexed in a hash table so that naming n nodes (a model load) costs O(n), not
 * O(n^2). A renamed node leaves its old slot behind; lookups skip slots whose node has another name. */
static size_t advnn__name_slot(const char *name, int cap) {
    return (size_t)(XXH3_64bits(name, strlen(name)) & (uint64_t)(cap - 1));
}
static int advnn__name_index(advnn_graph *g, int node) {
    size_t h;
    if (2 * (g->name_n + 1) > g->name_cap) {
        int cap = g->name_cap ? 2 * g->name_cap : 64, i;
        int *t = (int *)ADVNN_MALLOC((size_t)cap * sizeof(int));
        if (!t) return 0;
        for (i = 0; i < cap; i++) t[i] = -1;
        ADVNN_FREE(g->name_ht);
        g->name_ht = t; g->name_cap = cap; g->name_n = 0;
        for (i = 0; i < g->n_nodes; i++)   /* rebuild from the live names only */
            if (i != node && g->nodes[i].name[0]) {
                for (h = advnn__name_slot(g->nodes[i].name, cap); t[h] >= 0; h = (h + 1) & (size_t)(cap - 1)) {}
                t[h] = i; g->name_n++;
            }
    }
    for (h = advnn__name_slot(g->nodes[node].name, g->name_cap); g->name_ht[h] >= 0; h = (h + 1) & (size_t)(g->name_cap - 1)) {}
    g->name_ht[h] = node; g->name_n++;
    return 1;
}

ADVNN_DEF int advnn_find(const advnn_graph *g, const char *name) {
    size_t h;
    if (!g || !name || !g->name_ht) return -1;
    for (h = advnn__name_slot(name, g->name_cap); g->name_ht[h] >= 0; h = (h + 1) & (size_t)(g->name_cap - 1))
        if (strcmp(g->nodes[g->name_ht[h]].name, name) == 0) return g->name_ht[h];
    return -1;
}

static int advnn__add_param(advnn_graph *g, int node, int rows, int cols, int trainable) {
    advnn__param *p;
    if (!advnn__grow((void **)&g->par, &g->cap_par, g->n_par + 1, sizeof *g->par))
        return advnn__gfail(g, ADVNN_ERR_NOMEM, "out of memory adding parameters");
    p = &g->par[g->n_par];
    p->node = node; p->group = g->nodes[node].group; p->trainable = trainable;
    p->rows = rows; p->cols = cols; p->size = (int64_t)rows * cols; p->off = -1;
    return g->n_par++;
}

/* Checks an input id of a new node. Propagates an earlier failure (-1) without a new message. */
static int advnn__check_in(advnn_graph *g, int in, const char *what) {
    if (in < 0 && g->err != ADVNN_OK) return 0;
    if (in < 0 || in >= g->n_nodes) { advnn__gfail(g, ADVNN_ERR_ARG, "%s: input node %d does not exist (graph has %d nodes)", what, in, g->n_nodes); return 0; }
    if (ADVNN__IS_LOSS(g->nodes[in].kind)) { advnn__gfail(g, ADVNN_ERR_ARG, "%s: input node %d is a loss", what, in); return 0; }
    return 1;
}

/* Appends a node after the generic checks; the caller fills in shape and config. */
static int advnn__new_node(advnn_graph *g, int kind, int n_in, const int *in, const char *what) {
    advnn__node *n;
    int i;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "%s: graph is NULL", what), -1;
    if (g->finalized) return advnn__gfail(g, ADVNN_ERR_STATE, "%s: graph already finalized", what);
    if (n_in < 0 || n_in > ADVNN__MAX_IN) return advnn__gfail(g, ADVNN_ERR_ARG, "%s: %d inputs (at most %d)", what, n_in, ADVNN__MAX_IN);
    for (i = 0; i < n_in; i++) if (!advnn__check_in(g, in[i], what)) return -1;
    if (!advnn__grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes))
        return advnn__gfail(g, ADVNN_ERR_NOMEM, "%s: out of memory", what);
    n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind; n->n_in = n_in; n->group = g->cur_group; n->param0 = -1; n->share = -1;
    for (i = 0; i < n_in; i++) n->in[i] = in[i];
    return g->n_nodes++;
}

static void advnn__set_shape(advnn__node *n, int ndim, const int *shape) {
    int i;
    n->ndim = ndim; n->size = 1;
    for (i = 0; i < ndim; i++) { n->shape[i] = shape[i]; n->size *= shape[i]; }
    n->cols = ndim ? shape[ndim - 1] : 1;
    n->rows = n->size / (n->cols ? n->cols : 1);
}

#define ADVNN__MAX_FEATURES (1 << 24)

ADVNN_DEF int advnn_input(advnn_graph *g, const char *name, int ndim, const int *shape) {
    int id, i;
    int64_t size = 1;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_input: graph is NULL"), -1;
    if (!advnn__valid_name(name)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_input: name must have 1..%d characters", ADVNN__NAME_MAX - 1);
    if (advnn_find(g, name) >= 0) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_input: name '%s' is already used", name);
    if (ndim < 1 || ndim > 3 || !shape) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_input '%s': ndim %d (per-sample shape must have 1..3 dimensions)", name, ndim);
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 1) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_input '%s': dimension %d is %d", name, i, shape[i]);
        size *= shape[i];
        if (size > ADVNN__MAX_FEATURES) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_input '%s': more than 2^24 values per sample", name);
    }
    id = advnn__new_node(g, ADVNN__INPUT, 0, NULL, "advnn_input");
    if (id < 0) return -1;
    {
        void *q = ADVNN_REALLOC(g->inputs, (size_t)(g->n_inputs + 1) * sizeof(int));
        if (!q) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_NOMEM, "advnn_input: out of memory"); }
        g->inputs = (int *)q;
        g->inputs[g->n_inputs++] = id;
    }
    advnn__set_shape(&g->nodes[id], ndim, shape);
    snprintf(g->nodes[id].name, ADVNN__NAME_MAX, "%s", name);
    if (!advnn__name_index(g, id)) return advnn__gfail(g, ADVNN_ERR_NOMEM, "advnn_input: out of memory");
    return id;
}

static int advnn__valid_act(int act) { return act >= 0 && act < (int)ADVNN_ACT_COUNT; }
static float advnn__default_act_param(int act) { return act == ADVNN_ACT_LEAKY_RELU ? 0.01f : 1.0f; }

/* Gives node id its parameter blocks (rows x cols, trainable flag each): new ones, or, when share >= 0,
 * those of node `share`, which must be a layer of the same kind whose blocks have the same shapes. */
static int advnn__attach_params(advnn_graph *g, int id, int share, int n, int (*spec)[3]) {
    advnn__node *nd = &g->nodes[id];
    int k;
    if (share >= 0) {
        const advnn__node *l;
        if (share >= id || g->nodes[share].kind != nd->kind || g->nodes[share].n_param != n || g->nodes[share].share >= 0) {
            g->n_nodes--;
            return advnn__gfail(g, ADVNN_ERR_ARG, "shared layer: node %d is not a layer of this kind with its own weights", share);
        }
        l = &g->nodes[share];
        for (k = 0; k < n; k++)
            if (g->par[l->param0 + k].rows != spec[k][0] || g->par[l->param0 + k].cols != spec[k][1]) {
                g->n_nodes--;
                return advnn__gfail(g, ADVNN_ERR_SHAPE, "shared layer: node %d's weights are %d x %d, this input needs %d x %d",
                                    share, g->par[l->param0 + k].rows, g->par[l->param0 + k].cols, spec[k][0], spec[k][1]);
            }
        nd->param0 = l->param0; nd->n_param = n; nd->share = share; nd->group = l->group;
        return id;
    }
    for (k = 0; k < n; k++) {
        int p = advnn__add_param(g, id, spec[k][0], spec[k][1], spec[k][2]);
        if (p < 0) return -1;
        if (k == 0) g->nodes[id].param0 = p;
    }
    g->nodes[id].n_param = n;
    return id;
}

static int advnn__dense_node(advnn_graph *g, int in, int units, int act, int sn, int share) {
    int id, shape[3], spec[4][3];
    advnn__node *n, *x;
    id = advnn__new_node(g, ADVNN__DENSE, 1, &in, "advnn_dense");
    if (id < 0) return -1;
    if (units < 1 || units > ADVNN__MAX_FEATURES) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_dense: units = %d", units); }
    if (!advnn__valid_act(act) || act == ADVNN_ACT_PRELU) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_dense: activation %d not valid here (PReLU is its own layer: advnn_prelu)", act);
    }
    n = &g->nodes[id]; x = &g->nodes[in];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = units;
    if ((int64_t)x->rows * units > ADVNN__MAX_FEATURES) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_dense: output too large"); }
    advnn__set_shape(n, x->ndim, shape);
    n->ip[0] = units; n->ip[1] = act; n->ip[2] = sn ? 1 : 0; n->fp[0] = advnn__default_act_param(act);
    spec[0][0] = x->cols; spec[0][1] = units; spec[0][2] = 1;
    spec[1][0] = 1; spec[1][1] = units; spec[1][2] = 1;
    /* spectral normalisation: the power-iteration vectors u (K) and v (units) are saved state, not trained */
    spec[2][0] = 1; spec[2][1] = x->cols; spec[2][2] = 0;
    spec[3][0] = 1; spec[3][1] = units; spec[3][2] = 0;
    return advnn__attach_params(g, id, share, sn ? 4 : 2, spec);
}
ADVNN_DEF int advnn_dense(advnn_graph *g, int in, int units, advnn_act act) { return advnn__dense_node(g, in, units, (int)act, 0, -1); }
ADVNN_DEF int advnn_dense_sn(advnn_graph *g, int in, int units, advnn_act act) { return advnn__dense_node(g, in, units, (int)act, 1, -1); }

static int advnn__same_shape_node(advnn_graph *g, int kind, int in, const char *what) {
    int id = advnn__new_node(g, kind, 1, &in, what);
    if (id < 0) return -1;
    advnn__set_shape(&g->nodes[id], g->nodes[in].ndim, g->nodes[in].shape);
    return id;
}

ADVNN_DEF int advnn_activation_ex(advnn_graph *g, int in, advnn_act act, float param) {
    int id;
    if (g && (!advnn__valid_act((int)act) || act == ADVNN_ACT_PRELU))
        return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_activation: activation %d not valid here (PReLU: advnn_prelu)", (int)act);
    if (g && !isfinite(param)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_activation: parameter is not finite");
    id = advnn__same_shape_node(g, ADVNN__ACT, in, "advnn_activation");
    if (id < 0) return -1;
    g->nodes[id].ip[0] = (int)act; g->nodes[id].fp[0] = param;
    return id;
}
ADVNN_DEF int advnn_activation(advnn_graph *g, int in, advnn_act act) {
    return advnn_activation_ex(g, in, act, advnn__default_act_param((int)act));
}

static int advnn__prelu_node(advnn_graph *g, int in, int share) {
    int spec[1][3], id = advnn__same_shape_node(g, ADVNN__PRELU, in, "advnn_prelu");
    if (id < 0) return -1;
    spec[0][0] = 1; spec[0][1] = g->nodes[id].cols; spec[0][2] = 1;
    return advnn__attach_params(g, id, share, 1, spec);
}
ADVNN_DEF int advnn_prelu(advnn_graph *g, int in) { return advnn__prelu_node(g, in, -1); }

ADVNN_DEF int advnn_dropout(advnn_graph *g, int in, float rate) {
    int id;
    if (g && !(rate >= 0.0f && rate < 1.0f)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_dropout: rate %g outside [0, 1)", (double)rate);
    id = advnn__same_shape_node(g, ADVNN__DROPOUT, in, "advnn_dropout");
    if (id < 0) return -1;
    g->nodes[id].fp[0] = rate;
    return id;
}

static int advnn__bn_node(advnn_graph *g, int in, float momentum, float eps, int share) {
    int id, k, spec[4][3];
    if (g && !(momentum > 0.0f && momentum <= 1.0f)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_batchnorm: momentum %g outside (0, 1]", (double)momentum);
    if (g && !(eps > 0.0f && eps < 1.0f)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_batchnorm: eps %g outside (0, 1)", (double)eps);
    id = advnn__same_shape_node(g, ADVNN__BATCHNORM, in, "advnn_batchnorm");
    if (id < 0) return -1;
    g->nodes[id].fp[0] = momentum; g->nodes[id].fp[1] = eps;
    /* gamma, beta (trained); running mean, running variance (statistics, saved with the model) */
    for (k = 0; k < 4; k++) { spec[k][0] = 1; spec[k][1] = g->nodes[id].cols; spec[k][2] = k < 2; }
    return advnn__attach_params(g, id, share, 4, spec);
}
ADVNN_DEF int advnn_batchnorm_ex(advnn_graph *g, int in, float momentum, float eps) { return advnn__bn_node(g, in, momentum, eps, -1); }
ADVNN_DEF int advnn_batchnorm(advnn_graph *g, int in) { return advnn_batchnorm_ex(g, in, 0.1f, 1e-3f); }

ADVNN_DEF int advnn_standardize(advnn_graph *g, int in) {
    int id = advnn__same_shape_node(g, ADVNN__STANDARDIZE, in, "advnn_standardize"), k, spec[2][3];
    if (id < 0) return -1;
    for (k = 0; k < 2; k++) { spec[k][0] = 1; spec[k][1] = g->nodes[id].cols; spec[k][2] = 0; }   /* offset, scale: not trained */
    return advnn__attach_params(g, id, -1, 2, spec);
}

ADVNN_DEF int advnn_concat(advnn_graph *g, int n, const int *ins) {
    int id, i, j, shape[3], total = 0;
    advnn__node *a;
    if (g && (n < 1 || n > ADVNN__MAX_IN || !ins)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_concat: %d inputs (1..%d)", n, ADVNN__MAX_IN);
    id = advnn__new_node(g, ADVNN__CONCAT, n, ins, "advnn_concat");
    if (id < 0) return -1;
    a = &g->nodes[ins[0]];
    for (i = 0; i < n; i++) {
        advnn__node *b = &g->nodes[ins[i]];
        int ok = b->ndim == a->ndim;
        for (j = 0; ok && j + 1 < a->ndim; j++) ok = b->shape[j] == a->shape[j];
        if (!ok) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_concat: input %d (node %d) has a different shape than input 0 on the leading axes", i, ins[i]); }
        total += b->cols;
    }
    if ((int64_t)a->rows * total > ADVNN__MAX_FEATURES) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_concat: output too large"); }
    memcpy(shape, a->shape, sizeof shape);
    shape[a->ndim - 1] = total;
    advnn__set_shape(&g->nodes[id], a->ndim, shape);
    return id;
}

/* Spatial view of a node for convolution/pooling: (T, C) is H = 1, W = T; (H, W, C) as is. */
static int advnn__spatial(const advnn__node *x, int *H, int *W, int *C) {
    *H = *W = *C = 0;
    if (x->ndim == 2) { *H = 1; *W = x->shape[0]; *C = x->shape[1]; return 1; }
    if (x->ndim == 3) { *H = x->shape[0]; *W = x->shape[1]; *C = x->shape[2]; return 2; }
    return 0;
}

/* Output length and leading pad of one axis (TensorFlow/Keras rules: 'same' puts the odd pad after). */
static int advnn__conv_axis(int in, int k, int s, int pad, int *out, int *before) {
    if (k < 1 || k > 1024 || s < 1 || s > 1024) return 0;   /* also keeps the arithmetic in range */
    if (pad == ADVNN_PAD_SAME) {
        int o = (in + s - 1) / s, total = (o - 1) * s + k - in;
        *out = o; *before = total > 0 ? total / 2 : 0;
        return 1;
    }
    if (in < k) return 0;
    *out = (in - k) / s + 1; *before = 0;
    return 1;
}

/* conv node config: ip = {filters, act, KH, KW, SH, SW, pad}, plus the derived pads in ip[7] (PT * 65536 + PL) */
static int advnn__conv_node(advnn_graph *g, int in, int dims, int filters, int kh, int kw, int sh, int sw, int pad, int act, int share) {
    const char *what = dims == 1 ? "advnn_conv1d" : "advnn_conv2d";
    int id, H, W, C, Ho, Wo, pt, pl, shape[3], spec[2][3];
    advnn__node *n, *x;
    id = advnn__new_node(g, ADVNN__CONV, 1, &in, what);
    if (id < 0) return -1;
    x = &g->nodes[in]; n = &g->nodes[id];
    if (advnn__spatial(x, &H, &W, &C) != dims) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: input must have per-sample shape %s, it has %d dimensions", what, dims == 1 ? "(T, C)" : "(H, W, C)", x->ndim);
    }
    if (filters < 1 || filters > ADVNN__MAX_FEATURES || kh < 1 || kw < 1 || sh < 1 || sw < 1 || kh > 64 || kw > 64 || sh > 1024 || sw > 1024 ||
        (pad != ADVNN_PAD_VALID && pad != ADVNN_PAD_SAME) || !advnn__valid_act(act) || act == ADVNN_ACT_PRELU) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_ARG, "%s: filters %d, kernel %dx%d, strides %dx%d, padding %d, activation %d: out of range", what, filters, kh, kw, sh, sw, pad, act);
    }
    if (!advnn__conv_axis(H, kh, sh, pad, &Ho, &pt) || !advnn__conv_axis(W, kw, sw, pad, &Wo, &pl)) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: kernel %dx%d is larger than the input %dx%d with 'valid' padding", what, kh, kw, H, W);
    }
    if ((int64_t)Ho * Wo * filters > ADVNN__MAX_FEATURES || (int64_t)kh * kw * C > ADVNN__MAX_FEATURES) {
        g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: output too large", what);
    }
    if (dims == 1) { shape[0] = Wo; shape[1] = filters; advnn__set_shape(n, 2, shape); }
    else { shape[0] = Ho; shape[1] = Wo; shape[2] = filters; advnn__set_shape(n, 3, shape); }
    n->ip[0] = filters; n->ip[1] = act; n->ip[2] = kh; n->ip[3] = kw; n->ip[4] = sh; n->ip[5] = sw; n->ip[6] = pad;
    n->ip[7] = pt * 65536 + pl;
    n->fp[0] = advnn__default_act_param(act);
    spec[0][0] = kh * kw * C; spec[0][1] = filters; spec[0][2] = 1;
    spec[1][0] = 1; spec[1][1] = filters; spec[1][2] = 1;
    return advnn__attach_params(g, id, share, 2, spec);
}
ADVNN_DEF int advnn_conv1d(advnn_graph *g, int in, int filters, int kernel, int stride, advnn_padding pad, advnn_act act) {
    return advnn__conv_node(g, in, 1, filters, 1, kernel, 1, stride, (int)pad, (int)act, -1);
}
ADVNN_DEF int advnn_conv2d(advnn_graph *g, int in, int filters, int kh, int kw, int sh, int sw, advnn_padding pad, advnn_act act) {
    return advnn__conv_node(g, in, 2, filters, kh, kw, sh, sw, (int)pad, (int)act, -1);
}

/* pool node config: ip = {avg?, KH, KW, SH, SW} */
static int advnn__pool_node(advnn_graph *g, int in, int dims, int avg, int kh, int kw, int sh, int sw) {
    const char *what = avg ? "advnn_avgpool" : "advnn_maxpool";
    int id, H, W, C, Ho, Wo, pt, shape[3];
    advnn__node *n, *x;
    id = advnn__new_node(g, ADVNN__POOL, 1, &in, what);
    if (id < 0) return -1;
    x = &g->nodes[in]; n = &g->nodes[id];
    if (sh == 0) sh = kh;
    if (sw == 0) sw = kw;
    if (advnn__spatial(x, &H, &W, &C) != dims || kh < 1 || kw < 1 || sh < 1 || sw < 1 ||
        !advnn__conv_axis(H, kh, sh, ADVNN_PAD_VALID, &Ho, &pt) || !advnn__conv_axis(W, kw, sw, ADVNN_PAD_VALID, &Wo, &pt)) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s%dd: window %dx%d, strides %dx%d do not fit the input (%d-d, %dx%d)", what, dims, kh, kw, sh, sw, x->ndim, H, W);
    }
    if (dims == 1) { shape[0] = Wo; shape[1] = C; advnn__set_shape(n, 2, shape); }
    else { shape[0] = Ho; shape[1] = Wo; shape[2] = C; advnn__set_shape(n, 3, shape); }
    n->ip[0] = avg; n->ip[1] = kh; n->ip[2] = kw; n->ip[3] = sh; n->ip[4] = sw;
    return id;
}
ADVNN_DEF int advnn_maxpool1d(advnn_graph *g, int in, int pool, int stride) { return advnn__pool_node(g, in, 1, 0, 1, pool, 1, stride); }
ADVNN_DEF int advnn_avgpool1d(advnn_graph *g, int in, int pool, int stride) { return advnn__pool_node(g, in, 1, 1, 1, pool, 1, stride); }
ADVNN_DEF int advnn_maxpool2d(advnn_graph *g, int in, int ph, int pw, int sh, int sw) { return advnn__pool_node(g, in, 2, 0, ph, pw, sh, sw); }
ADVNN_DEF int advnn_avgpool2d(advnn_graph *g, int in, int ph, int pw, int sh, int sw) { return advnn__pool_node(g, in, 2, 1, ph, pw, sh, sw); }

ADVNN_DEF int advnn_upsample2d(advnn_graph *g, int in, int fh, int fw) {
    int id, H, W, C, shape[3];
    id = advnn__new_node(g, ADVNN__UPSAMPLE, 1, &in, "advnn_upsample2d");
    if (id < 0) return -1;
    if (advnn__spatial(&g->nodes[in], &H, &W, &C) != 2 || fh < 1 || fw < 1 || fh > 64 || fw > 64 ||
        (int64_t)H * fh * W * fw * C > ADVNN__MAX_FEATURES) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_upsample2d: factors %dx%d on a %d-d input (needs (H, W, C))", fh, fw, g->nodes[in].ndim);
    }
    shape[0] = H * fh; shape[1] = W * fw; shape[2] = C;
    advnn__set_shape(&g->nodes[id], 3, shape);
    g->nodes[id].ip[0] = fh; g->nodes[id].ip[1] = fw;
    return id;
}

ADVNN_DEF int advnn_reshape(advnn_graph *g, int in, int ndim, const int *shape) {
    int id, i;
    int64_t size = 1;
    if (g && (ndim < 1 || ndim > 3 || !shape)) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_reshape: ndim %d (1..3)", ndim);
    for (i = 0; g && i < ndim; i++) {
        if (shape[i] < 1) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_reshape: dimension %d is %d", i, shape[i]);
        size *= shape[i];
        if (size > ADVNN__MAX_FEATURES) return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_reshape: too large");
    }
    id = advnn__new_node(g, ADVNN__RESHAPE, 1, &in, "advnn_reshape");
    if (id < 0) return -1;
    if (size != g->nodes[in].size) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_reshape: %lld values per sample, the input has %d", (long long)size, g->nodes[in].size);
    }
    advnn__set_shape(&g->nodes[id], ndim, shape);
    return id;
}
ADVNN_DEF int advnn_flatten(advnn_graph *g, int in) {
    int n;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_flatten: graph is NULL"), -1;
    if (in < 0 || in >= g->n_nodes) return advnn_reshape(g, in, 1, &in);  /* reports the bad id */
    n = g->nodes[in].size;
    return advnn_reshape(g, in, 1, &n);
}

/* lstm config: ip = {units, return_sequences}; optional second input: the mask (T values per sample) */
static int advnn__lstm_node(advnn_graph *g, int in, int units, int return_sequences, int mask, int share) {
    int ins[2], id, T, F, shape[2], spec[3][3];
    advnn__node *x;
    ins[0] = in; ins[1] = mask;
    id = advnn__new_node(g, ADVNN__LSTM, mask >= 0 ? 2 : 1, ins, "advnn_lstm");
    if (id < 0) return -1;
    x = &g->nodes[in];
    if (x->ndim != 2 || units < 1 || units > 65536) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_lstm: input must have per-sample shape (T, F) (has %d dimensions), units %d", x->ndim, units);
    }
    T = x->shape[0]; F = x->shape[1];
    if (mask >= 0 && g->nodes[mask].size != T) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_lstm: the mask has %d values per sample, the sequence %d steps", g->nodes[mask].size, T);
    }
    if ((int64_t)T * 4 * units > ADVNN__MAX_FEATURES) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_lstm: too large"); }
    if (return_sequences) { shape[0] = T; shape[1] = units; advnn__set_shape(&g->nodes[id], 2, shape); }
    else advnn__set_shape(&g->nodes[id], 1, &units);
    g->nodes[id].ip[0] = units; g->nodes[id].ip[1] = return_sequences ? 1 : 0;
    /* W (F x 4H), U (H x 4H), b (4H); gate order i, f, c, o as in Keras */
    spec[0][0] = F; spec[0][1] = 4 * units; spec[0][2] = 1;
    spec[1][0] = units; spec[1][1] = 4 * units; spec[1][2] = 1;
    spec[2][0] = 1; spec[2][1] = 4 * units; spec[2][2] = 1;
    return advnn__attach_params(g, id, share, 3, spec);
}
ADVNN_DEF int advnn_lstm(advnn_graph *g, int in, int units, int return_sequences, int mask) {
    return advnn__lstm_node(g, in, units, return_sequences, mask, -1);
}

ADVNN_DEF int advnn_mask_nonzero(advnn_graph *g, int in) {
    int id = advnn__new_node(g, ADVNN__MASK, 1, &in, "advnn_mask_nonzero");
    if (id < 0) return -1;
    if (g->nodes[in].ndim != 2) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_mask_nonzero: input must be (T, F)"); }
    advnn__set_shape(&g->nodes[id], 1, &g->nodes[in].shape[0]);
    return id;
}

ADVNN_DEF int advnn_softmax(advnn_graph *g, int in) {
    int id = advnn__same_shape_node(g, ADVNN__SOFTMAX, in, "advnn_softmax");
    if (id >= 0 && g->nodes[id].cols < 2) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_softmax: the last axis has 1 value"); }
    return id;
}

ADVNN_DEF int advnn_sample_mse(advnn_graph *g, int pred, int target, int take_log) {
    int ins[2], id, one = 1;
    ins[0] = pred; ins[1] = target;
    id = advnn__new_node(g, ADVNN__SAMPLE_MSE, 2, ins, "advnn_sample_mse");
    if (id < 0) return -1;
    if (g->nodes[pred].size != g->nodes[target].size) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_sample_mse: prediction has %d values per sample, target %d", g->nodes[pred].size, g->nodes[target].size);
    }
    advnn__set_shape(&g->nodes[id], 1, &one);
    g->nodes[id].ip[0] = take_log ? 1 : 0;
    return id;
}

ADVNN_DEF int advnn_grad_reverse(advnn_graph *g, int in, float lambda) {
    int id;
    if (g && !isfinite(lambda)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_grad_reverse: lambda is not finite");
    id = advnn__same_shape_node(g, ADVNN__GRAD_REVERSE, in, "advnn_grad_reverse");
    if (id >= 0) g->nodes[id].fp[0] = lambda;
    return id;
}
ADVNN_DEF advnn_status advnn_set_grad_reverse(advnn_graph *g, int node, float lambda) {
    if (!g || node < 0 || node >= g->n_nodes || g->nodes[node].kind != ADVNN__GRAD_REVERSE)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_set_grad_reverse: node %d is not a gradient-reversal node", node);
    if (!isfinite(lambda)) return advnn__fail(ADVNN_ERR_ARG, "advnn_set_grad_reverse: lambda is not finite");
    g->nodes[node].fp[0] = lambda;
    return ADVNN_OK;
}

ADVNN_DEF int advnn_shared(advnn_graph *g, int like, int in, int mask) {
    const advnn__node *l;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_shared: graph is NULL"), -1;
    if (in < 0 && g->err != ADVNN_OK) return -1;
    if (like < 0 || like >= g->n_nodes) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_shared: node %d does not exist", like);
    l = &g->nodes[like];
    if (l->share >= 0) like = l->share, l = &g->nodes[like];   /* share with the owner */
    if (mask >= 0 && l->kind != ADVNN__LSTM) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_shared: a mask only applies to an LSTM");
    switch (l->kind) {
    case ADVNN__DENSE: case ADVNN__CONV: {
        int id = l->kind == ADVNN__DENSE ? advnn__dense_node(g, in, l->ip[0], l->ip[1], l->ip[2], like)
               : advnn__conv_node(g, in, g->nodes[l->in[0]].ndim - 1, l->ip[0], l->ip[2], l->ip[3], l->ip[4], l->ip[5], l->ip[6], l->ip[1], like);
        if (id >= 0) g->nodes[id].fp[0] = g->nodes[like].fp[0];  /* activation parameter */
        return id;
    }
    case ADVNN__LSTM: return advnn__lstm_node(g, in, l->ip[0], l->ip[1], mask, like);
    case ADVNN__PRELU: return advnn__prelu_node(g, in, like);
    case ADVNN__BATCHNORM: return advnn__bn_node(g, in, l->fp[0], l->fp[1], like);
    default: return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_shared: node %d has no weights to share", like);
    }
}

static int advnn__loss(advnn_graph *g, int kind, int pred, int target, int weight, const char *what) {
    int ins[3], n = weight >= 0 ? 3 : 2, id, one = 1;
    advnn__node *p, *t;
    ins[0] = pred; ins[1] = target; ins[2] = weight;
    if (g && weight < -1) return advnn__gfail(g, ADVNN_ERR_ARG, "%s: weight node %d (use -1 for unit weights)", what, weight);
    id = advnn__new_node(g, kind, n, ins, what);
    if (id < 0) return -1;
    p = &g->nodes[pred]; t = &g->nodes[target];
    if (kind == ADVNN__LOSS_BCE && t->size != p->size) {
        g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: target has %d values per sample, logits %d", what, t->size, p->size);
    }
    if (kind == ADVNN__LOSS_MSE && t->size != p->size) {
        g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: target has %d values per sample, prediction %d", what, t->size, p->size);
    }
    if (kind == ADVNN__LOSS_CCE && !(t->size == p->size || t->size * p->cols == p->size)) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: target must be class indices (%d per sample) or probabilities (%d per sample), has %d",
                            what, p->rows, p->size, t->size);
    }
    if (kind == ADVNN__LOSS_CCE && p->cols < 2) { g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: needs at least 2 classes on the last axis", what); }
    if (n == 3 && g->nodes[weight].size != 1) {
        g->n_nodes--; return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: weight input has %d values per sample (must be 1)", what, g->nodes[weight].size);
    }
    advnn__set_shape(&g->nodes[id], 1, &one);
    g->nodes[id].fp[0] = 1.0f;  /* coefficient in the objective */
    return id;
}
ADVNN_DEF int advnn_loss_bce_logits(advnn_graph *g, int logits, int target, int weight) { return advnn__loss(g, ADVNN__LOSS_BCE, logits, target, weight, "advnn_loss_bce_logits"); }
ADVNN_DEF int advnn_loss_cce_logits(advnn_graph *g, int logits, int target, int weight) { return advnn__loss(g, ADVNN__LOSS_CCE, logits, target, weight, "advnn_loss_cce_logits"); }
ADVNN_DEF int advnn_loss_mse(advnn_graph *g, int pred, int target, int weight) { return advnn__loss(g, ADVNN__LOSS_MSE, pred, target, weight, "advnn_loss_mse"); }

ADVNN_DEF int advnn_loss_mdn(advnn_graph *g, int logits, int means_raw, int widths_raw, int target, int weight,
                             int truncate, float sigma_floor) {
    int ins[5], id, one = 1, K, packed = means_raw == -1 && widths_raw == -1;
    ins[0] = logits; ins[1] = means_raw; ins[2] = widths_raw; ins[3] = target; ins[4] = weight;
    if (packed) { ins[1] = target; ins[2] = weight; }
    if (g && weight < -1) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_loss_mdn: weight node %d (use -1 for unit weights)", weight);
    if (g && !(sigma_floor >= 0.0f && sigma_floor < 1.0f)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_loss_mdn: sigma_floor %g outside [0, 1)", (double)sigma_floor);
    id = advnn__new_node(g, ADVNN__LOSS_MDN, (packed ? 2 : 4) + (weight >= 0), ins, "advnn_loss_mdn");
    if (id < 0) return -1;
    if (packed) {
        K = g->nodes[logits].size / 3;
        if (K < 1 || K > 256 || g->nodes[logits].size != 3 * K || g->nodes[target].size != 1 ||
            (weight >= 0 && g->nodes[weight].size != 1)) {
            g->n_nodes--;
            return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_loss_mdn: packed head has %d values per sample (must be 3K, K in 1..256), target %d, weight %d (must be 1)",
                                g->nodes[logits].size, g->nodes[target].size, weight >= 0 ? g->nodes[weight].size : 1);
        }
        advnn__set_shape(&g->nodes[id], 1, &one);
        g->nodes[id].fp[0] = 1.0f; g->nodes[id].fp[1] = sigma_floor; g->nodes[id].ip[0] = truncate ? 1 : 0; g->nodes[id].ip[1] = 1;
        return id;
    }
    if (means_raw < 0 || widths_raw < 0) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_loss_mdn: means node %d, widths node %d (both -1 for a packed head, else both nodes)", means_raw, widths_raw);
    }
    K = g->nodes[logits].size;
    if (K < 1 || K > 256 || g->nodes[means_raw].size != K || g->nodes[widths_raw].size != K || g->nodes[target].size != 1 ||
        (weight >= 0 && g->nodes[weight].size != 1)) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "advnn_loss_mdn: coefficients/means/widths have %d/%d/%d values per sample (must be equal), target %d, weight %d (must be 1)",
                            K, g->nodes[means_raw].size, g->nodes[widths_raw].size, g->nodes[target].size, weight >= 0 ? g->nodes[weight].size : 1);
    }
    advnn__set_shape(&g->nodes[id], 1, &one);
    g->nodes[id].fp[0] = 1.0f; g->nodes[id].fp[1] = sigma_floor; g->nodes[id].ip[0] = truncate ? 1 : 0;
    return id;
}

ADVNN_DEF advnn_status advnn_loss_scale(advnn_graph *g, int loss, float coef) {
    if (!g || loss < 0 || loss >= g->n_nodes || !ADVNN__IS_LOSS(g->nodes[loss].kind))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_loss_scale: node %d is not a loss", loss);
    if (!isfinite(coef)) return advnn__fail(ADVNN_ERR_ARG, "advnn_loss_scale: coefficient is not finite");
    g->nodes[loss].fp[0] = coef;
    return ADVNN_OK;
}

ADVNN_DEF int advnn_name(advnn_graph *g, int node, const char *name) {
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_name: graph is NULL"), -1;
    if (node < 0 && g->err != ADVNN_OK) return -1;
    if (node < 0 || node >= g->n_nodes) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_name: node %d does not exist", node);
    if (!advnn__valid_name(name)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_name: name must have 1..%d characters", ADVNN__NAME_MAX - 1);
    if (g->nodes[node].kind == ADVNN__INPUT) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_name: inputs are named when created");
    if (advnn_find(g, name) >= 0 && advnn_find(g, name) != node) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_name: name '%s' is already used", name);
    if (strcmp(g->nodes[node].name, name) == 0) return node;
    snprintf(g->nodes[node].name, ADVNN__NAME_MAX, "%s", name);
    if (!advnn__name_index(g, node)) return advnn__gfail(g, ADVNN_ERR_NOMEM, "advnn_name: out of memory");
    return node;
}


ADVNN_DEF int advnn_node_count(const advnn_graph *g) { return g ? g->n_nodes : 0; }
ADVNN_DEF int advnn_node_shape(const advnn_graph *g, int node, int *shape) {
    int i;
    if (!g || node < 0 || node >= g->n_nodes) return -1;
    if (shape) for (i = 0; i < g->nodes[node].ndim; i++) shape[i] = g->nodes[node].shape[i];
    return g->nodes[node].ndim;
}
ADVNN_DEF int advnn_input_count(const advnn_graph *g) { return g ? g->n_inputs : 0; }
ADVNN_DEF int advnn_input_node(const advnn_graph *g, int i) { return g && i >= 0 && i < g->n_inputs ? g->inputs[i] : -1; }
ADVNN_DEF const char *advnn_node_name(const advnn_graph *g, int node) {
    return g && node >= 0 && node < g->n_nodes ? g->nodes[node].name : "";
}
ADVNN_DEF int64_t advnn_param_count(const advnn_graph *g, const char *group) {
    int64_t s = 0;
    int i, gi = -1;
    if (!g) return 0;
    if (group && (gi = advnn__find_group(g, group)) < 0) return 0;
    for (i = 0; i < g->n_par; i++)
        if (g->par[i].trainable && (gi < 0 || g->par[i].group == gi)) s += g->par[i].size;
    return s;
}
ADVNN_DEF double advnn_flops(const advnn_graph *g, int node, const char *group) {
    unsigned char *dep;
    double f = 0;
    int i, k, gi = -1;
    if (!g || node < 0 || node >= g->n_nodes) return -1;
    if (group && (gi = advnn__find_group(g, group)) < 0) return -1;
    if (!(dep = (unsigned char *)advnn__zalloc((size_t)g->n_nodes))) return -1;
    dep[node] = 1;
    for (i = node; i >= 0; i--) {   /* nodes only read earlier nodes */
        const advnn__node *n = &g->nodes[i];
        const advnn__param *w;
        if (!dep[i]) continue;
        for (k = 0; k < n->n_in; k++) if (n->in[k] >= 0) dep[n->in[k]] = 1;
        if (n->kind != ADVNN__DENSE && n->kind != ADVNN__CONV && n->kind != ADVNN__LSTM) continue;
        if (gi >= 0 && n->group != gi) continue;
        w = &g->par[n->param0];   /* the kernel (a shared layer's are its owner's) */
        if (n->kind == ADVNN__DENSE) f += (double)n->rows * w->rows * w->cols;
        else if (n->kind == ADVNN__CONV) f += (double)(n->size / n->ip[0]) * w->rows * w->cols;
        else f += (double)g->nodes[n->in[0]].shape[0] * ((double)w->rows * w->cols + (double)w[1].rows * w[1].cols);
    }
    advnn__free(dep);
    return 2 * f;
}
ADVNN_DEF float *advnn_params(advnn_graph *g, int64_t *count) {
    if (count) *count = g ? g->n_params : 0;
    if (!g) { advnn__fail(ADVNN_ERR_ARG, "advnn_params: graph is NULL"); return NULL; }
    if (!g->finalized) { advnn__fail(ADVNN_ERR_STATE, "advnn_params: graph not finalized (it has no weights yet)"); return NULL; }
    g->wgen++;   /* the caller may write through the pointer: workspaces recompute their cached values */
    return g->params;
}
ADVNN_DEF void advnn_params_changed(advnn_graph *g) { if (g) g->wgen++; }

/* The first parameter that a model file must not hold: non-finite, or a negative BatchNorm variance. */
static advnn_status advnn__check_params(const advnn_graph *g, const char *what) {
    int i;
    int64_t k;
    for (i = 0; i < g->n_par; i++) {
        const advnn__param *p = &g->par[i];
        const advnn__node *n = &g->nodes[p->node];
        int is_var = n->kind == ADVNN__BATCHNORM && i == n->param0 + 3;
        for (k = 0; k < p->size; k++) {
            float f = g->params[p->off + k];
            if (!isfinite(f))
                return advnn__fail(ADVNN_ERR_NAN, "%s: parameter block %d (node %d '%s') holds %g at %lld", what, i, p->node, n->name,
                                   (double)f, (long long)k);
            if (is_var && f < 0)
                return advnn__fail(ADVNN_ERR_FORMAT, "%s: BatchNorm node %d '%s' has running variance %g < 0 in channel %lld", what,
                                   p->node, n->name, (double)f, (long long)k);
        }
    }
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_standardize_fit(advnn_graph *g, int node, const advnn_tensor *x, const float *weight) {
    const advnn__node *n;
    int64_t N, r, R;
    int c, C;
    double *acc, tw = 0;
    float *off, *sc;
    if (!g || !x) return advnn__fail(ADVNN_ERR_ARG, "advnn_standardize_fit: NULL argument");
    if (!g->finalized) return advnn__fail(ADVNN_ERR_STATE, "advnn_standardize_fit: graph not finalized");
    if (node < 0 || node >= g->n_nodes || g->nodes[node].kind != ADVNN__STANDARDIZE)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_standardize_fit: node %d is not a standardize node", node);
    n = &g->nodes[node];
    N = x->ndim >= 1 ? x->shape[0] : 0;
    if (N < 1 || x->size != N * n->size)
        return advnn__fail(ADVNN_ERR_SHAPE, "advnn_standardize_fit: the data has %lld values in %lld rows, the node takes %d per row",
                           (long long)x->size, (long long)N, n->size);
    C = n->cols; R = N * n->rows;
    if (!(acc = (double *)ADVNN_MALLOC(3 * (size_t)C * sizeof(double)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_standardize_fit: out of memory");
    for (c = 0; c < 3 * C; c++) acc[c] = 0;
    for (r = 0; r < R; r++) {   /* weights, then means; the variance in a second pass (no cancellation) */
        double w = weight ? weight[r / n->rows] : 1.0;
        if (!isfinite(w) || w < 0) { ADVNN_FREE(acc); return advnn__fail(ADVNN_ERR_ARG, "advnn_standardize_fit: weight %g of row %lld", w, (long long)(r / n->rows)); }
        tw += w;
        for (c = 0; c < C; c++) {
            float v = x->data[r * C + c];
            if (!isfinite(v)) { ADVNN_FREE(acc); return advnn__fail(ADVNN_ERR_NAN, "advnn_standardize_fit: value %g in row %lld", (double)v, (long long)(r / n->rows)); }
            acc[c] += w; acc[C + c] += w * v;
        }
    }
    if (!(tw > 0)) { ADVNN_FREE(acc); return advnn__fail(ADVNN_ERR_ARG, "advnn_standardize_fit: total weight %g is not positive", tw); }
    for (c = 0; c < C; c++) acc[C + c] /= acc[c];
    for (r = 0; r < R; r++) {
        double w = weight ? weight[r / n->rows] : 1.0;
        for (c = 0; c < C; c++) { double d = x->data[r * C + c] - acc[C + c]; acc[2 * C + c] += w * d * d; }
    }
    off = g->params + g->par[n->param0].off; sc = g->params + g->par[n->param0 + 1].off;
    g->wgen++;
    for (c = 0; c < C; c++) {
        double sd = sqrt(acc[2 * C + c] / acc[c]);
        off[c] = (float)acc[C + c];
        sc[c] = sd > 0 && isfinite(1.0 / sd) ? (float)(1.0 / sd) : 1.0f;
    }
    ADVNN_FREE(acc);
    return ADVNN_OK;
}

/* One power iteration: v = W^T u / |W^T u|, u = W v / |W v|. */
static void advnn__sn_iterate(advnn_graph *g, const advnn__node *n) {
    const float *W = g->params + g->par[n->param0].off;
    float *u = g->params + g->par[n->param0 + 2].off, *v = g->params + g->par[n->param0 + 3].off;
    int K = g->par[n->param0].rows, U = g->par[n->param0].cols, i, j;
    double s = 0;
    g->wgen++;
    for (j = 0; j < U; j++) v[j] = 0;
    for (i = 0; i < K; i++) for (j = 0; j < U; j++) v[j] += u[i] * W[(size_t)i * U + j];
    for (j = 0; j < U; j++) s += (double)v[j] * v[j];
    s = 1.0 / (sqrt(s) + 1e-12);
    for (j = 0; j < U; j++) v[j] = (float)(v[j] * s);
    s = 0;
    for (i = 0; i < K; i++) {
        double r = 0;
        for (j = 0; j < U; j++) r += (double)W[(size_t)i * U + j] * v[j];
        u[i] = (float)r; s += r * r;
    }
    s = 1.0 / (sqrt(s) + 1e-12);
    for (i = 0; i < K; i++) u[i] = (float)(u[i] * s);
}

/* Initial values: Glorot uniform, He uniform before ReLU-like activations, zero biases, BN gamma 1. */
static void advnn__init_params(advnn_graph *g, uint64_t seed) {
    advnn__rng r;
    int i;
    int64_t k;   /* blocks can pass 2^31 values */
    advnn__rng_seed(&r, seed);
    for (i = 0; i < g->n_nodes; i++) {
        advnn__node *n = &g->nodes[i];
        if (n->share >= 0 || n->n_param == 0) continue;
        if (n->kind == ADVNN__DENSE || n->kind == ADVNN__CONV) {
            advnn__param *w = &g->par[n->param0];
            int act = n->ip[1];
            int relu_like = act == ADVNN_ACT_RELU || act == ADVNN_ACT_LEAKY_RELU || act == ADVNN_ACT_ELU;
            /* fans as Keras: a conv kernel's fan-out is window * filters */
            double fan_out = n->kind == ADVNN__CONV ? (double)n->ip[2] * n->ip[3] * w->cols : (double)w->cols;
            double lim = relu_like ? sqrt(6.0 / w->rows) : sqrt(6.0 / (w->rows + fan_out));
            for (k = 0; k < w->size; k++) g->params[w->off + k] = (float)((2.0 * advnn__rng_uniform(&r) - 1.0) * lim);
            if (n->kind == ADVNN__DENSE && n->ip[2]) {   /* random u, then enough iterations for sigma to settle */
                advnn__param *u = &g->par[n->param0 + 2];
                for (k = 0; k < u->size; k++) g->params[u->off + k] = (float)(2.0 * advnn__rng_uniform(&r) - 1.0);
                for (k = 0; k < 30; k++) advnn__sn_iterate(g, n);
            }
        } else if (n->kind == ADVNN__LSTM) {
            int b;
            for (b = 0; b < 2; b++) {   /* W and U: Glorot uniform (Keras uses orthogonal for U) */
                advnn__param *w = &g->par[n->param0 + b];
                double lim = sqrt(6.0 / (w->rows + w->cols));
                for (k = 0; k < w->size; k++) g->params[w->off + k] = (float)((2.0 * advnn__rng_uniform(&r) - 1.0) * lim);
            }
            for (k = n->ip[0]; k < 2 * n->ip[0]; k++) g->params[g->par[n->param0 + 2].off + k] = 1.0f;  /* forget gate */
        } else if (n->kind == ADVNN__PRELU) {
            advnn__param *a = &g->par[n->param0];
            for (k = 0; k < a->size; k++) g->params[a->off + k] = 0.25f;
        } else if (n->kind == ADVNN__STANDARDIZE) {
            advnn__param *sc = &g->par[n->param0 + 1];
            for (k = 0; k < sc->size; k++) g->params[sc->off + k] = 1.0f;
        } else if (n->kind == ADVNN__BATCHNORM) {
            advnn__param *gam = &g->par[n->param0], *var = &g->par[n->param0 + 3];
            for (k = 0; k < gam->size; k++) { g->params[gam->off + k] = 1.0f; g->params[var->off + k] = 1.0f; }
        }
    }
}

/* Lays out and allocates the parameters; init = 0 leaves them zero (a model load overwrites them all,
 * so random initialisation, and spectral normalisation's power iterations, would be wasted work). */
static advnn_status advnn__finalize(advnn_graph *g, uint64_t seed, int init) {
    int i;
    int64_t off = 0;
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "advnn_graph_finalize: graph is NULL");
    if (g->err != ADVNN_OK) return advnn__fail(g->err, "%s", g->errmsg);
    if (g->finalized) return advnn__fail(ADVNN_ERR_STATE, "advnn_graph_finalize: already finalized");
    if (g->n_nodes == 0) return advnn__fail(ADVNN_ERR_STATE, "advnn_graph_finalize: the graph is empty");
    for (i = 0; i < g->n_par; i++) { g->par[i].off = off; off += (int64_t)advnn__round((size_t)g->par[i].size); }
    g->params = (float *)advnn__zalloc((size_t)(off ? off : 1) * sizeof(float));
    if (!g->params) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_graph_finalize: cannot allocate %lld parameters", (long long)off);
    g->n_params = off;
    if (init) advnn__init_params(g, seed);
    g->finalized = 1;
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_graph_finalize(advnn_graph *g, uint64_t seed) { return advnn__finalize(g, seed, 1); }

/* ---------------------------------------------------------------- decorrelation losses: DisCo
 * Weighted distance covariance without the N x N matrices (Huo & Szekely 2016, weighted). With
 * p_i = w_i / W, a_ij = |x_i - x_j|, alpha_i = sum_j p_j a_ij, abar = sum_i p_i alpha_i (b, beta, bbar
 * for y), the double-centred sum is
 *     dCov^2(x, y) = S - 2 sum_i p_i alpha_i beta_i + abar bbar,   S = sum_ij p_i p_j a_ij b_ij.
 * alpha and beta come from prefix sums in sorted order; S from one pass over the rows in x order that
 * sums p, p x, p y, p x y of the earlier rows with smaller / larger y (for them a_kj = x_k - x_j, and
 * b_kj has the sign of y_k - y_j; advnn__disco_pass). The gradient w.r.t. y_k of dCov^2(x, y) is
 * 2 p_k sum_j p_j A_kj sign(y_k - y_j) (A double-centred), which splits into the same prefix sums and
 * the same Fenwick pass; that of dCov^2(y, y) needs prefix sums only. Everything is in double. */

/* Scratch of advnn__disco_core for n rows, in bytes (8-byte aligned pieces). */
static size_t advnn__disco_scratch(int64_t n) { return (size_t)(n + 1) * (12 * sizeof(double) + 2 * 40 + 8 * sizeof(int32_t)) + 64; }

/* Stable LSD radix sort of the rows 0..n-1 by float keys v (3 passes of 11 bits); -0 sorts as +0.
 * out gets the order; key/tk/ti are n-entry scratch. */
static void advnn__radix_order(int n, const double *v, int32_t *out, uint32_t *key, uint32_t *tk, int32_t *ti) {
    int i, pass;
    uint32_t cnt[2048];
    for (i = 0; i < n; i++) {
        float f = (float)v[i] + 0.0f;   /* v holds floats converted to double: exact */
        uint32_t u;
        memcpy(&u, &f, 4);
        key[i] = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        out[i] = i;
    }
    for (pass = 0; pass < 3; pass++) {
        int sh = 11 * pass;
        uint32_t sum = 0;
        memset(cnt, 0, sizeof cnt);
        for (i = 0; i < n; i++) cnt[(key[i] >> sh) & 2047u]++;
        if (cnt[(key[0] >> sh) & 2047u] == (uint32_t)n) continue;   /* one bucket: nothing moves */
        for (i = 0; i < 2048; i++) { uint32_t c = cnt[i]; cnt[i] = sum; sum += c; }
        for (i = 0; i < n; i++) { uint32_t b = (key[i] >> sh) & 2047u; tk[cnt[b]] = key[i]; ti[cnt[b]++] = out[i]; }
        memcpy(key, tk, (size_t)n * sizeof *key);
        memcpy(out, ti, (size_t)n * sizeof *out);
    }
}

/* Walks v in sorted order o (groups of equal values): for each row i, lt/gt = sums of p over rows with
 * smaller/larger v, and the same for the extra quantities q[0..nq) (sums of p_j q_j), written as
 * differences d[k][i] = sum_{v_j < v_i} p_j q_j - sum_{v_j > v_i} p_j q_j (q = NULL means q_j = 1).
 * rank (may be NULL) gets 1-based dense ranks. */
static void advnn__disco_walk(int n, const double *v, const double *p, const int32_t *o, int nq, const double *const *q,
                              double *const *d, int32_t *rank) {
    double below[4], tot[4], eq[4];
    int a = 0, b, k, r = 0;
    for (k = 0; k < nq; k++) { int i; tot[k] = 0; below[k] = 0; for (i = 0; i < n; i++) tot[k] += p[i] * (q[k] ? q[k][i] : 1.0); }
    while (a < n) {
        b = a;
        while (b < n && v[o[b]] == v[o[a]]) b++;
        r++;
        for (k = 0; k < nq; k++) { int t; eq[k] = 0; for (t = a; t < b; t++) eq[k] += p[o[t]] * (q[k] ? q[k][o[t]] : 1.0); }
        for (; a < b; a++) {
            for (k = 0; k < nq; k++) d[k][o[a]] = below[k] - (tot[k] - below[k] - eq[k]);
            if (rank) rank[o[a]] = r;
        }
        for (k = 0; k < nq; k++) below[k] += eq[k];
    }
}

/* The pair pass: rows in u order; returns S = sum_ij p_i p_j |u_i-u_j| |v_i-v_j| and tb[k] = sum over rows j
 * before k of p_j (u_k - u_j) sign(v_k - v_j). A bottom-up merge sort by v of the u-ordered rows: when
 * two neighbouring blocks merge, every row k of the right (later) block sees the rows of the left block
 * with v below / above its own through two monotone pointers and running sums of p, p u, p v, p u v
 * (a Fenwick tree over the ranks of v does the same with random memory access, several times slower
 * at 10^6 rows). Ties in v count in neither set (sign 0). A, B: n cells each. */
typedef struct { double v, u, p, acc; int32_t k, pad; } advnn__dcel;
static double advnn__disco_pass(int n, const double *u, const double *v, const double *p, const int32_t *ou,
                                advnn__dcel *A, advnn__dcel *B, double *tb) {
    double S = 0;
    int t, w;
    for (t = 0; t < n; t++) { int k = ou[t]; A[t].v = v[k]; A[t].u = u[k]; A[t].p = p[k]; A[t].acc = 0; A[t].k = k; A[t].pad = 0; }
    for (w = 1; w < n; w *= 2) {
        advnn__dcel *T;
        int lo;
        for (lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, a, b, r, i, j, o;
            double T4[4] = {0, 0, 0, 0}, L[4] = {0, 0, 0, 0}, LE[4] = {0, 0, 0, 0};
            if (mid >= hi) { memcpy(B + lo, A + lo, (size_t)(hi - lo) * sizeof *A); continue; }
#define ADVNN__DCEL_ADD(S, c) do { double pu_ = (c).p * (c).u; (S)[0] += (c).p; (S)[1] += pu_; (S)[2] += (c).p * (c).v; \
                                      (S)[3] += pu_ * (c).v; } while (0)
            for (i = lo; i < mid; i++) ADVNN__DCEL_ADD(T4, A[i]);
            for (a = b = lo, r = mid; r < hi; r++) {
                advnn__dcel *c = &A[r];
                double uk = c->u, vk = c->v, G[4], bl, bg;
                for (; a < mid && A[a].v < vk; a++) ADVNN__DCEL_ADD(L, A[a]);
                for (; b < mid && A[b].v <= vk; b++) ADVNN__DCEL_ADD(LE, A[b]);
                for (i = 0; i < 4; i++) G[i] = T4[i] - LE[i];
                /* sum_j p_j (u_k - u_j)(v_k - v_j) over a set with sums (P, PU, PV, PUV) */
                bl = uk * vk * L[0] - uk * L[2] - vk * L[1] + L[3];
                bg = uk * vk * G[0] - uk * G[2] - vk * G[1] + G[3];
                S += 2.0 * c->p * (bl - bg);
                c->acc += (uk * L[0] - L[1]) - (uk * G[0] - G[1]);
            }
            for (i = lo, j = mid, o = lo; o < hi; o++) B[o] = (j >= hi || (i < mid && A[i].v <= A[j].v)) ? A[i++] : A[j++];
#undef ADVNN__DCEL_ADD
        }
        T = A; A = B; B = T;
    }
    for (t = 0; t < n; t++) tb[A[t].k] = A[t].acc;
    return S;
}

/* DisCo on n rows (x, y, weights w or NULL; rows with w == 0 left out). Value R^power, gradients
 * (gx, gy: NULL or n doubles) of it. Inputs must be finite, weights >= 0 (the callers check). */
static double advnn__disco_core(int n, const float *xf, const float *yf, const float *wf, double power,
                                double *gx, double *gy, void *scratch) {
    double *x = (double *)scratch, *y = x + n, *p = y + n, *al = p + n, *be = al + n, *sx = be + n, *sy = sx + n;
    double *t1 = sy + n, *t2 = t1 + n, *t3 = t2 + n, *t4 = t3 + n, *tb = t4 + n;
    advnn__dcel *ca = (advnn__dcel *)(void *)(tb + n), *cb = ca + n;
    int32_t *rows = (int32_t *)(void *)(cb + n), *ox = rows + n, *oy = ox + n, *rx = oy + n, *ry = rx + n;
    int32_t *ti = ry + n;
    uint32_t *key = (uint32_t *)(ti + n), *tk = key + n;
    double W = 0, mx = 0, my = 0, abar = 0, bbar = 0, Sab = 0, Saa = 0, Sbb = 0, Sxx = 0, Syy = 0, S, cxy, cxx, cyy, R, f, df;
    int m = 0, i, Rx, Ry;
    if (gx) for (i = 0; i < n; i++) gx[i] = 0;
    if (gy) for (i = 0; i < n; i++) gy[i] = 0;
    for (i = 0; i < n; i++) {
        double wi = wf ? wf[i] : 1.0;
        if (wi == 0.0) continue;
        rows[m] = i; x[m] = xf[i]; y[m] = yf[i]; p[m] = wi; W += wi; m++;
    }
    if (m < 2 || !(W > 0)) return 0.0;
    for (i = 0; i < m; i++) { p[i] /= W; mx += p[i] * x[i]; my += p[i] * y[i]; }
    advnn__radix_order(m, x, ox, key, tk, ti);
    advnn__radix_order(m, y, oy, key, tk, ti);
    /* centre (translation leaves every distance alone; it keeps the products below small) */
    for (i = 0; i < m; i++) { x[i] -= mx; y[i] -= my; }
    {   /* alpha_i = x_i (P< - P>) - (PX< - PX>), and the dense ranks */
        const double *q[2]; double *d[2];
        q[0] = NULL; q[1] = x; d[0] = sx; d[1] = t1;
        advnn__disco_walk(m, x, p, ox, 2, q, d, rx);
        q[1] = y; d[0] = sy; d[1] = t2;
        advnn__disco_walk(m, y, p, oy, 2, q, d, ry);
    }
    Rx = rx[ox[m - 1]]; Ry = ry[oy[m - 1]];
    for (i = 0; i < m; i++) {
        al[i] = x[i] * sx[i] - t1[i]; be[i] = y[i] * sy[i] - t2[i];
        abar += p[i] * al[i]; bbar += p[i] * be[i];
        Sab += p[i] * al[i] * be[i]; Saa += p[i] * al[i] * al[i]; Sbb += p[i] * be[i] * be[i];
        Sxx += p[i] * x[i] * x[i]; Syy += p[i] * y[i] * y[i];
    }
    if (Rx < 2 || Ry < 2) return 0.0;   /* a constant: dCorr is 0/0, see the API comment */
    S = advnn__disco_pass(m, x, y, p, ox, ca, cb, tb);
    cxy = S - 2.0 * Sab + abar * bbar;
    /* sum_ij p_i p_j (x_i - x_j)^2 = 2 (sum p x^2 - (sum p x)^2); the means are 0 after centring up to rounding */
    {
        double ex = 0, ey = 0;
        for (i = 0; i < m; i++) { ex += p[i] * x[i]; ey += p[i] * y[i]; }
        cxx = 2.0 * (Sxx - ex * ex) - 2.0 * Saa + abar * abar;
        cyy = 2.0 * (Syy - ey * ey) - 2.0 * Sbb + bbar * bbar;
        mx = ex; my = ey;
    }
    if (!(cxx > 0) || !(cyy > 0)) return 0.0;
    R = cxy / sqrt(cxx * cyy);
    if (R < 0) R = 0;   /* dCov^2 >= 0; below 0 only by rounding */
    f = power == 1.0 ? R : pow(R, power);
    df = power == 1.0 ? 1.0 : power * pow(R, power - 1.0);
    if (!gx && !gy) return f;
    {   /* each variable's gradient: d dCov^2(x,y) and d dCov^2(own, own) from prefix sums + a pass */
        int side;
        for (side = 0; side < 2; side++) {
            double *g = side ? gx : gy, *u = side ? y : x, *v = side ? x : y, *sv = side ? sx : sy;
            double *au = side ? be : al, *av = side ? al : be, ubar = side ? bbar : abar, vbar = side ? bbar : abar;
            double cvv = side ? cxx : cyy, vmean = side ? mx : my, inv = 1.0 / sqrt(cxx * cyy);
            const int32_t *ou = side ? oy : ox, *ov = side ? ox : oy;
            const double *q[3]; double *d[3];
            if (!g) continue;
            vbar = side ? abar : bbar;
            /* t1: sum_j p_j (u_i - u_j) sign(v_i - v_j) needs PU< - PU> in v order; t3, t4: sums of p au, p av */
            q[0] = u; q[1] = au; q[2] = av; d[0] = t1; d[1] = t3; d[2] = t4;
            advnn__disco_walk(m, v, p, ov, 3, q, d, NULL);
            if (side) advnn__disco_pass(m, u, v, p, ou, ca, cb, tb);   /* side 0: tb is the value's pass; side 1 runs last */
            for (i = 0; i < m; i++) {
                double T1 = 2.0 * tb[i] - (u[i] * sv[i] - t1[i]);                    /* sum_j p_j a_ij sign(v_i - v_j) */
                double dxy = 2.0 * p[i] * (T1 - au[i] * sv[i] - t3[i] + ubar * sv[i]);
                double dvv = 4.0 * p[i] * ((v[i] - vmean) - av[i] * sv[i] - t4[i] + vbar * sv[i]);
                g[rows[i]] = df * (dxy * inv - 0.5 * R * dvv / cvv);
            }
        }
    }
    return f;
}

static advnn_status advnn__check_rows(const char *what, const float *x, const float *y, const float *w, int64_t n) {
    int64_t i;
    for (i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            return advnn__fail(ADVNN_ERR_NAN, "%s: row %lld has a non-finite value (%g, %g)", what, (long long)i, (double)x[i], (double)y[i]);
        if (w && !(w[i] >= 0.0f && isfinite(w[i])))
            return advnn__fail(ADVNN_ERR_ARG, "%s: weight %g of row %lld (weights must be finite and >= 0)", what, (double)w[i], (long long)i);
    }
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_disco(const float *x, const float *y, const float *w, int64_t n, double power,
                                   double *value, double *grad_x, double *grad_y) {
    void *scr;
    advnn_status st;
    if (!x || !y || !value) return advnn__fail(ADVNN_ERR_ARG, "advnn_disco: NULL argument");
    if (n < 0 || n > 0x7fffffe0) return advnn__fail(ADVNN_ERR_ARG, "advnn_disco: n = %lld outside 0..2^31-32", (long long)n);
    if (!(power >= 1.0 && power <= 16.0)) return advnn__fail(ADVNN_ERR_ARG, "advnn_disco: power %g outside [1, 16]", power);
    if ((st = advnn__check_rows("advnn_disco", x, y, w, n)) != ADVNN_OK) return st;
    if (!(scr = advnn__alloc(advnn__disco_scratch(n)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_disco: out of memory for %lld rows", (long long)n);
    *value = advnn__disco_core((int)n, x, y, w, power, grad_x, grad_y, scr);
    advnn__free(scr);
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- decorrelation losses: MoDe
 * Moment decorrelation as the reference code (okitouni/MoDe, modeloss/pytorch.py) defines it, on
 * the rows with a non-zero weight: the last (n mod bins) of them in row order are dropped so every
 * bin has k = n / bins rows; m is mapped to [-1, 1] by its batch min and max; rows sorted by m form
 * the bins; bin b has centre c_b (mean mapped m) and width d_b (max - min within the bin). At the
 * grid points s_j = (j + 1/2) / sbins, F_b(s) = (#{s_i < s} + #{s_i = s} / 2) / k is fitted across bins
 * by Legendre coefficients a0 = 1/2 sum_b F_b d_b, a1 = 3/2 sum_b F_b c_b d_b, a2 = 5/2 sum F_b P2(c_b) d_b,
 *     fit_b = a0 [+ a1 c_b, or with a slope limit L: + L a0 tanh(a1 / (L a0 + 1e-4)) c_b] [+ a2 P2(c_b)],
 *     value = 1/bins sum_b wbar_b sum_j |F_b(s_j) - fit_b(s_j)|^power / sbins
 * (wbar_b: the mean weight in bin b). The gradient is the reference's: that of the s-integral taken
 * exactly (the derivative of F_b(s) in s_i is a delta at s = s_i), i.e. for row i in bin b
 *     dL/ds_i = -(power / n) wbar_b [rho_b - d_b/2 sum_b' rho_b' - 3/2 d_b c_b sum_b' rho_b' c_b' - ...]
 * with rho_b' = |r_b'|^(power-1) sign(r_b') and r_b' = F_b'(s_i) - fit_b'(s_i) (power 2: the reference
 * exactly; its slope-limit derivative too, eps included). With flatness = 1 every d_b is 2 / bins,
 * so at order 0 the fit is the mean of the bins' CDFs, the global CDF: hep_ml's binned flatness
 * loss with equal-occupancy bins. Fewer rows than bins, or a constant m: value 0, gradient 0 (the
 * reference divides by zero there). Cost O(n log n + bins (sbins + n log(n / bins))). */
#define ADVNN__MODE_EPS 1e-4
static size_t advnn__mode_scratch_n(int64_t n, int bins) {
    return (size_t)(n + 1) * (4 * sizeof(double) + 5 * sizeof(int32_t)) + (size_t)(5 * bins + 8) * sizeof(double) + 64;
}
static size_t advnn__mode_scratch(const advnn__node *n, int batch) { return advnn__mode_scratch_n(batch, n->ip[1]); }

static int advnn__cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* F at s for the k sorted scores v: (#{v < s} + #{v == s} / 2) / k */
static double advnn__cdf_sorted(const double *v, int k, double s) {
    int lo = 0, hi = k, a;
    while (lo < hi) { int mid = lo + (hi - lo) / 2; if (v[mid] < s) lo = mid + 1; else hi = mid; }
    a = lo; hi = k;
    while (lo < hi) { int mid = lo + (hi - lo) / 2; if (v[mid] <= s) lo = mid + 1; else hi = mid; }
    return (a + 0.5 * (lo - a)) / k;
}

/* Legendre fit of F[0..M) across the bins: residuals r = F - fit, coefficients c[0..2]. */
static void advnn__mode_fit(int M, const double *F, const double *cb, const double *db, int order, double L, double *r, double *c) {
    double a0 = 0, a1 = 0, a2 = 0;
    int b;
    for (b = 0; b < M; b++) {
        double p2 = 0.5 * (3.0 * cb[b] * cb[b] - 1.0);
        a0 += F[b] * db[b]; a1 += F[b] * cb[b] * db[b]; a2 += F[b] * p2 * db[b];
    }
    a0 *= 0.5; a1 *= 1.5; a2 *= 2.5;
    for (b = 0; b < M; b++) {
        double fit = a0;
        if (order > 0) fit += L > 0 ? L * a0 * tanh(a1 / (L * a0 + ADVNN__MODE_EPS)) * cb[b] : a1 * cb[b];
        if (order > 1) fit += a2 * 0.5 * (3.0 * cb[b] * cb[b] - 1.0);
        r[b] = F[b] - fit;
    }
    c[0] = a0; c[1] = a1; c[2] = a2;
}

static double advnn__mode_core(int n, const float *sf, const float *mf, const float *wf, int order, int M, int S, double power,
                               double L, int flat, double *gs, void *scratch) {
    double *s = (double *)scratch, *m = s + n, *w = m + n, *sv = w + n, *cb = sv + n, *db = cb + M, *wb = db + M;
    double *F = wb + M, *r = F + M;
    int32_t *rows = (int32_t *)(r + M), *o = rows + n, *bin = o + n, *ti = bin + n;
    uint32_t *key = (uint32_t *)(ti + n);
    double lo = 0, hi = 0, val = 0, c[3];
    int N0 = 0, N, k, i, b, j;
    if (gs) for (i = 0; i < n; i++) gs[i] = 0;
    for (i = 0; i < n; i++) {
        if (wf && wf[i] == 0.0f) continue;
        rows[N0] = i; s[N0] = sf[i]; m[N0] = mf[i]; w[N0] = wf ? wf[i] : 1.0; N0++;
    }
    k = N0 / M; N = k * M;
    if (k < 1) return 0.0;
    for (i = 0; i < N; i++) { if (i == 0 || m[i] < lo) lo = m[i]; if (i == 0 || m[i] > hi) hi = m[i]; }
    if (!(hi > lo)) return 0.0;
    advnn__radix_order(N, m, o, key, (uint32_t *)(void *)bin, ti);   /* bin: scratch until filled below */
    for (b = 0; b < M; b++) {   /* bin b: sorted positions [b k, (b + 1) k) */
        double sum = 0, wsum = 0, first = 2.0 * (m[o[b * k]] - lo) / (hi - lo) - 1.0, last = 2.0 * (m[o[b * k + k - 1]] - lo) / (hi - lo) - 1.0;
        for (j = 0; j < k; j++) {
            int q = o[b * k + j];
            sum += 2.0 * (m[q] - lo) / (hi - lo) - 1.0;
            wsum += w[q];
            sv[b * k + j] = s[q];
        }
        cb[b] = sum / k; wb[b] = wsum / k;
        db[b] = flat ? 2.0 / M : last - first;
        qsort(sv + (size_t)b * k, (size_t)k, sizeof(double), advnn__cmp_double);
    }
    for (j = 0; j < S; j++) {   /* the value on the s grid */
        double sj = (j + 0.5) / S;
        for (b = 0; b < M; b++) F[b] = advnn__cdf_sorted(sv + (size_t)b * k, k, sj);
        advnn__mode_fit(M, F, cb, db, order, L, r, c);
        for (b = 0; b < M; b++) val += wb[b] * (power == 2.0 ? r[b] * r[b] : pow(fabs(r[b]), power));
    }
    val /= (double)S * M;
    if (!gs) return val;
    for (b = 0; b < M; b++) for (j = 0; j < k; j++) bin[o[b * k + j]] = b;
    for (i = 0; i < N; i++) {   /* the reference's gradient: the residuals at s = s_i */
        double r0 = 0, r1 = 0, r2 = 0, sum, cbi, dbi;
        b = bin[i]; cbi = cb[b]; dbi = db[b];
        for (j = 0; j < M; j++) F[j] = advnn__cdf_sorted(sv + (size_t)j * k, k, s[i]);
        advnn__mode_fit(M, F, cb, db, order, L, r, c);
        for (j = 0; j < M; j++) {
            double rho = power == 2.0 ? r[j] : (r[j] > 0 ? 1.0 : r[j] < 0 ? -1.0 : 0.0) * pow(fabs(r[j]), power - 1.0);
            r[j] = rho;
            r0 += rho; r1 += rho * cb[j]; r2 += rho * 0.5 * (3.0 * cb[j] * cb[j] - 1.0);
        }
        sum = r[b] - 0.5 * dbi * r0;
        if (order > 0) {
            if (L > 0) {
                double A0 = L * c[0], u = c[1] / (A0 + ADVNN__MODE_EPS), th = tanh(u), se = 1.0 - th * th;
                sum += r1 * (-1.5 * dbi * cbi * se + (-c[1] / (A0 + ADVNN__MODE_EPS)) * se * (-0.5 * dbi * L) + th * (-0.5 * dbi * L));
            } else sum += r1 * (-1.5 * dbi * cbi);
        }
        if (order > 1) sum += r2 * (-2.5 * dbi * 0.5 * (3.0 * cbi * cbi - 1.0));
        gs[rows[i]] = -power / N * wb[b] * sum;
    }
    return val;
}

/* ---------------------------------------------------------------- decorrelation losses: graph nodes
 * DisCo and MoDe nodes: (score, var, weight-or-absent), one score and one var per sample. The
 * forward computes the batch statistic and, on a training pass, the per-row gradients into the
 * node's aux buffer (doubles: d/d score, then d/d var); the backward adds coef times them. */
static int advnn__decor_node(advnn_graph *g, int kind, int score, int var, int weight, const char *what) {
    int ins[3], id, one = 1;
    ins[0] = score; ins[1] = var; ins[2] = weight;
    if (g && weight < -1) return advnn__gfail(g, ADVNN_ERR_ARG, "%s: weight node %d (use -1 for unit weights)", what, weight);
    id = advnn__new_node(g, kind, weight >= 0 ? 3 : 2, ins, what);
    if (id < 0) return -1;
    /* DisCo takes several score columns (the mean of the per-column values); MoDe one */
    if ((kind == ADVNN__LOSS_MODE && g->nodes[score].size != 1) || g->nodes[var].size != 1
        || (weight >= 0 && g->nodes[weight].size != 1)) {
        g->n_nodes--;
        return advnn__gfail(g, ADVNN_ERR_SHAPE, "%s: %svariable and weight need 1 value per sample, have score %d, variable %d, "
                            "weight %d", what, kind == ADVNN__LOSS_MODE ? "score, " : "", g->nodes[score].size,
                            g->nodes[var].size, weight >= 0 ? g->nodes[weight].size : 1);
    }
    advnn__set_shape(&g->nodes[id], 1, &one);
    g->nodes[id].fp[0] = 1.0f;
    /* DisCo: score columns when more than 1 (0 otherwise, as in the model files of earlier builds); MoDe
     * overwrites ip with its options */
    if (g->nodes[score].size > 1) g->nodes[id].ip[0] = g->nodes[score].size;
    return id;
}

ADVNN_DEF int advnn_loss_disco(advnn_graph *g, int score, int var, int weight, float power) {
    int id;
    if (g && !(power >= 1.0f && power <= 16.0f)) return advnn__gfail(g, ADVNN_ERR_ARG, "advnn_loss_disco: power %g outside [1, 16]", (double)power);
    id = advnn__decor_node(g, ADVNN__LOSS_DISCO, score, var, weight, "advnn_loss_disco");
    if (id >= 0) g->nodes[id].fp[1] = power;
    return id;
}

static int advnn__is_batch_loss(int kind) { return kind == ADVNN__LOSS_DISCO || kind == ADVNN__LOSS_MODE; }
static int advnn__has_batch_loss(const advnn_graph *g) {
    int i;
    for (i = 0; i < g->n_nodes; i++) if (advnn__is_batch_loss(g->nodes[i].kind)) return 1;
    return 0;
}
/* aux, in doubles: d/d score (cols x batch), d/d var, then for DisCo with several columns one column's two
 * gradients and (as floats) its values */
static int advnn__decor_cols(const advnn__node *n) { return n->kind == ADVNN__LOSS_DISCO && n->ip[0] > 1 ? n->ip[0] : 1; }
static size_t advnn__decor_aux_floats(const advnn__node *n, int batch) {
    int k = advnn__decor_cols(n);
    return (k > 1 ? 2 * (size_t)(k + 3) + 1 : 4) * (size_t)batch;
}
static size_t advnn__decor_scratch_floats(const advnn__node *n, int batch) {
    return n->kind == ADVNN__LOSS_DISCO ? advnn__disco_scratch(batch) / sizeof(float) + 16 : advnn__mode_scratch(n, batch) / sizeof(float) + 16;
}

ADVNN_DEF advnn_mode_opts advnn_mode_defaults(void) {
    advnn_mode_opts o;
    memset(&o, 0, sizeof o);
    o.order = 0; o.bins = 32; o.sbins = 32; o.power = 2.0f; o.max_slope = 0.0f; o.flatness = 0;
    return o;
}

static advnn_status advnn__mode_check(const advnn_mode_opts *o, const char *what) {
    if (!o) return advnn__fail(ADVNN_ERR_ARG, "%s: options are NULL", what);
    if (o->order < 0 || o->order > 2) return advnn__fail(ADVNN_ERR_ARG, "%s: order %d (0, 1 or 2)", what, o->order);
    if (o->bins < 1 || o->bins > 4096) return advnn__fail(ADVNN_ERR_ARG, "%s: %d m bins (1..4096)", what, o->bins);
    if (o->sbins < 1 || o->sbins > 65536) return advnn__fail(ADVNN_ERR_ARG, "%s: %d s grid points (1..65536)", what, o->sbins);
    if (!(o->power >= 1.0f && o->power <= 16.0f)) return advnn__fail(ADVNN_ERR_ARG, "%s: power %g outside [1, 16]", what, (double)o->power);
    if (!(o->max_slope >= 0.0f && isfinite(o->max_slope))) return advnn__fail(ADVNN_ERR_ARG, "%s: max_slope %g (0 = none, else > 0)", what, (double)o->max_slope);
    if (o->flatness != 0 && o->flatness != 1) return advnn__fail(ADVNN_ERR_ARG, "%s: flatness %d (0 or 1)", what, o->flatness);
    return ADVNN_OK;
}

ADVNN_DEF int advnn_loss_mode(advnn_graph *g, int score, int var, int weight, const advnn_mode_opts *o) {
    int id;
    if (g && advnn__mode_check(o, "advnn_loss_mode") != ADVNN_OK) {
        char msg[sizeof advnn__errbuf];
        snprintf(msg, sizeof msg, "%s", advnn__errbuf);   /* the message lives in the buffer gfail writes */
        return advnn__gfail(g, ADVNN_ERR_ARG, "%s", msg);
    }
    id = advnn__decor_node(g, ADVNN__LOSS_MODE, score, var, weight, "advnn_loss_mode");
    if (id >= 0) {
        advnn__node *n = &g->nodes[id];
        n->ip[0] = o->order; n->ip[1] = o->bins; n->ip[2] = o->sbins; n->ip[3] = o->flatness;
        n->fp[1] = o->power; n->fp[2] = o->max_slope;
    }
    return id;
}

ADVNN_DEF advnn_status advnn_mode(const float *score, const float *var, const float *w, int64_t n, const advnn_mode_opts *o,
                                  double *value, double *grad_score) {
    void *scr;
    advnn_status st;
    if (!score || !var || !value) return advnn__fail(ADVNN_ERR_ARG, "advnn_mode: NULL argument");
    if (n < 0 || n > 0x7fffffe0) return advnn__fail(ADVNN_ERR_ARG, "advnn_mode: n = %lld outside 0..2^31-32", (long long)n);
    if ((st = advnn__mode_check(o, "advnn_mode")) != ADVNN_OK) return st;
    if ((st = advnn__check_rows("advnn_mode", score, var, w, n)) != ADVNN_OK) return st;
    if (!(scr = advnn__alloc(advnn__mode_scratch_n(n, o->bins)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_mode: out of memory for %lld rows", (long long)n);
    *value = advnn__mode_core((int)n, score, var, w, o->order, o->bins, o->sbins, o->power, o->max_slope, o->flatness, grad_score, scr);
    advnn__free(scr);
    return ADVNN_OK;
}

/* Wall-clock seconds (epoch lines; the threads' choice between the team and one thread). */
static double advnn__now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- threads
 * Deterministic dynamic work division. Every training step (advnn__run) splits its n rows into
 * advnn__chunk_count(n) near-equal chunks: at most ADVNN__CHUNKS_MAX chunks of at least
 * advnn__chunk_min_rows rows, boundaries from n alone, never from the thread count. Chunk c always
 * runs in workspace c (so values kept between adversarial sub-steps stay valid) with its own dropout
 * stream (seeded from the step's seed and c) and its own parameter gradients. A step runs in phases:
 * a BatchNorm on batch statistics pauses every chunk's pass after it stored its partial sums (two
 * pauses forward, one backward); once every chunk of the phase is done, each chunk adds all
 * chunks' partials in chunk order and resumes. In each phase the threads (the calling one too) take
 * the next chunk not yet taken (an atomic counter per phase) and wait for the phase's chunks, not
 * for one another: a descheduled thread holds up at most the chunk it took, a worker that wakes late
 * catches up or finds the step done (advnn__team_run never waits for a worker that has not joined).
 * Last the gradients are reduced in chunk order, ((g0 + g1) + g2) + ..., in blocks of parameters
 * taken the same way; losses likewise. Every sum thus has a fixed order: the weights are
 * bit-identical for any thread count and any scheduling (tests/test_threads.c).
 *   One thread runs the same chunks and phases in order. A step of one chunk (n < 256 rows) runs
 * on the calling thread, so does everything with advnn_set_threads(1).
 *   Memory: chunk 0's workspace (the trainer's own, tr->ws) has advnn__chunk_cap(batch) rows (for
 * batches under 256 the whole batch; one-chunk steps have up to 255 rows), the others
 * advnn__chunk_rows(batch, k), the most their chunk has in any step (under 192 rows, or batch / 8),
 * so activations take up to ~1.5 whole-batch workspaces for batches of 512-1024 rows, plus per extra
 * chunk one copy of the parameter gradients, a GEMM packing buffer (228 KiB) and the per-node scratch.
 *   Data parallelism over processes (ADVNN_MPI, advnn_trainer_set_mpi) reuses this unchanged: every
 * rank draws the same shuffles and step seeds; rank r of R takes the contiguous chunk range
 * [nck r / R, nck (r + 1) / R) (its threads share them as above), runs the same phases and after each
 * one allgathers one row per chunk (status, BatchNorm partial sums or losses); the gradients are
 * folded in chunk order, each of ranks 1..R-1 folding a part of the parameters from rank 0's partial
 * sum of its own chunks and every other chunk's gradient, then the parts are allgathered
 * (advnn__mpi_grad). 2 ranks x 1 thread then give the weights of 1 rank x 2 threads bit for bit (same
 * chunks, seeds and summation orders; tests/mpi_check.sh). ADVNN__CHUNKS_MAX caps the ranks x threads
 * that one step can use; raising it changes the chunking, hence the rounding of the results, for
 * every thread count.
 *   Waits spin briefly, then block: on a busy 2-core machine spinning workers would steal the core
 * the other thread needs. */
#ifndef ADVNN_NO_THREADS
#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#define ADVNN__RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define ADVNN__RELAX() __asm__ __volatile__("yield")
#else
#define ADVNN__RELAX() ((void)0)
#endif
#define ADVNN__SPINS 4000

struct advnn__team;
typedef void (*advnn__job_fn)(struct advnn__team *t, int k, void *arg);
/* A job is open while the calling thread works on it: a worker joins only an open job (entry: the
 * OPEN bit and the count of workers inside), so the caller never waits for a worker the OS has not
 * run yet, only for those inside, which are doing work it needs. Jobs therefore never wait for a
 * number of threads, only for units of work (advnn__wait_count). */
#define ADVNN__OPEN 0x40000000
typedef struct advnn__team {
    int T, active;                      /* threads; threads that may take part in the current job */
    pthread_t th[64];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned jgen;                      /* job generation */
    int entry, quit, nth;               /* entry: see above; nth: workers started */
    advnn__job_fn job;
    void *arg;
} advnn__team;

/* Spin, then block on cv until *word != old. */
static void advnn__wait_change(advnn__team *t, pthread_cond_t *cv, const unsigned *word, unsigned old) {
    int i;
    for (i = 0; i < ADVNN__SPINS; i++) { if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != old) return; ADVNN__RELAX(); }
    pthread_mutex_lock(&t->mu);
    while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == old) pthread_cond_wait(cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

/* Spin, then block until *cnt >= n (units of work done; advnn__count_done wakes the sleepers). */
static void advnn__wait_count(advnn__team *t, const int *cnt, int n) {
    int i;
    for (i = 0; i < ADVNN__SPINS; i++) { if (__atomic_load_n(cnt, __ATOMIC_ACQUIRE) >= n) return; ADVNN__RELAX(); }
    pthread_mutex_lock(&t->mu);
    while (__atomic_load_n(cnt, __ATOMIC_ACQUIRE) < n) pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}
static void advnn__count_done(advnn__team *t, int *cnt, int n) {
    if (__atomic_add_fetch(cnt, 1, __ATOMIC_ACQ_REL) < n) return;
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->done);
    pthread_mutex_unlock(&t->mu);
}

typedef struct { advnn__team *t; int k; } advnn__worker_arg;
static void *advnn__worker(void *p) {
    advnn__team *t = ((advnn__worker_arg *)p)->t;
    int k = ((advnn__worker_arg *)p)->k;
    unsigned seen = 0;
    ADVNN_FREE(p);
    for (;;) {
        int e;
        advnn__wait_change(t, &t->go, &t->jgen, seen);
        seen = __atomic_load_n(&t->jgen, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&t->quit, __ATOMIC_ACQUIRE)) return NULL;
        e = __atomic_load_n(&t->entry, __ATOMIC_ACQUIRE);
        while ((e & ADVNN__OPEN) && !__atomic_compare_exchange_n(&t->entry, &e, e + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {}
        if (!(e & ADVNN__OPEN)) continue;   /* woke too late: the caller has done the job */
        if (k < t->active) t->job(t, k, t->arg);
        if (__atomic_sub_fetch(&t->entry, 1, __ATOMIC_ACQ_REL) == 0) {   /* closed, and the last one out */
            pthread_mutex_lock(&t->mu);
            pthread_cond_broadcast(&t->done);
            pthread_mutex_unlock(&t->mu);
        }
    }
}

static void advnn__team_free(advnn__team *t) {
    int i;
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    __atomic_store_n(&t->quit, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&t->jgen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (i = 0; i < t->nth; i++) pthread_join(t->th[i], NULL);
    pthread_mutex_destroy(&t->mu); pthread_cond_destroy(&t->go); pthread_cond_destroy(&t->done);
    ADVNN_FREE(t);
}

static advnn__team *advnn__team_new(int T) {
    advnn__team *t = (advnn__team *)ADVNN_MALLOC(sizeof *t);
    int i;
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->T = T;
    pthread_mutex_init(&t->mu, NULL); pthread_cond_init(&t->go, NULL); pthread_cond_init(&t->done, NULL);
    for (i = 1; i < T; i++) {
        advnn__worker_arg *a = (advnn__worker_arg *)ADVNN_MALLOC(sizeof *a);
        if (!a) break;
        a->t = t; a->k = i;
        if (pthread_create(&t->th[i - 1], NULL, advnn__worker, a) != 0) { ADVNN_FREE(a); break; }
        t->nth++;
    }
    if (t->nth != T - 1) { advnn__team_free(t); return NULL; }
    return t;
}

/* Runs job(k) on the calling thread (k = 0) and on the workers k < active that wake while it runs;
 * returns when the caller's job(0) has returned and every worker that joined has left. The job
 * must finish all its work whichever workers join (units taken with advnn__take). */
static void advnn__team_run(advnn__team *t, int active, advnn__job_fn job, void *arg) {
    int i;
    t->job = job; t->arg = arg; t->active = active;
    __atomic_store_n(&t->entry, ADVNN__OPEN, __ATOMIC_RELEASE);
    pthread_mutex_lock(&t->mu);
    __atomic_add_fetch(&t->jgen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    job(t, 0, arg);
    if ((__atomic_and_fetch(&t->entry, ~ADVNN__OPEN, __ATOMIC_ACQ_REL)) == 0) return;
    for (i = 0; i < ADVNN__SPINS; i++) { if (__atomic_load_n(&t->entry, __ATOMIC_ACQUIRE) == 0) return; ADVNN__RELAX(); }
    pthread_mutex_lock(&t->mu);
    while (__atomic_load_n(&t->entry, __ATOMIC_ACQUIRE) != 0) pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

/* The next unit of work below n from counter *ctr, or -1: taken by whichever thread is free. */
static int advnn__take(int *ctr, int n) {
    int c = __atomic_fetch_add(ctr, 1, __ATOMIC_ACQ_REL);
    return c < n ? c : -1;
}

/* ---- the team or the calling thread alone, whichever measures faster
 * The chunks and their order of summation do not depend on which threads run them, so a step may run
 * on the team or on the calling thread alone with the same results; only the time differs. With the
 * other core busy, a worker the OS deschedules while it holds a chunk stalls the step at the next
 * barrier for a time slice (milliseconds), as long as a short step (W1 at batch 1024 takes ~2 ms):
 * 2 threads were up to 14% slower than 1 there (bench/README.md). So each threaded step shape (rows,
 * pass, the nodes it computes) keeps the last 5 times of each way (the first of each, which faults in
 * memory, is dropped); the faster median runs, the other every k-th step, k = 4..64 chosen so that
 * the trials cost ~2% ((the other's mean / the faster median - 1) / k: under load the team's times
 * have a long tail), and again at once after a trial faster than 0.9x the median of the way
 * running: a change of load is followed within a few steps.
 * advnn__tune_force: 0 measure (default); 1 always the team, 2 always alone, 3 each in turn (tests, benchmarks). */
#define ADVNN__TUNE_SLOTS 16   /* step shapes: main and adversary steps, evaluation, MPI phases */
#define ADVNN__TUNE_RING 5
typedef struct {
    uint64_t key;                         /* the step's shape; 0: free slot */
    unsigned n, used;                     /* steps of this shape; the tuner's clock when last used */
    int cnt[2];                           /* times recorded: [0] the team, [1] alone */
    int seen[2];                          /* the first time of each way was dropped */
    int best, again;                      /* the way that ran as the faster; run the other next */
    float mbest;                          /* the faster way's median when picked */
    float t[2][ADVNN__TUNE_RING];
} advnn__tslot;
typedef struct {
    advnn__tslot s[ADVNN__TUNE_SLOTS];
    unsigned clock;
    int cur;                              /* the slot of the step under way */
    int64_t steps, alone;                 /* threaded steps, of which ran alone (bench_workloads prints them) */
} advnn__tune;
static int advnn__tune_force = 0;

static float advnn__tune_median(const advnn__tslot *s, int m) {
    float v[ADVNN__TUNE_RING], x;
    int n = s->cnt[m] < ADVNN__TUNE_RING ? s->cnt[m] : ADVNN__TUNE_RING, i, k;
    for (i = 0; i < n; i++) {   /* insertion sort of at most 5 */
        x = s->t[m][i];
        for (k = i; k > 0 && v[k - 1] > x; k--) v[k] = v[k - 1];
        v[k] = x;
    }
    return v[n / 2];
}
static float advnn__tune_mean(const advnn__tslot *s, int m) {
    int n = s->cnt[m] < ADVNN__TUNE_RING ? s->cnt[m] : ADVNN__TUNE_RING, i;
    float t = 0;
    for (i = 0; i < n; i++) t += s->t[m][i];
    return t / (float)n;
}

/* 1 if the step of shape key should run on the calling thread alone, 0 on the team. */
static int advnn__tune_pick(advnn__tune *u, uint64_t key) {
    advnn__tslot *s;
    int i, lru = 0, k;
    float m0, m1, r;
    key |= 1;   /* never 0 */
    u->clock++;
    for (i = 0; i < ADVNN__TUNE_SLOTS && u->s[i].key != key; i++)
        if (u->s[i].used < u->s[lru].used) lru = i;
    if (i == ADVNN__TUNE_SLOTS) { i = lru; memset(&u->s[i], 0, sizeof u->s[i]); u->s[i].key = key; }
    s = &u->s[i];
    u->cur = i; s->used = u->clock; s->n++;
    s->best = -1;
    if (advnn__tune_force) return advnn__tune_force == 3 ? (int)(u->clock & 1) : advnn__tune_force == 2;
    if (s->cnt[0] < 3 || s->cnt[1] < 3) return s->cnt[1] + s->seen[1] < s->cnt[0] + s->seen[0];   /* in turn */
    m0 = advnn__tune_median(s, 0); m1 = advnn__tune_median(s, 1);
    s->best = m1 < m0;
    s->mbest = s->best ? m1 : m0;
    if (s->again) return !s->best;
    r = advnn__tune_mean(s, !s->best) / s->mbest;
    k = r > 3.0f ? 64 : (int)((r - 1.0f) / 0.02f);
    k = k < 4 ? 4 : k > 64 ? 64 : k;
    return s->n % (unsigned)k == 0 ? !s->best : s->best;
}
static void advnn__tune_note(advnn__tune *u, int alone, double sec) {
    advnn__tslot *s = &u->s[u->cur];
    u->steps++; u->alone += alone;
    if (advnn__tune_force) return;
    if (!s->seen[alone]) { s->seen[alone] = 1; return; }
    s->again = s->best >= 0 && alone != s->best && (float)sec < 0.9f * s->mbest;
    s->t[alone][s->cnt[alone]++ % ADVNN__TUNE_RING] = (float)sec;
    if (s->cnt[alone] >= 2 * ADVNN__TUNE_RING) s->cnt[alone] -= ADVNN__TUNE_RING;   /* no overflow, same slots */
}

#endif /* ADVNN_NO_THREADS */

#define ADVNN__CHUNKS_MAX 8
/* The fewest rows of a chunk. Measured (callgrind, W1 at 1 thread, per step): each chunk computes
 * its own weight gradients, and GEMMs that short cost more per row (the register tiles' loads and
 * stores, the packing); against one chunk, batch 256 in 8 chunks of 32 rows executed 37% more
 * instructions, in 4 of 64 16%, in 2 of 128 5%; batch 512 in 8 of 64 21%, 4 of 128 8%, 2 of 256 3%;
 * batch 1024 in 8 of 128 10%, 4 of 256 4%.
 * Hence 128 rows: smaller steps run as one chunk on the calling thread, where threads gain little.
 * (A variable only so that the tests can cut small batches into many chunks.) */
static int advnn__chunk_min_rows = 128;
/* A step of n rows has advnn__chunk_count(n) chunks of near-equal size, chunk c being the rows
 * [advnn__chunk_lo_of(n, nck, c), advnn__chunk_lo_of(n, nck, c + 1)) with nck = advnn__chunk_count(n):
 * functions of n only. No chunk has fewer than advnn__chunk_min_rows rows (n < 2 x that: one chunk),
 * which also keeps the kernels' row-wise results equal to a whole batch's (a 1-row chunk would take
 * the matrix-vector path). */
static int advnn__chunk_count(int n) {
    int c = n / advnn__chunk_min_rows;
    return c < 1 ? 1 : c > ADVNN__CHUNKS_MAX ? ADVNN__CHUNKS_MAX : c;
}
/* (nck is 1 instead for a trainer whose graph needs one chunk: advnn_trainer.one_chunk) */
static int advnn__chunk_lo_of(int n, int nck, int c) { return (int)((int64_t)n * c / nck); }
/* The most rows of a chunk in any step of up to n rows, but the first chunk of a one-chunk step
 * (fewer than 2m rows for m = advnn__chunk_min_rows: n / floor(n / m) < 2m otherwise). */
static int advnn__chunk_cap(int n) {
    int r = (n + ADVNN__CHUNKS_MAX - 1) / ADVNN__CHUNKS_MAX;
    r = r < 2 * advnn__chunk_min_rows ? 2 * advnn__chunk_min_rows : r;
    return r < n ? r : n;
}
/* The most rows chunk k (k < 0: any chunk) has in any step of 1..n rows that has at least two chunks:
 * the size of the workspaces of chunks 1.. and of the inference threads. Under 1.5 x the minimum
 * (a step of 2m - 1 rows has chunks of m - 1, m rows), or n / 8 in big steps: W3's chunk workspaces
 * 1-3 at batch 512 hold 192, 171, 128 rows instead of 256 each. Steps of up to 8m rows are looked at one
 * by one; in bigger ones (8 chunks) no chunk has more than ceil(n / 8) rows. */
static int advnn__chunk_rows(int n, int k) {
    int r = 0, m, c, nck, lim = ADVNN__CHUNKS_MAX * advnn__chunk_min_rows;
    for (m = 2; m <= n && m <= lim; m++) {
        if ((nck = advnn__chunk_count(m)) < 2) continue;
        for (c = k < 0 ? 0 : k; c < nck && (k < 0 || c == k); c++) {
            int sz = advnn__chunk_lo_of(m, nck, c + 1) - advnn__chunk_lo_of(m, nck, c);
            if (sz > r) r = sz;
        }
    }
    if (n > lim && (n + ADVNN__CHUNKS_MAX - 1) / ADVNN__CHUNKS_MAX > r) r = (n + ADVNN__CHUNKS_MAX - 1) / ADVNN__CHUNKS_MAX;
    return r < 1 ? 1 : r;
}
/* MPI: the chunks [*c0, *c1) of a step of nck chunks that rank r of R runs: its share, or with more
 * ranks than chunks a copy of one (see advnn__mpi_exchange). */
static void advnn__rank_chunks(int nck, int R, int r, int *c0, int *c1) {
    *c0 = advnn__chunk_lo_of(nck, R, r); *c1 = advnn__chunk_lo_of(nck, R, r + 1);
    if (*c0 == *c1) { if (*c0 == nck) (*c0)--; *c1 = *c0 + 1; }
}
/* Which rows of each step a process gathers (so reads from files): rank r of R, steps of B rows;
 * one: the graph's steps are one chunk, which every rank computes whole. */
typedef struct { int B, R, r, one; } advnn__rpart;
static void advnn__rpart_rows(const advnn__rpart *q, int n, int *lo, int *hi) {
    int nck, c0, c1;
    if (q->R <= 1 || q->one) { *lo = 0; *hi = n; return; }
    nck = advnn__chunk_count(n);
    advnn__rank_chunks(nck, q->R, q->r, &c0, &c1);
    *lo = advnn__chunk_lo_of(n, nck, c0); *hi = advnn__chunk_lo_of(n, nck, c1);
}

/* ---------------------------------------------------------------- workspaces */
/* One step of a batch-1 inference pass (advnn__iplan): node `node`, or, for a Dense with no or a ReLU
 * activation on one row (xin >= 0), that layer with its weights resolved (a folded BatchNorm's too). */
typedef struct advnn__iop { int node, xin, K, U, relu; const float *W, *b; } advnn__iop;
struct advnn_ws {
    advnn_graph *g;            /* written only in training mode (BatchNorm running statistics) */
    int     max_batch, grads;  /* grads: has dout/pgrad buffers (training workspace) */
    float **out, **dout, **aux, **in_own;   /* in_own: a node's own buffer (an input's: gathered rows) */
    float  *pgrad;             /* parameter gradients, laid out like g->params */
    float  *gemm;              /* packing buffer for advnn_sgemm */
    const float **wpk;         /* during a trainer's step of several chunks: per node two Dense weight matrices
                                * packed once for all chunks (advnn__pack_weights), or NULL */
    float  *scratch;           /* temporaries of one node's forward or backward (im2col, LSTM state) */
    int     input_grads;       /* also compute the gradient w.r.t. the input nodes (tests, saliency) */
    double *loss;              /* per loss node: its value on the last forward */
    unsigned char *need, *needg;  /* per node: computed this pass / gradient flows through it */
    unsigned char *sub;        /* per node: computed on the key rows only (see advnn__mark_sub) */
    unsigned char *dfresh;     /* per node, during a backward pass: dout holds nothing yet (advnn__dacc) */
    int     bnall;             /* the rows of the backward pass under way */
    int     key;               /* input node whose zero rows this pass may skip, or -1 */
    int     nkey;              /* rows of the last gather with a non-zero key value */
    int     part;              /* the last pass ran the subset on fewer rows than all (the trainer's
                                * ws: on any thread) */
    int64_t *perm;             /* training workspaces: the partitioned row indices (2 x max_batch) */
    /* the last gather: its datasets and rows (idx, or start + i when idx is NULL), so that an error
     * about sample i of the batch can name the row of the caller's data */
    const advnn_dataset *gd[2];
    const int64_t *grows[2];
    int64_t gstart;
    const unsigned char *group_on; /* per group trainable flags (NULL = all) */
    int     training;
    advnn__rng *rng;           /* dropout masks (the trainer's PRNG) */
    void   *arena;
    int     nb_total;          /* rows of the whole mini-batch when this ws runs one chunk (0: nb) */
    double *bnacc;             /* BatchNorm per-channel sums and factors (3 x the widest BatchNorm) */
    /* chunked steps (see the threads section): this ws runs chunk ck of nck; BatchNorm's whole-batch
     * sums pause the pass (paused = 1) after storing this chunk's partial sums in bnpart[nsync & 1]
     * (row ck, bnld doubles a row); the pass resumes at node fpos / bpos, step bnstep of that node */
    int     ck, nck, nsync, bnstep, fpos, bpos, paused, bnld;
    int     ck0;               /* the first chunk this process runs (MPI: not 0 on other ranks) */
    double *bnpart[2];
    const unsigned char *keep; /* per node: still holds this batch's value from the last pass (skip it) */
    int     ithreads;          /* advnn_ws_set_threads: threads advnn_infer may use (1: the calling thread) */
    struct advnn_ws **isub;    /* the other threads' workspaces (ithreads - 1) */
    struct advnn__team *iteam;
    struct advnn__inferjob *ijob;
    /* inference caches (workspaces without gradients, advnn__iplan): what depends only on the weights
     * is made once per weight generation of the graph (g->wgen), not on every call */
    uint64_t pgen;             /* the g->wgen they were made from (0: none) */
    int      pout;             /* the node whose ancestors ws->need marks for advnn__iplan (-1: none) */
    int      psub;             /* rows per forward pass of an advnn_infer call (advnn__infer_sub) */
    int     *pinto;            /* per node: a BatchNorm folded into the Dense pinto[i] (its only consumer), or -1 */
    int64_t *poff;             /* per node: its cached floats in pbuf, or -1: a folded Dense's W' (K x U), b' (U)
                                * and U doubles of scratch; any other BatchNorm its 1/std (C); an LSTM its
                                * packed weights (advnn_lstm_pack) and state */
    float   *pbuf;
    struct advnn__iop *prog;   /* the batch-1 pass to pout: its nodes in order, Dense layers resolved */
    int      nprog;
};

static int64_t advnn__user_row(const advnn_ws *ws, int node, int i, const char **stream);   /* (datasets) */

/* Convolution geometry of node n: input H x W x C, output Ho x Wo x F, im2col row length KKC; the
 * backward's cols and dcols rows are ldk apart, whole 32-byte vectors from 32 taps on (the weight
 * gradient's kernel loads 8 taps of a row at a time: W3's 90-tap rows 64 -> 81 GFLOP/s). */
typedef struct {
    int H, W, C, Ho, Wo, F, KH, KW, SH, SW, PT, PL, KKC, ldk, in_size, pointwise, chunk, fchunk;
} advnn__cgeom;
/* im2col per chunk of samples. The backward's chunk (4 MiB) fixes the K blocks of the weight
 * gradient's sums, so it stays; the forward computes each output row alone, so its chunk is the one
 * that keeps the columns in L2 for the GEMM (512 KiB: W3's forward convolutions 8% faster). */
#define ADVNN__CONV_CHUNK_FLOATS (1 << 20)
#define ADVNN__CONV_FCHUNK_FLOATS (1 << 17)
static advnn__cgeom advnn__conv_geom(const advnn_graph *g, const advnn__node *n) {
    advnn__cgeom c;
    advnn__spatial(&g->nodes[n->in[0]], &c.H, &c.W, &c.C);
    c.F = n->ip[0]; c.KH = n->ip[2]; c.KW = n->ip[3]; c.SH = n->ip[4]; c.SW = n->ip[5];
    c.PT = n->ip[7] / 65536; c.PL = n->ip[7] % 65536;
    c.Ho = n->ndim == 2 ? 1 : n->shape[0]; c.Wo = n->ndim == 2 ? n->shape[0] : n->shape[1];
    c.KKC = c.KH * c.KW * c.C;
    c.ldk = c.KKC >= 32 ? (c.KKC + 7) / 8 * 8 : c.KKC;
    c.in_size = c.H * c.W * c.C;
    c.pointwise = c.KH == 1 && c.KW == 1 && c.SH == 1 && c.SW == 1;   /* a GEMM over all positions */
    c.chunk = (int)(ADVNN__CONV_CHUNK_FLOATS / ((size_t)c.Ho * c.Wo * c.KKC));
    if (c.chunk < 1) c.chunk = 1;
    c.fchunk = (int)(ADVNN__CONV_FCHUNK_FLOATS / ((size_t)c.Ho * c.Wo * c.KKC));
    if (c.fchunk < 1) c.fchunk = 1;
    return c;
}

/* Per-node temporary floats used inside one forward or backward call (shared by all nodes). */
static size_t advnn__scratch_floats(const advnn_graph *g, const advnn__node *n, int batch) {
    if (advnn__is_batch_loss(n->kind)) return advnn__decor_scratch_floats(n, batch);
    if (n->kind == ADVNN__DENSE && n->ip[2]) return (size_t)g->nodes[n->in[0]].cols * n->cols;  /* dL/d(W/sigma) */
    if (n->kind == ADVNN__CONV) {
        advnn__cgeom c = advnn__conv_geom(g, n);
        int s = c.chunk < batch ? c.chunk : batch;
        size_t t = c.pointwise ? 0 : 2 * advnn__round((size_t)s * c.Ho * c.Wo * c.ldk);
        size_t ti = c.pointwise ? 0 : advnn_conv_implicit_floats(c.C, c.KH, c.KW, c.SH, c.SW, c.Ho, c.Wo, c.F);
        size_t tw = c.pointwise ? 0 : advnn_conv_wgrad_floats(c.C, c.KH, c.KW, c.SH, c.SW, c.Ho, c.Wo);
        size_t td = c.pointwise ? 0 : advnn_conv_dgrad_floats(c.H, c.W, c.KH, c.KW, c.F);
        t = ti > t ? ti : t;   /* (advnn__conv_implicit_chunk) */
        t = td > t ? td : t;
        return tw > t ? tw : t;   /* (advnn__conv_bwd) */
    }
    if (n->kind == ADVNN__LSTM) {
        size_t T = (size_t)g->nodes[n->in[0]].shape[0], H = (size_t)n->ip[0];
        /* see advnn__lstm_scratch */
        return 5 * advnn__round(batch * H) + advnn__round(batch * T * 4 * H) + advnn__round((size_t)batch);
    }
    return 0;
}

/* Whether a dense or convolution node keeps its pre-activation for the backward (in its aux buffer).
 * Not without an activation, and not for ReLU, whose derivative reads the output instead (y > 0
 * exactly where z > 0): its forward then runs in place, bias and ReLU in the GEMM's epilogue. */
static int advnn__z_kept(const advnn__node *n) { return n->ip[1] != ADVNN_ACT_LINEAR && n->ip[1] != ADVNN_ACT_RELU; }

/* Element-wise kernels take int counts: longer buffers go in calls of up to 2^30 values (dropout draws
 * one seed per call). */
#define ADVNN__CALL_MAX ((size_t)1 << 30)
static size_t advnn__dropout_calls(size_t cnt) { return (cnt + ADVNN__CALL_MAX - 1) / ADVNN__CALL_MAX; }

static size_t advnn__aux_floats(const advnn_graph *g, const advnn__node *n, int batch) {
    switch (n->kind) {
    case ADVNN__CONV:
    case ADVNN__DENSE:   /* pre-activation; spectral norm: W / sigma, then sigma */
        return (advnn__z_kept(n) ? (size_t)batch * n->size : 0)
             + (n->ip[2] ? (size_t)g->nodes[n->in[0]].cols * n->cols + 1 : 0);
    case ADVNN__POOL: return n->ip[0] ? 0 : (size_t)batch * n->size;                       /* argmax (int32) */
    case ADVNN__LSTM: {                                                                    /* gates, c, h per step */
        size_t T = (size_t)g->nodes[n->in[0]].shape[0], H = (size_t)n->ip[0];
        return (size_t)batch * T * 6 * H;
    }
    case ADVNN__DROPOUT: return 2 * advnn__dropout_calls((size_t)batch * n->size);         /* seeds (uint64) */
    case ADVNN__BATCHNORM: return (size_t)batch * n->size + 2 * (size_t)n->cols;          /* xhat, mean, 1/std */
    case ADVNN__LOSS_CCE: return (size_t)batch * g->nodes[n->in[0]].size;                 /* softmax */
    case ADVNN__LOSS_MDN: return (size_t)batch * (n->ip[1] ? 1 : 3) * g->nodes[n->in[0]].size;   /* per-sample gradients */
    case ADVNN__LOSS_DISCO: case ADVNN__LOSS_MODE: return advnn__decor_aux_floats(n, batch);
    default: return 0;
    }
}

/* The workspace arena's layout: with ws == NULL only measures (floats), else carves `base` into ws's
 * buffers. One function for both so that sizing (advnn_predict's chunk) and carving never disagree. */
static size_t advnn__ws_layout(const advnn_graph *g, int max_batch, int grads, advnn_ws *ws, float *base) {
    size_t off = 0;
    int i;
/* `ptr` is evaluated only when carving (ws != NULL) */
#define ADVNN__CARVE(ptr, nfl) do { size_t n_ = advnn__round(nfl); if (ws) (ptr) = base + off; off += n_; } while (0)
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        size_t sz = (size_t)max_batch * n->size, ax = advnn__aux_floats(g, n, max_batch);
        if (n->kind == ADVNN__INPUT) {
            ADVNN__CARVE(ws->in_own[i], sz);
            if (grads) ADVNN__CARVE(ws->dout[i], sz);
            continue;
        }
        ADVNN__CARVE(ws->out[i], sz);
        if (ws) ws->in_own[i] = ws->out[i];   /* (an identity node's out may become a view: advnn__identity_fwd) */
        if (grads) ADVNN__CARVE(ws->dout[i], sz);
        if (ax) ADVNN__CARVE(ws->aux[i], ax);
    }
    if (grads) ADVNN__CARVE(ws->pgrad, (size_t)g->n_params);
    {
        size_t mc = 1;
        float *acc = NULL;
        for (i = 0; i < g->n_nodes; i++) if (g->nodes[i].kind == ADVNN__BATCHNORM && (size_t)g->nodes[i].cols > mc) mc = (size_t)g->nodes[i].cols;
        ADVNN__CARVE(acc, 6 * mc);   /* 3 x mc doubles; carved offsets are 64-byte aligned */
        if (ws) ws->bnacc = (double *)(void *)acc;
    }
    ADVNN__CARVE(ws->gemm, (size_t)ADVNN_SGEMM_WORK_FLOATS);
    {
        size_t sc = 0, t;
        for (i = 0; i < g->n_nodes; i++) if ((t = advnn__scratch_floats(g, &g->nodes[i], max_batch)) > sc) sc = t;
        ADVNN__CARVE(ws->scratch, sc);
    }
#undef ADVNN__CARVE
    return off;
}

/* Packed weights that stay in L1 (W2's 4 KiB): advnn_lstm_seq_fwd projects the inputs itself. */
static int advnn__lstm_fuses(int F, int H, int64_t L) { return (F + H) * L <= 8192; }
/* Inference caches: a BatchNorm whose only consumer is a Dense (not spectrally normalised, at most
 * ADVNN__FOLD_MAX weights) is folded into that Dense's weights and bias; any other BatchNorm keeps its
 * 1/std; an LSTM keeps its weights packed for advnn_lstm_seq_fwd. Sizes them (once per workspace;
 * advnn__iplan fills them). */
#define ADVNN__FOLD_MAX (1 << 16)
static int advnn__plan_layout(advnn_ws *ws) {
    const advnn_graph *g = ws->g;
    int N = g->n_nodes, i, j, *cons;
    size_t off = 0;
    ws->pinto = (int *)ADVNN_MALLOC(2 * (size_t)N * sizeof(int) + 1);
    ws->poff = (int64_t *)ADVNN_MALLOC((size_t)N * sizeof(int64_t) + 1);
    ws->prog = (struct advnn__iop *)ADVNN_MALLOC((size_t)N * sizeof *ws->prog + 1);
    if (!ws->pinto || !ws->poff || !ws->prog) return 0;
    cons = ws->pinto + N;   /* per node: its one consumer, -1 none, -2 several (or one reading it twice) */
    for (i = 0; i < N; i++) { ws->pinto[i] = -1; ws->poff[i] = -1; cons[i] = -1; }
    for (i = 0; i < N; i++)
        for (j = 0; j < g->nodes[i].n_in; j++) { int q = g->nodes[i].in[j]; cons[q] = cons[q] == -1 ? i : -2; }
    for (i = 0; i < N; i++) {
        const advnn__node *n = &g->nodes[i], *d = cons[i] >= 0 ? &g->nodes[cons[i]] : NULL;
        if (n->kind != ADVNN__BATCHNORM) continue;
        if (d && d->kind == ADVNN__DENSE && !d->ip[2] && (int64_t)n->cols * d->cols <= ADVNN__FOLD_MAX) {
            ws->pinto[i] = cons[i];
            ws->poff[cons[i]] = (int64_t)off;
            off += advnn__round((size_t)n->cols * d->cols) + 3 * advnn__round((size_t)d->cols);
        } else {
            ws->poff[i] = (int64_t)off;
            off += advnn__round((size_t)n->cols);
        }
    }
    for (i = 0; i < N; i++) {   /* an LSTM's packed weights (advnn_lstm_pack) and its state */
        const advnn__node *n = &g->nodes[i];
        int H = n->ip[0], F = n->kind == ADVNN__LSTM ? g->nodes[n->in[0]].shape[1] : 0;
        int64_t L = n->kind == ADVNN__LSTM ? advnn_lstm_packed_width(H) : 0;
        /* (without advnn__lstm_fuses the z rows go where the per-step path keeps G, Cs, Hs) */
        if (L <= 0 || (!advnn__lstm_fuses(F, H, L) && L > 6 * (int64_t)H)) continue;
        ws->poff[i] = (int64_t)off;
        off += advnn__round((size_t)(F + H) * L) + advnn__round((size_t)L) + advnn__round(6 * (size_t)H + 32);
    }
    if (off && !(ws->pbuf = (float *)advnn__zalloc(off * sizeof(float)))) return 0;
    return 1;
}

static advnn_ws *advnn__ws_create(advnn_graph *g, int max_batch, int grads) {
    advnn_ws *ws;
    size_t total, k;
    float *base;
    if (!g || !g->finalized) { advnn__fail(ADVNN_ERR_STATE, "workspace: graph is NULL or not finalized"); return NULL; }
    if (max_batch < 1 || max_batch > (1 << 24)) { advnn__fail(ADVNN_ERR_ARG, "workspace: max_batch %d outside 1..2^24", max_batch); return NULL; }
    ws = (advnn_ws *)ADVNN_MALLOC(sizeof *ws);
    if (!ws) { advnn__fail(ADVNN_ERR_NOMEM, "workspace: out of memory"); return NULL; }
    memset(ws, 0, sizeof *ws);
    ws->g = g; ws->max_batch = max_batch; ws->grads = grads; ws->ithreads = 1;
    k = (size_t)g->n_nodes;
    ws->out = (float **)ADVNN_MALLOC(4 * k * sizeof(float *) + 1);
    ws->loss = (double *)ADVNN_MALLOC(k * sizeof(double) + 1);
    ws->need = (unsigned char *)ADVNN_MALLOC(4 * k + 1);
    ws->perm = grads ? (int64_t *)ADVNN_MALLOC(2 * (size_t)max_batch * sizeof(int64_t)) : NULL;
    if (!ws->out || !ws->loss || !ws->need || (grads && !ws->perm)) { advnn_ws_free(ws); advnn__fail(ADVNN_ERR_NOMEM, "workspace: out of memory"); return NULL; }
    memset(ws->out, 0, 4 * k * sizeof(float *));
    ws->dout = ws->out + k; ws->aux = ws->out + 2 * k; ws->in_own = ws->out + 3 * k;
    ws->needg = ws->need + k; ws->sub = ws->need + 2 * k; ws->dfresh = ws->need + 3 * k; ws->key = -1;
    ws->pout = -1;
    memset(ws->sub, 0, k);
    if (!grads && !advnn__plan_layout(ws)) { advnn_ws_free(ws); advnn__fail(ADVNN_ERR_NOMEM, "workspace: out of memory"); return NULL; }
    total = advnn__ws_layout(g, max_batch, grads, NULL, NULL);
    base = (float *)advnn__zalloc(total * sizeof(float));
    if (!base) {
        advnn_ws_free(ws);
        advnn__fail(ADVNN_ERR_NOMEM, "workspace: cannot allocate %.1f MiB for batch %d", (double)total * 4 / 1048576.0, max_batch);
        return NULL;
    }
    ws->arena = base;
    advnn__ws_layout(g, max_batch, grads, ws, base);
    return ws;
}

ADVNN_DEF advnn_ws *advnn_ws_new(const advnn_graph *g, int max_batch) {
    return advnn__ws_create((advnn_graph *)(uintptr_t)g, max_batch, 0);  /* inference never writes g */
}

static void advnn__ws_drop_threads(advnn_ws *ws);
ADVNN_DEF void advnn_ws_free(advnn_ws *ws) {
    if (!ws) return;
    advnn__ws_drop_threads(ws);
    advnn__free(ws->arena);
    ADVNN_FREE(ws->out); ADVNN_FREE(ws->loss); ADVNN_FREE(ws->need); ADVNN_FREE(ws->perm);
    ADVNN_FREE(ws->pinto); ADVNN_FREE(ws->poff); advnn__free(ws->pbuf); ADVNN_FREE(ws->prog);
    ADVNN_FREE(ws);
}

/* need[i] = node i is an ancestor of (or is) a target. targets: one node, or -1 for every loss. */
/* need[i] = node i is computed on the way to `target` (every loss when target < 0). */
static void advnn__need_of(const advnn_graph *g, int target, unsigned char *need) {
    int i, j;
    memset(need, 0, (size_t)g->n_nodes);
    for (i = 0; i < g->n_nodes; i++)
        if (target < 0 ? ADVNN__IS_LOSS(g->nodes[i].kind) : i == target) need[i] = 1;
    for (i = g->n_nodes - 1; i >= 0; i--)
        if (need[i]) for (j = 0; j < g->nodes[i].n_in; j++) need[g->nodes[i].in[j]] = 1;
}
static void advnn__mark_needed(advnn_ws *ws, int target) { advnn__need_of(ws->g, target, ws->need); ws->pout = -1; }

static int advnn__group_on(const advnn_ws *ws, int group) { return !ws->group_on || ws->group_on[group]; }

/* needg[i] = some trainable parameter lies upstream of (or in) node i, so its gradient is needed. */
static void advnn__mark_grad(advnn_ws *ws) {
    const advnn_graph *g = ws->g;
    int i, j;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        unsigned char v = 0;
        if (ws->need[i] && n->kind == ADVNN__INPUT) v = (unsigned char)(ws->input_grads != 0);
        else if (ws->need[i] && n->kind != ADVNN__MASK) {
            if (n->n_param && advnn__group_on(ws, n->group)) v = 1;
            for (j = 0; j < n->n_in; j++) v |= ws->needg[n->in[j]];
        }
        ws->needg[i] = v;
    }
}

/* ---------------------------------------------------------------- narrow rows
 * Per-column operations on contiguous rows of N values (bias, PReLU, column sums) run the SIMD
 * kernels row by row, and a row of N = 1, 5 or 10 values is almost all tail: W3's convolutions spent
 * a fifth of their time in tail copies. Viewed as rows of L = a multiple of lcm(N, 16) values, with
 * the per-column vector repeated L / N times, the same work has no tails. */
#define ADVNN__WIDE_MAX 640
static int advnn__wide_len(int N, int rows) {
    int a = N, b = 16, L;
    if (N % 16 == 0 || N > 64 || rows < 2) return 0;
    while (b) { int t = a % b; a = b; b = t; }    /* gcd(N, 16) */
    L = N / a * 16;
    while (L < 128) L *= 2;
    return (L <= ADVNN__WIDE_MAX && rows >= L / N) ? L : 0;
}
static void advnn__repeat(const float *v, int N, int L, float *out) { int j; for (j = 0; j < L; j++) out[j] = v[j % N]; }
static void advnn__fold_add(const float *acc, int N, int L, float *out) { int j; for (j = 0; j < L; j++) out[j % N] += acc[j]; }

/* X[i, j] += b[j] over `rows` contiguous rows of N. */
/* (The wide buffers are filled only when used: zeroing 2.5 KiB on every call cost W1's batch-1 pass
 * a tenth of its time.) */
static void advnn__bias_rows(int rows, int N, float *X, const float *b) {
    float bb[ADVNN__WIDE_MAX];
    int L = advnn__wide_len(N, rows), g, wide;
    if (!L) { advnn_add_bias(rows, N, X, N, b); return; }
    g = L / N; wide = rows / g;
    advnn__repeat(b, N, L, bb);
    advnn_add_bias(wide, L, X, L, bb);
    if (rows % g) advnn_add_bias(rows % g, N, X + (size_t)wide * L, N, b);
}
/* out[j] += sum_i X[i, j] over contiguous rows. */
static void advnn__colsum_rows(int rows, int N, const float *X, float *out) {
    float acc[ADVNN__WIDE_MAX];
    int L = advnn__wide_len(N, rows), g, wide;
    if (!L) { advnn_col_sums(rows, N, X, N, out); return; }
    memset(acc, 0, (size_t)L * sizeof(float));
    g = L / N; wide = rows / g;
    advnn_col_sums(wide, L, X, L, acc);
    advnn__fold_add(acc, N, L, out);
    if (rows % g) advnn_col_sums(rows % g, N, X + (size_t)wide * L, N, out);
}
/* Activation forward/backward over contiguous rows (y/dx may alias x/dy as the kernels allow). An
 * element-wise activation is one long row; PReLU repeats its slopes (and folds their gradient). */
static void advnn__act_rows(advnn_act act, int rows, int N, const float *x, float *y, float param, const float *alpha) {
    float aa[ADVNN__WIDE_MAX];
    int L, g, wide;
    if (act != ADVNN_ACT_PRELU) {
        if ((int64_t)rows * N <= INT32_MAX / 2) { advnn_act_forward(act, 1, rows * N, x, rows * N, y, rows * N, param, alpha); return; }
        advnn_act_forward(act, rows, N, x, N, y, N, param, alpha);
        return;
    }
    if (!(L = advnn__wide_len(N, rows))) { advnn_act_forward(act, rows, N, x, N, y, N, param, alpha); return; }
    g = L / N; wide = rows / g;
    advnn__repeat(alpha, N, L, aa);
    advnn_act_forward(act, wide, L, x, L, y, L, param, aa);
    if (rows % g) advnn_act_forward(act, rows % g, N, x + (size_t)wide * L, N, y + (size_t)wide * L, N, param, alpha);
}
static void advnn__act_bwd_rows(advnn_act act, int rows, int N, const float *x, const float *y, const float *dy, float *dx,
                                float param, const float *alpha, float *dalpha) {
    float aa[ADVNN__WIDE_MAX] = {0}, da[ADVNN__WIDE_MAX] = {0};
    int L, g, wide;
    if (act != ADVNN_ACT_PRELU) {
        int M = 1, C = rows * N;
        if ((int64_t)rows * N > INT32_MAX / 2) { M = rows; C = N; }
        advnn_act_backward(act, M, C, x, C, y, C, dy, C, dx, C, param, alpha, dalpha);
        return;
    }
    if (!(L = advnn__wide_len(N, rows))) { advnn_act_backward(act, rows, N, x, N, y, N, dy, N, dx, N, param, alpha, dalpha); return; }
    g = L / N; wide = rows / g;
    advnn__repeat(alpha, N, L, aa);
    advnn_act_backward(act, wide, L, x, L, y, L, dy, L, dx, L, param, aa, dalpha ? da : NULL);
    if (dalpha) advnn__fold_add(da, N, L, dalpha);
    if (rows % g) {
        size_t o = (size_t)wide * L;
        advnn_act_backward(act, rows % g, N, x + o, N, y ? y + o : NULL, N, dy + o, N, dx + o, N, param, alpha, dalpha);
    }
}

/* ---------------------------------------------------------------- decorrelation losses: forward and backward
 * (the math is in the sections before the threads) */
static advnn_status advnn__decor_loss_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    const float *s = ws->out[n->in[0]], *m = ws->out[n->in[1]], *w = n->n_in == 3 ? ws->out[n->in[2]] : NULL;
    const char *what = n->kind == ADVNN__LOSS_DISCO ? "DisCo loss" : "MoDe loss";
    int k = advnn__decor_cols(n), want = ws->grads && ws->training;
    double *gs = (double *)(void *)ws->aux[id], *gm = gs + (size_t)k * ws->max_batch;
    advnn_status st;
    if (ws->nck > 1) return advnn__fail(ADVNN_ERR_STATE, "%s node %d: needs the whole batch in one chunk", what, id);
    if (k > 1) {   /* DisCo of several score columns: the mean of the columns' values (and gradients) */
        double *gcs = gm + ws->max_batch, *gcm = gcs + ws->max_batch, v = 0;
        float *col = (float *)(void *)(gcm + ws->max_batch);
        int c, i, ws_ = want && ws->needg[n->in[0]], wm = want && ws->needg[n->in[1]];
        if (wm) memset(gm, 0, (size_t)nb * sizeof *gm);
        for (c = 0; c < k; c++) {
            for (i = 0; i < nb; i++) col[i] = s[(size_t)i * k + c];
            if ((st = advnn__check_rows(what, col, m, w, nb)) != ADVNN_OK) return st;
            v += advnn__disco_core(nb, m, col, w, n->fp[1], wm ? gcm : NULL, ws_ ? gcs : NULL, ws->scratch) / k;
            if (ws_) for (i = 0; i < nb; i++) gs[(size_t)i * k + c] = gcs[i] / k;
            if (wm) for (i = 0; i < nb; i++) gm[i] += gcm[i] / k;
        }
        ws->loss[id] = v;
    } else if ((st = advnn__check_rows(what, s, m, w, nb)) != ADVNN_OK) return st;
    else if (n->kind == ADVNN__LOSS_DISCO)
        ws->loss[id] = advnn__disco_core(nb, m, s, w, n->fp[1], want && ws->needg[n->in[1]] ? gm : NULL,
                                         want && ws->needg[n->in[0]] ? gs : NULL, ws->scratch);
    else {
        if (want && ws->needg[n->in[1]]) memset(gm, 0, (size_t)nb * sizeof *gm);   /* MoDe: no gradient w.r.t. m */
        ws->loss[id] = advnn__mode_core(nb, s, m, w, n->ip[0], n->ip[1], n->ip[2], n->fp[1], n->fp[2], n->ip[3],
                                        want && ws->needg[n->in[0]] ? gs : NULL, ws->scratch);
    }
    if (!isfinite(ws->loss[id])) return advnn__fail(ADVNN_ERR_NAN, "%s node %d is %g", what, id, ws->loss[id]);
    return ADVNN_OK;
}

static void advnn__decor_loss_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    int cols = advnn__decor_cols(n), i, k;
    const double *gs = (const double *)(const void *)ws->aux[id], *gm = gs + (size_t)cols * ws->max_batch;
    double coef = n->fp[0];
    if (coef == 0.0) return;
    for (k = 0; k < 2; k++) {
        float *d = ws->needg[n->in[k]] ? ws->dout[n->in[k]] : NULL;
        const double *gk = k ? gm : gs;
        int len = k ? nb : nb * cols;
        if (d) for (i = 0; i < len; i++) d[i] += (float)(coef * gk[i]);
    }
}

/* ---------------------------------------------------------------- forward */
static float *advnn__P(const advnn_ws *ws, const advnn__node *n, int k) { return ws->g->params + ws->g->par[n->param0 + k].off; }
static float *advnn__G(const advnn_ws *ws, const advnn__node *n, int k) { return ws->pgrad + ws->g->par[n->param0 + k].off; }

/* Where a dense or convolution node puts its pre-activation: its aux buffer when the backward reads
 * it (advnn__z_kept), else its output, the activation then running in place (a second buffer only
 * costs cache traffic: W1 batch-512 inference 118 -> 115 µs per call, batch 1 1.66 -> 1.56 µs).
 * For ReLU the backward's "x" is then y, which gives the same derivative. */
static float *advnn__preact(const advnn_ws *ws, const advnn__node *n, int id) {
    return !advnn__z_kept(n) || !ws->grads ? ws->out[id] : ws->aux[id];
}

/* Rows [r0, r0 + rows) of the node's pre-activation z = X W + bias (X: those rows, K columns), then
 * the activation into its output: for none or ReLU in the GEMM's (or at batch 1 the GEMV's) epilogue
 * (the same values without two more passes over z), otherwise (and for a single output column) as
 * passes over z. */
static void advnn__gemm_bias_act(advnn_ws *ws, const advnn__node *n, int id, const float *X, int K, const float *W,
                                 const float *P, const float *bias, int r0, int rows) {
    int U = n->cols, act = n->ip[1];
    size_t o = (size_t)r0 * U;
    float *z = advnn__preact(ws, n, id) + o, *y = ws->out[id] + o;
    if ((act == ADVNN_ACT_LINEAR || act == ADVNN_ACT_RELU) && (rows == 1 || U > 1)) {
        advnn_sgemm_bias_relu_p(rows, U, K, X, K, W, U, P, bias, act == ADVNN_ACT_RELU, z, U, y, U, ws->gemm);
        return;
    }
    advnn_sgemm_p(0, 0, rows, U, K, 1.0f, X, K, W, U, P, 0.0f, z, U, ws->gemm);
    advnn__bias_rows(rows, U, z, bias);
    if (act != ADVNN_ACT_LINEAR) advnn__act_rows((advnn_act)act, rows, U, z, y, n->fp[0], NULL);
}

/* Spectral normalisation (Miyato et al. 2018): the layer uses W / sigma with sigma = u^T W v from the
 * stored power-iteration vectors, so the forward pass is a pure function of the parameters (the
 * trainer advances u, v by one iteration after each update of the layer's group). */
static float *advnn__sn_weight(const advnn_ws *ws, const advnn__node *n, int nb) {
    const float *W = advnn__P(ws, n, 0), *u = advnn__P(ws, n, 2), *v = advnn__P(ws, n, 3);
    int K = ws->g->nodes[n->in[0]].cols, U = n->cols, i, j;
    float *Wsn = ws->aux[n - ws->g->nodes] + (advnn__z_kept(n) ? (size_t)ws->max_batch * n->size : 0);
    double sig = 0, inv;
    (void)nb;
    for (i = 0; i < K; i++) {
        double r = 0;
        for (j = 0; j < U; j++) r += (double)W[(size_t)i * U + j] * v[j];
        sig += u[i] * r;
    }
    if (!(sig > 1e-12)) sig = 1e-12;
    inv = 1.0 / sig;
    for (i = 0; i < K * U; i++) Wsn[i] = (float)(W[i] * inv);
    Wsn[(size_t)K * U] = (float)sig;
    return Wsn;
}

/* The inference caches of advnn__iplan hold this generation of the weights (never on a training workspace,
 * which does not read g->wgen: chunk 0 of a threaded pass increments it while the other chunks run). */
static int advnn__plan_live(const advnn_ws *ws) { return !ws->grads && !ws->training && ws->pgen == ws->g->wgen; }
/* BatchNorm node i is folded into its Dense, which this pass runs: skip it */
static int advnn__bn_folded(const advnn_ws *ws, int i) { return ws->pinto && ws->pinto[i] >= 0 && ws->need[ws->pinto[i]] && advnn__plan_live(ws); }

static void advnn__dense_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int rows = nb * x->rows, K = x->cols;
    const float *W = n->ip[2] ? advnn__sn_weight(ws, n, nb) : advnn__P(ws, n, 0), *X = ws->out[n->in[0]], *b = advnn__P(ws, n, 1);
    const float *P = ws->wpk ? ws->wpk[2 * id] : NULL;   /* W packed for all chunks of a training step, or NULL */
    if (ws->pinto && ws->pinto[n->in[0]] == id && advnn__plan_live(ws)) {   /* the BatchNorm before it, folded in */
        P = NULL;
        W = ws->pbuf + ws->poff[id];
        b = W + advnn__round((size_t)K * n->cols);
        X = ws->out[x->in[0]];
    }
    advnn__gemm_bias_act(ws, n, id, X, K, W, P, b, 0, rows);
}

/* BatchNorm uses batch statistics only while training its own group: a frozen BatchNorm (e.g. the
 * adversary's during the classifier step) runs on its running statistics, as Keras does. */
static int advnn__bn_batch_stats(const advnn_ws *ws, const advnn__node *n) { return ws->training && advnn__group_on(ws, n->group); }

/* Losses are sum(w l) / N over the whole mini-batch, also when this workspace holds one slice of it. */
static double advnn__norm_n(const advnn_ws *ws, int nb) { return ws->nb_total > 0 ? (double)ws->nb_total : (double)nb; }

/* The weight input of loss node n, or -1. */
static int advnn__loss_weight(const advnn__node *n) {
    if (n->kind == ADVNN__LOSS_MDN && !n->ip[1]) return n->n_in == 5 ? n->in[4] : -1;
    return n->n_in == 3 ? n->in[2] : -1;
}

/* Row skipping. A loss weighted by input `key` gets nothing from the rows where the key is 0 (the
 * signal half under background-only adversary weights), so the gather puts the rows with a non-zero
 * key first (advnn__partition) and sub[i] marks the nodes that then run on those rows only: nodes
 * that treat each row on its own (not BatchNorm on batch statistics) and whose every consumer in
 * this pass is such a node or a loss weighted by the key. Inputs are always gathered in full. */
static void advnn__mark_sub(advnn_ws *ws, int key) {
    const advnn_graph *g = ws->g;
    unsigned char *blocked = ws->sub;   /* reused: set while visiting consumers, before node i is decided */
    int i, j, N = g->n_nodes;
    ws->key = key;
    memset(ws->sub, 0, (size_t)N);
    if (key < 0) return;   /* a key this pass does not need still orders its rows, as kept values expect */
    /* bit 1: some consumer needs all rows; bit 2: has a consumer; bit 4: this node is in the subset */
    for (i = N - 1; i >= 0; i--) {
        const advnn__node *n = &g->nodes[i];
        int in_sub;
        if (!ws->need[i]) { blocked[i] = 0; continue; }
        if (ADVNN__IS_LOSS(n->kind)) in_sub = advnn__loss_weight(n) == key;
        else in_sub = n->kind != ADVNN__INPUT && (blocked[i] & 3) == 2
                      && !(n->kind == ADVNN__BATCHNORM && advnn__bn_batch_stats(ws, n));
        blocked[i] = (unsigned char)(in_sub ? 4 : 0);
        for (j = 0; j < n->n_in; j++) blocked[n->in[j]] |= (unsigned char)(in_sub ? 2 : 3);
    }
    for (i = 0; i < N; i++) ws->sub[i] = (unsigned char)((blocked[i] & 4) != 0);
}

/* Chunked steps: whole-batch sums of per-chunk partial sums. advnn__chunk_put stores this chunk's
 * vals[0..c) and returns 1: the pass then pauses until every chunk has stored its own (a barrier in
 * the threads section); on resume advnn__chunk_total replaces vals by the sum over chunks, in chunk
 * order, the same on every chunk whichever thread runs it. Outside a chunked step: 0, vals stay. */
static int advnn__chunk_put(advnn_ws *ws, const double *vals, int c) {
    if (!ws->nck) return 0;
    memcpy(ws->bnpart[ws->nsync & 1] + (size_t)ws->ck * ws->bnld, vals, (size_t)c * sizeof(double));
    ws->paused = 1;
    return 1;
}
static void advnn__chunk_total(advnn_ws *ws, double *vals, int c) {
    const double *part = ws->bnpart[ws->nsync++ & 1];
    int j, k;
    for (j = 0; j < c; j++) {
        double s = 0;
        for (k = 0; k < ws->nck; k++) s += part[(size_t)k * ws->bnld + j];
        vals[j] = s;
    }
}

static void advnn__bn_fwd(advnn_ws *ws, int id, int nb) {
    advnn__node *n = &ws->g->nodes[id];
    int R = nb * n->rows, C = n->cols, j;
    const float *x = ws->out[n->in[0]];
    float *y = ws->out[id], *xh = ws->aux[id], *mean = xh + (size_t)ws->max_batch * n->size;
    float *istd = mean + C;
    const float *gam = advnn__P(ws, n, 0), *bet = advnn__P(ws, n, 1);
    float *rm = advnn__P(ws, n, 2), *rv = advnn__P(ws, n, 3);
    float eps = n->fp[1];
    if (advnn__bn_batch_stats(ws, n)) {
        /* statistics of the whole mini-batch (all chunks): mean first, then squared deviations; in a
         * chunked step each sum pauses the pass (bnstep: where it resumes) */
        double *s = ws->bnacc, Rt = advnn__norm_n(ws, nb) * n->rows;
        float mom = n->fp[0];
        if (ws->bnstep == 0) {
            for (j = 0; j < C; j++) s[j] = 0;
            advnn_bn_sums(R, C, x, C, NULL, s);
            if (advnn__chunk_put(ws, s, C)) { ws->bnstep = 1; return; }
        }
        if (ws->bnstep <= 1) {
            if (ws->bnstep == 1) advnn__chunk_total(ws, s, C);
            for (j = 0; j < C; j++) { s[C + j] = s[j] / Rt; mean[j] = (float)s[C + j]; s[j] = 0; }
            advnn_bn_sums(R, C, x, C, s + C, s);   /* squared deviations from the mean */
            if (advnn__chunk_put(ws, s, C)) { ws->bnstep = 2; return; }
        }
        if (ws->bnstep == 2) advnn__chunk_total(ws, s, C);
        ws->bnstep = 0;
        for (j = 0; j < C; j++) {
            double v = s[j] / Rt;
            istd[j] = (float)(1.0 / sqrt(v + eps));
            if (ws->ck == ws->ck0) {   /* one writer of the running statistics (per MPI rank) */
                rm[j] = (float)((1.0 - mom) * rm[j] + mom * s[C + j]);
                rv[j] = (float)((1.0 - mom) * rv[j] + mom * (Rt > 1 ? s[j] / (Rt - 1) : v));
            }
        }
    } else if (advnn__plan_live(ws) && ws->poff[id] >= 0) {   /* 1/std cached by advnn__iplan (the same values) */
        advnn_bn_rows(R, C, x, C, rm, ws->pbuf + ws->poff[id], gam, bet, NULL, y);
        return;
    } else {
        for (j = 0; j < C; j++) { mean[j] = rm[j]; istd[j] = (float)(1.0 / sqrt((double)rv[j] + eps)); }
    }
    /* xhat is kept for a backward pass; a workspace without gradients (inference) never runs one */
    advnn_bn_rows(R, C, x, C, mean, istd, gam, bet, ws->grads ? xh : NULL, y);
}

static void advnn__concat_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    int R = nb * n->rows, C = n->cols, i, k, off = 0;
    for (k = 0; k < n->n_in; k++) {
        int c = ws->g->nodes[n->in[k]].cols;
        const float *x = ws->out[n->in[k]];
        for (i = 0; i < R; i++) memcpy(ws->out[id] + (size_t)i * C + off, x + (size_t)i * c, (size_t)c * sizeof(float));
        off += c;
    }
}

/* A node whose forward copies its input (dropout outside training, reshape, gradient reversal): in a
 * workspace without gradients (inference) its output is a view of its input instead. No kernel writes
 * into its inputs, nothing reads the node back for a backward, and the view is remade every pass
 * (inputs are views of the caller's rows, slice by slice). With gradients: a copy in its own buffer. */
static void advnn__identity_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    if (!ws->grads) { ws->out[id] = ws->out[n->in[0]]; return; }
    ws->out[id] = ws->in_own[id];
    memcpy(ws->out[id], ws->out[n->in[0]], (size_t)nb * n->size * sizeof(float));
}
static void advnn__dropout_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    size_t cnt = (size_t)nb * n->size, i;
    const float *x = ws->out[n->in[0]];
    float *y, rate = n->fp[0];
    if (!ws->training || rate == 0.0f || !ws->rng) { advnn__identity_fwd(ws, id, nb); return; }
    y = ws->out[id] = ws->in_own[id];
    /* one seed per call from the workspace's stream; the kernel draws the mask (the same on every
     * ISA). The seeds are kept, not the mask: the backward draws it again (advnn_dropout_grad), which
     * costs less than storing it and reading it back (W2's dropouts: 1 MB a chunk each) */
    for (i = 0; i < cnt; i += ADVNN__CALL_MAX) {
        size_t c = cnt - i < ADVNN__CALL_MAX ? cnt - i : ADVNN__CALL_MAX;
        uint64_t seed = advnn__rng_next(ws->rng);
        memcpy(ws->aux[id] + 2 * (i / ADVNN__CALL_MAX), &seed, sizeof seed);
        advnn_dropout_mask((int)c, seed, rate, x + i, y + i, NULL);
    }
}

static double advnn__sigmoid_d(double z) { return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z)); }

/* The mixture-density loss forward: zero-weight rows (e.g. signal under background-only weights)
 * cost nothing; a training pass also keeps each row's gradient (d/d logits, means, widths of its
 * -log p) for the backward. */
ADVNN__NOINL static advnn_status advnn__mdn_loss_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    const int pk = n->ip[1], K = ws->g->nodes[n->in[0]].size / (pk ? 3 : 1), ld = pk ? 3 * K : K;
    const float *a = ws->out[n->in[0]], *u = pk ? a + K : ws->out[n->in[1]], *v = pk ? a + 2 * K : ws->out[n->in[2]];
    const float *mt = ws->out[n->in[pk ? 1 : 3]], *wm = n->n_in == (pk ? 3 : 5) ? ws->out[n->in[pk ? 2 : 4]] : NULL;
    /* any pass on a training workspace may be followed by a backward; rows of weight 0 are not written
     * here (nor read by advnn__mdn_loss_bwd) */
    float *gk = ws->grads ? ws->aux[id] : NULL;
    int ri[ADVNN_MDN_CHUNK], per = ADVNN_MDN_CHUNK / K, R = 0, i, j;
    double mr[ADVNN_MDN_CHUNK], nll[ADVNN_MDN_CHUNK], tot = 0;
    for (i = 0; i <= nb; i++) {   /* chunks of up to `per` rows with a non-zero weight, in row order */
        if (i < nb && (!wm || wm[i] != 0.0f)) { ri[R] = i; mr[R++] = mt[i]; }
        if (R == per || (i == nb && R > 0)) {
            advnn_mdn_nll(R, K, ld, ri, a, u, v, mr, n->ip[0], n->fp[1], gk, nll);   /* the math lives with the kernels */
            for (j = 0; j < R; j++) tot += (wm ? wm[ri[j]] : 1.0) * nll[j];
            R = 0;
        }
    }
    ws->loss[id] = tot / advnn__norm_n(ws, nb);
    if (!isfinite(ws->loss[id])) return advnn__fail(ADVNN_ERR_NAN, "mixture-density loss node %d is %g", id, ws->loss[id]);
    return ADVNN_OK;
}

/* Loss forward: validates targets, stores the value in ws->loss[id]. */
static advnn_status advnn__loss_fwd(advnn_ws *ws, int id, int nb) {
    const advnn_graph *g = ws->g;
    const advnn__node *n = &g->nodes[id], *p = &g->nodes[n->in[0]], *t = &g->nodes[n->in[1]];
    const float *z = ws->out[n->in[0]], *y = ws->out[n->in[1]], *w = n->n_in == 3 ? ws->out[n->in[2]] : NULL;
    double tot = 0;
    int i, j, k;
    if (n->kind == ADVNN__LOSS_MDN) return advnn__mdn_loss_fwd(ws, id, nb);
    if (advnn__is_batch_loss(n->kind)) return advnn__decor_loss_fwd(ws, id, nb);
    for (i = 0; i < nb; i++) {
        double l = 0;
        if (n->kind == ADVNN__LOSS_BCE) {
            for (j = 0; j < p->size; j++) {
                double zz = z[(size_t)i * p->size + j], yy = y[(size_t)i * p->size + j];
                if (!(yy >= 0.0 && yy <= 1.0)) {
                    const char *sn;
                    int64_t row = advnn__user_row(ws, n->in[1], i, &sn);
                    return advnn__fail(ADVNN_ERR_ARG, "binary cross-entropy: target %g in row %lld of the %s is outside [0, 1]", yy, (long long)row, sn);
                }
                l += (zz > 0 ? zz : 0) - zz * yy + log1p(exp(-fabs(zz)));
            }
            l /= p->size;
        } else if (n->kind == ADVNN__LOSS_MSE) {
            for (j = 0; j < p->size; j++) { double d = (double)z[(size_t)i * p->size + j] - y[(size_t)i * p->size + j]; l += d * d; }
            l /= p->size;
        } else { /* categorical CE over the last axis, p->rows rows per sample */
            int K = p->cols, idx = t->size != p->size;
            float *sm = ws->aux[id] + (size_t)i * p->size;
            advnn_softmax_rows(p->rows, K, z + (size_t)i * p->size, K, sm, K);
            for (j = 0; j < p->rows; j++) {
                const float *zr = z + (size_t)i * p->size + (size_t)j * K;
                double mx = zr[0], se = 0, lse;
                for (k = 1; k < K; k++) if (zr[k] > mx) mx = zr[k];
                for (k = 0; k < K; k++) se += exp(zr[k] - mx);
                lse = mx + log(se);
                if (idx) {
                    float c = y[(size_t)i * t->size + j];
                    if (!(c >= 0 && c < K && c == (float)(int)c)) {
                        const char *sn;
                        int64_t row = advnn__user_row(ws, n->in[1], i, &sn);
                        return advnn__fail(ADVNN_ERR_ARG, "categorical cross-entropy: label %g in row %lld of the %s is not a class index in 0..%d",
                                           (double)c, (long long)row, sn, K - 1);
                    }
                    l += lse - zr[(int)c];
                } else {
                    const float *tr = y + (size_t)i * p->size + (size_t)j * K;
                    for (k = 0; k < K; k++) {
                        if (!(tr[k] >= 0.0f && tr[k] <= 1.0f)) {
                            const char *sn;
                            int64_t row = advnn__user_row(ws, n->in[1], i, &sn);
                            return advnn__fail(ADVNN_ERR_ARG, "categorical cross-entropy: target probability %g in row %lld of the %s is outside [0, 1]",
                                               (double)tr[k], (long long)row, sn);
                        }
                        l += tr[k] * (lse - zr[k]);
                    }
                }
            }
            l /= p->rows;
        }
        tot += (w ? w[i] : 1.0) * l;
    }
    ws->loss[id] = tot / advnn__norm_n(ws, nb);
    if (!isfinite(ws->loss[id])) return advnn__fail(ADVNN_ERR_NAN, "loss node %d ('%s') is %g", id, n->name, ws->loss[id]);
    return ADVNN_OK;
}


/* im2col of samples [s0, s0+s) of x into cols ((s*Ho*Wo) x KKC, rows ld apart) */
static void advnn__im2col_chunk(const advnn__cgeom *c, const float *x, int s0, int s, float *cols, int ld) {
    int j;
    for (j = 0; j < s; j++)
        advnn_im2col(c->H, c->W, c->C, c->KH, c->KW, c->SH, c->SW, c->PT, c->PL, c->Ho, c->Wo,
                     x + (size_t)(s0 + j) * c->in_size, cols + (size_t)j * c->Ho * c->Wo * ld, ld);
}

/* Samples [s0, s0+s) one at a time without cols (advnn_conv_implicit: the same values as im2col and
 * advnn__gemm_bias_act, without writing KH*KW copies of the input); 0, nothing done, where the kernel
 * does not apply (the same for every sample of a node). prelu: the slopes of the PReLU node id + 1,
 * whose output the kernel then writes too, from the values it stores (a linear convolution only). */
static int advnn__conv_implicit_chunk(advnn_ws *ws, const advnn__node *n, int id, const advnn__cgeom *c,
                                      const float *x, int s0, int s, const float *prelu) {
    const int act = n->ip[1];
    const size_t P = (size_t)c->Ho * c->Wo, o = (size_t)s0 * P * c->F;
    float *z = advnn__preact(ws, n, id) + o, *y = prelu ? ws->out[id + 1] + o : ws->out[id] + o;
    int j;
    for (j = 0; j < s; j++)
        if (!advnn_conv_implicit(c->H, c->W, c->C, c->KH, c->KW, c->SH, c->SW, c->PT, c->PL, c->Ho, c->Wo,
                                 x + (size_t)(s0 + j) * c->in_size, c->F, advnn__P(ws, n, 0), advnn__P(ws, n, 1),
                                 act == ADVNN_ACT_RELU, prelu, z + j * P * c->F, y + j * P * c->F, ws->scratch))
            return 0;
    if (act != ADVNN_ACT_LINEAR && act != ADVNN_ACT_RELU)
        advnn__act_rows((advnn_act)act, s * (int)P, c->F, z, y, n->fp[0], NULL);
    return 1;
}

/* Returns 1 when it also computed node id + 1, a PReLU of this convolution's output (the conv +
 * PReLU idiom): bias, activation and that PReLU run chunk by chunk, right after each chunk's GEMM,
 * while its output is still in cache, instead of three passes over the whole batch's output, or in
 * the implicit kernel's store (W3's batch-512 inference spent ~8% in that pass). The same operations
 * per element, so the same values. */
static int advnn__conv_fwd(advnn_ws *ws, int id, int nb) {
    const advnn_graph *g = ws->g;
    const advnn__node *n = &g->nodes[id], *nx = id + 1 < g->n_nodes ? &g->nodes[id + 1] : NULL;
    advnn__cgeom c = advnn__conv_geom(g, n);
    const float *x = ws->out[n->in[0]], *w = advnn__P(ws, n, 0);
    int P = c.Ho * c.Wo, s0, s;
    int fuse = !c.pointwise && nx && nx->kind == ADVNN__PRELU && nx->in[0] == id && ws->need[id + 1] && !(ws->keep && ws->keep[id + 1]);
    int kfuse = fuse && n->ip[1] == ADVNN_ACT_LINEAR;   /* in the implicit kernel's store (z = the conv's output) */
    if (c.pointwise) {
        advnn__gemm_bias_act(ws, n, id, x, c.C, w, NULL, advnn__P(ws, n, 1), 0, nb * P);
        return 0;
    }
    for (s0 = 0; s0 < nb; s0 += s) {
        size_t o = (size_t)s0 * P * c.F;
        s = nb - s0 < c.fchunk ? nb - s0 : c.fchunk;
        if (advnn__conv_implicit_chunk(ws, n, id, &c, x, s0, s, kfuse ? advnn__P(ws, nx, 0) : NULL)) {
            if (kfuse) continue;   /* the PReLU too, as the kernel stored each position */
        } else {
            advnn__im2col_chunk(&c, x, s0, s, ws->scratch, c.KKC);
            advnn__gemm_bias_act(ws, n, id, ws->scratch, c.KKC, w, NULL, advnn__P(ws, n, 1), s0 * P, s * P);
        }
        if (fuse) advnn__act_rows(ADVNN_ACT_PRELU, s * P, c.F, ws->out[id] + o, ws->out[id + 1] + o, 0.0f, advnn__P(ws, nx, 0));
    }
    return fuse;
}

static void advnn__pool_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int H, W, C, j;
    advnn__spatial(x, &H, &W, &C);
    for (j = 0; j < nb; j++) {
        const float *xi = ws->out[n->in[0]] + (size_t)j * x->size;
        float *yi = ws->out[id] + (size_t)j * n->size;
        if (n->ip[0]) advnn_avgpool_fwd(H, W, C, n->ip[1], n->ip[2], n->ip[3], n->ip[4], xi, yi);
        else advnn_maxpool_fwd(H, W, C, n->ip[1], n->ip[2], n->ip[3], n->ip[4], xi, yi, (int32_t *)(void *)ws->aux[id] + (size_t)j * n->size);
    }
}

static void advnn__upsample_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int j;
    for (j = 0; j < nb; j++)
        advnn_upsample_fwd(x->shape[0], x->shape[1], x->shape[2], n->ip[0], n->ip[1], ws->out[n->in[0]] + (size_t)j * x->size, ws->out[id] + (size_t)j * n->size);
}

static void advnn__mask_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *x = &ws->g->nodes[ws->g->nodes[id].in[0]];
    int r, k, F = x->shape[1];
    for (r = 0; r < nb * x->shape[0]; r++) {
        const float *xr = ws->out[ws->g->nodes[id].in[0]] + (size_t)r * F;
        float any = 0.0f;
        for (k = 0; k < F; k++) if (xr[k] != 0.0f) { any = 1.0f; break; }
        ws->out[id][r] = any;
    }
}

/* LSTM buffers: activated gates G (nb, T, 4H) batch-major as the input projection makes them; cell
 * states Cs and outputs Hs time-major (T, nb, H) so that each step's state is one contiguous block. */
typedef struct { int T, F, H; float *G, *Cs, *Hs; const float *mask; } advnn__lstm_v;
static advnn__lstm_v advnn__lstm_view(const advnn_ws *ws, int id) {
    const advnn__node *n = &ws->g->nodes[id];
    advnn__lstm_v v;
    v.T = ws->g->nodes[n->in[0]].shape[0]; v.F = ws->g->nodes[n->in[0]].shape[1]; v.H = n->ip[0];
    v.G = ws->aux[id];
    v.Cs = v.G + (size_t)ws->max_batch * v.T * 4 * v.H;
    v.Hs = v.Cs + (size_t)ws->max_batch * v.T * v.H;
    v.mask = n->n_in == 2 ? ws->out[n->in[1]] : NULL;
    return v;
}
static void advnn__mask_column(const float *mask, int T, int t, int nb, float *col) {
    int r;
    for (r = 0; r < nb; r++) col[r] = mask[(size_t)r * T + t];
}
/* scratch layout: zero state, dZ, dh, dh_prev, dc, dc_prev, mask column */
typedef struct { float *zero, *dZ, *dh, *dhp, *dc, *dcp, *mcol; } advnn__lstm_s;
static advnn__lstm_s advnn__lstm_scratch(const advnn_ws *ws, const advnn__lstm_v *v) {
    advnn__lstm_s q;
    size_t B = (size_t)ws->max_batch, sH = advnn__round(B * v->H);
    q.zero = ws->scratch; q.dZ = q.zero + sH;
    q.dh = q.dZ + advnn__round(B * v->T * 4 * v->H);
    q.dhp = q.dh + sH; q.dc = q.dhp + sH; q.dcp = q.dc + sH; q.mcol = q.dcp + sH;
    return q;
}

/* Inference with the weights packed by advnn__iplan: each sample's sequence in one call, its state in
 * cache, the bits of the per-step path on a batch of rows. Weights that stay in L1 (W2's 4 KiB): the
 * kernel projects each step's input itself (no GEMM call, no bias pass, no z rows in memory); larger
 * ones are projected for all rows in one GEMM first (z rows of L values where the per-step path keeps
 * G, Cs, Hs). */
static void advnn__lstm_fwd_packed(advnn_ws *ws, int id, int nb, int L) {
    const advnn__node *n = &ws->g->nodes[id];
    advnn__lstm_v v = advnn__lstm_view(ws, id);
    int T = v.T, F = v.F, H = v.H, fuse = advnn__lstm_fuses(F, H, L);
    const float *Wp = ws->pbuf + ws->poff[id], *Up = Wp + (size_t)F * L, *bp = Wp + advnn__round((size_t)(F + H) * L);
    const float *x = ws->out[n->in[0]];
    float *state = (float *)(uintptr_t)(bp + advnn__round((size_t)L)), *y = ws->out[id];
    if (!fuse) {
        advnn_sgemm(0, 0, nb * T, L, F, 1.0f, x, F, Wp, L, 0.0f, v.G, L, ws->gemm);
        advnn_add_bias(nb * T, L, v.G, L, bp);
    }
    advnn_lstm_seq_fwd(nb, T, F, H, x, Wp, bp, Up, fuse ? NULL : v.G, v.mask, n->ip[1] ? y : NULL,
                       n->ip[1] ? NULL : y, state);
}

static void advnn__lstm_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    advnn__lstm_v v = advnn__lstm_view(ws, id);
    advnn__lstm_s q = advnn__lstm_scratch(ws, &v);
    int T = v.T, H = v.H, H4 = 4 * v.H, t, r, L;
    if (advnn__plan_live(ws) && ws->poff[id] >= 0 && (L = advnn_lstm_packed_width(H)) > 0) {
        advnn__lstm_fwd_packed(ws, id, nb, L);
        return;
    }
    size_t step = (size_t)nb * H;
    const float *W = advnn__P(ws, n, 0), *U = advnn__P(ws, n, 1);
    /* the input projection of every step in one GEMM */
    advnn_sgemm(0, 0, nb * T, H4, v.F, 1.0f, ws->out[n->in[0]], v.F, W, H4, 0.0f, v.G, H4, ws->gemm);
    advnn_add_bias(nb * T, H4, v.G, H4, advnn__P(ws, n, 2));
    memset(q.zero, 0, step * sizeof(float));
    for (t = 0; t < T; t++) {
        float *z = v.G + (size_t)t * H4;
        const float *cp = t ? v.Cs + (t - 1) * step : q.zero, *hp = t ? v.Hs + (t - 1) * step : q.zero;
        if (t) advnn_sgemm(0, 0, nb, H4, H, 1.0f, hp, H, U, H4, 1.0f, z, T * H4, ws->gemm);
        if (v.mask) advnn__mask_column(v.mask, T, t, nb, q.mcol);
        advnn_lstm_cell_fwd(nb, H, z, T * H4, cp, hp, v.Cs + t * step, v.Hs + t * step, H, H, v.mask ? q.mcol : NULL);
    }
    if (!n->ip[1]) { memcpy(ws->out[id], v.Hs + (T - 1) * step, step * sizeof(float)); return; }
    for (r = 0; r < nb; r++)
        for (t = 0; t < T; t++)
            memcpy(ws->out[id] + ((size_t)r * T + t) * H, v.Hs + t * step + (size_t)r * H, (size_t)H * sizeof(float));
}

/* Per-sample mean squared error (optionally its log, floored at 1e-30 inside the log). */
static void advnn__sample_mse_fwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    int D = ws->g->nodes[n->in[0]].size, r, j;
    for (r = 0; r < nb; r++) {
        const float *p = ws->out[n->in[0]] + (size_t)r * D, *t = ws->out[n->in[1]] + (size_t)r * D;
        double e = 0;
        for (j = 0; j < D; j++) { double d = (double)p[j] - t[j]; e += d * d; }
        e /= D;
        ws->out[id][r] = (float)(n->ip[0] ? log(e > 1e-30 ? e : 1e-30) : e);
    }
}

/* Rows node i runs on in this pass: the key rows for the subset (advnn__mark_sub), else all nb. */
static int advnn__node_rows(const advnn_ws *ws, int i, int nb) { return ws->key >= 0 && ws->sub[i] ? ws->nkey : nb; }

/* Standardisation: forward y = (x - offset) * scale; backward (dir 1) dx += dy * scale. */
static void advnn__standardize_rows(advnn_ws *ws, int id, int nb, int dir) {
    const advnn__node *n = &ws->g->nodes[id];
    const float *off = advnn__P(ws, n, 0), *sc = advnn__P(ws, n, 1);
    const float *src = dir ? ws->dout[id] : ws->out[n->in[0]];
    float *dst = dir ? ws->dout[n->in[0]] : ws->out[id];
    size_t r, R = (size_t)nb * n->rows;
    int c, C = n->cols;
    for (r = 0; r < R; r++, src += C, dst += C)
        if (dir) for (c = 0; c < C; c++) dst[c] += src[c] * sc[c];
        else for (c = 0; c < C; c++) dst[c] = (src[c] - off[c]) * sc[c];
}

/* Node i's forward on nb rows (need marks set). Returns 1 when it also computed node i + 1 (the
 * PReLU of a convolution); a loss that fails sets *st. */
static int advnn__node_fwd(advnn_ws *ws, int i, int nb, advnn_status *st) {
    const advnn__node *n = &ws->g->nodes[i];
    switch (n->kind) {
    case ADVNN__INPUT: break;
    case ADVNN__DENSE: advnn__dense_fwd(ws, i, nb); break;
    case ADVNN__ACT:
        advnn__act_rows((advnn_act)n->ip[0], nb * n->rows, n->cols, ws->out[n->in[0]], ws->out[i], n->fp[0], NULL);
        break;
    case ADVNN__PRELU:
        advnn__act_rows(ADVNN_ACT_PRELU, nb * n->rows, n->cols, ws->out[n->in[0]], ws->out[i], 0.0f, advnn__P(ws, n, 0));
        break;
    case ADVNN__DROPOUT: advnn__dropout_fwd(ws, i, nb); break;
    case ADVNN__BATCHNORM: if (!advnn__bn_folded(ws, i)) advnn__bn_fwd(ws, i, nb); break;   /* may pause the pass */
    case ADVNN__CONCAT: advnn__concat_fwd(ws, i, nb); break;
    case ADVNN__CONV: return advnn__conv_fwd(ws, i, nb);   /* and the PReLU after it */
    case ADVNN__POOL: advnn__pool_fwd(ws, i, nb); break;
    case ADVNN__UPSAMPLE: advnn__upsample_fwd(ws, i, nb); break;
    case ADVNN__RESHAPE: advnn__identity_fwd(ws, i, nb); break;
    case ADVNN__LSTM: advnn__lstm_fwd(ws, i, nb); break;
    case ADVNN__MASK: advnn__mask_fwd(ws, i, nb); break;
    case ADVNN__GRAD_REVERSE: advnn__identity_fwd(ws, i, nb); break;
    case ADVNN__SOFTMAX: advnn_softmax_rows(nb * n->rows, n->cols, ws->out[n->in[0]], n->cols, ws->out[i], n->cols); break;
    case ADVNN__SAMPLE_MSE: advnn__sample_mse_fwd(ws, i, nb); break;
    case ADVNN__STANDARDIZE: advnn__standardize_rows(ws, i, nb, 0); break;
    default: *st = advnn__loss_fwd(ws, i, nb);
    }
    return 0;
}

/* A pass on nall rows. In a chunked step it may pause at a BatchNorm (ws->paused; see the threads
 * section); called again it resumes there. */
static advnn_status advnn__forward(advnn_ws *ws, int nall) {
    advnn_graph *g = ws->g;
    int i, nb;
    ws->paused = 0;
    /* a training pass precedes every optimizer update and BatchNorm statistics update: inference
     * workspaces remake their caches after it (one writer: chunk 0) */
    if (ws->grads && ws->ck == 0 && ws->fpos == 0) g->wgen++;
    for (i = ws->fpos; i < g->n_nodes; i++) {
        advnn_status st = ADVNN_OK;
        if (!ws->need[i] || (ws->keep && ws->keep[i])) continue;
        if ((nb = advnn__node_rows(ws, i, nall)) == 0) {   /* no key rows in this slice */
            if (ADVNN__IS_LOSS(g->nodes[i].kind)) ws->loss[i] = 0;
            continue;
        }
        i += advnn__node_fwd(ws, i, nb, &st);
        if (st != ADVNN_OK) { ws->fpos = 0; return st; }
        if (ws->paused) { ws->fpos = i; return ADVNN_OK; }
    }
    ws->fpos = 0;
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- backward */
/* dout[j] ready to add to: zeroed first if nothing has written it in this backward pass */
static float *advnn__dacc(advnn_ws *ws, int j) {
    if (ws->dfresh[j]) {
        memset(ws->dout[j], 0, (size_t)advnn__node_rows(ws, j, ws->bnall) * ws->g->nodes[j].size * sizeof(float));
        ws->dfresh[j] = 0;
    }
    return ws->dout[j];
}
/* For a node whose backward on nb rows writes dout[j] with a GEMM: 1 when it may overwrite (nothing
 * has written dout[j] yet and it covers all of j's rows), else dout[j] is made ready to add to. */
static int advnn__dfirst(advnn_ws *ws, int j, int nb) {
    if (ws->dfresh[j] && advnn__node_rows(ws, j, ws->bnall) == nb) { ws->dfresh[j] = 0; return 1; }
    advnn__dacc(ws, j);
    return 0;
}
/* the nodes whose backward handles its input's dout itself (advnn__dfirst) */
static int advnn__writes_dx(const advnn__node *n) {
    return (n->kind == ADVNN__DENSE && !n->ip[2]) || n->kind == ADVNN__LSTM || n->kind == ADVNN__CONV ||
           n->kind == ADVNN__ACT || n->kind == ADVNN__PRELU || n->kind == ADVNN__DROPOUT || n->kind == ADVNN__RESHAPE ||
           n->kind == ADVNN__GRAD_REVERSE || n->kind == ADVNN__BATCHNORM || n->kind == ADVNN__LOSS_MDN;
}
/* dout[j] += s * src, cnt floats; the first contribution is written as it would be added to zeros,
 * without zeroing dout[j] first or reading it (W3's PReLUs) */
static void advnn__dadd(advnn_ws *ws, int j, int nb, size_t cnt, float s, const float *src) {
    float *dst = ws->dout[j];
    int first = advnn__dfirst(ws, j, nb);
    size_t o, c;
    for (o = 0; o < cnt; o += c) {
        c = cnt - o < ADVNN__CALL_MAX ? cnt - o : ADVNN__CALL_MAX;
        if (first) advnn_axpy_set((int)c, s, src + o, dst + o);
        else advnn_axpy((int)c, s, src + o, 1, dst + o, 1);
    }
}

/* dout[in] (+)= dout[id] .* the mask of the forward, drawn again from its seeds */
static void advnn__dropout_bwd(advnn_ws *ws, int id, int nb, size_t cnt) {
    const advnn__node *n = &ws->g->nodes[id];
    int add = !advnn__dfirst(ws, n->in[0], nb);
    size_t o, c;
    for (o = 0; o < cnt; o += c) {
        uint64_t seed;
        c = cnt - o < ADVNN__CALL_MAX ? cnt - o : ADVNN__CALL_MAX;
        memcpy(&seed, ws->aux[id] + 2 * (o / ADVNN__CALL_MAX), sizeof seed);
        advnn_dropout_grad((int)c, seed, n->fp[0], ws->dout[id] + o, ws->dout[n->in[0]] + o, add);
    }
}

static void advnn__dense_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int rows = nb * x->rows, K = x->cols, U = n->cols, act = n->ip[1];
    float *dz = ws->dout[id];
    const float *W = advnn__P(ws, n, 0);
    if (act != ADVNN_ACT_LINEAR)
        advnn__act_bwd_rows((advnn_act)act, rows, U, advnn__preact(ws, n, id), ws->out[id], dz, dz, n->fp[0], NULL, NULL);
    if (n->ip[2]) W = ws->aux[id] + (advnn__z_kept(n) ? (size_t)ws->max_batch * n->size : 0);  /* W / sigma */
    if (advnn__group_on(ws, n->group)) {
        if (n->ip[2]) {
            /* d/dW of (W / u^T W v) applied to G = dL/d(W/sigma): (G - <G, W/sigma> u v^T) / sigma */
            float *G = ws->scratch, *gw = advnn__G(ws, n, 0);
            const float *u = advnn__P(ws, n, 2), *v = advnn__P(ws, n, 3);
            double dot = 0, isig = 1.0 / W[(size_t)K * U];
            int i, j;
            advnn_sgemm(1, 0, K, U, rows, 1.0f, ws->out[n->in[0]], K, dz, U, 0.0f, G, U, ws->gemm);
            for (i = 0; i < K * U; i++) dot += (double)G[i] * W[i];
            for (i = 0; i < K; i++)
                for (j = 0; j < U; j++) gw[(size_t)i * U + j] += (float)((G[(size_t)i * U + j] - dot * u[i] * v[j]) * isig);
        } else advnn_sgemm(1, 0, K, U, rows, 1.0f, ws->out[n->in[0]], K, dz, U, 1.0f, advnn__G(ws, n, 0), U, ws->gemm);
        advnn__colsum_rows(rows, U, dz, advnn__G(ws, n, 1));
    }
    if (ws->needg[n->in[0]]) {
        float beta = n->ip[2] || !advnn__dfirst(ws, n->in[0], nb) ? 1.0f : 0.0f;
        const float *P = ws->wpk ? ws->wpk[2 * id + 1] : NULL;   /* W^T packed for all chunks, or NULL */
        advnn_sgemm_p(0, 1, rows, K, U, 1.0f, dz, U, W, U, P, beta, ws->dout[n->in[0]], K, ws->gemm);
    }
}

static void advnn__bn_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    int R = nb * n->rows, C = n->cols, i, j, first;
    const float *dy = ws->dout[id], *xh = ws->aux[id], *gam = advnn__P(ws, n, 0);
    const float *istd = ws->aux[id] + (size_t)ws->max_batch * n->size + C;
    float *dx = ws->needg[n->in[0]] ? ws->dout[n->in[0]] : NULL;
    int on = advnn__group_on(ws, n->group), bs = advnn__bn_batch_stats(ws, n);
    double *s = ws->bnacc, Rt = advnn__norm_n(ws, nb) * n->rows;   /* s[j] = sum dy, s[C + j] = sum dy * xhat */
    if (ws->bnstep == 0) {
        for (j = 0; j < 2 * C; j++) s[j] = 0;
        advnn_bn_sums2(R, C, dy, xh, C, s);
        if (on) for (j = 0; j < C; j++) { advnn__G(ws, n, 0)[j] += (float)s[C + j]; advnn__G(ws, n, 1)[j] += (float)s[j]; }
        if (!dx) return;
        /* the whole batch's sums: every row's mean and variance depend on them (a chunked step pauses) */
        if (bs && advnn__chunk_put(ws, s, 2 * C)) { ws->bnstep = 1; return; }
    } else {
        advnn__chunk_total(ws, s, 2 * C);
        ws->bnstep = 0;
    }
    first = advnn__dfirst(ws, n->in[0], nb);   /* written as onto zeros, or added to what is there */
    if (bs) {
        for (j = 0; j < C; j++) s[2 * C + j] = (double)gam[j] * istd[j] / Rt;
        (first ? advnn_bn_bwd_dx_set : advnn_bn_bwd_dx)(R, C, dy, xh, C, s + 2 * C, Rt, s, dx);
    } else
        for (j = 0; j < C; j++) {
            float k = gam[j] * istd[j];
            for (i = 0; i < R; i++) dx[(size_t)i * C + j] = (first ? 0.0f : dx[(size_t)i * C + j]) + k * dy[(size_t)i * C + j];
        }
}

/* The mixture-density loss hands each head the gradient its forward kept (aux: 3K floats per row),
 * scaled by the row's weight; the first contribution to a head is written as it would be added to
 * zeros (advnn_axpy_set), rows of weight 0 then written as zeros. Its other inputs get no gradient. */
static void advnn__mdn_loss_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    const int packed = n->ip[1], nh = packed ? 1 : 3, K = ws->g->nodes[n->in[0]].size / (packed ? 3 : 1);
    const size_t ld = packed ? 3 * (size_t)K : (size_t)K;   /* a head's floats per row */
    const float *wm = n->n_in == nh + 2 ? ws->out[n->in[nh + 1]] : NULL;
    const double nn = advnn__norm_n(ws, nb);
    float *d[3];
    int i, h, first[3];
    for (h = 0; h < n->n_in; h++)   /* no gradient: the target and weight always, the heads at weight 0 */
        if (ws->needg[n->in[h]] && (h >= nh || n->fp[0] == 0.0)) advnn__dacc(ws, n->in[h]);
    if (n->fp[0] == 0.0) return;
    for (h = 0; h < 3; h++) {   /* part h of a row (a, u, v): its own head, or a third of the packed one */
        int j = n->in[packed ? 0 : h];
        first[h] = !ws->needg[j] ? -1 : packed && h ? first[0] : advnn__dfirst(ws, j, nb);
        d[h] = first[h] < 0 ? NULL : ws->dout[j] + (packed ? (size_t)h * K : 0);
    }
    for (i = 0; i < nb; i++) {
        const float *gk = ws->aux[id] + (size_t)3 * K * i;   /* this row's gradient: (a, u, v) x K */
        float sc = (float)(n->fp[0] * (wm ? wm[i] : 1.0) / nn);
        for (h = 0; h < 3; h++) {
            float *dr;
            if (!d[h]) continue;   /* a head that needs no gradient */
            dr = d[h] + ld * i;
            if (wm && wm[i] == 0.0f) { if (first[h]) memset(dr, 0, (size_t)K * sizeof(float)); }
            else if (first[h]) advnn_axpy_set(K, sc, gk + h * K, dr);
            else advnn_axpy(K, sc, gk + h * K, 1, dr, 1);
        }
    }
}

static void advnn__loss_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *p = &ws->g->nodes[n->in[0]], *t = &ws->g->nodes[n->in[1]];
    const float *z = ws->out[n->in[0]], *y = ws->out[n->in[1]], *w = n->n_in == 3 ? ws->out[n->in[2]] : NULL;
    float *dz = ws->dout[n->in[0]];
    int i, j, k;
    double coef = n->fp[0];
    if (advnn__is_batch_loss(n->kind)) { advnn__decor_loss_bwd(ws, id, nb); return; }
    if (n->kind == ADVNN__LOSS_MDN) { advnn__mdn_loss_bwd(ws, id, nb); return; }
    if (!ws->needg[n->in[0]] || coef == 0.0) return;
    for (i = 0; i < nb; i++) {
        double s = coef * (w ? w[i] : 1.0) / advnn__norm_n(ws, nb);
        size_t o = (size_t)i * p->size;
        if (n->kind == ADVNN__LOSS_BCE) {
            s /= p->size;
            for (j = 0; j < p->size; j++) dz[o + j] += (float)(s * (advnn__sigmoid_d(z[o + j]) - y[o + j]));
        } else if (n->kind == ADVNN__LOSS_MSE) {
            s *= 2.0 / p->size;
            for (j = 0; j < p->size; j++) dz[o + j] += (float)(s * ((double)z[o + j] - y[o + j]));
        } else {
            int K = p->cols, idx = t->size != p->size;
            const float *sm = ws->aux[id] + o;
            s /= p->rows;
            for (j = 0; j < p->rows; j++) {
                const float *pr = sm + (size_t)j * K;
                float *dr = dz + o + (size_t)j * K;
                if (idx) {
                    int c = (int)y[(size_t)i * t->size + j];
                    for (k = 0; k < K; k++) dr[k] += (float)(s * (pr[k] - (k == c ? 1.0 : 0.0)));
                } else {
                    const float *tr = y + o + (size_t)j * K;
                    double st = 0;
                    for (k = 0; k < K; k++) st += tr[k];
                    for (k = 0; k < K; k++) dr[k] += (float)(s * (pr[k] * st - tr[k]));
                }
            }
        }
    }
}

/* advnn_conv_dgrad against the dcols GEMM + col2im (which also needs dx zeroed first), per image, best
 * of 50 (bench/README.md): 1.1-1.4x as fast on each of W3's layers, 2x on its 1-filter output layer;
 * at 40x40x10, F = 12 even, 16 1.13x, 32 1.00x, and at 20x20 with 12 channels, 32 filters 0.88x. */
#define ADVNN__DGRAD_MAX_F 10
static void advnn__conv_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    advnn__cgeom c = advnn__conv_geom(ws->g, n);
    const float *x = ws->out[n->in[0]], *w = advnn__P(ws, n, 0);
    float *dz = ws->dout[id], *dx = ws->needg[n->in[0]] ? ws->dout[n->in[0]] : NULL;
    int P = c.Ho * c.Wo, on = advnn__group_on(ws, n->group), s0, s, j;
    if (n->ip[1] != ADVNN_ACT_LINEAR)
        advnn__act_bwd_rows((advnn_act)n->ip[1], nb * P, c.F, advnn__preact(ws, n, id), ws->out[id], dz, dz, n->fp[0], NULL, NULL);
    if (on) advnn__colsum_rows(nb * P, c.F, dz, advnn__G(ws, n, 1));
    if (c.pointwise) {
        if (on) advnn_sgemm(1, 0, c.C, c.F, nb * P, 1.0f, x, c.C, dz, c.F, 1.0f, advnn__G(ws, n, 0), c.F, ws->gemm);
        if (dx) advnn_sgemm(0, 1, nb * P, c.C, c.F, 1.0f, dz, c.F, w, c.F, advnn__dfirst(ws, n->in[0], nb) ? 0.0f : 1.0f,
                            dx, c.C, ws->gemm);
        return;
    }
    if (dx) {   /* the input gradient first written by advnn_conv_dgrad where it gains, else col2im adds below */
        if (c.F <= ADVNN__DGRAD_MAX_F && advnn_conv_dgrad_ok(c.H, c.W, c.C, c.KH, c.KW, c.SH, c.SW, c.PT, c.PL, c.Ho, c.Wo,
                                                             nb, c.F, w) && advnn__dfirst(ws, n->in[0], nb)) {
            advnn_conv_dgrad(c.H, c.W, c.C, c.KH, c.KW, c.SH, c.SW, c.PT, c.PL, c.Ho, c.Wo, dz, nb, c.F, w, dx, ws->scratch);
            dx = NULL;
        } else advnn__dacc(ws, n->in[0]);
    }
    for (s0 = 0; s0 < nb; s0 += s) {
        int ce = c.chunk < ws->max_batch ? c.chunk : ws->max_batch;   /* the scratch holds two chunks */
        float *cols = ws->scratch, *dcols = ws->scratch + advnn__round((size_t)ce * P * c.ldk);
        const float *dzc = dz + (size_t)s0 * P * c.F;
        s = nb - s0 < c.chunk ? nb - s0 : c.chunk;
        if (on && !advnn_conv_wgrad(c.H, c.W, c.C, c.KH, c.KW, c.SH, c.SW, c.PT, c.PL, c.Ho, c.Wo,
                                    x + (size_t)s0 * c.in_size, s, dzc, c.F, advnn__G(ws, n, 0), cols)) {
            advnn__im2col_chunk(&c, x, s0, s, cols, c.ldk);
            advnn_sgemm(1, 0, c.KKC, c.F, s * P, 1.0f, cols, c.ldk, dzc, c.F, 1.0f, advnn__G(ws, n, 0), c.F, ws->gemm);
        }
        if (!dx) continue;
        for (j = 0; j < s; j++) {   /* image by image, so that col2im reads dcols from L2 (same sums: K = F) */
            advnn_sgemm(0, 1, P, c.KKC, c.F, 1.0f, dzc + (size_t)j * P * c.F, c.F, w, c.F, 0.0f, dcols, c.ldk, ws->gemm);
            advnn_col2im(c.H, c.W, c.C, c.KH, c.KW, c.SH, c.SW, c.PT, c.PL, c.Ho, c.Wo, dcols, c.ldk,
                         dx + (size_t)(s0 + j) * c.in_size);
        }
    }
}

static void advnn__pool_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int H, W, C, j;
    if (!ws->needg[n->in[0]]) return;
    advnn__spatial(x, &H, &W, &C);
    for (j = 0; j < nb; j++) {
        const float *dy = ws->dout[id] + (size_t)j * n->size;
        float *dx = ws->dout[n->in[0]] + (size_t)j * x->size;
        if (n->ip[0]) advnn_avgpool_bwd(H, W, C, n->ip[1], n->ip[2], n->ip[3], n->ip[4], dy, dx);
        else advnn_maxpool_bwd(n->ndim == 2 ? 1 : n->shape[0], n->ndim == 2 ? n->shape[0] : n->shape[1], C, dy,
                               (const int32_t *)(const void *)ws->aux[id] + (size_t)j * n->size, dx);
    }
}

static void advnn__upsample_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id], *x = &ws->g->nodes[n->in[0]];
    int j;
    if (!ws->needg[n->in[0]]) return;
    for (j = 0; j < nb; j++)
        advnn_upsample_bwd(x->shape[0], x->shape[1], x->shape[2], n->ip[0], n->ip[1], ws->dout[id] + (size_t)j * n->size, ws->dout[n->in[0]] + (size_t)j * x->size);
}

static void advnn__lstm_bwd(advnn_ws *ws, int id, int nb) {
    const advnn__node *n = &ws->g->nodes[id];
    advnn__lstm_v v = advnn__lstm_view(ws, id);
    advnn__lstm_s q = advnn__lstm_scratch(ws, &v);
    int T = v.T, H = v.H, H4 = 4 * v.H, t, r, k, on = advnn__group_on(ws, n->group);
    size_t step = (size_t)nb * H;
    const float *U = advnn__P(ws, n, 1), *dout = ws->dout[id];
    float *sw;
    memset(q.zero, 0, step * sizeof(float));
    memset(q.dhp, 0, step * sizeof(float));
    memset(q.dc, 0, step * sizeof(float));
    for (t = T - 1; t >= 0; t--) {
        float *dz = q.dZ + (size_t)t * H4;
        /* total gradient of h_t: from the layer above and from step t+1 */
        for (r = 0; r < nb; r++) {
            float *d = q.dh + (size_t)r * H;
            const float *from = q.dhp + (size_t)r * H;
            const float *o = n->ip[1] ? dout + ((size_t)r * T + t) * H : (t == T - 1 ? dout + (size_t)r * H : NULL);
            for (k = 0; k < H; k++) d[k] = from[k] + (o ? o[k] : 0.0f);
        }
        if (v.mask) advnn__mask_column(v.mask, T, t, nb, q.mcol);
        advnn_lstm_cell_bwd(nb, H, v.G + (size_t)t * H4, T * H4, t ? v.Cs + (t - 1) * step : q.zero, v.Cs + t * step,
                            q.dh, q.dc, dz, q.dcp, q.dhp, H, H, v.mask ? q.mcol : NULL);
        if (t) {   /* the recurrent path into h_{t-1}, and dU += h_{t-1}^T dz */
            advnn_sgemm(0, 1, nb, H, H4, 1.0f, dz, T * H4, U, H4, 1.0f, q.dhp, H, ws->gemm);
            if (on) advnn_sgemm(1, 0, H, H4, nb, 1.0f, v.Hs + (t - 1) * step, H, dz, T * H4, 1.0f, advnn__G(ws, n, 1), H4, ws->gemm);
        }
        sw = q.dc; q.dc = q.dcp; q.dcp = sw;
    }
    if (on) {
        advnn_sgemm(1, 0, v.F, H4, nb * T, 1.0f, ws->out[n->in[0]], v.F, q.dZ, H4, 1.0f, advnn__G(ws, n, 0), H4, ws->gemm);
        advnn_col_sums(nb * T, H4, q.dZ, H4, advnn__G(ws, n, 2));
    }
    if (ws->needg[n->in[0]])
        advnn_sgemm(0, 1, nb * T, v.F, H4, 1.0f, q.dZ, H4, advnn__P(ws, n, 0), H4, advnn__dfirst(ws, n->in[0], nb) ? 0.0f : 1.0f,
                    ws->dout[n->in[0]], v.F, ws->gemm);
}

/* Over the parameter gradients of the groups being trained (ws->group_on; padding between blocks
 * included) within [a, e): zeroes dst when src is NULL, else adds src to dst. Nothing reads the other
 * groups' gradients, and with several chunks per step the zeroing and the reduction of a frozen
 * group cost as much as a small chunk's arithmetic (W1's adversary update trains 4k of 13.5k). */
static void advnn__pgrad_runs(const advnn_ws *ws, float *dst, const float *src, int64_t a, int64_t e) {
    const advnn_graph *g = ws->g;
    int k = 0, m;
    while (k < g->n_par) {
        int64_t lo, hi;
        if (!advnn__group_on(ws, g->par[k].group)) { k++; continue; }
        for (m = k + 1; m < g->n_par && advnn__group_on(ws, g->par[m].group); m++) {}
        lo = g->par[k].off > a ? g->par[k].off : a;
        hi = m < g->n_par ? g->par[m].off : g->n_params;
        hi = hi < e ? hi : e;
        if (hi > lo) {
            if (!src) memset(dst + lo, 0, (size_t)(hi - lo) * sizeof(float));
            else advnn_axpy((int)(hi - lo), 1.0f, src + lo, 1, dst + lo, 1);   /* exactly dst + src */
        }
        k = m;
    }
}

/* Pauses and resumes like advnn__forward (ws->bpos: 1 + the BatchNorm node to resume at). */
static void advnn__backward(advnn_ws *ws, int nall) {
    advnn_graph *g = ws->g;
    int i, k, nb, from = g->n_nodes - 1;
    ws->paused = 0;
    if (ws->bpos) {   /* resume: the rest of that BatchNorm's backward, then on down */
        from = ws->bpos - 1;
        advnn__bn_bwd(ws, from, advnn__node_rows(ws, from, nall));
        ws->bpos = 0;
        from--;
    } else {
        /* dout is zeroed when first added to (advnn__dacc), not up front: the input-gradient GEMMs of
         * dense, 1x1-convolution and LSTM nodes write the first contribution instead (advnn__dfirst),
         * which saves a pass over each of those buffers and the GEMM's read of it */
        ws->bnall = nall;
        for (i = 0; i < g->n_nodes; i++) ws->dfresh[i] = ws->needg[i];
        advnn__pgrad_runs(ws, ws->pgrad, NULL, 0, g->n_params);   /* only the groups being trained */
    }
    for (i = from; i >= 0; i--) {
        const advnn__node *n = &g->nodes[i];
        size_t cnt;
        if (!ws->need[i] || (nb = advnn__node_rows(ws, i, nall)) == 0) continue;
        cnt = (size_t)nb * n->size;
        if (!ADVNN__IS_LOSS(n->kind)) {
            if (!ws->needg[i]) continue;
            advnn__dacc(ws, i);   /* no consumer wrote it: the gradient is 0 */
        }
        if (!advnn__writes_dx(n))
            for (k = 0; k < n->n_in; k++)
                if (ws->needg[n->in[k]]) advnn__dacc(ws, n->in[k]);
        if (ADVNN__IS_LOSS(n->kind)) { advnn__loss_bwd(ws, i, nb); continue; }
        switch (n->kind) {
        case ADVNN__DENSE: advnn__dense_bwd(ws, i, nb); break;
        case ADVNN__ACT:
            advnn__act_bwd_rows((advnn_act)n->ip[0], nb * n->rows, n->cols, ws->out[n->in[0]], ws->out[i], ws->dout[i], ws->dout[i],
                                n->fp[0], NULL, NULL);
            if (ws->needg[n->in[0]]) advnn__dadd(ws, n->in[0], nb, cnt, 1.0f, ws->dout[i]);
            break;
        case ADVNN__PRELU:
            advnn__act_bwd_rows(ADVNN_ACT_PRELU, nb * n->rows, n->cols, ws->out[n->in[0]], ws->out[i], ws->dout[i], ws->dout[i],
                                0.0f, advnn__P(ws, n, 0), advnn__group_on(ws, n->group) ? advnn__G(ws, n, 0) : NULL);
            if (ws->needg[n->in[0]]) advnn__dadd(ws, n->in[0], nb, cnt, 1.0f, ws->dout[i]);
            break;
        case ADVNN__DROPOUT:
            if (!ws->needg[n->in[0]]) break;
            if (ws->training && n->fp[0] > 0.0f && ws->rng) advnn__dropout_bwd(ws, i, nb, cnt);
            else advnn__dadd(ws, n->in[0], nb, cnt, 1.0f, ws->dout[i]);
            break;
        case ADVNN__BATCHNORM:
            advnn__bn_bwd(ws, i, nb);
            if (ws->paused) { ws->bpos = i + 1; return; }
            break;
        case ADVNN__CONV: advnn__conv_bwd(ws, i, nb); break;
        case ADVNN__POOL: advnn__pool_bwd(ws, i, nb); break;
        case ADVNN__UPSAMPLE: advnn__upsample_bwd(ws, i, nb); break;
        case ADVNN__RESHAPE:
            if (ws->needg[n->in[0]]) advnn__dadd(ws, n->in[0], nb, cnt, 1.0f, ws->dout[i]);
            break;
        case ADVNN__LSTM: advnn__lstm_bwd(ws, i, nb); break;
        case ADVNN__GRAD_REVERSE:
            if (ws->needg[n->in[0]]) advnn__dadd(ws, n->in[0], nb, cnt, -n->fp[0], ws->dout[i]);
            break;
        case ADVNN__STANDARDIZE: if (ws->needg[n->in[0]]) advnn__standardize_rows(ws, i, nb, 1); break;
        case ADVNN__SAMPLE_MSE: {   /* d e / d p = 2 (p - t) / D; with the log, divided by e */
            int D = g->nodes[n->in[0]].size, r, j;
            float *dp = ws->needg[n->in[0]] ? ws->dout[n->in[0]] : NULL, *dt = ws->needg[n->in[1]] ? ws->dout[n->in[1]] : NULL;
            for (r = 0; r < nb; r++) {
                const float *p = ws->out[n->in[0]] + (size_t)r * D, *t = ws->out[n->in[1]] + (size_t)r * D;
                double k = 2.0 * ws->dout[i][r] / D;
                if (n->ip[0]) {
                    double e = 0;
                    for (j = 0; j < D; j++) { double d = (double)p[j] - t[j]; e += d * d; }
                    e /= D;
                    k = e > 1e-30 ? k / e : 0.0;   /* below the floor the log is constant */
                }
                for (j = 0; j < D; j++) {
                    float gj = (float)(k * ((double)p[j] - t[j]));
                    if (dp) dp[(size_t)r * D + j] += gj;
                    if (dt) dt[(size_t)r * D + j] -= gj;
                }
            }
            break;
        }
        case ADVNN__SOFTMAX: {   /* dx = y * (dy - sum(dy * y)) per row */
            int r, R = nb * n->rows, C = n->cols, c;
            if (!ws->needg[n->in[0]]) break;
            for (r = 0; r < R; r++) {
                const float *y = ws->out[i] + (size_t)r * C, *dy = ws->dout[i] + (size_t)r * C;
                float *dx = ws->dout[n->in[0]] + (size_t)r * C;
                double sdy = 0;
                for (c = 0; c < C; c++) sdy += (double)dy[c] * y[c];
                for (c = 0; c < C; c++) dx[c] += (float)(y[c] * (dy[c] - sdy));
            }
            break;
        }
        case ADVNN__CONCAT: {
            int R = nb * n->rows, C = n->cols, r, off = 0;
            for (k = 0; k < n->n_in; k++) {
                int c = g->nodes[n->in[k]].cols;
                if (ws->needg[n->in[k]])
                    for (r = 0; r < R; r++) advnn_axpy(c, 1.0f, ws->dout[i] + (size_t)r * C + off, 1, ws->dout[n->in[k]] + (size_t)r * c, 1);
                off += c;
            }
            break;
        }
        default: break;
        }
    }
    for (i = 0; i < g->n_nodes; i++) advnn__dacc(ws, i);   /* gradients nothing reached (inputs' included) */
}

/* ---------------------------------------------------------------- datasets */
struct advnn__npyfile;   /* a file-backed column (section "datasets on disk") */
struct advnn__ooc;
typedef struct { char name[ADVNN__NAME_MAX]; const advnn_tensor *t; struct advnn__npyfile *file; } advnn__dcol;
struct advnn_dataset {
    advnn__dcol *cols; int n, cap; int64_t rows;
    struct advnn__ooc *ooc;          /* window buffers when a column is file-backed, else NULL */
    int64_t window_rows, chunk_rows;
};
static void advnn__ooc_free(advnn_dataset *d);

ADVNN_DEF advnn_dataset *advnn_dataset_new(void) {
    advnn_dataset *d = (advnn_dataset *)ADVNN_MALLOC(sizeof *d);
    if (!d) { advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_new: out of memory"); return NULL; }
    memset(d, 0, sizeof *d);
    d->rows = -1;
    d->window_rows = 65536; d->chunk_rows = 1024;
    return d;
}
ADVNN_DEF void advnn_dataset_free(advnn_dataset *d) { if (d) { advnn__ooc_free(d); ADVNN_FREE(d->cols); ADVNN_FREE(d); } }
ADVNN_DEF int64_t advnn_dataset_size(const advnn_dataset *d) { return d && d->rows > 0 ? d->rows : 0; }

ADVNN_DEF advnn_status advnn_dataset_add(advnn_dataset *d, const char *name, const advnn_tensor *t) {
    int64_t i, per;
    int k;
    if (!d || !t || !advnn__valid_name(name)) return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_add: NULL dataset/tensor or bad name");
    if (t->ndim < 1 || t->shape[0] < 1) return advnn__fail(ADVNN_ERR_SHAPE, "advnn_dataset_add '%s': tensor needs a first (sample) dimension >= 1", name);
    if (d->rows >= 0 && t->shape[0] != d->rows)
        return advnn__fail(ADVNN_ERR_SHAPE, "advnn_dataset_add '%s': %lld rows, the dataset has %lld", name, (long long)t->shape[0], (long long)d->rows);
    for (k = 0; k < d->n; k++) if (strcmp(d->cols[k].name, name) == 0) return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_add: '%s' added twice", name);
    per = t->size / t->shape[0];
    for (i = 0; i < t->size; i++)
        if (!isfinite(t->data[i]))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_dataset_add '%s': value %g at row %lld, column %lld is not finite",
                               name, (double)t->data[i], (long long)(i / per), (long long)(i % per));
    if (!advnn__grow((void **)&d->cols, &d->cap, d->n + 1, sizeof *d->cols)) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_add: out of memory");
    snprintf(d->cols[d->n].name, ADVNN__NAME_MAX, "%s", name);
    d->cols[d->n].file = NULL;
    d->cols[d->n++].t = t;
    d->rows = t->shape[0];
    return ADVNN_OK;
}

/* The tensor for input node id, checked against its per-sample shape. */
static advnn_status advnn__dcol_for(const advnn_graph *g, const advnn_dataset *d, int id, const advnn_tensor **out) {
    const advnn__node *n = &g->nodes[id];
    int k, j;
    for (k = 0; k < d->n; k++) {
        const advnn_tensor *t = d->cols[k].t;
        int ok;
        if (strcmp(d->cols[k].name, n->name) != 0) continue;
        ok = t->size / t->shape[0] == n->size;
        if (ok && t->ndim - 1 == n->ndim) for (j = 0; j < n->ndim; j++) ok &= t->shape[j + 1] == n->shape[j];
        else if (ok) ok = t->ndim == 1 && n->size == 1;
        if (!ok) {
            char buf[96], want[48];
            int len = 0, wl = 0;
            for (j = 1; j < t->ndim && len < 80; j++) len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%lld", j > 1 ? ", " : "", (long long)t->shape[j]);
            for (j = 0; j < n->ndim; j++) wl += snprintf(want + wl, sizeof want - (size_t)wl, "%s%d", j ? ", " : "", n->shape[j]);
            buf[len] = 0;
            return advnn__fail(ADVNN_ERR_SHAPE, "input '%s' expects per-sample shape (%s) = %d values; the data has per-sample shape (%s)%s",
                               n->name, want, n->size, buf, t->size / t->shape[0] == n->size ? " (same count: reshape the array)" : "");
        }
        *out = t;
        return ADVNN_OK;
    }
    return advnn__fail(ADVNN_ERR_ARG, "the data has no tensor for input '%s'", n->name);
}

static int advnn__has_col(const advnn_dataset *d, const char *name) {
    int k;
    for (k = 0; d && k < d->n; k++) if (strcmp(d->cols[k].name, name) == 0) return 1;
    return 0;
}

/* The stream input node id is read from: d, or d2 (rows idx2) for an input d lacks. */
static advnn_status advnn__stream_col(const advnn_graph *g, int id, const advnn_dataset *d, const int64_t **idx,
                                      const advnn_dataset *d2, const int64_t *idx2, const advnn_tensor **t) {
    advnn_status st;
    if (d2 && d2 != d && !advnn__has_col(d, g->nodes[id].name) && advnn__has_col(d2, g->nodes[id].name)) { d = d2; *idx = idx2; }
    if ((st = advnn__dcol_for(g, d, id, t)) == ADVNN_OK && !(*t)->data)   /* a file-backed column: read in windows only */
        return advnn__fail(ADVNN_ERR_STATE, "input '%s' is read from a file (advnn_dataset_add_npy_file): advnn_fit, advnn_adv_fit, advnn_evaluate "
                           "and advnn_predict read such data in windows; advnn_train_step, advnn_adv_step and adv_data need it in memory", g->nodes[id].name);
    return st;
}

static advnn_status advnn__bad_row(int64_t row, const advnn_tensor *t) {
    return advnn__fail(ADVNN_ERR_ARG, "row index %lld outside 0..%lld", (long long)row, (long long)t->shape[0] - 1);
}

/* With a row key (advnn__mark_sub): the rows idx[0..nb) (with idx2, in pairs) reordered so that
 * those with a non-zero key come first, each part in its original order, into ws->perm; ws->nkey =
 * how many. Without zero keys the order stays as it is. */
static advnn_status advnn__partition(advnn_ws *ws, const advnn_dataset *d, const int64_t **idx, int64_t start, int nb,
                                     const advnn_dataset *d2, const int64_t **idx2) {
    const advnn_tensor *t;
    const int64_t *ix = *idx;
    int64_t *p1, *p2;
    int r, c = 0, f = 0, z;
    advnn_status st;
    ws->nkey = nb; ws->part = 0;
    if (ws->key < 0 || !ws->perm) return ADVNN_OK;   /* inference workspaces have no perm */
    p1 = ws->perm; p2 = ws->perm + ws->max_batch;
    if (!advnn__has_col(d, ws->g->nodes[ws->key].name) && !advnn__has_col(d2, ws->g->nodes[ws->key].name))
        return ADVNN_OK;   /* then no pass can read it: the order stays (the input's own gather reports a need) */
    if ((st = advnn__stream_col(ws->g, ws->key, d, &ix, d2, *idx2, &t)) != ADVNN_OK) return st;
    for (r = 0; r < nb; r++) {
        int64_t row = ix ? ix[r] : start + r;
        if (row < 0 || row >= t->shape[0]) return advnn__bad_row(row, t);
        c += t->data[row] != 0.0f;
    }
    ws->nkey = c;
    if (c == nb) return ADVNN_OK;
    ws->part = 1;
    for (r = 0, z = c; r < nb; r++) {
        int dst = t->data[ix ? ix[r] : start + r] != 0.0f ? f++ : z++;
        p1[dst] = *idx ? (*idx)[r] : start + r;
        if (*idx2) p2[dst] = (*idx2)[r];
    }
    *idx = p1;
    if (*idx2) *idx2 = p2;
    return ADVNN_OK;
}

/* Copies rows idx[0..nb) (or start..start+nb when idx is NULL) of every needed input into ws. An
 * input that d lacks comes from rows idx2 of the second stream d2 (the adversary's control region).
 * With a row key the rows are first reordered (advnn__partition). */
static advnn_status advnn__gather2(advnn_ws *ws, const advnn_dataset *d, const int64_t *idx, int64_t start, int nb,
                                   const advnn_dataset *d2, const int64_t *idx2) {
    const advnn_graph *g = ws->g;
    int i, r;
    advnn_status st;
    if ((st = advnn__partition(ws, d, &idx, start, nb, d2, &idx2)) != ADVNN_OK) return st;
    ws->gd[0] = d; ws->gd[1] = d2; ws->grows[0] = idx; ws->grows[1] = idx2; ws->gstart = start;
    for (i = 0; i < g->n_inputs; i++) {
        int id = g->inputs[i];
        const advnn_tensor *t;
        size_t per;
        const int64_t *ix = idx;
        if (!ws->need[id] || (ws->keep && ws->keep[id])) continue;
        if ((st = advnn__stream_col(g, id, d, &ix, d2, idx2, &t)) != ADVNN_OK) return st;
        per = (size_t)g->nodes[id].size;
        ws->out[id] = ws->in_own[id];
        if (!ix) { ws->out[id] = t->data + (size_t)start * per; continue; }  /* contiguous: no copy */
        for (r = 0; r < nb; r++) {
            if (ix[r] < 0 || ix[r] >= t->shape[0]) return advnn__bad_row(ix[r], t);
            memcpy(ws->in_own[id] + (size_t)r * per, t->data + (size_t)ix[r] * per, per * sizeof(float));
        }
    }
    return ADVNN_OK;
}
static advnn_status advnn__gather(advnn_ws *ws, const advnn_dataset *d, const int64_t *idx, int64_t start, int nb) {
    return advnn__gather2(ws, d, idx, start, nb, NULL, NULL);
}

/* The row of the caller's data that sample i of the last gather came from, for input node `node`
 * (a loss's target or weight), and the stream's name for messages. */
static int64_t advnn__user_row(const advnn_ws *ws, int node, int i, const char **stream) {
    const advnn_graph *g = ws->g;
    int k = 0;
    if (node >= 0 && g->nodes[node].kind == ADVNN__INPUT && ws->gd[1] && ws->gd[1] != ws->gd[0] &&
        !advnn__has_col(ws->gd[0], g->nodes[node].name) && advnn__has_col(ws->gd[1], g->nodes[node].name)) k = 1;
    *stream = k ? "adv_data" : "data";
    return ws->grows[k] ? ws->grows[k][i] : ws->gstart + i;
}

/* ---------------------------------------------------------------- datasets on disk (out-of-core)
 * File-backed columns (advnn_dataset_add_npy_file) are read with fread into window buffers owned by
 * the dataset; a private in-memory advnn_dataset (ooc->view) over those buffers is what gather,
 * forward and backward see, so the step internals never know about files. Chunked fread, not mmap:
 * portable C, a fixed resident size (mmap'd pages count in RSS until the kernel drops them) and it
 * works under an address-space limit (ulimit -v); bench/README has the measurement. */
struct advnn__npyfile {
#ifndef ADVNN_NO_STDIO
    FILE *f;
#endif
    char *path;
    advnn__dtype dt;
    long off;              /* byte offset of the data */
    int64_t per;           /* values per row */
    advnn_tensor hdr;      /* the shape, data NULL (shape checks use it like an in-memory tensor) */
    int64_t nread;         /* data bytes read (tests/mpi_train.c: what one MPI rank reads) */
};
struct advnn__ooc {
    advnn_tensor *buf;     /* one per column: (cap, per-row shape...), shape[0] = rows loaded */
    int nbuf;
    int64_t cap;           /* rows allocated */
    advnn_dataset view;    /* columns = buf */
    int64_t lo, n;         /* the view holds rows [lo, lo + n) of the dataset in order (n = 0: something else) */
    unsigned char *need;   /* cap bytes: the rows of a window this MPI rank gathers (advnn__ooc_load) */
    int part;              /* the view holds only rank pq's rows of the pass ending at row pend (advnn__ooc_rows) */
    advnn__rpart pq;
    int64_t pend;
};

static void advnn__ooc_free(advnn_dataset *d) {
    int k;
    for (k = 0; k < d->n; k++) {
        struct advnn__npyfile *f = d->cols[k].file;
        if (!f) continue;
#ifndef ADVNN_NO_STDIO
        if (f->f) fclose(f->f);
#endif
        ADVNN_FREE(f->path);
        ADVNN_FREE(f);
    }
    if (d->ooc) {
        for (k = 0; k < d->ooc->nbuf; k++) advnn__free(d->ooc->buf[k].data);
        ADVNN_FREE(d->ooc->need);
        ADVNN_FREE(d->ooc->buf);
        ADVNN_FREE(d->ooc->view.cols);
        ADVNN_FREE(d->ooc);
        d->ooc = NULL;
    }
}

ADVNN_DEF advnn_status advnn_dataset_set_window(advnn_dataset *d, int64_t window_rows, int64_t chunk_rows) {
    if (!d) return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_set_window: NULL dataset");
    if (chunk_rows < 1 || window_rows < chunk_rows || window_rows > ((int64_t)1 << 31))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_set_window: window %lld rows, chunk %lld rows (need 1 <= chunk <= window <= 2^31)",
                           (long long)window_rows, (long long)chunk_rows);
    d->window_rows = window_rows; d->chunk_rows = chunk_rows;
    if (d->ooc) d->ooc->n = 0;
    return ADVNN_OK;
}

static int advnn__ooc_on(const advnn_dataset *d) {
    int k;
    for (k = 0; d && k < d->n; k++) if (d->cols[k].file) return 1;
    return 0;
}

/* Window buffers for at least `rows` rows of every column (the view's columns follow d's). */
static advnn_status advnn__ooc_reserve(advnn_dataset *d, int64_t rows) {
    struct advnn__ooc *o = d->ooc;
    int k;
    if (!o) {
        if (!(o = (struct advnn__ooc *)ADVNN_MALLOC(sizeof *o))) return advnn__fail(ADVNN_ERR_NOMEM, "dataset window: out of memory");
        memset(o, 0, sizeof *o);
        d->ooc = o;
    }
    if (o->nbuf == d->n && o->cap >= rows) return ADVNN_OK;
    for (k = 0; k < o->nbuf; k++) advnn__free(o->buf[k].data);
    ADVNN_FREE(o->buf); ADVNN_FREE(o->view.cols); ADVNN_FREE(o->need);
    o->nbuf = 0; o->cap = 0; o->n = 0; o->part = 0;
    o->buf = (advnn_tensor *)ADVNN_MALLOC((size_t)d->n * sizeof *o->buf);
    o->view.cols = (advnn__dcol *)ADVNN_MALLOC((size_t)d->n * sizeof *o->view.cols);
    o->need = (unsigned char *)ADVNN_MALLOC((size_t)rows);
    if (!o->buf || !o->view.cols || !o->need) return advnn__fail(ADVNN_ERR_NOMEM, "dataset window: out of memory");
    memset(o->buf, 0, (size_t)d->n * sizeof *o->buf);
    for (k = 0; k < d->n; k++) {
        const advnn_tensor *t = d->cols[k].t;
        size_t per = (size_t)(t->size / t->shape[0]);
        o->buf[k] = *t;
        o->buf[k].data = (float *)advnn__zalloc((size_t)rows * per * sizeof(float));
        o->nbuf = k + 1;
        if (!o->buf[k].data)
            return advnn__fail(ADVNN_ERR_NOMEM, "dataset window: cannot allocate %lld rows of '%s' (%zu floats each)", (long long)rows, d->cols[k].name, per);
        o->view.cols[k] = d->cols[k];
        o->view.cols[k].t = &o->buf[k];
        o->view.cols[k].file = NULL;
    }
    o->view.n = o->view.cap = d->n;
    o->cap = rows;
    return ADVNN_OK;
}

#ifndef ADVNN_NO_STDIO
/* Reads rows [row, row + m) of file column f into dst (converted to float), checking every value. */
static advnn_status advnn__npyfile_read(struct advnn__npyfile *f, const char *name, int64_t row, int64_t m, float *dst) {
    size_t nval = (size_t)(m * f->per), done = 0, i;
    unsigned char tmp[16384];
    int64_t pos = (int64_t)f->off + row * f->per * f->dt.bytes;
    f->nread += m * f->per * f->dt.bytes;
    if (pos > (int64_t)((unsigned long)-1 >> 1) || fseek(f->f, (long)pos, SEEK_SET) != 0)
        return advnn__fail(ADVNN_ERR_IO, "dataset '%s': cannot seek to row %lld of %s", name, (long long)row, f->path);
    if (f->dt.kind == 'f' && f->dt.bytes == 4 && !f->dt.big) {   /* the common case: straight into the buffer */
        if (fread(dst, sizeof(float), nval, f->f) != nval)
            return advnn__fail(ADVNN_ERR_IO, "dataset '%s': short read of rows %lld..%lld of %s (file changed?)", name,
                               (long long)row, (long long)(row + m - 1), f->path);
    } else {
        while (done < nval) {
            size_t k = nval - done < sizeof tmp / (size_t)f->dt.bytes ? nval - done : sizeof tmp / (size_t)f->dt.bytes;
            if (fread(tmp, (size_t)f->dt.bytes, k, f->f) != k)
                return advnn__fail(ADVNN_ERR_IO, "dataset '%s': short read of rows %lld..%lld of %s (file changed?)", name,
                                   (long long)row, (long long)(row + m - 1), f->path);
            for (i = 0; i < k; i++) dst[done + i] = (float)advnn__npy_elem(tmp + i * (size_t)f->dt.bytes, &f->dt);
            done += k;
        }
    }
    for (i = 0; i < nval; i++)
        if (!isfinite(dst[i]))
            return advnn__fail(ADVNN_ERR_NAN, "dataset '%s' (%s): value %g at row %lld, column %lld is not finite", name, f->path,
                               (double)dst[i], (long long)(row + (int64_t)i / f->per), (long long)((int64_t)i % f->per));
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_dataset_add_npy_file(advnn_dataset *d, const char *name, const char *path) {
    struct advnn__npyfile *f;
    unsigned char pre[12];
    char *hdr = NULL;
    size_t hl, off, need;
    int ndim = 0, major, k;
    int64_t shape[ADVNN_MAX_DIMS] = {0}, size, row, step;
    long fsz;
    float *scan = NULL;
    advnn_status st = ADVNN_OK;
    if (!d || !path || !advnn__valid_name(name)) return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_add_npy_file: NULL dataset/path or bad name");
    for (k = 0; k < d->n; k++) if (strcmp(d->cols[k].name, name) == 0) return advnn__fail(ADVNN_ERR_ARG, "advnn_dataset_add_npy_file: '%s' added twice", name);
    if (!(f = (struct advnn__npyfile *)ADVNN_MALLOC(sizeof *f))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_add_npy_file: out of memory");
    memset(f, 0, sizeof *f);
    if (!(f->path = (char *)ADVNN_MALLOC(strlen(path) + 1))) { st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_add_npy_file: out of memory"); goto fail; }
    memcpy(f->path, path, strlen(path) + 1);
    if (!(f->f = fopen(path, "rb"))) { st = advnn__fail(ADVNN_ERR_IO, "advnn_dataset_add_npy_file '%s': cannot open '%s' for reading", name, path); goto fail; }
    if (fseek(f->f, 0, SEEK_END) != 0 || (fsz = ftell(f->f)) < 0 || fseek(f->f, 0, SEEK_SET) != 0) {
        st = advnn__fail(ADVNN_ERR_IO, "advnn_dataset_add_npy_file '%s': cannot determine the size of '%s'", name, path); goto fail;
    }
    if (fsz < 10 || fread(pre, 1, 10, f->f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = advnn__fail(ADVNN_ERR_FORMAT, "advnn_dataset_add_npy_file '%s': '%s' is not a .npy file (bad magic, %ld bytes)", name, path, fsz); goto fail;
    }
    major = pre[6];
    if (major == 1) { hl = (size_t)pre[8] | ((size_t)pre[9] << 8); off = 10; }
    else if ((major == 2 || major == 3) && fsz >= 12 && fread(pre + 10, 1, 2, f->f) == 2) { hl = advnn__get_u32(pre + 8); off = 12; }
    else {
        st = advnn__fail(ADVNN_ERR_FORMAT, "advnn_dataset_add_npy_file '%s': '%s': unsupported .npy version %d or truncated header", name, path, major);
        goto fail;
    }
    if (hl > (size_t)fsz - off || !(hdr = (char *)ADVNN_MALLOC(hl + 1)) || fread(hdr, 1, hl, f->f) != hl) {
        st = advnn__fail(ADVNN_ERR_FORMAT, "advnn_dataset_add_npy_file '%s': '%s': header of %zu bytes, file of %ld", name, path, hl, fsz); goto fail;
    }
    if ((st = advnn__npy_parse_header(hdr, hl, &f->dt, &ndim, shape)) != ADVNN_OK || (st = advnn__shape_size(ndim, shape, &size)) != ADVNN_OK) {
        char msg[sizeof advnn__errbuf];
        memcpy(msg, advnn__errbuf, sizeof msg);
        st = advnn__fail(st, "advnn_dataset_add_npy_file '%s': '%s': %s", name, path, msg); goto fail;
    }
    off += hl;
    need = (size_t)size * (size_t)f->dt.bytes;
    if ((size_t)fsz - off != need) {
        st = advnn__fail(ADVNN_ERR_FORMAT, "advnn_dataset_add_npy_file '%s': '%s': %lld elements need %zu data bytes, the file has %zu", name, path,
                         (long long)size, need, (size_t)fsz - off); goto fail;
    }
    if (ndim < 1 || shape[0] < 1) {
        st = advnn__fail(ADVNN_ERR_SHAPE, "advnn_dataset_add_npy_file '%s': '%s' needs a first (sample) dimension >= 1", name, path);
        goto fail;
    }
    if (d->rows >= 0 && shape[0] != d->rows) {
        st = advnn__fail(ADVNN_ERR_SHAPE, "advnn_dataset_add_npy_file '%s': '%s' has %lld rows, the dataset has %lld", name, path,
                         (long long)shape[0], (long long)d->rows);
        goto fail;
    }
    f->off = (long)off;
    f->per = size / shape[0];
    f->hdr.ndim = ndim; f->hdr.size = size;
    for (k = 0; k < ndim; k++) f->hdr.shape[k] = shape[k];
    /* one pass over the values, in pieces of ~1 MiB, so a bad value is reported now, not mid-training */
    step = (int64_t)(((size_t)1 << 18) / (size_t)f->per); if (step < 1) step = 1;
    if (step > shape[0]) step = shape[0];
    if (!(scan = (float *)ADVNN_MALLOC((size_t)(step * f->per) * sizeof(float)))) {
        st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_add_npy_file: out of memory");
        goto fail;
    }
    for (row = 0; row < shape[0] && st == ADVNN_OK; row += step)
        st = advnn__npyfile_read(f, name, row, shape[0] - row < step ? shape[0] - row : step, scan);
    ADVNN_FREE(scan);
    if (st != ADVNN_OK) goto fail;
    if (!advnn__grow((void **)&d->cols, &d->cap, d->n + 1, sizeof *d->cols)) {
        st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_dataset_add_npy_file: out of memory");
        goto fail;
    }
    ADVNN_FREE(hdr);
    snprintf(d->cols[d->n].name, ADVNN__NAME_MAX, "%s", name);
    d->cols[d->n].t = &f->hdr;
    d->cols[d->n++].file = f;
    d->rows = shape[0];
    if (d->ooc) d->ooc->n = 0;
    return ADVNN_OK;
fail:
    ADVNN_FREE(hdr);
    if (f->f) fclose(f->f);
    ADVNN_FREE(f->path);
    ADVNN_FREE(f);
    return st;
}
#endif

#ifndef ADVNN_NO_STDIO
/* Rows [row, row + m) of file column k of d to rows [at, at + m) of its window buffer; with need (an
 * MPI rank's rows, advnn__rpart) only the rows i with need[i], read through gaps of less than a page
 * (the OS reads whole pages anyway). Rows not read become NaN: a gather of one by mistake would fail
 * loudly (a non-finite loss), not train on another window's row. */
static advnn_status advnn__ooc_load_file(advnn_dataset *d, int k, int64_t row, int64_t m, int64_t at,
                                         const unsigned char *need) {
    struct advnn__npyfile *f = d->cols[k].file;
    int64_t per = f->per, gap = 4095 / (per * f->dt.bytes), i = 0, e, j;
    float *dst = d->ooc->buf[k].data + (size_t)(at * per);
    advnn_status st;
    if (!need) return advnn__npyfile_read(f, d->cols[k].name, row, m, dst);
    while (i < m) {
        if (!need[i]) {
            for (j = 0; j < per; j++) dst[i * per + j] = NAN;
            i++;
            continue;
        }
        for (e = i + 1;;) {   /* needed rows, and gaps of at most `gap` rows that a needed row follows */
            while (e < m && need[e]) e++;
            for (j = e; j < m && !need[j] && j - e < gap; j++) {}
            if (j < m && j > e && need[j]) e = j;
            else break;
        }
        if ((st = advnn__npyfile_read(f, d->cols[k].name, row + i, e - i, dst + i * per)) != ADVNN_OK) return st;
        i = e;
    }
    return ADVNN_OK;
}
#endif

/* Copies rows [row, row + m) of every column of d to rows [at, at + m) of the window buffers (with
 * need: see advnn__ooc_load_file; in-memory columns are copied whole). */
static advnn_status advnn__ooc_load(advnn_dataset *d, int64_t row, int64_t m, int64_t at, const unsigned char *need) {
    int k;
    for (k = 0; k < d->n; k++) {
        const advnn_tensor *t = d->cols[k].t;
        int64_t per = t->size / t->shape[0];
#ifndef ADVNN_NO_STDIO
        if (d->cols[k].file) {
            advnn_status st = advnn__ooc_load_file(d, k, row, m, at, need);
            if (st != ADVNN_OK) return st;
            continue;
        }
#else
        (void)need;
#endif
        memcpy(d->ooc->buf[k].data + (size_t)(at * per), t->data + (size_t)(row * per), (size_t)(m * per) * sizeof(float));
    }
    return ADVNN_OK;
}

static void advnn__ooc_setrows(advnn_dataset *d, int64_t rows) {
    int k;
    for (k = 0; k < d->ooc->nbuf; k++) { d->ooc->buf[k].shape[0] = rows; d->ooc->buf[k].size = rows * (d->cols[k].t->size / d->cols[k].t->shape[0]); }
    d->ooc->view.rows = rows;
}

/* For a sequential pass (evaluation, prediction) over rows [lo, lo + nb) of d, with `ahead` rows
 * (>= nb) left in the pass: the dataset and first row to gather from. In-memory d: itself. With
 * files: the window view, read window_rows at a time (never past the pass). q (MPI evaluation, else
 * NULL): a pass in steps of q->B rows from lo, of which this rank gathers its rows (advnn__rpart),
 * so it reads only those; such a window serves only the same pass. */
static advnn_status advnn__ooc_rows(const advnn_dataset *cd, int64_t lo, int64_t nb, int64_t ahead, const advnn__rpart *q,
                                    const advnn_dataset **src, int64_t *at) {
    advnn_dataset *d = (advnn_dataset *)cd;   /* the window cache is mutable state of a const dataset */
    struct advnn__ooc *o;
    int64_t m, s, i;
    int part = q && q->R > 1 && !q->one, rlo, rhi;
    advnn_status st;
    *src = cd; *at = lo;
    if (!advnn__ooc_on(cd)) return ADVNN_OK;
    o = d->ooc;
    if (!o || o->n == 0 || o->nbuf != d->n || lo < o->lo || lo + nb > o->lo + o->n ||   /* (columns added since: reload) */
        o->part != part || (part && (memcmp(&o->pq, q, sizeof *q) || o->pend != lo + ahead || (lo - o->lo) % q->B))) {
        m = ahead < d->window_rows ? ahead : d->window_rows;
        if (m < nb) m = nb;
        if ((st = advnn__ooc_reserve(d, m)) != ADVNN_OK) return st;
        o = d->ooc;
        o->n = 0; o->part = 0;
        if (part) {   /* this rank's rows of the steps the window holds whole */
            memset(o->need, 0, (size_t)m);
            for (s = 0; s < ahead; s += q->B) {
                int64_t n1 = ahead - s < q->B ? ahead - s : q->B;   /* the step's rows */
                if (s + n1 > m) break;
                advnn__rpart_rows(q, (int)n1, &rlo, &rhi);
                for (i = s + rlo; i < s + rhi; i++) o->need[i] = 1;
            }
        }
        if ((st = advnn__ooc_load(d, lo, m, 0, part ? o->need : NULL)) != ADVNN_OK) return st;
        advnn__ooc_setrows(d, m);
        o->lo = lo; o->n = m;
        if (part) { o->part = 1; o->pq = *q; o->pend = lo + ahead; }
    }
    *src = &o->view; *at = lo - o->lo;
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- inference */
/* BatchNorm y = (x - mean) istd gamma + beta folded into the Dense after it, z = y W + b:
 * W'[k][j] = s_k W[k][j], b'[j] = b[j] + sum_k t_k W[k][j] with s = gamma / sqrt(var + eps) and
 * t = beta - mean s, in double, rounded once. Not the two-step rounding of the unfolded pair: outputs
 * differ from a training workspace's eval pass by float rounding (~1e-7 relative). */
static void advnn__fold_bn(advnn_ws *ws, int bn, int d) {
    const advnn__node *nb = &ws->g->nodes[bn], *nd = &ws->g->nodes[d];
    const float *gam = advnn__P(ws, nb, 0), *bet = advnn__P(ws, nb, 1), *rm = advnn__P(ws, nb, 2), *rv = advnn__P(ws, nb, 3);
    const float *W = advnn__P(ws, nd, 0), *b = advnn__P(ws, nd, 1);
    int K = nb->cols, U = nd->cols, k, j;
    float *W2 = ws->pbuf + ws->poff[d], *b2 = W2 + advnn__round((size_t)K * U);
    double *acc = (double *)(void *)(b2 + advnn__round((size_t)U));
    for (j = 0; j < U; j++) acc[j] = b[j];
    for (k = 0; k < K; k++) {
        double sk = gam[k] / sqrt((double)rv[k] + nb->fp[1]), tk = bet[k] - rm[k] * sk;
        const float *wr = W + (size_t)k * U;
        float *w2 = W2 + (size_t)k * U;
        for (j = 0; j < U; j++) { w2[j] = (float)(wr[j] * sk); acc[j] += tk * wr[j]; }
    }
    for (j = 0; j < U; j++) b2[j] = (float)acc[j];
}

/* Makes an inference workspace ready for an eval pass to node out: the need marks (remade only when
 * out changes) and the values that depend only on the weights (remade only when g->wgen changed:
 * the folded BatchNorms, the other BatchNorms' 1/std, the packed LSTMs), so that a call does only the
 * arithmetic. */
static void advnn__iprog(advnn_ws *ws);
/* Rows per forward pass of advnn_infer: a call runs its rows through the whole network in slices,
 * so that the widest layer's activations of a slice stay in L2 (W2 at batch 512: each branch's first
 * convolution outputs 3.8 MiB; in slices of 32 rows 5-10% faster per row), but of enough rows that
 * re-reading the largest weight matrix once per slice stays small (W3's 2000 x 400 Dense, 3.2 MB:
 * slices of 48 rows, level with one pass; slices of 4, by its activations alone, were slower). Rows
 * are computed alike wherever they fall in a pass of two or more (see advnn__inferjob), so the outputs
 * are the same bits. */
#define ADVNN__INFER_ACT_BYTES (256 * 1024)   /* the widest node's activations per slice */
#define ADVNN__INFER_W_BYTES (64 * 1024)      /* the largest weight block re-read per row at most */
static int advnn__infer_sub(const advnn_ws *ws) {
    const advnn_graph *g = ws->g;
    size_t act = 1, wmax = 0, k;
    int i, rows;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        if (!ws->need[i]) continue;
        if (ADVNN__IS_LOSS(n->kind)) return ws->max_batch;   /* a loss: a sum over the call's rows */
        if ((size_t)n->size > act) act = (size_t)n->size;
        for (k = 0; k < (size_t)n->n_param; k++)
            if ((size_t)g->par[n->param0 + k].size > wmax) wmax = (size_t)g->par[n->param0 + k].size;
    }
    rows = (int)(ADVNN__INFER_ACT_BYTES / (act * sizeof(float)));
    wmax = wmax * sizeof(float) / ADVNN__INFER_W_BYTES;
    if ((size_t)rows < wmax) rows = (int)(wmax < (size_t)ws->max_batch ? wmax : (size_t)ws->max_batch);
    return rows < 2 ? 2 : rows;   /* never a 1-row pass inside a call: that is the batch-1 path */
}
static void advnn__iplan(advnn_ws *ws, int out) {
    const advnn_graph *g = ws->g;
    int i, j, remake = 0;
    if (ws->pout != out) { advnn__mark_needed(ws, out); ws->pout = out; ws->psub = advnn__infer_sub(ws); remake = 1; }
    if (ws->grads) return;
    if (ws->pgen == g->wgen) { if (remake) advnn__iprog(ws); return; }
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        if (n->kind == ADVNN__LSTM && ws->poff[i] >= 0) {
            int H = n->ip[0], F = g->nodes[n->in[0]].shape[1], L = advnn_lstm_packed_width(H);
            float *Wp = ws->pbuf + ws->poff[i];   /* Wp, Up, bp as advnn__lstm_fwd_packed reads them */
            if (L > 0) advnn_lstm_pack(F, H, L, advnn__P(ws, n, 0), advnn__P(ws, n, 1), advnn__P(ws, n, 2), Wp,
                                       Wp + (size_t)F * L, Wp + advnn__round((size_t)(F + H) * L));
        }
        if (n->kind != ADVNN__BATCHNORM) continue;
        if (ws->pinto[i] >= 0) advnn__fold_bn(ws, i, ws->pinto[i]);
        else {   /* as advnn__bn_fwd's eval branch computes it */
            const float *rv = advnn__P(ws, n, 3);
            float *is = ws->pbuf + ws->poff[i];
            for (j = 0; j < n->cols; j++) is[j] = (float)(1.0 / sqrt((double)rv[j] + n->fp[1]));
        }
    }
    ws->pgen = g->wgen;
    advnn__iprog(ws);
}

/* The batch-1 program of the current need marks and caches: the nodes a pass runs, in order (not the
 * inputs nor the folded BatchNorms), each Dense of one row with its operands looked up once. */
static void advnn__iprog(advnn_ws *ws) {
    const advnn_graph *g = ws->g;
    int i;
    ws->nprog = 0;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        advnn__iop *o = &ws->prog[ws->nprog];
        if (!ws->need[i] || n->kind == ADVNN__INPUT || advnn__bn_folded(ws, i)) continue;
        o->node = i; o->xin = -1;
        if (n->kind == ADVNN__DENSE && !n->ip[2] && g->nodes[n->in[0]].rows == 1 &&
            (n->ip[1] == ADVNN_ACT_LINEAR || n->ip[1] == ADVNN_ACT_RELU)) {
            int bn = n->in[0], fold = ws->pinto[bn] == i;
            o->K = g->nodes[bn].cols; o->U = n->cols; o->relu = n->ip[1] == ADVNN_ACT_RELU;
            o->xin = fold ? g->nodes[bn].in[0] : bn;
            o->W = fold ? ws->pbuf + ws->poff[i] : advnn__P(ws, n, 0);
            o->b = fold ? o->W + advnn__round((size_t)o->K * o->U) : advnn__P(ws, n, 1);
        }
        ws->nprog++;
    }
}

/* A one-row pass through the program (what advnn__forward computes, the same kernels on the same
 * operands, without looking the graph up again on every call). */
static advnn_status advnn__forward1(advnn_ws *ws) {
    const advnn__iop *o = ws->prog, *e = ws->prog + ws->nprog;
    advnn_status st = ADVNN_OK;
    for (; o < e; o++) {
        if (o->xin >= 0) {
            float *y = ws->out[o->node];
            advnn_sgemm_bias_relu(1, o->U, o->K, ws->out[o->xin], o->K, o->W, o->U, o->b, o->relu, y, o->U, y, o->U, ws->gemm);
            continue;
        }
        if (advnn__node_fwd(ws, o->node, 1, &st)) o++;   /* a convolution and its PReLU, the next step */
        if (st != ADVNN_OK) return st;
    }
    return ADVNN_OK;
}

/* Rows lo .. lo + nb of a validated advnn_infer call on workspace ws (need marks set). */
static advnn_status advnn__infer_rows(advnn_ws *ws, int lo, int nb, const float *const *inputs, int out_node, float *out) {
    const advnn_graph *g = ws->g;
    size_t osz = (size_t)g->nodes[out_node].size;
    advnn_status st;
    int i, s0, m;
    for (s0 = 0; s0 < nb; s0 += m) {   /* slices of psub rows (advnn__infer_sub), the last of 2 or more */
        m = nb - s0 < ws->psub + 2 ? nb - s0 : ws->psub;
        for (i = 0; i < g->n_inputs; i++) {
            int id = g->inputs[i];
            if (ws->need[id])   /* read only */
                ws->out[id] = (float *)(uintptr_t)(inputs[i] + (size_t)(lo + s0) * g->nodes[id].size);
        }
        /* (advnn_infer made the plan for out_node just before: the program is current) */
        if ((st = m == 1 && advnn__plan_live(ws) ? advnn__forward1(ws) : advnn__forward(ws, m)) != ADVNN_OK) return st;
        if ((size_t)m * osz <= 16) {   /* a per-jet score: no library call for a few bytes */
            size_t k;
            for (k = 0; k < (size_t)m * osz; k++) out[(size_t)(lo + s0) * osz + k] = ws->out[out_node][k];
        } else memcpy(out + (size_t)(lo + s0) * osz, ws->out[out_node], (size_t)m * osz * sizeof(float));
    }
    return ADVNN_OK;
}

/* A threaded advnn_infer splits the n rows into the chunks of a training step (advnn__chunk_lo)
 * that the threads take as they become free, as training does; a call of one chunk (n < 256) runs
 * on the calling thread. In eval mode every kernel computes a row the same way wherever it falls in
 * the batch (GEMM edge tiles, the GEMV's last rows), so the outputs do not depend on the thread
 * count or the scheduling, bit for bit (test_threads). */
typedef struct advnn__inferjob {
    advnn_ws *ws;
    int n, out_node, nck, taken;
    const float *const *inputs;
    float *out;
    advnn_status st[ADVNN__CHUNKS_MAX];
    char msg[ADVNN__CHUNKS_MAX][512];
#ifndef ADVNN_NO_THREADS
    advnn__tune tune;                /* the team or the calling thread alone (rows are independent: same outputs) */
#endif
} advnn__inferjob;

static void advnn__ws_drop_threads(advnn_ws *ws) {
    int k;
#ifndef ADVNN_NO_THREADS
    advnn__team_free(ws->iteam);
#endif
    ws->iteam = NULL;
    for (k = 0; ws->isub && k < ws->ithreads - 1; k++) advnn_ws_free(ws->isub[k]);
    ADVNN_FREE(ws->isub); ADVNN_FREE(ws->ijob);
    ws->isub = NULL; ws->ijob = NULL; ws->ithreads = 1;
}

#ifndef ADVNN_NO_THREADS
static void advnn__infer_job(advnn__team *t, int k, void *arg) {
    advnn__inferjob *j = (advnn__inferjob *)arg;
    advnn_ws *w = k ? j->ws->isub[k - 1] : j->ws;
    int c;
    (void)t;
    if (k) { w->training = 0; advnn__iplan(w, j->out_node); }   /* each thread's own caches */
    while ((c = advnn__take(&j->taken, j->nck)) >= 0) {
        int lo = advnn__chunk_lo_of(j->n, j->nck, c), nb = advnn__chunk_lo_of(j->n, j->nck, c + 1) - lo;
        ADVNN_ASSERT(nb <= w->max_batch);
        j->st[c] = advnn__infer_rows(w, lo, nb, j->inputs, j->out_node, j->out);
        if (j->st[c] != ADVNN_OK) memcpy(j->msg[c], advnn__errbuf, sizeof j->msg[c]);
    }
}
#endif

ADVNN_DEF advnn_status advnn_ws_set_threads(advnn_ws *ws, int n) {
    if (!ws) return advnn__fail(ADVNN_ERR_ARG, "advnn_ws_set_threads: NULL workspace");
    if (n < 1 || n > 64) return advnn__fail(ADVNN_ERR_ARG, "advnn_ws_set_threads: %d threads (1..64)", n);
    advnn__ws_drop_threads(ws);
#ifndef ADVNN_NO_THREADS
    if (n > 1) {
        /* the other threads' workspaces hold one chunk: chunks of fewer rows have fewer rows each */
        int k, sub = advnn__chunk_rows(ws->max_batch, -1);
        ws->isub = (advnn_ws **)ADVNN_MALLOC((size_t)(n - 1) * sizeof *ws->isub);
        ws->ijob = (advnn__inferjob *)ADVNN_MALLOC(sizeof *ws->ijob);
        if (ws->ijob) memset(ws->ijob, 0, sizeof *ws->ijob);
        if (!ws->isub || !ws->ijob) { advnn__ws_drop_threads(ws); return advnn__fail(ADVNN_ERR_NOMEM, "advnn_ws_set_threads: out of memory"); }
        for (k = 0; k < n - 1; k++) ws->isub[k] = NULL;
        ws->ithreads = n;
        for (k = 0; k < n - 1; k++)
            if (!(ws->isub[k] = advnn_ws_new(ws->g, sub))) { advnn__ws_drop_threads(ws); return advnn__fail(ADVNN_ERR_NOMEM, "advnn_ws_set_threads: out of memory for %d workspaces of %d rows", n - 1, sub); }
        if (!(ws->iteam = advnn__team_new(n))) { advnn__ws_drop_threads(ws); return advnn__fail(ADVNN_ERR_NOMEM, "advnn_ws_set_threads: cannot start %d threads", n - 1); }
    }
#endif
    return ADVNN_OK;
}

/* 1 when the (vector) sum of the values is finite, so that every value is: a per-jet call of W2 (360
 * inputs) spent as long on isfinite, value by value, as on a layer; 0: overflow or a non-finite value */
static int advnn__sum_finite(const float *x, size_t cnt) {
    size_t o;
    for (o = 0; o < cnt; o += ADVNN__CALL_MAX) {
        size_t c = cnt - o < ADVNN__CALL_MAX ? cnt - o : ADVNN__CALL_MAX;
        if (!isfinite(advnn_sum((int)c, x + o, 1))) return 0;
    }
    return 1;
}

ADVNN_DEF advnn_status advnn_infer(advnn_ws *ws, int n, const float *const *inputs, int out_node, float *out) {
    const advnn_graph *g;
    int i;
    size_t k;
    if (!ws || !out) return advnn__fail(ADVNN_ERR_ARG, "advnn_infer: NULL workspace or output");
    g = ws->g;
    if (n < 1 || n > ws->max_batch) return advnn__fail(ADVNN_ERR_ARG, "advnn_infer: n = %d outside 1..%d (the workspace's max_batch)", n, ws->max_batch);
    if (out_node < 0 || out_node >= g->n_nodes) return advnn__fail(ADVNN_ERR_ARG, "advnn_infer: node %d does not exist", out_node);
    ws->training = 0;
    advnn__iplan(ws, out_node);
    for (i = 0; i < g->n_inputs; i++) {
        int id = g->inputs[i];
        if (!ws->need[id]) continue;
        if (!inputs || !inputs[i]) return advnn__fail(ADVNN_ERR_ARG, "advnn_infer: input %d ('%s') is needed but NULL", i, g->nodes[id].name);
        if (!advnn__sum_finite(inputs[i], (size_t)n * g->nodes[id].size))   /* else look value by value */
            for (k = 0; k < (size_t)n * g->nodes[id].size; k++)
                if (!isfinite(inputs[i][k]))
                    return advnn__fail(ADVNN_ERR_NAN, "advnn_infer: input '%s' has %g at sample %zu, value %zu", g->nodes[id].name,
                                       (double)inputs[i][k], k / (size_t)g->nodes[id].size, k % (size_t)g->nodes[id].size);
    }
#ifndef ADVNN_NO_THREADS
    if (ws->ithreads > 1 && advnn__chunk_count(n) > 1 &&
        !advnn__tune_pick(&ws->ijob->tune, XXH3_64bits_withSeed(&out_node, sizeof out_node, (uint64_t)n))) {
        advnn__inferjob *j = ws->ijob;
        int A;
        double t0 = advnn__now();
        j->ws = ws; j->n = n; j->out_node = out_node; j->inputs = inputs; j->out = out;
        j->nck = advnn__chunk_count(n);
        A = j->nck < ws->ithreads ? j->nck : ws->ithreads;
        for (i = 0; i < j->nck; i++) j->st[i] = ADVNN_OK;
        j->taken = 0;
        advnn__team_run(ws->iteam, A, advnn__infer_job, j);
        advnn__tune_note(&j->tune, 0, advnn__now() - t0);
        for (i = 0; i < j->nck; i++)   /* the first chunk that failed (its message may be another thread's) */
            if (j->st[i] != ADVNN_OK) {
                char msg[sizeof j->msg[0]];
                memcpy(msg, j->msg[i], sizeof msg);
                return advnn__fail(j->st[i], "%s", msg);
            }
        return ADVNN_OK;
    }
    if (ws->ithreads > 1 && advnn__chunk_count(n) > 1) {   /* alone, as advnn__tune_pick chose */
        double t0 = advnn__now();
        advnn_status st = advnn__infer_rows(ws, 0, n, inputs, out_node, out);
        advnn__tune_note(&ws->ijob->tune, 1, advnn__now() - t0);
        return st;
    }
#endif
    return advnn__infer_rows(ws, 0, n, inputs, out_node, out);
}

static advnn_status advnn__predict_ws(advnn_ws *ws, const advnn_dataset *d, int node, advnn_tensor **out) {
    const advnn_graph *g = ws->g;
    int64_t N = advnn_dataset_size(d), s, shape[4];
    int j, nb;
    advnn_tensor *t;
    advnn_status st;
    if (N < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_predict: the dataset is empty");
    shape[0] = N;
    for (j = 0; j < g->nodes[node].ndim; j++) shape[j + 1] = g->nodes[node].shape[j];
    ws->training = 0;
    advnn__iplan(ws, node);
    if (!(t = advnn_tensor_new(g->nodes[node].ndim + 1, shape))) return ADVNN_ERR_NOMEM;
    for (s = 0; s < N; s += nb) {
        const advnn_dataset *src;
        int64_t at;
        nb = (int)(N - s < ws->max_batch ? N - s : ws->max_batch);
        if ((st = advnn__ooc_rows(d, s, nb, N - s, NULL, &src, &at)) != ADVNN_OK || (st = advnn__gather(ws, src, NULL, at, nb)) != ADVNN_OK ||
            (st = advnn__forward(ws, nb)) != ADVNN_OK) { advnn_tensor_free(t); return st; }
        memcpy(t->data + (size_t)s * g->nodes[node].size, ws->out[node], (size_t)nb * g->nodes[node].size * sizeof(float));
    }
    *out = t;
    return ADVNN_OK;
}

#define ADVNN__PREDICT_BYTES ((size_t)64 << 20)   /* advnn_predict's workspace budget */
ADVNN_DEF advnn_status advnn_predict(const advnn_graph *g, const advnn_dataset *d, const char *output, advnn_tensor **out) {
    advnn_ws *ws;
    advnn_status st;
    int node;
    int64_t N;
    if (!g || !d || !out) return advnn__fail(ADVNN_ERR_ARG, "advnn_predict: NULL argument");
    *out = NULL;
    if (!g->finalized) return advnn__fail(ADVNN_ERR_STATE, "advnn_predict: graph not finalized");
    if ((node = advnn_find(g, output)) < 0) return advnn__fail(ADVNN_ERR_ARG, "advnn_predict: no node named '%s'", output ? output : "(null)");
    N = advnn_dataset_size(d);
    if (N < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_predict: the dataset is empty");
    {   /* the data's shapes, and finite weights, before anything of the data's size is allocated */
        unsigned char *need = (unsigned char *)ADVNN_MALLOC((size_t)g->n_nodes);
        int i;
        if (!need) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_predict: out of memory");
        advnn__need_of(g, node, need);
        for (i = 0, st = ADVNN_OK; i < g->n_inputs && st == ADVNN_OK; i++) {
            const advnn_tensor *t;
            if (need[g->inputs[i]]) st = advnn__dcol_for(g, d, g->inputs[i], &t);
        }
        ADVNN_FREE(need);
        if (st != ADVNN_OK) {
            char msg[sizeof advnn__errbuf];
            memcpy(msg, advnn__errbuf, sizeof msg);
            return advnn__fail(st, "advnn_predict: %s", msg);
        }
        if ((st = advnn__check_params(g, "advnn_predict")) != ADVNN_OK) return st;
    }
    {   /* chunk of up to 1024 rows, smaller when the workspace would pass ADVNN__PREDICT_BYTES (a big
         * graph such as W2 with its control-region copies needs ~270 KiB per row) */
        size_t fixed = advnn__ws_layout(g, 1, 0, NULL, NULL), row = advnn__ws_layout(g, 2, 0, NULL, NULL) - fixed;
        int64_t b = N < 1024 ? (N > 0 ? N : 1) : 1024, cap = 16;
        if (row > 0 && (size_t)ADVNN__PREDICT_BYTES / sizeof(float) > fixed)
            cap = (int64_t)(((size_t)ADVNN__PREDICT_BYTES / sizeof(float) - fixed) / row);
        if (cap < 16) cap = 16;
        if (b > cap) b = cap;
        if (!(ws = advnn_ws_new(g, (int)b))) return ADVNN_ERR_NOMEM;
    }
    st = advnn__predict_ws(ws, d, node, out);
    advnn_ws_free(ws);
    return st;
}

/* ---------------------------------------------------------------- optimizers */
ADVNN_DEF advnn_optim advnn_sgd(float lr, float momentum, int nesterov) {
    advnn_optim o;
    memset(&o, 0, sizeof o);
    o.kind = ADVNN_SGD; o.lr = lr; o.momentum = momentum; o.nesterov = nesterov;
    return o;
}
ADVNN_DEF advnn_optim advnn_adam(float lr) {
    advnn_optim o;
    memset(&o, 0, sizeof o);
    o.kind = ADVNN_ADAM; o.lr = lr; o.beta1 = 0.9f; o.beta2 = 0.999f; o.eps = 1e-7f;
    return o;
}
ADVNN_DEF advnn_optim advnn_nadam(float lr) { advnn_optim o = advnn_adam(lr); o.kind = ADVNN_NADAM; return o; }

static int advnn__nthreads = 1;
ADVNN_DEF int advnn_set_threads(int n) {
    int old = advnn__nthreads;
    advnn__nthreads = n < 1 ? 1 : n > 64 ? 64 : n;
    return old;
}
ADVNN_DEF int advnn_get_threads(void) { return advnn__nthreads; }

static advnn_status advnn__check_optim(const advnn_optim *o) {
    if (o->kind != ADVNN_SGD && o->kind != ADVNN_ADAM && o->kind != ADVNN_NADAM) return advnn__fail(ADVNN_ERR_ARG, "optimizer: unknown kind %d", (int)o->kind);
    if (!(o->lr >= 0 && isfinite(o->lr))) return advnn__fail(ADVNN_ERR_ARG, "optimizer: learning rate %g", (double)o->lr);
    if (!(o->weight_decay >= 0 && isfinite(o->weight_decay)) || !(o->clip_norm >= 0 && isfinite(o->clip_norm)))
        return advnn__fail(ADVNN_ERR_ARG, "optimizer: weight_decay %g / clip_norm %g must be >= 0", (double)o->weight_decay, (double)o->clip_norm);
    if (o->kind == ADVNN_SGD && !(o->momentum >= 0 && o->momentum < 1)) return advnn__fail(ADVNN_ERR_ARG, "SGD: momentum %g outside [0, 1)", (double)o->momentum);
    if (o->kind != ADVNN_SGD && !(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1 && o->eps > 0))
        return advnn__fail(ADVNN_ERR_ARG, "Adam: beta1 %g, beta2 %g must be in [0, 1) and eps %g > 0", (double)o->beta1, (double)o->beta2, (double)o->eps);
    return ADVNN_OK;
}

typedef struct { advnn_optim o; int64_t t; double mu_prod; } advnn__gstate;

struct advnn_trainer {
    advnn_graph   *g;
    advnn_ws      *ws;
    int            batch;
    advnn__rng     rng;
    advnn__gstate *gs;
    unsigned char *gon;       /* per group: trainable */
    float         *m, *v;     /* optimizer moments, laid out like g->params */
    float         *best;      /* early-stopping snapshot of g->params */
    int            T;         /* threads */
    int            nwk;       /* chunk workspaces: advnn__chunk_count(batch) (1 with one_chunk) */
    int            one_chunk; /* the graph has a batch-statistic loss (DisCo, MoDe): every step is one chunk */
    advnn_ws     **wsk;       /* per-chunk workspaces, wsk[0] == ws */
    advnn__rng    *rngk;      /* per-chunk dropout streams, reseeded from rng every step */
    double        *bnpart;    /* BatchNorm partial sums: 2 x nwk rows of bnld doubles */
    int            bnld;
    int           *ctr;       /* the job's per-phase counters: 2 x (3 x BatchNorm nodes + 2) */
    float         *wpack;     /* the Dense weights packed for a step's chunks (advnn__pack_weights), or NULL */
    const float  **wpk;       /* per node, 2 each: pointers into wpack (ws->wpk during the step) */
    int            key;       /* row key of the adversarial sub-steps (advnn__mark_sub), or -1 */
#ifndef ADVNN_NO_THREADS
    advnn__team   *team;
    advnn__tune    tune;      /* per step shape: the team or the calling thread alone */
#endif
    struct advnn__chunkjob *job;  /* the step's arguments and per-chunk progress */
    int            rank, nrank;   /* MPI (advnn_trainer_set_mpi); 0 and 1 without */
#ifdef ADVNN_MPI
    MPI_Comm       comm;      /* a duplicate of the user's communicator (our messages never match theirs) */
    int            has_comm;
    double        *xbuf;      /* per-chunk exchange rows: status, part, BatchNorm sums or losses */
    int            xld;       /* doubles per exchange row */
    float         *rbuf;      /* received gradient parts: nwk rows of gld floats */
    int64_t        gld;
    MPI_Request   *req;       /* nwk x nrank */
    int           *cnt;       /* 4 x nrank: exchange counts, displacements; gradient counts, displacements */
    uint64_t      *abuf;      /* advnn__mpi_agree: 8 x nrank */
    double         mpi_sec;
    int64_t        mpi_nx, mpi_ng;  /* exchanges after phases, gradient exchanges (bench/bench_mpi.c) */
#endif
};

/* One step's chunks (see the threads section). stage: 0 gather, 1 forward, 2 backward, 3 done. */
typedef struct advnn__chunkjob {
    advnn_trainer *tr;
    const advnn_dataset *d, *d2;
    const int64_t *idx, *idx2;
    int64_t start;
    int n, nck, backward, nphase;
    int c0, c1;                      /* the chunks this process runs (all of them without MPI) */
    int cur;                         /* the phase of a one-phase team job (MPI) */
    uint64_t shape;                  /* rows, pass and the nodes computed: the key of advnn__tune_pick */
    int *taken, *done;               /* per phase (and the reduction after them): units taken, done */
    int stage[ADVNN__CHUNKS_MAX];
    int failph[ADVNN__CHUNKS_MAX];   /* the phase in which the chunk failed (atomic), or INT_MAX */
    advnn_status st[ADVNN__CHUNKS_MAX];
    char msg[ADVNN__CHUNKS_MAX][512];
} advnn__chunkjob;

/* Each chunk of a step multiplies by the same weights, and the GEMM packs them into panels on every call:
 * for a step of several chunks the Dense layers' weights are packed once, before the chunks run, in both
 * forms (X W forward, dZ W^T for the input gradient); the chunks' products take the packing (the same
 * values: the same results). W1 at 1 thread, 8 chunks a step: 2.5% of its instructions went to packing
 * weights again. Spectrally normalised layers, whose W / sigma each chunk computes, are left out.
 * With ws NULL only counts the floats for all Dense layers; otherwise packs those this step computes
 * (the forward form) and those whose input gradient it computes (the other), sets tr->wpk. */
static size_t advnn__pack_weights(advnn_trainer *tr, const advnn_ws *ws, int backward) {
    const advnn_graph *g = tr->g;
    size_t off = 0, f0, f1;
    int i;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        int K, U;
        if (n->kind != ADVNN__DENSE || n->ip[2]) { if (ws) tr->wpk[2 * i] = tr->wpk[2 * i + 1] = NULL; continue; }
        K = g->nodes[n->in[0]].cols; U = n->cols;
        f0 = advnn__round(advnn_sgemm_pack_floats(K, U));
        f1 = advnn__round(advnn_sgemm_pack_floats(U, K));
        if (ws) {
            const float *W = g->params + g->par[n->param0].off;
            int fwd = ws->need[i] && !(ws->keep && ws->keep[i]), bwd = backward && ws->needg[i] && ws->needg[n->in[0]];
            if (fwd) advnn_sgemm_pack_b(0, K, U, W, U, tr->wpack + off);
            if (bwd) advnn_sgemm_pack_b(1, U, K, W, U, tr->wpack + off + f0);
            tr->wpk[2 * i] = fwd ? tr->wpack + off : NULL;
            tr->wpk[2 * i + 1] = bwd ? tr->wpack + off + f0 : NULL;
        }
        off += f0 + f1;
    }
    return off;
}

static advnn_status advnn__chunks_init(advnn_trainer *tr) {
    size_t nwp;
    int k;
    tr->nwk = tr->one_chunk ? 1 : advnn__chunk_count(tr->batch);
    tr->wsk = (advnn_ws **)ADVNN_MALLOC((size_t)tr->nwk * sizeof *tr->wsk);
    tr->rngk = (advnn__rng *)ADVNN_MALLOC((size_t)tr->nwk * sizeof *tr->rngk);
    tr->job = (advnn__chunkjob *)ADVNN_MALLOC(sizeof *tr->job);
    int nbn = 0;
    tr->bnld = 1;
    for (k = 0; k < tr->g->n_nodes; k++)
        if (tr->g->nodes[k].kind == ADVNN__BATCHNORM) {
            nbn++;
            if (2 * tr->g->nodes[k].cols > tr->bnld) tr->bnld = 2 * tr->g->nodes[k].cols;
        }
    tr->bnpart = (double *)ADVNN_MALLOC(2 * (size_t)tr->nwk * tr->bnld * sizeof(double));
    tr->ctr = (int *)ADVNN_MALLOC(2 * (size_t)(3 * nbn + 2) * sizeof(int));
    if (tr->job && tr->ctr) { tr->job->taken = tr->ctr; tr->job->done = tr->ctr + 3 * nbn + 2; }
    if (!tr->wsk || !tr->rngk || !tr->job || !tr->bnpart || !tr->ctr) { tr->nwk = 0; return advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_new: out of memory"); }
    memset(tr->wsk, 0, (size_t)tr->nwk * sizeof *tr->wsk);
    tr->wsk[0] = tr->ws;
    for (k = 1; k < tr->nwk; k++) {
        if (!(tr->wsk[k] = advnn__ws_create(tr->g, advnn__chunk_rows(tr->batch, k), 1))) { tr->nwk = k; return ADVNN_ERR_NOMEM; }
        tr->wsk[k]->group_on = tr->gon;
    }
    if (tr->nwk > 1 && (nwp = advnn__pack_weights(tr, NULL, 0)) > 0) {
        tr->wpack = (float *)advnn__alloc(nwp * sizeof(float));
        tr->wpk = (const float **)ADVNN_MALLOC(2 * (size_t)tr->g->n_nodes * sizeof *tr->wpk);
        if (!tr->wpack || !tr->wpk) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_new: out of memory");
    }
    for (k = 0; k < tr->nwk; k++) {
        advnn_ws *w = tr->wsk[k];
        w->rng = k ? &tr->rngk[k] : &tr->rng;   /* ws outside a step: the trainer's stream (tests) */
        w->bnld = tr->bnld;
        w->bnpart[0] = tr->bnpart; w->bnpart[1] = tr->bnpart + (size_t)tr->nwk * tr->bnld;
    }
#ifndef ADVNN_NO_THREADS
    if (tr->T > 1 && !(tr->team = advnn__team_new(tr->T)))
        return advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_new: cannot start %d threads", tr->T - 1);
#endif
    return ADVNN_OK;
}

/* The pauses of one chunk's pass with ws's marks: two per BatchNorm on batch statistics forward,
 * one per such BatchNorm whose input needs a gradient backward (as advnn__forward/backward take them). */
static int advnn__count_pauses(const advnn_ws *ws, int backward) {
    const advnn_graph *g = ws->g;
    int i, np = 0;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        if (n->kind != ADVNN__BATCHNORM || !ws->need[i] || !advnn__bn_batch_stats(ws, n)) continue;
        if (!(ws->keep && ws->keep[i])) np += 2;
        if (backward && ws->needg[i] && ws->needg[n->in[0]]) np += 1;
    }
    return np;
}

/* Chunk c's work in phase p: up to its next pause or its end. */
static void advnn__chunk_step(advnn__chunkjob *j, int c, int p) {
    advnn_ws *ws = j->tr->wsk[c];
    int lo = advnn__chunk_lo_of(j->n, j->nck, c), nb = advnn__chunk_lo_of(j->n, j->nck, c + 1) - lo;
    advnn_status st = ADVNN_OK;
    ws->paused = 0;
    if (j->stage[c] == 0) {
        st = advnn__gather2(ws, j->d, j->idx ? j->idx + lo : NULL, j->start + lo, nb, j->d2, j->idx2 ? j->idx2 + lo : NULL);
        j->stage[c] = 1;
    }
    if (st == ADVNN_OK && j->stage[c] == 1) {
        st = advnn__forward(ws, nb);
        if (st == ADVNN_OK && !ws->paused) j->stage[c] = j->backward ? 2 : 3;
    }
    if (st == ADVNN_OK && j->stage[c] == 2 && !ws->paused) {
        advnn__backward(ws, nb);
        if (!ws->paused) j->stage[c] = 3;
    }
    if (st != ADVNN_OK) {
        j->st[c] = st;
        memcpy(j->msg[c], advnn__errbuf, sizeof j->msg[c]);
        __atomic_store_n(&j->failph[c], p, __ATOMIC_RELEASE);
    }
}

/* Whether a chunk failed in phase p or before: read once phase p is done, so every thread decides
 * alike (a failure of phase p + 1, being written meanwhile, reads as none). */
static int advnn__chunks_failed(advnn__chunkjob *j, int p) {
    int c;
    for (c = 0; c < j->nck; c++) if (__atomic_load_n(&j->failph[c], __ATOMIC_ACQUIRE) <= p) return 1;
    return 0;
}

#define ADVNN__RED_BLOCK 4096   /* floats of gradient per unit of the reduction */
static void advnn__reduce_block(advnn__chunkjob *j, int b) {
    int64_t P = j->tr->g->n_params, a = (int64_t)b * ADVNN__RED_BLOCK;
    int64_t e = a + ADVNN__RED_BLOCK > P ? P : a + ADVNN__RED_BLOCK;
    int c;
    for (c = 1; c < j->nck; c++) advnn__pgrad_runs(j->tr->wsk[0], j->tr->wsk[0]->pgrad, j->tr->wsk[c]->pgrad, a, e);
}

/* Phase p of this process's chunks [c0, c1) on the calling thread alone (t NULL) or as one thread of
 * team t; returns when all of them are done. Odd phases take the chunks from the last: a phase starts
 * with the chunks whose activations the one before touched last, still in cache when a step's chunks
 * together outgrow L2 (W1 at batch 8192: 8 chunks of 1024 rows, 256 KiB per layer each). Chunks are
 * independent within a phase and summed in chunk order after it: the order does not change results. */
static void advnn__chunk_phase(void *team, advnn__chunkjob *j, int p) {
    int c, nrun = j->c1 - j->c0;
#ifndef ADVNN_NO_THREADS
    advnn__team *t = (advnn__team *)team;
    if (t) {   /* a thread that joins late finds the early phases done and catches up */
        while ((c = advnn__take(&j->taken[p], nrun)) >= 0) {
            advnn__chunk_step(j, j->c0 + (p & 1 ? nrun - 1 - c : c), p);
            advnn__count_done(t, &j->done[p], nrun);
        }
        advnn__wait_count(t, &j->done[p], nrun);
        return;
    }
#else
    (void)team;
#endif
    for (c = 0; c < nrun; c++) advnn__chunk_step(j, j->c0 + (p & 1 ? nrun - 1 - c : c), p);
}

/* Every phase of a step on the calling thread alone (t NULL) or as one thread of team t. */
static void advnn__chunk_phases(void *team, advnn__chunkjob *j) {
    int p, c, nblk = (int)((j->tr->g->n_params + ADVNN__RED_BLOCK - 1) / ADVNN__RED_BLOCK);
#ifndef ADVNN_NO_THREADS
    advnn__team *t = (advnn__team *)team;
#else
    (void)team;
#endif
    for (p = 0; p < j->nphase; p++) {
        advnn__chunk_phase(team, j, p);
        if (advnn__chunks_failed(j, p)) return;
    }
    if (!j->backward || j->nck < 2) return;
#ifndef ADVNN_NO_THREADS
    if (t) {   /* team_run returns when every thread that took a block has left */
        while ((c = advnn__take(&j->taken[j->nphase], nblk)) >= 0) advnn__reduce_block(j, c);
        return;
    }
#endif
    for (c = 0; c < nblk; c++) advnn__reduce_block(j, c);
}

#ifndef ADVNN_NO_THREADS
static void advnn__chunk_job(advnn__team *t, int k, void *arg) { (void)k; advnn__chunk_phases(t, (advnn__chunkjob *)arg); }
#endif

#ifdef ADVNN_MPI
/* ---- MPI (advnn_trainer_set_mpi): the chunks of a step over the ranks, then as advnn__chunk_phases
 * Rank r runs chunks [nck r / R, nck (r + 1) / R); a rank with none runs a copy of one (its results are
 * not sent) so that its BatchNorm running statistics, written by the first chunk a process runs, stay
 * those of the others. After each phase the ranks exchange one row per chunk (MPI_Allgatherv): the
 * chunk's status, its row-subset flag and its BatchNorm partial sums (pauses) or its losses (last
 * phase). Then every rank folds every chunk's gradient, in chunk order, over its 1/R of the
 * parameters, and the parts are gathered. */
static int advnn__chunk_owner(int nck, int R, int c) {
    int r = 0;
    while (r + 1 < R && advnn__chunk_lo_of(nck, R, r + 1) <= c) r++;
    return r;
}

static void advnn__mpi_exchange(advnn_trainer *tr, advnn__chunkjob *j, int p) {
    int R = tr->nrank, L = tr->xld, nck = j->nck, last = p == j->nphase - 1, r, c;
    int a = advnn__chunk_lo_of(nck, R, tr->rank), b = advnn__chunk_lo_of(nck, R, tr->rank + 1), nn = tr->g->n_nodes;
    double t0 = MPI_Wtime();
    for (r = 0; r < R; r++) {
        tr->cnt[r] = (advnn__chunk_lo_of(nck, R, r + 1) - advnn__chunk_lo_of(nck, R, r)) * L;
        tr->cnt[R + r] = advnn__chunk_lo_of(nck, R, r) * L;
    }
    for (c = a; c < b; c++) {
        double *row = tr->xbuf + (size_t)c * L;
        const advnn_ws *w = tr->wsk[c];
        row[0] = __atomic_load_n(&j->failph[c], __ATOMIC_ACQUIRE) <= p ? (double)j->st[c] : 0.0;
        row[1] = (double)w->part;
        if (last) memcpy(row + 2, w->loss, (size_t)nn * sizeof(double));
        else memcpy(row + 2, w->bnpart[p & 1] + (size_t)c * tr->bnld, (size_t)tr->bnld * sizeof(double));
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, tr->xbuf, tr->cnt, tr->cnt + R, MPI_DOUBLE, tr->comm);
    for (c = 0; c < nck; c++) {
        const double *row = tr->xbuf + (size_t)c * L;
        advnn_ws *w = tr->wsk[c];
        if (c >= a && c < b) continue;
        j->st[c] = (advnn_status)(int)row[0];
        __atomic_store_n(&j->failph[c], row[0] != 0.0 ? p : INT_MAX, __ATOMIC_RELEASE);
        w->part = (int)row[1];
        if (last) { memcpy(w->loss, row + 2, (size_t)nn * sizeof(double)); j->stage[c] = 3; }
        else memcpy(w->bnpart[p & 1] + (size_t)c * tr->bnld, row + 2, (size_t)tr->bnld * sizeof(double));
    }
    for (c = 0; c < nck; c++) if (j->failph[c] <= p) break;
    if (c < nck) {   /* the first failed chunk's message, from its rank, for every rank */
        int owner = advnn__chunk_owner(nck, R, c);
        if (owner == tr->rank) {
            char m[sizeof j->msg[0]];
            snprintf(m, sizeof m, "MPI rank %d: %s", owner, j->msg[c]);
            memcpy(j->msg[c], m, sizeof m);
        }
        MPI_Bcast(j->msg[c], (int)sizeof j->msg[c], MPI_CHAR, owner, tr->comm);
    }
    tr->mpi_sec += MPI_Wtime() - t0;
    tr->mpi_nx++;
}

/* tr->ws->pgrad = ((g0 + g1) + g2) + ... over all chunks, on every rank (advnn__reduce_block's order).
 * Ranks 1..R-1 each fold a part of the parameters (tr->cnt), rank 0 none. Rank 0 folds its own chunks
 * [0, b0) first, a prefix of that order, and sends the one partial sum; the other ranks' chunks travel
 * one by one (a fold cannot start in the middle). Then the parts are gathered. */
static void advnn__mpi_grad(advnn_trainer *tr, advnn__chunkjob *j) {
    int R = tr->nrank, me = tr->rank, nck = j->nck, nr = 0, c, q;
    int a = advnn__chunk_lo_of(nck, R, me), b = advnn__chunk_lo_of(nck, R, me + 1), b0 = advnn__chunk_lo_of(nck, R, 1);
    int64_t lo = tr->cnt[3 * R + me], len = tr->cnt[2 * R + me], P = tr->g->n_params;
    float *dst = tr->ws->pgrad + lo;
    double t0 = MPI_Wtime();
    if (b0 < 1) b0 = 1;   /* (more ranks than chunks: rank 0 runs a copy of chunk 0 and folds nothing first) */
    if (me == 0)
        for (c = 1; c < b0; c++) {
            advnn_axpy((int)P, 1.0f, tr->wsk[c]->pgrad, 1, tr->ws->pgrad, 1);   /* y + 1 x: exactly y + x */
        }
    for (c = 0; c < nck && len > 0; c++)
        if ((c == 0 || c >= b0) && (c < a || c >= b))
            MPI_Irecv(tr->rbuf + (size_t)c * tr->gld, (int)len, MPI_FLOAT, advnn__chunk_owner(nck, R, c), c, tr->comm,
                      &tr->req[nr++]);
    for (c = a; c < b; c++)
        if (c == 0 || c >= b0)
            for (q = 0; q < R; q++)
                if (q != me && tr->cnt[2 * R + q] > 0)
                    MPI_Isend(tr->wsk[c]->pgrad + tr->cnt[3 * R + q], tr->cnt[2 * R + q], MPI_FLOAT, q, c, tr->comm, &tr->req[nr++]);
    MPI_Waitall(nr, tr->req, MPI_STATUSES_IGNORE);
    for (c = 0; c < nck; c++) {
        const float *src = (c >= a && c < b) ? tr->wsk[c]->pgrad + lo : tr->rbuf + (size_t)c * tr->gld;
        if (c > 0 && c < b0) continue;   /* in rank 0's partial sum */
        if (c == 0) { if (src != dst) memcpy(dst, src, (size_t)len * sizeof(float)); }
        else advnn_axpy((int)len, 1.0f, src, 1, dst, 1);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, tr->ws->pgrad, tr->cnt + 2 * R, tr->cnt + 3 * R, MPI_FLOAT, tr->comm);
    tr->mpi_sec += MPI_Wtime() - t0;
    tr->mpi_ng++;
}

#ifndef ADVNN_NO_THREADS
static void advnn__phase_job(advnn__team *t, int k, void *arg) {
    (void)k;
    advnn__chunk_phase(t, (advnn__chunkjob *)arg, ((advnn__chunkjob *)arg)->cur);
}
#endif
static void advnn__mpi_phases(advnn_trainer *tr, advnn__chunkjob *j) {
    int p;
    for (p = 0; p < j->nphase; p++) {
#ifndef ADVNN_NO_THREADS
        int nrun = j->c1 - j->c0;
        if (tr->T > 1 && nrun > 1) {   /* the team or this thread alone, per phase (advnn__tune_pick) */
            int alone = advnn__tune_pick(&tr->tune, j->shape + 0x9E3779B97F4A7C15ULL * (uint64_t)p);
            double t0 = advnn__now();
            j->cur = p;
            if (alone) advnn__chunk_phase(NULL, j, p);
            else advnn__team_run(tr->team, tr->T < nrun ? tr->T : nrun, advnn__phase_job, j);
            advnn__tune_note(&tr->tune, alone, advnn__now() - t0);
        } else
#endif
            advnn__chunk_phase(NULL, j, p);
        advnn__mpi_exchange(tr, j, p);
        if (advnn__chunks_failed(j, p)) return;
    }
    if (j->backward) advnn__mpi_grad(tr, j);
}
#endif /* ADVNN_MPI */

/* Gather + forward (+ backward, gradients summed into tr->ws->pgrad) of n rows: rows idx[0..n) of d
 * (or start.. when idx is NULL), inputs d lacks from rows idx2 of d2; in chunks, on up to tr->T
 * threads. The marks (need, needg, training) must be set on tr->ws. Loss values end up in tr->ws->loss. */
static advnn_status advnn__run(advnn_trainer *tr, const advnn_dataset *d, const int64_t *idx, int64_t start, int n,
                               const advnn_dataset *d2, const int64_t *idx2, int backward) {
    advnn_ws *ws = tr->ws;
    const advnn_graph *g = tr->g;
    advnn__chunkjob *j = tr->job;
    uint64_t seed = advnn__rng_next(&tr->rng);
    int k, i;
    advnn__mark_sub(ws, tr->key);
    j->tr = tr; j->d = d; j->d2 = d2; j->idx = idx; j->idx2 = idx2; j->start = start; j->n = n; j->backward = backward;
    j->nck = tr->one_chunk ? 1 : advnn__chunk_count(n);
    j->c0 = 0; j->c1 = j->nck;
    if (tr->nrank > 1 && !tr->one_chunk) advnn__rank_chunks(j->nck, tr->nrank, tr->rank, &j->c0, &j->c1);   /* MPI */
    ADVNN_ASSERT(j->nck <= tr->nwk);
    for (k = 0; k < j->nck; k++) ADVNN_ASSERT(advnn__chunk_lo_of(n, j->nck, k + 1) - advnn__chunk_lo_of(n, j->nck, k) <= tr->wsk[k]->max_batch);
    j->nphase = advnn__count_pauses(ws, backward) + 1;
    /* the step's shape: its rows, pass, the nodes it computes (need, needg, sub) and those it reuses
     * (keep: W3's later adversary passes take the autoencoder's output from the first, 1000x cheaper) */
    j->shape = XXH3_64bits_withSeed(ws->need, 3 * (size_t)g->n_nodes, 2 * (uint64_t)n + (uint64_t)backward);
    if (ws->keep) j->shape ^= XXH3_64bits_withSeed(ws->keep, (size_t)g->n_nodes, 1) * 0x9E3779B97F4A7C15ULL;
    memset(j->taken, 0, (size_t)(j->nphase + 1) * sizeof(int));
    memset(j->done, 0, (size_t)(j->nphase + 1) * sizeof(int));
    for (k = 0; k < j->nck; k++) {
        advnn_ws *w = tr->wsk[k];
        if (k) {
            memcpy(w->need, ws->need, 3 * (size_t)g->n_nodes);   /* need, needg and sub */
            w->training = ws->training; w->input_grads = ws->input_grads; w->keep = ws->keep; w->key = ws->key;
        }
        w->nb_total = n; w->ck = k; w->ck0 = j->c0; w->nck = j->nck; w->nsync = 0; w->bnstep = 0; w->fpos = 0; w->bpos = 0;
        w->rng = &tr->rngk[k];
        advnn__rng_seed(&tr->rngk[k], seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(k + 1));
        j->stage[k] = 0; j->failph[k] = INT_MAX; j->st[k] = ADVNN_OK;
    }
    if (tr->wpack && j->c1 - j->c0 > 1) {
        advnn__pack_weights(tr, ws, backward);
        for (k = j->c0; k < j->c1; k++) tr->wsk[k]->wpk = tr->wpk;
    }
#ifdef ADVNN_MPI
    if (tr->nrank > 1 && !tr->one_chunk) advnn__mpi_phases(tr, j);
    else
#endif
#ifndef ADVNN_NO_THREADS
    if (tr->T > 1 && j->nck > 1) {
        int alone = advnn__tune_pick(&tr->tune, j->shape);
        double t0 = advnn__now();
        if (alone) advnn__chunk_phases(NULL, j);
        else advnn__team_run(tr->team, tr->T < j->nck ? tr->T : j->nck, advnn__chunk_job, j);
        advnn__tune_note(&tr->tune, alone, advnn__now() - t0);
    } else
#endif
        advnn__chunk_phases(NULL, j);
    for (k = 0; k < j->nck; k++) {
        advnn_ws *w = tr->wsk[k];
        w->nb_total = 0; w->nck = 0; w->ck0 = 0; w->fpos = 0; w->bpos = 0; w->bnstep = 0;   /* a failed step may stop mid-pass */
        w->wpk = NULL;
        if (k) ws->part |= w->part;
        else w->rng = &tr->rng;
    }
    for (k = 0; k < j->nck; k++)   /* the first chunk that failed, in chunk order (on whichever thread) */
        if (j->st[k] != ADVNN_OK) {
            char msg[sizeof j->msg[0]];
            memcpy(msg, j->msg[k], sizeof msg);
            return advnn__fail(j->st[k], "%s", msg);
        }
    for (k = 0; k < j->nck; k++) ADVNN_ASSERT(j->stage[k] == 3);
    for (i = 0; i < g->n_nodes; i++)
        if (ws->need[i] && ADVNN__IS_LOSS(g->nodes[i].kind))
            for (k = 1; k < j->nck; k++) ws->loss[i] += tr->wsk[k]->loss[i];
    return ADVNN_OK;
}

ADVNN_DEF advnn_trainer *advnn_trainer_new(advnn_graph *g, int batch_size, uint64_t seed) {
    advnn_trainer *tr;
    int i;
    if (!g || !g->finalized) { advnn__fail(ADVNN_ERR_STATE, "advnn_trainer_new: graph is NULL or not finalized"); return NULL; }
    if (batch_size < 1 || batch_size > (1 << 24)) { advnn__fail(ADVNN_ERR_ARG, "advnn_trainer_new: batch size %d outside 1..2^24", batch_size); return NULL; }
    tr = (advnn_trainer *)ADVNN_MALLOC(sizeof *tr);
    if (!tr) { advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_new: out of memory"); return NULL; }
    memset(tr, 0, sizeof *tr);
    tr->g = g; tr->batch = batch_size; tr->key = -1; tr->nrank = 1;
    advnn__rng_seed(&tr->rng, seed);
    /* more threads than chunks would have nothing to do */
    tr->T = advnn__nthreads < advnn__chunk_count(batch_size) ? advnn__nthreads : advnn__chunk_count(batch_size);
#ifdef ADVNN_NO_THREADS
    tr->T = 1;
#endif
    if (tr->T < 1) tr->T = 1;
    /* DisCo/MoDe are statistics of the whole batch: such a graph's steps run as one chunk */
    if ((tr->one_chunk = advnn__has_batch_loss(g)) != 0) tr->T = 1;
    /* the workspace of chunk 0 (the whole batch when that is the only chunk) */
    if (!(tr->ws = advnn__ws_create(g, tr->one_chunk ? batch_size : advnn__chunk_cap(batch_size), 1))) { ADVNN_FREE(tr); return NULL; }
    tr->gs = (advnn__gstate *)ADVNN_MALLOC((size_t)g->n_groups * sizeof *tr->gs);
    tr->gon = (unsigned char *)ADVNN_MALLOC((size_t)g->n_groups);
    tr->m = (float *)advnn__zalloc((size_t)(3 * g->n_params + 1) * sizeof(float));
    if (!tr->gs || !tr->gon || !tr->m) { advnn_trainer_free(tr); advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_new: out of memory"); return NULL; }
    tr->v = tr->m + g->n_params; tr->best = tr->v + g->n_params;
    for (i = 0; i < g->n_groups; i++) { tr->gs[i].o = advnn_adam(1e-3f); tr->gs[i].t = 0; tr->gs[i].mu_prod = 1.0; tr->gon[i] = 1; }
    tr->ws->group_on = tr->gon;
    if (advnn__chunks_init(tr) != ADVNN_OK) { advnn_trainer_free(tr); return NULL; }
    return tr;
}

#ifdef ADVNN_MPI
static void advnn__mpi_drop(advnn_trainer *tr);
#endif
ADVNN_DEF void advnn_trainer_free(advnn_trainer *tr) {
    int k;
    if (!tr) return;
#ifndef ADVNN_NO_THREADS
    advnn__team_free(tr->team);
#endif
#ifdef ADVNN_MPI
    advnn__mpi_drop(tr);
#endif
    ADVNN_FREE(tr->job);
    for (k = 1; tr->wsk && k < tr->nwk; k++) advnn_ws_free(tr->wsk[k]);
    ADVNN_FREE(tr->wsk); ADVNN_FREE(tr->rngk); ADVNN_FREE(tr->bnpart); ADVNN_FREE(tr->ctr);
    advnn__free(tr->wpack); ADVNN_FREE((void *)tr->wpk);
    advnn_ws_free(tr->ws);
    ADVNN_FREE(tr->gs); ADVNN_FREE(tr->gon);
    advnn__free(tr->m);
    ADVNN_FREE(tr);
}

#ifdef ADVNN_MPI
static void advnn__mpi_drop(advnn_trainer *tr) {
    int fin = 0;
    if (!tr->has_comm) return;
    MPI_Finalized(&fin);
    if (!fin) MPI_Comm_free(&tr->comm);
    tr->has_comm = 0;
    ADVNN_FREE(tr->xbuf); advnn__free(tr->rbuf); ADVNN_FREE(tr->req); ADVNN_FREE(tr->cnt); ADVNN_FREE(tr->abuf);
    tr->xbuf = NULL; tr->rbuf = NULL; tr->req = NULL; tr->cnt = NULL; tr->abuf = NULL;
    tr->rank = 0; tr->nrank = 1;
}
#endif

/* Whether every rank holds rank 0's values v[0..n) (n <= 8); otherwise the same error on every rank,
 * "<fn>: MPI rank r's <what[k]> differ from rank 0's<ctx>" for the first rank and item that differ.
 * Collective; without MPI (or on one rank) always ADVNN_OK. */
static advnn_status advnn__mpi_agree(advnn_trainer *tr, const uint64_t *v, int n, const char *const *what, const char *fn,
                                     const char *ctx) {
#ifdef ADVNN_MPI
    int r, k;
    if (tr->nrank < 2) return ADVNN_OK;
    MPI_Allgather(v, n, MPI_UINT64_T, tr->abuf, n, MPI_UINT64_T, tr->comm);
    for (r = 1; r < tr->nrank; r++)
        for (k = 0; k < n; k++)
            if (tr->abuf[(size_t)r * n + k] != tr->abuf[k])
                return advnn__fail(ADVNN_ERR_STATE, "%s: MPI rank %d's %s differ from rank 0's%s", fn, r, what[k], ctx);
#else
    (void)tr; (void)v; (void)n; (void)what; (void)fn; (void)ctx;
#endif
    return ADVNN_OK;
}

/* After an epoch: the weights, optimizer moments and PRNG state of every rank against rank 0's. */
static advnn_status advnn__mpi_check_state(advnn_trainer *tr, const char *fn, int epoch) {
    static const char *const what[3] = { "weights", "optimizer moments", "PRNG state (shuffles, dropout seeds)" };
    uint64_t v[3];
    char ctx[64];
    if (tr->nrank < 2) return ADVNN_OK;
    v[0] = (uint64_t)XXH3_64bits(tr->g->params, (size_t)tr->g->n_params * sizeof(float));
    v[1] = (uint64_t)XXH3_64bits(tr->m, 2 * (size_t)tr->g->n_params * sizeof(float));
    v[2] = (uint64_t)XXH3_64bits(tr->rng.s, sizeof tr->rng.s);
    snprintf(ctx, sizeof ctx, " after epoch %d", epoch + 1);
    return advnn__mpi_agree(tr, v, 3, what, fn, ctx);
}

/* Rank 0's values for every rank (a callback's decisions). */
static void advnn__mpi_bcast(advnn_trainer *tr, double *v, int n) {
#ifdef ADVNN_MPI
    if (tr->nrank > 1) MPI_Bcast(v, n, MPI_DOUBLE, 0, tr->comm);
#else
    (void)tr; (void)v; (void)n;
#endif
}

/* An error this rank alone can see (reading file data during training): the other ranks are inside
 * collective calls that will never complete, so with MPI the job is aborted (after printing why). */
static advnn_status advnn__mpi_local(advnn_trainer *tr, advnn_status st) {
#ifdef ADVNN_MPI
    if (st != ADVNN_OK && tr->nrank > 1) {
#ifndef ADVNN_NO_STDIO
        fprintf(stderr, "advnn: MPI rank %d of %d: %s\nadvnn: MPI rank %d: the other ranks cannot see this error: calling MPI_Abort\n",
                tr->rank, tr->nrank, advnn__errbuf, tr->rank);
        fflush(stderr);
#endif
        MPI_Abort(tr->comm, 3);
    }
#else
    (void)tr;
#endif
    return st;
}

#ifdef ADVNN_MPI
ADVNN_DEF advnn_status advnn_trainer_set_mpi(advnn_trainer *tr, MPI_Comm comm) {
    static const char *const what[5] = { "parameter count", "batch size", "chunk count (a DisCo/MoDe loss in one graph only?)",
                                         "initial weights (the same graph and advnn_graph_finalize seed on every rank?)",
                                         "trainer seed (PRNG state)" };
    int init = 0, R = 0, me = 0, q, bad, anybad = 0;
    int64_t P;
    uint64_t v[5];
    advnn_status st = ADVNN_OK;
    if (!tr) return advnn__fail(ADVNN_ERR_ARG, "advnn_trainer_set_mpi: trainer is NULL");
    MPI_Initialized(&init);
    if (!init) return advnn__fail(ADVNN_ERR_STATE, "advnn_trainer_set_mpi: MPI is not initialised (call MPI_Init first)");
    if (tr->has_comm) return advnn__fail(ADVNN_ERR_STATE, "advnn_trainer_set_mpi: the trainer already has a communicator");
    if (MPI_Comm_dup(comm, &tr->comm) != MPI_SUCCESS) return advnn__fail(ADVNN_ERR_ARG, "advnn_trainer_set_mpi: MPI_Comm_dup failed");
    tr->has_comm = 1;
    MPI_Comm_size(tr->comm, &R); MPI_Comm_rank(tr->comm, &me);
    P = tr->g->n_params;
    tr->xld = 2 + (tr->bnld > tr->g->n_nodes ? tr->bnld : tr->g->n_nodes);
    tr->gld = (int64_t)advnn__round((size_t)(P / (R > 1 ? R - 1 : 1) + 1));
    tr->xbuf = (double *)ADVNN_MALLOC((size_t)tr->nwk * tr->xld * sizeof(double));
    tr->rbuf = (float *)advnn__alloc((size_t)tr->nwk * (size_t)tr->gld * sizeof(float));
    tr->req = (MPI_Request *)ADVNN_MALLOC((size_t)tr->nwk * R * sizeof(MPI_Request));
    tr->cnt = (int *)ADVNN_MALLOC(4 * (size_t)R * sizeof(int));
    tr->abuf = (uint64_t *)ADVNN_MALLOC(8 * (size_t)R * sizeof(uint64_t));
    bad = !tr->xbuf || !tr->rbuf || !tr->req || !tr->cnt || !tr->abuf || P > INT_MAX;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, tr->comm);   /* first, so that no rank is left waiting */
    if (anybad) st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_trainer_set_mpi: a rank is out of memory (or has more than 2^31 parameters)");
    else {
        tr->rank = me; tr->nrank = R;
        /* the gradient's parts: none for rank 0 (it sends its chunks' partial sum and folds nothing for
         * the others: on 2 ranks one message each way), 1/(R - 1) of the parameters for each other rank */
        for (q = 0; q < R; q++) {
            int64_t l0 = q ? P * (q - 1) / (R - 1) : 0, l1 = q ? P * q / (R - 1) : 0;
            tr->cnt[3 * R + q] = (int)l0; tr->cnt[2 * R + q] = (int)(l1 - l0);
        }
        v[0] = (uint64_t)P; v[1] = (uint64_t)tr->batch; v[2] = (uint64_t)tr->nwk;
        v[3] = (uint64_t)XXH3_64bits(tr->g->params, (size_t)P * sizeof(float));
        v[4] = (uint64_t)XXH3_64bits(tr->rng.s, sizeof tr->rng.s);
        st = advnn__mpi_agree(tr, v, 5, what, "advnn_trainer_set_mpi", "");
    }
    if (st != ADVNN_OK) { advnn__mpi_drop(tr); return st; }
    tr->mpi_sec = 0;
    return ADVNN_OK;
}

ADVNN_DEF double advnn_trainer_mpi_seconds(const advnn_trainer *tr) { return tr && tr->has_comm ? tr->mpi_sec : 0.0; }
#endif

/* The range [first, last) of groups named by `group` (NULL: every group). */
static advnn_status advnn__each_group(advnn_trainer *tr, const char *group, int *first, int *last) {
    int gi;
    if (!tr) return advnn__fail(ADVNN_ERR_ARG, "trainer is NULL");
    if (!group) { *first = 0; *last = tr->g->n_groups; return ADVNN_OK; }
    if ((gi = advnn__find_group(tr->g, group)) < 0) return advnn__fail(ADVNN_ERR_ARG, "no parameter group named '%s'", group);
    *first = gi; *last = gi + 1;
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_trainer_set_optim(advnn_trainer *tr, const char *group, advnn_optim o) {
    int a = 0, b = 0, i;   /* (set unless an error returns; gcc cannot tell with ADVNN_STATIC) */
    advnn_status st = advnn__each_group(tr, group, &a, &b);
    if (st != ADVNN_OK || (st = advnn__check_optim(&o)) != ADVNN_OK) return st;
    for (i = a; i < b; i++) {
        /* a new kind starts from fresh state; a new learning rate (a schedule) keeps it */
        if (tr->gs[i].o.kind != o.kind) {
            int k;
            for (k = 0; k < tr->g->n_par; k++) {
                const advnn__param *p = &tr->g->par[k];
                if (p->group != i) continue;
                memset(tr->m + p->off, 0, (size_t)p->size * sizeof(float));
                memset(tr->v + p->off, 0, (size_t)p->size * sizeof(float));
            }
            tr->gs[i].t = 0; tr->gs[i].mu_prod = 1.0;
        }
        tr->gs[i].o = o;
    }
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_trainer_set_trainable(advnn_trainer *tr, const char *group, int trainable) {
    int a, b, i;
    advnn_status st = advnn__each_group(tr, group, &a, &b);
    if (st != ADVNN_OK) return st;
    for (i = a; i < b; i++) tr->gon[i] = trainable ? 1 : 0;
    return ADVNN_OK;
}

/* A group's update coefficients for its next step (t + 1); computing them changes nothing. */
typedef struct { double scale, bc1, bc2, mu, mu1, mu_prod, mu_prod1; } advnn__ocoef;
static advnn__ocoef advnn__coef(const advnn_trainer *tr, int gi) {
    const advnn_graph *g = tr->g;
    const advnn__gstate *s = &tr->gs[gi];
    const advnn_optim *o = &s->o;
    const float *grad = tr->ws->pgrad;
    advnn__ocoef c;
    double t = (double)(s->t + 1);
    int k;
    c.scale = 1; c.bc1 = 1; c.bc2 = 1; c.mu = 0; c.mu1 = 0; c.mu_prod = s->mu_prod; c.mu_prod1 = 1;
    if (o->clip_norm > 0) {
        double ss = 0;
        for (k = 0; k < g->n_par; k++) {
            const advnn__param *p = &g->par[k];
            int64_t j;
            if (p->group != gi || !p->trainable) continue;
            for (j = 0; j < p->size; j++) ss += (double)grad[p->off + j] * grad[p->off + j];
        }
        if (sqrt(ss) > o->clip_norm) c.scale = o->clip_norm / sqrt(ss);
    }
    if (o->kind != ADVNN_SGD) { c.bc1 = 1.0 - pow(o->beta1, t); c.bc2 = 1.0 - pow(o->beta2, t); }
    if (o->kind == ADVNN_NADAM) {  /* Dozat's momentum schedule, as PyTorch and Keras */
        c.mu = o->beta1 * (1.0 - 0.5 * pow(0.96, t * 0.004));
        c.mu1 = o->beta1 * (1.0 - 0.5 * pow(0.96, (t + 1) * 0.004));
        c.mu_prod = s->mu_prod * c.mu;
        c.mu_prod1 = c.mu_prod * c.mu1;
    }
    return c;
}

/* One parameter block's step. With commit = 0 nothing is written: the return value says whether the
 * new weights and moments would all be finite ((x - x) == 0 fails for NaN and infinities only).
 * Always inlined with a constant `commit`, so each of the two passes is a branch-free loop. */
static ADVNN__INL int advnn__step_block(const advnn_optim *o, const advnn__ocoef *c, float *w, float *m, float *v, const float *gr,
                                        int64_t n, int commit) {
    int ok = 1;
    int64_t j;
    if (o->kind == ADVNN_SGD) {
        float wd = o->weight_decay, mo = o->momentum, lr = o->lr;
        for (j = 0; j < n; j++) {
            float gj = (float)(gr[j] * c->scale) + wd * w[j], mj = m[j], wj;
            if (mo > 0) {
                mj = mo * mj + gj;
                gj = o->nesterov ? gj + mo * mj : mj;
            }
            wj = w[j] - lr * gj;
            if (commit) { w[j] = wj; m[j] = mj; }
            else ok &= (wj - wj == 0.0f) & (mj - mj == 0.0f);
        }
    } else if (o->kind == ADVNN_ADAM) {
        float a = (float)(o->lr / c->bc1), ib2 = (float)(1.0 / sqrt(c->bc2)), lwd = o->lr * o->weight_decay;
        ok = advnn_adam_update(n, w, m, v, gr, c->scale, a, 0.0f, ib2, o->beta1, o->beta2, o->eps, lwd, 0, commit);
    } else {
        float c1 = (float)(o->lr * (1.0 - c->mu) / (1.0 - c->mu_prod)), c2 = (float)(o->lr * c->mu1 / (1.0 - c->mu_prod1));
        float ib2 = (float)(1.0 / sqrt(c->bc2)), lwd = o->lr * o->weight_decay;
        ok = advnn_adam_update(n, w, m, v, gr, c->scale, c2, c1, ib2, o->beta1, o->beta2, o->eps, lwd, 1, commit);
    }
    return ok;
}

/* One optimizer update of every trainable group from ws->pgrad. The rule for non-finite values:
 * a step whose gradient, new weights or new optimizer moments would hold a NaN or an infinity (an
 * overflowing gradient, a NaN that reached the weights' gradient behind a ReLU, a learning rate too
 * large) is refused as a whole: ADVNN_ERR_NAN, and every weight, moment and step count stays as it
 * was. A first pass only checks (it costs about what the update costs, small beside a step's
 * forward and backward passes); the second writes. */
static advnn_status advnn__update(advnn_trainer *tr) {
    advnn_graph *g = tr->g;
    const float *grad = tr->ws->pgrad;
    int gi, k, commit;
    for (commit = 0; commit < 2; commit++)
        for (gi = 0; gi < g->n_groups; gi++) {
            advnn__gstate *s = &tr->gs[gi];
            advnn__ocoef c;
            if (!tr->gon[gi]) continue;
            c = advnn__coef(tr, gi);
            for (k = 0; k < g->n_par; k++) {
                const advnn__param *p = &g->par[k];
                if (p->group != gi || !p->trainable) continue;
                if (!(commit ? advnn__step_block(&s->o, &c, g->params + p->off, tr->m + p->off, tr->v + p->off, grad + p->off, p->size, 1)
                             : advnn__step_block(&s->o, &c, g->params + p->off, tr->m + p->off, tr->v + p->off, grad + p->off, p->size, 0))) {
                    const advnn__node *n = &g->nodes[p->node];
                    int64_t j = 0;
                    while (j < p->size && isfinite(grad[p->off + j])) j++;
                    return advnn__fail(ADVNN_ERR_NAN, "update refused, weights unchanged: %s of parameter block %d (node %d%s%s%s, group '%s') "
                                       "would not be finite%s", j < p->size ? "the gradient" : "the new weights or optimizer moments",
                                       k, p->node, n->name[0] ? " '" : "", n->name, n->name[0] ? "'" : "", g->groups[gi],
                                       j < p->size ? "" : " (lower the learning rate)");
                }
            }
            if (!commit) continue;
            s->t++;
            s->mu_prod = c.mu_prod;
            for (k = 0; k < g->n_nodes; k++)   /* spectral norm: one power iteration per update */
                if (g->nodes[k].kind == ADVNN__DENSE && g->nodes[k].ip[2] && g->nodes[k].share < 0 && g->nodes[k].group == gi)
                    advnn__sn_iterate(g, &g->nodes[k]);
        }
    return ADVNN_OK;
}

static double advnn__objective(const advnn_ws *ws) {
    double s = 0;
    int i;
    for (i = 0; i < ws->g->n_nodes; i++)
        if (ws->need[i] && ADVNN__IS_LOSS(ws->g->nodes[i].kind)) s += ws->g->nodes[i].fp[0] * ws->loss[i];
    return s;
}

static int advnn__has_loss(const advnn_graph *g) {
    int i;
    for (i = 0; i < g->n_nodes; i++) if (ADVNN__IS_LOSS(g->nodes[i].kind)) return 1;
    return 0;
}

ADVNN_DEF advnn_status advnn_train_step(advnn_trainer *tr, const advnn_dataset *d, const int64_t *idx, int n, double *loss) {
    advnn_ws *ws;
    advnn_status st;
    double obj;
    if (!tr || !d || !idx) return advnn__fail(ADVNN_ERR_ARG, "advnn_train_step: NULL argument");
    if (n < 1 || n > tr->batch) return advnn__fail(ADVNN_ERR_ARG, "advnn_train_step: batch of %d rows (1..%d)", n, tr->batch);
    if (!advnn__has_loss(tr->g)) return advnn__fail(ADVNN_ERR_STATE, "advnn_train_step: the graph has no loss node");
    ws = tr->ws;
    ws->training = 1;
    advnn__mark_needed(ws, -1);
    advnn__mark_grad(ws);
    if ((st = advnn__run(tr, d, idx, 0, n, NULL, NULL, 1)) != ADVNN_OK) return st;
    obj = advnn__objective(ws);
    if ((st = advnn__update(tr)) != ADVNN_OK) return st;
    if (loss) *loss = obj;
    return ADVNN_OK;
}

/* The rows of each batch this trainer's MPI rank gathers (advnn__rpart_rows). */
static advnn__rpart advnn__rpart_of(const advnn_trainer *tr) {
    advnn__rpart q;
    q.B = tr->batch; q.R = tr->nrank; q.r = tr->rank; q.one = tr->one_chunk;
    return q;
}

/* Eval-mode objective over rows [start, start+count) of d. */
static advnn_status advnn__eval_range(advnn_trainer *tr, const advnn_dataset *d, int64_t start, int64_t count, double *loss) {
    advnn_ws *ws = tr->ws;
    int64_t s;
    double tot = 0;
    int nb;
    advnn_status st;
    advnn__rpart q = advnn__rpart_of(tr);
    ws->training = 0;
    advnn__mark_needed(ws, -1);
    for (s = 0; s < count; s += nb) {
        const advnn_dataset *src;
        int64_t at;
        nb = (int)(count - s < tr->batch ? count - s : tr->batch);
        st = advnn__ooc_rows(d, start + s, nb, count - s, &q, &src, &at);   /* files: windows */
        if (st != ADVNN_OK) return advnn__mpi_local(tr, st);
        if ((st = advnn__run(tr, src, NULL, at, nb, NULL, NULL, 0)) != ADVNN_OK) return st;
        tot += advnn__objective(ws) * nb;
    }
    *loss = tot / (double)count;
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_evaluate(advnn_trainer *tr, const advnn_dataset *d, double *loss) {
    if (!tr || !d || !loss) return advnn__fail(ADVNN_ERR_ARG, "advnn_evaluate: NULL argument");
    if (advnn_dataset_size(d) < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_evaluate: the dataset is empty");
    if (!advnn__has_loss(tr->g)) return advnn__fail(ADVNN_ERR_STATE, "advnn_evaluate: the graph has no loss node");
    return advnn__eval_range(tr, d, 0, advnn_dataset_size(d), loss);
}

ADVNN_DEF advnn_fit_opts advnn_fit_defaults(void) {
    advnn_fit_opts o;
    memset(&o, 0, sizeof o);
    o.epochs = 10; o.shuffle = 1; o.restore_best = 1; o.verbose = 1;
    return o;
}

/* ---------------------------------------------------------------- datasets on disk: the training order
 * The batches of one epoch over training rows [0, ntr) of a dataset with file columns that do not
 * fit one window, in the order documented at advnn_dataset_add_npy_file (advnn_fit, advnn_adv_fit). */
typedef struct {
    advnn_dataset *d;
    advnn__rng *rng;
    advnn__rpart q;          /* MPI: the rows of each batch this rank gathers, so reads */
    int64_t ntr, B, C, cpw, nch, w0, p, total, carry, rowf;
    int64_t *order, *lp;
    float *keep;
    int shuffle, loaded;
    advnn_status st;
} advnn__ooc_it;

/* The rows of the epoch's c-th file chunk (the last chunk of the file may be short). */
static int64_t advnn__ooc_it_len(const advnn__ooc_it *it, int64_t c) {
    int64_t r0 = it->order[c] * it->C;
    return it->ntr - r0 < it->C ? it->ntr - r0 : it->C;
}

static void advnn__ooc_it_end(advnn__ooc_it *it) { ADVNN_FREE(it->order); ADVNN_FREE(it->lp); ADVNN_FREE(it->keep); it->order = it->lp = NULL; it->keep = NULL; }

static advnn_status advnn__ooc_it_begin(advnn__ooc_it *it, advnn_trainer *tr, const advnn_dataset *cd, int64_t ntr, int shuffle) {
    int64_t c;
    int k;
    memset(it, 0, sizeof *it);
    it->d = (advnn_dataset *)cd;   /* the window buffers are mutable state of a const dataset */
    it->rng = &tr->rng; it->ntr = ntr; it->B = tr->batch; it->shuffle = shuffle;
    it->q = advnn__rpart_of(tr);
    it->C = it->d->chunk_rows; it->cpw = it->d->window_rows / it->C; it->nch = (ntr + it->C - 1) / it->C;
    for (k = 0; k < it->d->n; k++) it->rowf += it->d->cols[k].t->size / it->d->cols[k].t->shape[0];
    if ((it->st = advnn__ooc_reserve(it->d, it->cpw * it->C + it->B)) != ADVNN_OK) return it->st;
    it->d->ooc->n = 0;   /* the view no longer holds a sequential range */
    it->order = (int64_t *)ADVNN_MALLOC((size_t)it->nch * sizeof *it->order);
    it->lp = (int64_t *)ADVNN_MALLOC((size_t)(it->cpw * it->C + it->B) * sizeof *it->lp);
    it->keep = (float *)ADVNN_MALLOC((size_t)(it->B * it->rowf) * sizeof *it->keep);
    if (!it->order || !it->lp || !it->keep) {
        advnn__ooc_it_end(it);
        return it->st = advnn__fail(ADVNN_ERR_NOMEM, "training from files: out of memory for the window order");
    }
    for (c = 0; c < it->nch; c++) it->order[c] = c;
    if (shuffle)
        for (c = it->nch - 1; c > 0; c--) {
            int64_t j = (int64_t)advnn__rng_below(it->rng, (uint64_t)c + 1), t = it->order[c];
            it->order[c] = it->order[j]; it->order[j] = t;
        }
    return ADVNN_OK;
}

/* The next batch: rows idx[0..*nb) of *src (the window view). 0 at the end of the epoch or on an
 * error (it->st says which). */
static int advnn__ooc_it_next(advnn__ooc_it *it, const advnn_dataset **src, const int64_t **idx, int *nb) {
    advnn_dataset *d = it->d;
    int64_t i, c;
    int k;
    if (it->st != ADVNN_OK) return 0;
    for (;;) {
        int last = it->w0 >= it->nch;   /* every chunk read: the remaining rows go, the last batch short */
        if (it->loaded && (it->total - it->p >= it->B || (last && it->p < it->total))) {
            *nb = (int)(it->total - it->p < it->B ? it->total - it->p : it->B);
            *src = &d->ooc->view; *idx = it->lp + it->p;
            it->p += *nb;
            return 1;
        }
        if (last) return 0;
        if (it->loaded) {   /* the < B rows left: moved to the front, in order, through `keep` */
            int64_t r = it->total - it->p, off = 0;
            for (k = 0; k < d->n; k++) {
                int64_t per = d->cols[k].t->size / d->cols[k].t->shape[0];
                float *b = d->ooc->buf[k].data;
                for (i = 0; i < r; i++) memcpy(it->keep + off + i * per, b + it->lp[it->p + i] * per, (size_t)per * sizeof(float));
                memcpy(b, it->keep + off, (size_t)(r * per) * sizeof(float));
                off += r * per;
            }
            it->carry = r;
        }
        {   /* the next window: its chunks and a shuffle of its new rows (the carried ones stay in front) */
            int64_t m = 0, b;
            unsigned char *need = NULL;
            for (c = it->w0; c < it->w0 + it->cpw && c < it->nch; c++) m += advnn__ooc_it_len(it, c);
            it->total = it->carry + m; it->p = 0;
            for (i = 0; i < it->total; i++) it->lp[i] = i;
            if (it->shuffle)
                for (i = m - 1; i > 0; i--) {
                    int64_t j = (int64_t)advnn__rng_below(it->rng, (uint64_t)i + 1), t = it->lp[it->carry + i];
                    it->lp[it->carry + i] = it->lp[it->carry + j]; it->lp[it->carry + j] = t;
                }
            if (it->q.R > 1 && !it->q.one) {   /* MPI: read this rank's rows of each batch, and the rows carried on */
                need = d->ooc->need;
                memset(need, 0, (size_t)it->total);
                for (b = 0; b < it->total; b += it->B) {
                    int lo, hi;
                    if (it->total - b < it->B && it->w0 + it->cpw < it->nch) {   /* carried: whose is not known yet */
                        for (i = b; i < it->total; i++) need[it->lp[i]] = 1;
                        break;
                    }
                    advnn__rpart_rows(&it->q, (int)(it->total - b < it->B ? it->total - b : it->B), &lo, &hi);
                    for (i = b + lo; i < b + hi; i++) need[it->lp[i]] = 1;
                }
            }
            for (m = 0, c = it->w0; c < it->w0 + it->cpw && c < it->nch; c++) {
                int64_t len = advnn__ooc_it_len(it, c);
                it->st = advnn__ooc_load(d, it->order[c] * it->C, len, it->carry + m, need ? need + it->carry + m : NULL);
                if (it->st != ADVNN_OK) return 0;
                m += len;
            }
            it->w0 += it->cpw;
            it->loaded = 1;
            advnn__ooc_setrows(d, it->total);
        }
    }
}

/* advnn_fit's epoch through the iterator; *s = rows trained (for an error message). */
static advnn_status advnn__ooc_epoch(advnn_trainer *tr, const advnn_dataset *d, int64_t ntr, int shuffle, double *tot, int64_t *s) {
    advnn__ooc_it it;
    const advnn_dataset *src;
    const int64_t *idx;
    advnn_status st = ADVNN_OK;
    int nb;
    double l;
    *s = 0;
    if (advnn__ooc_it_begin(&it, tr, d, ntr, shuffle) != ADVNN_OK) return advnn__mpi_local(tr, it.st);
    while (advnn__ooc_it_next(&it, &src, &idx, &nb)) {
        if ((st = advnn_train_step(tr, src, idx, nb, &l)) != ADVNN_OK) break;
        *tot += l * nb; *s += nb;
    }
    if (st == ADVNN_OK) st = advnn__mpi_local(tr, it.st);
    advnn__ooc_it_end(&it);
    return st;
}

ADVNN_DEF advnn_status advnn_fit(advnn_trainer *tr, const advnn_dataset *train, const advnn_dataset *val,
                                 const advnn_fit_opts *opts, advnn_fit_result *res) {
    advnn_fit_opts o = opts ? *opts : advnn_fit_defaults();
    advnn_graph *g;
    int64_t N, ntr, nval, *perm, i, s;
    int epoch, wait = 0, best_epoch = -1, have_best = 0, ooc_multi;
    double best = INFINITY;
    advnn_status st = ADVNN_OK;
    if (!tr || !train) return advnn__fail(ADVNN_ERR_ARG, "advnn_fit: NULL trainer or data");
    g = tr->g;
    if (o.epochs < 0 || o.patience < 0 || !(o.val_split >= 0.0f && o.val_split < 1.0f) || !(o.min_delta >= 0))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_fit: epochs %d, patience %d, val_split %g, min_delta %g out of range",
                           o.epochs, o.patience, (double)o.val_split, (double)o.min_delta);
    if (!advnn__has_loss(g)) return advnn__fail(ADVNN_ERR_STATE, "advnn_fit: the graph has no loss node");
    N = advnn_dataset_size(train);
    nval = val ? 0 : (int64_t)floor((double)N * o.val_split);
    ntr = N - nval;
    if (ntr < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_fit: no training rows (%lld rows, val_split %g)", (long long)N, (double)o.val_split);
    if (val && advnn_dataset_size(val) < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_fit: the validation set is empty");
    /* check every input is present and shaped right before touching the weights */
    advnn__mark_needed(tr->ws, -1);
    for (i = 0; i < g->n_inputs; i++) {
        const advnn_tensor *t;
        if (!tr->ws->need[g->inputs[i]]) continue;
        if ((st = advnn__dcol_for(g, train, g->inputs[i], &t)) != ADVNN_OK) return st;
        if (val && (st = advnn__dcol_for(g, val, g->inputs[i], &t)) != ADVNN_OK) return st;
    }
    ooc_multi = advnn__ooc_on(train) && ntr > train->window_rows;   /* files, more than one window: advnn__ooc_epoch */
    {   /* MPI: every rank must run the same epochs over the same rows, else they would wait for each other */
        static const char *const what[5] = { "training rows", "validation rows", "epochs", "shuffle flag", "window size (files)" };
        uint64_t v[5];
        v[0] = (uint64_t)ntr; v[1] = (uint64_t)(val ? advnn_dataset_size(val) : nval); v[2] = (uint64_t)o.epochs;
        v[3] = (uint64_t)o.shuffle; v[4] = (uint64_t)(ooc_multi ? train->window_rows * 65536 + train->chunk_rows : 0);
        if ((st = advnn__mpi_agree(tr, v, 5, what, "advnn_fit", "")) != ADVNN_OK) return st;
    }
    perm = (int64_t *)ADVNN_MALLOC((size_t)(ooc_multi ? 1 : ntr) * sizeof(int64_t));
    if (!perm) return advnn__mpi_local(tr, advnn__fail(ADVNN_ERR_NOMEM, "advnn_fit: out of memory"));
    for (i = 0; i < (ooc_multi ? 1 : ntr); i++) perm[i] = i;
    memcpy(tr->best, g->params, (size_t)g->n_params * sizeof(float));  /* fallback if the first epoch fails */
    for (epoch = 0; epoch < o.epochs; epoch++) {
        double t0 = advnn__now(), tot = 0, vl = NAN, mon;
        advnn_epoch_info info;
        if (ooc_multi) st = advnn__ooc_epoch(tr, train, ntr, o.shuffle, &tot, &s);
        else {
            const advnn_dataset *src = train;   /* files, one window: all training rows in memory, the in-memory order */
            int64_t at;
            if (o.shuffle)
                for (i = ntr - 1; i > 0; i--) { int64_t j = (int64_t)advnn__rng_below(&tr->rng, (uint64_t)i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
            s = 0;
            if ((st = advnn__mpi_local(tr, advnn__ooc_rows(train, 0, ntr, ntr, NULL, &src, &at))) == ADVNN_OK)
                for (s = 0; s < ntr; s += tr->batch) {
                    int nb = (int)(ntr - s < tr->batch ? ntr - s : tr->batch);
                    double l;
                    if ((st = advnn_train_step(tr, src, perm + s, nb, &l)) != ADVNN_OK) break;
                    tot += l * nb;
                }
        }
        if (st != ADVNN_OK) {
            char msg[sizeof advnn__errbuf];
            memcpy(msg, advnn__errbuf, sizeof msg);
            advnn__fail(st, "advnn_fit: epoch %d, batch %lld: %s (weights restored to the %s)", epoch, (long long)(s / tr->batch), msg,
                        have_best ? "best epoch" : "start of training");
            memcpy(g->params, tr->best, (size_t)g->n_params * sizeof(float));
            g->wgen++;
            break;
        }
        if (val) st = advnn__eval_range(tr, val, 0, advnn_dataset_size(val), &vl);
        else if (nval) st = advnn__eval_range(tr, train, ntr, nval, &vl);
        if (st == ADVNN_OK) st = advnn__mpi_check_state(tr, "advnn_fit", epoch);
        if (st != ADVNN_OK) { memcpy(g->params, tr->best, (size_t)g->n_params * sizeof(float)); g->wgen++; break; }
        info.epoch = epoch; info.train_loss = tot / (double)ntr; info.val_loss = vl;
        info.seconds = advnn__now() - t0; info.trainer = tr; info.graph = g;
#ifndef ADVNN_NO_STDIO
        if (o.verbose && tr->rank == 0 && (val || nval))
            fprintf(stderr, "epoch %3d/%d  loss %.5f  val_loss %.5f  %.2f s\n", epoch + 1, o.epochs, info.train_loss, vl, info.seconds);
        else if (o.verbose && tr->rank == 0)
            fprintf(stderr, "epoch %3d/%d  loss %.5f  %.2f s\n", epoch + 1, o.epochs, info.train_loss, info.seconds);
#endif
        mon = (val || nval) ? vl : info.train_loss;
        if (mon < best - o.min_delta || !have_best) {
            if (mon < best) best = mon;
            best_epoch = epoch; wait = 0; have_best = 1;
            memcpy(tr->best, g->params, (size_t)g->n_params * sizeof(float));
        } else wait++;
        if (o.callback) {   /* (MPI: on every rank; rank 0's answer counts) */
            double stop = o.callback(&info, o.user) != 0;
            advnn__mpi_bcast(tr, &stop, 1);
            if (stop != 0) { epoch++; break; }
        }
        if (o.patience > 0 && wait >= o.patience) { epoch++; break; }
    }
    if (st == ADVNN_OK && o.restore_best && have_best) { memcpy(g->params, tr->best, (size_t)g->n_params * sizeof(float)); g->wgen++; }
    ADVNN_FREE(perm);
    if (res) { res->epochs_run = epoch; res->best_epoch = best_epoch; res->best_loss = best; }
    return st;
}

/* ---------------------------------------------------------------- adversarial training */
ADVNN_DEF advnn_adv_opts advnn_adv_defaults(void) {
    advnn_adv_opts o;
    memset(&o, 0, sizeof o);
    o.mode = ADVNN_ADV_ALTERNATING; o.main_group = "main"; o.adv_group = "adv";
    o.main_loss = -1; o.adv_loss = -1; o.grad_reverse = -1; o.adv_steps = 1; o.epochs = 10;
    o.lambda = 1.0f; o.shuffle = 1; o.verbose = 1; o.select_tolerance = INFINITY;
    return o;
}

ADVNN_DEF advnn_status advnn_background_weights(const float *label, const float *w, int64_t n, float *out) {
    double tot = 0, bkg = 0, k;
    int64_t i;
    if (!label || !out || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_background_weights: NULL array or n = %lld", (long long)n);
    for (i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        if (!isfinite(wi) || !isfinite(label[i])) return advnn__fail(ADVNN_ERR_ARG, "advnn_background_weights: row %lld is not finite", (long long)i);
        tot += wi;
        if (label[i] < 0.5f) bkg += wi;
    }
    if (!(bkg > 0)) return advnn__fail(ADVNN_ERR_ARG, "advnn_background_weights: background weights sum to %g (need > 0)", bkg);
    k = tot / bkg;
    for (i = 0; i < n; i++) out[i] = label[i] < 0.5f ? (float)((w ? w[i] : 1.0) * k) : 0.0f;
    return ADVNN_OK;
}

/* Marks what one sub-step computes: which = 0 every loss but adv_loss, 1 adv_loss only, 2 every loss. */
static void advnn__mark_losses(advnn_ws *ws, int adv_loss, int which) {
    const advnn_graph *g = ws->g;
    int i, j;
    memset(ws->need, 0, (size_t)g->n_nodes);
    for (i = 0; i < g->n_nodes; i++)
        if (ADVNN__IS_LOSS(g->nodes[i].kind)) ws->need[i] = which == 2 || (which == 1) == (i == adv_loss);
    for (i = g->n_nodes - 1; i >= 0; i--)
        if (ws->need[i]) for (j = 0; j < g->nodes[i].n_in; j++) ws->need[g->nodes[i].in[j]] = 1;
}

/* Is node a an ancestor of (or equal to) node `node`? One pass in topological (id) order. */
static int advnn__is_ancestor(const advnn_graph *g, int a, int node) {
    unsigned char *r;
    int i, j, res;
    if (a == node) return 1;
    if (node < a) return 0;
    if (!(r = (unsigned char *)ADVNN_MALLOC((size_t)node + 1))) return 0;
    memset(r, 0, (size_t)node + 1);
    r[a] = 1;
    for (i = a + 1; i <= node; i++)
        for (j = 0; j < g->nodes[i].n_in; j++) if (r[g->nodes[i].in[j]]) { r[i] = 1; break; }
    res = r[node];
    ADVNN_FREE(r);
    return res;
}

/* Skip the rows where the adversary's loss weight is 0 (advnn__mark_sub). Off only in tests, which
 * compare against the full computation. */
static int advnn__skip_rows = 1;

/* Resolved options of one adversarial run. */
typedef struct {
    const advnn_adv_opts *o;
    int main_g, adv_g;
    unsigned char *user_on;   /* the user's trainable flags, restored at the end */
    unsigned char *keep;      /* nodes the next sub-step can reuse (see advnn__mark_reusable) */
    unsigned char *next_on;   /* the groups the main step trains */
    float adv_coef;           /* the user's coefficient of the adversary loss */
    int key;                  /* the adversary loss's weight input (one value per row), or -1 */
} advnn__adv;

static advnn_status advnn__adv_setup(advnn_trainer *tr, const advnn_adv_opts *o, advnn__adv *a) {
    advnn_graph *g = tr->g;
    const char *mg = o->main_group ? o->main_group : "main", *ag = o->adv_group ? o->adv_group : "adv";
    memset(a, 0, sizeof *a);
    a->o = o;
    if (o->mode != ADVNN_ADV_JOINT && o->mode != ADVNN_ADV_ALTERNATING) return advnn__fail(ADVNN_ERR_ARG, "adversarial training: unknown mode %d", (int)o->mode);
    if ((a->main_g = advnn__find_group(g, mg)) < 0) return advnn__fail(ADVNN_ERR_ARG, "adversarial training: no parameter group '%s' (main network)", mg);
    if ((a->adv_g = advnn__find_group(g, ag)) < 0) return advnn__fail(ADVNN_ERR_ARG, "adversarial training: no parameter group '%s' (adversary)", ag);
    if (a->main_g == a->adv_g) return advnn__fail(ADVNN_ERR_ARG, "adversarial training: main and adversary groups are both '%s'", mg);
    if (o->main_loss < 0 || o->main_loss >= g->n_nodes || !ADVNN__IS_LOSS(g->nodes[o->main_loss].kind))
        return advnn__fail(ADVNN_ERR_ARG, "adversarial training: main_loss %d is not a loss node", o->main_loss);
    if (o->adv_loss < 0 || o->adv_loss >= g->n_nodes || !ADVNN__IS_LOSS(g->nodes[o->adv_loss].kind) || o->adv_loss == o->main_loss)
        return advnn__fail(ADVNN_ERR_ARG, "adversarial training: adv_loss %d is not a loss node other than main_loss", o->adv_loss);
    if (o->grad_reverse >= 0) {
        if (o->grad_reverse >= g->n_nodes || g->nodes[o->grad_reverse].kind != ADVNN__GRAD_REVERSE)
            return advnn__fail(ADVNN_ERR_ARG, "adversarial training: node %d is not a gradient-reversal node", o->grad_reverse);
        if (!advnn__is_ancestor(g, o->grad_reverse, o->adv_loss) || advnn__is_ancestor(g, o->grad_reverse, o->main_loss))
            return advnn__fail(ADVNN_ERR_ARG, "adversarial training: the reversal node %d must feed the adversary's loss and not the main loss", o->grad_reverse);
    } else if (o->mode == ADVNN_ADV_JOINT)
        return advnn__fail(ADVNN_ERR_ARG, "adversarial training: the joint schedule needs a gradient-reversal node (grad_reverse)");
    if (o->adv_steps < 1 || o->epochs < 0 || o->pretrain_main_epochs < 0 || o->pretrain_adv_epochs < 0 || o->lambda_ramp_epochs < 0)
        return advnn__fail(ADVNN_ERR_ARG, "adversarial training: adv_steps %d (>= 1), epochs %d / %d / %d and ramp %d (>= 0)",
                           o->adv_steps, o->pretrain_main_epochs, o->pretrain_adv_epochs, o->epochs, o->lambda_ramp_epochs);
    if (!isfinite(o->lambda) || !(o->select_tolerance >= 0))
        return advnn__fail(ADVNN_ERR_ARG, "adversarial training: lambda %g must be finite, select_tolerance %g >= 0", (double)o->lambda, o->select_tolerance);
    a->adv_coef = g->nodes[o->adv_loss].fp[0];
    a->key = advnn__loss_weight(&g->nodes[o->adv_loss]);
    if (a->key >= 0 && !(g->nodes[a->key].kind == ADVNN__INPUT && g->nodes[a->key].size == 1)) a->key = -1;
    a->user_on = (unsigned char *)ADVNN_MALLOC(2 * (size_t)g->n_groups + (size_t)g->n_nodes);
    if (!a->user_on) return advnn__fail(ADVNN_ERR_NOMEM, "adversarial training: out of memory");
    a->keep = a->user_on + g->n_groups;
    a->next_on = a->keep + g->n_nodes;
    memcpy(a->user_on, tr->gon, (size_t)g->n_groups);
    return ADVNN_OK;
}

static void advnn__adv_finish(advnn_trainer *tr, advnn__adv *a) {
    if (!a->user_on) return;
    memcpy(tr->gon, a->user_on, (size_t)tr->g->n_groups);
    tr->g->nodes[a->o->adv_loss].fp[0] = a->adv_coef;
    ADVNN_FREE(a->user_on);
    a->user_on = NULL;
}

/* One optimizer step of the players chosen by `which` (0 main side, 1 adversary, 2 both) on the
 * objective of the losses advnn__mark_losses selects. */
static advnn_status advnn__adv_substep(advnn_trainer *tr, const advnn__adv *a, int which, float lambda, const advnn_dataset *d,
                                       const int64_t *idx, const advnn_dataset *d2, const int64_t *idx2, int n,
                                       double *lmain, double *ladv) {
    advnn_graph *g = tr->g;
    advnn_ws *ws = tr->ws;
    const advnn_adv_opts *o = a->o;
    advnn_status st;
    int i;
    for (i = 0; i < g->n_groups; i++) {
        int on = which == 2 || (which == 1) == (i == a->adv_g);
        tr->gon[i] = (unsigned char)(a->user_on[i] && on);
    }
    /* the main network's gradient from the adversary is -lambda grad L_adv: through the reversal node,
     * or by the loss coefficient when there is none; the adversary itself always minimises L_adv */
    if (o->grad_reverse >= 0) g->nodes[o->grad_reverse].fp[0] = lambda;
    g->nodes[o->adv_loss].fp[0] = (which == 0 && o->grad_reverse < 0) ? -lambda * a->adv_coef : a->adv_coef;
    ws->training = 1;
    advnn__mark_losses(ws, o->adv_loss, which == 0 ? 2 : which == 1 ? 1 : 2);
    if (which == 0 && lambda == 0.0f) advnn__mark_losses(ws, o->adv_loss, 0);   /* nothing to learn from the adversary */
    advnn__mark_grad(ws);
    tr->key = advnn__skip_rows ? a->key : -1;
    st = advnn__run(tr, d, idx, 0, n, d2, idx2, 1);
    tr->key = -1;
    if (st != ADVNN_OK || (st = advnn__update(tr)) != ADVNN_OK) return st;
    if (lmain) *lmain = ws->need[o->main_loss] ? ws->loss[o->main_loss] : NAN;
    if (ladv) *ladv = ws->need[o->adv_loss] ? ws->loss[o->adv_loss] : NAN;
    return ADVNN_OK;
}

/* After a pass on some rows, the nodes whose value the next pass on the same rows, with the groups
 * next_on trainable, would recompute unchanged: no parameters the last pass's update changed, no
 * dropout, no BatchNorm whose mode (batch or running statistics) the next pass changes, and only
 * such inputs. Forward passes keep no mode-dependent state otherwise, so these values (and what
 * the backward reads of them) are exactly the recomputed ones: the frozen main network without
 * BatchNorm or dropout (W3's autoencoder) is computed once per batch, not once per sub-step. */
static void advnn__mark_reusable(const advnn_trainer *tr, unsigned char *keep, const unsigned char *next_on) {
    const advnn_graph *g = tr->g;
    int i, j;
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        unsigned char k = tr->ws->need[i] && !ADVNN__IS_LOSS(n->kind) && !(n->kind == ADVNN__DROPOUT && n->fp[0] > 0.0f)
                          && !(tr->ws->part && tr->ws->sub[i])   /* holds the key rows only */
                          && !(n->n_param && tr->gon[n->group])
                          && !(n->kind == ADVNN__BATCHNORM && tr->gon[n->group] != next_on[n->group]);
        for (j = 0; k && j < n->n_in; j++) k = keep[n->in[j]];
        keep[i] = k;
    }
}

static advnn_status advnn__adv_batch(advnn_trainer *tr, const advnn__adv *a, float lambda, const advnn_dataset *d,
                                     const int64_t *idx, const int64_t *idx2, int n, double *lmain, double *ladv) {
    const advnn_adv_opts *o = a->o;
    const advnn_dataset *d2 = o->adv_data ? o->adv_data : d;
    advnn_status st = ADVNN_OK;
    double la = 0, l;
    int k;
    if (!o->adv_data) idx2 = idx;
    if (o->mode == ADVNN_ADV_JOINT) return advnn__adv_substep(tr, a, 2, lambda, d, idx, d2, idx2, n, lmain, ladv);
    for (k = 0; k < o->adv_steps; k++) {
        st = advnn__adv_substep(tr, a, 1, lambda, d, idx, d2, idx2, n, NULL, &l);
        if (st != ADVNN_OK) break;
        la += l;
        if (k == 0 && o->adv_steps > 1) { advnn__mark_reusable(tr, a->keep, tr->gon); tr->ws->keep = a->keep; }
    }
    if (st == ADVNN_OK) {   /* the main step's forward: the same rows, the main side now trainable */
        for (k = 0; k < tr->g->n_groups; k++) a->next_on[k] = (unsigned char)(a->user_on[k] && k != a->adv_g);
        advnn__mark_reusable(tr, a->keep, a->next_on);
        tr->ws->keep = a->keep;
        st = advnn__adv_substep(tr, a, 0, lambda, d, idx, d2, idx2, n, lmain, NULL);
    }
    tr->ws->keep = NULL;
    if (st != ADVNN_OK) return st;
    if (ladv) *ladv = la / o->adv_steps;
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_adv_step(advnn_trainer *tr, const advnn_adv_opts *o, float lambda, const advnn_dataset *d,
                                      const int64_t *idx, const int64_t *adv_idx, int n, double *main_loss, double *adv_loss) {
    advnn__adv a;
    advnn_status st;
    if (!tr || !o || !d || !idx || (o->adv_data && !adv_idx)) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_step: NULL argument");
    if (n < 1 || n > tr->batch) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_step: batch of %d rows (1..%d)", n, tr->batch);
    if (!isfinite(lambda)) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_step: lambda is not finite");
    if ((st = advnn__adv_setup(tr, o, &a)) != ADVNN_OK) return st;
    st = advnn__adv_batch(tr, &a, lambda, d, idx, adv_idx, n, main_loss, adv_loss);
    advnn__adv_finish(tr, &a);
    return st;
}

/* Checkpoints that can still be selected: those no other candidate beats on both quality and cost. */
typedef struct { int epoch; double q, c; float *w; } advnn__ckpt;

static int advnn__ckpt_offer(advnn__ckpt **ck, int *n, int *cap, const advnn_graph *g, int epoch, double q, double c) {
    int i, k = 0;
    for (i = 0; i < *n; i++) if ((*ck)[i].q >= q && (*ck)[i].c <= c) return 1;   /* an earlier one is as good */
    for (i = 0; i < *n; i++) {
        if (q >= (*ck)[i].q && c <= (*ck)[i].c) { advnn__free((*ck)[i].w); continue; }
        (*ck)[k++] = (*ck)[i];
    }
    *n = k;
    if (!advnn__grow((void **)ck, cap, *n + 1, sizeof **ck)) return 0;
    (*ck)[*n].w = (float *)advnn__zalloc((size_t)g->n_params * sizeof(float));
    if (!(*ck)[*n].w) return 0;
    memcpy((*ck)[*n].w, g->params, (size_t)g->n_params * sizeof(float));
    (*ck)[*n].epoch = epoch; (*ck)[*n].q = q; (*ck)[*n].c = c;
    (*n)++;
    return 1;
}

static void advnn__shuffle(advnn__rng *r, int64_t *p, int64_t n) {
    int64_t i;
    for (i = n - 1; i > 0; i--) { int64_t j = (int64_t)advnn__rng_below(r, (uint64_t)i + 1), t = p[i]; p[i] = p[j]; p[j] = t; }
}

ADVNN_DEF advnn_status advnn_adv_fit(advnn_trainer *tr, const advnn_dataset *train, const advnn_adv_opts *opts,
                                     advnn_adv_result *res) {
    advnn_adv_opts o;
    advnn__adv a;
    advnn_graph *g;
    advnn_status st;
    int64_t N, N2 = 0, *perm = NULL, *perm2 = NULL, *idx2 = NULL, pos2 = 0, s = 0, i;
    int total, epoch = 0, nck = 0, capck = 0, sel = -1, b, any = 0, nb = 0, ooc_multi;
    double qmax = -INFINITY;
    advnn__ckpt *ck = NULL;
    static const char *const phase_name[3] = { "main", "adv-pre", "adversarial" };
    if (!tr || !train || !opts) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_fit: NULL trainer, data or options");
    o = *opts;
    g = tr->g;
    N = advnn_dataset_size(train);
    if (N < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_fit: the training set is empty");
    if (o.adv_data && (N2 = advnn_dataset_size(o.adv_data)) < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_adv_fit: the adversary's data set is empty");
    if ((st = advnn__adv_setup(tr, &o, &a)) != ADVNN_OK) return st;
    /* every input the run reads must be present and shaped right before the weights change */
    advnn__mark_losses(tr->ws, o.adv_loss, 2);
    for (i = 0; i < g->n_inputs; i++) {
        const advnn_tensor *t;
        int id = g->inputs[i];
        const advnn_dataset *src = (o.adv_data && !advnn__has_col(train, g->nodes[id].name)) ? o.adv_data : train;
        if (!tr->ws->need[id]) continue;
        if ((st = advnn__dcol_for(g, src, id, &t)) != ADVNN_OK) {
            if (src == o.adv_data) advnn__fail(st, "advnn_adv_fit: input '%s' is in neither the training data nor the adversary's data", g->nodes[id].name);
            advnn__adv_finish(tr, &a);
            return st;
        }
    }
    ooc_multi = advnn__ooc_on(train) && N > train->window_rows;   /* files, more than one window: advnn__ooc_it */
    {   /* MPI: every rank must run the same epochs over the same rows, else they would wait for each other */
        static const char *const what[6] = { "training rows", "second-stream rows", "epochs (all phases)", "schedule (mode, adv_steps)",
                                             "shuffle flag", "window size (files)" };
        uint64_t v[6];
        v[0] = (uint64_t)N; v[1] = (uint64_t)N2; v[2] = (uint64_t)(o.pretrain_main_epochs + o.pretrain_adv_epochs + o.epochs);
        v[3] = (uint64_t)o.mode * 65536 + (uint64_t)o.adv_steps; v[4] = (uint64_t)o.shuffle;
        v[5] = (uint64_t)(ooc_multi ? train->window_rows * 65536 + train->chunk_rows : 0);
        if ((st = advnn__mpi_agree(tr, v, 6, what, "advnn_adv_fit", "")) != ADVNN_OK) { advnn__adv_finish(tr, &a); return st; }
    }
    perm = (int64_t *)ADVNN_MALLOC((size_t)((ooc_multi ? 1 : N) + (o.adv_data ? N2 + tr->batch : 0)) * sizeof(int64_t));
    if (!perm) { advnn__adv_finish(tr, &a); return advnn__mpi_local(tr, advnn__fail(ADVNN_ERR_NOMEM, "advnn_adv_fit: out of memory")); }
    for (i = 0; i < (ooc_multi ? 1 : N); i++) perm[i] = i;
    if (o.adv_data) {
        perm2 = perm + (ooc_multi ? 1 : N); idx2 = perm2 + N2;
        for (i = 0; i < N2; i++) perm2[i] = i;
        if (o.shuffle) advnn__shuffle(&tr->rng, perm2, N2);
    }
    total = o.pretrain_main_epochs + o.pretrain_adv_epochs + o.epochs;
    for (epoch = 0; epoch < total; epoch++) {
        advnn_adv_epoch info;
        double t0 = advnn__now(), sm = 0, sa = 0, lm, la;
        int64_t cm = 0, ca = 0;
        int ae = epoch - o.pretrain_main_epochs - o.pretrain_adv_epochs;
        advnn_adv_phase ph = epoch < o.pretrain_main_epochs ? ADVNN_PHASE_PRETRAIN_MAIN : ae < 0 ? ADVNN_PHASE_PRETRAIN_ADV : ADVNN_PHASE_ADVERSARIAL;
        float lam = ph != ADVNN_PHASE_ADVERSARIAL ? 0.0f
                  : (o.lambda_ramp_epochs > 0 && ae + 1 < o.lambda_ramp_epochs) ? o.lambda * (float)(ae + 1) / (float)o.lambda_ramp_epochs : o.lambda;
        const advnn_dataset *src = train;   /* files: the window view (one window: all rows, the in-memory order) */
        const int64_t *ix = perm;
        advnn__ooc_it it;
        int64_t at;
        if (ooc_multi) st = advnn__mpi_local(tr, advnn__ooc_it_begin(&it, tr, train, N, o.shuffle));
        else {
            if (o.shuffle) advnn__shuffle(&tr->rng, perm, N);
            st = advnn__mpi_local(tr, advnn__ooc_rows(train, 0, N, N, NULL, &src, &at));
        }
        for (s = 0; st == ADVNN_OK; s += nb) {
            if (ooc_multi) { if (!advnn__ooc_it_next(&it, &src, &ix, &nb)) { st = advnn__mpi_local(tr, it.st); break; } }
            else if (s < N) { nb = (int)(N - s < tr->batch ? N - s : tr->batch); ix = perm + s; }
            else break;
            if (o.adv_data)   /* the next nb rows of the second stream, reshuffled when it runs out */
                for (b = 0; b < nb; b++) {
                    if (pos2 == N2) { pos2 = 0; if (o.shuffle) advnn__shuffle(&tr->rng, perm2, N2); }
                    idx2[b] = perm2[pos2++];
                }
            lm = la = NAN;
            if (ph == ADVNN_PHASE_PRETRAIN_MAIN)
                st = advnn__adv_substep(tr, &a, 0, 0.0f, src, ix, o.adv_data ? o.adv_data : src, o.adv_data ? idx2 : ix, nb, &lm, NULL);
            else if (ph == ADVNN_PHASE_PRETRAIN_ADV)
                st = advnn__adv_substep(tr, &a, 1, 0.0f, src, ix, o.adv_data ? o.adv_data : src, o.adv_data ? idx2 : ix, nb, NULL, &la);
            else st = advnn__adv_batch(tr, &a, lam, src, ix, idx2, nb, &lm, &la);
            if (st != ADVNN_OK) break;
            if (!isnan(lm)) { sm += lm * nb; cm += nb; }
            if (!isnan(la)) { sa += la * nb; ca += nb; }
        }
        if (ooc_multi) advnn__ooc_it_end(&it);
        if (st != ADVNN_OK) {
            char msg[sizeof advnn__errbuf];
            memcpy(msg, advnn__errbuf, sizeof msg);
            advnn__fail(st, "advnn_adv_fit: epoch %d (%s), batch at row %lld: %s", epoch, phase_name[ph], (long long)s, msg);
            break;
        }
        if ((st = advnn__mpi_check_state(tr, "advnn_adv_fit", epoch)) != ADVNN_OK) break;
        memset(&info, 0, sizeof info);
        info.epoch = epoch; info.phase = ph; info.lambda = lam;
        info.main_loss = cm ? sm / (double)cm : NAN; info.adv_loss = ca ? sa / (double)ca : NAN;
        info.seconds = advnn__now() - t0; info.trainer = tr; info.graph = g;
        info.quality = NAN; info.cost = NAN;
        /* the callback sees the user's trainable flags and coefficients */
        memcpy(tr->gon, a.user_on, (size_t)g->n_groups);
        g->nodes[o.adv_loss].fp[0] = a.adv_coef;
        {
            int stop = o.callback ? o.callback(&info, o.user) : 0;
            memcpy(a.user_on, tr->gon, (size_t)g->n_groups);   /* ...and may change them */
            if (o.callback) {   /* MPI: the callback ran on every rank; rank 0's decisions count */
                double dv[3];
                dv[0] = stop != 0; dv[1] = info.quality; dv[2] = info.cost;
                advnn__mpi_bcast(tr, dv, 3);
                stop = dv[0] != 0; info.quality = dv[1]; info.cost = dv[2];
            }
#ifndef ADVNN_NO_STDIO
            if (o.verbose && tr->rank == 0) {
                char lm_s[32] = "-", la_s[32] = "-";   /* "-": that player did not run this epoch */
                if (!isnan(info.main_loss)) snprintf(lm_s, sizeof lm_s, "%.5f", info.main_loss);
                if (!isnan(info.adv_loss)) snprintf(la_s, sizeof la_s, "%.5f", info.adv_loss);
                fprintf(stderr, "epoch %3d/%d %-11s lambda %-8.4g main %-8s  adv %-8s  %.2f s", epoch + 1, total, phase_name[ph],
                        (double)lam, lm_s, la_s, info.seconds);
                if (!isnan(info.cost)) fprintf(stderr, "  quality %.5f  cost %.5f", info.quality, info.cost);
                fputc('\n', stderr);
            }
#endif
            if (ph == ADVNN_PHASE_ADVERSARIAL && !isnan(info.cost)) {
                double q = isnan(info.quality) ? 0.0 : info.quality;
                any = 1;
                if (q > qmax) qmax = q;
                if (!advnn__ckpt_offer(&ck, &nck, &capck, g, epoch, q, info.cost)) {
                    st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_adv_fit: out of memory keeping a checkpoint of epoch %d", epoch);
                    epoch++;
                    break;
                }
            }
            if (stop) { epoch++; break; }
        }
    }
    if (st == ADVNN_OK && any) {
        double tol = o.select_tolerance;
        for (b = 0; b < nck; b++) {
            if (!(ck[b].q >= qmax - tol)) continue;
            if (sel < 0 || ck[b].c < ck[sel].c || (ck[b].c == ck[sel].c && (ck[b].q > ck[sel].q || (ck[b].q == ck[sel].q && ck[b].epoch < ck[sel].epoch))))
                sel = b;
        }
        if (sel >= 0) { memcpy(g->params, ck[sel].w, (size_t)g->n_params * sizeof(float)); g->wgen++; }
    }
    if (res) {
        res->epochs_run = epoch;
        res->selected_epoch = sel >= 0 ? ck[sel].epoch : -1;
        res->selected_quality = sel >= 0 ? ck[sel].q : NAN;
        res->selected_cost = sel >= 0 ? ck[sel].c : NAN;
    }
#ifndef ADVNN_NO_STDIO
    if (o.verbose && tr->rank == 0 && sel >= 0) fprintf(stderr, "restored epoch %d (quality %.5f, cost %.5f)\n", ck[sel].epoch + 1, ck[sel].q, ck[sel].c);
#endif
    for (b = 0; b < nck; b++) advnn__free(ck[b].w);
    ADVNN_FREE(ck);
    ADVNN_FREE(perm);
    advnn__adv_finish(tr, &a);
    return st;
}

/* ---------------------------------------------------------------- metrics */
typedef struct { float s; int64_t i; } advnn__si;
static int advnn__cmp_si(const void *a, const void *b) {
    const advnn__si *x = (const advnn__si *)a, *y = (const advnn__si *)b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return (x->i > y->i) - (x->i < y->i);  /* total order: qsort is not stable */
}

ADVNN_DEF advnn_status advnn_auc(const float *score, const float *label, const float *weight, int64_t n, double *auc) {
    advnn__si *v;
    int64_t i, j;
    double ws = 0, wb = 0, bcum = 0, acc = 0;
    if (!score || !label || !auc || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_auc: NULL argument or n = %lld", (long long)n);
    for (i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!isfinite(score[i]) || !isfinite(label[i]) || !isfinite(w))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_auc: non-finite score, label or weight at %lld", (long long)i);
        if (label[i] > 0.5f) ws += w; else wb += w;
    }
    if (!(ws > 0) || !(wb > 0)) return advnn__fail(ADVNN_ERR_ARG, "advnn_auc: needs positive total weight of both classes (signal %g, background %g)", ws, wb);
    v = (advnn__si *)ADVNN_MALLOC((size_t)n * sizeof *v);
    if (!v) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_auc: out of memory");
    for (i = 0; i < n; i++) { v[i].s = score[i]; v[i].i = i; }
    qsort(v, (size_t)n, sizeof *v, advnn__cmp_si);
    for (i = 0; i < n; i = j) {  /* one group of tied scores at a time: ties count half */
        double gs = 0, gb = 0;
        for (j = i; j < n && v[j].s == v[i].s; j++) {
            double w = weight ? weight[v[j].i] : 1.0;
            if (label[v[j].i] > 0.5f) gs += w; else gb += w;
        }
        acc += gs * (bcum + 0.5 * gb);
        bcum += gb;
    }
    ADVNN_FREE(v);
    *auc = acc / (ws * wb);
    return ADVNN_OK;
}

/* Shared by advnn_roc and advnn_rejection_at: validates, sorts, writes the ROC into es/eb. */
static advnn_status advnn__roc_core(const char *fn, const float *score, const float *label, const float *weight, int64_t n,
                                    double *es, double *eb, int64_t *npoints, double *wb_out, double *wbmin_out) {
    advnn__si *v;
    int64_t i, j, k = 0;
    double ws = 0, wb = 0, wbmin = INFINITY, cs = 0, cb = 0;
    for (i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!isfinite(score[i]) || !isfinite(label[i]) || !isfinite(w))
            return advnn__fail(ADVNN_ERR_NAN, "%s: non-finite score, label or weight at %lld", fn, (long long)i);
        if (label[i] > 0.5f) ws += w;
        else { wb += w; if (w > 0 && w < wbmin) wbmin = w; }
    }
    if (!(ws > 0) || !(wb > 0))
        return advnn__fail(ADVNN_ERR_ARG, "%s: needs positive total weight of both classes (signal %g, background %g)", fn, ws, wb);
    v = (advnn__si *)ADVNN_MALLOC((size_t)n * sizeof *v);
    if (!v) return advnn__fail(ADVNN_ERR_NOMEM, "%s: out of memory", fn);
    for (i = 0; i < n; i++) { v[i].s = score[i]; v[i].i = i; }
    qsort(v, (size_t)n, sizeof *v, advnn__cmp_si);
    es[0] = 0; eb[0] = 0;
    for (i = n - 1; i >= 0; i = j) {  /* from the highest score down, one block of tied scores at a time */
        for (j = i; j >= 0 && v[j].s == v[i].s; j--) {
            double w = weight ? weight[v[j].i] : 1.0;
            if (label[v[j].i] > 0.5f) cs += w; else cb += w;
        }
        k++;
        es[k] = cs / ws; eb[k] = cb / wb;
    }
    es[k] = 1.0; eb[k] = 1.0;  /* everything passes the lowest threshold (exact, whatever the summation order) */
    ADVNN_FREE(v);
    *npoints = k + 1;
    if (wb_out) *wb_out = wb;
    if (wbmin_out) *wbmin_out = wbmin;
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_roc(const float *score, const float *label, const float *weight, int64_t n,
                                 double *eff_sig, double *eff_bkg, int64_t *npoints) {
    if (!score || !label || !eff_sig || !eff_bkg || !npoints || n < 1)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_roc: NULL argument or n = %lld", (long long)n);
    return advnn__roc_core("advnn_roc", score, label, weight, n, eff_sig, eff_bkg, npoints, NULL, NULL);
}

ADVNN_DEF advnn_status advnn_rejection_at(const float *score, const float *label, const float *weight, int64_t n,
                                          double target_eff_sig, double *rejection, double *achieved_eff_sig,
                                          int *is_lower_limit) {
    double *es, wb, wbmin, s, b;
    int64_t np, k;
    advnn_status st;
    if (!score || !label || !rejection || n < 1)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_rejection_at: NULL argument or n = %lld", (long long)n);
    if (!(target_eff_sig > 0 && target_eff_sig <= 1))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_rejection_at: target signal efficiency %g outside (0, 1]", target_eff_sig);
    es = (double *)ADVNN_MALLOC(2 * ((size_t)n + 1) * sizeof *es);
    if (!es) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_rejection_at: out of memory");
    st = advnn__roc_core("advnn_rejection_at", score, label, weight, n, es, es + n + 1, &np, &wb, &wbmin);
    if (st != ADVNN_OK) { ADVNN_FREE(es); return st; }
    for (k = 1; k < np - 1 && es[k] < target_eff_sig; k++) {}  /* first point reaching the target (the last one does) */
    if (es[k] == target_eff_sig || !(es[k] > es[k - 1])) { s = es[k]; b = es[n + 1 + k]; }
    else {
        double t = (target_eff_sig - es[k - 1]) / (es[k] - es[k - 1]);
        s = target_eff_sig;
        b = es[n + 1 + k - 1] + t * (es[n + 1 + k] - es[n + 1 + k - 1]);
    }
    ADVNN_FREE(es);
    if (achieved_eff_sig) *achieved_eff_sig = s;
    if (b > 0) { *rejection = 1.0 / b; if (is_lower_limit) *is_lower_limit = 0; }
    else { *rejection = wb / wbmin; if (is_lower_limit) *is_lower_limit = 1; }
    return ADVNN_OK;
}

/* Kolmogorov survival function Q(lambda) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2). Below
 * lambda = 1.18 that series converges slowly (not at all as lambda -> 0), so there we use the
 * equivalent theta-function form 1 - sqrt(2 pi)/lambda sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 lambda^2)),
 * which converges fast; each needs under 6 terms for double precision. */
static double advnn__kolmogorov_q(double lam) {
    double sum = 0, p;
    int j;
    if (!(lam > 0)) return 1.0;
    if (lam < 1.18) {
        const double c = -9.869604401089358 / (8.0 * lam * lam);  /* -pi^2 / (8 lambda^2) */
        for (j = 1; j <= 20; j++) {
            double t = exp(c * (double)((2 * j - 1) * (2 * j - 1)));
            sum += t;
            if (t < 1e-17 * sum) break;
        }
        p = 1.0 - 2.5066282746310002 / lam * sum;
    } else {
        for (j = 1; j <= 100; j++) {
            double t = exp(-2.0 * (double)j * (double)j * lam * lam);
            sum += (j & 1) ? t : -t;
            if (t < 1e-17 * sum) break;
        }
        p = 2.0 * sum;
    }
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

ADVNN_DEF advnn_status advnn_ks(const float *a, const float *wa, int64_t na, const float *b, const float *wb, int64_t nb,
                                double *D, double *pvalue) {
    advnn__si *v;
    int64_t i, j, n;
    double sa = 0, sa2 = 0, sb = 0, sb2 = 0, ca = 0, cb = 0, d = 0, ea, eb, ne, sq;
    if (!a || !b || !D || na < 1 || nb < 1)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_ks: NULL argument or empty sample (na = %lld, nb = %lld)", (long long)na, (long long)nb);
    for (i = 0; i < na; i++) {
        double w = wa ? wa[i] : 1.0;
        if (!isfinite(a[i]) || !isfinite(w)) return advnn__fail(ADVNN_ERR_NAN, "advnn_ks: non-finite value or weight at %lld of sample a", (long long)i);
        sa += w; sa2 += w * w;
    }
    for (i = 0; i < nb; i++) {
        double w = wb ? wb[i] : 1.0;
        if (!isfinite(b[i]) || !isfinite(w)) return advnn__fail(ADVNN_ERR_NAN, "advnn_ks: non-finite value or weight at %lld of sample b", (long long)i);
        sb += w; sb2 += w * w;
    }
    if (!(sa > 0) || !(sb > 0))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_ks: needs positive total weight of both samples (a %g, b %g)", sa, sb);
    n = na + nb;
    v = (advnn__si *)ADVNN_MALLOC((size_t)n * sizeof *v);
    if (!v) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_ks: out of memory");
    for (i = 0; i < na; i++) { v[i].s = a[i]; v[i].i = i; }
    for (i = 0; i < nb; i++) { v[na + i].s = b[i]; v[na + i].i = na + i; }  /* index >= na: sample b */
    qsort(v, (size_t)n, sizeof *v, advnn__cmp_si);
    for (i = 0; i < n; i = j) {  /* right-continuous CDFs: a block of tied values steps both at once */
        double g;
        for (j = i; j < n && v[j].s == v[i].s; j++) {
            int64_t k = v[j].i;
            if (k < na) ca += wa ? wa[k] : 1.0;
            else cb += wb ? wb[k - na] : 1.0;
        }
        g = fabs(ca / sa - cb / sb);
        if (g > d) d = g;
    }
    ADVNN_FREE(v);
    *D = d;
    if (pvalue) {
        ea = sa * sa / sa2; eb = sb * sb / sb2;
        ne = ea * eb / (ea + eb);
        sq = sqrt(ne);
        *pvalue = advnn__kolmogorov_q((sq + 0.12 + 0.11 / sq) * d);
    }
    return ADVNN_OK;
}

/* Bin of x for nbins equal bins on [lo, hi), -1 outside. The edges are lo + k*step (numpy.linspace),
 * and the index from the multiplication is corrected against them, so a value on an edge lands in
 * the bin that starts there. */
static int advnn__bin(double x, double lo, double hi, int nbins, double step) {
    int64_t k;
    if (!(x >= lo) || !(x < hi)) return -1;
    k = (int64_t)floor((x - lo) / step);
    if (k >= nbins) k = nbins - 1;
    if (k < 0) k = 0;
    if (k > 0 && x < lo + (double)k * step) k--;
    else if (k + 1 < nbins && x >= lo + (double)(k + 1) * step) k++;
    return (int)k;
}

static advnn_status advnn__hist_args(const char *fn, double lo, double hi, int nbins) {
    if (nbins < 1) return advnn__fail(ADVNN_ERR_ARG, "%s: nbins = %d, needs at least 1", fn, nbins);
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi) || !isfinite((hi - lo) / nbins) || !((hi - lo) / nbins > 0))
        return advnn__fail(ADVNN_ERR_ARG, "%s: histogram range [%g, %g) with %d bins is not a finite, non-empty range", fn, lo, hi, nbins);
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_histogram(const float *x, const float *weight, int64_t n, double lo, double hi, int nbins,
                                       double *counts) {
    int64_t i;
    double step;
    advnn_status st;
    if (!x || !counts || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_histogram: NULL argument or n = %lld", (long long)n);
    if ((st = advnn__hist_args("advnn_histogram", lo, hi, nbins)) != ADVNN_OK) return st;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i]) || (weight && !isfinite(weight[i])))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_histogram: non-finite value or weight at %lld", (long long)i);
    step = (hi - lo) / nbins;
    for (i = 0; i < nbins; i++) counts[i] = 0;
    for (i = 0; i < n; i++) {
        int k = advnn__bin(x[i], lo, hi, nbins, step);
        if (k >= 0) counts[k] += weight ? weight[i] : 1.0;
    }
    return ADVNN_OK;
}

ADVNN_DEF double advnn_jsd(const double *p, const double *q, int nbins) {
    double sp = 0, sq = 0, acc = 0;
    int i;
    if (!p || !q || nbins < 1) return NAN;
    for (i = 0; i < nbins; i++) {
        if (!isfinite(p[i]) || !isfinite(q[i]) || p[i] < 0 || q[i] < 0) return NAN;
        sp += p[i]; sq += q[i];
    }
    if (!(sp > 0) || !(sq > 0) || !isfinite(sp) || !isfinite(sq)) return NAN;
    for (i = 0; i < nbins; i++) {
        double a = p[i] / sp, b = q[i] / sq, m = 0.5 * (a + b);
        if (a > 0) acc += a * log2(a / m);
        if (b > 0) acc += b * log2(b / m);
    }
    acc *= 0.5;
    return acc < 0 ? 0 : acc > 1 ? 1 : acc;
}

ADVNN_DEF advnn_status advnn_jsd_pass_fail(const float *score, const float *var, const float *weight, int64_t n,
                                           double cut, double lo, double hi, int nbins, double *jsd) {
    double *h, sp = 0, sf = 0, step;
    int64_t i;
    int k;
    advnn_status st;
    if (!score || !var || !jsd || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_pass_fail: NULL argument or n = %lld", (long long)n);
    if (isnan(cut)) return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_pass_fail: cut is NaN");
    if ((st = advnn__hist_args("advnn_jsd_pass_fail", lo, hi, nbins)) != ADVNN_OK) return st;
    for (i = 0; i < n; i++)
        if (!isfinite(score[i]) || !isfinite(var[i]) || (weight && !isfinite(weight[i])))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_jsd_pass_fail: non-finite score, variable or weight at %lld", (long long)i);
    h = (double *)ADVNN_MALLOC(2 * (size_t)nbins * sizeof *h);
    if (!h) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_jsd_pass_fail: out of memory");
    for (k = 0; k < 2 * nbins; k++) h[k] = 0;
    step = (hi - lo) / nbins;
    for (i = 0; i < n; i++) {
        int b = advnn__bin(var[i], lo, hi, nbins, step);
        double w = weight ? weight[i] : 1.0;
        if (b < 0) continue;
        if (score[i] >= cut) { h[b] += w; sp += w; } else { h[nbins + b] += w; sf += w; }
    }
    if (!(sp > 0) || !(sf > 0)) {
        ADVNN_FREE(h);
        return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_pass_fail: needs positive weight in [%g, %g) on both sides of the cut %g (pass %g, fail %g)",
                           lo, hi, cut, sp, sf);
    }
    *jsd = advnn_jsd(h, h + nbins, nbins);
    ADVNN_FREE(h);
    if (isnan(*jsd)) return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_pass_fail: a histogram bin is negative (negative weights)");
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_jsd_floor(const float *var, const float *weight, int64_t n, double pass_fraction,
                                       double lo, double hi, int nbins, int repeats, uint64_t seed, double *jsd_mean) {
    int64_t i, npass, *perm;
    int *bin, r, k;
    double *h, step, acc = 0;
    uint64_t state = seed;
    advnn_status st;
    if (!var || !jsd_mean || n < 2) return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_floor: NULL argument or n = %lld (needs 2)", (long long)n);
    if ((st = advnn__hist_args("advnn_jsd_floor", lo, hi, nbins)) != ADVNN_OK) return st;
    if (repeats < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_floor: repeats = %d, needs at least 1", repeats);
    if (!(pass_fraction > 0 && pass_fraction < 1))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_floor: pass fraction %g outside (0, 1)", pass_fraction);
    npass = (int64_t)floor(pass_fraction * (double)n + 0.5);
    if (npass < 1 || npass > n - 1)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_floor: pass fraction %g of %lld events leaves one side empty", pass_fraction, (long long)n);
    for (i = 0; i < n; i++)
        if (!isfinite(var[i]) || (weight && !isfinite(weight[i])))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_jsd_floor: non-finite variable or weight at %lld", (long long)i);
    perm = (int64_t *)ADVNN_MALLOC((size_t)n * sizeof *perm);
    bin = (int *)ADVNN_MALLOC((size_t)n * sizeof *bin);
    h = (double *)ADVNN_MALLOC(2 * (size_t)nbins * sizeof *h);
    if (!perm || !bin || !h) {
        ADVNN_FREE(perm); ADVNN_FREE(bin); ADVNN_FREE(h);
        return advnn__fail(ADVNN_ERR_NOMEM, "advnn_jsd_floor: out of memory");
    }
    step = (hi - lo) / nbins;
    for (i = 0; i < n; i++) { perm[i] = i; bin[i] = advnn__bin(var[i], lo, hi, nbins, step); }
    for (r = 0; r < repeats; r++) {
        double j;
        for (k = 0; k < 2 * nbins; k++) h[k] = 0;
        /* partial Fisher-Yates: perm[0..npass) becomes a uniform random subset (carrying on from the
         * previous repeat's order is fine: each step is uniform whatever the starting order) */
        for (i = 0; i < npass; i++) {
            uint64_t span = (uint64_t)(n - i), lim = (uint64_t)-1 - ((uint64_t)-1 % span), x;
            int64_t s, t;
            do { x = advnn__splitmix(&state); } while (x >= lim);  /* unbiased */
            s = i + (int64_t)(x % span);
            t = perm[i]; perm[i] = perm[s]; perm[s] = t;
        }
        for (i = 0; i < n; i++) {
            int64_t e = perm[i];
            if (bin[e] >= 0) h[(i < npass ? 0 : nbins) + bin[e]] += weight ? weight[e] : 1.0;
        }
        j = advnn_jsd(h, h + nbins, nbins);
        if (isnan(j)) {
            ADVNN_FREE(perm); ADVNN_FREE(bin); ADVNN_FREE(h);
            return advnn__fail(ADVNN_ERR_ARG, "advnn_jsd_floor: split %d has an empty or negative histogram in [%g, %g) "
                               "(too few events in range, or negative weights)", r, lo, hi);
        }
        acc += j;
    }
    ADVNN_FREE(perm); ADVNN_FREE(bin); ADVNN_FREE(h);
    *jsd_mean = acc / repeats;
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_pearson(const float *x, const float *y, const float *weight, int64_t n, double *r) {
    int64_t i;
    double sw = 0, mx = 0, my = 0, cxy = 0, cxx = 0, cyy = 0, c;
    if (!x || !y || !r || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_pearson: NULL argument or n = %lld", (long long)n);
    for (i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        if (!isfinite(x[i]) || !isfinite(y[i]) || !isfinite(w))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_pearson: non-finite x, y or weight at %lld", (long long)i);
        sw += w; mx += w * x[i]; my += w * y[i];
    }
    if (!(sw > 0)) return advnn__fail(ADVNN_ERR_ARG, "advnn_pearson: needs positive total weight (got %g)", sw);
    mx /= sw; my /= sw;
    for (i = 0; i < n; i++) {  /* second pass about the means: no cancellation */
        double w = weight ? weight[i] : 1.0, dx = x[i] - mx, dy = y[i] - my;
        cxy += w * dx * dy; cxx += w * dx * dx; cyy += w * dy * dy;
    }
    if (!(cxx > 0) || !(cyy > 0))
        return advnn__fail(ADVNN_ERR_ARG, "advnn_pearson: %s has zero (or negative) weighted variance", !(cxx > 0) ? "x" : "y");
    c = cxy / sqrt(cxx * cyy);
    *r = c < -1 ? -1 : c > 1 ? 1 : c;
    return ADVNN_OK;
}

static advnn_status advnn__class_of(const float *scores, int64_t i, int k, const char *what, int *cls) {
    const float *r = scores + i * (k > 1 ? k : 1);
    int j, b = 0;
    for (j = 0; j < (k > 1 ? k : 1); j++)
        if (!isfinite(r[j])) return advnn__fail(ADVNN_ERR_NAN, "%s: score %d of row %lld is %g", what, j, (long long)i, (double)r[j]);
    if (k == 1) { *cls = r[0] >= 0.5f; return ADVNN_OK; }
    for (j = 1; j < k; j++) if (r[j] > r[b]) b = j;
    *cls = b;
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_argmax(const float *scores, int64_t n, int k, int *out) {
    int64_t i;
    advnn_status st;
    if (!scores || !out || n < 1 || k < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_argmax: NULL argument, n = %lld or k = %d", (long long)n, k);
    for (i = 0; i < n; i++) if ((st = advnn__class_of(scores, i, k, "advnn_argmax", &out[i])) != ADVNN_OK) return st;
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_confusion(const float *scores, const float *labels, const float *weight, int64_t n, int k, double *counts) {
    int64_t i;
    int K = k > 1 ? k : 2, p;
    advnn_status st;
    if (!scores || !labels || !counts || n < 1 || k < 1)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_confusion: NULL argument, n = %lld or k = %d", (long long)n, k);
    for (i = 0; i < (int64_t)K * K; i++) counts[i] = 0;
    for (i = 0; i < n; i++) {
        double w = weight ? weight[i] : 1.0;
        float t = labels[i];
        if (!(t >= 0 && t < K && t == floorf(t))) return advnn__fail(ADVNN_ERR_ARG, "advnn_confusion: label %g of row %lld is not a class 0..%d", (double)t, (long long)i, K - 1);
        if (!isfinite(w)) return advnn__fail(ADVNN_ERR_NAN, "advnn_confusion: weight of row %lld is %g", (long long)i, w);
        if ((st = advnn__class_of(scores, i, k, "advnn_confusion", &p)) != ADVNN_OK) return st;
        counts[(int)t * K + p] += w;
    }
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_accuracy(const float *scores, const float *labels, const float *weight, int64_t n, int k, double *acc) {
    double *c, right = 0, all = 0;
    int K = k > 1 ? k : 2, j;
    advnn_status st;
    if (!acc || k < 1 || k > 1 << 12) return advnn__fail(ADVNN_ERR_ARG, "advnn_accuracy: NULL acc or k = %d (1..4096)", k);
    if (!(c = (double *)ADVNN_MALLOC((size_t)K * K * sizeof(double)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_accuracy: out of memory");
    if ((st = advnn_confusion(scores, labels, weight, n, k, c)) == ADVNN_OK) {
        for (j = 0; j < K * K; j++) { all += c[j]; if (j / K == j % K) right += c[j]; }
        if (all > 0) *acc = right / all;
        else st = advnn__fail(ADVNN_ERR_ARG, "advnn_accuracy: total weight %g is not positive", all);
    }
    ADVNN_FREE(c);
    return st;
}

/* ---------------------------------------------------------------- DDT and reweighting
 * Post-hoc and data-level decorrelation. The DDT map holds, per (rho, pT) bin, the weighted score
 * quantile that keeps the target background efficiency; smoothing is a Gaussian kernel over
 * neighbouring bins weighted by their background weight (which also fills empty bins). */
struct advnn_ddt {
    int nrho, npt;
    double rlo, rhi, plo, phi, eff;
    double *thr;   /* nrho x npt, [rho][pt] */
};

static int advnn__ddt_bin(double v, double lo, double hi, int nb) {   /* clamped to the edge bins */
    int k = (int)floor((v - lo) / (hi - lo) * nb);
    return k < 0 ? 0 : k >= nb ? nb - 1 : k;
}

typedef struct { float s; float w; } advnn__sw;
static int advnn__cmp_sw(const void *a, const void *b) {
    float x = ((const advnn__sw *)a)->s, y = ((const advnn__sw *)b)->s;
    return (x > y) - (x < y);
}

ADVNN_DEF void advnn_ddt_free(advnn_ddt *d) { if (d) { ADVNN_FREE(d->thr); ADVNN_FREE(d); } }

ADVNN_DEF advnn_ddt *advnn_ddt_fit(const float *score, const float *rho, const float *pt, const float *w, int64_t n, double bkg_eff,
                                   int nrho, double rho_lo, double rho_hi, int npt, double pt_lo, double pt_hi, double smooth) {
    advnn_ddt *d = NULL;
    advnn__sw *rowsw = NULL;
    int64_t i, *cnt = NULL, *start = NULL, *pos = NULL;
    double *wsum = NULL, *raw = NULL;
    int nb, b, r, q;
    if (!score || !rho || n < 1) { advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: NULL argument or n = %lld", (long long)n); return NULL; }
    if (!(bkg_eff > 0 && bkg_eff < 1)) { advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: background efficiency %g outside (0, 1)", bkg_eff); return NULL; }
    if (nrho < 1 || npt < 1 || nrho > 4096 || npt > 4096 || !(rho_hi > rho_lo) || !isfinite(rho_lo) || !isfinite(rho_hi) ||
        (npt > 1 && (!pt || !(pt_hi > pt_lo) || !isfinite(pt_lo) || !isfinite(pt_hi)))) {
        advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: bins %d x %d (1..4096 each) on rho [%g, %g), pT [%g, %g) (pT needed when npt > 1)",
                    nrho, npt, rho_lo, rho_hi, pt_lo, pt_hi);
        return NULL;
    }
    if (!(smooth >= 0 && smooth <= 100)) { advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: smoothing width %g bins outside [0, 100]", smooth); return NULL; }
    for (i = 0; i < n; i++)
        if (!isfinite(score[i]) || !isfinite(rho[i]) || (pt && npt > 1 && !isfinite(pt[i])) || (w && !(w[i] >= 0 && isfinite(w[i])))) {
            advnn__fail(ADVNN_ERR_NAN, "advnn_ddt_fit: row %lld: score %g, rho %g, pT %g, weight %g (finite, weight >= 0)", (long long)i,
                        (double)score[i], (double)rho[i], pt && npt > 1 ? (double)pt[i] : 0.0, w ? (double)w[i] : 1.0);
            return NULL;
        }
    nb = nrho * npt;
    d = (advnn_ddt *)ADVNN_MALLOC(sizeof *d);
    cnt = (int64_t *)ADVNN_MALLOC((size_t)(3 * nb + 1) * sizeof(int64_t));
    wsum = (double *)ADVNN_MALLOC((size_t)2 * nb * sizeof(double));
    rowsw = (advnn__sw *)ADVNN_MALLOC((size_t)n * sizeof *rowsw);
    if (d) d->thr = (double *)ADVNN_MALLOC((size_t)nb * sizeof(double));
    if (!d || !cnt || !wsum || !rowsw || !d->thr) {
        if (d) ADVNN_FREE(d->thr);
        ADVNN_FREE(d); ADVNN_FREE(cnt); ADVNN_FREE(wsum); ADVNN_FREE(rowsw);
        advnn__fail(ADVNN_ERR_NOMEM, "advnn_ddt_fit: out of memory for %lld rows", (long long)n);
        return NULL;
    }
    d->nrho = nrho; d->npt = npt; d->rlo = rho_lo; d->rhi = rho_hi; d->plo = npt > 1 ? pt_lo : 0; d->phi = npt > 1 ? pt_hi : 1; d->eff = bkg_eff;
    start = cnt + nb; pos = start + nb + 1; raw = wsum + nb;
    for (b = 0; b < nb; b++) { cnt[b] = 0; wsum[b] = 0; }
#define ADVNN__DDT_B(i) (advnn__ddt_bin(rho[i], rho_lo, rho_hi, nrho) * npt + (npt > 1 ? advnn__ddt_bin(pt[i], pt_lo, pt_hi, npt) : 0))
    for (i = 0; i < n; i++) if (!w || w[i] > 0) { b = ADVNN__DDT_B(i); cnt[b]++; wsum[b] += w ? w[i] : 1.0; }
    start[0] = 0;
    for (b = 0; b < nb; b++) { start[b + 1] = start[b] + cnt[b]; pos[b] = start[b]; }
    for (i = 0; i < n; i++) if (!w || w[i] > 0) { b = ADVNN__DDT_B(i); rowsw[pos[b]].s = score[i]; rowsw[pos[b]++].w = w ? w[i] : 1.0f; }
#undef ADVNN__DDT_B
    for (b = 0; b < nb; b++) {   /* weighted quantile: the smallest score with at most eff of the weight above it */
        advnn__sw *v = rowsw + start[b];
        double acc = 0, target = (1.0 - bkg_eff) * wsum[b];
        int64_t k, c = cnt[b];
        raw[b] = NAN;
        if (c == 0) continue;
        qsort(v, (size_t)c, sizeof *v, advnn__cmp_sw);
        for (k = 0; k < c; k++) { acc += v[k].w; if (acc >= target * (1 - 1e-12)) break; }
        raw[b] = v[k < c ? k : c - 1].s;
    }
    for (r = 0; r < nrho; r++)
        for (q = 0; q < npt; q++) {
            double num = 0, den = 0, best = INFINITY;
            int r2, q2;
            b = r * npt + q;
            if (smooth == 0 && wsum[b] > 0) { d->thr[b] = raw[b]; continue; }
            for (r2 = 0; r2 < nrho; r2++)
                for (q2 = 0; q2 < npt; q2++) {
                    int b2 = r2 * npt + q2;
                    double dd = (double)(r2 - r) * (r2 - r) + (double)(q2 - q) * (q2 - q);
                    if (!(wsum[b2] > 0)) continue;
                    if (smooth > 0) { double k = wsum[b2] * exp(-0.5 * dd / (smooth * smooth)); num += k * raw[b2]; den += k; }
                    else if (dd < best) { best = dd; num = raw[b2]; den = 1; }   /* empty bin: the nearest filled one */
                }
            d->thr[b] = den > 0 ? num / den : NAN;
        }
    ADVNN_FREE(cnt); ADVNN_FREE(wsum); ADVNN_FREE(rowsw);
    if (isnan(d->thr[0])) {   /* every bin empty (or all smoothing weights underflowed) */
        advnn_ddt_free(d);
        advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: no row with a positive weight, or a smoothing width too small to reach the filled bins");
        return NULL;
    }
    for (b = 0; b < nb; b++)
        if (isnan(d->thr[b])) {
            advnn_ddt_free(d);
            advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_fit: bin %d has no threshold (smoothing width %g reaches no filled bin)", b, smooth);
            return NULL;
        }
    return d;
}

ADVNN_DEF advnn_status advnn_ddt_apply(const advnn_ddt *d, const float *score, const float *rho, const float *pt, int64_t n, float *out) {
    int64_t i;
    if (!d || !score || !rho || !out || n < 0 || (d->npt > 1 && !pt)) return advnn__fail(ADVNN_ERR_ARG, "advnn_ddt_apply: NULL argument (pT is needed with %d pT bins) or n < 0", d ? d->npt : 0);
    for (i = 0; i < n; i++) {
        int b;
        if (!isfinite(rho[i]) || (d->npt > 1 && !isfinite(pt[i]))) return advnn__fail(ADVNN_ERR_NAN, "advnn_ddt_apply: row %lld: rho or pT not finite", (long long)i);
        b = advnn__ddt_bin(rho[i], d->rlo, d->rhi, d->nrho) * d->npt + (d->npt > 1 ? advnn__ddt_bin(pt[i], d->plo, d->phi, d->npt) : 0);
        out[i] = (float)((double)score[i] - d->thr[b]);
    }
    return ADVNN_OK;
}

ADVNN_DEF const double *advnn_ddt_map(const advnn_ddt *d, int *nrho, int *npt) {
    if (!d) return NULL;
    if (nrho) *nrho = d->nrho;
    if (npt) *npt = d->npt;
    return d->thr;
}

ADVNN_DEF advnn_status advnn_reweight(const float *var, const float *label, const float *w, int64_t n, double lo, double hi, int nbins,
                                      advnn_reweight_mode mode, float *out) {
    double *h, tot[2] = {0, 0}, step, bs = 0;
    int64_t i;
    int nf[2] = {0, 0};
    advnn_status st;
    if (!var || !out || n < 1) return advnn__fail(ADVNN_ERR_ARG, "advnn_reweight: NULL argument or n = %lld", (long long)n);
    if ((st = advnn__hist_args("advnn_reweight", lo, hi, nbins)) != ADVNN_OK) return st;
    if (mode != ADVNN_REWEIGHT_FLAT && mode != ADVNN_REWEIGHT_BKG_FLAT && mode != ADVNN_REWEIGHT_SIG_TO_BKG)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_reweight: unknown mode %d", (int)mode);
    if (!label && mode != ADVNN_REWEIGHT_FLAT) return advnn__fail(ADVNN_ERR_ARG, "advnn_reweight: mode %d needs labels", (int)mode);
    for (i = 0; i < n; i++)
        if (!isfinite(var[i]) || (w && !(w[i] >= 0 && isfinite(w[i]))) || (label && !isfinite(label[i])))
            return advnn__fail(ADVNN_ERR_NAN, "advnn_reweight: row %lld: value %g, weight %g (finite, >= 0), label not finite?", (long long)i,
                               (double)var[i], w ? (double)w[i] : 1.0);
    if (!(h = (double *)ADVNN_MALLOC((size_t)2 * nbins * sizeof(double)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_reweight: out of memory");
    for (i = 0; i < 2 * nbins; i++) h[i] = 0;
    step = (hi - lo) / nbins;
    for (i = 0; i < n; i++) {   /* h[c * nbins + k]: class c (1 = signal); tot: the class's weight in [lo, hi) */
        int k = advnn__bin(var[i], lo, hi, nbins, step), c = label && label[i] > 0.5f;
        double wi = w ? w[i] : 1.0;
        if (k >= 0) { h[c * nbins + k] += wi; tot[c] += wi; }
    }
    {   /* filled bins per class, and the background weight where the signal has some */
        int k;
        for (k = 0; k < nbins; k++) { nf[0] += h[k] > 0; nf[1] += h[nbins + k] > 0; if (h[nbins + k] > 0) bs += h[k]; }
    }
    for (i = 0; i < n; i++) {
        int k = advnn__bin(var[i], lo, hi, nbins, step), c = label && label[i] > 0.5f;
        double wi = w ? w[i] : 1.0, f;
        if (k < 0 || h[c * nbins + k] <= 0) { out[i] = 0.0f; continue; }   /* outside [lo, hi): no target there */
        if (mode == ADVNN_REWEIGHT_FLAT || (mode == ADVNN_REWEIGHT_BKG_FLAT && c == 0))
            f = tot[c] / nf[c] / h[c * nbins + k];                 /* every filled bin holds an equal share */
        else if (mode == ADVNN_REWEIGHT_SIG_TO_BKG && c == 1)
            f = bs > 0 ? (h[k] / bs) * tot[1] / h[nbins + k] : 0.0;   /* the background's shape where the signal lives */
        else f = 1.0;
        out[i] = (float)(wi * f);
    }
    ADVNN_FREE(h);
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- per-layer weights */
ADVNN_DEF const char *advnn_node_kind(const advnn_graph *g, int node) {
    const advnn__node *n;
    if (!g || node < 0 || node >= g->n_nodes) return "";
    n = &g->nodes[node];
    switch (n->kind) {
    case ADVNN__INPUT: return "input";
    case ADVNN__DENSE: return n->ip[2] ? "dense_sn" : "dense";
    case ADVNN__ACT: return "activation";
    case ADVNN__PRELU: return "prelu";
    case ADVNN__DROPOUT: return "dropout";
    case ADVNN__BATCHNORM: return "batchnorm";
    case ADVNN__CONCAT: return "concat";
    case ADVNN__LOSS_BCE: return "loss_bce";
    case ADVNN__LOSS_CCE: return "loss_cce";
    case ADVNN__LOSS_MSE: return "loss_mse";
    case ADVNN__CONV: return g->nodes[n->in[0]].ndim == 2 ? "conv1d" : "conv2d";
    case ADVNN__POOL: return g->nodes[n->in[0]].ndim == 2 ? (n->ip[0] ? "avgpool1d" : "maxpool1d") : (n->ip[0] ? "avgpool2d" : "maxpool2d");
    case ADVNN__UPSAMPLE: return "upsample2d";
    case ADVNN__RESHAPE: return "reshape";
    case ADVNN__LSTM: return "lstm";
    case ADVNN__MASK: return "mask_nonzero";
    case ADVNN__GRAD_REVERSE: return "grad_reverse";
    case ADVNN__SOFTMAX: return "softmax";
    case ADVNN__LOSS_MDN: return "loss_mdn";
    case ADVNN__SAMPLE_MSE: return "sample_mse";
    case ADVNN__LOSS_DISCO: return "loss_disco";
    case ADVNN__LOSS_MODE: return "loss_mode";
    case ADVNN__STANDARDIZE: return "standardize";
    default: return "unknown";
    }
}

/* Name and shape of parameter block k of node (see the table in the public section). */
static const char *advnn__wblock(const advnn_graph *g, const advnn__node *n, int k, int *ndim, int64_t *shape) {
    static const char *const dense[4] = {"kernel", "bias", "u", "v"}, *const lstm[3] = {"kernel", "recurrent_kernel", "bias"};
    static const char *const bn[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    const advnn__param *p = &g->par[n->param0 + k];
    *ndim = p->rows == 1 ? 1 : 2;
    shape[0] = p->rows == 1 ? p->cols : p->rows; shape[1] = p->cols;
    switch (n->kind) {
    case ADVNN__DENSE: return dense[k];
    case ADVNN__LSTM: return lstm[k];
    case ADVNN__BATCHNORM: return bn[k];
    case ADVNN__PRELU: return "alpha";
    case ADVNN__STANDARDIZE: return k ? "scale" : "offset";
    case ADVNN__CONV:
        if (k == 1) return "bias";
        if (g->nodes[n->in[0]].ndim == 2) { *ndim = 3; shape[0] = n->ip[3]; shape[1] = p->rows / n->ip[3]; shape[2] = p->cols; }
        else { *ndim = 4; shape[0] = n->ip[2]; shape[1] = n->ip[3]; shape[2] = p->rows / (n->ip[2] * n->ip[3]); shape[3] = p->cols; }
        return "kernel";
    default: return "";
    }
}

static int advnn__wnode(const advnn_graph *g, int node, const char *what) {
    if (!g) return advnn__fail(ADVNN_ERR_ARG, "%s: graph is NULL", what), 0;
    if (node < 0 || node >= g->n_nodes) return advnn__fail(ADVNN_ERR_ARG, "%s: node %d does not exist (graph has %d nodes)", what, node, g->n_nodes), 0;
    return 1;
}

ADVNN_DEF int advnn_weight_count(const advnn_graph *g, int node) {
    if (!advnn__wnode(g, node, "advnn_weight_count")) return -1;
    return g->nodes[node].n_param;
}

ADVNN_DEF advnn_status advnn_weight_info(const advnn_graph *g, int node, int k, const char **name, int *ndim, int64_t *shape) {
    const char *nm;
    int nd;
    int64_t sh[4];
    if (!advnn__wnode(g, node, "advnn_weight_info")) return ADVNN_ERR_ARG;
    if (k < 0 || k >= g->nodes[node].n_param)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_weight_info: node %d (%s) has %d weight blocks, asked for block %d", node,
                           advnn_node_kind(g, node), g->nodes[node].n_param, k);
    nm = advnn__wblock(g, &g->nodes[node], k, &nd, sh);
    if (name) *name = nm;
    if (ndim) *ndim = nd;
    if (shape) memcpy(shape, sh, (size_t)nd * sizeof *shape);
    return ADVNN_OK;
}

/* Finds the parameter block of node called name holding n values; a status with a message when none. */
static advnn_status advnn__wfind(const advnn_graph *g, int node, const char *name, int64_t n, const char *what, const advnn__param **out) {
    const advnn__node *nd;
    int k, d;
    int64_t sh[4];
    if (!advnn__wnode(g, node, what)) return ADVNN_ERR_ARG;
    nd = &g->nodes[node];
    if (!g->finalized) return advnn__fail(ADVNN_ERR_STATE, "%s: graph not finalized (weights are allocated by advnn_graph_finalize)", what);
    if (!name) return advnn__fail(ADVNN_ERR_ARG, "%s: name is NULL", what);
    for (k = 0; k < nd->n_param; k++) {
        if (strcmp(advnn__wblock(g, nd, k, &d, sh), name) != 0) continue;
        if (n != g->par[nd->param0 + k].size)
            return advnn__fail(ADVNN_ERR_SHAPE, "%s: node %d (%s) block '%s' has %lld values, the call passes %lld", what, node,
                               advnn_node_kind(g, node), name, (long long)g->par[nd->param0 + k].size, (long long)n);
        *out = &g->par[nd->param0 + k];
        return ADVNN_OK;
    }
    return advnn__fail(ADVNN_ERR_ARG, "%s: node %d (%s '%s') has no weight block '%s' (it has %d)", what, node, advnn_node_kind(g, node),
                       nd->name, name, nd->n_param);
}

ADVNN_DEF advnn_status advnn_weight_get(const advnn_graph *g, int node, const char *name, float *out, int64_t n) {
    const advnn__param *p = NULL;
    advnn_status st = advnn__wfind(g, node, name, n, "advnn_weight_get", &p);
    if (st != ADVNN_OK) return st;
    if (!out) return advnn__fail(ADVNN_ERR_ARG, "advnn_weight_get: out is NULL");
    memcpy(out, g->params + p->off, (size_t)n * sizeof *out);
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_weight_set(advnn_graph *g, int node, const char *name, const float *in, int64_t n) {
    const advnn__param *p = NULL;
    int64_t k;
    advnn_status st = advnn__wfind(g, node, name, n, "advnn_weight_set", &p);
    if (st != ADVNN_OK) return st;
    if (!in) return advnn__fail(ADVNN_ERR_ARG, "advnn_weight_set: in is NULL");
    for (k = 0; k < n; k++) {
        if (!isfinite(in[k])) return advnn__fail(ADVNN_ERR_NAN, "advnn_weight_set: node %d block '%s': value %lld is not finite", node, name, (long long)k);
        if (in[k] < 0.0f && strcmp(name, "moving_variance") == 0)
            return advnn__fail(ADVNN_ERR_ARG, "advnn_weight_set: node %d: moving_variance[%lld] = %g is negative", node, (long long)k, (double)in[k]);
    }
    memcpy(g->params + p->off, in, (size_t)n * sizeof *in);
    g->wgen++;
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- ONNX import: protobuf reader
 * Only the wire types ONNX uses: varint (0), fixed64 (1), length-delimited (2), fixed32 (5).
 * Every length is checked against the bytes left before it is used; unknown fields are skipped.
 * The reader walks the fixed schema model > graph > node > attribute > tensor and never descends
 * into other sub-messages (subgraphs are refused as operators), so nesting is bounded by design. */
typedef struct { const unsigned char *p, *end; } advnn__pbr;
typedef struct { uint32_t field, wt; uint64_t v; advnn__pbr sub; } advnn__pbf;
typedef struct { const char *p; size_t n; } advnn__ostr;
#define ADVNN__OS(s) (int)((s).n > 80 ? 80 : (s).n), (s).p    /* for "%.*s" */
#define ADVNN__ONNX_MAXIO 8                                   /* inputs/outputs per node */

static int advnn__pbr_varint(advnn__pbr *r, uint64_t *v) {
    uint64_t x = 0;
    int s;
    for (s = 0; s < 70 && r->p < r->end; s += 7) {
        unsigned c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) { *v = x; return 1; }
    }
    return 0;   /* runs past the end, or longer than 10 bytes */
}

/* The next field of r: 1, 0 at the end of the message, -1 when malformed. */
static int advnn__pbr_next(advnn__pbr *r, advnn__pbf *f) {
    uint64_t tag, n;
    if (r->p >= r->end) return 0;
    if (!advnn__pbr_varint(r, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
    f->field = (uint32_t)(tag >> 3); f->wt = (uint32_t)(tag & 7);
    switch (f->wt) {
    case 0: return advnn__pbr_varint(r, &f->v) ? 1 : -1;
    case 1: if (r->end - r->p < 8) return -1; f->v = advnn__get_u64(r->p); r->p += 8; return 1;
    case 5: if (r->end - r->p < 4) return -1; f->v = advnn__get_u32(r->p); r->p += 4; return 1;
    case 2:
        if (!advnn__pbr_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        f->sub.p = r->p; f->sub.end = r->p + n; r->p += n;
        return 1;
    default: return -1;   /* groups (3, 4) are not used by ONNX */
    }
}
static int advnn__pbr_valid(advnn__pbr r) { advnn__pbf f; int k; while ((k = advnn__pbr_next(&r, &f)) > 0) {} return k == 0; }

static advnn__ostr advnn__ostr_of(advnn__pbr b) { advnn__ostr s; s.p = (const char *)b.p; s.n = (size_t)(b.end - b.p); return s; }
static int advnn__ostr_eq(advnn__ostr a, const char *s) { size_t n = strlen(s); return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0); }
static int advnn__ostr_same(advnn__ostr a, advnn__ostr b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

/* A TensorProto: dims and type parsed, values read from msg on demand. */
enum { ADVNN__OT_FLOAT = 1, ADVNN__OT_INT32 = 6, ADVNN__OT_INT64 = 7, ADVNN__OT_DOUBLE = 11 };
typedef struct {
    advnn__ostr name;
    int ndim, dtype;
    int64_t dims[ADVNN_MAX_DIMS], count;
    advnn__pbr msg;
} advnn__otensor;

/* Number of varints in a packed field (each ends with a byte < 0x80); -1 when the last one is cut. */
static int64_t advnn__pbr_nvarint(advnn__pbr b) {
    int64_t n = 0;
    if (b.p < b.end && (b.end[-1] & 0x80)) return -1;
    for (; b.p < b.end; b.p++) n += !(*b.p & 0x80);
    return n;
}

/* Parses and checks a tensor: the product of its dims must equal the number of values present in
 * one storage (raw_data or the typed field), so no later allocation exceeds the bytes read. */
static int advnn__ot_parse(advnn__pbr msg, advnn__otensor *t, char *why, size_t whyn) {
    advnn__pbf f;
    advnn__pbr r = msg;
    int k, i;
    int64_t raw = -1, typed = 0, prod = 1;
    memset(t, 0, sizeof *t);
    t->msg = msg;
    while ((k = advnn__pbr_next(&r, &f)) > 0) {
        switch (f.field) {
        case 1:
            if (f.wt == 0) {
                if (t->ndim >= ADVNN_MAX_DIMS) { snprintf(why, whyn, "more than %d dims", ADVNN_MAX_DIMS); return 0; }
                t->dims[t->ndim++] = (int64_t)f.v;
            } else if (f.wt == 2) {
                advnn__pbr q = f.sub;
                uint64_t v;
                while (q.p < q.end) {
                    if (!advnn__pbr_varint(&q, &v)) { snprintf(why, whyn, "bad packed dims"); return 0; }
                    if (t->ndim >= ADVNN_MAX_DIMS) { snprintf(why, whyn, "more than %d dims", ADVNN_MAX_DIMS); return 0; }
                    t->dims[t->ndim++] = (int64_t)v;
                }
            }
            break;
        case 2: if (f.wt == 0) t->dtype = f.v < 64 ? (int)f.v : -1; break;
        case 8: if (f.wt == 2) t->name = advnn__ostr_of(f.sub); break;
        case 9: if (f.wt == 2) raw = (raw < 0 ? 0 : raw) + (int64_t)(f.sub.end - f.sub.p); break;
        case 4: case 5: case 7: case 10:   /* float_data, int32_data, int64_data, double_data */
            if (f.wt == 2) {
                int64_t c = f.field == 4 ? (int64_t)(f.sub.end - f.sub.p) / 4 : f.field == 10 ? (int64_t)(f.sub.end - f.sub.p) / 8 : advnn__pbr_nvarint(f.sub);
                if (c < 0 || (f.field == 4 && (f.sub.end - f.sub.p) % 4) || (f.field == 10 && (f.sub.end - f.sub.p) % 8)) { snprintf(why, whyn, "bad packed values"); return 0; }
                typed += c;
            } else typed++;
            break;
        case 12: case 13: case 14:
            if (f.field != 14 || f.v != 0) { snprintf(why, whyn, "segmented or external tensor data (not supported: keep the weights inside the file)"); return 0; }
            break;
        default: break;
        }
    }
    if (k < 0) { snprintf(why, whyn, "malformed tensor message"); return 0; }
    if (t->dtype != ADVNN__OT_FLOAT && t->dtype != ADVNN__OT_INT32 && t->dtype != ADVNN__OT_INT64 && t->dtype != ADVNN__OT_DOUBLE) {
        snprintf(why, whyn, "data type %d (supported: float 1, int32 6, int64 7, double 11)", t->dtype); return 0;
    }
    for (i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0 || t->dims[i] > ((int64_t)1 << 40)) { snprintf(why, whyn, "dimension %d is %lld", i, (long long)t->dims[i]); return 0; }
        prod *= t->dims[i];
        if (prod > ((int64_t)1 << 40)) { snprintf(why, whyn, "more than 2^40 values"); return 0; }
    }
    if (raw >= 0 && typed > 0) { snprintf(why, whyn, "values both in raw_data and in a typed field"); return 0; }
    if (raw >= 0) {
        int es = t->dtype == ADVNN__OT_FLOAT || t->dtype == ADVNN__OT_INT32 ? 4 : 8;
        if (raw % es) { snprintf(why, whyn, "raw_data of %lld bytes for %d-byte values", (long long)raw, es); return 0; }
        typed = raw / es;
    }
    if (typed != prod) { snprintf(why, whyn, "shape holds %lld values, the data %lld", (long long)prod, (long long)typed); return 0; }
    t->count = prod;
    return 1;
}

/* Values of a parsed tensor as doubles (exact for float32 and for int64 below 2^53). */
static void advnn__ot_read(const advnn__otensor *t, double *out) {
    advnn__pbr r = t->msg;
    advnn__pbf f;
    int64_t n = 0;
    while (advnn__pbr_next(&r, &f) > 0 && n < t->count) {
        if (f.field == 9 && f.wt == 2) {
            const unsigned char *p = f.sub.p;
            for (; p < f.sub.end && n < t->count; n++) {
                if (t->dtype == ADVNN__OT_FLOAT) { uint32_t u = advnn__get_u32(p); float x; memcpy(&x, &u, 4); out[n] = x; p += 4; }
                else if (t->dtype == ADVNN__OT_INT32) { uint32_t u = advnn__get_u32(p); out[n] = (double)(int32_t)u; p += 4; }
                else if (t->dtype == ADVNN__OT_INT64) { out[n] = (double)(int64_t)advnn__get_u64(p); p += 8; }
                else { uint64_t u = advnn__get_u64(p); double x; memcpy(&x, &u, 8); out[n] = x; p += 8; }
            }
        } else if (f.field == 4 || f.field == 10) {
            int w = f.field == 4 ? 4 : 8;
            const unsigned char *p = f.wt == 2 ? f.sub.p : NULL;
            if (f.wt == 2) {
                for (; p + w <= f.sub.end && n < t->count; p += w, n++) {
                    if (w == 4) { uint32_t u = advnn__get_u32(p); float x; memcpy(&x, &u, 4); out[n] = x; }
                    else { uint64_t u = advnn__get_u64(p); double x; memcpy(&x, &u, 8); out[n] = x; }
                }
            } else if (f.wt == 5) { uint32_t u = (uint32_t)f.v; float x; memcpy(&x, &u, 4); out[n++] = x; }
            else if (f.wt == 1) { double x; memcpy(&x, &f.v, 8); out[n++] = x; }
        } else if (f.field == 5 || f.field == 7) {
            if (f.wt == 2) {
                advnn__pbr q = f.sub;
                uint64_t v;
                while (n < t->count && advnn__pbr_varint(&q, &v)) out[n++] = f.field == 5 ? (double)(int32_t)(uint32_t)v : (double)(int64_t)v;
            } else if (f.wt == 0) out[n++] = f.field == 5 ? (double)(int32_t)(uint32_t)f.v : (double)(int64_t)f.v;
        }
    }
    for (; n < t->count; n++) out[n] = 0;   /* not reached for a tensor advnn__ot_parse accepted */
}

/* ---------------------------------------------------------------- ONNX import: model
 * The model as views into the caller's buffer (nothing is copied but the node table). */
typedef struct {
    advnn__ostr op, name, domain;
    int n_in, n_out;
    advnn__ostr in[ADVNN__ONNX_MAXIO], out[ADVNN__ONNX_MAXIO];
    advnn__pbr msg;
} advnn__onode;
typedef struct { advnn__ostr name; int elem, ndim; int64_t dims[ADVNN_MAX_DIMS]; } advnn__oinput;
typedef struct {
    int64_t ir_version, opset;
    advnn__ostr producer, producer_version;
    advnn__onode *nodes; int n_nodes;
    advnn__otensor *inits; int n_inits;
    advnn__oinput *ins; int n_ins;
    advnn__ostr *outs; int n_outs;
    int64_t n_weights;
} advnn__omodel;

static void advnn__omodel_free(advnn__omodel *m) {
    ADVNN_FREE(m->nodes); ADVNN_FREE(m->inits); ADVNN_FREE(m->ins); ADVNN_FREE(m->outs);
    memset(m, 0, sizeof *m);
}

static int advnn__oinput_parse(advnn__pbr msg, advnn__oinput *in) {
    advnn__pbf f, t, tt, s, d, dv;
    advnn__pbr r = msg;
    int k;
    memset(in, 0, sizeof *in);
    in->ndim = -1;   /* unknown rank */
    while ((k = advnn__pbr_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wt == 2) in->name = advnn__ostr_of(f.sub);
        else if (f.field == 2 && f.wt == 2) {
            advnn__pbr rt = f.sub;
            while ((k = advnn__pbr_next(&rt, &t)) > 0) {
                advnn__pbr rtt;
                if (t.field != 1 || t.wt != 2) continue;   /* tensor_type only */
                rtt = t.sub;
                while ((k = advnn__pbr_next(&rtt, &tt)) > 0) {
                    if (tt.field == 1 && tt.wt == 0) in->elem = (int)(tt.v & 0xff);
                    else if (tt.field == 2 && tt.wt == 2) {
                        advnn__pbr rs = tt.sub;
                        in->ndim = 0;
                        while ((k = advnn__pbr_next(&rs, &s)) > 0) {
                            advnn__pbr rd;
                            if (s.field != 1 || s.wt != 2) continue;
                            if (in->ndim >= ADVNN_MAX_DIMS) return 0;
                            in->dims[in->ndim] = -1;   /* symbolic or absent */
                            rd = s.sub;
                            while ((k = advnn__pbr_next(&rd, &d)) > 0)
                                if (d.field == 1 && d.wt == 0 && (int64_t)d.v > 0 && (int64_t)d.v < ((int64_t)1 << 31)) in->dims[in->ndim] = (int64_t)d.v;
                            if (k < 0) return 0;
                            in->ndim++;
                        }
                        if (k < 0) return 0;
                    }
                }
                if (k < 0) return 0;
            }
            if (k < 0) return 0;
        }
    }
    (void)dv;
    return k == 0;
}

static int advnn__onode_parse(advnn__pbr msg, advnn__onode *n) {
    advnn__pbf f;
    advnn__pbr r = msg;
    int k;
    memset(n, 0, sizeof *n);
    n->msg = msg;
    while ((k = advnn__pbr_next(&r, &f)) > 0) {
        if (f.wt != 2) continue;
        switch (f.field) {
        case 1: if (n->n_in >= ADVNN__ONNX_MAXIO) return 0; n->in[n->n_in++] = advnn__ostr_of(f.sub); break;
        case 2: if (n->n_out >= ADVNN__ONNX_MAXIO) return 0; n->out[n->n_out++] = advnn__ostr_of(f.sub); break;
        case 3: n->name = advnn__ostr_of(f.sub); break;
        case 4: n->op = advnn__ostr_of(f.sub); break;
        case 5: if (!advnn__pbr_valid(f.sub)) return 0; break;   /* attributes: checked here, read on demand */
        case 7: n->domain = advnn__ostr_of(f.sub); break;
        default: break;
        }
    }
    return k == 0;
}

#define ADVNN__ONNX_MAX_NODES 100000
/* Parses the model's structure into m (views into buf). On failure sets a message and returns 0. */
static int advnn__omodel_parse(const void *buf, size_t len, advnn__omodel *m) {
    advnn__pbr r, gr;
    advnn__pbf f;
    int k, have_graph = 0, pass;
    char why[160];
    memset(m, 0, sizeof *m);
    if (!buf) { advnn__fail(ADVNN_ERR_ARG, "onnx: buffer is NULL"); return 0; }
    if (len < 2) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: %zu bytes is too short for an ONNX model", len); return 0; }
    r.p = (const unsigned char *)buf; r.end = r.p + len;
    gr.p = gr.end = NULL;
    while ((k = advnn__pbr_next(&r, &f)) > 0) {
        if (f.field == 1 && f.wt == 0) m->ir_version = (int64_t)f.v;
        else if (f.field == 2 && f.wt == 2) m->producer = advnn__ostr_of(f.sub);
        else if (f.field == 3 && f.wt == 2) m->producer_version = advnn__ostr_of(f.sub);
        else if (f.field == 7 && f.wt == 2) { gr = f.sub; have_graph = 1; }
        else if (f.field == 8 && f.wt == 2) {
            advnn__pbr o = f.sub;
            advnn__pbf of;
            advnn__ostr dom = {"", 0};
            int64_t ver = 0;
            while ((k = advnn__pbr_next(&o, &of)) > 0) {
                if (of.field == 1 && of.wt == 2) dom = advnn__ostr_of(of.sub);
                else if (of.field == 2 && of.wt == 0) ver = (int64_t)of.v;
            }
            if (k < 0) break;
            if (dom.n == 0 || advnn__ostr_eq(dom, "ai.onnx")) m->opset = ver;
        }
    }
    if (k < 0) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: not a valid protobuf message at byte %zu of %zu (corrupt or truncated file)", (size_t)(r.p - (const unsigned char *)buf), len); return 0; }
    if (!have_graph) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: the model has no graph (field 7): not an ONNX model, or truncated"); return 0; }
    /* pass 0 counts, pass 1 fills: the tables are sized by what the bytes hold */
    for (pass = 0; pass < 2; pass++) {
        advnn__pbr g = gr;
        if (pass == 1) {
            if (m->n_nodes > ADVNN__ONNX_MAX_NODES || m->n_inits > ADVNN__ONNX_MAX_NODES || m->n_ins > 4096 || m->n_outs > 4096) {
                advnn__fail(ADVNN_ERR_FORMAT, "onnx: %d nodes, %d initializers, %d inputs, %d outputs: more than advnn imports (%d, %d, 4096, 4096)",
                            m->n_nodes, m->n_inits, m->n_ins, m->n_outs, ADVNN__ONNX_MAX_NODES, ADVNN__ONNX_MAX_NODES);
                return 0;
            }
            m->nodes = (advnn__onode *)ADVNN_MALLOC(((size_t)m->n_nodes + 1) * sizeof *m->nodes);
            m->inits = (advnn__otensor *)ADVNN_MALLOC(((size_t)m->n_inits + 1) * sizeof *m->inits);
            m->ins = (advnn__oinput *)ADVNN_MALLOC(((size_t)m->n_ins + 1) * sizeof *m->ins);
            m->outs = (advnn__ostr *)ADVNN_MALLOC(((size_t)m->n_outs + 1) * sizeof *m->outs);
            if (!m->nodes || !m->inits || !m->ins || !m->outs) { advnn__omodel_free(m); advnn__fail(ADVNN_ERR_NOMEM, "onnx: out of memory"); return 0; }
            m->n_nodes = m->n_inits = m->n_ins = m->n_outs = 0;
        }
        while ((k = advnn__pbr_next(&g, &f)) > 0) {
            if (f.wt != 2) continue;
            if (f.field == 1) {
                if (pass && !advnn__onode_parse(f.sub, &m->nodes[m->n_nodes])) {
                    advnn__fail(ADVNN_ERR_FORMAT, "onnx: node %d is malformed (or has more than %d inputs or outputs)", m->n_nodes, ADVNN__ONNX_MAXIO);
                    goto fail;
                }
                m->n_nodes++;
            } else if (f.field == 5) {
                if (pass) {
                    advnn__otensor *t = &m->inits[m->n_inits];
                    if (!advnn__ot_parse(f.sub, t, why, sizeof why)) {
                        advnn__fail(ADVNN_ERR_FORMAT, "onnx: initializer %d is invalid: %s", m->n_inits, why);
                        goto fail;
                    }
                    if (t->dtype == ADVNN__OT_FLOAT || t->dtype == ADVNN__OT_DOUBLE) m->n_weights += t->count;
                }
                m->n_inits++;
            } else if (f.field == 11) {
                if (pass && !advnn__oinput_parse(f.sub, &m->ins[m->n_ins])) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: graph input %d is malformed", m->n_ins); goto fail; }
                m->n_ins++;
            } else if (f.field == 12) {
                if (pass) {
                    advnn__oinput o;
                    if (!advnn__oinput_parse(f.sub, &o)) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: graph output %d is malformed", m->n_outs); goto fail; }
                    m->outs[m->n_outs] = o.name;
                }
                m->n_outs++;
            }
        }
        if (k < 0) { advnn__fail(ADVNN_ERR_FORMAT, "onnx: the graph message is malformed at byte %zu (corrupt or truncated file)", (size_t)(g.p - (const unsigned char *)buf)); goto fail; }
    }
    return 1;
fail:
    advnn__omodel_free(m);
    return 0;
}

ADVNN_DEF advnn_status advnn_onnx_meta_mem(const void *buf, size_t len, advnn_onnx_meta *meta) {
    advnn__omodel m;
    if (!meta) return advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_meta_mem: meta is NULL");
    memset(meta, 0, sizeof *meta);
    if (!advnn__omodel_parse(buf, len, &m)) return ADVNN_ERR_FORMAT;
    meta->ir_version = m.ir_version; meta->opset = m.opset;
    snprintf(meta->producer, sizeof meta->producer, "%.*s%s%.*s", ADVNN__OS(m.producer), m.producer_version.n ? " " : "", ADVNN__OS(m.producer_version));
    meta->n_nodes = m.n_nodes; meta->n_initializers = m.n_inits; meta->n_inputs = m.n_ins; meta->n_outputs = m.n_outs;
    meta->n_weights = m.n_weights;
    advnn__omodel_free(&m);
    return ADVNN_OK;
}

/* ---------------------------------------------------------------- ONNX import: graph builder
 * Each ONNX value is an advnn node seen through a layout: per ONNX axis, where it comes from (the
 * batch, an inserted axis of size 1, or an axis of the advnn node's channels-last per-sample shape).
 * Transpose/Squeeze/Unsqueeze only relabel; operators that compute check that the layout maps onto
 * what the advnn layer computes (e.g. Conv: (N, C, H, W) over an (H, W, C) node) and refuse it
 * otherwise. A Flatten of channels-first data keeps advnn's order and remembers the ONNX order, so
 * the Dense that reads it gets its kernel rows permuted (also after a Concat of such flattens). */
#define ADVNN__OB (-1)   /* axis source: the batch */
#define ADVNN__OU (-2)   /* axis source: an inserted axis of size 1 */
typedef struct {
    advnn__ostr name;
    int node;                          /* advnn node, or -1 for a constant */
    const advnn__otensor *cst;
    int isint;                         /* an integer graph input (usable as LSTM sequence lengths only) */
    int r;                             /* ONNX rank */
    int64_t dim[ADVNN_MAX_DIMS];       /* ONNX dims, -1 for the batch */
    signed char src[ADVNN_MAX_DIMS];
    int flat, nseg;                    /* flat (N, K) data in an order other than advnn's: nseg segments, */
    struct { int len, fr, fdim[3], fandim, fashape[3]; signed char fsrc[3]; } seg[ADVNN__MAX_IN];
                                       /* each a flatten of a (fashape) node read in ONNX axis order fsrc */
    int pending;                       /* a MatMul's dense node whose bias an Add may set, else -1 */
    int isshape, shp_r, shp_n;         /* a shape computation (Shape, Gather, Unsqueeze, Concat): shp_n */
    int64_t shp[ADVNN_MAX_DIMS];       /* values of rank shp_r (0 or 1), -1 for the batch size */
    int zero;                          /* ConstantOfShape of zeros (an LSTM's initial state) */
} advnn__oval;
typedef struct { int node; const char *block; float *data; int64_t n; } advnn__ow;
typedef struct {
    const advnn__omodel *m;
    advnn_graph *g;
    advnn__oval *v; int nv, capv;
    advnn__ow *w; int nw, capw;
    advnn__otensor *consts; int nconsts;
    const advnn__onode *cur;
} advnn__oim;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static int advnn__oerr(advnn__oim *im, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);   /* msg may quote advnn_last_error(): format it first */
    va_end(ap);
    if (im->cur)
        advnn__fail(ADVNN_ERR_FORMAT, "onnx: node '%.*s' (%.*s, opset %lld): %s", ADVNN__OS(im->cur->name), ADVNN__OS(im->cur->op),
                    (long long)im->m->opset, msg);
    else advnn__fail(ADVNN_ERR_FORMAT, "onnx: %s", msg);
    return -1;
}

/* ---- attributes (the node's bytes were validated by advnn__onode_parse) */
static int advnn__oattr(const advnn__onode *n, const char *name, advnn__pbr *a) {
    advnn__pbr r = n->msg, q;
    advnn__pbf f, af;
    while (advnn__pbr_next(&r, &f) > 0) {
        if (f.field != 5 || f.wt != 2) continue;
        q = f.sub;
        while (advnn__pbr_next(&q, &af) > 0)
            if (af.field == 1 && af.wt == 2 && advnn__ostr_eq(advnn__ostr_of(af.sub), name)) { *a = f.sub; return 1; }
    }
    return 0;
}
static int64_t advnn__oattr_i(const advnn__onode *n, const char *name, int64_t def) {
    advnn__pbr a;
    advnn__pbf f;
    if (!advnn__oattr(n, name, &a)) return def;
    while (advnn__pbr_next(&a, &f) > 0) if (f.field == 3 && f.wt == 0) return (int64_t)f.v;
    return def;
}
static float advnn__oattr_f(const advnn__onode *n, const char *name, float def) {
    advnn__pbr a;
    advnn__pbf f;
    if (!advnn__oattr(n, name, &a)) return def;
    while (advnn__pbr_next(&a, &f) > 0)
        if (f.field == 2 && f.wt == 5) { uint32_t u = (uint32_t)f.v; float x; memcpy(&x, &u, 4); return x; }
    return def;
}
static advnn__ostr advnn__oattr_s(const advnn__onode *n, const char *name, const char *def) {
    advnn__pbr a;
    advnn__pbf f;
    advnn__ostr s;
    s.p = def; s.n = strlen(def);
    if (!advnn__oattr(n, name, &a)) return s;
    while (advnn__pbr_next(&a, &f) > 0) if (f.field == 4 && f.wt == 2) return advnn__ostr_of(f.sub);
    return s;
}
/* Integer list attribute: its length (at most max values stored), -1 when absent, -2 when longer than max. */
static int advnn__oattr_ints(const advnn__onode *n, const char *name, int64_t *out, int max) {
    advnn__pbr a;
    advnn__pbf f;
    int c = 0;
    if (!advnn__oattr(n, name, &a)) return -1;
    while (advnn__pbr_next(&a, &f) > 0) {
        if (f.field != 8) continue;
        if (f.wt == 0) { if (c >= max) return -2; out[c++] = (int64_t)f.v; }
        else if (f.wt == 2) {
            advnn__pbr q = f.sub;
            uint64_t v;
            while (q.p < q.end) { if (!advnn__pbr_varint(&q, &v)) return -2; if (c >= max) return -2; out[c++] = (int64_t)v; }
        }
    }
    return c;
}

/* ---- values */
static advnn__oval *advnn__oget(advnn__oim *im, advnn__ostr name) {
    int i;
    for (i = im->nv - 1; i >= 0; i--) if (advnn__ostr_same(im->v[i].name, name)) return &im->v[i];
    return NULL;
}
/* Defines ONNX value `name` as a copy of *like (or empty). Returns NULL (message set) when out of memory. */
static advnn__oval *advnn__oput(advnn__oim *im, advnn__ostr name, const advnn__oval *like) {
    advnn__oval *v;
    if (!advnn__grow((void **)&im->v, &im->capv, im->nv + 1, sizeof *im->v)) { advnn__oerr(im, "out of memory"); return NULL; }
    v = &im->v[im->nv++];
    if (like) *v = *like;
    else { memset(v, 0, sizeof *v); v->node = -1; }
    v->name = name; v->pending = like ? like->pending : -1;
    return v;
}
static int advnn__ohas(const advnn__onode *n, int k) { return k < n->n_in && n->in[k].n > 0; }
/* Input k of the current node (a copy), required to exist. */
static int advnn__oin(advnn__oim *im, const advnn__onode *n, int k, advnn__oval *out) {
    advnn__oval *v;
    if (!advnn__ohas(n, k)) return advnn__oerr(im, "input %d is missing", k);
    if (!(v = advnn__oget(im, n->in[k]))) return advnn__oerr(im, "input '%.*s' is not defined before this node", ADVNN__OS(n->in[k]));
    *out = *v;
    return 0;
}
static int advnn__oin_node(advnn__oim *im, const advnn__onode *n, int k, advnn__oval *out) {
    if (advnn__oin(im, n, k, out)) return -1;
    if (out->node < 0) return advnn__oerr(im, "input '%.*s' is a constant here (advnn computes on tensors of the batch only)", ADVNN__OS(n->in[k]));
    if (out->isint) return advnn__oerr(im, "input '%.*s' is an integer input (only usable as LSTM sequence_lens)", ADVNN__OS(n->in[k]));
    return 0;
}
/* Input k as a constant's values (doubles; the caller frees), with its tensor. */
static double *advnn__oin_cst(advnn__oim *im, const advnn__onode *n, int k, const advnn__otensor **t) {
    advnn__oval v;
    double *d;
    if (advnn__oin(im, n, k, &v)) return NULL;
    if (!v.cst) { advnn__oerr(im, "input %d ('%.*s') must be a constant (an initializer or a Constant node)", k, ADVNN__OS(n->in[k])); return NULL; }
    d = (double *)ADVNN_MALLOC(((size_t)v.cst->count + 1) * sizeof *d);
    if (!d) { advnn__oerr(im, "out of memory for %lld values", (long long)v.cst->count); return NULL; }
    advnn__ot_read(v.cst, d);
    *t = v.cst;
    return d;
}
/* Is ONNX value `name` read by any node or graph output? */
static int advnn__oused(const advnn__oim *im, advnn__ostr name) {
    int i, k;
    if (name.n == 0) return 0;
    for (i = 0; i < im->m->n_outs; i++) if (advnn__ostr_same(im->m->outs[i], name)) return 1;
    for (i = 0; i < im->m->n_nodes; i++)
        for (k = 0; k < im->m->nodes[i].n_in; k++) if (advnn__ostr_same(im->m->nodes[i].in[k], name)) return 1;
    return 0;
}
/* Queues a weight block to write after finalize (takes ownership of data). */
static int advnn__oweight(advnn__oim *im, int node, const char *block, float *data, int64_t n) {
    if (!advnn__grow((void **)&im->w, &im->capw, im->nw + 1, sizeof *im->w)) { ADVNN_FREE(data); return advnn__oerr(im, "out of memory"); }
    im->w[im->nw].node = node; im->w[im->nw].block = block; im->w[im->nw].data = data; im->w[im->nw].n = n;
    im->nw++;
    return 0;
}
static float *advnn__ofloats(advnn__oim *im, int64_t n) {
    float *p = (float *)ADVNN_MALLOC((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (!p) advnn__oerr(im, "out of memory for %lld weights", (long long)n);
    return p;
}
static int advnn__obuilt(advnn__oim *im, int id) {
    if (id < 0) { char msg[sizeof advnn__errbuf]; snprintf(msg, sizeof msg, "%s", advnn_last_error()); return advnn__oerr(im, "advnn cannot build it: %s", msg); }
    return 0;
}

/* ---- layouts */
static int advnn__ondim(const advnn__oim *im, const advnn__oval *v) { return im->g->nodes[v->node].ndim; }
static int advnn__oashape(const advnn__oim *im, const advnn__oval *v, int a) { return im->g->nodes[v->node].shape[a]; }
/* v becomes node `node` in ONNX order (batch first, then the node's axes). */
static void advnn__oset_ident(advnn__oim *im, advnn__oval *v, int node) {
    int k, nd = im->g->nodes[node].ndim;
    v->node = node; v->flat = 0; v->r = nd + 1; v->dim[0] = -1; v->src[0] = ADVNN__OB;
    for (k = 0; k < nd; k++) { v->dim[k + 1] = im->g->nodes[node].shape[k]; v->src[k + 1] = (signed char)k; }
}
/* v becomes node `node` (channels-last (L, C) or (H, W, C)) seen as (N, C, L) or (N, C, H, W). */
static void advnn__oset_cl(advnn__oim *im, advnn__oval *v, int node) {
    int k, nd = im->g->nodes[node].ndim;
    v->node = node; v->flat = 0; v->r = nd + 1; v->dim[0] = -1; v->src[0] = ADVNN__OB;
    v->dim[1] = im->g->nodes[node].shape[nd - 1]; v->src[1] = (signed char)(nd - 1);
    for (k = 0; k + 1 < nd; k++) { v->dim[k + 2] = im->g->nodes[node].shape[k]; v->src[k + 2] = (signed char)k; }
}
/* Does the ONNX per-sample data of v have advnn's order (so that a reshape only relabels)? */
static int advnn__oordered(const advnn__oim *im, const advnn__oval *v) {
    int k, last = -1, data = 0;
    if (v->flat) return 0;
    for (k = 0; k < v->r; k++) {
        int s = v->src[k];
        if (s == ADVNN__OB) { if (data) return 0; continue; }
        if (s == ADVNN__OU || advnn__oashape(im, v, s) == 1) continue;
        if (s < last) return 0;
        last = s; data = 1;
    }
    return 1;
}
static int advnn__obatch_axis(const advnn__oval *v) { int k; for (k = 0; k < v->r; k++) if (v->src[k] == ADVNN__OB) return k; return -1; }
/* Normalises an axis attribute against rank r; -1 when out of range. */
static int advnn__oaxis(int64_t a, int r) { if (a < 0) a += r; return a >= 0 && a < r ? (int)a : -1; }

/* The node of x as channels-last (L, C) / (H, W, C) for a `dims`-d convolution, or -1 with a message. */
static int advnn__oas_cl(advnn__oim *im, const advnn__oval *x, int dims) {
    int k, ok = x->r == dims + 2 && advnn__ondim(im, x) == dims + 1 && !x->flat && x->src[0] == ADVNN__OB && x->src[1] == dims;
    for (k = 0; ok && k < dims; k++) ok = x->src[k + 2] == k;
    if (ok) return x->node;
    if (x->r == dims + 2 && !x->flat && x->src[0] == ADVNN__OB && x->dim[1] == 1 && advnn__oordered(im, x)) {
        int shape[3];   /* one channel: channels-first and channels-last hold the same order */
        for (k = 0; k < dims; k++) shape[k] = (int)x->dim[k + 2];
        shape[dims] = 1;
        k = advnn_reshape(im->g, x->node, dims + 1, shape);
        return advnn__obuilt(im, k) ? -1 : k;
    }
    return advnn__oerr(im, "input '%.*s' is not an (N, C, %s) view of a channels-last tensor (advnn cannot reorder channels-first data with C > 1)",
                       ADVNN__OS(x->name), dims == 1 ? "L" : "H, W");
}

/* A Dense on x seen as (N, K): the advnn node with K values per sample, and for a channels-first
 * flatten the advnn row of each ONNX row (*perm, the caller frees; NULL when the order is the same). */
static int advnn__oas_flat(advnn__oim *im, const advnn__oval *x, int64_t K, int64_t **perm) {
    int node = x->node;
    *perm = NULL;
    if (x->r != 2 || x->src[0] != ADVNN__OB) return advnn__oerr(im, "input '%.*s' must be (batch, features)", ADVNN__OS(x->name));
    if (im->g->nodes[node].size != K)
        return advnn__oerr(im, "input '%.*s' has %d values per sample, the weights expect %lld", ADVNN__OS(x->name), im->g->nodes[node].size, (long long)K);
    if (x->flat) {
        int64_t i, st[3], base = 0;
        int a, k, sg;
        if (!(*perm = (int64_t *)ADVNN_MALLOC((size_t)K * sizeof **perm))) return advnn__oerr(im, "out of memory");
        for (sg = 0; sg < x->nseg; sg++) {
            st[x->seg[sg].fandim - 1] = 1;
            for (a = x->seg[sg].fandim - 2; a >= 0; a--) st[a] = st[a + 1] * x->seg[sg].fashape[a + 1];
            for (i = 0; i < x->seg[sg].len; i++) {   /* ONNX index: row-major over fdim in ONNX order */
                int64_t rem = i, idx = 0;
                for (k = x->seg[sg].fr - 1; k >= 0; k--) { idx += (rem % x->seg[sg].fdim[k]) * st[(int)x->seg[sg].fsrc[k]]; rem /= x->seg[sg].fdim[k]; }
                (*perm)[base + i] = base + idx;
            }
            base += x->seg[sg].len;
        }
        return node;
    }
    if (!advnn__oordered(im, x)) return advnn__oerr(im, "input '%.*s' is in an order advnn cannot reproduce", ADVNN__OS(x->name));
    if (im->g->nodes[node].ndim != 1) { node = advnn_flatten(im->g, node); if (advnn__obuilt(im, node)) return -1; }
    return node;
}

/* out = flatten of x to (N, K): a relabel when the order agrees, else a flat value that remembers the ONNX order. */
static int advnn__oflatten_to(advnn__oim *im, const advnn__oval *x, advnn__oval *out) {
    int node = x->node, k;
    if (x->flat) { *out = *x; return 0; }
    if (advnn__obatch_axis(x) < 0) return advnn__oerr(im, "no batch axis");
    for (k = 0; k < advnn__obatch_axis(x); k++)
        if (x->dim[k] != 1) return advnn__oerr(im, "flattening moves the batch axis (axis %d of '%.*s')", advnn__obatch_axis(x), ADVNN__OS(x->name));
    if (im->g->nodes[node].ndim != 1) { node = advnn_flatten(im->g, node); if (advnn__obuilt(im, node)) return -1; }
    if (advnn__oordered(im, x)) { advnn__oset_ident(im, out, node); return 0; }
    out->nseg = 1; out->seg[0].fr = 0; out->seg[0].len = im->g->nodes[x->node].size;
    for (k = 0; k < x->r; k++) {
        int s = x->src[k];
        if (s < 0) continue;
        out->seg[0].fdim[out->seg[0].fr] = advnn__oashape(im, x, s); out->seg[0].fsrc[out->seg[0].fr] = (signed char)s; out->seg[0].fr++;
    }
    out->seg[0].fandim = advnn__ondim(im, x);
    for (k = 0; k < out->seg[0].fandim; k++) out->seg[0].fashape[k] = advnn__oashape(im, x, k);
    advnn__oset_ident(im, out, node);
    out->flat = 1;
    return 0;
}

/* ---- operators: one function each, found through the table below */
typedef int (*advnn__oop_fn)(advnn__oim *im, const advnn__onode *n);

static int advnn__oop_identity(advnn__oim *im, const advnn__onode *n) {   /* Identity, Dropout (inference) */
    advnn__oval x;
    if (advnn__oin(im, n, 0, &x)) return -1;
    if (n->n_out > 1 && advnn__oused(im, n->out[1])) return advnn__oerr(im, "the dropout mask output is used");
    if (advnn__ostr_eq(n->op, "Dropout") && advnn__ohas(n, 2)) {   /* training_mode: must be a constant false */
        const advnn__otensor *t;
        double *d = advnn__oin_cst(im, n, 2, &t);
        int on = !d || t->count != 1 || d[0] != 0;
        ADVNN_FREE(d);
        if (on) return advnn__oerr(im, "training_mode is not a constant false (advnn imports inference graphs)");
    }
    return advnn__oput(im, n->out[0], &x) ? 0 : -1;
}

static int advnn__oop_constant(advnn__oim *im, const advnn__onode *n) {
    advnn__pbr a;
    advnn__pbf f;
    advnn__oval *v;
    char why[160];
    if (!advnn__oattr(n, "value", &a)) return advnn__oerr(im, "only the 'value' (tensor) form of Constant is supported");
    while (advnn__pbr_next(&a, &f) > 0) {
        if (f.field != 5 || f.wt != 2) continue;
        if (!advnn__ot_parse(f.sub, &im->consts[im->nconsts], why, sizeof why)) return advnn__oerr(im, "invalid tensor: %s", why);
        if (!(v = advnn__oput(im, n->out[0], NULL))) return -1;
        v->cst = &im->consts[im->nconsts++];
        return 0;
    }
    return advnn__oerr(im, "the 'value' attribute holds no tensor");
}

static int advnn__oop_act(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    advnn_act act;
    float p;
    int id;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (advnn__ostr_eq(n->op, "Relu")) act = ADVNN_ACT_RELU, p = 1.0f;
    else if (advnn__ostr_eq(n->op, "Sigmoid")) act = ADVNN_ACT_SIGMOID, p = 1.0f;
    else if (advnn__ostr_eq(n->op, "Tanh")) act = ADVNN_ACT_TANH, p = 1.0f;
    else if (advnn__ostr_eq(n->op, "Elu")) act = ADVNN_ACT_ELU, p = advnn__oattr_f(n, "alpha", 1.0f);
    else if (advnn__ostr_eq(n->op, "Softplus")) act = ADVNN_ACT_SOFTPLUS, p = 1.0f;
    else act = ADVNN_ACT_LEAKY_RELU, p = advnn__oattr_f(n, "alpha", 0.01f);
    id = advnn_activation_ex(im->g, x.node, act, p);
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x))) return -1;
    o->node = id; o->pending = -1;
    return 0;
}

static int advnn__oop_softmax(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    int ax, k, last, id;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    ax = advnn__oaxis(advnn__oattr_i(n, "axis", im->m->opset >= 13 ? -1 : 1), x.r);
    last = advnn__ondim(im, &x) - 1;
    if (ax < 0 || x.flat) return advnn__oerr(im, "axis out of range or a reordered input");
    if (im->m->opset >= 13) { if (x.src[ax] != last) return advnn__oerr(im, "softmax axis %d is not the last axis of the channels-last data", ax); }
    else {   /* before opset 13: over all axes from `axis` on, flattened */
        int found = 0;
        for (k = 0; k < x.r; k++) {
            int s = x.src[k];
            if (k < ax) { if (s == last) return advnn__oerr(im, "softmax axes do not include the last axis"); continue; }
            if (s == ADVNN__OB) return advnn__oerr(im, "softmax over the batch axis");
            if (s == last) found = 1;
            else if (s >= 0 && advnn__oashape(im, &x, s) != 1) return advnn__oerr(im, "softmax over more than the last axis");
        }
        if (!found) return advnn__oerr(im, "softmax axes do not include the last axis");
    }
    id = advnn_softmax(im->g, x.node);
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x))) return -1;
    o->node = id; o->pending = -1;
    return 0;
}

static int advnn__oop_prelu(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    double *s;
    float *alpha;
    int k, id, C, last, chan = -1, off;
    if (advnn__oin_node(im, n, 0, &x) || !(s = advnn__oin_cst(im, n, 1, &t))) return -1;
    last = advnn__ondim(im, &x) - 1; C = advnn__oashape(im, &x, last);
    if (t->ndim > x.r) { ADVNN_FREE(s); return advnn__oerr(im, "slope has rank %d, the input %d", t->ndim, x.r); }
    off = x.r - t->ndim;   /* numpy broadcasting aligns the trailing axes */
    for (k = 0; k < t->ndim; k++) {
        if (t->dims[k] == 1) continue;
        if (x.src[off + k] != last || t->dims[k] != C) { ADVNN_FREE(s); return advnn__oerr(im, "slope varies along an axis that is not the channel axis (advnn: one slope per channel)"); }
        chan = k;
    }
    if (!(alpha = advnn__ofloats(im, C))) { ADVNN_FREE(s); return -1; }
    for (k = 0; k < C; k++) alpha[k] = (float)s[chan >= 0 ? k : 0];
    ADVNN_FREE(s);
    id = advnn_prelu(im->g, x.node);
    if (advnn__obuilt(im, id) || advnn__oweight(im, id, "alpha", alpha, C)) { if (id < 0) ADVNN_FREE(alpha); return -1; }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    o->node = id; o->pending = -1;
    return 0;
}

static int advnn__oop_batchnorm(advnn__oim *im, const advnn__onode *n) {
    static const char *const blk[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    float eps = advnn__oattr_f(n, "epsilon", 1e-5f);
    int k, id, C;
    int64_t j;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (advnn__oattr_i(n, "training_mode", 0) != 0) return advnn__oerr(im, "training_mode = 1");
    if (n->n_out > 1 && (advnn__oused(im, n->out[1]) || (n->n_out > 2 && advnn__oused(im, n->out[2])))) return advnn__oerr(im, "training outputs are used");
    if (x.r < 2 || x.flat || x.src[1] != advnn__ondim(im, &x) - 1) return advnn__oerr(im, "the channel axis (1) is not the last axis of the channels-last data");
    C = advnn__oashape(im, &x, advnn__ondim(im, &x) - 1);
    id = advnn_batchnorm_ex(im->g, x.node, 0.1f, eps);
    if (advnn__obuilt(im, id)) return -1;
    for (k = 0; k < 4; k++) {
        double *d = advnn__oin_cst(im, n, k + 1, &t);
        float *w;
        if (!d) return -1;
        if (t->count != C) { ADVNN_FREE(d); return advnn__oerr(im, "parameter %d has %lld values for %d channels", k + 1, (long long)t->count, C); }
        if (!(w = advnn__ofloats(im, C))) { ADVNN_FREE(d); return -1; }
        for (j = 0; j < C; j++) w[j] = (float)d[j];
        ADVNN_FREE(d);
        if (advnn__oweight(im, id, blk[k], w, C)) return -1;
    }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    o->node = id; o->pending = -1;
    return 0;
}

/* Gemm and MatMul: a Dense. kernel[k][j] = alpha * B[k][j] (B[j][k] with transB), rows permuted for a channels-first flatten. */
static int advnn__oop_dense(advnn__oim *im, const advnn__onode *n) {
    int gemm = advnn__ostr_eq(n->op, "Gemm"), tb = gemm ? (int)advnn__oattr_i(n, "transB", 0) : 0, node, id;
    float alpha = gemm ? advnn__oattr_f(n, "alpha", 1.0f) : 1.0f, beta = gemm ? advnn__oattr_f(n, "beta", 1.0f) : 1.0f;
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    double *B;
    float *ker;
    int64_t K, N, k, j, *perm = NULL;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (gemm && advnn__oattr_i(n, "transA", 0) != 0) return advnn__oerr(im, "transA = 1 (the batch would be a reduction axis)");
    if (!(B = advnn__oin_cst(im, n, 1, &t))) return -1;
    if (t->ndim != 2 || t->dims[0] < 1 || t->dims[1] < 1) { ADVNN_FREE(B); return advnn__oerr(im, "weights must be a 2-D constant"); }
    K = tb ? t->dims[1] : t->dims[0]; N = tb ? t->dims[0] : t->dims[1];
    if (N > ADVNN__MAX_FEATURES || K > ADVNN__MAX_FEATURES) { ADVNN_FREE(B); return advnn__oerr(im, "weights %lld x %lld too large", (long long)K, (long long)N); }
    if (x.r == 2 || x.flat) node = advnn__oas_flat(im, &x, K, &perm);
    else if (!advnn__oordered(im, &x) || x.src[x.r - 1] != advnn__ondim(im, &x) - 1 || advnn__oashape(im, &x, advnn__ondim(im, &x) - 1) != K)
        node = advnn__oerr(im, "the last axis of '%.*s' is not the channels-last feature axis with %lld values", ADVNN__OS(x.name), (long long)K);
    else node = x.node;
    if (node < 0) { ADVNN_FREE(B); return -1; }
    id = advnn_dense(im->g, node, (int)N, ADVNN_ACT_LINEAR);
    if (advnn__obuilt(im, id) || !(ker = advnn__ofloats(im, K * N))) { ADVNN_FREE(B); ADVNN_FREE(perm); return -1; }
    for (k = 0; k < K; k++)
        for (j = 0; j < N; j++) ker[(perm ? perm[k] : k) * N + j] = alpha * (float)B[tb ? j * K + k : k * N + j];
    ADVNN_FREE(B); ADVNN_FREE(perm);
    if (advnn__oweight(im, id, "kernel", ker, K * N)) return -1;
    if (gemm && advnn__ohas(n, 2)) {
        double *c = advnn__oin_cst(im, n, 2, &t);
        float *b;
        if (!c) return -1;
        if ((t->count != N && t->count != 1) || (t->ndim > 0 && t->dims[t->ndim - 1] != N && t->count != 1) || t->ndim > 2) {
            ADVNN_FREE(c);
            return advnn__oerr(im, "bias has %lld values for %lld units (advnn: a bias over the units)", (long long)t->count, (long long)N);
        }
        if (!(b = advnn__ofloats(im, N))) { ADVNN_FREE(c); return -1; }
        for (j = 0; j < N; j++) b[j] = beta * (float)c[t->count == 1 ? 0 : j];
        ADVNN_FREE(c);
        if (advnn__oweight(im, id, "bias", b, N)) return -1;
    }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    if (x.r == 2 || x.flat) advnn__oset_ident(im, o, id);
    else { o->node = id; o->dim[o->r - 1] = N; }
    o->pending = gemm ? -1 : id;
    return 0;
}

/* Add: only as the bias of the MatMul before it (what exporters write for a Dense on sequences). */
static int advnn__oop_add(advnn__oim *im, const advnn__onode *n) {
    advnn__oval a, b, *x, *c;
    advnn__oval *o;
    const advnn__otensor *t;
    double *d;
    float *bias;
    int64_t N, j;
    int k;
    if (advnn__oin(im, n, 0, &a) || advnn__oin(im, n, 1, &b)) return -1;
    x = a.node >= 0 ? &a : &b; c = a.node >= 0 ? &b : &a;
    if (x->node < 0 || !c->cst || x->pending < 0 || x->pending != x->node)
        return advnn__oerr(im, "Add is imported only as the bias of the MatMul just before it (a constant added to its output)");
    {
        advnn__ostr xn = x->name;
        int uses = 0, i;
        for (i = 0; i < im->m->n_outs; i++) uses += advnn__ostr_same(im->m->outs[i], xn);
        for (i = 0; i < im->m->n_nodes; i++) for (k = 0; k < im->m->nodes[i].n_in; k++) uses += advnn__ostr_same(im->m->nodes[i].in[k], xn);
        if (uses != 1) return advnn__oerr(im, "the MatMul output '%.*s' is also read elsewhere, so its bias cannot be folded", ADVNN__OS(xn));
    }
    N = im->g->nodes[x->node].cols;
    t = c->cst;
    for (k = 0; k < t->ndim; k++)
        if (t->dims[k] != 1 && !(k == t->ndim - 1 && t->dims[k] == N)) return advnn__oerr(im, "the added constant is not a bias over the last axis");
    if (t->ndim > x->r) return advnn__oerr(im, "the added constant has a higher rank than the data");
    if (!(d = advnn__oin_cst(im, n, x == &a ? 1 : 0, &t))) return -1;
    if (!(bias = advnn__ofloats(im, N))) { ADVNN_FREE(d); return -1; }
    for (j = 0; j < N; j++) bias[j] = (float)d[t->count == 1 ? 0 : j];
    ADVNN_FREE(d);
    if (advnn__oweight(im, x->node, "bias", bias, N)) return -1;
    if (!(o = advnn__oput(im, n->out[0], x))) return -1;
    o->pending = -1;
    return 0;
}

/* kernel_shape/strides/pads/dilations of a Conv or pool over `dims` spatial axes; pad = VALID/SAME
 * when the pads are what advnn computes for it, else -1. */
static int advnn__owindow(advnn__oim *im, const advnn__onode *n, int dims, const int *in, int64_t *ks, int64_t *st, int *pad, int allow_same) {
    int64_t pads[4] = {0, 0, 0, 0}, dil[2] = {1, 1};
    int k, c, same = allow_same, valid = 1;
    advnn__ostr ap = advnn__oattr_s(n, "auto_pad", "NOTSET");
    st[0] = st[1] = 1;
    if ((c = advnn__oattr_ints(n, "strides", st, 2)) != -1 && c != dims) return advnn__oerr(im, "strides has %d values for %d spatial axes", c, dims);
    if ((c = advnn__oattr_ints(n, "dilations", dil, 2)) != -1 && c != dims) return advnn__oerr(im, "dilations has %d values", c);
    if ((c = advnn__oattr_ints(n, "pads", pads, 4)) != -1 && c != 2 * dims) return advnn__oerr(im, "pads has %d values", c);
    for (k = 0; k < dims; k++) {
        int o, before;
        if (dil[k] != 1) return advnn__oerr(im, "dilation %lld (advnn: 1)", (long long)dil[k]);
        if (ks[k] < 1 || ks[k] > 1024 || st[k] < 1 || st[k] > 1024) return advnn__oerr(im, "kernel %lld, stride %lld out of range", (long long)ks[k], (long long)st[k]);
        if (pads[k] != 0 || pads[k + dims] != 0) valid = 0;
        if (same) {
            if (!advnn__conv_axis(in[k], (int)ks[k], (int)st[k], ADVNN_PAD_SAME, &o, &before)) same = 0;
            else {
                int total = (o - 1) * (int)st[k] + (int)ks[k] - in[k];
                if (total < 0) total = 0;
                if (pads[k] != before || pads[k + dims] != total - before) same = 0;
            }
        }
    }
    if (advnn__ostr_eq(ap, "VALID")) { *pad = ADVNN_PAD_VALID; return 0; }
    if (advnn__ostr_eq(ap, "SAME_UPPER") && allow_same) { *pad = ADVNN_PAD_SAME; return 0; }
    if (!advnn__ostr_eq(ap, "NOTSET")) return advnn__oerr(im, "auto_pad %.*s (advnn: NOTSET, VALID%s)", ADVNN__OS(ap), allow_same ? ", SAME_UPPER" : "");
    if (valid) { *pad = ADVNN_PAD_VALID; return 0; }
    if (same) { *pad = ADVNN_PAD_SAME; return 0; }
    return advnn__oerr(im, "pads (%lld, %lld, %lld, %lld) are neither none nor TensorFlow 'same' (extra pad at the end)%s",
                       (long long)pads[0], (long long)pads[1], (long long)pads[2], (long long)pads[3], allow_same ? "" : " (pooling takes no pads)");
}

static int advnn__oop_conv(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    double *W;
    float *ker;
    int64_t ks[2], st[2], F, C, K0, K1, f, c, a, b;
    int dims, node, in[2], pad, id;
    if (advnn__oin_node(im, n, 0, &x) || !(W = advnn__oin_cst(im, n, 1, &t))) return -1;
    dims = t->ndim - 2;
    if (dims < 1 || dims > 2 || (node = advnn__oas_cl(im, &x, dims)) < 0) {
        ADVNN_FREE(W);
        return dims < 1 || dims > 2 ? advnn__oerr(im, "%d-d convolution (advnn: 1-d and 2-d)", dims) : -1;
    }
    if (advnn__oattr_i(n, "group", 1) != 1) { ADVNN_FREE(W); return advnn__oerr(im, "group = %lld (advnn: 1)", (long long)advnn__oattr_i(n, "group", 1)); }
    F = t->dims[0]; C = t->dims[1];
    ks[0] = t->dims[2]; ks[1] = dims == 2 ? t->dims[3] : 1;
    { int64_t kk[2]; int c2 = advnn__oattr_ints(n, "kernel_shape", kk, 2);
      if (c2 != -1 && (c2 != dims || kk[0] != ks[0] || (dims == 2 && kk[1] != ks[1]))) { ADVNN_FREE(W); return advnn__oerr(im, "kernel_shape disagrees with the weights"); } }
    if (C != im->g->nodes[node].shape[dims]) { ADVNN_FREE(W); return advnn__oerr(im, "weights for %lld input channels, the input has %d", (long long)C, im->g->nodes[node].shape[dims]); }
    for (a = 0; a < dims; a++) in[a] = im->g->nodes[node].shape[a];
    if (advnn__owindow(im, n, dims, in, ks, st, &pad, 1)) { ADVNN_FREE(W); return -1; }
    id = dims == 1 ? advnn_conv1d(im->g, node, (int)F, (int)ks[0], (int)st[0], (advnn_padding)pad, ADVNN_ACT_LINEAR)
                   : advnn_conv2d(im->g, node, (int)F, (int)ks[0], (int)ks[1], (int)st[0], (int)st[1], (advnn_padding)pad, ADVNN_ACT_LINEAR);
    K0 = ks[0]; K1 = ks[1];
    if (advnn__obuilt(im, id) || !(ker = advnn__ofloats(im, F * C * K0 * K1))) { ADVNN_FREE(W); return -1; }
    /* ONNX (F, C, KH, KW) -> advnn (KH, KW, C, F) */
    for (f = 0; f < F; f++) for (c = 0; c < C; c++) for (a = 0; a < K0; a++) for (b = 0; b < K1; b++)
        ker[((a * K1 + b) * C + c) * F + f] = (float)W[((f * C + c) * K0 + a) * K1 + b];
    ADVNN_FREE(W);
    if (advnn__oweight(im, id, "kernel", ker, F * C * K0 * K1)) return -1;
    if (advnn__ohas(n, 2)) {
        double *bb = advnn__oin_cst(im, n, 2, &t);
        float *bias;
        if (!bb) return -1;
        if (t->count != F || !(bias = advnn__ofloats(im, F))) { ADVNN_FREE(bb); return t->count != F ? advnn__oerr(im, "bias has %lld values for %lld filters", (long long)t->count, (long long)F) : -1; }
        for (f = 0; f < F; f++) bias[f] = (float)bb[f];
        ADVNN_FREE(bb);
        if (advnn__oweight(im, id, "bias", bias, F)) return -1;
    }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    advnn__oset_cl(im, o, id); o->pending = -1;
    return 0;
}

static int advnn__oop_pool(advnn__oim *im, const advnn__onode *n) {
    int glob = advnn__ostr_eq(n->op, "GlobalAveragePool") || advnn__ostr_eq(n->op, "GlobalMaxPool");
    int avg = advnn__ostr_eq(n->op, "AveragePool") || advnn__ostr_eq(n->op, "GlobalAveragePool");
    advnn__oval x;
    advnn__oval *o;
    int64_t ks[2] = {1, 1}, st[2] = {1, 1};
    int dims = 0, node, in[2], pad, id, k, c;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (n->n_out > 1 && advnn__oused(im, n->out[1])) return advnn__oerr(im, "the indices output is used");
    if (x.r == 3 || x.r == 4) dims = x.r - 2;
    else return advnn__oerr(im, "input of rank %d (advnn pools (N, C, L) and (N, C, H, W))", x.r);
    if ((node = advnn__oas_cl(im, &x, dims)) < 0) return -1;
    for (k = 0; k < dims; k++) in[k] = im->g->nodes[node].shape[k];
    if (glob) { for (k = 0; k < dims; k++) ks[k] = st[k] = in[k]; }
    else {
        if ((c = advnn__oattr_ints(n, "kernel_shape", ks, 2)) != dims) return advnn__oerr(im, "kernel_shape has %d values for %d spatial axes", c, dims);
        if (advnn__owindow(im, n, dims, in, ks, st, &pad, 0)) return -1;
        if (advnn__oattr_i(n, "storage_order", 0) != 0) return advnn__oerr(im, "storage_order = 1");
        for (k = 0; k < dims; k++)   /* ceil_mode only matters when a window would stick out */
            if (advnn__oattr_i(n, "ceil_mode", 0) && in[k] >= ks[k] && (in[k] - ks[k]) % st[k]) return advnn__oerr(im, "ceil_mode = 1 with a partial last window");
    }
    id = dims == 1 ? (avg ? advnn_avgpool1d(im->g, node, (int)ks[0], (int)st[0]) : advnn_maxpool1d(im->g, node, (int)ks[0], (int)st[0]))
                   : (avg ? advnn_avgpool2d(im->g, node, (int)ks[0], (int)ks[1], (int)st[0], (int)st[1])
                          : advnn_maxpool2d(im->g, node, (int)ks[0], (int)ks[1], (int)st[0], (int)st[1]));
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x))) return -1;
    advnn__oset_cl(im, o, id); o->pending = -1;
    return 0;
}

/* Resize / Upsample: nearest neighbour with integer factors on H and W only, with a coordinate
 * rule under which output pixel x reads input pixel floor(x / f) (advnn's upsampling). */
static int advnn__oop_resize(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    advnn__ostr mode = advnn__oattr_s(n, "mode", "nearest"), ct = advnn__oattr_s(n, "coordinate_transformation_mode", "half_pixel");
    advnn__ostr nm = advnn__oattr_s(n, "nearest_mode", "round_prefer_floor");
    int si = advnn__ostr_eq(n->op, "Upsample") || im->m->opset < 11 ? 1 : 2, node, id, fh, fw;
    double *s;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (!advnn__ostr_eq(mode, "nearest")) return advnn__oerr(im, "mode '%.*s' (advnn: nearest)", ADVNN__OS(mode));
    if (si == 2) {
        int ok = (advnn__ostr_eq(ct, "asymmetric") && advnn__ostr_eq(nm, "floor")) ||
                 ((advnn__ostr_eq(ct, "half_pixel") || advnn__ostr_eq(ct, "pytorch_half_pixel")) &&
                  (advnn__ostr_eq(nm, "round_prefer_floor") || advnn__ostr_eq(nm, "round_prefer_ceil")));
        if (!ok) return advnn__oerr(im, "coordinate_transformation_mode '%.*s' with nearest_mode '%.*s' (advnn: asymmetric+floor, or half_pixel+round)",
                                    ADVNN__OS(ct), ADVNN__OS(nm));
        advnn__pbr ax;
        if (advnn__oattr_i(n, "antialias", 0) != 0 || advnn__oattr(n, "axes", &ax)) return advnn__oerr(im, "antialias or axes given");
    }
    if (!advnn__ohas(n, si)) return advnn__oerr(im, "no constant scales (resizing to sizes is not supported: it fixes the batch size)");
    if (!(s = advnn__oin_cst(im, n, si, &t))) return -1;
    if (t->count != 4 || s[0] != 1.0 || s[1] != 1.0 || s[2] != floor(s[2]) || s[3] != floor(s[3]) || s[2] < 1 || s[3] < 1 || s[2] > 64 || s[3] > 64) {
        ADVNN_FREE(s); return advnn__oerr(im, "scales must be (1, 1, fh, fw) with integer factors 1..64");
    }
    fh = (int)s[2]; fw = (int)s[3];
    ADVNN_FREE(s);
    if ((node = advnn__oas_cl(im, &x, 2)) < 0) return -1;
    id = advnn_upsample2d(im->g, node, fh, fw);
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x))) return -1;
    advnn__oset_cl(im, o, id); o->pending = -1;
    return 0;
}

static int advnn__oop_transpose(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    int64_t perm[ADVNN_MAX_DIMS];
    int c, k, seen = 0;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    c = advnn__oattr_ints(n, "perm", perm, ADVNN_MAX_DIMS);
    if (c == -1) { for (k = 0; k < x.r; k++) perm[k] = x.r - 1 - k; c = x.r; }
    if (c != x.r || x.flat) return advnn__oerr(im, "perm has %d values for rank %d", c, x.r);
    for (k = 0; k < c; k++) {
        if (perm[k] < 0 || perm[k] >= c || (seen >> perm[k] & 1)) return advnn__oerr(im, "perm is not a permutation");
        seen |= 1 << perm[k];
    }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    for (k = 0; k < c; k++) { o->dim[k] = x.dim[perm[k]]; o->src[k] = x.src[perm[k]]; }
    return 0;
}

/* axes of Squeeze/Unsqueeze: attribute before opset 13, input 1 from 13 on; -1 when absent */
static int advnn__oaxes(advnn__oim *im, const advnn__onode *n, int64_t *axes) {
    int c;
    if (im->m->opset < 13) {
        c = advnn__oattr_ints(n, "axes", axes, ADVNN_MAX_DIMS);
        return c == -2 ? advnn__oerr(im, "too many axes") - 1 : c;
    }
    if (!advnn__ohas(n, 1)) return -1;
    {
        const advnn__otensor *t;
        double *d = advnn__oin_cst(im, n, 1, &t);
        if (!d) return -2;
        if (t->count > ADVNN_MAX_DIMS) { ADVNN_FREE(d); return advnn__oerr(im, "too many axes") - 1; }
        for (c = 0; c < t->count; c++) axes[c] = (int64_t)d[c];
        ADVNN_FREE(d);
        return c;
    }
}

static int advnn__oop_squeeze(advnn__oim *im, const advnn__onode *n) {
    int unsq = advnn__ostr_eq(n->op, "Unsqueeze"), c, k, j, r;
    int64_t axes[ADVNN_MAX_DIMS];
    unsigned mark = 0;
    advnn__oval x;
    advnn__oval *o;
    if (advnn__oin(im, n, 0, &x)) return -1;
    if ((c = advnn__oaxes(im, n, axes)) < -1) return -1;
    if (x.isshape) {   /* a scalar shape entry made a 1-vector */
        if (!unsq || x.shp_r != 0 || c != 1 || (axes[0] != 0 && axes[0] != -1)) return advnn__oerr(im, "unsupported shape arithmetic");
        if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
        o->shp_r = 1;
        return 0;
    }
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (x.flat) return advnn__oerr(im, "input is a reordered flatten");
    r = unsq ? x.r + (c < 0 ? 0 : c) : x.r;
    if (unsq && (c < 0 || r > ADVNN_MAX_DIMS)) return advnn__oerr(im, "axes missing or rank above %d", ADVNN_MAX_DIMS);
    for (k = 0; k < c; k++) {
        int a = advnn__oaxis(axes[k], r);
        if (a < 0 || (mark >> a & 1)) return advnn__oerr(im, "axis %lld out of range or repeated", (long long)axes[k]);
        mark |= 1u << a;
    }
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    if (unsq) {
        for (k = 0, j = 0; k < r; k++) {
            if (mark >> k & 1) { o->dim[k] = 1; o->src[k] = ADVNN__OU; }
            else { o->dim[k] = x.dim[j]; o->src[k] = x.src[j]; j++; }
        }
        o->r = r;
        return 0;
    }
    for (k = 0, j = 0; k < x.r; k++) {
        int drop = c < 0 ? x.src[k] != ADVNN__OB && x.dim[k] == 1 : (int)(mark >> k & 1);
        if (drop && (x.src[k] == ADVNN__OB || x.dim[k] != 1)) return advnn__oerr(im, "axis %d has size %lld%s", k, (long long)x.dim[k], x.src[k] == ADVNN__OB ? " (the batch)" : "");
        if (!drop) { o->dim[j] = x.dim[k]; o->src[j] = x.src[k]; j++; }
    }
    o->r = j;
    return 0;
}

/* The exporters' dynamic zero state of an LSTM: Shape -> Gather -> Unsqueeze -> Concat -> ConstantOfShape
 * is followed as integer arithmetic on shapes, with -1 standing for the batch size. */
static int advnn__oop_shape(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    int k;
    if (advnn__oin(im, n, 0, &x)) return -1;
    if (x.node < 0 || x.flat || advnn__oattr_i(n, "start", 0) != 0 || advnn__oattr_i(n, "end", x.r) != x.r)
        return advnn__oerr(im, "Shape of a constant, a reordered flatten, or with start/end");
    if (!(o = advnn__oput(im, n->out[0], NULL))) return -1;
    o->isshape = 1; o->shp_r = 1; o->shp_n = x.r;
    for (k = 0; k < x.r; k++) o->shp[k] = x.dim[k];
    return 0;
}
/* Values of input k as a shape: a shape value, or an integer constant of rank <= 1. */
static int advnn__oin_shape(advnn__oim *im, const advnn__onode *n, int k, advnn__oval *out) {
    if (advnn__oin(im, n, k, out)) return -1;
    if (out->isshape) return 0;
    if (out->cst && out->cst->ndim <= 1 && out->cst->count <= ADVNN_MAX_DIMS &&
        (out->cst->dtype == ADVNN__OT_INT64 || out->cst->dtype == ADVNN__OT_INT32)) {
        double d[ADVNN_MAX_DIMS];
        int j;
        advnn__ot_read(out->cst, d);
        out->isshape = 1; out->shp_r = out->cst->ndim; out->shp_n = (int)out->cst->count;
        for (j = 0; j < out->shp_n; j++) out->shp[j] = (int64_t)d[j];
        return 0;
    }
    return advnn__oerr(im, "input %d ('%.*s') is not a shape computation", k, ADVNN__OS(n->in[k]));
}
static int advnn__oop_cshape(advnn__oim *im, const advnn__onode *n) {   /* ConstantOfShape */
    advnn__oval s;
    advnn__oval *o;
    advnn__pbr a;
    advnn__pbf f;
    int k;
    if (advnn__oin_shape(im, n, 0, &s)) return -1;
    if (advnn__oattr(n, "value", &a))
        while (advnn__pbr_next(&a, &f) > 0) {
            advnn__otensor t;
            char why[160];
            double v;
            if (f.field != 5 || f.wt != 2) continue;
            if (!advnn__ot_parse(f.sub, &t, why, sizeof why) || t.count != 1) return advnn__oerr(im, "invalid value: %s", why);
            advnn__ot_read(&t, &v);
            if (v != 0) return advnn__oerr(im, "a non-zero fill value (advnn uses it only for zero initial states)");
        }
    if (s.shp_r != 1) return advnn__oerr(im, "shape of rank %d", s.shp_r);
    if (!(o = advnn__oput(im, n->out[0], NULL))) return -1;
    o->zero = 1; o->r = s.shp_n;
    for (k = 0; k < s.shp_n; k++) o->dim[k] = s.shp[k];
    return 0;
}
/* Pad with zero pads (what torch writes before some poolings): an identity. */
static int advnn__oop_pad(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    int64_t p[2 * ADVNN_MAX_DIMS];
    int k, c;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (im->m->opset < 11) c = advnn__oattr_ints(n, "pads", p, 2 * ADVNN_MAX_DIMS);
    else {
        const advnn__otensor *t;
        double *d = advnn__oin_cst(im, n, 1, &t);
        if (!d) return -1;
        c = t->count <= 2 * ADVNN_MAX_DIMS ? (int)t->count : -2;
        for (k = 0; k < c; k++) p[k] = (int64_t)d[k];
        ADVNN_FREE(d);
    }
    if (c < 0) return advnn__oerr(im, "pads missing");
    for (k = 0; k < c; k++) if (p[k] != 0) return advnn__oerr(im, "non-zero padding (advnn pads only inside Conv, as 'same')");
    return advnn__oput(im, n->out[0], &x) ? 0 : -1;
}

/* Gather of index 0 (or -1) along an axis of size 1: a squeeze (torch's h_n[-1] of a one-layer LSTM). */
static int advnn__oop_gather(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *t;
    double *d;
    int ax, k, j;
    if (advnn__oin(im, n, 0, &x)) return -1;
    if (x.isshape) {   /* indices into a shape */
        advnn__oval ix;
        if (advnn__oin_shape(im, n, 1, &ix)) return -1;
        if (x.shp_r != 1 || advnn__oattr_i(n, "axis", 0) != 0) return advnn__oerr(im, "Gather on a shape along axis != 0");
        if (!(o = advnn__oput(im, n->out[0], NULL))) return -1;
        o->isshape = 1; o->shp_r = ix.shp_r; o->shp_n = ix.shp_n;
        for (k = 0; k < ix.shp_n; k++) {
            int a = advnn__oaxis(ix.shp[k], x.shp_n);
            if (a < 0) return advnn__oerr(im, "index %lld out of range", (long long)ix.shp[k]);
            o->shp[k] = x.shp[a];
        }
        return 0;
    }
    if (advnn__oin_node(im, n, 0, &x) || !(d = advnn__oin_cst(im, n, 1, &t))) return -1;
    ax = advnn__oaxis(advnn__oattr_i(n, "axis", 0), x.r);
    if (ax < 0 || x.flat || t->count != 1 || (d[0] != 0 && d[0] != -1) || x.dim[ax] != 1 || x.src[ax] == ADVNN__OB) {
        ADVNN_FREE(d);
        return advnn__oerr(im, "Gather is imported only as index 0 or -1 along an axis of size 1");
    }
    ADVNN_FREE(d);
    if (!(o = advnn__oput(im, n->out[0], &x))) return -1;
    if (t->ndim == 0) {   /* a scalar index drops the axis */
        for (k = 0, j = 0; k < x.r; k++) if (k != ax) { o->dim[j] = x.dim[k]; o->src[j] = x.src[k]; j++; }
        o->r = j;
    }
    return 0;
}

static int advnn__oop_flatten(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x, f;
    int ax;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    ax = advnn__oaxis(advnn__oattr_i(n, "axis", 1), x.r + 1);
    if (ax != 1 || x.r < 1) return advnn__oerr(im, "axis %d (advnn: 1, keeping the batch)", ax);
    f = x;
    if (advnn__oflatten_to(im, &x, &f)) return -1;
    return advnn__oput(im, n->out[0], &f) ? 0 : -1;
}

static int advnn__oop_reshape(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x, f;
    advnn__oval *o;
    const advnn__otensor *t;
    double *d;
    int64_t dims[ADVNN_MAX_DIMS], size = 1, have, known = 1;
    int k, r, infer = -1, shape[3], nd = 0, id;
    if (advnn__oin_node(im, n, 0, &x) || !(d = advnn__oin_cst(im, n, 1, &t))) return -1;
    if (t->count < 1 || t->count > ADVNN_MAX_DIMS || advnn__oattr_i(n, "allowzero", 0)) { ADVNN_FREE(d); return advnn__oerr(im, "shape with %lld values or allowzero", (long long)t->count); }
    r = (int)t->count;
    for (k = 0; k < r; k++) dims[k] = (int64_t)d[k];
    ADVNN_FREE(d);
    have = im->g->nodes[x.node].size;
    for (k = 0; k < advnn__obatch_axis(&x); k++)   /* axes of size 1 before the batch (an LSTM's Y_h) fold away */
        if (x.dim[k] != 1) return advnn__oerr(im, "the batch is not the outermost axis of the input");
    if ((dims[0] != 0 && dims[0] != -1) || (dims[0] == 0 && advnn__obatch_axis(&x) != 0))
        return advnn__oerr(im, "the new shape must keep the batch first as 0 or -1 (it is %lld)", (long long)dims[0]);
    for (k = 1; k < r; k++) {
        if (dims[k] == 0) {
            if (k >= x.r || x.src[k] == ADVNN__OB) return advnn__oerr(im, "0 copies a dimension the input lacks, or the batch");
            dims[k] = x.dim[k];
        }
        if (dims[k] == -1) { if (infer >= 0 || dims[0] == -1) return advnn__oerr(im, "more than one -1"); infer = k; continue; }
        if (dims[k] < 1 || dims[k] > ADVNN__MAX_FEATURES) return advnn__oerr(im, "dimension %lld", (long long)dims[k]);
        known *= dims[k];
        if (known > ADVNN__MAX_FEATURES) return advnn__oerr(im, "too large");
    }
    if (infer >= 0) { if (have % known) return advnn__oerr(im, "%lld values do not split into %lld", (long long)have, (long long)known); dims[infer] = have / known; }
    for (k = 1; k < r; k++) size *= dims[k];
    if (size != have) return advnn__oerr(im, "new shape holds %lld values per sample, the input %lld", (long long)size, (long long)have);
    if (!advnn__oordered(im, &x)) {   /* only a flatten of reordered data can be followed by a Dense */
        if (r != 2) return advnn__oerr(im, "reshaping channels-first data other than to (N, features) would reorder it");
        f = x;
        if (advnn__oflatten_to(im, &x, &f)) return -1;
        return advnn__oput(im, n->out[0], &f) ? 0 : -1;
    }
    for (k = 1; k < r; k++) if (dims[k] != 1) { if (nd == 3) return advnn__oerr(im, "more than 3 axes above 1 (advnn: 3)"); shape[nd++] = (int)dims[k]; }
    if (nd == 0) shape[nd++] = 1;
    id = advnn_reshape(im->g, x.node, nd, shape);
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x))) return -1;
    o->node = id; o->pending = -1; o->r = r; o->dim[0] = -1; o->src[0] = ADVNN__OB;
    for (k = 1, nd = 0; k < r; k++) {
        o->dim[k] = dims[k];
        o->src[k] = dims[k] != 1 ? (signed char)nd++ : (signed char)ADVNN__OU;
    }
    return 0;
}

static int advnn__oop_concat(advnn__oim *im, const advnn__onode *n) {
    advnn__oval x[ADVNN__ONNX_MAXIO];
    advnn__oval *o;
    int ids[ADVNN__ONNX_MAXIO], k, j, ax, id;
    int64_t total = 0;
    if (n->n_in < 1) return advnn__oerr(im, "no inputs");
    for (k = 0; k < n->n_in; k++) if (advnn__oin(im, n, k, &x[k])) return -1;
    if (x[0].isshape || (x[0].cst && x[0].cst->dtype != ADVNN__OT_FLOAT)) {   /* shapes joined */
        advnn__oval s;
        if (!(o = advnn__oput(im, n->out[0], NULL))) return -1;
        o->isshape = 1; o->shp_r = 1;
        for (k = 0; k < n->n_in; k++) {
            if (advnn__oin_shape(im, n, k, &s)) return -1;
            if (s.shp_r != 1 || o->shp_n + s.shp_n > ADVNN_MAX_DIMS) return advnn__oerr(im, "shapes too long");
            memcpy(o->shp + o->shp_n, s.shp, (size_t)s.shp_n * sizeof *s.shp);
            o->shp_n += s.shp_n;
        }
        return 0;
    }
    for (k = 0; k < n->n_in; k++) if (advnn__oin_node(im, n, k, &x[k])) return -1;
    ax = advnn__oaxis(advnn__oattr_i(n, "axis", 0), x[0].r);
    if (ax < 0) return advnn__oerr(im, "axis out of range");
    for (k = 0; k < n->n_in; k++) if (x[k].flat) break;
    if (k < n->n_in) {   /* (N, K) features, some of them flattened channels-first: segments */
        advnn__oval f;
        memset(&f, 0, sizeof f);
        for (k = 0; k < n->n_in; k++) {
            int j2;
            if (x[k].r != 2 || ax != 1 || x[k].src[0] != ADVNN__OB || (!x[k].flat && !advnn__oordered(im, &x[k])))
                return advnn__oerr(im, "input %d: a channels-first flatten is concatenated only with other (N, features) data", k);
            if (!x[k].flat) {   /* in order: one segment read as it is */
                ids[k] = advnn__ondim(im, &x[k]) == 1 ? x[k].node : advnn_flatten(im->g, x[k].node);
                if (advnn__obuilt(im, ids[k])) return -1;
                x[k].nseg = 1; x[k].seg[0].len = x[k].seg[0].fdim[0] = x[k].seg[0].fashape[0] = im->g->nodes[ids[k]].size;
                x[k].seg[0].fr = x[k].seg[0].fandim = 1; x[k].seg[0].fsrc[0] = 0;
            } else ids[k] = x[k].node;
            for (j2 = 0; j2 < x[k].nseg; j2++) {
                if (f.nseg >= ADVNN__MAX_IN) return advnn__oerr(im, "more than %d flattened segments", ADVNN__MAX_IN);
                f.seg[f.nseg++] = x[k].seg[j2];
            }
        }
        id = advnn_concat(im->g, n->n_in, ids);
        if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x[0]))) return -1;
        advnn__oset_ident(im, o, id);
        o->flat = 1; o->nseg = f.nseg; memcpy(o->seg, f.seg, sizeof f.seg); o->pending = -1;
        return 0;
    }
    for (k = 0; k < n->n_in; k++) {
        if (x[k].r != x[0].r || x[k].flat || x[k].src[ax] != advnn__ondim(im, &x[k]) - 1)
            return advnn__oerr(im, "input %d is not concatenated along the last axis of its channels-last data", k);
        for (j = 0; j < x[0].r; j++)
            if (j != ax && (x[k].src[j] != x[0].src[j] || x[k].dim[j] != x[0].dim[j])) return advnn__oerr(im, "inputs 0 and %d have different layouts", k);
        ids[k] = x[k].node; total += x[k].dim[ax];
    }
    id = advnn_concat(im->g, n->n_in, ids);
    if (advnn__obuilt(im, id) || !(o = advnn__oput(im, n->out[0], &x[0]))) return -1;
    o->node = id; o->pending = -1; o->dim[ax] = total;
    return 0;
}

/* LSTM, forward, default activations. ONNX gate blocks i, o, f, c with B = [Wb; Rb] become advnn's
 * i, f, c, o with one bias (Wb + Rb). sequence_lens (per sample) becomes a mask through a Dense
 * (1 -> T, ReLU) with kernel 1 and bias -t: len - t > 0 exactly for the steps t < len. */
static int advnn__oop_lstm(advnn__oim *im, const advnn__onode *n) {
    static const int gmap[4] = {0, 2, 3, 1};   /* advnn gate g is ONNX block gmap[g] */
    advnn__oval x;
    advnn__oval *o;
    const advnn__otensor *tw, *tr, *tb = NULL;
    double *W = NULL, *R = NULL, *B = NULL;
    int64_t H = advnn__oattr_i(n, "hidden_size", 0), F, T, j, f, g;
    int layout = (int)advnn__oattr_i(n, "layout", 0), mask = -1, k, use[2], st = -1;
    advnn__ostr dir = advnn__oattr_s(n, "direction", "forward");
    advnn__pbr a;
    if (advnn__oin_node(im, n, 0, &x)) return -1;
    if (!advnn__ostr_eq(dir, "forward")) return advnn__oerr(im, "direction '%.*s' (advnn: forward)", ADVNN__OS(dir));
    if (advnn__oattr(n, "clip", &a) || advnn__oattr_i(n, "input_forget", 0) || advnn__oattr(n, "activations", &a))
        return advnn__oerr(im, "clip, input_forget or non-default activations");
    if (advnn__ohas(n, 7)) return advnn__oerr(im, "peephole weights");
    if (layout < 0 || layout > 1 || x.r != 3 || x.flat || advnn__ondim(im, &x) != 2 || x.src[2] != 1 ||
        x.src[layout ? 0 : 1] != ADVNN__OB || x.src[layout ? 1 : 0] != 0)
        return advnn__oerr(im, "input '%.*s' is not a (T, N, F) (layout 0) or (N, T, F) (layout 1) view of a (T, F) sequence", ADVNN__OS(x.name));
    T = advnn__oashape(im, &x, 0); F = advnn__oashape(im, &x, 1);
    if (n->n_out > 2 && advnn__oused(im, n->out[2])) return advnn__oerr(im, "the cell state output Y_c is used (advnn returns h)");
    use[0] = n->n_out > 0 && advnn__oused(im, n->out[0]);
    use[1] = n->n_out > 1 && advnn__oused(im, n->out[1]);
    for (k = 5; k <= 6; k++)   /* initial states: absent or zero */
        if (advnn__ohas(n, k)) {
            const advnn__otensor *t;
            double *z;
            advnn__oval s;
            if (advnn__oin(im, n, k, &s)) return -1;
            if (s.zero) continue;
            z = advnn__oin_cst(im, n, k, &t);
            if (!z) return -1;
            for (j = 0; j < t->count; j++) if (z[j] != 0) { ADVNN_FREE(z); return advnn__oerr(im, "a non-zero initial state"); }
            ADVNN_FREE(z);
        }
    if (advnn__ohas(n, 4)) {
        advnn__oval l;
        float *ker, *bias;
        if (advnn__oin(im, n, 4, &l)) return -1;
        if (l.node < 0 || im->g->nodes[l.node].size != 1) return advnn__oerr(im, "sequence_lens must be an input with one value per sample");
        if (use[0]) return advnn__oerr(im, "sequence_lens with the output sequence Y used (ONNX zeroes its padded steps, advnn repeats the last state)");
        mask = advnn_dense(im->g, l.node, (int)T, ADVNN_ACT_RELU);
        if (advnn__obuilt(im, mask) || !(ker = advnn__ofloats(im, T))) return -1;
        if (!(bias = advnn__ofloats(im, T))) { ADVNN_FREE(ker); return -1; }
        for (j = 0; j < T; j++) { ker[j] = 1.0f; bias[j] = -(float)j; }
        if (advnn__oweight(im, mask, "kernel", ker, T)) { ADVNN_FREE(bias); return -1; }
        if (advnn__oweight(im, mask, "bias", bias, T)) return -1;
    }
    if (!(W = advnn__oin_cst(im, n, 1, &tw)) || !(R = advnn__oin_cst(im, n, 2, &tr)) || (advnn__ohas(n, 3) && !(B = advnn__oin_cst(im, n, 3, &tb)))) goto done;
    if (H < 1 || H > 65536 || tw->count != 4 * H * F || tr->count != 4 * H * H || (tb && tb->count != 8 * H)) {
        advnn__oerr(im, "weights W %lld, R %lld, B %lld values for hidden_size %lld, %lld features", (long long)tw->count, (long long)tr->count,
                    tb ? (long long)tb->count : 0LL, (long long)H, (long long)F);
        goto done;
    }
    for (k = 0; k < 2; k++) {
        float *ker, *rec, *bias;
        int id;
        if (!use[k]) continue;
        id = advnn_lstm(im->g, x.node, (int)H, k == 0, mask);
        if (advnn__obuilt(im, id)) goto done;
        ker = advnn__ofloats(im, F * 4 * H); rec = advnn__ofloats(im, H * 4 * H); bias = advnn__ofloats(im, 4 * H);
        if (!ker || !rec || !bias) { ADVNN_FREE(ker); ADVNN_FREE(rec); ADVNN_FREE(bias); goto done; }
        for (g = 0; g < 4; g++)
            for (j = 0; j < H; j++) {
                int64_t row = gmap[g] * H + j, col = g * H + j;
                for (f = 0; f < F; f++) ker[f * 4 * H + col] = (float)W[row * F + f];
                for (f = 0; f < H; f++) rec[f * 4 * H + col] = (float)R[row * H + f];
                bias[col] = B ? (float)(B[row] + B[4 * H + row]) : 0.0f;   /* the float sum ONNX Runtime forms too */
            }
        if (advnn__oweight(im, id, "kernel", ker, F * 4 * H)) { ADVNN_FREE(rec); ADVNN_FREE(bias); goto done; }
        if (advnn__oweight(im, id, "recurrent_kernel", rec, H * 4 * H)) { ADVNN_FREE(bias); goto done; }
        if (advnn__oweight(im, id, "bias", bias, 4 * H)) goto done;
        if (!(o = advnn__oput(im, n->out[k], &x))) goto done;
        o->node = id; o->pending = -1;
        if (k == 0) {   /* Y: (T, 1, N, H) or (N, T, 1, H) */
            o->r = 4;
            if (layout == 0) { o->dim[0] = T; o->src[0] = 0; o->dim[1] = 1; o->src[1] = ADVNN__OU; o->dim[2] = -1; o->src[2] = ADVNN__OB; }
            else { o->dim[0] = -1; o->src[0] = ADVNN__OB; o->dim[1] = T; o->src[1] = 0; o->dim[2] = 1; o->src[2] = ADVNN__OU; }
            o->dim[3] = H; o->src[3] = 1;
        } else {        /* Y_h: (1, N, H) or (N, 1, H) */
            o->r = 3;
            o->dim[layout] = 1; o->src[layout] = ADVNN__OU; o->dim[1 - layout] = -1; o->src[1 - layout] = ADVNN__OB;
            o->dim[2] = H; o->src[2] = 0;
        }
    }
    st = 0;
done:
    ADVNN_FREE(W); ADVNN_FREE(R); ADVNN_FREE(B);
    return st;
}

static const struct { const char *op; advnn__oop_fn fn; } advnn__oops[] = {
    {"Identity", advnn__oop_identity}, {"Dropout", advnn__oop_identity}, {"Constant", advnn__oop_constant},
    {"Relu", advnn__oop_act}, {"LeakyRelu", advnn__oop_act}, {"Elu", advnn__oop_act}, {"Sigmoid", advnn__oop_act},
    {"Tanh", advnn__oop_act}, {"Softplus", advnn__oop_act}, {"PRelu", advnn__oop_prelu}, {"Softmax", advnn__oop_softmax},
    {"BatchNormalization", advnn__oop_batchnorm}, {"Gemm", advnn__oop_dense}, {"MatMul", advnn__oop_dense}, {"Add", advnn__oop_add},
    {"Conv", advnn__oop_conv}, {"MaxPool", advnn__oop_pool}, {"AveragePool", advnn__oop_pool},
    {"GlobalAveragePool", advnn__oop_pool}, {"GlobalMaxPool", advnn__oop_pool}, {"Resize", advnn__oop_resize}, {"Upsample", advnn__oop_resize},
    {"Transpose", advnn__oop_transpose}, {"Squeeze", advnn__oop_squeeze}, {"Unsqueeze", advnn__oop_squeeze}, {"Gather", advnn__oop_gather},
    {"Flatten", advnn__oop_flatten}, {"Shape", advnn__oop_shape}, {"ConstantOfShape", advnn__oop_cshape}, {"Pad", advnn__oop_pad}, {"Reshape", advnn__oop_reshape}, {"Concat", advnn__oop_concat}, {"LSTM", advnn__oop_lstm},
};

/* Makes the advnn input for ONNX graph input `in`: the batch axis dropped; (N, C, H, W), and (N, C, L)
 * read by a Conv, become channels-last; an integer input of one value per sample stays as floats. */
static int advnn__oinput_make(advnn__oim *im, const advnn__oinput *in) {
    char name[ADVNN__NAME_MAX];
    int shape[3], k, nd, cl, id, i;
    advnn__oval *v;
    if (in->name.n == 0 || in->name.n >= ADVNN__NAME_MAX || memchr(in->name.p, 0, in->name.n))
        return advnn__oerr(im, "graph input name '%.*s' is empty, has a NUL or has %zu characters (advnn: 1..%d)", ADVNN__OS(in->name), in->name.n, ADVNN__NAME_MAX - 1);
    memcpy(name, in->name.p, in->name.n); name[in->name.n] = 0;
    if (in->ndim < 1 || in->ndim > 4) return advnn__oerr(im, "graph input '%s' has rank %d (advnn: 1..4, the first axis the batch)", name, in->ndim);
    if (in->elem != ADVNN__OT_FLOAT && !((in->elem == ADVNN__OT_INT32 || in->elem == ADVNN__OT_INT64) && in->ndim == 1))
        return advnn__oerr(im, "graph input '%s' has element type %d (advnn: float, or integer sequence lengths)", name, in->elem);
    for (k = 1; k < in->ndim; k++)
        if (in->dims[k] < 1 || in->dims[k] > ADVNN__MAX_FEATURES) return advnn__oerr(im, "graph input '%s' has no fixed size on axis %d", name, k);
    cl = 0;   /* channels-first when an operator that reads (N, C, ...) takes it directly (as PyTorch exports) */
    for (i = 0; (in->ndim == 3 || in->ndim == 4) && i < im->m->n_nodes; i++) {
        const advnn__onode *c = &im->m->nodes[i];
        if (c->n_in > 0 && advnn__ostr_same(c->in[0], in->name) &&
            (advnn__ostr_eq(c->op, "Conv") || advnn__ostr_eq(c->op, "MaxPool") || advnn__ostr_eq(c->op, "AveragePool") ||
             advnn__ostr_eq(c->op, "GlobalAveragePool") || advnn__ostr_eq(c->op, "GlobalMaxPool") || advnn__ostr_eq(c->op, "Resize") ||
             advnn__ostr_eq(c->op, "Upsample") || advnn__ostr_eq(c->op, "BatchNormalization"))) cl = 1;
    }
    nd = in->ndim - 1;
    if (nd == 0) { shape[0] = 1; nd = 1; }
    else if (cl) { for (k = 0; k + 1 < nd; k++) shape[k] = (int)in->dims[k + 2]; shape[nd - 1] = (int)in->dims[1]; }
    else for (k = 0; k < nd; k++) shape[k] = (int)in->dims[k + 1];
    id = advnn_input(im->g, name, nd, shape);
    if (advnn__obuilt(im, id) || !(v = advnn__oput(im, in->name, NULL))) return -1;
    if (cl) advnn__oset_cl(im, v, id);
    else if (in->ndim == 1) { v->node = id; v->r = 1; v->dim[0] = -1; v->src[0] = ADVNN__OB; }
    else advnn__oset_ident(im, v, id);
    v->isint = in->elem != ADVNN__OT_FLOAT;
    return 0;
}

static advnn_graph *advnn__onnx_build(const advnn__omodel *m) {
    advnn__oim im;
    advnn_graph *g = NULL;
    int i, k, ok = 0;
    memset(&im, 0, sizeof im);
    im.m = m;
    if (m->opset < 11 || m->opset > 21) {
        advnn__fail(ADVNN_ERR_FORMAT, "onnx: opset %lld of the default domain (advnn imports opsets 11..21)%s", (long long)m->opset,
                    m->opset == 0 ? ": no opset_import entry for it" : "");
        return NULL;
    }
    if (!(im.g = g = advnn_graph_new())) return NULL;
    if (!(im.consts = (advnn__otensor *)ADVNN_MALLOC(((size_t)m->n_nodes + 1) * sizeof *im.consts))) { advnn__oerr(&im, "out of memory"); goto out; }
    for (i = 0; i < m->n_inits; i++) {
        advnn__oval *v = advnn__oput(&im, m->inits[i].name, NULL);
        if (!v) goto out;
        v->cst = &m->inits[i];
    }
    for (i = 0; i < m->n_ins; i++) {
        int init = 0;
        for (k = 0; k < m->n_inits && !init; k++) init = advnn__ostr_same(m->inits[k].name, m->ins[i].name);
        if (!init && advnn__oinput_make(&im, &m->ins[i])) goto out;   /* old exporters list initializers as inputs too */
    }
    for (i = 0; i < m->n_nodes; i++) {
        const advnn__onode *n = &m->nodes[i];
        int j, found = -1;
        im.cur = n;
        if (n->domain.n && !advnn__ostr_eq(n->domain, "ai.onnx")) {
            advnn__oerr(&im, "operator of domain '%.*s' is not supported", ADVNN__OS(n->domain));
            goto out;
        }
        for (j = 0; j < (int)(sizeof advnn__oops / sizeof advnn__oops[0]); j++) if (advnn__ostr_eq(n->op, advnn__oops[j].op)) { found = j; break; }
        if (found < 0) { advnn__oerr(&im, "operator '%.*s' is not supported by advnn's importer", ADVNN__OS(n->op)); goto out; }
        for (j = 0; j < n->n_out && n->out[j].n == 0; j++) {}
        if (j == n->n_out) { advnn__oerr(&im, "node has no output"); goto out; }
        if (advnn__oops[found].fn(&im, n)) goto out;
    }
    im.cur = NULL;
    if (m->n_outs < 1) { advnn__oerr(&im, "the graph has no outputs"); goto out; }
    for (i = 0; i < m->n_outs; i++) {
        advnn__oval *v = advnn__oget(&im, m->outs[i]);
        char name[ADVNN__NAME_MAX];
        int id;
        if (!v) { advnn__oerr(&im, "graph output '%.*s' is not computed by any node", ADVNN__OS(m->outs[i])); goto out; }
        if (v->node < 0 || v->flat || v->isint) { advnn__oerr(&im, "graph output '%.*s' is a constant, an integer input or a reordered flatten", ADVNN__OS(m->outs[i])); goto out; }
        if (m->outs[i].n >= ADVNN__NAME_MAX || memchr(m->outs[i].p, 0, m->outs[i].n)) { advnn__oerr(&im, "graph output name '%.*s' is longer than %d characters", ADVNN__OS(m->outs[i]), ADVNN__NAME_MAX - 1); goto out; }
        memcpy(name, m->outs[i].p, m->outs[i].n); name[m->outs[i].n] = 0;
        id = v->node;
        if (g->nodes[id].kind == ADVNN__INPUT || g->nodes[id].name[0]) {   /* a second name for a node: a copy under it */
            id = advnn_reshape(g, id, g->nodes[id].ndim, g->nodes[id].shape);
            if (advnn__obuilt(&im, id)) goto out;
        }
        if (advnn__obuilt(&im, advnn_name(g, id, name))) goto out;
    }
    if (advnn_graph_finalize(g, 0) != ADVNN_OK) { char msg[sizeof advnn__errbuf]; snprintf(msg, sizeof msg, "%s", advnn_last_error()); advnn__oerr(&im, "%s", msg); goto out; }
    for (i = 0; i < im.nw; i++)
        if (advnn_weight_set(g, im.w[i].node, im.w[i].block, im.w[i].data, im.w[i].n) != ADVNN_OK) {
            char msg[sizeof advnn__errbuf];
            snprintf(msg, sizeof msg, "%s", advnn_last_error());
            advnn__oerr(&im, "weights: %s", msg);
            goto out;
        }
    ok = 1;
out:
    for (i = 0; i < im.nw; i++) ADVNN_FREE(im.w[i].data);
    ADVNN_FREE(im.w); ADVNN_FREE(im.v); ADVNN_FREE(im.consts);
    if (!ok) { advnn_graph_free(g); return NULL; }
    return g;
}

ADVNN_DEF advnn_graph *advnn_onnx_load_mem(const void *buf, size_t len) {
    advnn__omodel m;
    advnn_graph *g;
    if (!advnn__omodel_parse(buf, len, &m)) return NULL;
    g = advnn__onnx_build(&m);
    advnn__omodel_free(&m);
    return g;
}

#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_graph *advnn_onnx_load(const char *path) { return advnn__load_graph_file(path, advnn_onnx_load_mem); }
#endif

/* ---------------------------------------------------------------- ONNX export
 * advnn_onnx_save: a protobuf writer (varint, 32-bit and length-delimited fields are all ONNX needs)
 * and one export function per node kind, in advnn__ox_kinds[] indexed by kind.
 * Layouts: every value exists channels-last (as advnn and the caller see it) and/or channels-first
 * (as ONNX's Conv/pooling want it); each is made from the other by a Transpose only when a consumer
 * asks for it, and element-wise layers work in whichever the input has, so a conv/PReLU/pool stack
 * has one Transpose at each end.
 * Opset 13 by default: the first with Softmax along one axis and Resize's current nearest rules, and
 * the one tf2onnx emits by default and ROOT SOFIE reads; 14..17 (accepted) change nothing emitted here.
 * Masked LSTM: ONNX's sequence_lens only skips padding at the end, advnn (as Keras) skips masked steps
 * anywhere. The export moves each sample's active steps to the front with a 0/1 permutation matrix
 * (from a cumulative count of the mask, a MatMul with a triangular matrix), runs the ONNX LSTM with
 * sequence_lens = that count, and for return_sequences maps each step back to the output of the last
 * active step at or before it (zero before the first). Products with 0/1 and sums of one term are
 * exact, so this is the same computation, not an approximation (a masked step holding Inf/NaN would
 * spoil it: 0 * Inf). It keeps the LSTM an LSTM (fast in runtimes, readable by converters) where an
 * unrolled form would be T copies of the cell. */
typedef struct { unsigned char *p; size_t n, cap; int oom; } advnn__pb;

static void advnn__pb_put(advnn__pb *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        void *q;
        while (nc < b->n + n) nc *= 2;
        if (!(q = ADVNN_REALLOC(b->p, nc))) { b->oom = 1; return; }
        b->p = (unsigned char *)q; b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void advnn__pb_varint(advnn__pb *b, uint64_t v) {
    unsigned char t[10];
    int k = 0;
    do { t[k] = (unsigned char)(v & 0x7f); v >>= 7; if (v) t[k] |= 0x80; k++; } while (v);
    advnn__pb_put(b, t, (size_t)k);
}
static void advnn__pb_key(advnn__pb *b, int field, int wire) { advnn__pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void advnn__pb_int(advnn__pb *b, int field, int64_t v) { advnn__pb_key(b, field, 0); advnn__pb_varint(b, (uint64_t)v); }
static void advnn__pb_f32(advnn__pb *b, int field, float f) {
    unsigned char t[4];
    uint32_t u;
    memcpy(&u, &f, 4);
    advnn__put_u32(t, u);
    advnn__pb_key(b, field, 5); advnn__pb_put(b, t, 4);
}
static void advnn__pb_bytes(advnn__pb *b, int field, const void *d, size_t n) {
    advnn__pb_key(b, field, 2); advnn__pb_varint(b, (uint64_t)n); advnn__pb_put(b, d, n);
}
static void advnn__pb_str(advnn__pb *b, int field, const char *s) { advnn__pb_bytes(b, field, s, strlen(s)); }
/* Appends sub as a length-delimited field and empties sub for reuse. */
static void advnn__pb_sub(advnn__pb *b, int field, advnn__pb *sub) {
    if (sub->oom) b->oom = 1;
    advnn__pb_bytes(b, field, sub->p, sub->n);
    sub->n = 0;
}

#define ADVNN__OX_NAME 64
typedef struct {
    const advnn_graph *g;
    int portable;
    advnn__pb nodes, inits, msg, attrs, attr;   /* graph parts; scratch for a node, its attributes, one attribute */
    char (*cl)[ADVNN__OX_NAME], (*cf)[ADVNN__OX_NAME];   /* each node's value channels-last / -first, "" = not made */
    int n_names;
    advnn_status st;
} advnn__ox;

static const char *advnn__ox_fresh(advnn__ox *x, char *out) {
    snprintf(out, ADVNN__OX_NAME, "advnn:%d", x->n_names++);
    return out;
}

/* Attributes of the next node (AttributeProto: name 1, f 2, i 3, s 4, floats 7, ints 8, type 20). */
static void advnn__ox_ai(advnn__ox *x, const char *name, int64_t v) {
    advnn__pb_str(&x->attr, 1, name); advnn__pb_int(&x->attr, 3, v); advnn__pb_int(&x->attr, 20, 2);
    advnn__pb_sub(&x->attrs, 5, &x->attr);
}
static void advnn__ox_af(advnn__ox *x, const char *name, float v) {
    advnn__pb_str(&x->attr, 1, name); advnn__pb_f32(&x->attr, 2, v); advnn__pb_int(&x->attr, 20, 1);
    advnn__pb_sub(&x->attrs, 5, &x->attr);
}
static void advnn__ox_as(advnn__ox *x, const char *name, const char *v) {
    advnn__pb_str(&x->attr, 1, name); advnn__pb_str(&x->attr, 4, v); advnn__pb_int(&x->attr, 20, 3);
    advnn__pb_sub(&x->attrs, 5, &x->attr);
}
static void advnn__ox_aints(advnn__ox *x, const char *name, int n, const int64_t *v) {
    int k;
    advnn__pb_str(&x->attr, 1, name);
    for (k = 0; k < n; k++) advnn__pb_int(&x->attr, 8, v[k]);
    advnn__pb_int(&x->attr, 20, 7);
    advnn__pb_sub(&x->attrs, 5, &x->attr);
}

/* A node (NodeProto: input 1, output 2, name 3, op_type 4, attribute 5) with the pending attributes.
 * An empty input or output name is an omitted optional one. */
static void advnn__ox_node(advnn__ox *x, const char *op, int nin, const char *const *in, int nout, const char *const *out) {
    int k;
    for (k = 0; k < nin; k++) advnn__pb_str(&x->msg, 1, in[k]);
    for (k = 0; k < nout; k++) advnn__pb_str(&x->msg, 2, out[k]);
    advnn__pb_str(&x->msg, 3, out[nout - 1]);
    advnn__pb_str(&x->msg, 4, op);
    if (x->attrs.oom) x->msg.oom = 1;
    advnn__pb_put(&x->msg, x->attrs.p, x->attrs.n);
    x->attrs.n = 0;
    advnn__pb_sub(&x->nodes, 1, &x->msg);
}
/* One-output node on up to three inputs (NULL ends the list); writes a fresh output name to out. */
static const char *advnn__ox_op(advnn__ox *x, const char *op, const char *a, const char *b, const char *c, char *out) {
    const char *in[3];
    const char *o[1];
    int n = 0;
    if (a) { in[n++] = a; if (b) { in[n++] = b; if (c) in[n++] = c; } }
    o[0] = advnn__ox_fresh(x, out);
    advnn__ox_node(x, op, n, in, 1, o);
    return out;
}

/* Initializers (TensorProto: dims 1, data_type 2, name 8, raw_data 9 little endian). */
static size_t advnn__pb_varint_len(uint64_t v) { size_t n = 1; while (v >>= 7) n++; return n; }
static const char *advnn__ox_tensor(advnn__ox *x, int nd, const int64_t *dims, const float *f, const int64_t *i64, char *out) {
    int64_t cnt = 1, k;
    size_t raw, at;
    unsigned char t[8];
    for (k = 0; k < nd; k++) { advnn__pb_int(&x->msg, 1, dims[k]); cnt *= dims[k]; }
    advnn__pb_int(&x->msg, 2, f ? 1 : 7);
    advnn__pb_str(&x->msg, 8, advnn__ox_fresh(x, out));
    /* the header goes through msg, the data straight into the initializers (W3: 3.5 MB copied once) */
    raw = (size_t)cnt * (f ? 4 : 8);
    advnn__pb_key(&x->inits, 5, 2);
    advnn__pb_varint(&x->inits, (uint64_t)(x->msg.n + 1 + advnn__pb_varint_len(raw) + raw));
    if (x->msg.oom) x->inits.oom = 1;
    advnn__pb_put(&x->inits, x->msg.p, x->msg.n);
    x->msg.n = 0;
    advnn__pb_key(&x->inits, 9, 2);
    advnn__pb_varint(&x->inits, (uint64_t)raw);
    at = x->inits.n;
    if (f) {   /* copy, then make each float little endian in place */
        advnn__pb_put(&x->inits, f, raw);
        for (k = 0; !x->inits.oom && k < cnt; k++) {
            uint32_t u;
            memcpy(&u, &f[k], 4);
            advnn__put_u32(x->inits.p + at + (size_t)k * 4, u);
        }
    }
    for (k = 0; !f && k < cnt; k++) { advnn__put_u64(t, (uint64_t)i64[k]); advnn__pb_put(&x->inits, t, 8); }
    return out;
}
static const char *advnn__ox_floats(advnn__ox *x, int nd, const int64_t *dims, const float *f, char *out) {
    return advnn__ox_tensor(x, nd, dims, f, NULL, out);
}
static const char *advnn__ox_ints(advnn__ox *x, int n, const int64_t *v, char *out) {
    int64_t d = n;
    return advnn__ox_tensor(x, 1, &d, NULL, v, out);
}
static const char *advnn__ox_scalar(advnn__ox *x, float v, char *out) { return advnn__ox_tensor(x, 0, NULL, &v, NULL, out); }
/* Reshape to (-1, d[0], ..., d[n-1]): a per-sample shape under the symbolic batch. */
static const char *advnn__ox_reshape(advnn__ox *x, const char *in, int n, const int *d, char *out) {
    int64_t s[4];
    char sh[ADVNN__OX_NAME];
    int k;
    s[0] = -1;
    for (k = 0; k < n; k++) s[k + 1] = d[k];
    return advnn__ox_op(x, "Reshape", in, advnn__ox_ints(x, n + 1, s, sh), NULL, out);
}
static const char *advnn__ox_transpose(advnn__ox *x, const char *in, int n, const int64_t *perm, char *out) {
    advnn__ox_aints(x, "perm", n, perm);
    return advnn__ox_op(x, "Transpose", in, NULL, NULL, out);
}
static const char *advnn__ox_cast(advnn__ox *x, const char *in, int to, char *out) {
    advnn__ox_ai(x, "to", to);
    return advnn__ox_op(x, "Cast", in, NULL, NULL, out);
}

/* Node id's value channels-last / channels-first, made by a Transpose from the other when missing.
 * Vectors (one axis per sample) are both at once. */
static const char *advnn__ox_cl(advnn__ox *x, int id) {
    static const int64_t p2[3] = {0, 2, 1}, p3[4] = {0, 2, 3, 1};
    const advnn__node *n = &x->g->nodes[id];
    if (!x->cl[id][0]) advnn__ox_transpose(x, x->cf[id], n->ndim + 1, n->ndim == 2 ? p2 : p3, x->cl[id]);
    return x->cl[id];
}
static const char *advnn__ox_cf(advnn__ox *x, int id) {
    static const int64_t p2[3] = {0, 2, 1}, p3[4] = {0, 3, 1, 2};
    const advnn__node *n = &x->g->nodes[id];
    if (!x->cf[id][0]) advnn__ox_transpose(x, x->cl[id], n->ndim + 1, n->ndim == 2 ? p2 : p3, x->cf[id]);
    return x->cf[id];
}
/* The layout an element-wise layer on node id works in: channels-first when only that exists. */
static int advnn__ox_is_cf(const advnn__ox *x, int id) { return !x->cl[id][0]; }
static const char *advnn__ox_any(advnn__ox *x, int id) { return advnn__ox_is_cf(x, id) ? x->cf[id] : x->cl[id]; }
/* The output slot of node id in a layout (vectors: both names the same). */
static char *advnn__ox_set(advnn__ox *x, int id, int cf, const char *v) {
    char *dst = cf ? x->cf[id] : x->cl[id];
    if (dst != v) snprintf(dst, ADVNN__OX_NAME, "%s", v);
    if (x->g->nodes[id].ndim == 1) snprintf(cf ? x->cl[id] : x->cf[id], ADVNN__OX_NAME, "%s", v);
    return dst;
}
/* A per-channel vector (C values) shaped to broadcast against node id's value in the given layout. */
static const char *advnn__ox_chan(advnn__ox *x, int id, int cf, const float *v, char *out) {
    const advnn__node *n = &x->g->nodes[id];
    int64_t d[3] = {1, 1, 1};
    d[0] = n->cols;
    return advnn__ox_floats(x, cf ? n->ndim : 1, d, v, out);
}

/* Activation act (advnn_act) of value in, written to out (out = in for linear). */
static const char *advnn__ox_act(advnn__ox *x, int act, float param, const char *in, char *out) {
    switch (act) {
    case ADVNN_ACT_LINEAR: snprintf(out, ADVNN__OX_NAME, "%s", in); return out;
    case ADVNN_ACT_RELU: return advnn__ox_op(x, "Relu", in, NULL, NULL, out);
    case ADVNN_ACT_LEAKY_RELU: advnn__ox_af(x, "alpha", param); return advnn__ox_op(x, "LeakyRelu", in, NULL, NULL, out);
    case ADVNN_ACT_ELU: advnn__ox_af(x, "alpha", param); return advnn__ox_op(x, "Elu", in, NULL, NULL, out);
    case ADVNN_ACT_SIGMOID: return advnn__ox_op(x, "Sigmoid", in, NULL, NULL, out);
    case ADVNN_ACT_TANH: return advnn__ox_op(x, "Tanh", in, NULL, NULL, out);
    case ADVNN_ACT_SOFTPLUS: return advnn__ox_op(x, "Softplus", in, NULL, NULL, out);
    default:
        x->st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: activation %d has no ONNX form", act);
        snprintf(out, ADVNN__OX_NAME, "%s", in);
        return out;
    }
}

/* ---- one function per node kind: reads its inputs' values, makes its own */
typedef void (*advnn__ox_fn)(advnn__ox *x, int id);

static void advnn__ox_input(advnn__ox *x, int id) { advnn__ox_set(x, id, 0, x->g->nodes[id].name); }

static void advnn__ox_pass(advnn__ox *x, int id) {   /* dropout, gradient reversal: identity at inference */
    int in = x->g->nodes[id].in[0];
    memcpy(x->cl[id], x->cl[in], ADVNN__OX_NAME);   /* in < id: distinct rows */
    memcpy(x->cf[id], x->cf[in], ADVNN__OX_NAME);
}

static void advnn__ox_dense(advnn__ox *x, int id) {
    const advnn_graph *g = x->g;
    const advnn__node *n = &g->nodes[id], *in = &g->nodes[n->in[0]];
    const float *W = g->params + g->par[n->param0].off, *b = g->params + g->par[n->param0 + 1].off;
    int64_t K = in->cols, U = n->cols, d[2];
    char w[ADVNN__OX_NAME], bb[ADVNN__OX_NAME], t[ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    float *Wsn = NULL;
    if (n->ip[2]) {   /* spectral norm: W / sigma with sigma = u^T W v, as advnn__sn_weight computes it */
        const float *u = g->params + g->par[n->param0 + 2].off, *v = g->params + g->par[n->param0 + 3].off;
        double sig = 0, inv;
        int64_t i, j;
        if (!(Wsn = (float *)advnn__zalloc((size_t)(K * U) * sizeof(float)))) {   /* (zeroed: gcc 12 -Wmaybe-uninitialized) */
            x->st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_onnx_save: out of memory");
            return;
        }
        for (i = 0; i < K; i++) {
            double r = 0;
            for (j = 0; j < U; j++) r += (double)W[i * U + j] * v[j];
            sig += u[i] * r;
        }
        if (!(sig > 1e-12)) sig = 1e-12;
        inv = 1.0 / sig;
        for (i = 0; i < K * U; i++) Wsn[i] = (float)(W[i] * inv);
        W = Wsn;
    }
    d[0] = K; d[1] = U;
    advnn__ox_floats(x, 2, d, W, w);
    advnn__free(Wsn);
    advnn__ox_floats(x, 1, &U, b, bb);
    if (in->ndim == 1) advnn__ox_op(x, "Gemm", advnn__ox_cl(x, n->in[0]), w, bb, t);
    else advnn__ox_op(x, "Add", advnn__ox_op(x, "MatMul", advnn__ox_cl(x, n->in[0]), w, NULL, y), bb, NULL, t);
    advnn__ox_set(x, id, 0, advnn__ox_act(x, n->ip[1], n->fp[0], t, y));
}

static void advnn__ox_act_node(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    int cf = advnn__ox_is_cf(x, n->in[0]);
    char y[ADVNN__OX_NAME];
    advnn__ox_set(x, id, cf, advnn__ox_act(x, n->ip[0], n->fp[0], advnn__ox_any(x, n->in[0]), y));
}

static void advnn__ox_prelu(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    const float *a = x->g->params + x->g->par[n->param0].off;
    int cf = advnn__ox_is_cf(x, n->in[0]);
    const char *in = advnn__ox_any(x, n->in[0]);
    char s[ADVNN__OX_NAME], y[ADVNN__OX_NAME], t1[ADVNN__OX_NAME], t2[ADVNN__OX_NAME], t3[ADVNN__OX_NAME];
    advnn__ox_chan(x, id, cf, a, s);
    if (!x->portable) advnn__ox_op(x, "PRelu", in, s, NULL, y);
    else {   /* Relu(x) - a Relu(-x): exact (0 - a*(-x) = a*x, x - a*0 = x) */
        advnn__ox_op(x, "Relu", advnn__ox_op(x, "Neg", in, NULL, NULL, t1), NULL, NULL, t2);
        advnn__ox_op(x, "Sub", advnn__ox_op(x, "Relu", in, NULL, NULL, t1), advnn__ox_op(x, "Mul", s, t2, NULL, t3), NULL, y);
    }
    advnn__ox_set(x, id, cf, y);
}

static void advnn__ox_batchnorm(advnn__ox *x, int id) {   /* on the running statistics, channels-first */
    const advnn_graph *g = x->g;
    const advnn__node *n = &g->nodes[id];
    const char *in[5];
    const char *out[1];
    char p[4][ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    int64_t C = n->cols;
    int k;
    in[0] = advnn__ox_cf(x, n->in[0]);
    for (k = 0; k < 4; k++) in[k + 1] = advnn__ox_floats(x, 1, &C, g->params + g->par[n->param0 + k].off, p[k]);
    advnn__ox_af(x, "epsilon", n->fp[1]);
    out[0] = advnn__ox_fresh(x, y);
    advnn__ox_node(x, "BatchNormalization", 5, in, 1, out);
    advnn__ox_set(x, id, 1, y);
}

static void advnn__ox_standardize(advnn__ox *x, int id) {   /* (x - offset) * scale: the same two operations */
    const advnn__node *n = &x->g->nodes[id];
    const float *off = x->g->params + x->g->par[n->param0].off, *sc = x->g->params + x->g->par[n->param0 + 1].off;
    int cf = advnn__ox_is_cf(x, n->in[0]);
    char o[ADVNN__OX_NAME], c[ADVNN__OX_NAME], t[ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    advnn__ox_op(x, "Sub", advnn__ox_any(x, n->in[0]), advnn__ox_chan(x, id, cf, off, o), NULL, t);
    advnn__ox_set(x, id, cf, advnn__ox_op(x, "Mul", t, advnn__ox_chan(x, id, cf, sc, c), NULL, y));
}

static void advnn__ox_concat(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    const char *in[ADVNN__MAX_IN];
    const char *out[1];
    char y[ADVNN__OX_NAME];
    int k;
    for (k = 0; k < n->n_in; k++) in[k] = advnn__ox_cl(x, n->in[k]);
    advnn__ox_ai(x, "axis", -1);
    out[0] = advnn__ox_fresh(x, y);
    advnn__ox_node(x, "Concat", n->n_in, in, 1, out);
    advnn__ox_set(x, id, 0, y);
}

static void advnn__ox_conv(advnn__ox *x, int id) {
    const advnn_graph *g = x->g;
    const advnn__node *n = &g->nodes[id], *in = &g->nodes[n->in[0]];
    const float *W = g->params + g->par[n->param0].off, *b = g->params + g->par[n->param0 + 1].off;
    int H, Wd, C, F = n->ip[0], KH = n->ip[2], KW = n->ip[3], SH = n->ip[4], SW = n->ip[5];
    int dims = advnn__spatial(in, &H, &Wd, &C), Ho, Wo, pt = n->ip[7] >> 16, pl = n->ip[7] & 0xffff, f, c, i, j;
    int64_t d[4], ks[2], st[2], pads[4], Fl = F;
    char w[ADVNN__OX_NAME], bb[ADVNN__OX_NAME], t[ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    const char *xin;
    float *Wo_ = (float *)ADVNN_MALLOC((size_t)F * C * KH * KW * sizeof(float));
    if (!Wo_) { x->st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_onnx_save: out of memory"); return; }
    /* advnn: (KH, KW, C, F) flattened; ONNX: (F, C, KH, KW) */
    for (f = 0; f < F; f++) for (c = 0; c < C; c++) for (i = 0; i < KH; i++) for (j = 0; j < KW; j++)
        Wo_[(((size_t)f * C + c) * KH + i) * KW + j] = W[(((size_t)i * KW + j) * C + c) * F + f];
    Ho = dims == 2 ? n->shape[0] : 1; Wo = dims == 2 ? n->shape[1] : n->shape[0];
    /* 'same': the total pad (Keras) less the leading one goes after */
    pads[0] = pt; pads[2] = n->ip[6] == ADVNN_PAD_SAME && (Ho - 1) * SH + KH - H > 0 ? (Ho - 1) * SH + KH - H - pt : 0;
    pads[1] = pl; pads[3] = n->ip[6] == ADVNN_PAD_SAME && (Wo - 1) * SW + KW - Wd > 0 ? (Wo - 1) * SW + KW - Wd - pl : 0;
    d[0] = F; d[1] = C;
    if (dims == 2) { d[2] = KH; d[3] = KW; ks[0] = KH; ks[1] = KW; st[0] = SH; st[1] = SW; }
    else { d[2] = KW; ks[0] = KW; st[0] = SW; pads[0] = pads[1]; pads[1] = pads[3]; }
    advnn__ox_floats(x, dims + 2, d, Wo_, w);
    ADVNN_FREE(Wo_);
    advnn__ox_floats(x, 1, &Fl, b, bb);
    xin = advnn__ox_cf(x, n->in[0]);   /* before the attributes: a Transpose would take them */
    advnn__ox_aints(x, "kernel_shape", dims, ks);
    advnn__ox_aints(x, "strides", dims, st);
    advnn__ox_aints(x, "pads", 2 * dims, pads);
    advnn__ox_op(x, "Conv", xin, w, bb, t);
    advnn__ox_set(x, id, 1, advnn__ox_act(x, n->ip[1], n->fp[0], t, y));
}

static void advnn__ox_pool(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    int dims = n->ndim - 1;
    int64_t ks[2], st[2];
    char y[ADVNN__OX_NAME];
    if (dims == 2) { ks[0] = n->ip[1]; ks[1] = n->ip[2]; st[0] = n->ip[3]; st[1] = n->ip[4]; }
    else { ks[0] = n->ip[2]; st[0] = n->ip[4]; }
    const char *xin = advnn__ox_cf(x, n->in[0]);   /* before the attributes */
    advnn__ox_aints(x, "kernel_shape", dims, ks);
    advnn__ox_aints(x, "strides", dims, st);
    advnn__ox_op(x, n->ip[0] ? "AveragePool" : "MaxPool", xin, NULL, NULL, y);
    advnn__ox_set(x, id, 1, y);
}

static void advnn__ox_upsample(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id], *in = &x->g->nodes[n->in[0]];
    int cf = advnn__ox_is_cf(x, n->in[0]), H = in->shape[0], W = in->shape[1], C = in->shape[2];
    int fh = n->ip[0], fw = n->ip[1];
    const char *v = advnn__ox_any(x, n->in[0]);
    char s[ADVNN__OX_NAME], t[ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    if (!x->portable) {   /* nearest, asymmetric, floor: output pixel (h, w) reads input (h / fh, w / fw) */
        float sc[4] = {1, 1, 1, 1};
        int64_t four = 4;
        const char *in3[3];
        const char *out[1];
        sc[cf ? 2 : 1] = (float)fh; sc[cf ? 3 : 2] = (float)fw;
        in3[0] = v; in3[1] = ""; in3[2] = advnn__ox_floats(x, 1, &four, sc, s);
        advnn__ox_as(x, "mode", "nearest");
        advnn__ox_as(x, "coordinate_transformation_mode", "asymmetric");
        advnn__ox_as(x, "nearest_mode", "floor");
        out[0] = advnn__ox_fresh(x, y);
        advnn__ox_node(x, "Resize", 3, in3, 1, out);
    } else {   /* (H, 1, W, 1) expanded to (H, fh, W, fw), then merged: a copy, exact */
        int d5[5], d3[3];
        int64_t e[6] = {1, 1, 1, 1, 1, 1};
        char es[ADVNN__OX_NAME], t2[ADVNN__OX_NAME];
        if (cf) {
            d5[0] = C; d5[1] = H; d5[2] = 1; d5[3] = W; d5[4] = 1; e[3] = fh; e[5] = fw;
            d3[0] = C; d3[1] = H * fh; d3[2] = W * fw;
        } else {
            d5[0] = H; d5[1] = 1; d5[2] = W; d5[3] = 1; d5[4] = C; e[2] = fh; e[4] = fw;
            d3[0] = H * fh; d3[1] = W * fw; d3[2] = C;
        }
        {   /* Reshape to 6 axes: (-1, ...5) */
            int64_t s6[6];
            int k;
            s6[0] = -1;
            for (k = 0; k < 5; k++) s6[k + 1] = d5[k];
            advnn__ox_op(x, "Reshape", v, advnn__ox_ints(x, 6, s6, s), NULL, t);
        }
        advnn__ox_op(x, "Expand", t, advnn__ox_ints(x, 6, e, es), NULL, t2);
        advnn__ox_reshape(x, t2, 3, d3, y);
    }
    advnn__ox_set(x, id, cf, y);
}

static void advnn__ox_reshape_node(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    char y[ADVNN__OX_NAME];
    advnn__ox_set(x, id, 0, advnn__ox_reshape(x, advnn__ox_cl(x, n->in[0]), n->ndim, n->shape, y));
}

static void advnn__ox_mask(advnn__ox *x, int id) {   /* 1 where any feature of the step is non-zero */
    const advnn__node *n = &x->g->nodes[id];
    int64_t ax = 2;
    char a[ADVNN__OX_NAME], m[ADVNN__OX_NAME], z[ADVNN__OX_NAME], b[ADVNN__OX_NAME], y[ADVNN__OX_NAME];
    advnn__ox_op(x, "Abs", advnn__ox_cl(x, n->in[0]), NULL, NULL, a);
    advnn__ox_aints(x, "axes", 1, &ax);
    advnn__ox_ai(x, "keepdims", 0);
    advnn__ox_op(x, "ReduceMax", a, NULL, NULL, m);
    advnn__ox_op(x, "Greater", m, advnn__ox_scalar(x, 0.0f, z), NULL, b);
    advnn__ox_set(x, id, 0, advnn__ox_cast(x, b, 1, y));
}

static void advnn__ox_lstm(advnn__ox *x, int id) {
    static const int gate[4] = {0, 3, 1, 2};   /* ONNX gate order i, o, f, c; advnn's (Keras) i, f, c, o */
    const advnn_graph *g = x->g;
    const advnn__node *n = &g->nodes[id], *in = &g->nodes[n->in[0]];
    const float *W = g->params + g->par[n->param0].off, *U = g->params + g->par[n->param0 + 1].off;
    const float *b = g->params + g->par[n->param0 + 2].off;
    int T = in->shape[0], F = in->shape[1], H = n->ip[0], masked = n->n_in == 2, q, j, k;
    int64_t d[3], p3[3] = {1, 0, 2}, p4[4] = {2, 0, 1, 3};
    const char *li[5];
    const char *lo[2];
    char wn[ADVNN__OX_NAME], rn[ADVNN__OX_NAME], bn[ADVNN__OX_NAME], xs[ADVNN__OX_NAME], lens[ADVNN__OX_NAME];
    char yn[ADVNN__OX_NAME], hn[ADVNN__OX_NAME], t1[ADVNN__OX_NAME], t2[ADVNN__OX_NAME], out[ADVNN__OX_NAME];
    char pos[ADVNN__OX_NAME], cnt[ADVNN__OX_NAME], c1[ADVNN__OX_NAME], t3[ADVNN__OX_NAME], pm[ADVNN__OX_NAME];
    const char *xin = advnn__ox_cl(x, n->in[0]);
    size_t big = (size_t)4 * H * (F > H ? F : H) + (size_t)T * T;
    float *buf = (float *)ADVNN_MALLOC((big > (size_t)8 * H ? big : (size_t)8 * H) * sizeof(float));
    if (!buf) { x->st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_onnx_save: out of memory"); return; }
    /* W (1, 4H, F), R (1, 4H, H), B (1, 8H) = [Wb; Rb] with advnn's one bias per gate in Wb */
    for (q = 0; q < 4; q++) for (j = 0; j < H; j++) for (k = 0; k < F; k++)
        buf[((size_t)q * H + j) * F + k] = W[(size_t)k * 4 * H + gate[q] * H + j];
    d[0] = 1; d[1] = 4 * H; d[2] = F;
    advnn__ox_floats(x, 3, d, buf, wn);
    for (q = 0; q < 4; q++) for (j = 0; j < H; j++) for (k = 0; k < H; k++)
        buf[((size_t)q * H + j) * H + k] = U[(size_t)k * 4 * H + gate[q] * H + j];
    d[2] = H;
    advnn__ox_floats(x, 3, d, buf, rn);
    for (q = 0; q < 4; q++) for (j = 0; j < H; j++) { buf[q * H + j] = b[gate[q] * H + j]; buf[4 * H + q * H + j] = 0.0f; }
    d[1] = 8 * H;
    advnn__ox_floats(x, 2, d, buf, bn);
    lens[0] = 0;
    if (masked) {   /* compaction of the active steps (see the section comment) */
        char mb[ADVNN__OX_NAME], e[ADVNN__OX_NAME], mr[ADVNN__OX_NAME], kc[ADVNN__OX_NAME];
        int64_t dt[2], last = T - 1;
        int one_t[2];
        advnn__ox_op(x, "Equal", advnn__ox_cl(x, n->in[1]), advnn__ox_scalar(x, 0.0f, t1), NULL, t2);
        advnn__ox_cast(x, advnn__ox_op(x, "Not", t2, NULL, NULL, t3), 1, mb);        /* (N, T) 0/1 */
        for (j = 0; j < T; j++) for (k = 0; k < T; k++) buf[(size_t)j * T + k] = j <= k ? 1.0f : 0.0f;
        dt[0] = T; dt[1] = T;
        advnn__ox_op(x, "MatMul", mb, advnn__ox_floats(x, 2, dt, buf, t1), NULL, t2);   /* active steps up to t */
        advnn__ox_op(x, "Sub", t2, advnn__ox_scalar(x, 1.0f, t1), NULL, pos);          /* compacted index of step t */
        advnn__ox_ai(x, "axis", 1);
        advnn__ox_op(x, "Gather", t2, advnn__ox_ints(x, 1, &last, t1), NULL, cnt);      /* (N, 1) */
        one_t[0] = 1; one_t[1] = T;
        for (j = 0; j < T; j++) buf[j] = (float)j;
        dt[0] = T; dt[1] = 1;
        advnn__ox_floats(x, 2, dt, buf, kc);
        advnn__ox_op(x, "Equal", advnn__ox_reshape(x, pos, 2, one_t, t1), kc, NULL, t2);
        advnn__ox_op(x, "Mul", advnn__ox_cast(x, t2, 1, t3), advnn__ox_reshape(x, mb, 2, one_t, mr), NULL, e);
        advnn__ox_op(x, "MatMul", e, xin, NULL, pm);                                     /* (N, T, F) active first */
        xin = pm;
        /* a sample without active steps runs one (zero) step, and its result is multiplied by 0 below */
        advnn__ox_op(x, "Max", cnt, advnn__ox_scalar(x, 1.0f, t1), NULL, t2);
        advnn__ox_cast(x, advnn__ox_reshape(x, t2, 0, NULL, t3), 6, lens);
        advnn__ox_op(x, "Min", cnt, advnn__ox_scalar(x, 1.0f, t1), NULL, c1);
        (void)mr;
    }
    advnn__ox_transpose(x, xin, 3, p3, xs);
    li[0] = xs; li[1] = wn; li[2] = rn; li[3] = bn; li[4] = lens;
    advnn__ox_ai(x, "hidden_size", H);
    if (n->ip[1]) { lo[0] = advnn__ox_fresh(x, yn); lo[1] = ""; }
    else { lo[0] = ""; lo[1] = advnn__ox_fresh(x, hn); }
    advnn__ox_node(x, "LSTM", masked ? 5 : 4, li, 2, lo);
    if (!n->ip[1]) {
        advnn__ox_reshape(x, hn, 1, &H, t1);
        if (masked) advnn__ox_op(x, "Mul", t1, c1, NULL, out);
        else snprintf(out, ADVNN__OX_NAME, "%s", t1);
    } else {
        int th[2];
        th[0] = T; th[1] = H;
        advnn__ox_reshape(x, advnn__ox_transpose(x, yn, 4, p4, t1), 2, th, t2);
        if (masked) {   /* step t takes the output of compacted step pos[t] (none when pos < 0) */
            int t_one[2];
            int64_t dr[2];
            t_one[0] = T; t_one[1] = 1;
            dr[0] = 1; dr[1] = T;
            for (j = 0; j < T; j++) buf[j] = (float)j;
            advnn__ox_op(x, "Equal", advnn__ox_reshape(x, pos, 2, t_one, t1), advnn__ox_floats(x, 2, dr, buf, t3), NULL, yn);
            advnn__ox_op(x, "MatMul", advnn__ox_cast(x, yn, 1, t1), t2, NULL, out);
        } else snprintf(out, ADVNN__OX_NAME, "%s", t2);
    }
    ADVNN_FREE(buf);
    advnn__ox_set(x, id, 0, out);
}

static void advnn__ox_softmax(advnn__ox *x, int id) {
    char y[ADVNN__OX_NAME];
    const char *xin = advnn__ox_cl(x, x->g->nodes[id].in[0]);   /* before the attribute */
    advnn__ox_ai(x, "axis", -1);
    advnn__ox_set(x, id, 0, advnn__ox_op(x, "Softmax", xin, NULL, NULL, y));
}

static void advnn__ox_sample_mse(advnn__ox *x, int id) {
    const advnn__node *n = &x->g->nodes[id];
    int D = x->g->nodes[n->in[0]].size;
    int64_t ax = 1;
    char p[ADVNN__OX_NAME], t[ADVNN__OX_NAME], dd[ADVNN__OX_NAME], sq[ADVNN__OX_NAME], e[ADVNN__OX_NAME];
    char y[ADVNN__OX_NAME], c[ADVNN__OX_NAME];
    advnn__ox_reshape(x, advnn__ox_cl(x, n->in[0]), 1, &D, p);
    advnn__ox_reshape(x, advnn__ox_cl(x, n->in[1]), 1, &D, t);
    advnn__ox_op(x, "Sub", p, t, NULL, dd);
    advnn__ox_op(x, "Mul", dd, dd, NULL, sq);
    advnn__ox_aints(x, "axes", 1, &ax);
    advnn__ox_ai(x, "keepdims", 1);
    advnn__ox_op(x, "ReduceMean", sq, NULL, NULL, e);
    if (n->ip[0]) advnn__ox_op(x, "Log", advnn__ox_op(x, "Max", e, advnn__ox_scalar(x, 1e-30f, c), NULL, sq), NULL, NULL, y);
    else snprintf(y, ADVNN__OX_NAME, "%s", e);
    advnn__ox_set(x, id, 0, y);
}

/* Indexed by node kind; NULL: no inference form (losses). A kind added to the enum without a row
 * here stops the build (the typedef below), rather than an export of it crashing. */
static const struct { const char *what; advnn__ox_fn fn; } advnn__ox_kinds[] = {
    {"?", NULL}, {"input", advnn__ox_input}, {"dense", advnn__ox_dense}, {"activation", advnn__ox_act_node},
    {"PReLU", advnn__ox_prelu}, {"dropout", advnn__ox_pass}, {"BatchNorm", advnn__ox_batchnorm},
    {"concat", advnn__ox_concat}, {"BCE loss", NULL}, {"CCE loss", NULL}, {"MSE loss", NULL},
    {"convolution", advnn__ox_conv}, {"pooling", advnn__ox_pool}, {"upsampling", advnn__ox_upsample},
    {"reshape", advnn__ox_reshape_node}, {"LSTM", advnn__ox_lstm}, {"mask", advnn__ox_mask},
    {"gradient reversal", advnn__ox_pass}, {"softmax", advnn__ox_softmax}, {"mixture-density loss", NULL},
    {"sample MSE", advnn__ox_sample_mse}, {"DisCo loss", NULL}, {"MoDe loss", NULL}, {"standardize", advnn__ox_standardize}
};
typedef char advnn__ox_kinds_complete[sizeof advnn__ox_kinds / sizeof advnn__ox_kinds[0] == ADVNN__KIND_END ? 1 : -1];

/* ValueInfoProto of a graph input or output: float (N, per-sample shape), N symbolic. */
static void advnn__ox_value_info(advnn__ox *x, advnn__pb *graph, int field, const char *name, const advnn__node *n) {
    advnn__pb shp, tt, ty;
    int k;
    memset(&shp, 0, sizeof shp); memset(&tt, 0, sizeof tt); memset(&ty, 0, sizeof ty);
    advnn__pb_str(&x->attr, 2, "N");
    advnn__pb_sub(&shp, 1, &x->attr);
    for (k = 0; k < n->ndim; k++) { advnn__pb_int(&x->attr, 1, n->shape[k]); advnn__pb_sub(&shp, 1, &x->attr); }
    advnn__pb_int(&tt, 1, 1);
    advnn__pb_sub(&tt, 2, &shp);
    advnn__pb_sub(&ty, 1, &tt);
    advnn__pb_str(&x->msg, 1, name);
    advnn__pb_sub(&x->msg, 2, &ty);
    advnn__pb_sub(graph, field, &x->msg);
    if (shp.oom || tt.oom || ty.oom) graph->oom = 1;
    ADVNN_FREE(shp.p); ADVNN_FREE(tt.p); ADVNN_FREE(ty.p);
}

ADVNN_DEF advnn_status advnn_onnx_save_mem(const advnn_graph *g, int n_outputs, const char *const *outputs,
                                           const advnn_onnx_opts *opts, void **buf, size_t *len) {
    advnn__ox x;
    advnn__pb graph, model;
    unsigned char *need = NULL;
    int *out_id = NULL, i, k, opset = opts && opts->opset ? opts->opset : 13;
    uint64_t sum = 0;
    size_t glen;
    char ver[32], hex[24];
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!g || !buf || !len || n_outputs < 1 || !outputs)
        return advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: NULL argument or %d outputs", n_outputs);
    if (!g->finalized) return advnn__fail(ADVNN_ERR_STATE, "advnn_onnx_save: graph not finalized");
    if (opset < 13 || opset > 17) return advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: opset %d (13..17 supported)", opset);
    memset(&x, 0, sizeof x); memset(&graph, 0, sizeof graph); memset(&model, 0, sizeof model);
    x.g = g; x.portable = opts ? opts->portable != 0 : 0;
    need = (unsigned char *)ADVNN_MALLOC((size_t)g->n_nodes + 1);
    out_id = (int *)ADVNN_MALLOC((size_t)n_outputs * sizeof(int));
    x.cl = (char (*)[ADVNN__OX_NAME])ADVNN_MALLOC((size_t)g->n_nodes * ADVNN__OX_NAME);
    x.cf = (char (*)[ADVNN__OX_NAME])ADVNN_MALLOC((size_t)g->n_nodes * ADVNN__OX_NAME);
    if (!need || !out_id || !x.cl || !x.cf) { x.st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_onnx_save: out of memory"); goto done; }
    memset(need, 0, (size_t)g->n_nodes + 1);
    for (i = 0; i < g->n_nodes; i++) x.cl[i][0] = x.cf[i][0] = 0;
    for (k = 0; k < n_outputs; k++) {
        if (!outputs[k] || (out_id[k] = advnn_find(g, outputs[k])) < 0) {
            x.st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: output %d ('%s') is not a node name of the graph", k,
                               outputs[k] ? outputs[k] : "(null)");
            goto done;
        }
        for (i = 0; i < k; i++) if (out_id[i] == out_id[k]) {
            x.st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: output '%s' is named twice", outputs[k]);
            goto done;
        }
        if (g->nodes[out_id[k]].kind == ADVNN__INPUT) {
            x.st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: output '%s' is a graph input (ONNX values have one producer)",
                               outputs[k]);
            goto done;
        }
        need[out_id[k]] = 1;
    }
    for (i = 0; i < g->n_nodes; i++)   /* names of the graph's values are advnn's; ours start with "advnn:" */
        if (strncmp(g->nodes[i].name, "advnn:", 6) == 0) {
            x.st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: node %d's name '%s' starts with 'advnn:' (kept for the export's own values)",
                               i, g->nodes[i].name);
            goto done;
        }
    for (i = g->n_nodes - 1; i >= 0; i--) {   /* the nodes the outputs depend on (ids are topological) */
        const advnn__node *n = &g->nodes[i];
        if (!need[i]) continue;
        if (n->kind <= 0 || n->kind >= ADVNN__KIND_END || !advnn__ox_kinds[n->kind].fn) {
            const char *what = n->kind > 0 && n->kind < ADVNN__KIND_END ? advnn__ox_kinds[n->kind].what : "unknown";
            x.st = advnn__fail(ADVNN_ERR_ARG, "advnn_onnx_save: node %d ('%s', a %s node) is needed by the outputs and has no ONNX form",
                               i, n->name, what);
            goto done;
        }
        for (k = 0; k < n->n_in; k++) need[n->in[k]] = 1;
    }
    for (i = 0; i < g->n_nodes && x.st == ADVNN_OK; i++) if (need[i]) advnn__ox_kinds[g->nodes[i].kind].fn(&x, i);
    if (x.st != ADVNN_OK) goto done;
    for (k = 0; k < n_outputs; k++) {   /* outputs under their own names, channels-last */
        const char *in[1];
        const char *o[1];
        in[0] = advnn__ox_cl(&x, out_id[k]); o[0] = outputs[k];
        advnn__ox_node(&x, "Identity", 1, in, 1, o);
    }
    {   /* the model file's checksum identifies the weights this file was made from */
        void *mb = NULL;
        size_t ml = 0;
        if ((x.st = advnn_model_save_mem(g, &mb, &ml)) != ADVNN_OK) goto done;
        sum = advnn__get_u64((const unsigned char *)mb + ml - 8);
        ADVNN_FREE(mb);
    }
    /* GraphProto: node 1, name 2, initializer 5, input 11, output 12; `graph` holds all but the nodes
     * and initializers, which go straight into the model behind the graph's key and length */
    advnn__pb_str(&graph, 2, "advnn");
    for (k = 0; k < g->n_inputs; k++)
        if (need[g->inputs[k]]) advnn__ox_value_info(&x, &graph, 11, g->nodes[g->inputs[k]].name, &g->nodes[g->inputs[k]]);
    for (k = 0; k < n_outputs; k++) advnn__ox_value_info(&x, &graph, 12, outputs[k], &g->nodes[out_id[k]]);
    glen = x.nodes.n + x.inits.n + graph.n;
    /* ModelProto: ir_version 1 (7 for opsets 13-14, 8 from 15), producer 2-3, graph 7, opset 8, metadata 14 */
    snprintf(ver, sizeof ver, "%d.%d.%d", ADVNN_VERSION_MAJOR, ADVNN_VERSION_MINOR, ADVNN_VERSION_PATCH);
    if (!(model.p = (unsigned char *)ADVNN_MALLOC(glen + 256))) model.oom = 1;   /* + the fields around the graph */
    else model.cap = glen + 256;
    advnn__pb_int(&model, 1, opset <= 14 ? 7 : 8);
    advnn__pb_str(&model, 2, "advnn");
    advnn__pb_str(&model, 3, ver);
    advnn__pb_key(&model, 7, 2);
    advnn__pb_varint(&model, (uint64_t)glen);
    advnn__pb_put(&model, x.nodes.p, x.nodes.n);
    advnn__pb_put(&model, x.inits.p, x.inits.n);
    advnn__pb_put(&model, graph.p, graph.n);
    advnn__pb_int(&x.msg, 2, opset);
    advnn__pb_sub(&model, 8, &x.msg);
    advnn__pb_str(&x.msg, 1, "advnn_version"); advnn__pb_str(&x.msg, 2, ver);
    advnn__pb_sub(&model, 14, &x.msg);
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sum);
    advnn__pb_str(&x.msg, 1, "advnn_model_xxh3"); advnn__pb_str(&x.msg, 2, hex);
    advnn__pb_sub(&model, 14, &x.msg);
    if (model.oom || graph.oom || x.nodes.oom || x.inits.oom || x.msg.oom || x.attrs.oom || x.attr.oom) {
        x.st = advnn__fail(ADVNN_ERR_NOMEM, "advnn_onnx_save: out of memory");
        goto done;
    }
    *buf = model.p; *len = model.n;
    model.p = NULL;
done:
    ADVNN_FREE(need); ADVNN_FREE(out_id); ADVNN_FREE(x.cl); ADVNN_FREE(x.cf);
    ADVNN_FREE(x.nodes.p); ADVNN_FREE(x.inits.p); ADVNN_FREE(x.msg.p); ADVNN_FREE(x.attrs.p); ADVNN_FREE(x.attr.p);
    ADVNN_FREE(graph.p); ADVNN_FREE(model.p);
    return x.st;
}

#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_status advnn_onnx_save(const advnn_graph *g, const char *path, int n_outputs, const char *const *outputs,
                                       const advnn_onnx_opts *opts) {
    void *b;
    size_t len;
    advnn_status st = advnn_onnx_save_mem(g, n_outputs, outputs, opts, &b, &len);
    if (st != ADVNN_OK) return st;
    st = advnn__write_file(path, b, len);
    ADVNN_FREE(b);
    return st;
}
#endif

/* ---------------------------------------------------------------- model files */
typedef struct { unsigned char *b; size_t n, cap; int oom; } advnn__wbuf;
static void advnn__wbytes(advnn__wbuf *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->n + n > w->cap) {
        size_t nc = w->cap ? w->cap : 4096;
        void *q;
        while (nc < w->n + n) nc *= 2;
        if (!(q = ADVNN_REALLOC(w->b, nc))) { w->oom = 1; return; }
        w->b = (unsigned char *)q; w->cap = nc;
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void advnn__w32(advnn__wbuf *w, uint32_t v) { unsigned char b[4]; advnn__put_u32(b, v); advnn__wbytes(w, b, 4); }
static void advnn__wf32(advnn__wbuf *w, float f) { uint32_t u; memcpy(&u, &f, 4); advnn__w32(w, u); }
static void advnn__wstr(advnn__wbuf *w, const char *s) { uint32_t n = (uint32_t)strlen(s); advnn__w32(w, n); advnn__wbytes(w, s, n); }

typedef struct { const unsigned char *p; size_t left; int bad; } advnn__rbuf;
static uint32_t advnn__r32(advnn__rbuf *r) {
    uint32_t v;
    if (r->bad || r->left < 4) { r->bad = 1; return 0; }
    v = advnn__get_u32(r->p); r->p += 4; r->left -= 4;
    return v;
}
static int32_t advnn__ri32(advnn__rbuf *r) { uint32_t u = advnn__r32(r); int32_t v; memcpy(&v, &u, 4); return v; }
static float advnn__rf32(advnn__rbuf *r) { uint32_t u = advnn__r32(r); float f; memcpy(&f, &u, 4); return f; }
static int advnn__rstr(advnn__rbuf *r, char *out) {
    uint32_t n = advnn__r32(r);
    if (r->bad || n >= ADVNN__NAME_MAX || n > r->left) { r->bad = 1; return 0; }
    memcpy(out, r->p, n); out[n] = 0;
    r->p += n; r->left -= n;
    if (strlen(out) != n) { r->bad = 1; return 0; }  /* embedded NUL */
    return 1;
}

/* The test vector (format flag 1): inputs drawn from a seed, and the outputs the model gave them when
 * it was saved. Loading recomputes them, so a file that runs differently from how it was saved (a
 * corrupted but checksum-valid field, a rewired input of the same shape, a broken kernel path) is
 * refused. The outputs checked are the graph's leaves: every node that is not a loss and that no
 * node other than a loss reads (the classifier's score, the adversary's heads, ...). */
#define ADVNN__FLAG_TESTVEC 1u
#define ADVNN__TV_ROWS 2
#define ADVNN__TV_TOL 1e-4
/* Workspace budget of the check at load, in floats: a few-hundred-byte file must not make the
 * loader allocate gigabytes of activations (max(64 MiB, 64 x the file's size)). */
static size_t advnn__tv_budget(size_t file_len) {
    size_t b = (size_t)64 << 20;
    if (file_len < SIZE_MAX / 64 && 64 * file_len > b) b = 64 * file_len;
    return b / sizeof(float);
}

static int advnn__tv_outputs(const advnn_graph *g, int *ids) {
    int i, j, n = 0;
    unsigned char *read = (unsigned char *)ADVNN_MALLOC((size_t)g->n_nodes + 1);
    if (!read) return -1;
    memset(read, 0, (size_t)g->n_nodes + 1);
    for (i = 0; i < g->n_nodes; i++)
        if (!ADVNN__IS_LOSS(g->nodes[i].kind))
            for (j = 0; j < g->nodes[i].n_in; j++) read[g->nodes[i].in[j]] = 1;
    for (i = 0; i < g->n_nodes; i++)
        if (!read[i] && !ADVNN__IS_LOSS(g->nodes[i].kind) && g->nodes[i].kind != ADVNN__INPUT) { if (ids) ids[n] = i; n++; }
    ADVNN_FREE(read);
    return n;
}

/* Runs the test inputs of `seed` through g; out gets every leaf's ADVNN__TV_ROWS rows, in leaf order
 * (*nout floats). ids (room for n_nodes) gets the leaves, *nleaf their count. */
static advnn_status advnn__tv_run(const advnn_graph *g, uint64_t seed, size_t budget, int *ids, int *nleaf, float **out, size_t *nout) {
    advnn_ws *ws = NULL;
    float **in = NULL, *o = NULL;
    size_t tot = 0, at = 0;
    advnn_status st = ADVNN_OK;
    int i, k;
    uint64_t x = seed;
    *out = NULL; *nout = 0;
    if ((*nleaf = advnn__tv_outputs(g, ids)) < 0) return advnn__fail(ADVNN_ERR_NOMEM, "model test vector: out of memory");
    if (advnn__ws_layout(g, ADVNN__TV_ROWS, 0, NULL, NULL) > budget)
        return advnn__fail(ADVNN_ERR_FORMAT, "model test vector: its workspace (%zu MiB) is over the %zu MiB a file of this size may ask "
                           "for (save the model without a test vector)", advnn__ws_layout(g, ADVNN__TV_ROWS, 0, NULL, NULL) >> 18, budget >> 18);
    for (k = 0; k < *nleaf; k++) tot += (size_t)ADVNN__TV_ROWS * g->nodes[ids[k]].size;
    in = (float **)advnn__zalloc(((size_t)g->n_inputs + 1) * sizeof *in);
    o = (float *)ADVNN_MALLOC((tot ? tot : 1) * sizeof(float));
    if (!in || !o || !(ws = advnn_ws_new(g, ADVNN__TV_ROWS))) { st = advnn__fail(ADVNN_ERR_NOMEM, "model test vector: out of memory"); goto done; }
    for (i = 0; i < g->n_inputs; i++) {
        size_t n = (size_t)ADVNN__TV_ROWS * g->nodes[g->inputs[i]].size, j;
        if (!(in[i] = (float *)ADVNN_MALLOC(n * sizeof(float)))) { st = advnn__fail(ADVNN_ERR_NOMEM, "model test vector: out of memory"); goto done; }
        for (j = 0; j < n; j++) {   /* splitmix64 -> uniform in [-1, 1), exact in float */
            uint64_t z = (x += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull; z = (z ^ (z >> 27)) * 0x94D049BB133111EBull; z ^= z >> 31;
            in[i][j] = (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
        }
    }
    for (k = 0; k < *nleaf && st == ADVNN_OK; k++) {
        st = advnn_infer(ws, ADVNN__TV_ROWS, (const float *const *)in, ids[k], o + at);
        at += (size_t)ADVNN__TV_ROWS * g->nodes[ids[k]].size;
    }
done:
    for (i = 0; in && i < g->n_inputs; i++) ADVNN_FREE(in[i]);
    advnn__free(in);
    advnn_ws_free(ws);
    if (st != ADVNN_OK) { ADVNN_FREE(o); return st; }
    *out = o; *nout = tot;
    return ADVNN_OK;
}

ADVNN_DEF advnn_status advnn_model_save_mem_ex(const advnn_graph *g, unsigned flags, void **buf, size_t *len) {
    advnn__wbuf w;
    int i, j, *leaf = NULL, nleaf = 0;
    unsigned char hdr[24];
    float *tv = NULL;
    size_t ntv = 0, at = 0;
    uint64_t seed;
    advnn_status st;
    if (!g || !buf || !len) return advnn__fail(ADVNN_ERR_ARG, "advnn_model_save: NULL argument");
    if (!g->finalized) return advnn__fail(ADVNN_ERR_STATE, "advnn_model_save: graph not finalized");
    if (flags & ~(unsigned)ADVNN_SAVE_NO_TESTVEC) return advnn__fail(ADVNN_ERR_ARG, "advnn_model_save: unknown flags %#x", flags);
    /* a file the loader would refuse is not written */
    if ((st = advnn__check_params(g, "advnn_model_save")) != ADVNN_OK) return st;
    for (i = 0, seed = 0; i < g->n_par; i++)   /* the test inputs' seed: a hash of the weights (not of the padding) */
        seed = (uint64_t)XXH3_64bits_withSeed(g->params + g->par[i].off, (size_t)g->par[i].size * sizeof(float), (XXH64_hash_t)seed);
    if (!(flags & ADVNN_SAVE_NO_TESTVEC)) {
        if (!(leaf = (int *)ADVNN_MALLOC(((size_t)g->n_nodes + 1) * sizeof(int)))) return advnn__fail(ADVNN_ERR_NOMEM, "advnn_model_save: out of memory");
        if ((st = advnn__tv_run(g, seed, (size_t)-1, leaf, &nleaf, &tv, &ntv)) != ADVNN_OK) { ADVNN_FREE(leaf); return st; }
    }
    memset(&w, 0, sizeof w);
    memset(hdr, 0, sizeof hdr);
    advnn__wbytes(&w, hdr, sizeof hdr);  /* filled in below */
    advnn__w32(&w, (uint32_t)g->n_groups);
    for (i = 0; i < g->n_groups; i++) advnn__wstr(&w, g->groups[i]);
    advnn__w32(&w, (uint32_t)g->n_nodes);
    for (i = 0; i < g->n_nodes; i++) {
        const advnn__node *n = &g->nodes[i];
        advnn__w32(&w, (uint32_t)n->kind); advnn__w32(&w, (uint32_t)n->group); advnn__w32(&w, (uint32_t)n->share);
        advnn__w32(&w, (uint32_t)n->n_in);
        for (j = 0; j < n->n_in; j++) advnn__w32(&w, (uint32_t)n->in[j]);
        advnn__w32(&w, (uint32_t)n->ndim);
        for (j = 0; j < 3; j++) advnn__w32(&w, (uint32_t)n->shape[j]);
        for (j = 0; j < 8; j++) advnn__w32(&w, (uint32_t)n->ip[j]);
        for (j = 0; j < 4; j++) advnn__wf32(&w, n->fp[j]);
        advnn__wstr(&w, n->name);
    }
    advnn__w32(&w, (uint32_t)g->n_par);
    for (i = 0; i < g->n_par; i++) {
        const advnn__param *p = &g->par[i];
        int64_t k;
        advnn__w32(&w, (uint32_t)p->rows); advnn__w32(&w, (uint32_t)p->cols);
        for (k = 0; k < p->size; k++) advnn__wf32(&w, g->params[p->off + k]);
    }
    if (leaf) {   /* rows, seed, leaves, then each leaf's node id and outputs */
        advnn__w32(&w, ADVNN__TV_ROWS); advnn__w32(&w, (uint32_t)seed); advnn__w32(&w, (uint32_t)(seed >> 32));
        advnn__w32(&w, (uint32_t)nleaf);
        for (i = 0; i < nleaf; i++) {
            size_t m = (size_t)ADVNN__TV_ROWS * g->nodes[leaf[i]].size, k;
            advnn__w32(&w, (uint32_t)leaf[i]);
            for (k = 0; k < m; k++) advnn__wf32(&w, tv[at + k]);
            at += m;
        }
    }
    ADVNN_FREE(leaf); ADVNN_FREE(tv);
    advnn__wbytes(&w, hdr, 8);  /* room for the checksum */
    if (w.oom) { ADVNN_FREE(w.b); return advnn__fail(ADVNN_ERR_NOMEM, "advnn_model_save: out of memory"); }
    memcpy(w.b, "ADVNNMDL", 8);
    advnn__put_u32(w.b + 8, ADVNN_MODEL_FORMAT_VERSION);
    advnn__put_u32(w.b + 12, (flags & ADVNN_SAVE_NO_TESTVEC) ? 0 : ADVNN__FLAG_TESTVEC);
    advnn__put_u64(w.b + 16, (uint64_t)(w.n - 32));
    advnn__put_u64(w.b + w.n - 8, (uint64_t)XXH3_64bits(w.b, w.n - 8));
    *buf = w.b;
    *len = w.n;
    return ADVNN_OK;
}
ADVNN_DEF advnn_status advnn_model_save_mem(const advnn_graph *g, void **buf, size_t *len) { return advnn_model_save_mem_ex(g, 0, buf, len); }

/* Replays one saved node through the builder, which validates it like user input. */
static int advnn__replay_node(advnn_graph *g, int kind, int n_in, const int *in, int share, const int *ip, const float *fp,
                              const char *name, int ndim, const int *shape) {
    switch (kind) {
    case ADVNN__INPUT: return n_in == 0 ? advnn_input(g, name, ndim, shape) : -1;
    case ADVNN__DENSE: case ADVNN__CONV: {
        int id;
        if (n_in != 1 || !isfinite(fp[0])) return -1;
        if (share >= 0) id = advnn_shared(g, share, in[0], -1);
        else if (kind == ADVNN__DENSE) id = (ip[2] == 0 || ip[2] == 1) ? advnn__dense_node(g, in[0], ip[0], ip[1], ip[2], -1) : -1;
        else id = advnn__conv_node(g, in[0], g->nodes[in[0]].ndim - 1, ip[0], ip[2], ip[3], ip[4], ip[5], ip[6], ip[1], -1);
        if (id >= 0) g->nodes[id].fp[0] = fp[0];
        return id;
    }
    case ADVNN__POOL: return n_in == 1 ? advnn__pool_node(g, in[0], g->nodes[in[0]].ndim - 1, ip[0] != 0, ip[1], ip[2], ip[3], ip[4]) : -1;
    case ADVNN__UPSAMPLE: return n_in == 1 ? advnn_upsample2d(g, in[0], ip[0], ip[1]) : -1;
    case ADVNN__RESHAPE: return n_in == 1 ? advnn_reshape(g, in[0], ndim, shape) : -1;
    case ADVNN__LSTM:
        if (n_in != 1 && n_in != 2) return -1;
        return share >= 0 ? advnn_shared(g, share, in[0], n_in == 2 ? in[1] : -1)
                          : advnn_lstm(g, in[0], ip[0], ip[1], n_in == 2 ? in[1] : -1);
    case ADVNN__MASK: return n_in == 1 ? advnn_mask_nonzero(g, in[0]) : -1;
    case ADVNN__SOFTMAX: return n_in == 1 ? advnn_softmax(g, in[0]) : -1;
    case ADVNN__SAMPLE_MSE: return n_in == 2 && (ip[0] == 0 || ip[0] == 1) ? advnn_sample_mse(g, in[0], in[1], ip[0]) : -1;
    case ADVNN__LOSS_MDN: {
        int id;
        if (n_in < 2 || n_in > 5) return -1;
        id = n_in <= 3 ? advnn_loss_mdn(g, in[0], -1, -1, in[1], n_in == 3 ? in[2] : -1, ip[0], fp[1])   /* packed head */
                       : advnn_loss_mdn(g, in[0], in[1], in[2], in[3], n_in == 5 ? in[4] : -1, ip[0], fp[1]);
        if (id >= 0 && advnn_loss_scale(g, id, fp[0]) != ADVNN_OK) return -1;
        return id;
    }
    case ADVNN__LOSS_DISCO: case ADVNN__LOSS_MODE: {   /* decorrelation losses */
        int id;
        advnn_mode_opts mo = advnn_mode_defaults();
        if (n_in != 2 && n_in != 3) return -1;
        mo.order = ip[0]; mo.bins = ip[1]; mo.sbins = ip[2]; mo.flatness = ip[3]; mo.power = fp[1]; mo.max_slope = fp[2];
        id = kind == ADVNN__LOSS_DISCO ? advnn_loss_disco(g, in[0], in[1], n_in == 3 ? in[2] : -1, fp[1])
                                       : advnn_loss_mode(g, in[0], in[1], n_in == 3 ? in[2] : -1, &mo);
        if (id >= 0 && advnn_loss_scale(g, id, fp[0]) != ADVNN_OK) return -1;
        return id;
    }
    case ADVNN__GRAD_REVERSE: return n_in == 1 ? advnn_grad_reverse(g, in[0], fp[0]) : -1;
    case ADVNN__PRELU: return n_in != 1 ? -1 : share >= 0 ? advnn_shared(g, share, in[0], -1) : advnn_prelu(g, in[0]);
    case ADVNN__BATCHNORM: return n_in != 1 ? -1 : share >= 0 ? advnn_shared(g, share, in[0], -1) : advnn_batchnorm_ex(g, in[0], fp[0], fp[1]);
    case ADVNN__ACT: return n_in == 1 ? advnn_activation_ex(g, in[0], (advnn_act)ip[0], fp[0]) : -1;
    case ADVNN__DROPOUT: return n_in == 1 ? advnn_dropout(g, in[0], fp[0]) : -1;
    case ADVNN__STANDARDIZE: return n_in == 1 && share < 0 ? advnn_standardize(g, in[0]) : -1;
    case ADVNN__CONCAT: return advnn_concat(g, n_in, in);
    case ADVNN__LOSS_BCE: case ADVNN__LOSS_CCE: case ADVNN__LOSS_MSE: {
        int id;
        if (n_in != 2 && n_in != 3) return -1;
        id = advnn__loss(g, kind, in[0], in[1], n_in == 3 ? in[2] : -1, "model file loss");
        if (id >= 0 && advnn_loss_scale(g, id, fp[0]) != ADVNN_OK) return -1;
        return id;
    }
    default: return -1;
    }
}

/* Compares the test vector stored at r with the outputs g computes now (see ADVNN__FLAG_TESTVEC). */
static advnn_status advnn__tv_check(const advnn_graph *g, advnn__rbuf *r, size_t file_len) {
    uint32_t rows = advnn__r32(r), lo = advnn__r32(r), hi = advnn__r32(r), nl = advnn__r32(r), i;
    int *leaf, nleaf;
    float *tv = NULL;
    size_t ntv, at = 0, k;
    advnn_status st;
    if (r->bad || rows != ADVNN__TV_ROWS || nl > (uint32_t)g->n_nodes)
        return advnn__fail(ADVNN_ERR_FORMAT, "model: test vector header (rows %u, %u outputs) is invalid", rows, nl);
    if (!(leaf = (int *)ADVNN_MALLOC(((size_t)g->n_nodes + 1) * sizeof(int)))) return advnn__fail(ADVNN_ERR_NOMEM, "model: out of memory");
    nleaf = advnn__tv_outputs(g, NULL);
    if (nleaf != (int)nl) { ADVNN_FREE(leaf); return advnn__fail(ADVNN_ERR_FORMAT, "model: the test vector has %u outputs, the graph %d", nl, nleaf); }
    /* the stored outputs must be in the file before any work is done for them */
    {
        size_t need = 0;
        nleaf = advnn__tv_outputs(g, leaf);
        for (i = 0; i < nl; i++) need += 4 + 4 * (size_t)ADVNN__TV_ROWS * g->nodes[leaf[i]].size;
        if (need != r->left) { ADVNN_FREE(leaf); return advnn__fail(ADVNN_ERR_FORMAT, "model: the test vector needs %zu bytes, %zu are left", need, r->left); }
    }
    if ((st = advnn__tv_run(g, (uint64_t)lo | (uint64_t)hi << 32, advnn__tv_budget(file_len), leaf, &nleaf, &tv, &ntv)) != ADVNN_OK) {
        ADVNN_FREE(leaf); return st;
    }
    for (i = 0; i < nl; i++) {
        const advnn__node *n = &g->nodes[leaf[i]];
        size_t m = (size_t)ADVNN__TV_ROWS * n->size;
        double scale = 1, worst = 0;
        size_t wk = 0;
        if ((int)advnn__r32(r) != leaf[i]) { st = advnn__fail(ADVNN_ERR_FORMAT, "model: test vector output %u is not node %d", i, leaf[i]); break; }
        for (k = 0; k < m; k++) { float e = advnn__rf32(r); if (isfinite(e) && fabs(e) > scale) scale = fabs(e); }
        r->p -= 4 * m; r->left += 4 * m;   /* second pass: compare, within ADVNN__TV_TOL of the output's scale */
        for (k = 0; k < m; k++) {
            float e = advnn__rf32(r), a = tv[at + k];
            double d = (isnan(e) && isnan(a)) || (isinf(e) && e == a) ? 0 : fabs((double)a - e);
            if (!(d <= worst)) { worst = isnan(d) ? INFINITY : d; wk = k; }
        }
        if (worst > ADVNN__TV_TOL * scale) {
            st = advnn__fail(ADVNN_ERR_FORMAT, "model: node %d '%s' computes %g for test value %zu, the file says %g (saved with other "
                             "weights, architecture or kernels: differs by %.3g, tolerance %.3g)", leaf[i], n->name,
                             (double)tv[at + wk], wk, (double)advnn__get_f32(r->p - 4 * (m - wk)), worst, ADVNN__TV_TOL * scale);
            break;
        }
        at += m;
    }
    ADVNN_FREE(leaf); ADVNN_FREE(tv);
    return st;
}

ADVNN_DEF advnn_graph *advnn_model_load_mem(const void *buf, size_t len) {
    const unsigned char *b = (const unsigned char *)buf;
    advnn__rbuf r;
    advnn_graph *g = NULL;
    uint32_t ng, nn, np, i, j, flags;
    uint64_t plen, need;
    char name[ADVNN__NAME_MAX];
    const char *why = "inconsistent field";
    if (!b) { advnn__fail(ADVNN_ERR_ARG, "model: buffer is NULL"); return NULL; }
    if (len < 32) { advnn__fail(ADVNN_ERR_FORMAT, "model: %zu bytes is too short for a model file (at least 32)", len); return NULL; }
    if (memcmp(b, "ADVNNMDL", 8) != 0) { advnn__fail(ADVNN_ERR_FORMAT, "model: not an advnn model file (bad magic)"); return NULL; }
    if (advnn__get_u32(b + 8) != ADVNN_MODEL_FORMAT_VERSION) {
        advnn__fail(ADVNN_ERR_FORMAT, "model: format version %u, this build reads version %d", advnn__get_u32(b + 8), ADVNN_MODEL_FORMAT_VERSION);
        return NULL;
    }
    plen = advnn__get_u64(b + 16);
    if (plen != (uint64_t)len - 32) {
        advnn__fail(ADVNN_ERR_FORMAT, "model: header announces %llu payload bytes, the file has %llu (truncated or padded)",
                    (unsigned long long)plen, (unsigned long long)(len - 32));
        return NULL;
    }
    if (advnn__get_u64(b + len - 8) != (uint64_t)XXH3_64bits(b, len - 8)) {
        advnn__fail(ADVNN_ERR_CHECKSUM, "model: XXH3 checksum mismatch (file corrupted)");
        return NULL;
    }
    flags = advnn__get_u32(b + 12);
    if (flags & ~ADVNN__FLAG_TESTVEC) { advnn__fail(ADVNN_ERR_FORMAT, "model: unknown flags %#x", flags); return NULL; }
    r.p = b + 24; r.left = len - 32; r.bad = 0;
    if (!(g = advnn_graph_new())) return NULL;
#define ADVNN__BAD(msg) do { why = (msg); goto bad; } while (0)
    ng = advnn__r32(&r);
    if (r.bad || ng < 1 || ng > 1024) ADVNN__BAD("group count outside 1..1024");
    for (i = 0; i < ng; i++) {
        if (!advnn__rstr(&r, name)) ADVNN__BAD("bad group name");
        if (advnn_group(g, name) != (int)i) ADVNN__BAD("duplicated group name, or group 0 is not 'main'");
    }
    nn = advnn__r32(&r);
    if (r.bad || nn < 1 || nn > (1u << 20) || nn > r.left / 80) ADVNN__BAD("node count outside 1..2^20 or larger than the file");
    for (i = 0; i < nn; i++) {
        int kind, group, share, n_in, in[ADVNN__MAX_IN], ndim, shape[3], ip[8], id;
        float fp[4];
        kind = advnn__ri32(&r); group = advnn__ri32(&r); share = advnn__ri32(&r); n_in = advnn__ri32(&r);
        if (r.bad || n_in < 0 || n_in > ADVNN__MAX_IN || group < 0 || group >= (int)ng || share < -1 || share >= (int)i)
            ADVNN__BAD("node header (input count, group or shared node) out of range");
        for (j = 0; j < (uint32_t)n_in; j++) { in[j] = advnn__ri32(&r); if (in[j] < 0 || in[j] >= (int)i) ADVNN__BAD("node input out of range"); }
        ndim = advnn__ri32(&r);
        for (j = 0; j < 3; j++) shape[j] = advnn__ri32(&r);
        for (j = 0; j < 8; j++) ip[j] = advnn__ri32(&r);
        for (j = 0; j < 4; j++) fp[j] = advnn__rf32(&r);
        if (!advnn__rstr(&r, name) || ndim < 1 || ndim > 3) ADVNN__BAD("bad node name or rank");
        g->cur_group = group;
        id = advnn__replay_node(g, kind, n_in, in, share, ip, fp, name, ndim, shape);
        if (id != (int)i || g->nodes[id].group != group || g->nodes[id].ndim != ndim) ADVNN__BAD("the node does not rebuild as saved");
        for (j = 0; j < (uint32_t)ndim; j++) if (g->nodes[id].shape[j] != shape[j]) ADVNN__BAD("the node's shape differs from the saved one");
        for (j = 0; j < 8; j++) if (g->nodes[id].ip[j] != ip[j]) ADVNN__BAD("the node's integer settings differ from the saved ones");
        if (memcmp(g->nodes[id].fp, fp, sizeof fp) != 0) ADVNN__BAD("the node's float settings differ from the saved ones");
        if (kind != ADVNN__INPUT && name[0] && advnn_name(g, id, name) != id) ADVNN__BAD("bad or duplicated node name");
    }
    np = advnn__r32(&r);
    if (r.bad || (int)np != g->n_par) ADVNN__BAD("the tensor count differs from the architecture's");
    /* every tensor must be in the file before anything is allocated for it: a few hundred bytes of
     * architecture can declare gigabytes of weights */
    for (i = 0, need = 0; i < np; i++) need += 8 + 4 * (uint64_t)g->par[i].size;
    if (need > r.left || (!(flags & ADVNN__FLAG_TESTVEC) && need != r.left)) {
        advnn__fail(ADVNN_ERR_FORMAT, "model: the architecture declares %llu bytes of tensors, the file has %llu after it%s",
                    (unsigned long long)need, (unsigned long long)r.left, need > r.left ? " (truncated or not a saved model)" : "");
        goto fail;
    }
    if (advnn__finalize(g, 0, 0) != ADVNN_OK) goto fail;
    for (i = 0; i < np; i++) {
        advnn__param *p = &g->par[i];
        int rows = advnn__ri32(&r), cols = advnn__ri32(&r);
        int64_t k;
        if (r.bad || rows != p->rows || cols != p->cols) ADVNN__BAD("a tensor's shape differs from the architecture's");
        for (k = 0; k < p->size; k++) g->params[p->off + k] = advnn__rf32(&r);
    }
    if (r.bad) ADVNN__BAD("tensor table truncated");
    if (advnn__check_params(g, "model") != ADVNN_OK) goto fail;
    if ((flags & ADVNN__FLAG_TESTVEC) && advnn__tv_check(g, &r, len) != ADVNN_OK) goto fail;
    if (r.bad || r.left != 0) ADVNN__BAD("bytes left over after the last section");
#undef ADVNN__BAD
    return g;
bad:
    {
        char msg[sizeof advnn__errbuf];
        snprintf(msg, sizeof msg, "%s", g && g->err != ADVNN_OK ? g->errmsg : why);
        advnn__fail(ADVNN_ERR_FORMAT, "model: invalid architecture or tensor table at byte %zu: %s", (size_t)(r.p - b), msg);
    }
fail:
    advnn_graph_free(g);
    return NULL;
}

#ifndef ADVNN_NO_STDIO
ADVNN_DEF advnn_status advnn_model_save(const advnn_graph *g, const char *path) { return advnn_model_save_ex(g, path, 0); }
ADVNN_DEF advnn_status advnn_model_save_ex(const advnn_graph *g, const char *path, unsigned flags) {
    void *b;
    size_t len;
    advnn_status st = advnn_model_save_mem_ex(g, flags, &b, &len);
    if (st != ADVNN_OK) return st;
    st = advnn__write_file(path, b, len);
    ADVNN_FREE(b);
    return st;
}
ADVNN_DEF advnn_graph *advnn_model_load(const char *path) { return advnn__load_graph_file(path, advnn_model_load_mem); }
#endif

#endif /* ADVNN_IMPLEMENTATION_DONE */
#endif /* ADVNN_IMPLEMENTATION */
