/* advnn_simd.h - kernel layer of advnn (single-header, stb-style, C11 / C++).
 *
 * Kernels only: raw pointers, sizes, strides. Nothing here allocates, keeps state or knows about
 * layers. Every public function is reentrant and thread-safe (the one global is the runtime ISA
 * choice below, set once atomically): any number of threads may call any kernel concurrently as long
 * as their output buffers do not overlap.
 *
 *   #define ADVNN_SIMD_IMPLEMENTATION      // in exactly one translation unit
 *   #include "advnn_simd.h"
 *
 *   float C[2*3];
 *   advnn_sgemm(0, 0, 2, 3, 4, 1.0f, A, 4, B, 3, 0.0f, C, 3, NULL);   // C = A*B
 *   advnn_act_forward(ADVNN_ACT_RELU, 2, 3, C, 3, C, 3, 0.0f, NULL);  // in place
 *
 * Config macros (define before including):
 *   ADVNN_STATIC         all functions are static to the including translation unit
 *   ADVNN_FORCE_SCALAR   use the portable scalar bodies even if AVX2/NEON is available
 *   ADVNN_NO_DISPATCH    x86-64 without -mavx2 -mfma: compile the scalar bodies only (no runtime dispatch)
 *   ADVNN_SIMD_NO_GETENV do not read the ADVNN_SIMD environment variable
 *
 * ISA: AVX2+FMA, NEON or scalar; advnn_simd_name() tells which one is live.
 *  - -mavx2 -mfma (__AVX2__ && __FMA__): AVX2+FMA, chosen at compile time (no dispatch).
 *  - aarch64 (__ARM_NEON && __aarch64__): NEON, chosen at compile time.
 *  - x86-64 with gcc/clang otherwise (e.g. plain gcc -O2, generic x86-64): runtime dispatch. The
 *    AVX2+FMA bodies are compiled with __attribute__((target("avx2,fma"))) beside the scalar ones;
 *    the first kernel call picks AVX2+FMA if the CPU has both (__builtin_cpu_supports), else scalar,
 *    and every kernel call checks that cached choice once (no per-element cost). The environment
 *    variable ADVNN_SIMD=scalar (read once, at that first call) selects the scalar path; "avx2" or
 *    "auto" (or unset) the automatic choice. advnn_simd_force() changes the choice at any time.
 *  - anything else (ADVNN_FORCE_SCALAR, other compilers and CPUs): scalar.
 * The vector paths use SLEEF for exp/log (1 ulp) and tanh (3.5 ulp: twice as fast as its 1-ulp
 * version, and float nets need no more; link with -lsleef; the dispatching build always
 * needs it); the scalar path uses libm (-lm).
 *
 * Conventions: fp32; matrices row-major with a leading dimension in elements; vectors with an
 * increment in elements (>= 1; the vector bodies handle inc == 1, other increments take the scalar
 * loop). No alignment is assumed anywhere (unaligned loads/stores). All sizes may be 0 unless noted.
 *
 * NaN/Inf: kernels do not check their inputs; NaN propagates through arithmetic as IEEE says
 * (max/relu of NaN is unspecified). Exception: sgemm with beta == 0 never reads C.
 */
#ifndef ADVNN_SIMD_H
#define ADVNN_SIMD_H

#define ADVNN_SIMD_VERSION 1

#ifndef ADVNN_SIMD_DEF
#ifdef ADVNN_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define ADVNN_SIMD_DEF static __attribute__((unused))
#else
#define ADVNN_SIMD_DEF static
#endif
#else
#define ADVNN_SIMD_DEF extern
#endif
#endif

/* Floats of scratch needed by advnn_sgemm's packing (224 KiB). With work == NULL, advnn_sgemm
 * uses a stack buffer of this size (only on the blocked path; M==1 / N==1 paths use no stack). */
#define ADVNN_SGEMM_WORK_FLOATS (96 * 256 + 256 * 128)

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ADVNN_ACT_DEFINED
#define ADVNN_ACT_DEFINED
typedef enum {
    ADVNN_ACT_LINEAR = 0, ADVNN_ACT_RELU, ADVNN_ACT_LEAKY_RELU, ADVNN_ACT_PRELU, ADVNN_ACT_ELU,
    ADVNN_ACT_SIGMOID, ADVNN_ACT_TANH, ADVNN_ACT_SOFTPLUS, ADVNN_ACT_COUNT
} advnn_act;
#endif

/* The live path: "avx2+fma", "neon" or "scalar". */
ADVNN_SIMD_DEF const char *advnn_simd_name(void);
/* Choose the path (for tests and benchmarks): "scalar", "avx2" (or "avx2+fma"), "auto" / NULL (the
 * automatic choice, ADVNN_SIMD included). Returns 0 when that path is now live, -1 when it is not
 * available (unknown name, not compiled in, or the CPU lacks AVX2/FMA); the choice is then unchanged.
 * Only the runtime-dispatch build can switch; builds with a compile-time ISA accept their own name
 * and "auto". Call it when no other thread is inside a kernel (each kernel call runs on one path). */
ADVNN_SIMD_DEF int advnn_simd_force(const char *isa);

/* C[M,N] = alpha*op(A)*op(B) + beta*C, row-major.
 *   transA=0: A is M x K (lda >= K);  transA=1: A is stored K x M (lda >= M).
 *   transB=0: B is K x N (ldb >= N);  transB=1: B is stored N x K (ldb >= K).
 * beta == 0: C is written without being read (NaN in C does not propagate).
 * Only the M x N window of C is written. K == 0 or alpha == 0 gives C = beta*C.
 * work: NULL or >= ADVNN_SGEMM_WORK_FLOATS floats (64-byte aligned recommended) for packing;
 * with NULL a 224 KiB stack buffer is used. Single-threaded. */
ADVNN_SIMD_DEF void advnn_sgemm(int transA, int transB, int M, int N, int K, float alpha,
                                const float *A, int lda, const float *B, int ldb, float beta,
                                float *C, int ldc, float *work);
/* A layer's forward in one call: C = A*B + bias (bias[j] added to column j; bias may be NULL),
 * then with relu != 0 Y = max(C, 0) (Y == C, ldy == ldc: in place; otherwise C keeps the value
 * before the ReLU). No transposes, alpha 1, beta 0; work as for advnn_sgemm. Bit for bit the
 * result of advnn_sgemm, advnn_add_bias and advnn_act_forward(ADVNN_ACT_RELU) in turn; the AVX2
 * path applies bias and ReLU to each register tile before its store instead of in two more passes
 * over C (W1's batch-512 inference spent 9% of its time in those passes), and every vector path
 * does so on the accumulators of its one-row GEMV at M = 1 (a per-jet call). */
ADVNN_SIMD_DEF void advnn_sgemm_bias_relu(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                          const float *bias, int relu, float *C, int ldc, float *Y, int ldy,
                                          float *work);
/* op(B) packed once for many products with the same B (a layer's weights in every chunk of a training
 * step): advnn_sgemm_pack_b writes the packing into P, advnn_sgemm_pack_floats(K, N) floats (on any
 * path); advnn_sgemm_p and advnn_sgemm_bias_relu_p then take it, with the same transB, K, N and B (B is
 * still read by the paths that pack nothing, e.g. M == 1), and give advnn_sgemm's and
 * advnn_sgemm_bias_relu's results bit for bit. P == NULL: packed in each call. Pack on the path that
 * multiplies (after advnn_simd_force, pack again). */
ADVNN_SIMD_DEF size_t advnn_sgemm_pack_floats(int K, int N);
ADVNN_SIMD_DEF void advnn_sgemm_pack_b(int transB, int K, int N, const float *B, int ldb, float *P);
ADVNN_SIMD_DEF void advnn_sgemm_p(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                  const float *B, int ldb, const float *P, float beta, float *C, int ldc, float *work);
ADVNN_SIMD_DEF void advnn_sgemm_bias_relu_p(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                            const float *P, const float *bias, int relu, float *C, int ldc, float *Y,
                                            int ldy, float *work);
/* Same contract as advnn_sgemm, plain scalar triple loop (float accumulation): the reference for tests. */
ADVNN_SIMD_DEF void advnn_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha,
                                    const float *A, int lda, const float *B, int ldb, float beta,
                                    float *C, int ldc);

/* Vectors (n may be 0; inc >= 1). */
ADVNN_SIMD_DEF void  advnn_axpy(int n, float a, const float *x, int incx, float *y, int incy); /* y += a*x */
ADVNN_SIMD_DEF void  advnn_mul_acc(int n, const float *a, const float *b, float *y);        /* y += a.*b (multiply, then add: no FMA, the same on every path) */
/* The first term of a sum, written without reading y: the bits advnn_axpy (inc 1) leaves on a y of
 * zeros, y = a*x + 0 (a -0 term gives +0): a gradient's first contribution without zeroing it first. */
ADVNN_SIMD_DEF void  advnn_axpy_set(int n, float a, const float *x, float *y);
ADVNN_SIMD_DEF void  advnn_scale(int n, float a, float *x, int incx);                          /* x *= a  */
ADVNN_SIMD_DEF float advnn_dot(int n, const float *x, int incx, const float *y, int incy);
ADVNN_SIMD_DEF float advnn_sum(int n, const float *x, int incx);
ADVNN_SIMD_DEF float advnn_sumsq(int n, const float *x, int incx);
ADVNN_SIMD_DEF float advnn_max(int n, const float *x, int incx);   /* n >= 1; returns -INFINITY for n <= 0 */

/* Matrices (M rows, N columns, leading dimension ld >= N). */
ADVNN_SIMD_DEF void advnn_add_bias(int M, int N, float *X, int ldx, const float *b);   /* X[i,j] += b[j] */
ADVNN_SIMD_DEF void advnn_col_sums(int M, int N, const float *X, int ldx, float *out); /* out[j] += sum_i X[i,j] (accumulates) */
ADVNN_SIMD_DEF void advnn_row_max(int M, int N, const float *X, int ldx, float *out);  /* out[i] = max_j X[i,j]; N >= 1 */
/* BatchNorm's normalisation, row by row (all four matrices share the leading dimension ld):
 * xhat[i,j] = (x[i,j] - mean[j]) * istd[j];  y[i,j] = gamma[j] * xhat[i,j] + beta[j]
 * (a subtract and a multiply, then a multiply and an add: no fused multiply-add, so every ISA
 * rounds the same way). xhat may alias neither x nor y; NULL: not written (inference needs only y). */
ADVNN_SIMD_DEF void advnn_bn_rows(int M, int N, const float *x, int ld, const float *mean, const float *istd,
                                  const float *gamma, const float *beta, float *xhat, float *y);
/* BatchNorm's per-column sums in double, rows in order (so every ISA adds in the same order, and
 * with a multiply and an add, never an FMA: bitwise the same results on every path):
 *   advnn_bn_sums:  s[j] += sum_i x[i,j]  (center NULL)  or  s[j] += sum_i (x[i,j] - center[j])^2
 *   advnn_bn_sums2: s[j] += sum_i a[i,j],  s[N + j] += sum_i a[i,j] * b[i,j]
 *   advnn_bn_bwd_dx: dx[i,j] += (float)(k[j] * (R * dy[i,j] - s[j] - xhat[i,j] * s[N + j]))
 * (the batch-statistics backward: R rows in the whole batch, k[j] = gamma[j] istd[j] / R);
 *   advnn_bn_bwd_dx_set: the same term written, as it would be added to zeros (a -0 term gives +0). */
ADVNN_SIMD_DEF void advnn_bn_sums(int M, int N, const float *x, int ld, const double *center, double *s);
ADVNN_SIMD_DEF void advnn_bn_sums2(int M, int N, const float *a, const float *b, int ld, double *s);
ADVNN_SIMD_DEF void advnn_bn_bwd_dx(int M, int N, const float *dy, const float *xhat, int ld, const double *k, double R,
                                    const double *s, float *dx);
ADVNN_SIMD_DEF void advnn_bn_bwd_dx_set(int M, int N, const float *dy, const float *xhat, int ld, const double *k,
                                        double R, const double *s, float *dx);

/* Vector math, contiguous; y may alias x (exactly, y == x). */
ADVNN_SIMD_DEF void advnn_vexp(int n, const float *x, float *y);
ADVNN_SIMD_DEF void advnn_vlog(int n, const float *x, float *y);
ADVNN_SIMD_DEF void advnn_vtanh(int n, const float *x, float *y);
/* The same in double, for losses evaluated in double (the mixture density): SLEEF's 1-ulp functions
 * on the vector paths, libm on the scalar one. y may alias x (exactly, y == x). */
ADVNN_SIMD_DEF void advnn_vexp_f64(int n, const double *x, double *y);
ADVNN_SIMD_DEF void advnn_vlog_f64(int n, const double *x, double *y);
ADVNN_SIMD_DEF void advnn_vlog1p_f64(int n, const double *x, double *y);
ADVNN_SIMD_DEF void advnn_verf_f64(int n, const double *x, double *y);
/* erf(x) in double for a caller that has e[i] = exp(-x[i]^2) at hand (the truncated mixture density
 * needs both): |x| < 0.75 by its Taylor series, 0.75 <= |x| < 6 as 1 - e R(|x|) with R(x) =
 * erfc(x) exp(x^2) a polynomial of degree 17 in 2/(2+x), |x| >= 6 as +-1 (erfc(6) < 2^-55). Within 2
 * ulp of glibc's erf (measured over 2e6 points; e from SLEEF's 1-ulp exp), at a quarter of the cost
 * of SLEEF's erf. e is read only for 0.75 <= |x| < 6. y may alias x (exactly, y == x). */
ADVNN_SIMD_DEF void advnn_verf_e_f64(int n, const double *x, const double *e, double *y);
/* The negative log-likelihood of a Gaussian mixture (the mixture-density loss), in double, R rows
 * of K components, R K <= ADVNN_MDN_CHUNK: row r reads K coefficient logits at a + ri[r] ld, mean
 * logits at u + ri[r] ld and width logits at v + ri[r] ld; m[r] is its target. Means sigmoid(u),
 * widths softplus(v) + floor_, each component truncated to [0, 1] when trunc (Z = Phi(beta) -
 * Phi(alpha), alpha = -mu/sigma <= 0 <= beta = (1 - mu)/sigma, as (erf(beta/sqrt2) +
 * erf(-alpha/sqrt2))/2: two non-negative terms, no cancellation). nll[r] = -log p(m[r]); with g,
 * g + 3K ri[r] gets d(-log p)/d(a, u, v) of the row (K floats each); R K > ADVNN_MDN_CHUNK sets every
 * nll[r] to NaN and computes nothing. Element-wise passes through the vector math; the vector path
 * does the scalar one's operations in its order (results agree to the last bits, FMA contraction
 * aside). */
#define ADVNN_MDN_CHUNK 256
ADVNN_SIMD_DEF void advnn_mdn_nll(int R, int K, int ld, const int *ri, const float *a, const float *u, const float *v,
                                  const double *m, int trunc, double floor_, float *g, double *nll);

/* Inverted dropout: m[i] = keep (1 / (1 - rate)) or 0, y[i] = x[i] * m[i]. The draws come from four
 * xoshiro256++ streams seeded from `seed` by splitmix64; block b of 8 elements takes the low and
 * high 32-bit halves of the four streams' b-th outputs (element 8b + 2j + h from stream j, half h),
 * and an element is kept when its half u satisfies u >= ceil(rate 2^32). Every ISA gives the same
 * masks (one serial generator per element cost 2 ns, most of a dropout layer; four streams in
 * vector lanes cost 0.2). rate in [0, 1]; y may alias x (exactly); m may be NULL. */
ADVNN_SIMD_DEF void advnn_dropout_mask(int n, uint64_t seed, float rate, const float *x, float *y, float *m);
/* Its backward with the mask drawn again from the same (n, seed, rate) instead of stored: add 0 writes
 * dx = dy .* m + 0 (the bits advnn_mul_acc leaves on zeros; dx not read), add 1 dx += dy .* m
 * (advnn_mul_acc's). dx may alias dy (exactly). */
ADVNN_SIMD_DEF void advnn_dropout_grad(int n, uint64_t seed, float rate, const float *dy, float *dx, int add);

/* Activations. x = pre-activation, y = output, both M x N with their own ld; y may alias x.
 * param: slope for LEAKY_RELU, alpha for ELU (ignored otherwise). alpha: per-column slopes
 * (length N) for PRELU, else ignored (may be NULL).
 * sigmoid(x) is computed stably (exp(-|x|)); softplus(x) = log1p(exp(-|x|)) + max(x,0).
 *
 * Backward: dx[i,j] = dy[i,j] * f'(x[i,j]); dx may alias dy. Which inputs are read:
 *   LINEAR: neither x nor y;  RELU, LEAKY_RELU, PRELU, ELU, SOFTPLUS: x only;  SIGMOID, TANH: y only.
 * A pointer that is not read may be NULL (its ld is then ignored).
 * Derivative at 0: relu'(0) = 0; leaky/prelu use the slope for x <= 0; elu uses alpha*exp(x) for x <= 0.
 * PRELU: if dalpha != NULL, dalpha[j] += sum_i dy[i,j]*x[i,j]*(x[i,j] <= 0) (accumulates). */
ADVNN_SIMD_DEF void advnn_act_forward(advnn_act act, int M, int N, const float *x, int ldx,
                                      float *y, int ldy, float param, const float *alpha);
ADVNN_SIMD_DEF void advnn_act_backward(advnn_act act, int M, int N, const float *x, int ldx,
                                       const float *y, int ldy, const float *dy, int lddy,
                                       float *dx, int lddx, float param, const float *alpha,
                                       float *dalpha);

/* Row softmax / log-softmax (stable: the row max is subtracted). y may alias x. */
ADVNN_SIMD_DEF void advnn_softmax_rows(int M, int N, const float *x, int ldx, float *y, int ldy);
ADVNN_SIMD_DEF void advnn_log_softmax_rows(int M, int N, const float *x, int ldx, float *y, int ldy);

/* ---- Convolution, pooling, upsampling: one sample, NHWC, contiguous (1-D is the H = 1 case) ----
 * x is H x W x C: element (h, w, c) at x[(h*W + w)*C + c]. Empty sizes (H, W, C, Ho, Wo <= 0) make
 * these kernels no-ops. Flat indices must fit in int32 (H*W*C < 2^31). Inputs and outputs must not
 * overlap. Copies, maxima and pure sums (im2col, col2im, maxpool, upsample) give bitwise identical
 * results on every path; avgpool agrees to the rounding of one multiply.
 *
 * im2col: cols is (Ho*Wo) x (KH*KW*C), row stride ldcols >= KH*KW*C. Row oh*Wo + ow, column
 * (kh*KW + kw)*C + c holds x(oh*SH - PT + kh, ow*SW - PL + kw, c), or 0 where that tap lies outside
 * the image. The column order (kh, kw, c) is the Keras/TF kernel layout (KH, KW, Cin, Cout) flattened
 * to (KH*KW*Cin) x Cout, so a convolution is
 *   advnn_sgemm(0, 0, Ho*Wo, Cout, KH*KW*C, 1, cols, ldcols, kernel, Cout, 0, y, Cout, work).
 * Keras padding: "valid": PT = PL = 0, Ho = (H - KH)/SH + 1; "same": Ho = ceil(H/SH),
 * PT = max((Ho - 1)*SH + KH - H, 0) / 2 (rounded down: an odd extra pad goes after). Same for W.
 * Columns >= KH*KW*C of each cols row are not touched. */
ADVNN_SIMD_DEF void advnn_im2col(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                 int Wo, const float *x, float *cols, int ldcols);
/* A convolution of one image without the cols matrix: z = cols kernel + bias (bias may be NULL), and
 * with relu also y = max(z, 0) (y may be z), or with prelu (F slopes, relu 0; y apart from z)
 * y = z > 0 ? z : prelu[f] z as advnn_act_forward(ADVNN_ACT_PRELU) computes it, bit for bit what
 *   advnn_sgemm_bias_relu(Ho*Wo, F, KKC, cols, KKC, kernel, F, bias, relu, z, F, y, F, work)
 * gives for cols from advnn_im2col on the same arguments (KKC = KH*KW*C; kernel KKC x F). Each output
 * position reads its KH runs of KW*C taps in a zero-padded copy of the image instead of a row of cols,
 * (cols holds KH*KW copies of the input: 9 for a 3x3 kernel). work: advnn_conv_implicit_floats
 * floats (any alignment). With F = 1 the sums are those of the matrix-vector path that product takes.
 * Returns 0, having written nothing, where it does not apply: without the AVX2 kernels (AVX2 absent or
 * ADVNN_FORCE_SCALAR), KKC > 256 (the GEMM then sums in blocks of K), Ho*Wo < 2 (a matrix-vector path),
 * F = 1 with KW*C < 8 (kernel rows shorter than a vector), relu and prelu both given. */
ADVNN_SIMD_DEF size_t advnn_conv_implicit_floats(int C, int KH, int KW, int SH, int SW, int Ho, int Wo, int F);
ADVNN_SIMD_DEF int advnn_conv_implicit(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                       int Wo, const float *x, int F, const float *kernel, const float *bias, int relu,
                                       const float *prelu, float *z, float *y, float *work);
/* A convolution's weight gradient over n images without their cols matrix: dW (KKC x F, rows F apart)
 * += cols^T dz, bit for bit advnn_im2col of image j (x + j*H*W*C) into rows j*Ho*Wo.. of cols, then
 *   advnn_sgemm(1, 0, KKC, F, n*Ho*Wo, 1, cols, ld, dz, F, 1, dW, F, work)
 * (that GEMM's sums: blocks of 256 rows of cols from the first, each summed in order from zero and
 * added to dW). The taps are read in zero-padded copies of the images instead (cols holds KH*KW copies
 * of the input: W3's 40x40x10 layers wrote and read 4 MiB of it per 7 images). work:
 * advnn_conv_wgrad_floats floats. Returns 0, having written nothing, where it does not apply: without
 * the AVX2 kernels, F outside 2..12, KKC < 5 or > 800 (the GEMM's other paths), and kernel rows of
 * fewer than 8 taps (KW*C < 8: a partial vector per row and per column, slower than im2col and the
 * GEMM: W3's 1-channel 40x40 layer 24 against 14 us an image). */
ADVNN_SIMD_DEF size_t advnn_conv_wgrad_floats(int C, int KH, int KW, int SH, int SW, int Ho, int Wo);
ADVNN_SIMD_DEF int advnn_conv_wgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                    int Wo, const float *x, int n, const float *dz, int F, float *dW, float *work);
/* A convolution's input gradient over n images without their dcols matrix: dx (n x H x W x C) =, bit for
 * bit, advnn_col2im onto zeros of image j's dcols from
 *   advnn_sgemm(0, 1, Ho*Wo, KKC, F, 1, dz + j*Ho*Wo*F, F, kernel, F, 0, dcols, ld, work)
 * (dx is written, not added to; kernel is KKC x F as for advnn_conv_implicit). At stride 1 with few
 * channels the dcols GEMM (K = F, 1-10 for W3) is bound by its stores, and col2im reads it all back.
 * work: advnn_conv_dgrad_floats floats. Returns 0, having written nothing, where it does not apply:
 * without the AVX2 kernels, stride > 1, C > 12, F > 256 (the GEMM's sums in blocks), Ho*Wo < 2 or
 * KKC < 5 (the GEMM's matrix-vector paths), padding >= the kernel, or a kernel holding Inf or NaN
 * (col2im drops the padding taps, which would then add NaN here). */
ADVNN_SIMD_DEF size_t advnn_conv_dgrad_floats(int H, int W, int KH, int KW, int F);
/* 1 where advnn_conv_dgrad applies (it returns this and, if 1, writes dx): a caller that must prepare dx
 * for the other way (zero it, or keep adding) asks first. */
ADVNN_SIMD_DEF int advnn_conv_dgrad_ok(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                       int Wo, int n, int F, const float *kernel);
ADVNN_SIMD_DEF int advnn_conv_dgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                    int Wo, const float *dz, int n, int F, const float *kernel, float *dx, float *work);
/* The adjoint of im2col: dx(ih, iw, c) += cols[row, col] for every in-range tap (out-of-range taps are
 * dropped); dx accumulates. Each dx element receives its terms in increasing (row, kh, kw) order. */
ADVNN_SIMD_DEF void advnn_col2im(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                 int Wo, const float *cols, int ldcols, float *dx);

/* Pooling, valid padding (every window inside the image); y is Ho x Wo x C with Ho = (H - KH)/SH + 1,
 * Wo = (W - KW)/SW + 1 (H >= KH, W >= KW). Windows may overlap (stride < kernel).
 * maxpool_fwd: y = window maximum; argmax (NULL, or Ho*Wo*C int32) gets the flat input index
 * (h*W + w)*C + c of the first maximum in scan order (kh-major, then kw). Inputs must not hold NaN.
 * maxpool_bwd: dx[argmax[k]] += dy[k] for k < Ho*Wo*C, in increasing k (dx accumulates).
 * avgpool_fwd: y = (sum of the KH*KW window, kh-major) * (1/(KH*KW)).
 * avgpool_bwd: dx(window) += dy * (1/(KH*KW)) (dx accumulates). */
ADVNN_SIMD_DEF void advnn_maxpool_fwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y,
                                      int32_t *argmax);
ADVNN_SIMD_DEF void advnn_maxpool_bwd(int Ho, int Wo, int C, const float *dy, const int32_t *argmax, float *dx);
ADVNN_SIMD_DEF void advnn_avgpool_fwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y);
ADVNN_SIMD_DEF void advnn_avgpool_bwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *dy,
                                      float *dx);

/* Nearest-neighbour upsampling by integer factors FH, FW >= 1: y is (H*FH) x (W*FW) x C with
 * y(h*FH + i, w*FW + j, c) = x(h, w, c). Backward: dx(h, w, c) += sum over the FH x FW block of dy
 * (summed i-major, then added to dx; dx accumulates). */
ADVNN_SIMD_DEF void advnn_upsample_fwd(int H, int W, int C, int FH, int FW, const float *x, float *y);
ADVNN_SIMD_DEF void advnn_upsample_bwd(int H, int W, int C, int FH, int FW, const float *dy, float *dx);

/* ---- LSTM cell, Keras gate order (i, f, c, o), n rows (samples) at one time step ----
 * Row r of z (stride ldz >= 4H) holds the pre-activations [zi | zf | zg | zo], H each (input
 * projection + recurrent projection + bias). c_prev, c, dc, dc_prev have row stride ldc >= H;
 * h_prev, h, dh, dh_prev have row stride ldh >= H. mask: NULL (every row active) or n floats;
 * a row with mask[r] == 0 is masked (its state is carried through the step), any other value is active.
 *
 * Forward: z is overwritten with the activated gates [i, f, g, o] = [sig(zi), sig(zf), tanh(zg), sig(zo)]
 * (for every row, masked or not: backward reads them). Active rows: c = f*c_prev + i*g, h = o*tanh(c).
 * Masked rows: c = c_prev, h = h_prev.
 * In place: c may be c_prev exactly and h may be h_prev exactly; no other overlaps. */
ADVNN_SIMD_DEF void advnn_lstm_cell_fwd(int n, int H, float *z, int ldz, const float *c_prev, const float *h_prev,
                                        float *c, float *h, int ldc, int ldh, const float *mask);
/* Backward of one step. Inputs: z = the activated gates left by advnn_lstm_cell_fwd, c_prev, c (this
 * step's cell state), dh = total dL/dh of this step (from the layer above and from step t+1's gates),
 * dc = dL/dc arriving from step t+1 (NULL = 0).
 * Active rows, with tc = tanh(c) and dct = dc + dh*o*(1 - tc^2):
 *   dz = [dct*g*i*(1-i), dct*c_prev*f*(1-f), dct*i*(1-g^2), dh*tc*o*(1-o)]   (written, stride ldz)
 *   dc_prev = dct*f                                                          (written)
 *   dh_prev = 0
 * Masked rows: dz = 0, dc_prev = dc (0 if dc == NULL), dh_prev = dh.
 * dh_prev (NULL = not written) is the part of dL/dh_prev that does not flow through z; the caller adds
 * the recurrent term dz * W_h^T to it, e.g. advnn_sgemm(0, 1, n, H, 4H, 1, dz, ldz, Wh, 4H, 1, dh_prev,
 * ldh, work) with W_h stored H x 4H (Keras recurrent_kernel).
 * In place: dz may be z exactly, dc_prev may be dc exactly, dh_prev may be dh exactly; no other overlaps. */
ADVNN_SIMD_DEF void advnn_lstm_cell_bwd(int n, int H, const float *z, int ldz, const float *c_prev, const float *c,
                                        const float *dh, const float *dc, float *dz, float *dc_prev, float *dh_prev,
                                        int ldc, int ldh, const float *mask);

/* ---- LSTM over one sequence for inference, the gates packed ----
 * advnn_lstm_cell_fwd reads a unit's four gates H apart: at H = 10 (W2) each gate is a full and a
 * two-lane vector, ten transcendental calls and sixteen partial loads/stores a step. Packed, each
 * block of 8 units holds [i f g o] 8 lanes each, and the last H % 8 units' gates share vectors (2 or 4
 * lanes a gate when H % 8 <= 2 or <= 4; else a padded block), so a step is full vectors only.
 * advnn_lstm_packed_width(H): the packed row width L (a multiple of 8, >= 4H), or 0 where this build
 *   has no vector body for advnn_lstm_seq_fwd (the per-step kernels are then as fast).
 * advnn_lstm_pack(F, H, L, W, U, b, Wp, Up, bp): Keras-order W (F x 4H), U (H x 4H), b (4H, or NULL)
 *   to Wp (F x L), Up (H x L), bp (L); the unused columns 0.
 * advnn_lstm_seq_fwd(n, T, F, H, x, Wp, bp, Up, z, mask, hseq, hlast, state): n samples, each from a
 *   zero state. Step t's gates are z_t = x_t Wp + bp (x: n x T x F) plus, for t > 0, h_{t-1} Up, each
 *   column summed as advnn_sgemm's blocked path sums a row of more than one (k in order from 0, blocks
 *   of 256, each added to z), then the cell of advnn_lstm_cell_fwd: the results are bit for bit those
 *   of advnn_sgemm + advnn_add_bias + the per-step kernels on a batch of more than one row, whatever n
 *   (the vector body; the scalar one is a reference). z: NULL, the kernel projects each step's input
 *   itself (for weights that stay in L1); or n x T x L values x_t Wp + bp computed before (x, Wp, bp
 *   unused), overwritten. mask: NULL or n x T values (0: that step is masked, the state carried).
 *   hseq: NULL or n x T x H, every step's h; hlast: NULL or n x H, the last h. state: 6 * H + 32
 *   floats of scratch. */
ADVNN_SIMD_DEF int advnn_lstm_packed_width(int H);
ADVNN_SIMD_DEF void advnn_lstm_pack(int F, int H, int L, const float *W, const float *U, const float *b, float *Wp,
                                    float *Up, float *bp);
ADVNN_SIMD_DEF void advnn_lstm_seq_fwd(int n, int T, int F, int H, const float *x, const float *Wp, const float *bp,
                                       const float *Up, float *z, const float *mask, float *hseq, float *hlast,
                                       float *state);

/* Adam / Nadam on n weights (the optimizers' inner loop). g_j = (float)(grad[j] * scale) (the product
 * in double); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g; den = sqrt(v) ib2 + eps;
 *   Adam:  w -= a m / den + lwd w           Nadam (nadam != 0): w -= (c1 g + a m) / den + lwd w
 * each operation rounded on its own in this order (no fused multiply-add), so every path gives the
 * same bits. commit == 0 only checks: returns 1 when every new w, m, v would be finite, writing
 * nothing; commit != 0 writes them (the return value is then 1). */
ADVNN_SIMD_DEF int advnn_adam_update(int64_t n, float *w, float *m, float *v, const float *grad, double scale, float a,
                                     float c1, float ib2, float b1, float b2, float eps, float lwd, int nadam,
                                     int commit);

#ifdef __cplusplus
}
#endif
#endif /* ADVNN_SIMD_H */

/* ============================================================================================ */
/*                                      IMPLEMENTATION                                          */
/* ============================================================================================ */
#if defined(ADVNN_SIMD_IMPLEMENTATION) && !defined(ADVNN_SIMD_IMPLEMENTED)
#define ADVNN_SIMD_IMPLEMENTED

#include <math.h>
#include <string.h>
#include <stddef.h>

/* ---- ISA selection ----
 * ADVNN__AVX2: the AVX2+FMA bodies are compiled. Either directly (-mavx2 -mfma: the whole TU may use
 * them, no dispatch), or, with ADVNN__RUNTIME, beside the scalar ones for runtime dispatch: gcc/clang
 * on x86-64 without -mavx2 -mfma compile them with __attribute__((target("avx2,fma"))) (ADVNN__AVX2_FN)
 * and every public kernel checks a cached choice (advnn__use_vec) once per call. */
#if !defined(ADVNN_FORCE_SCALAR) && defined(__AVX2__) && defined(__FMA__)
#define ADVNN__AVX2 1
#include <immintrin.h>
#include <sleef.h>
#elif !defined(ADVNN_FORCE_SCALAR) && defined(__ARM_NEON) && defined(__aarch64__)
#define ADVNN__NEON 1
#include <arm_neon.h>
#include <sleef.h>
#elif !defined(ADVNN_FORCE_SCALAR) && !defined(ADVNN_NO_DISPATCH) && defined(__x86_64__) && \
    (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER)
#define ADVNN__AVX2 1
#define ADVNN__RUNTIME 1
#include <immintrin.h> /* gcc >= 4.9 / clang: every intrinsic is declared, usable in target functions */
#include <stdlib.h>    /* getenv */
#else
#define ADVNN__SCALAR 1
#endif
#if defined(ADVNN__AVX2) || defined(ADVNN__NEON)
#define ADVNN__VECTOR 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ADVNN__UNUSED __attribute__((unused))
#define ADVNN__ALIGN64 __attribute__((aligned(64)))
#define ADVNN__NOINLINE __attribute__((noinline))
#define ADVNN__RESTRICT __restrict
#elif defined(_MSC_VER)
#define ADVNN__UNUSED
#define ADVNN__ALIGN64 __declspec(align(64))
#define ADVNN__NOINLINE __declspec(noinline)
#define ADVNN__RESTRICT __restrict
#else
#define ADVNN__UNUSED
#define ADVNN__ALIGN64
#define ADVNN__NOINLINE
#define ADVNN__RESTRICT
#endif
/* Internal functions. */
#define ADVNN__FN static ADVNN__UNUSED
/* Attribute of every function that holds AVX2 code (the vector helpers, the _v kernel bodies, the
 * 6x16 micro-kernel): target("avx2,fma") in the runtime-dispatch build, empty otherwise. */
#ifndef ADVNN__AVX2_FN
#ifdef ADVNN__RUNTIME
#define ADVNN__AVX2_FN __attribute__((target("avx2,fma")))
#else
#define ADVNN__AVX2_FN
#endif
#endif
/* The vector body of a public kernel (advnn__NAME_v), called by advnn_NAME when the vector path is live. */
#define ADVNN__VKFN static ADVNN__UNUSED ADVNN__AVX2_FN

#ifdef __cplusplus
extern "C" {
#endif

typedef ptrdiff_t advnn__idx;

/* ---- Runtime dispatch state (ADVNN__RUNTIME only) ----
 * advnn__isa_sel: 0 = not chosen yet, 1 = scalar, 2 = avx2+fma. Chosen at the first kernel call (or
 * advnn_simd_name / advnn_simd_force); atomic (relaxed) so concurrent first calls are well defined.
 * ADVNN__VEC_LIVE(): is the vector path live for this call? Constant in the other builds. */
#if defined(ADVNN__RUNTIME)
static int advnn__isa_sel;
static int advnn__cpu_avx2_fma(void) {
    __builtin_cpu_init(); /* idempotent; needed if this runs before libgcc's constructors */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
/* the automatic choice: the best the CPU runs, unless ADVNN_SIMD=scalar asks for the scalar path */
static int advnn__isa_default(void) {
    int s = advnn__cpu_avx2_fma() ? 2 : 1;
#ifndef ADVNN_SIMD_NO_GETENV
    const char *e = getenv("ADVNN_SIMD");
    if (e && strcmp(e, "scalar") == 0) s = 1;
#endif
    return s;
}
ADVNN__NOINLINE static int advnn__isa_init(void) {
    int expect = 0, s = advnn__isa_default();
    /* first writer wins (another thread or advnn_simd_force may have chosen meanwhile) */
    if (!__atomic_compare_exchange_n(&advnn__isa_sel, &expect, s, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) s = expect;
    return s;
}
static inline __attribute__((always_inline)) int advnn__use_vec(void) {
    int s = __atomic_load_n(&advnn__isa_sel, __ATOMIC_RELAXED);
    if (__builtin_expect(s == 0, 0)) s = advnn__isa_init();
    return s == 2;
}
#define ADVNN__VEC_LIVE() advnn__use_vec()
#elif defined(ADVNN__VECTOR)
#define ADVNN__VEC_LIVE() 1
#else
#define ADVNN__VEC_LIVE() 0
#endif

ADVNN_SIMD_DEF const char *advnn_simd_name(void) {
#if defined(ADVNN__RUNTIME)
    return advnn__use_vec() ? "avx2+fma" : "scalar";
#elif defined(ADVNN__AVX2)
    return "avx2+fma";
#elif defined(ADVNN__NEON)
    return "neon";
#else
    return "scalar";
#endif
}

ADVNN_SIMD_DEF int advnn_simd_force(const char *isa) {
    int automatic = !isa || !*isa || strcmp(isa, "auto") == 0;
    int want_vec = isa && (strcmp(isa, "avx2") == 0 || strcmp(isa, "avx2+fma") == 0);
#if defined(ADVNN__RUNTIME)
    int s;
    if (automatic) s = advnn__isa_default();
    else if (strcmp(isa, "scalar") == 0) s = 1;
    else if (want_vec && advnn__cpu_avx2_fma()) s = 2;
    else return -1;
    __atomic_store_n(&advnn__isa_sel, s, __ATOMIC_RELAXED);
    return 0;
#else
    /* one compiled-in path: only that one (or "auto") can be chosen */
#if defined(ADVNN__AVX2)
    if (want_vec) return 0;
#else
    (void)want_vec;
#endif
    return automatic || strcmp(isa, advnn_simd_name()) == 0 ? 0 : -1;
#endif
}

/* ============================================================================================ */
/* Scalar reference bodies (always compiled; the live path when no vector ISA is selected).     */
/* ============================================================================================ */

ADVNN_SIMD_DEF void advnn_sgemm_ref(int transA, int transB, int M, int N, int K, float alpha,
                                    const float *A, int lda, const float *B, int ldb, float beta,
                                    float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(advnn__idx)k * lda + i] : A[(advnn__idx)i * lda + k];
                float b = transB ? B[(advnn__idx)j * ldb + k] : B[(advnn__idx)k * ldb + j];
                s += a * b;
            }
            float *c = &C[(advnn__idx)i * ldc + j];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

ADVNN__FN void advnn__mul_acc_ref(int n, const float *a, const float *b, float *y) {
    for (int i = 0; i < n; i++) { float p = a[i] * b[i]; y[i] += p; }   /* two statements: never contracted */
}
ADVNN__FN void advnn__axpy_ref(int n, float a, const float *x, int incx, float *y, int incy) {
    for (int i = 0; i < n; i++) y[(advnn__idx)i * incy] += a * x[(advnn__idx)i * incx];
}
ADVNN__FN void advnn__scale_ref(int n, float a, float *x, int incx) {
    for (int i = 0; i < n; i++) x[(advnn__idx)i * incx] *= a;
}
ADVNN__FN float advnn__dot_ref(int n, const float *x, int incx, const float *y, int incy) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[(advnn__idx)i * incx] * y[(advnn__idx)i * incy];
    return s;
}
ADVNN__FN float advnn__sum_ref(int n, const float *x, int incx) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[(advnn__idx)i * incx];
    return s;
}
ADVNN__FN float advnn__sumsq_ref(int n, const float *x, int incx) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) { float v = x[(advnn__idx)i * incx]; s += v * v; }
    return s;
}
ADVNN__FN float advnn__max_ref(int n, const float *x, int incx) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) { float v = x[(advnn__idx)i * incx]; m = v > m ? v : m; }
    return m;
}
ADVNN__FN void advnn__add_bias_ref(int M, int N, float *X, int ldx, const float *b) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) X[(advnn__idx)i * ldx + j] += b[j];
}
ADVNN__FN void advnn__bn_sums_ref(int M, int N, const float *x, int ld, const double *c, double *s) {
    for (int i = 0; i < M; i++) {
        const float *r = x + (advnn__idx)i * ld;
        if (c) for (int j = 0; j < N; j++) { double d = r[j] - c[j]; d = d * d; s[j] += d; }
        else for (int j = 0; j < N; j++) s[j] += r[j];
    }
}
ADVNN__FN void advnn__bn_sums2_ref(int M, int N, const float *a, const float *b, int ld, double *s) {
    for (int i = 0; i < M; i++) {
        const float *ra = a + (advnn__idx)i * ld, *rb = b + (advnn__idx)i * ld;
        for (int j = 0; j < N; j++) { double d = ra[j], p = d * rb[j]; s[j] += d; s[N + j] += p; }
    }
}
/* set: dx written as the sums onto zeros leave it (0 + v: a -0 term gives +0), never read */
ADVNN__FN void advnn__bn_bwd_dx_ref(int M, int N, const float *dy, const float *xh, int ld, const double *k, double R,
                                    const double *s, float *dx, int set) {
    for (int i = 0; i < M; i++) {
        const float *rd = dy + (advnn__idx)i * ld, *rx = xh + (advnn__idx)i * ld;
        float *ro = dx + (advnn__idx)i * ld;
        for (int j = 0; j < N; j++) {
            double t = R * rd[j], u = rx[j] * s[N + j];
            t = t - s[j]; t = t - u; t = k[j] * t;
            ro[j] = (set ? 0.0f : ro[j]) + (float)t;
        }
    }
}
ADVNN__FN void advnn__bn_rows_ref(int M, int N, const float *x, int ld, const float *mean, const float *istd,
                                  const float *gamma, const float *beta, float *xhat, float *y) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            advnn__idx k = (advnn__idx)i * ld + j;
            float h = (x[k] - mean[j]) * istd[j], p = gamma[j] * h;   /* separate statements: no FMA under ISO C */
            if (xhat) xhat[k] = h;
            y[k] = p + beta[j];
        }
}
ADVNN__FN void advnn__col_sums_ref(int M, int N, const float *X, int ldx, float *out) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) out[j] += X[(advnn__idx)i * ldx + j];
}
ADVNN__FN void advnn__row_max_ref(int M, int N, const float *X, int ldx, float *out) {
    for (int i = 0; i < M; i++) out[i] = advnn__max_ref(N, X + (advnn__idx)i * ldx, 1);
}
ADVNN__FN void advnn__vexp_ref(int n, const float *x, float *y) { for (int i = 0; i < n; i++) y[i] = expf(x[i]); }
ADVNN__FN void advnn__vlog_ref(int n, const float *x, float *y) { for (int i = 0; i < n; i++) y[i] = logf(x[i]); }
ADVNN__FN void advnn__vexp_f64_ref(int n, const double *x, double *y) { for (int i = 0; i < n; i++) y[i] = exp(x[i]); }
ADVNN__FN void advnn__vlog_f64_ref(int n, const double *x, double *y) { for (int i = 0; i < n; i++) y[i] = log(x[i]); }
ADVNN__FN void advnn__vlog1p_f64_ref(int n, const double *x, double *y) { for (int i = 0; i < n; i++) y[i] = log1p(x[i]); }
ADVNN__FN void advnn__verf_f64_ref(int n, const double *x, double *y) { for (int i = 0; i < n; i++) y[i] = erf(x[i]); }
/* advnn_verf_e_f64's coefficients: 2/sqrt(pi) (-1)^k / (k! (2k + 1)), and R's least-squares fit in
 * relative error on [0.75, 6] in the variable s = (2/(2+x) - ERF_TM) / ERF_TH in [-1, 1]
 * (tools/fit_erf.py derives them with 50-digit arithmetic) */
static const double advnn__erf_ta[16] ADVNN__UNUSED = {
    1.1283791670955126, -0.37612638903183754, 0.11283791670955126, -0.026866170645131252,
    0.005223977625442188, -0.0008548327023450853, 0.00012055332981789664, -1.492565035840625e-05,
    1.6462114365889248e-06, -1.6365844691234924e-07, 1.4807192815879218e-08,
    -1.2290555301717928e-09, 9.422759064650411e-11, -6.7113668551641105e-12,
    4.4632242632864775e-13, -2.7835162072109215e-14};
static const double advnn__erf_rc[18] ADVNN__UNUSED = {
    0.2458108043840275, 0.19869989217993134, 0.05382333879871981, 0.00854556114648586,
    0.0002345901937576401, -0.00017016631326209394, -1.184981615332508e-05, 5.47629499165219e-06,
    2.1486351448892898e-07, -2.310382409313351e-07, 1.236388279203136e-08, 9.166829971706945e-09,
    -1.867923492805699e-09, -1.774636066840376e-10, 1.319096520830654e-10, -1.4475508256584406e-11,
    -4.8934901888571094e-12, 1.5065321166830074e-12};
#define ADVNN__ERF_TM 0.48863636363636365
#define ADVNN__ERF_ITH (1.0 / 0.23863636363636365)
ADVNN__FN double advnn__erf_e1(double x, double e) {
    double a = fabs(x), y, p;
    int k;
    if (a < 0.75) {
        double z = a * a;
        for (p = advnn__erf_ta[15], k = 14; k >= 0; k--) p = p * z + advnn__erf_ta[k];
        y = a * p;
    } else if (a < 6.0) {
        double sv = (2.0 / (2.0 + a) - ADVNN__ERF_TM) * ADVNN__ERF_ITH;
        for (p = advnn__erf_rc[17], k = 16; k >= 0; k--) p = p * sv + advnn__erf_rc[k];
        y = 1.0 - e * p;
    } else if (a >= 6.0) y = 1.0;
    else return x;   /* NaN */
    return x < 0 ? -y : y;
}
ADVNN__FN void advnn__verf_e_f64_ref(int n, const double *x, const double *e, double *y) {
    for (int i = 0; i < n; i++) y[i] = advnn__erf_e1(x[i], e[i]);
}
ADVNN__FN void advnn__vtanh_ref(int n, const float *x, float *y) { for (int i = 0; i < n; i++) y[i] = tanhf(x[i]); }

ADVNN__FN float advnn__sigmoid1(float x) {
    float e = expf(-fabsf(x)); /* in (0,1]: no overflow for any x */
    float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}
ADVNN__FN float advnn__softplus1(float x) { return log1pf(expf(-fabsf(x))) + (x > 0.0f ? x : 0.0f); }

ADVNN__FN float advnn__act1(advnn_act act, float v, float param, float a) {
    switch (act) {
    case ADVNN_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ADVNN_ACT_LEAKY_RELU: return v > 0.0f ? v : param * v;
    case ADVNN_ACT_PRELU: return v > 0.0f ? v : a * v;
    case ADVNN_ACT_ELU: return v > 0.0f ? v : param * expm1f(v);
    case ADVNN_ACT_SIGMOID: return advnn__sigmoid1(v);
    case ADVNN_ACT_TANH: return tanhf(v);
    case ADVNN_ACT_SOFTPLUS: return advnn__softplus1(v);
    default: return v;
    }
}
/* f'(x) from x (xv) and/or y (yv). */
ADVNN__FN float advnn__dact1(advnn_act act, float xv, float yv, float param, float a) {
    switch (act) {
    case ADVNN_ACT_RELU: return xv > 0.0f ? 1.0f : 0.0f;
    case ADVNN_ACT_LEAKY_RELU: return xv > 0.0f ? 1.0f : param;
    case ADVNN_ACT_PRELU: return xv > 0.0f ? 1.0f : a;
    case ADVNN_ACT_ELU: return xv > 0.0f ? 1.0f : param * expf(xv);
    case ADVNN_ACT_SIGMOID: return yv * (1.0f - yv);
    case ADVNN_ACT_TANH: return 1.0f - yv * yv;
    case ADVNN_ACT_SOFTPLUS: return advnn__sigmoid1(xv);
    default: return 1.0f;
    }
}
ADVNN__FN int advnn__act_reads_x(advnn_act act) {
    return act == ADVNN_ACT_RELU || act == ADVNN_ACT_LEAKY_RELU || act == ADVNN_ACT_PRELU ||
           act == ADVNN_ACT_ELU || act == ADVNN_ACT_SOFTPLUS;
}
ADVNN__FN int advnn__act_reads_y(advnn_act act) { return act == ADVNN_ACT_SIGMOID || act == ADVNN_ACT_TANH; }

ADVNN__FN void advnn__act_forward_ref(advnn_act act, int M, int N, const float *x, int ldx, float *y,
                                      int ldy, float param, const float *alpha) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        for (int j = 0; j < N; j++)
            yr[j] = advnn__act1(act, xr[j], param, act == ADVNN_ACT_PRELU ? alpha[j] : 0.0f);
    }
}
ADVNN__FN void advnn__act_backward_ref(advnn_act act, int M, int N, const float *x, int ldx,
                                       const float *y, int ldy, const float *dy, int lddy, float *dx,
                                       int lddx, float param, const float *alpha, float *dalpha) {
    int rx = advnn__act_reads_x(act), ry = advnn__act_reads_y(act);
    for (int i = 0; i < M; i++) {
        const float *dyr = dy + (advnn__idx)i * lddy;
        float *dxr = dx + (advnn__idx)i * lddx;
        for (int j = 0; j < N; j++) {
            float xv = rx ? x[(advnn__idx)i * ldx + j] : 0.0f;
            float yv = ry ? y[(advnn__idx)i * ldy + j] : 0.0f;
            float g = dyr[j];
            if (act == ADVNN_ACT_PRELU && dalpha && xv <= 0.0f) dalpha[j] += g * xv;
            dxr[j] = g * advnn__dact1(act, xv, yv, param, act == ADVNN_ACT_PRELU ? alpha[j] : 0.0f);
        }
    }
}
ADVNN__FN void advnn__softmax_rows_ref(int M, int N, const float *x, int ldx, float *y, int ldy) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        float m = advnn__max_ref(N, xr, 1), s = 0.0f;
        for (int j = 0; j < N; j++) { yr[j] = expf(xr[j] - m); s += yr[j]; }
        float r = 1.0f / s;
        for (int j = 0; j < N; j++) yr[j] *= r;
    }
}
ADVNN__FN void advnn__log_softmax_rows_ref(int M, int N, const float *x, int ldx, float *y, int ldy) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        float m = advnn__max_ref(N, xr, 1), s = 0.0f;
        for (int j = 0; j < N; j++) s += expf(xr[j] - m);
        float l = logf(s); /* (x - m) - log(s): m + log(s) would round away log(s) for |m| >> 1 */
        for (int j = 0; j < N; j++) yr[j] = (xr[j] - m) - l;
    }
}

/* ---- convolution / pooling / upsampling references: one element at a time ---- */
ADVNN__FN void advnn__im2col_ref(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *x, float *cols, int ldcols) {
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            float *row = cols + ((advnn__idx)oh * Wo + ow) * ldcols;
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    int ih = oh * SH - PT + kh, iw = ow * SW - PL + kw;
                    float *dst = row + ((advnn__idx)kh * KW + kw) * C;
                    if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
                        const float *src = x + ((advnn__idx)ih * W + iw) * C;
                        for (int c = 0; c < C; c++) dst[c] = src[c];
                    } else {
                        for (int c = 0; c < C; c++) dst[c] = 0.0f;
                    }
                }
        }
}
ADVNN__FN void advnn__col2im_ref(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *cols, int ldcols, float *dx) {
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const float *row = cols + ((advnn__idx)oh * Wo + ow) * ldcols;
            for (int kh = 0; kh < KH; kh++)
                for (int kw = 0; kw < KW; kw++) {
                    int ih = oh * SH - PT + kh, iw = ow * SW - PL + kw;
                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                    float *d = dx + ((advnn__idx)ih * W + iw) * C;
                    const float *s = row + ((advnn__idx)kh * KW + kw) * C;
                    for (int c = 0; c < C; c++) d[c] += s[c];
                }
        }
}
ADVNN__FN void advnn__maxpool_fwd_ref(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y,
                                      int32_t *argmax) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++)
            for (int c = 0; c < C; c++) {
                advnn__idx best_i = ((advnn__idx)oh * SH * W + (advnn__idx)ow * SW) * C + c;
                float best = x[best_i];
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) {
                        advnn__idx k = ((advnn__idx)(oh * SH + kh) * W + ow * SW + kw) * C + c;
                        if (x[k] > best) { best = x[k]; best_i = k; }
                    }
                advnn__idx o = ((advnn__idx)oh * Wo + ow) * C + c;
                y[o] = best;
                if (argmax) argmax[o] = (int32_t)best_i;
            }
}
ADVNN__FN void advnn__avgpool_fwd_ref(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    float inv = 1.0f / (float)(KH * KW);
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++)
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) s += x[((advnn__idx)(oh * SH + kh) * W + ow * SW + kw) * C + c];
                y[((advnn__idx)oh * Wo + ow) * C + c] = s * inv;
            }
}
ADVNN__FN void advnn__avgpool_bwd_ref(int H, int W, int C, int KH, int KW, int SH, int SW, const float *dy, float *dx) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    float inv = 1.0f / (float)(KH * KW);
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++)
            for (int c = 0; c < C; c++) {
                float g = dy[((advnn__idx)oh * Wo + ow) * C + c] * inv;
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) dx[((advnn__idx)(oh * SH + kh) * W + ow * SW + kw) * C + c] += g;
            }
}
ADVNN__FN void advnn__upsample_fwd_ref(int H, int W, int C, int FH, int FW, const float *x, float *y) {
    for (int oh = 0; oh < H * FH; oh++)
        for (int ow = 0; ow < W * FW; ow++)
            for (int c = 0; c < C; c++)
                y[((advnn__idx)oh * W * FW + ow) * C + c] = x[((advnn__idx)(oh / FH) * W + ow / FW) * C + c];
}
ADVNN__FN void advnn__upsample_bwd_ref(int H, int W, int C, int FH, int FW, const float *dy, float *dx) {
    for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++)
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int i = 0; i < FH; i++)
                    for (int j = 0; j < FW; j++) s += dy[((advnn__idx)(h * FH + i) * W * FW + w * FW + j) * C + c];
                dx[((advnn__idx)h * W + w) * C + c] += s;
            }
}

/* ---- LSTM cell references ---- */
ADVNN__FN void advnn__lstm_cell_fwd_ref(int n, int H, float *z, int ldz, const float *c_prev, const float *h_prev,
                                        float *c, float *h, int ldc, int ldh, const float *mask) {
    for (int r = 0; r < n; r++) {
        float *zr = z + (advnn__idx)r * ldz;
        const float *cp = c_prev + (advnn__idx)r * ldc, *hp = h_prev + (advnn__idx)r * ldh;
        float *cr = c + (advnn__idx)r * ldc, *hr = h + (advnn__idx)r * ldh;
        int active = !mask || mask[r] != 0.0f;
        for (int j = 0; j < H; j++) {
            float i = advnn__sigmoid1(zr[j]), f = advnn__sigmoid1(zr[H + j]);
            float g = tanhf(zr[2 * H + j]), o = advnn__sigmoid1(zr[3 * H + j]);
            zr[j] = i; zr[H + j] = f; zr[2 * H + j] = g; zr[3 * H + j] = o;
            if (active) {
                float cv = f * cp[j] + i * g;
                cr[j] = cv;
                hr[j] = o * tanhf(cv);
            } else {
                cr[j] = cp[j];
                hr[j] = hp[j];
            }
        }
    }
}
/* The packed layout: lanes per gate of the last H % 8 units (0: none), and gate q's column of unit u. */
ADVNN__FN int advnn__lstm_slot(int H) { int r = H % 8; return r == 0 ? 0 : r <= 2 ? 2 : r <= 4 ? 4 : 8; }
/* the packed width: 32 columns per block of 8 units, 4 gate slots for the rest */
ADVNN__FN int advnn__lstm_width(int H) { return 32 * (H / 8) + 4 * advnn__lstm_slot(H); }
ADVNN__FN int advnn__lstm_pcol(int H, int q, int u) {
    int nf = H / 8;
    return u < 8 * nf ? 32 * (u / 8) + 8 * q + u % 8 : 32 * nf + q * advnn__lstm_slot(H) + (u - 8 * nf);
}
ADVNN__FN void advnn__lstm_seq_fwd_ref(int T, int F, int H, const float *x, const float *Wp, const float *bp,
                                       const float *Up, float *z, const float *mask, float *hseq, float *hlast,
                                       float *state) {
    const int L = advnn__lstm_width(H);
    float *c = state, *h = state + H;
    for (int j = 0; j < 2 * H; j++) state[j] = 0.0f;
    for (int t = 0; t < T; t++) {
        float *zt = z ? z + (advnn__idx)t * L : state + 2 * H;
        for (int j = 0; !z && j < L; j++) {
            float s = 0.0f;
            for (int k = 0; k < F; k++) s += x[(advnn__idx)t * F + k] * Wp[(advnn__idx)k * L + j];
            zt[j] = s + bp[j];
        }
        for (int j = 0; t && j < L; j++) {
            float s = 0.0f;
            for (int k = 0; k < H; k++) s += h[k] * Up[(advnn__idx)k * L + j];
            zt[j] += s;
        }
        if (!mask || mask[t] != 0.0f)
            for (int u = 0; u < H; u++) {
                float i = advnn__sigmoid1(zt[advnn__lstm_pcol(H, 0, u)]);
                float f = advnn__sigmoid1(zt[advnn__lstm_pcol(H, 1, u)]), g = tanhf(zt[advnn__lstm_pcol(H, 2, u)]);
                float o = advnn__sigmoid1(zt[advnn__lstm_pcol(H, 3, u)]);
                c[u] = f * c[u] + i * g;
                h[u] = o * tanhf(c[u]);
            }
        if (hseq) memcpy(hseq + (advnn__idx)t * H, h, (size_t)H * sizeof(float));
    }
    if (hlast) memcpy(hlast, h, (size_t)H * sizeof(float));
}
ADVNN__FN void advnn__lstm_cell_bwd_ref(int n, int H, const float *z, int ldz, const float *c_prev, const float *c,
                                        const float *dh, const float *dc, float *dz, float *dc_prev, float *dh_prev,
                                        int ldc, int ldh, const float *mask) {
    for (int r = 0; r < n; r++) {
        const float *zr = z + (advnn__idx)r * ldz;
        const float *cp = c_prev + (advnn__idx)r * ldc, *cr = c + (advnn__idx)r * ldc;
        const float *dhr = dh + (advnn__idx)r * ldh, *dcr = dc ? dc + (advnn__idx)r * ldc : NULL;
        float *dzr = dz + (advnn__idx)r * ldz, *dcp = dc_prev + (advnn__idx)r * ldc;
        float *dhp = dh_prev ? dh_prev + (advnn__idx)r * ldh : NULL;
        int active = !mask || mask[r] != 0.0f;
        for (int j = 0; j < H; j++) {
            float i = zr[j], f = zr[H + j], g = zr[2 * H + j], o = zr[3 * H + j];
            float dcin = dcr ? dcr[j] : 0.0f, dhv = dhr[j];
            if (active) {
                float tc = tanhf(cr[j]);
                float dct = dcin + dhv * o * (1.0f - tc * tc);
                dzr[j] = dct * g * i * (1.0f - i);
                dzr[H + j] = dct * cp[j] * f * (1.0f - f);
                dzr[2 * H + j] = dct * i * (1.0f - g * g);
                dzr[3 * H + j] = dhv * tc * o * (1.0f - o);
                dcp[j] = dct * f;
                if (dhp) dhp[j] = 0.0f;
            } else {
                dzr[j] = dzr[H + j] = dzr[2 * H + j] = dzr[3 * H + j] = 0.0f;
                dcp[j] = dcin;
                if (dhp) dhp[j] = dhv;
            }
        }
    }
}

/* ============================================================================================ */
/* Vector helper layer (one set per ISA; the kernels below are written once on top of it).       */
/* ============================================================================================ */
#if defined(ADVNN__AVX2)
#define ADVNN__VL 8
typedef __m256 advnn__v;
typedef __m256 advnn__vm; /* lane mask */
#define ADVNN__VFN static inline ADVNN__UNUSED ADVNN__AVX2_FN
ADVNN__VFN advnn__v advnn__vld(const float *p) { return _mm256_loadu_ps(p); }
ADVNN__VFN void advnn__vst(float *p, advnn__v v) { _mm256_storeu_ps(p, v); }
ADVNN__VFN advnn__v advnn__vset(float a) { return _mm256_set1_ps(a); }
ADVNN__VFN advnn__v advnn__vadd(advnn__v a, advnn__v b) { return _mm256_add_ps(a, b); }
ADVNN__VFN advnn__v advnn__vsub(advnn__v a, advnn__v b) { return _mm256_sub_ps(a, b); }
ADVNN__VFN advnn__v advnn__vmul(advnn__v a, advnn__v b) { return _mm256_mul_ps(a, b); }
ADVNN__VFN advnn__v advnn__vdiv(advnn__v a, advnn__v b) { return _mm256_div_ps(a, b); }
ADVNN__VFN advnn__v advnn__vfma(advnn__v a, advnn__v b, advnn__v c) { return _mm256_fmadd_ps(a, b, c); } /* a*b+c */
ADVNN__VFN advnn__v advnn__vmax(advnn__v a, advnn__v b) { return _mm256_max_ps(a, b); }
ADVNN__VFN advnn__v advnn__vmin(advnn__v a, advnn__v b) { return _mm256_min_ps(a, b); }
ADVNN__VFN advnn__v advnn__vabs(advnn__v a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
ADVNN__VFN advnn__vm advnn__vgt(advnn__v a, advnn__v b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
ADVNN__VFN advnn__vm advnn__vge(advnn__v a, advnn__v b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
ADVNN__VFN advnn__v advnn__vsel(advnn__vm m, advnn__v a, advnn__v b) { return _mm256_blendv_ps(b, a, m); } /* m ? a : b */
ADVNN__VFN advnn__v advnn__vand(advnn__vm m, advnn__v a) { return _mm256_and_ps(m, a); } /* m ? a : 0 */
ADVNN__VFN float advnn__vhsum(advnn__v v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
ADVNN__VFN float advnn__vhmax(advnn__v v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#ifdef ADVNN__RUNTIME
/* SLEEF's AVX2 functions take and return __m256 in ymm0. sleef.h declares them only under __AVX__,
 * so they are declared here, under local names bound to SLEEF's symbols (no clash with sleef.h's own
 * declarations should the user include it). gcc lowers a call from a target("avx2") function to a
 * callee declared target("avx2") with the AVX ABI (ymm0). clang (14 at least) lowers __m256 call
 * arguments with the translation unit's ABI (in memory without -mavx) whatever the attributes, so
 * with clang the call is made by hand: x in ymm0, the caller-saved registers clobbered, the stack
 * moved below the red zone and 32-byte aligned for the call. */
#define ADVNN__SYM_(x) #x
#define ADVNN__SYM(x) ADVNN__SYM_(x)
#if defined(__clang__)
#define ADVNN__SLEEF_AVX2(f) __m256 advnn__sleef_##f(__m256) __asm__(ADVNN__SYM(__USER_LABEL_PREFIX__) "Sleef_" #f);
#else
#define ADVNN__SLEEF_AVX2(f) ADVNN__AVX2_FN __attribute__((const)) __m256 advnn__sleef_##f(__m256) \
    __asm__(ADVNN__SYM(__USER_LABEL_PREFIX__) "Sleef_" #f);
#endif
ADVNN__SLEEF_AVX2(expf8_u10avx2)
ADVNN__SLEEF_AVX2(expm1f8_u10avx2)
ADVNN__SLEEF_AVX2(logf8_u10avx2)
ADVNN__SLEEF_AVX2(log1pf8_u10avx2)
ADVNN__SLEEF_AVX2(tanhf8_u35avx2)
#undef ADVNN__SLEEF_AVX2
#if defined(__clang__)
#define ADVNN__SLEEF_AVX2D(f) __m256d advnn__sleef_##f(__m256d) __asm__(ADVNN__SYM(__USER_LABEL_PREFIX__) "Sleef_" #f);
#else
#define ADVNN__SLEEF_AVX2D(f) ADVNN__AVX2_FN __attribute__((const)) __m256d advnn__sleef_##f(__m256d) \
    __asm__(ADVNN__SYM(__USER_LABEL_PREFIX__) "Sleef_" #f);
#endif
ADVNN__SLEEF_AVX2D(expd4_u10avx2)
ADVNN__SLEEF_AVX2D(logd4_u10avx2)
ADVNN__SLEEF_AVX2D(log1pd4_u10avx2)
ADVNN__SLEEF_AVX2D(erfd4_u10avx2)
#undef ADVNN__SLEEF_AVX2D
#if defined(__clang__)
typedef void (*advnn__sleef_fp)(void);
ADVNN__VFN __m256 advnn__sleef_call(advnn__sleef_fp fn, __m256 x) {
    register __m256 v __asm__("ymm0") = x;
    __asm__("movq %%rsp, %%r12\n\t"
            "subq $128, %%rsp\n\t"
            "andq $-32, %%rsp\n\t"
            "call *%[f]\n\t"
            "movq %%r12, %%rsp"
            : "+x"(v)
            : [f] "r"(fn)
            : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "xmm1", "xmm2", "xmm3", "xmm4",
              "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
    return v;
}
#define ADVNN__SLEEF(f, x) advnn__sleef_call((advnn__sleef_fp)&advnn__sleef_##f, (x))
/* the same register (ymm0) carries a __m256d */
#define ADVNN__SLEEFD(f, x) \
    _mm256_castps_pd(advnn__sleef_call((advnn__sleef_fp)&advnn__sleef_##f, _mm256_castpd_ps(x)))
#else
#define ADVNN__SLEEF(f, x) advnn__sleef_##f(x)
#define ADVNN__SLEEFD(f, x) advnn__sleef_##f(x)
#endif
#else
#define ADVNN__SLEEF(f, x) Sleef_##f(x)
#define ADVNN__SLEEFD(f, x) Sleef_##f(x)
#endif
ADVNN__VFN advnn__v advnn__vexp(advnn__v x) { return ADVNN__SLEEF(expf8_u10avx2, x); }
ADVNN__VFN advnn__v advnn__vexpm1(advnn__v x) { return ADVNN__SLEEF(expm1f8_u10avx2, x); }
ADVNN__VFN advnn__v advnn__vlog(advnn__v x) { return ADVNN__SLEEF(logf8_u10avx2, x); }
ADVNN__VFN advnn__v advnn__vlog1p(advnn__v x) { return ADVNN__SLEEF(log1pf8_u10avx2, x); }
ADVNN__VFN advnn__v advnn__vtanh(advnn__v x) { return ADVNN__SLEEF(tanhf8_u35avx2, x); }
/* double lanes, for the vector math in double */
#define ADVNN__VLD 4
typedef __m256d advnn__vd;
ADVNN__VFN advnn__vd advnn__vdld(const double *p) { return _mm256_loadu_pd(p); }
ADVNN__VFN void advnn__vdst(double *p, advnn__vd v) { _mm256_storeu_pd(p, v); }
ADVNN__VFN advnn__vd advnn__vdexp(advnn__vd x) { return ADVNN__SLEEFD(expd4_u10avx2, x); }
ADVNN__VFN advnn__vd advnn__vdlog(advnn__vd x) { return ADVNN__SLEEFD(logd4_u10avx2, x); }
ADVNN__VFN advnn__vd advnn__vdlog1p(advnn__vd x) { return ADVNN__SLEEFD(log1pd4_u10avx2, x); }
ADVNN__VFN advnn__vd advnn__vderf(advnn__vd x) { return ADVNN__SLEEFD(erfd4_u10avx2, x); }
/* int32 lanes (flat indices) */
typedef __m256i advnn__vi;
ADVNN__VFN advnn__vi advnn__viota(int b) { /* b, b+1, ..., b+VL-1 */
    return _mm256_add_epi32(_mm256_set1_epi32(b), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
ADVNN__VFN advnn__vi advnn__vselI(advnn__vm m, advnn__vi a, advnn__vi b) { /* m ? a : b */
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(b), _mm256_castsi256_ps(a), m));
}
ADVNN__VFN void advnn__vstI(int32_t *p, advnn__vi v) { _mm256_storeu_si256((__m256i *)(void *)p, v); }
/* first r lanes (0 <= r <= VL): load with the other lanes 0 / store without touching memory beyond */
ADVNN__VFN __m256i advnn__vmask_n(int r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
ADVNN__VFN advnn__v advnn__vld_n(const float *p, int r) { return _mm256_maskload_ps(p, advnn__vmask_n(r)); }
/* the first r (< 8) lanes: a spill and two overlapping moves (vmaskmovps stores are microcoded on Zen
 * 4, ~18 cycles: six per row were a quarter of an LSTM cell step at 10 units) */
ADVNN__VFN void advnn__vst_n(float *p, advnn__v v, int r) {
    ADVNN__ALIGN64 float t[8];
    _mm256_store_ps(t, v);
    if (r >= 4) { memcpy(p, t, 16); memcpy(p + r - 4, t + r - 4, 16); }
    else if (r >= 2) { memcpy(p, t, 8); memcpy(p + r - 2, t + r - 2, 8); }
    else if (r == 1) p[0] = t[0];
}
#elif defined(ADVNN__NEON)
#define ADVNN__VL 4
typedef float32x4_t advnn__v;
typedef uint32x4_t advnn__vm;
#define ADVNN__VFN static inline ADVNN__UNUSED
ADVNN__VFN advnn__v advnn__vld(const float *p) { return vld1q_f32(p); }
ADVNN__VFN void advnn__vst(float *p, advnn__v v) { vst1q_f32(p, v); }
ADVNN__VFN advnn__v advnn__vset(float a) { return vdupq_n_f32(a); }
ADVNN__VFN advnn__v advnn__vadd(advnn__v a, advnn__v b) { return vaddq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vsub(advnn__v a, advnn__v b) { return vsubq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vmul(advnn__v a, advnn__v b) { return vmulq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vdiv(advnn__v a, advnn__v b) { return vdivq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vfma(advnn__v a, advnn__v b, advnn__v c) { return vfmaq_f32(c, a, b); }
ADVNN__VFN advnn__v advnn__vmax(advnn__v a, advnn__v b) { return vmaxq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vmin(advnn__v a, advnn__v b) { return vminq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vabs(advnn__v a) { return vabsq_f32(a); }
ADVNN__VFN advnn__vm advnn__vgt(advnn__v a, advnn__v b) { return vcgtq_f32(a, b); }
ADVNN__VFN advnn__vm advnn__vge(advnn__v a, advnn__v b) { return vcgeq_f32(a, b); }
ADVNN__VFN advnn__v advnn__vsel(advnn__vm m, advnn__v a, advnn__v b) { return vbslq_f32(m, a, b); }
ADVNN__VFN advnn__v advnn__vand(advnn__vm m, advnn__v a) {
    return vreinterpretq_f32_u32(vandq_u32(m, vreinterpretq_u32_f32(a)));
}
ADVNN__VFN float advnn__vhsum(advnn__v v) { return vaddvq_f32(v); }
ADVNN__VFN float advnn__vhmax(advnn__v v) { return vmaxvq_f32(v); }
ADVNN__VFN advnn__v advnn__vexp(advnn__v x) { return Sleef_expf4_u10advsimd(x); }
ADVNN__VFN advnn__v advnn__vexpm1(advnn__v x) { return Sleef_expm1f4_u10advsimd(x); }
ADVNN__VFN advnn__v advnn__vlog(advnn__v x) { return Sleef_logf4_u10advsimd(x); }
ADVNN__VFN advnn__v advnn__vlog1p(advnn__v x) { return Sleef_log1pf4_u10advsimd(x); }
ADVNN__VFN advnn__v advnn__vtanh(advnn__v x) { return Sleef_tanhf4_u35advsimd(x); }
/* double lanes, for the vector math in double */
#define ADVNN__VLD 2
typedef float64x2_t advnn__vd;
ADVNN__VFN advnn__vd advnn__vdld(const double *p) { return vld1q_f64(p); }
ADVNN__VFN void advnn__vdst(double *p, advnn__vd v) { vst1q_f64(p, v); }
ADVNN__VFN advnn__vd advnn__vdexp(advnn__vd x) { return Sleef_expd2_u10advsimd(x); }
ADVNN__VFN advnn__vd advnn__vdlog(advnn__vd x) { return Sleef_logd2_u10advsimd(x); }
ADVNN__VFN advnn__vd advnn__vdlog1p(advnn__vd x) { return Sleef_log1pd2_u10advsimd(x); }
ADVNN__VFN advnn__vd advnn__vderf(advnn__vd x) { return Sleef_erfd2_u10advsimd(x); }
/* int32 lanes (flat indices) */
typedef int32x4_t advnn__vi;
ADVNN__VFN advnn__vi advnn__viota(int b) { /* b, b+1, ..., b+VL-1 */
    static const int32_t iota[4] = {0, 1, 2, 3};
    return vaddq_s32(vdupq_n_s32(b), vld1q_s32(iota));
}
ADVNN__VFN advnn__vi advnn__vselI(advnn__vm m, advnn__vi a, advnn__vi b) { return vbslq_s32(m, a, b); } /* m ? a : b */
ADVNN__VFN void advnn__vstI(int32_t *p, advnn__vi v) { vst1q_s32(p, v); }
/* first r lanes (0 <= r <= VL): load with the other lanes 0 / store without touching memory beyond */
ADVNN__VFN advnn__v advnn__vld_n(const float *p, int r) {
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < r; k++) t[k] = p[k];
    return vld1q_f32(t);
}
ADVNN__VFN void advnn__vst_n(float *p, advnn__v v, int r) {
    float t[4];
    vst1q_f32(t, v);
    for (int k = 0; k < r; k++) p[k] = t[k];
}
#endif

#ifdef ADVNN__VECTOR
/* Element-wise map over one contiguous row of n floats: loads v1,v2,v3 from P1,P2,P3 (unused
 * ones are dead and removed by the compiler), runs BODY which must set vo, stores to PO.
 * The tail (< VL elements) goes through a zero-padded temporary so it uses the same vector math. */
#define ADVNN__MAP3(n, P1, P2, P3, PO, BODY)                                                      \
    do {                                                                                          \
        int j_ = 0;                                                                               \
        for (; j_ + ADVNN__VL <= (n); j_ += ADVNN__VL) {                                          \
            advnn__v v1 = advnn__vld((P1) + j_), v2 = advnn__vld((P2) + j_);                      \
            advnn__v v3 = advnn__vld((P3) + j_), vo;                                              \
            (void)v1; (void)v2; (void)v3;                                                         \
            BODY;                                                                                 \
            advnn__vst((PO) + j_, vo);                                                            \
        }                                                                                         \
        if (j_ < (n)) { /* partial loads (other lanes 0) and store: no memcpy calls on a short row */ \
            int r_ = (n) - j_;                                                                    \
            advnn__v v1 = advnn__vld_n((P1) + j_, r_), v2 = advnn__vld_n((P2) + j_, r_);          \
            advnn__v v3 = advnn__vld_n((P3) + j_, r_), vo;                                        \
            (void)v1; (void)v2; (void)v3;                                                         \
            BODY;                                                                                 \
            advnn__vst_n((PO) + j_, vo, r_);                                                      \
        }                                                                                         \
    } while (0)

ADVNN__VFN advnn__v advnn__vsigmoid(advnn__v x) {
    advnn__v e = advnn__vexp(advnn__vsub(advnn__vset(0.0f), advnn__vabs(x)));
    advnn__v s = advnn__vdiv(advnn__vset(1.0f), advnn__vadd(advnn__vset(1.0f), e));
    return advnn__vsel(advnn__vge(x, advnn__vset(0.0f)), s, advnn__vmul(e, s));
}
ADVNN__VFN advnn__v advnn__vsoftplus(advnn__v x) {
    advnn__v e = advnn__vexp(advnn__vsub(advnn__vset(0.0f), advnn__vabs(x)));
    return advnn__vadd(advnn__vlog1p(e), advnn__vmax(x, advnn__vset(0.0f)));
}
#endif

/* ============================================================================================ */
/* Vectors                                                                                       */
/* ============================================================================================ */
#ifdef ADVNN__VECTOR
/* Vector bodies of the contiguous case (inc == 1); other increments take the scalar loop. */
ADVNN__VKFN void advnn__axpy_v(int n, float a, const float *x, float *y) {
    advnn__v va = advnn__vset(a);
    int i = 0;
    for (; i + 4 * ADVNN__VL <= n; i += 4 * ADVNN__VL)
        for (int u = 0; u < 4; u++) {
            int o = i + u * ADVNN__VL;
            advnn__vst(y + o, advnn__vfma(va, advnn__vld(x + o), advnn__vld(y + o)));
        }
    for (; i + ADVNN__VL <= n; i += ADVNN__VL) advnn__vst(y + i, advnn__vfma(va, advnn__vld(x + i), advnn__vld(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

ADVNN__VKFN void advnn__axpy_set_v(int n, float a, const float *x, float *y) {
    advnn__v va = advnn__vset(a), z = advnn__vset(0.0f);
    int i = 0;
    for (; i + ADVNN__VL <= n; i += ADVNN__VL) advnn__vst(y + i, advnn__vfma(va, advnn__vld(x + i), z));
    for (; i < n; i++) y[i] = fmaf(a, x[i], 0.0f);
}

ADVNN__VKFN void advnn__mul_acc_v(int n, const float *a, const float *b, float *y) {
    int i = 0;
    for (; i + ADVNN__VL <= n; i += ADVNN__VL)
        advnn__vst(y + i, advnn__vadd(advnn__vld(y + i), advnn__vmul(advnn__vld(a + i), advnn__vld(b + i))));
    advnn__mul_acc_ref(n - i, a + i, b + i, y + i);
}

ADVNN__VKFN void advnn__scale_v(int n, float a, float *x) {
    advnn__v va = advnn__vset(a);
    int i = 0;
    for (; i + ADVNN__VL <= n; i += ADVNN__VL) advnn__vst(x + i, advnn__vmul(va, advnn__vld(x + i)));
    for (; i < n; i++) x[i] *= a;
}

/* Reduction over a contiguous array with 4 independent vector accumulators. */
#define ADVNN__REDUCE(n, INIT, LOAD, COMB, HRED, SCAL, OUT)                                        \
    do {                                                                                          \
        advnn__v s0_ = INIT, s1_ = INIT, s2_ = INIT, s3_ = INIT;                                  \
        int i_ = 0;                                                                               \
        for (; i_ + 4 * ADVNN__VL <= (n); i_ += 4 * ADVNN__VL) {                                  \
            s0_ = COMB(s0_, LOAD(i_));                                                            \
            s1_ = COMB(s1_, LOAD(i_ + ADVNN__VL));                                                \
            s2_ = COMB(s2_, LOAD(i_ + 2 * ADVNN__VL));                                            \
            s3_ = COMB(s3_, LOAD(i_ + 3 * ADVNN__VL));                                            \
        }                                                                                         \
        for (; i_ + ADVNN__VL <= (n); i_ += ADVNN__VL) s0_ = COMB(s0_, LOAD(i_));                 \
        s0_ = COMB(COMB(s0_, s1_), COMB(s2_, s3_));                                               \
        OUT = HRED(s0_);                                                                          \
        for (; i_ < (n); i_++) OUT = SCAL(OUT, i_);                                               \
    } while (0)

ADVNN__VKFN float advnn__dot_v(int n, const float *x, const float *y) {
    advnn__v s0 = advnn__vset(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 4 * ADVNN__VL <= n; i += 4 * ADVNN__VL) {
        s0 = advnn__vfma(advnn__vld(x + i), advnn__vld(y + i), s0);
        s1 = advnn__vfma(advnn__vld(x + i + ADVNN__VL), advnn__vld(y + i + ADVNN__VL), s1);
        s2 = advnn__vfma(advnn__vld(x + i + 2 * ADVNN__VL), advnn__vld(y + i + 2 * ADVNN__VL), s2);
        s3 = advnn__vfma(advnn__vld(x + i + 3 * ADVNN__VL), advnn__vld(y + i + 3 * ADVNN__VL), s3);
    }
    for (; i + ADVNN__VL <= n; i += ADVNN__VL) s0 = advnn__vfma(advnn__vld(x + i), advnn__vld(y + i), s0);
    float s = advnn__vhsum(advnn__vadd(advnn__vadd(s0, s1), advnn__vadd(s2, s3)));
    for (; i < n; i++) s = fmaf(x[i], y[i], s);
    return s;
}

#define ADVNN__LD_X(i) advnn__vld(x + (i))
#define ADVNN__LD_XX(i) advnn__vmul(advnn__vld(x + (i)), advnn__vld(x + (i)))
#define ADVNN__SC_SUM(s, i) ((s) + x[i])
#define ADVNN__SC_SUMSQ(s, i) fmaf(x[i], x[i], (s))
#define ADVNN__SC_MAX(s, i) (x[i] > (s) ? x[i] : (s))

ADVNN__VKFN float advnn__sum_v(int n, const float *x) {
    float s;
    ADVNN__REDUCE(n, advnn__vset(0.0f), ADVNN__LD_X, advnn__vadd, advnn__vhsum, ADVNN__SC_SUM, s);
    return s;
}
ADVNN__VKFN float advnn__sumsq_v(int n, const float *x) {
    float s;
    ADVNN__REDUCE(n, advnn__vset(0.0f), ADVNN__LD_XX, advnn__vadd, advnn__vhsum, ADVNN__SC_SUMSQ, s);
    return s;
}
ADVNN__VKFN float advnn__max_v(int n, const float *x) {
    float s;
    ADVNN__REDUCE(n, advnn__vset(-INFINITY), ADVNN__LD_X, advnn__vmax, advnn__vhmax, ADVNN__SC_MAX, s);
    return s;
}
#endif

ADVNN_SIMD_DEF void advnn_axpy(int n, float a, const float *x, int incx, float *y, int incy) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && incy == 1 && ADVNN__VEC_LIVE()) { advnn__axpy_v(n, a, x, y); return; }
#endif
    advnn__axpy_ref(n, a, x, incx, y, incy);
}
ADVNN_SIMD_DEF void advnn_mul_acc(int n, const float *a, const float *b, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__mul_acc_v(n, a, b, y); return; }
#endif
    advnn__mul_acc_ref(n, a, b, y);
}
ADVNN_SIMD_DEF void advnn_axpy_set(int n, float a, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__axpy_set_v(n, a, x, y); return; }
#endif
    for (int i = 0; i < n; i++) { float p = a * x[i]; y[i] = p + 0.0f; }   /* as advnn__axpy_ref on zeros */
}
ADVNN_SIMD_DEF void advnn_scale(int n, float a, float *x, int incx) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && ADVNN__VEC_LIVE()) { advnn__scale_v(n, a, x); return; }
#endif
    advnn__scale_ref(n, a, x, incx);
}
ADVNN_SIMD_DEF float advnn_dot(int n, const float *x, int incx, const float *y, int incy) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && incy == 1 && ADVNN__VEC_LIVE()) return advnn__dot_v(n, x, y);
#endif
    return advnn__dot_ref(n, x, incx, y, incy);
}
ADVNN_SIMD_DEF float advnn_sum(int n, const float *x, int incx) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && ADVNN__VEC_LIVE()) return advnn__sum_v(n, x);
#endif
    return advnn__sum_ref(n, x, incx);
}
ADVNN_SIMD_DEF float advnn_sumsq(int n, const float *x, int incx) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && ADVNN__VEC_LIVE()) return advnn__sumsq_v(n, x);
#endif
    return advnn__sumsq_ref(n, x, incx);
}
ADVNN_SIMD_DEF float advnn_max(int n, const float *x, int incx) {
#ifdef ADVNN__VECTOR
    if (incx == 1 && ADVNN__VEC_LIVE()) return advnn__max_v(n, x);
#endif
    return advnn__max_ref(n, x, incx);
}

/* ============================================================================================ */
/* Matrices                                                                                      */
/* ============================================================================================ */
#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__add_bias_v(int M, int N, float *X, int ldx, const float *b) {
    for (int i = 0; i < M; i++) {
        float *xr = X + (advnn__idx)i * ldx;
        ADVNN__MAP3(N, xr, b, b, xr, vo = advnn__vadd(v1, v2));
    }
}
#endif
ADVNN_SIMD_DEF void advnn_add_bias(int M, int N, float *X, int ldx, const float *b) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__add_bias_v(M, N, X, ldx, b); return; }
#endif
    advnn__add_bias_ref(M, N, X, ldx, b);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__bn_rows_v(int M, int N, const float *x, int ld, const float *mean, const float *istd,
                                 const float *gamma, const float *beta, float *xhat, float *y) {
    /* scalar tail instead of MAP3's padded copies: rows are often narrow (W1: 10, W2: 6-24) and the
     * copies cost more than the arithmetic; the scalar steps round exactly like the vector ones */
    int nv = N - N % ADVNN__VL;
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ld;
        float *hr = xhat ? xhat + (advnn__idx)i * ld : NULL, *yr = y + (advnn__idx)i * ld;
        int j = 0;
        for (; j < nv; j += ADVNN__VL) {
            advnn__v h = advnn__vmul(advnn__vsub(advnn__vld(xr + j), advnn__vld(mean + j)), advnn__vld(istd + j));
            if (hr) advnn__vst(hr + j, h);
            advnn__vst(yr + j, advnn__vadd(advnn__vmul(h, advnn__vld(gamma + j)), advnn__vld(beta + j)));
        }
        for (; j < N; j++) {
            float h = (xr[j] - mean[j]) * istd[j], p = gamma[j] * h;
            if (hr) hr[j] = h;
            yr[j] = p + beta[j];
        }
    }
}
#endif
ADVNN_SIMD_DEF void advnn_bn_rows(int M, int N, const float *x, int ld, const float *mean, const float *istd,
                                  const float *gamma, const float *beta, float *xhat, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__bn_rows_v(M, N, x, ld, mean, istd, gamma, beta, xhat, y); return; }
#endif
    advnn__bn_rows_ref(M, N, x, ld, mean, istd, gamma, beta, xhat, y);
}

#ifdef ADVNN__AVX2
/* four columns at a time in double lanes (16 per pass over the rows, 4 accumulators), the
 * remaining columns through the reference's scalar operations. A pass over 32 columns first (8
 * accumulators): each column's sum is the same chain of adds in row order, so the same bits, but
 * 4 chains left the adder waiting on its latency (W1's 64-wide layers, 128 rows: 1.69 -> 0.55 us,
 * centred 1.70 -> 0.82 us). */
#define ADVNN__LD4D(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
ADVNN__VFN void advnn__bn_sums32(int M, const float *x, int ld, const double *c, double *s) {
    __m256d a0 = _mm256_loadu_pd(s), a1 = _mm256_loadu_pd(s + 4), a2 = _mm256_loadu_pd(s + 8);
    __m256d a3 = _mm256_loadu_pd(s + 12), a4 = _mm256_loadu_pd(s + 16), a5 = _mm256_loadu_pd(s + 20);
    __m256d a6 = _mm256_loadu_pd(s + 24), a7 = _mm256_loadu_pd(s + 28);
    for (int i = 0; i < M; i++) {
        const float *r = x + (advnn__idx)i * ld;
        if (c) {
            __m256d d;
#define ADVNN__SQ(A, O)                                                                                  \
            d = _mm256_sub_pd(ADVNN__LD4D(r + (O)), _mm256_loadu_pd(c + (O)));                          \
            A = _mm256_add_pd(A, _mm256_mul_pd(d, d));
            ADVNN__SQ(a0, 0) ADVNN__SQ(a1, 4) ADVNN__SQ(a2, 8) ADVNN__SQ(a3, 12)
            ADVNN__SQ(a4, 16) ADVNN__SQ(a5, 20) ADVNN__SQ(a6, 24) ADVNN__SQ(a7, 28)
#undef ADVNN__SQ
        } else {
            a0 = _mm256_add_pd(a0, ADVNN__LD4D(r)); a1 = _mm256_add_pd(a1, ADVNN__LD4D(r + 4));
            a2 = _mm256_add_pd(a2, ADVNN__LD4D(r + 8)); a3 = _mm256_add_pd(a3, ADVNN__LD4D(r + 12));
            a4 = _mm256_add_pd(a4, ADVNN__LD4D(r + 16)); a5 = _mm256_add_pd(a5, ADVNN__LD4D(r + 20));
            a6 = _mm256_add_pd(a6, ADVNN__LD4D(r + 24)); a7 = _mm256_add_pd(a7, ADVNN__LD4D(r + 28));
        }
    }
    _mm256_storeu_pd(s, a0); _mm256_storeu_pd(s + 4, a1); _mm256_storeu_pd(s + 8, a2); _mm256_storeu_pd(s + 12, a3);
    _mm256_storeu_pd(s + 16, a4); _mm256_storeu_pd(s + 20, a5); _mm256_storeu_pd(s + 24, a6);
    _mm256_storeu_pd(s + 28, a7);
}
ADVNN__VKFN void advnn__bn_sums_v(int M, int N, const float *x, int ld, const double *c, double *s) {
    int j0 = 0;
    for (; j0 + 32 <= N; j0 += 32) advnn__bn_sums32(M, x + j0, ld, c ? c + j0 : NULL, s + j0);
    x += j0; s += j0; N -= j0;
    if (c) c += j0;
    for (int j = 0; j < N; ) {
        int w = (N - j) / 4 < 4 ? (N - j) / 4 : 4;   /* vectors this pass over the rows */
        int t = N - j - 4 * w < 4 ? N - j - 4 * w : 0;   /* the last pass also takes the last 1-3 columns */
        __m256d a[4], cc[4];
        for (int q = 0; q < w; q++) { a[q] = _mm256_loadu_pd(s + j + 4 * q); cc[q] = c ? _mm256_loadu_pd(c + j + 4 * q) : a[q]; }
        for (int i = 0; i < M; i++) {
            const float *r = x + (advnn__idx)i * ld + j;
            if (c) {
                for (int q = 0; q < w; q++) {
                    __m256d d = _mm256_sub_pd(ADVNN__LD4D(r + 4 * q), cc[q]);
                    a[q] = _mm256_add_pd(a[q], _mm256_mul_pd(d, d));
                }
                for (int q = 4 * w; q < 4 * w + t; q++) { double d = r[q] - c[j + q]; d = d * d; s[j + q] += d; }
            } else {
                for (int q = 0; q < w; q++) a[q] = _mm256_add_pd(a[q], ADVNN__LD4D(r + 4 * q));
                for (int q = 4 * w; q < 4 * w + t; q++) s[j + q] += r[q];
            }
        }
        for (int q = 0; q < w; q++) _mm256_storeu_pd(s + j + 4 * q, a[q]);
        j += 4 * w + t;
    }
}
/* 24 columns per pass (12 accumulators) first, as advnn__bn_sums32 */
ADVNN__VFN void advnn__bn_sums2_24(int M, const float *a, const float *b, int ld, double *s, double *p) {
    __m256d s0 = _mm256_loadu_pd(s), s1 = _mm256_loadu_pd(s + 4), s2 = _mm256_loadu_pd(s + 8);
    __m256d s3 = _mm256_loadu_pd(s + 12), s4 = _mm256_loadu_pd(s + 16), s5 = _mm256_loadu_pd(s + 20);
    __m256d p0 = _mm256_loadu_pd(p), p1 = _mm256_loadu_pd(p + 4), p2 = _mm256_loadu_pd(p + 8);
    __m256d p3 = _mm256_loadu_pd(p + 12), p4 = _mm256_loadu_pd(p + 16), p5 = _mm256_loadu_pd(p + 20);
    for (int i = 0; i < M; i++) {
        const float *ra = a + (advnn__idx)i * ld, *rb = b + (advnn__idx)i * ld;
        __m256d d;
#define ADVNN__S2(S, P, O)                                                                               \
        d = ADVNN__LD4D(ra + (O));                                                                       \
        S = _mm256_add_pd(S, d);                                                                         \
        P = _mm256_add_pd(P, _mm256_mul_pd(d, ADVNN__LD4D(rb + (O))));
        ADVNN__S2(s0, p0, 0) ADVNN__S2(s1, p1, 4) ADVNN__S2(s2, p2, 8)
        ADVNN__S2(s3, p3, 12) ADVNN__S2(s4, p4, 16) ADVNN__S2(s5, p5, 20)
#undef ADVNN__S2
    }
    _mm256_storeu_pd(s, s0); _mm256_storeu_pd(s + 4, s1); _mm256_storeu_pd(s + 8, s2);
    _mm256_storeu_pd(s + 12, s3); _mm256_storeu_pd(s + 16, s4); _mm256_storeu_pd(s + 20, s5);
    _mm256_storeu_pd(p, p0); _mm256_storeu_pd(p + 4, p1); _mm256_storeu_pd(p + 8, p2);
    _mm256_storeu_pd(p + 12, p3); _mm256_storeu_pd(p + 16, p4); _mm256_storeu_pd(p + 20, p5);
}
ADVNN__VKFN void advnn__bn_sums2_v(int M, int N, const float *a, const float *b, int ld, double *s) {
    double *ps = s + N;
    int j = 0;
    for (; j + 24 <= N; j += 24) advnn__bn_sums2_24(M, a + j, b + j, ld, s + j, ps + j);
    while (j < N) {
        int w = (N - j) / 4 < 4 ? (N - j) / 4 : 4;
        int t = N - j - 4 * w < 4 ? N - j - 4 * w : 0;
        __m256d sa[4], sp[4];
        for (int q = 0; q < w; q++) { sa[q] = _mm256_loadu_pd(s + j + 4 * q); sp[q] = _mm256_loadu_pd(ps + j + 4 * q); }
        for (int i = 0; i < M; i++) {
            const float *ra = a + (advnn__idx)i * ld + j, *rb = b + (advnn__idx)i * ld + j;
            for (int q = 0; q < w; q++) {
                __m256d d = ADVNN__LD4D(ra + 4 * q);
                sa[q] = _mm256_add_pd(sa[q], d);
                sp[q] = _mm256_add_pd(sp[q], _mm256_mul_pd(d, ADVNN__LD4D(rb + 4 * q)));
            }
            for (int q = 4 * w; q < 4 * w + t; q++) { double d = ra[q], p = d * rb[q]; s[j + q] += d; ps[j + q] += p; }
        }
        for (int q = 0; q < w; q++) { _mm256_storeu_pd(s + j + 4 * q, sa[q]); _mm256_storeu_pd(ps + j + 4 * q, sp[q]); }
        j += 4 * w + t;
    }
}
ADVNN__VKFN void advnn__bn_bwd_dx_v(int M, int N, const float *dy, const float *xh, int ld, const double *k, double R,
                                    const double *s, float *dx, int set) {
    const __m256d vr = _mm256_set1_pd(R);
    int n4 = N & ~3;
    for (int i = 0; i < M; i++) {
        const float *rd = dy + (advnn__idx)i * ld, *rx = xh + (advnn__idx)i * ld;
        float *ro = dx + (advnn__idx)i * ld;
        int j = 0;
        for (; j < n4; j += 4) {
            __m256d t = _mm256_mul_pd(vr, ADVNN__LD4D(rd + j)), u = _mm256_mul_pd(ADVNN__LD4D(rx + j), _mm256_loadu_pd(s + N + j));
            t = _mm256_sub_pd(t, _mm256_loadu_pd(s + j));
            t = _mm256_mul_pd(_mm256_loadu_pd(k + j), _mm256_sub_pd(t, u));
            _mm_storeu_ps(ro + j, _mm_add_ps(set ? _mm_setzero_ps() : _mm_loadu_ps(ro + j), _mm256_cvtpd_ps(t)));
        }
        for (; j < N; j++) {
            double t = R * rd[j], u = rx[j] * s[N + j];
            t = t - s[j]; t = t - u; t = k[j] * t;
            ro[j] = (set ? 0.0f : ro[j]) + (float)t;
        }
    }
}
#undef ADVNN__LD4D
#endif
ADVNN_SIMD_DEF void advnn_bn_sums(int M, int N, const float *x, int ld, const double *center, double *s) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__bn_sums_v(M, N, x, ld, center, s); return; }
#endif
    advnn__bn_sums_ref(M, N, x, ld, center, s);
}
ADVNN_SIMD_DEF void advnn_bn_sums2(int M, int N, const float *a, const float *b, int ld, double *s) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__bn_sums2_v(M, N, a, b, ld, s); return; }
#endif
    advnn__bn_sums2_ref(M, N, a, b, ld, s);
}
ADVNN_SIMD_DEF void advnn_bn_bwd_dx(int M, int N, const float *dy, const float *xhat, int ld, const double *k, double R,
                                    const double *s, float *dx) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__bn_bwd_dx_v(M, N, dy, xhat, ld, k, R, s, dx, 0); return; }
#endif
    advnn__bn_bwd_dx_ref(M, N, dy, xhat, ld, k, R, s, dx, 0);
}
ADVNN_SIMD_DEF void advnn_bn_bwd_dx_set(int M, int N, const float *dy, const float *xhat, int ld, const double *k,
                                        double R, const double *s, float *dx) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__bn_bwd_dx_v(M, N, dy, xhat, ld, k, R, s, dx, 1); return; }
#endif
    advnn__bn_bwd_dx_ref(M, N, dy, xhat, ld, k, R, s, dx, 1);
}

/* Dropout's generator: four xoshiro256++ streams, word k of stream j at s[4k + j] (so each word
 * is one vector of the AVX2 body), seeded by splitmix64 from seed. */
ADVNN__FN void advnn__dropout_seed(uint64_t seed, uint64_t s[16]) {
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) {
            uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            s[4 * k + j] = z ^ (z >> 31);
        }
}
/* The next 8 uniforms u[2j + h] (half h of stream j's output). */
ADVNN__FN void advnn__dropout_next(uint64_t s[16], uint32_t u[8]) {
    for (int j = 0; j < 4; j++) {
        uint64_t *a = s + j, t = a[4] << 17, r = a[0] + a[12];
        r = ((r << 23) | (r >> 41)) + a[0];
        u[2 * j] = (uint32_t)r;
        u[2 * j + 1] = (uint32_t)(r >> 32);
        a[8] ^= a[0]; a[12] ^= a[4]; a[4] ^= a[8]; a[0] ^= a[12]; a[8] ^= t;
        a[12] = (a[12] << 45) | (a[12] >> 19);
    }
}
/* keep when u >= thr; thr = ceil(rate 2^32) may be 2^32 (drop all) */
ADVNN__FN uint64_t advnn__dropout_thr(float rate) {
    double t = ceil((double)rate * 4294967296.0);
    return t <= 0 ? 0 : t >= 4294967296.0 ? 4294967296ull : (uint64_t)t;
}
/* elements [0, cnt) of a block with uniforms u. mode 0: y = x m (the forward; m stored unless NULL);
 * the backward with the mask redrawn: 1 y = x m + 0 (onto zeros), 2 y += x m (advnn_mul_acc's bits) */
ADVNN__FN void advnn__dropout_tail(int cnt, const uint32_t *u, uint64_t thr, float keep, const float *x, float *y,
                                   float *m, int mode) {
    for (int e = 0; e < cnt; e++) {
        float mi = (uint64_t)u[e] >= thr ? keep : 0.0f, p = x[e] * mi;   /* two statements: never contracted */
        if (m) m[e] = mi;
        y[e] = mode == 0 ? p : mode == 1 ? p + 0.0f : y[e] + p;
    }
}
ADVNN__FN void advnn__dropout_ref(int n, uint64_t seed, float rate, const float *x, float *y, float *m, int mode) {
    uint64_t s[16], thr = advnn__dropout_thr(rate);
    uint32_t u[8];
    float keep = 1.0f / (1.0f - rate);
    advnn__dropout_seed(seed, s);
    for (int b = 0; b < n; b += 8) {
        advnn__dropout_next(s, u);
        advnn__dropout_tail(n - b < 8 ? n - b : 8, u, thr, keep, x + b, y + b, m ? m + b : NULL, mode);
    }
}
#ifdef ADVNN__AVX2
ADVNN__VKFN void advnn__dropout_v(int n, uint64_t seed, float rate, const float *x, float *y, float *m, int mode) {
    uint64_t s[16], thr = advnn__dropout_thr(rate);
    ADVNN__ALIGN64 uint32_t u[8];
    float keep = 1.0f / (1.0f - rate);
    int b = 0;
    advnn__dropout_seed(seed, s);
    __m256i s0 = _mm256_loadu_si256((const __m256i *)s), s1 = _mm256_loadu_si256((const __m256i *)(s + 4));
    __m256i s2 = _mm256_loadu_si256((const __m256i *)(s + 8)), s3 = _mm256_loadu_si256((const __m256i *)(s + 12));
    /* u >= thr as a signed compare of u ^ 2^31 > (thr - 1) ^ 2^31 (thr 0: all kept, 2^32: none) */
    const __m256i bias = _mm256_set1_epi32((int)0x80000000u);
    const __m256i lim = _mm256_set1_epi32((int)(uint32_t)((thr ? thr - 1 : 0) ^ 0x80000000u));
    const __m256 vk = _mm256_set1_ps(keep), all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (;; b += 8) {
        __m256i r = _mm256_add_epi64(s0, s3), t = _mm256_slli_epi64(s1, 17);
        r = _mm256_add_epi64(_mm256_or_si256(_mm256_slli_epi64(r, 23), _mm256_srli_epi64(r, 41)), s0);
        s2 = _mm256_xor_si256(s2, s0); s3 = _mm256_xor_si256(s3, s1); s1 = _mm256_xor_si256(s1, s2);
        s0 = _mm256_xor_si256(s0, s3); s2 = _mm256_xor_si256(s2, t);
        s3 = _mm256_or_si256(_mm256_slli_epi64(s3, 45), _mm256_srli_epi64(s3, 19));
        if (n - b < 8) {
            if (n > b) {
                _mm256_store_si256((__m256i *)u, r);
                advnn__dropout_tail(n - b, u, thr, keep, x + b, y + b, m ? m + b : NULL, mode);
            }
            break;
        }
        __m256 ok = thr == 0 ? all : _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_xor_si256(r, bias), lim));
        if (thr > 0xFFFFFFFFull) ok = _mm256_setzero_ps();
        __m256 mk = _mm256_and_ps(ok, vk), p = _mm256_mul_ps(_mm256_loadu_ps(x + b), mk);
        if (m) _mm256_storeu_ps(m + b, mk);
        if (mode == 1) p = _mm256_add_ps(p, _mm256_setzero_ps());
        else if (mode == 2) p = _mm256_add_ps(_mm256_loadu_ps(y + b), p);
        _mm256_storeu_ps(y + b, p);
    }
}
#endif
ADVNN_SIMD_DEF void advnn_dropout_mask(int n, uint64_t seed, float rate, const float *x, float *y, float *m) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__dropout_v(n, seed, rate, x, y, m, 0); return; }
#endif
    advnn__dropout_ref(n, seed, rate, x, y, m, 0);
}
ADVNN_SIMD_DEF void advnn_dropout_grad(int n, uint64_t seed, float rate, const float *dy, float *dx, int add) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__dropout_v(n, seed, rate, dy, dx, NULL, add ? 2 : 1); return; }
#endif
    advnn__dropout_ref(n, seed, rate, dy, dx, NULL, add ? 2 : 1);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__col_sums_rows_v(int M, int N, const float *X, int ldx, float *out) {
    for (int i = 0; i < M; i++) {
        const float *xr = X + (advnn__idx)i * ldx;
        ADVNN__MAP3(N, out, xr, xr, out, vo = advnn__vadd(v1, v2));
    }
}
ADVNN__VKFN void advnn__col_sums_v(int M, int N, const float *X, int ldx, float *out) {
    /* same summation order as the reference (each column row by row): bitwise identical results.
     * Narrow rows (under 8 vectors: W2's 16-32 wide layers, its LSTMs' 20-40 gates) keep the sums in
     * registers down the rows, four vectors of columns at a time: adding into out row by row waited on
     * a store and a reload of each sum for every row (1.4-3.3x slower there). Wider rows go row by row
     * (advnn__col_sums_rows_v): passes down strided columns lost to one streaming pass (N = 80 and 128:
     * 1.1x, 512: 1.5x). */
    int j = 0;
    for (; j + 4 * ADVNN__VL <= N; j += 4 * ADVNN__VL) {
        advnn__v s0 = advnn__vld(out + j), s1 = advnn__vld(out + j + ADVNN__VL);
        advnn__v s2 = advnn__vld(out + j + 2 * ADVNN__VL), s3 = advnn__vld(out + j + 3 * ADVNN__VL);
        for (int i = 0; i < M; i++) {
            const float *xr = X + (advnn__idx)i * ldx + j;
            s0 = advnn__vadd(s0, advnn__vld(xr)); s1 = advnn__vadd(s1, advnn__vld(xr + ADVNN__VL));
            s2 = advnn__vadd(s2, advnn__vld(xr + 2 * ADVNN__VL)); s3 = advnn__vadd(s3, advnn__vld(xr + 3 * ADVNN__VL));
        }
        advnn__vst(out + j, s0); advnn__vst(out + j + ADVNN__VL, s1);
        advnn__vst(out + j + 2 * ADVNN__VL, s2); advnn__vst(out + j + 3 * ADVNN__VL, s3);
    }
    for (; j + ADVNN__VL <= N; j += ADVNN__VL) {
        advnn__v s0 = advnn__vld(out + j);
        for (int i = 0; i < M; i++) s0 = advnn__vadd(s0, advnn__vld(X + (advnn__idx)i * ldx + j));
        advnn__vst(out + j, s0);
    }
    for (; j < N; j++) {
        float s0 = out[j];
        for (int i = 0; i < M; i++) s0 += X[(advnn__idx)i * ldx + j];
        out[j] = s0;
    }
}
#endif
ADVNN_SIMD_DEF void advnn_col_sums(int M, int N, const float *X, int ldx, float *out) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        if (N >= 8 * ADVNN__VL) advnn__col_sums_rows_v(M, N, X, ldx, out);
        else advnn__col_sums_v(M, N, X, ldx, out);
        return;
    }
#endif
    advnn__col_sums_ref(M, N, X, ldx, out);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__row_max_v(int M, int N, const float *X, int ldx, float *out) {
    for (int i = 0; i < M; i++) out[i] = advnn__max_v(N, X + (advnn__idx)i * ldx);
}
#endif
ADVNN_SIMD_DEF void advnn_row_max(int M, int N, const float *X, int ldx, float *out) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__row_max_v(M, N, X, ldx, out); return; }
#endif
    advnn__row_max_ref(M, N, X, ldx, out);
}

/* ============================================================================================ */
/* Vector math                                                                                   */
/* ============================================================================================ */
#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__vexp_v(int n, const float *x, float *y) {
    ADVNN__MAP3(n, x, x, x, y, vo = advnn__vexp(v1));
}
#endif
ADVNN_SIMD_DEF void advnn_vexp(int n, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__vexp_v(n, x, y); return; }
#endif
    advnn__vexp_ref(n, x, y);
}
#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__vlog_v(int n, const float *x, float *y) {
    ADVNN__MAP3(n, x, x, x, y, vo = advnn__vlog(v1));
}
#endif
ADVNN_SIMD_DEF void advnn_vlog(int n, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__vlog_v(n, x, y); return; }
#endif
    advnn__vlog_ref(n, x, y);
}
#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__vtanh_v(int n, const float *x, float *y) {
    ADVNN__MAP3(n, x, x, x, y, vo = advnn__vtanh(v1));
}
#endif
ADVNN_SIMD_DEF void advnn_vtanh(int n, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__vtanh_v(n, x, y); return; }
#endif
    advnn__vtanh_ref(n, x, y);
}

#ifdef ADVNN__VECTOR
/* y = F(x) over n doubles; the tail (< VLD) through a zero-padded temporary, with the same function */
#define ADVNN__MAPD(n, x, y, F)                                                                    \
    do {                                                                                           \
        int i_ = 0;                                                                                \
        for (; i_ + ADVNN__VLD <= (n); i_ += ADVNN__VLD) advnn__vdst((y) + i_, F(advnn__vdld((x) + i_))); \
        if (i_ < (n)) {                                                                            \
            double t_[ADVNN__VLD] = {0};                                                           \
            memcpy(t_, (x) + i_, (size_t)((n) - i_) * sizeof(double));                             \
            advnn__vdst(t_, F(advnn__vdld(t_)));                                                   \
            memcpy((y) + i_, t_, (size_t)((n) - i_) * sizeof(double));                             \
        }                                                                                          \
    } while (0)
ADVNN__VKFN void advnn__vexp_f64_v(int n, const double *x, double *y) { ADVNN__MAPD(n, x, y, advnn__vdexp); }
ADVNN__VKFN void advnn__vlog_f64_v(int n, const double *x, double *y) { ADVNN__MAPD(n, x, y, advnn__vdlog); }
ADVNN__VKFN void advnn__vlog1p_f64_v(int n, const double *x, double *y) { ADVNN__MAPD(n, x, y, advnn__vdlog1p); }
ADVNN__VKFN void advnn__verf_f64_v(int n, const double *x, double *y) { ADVNN__MAPD(n, x, y, advnn__vderf); }
#undef ADVNN__MAPD
#define ADVNN__VMATH_F64(name)                                                                     \
    ADVNN_SIMD_DEF void advnn_##name##_f64(int n, const double *x, double *y) {                    \
        if (ADVNN__VEC_LIVE()) { advnn__##name##_f64_v(n, x, y); return; }                         \
        advnn__##name##_f64_ref(n, x, y);                                                           \
    }
#else
#define ADVNN__VMATH_F64(name) \
    ADVNN_SIMD_DEF void advnn_##name##_f64(int n, const double *x, double *y) { advnn__##name##_f64_ref(n, x, y); }
#endif
ADVNN__VMATH_F64(vexp)
ADVNN__VMATH_F64(vlog)
ADVNN__VMATH_F64(vlog1p)
ADVNN__VMATH_F64(verf)
#undef ADVNN__VMATH_F64

#ifdef ADVNN__AVX2
/* four lanes per step; a vector with every lane below 0.75 skips R, one with none skips the series */
ADVNN__VKFN void advnn__verf_e_f64_v(int n, const double *x, const double *e, double *y) {
    const __m256d sgn = _mm256_set1_pd(-0.0), lo = _mm256_set1_pd(0.75), hi = _mm256_set1_pd(6.0), one = _mm256_set1_pd(1.0);
    const __m256d two = _mm256_set1_pd(2.0), tm = _mm256_set1_pd(ADVNN__ERF_TM), ith = _mm256_set1_pd(ADVNN__ERF_ITH);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d xv = _mm256_loadu_pd(x + i), a = _mm256_andnot_pd(sgn, xv);
        __m256d r = _mm256_blendv_pd(xv, one, _mm256_cmp_pd(a, hi, _CMP_GE_OQ));   /* NaN stays NaN */
        __m256d small = _mm256_cmp_pd(a, lo, _CMP_LT_OQ), mid = _mm256_andnot_pd(small, _mm256_cmp_pd(a, hi, _CMP_LT_OQ));
        int ms = _mm256_movemask_pd(small), mm = _mm256_movemask_pd(mid);
        if (mm) {
            __m256d sv = _mm256_mul_pd(_mm256_sub_pd(_mm256_div_pd(two, _mm256_add_pd(two, a)), tm), ith);
            __m256d p = _mm256_set1_pd(advnn__erf_rc[17]);
            for (int k = 16; k >= 0; k--) p = _mm256_fmadd_pd(p, sv, _mm256_set1_pd(advnn__erf_rc[k]));
            r = _mm256_blendv_pd(r, _mm256_fnmadd_pd(_mm256_maskload_pd(e + i, _mm256_castpd_si256(mid)), p, one), mid);
        }
        if (ms) {
            __m256d z = _mm256_mul_pd(a, a), p = _mm256_set1_pd(advnn__erf_ta[15]);
            for (int k = 14; k >= 0; k--) p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(advnn__erf_ta[k]));
            r = _mm256_blendv_pd(r, _mm256_mul_pd(a, p), small);
        }
        _mm256_storeu_pd(y + i, _mm256_or_pd(r, _mm256_and_pd(sgn, xv)));
    }
    advnn__verf_e_f64_ref(n - i, x + i, e + i, y + i);
}
#endif
ADVNN_SIMD_DEF void advnn_verf_e_f64(int n, const double *x, const double *e, double *y) {
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__verf_e_f64_v(n, x, e, y); return; }
#endif
    advnn__verf_e_f64_ref(n, x, e, y);
}

/* ---- the truncated Gaussian mixture's -log p (advnn_mdn_nll) ----
 * One body for every path: the element-wise passes are the ADVNN__MDN_* helpers below (vector on
 * AVX2, scalar otherwise), the per-row reductions are scalar on all paths. */
typedef struct {
    double A[ADVNN_MDN_CHUNK], EA[ADVNN_MDN_CHUNK], V[ADVNN_MDN_CHUNK], MU[ADVNN_MDN_CHUNK], SG[ADVNN_MDN_CHUNK];
    double IS[ADVNN_MDN_CHUNK], SV[ADVNN_MDN_CHUNK], T1[ADVNN_MDN_CHUNK], T2[ADVNN_MDN_CHUNK], DM[ADVNN_MDN_CHUNK];
    double DS[ADVNN_MDN_CHUNK], L[ADVNN_MDN_CHUNK];
    double S[ADVNN_MDN_CHUNK], LS[ADVNN_MDN_CHUNK], MX[ADVNN_MDN_CHUNK], SE[ADVNN_MDN_CHUNK], LSE[ADVNN_MDN_CHUNK];
} advnn__mdn_buf;
#define ADVNN__MDN_HLN2PI 0.9189385332046727   /* log sqrt(2 pi) */
#define ADVNN__MDN_ISQ2 0.7071067811865476     /* 1/sqrt(2) */
#define ADVNN__MDN_IPHI 0.3989422804014327     /* 1/sqrt(2 pi) */
/* element e of the passes (scalar form; the vector form does the same operations) */
#define ADVNN__MDN_P1(b, e)                                                                        \
    do {                                                                                           \
        double q_ = 1 / (1 + (b)->T2[e]);                                                          \
        (b)->MU[e] = 1 / (1 + (b)->T1[e]);                                                         \
        (b)->SV[e] = (b)->V[e] >= 0 ? q_ : (b)->T2[e] * q_; /* sigmoid(v) = d softplus / dv */     \
    } while (0)
#define ADVNN__MDN_P2(b, e, fl)                                                                    \
    do {                                                                                           \
        (b)->SG[e] = ((b)->V[e] > 0 ? (b)->V[e] : 0) + (b)->T2[e] + (fl);                          \
        (b)->IS[e] = 1 / (b)->SG[e];                                                               \
    } while (0)
#define ADVNN__MDN_P3(b, e)                                                                        \
    do {                                                                                           \
        (b)->T1[e] = (1 - (b)->MU[e]) * (b)->IS[e] * ADVNN__MDN_ISQ2; /* beta / sqrt2 */           \
        (b)->T2[e] = (b)->MU[e] * (b)->IS[e] * ADVNN__MDN_ISQ2;       /* -alpha / sqrt2 */         \
        (b)->DM[e] = -(b)->T2[e] * (b)->T2[e];                        /* -alpha^2 / 2 */           \
        (b)->DS[e] = -(b)->T1[e] * (b)->T1[e];                                                     \
    } while (0)
#define ADVNN__MDN_P4(b, e)                                                                        \
    do {                                                                                           \
        double Z_ = 0.5 * ((b)->T1[e] + (b)->T2[e]), pa_ = ADVNN__MDN_IPHI * (b)->DM[e];           \
        double pb_ = ADVNN__MDN_IPHI * (b)->DS[e], isz_;                                           \
        if (Z_ < 1e-300) Z_ = 1e-300;                                                              \
        isz_ = (b)->IS[e] / Z_;                                                                    \
        (b)->DM[e] = (pa_ - pb_) * isz_;                                       /* d log Z / d mu */ \
        (b)->DS[e] = (-(b)->MU[e] * pa_ - (1 - (b)->MU[e]) * pb_) * (b)->IS[e] * isz_; /* / d sigma */ \
        (b)->L[e] = (b)->SG[e] * Z_;                                                               \
    } while (0)
ADVNN__FN void advnn__mdn_p1_ref(advnn__mdn_buf *b, int lo, int n) { for (int e = lo; e < n; e++) ADVNN__MDN_P1(b, e); }
ADVNN__FN void advnn__mdn_p2_ref(advnn__mdn_buf *b, int lo, int n, double fl) { for (int e = lo; e < n; e++) ADVNN__MDN_P2(b, e, fl); }
ADVNN__FN void advnn__mdn_p3_ref(advnn__mdn_buf *b, int lo, int n) { for (int e = lo; e < n; e++) ADVNN__MDN_P3(b, e); }
ADVNN__FN void advnn__mdn_p4_ref(advnn__mdn_buf *b, int lo, int n) { for (int e = lo; e < n; e++) ADVNN__MDN_P4(b, e); }
#ifdef ADVNN__AVX2
/* the passes four elements at a time (the last n % 4 by the scalar form) */
ADVNN__VKFN void advnn__mdn_p1_v(advnn__mdn_buf *b, int lo, int n) {
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
    int e = lo;
    for (; e + 4 <= n; e += 4) {
        __m256d t2 = _mm256_loadu_pd(b->T2 + e), q = _mm256_div_pd(one, _mm256_add_pd(one, t2));
        _mm256_storeu_pd(b->MU + e, _mm256_div_pd(one, _mm256_add_pd(one, _mm256_loadu_pd(b->T1 + e))));
        _mm256_storeu_pd(b->SV + e, _mm256_blendv_pd(_mm256_mul_pd(t2, q), q, _mm256_cmp_pd(_mm256_loadu_pd(b->V + e), zero, _CMP_GE_OQ)));
    }
    advnn__mdn_p1_ref(b, e, n);
}
ADVNN__VKFN void advnn__mdn_p2_v(advnn__mdn_buf *b, int lo, int n, double fl) {
    const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd(), vf = _mm256_set1_pd(fl);
    int e = lo;
    for (; e + 4 <= n; e += 4) {
        __m256d v = _mm256_loadu_pd(b->V + e), vp = _mm256_and_pd(v, _mm256_cmp_pd(v, zero, _CMP_GT_OQ));   /* v > 0 ? v : 0 */
        __m256d sg = _mm256_add_pd(_mm256_add_pd(vp, _mm256_loadu_pd(b->T2 + e)), vf);
        _mm256_storeu_pd(b->SG + e, sg);
        _mm256_storeu_pd(b->IS + e, _mm256_div_pd(one, sg));
    }
    advnn__mdn_p2_ref(b, e, n, fl);
}
ADVNN__VKFN void advnn__mdn_p3_v(advnn__mdn_buf *b, int lo, int n) {
    const __m256d one = _mm256_set1_pd(1.0), c = _mm256_set1_pd(ADVNN__MDN_ISQ2), sgn = _mm256_set1_pd(-0.0);
    int e = lo;
    for (; e + 4 <= n; e += 4) {
        __m256d mu = _mm256_loadu_pd(b->MU + e), is = _mm256_loadu_pd(b->IS + e);
        __m256d t1 = _mm256_mul_pd(_mm256_mul_pd(_mm256_sub_pd(one, mu), is), c), t2 = _mm256_mul_pd(_mm256_mul_pd(mu, is), c);
        _mm256_storeu_pd(b->T1 + e, t1);
        _mm256_storeu_pd(b->T2 + e, t2);
        _mm256_storeu_pd(b->DM + e, _mm256_mul_pd(_mm256_xor_pd(t2, sgn), t2));
        _mm256_storeu_pd(b->DS + e, _mm256_mul_pd(_mm256_xor_pd(t1, sgn), t1));
    }
    advnn__mdn_p3_ref(b, e, n);
}
ADVNN__VKFN void advnn__mdn_p4_v(advnn__mdn_buf *b, int lo, int n) {
    const __m256d one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5), ip = _mm256_set1_pd(ADVNN__MDN_IPHI);
    const __m256d tiny = _mm256_set1_pd(1e-300), sgn = _mm256_set1_pd(-0.0);
    int e = lo;
    for (; e + 4 <= n; e += 4) {
        __m256d z = _mm256_mul_pd(half, _mm256_add_pd(_mm256_loadu_pd(b->T1 + e), _mm256_loadu_pd(b->T2 + e)));
        __m256d pa = _mm256_mul_pd(ip, _mm256_loadu_pd(b->DM + e)), pb = _mm256_mul_pd(ip, _mm256_loadu_pd(b->DS + e));
        __m256d mu = _mm256_loadu_pd(b->MU + e), is = _mm256_loadu_pd(b->IS + e), isz;
        z = _mm256_blendv_pd(z, tiny, _mm256_cmp_pd(z, tiny, _CMP_LT_OQ));
        isz = _mm256_div_pd(is, z);
        _mm256_storeu_pd(b->DM + e, _mm256_mul_pd(_mm256_sub_pd(pa, pb), isz));
        _mm256_storeu_pd(b->DS + e, _mm256_mul_pd(_mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(_mm256_xor_pd(mu, sgn), pa),
                                                                             _mm256_mul_pd(_mm256_sub_pd(one, mu), pb)), is), isz));
        _mm256_storeu_pd(b->L + e, _mm256_mul_pd(_mm256_loadu_pd(b->SG + e), z));
    }
    advnn__mdn_p4_ref(b, e, n);
}
#endif
/* per row r (components e0..e0+K): the log of each weighted component and its max, then
 * T1 = L - max; and the gradients (float) of the row */
#define ADVNN__MDN_P5(b, e, mr, ls)                                                                \
    do {                                                                                           \
        double z_ = ((mr) - (b)->MU[e]) * (b)->IS[e];                                              \
        (b)->L[e] = ((b)->A[e] - (ls)) - 0.5 * z_ * z_ - (b)->L[e] - ADVNN__MDN_HLN2PI;            \
    } while (0)
#define ADVNN__MDN_P6(b, e, k, mr, ise, is, ga, gu, gv)                                           \
    do {                                                                                           \
        double p_ = (b)->T1[e] * (ise), pi_ = (b)->EA[e] * (is), d_ = ((mr) - (b)->MU[e]) * (b)->IS[e];     \
        double dmu_ = d_ * (b)->IS[e] - (b)->DM[e], dsg_ = (d_ * d_ - 1) * (b)->IS[e] - (b)->DS[e];         \
        (ga)[k] = (float)(pi_ - p_);                                                               \
        (gu)[k] = (float)(-p_ * dmu_ * (b)->MU[e] * (1 - (b)->MU[e]));                             \
        (gv)[k] = (float)(-p_ * dsg_ * (b)->SV[e]);                                                \
    } while (0)
ADVNN__FN double advnn__mdn_p5_ref(advnn__mdn_buf *b, int e0, int k0, int K, double mr, double ls) {
    double lmax = -INFINITY;
    for (int k = k0; k < K; k++) {
        ADVNN__MDN_P5(b, e0 + k, mr, ls);
        if (b->L[e0 + k] > lmax) lmax = b->L[e0 + k];
    }
    return lmax;
}
ADVNN__FN void advnn__mdn_p6_ref(advnn__mdn_buf *b, int e0, int k0, int K, double mr, double ise, double is, float *ga,
                                 float *gu, float *gv) {
    for (int k = k0; k < K; k++) ADVNN__MDN_P6(b, e0 + k, k, mr, ise, is, ga, gu, gv);
}
#ifdef ADVNN__AVX2
ADVNN__VKFN double advnn__mdn_p5_v(advnn__mdn_buf *b, int e0, int k0, int K, double mr, double ls) {
    const __m256d vm = _mm256_set1_pd(mr), vls = _mm256_set1_pd(ls), half = _mm256_set1_pd(0.5), c = _mm256_set1_pd(ADVNN__MDN_HLN2PI);
    __m256d mx = _mm256_set1_pd(-INFINITY);
    double lmax, t[4];
    int k = k0;
    for (; k + 4 <= K; k += 4) {
        int e = e0 + k;
        __m256d z = _mm256_mul_pd(_mm256_sub_pd(vm, _mm256_loadu_pd(b->MU + e)), _mm256_loadu_pd(b->IS + e));
        __m256d l = _mm256_sub_pd(_mm256_sub_pd(_mm256_sub_pd(_mm256_sub_pd(_mm256_loadu_pd(b->A + e), vls), _mm256_mul_pd(_mm256_mul_pd(half, z), z)),
                                                _mm256_loadu_pd(b->L + e)), c);
        _mm256_storeu_pd(b->L + e, l);
        mx = _mm256_max_pd(l, mx);   /* (l > mx ? l : mx): a NaN l leaves the max as the scalar loop does */
    }
    _mm256_storeu_pd(t, mx);
    lmax = advnn__mdn_p5_ref(b, e0, k, K, mr, ls);
    for (int j = 0; j < 4; j++) if (t[j] > lmax) lmax = t[j];
    return lmax;
}
ADVNN__VKFN void advnn__mdn_p6_v(advnn__mdn_buf *b, int e0, int k0, int K, double mr, double ise, double is, float *ga,
                                 float *gu, float *gv) {
    const __m256d vm = _mm256_set1_pd(mr), vise = _mm256_set1_pd(ise), vis = _mm256_set1_pd(is), one = _mm256_set1_pd(1.0);
    const __m256d sgn = _mm256_set1_pd(-0.0);
    int k = k0;
    for (; k + 4 <= K; k += 4) {
        int e = e0 + k;
        __m256d p = _mm256_mul_pd(_mm256_loadu_pd(b->T1 + e), vise), pi = _mm256_mul_pd(_mm256_loadu_pd(b->EA + e), vis);
        __m256d mu = _mm256_loadu_pd(b->MU + e), isv = _mm256_loadu_pd(b->IS + e), d = _mm256_mul_pd(_mm256_sub_pd(vm, mu), isv);
        __m256d dmu = _mm256_sub_pd(_mm256_mul_pd(d, isv), _mm256_loadu_pd(b->DM + e));
        __m256d dsg = _mm256_sub_pd(_mm256_mul_pd(_mm256_sub_pd(_mm256_mul_pd(d, d), one), isv), _mm256_loadu_pd(b->DS + e));
        __m256d np = _mm256_xor_pd(p, sgn);
        _mm_storeu_ps(ga + k, _mm256_cvtpd_ps(_mm256_sub_pd(pi, p)));
        _mm_storeu_ps(gu + k, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(np, dmu), mu), _mm256_sub_pd(one, mu))));
        _mm_storeu_ps(gv + k, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_mul_pd(np, dsg), _mm256_loadu_pd(b->SV + e))));
    }
    advnn__mdn_p6_ref(b, e0, k, K, mr, ise, is, ga, gu, gv);
}
#define ADVNN__MDN_PASS(f, ...) (ADVNN__VEC_LIVE() ? advnn__mdn_##f##_v(__VA_ARGS__) : advnn__mdn_##f##_ref(__VA_ARGS__))
#else
#define ADVNN__MDN_PASS(f, ...) advnn__mdn_##f##_ref(__VA_ARGS__)
#endif
ADVNN_SIMD_DEF void advnn_mdn_nll(int R, int K, int ld, const int *ri, const float *a, const float *u, const float *v,
                                  const double *m, int trunc, double floor_, float *g, double *nll) {
    advnn__mdn_buf bb, *b = &bb;
    int n = R * K, r, k, e;
    if (R < 1 || K < 1) return;
    if (n > ADVNN_MDN_CHUNK) {   /* outside the contract: say so through the result, never leave it stale */
        for (r = 0; r < R; r++) nll[r] = NAN;
        return;
    }
    for (r = 0, e = 0; r < R; r++) {
        const float *ar = a + (size_t)ri[r] * ld, *ur = u + (size_t)ri[r] * ld, *vr = v + (size_t)ri[r] * ld;
        double amax = ar[0];
        for (k = 1; k < K; k++) if (ar[k] > amax) amax = ar[k];
        for (k = 0; k < K; k++, e++) { b->A[e] = ar[k] - amax; b->T1[e] = -(double)ur[k]; b->V[e] = vr[k]; b->T2[e] = -fabs(b->V[e]); }
    }
    advnn_vexp_f64(n, b->A, b->EA);
    advnn_vexp_f64(n, b->T1, b->T1);   /* exp(-u) */
    advnn_vexp_f64(n, b->T2, b->T2);   /* exp(-|v|) */
    ADVNN__MDN_PASS(p1, b, 0, n);      /* means sigmoid(u), softplus' slope sigmoid(v) */
    for (r = 0, e = 0; r < R; r++) {
        double sum = 0;
        for (k = 0; k < K; k++, e++) sum += b->EA[e];
        b->S[r] = sum;
    }
    advnn_vlog1p_f64(n, b->T2, b->T2);
    advnn_vlog_f64(R, b->S, b->LS);
    ADVNN__MDN_PASS(p2, b, 0, n, floor_);   /* widths and their inverses */
    if (trunc) {
        ADVNN__MDN_PASS(p3, b, 0, n);
        /* exp(-x^2) first: the pdf at the bounds needs it, and erf from it costs a polynomial
         * (SLEEF's erf cost as much as the rest of the element put together) */
        advnn_vexp_f64(n, b->DM, b->DM);
        advnn_vexp_f64(n, b->DS, b->DS);
        advnn_verf_e_f64(n, b->T1, b->DS, b->T1);
        advnn_verf_e_f64(n, b->T2, b->DM, b->T2);
        ADVNN__MDN_PASS(p4, b, 0, n);   /* Z, d log Z / d(mu, sigma) */
    } else
        for (e = 0; e < n; e++) { b->DM[e] = b->DS[e] = 0; b->L[e] = b->SG[e]; }
    advnn_vlog_f64(n, b->L, b->L);   /* log(sigma Z) */
    for (r = 0, e = 0; r < R; r++, e += K) {
        double lmax = ADVNN__MDN_PASS(p5, b, e, 0, K, m[r], b->LS[r]);
        b->MX[r] = lmax;
        for (k = 0; k < K; k++) b->T1[e + k] = b->L[e + k] - lmax;
    }
    advnn_vexp_f64(n, b->T1, b->T1);   /* exp(L - lmax) */
    for (r = 0, e = 0; r < R; r++) {
        double se = 0;
        for (k = 0; k < K; k++, e++) se += b->T1[e];
        b->SE[r] = se;
    }
    advnn_vlog_f64(R, b->SE, b->LSE);
    for (r = 0; r < R; r++) nll[r] = -(b->MX[r] + b->LSE[r]);
    if (!g) return;
    for (r = 0, e = 0; r < R; r++, e += K) {
        float *ga = g + 3 * (size_t)ri[r] * K;
        ADVNN__MDN_PASS(p6, b, e, 0, K, m[r], 1 / b->SE[r], 1 / b->S[r], ga, ga + K, ga + 2 * K);
    }
}
#undef ADVNN__MDN_PASS

/* ============================================================================================ */
/* Activations                                                                                   */
/* ============================================================================================ */
#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__act_forward_v(advnn_act act, int M, int N, const float *x, int ldx, float *y,
                                      int ldy, float param, const float *alpha) {
    const advnn__v zero = advnn__vset(0.0f), vp = advnn__vset(param);
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        switch (act) {
        case ADVNN_ACT_LINEAR:
            if (xr != yr) memmove(yr, xr, (size_t)(N > 0 ? N : 0) * sizeof(float));
            break;
        case ADVNN_ACT_RELU: ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vmax(v1, zero)); break;
        case ADVNN_ACT_LEAKY_RELU:
            ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vsel(advnn__vgt(v1, zero), v1, advnn__vmul(vp, v1)));
            break;
        case ADVNN_ACT_PRELU:
            ADVNN__MAP3(N, xr, alpha, xr, yr, vo = advnn__vsel(advnn__vgt(v1, zero), v1, advnn__vmul(v2, v1)));
            break;
        case ADVNN_ACT_ELU:
            ADVNN__MAP3(N, xr, xr, xr, yr,
                        vo = advnn__vsel(advnn__vgt(v1, zero), v1, advnn__vmul(vp, advnn__vexpm1(advnn__vmin(v1, zero)))));
            break;
        case ADVNN_ACT_SIGMOID: ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vsigmoid(v1)); break;
        case ADVNN_ACT_TANH: ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vtanh(v1)); break;
        case ADVNN_ACT_SOFTPLUS: ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vsoftplus(v1)); break;
        default: break;
        }
    }
}
#endif
ADVNN_SIMD_DEF void advnn_act_forward(advnn_act act, int M, int N, const float *x, int ldx, float *y,
                                      int ldy, float param, const float *alpha) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__act_forward_v(act, M, N, x, ldx, y, ldy, param, alpha); return; }
#endif
    advnn__act_forward_ref(act, M, N, x, ldx, y, ldy, param, alpha);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__act_backward_v(advnn_act act, int M, int N, const float *x, int ldx,
                                       const float *y, int ldy, const float *dy, int lddy, float *dx,
                                       int lddx, float param, const float *alpha, float *dalpha) {
    const advnn__v zero = advnn__vset(0.0f), one = advnn__vset(1.0f), vp = advnn__vset(param);
    for (int i = 0; i < M; i++) {
        const float *dyr = dy + (advnn__idx)i * lddy;
        /* rows of inputs that are not read are replaced by dyr (a valid row) */
        const float *xr = advnn__act_reads_x(act) ? x + (advnn__idx)i * ldx : dyr;
        const float *yr = advnn__act_reads_y(act) ? y + (advnn__idx)i * ldy : dyr;
        float *dxr = dx + (advnn__idx)i * lddx;
        switch (act) {
        case ADVNN_ACT_LINEAR:
            if (dxr != dyr) memmove(dxr, dyr, (size_t)(N > 0 ? N : 0) * sizeof(float));
            break;
        case ADVNN_ACT_RELU: ADVNN__MAP3(N, xr, dyr, dyr, dxr, vo = advnn__vand(advnn__vgt(v1, zero), v2)); break;
        case ADVNN_ACT_LEAKY_RELU:
            ADVNN__MAP3(N, xr, dyr, dyr, dxr, vo = advnn__vsel(advnn__vgt(v1, zero), v2, advnn__vmul(vp, v2)));
            break;
        case ADVNN_ACT_PRELU:
            if (dalpha) /* dalpha[j] += dy*x*(x<=0), row by row like the reference */
                ADVNN__MAP3(N, xr, dyr, dalpha, dalpha,
                            vo = advnn__vsel(advnn__vgt(v1, zero), v3, advnn__vadd(v3, advnn__vmul(v2, v1))));
            ADVNN__MAP3(N, xr, dyr, alpha, dxr, vo = advnn__vsel(advnn__vgt(v1, zero), v2, advnn__vmul(v3, v2)));
            break;
        case ADVNN_ACT_ELU:
            ADVNN__MAP3(N, xr, dyr, dyr, dxr,
                        vo = advnn__vsel(advnn__vgt(v1, zero), v2,
                                         advnn__vmul(v2, advnn__vmul(vp, advnn__vexp(advnn__vmin(v1, zero))))));
            break;
        case ADVNN_ACT_SIGMOID:
            ADVNN__MAP3(N, yr, dyr, dyr, dxr, vo = advnn__vmul(v2, advnn__vmul(v1, advnn__vsub(one, v1))));
            break;
        case ADVNN_ACT_TANH:
            ADVNN__MAP3(N, yr, dyr, dyr, dxr, vo = advnn__vmul(v2, advnn__vsub(one, advnn__vmul(v1, v1))));
            break;
        case ADVNN_ACT_SOFTPLUS: ADVNN__MAP3(N, xr, dyr, dyr, dxr, vo = advnn__vmul(v2, advnn__vsigmoid(v1))); break;
        default: break;
        }
    }
}
#endif
ADVNN_SIMD_DEF void advnn_act_backward(advnn_act act, int M, int N, const float *x, int ldx,
                                       const float *y, int ldy, const float *dy, int lddy, float *dx,
                                       int lddx, float param, const float *alpha, float *dalpha) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        advnn__act_backward_v(act, M, N, x, ldx, y, ldy, dy, lddy, dx, lddx, param, alpha, dalpha);
        return;
    }
#endif
    advnn__act_backward_ref(act, M, N, x, ldx, y, ldy, dy, lddy, dx, lddx, param, alpha, dalpha);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__softmax_rows_v(int M, int N, const float *x, int ldx, float *y, int ldy) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        if (N <= 0) continue;
        advnn__v vm = advnn__vset(advnn__max_v(N, xr));
        ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vexp(advnn__vsub(v1, vm)));
        advnn__scale_v(N, 1.0f / advnn__sum_v(N, yr), yr);
    }
}
#endif
ADVNN_SIMD_DEF void advnn_softmax_rows(int M, int N, const float *x, int ldx, float *y, int ldy) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__softmax_rows_v(M, N, x, ldx, y, ldy); return; }
#endif
    advnn__softmax_rows_ref(M, N, x, ldx, y, ldy);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__log_softmax_rows_v(int M, int N, const float *x, int ldx, float *y, int ldy) {
    for (int i = 0; i < M; i++) {
        const float *xr = x + (advnn__idx)i * ldx;
        float *yr = y + (advnn__idx)i * ldy;
        if (N <= 0) continue;
        float m = advnn__max_v(N, xr);
        advnn__v vm = advnn__vset(m), s = advnn__vset(0.0f);
        int j = 0;
        for (; j + ADVNN__VL <= N; j += ADVNN__VL) s = advnn__vadd(s, advnn__vexp(advnn__vsub(advnn__vld(xr + j), vm)));
        float ssum = advnn__vhsum(s);
        if (j < N) {
            float t[ADVNN__VL], e[ADVNN__VL];
            for (int u = 0; u < ADVNN__VL; u++) t[u] = j + u < N ? xr[j + u] : -INFINITY; /* exp(-inf) = 0 */
            advnn__vst(e, advnn__vexp(advnn__vsub(advnn__vld(t), vm)));
            for (int u = 0; u < N - j; u++) ssum += e[u];
        }
        advnn__v vl = advnn__vset(logf(ssum));
        ADVNN__MAP3(N, xr, xr, xr, yr, vo = advnn__vsub(advnn__vsub(v1, vm), vl));
    }
}
#endif
ADVNN_SIMD_DEF void advnn_log_softmax_rows(int M, int N, const float *x, int ldx, float *y, int ldy) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__log_softmax_rows_v(M, N, x, ldx, y, ldy); return; }
#endif
    advnn__log_softmax_rows_ref(M, N, x, ldx, y, ldy);
}

/* ============================================================================================ */
/* Convolution (im2col / col2im), pooling, upsampling                                            */
/*                                                                                               */
/* im2col / col2im: for one output pixel and one kernel row kh, the in-range taps kw in [lo, hi) */
/* are one contiguous run of (hi - lo)*C floats in x and in the cols row, so each (pixel, kh) is  */
/* a zero run, a copy (add) run and a zero run. im2col sweeps the interior pixels of a kernel row */
/* (all KW taps in range) with the copy method chosen once (short runs of C = 1 would otherwise  */
/* spend more on branches than on copying). Pooling and upsampling-backward vectorise across     */
/* C (the last C % VL channels take the scalar loop); upsampling-forward builds one output row   */
/* and copies it FH - 1 times. The element order of every sum is the reference's.                */
/* ============================================================================================ */
/* n in [1, 8) floats from src to dst: overlapping 16- or 8-byte moves, no loop, no call. */
static inline ADVNN__UNUSED void advnn__copy_lt8(int n, const float *src, float *dst) {
    if (n >= 4) {
        memcpy(dst, src, 16);
        memcpy(dst + n - 4, src + n - 4, 16);
    } else if (n >= 2) {
        memcpy(dst, src, 8);
        memcpy(dst + n - 2, src + n - 2, 8);
    } else {
        dst[0] = src[0];
    }
}

#ifdef ADVNN__VECTOR
/* dst[0..n) = src[0..n), no overlap: full vectors, then one overlapping vector for the tail. */
ADVNN__VFN void advnn__copy_run(int n, const float *ADVNN__RESTRICT src, float *ADVNN__RESTRICT dst) {
    if (n >= ADVNN__VL && n <= 4 * ADVNN__VL) {
        /* straight-line: as a loop, gcc turns it into a memmove call (120-byte runs of im2col: ~10% of W3's step) */
        advnn__v a = advnn__vld(src), t = advnn__vld(src + n - ADVNN__VL);
        if (n > 2 * ADVNN__VL) {
            advnn__v b = advnn__vld(src + ADVNN__VL);
            if (n > 3 * ADVNN__VL) advnn__vst(dst + 2 * ADVNN__VL, advnn__vld(src + 2 * ADVNN__VL));
            advnn__vst(dst + ADVNN__VL, b);
        }
        advnn__vst(dst, a);
        advnn__vst(dst + n - ADVNN__VL, t);
    } else if (n >= ADVNN__VL) {
        int j = 0;
        for (; j + ADVNN__VL <= n; j += ADVNN__VL) advnn__vst(dst + j, advnn__vld(src + j));
        if (j < n) advnn__vst(dst + n - ADVNN__VL, advnn__vld(src + n - ADVNN__VL));
    } else if (n >= 1) { /* n < VL <= 8 */
        advnn__copy_lt8(n, src, dst);
    }
}
/* dst[0..n) = 0 */
ADVNN__VFN void advnn__zero_run(int n, float *dst) {
    if (n >= ADVNN__VL && n <= 4 * ADVNN__VL) { /* straight-line, not a memset call (see copy_run) */
        const advnn__v z = advnn__vset(0.0f);
        advnn__vst(dst, z);
        if (n > 2 * ADVNN__VL) advnn__vst(dst + ADVNN__VL, z);
        if (n > 3 * ADVNN__VL) advnn__vst(dst + 2 * ADVNN__VL, z);
        advnn__vst(dst + n - ADVNN__VL, z);
    } else if (n >= ADVNN__VL) {
        const advnn__v z = advnn__vset(0.0f);
        int j = 0;
        for (; j + ADVNN__VL <= n; j += ADVNN__VL) advnn__vst(dst + j, z);
        if (j < n) advnn__vst(dst + n - ADVNN__VL, z);
    } else if (n >= 4) { /* fixed-size pieces: no loop for the compiler to turn into a memset call */
        static const float z4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        memcpy(dst, z4, 16);
        memcpy(dst + n - 4, z4, 16);
    } else if (n >= 2) {
        dst[0] = dst[1] = dst[n - 2] = dst[n - 1] = 0.0f;
    } else if (n == 1) {
        dst[0] = 0.0f;
    }
}
/* dst[0..n) += src[0..n) */
ADVNN__VFN void advnn__add_run(int n, const float *ADVNN__RESTRICT src, float *ADVNN__RESTRICT dst) {
    int j = 0;
    for (; j + ADVNN__VL <= n; j += ADVNN__VL) advnn__vst(dst + j, advnn__vadd(advnn__vld(dst + j), advnn__vld(src + j)));
    for (; j < n; j++) dst[j] += src[j];
}
/* count runs of n floats: run k from src + k*ss to dst + k*ds; the copy method is chosen once. */
ADVNN__VFN void advnn__copy_runs(int n, int count, const float *ADVNN__RESTRICT src, advnn__idx ss,
                                 float *ADVNN__RESTRICT dst, advnn__idx ds) {
    if (n >= ADVNN__VL) {
        for (int k = 0; k < count; k++, src += ss, dst += ds) advnn__copy_run(n, src, dst);
    } else if (n >= 4) {
        for (int k = 0; k < count; k++, src += ss, dst += ds) {
            memcpy(dst, src, 16);
            memcpy(dst + n - 4, src + n - 4, 16);
        }
    } else if (n >= 2) {
        for (int k = 0; k < count; k++, src += ss, dst += ds) {
            memcpy(dst, src, 8);
            memcpy(dst + n - 2, src + n - 2, 8);
        }
    } else if (n == 1) {
        for (int k = 0; k < count; k++, src += ss, dst += ds) dst[0] = src[0];
    }
}
/* In-range kernel columns [*lo, *hi) of an output column whose first tap is at input column iw0. */
ADVNN__VFN void advnn__tap_range(int iw0, int KW, int W, int *lo, int *hi) {
    int l = -iw0, h = W - iw0;
    l = l < 0 ? 0 : l > KW ? KW : l;
    h = h > KW ? KW : h < l ? l : h;
    *lo = l;
    *hi = h;
}
#endif

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__im2col_v(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *x, float *cols, int ldcols) {
    if (C <= 0 || Wo <= 0) return;
    /* interior output columns [ow_lo, ow_hi): every kw tap in range, one run of KW*C floats */
    int ow_lo = (PL + SW - 1) / SW, ow_hi = W - KW + PL >= 0 ? (W - KW + PL) / SW + 1 : 0;
    ow_lo = ow_lo < Wo ? ow_lo : Wo;
    ow_hi = ow_hi < ow_lo ? ow_lo : ow_hi > Wo ? Wo : ow_hi;
    const int run = KW * C;
    for (int oh = 0; oh < Ho; oh++)
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * SH - PT + kh;
            float *base = cols + (advnn__idx)oh * Wo * ldcols + (advnn__idx)kh * run;
            if (ih < 0 || ih >= H) {
                for (int ow = 0; ow < Wo; ow++) advnn__zero_run(run, base + (advnn__idx)ow * ldcols);
                continue;
            }
            const float *xr = x + (advnn__idx)ih * W * C;
            for (int ow = 0; ow < Wo; ow++) {
                if (ow == ow_lo && ow_hi > ow_lo) { /* the interior in one branch-free sweep */
                    advnn__copy_runs(run, ow_hi - ow_lo, xr + ((advnn__idx)ow_lo * SW - PL) * C, (advnn__idx)SW * C,
                                     base + (advnn__idx)ow_lo * ldcols, ldcols);
                    ow = ow_hi - 1;
                    continue;
                }
                float *dst = base + (advnn__idx)ow * ldcols;
                int iw0 = ow * SW - PL, lo, hi;
                advnn__tap_range(iw0, KW, W, &lo, &hi);
                advnn__zero_run(lo * C, dst);
                if (hi > lo) advnn__copy_run((hi - lo) * C, xr + ((advnn__idx)iw0 + lo) * C, dst + lo * C);
                advnn__zero_run((KW - hi) * C, dst + hi * C);
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_im2col(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *x, float *cols, int ldcols) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__im2col_v(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, cols, ldcols); return; }
#endif
    advnn__im2col_ref(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, cols, ldcols);
}

#ifdef ADVNN__VECTOR
/* First and last output index o (0 <= o < No) whose window o*S - P + k, 0 <= k < K, holds input index i. */
ADVNN__VFN void advnn__taps_of(int i, int P, int K, int S, int No, int *lo, int *hi) {
    int t = i + P, u = t - K + 1;
    *lo = u <= 0 ? 0 : (u + S - 1) / S;
    *hi = t < 0 ? -1 : t / S < No - 1 ? t / S : No - 1;
}
/* col2im for 1 < C < 2 VL channels as a gather: each dx element adds its contributions in the
 * scatter's order (output pixels ascending), so the sums are the same bits, but with one or two
 * vectors per pixel (lanes [0, VL) and [VL, C)) instead of the scatter's partial runs, which overlap
 * the neighbouring pixel's (store forwarding stalls): 40x40x5 19 -> 10-12 us. Away from the edges
 * four neighbouring pixels have the same taps (their cols rows one apart): their chains of adds run
 * interleaved, each in its order. A block of pixels is gathered into buf with whole-vector stores
 * (each overhang is rewritten by the next pixel) and copied to dx in one run. At 1 channel, and from
 * 2 VL, the scatter below. */
ADVNN__VFN void advnn__col2im_gather_v(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                       int Wo, const float *cols, int ldcols, float *dx) {
    enum { BUF = 1024 };
    ADVNN__ALIGN64 float buf[BUF + 2 * ADVNN__VL];
    const int bp = BUF / C, cl = C < ADVNN__VL ? C : ADVNN__VL, ch = C - cl; /* pixels per block; lanes */
    const advnn__idx L = ldcols;
    const advnn__v z = advnn__vset(0.0f);
#define ADVNN__GLO(p) (cl == ADVNN__VL ? advnn__vld(p) : advnn__vld_n((p), cl))
#define ADVNN__GHI(p) (ch ? advnn__vld_n((p) + ADVNN__VL, ch) : z)
    for (int ih = 0; ih < H; ih++) {
        int oh0, oh1;
        advnn__taps_of(ih, PT, KH, SH, Ho, &oh0, &oh1);
        if (oh0 > oh1) continue;
        float *drow = dx + (advnn__idx)ih * W * C;
        for (int iw0 = 0, blk; iw0 < W; iw0 += blk) {
            blk = W - iw0 < bp ? W - iw0 : bp;
            for (int iw = iw0; iw < iw0 + blk; iw++) {
                int ow0, ow1, e0, e1;
                const float *d = drow + (advnn__idx)iw * C;
                float *bq = buf + (advnn__idx)(iw - iw0) * C;
                advnn__taps_of(iw, PL, KW, SW, Wo, &ow0, &ow1);
                if (SW == 1 && iw + 3 < iw0 + blk) {
                    advnn__taps_of(iw + 3, PL, KW, SW, Wo, &e0, &e1);
                    if (e0 == ow0 + 3 && e1 == ow1 + 3) { /* four pixels */
                        advnn__v a0 = ADVNN__GLO(d), a1 = ADVNN__GLO(d + C), a2 = ADVNN__GLO(d + 2 * C);
                        advnn__v a3 = ADVNN__GLO(d + 3 * C), b0 = ADVNN__GHI(d), b1 = ADVNN__GHI(d + C);
                        advnn__v b2 = ADVNN__GHI(d + 2 * C), b3 = ADVNN__GHI(d + 3 * C);
                        for (int oh = oh0; oh <= oh1; oh++) {
                            const float *src = cols + (advnn__idx)oh * Wo * L + (advnn__idx)(ih + PT - oh * SH) * KW * C;
                            for (int ow = ow0; ow <= ow1; ow++) {
                                const float *q = src + (advnn__idx)ow * L + (advnn__idx)(iw + PL - ow) * C;
                                a0 = advnn__vadd(a0, ADVNN__GLO(q));
                                a1 = advnn__vadd(a1, ADVNN__GLO(q + L));
                                a2 = advnn__vadd(a2, ADVNN__GLO(q + 2 * L));
                                a3 = advnn__vadd(a3, ADVNN__GLO(q + 3 * L));
                                if (ch) {
                                    b0 = advnn__vadd(b0, ADVNN__GHI(q));
                                    b1 = advnn__vadd(b1, ADVNN__GHI(q + L));
                                    b2 = advnn__vadd(b2, ADVNN__GHI(q + 2 * L));
                                    b3 = advnn__vadd(b3, ADVNN__GHI(q + 3 * L));
                                }
                            }
                        }
                        if (ch) {
                            advnn__vst(bq, a0); advnn__vst(bq + ADVNN__VL, b0);
                            advnn__vst(bq + C, a1); advnn__vst(bq + C + ADVNN__VL, b1);
                            advnn__vst(bq + 2 * C, a2); advnn__vst(bq + 2 * C + ADVNN__VL, b2);
                            advnn__vst(bq + 3 * C, a3); advnn__vst(bq + 3 * C + ADVNN__VL, b3);
                        } else {
                            advnn__vst(bq, a0); advnn__vst(bq + C, a1);
                            advnn__vst(bq + 2 * C, a2); advnn__vst(bq + 3 * C, a3);
                        }
                        iw += 3;
                        continue;
                    }
                }
                advnn__v acc = ADVNN__GLO(d), acc2 = ADVNN__GHI(d);
                for (int oh = oh0; oh <= oh1; oh++) {
                    const float *src = cols + (advnn__idx)oh * Wo * L + (advnn__idx)(ih + PT - oh * SH) * KW * C;
                    for (int ow = ow0; ow <= ow1; ow++) {
                        const float *q = src + (advnn__idx)ow * L + (advnn__idx)(iw + PL - ow * SW) * C;
                        acc = advnn__vadd(acc, ADVNN__GLO(q));
                        if (ch) acc2 = advnn__vadd(acc2, ADVNN__GHI(q));
                    }
                }
                advnn__vst(bq, acc);
                if (ch) advnn__vst(bq + ADVNN__VL, acc2);
            }
            advnn__copy_run(blk * C, buf, drow + (advnn__idx)iw0 * C);
        }
    }
#undef ADVNN__GLO
#undef ADVNN__GHI
}
ADVNN__VKFN void advnn__col2im_v(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *cols, int ldcols, float *dx) {
    if (C <= 0) return;
    if (C > 1 && C < 2 * ADVNN__VL) {
        advnn__col2im_gather_v(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, cols, ldcols, dx);
        return;
    }
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const float *row = cols + ((advnn__idx)oh * Wo + ow) * ldcols;
            int iw0 = ow * SW - PL, lo, hi;
            advnn__tap_range(iw0, KW, W, &lo, &hi);
            if (hi <= lo) continue;
            for (int kh = 0; kh < KH; kh++) {
                int ih = oh * SH - PT + kh;
                if (ih < 0 || ih >= H) continue;
                advnn__add_run((hi - lo) * C, row + ((advnn__idx)kh * KW + lo) * C,
                               dx + ((advnn__idx)ih * W + iw0 + lo) * C);
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_col2im(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho, int Wo,
                                 const float *cols, int ldcols, float *dx) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__col2im_v(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, cols, ldcols, dx); return; }
#endif
    advnn__col2im_ref(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, cols, ldcols, dx);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__maxpool_fwd_v(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y,
                                      int32_t *argmax) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const advnn__idx base = ((advnn__idx)oh * SH * W + (advnn__idx)ow * SW) * C;
            const advnn__idx o = ((advnn__idx)oh * Wo + ow) * C;
            int c = 0;
            for (; c + ADVNN__VL <= C; c += ADVNN__VL) {
                advnn__v best = advnn__vld(x + base + c);
                advnn__vi bi = advnn__viota((int)(base + c));
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = kh == 0; kw < KW; kw++) {
                        advnn__idx k = base + ((advnn__idx)kh * W + kw) * C + c;
                        advnn__v v = advnn__vld(x + k);
                        advnn__vm m = advnn__vgt(v, best);
                        best = advnn__vsel(m, v, best);
                        bi = advnn__vselI(m, advnn__viota((int)k), bi);
                    }
                advnn__vst(y + o + c, best);
                if (argmax) advnn__vstI(argmax + o + c, bi);
            }
            for (; c < C; c++) {
                advnn__idx bk = base + c;
                float best = x[bk];
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = kh == 0; kw < KW; kw++) {
                        advnn__idx k = base + ((advnn__idx)kh * W + kw) * C + c;
                        if (x[k] > best) { best = x[k]; bk = k; }
                    }
                y[o + c] = best;
                if (argmax) argmax[o + c] = (int32_t)bk;
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_maxpool_fwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y,
                                      int32_t *argmax) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__maxpool_fwd_v(H, W, C, KH, KW, SH, SW, x, y, argmax); return; }
#endif
    advnn__maxpool_fwd_ref(H, W, C, KH, KW, SH, SW, x, y, argmax);
}

/* A scatter: one body for every path (no gather/scatter win at these sizes; order = the contract). */
ADVNN_SIMD_DEF void advnn_maxpool_bwd(int Ho, int Wo, int C, const float *dy, const int32_t *argmax, float *dx) {
    advnn__idx n = Ho > 0 && Wo > 0 && C > 0 ? (advnn__idx)Ho * Wo * C : 0;
    for (advnn__idx k = 0; k < n; k++) dx[argmax[k]] += dy[k];
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__avgpool_fwd_v(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    const float inv = 1.0f / (float)(KH * KW);
    const advnn__v vinv = advnn__vset(inv);
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            const float *xb = x + ((advnn__idx)oh * SH * W + (advnn__idx)ow * SW) * C;
            float *yo = y + ((advnn__idx)oh * Wo + ow) * C;
            int c = 0;
            for (; c + ADVNN__VL <= C; c += ADVNN__VL) {
                advnn__v s = advnn__vset(0.0f);
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) s = advnn__vadd(s, advnn__vld(xb + ((advnn__idx)kh * W + kw) * C + c));
                advnn__vst(yo + c, advnn__vmul(s, vinv));
            }
            for (; c < C; c++) {
                float s = 0.0f;
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) s += xb[((advnn__idx)kh * W + kw) * C + c];
                yo[c] = s * inv;
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_avgpool_fwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__avgpool_fwd_v(H, W, C, KH, KW, SH, SW, x, y); return; }
#endif
    advnn__avgpool_fwd_ref(H, W, C, KH, KW, SH, SW, x, y);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__avgpool_bwd_v(int H, int W, int C, int KH, int KW, int SH, int SW, const float *dy, float *dx) {
    int Ho = H >= KH ? (H - KH) / SH + 1 : 0, Wo = W >= KW ? (W - KW) / SW + 1 : 0;
    const float inv = 1.0f / (float)(KH * KW);
    const advnn__v vinv = advnn__vset(inv);
    for (int oh = 0; oh < Ho; oh++)
        for (int ow = 0; ow < Wo; ow++) {
            float *db = dx + ((advnn__idx)oh * SH * W + (advnn__idx)ow * SW) * C;
            const float *go = dy + ((advnn__idx)oh * Wo + ow) * C;
            int c = 0;
            for (; c + ADVNN__VL <= C; c += ADVNN__VL) {
                advnn__v g = advnn__vmul(advnn__vld(go + c), vinv);
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) {
                        float *d = db + ((advnn__idx)kh * W + kw) * C + c;
                        advnn__vst(d, advnn__vadd(advnn__vld(d), g));
                    }
            }
            for (; c < C; c++) {
                float g = go[c] * inv;
                for (int kh = 0; kh < KH; kh++)
                    for (int kw = 0; kw < KW; kw++) db[((advnn__idx)kh * W + kw) * C + c] += g;
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_avgpool_bwd(int H, int W, int C, int KH, int KW, int SH, int SW, const float *dy, float *dx) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__avgpool_bwd_v(H, W, C, KH, KW, SH, SW, dy, dx); return; }
#endif
    advnn__avgpool_bwd_ref(H, W, C, KH, KW, SH, SW, dy, dx);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__upsample_fwd_v(int H, int W, int C, int FH, int FW, const float *x, float *y) {
    if (W <= 0 || C <= 0 || FH <= 0 || FW <= 0) return;
    const int rowlen = W * FW * C; /* floats in one output row */
    for (int h = 0; h < H; h++) {
        const float *xr = x + (advnn__idx)h * W * C;
        float *yr = y + (advnn__idx)h * FH * rowlen;
        if (FW == 1) {
            advnn__copy_run(W * C, xr, yr);
        } else if (C >= ADVNN__VL) {
            for (int w = 0; w < W; w++)
                for (int j = 0; j < FW; j++) advnn__copy_run(C, xr + (advnn__idx)w * C, yr + ((advnn__idx)w * FW + j) * C);
        } else {
            float *d = yr;
            for (int w = 0; w < W; w++)
                for (int j = 0; j < FW; j++, d += C)
                    for (int c = 0; c < C; c++) d[c] = xr[(advnn__idx)w * C + c];
        }
        for (int i = 1; i < FH; i++) advnn__copy_run(rowlen, yr, yr + (advnn__idx)i * rowlen);
    }
}
#endif
ADVNN_SIMD_DEF void advnn_upsample_fwd(int H, int W, int C, int FH, int FW, const float *x, float *y) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__upsample_fwd_v(H, W, C, FH, FW, x, y); return; }
#endif
    advnn__upsample_fwd_ref(H, W, C, FH, FW, x, y);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__upsample_bwd_v(int H, int W, int C, int FH, int FW, const float *dy, float *dx) {
    const advnn__idx rowlen = (advnn__idx)W * FW * C;
    for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
            const float *gb = dy + (advnn__idx)h * FH * rowlen + (advnn__idx)w * FW * C;
            float *d = dx + ((advnn__idx)h * W + w) * C;
            int c = 0;
            for (; c + ADVNN__VL <= C; c += ADVNN__VL) {
                advnn__v s = advnn__vset(0.0f);
                for (int i = 0; i < FH; i++)
                    for (int j = 0; j < FW; j++) s = advnn__vadd(s, advnn__vld(gb + i * rowlen + (advnn__idx)j * C + c));
                advnn__vst(d + c, advnn__vadd(advnn__vld(d + c), s));
            }
            for (; c < C; c++) {
                float s = 0.0f;
                for (int i = 0; i < FH; i++)
                    for (int j = 0; j < FW; j++) s += gb[i * rowlen + (advnn__idx)j * C + c];
                d[c] += s;
            }
        }
}
#endif
ADVNN_SIMD_DEF void advnn_upsample_bwd(int H, int W, int C, int FH, int FW, const float *dy, float *dx) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__upsample_bwd_v(H, W, C, FH, FW, dy, dx); return; }
#endif
    advnn__upsample_bwd_ref(H, W, C, FH, FW, dy, dx);
}

/* ============================================================================================ */
/* LSTM cell                                                                                     */
/*                                                                                               */
/* Per row, one fused pass over VL-wide chunks of the H units: the four gate slices at j, H+j,   */
/* 2H+j, 3H+j are loaded, activated (SLEEF sigmoid/tanh), stored and combined into c and h. The  */
/* last H % VL units use partial loads/stores (AVX2 maskload/maskstore, NEON lane copies). Every */
/* chunk loads all its inputs before storing anything, which makes the exact in-place aliases of */
/* the contract (c == c_prev, h == h_prev; dz == z, dc_prev == dc, dh_prev == dh) safe.          */
/* ============================================================================================ */
#ifdef ADVNN__VECTOR
/* Load / store of r lanes: a full vector for r == VL, else the first r lanes (others read as 0). */
/* The cell's arithmetic on loaded vectors, for a row's units (below) and for the tails of several
 * rows (AVX2, further down) alike. Forward: the gates activated, and with active c and h. */
typedef struct { advnn__v i, f, g, o, c, h; } advnn__lstm_fv;
ADVNN__VFN advnn__lstm_fv advnn__lstm_fwd_math(advnn__v zi, advnn__v zf, advnn__v zg, advnn__v zo, advnn__v cp,
                                               int active) {
    advnn__lstm_fv r;
    r.i = advnn__vsigmoid(zi); r.f = advnn__vsigmoid(zf); r.g = advnn__vtanh(zg); r.o = advnn__vsigmoid(zo);
    r.c = r.h = cp;
    if (active) {
        r.c = advnn__vfma(r.f, cp, advnn__vmul(r.i, r.g));
        r.h = advnn__vmul(r.o, advnn__vtanh(r.c));
    }
    return r;
}
/* Backward: the gate gradients and dc_prev from the activated gates, c_prev, c, dh and dc */
typedef struct { advnn__v di, df, dg, dO, dcp; } advnn__lstm_bv;
ADVNN__VFN advnn__lstm_bv advnn__lstm_bwd_math(advnn__v i, advnn__v f, advnn__v g, advnn__v o, advnn__v cp, advnn__v cc,
                                               advnn__v dh, advnn__v dc) {
    const advnn__v one = advnn__vset(1.0f);
    advnn__v tc = advnn__vtanh(cc), ho = advnn__vmul(dh, o);
    advnn__v dct = advnn__vfma(ho, advnn__vsub(one, advnn__vmul(tc, tc)), dc);
    advnn__lstm_bv r;
    r.di = advnn__vmul(advnn__vmul(dct, g), advnn__vmul(i, advnn__vsub(one, i)));
    r.df = advnn__vmul(advnn__vmul(dct, cp), advnn__vmul(f, advnn__vsub(one, f)));
    r.dg = advnn__vmul(advnn__vmul(dct, i), advnn__vsub(one, advnn__vmul(g, g)));
    r.dO = advnn__vmul(advnn__vmul(ho, tc), advnn__vsub(one, o));
    r.dcp = advnn__vmul(dct, f);
    return r;
}
#define ADVNN__LDR(p) (r == ADVNN__VL ? advnn__vld(p) : advnn__vld_n((p), r))
#define ADVNN__STR(p, v) (r == ADVNN__VL ? advnn__vst((p), (v)) : advnn__vst_n((p), (v), r))
ADVNN__VFN void advnn__lstm_fwd_v(float *zi, float *zf, float *zg, float *zo, const float *cp, float *cc, float *hh,
                                  int active, int r) {
    advnn__lstm_fv v =
        advnn__lstm_fwd_math(ADVNN__LDR(zi), ADVNN__LDR(zf), ADVNN__LDR(zg), ADVNN__LDR(zo), ADVNN__LDR(cp), active);
    ADVNN__STR(zi, v.i);
    ADVNN__STR(zf, v.f);
    ADVNN__STR(zg, v.g);
    ADVNN__STR(zo, v.o);
    if (active) {
        ADVNN__STR(cc, v.c);
        ADVNN__STR(hh, v.h);
    }
}

/* dz slices di..dO may be the gate slices zi..zo, dcp may be dc, dhp may be dh (all loads come first). */
ADVNN__VFN void advnn__lstm_bwd_v(const float *zi, const float *zf, const float *zg, const float *zo, const float *cp,
                                  const float *cc, const float *dh, const float *dc, float *di, float *df, float *dg,
                                  float *dO, float *dcp, float *dhp, int r) {
    advnn__lstm_bv v = advnn__lstm_bwd_math(ADVNN__LDR(zi), ADVNN__LDR(zf), ADVNN__LDR(zg), ADVNN__LDR(zo),
                                            ADVNN__LDR(cp), ADVNN__LDR(cc), ADVNN__LDR(dh),
                                            dc ? ADVNN__LDR(dc) : advnn__vset(0.0f));
    ADVNN__STR(di, v.di);
    ADVNN__STR(df, v.df);
    ADVNN__STR(dg, v.dg);
    ADVNN__STR(dO, v.dO);
    ADVNN__STR(dcp, v.dcp);
    if (dhp) ADVNN__STR(dhp, advnn__vset(0.0f));
}
#undef ADVNN__LDR
#undef ADVNN__STR
#endif

#ifdef ADVNN__AVX2
/* The last w = H % 8 units (1 <= w <= 4) of q = 8 / w active rows (2 at w = 3) in one vector: at
 * H = 10 four rows' 2-unit tails share the transcendental calls of one vector instead of each row
 * paying for a whole one. Lane l holds unit l % w of row rows[l / w] (w = 3: lanes 0-2 and 4-6).
 * Each lane does the per-row kernel's operations, so the values are the same. */
ADVNN__VFN int advnn__tail_rows(int w) { return w == 3 ? 2 : 8 / w; }
ADVNN__VFN advnn__v advnn__tail_ld(const float *p, const int *rows, advnn__idx ld, int w) {
#define ADVNN__P(k) (p + rows[k] * ld)
#define ADVNN__M64(k) ((const __m64 *)(const void *)ADVNN__P(k))
    switch (w) {
    case 1:
        return _mm256_setr_ps(*ADVNN__P(0), *ADVNN__P(1), *ADVNN__P(2), *ADVNN__P(3), *ADVNN__P(4), *ADVNN__P(5),
                              *ADVNN__P(6), *ADVNN__P(7));
    case 2:
        return _mm256_set_m128(_mm_loadh_pi(_mm_loadl_pi(_mm_setzero_ps(), ADVNN__M64(2)), ADVNN__M64(3)),
                               _mm_loadh_pi(_mm_loadl_pi(_mm_setzero_ps(), ADVNN__M64(0)), ADVNN__M64(1)));
    case 3: {
        const __m128i m3 = _mm_setr_epi32(-1, -1, -1, 0);
        return _mm256_set_m128(_mm_maskload_ps(ADVNN__P(1), m3), _mm_maskload_ps(ADVNN__P(0), m3));
    }
    default: return _mm256_set_m128(_mm_loadu_ps(ADVNN__P(1)), _mm_loadu_ps(ADVNN__P(0)));
    }
#undef ADVNN__M64
#undef ADVNN__P
}
ADVNN__VFN void advnn__tail_st(float *p, const int *rows, advnn__idx ld, int w, advnn__v v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
#define ADVNN__P(k) (p + rows[k] * ld)
#define ADVNN__M64(k) ((__m64 *)(void *)ADVNN__P(k))
    switch (w) {
    case 1: {
        ADVNN__ALIGN64 float t[8];
        _mm256_store_ps(t, v);
        for (int l = 0; l < 8; l++) *ADVNN__P(l) = t[l];
        break;
    }
    case 2:
        _mm_storel_pi(ADVNN__M64(0), lo); _mm_storeh_pi(ADVNN__M64(1), lo);
        _mm_storel_pi(ADVNN__M64(2), hi); _mm_storeh_pi(ADVNN__M64(3), hi);
        break;
    case 3:
        _mm_storel_pi(ADVNN__M64(0), lo); _mm_store_ss(ADVNN__P(0) + 2, _mm_movehl_ps(lo, lo));
        _mm_storel_pi(ADVNN__M64(1), hi); _mm_store_ss(ADVNN__P(1) + 2, _mm_movehl_ps(hi, hi));
        break;
    default: _mm_storeu_ps(ADVNN__P(0), lo); _mm_storeu_ps(ADVNN__P(1), hi); break;
    }
#undef ADVNN__M64
#undef ADVNN__P
}
/* advnn__lstm_fwd_v (active rows) on the tails of rows[0 .. q): z, c_prev, c, h point at unit H - w */
ADVNN__VFN void advnn__lstm_fwd_tails(const int *rows, int w, advnn__idx H, float *z, advnn__idx ldz, const float *cp,
                                      float *c, float *h, advnn__idx ldc, advnn__idx ldh) {
    advnn__lstm_fv v = advnn__lstm_fwd_math(advnn__tail_ld(z, rows, ldz, w), advnn__tail_ld(z + H, rows, ldz, w),
                                            advnn__tail_ld(z + 2 * H, rows, ldz, w),
                                            advnn__tail_ld(z + 3 * H, rows, ldz, w), advnn__tail_ld(cp, rows, ldc, w), 1);
    advnn__tail_st(z, rows, ldz, w, v.i);
    advnn__tail_st(z + H, rows, ldz, w, v.f);
    advnn__tail_st(z + 2 * H, rows, ldz, w, v.g);
    advnn__tail_st(z + 3 * H, rows, ldz, w, v.o);
    advnn__tail_st(c, rows, ldc, w, v.c);
    advnn__tail_st(h, rows, ldh, w, v.h);
}
/* advnn__lstm_bwd_v on the tails of rows[0 .. q) (all loads first: the in-place aliases hold) */
ADVNN__VFN void advnn__lstm_bwd_tails(const int *rows, int w, advnn__idx H, const float *z, advnn__idx ldz,
                                      const float *cp, const float *cc, const float *dh, const float *dc, float *dz,
                                      float *dcp, float *dhp, advnn__idx ldc, advnn__idx ldh) {
    advnn__lstm_bv v = advnn__lstm_bwd_math(advnn__tail_ld(z, rows, ldz, w), advnn__tail_ld(z + H, rows, ldz, w),
                                            advnn__tail_ld(z + 2 * H, rows, ldz, w),
                                            advnn__tail_ld(z + 3 * H, rows, ldz, w),
                                            advnn__tail_ld(cp, rows, ldc, w), advnn__tail_ld(cc, rows, ldc, w),
                                            advnn__tail_ld(dh, rows, ldh, w),
                                            dc ? advnn__tail_ld(dc, rows, ldc, w) : advnn__vset(0.0f));
    advnn__tail_st(dz, rows, ldz, w, v.di);
    advnn__tail_st(dz + H, rows, ldz, w, v.df);
    advnn__tail_st(dz + 2 * H, rows, ldz, w, v.dg);
    advnn__tail_st(dz + 3 * H, rows, ldz, w, v.dO);
    advnn__tail_st(dcp, rows, ldc, w, v.dcp);
    if (dhp) advnn__tail_st(dhp, rows, ldh, w, advnn__vset(0.0f));
}
#endif

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__lstm_cell_fwd_v(int n, int H, float *z, int ldz, const float *c_prev, const float *h_prev,
                                        float *c, float *h, int ldc, int ldh, const float *mask) {
    if (H <= 0) return;
    const advnn__idx H2 = 2 * (advnn__idx)H, H3 = 3 * (advnn__idx)H;
#ifdef ADVNN__AVX2
    const int w = H % 8, q = w >= 1 && w <= 4 ? advnn__tail_rows(w) : 0, j0 = H - w;
    int pend[8], np = 0;   /* active rows whose tails wait for a group */
#endif
    for (int r = 0; r < n; r++) {
        float *zr = z + (advnn__idx)r * ldz;
        const float *cp = c_prev + (advnn__idx)r * ldc, *hp = h_prev + (advnn__idx)r * ldh;
        float *cr = c + (advnn__idx)r * ldc, *hr = h + (advnn__idx)r * ldh;
        const int active = !mask || mask[r] != 0.0f;
        int hend = H;
#ifdef ADVNN__AVX2
        if (q && active) { hend = j0; pend[np++] = r; }
#endif
        for (int j = 0; j < hend; j += ADVNN__VL) {
            int rl = hend - j < ADVNN__VL ? hend - j : ADVNN__VL;
            advnn__lstm_fwd_v(zr + j, zr + H + j, zr + H2 + j, zr + H3 + j, cp + j, cr + j, hr + j, active, rl);
        }
        if (!active) {
            if (cr != cp) memcpy(cr, cp, (size_t)H * sizeof(float));
            if (hr != hp) memcpy(hr, hp, (size_t)H * sizeof(float));
        }
#ifdef ADVNN__AVX2
        if (q && np == q) {
            advnn__lstm_fwd_tails(pend, w, H, z + j0, ldz, c_prev + j0, c + j0, h + j0, ldc, ldh);
            np = 0;
        }
#endif
    }
#ifdef ADVNN__AVX2
    if (np) {   /* fewer than q left: the last one fills the other lanes (the same values, stored twice) */
        for (int k = np; k < q; k++) pend[k] = pend[np - 1];
        advnn__lstm_fwd_tails(pend, w, H, z + j0, ldz, c_prev + j0, c + j0, h + j0, ldc, ldh);
    }
#endif
}
#endif
ADVNN_SIMD_DEF void advnn_lstm_cell_fwd(int n, int H, float *z, int ldz, const float *c_prev, const float *h_prev,
                                        float *c, float *h, int ldc, int ldh, const float *mask) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) { advnn__lstm_cell_fwd_v(n, H, z, ldz, c_prev, h_prev, c, h, ldc, ldh, mask); return; }
#endif
    advnn__lstm_cell_fwd_ref(n, H, z, ldz, c_prev, h_prev, c, h, ldc, ldh, mask);
}

#ifdef ADVNN__VECTOR
ADVNN__VKFN void advnn__lstm_cell_bwd_v(int n, int H, const float *z, int ldz, const float *c_prev, const float *c,
                                        const float *dh, const float *dc, float *dz, float *dc_prev, float *dh_prev,
                                        int ldc, int ldh, const float *mask) {
    if (H <= 0) return;
    const advnn__idx H2 = 2 * (advnn__idx)H, H3 = 3 * (advnn__idx)H;
    const size_t hb = (size_t)H * sizeof(float);
#ifdef ADVNN__AVX2
    const int w = H % 8, q = w >= 1 && w <= 4 ? advnn__tail_rows(w) : 0, j0 = H - w;
    int pend[8], np = 0;   /* active rows whose tails wait for a group */
#endif
    for (int r = 0; r < n; r++) {
        const float *zr = z + (advnn__idx)r * ldz;
        const float *cp = c_prev + (advnn__idx)r * ldc, *cr = c + (advnn__idx)r * ldc;
        const float *dhr = dh + (advnn__idx)r * ldh, *dcr = dc ? dc + (advnn__idx)r * ldc : NULL;
        float *dzr = dz + (advnn__idx)r * ldz, *dcp = dc_prev + (advnn__idx)r * ldc;
        float *dhp = dh_prev ? dh_prev + (advnn__idx)r * ldh : NULL;
        if (mask && mask[r] == 0.0f) { /* masked: the state (and its gradient) is carried */
            memset(dzr, 0, hb); memset(dzr + H, 0, hb); memset(dzr + H2, 0, hb); memset(dzr + H3, 0, hb);
            if (!dcr) memset(dcp, 0, hb);
            else if (dcp != dcr) memcpy(dcp, dcr, hb);
            if (dhp && dhp != dhr) memcpy(dhp, dhr, hb);
            continue;
        }
        int hend = H;
#ifdef ADVNN__AVX2
        if (q) { hend = j0; pend[np++] = r; }
#endif
        for (int j = 0; j < hend; j += ADVNN__VL) {
            int rl = hend - j < ADVNN__VL ? hend - j : ADVNN__VL;
            advnn__lstm_bwd_v(zr + j, zr + H + j, zr + H2 + j, zr + H3 + j, cp + j, cr + j, dhr + j, dcr ? dcr + j : NULL,
                              dzr + j, dzr + H + j, dzr + H2 + j, dzr + H3 + j, dcp + j, dhp ? dhp + j : NULL, rl);
        }
#ifdef ADVNN__AVX2
        if (q && np == q) {
            advnn__lstm_bwd_tails(pend, w, H, z + j0, ldz, c_prev + j0, c + j0, dh + j0, dc ? dc + j0 : NULL, dz + j0,
                                  dc_prev + j0, dh_prev ? dh_prev + j0 : NULL, ldc, ldh);
            np = 0;
        }
#endif
    }
#ifdef ADVNN__AVX2
    if (np) {   /* fewer than q left: as in the forward */
        for (int k = np; k < q; k++) pend[k] = pend[np - 1];
        advnn__lstm_bwd_tails(pend, w, H, z + j0, ldz, c_prev + j0, c + j0, dh + j0, dc ? dc + j0 : NULL, dz + j0,
                              dc_prev + j0, dh_prev ? dh_prev + j0 : NULL, ldc, ldh);
    }
#endif
}
#endif
ADVNN_SIMD_DEF void advnn_lstm_cell_bwd(int n, int H, const float *z, int ldz, const float *c_prev, const float *c,
                                        const float *dh, const float *dc, float *dz, float *dc_prev, float *dh_prev,
                                        int ldc, int ldh, const float *mask) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        advnn__lstm_cell_bwd_v(n, H, z, ldz, c_prev, c, dh, dc, dz, dc_prev, dh_prev, ldc, ldh, mask);
        return;
    }
#endif
    advnn__lstm_cell_bwd_ref(n, H, z, ldz, c_prev, c, dh, dc, dz, dc_prev, dh_prev, ldc, ldh, mask);
}

/* ============================================================================================ */
/* Adam / Nadam update                                                                           */
/* ============================================================================================ */
ADVNN__FN int advnn__adam_ref(int64_t n, float *w, float *m, float *v, const float *grad, double scale, float a,
                              float c1, float ib2, float b1, float b2, float eps, float lwd, int nadam, int commit) {
    int ok = 1;
    for (int64_t j = 0; j < n; j++) {
        /* one operation per statement: clang's default contraction (within an expression) cannot fuse it */
        float gj = (float)(grad[j] * scale), p1 = b1 * m[j], p2 = (1 - b1) * gj, mj = p1 + p2;
        float q1 = b2 * v[j], q2 = (1 - b2) * gj, vj, den, num, wd, wj;
        q2 = q2 * gj;
        vj = q1 + q2;
        den = sqrtf(vj) * ib2;
        den = den + eps;
        num = a * mj;
        if (nadam) { float t = c1 * gj; num = t + num; }
        wd = lwd * w[j];
        num = num / den;
        num = num + wd;
        wj = w[j] - num;
        if (commit) { w[j] = wj; m[j] = mj; v[j] = vj; }
        else ok &= (wj - wj == 0.0f) & (mj - mj == 0.0f) & (vj - vj == 0.0f);
    }
    return ok;
}
#ifdef ADVNN__AVX2
/* 8 weights at a time, the reference's operations one by one (~8x fewer cycles: W1's two updates per
 * adversarial step were 5% of it). Returns the weights done (a multiple of 8) and clears *ok on a
 * value that would not be finite. */
ADVNN__AVX2_FN static int64_t advnn__adam_v(int64_t n, float *w, float *m, float *v, const float *grad, double scale,
                                            float a, float c1, float ib2, float b1, float b2, float eps, float lwd,
                                            int nadam, int commit, int *ok) {
    const __m256 vb1 = _mm256_set1_ps(b1), vb1c = _mm256_set1_ps(1 - b1), vb2 = _mm256_set1_ps(b2);
    const __m256 vb2c = _mm256_set1_ps(1 - b2), va = _mm256_set1_ps(a), vc1 = _mm256_set1_ps(c1);
    const __m256 vib2 = _mm256_set1_ps(ib2), veps = _mm256_set1_ps(eps), vlwd = _mm256_set1_ps(lwd);
    const __m256 zero = _mm256_setzero_ps();
    const __m256d vs = _mm256_set1_pd(scale);
    __m256 fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 gr = _mm256_loadu_ps(grad + j), wj = _mm256_loadu_ps(w + j);
        __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(gr)), vs));
        __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(gr, 1)), vs));
        __m256 gj = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
        __m256 mj = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + j)), _mm256_mul_ps(vb1c, gj));
        __m256 vj = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + j)),
                                  _mm256_mul_ps(_mm256_mul_ps(vb2c, gj), gj));
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vj), vib2), veps);
        __m256 num = _mm256_mul_ps(va, mj);
        if (nadam) num = _mm256_add_ps(_mm256_mul_ps(vc1, gj), num);
        __m256 nw = _mm256_sub_ps(wj, _mm256_add_ps(_mm256_div_ps(num, den), _mm256_mul_ps(vlwd, wj)));
        if (commit) {
            _mm256_storeu_ps(w + j, nw);
            _mm256_storeu_ps(m + j, mj);
            _mm256_storeu_ps(v + j, vj);
        } else {
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_sub_ps(nw, nw), zero, _CMP_EQ_OQ));
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_sub_ps(mj, mj), zero, _CMP_EQ_OQ));
            fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_sub_ps(vj, vj), zero, _CMP_EQ_OQ));
        }
    }
    if (_mm256_movemask_ps(fin) != 0xFF) *ok = 0;
    return j;
}
#endif
ADVNN_SIMD_DEF int advnn_adam_update(int64_t n, float *w, float *m, float *v, const float *grad, double scale, float a,
                                     float c1, float ib2, float b1, float b2, float eps, float lwd, int nadam,
                                     int commit) {
    int ok = 1;
    int64_t j = 0;
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) j = advnn__adam_v(n, w, m, v, grad, scale, a, c1, ib2, b1, b2, eps, lwd, nadam, commit, &ok);
#endif
    ok &= advnn__adam_ref(n - j, w + j, m + j, v + j, grad + j, scale, a, c1, ib2, b1, b2, eps, lwd, nadam, commit);
    return commit ? 1 : ok;
}

/* ============================================================================================ */
/* SGEMM                                                                                         */
/*                                                                                               */
/* GotoBLAS/BLIS structure: for jc (NC columns of B) / for pc (KC of K): pack B panel into       */
/* NR-wide micro-panels (zero padded); for ic (MC rows): A block either packed into MR-tall      */
/* micro-panels or (AVX2/scalar) read in place with (row, col) strides -- the micro-kernel takes */
/* A as base + i*rsa + k*csa, so packed A (rsa=1, csa=MR), A (rsa=lda, csa=1) and A^T           */
/* (rsa=1, csa=lda) share one kernel; for jr (NR) / for ir (MR): MR x NR register tile.          */
/* Edge tiles: the kernel writes a local MR x NR tile which is merged with alpha/beta.           */
/* B micro-panel (KC x NR) stays in L1, the A block (MC x KC) in L2.                              */
/* M == 1 and N == 1 go to vectorized matrix-vector paths (no packing, no stack buffer).         */
/* The driver and the packing are written once (advnn__*_t, always inlined) with the blocking as  */
/* arguments, and instantiated per micro-kernel: _v (AVX2 6x16 or NEON 8x12) and _s (portable    */
/* 4x8; compiled when no vector ISA is, and in the runtime-dispatch build).                       */
/* ============================================================================================ */
#define ADVNN__KC 256
#define ADVNN__MC 96
#if defined(ADVNN__AVX2)
#define ADVNN__MR_V 6
#define ADVNN__NR_V 16
#define ADVNN__NC_V 128
#define ADVNN__STRIDED_A_V 1 /* kernel accepts unpacked A */
#define ADVNN__UKR_EDGE_V advnn__ukr_v_edge
#define ADVNN__UKR_EPI_V advnn__ukr_v_epi
#define ADVNN__UKR_EDGE_EPI_V advnn__ukr_v_edge_epi
#define ADVNN__UKR_ROWS_V advnn__ukr_v_rows
#define ADVNN__PACK_BT8_V 1 /* advnn__pack_bt8_v */
#elif defined(ADVNN__NEON)
#define ADVNN__MR_V 8
#define ADVNN__NR_V 12
#define ADVNN__NC_V 120
#define ADVNN__STRIDED_A_V 0 /* kernel requires packed A (rsa=1, csa=MR) */
#define ADVNN__UKR_EDGE_V NULL
#define ADVNN__UKR_EPI_V NULL /* (advnn_sgemm_bias_relu uses no epilogue here) */
#define ADVNN__UKR_EDGE_EPI_V NULL
#define ADVNN__UKR_ROWS_V NULL
#define ADVNN__PACK_BT8_V 0
#endif
#if !defined(ADVNN__VECTOR) || defined(ADVNN__RUNTIME)
#define ADVNN__GEMM_S 1 /* the portable blocked path is compiled */
#endif
#define ADVNN__MR_S 4
#define ADVNN__NR_S 8
#define ADVNN__NC_S 128
#define ADVNN__TILE_MAX 128 /* >= MR*NR of every micro-kernel */
/* compile-time check that the blocking fits the public work size and the edge tile */
#define ADVNN__GEMM_OK(MR, NR, NC) (ADVNN__MC * ADVNN__KC + ADVNN__KC * (NC) <= ADVNN_SGEMM_WORK_FLOATS && \
                                    ADVNN__MC % (MR) == 0 && (NC) % (NR) == 0 && (MR) * (NR) <= ADVNN__TILE_MAX)
#ifdef ADVNN__VECTOR
typedef char advnn__work_size_check_v[ADVNN__GEMM_OK(ADVNN__MR_V, ADVNN__NR_V, ADVNN__NC_V) ? 1 : -1];
#endif
typedef char advnn__work_size_check_s[ADVNN__GEMM_OK(ADVNN__MR_S, ADVNN__NR_S, ADVNN__NC_S) ? 1 : -1];

#if defined(__GNUC__) || defined(__clang__)
#define ADVNN__INLINE static inline __attribute__((always_inline)) ADVNN__UNUSED
#elif defined(_MSC_VER)
#define ADVNN__INLINE static __forceinline
#else
#define ADVNN__INLINE static inline
#endif
/* The epilogue of advnn_sgemm_bias_relu: z = (the GEMM's value) + bias[j], then with relu
 * y = max(z, 0); z stays in C unless y is C. Applied once, at the last K block. Each step rounds
 * as advnn_add_bias and advnn_act_forward(ADVNN_ACT_RELU) do. bias/y point at the tile's first
 * column / element. */
typedef struct {
    const float *bias; /* NULL: no bias */
    float *y;
    advnn__idx ldy;
    int relu;
} advnn__epi;
/* the epilogue on an mr x nr block already stored in C (the paths without an in-register one) */
ADVNN__FN void advnn__epi_tile(const advnn__epi *e, float *c, advnn__idx ldc, int mr, int nr) {
    for (int i = 0; i < mr; i++) {
        float *cr = c + i * ldc, *yr = e->y + i * e->ldy;
        for (int j = 0; j < nr; j++) {
            float z = e->bias ? cr[j] + e->bias[j] : cr[j];
            if (e->relu) {
                if (yr != cr) cr[j] = z;
                yr[j] = z > 0.0f ? z : 0.0f;
            } else cr[j] = z;
        }
    }
}

/* c[0..MR)[0..NR) = alpha * sum_p a(i,p) b(p,:) + beta*c, a(i,p) at a[i*rsa + p*csa] */
typedef void (*advnn__ukr_fn)(int k, const float *a, advnn__idx rsa, advnn__idx csa, const float *b, float *c,
                              advnn__idx ldc, float alpha, float beta);
/* the same for the right edge: full MR rows, 1 <= nr < NR columns */
typedef void (*advnn__ukr_edge_fn)(int k, const float *a, advnn__idx rsa, advnn__idx csa, const float *b, float *c,
                                   advnn__idx ldc, float alpha, float beta, int nr);
/* both with an epilogue applied to the register tile */
typedef void (*advnn__ukr_epi_fn)(int k, const float *a, advnn__idx rsa, advnn__idx csa, const float *b, float *c,
                                  advnn__idx ldc, float alpha, float beta, const advnn__epi *e);
typedef void (*advnn__ukr_edge_epi_fn)(int k, const float *a, advnn__idx rsa, advnn__idx csa, const float *b, float *c,
                                       advnn__idx ldc, float alpha, float beta, int nr, const advnn__epi *e);
/* the first 1 <= mr <= MR rows of a full-width tile, A unpacked, row p of B at b + p * ldbp */
typedef void (*advnn__ukr_rows_fn)(int k, const float *a, advnn__idx rsa, advnn__idx csa, const float *b,
                                   advnn__idx ldbp, float *c, advnn__idx ldc, float alpha, float beta, int mr);

#if defined(ADVNN__AVX2)
/* 6x16 micro-kernel: 12 ymm accumulators, per k 2 loads of B + 6 broadcasts of A + 12 FMAs.
 * c[0..5][0..15] = alpha * sum_p a(i,p) b(p,:) + beta*c  (beta == 0: c not read). */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__ukr_v_body(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa,
                                                   advnn__idx csa, const float *ADVNN__RESTRICT b, advnn__idx ldbp,
                                                   float *c, advnn__idx ldc, float alpha, float beta,
                                                   const advnn__epi *e, int mr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    /* rows past mr repeat row mr - 1 (A read in place at the bottom edge; the caller keeps mr rows) */
#define ADVNN__RO(i) ((i) < mr ? (i) * rsa : (mr - 1) * rsa)
    const advnn__idx r1 = ADVNN__RO(1), r2 = ADVNN__RO(2), r3 = ADVNN__RO(3), r4 = ADVNN__RO(4), r5 = ADVNN__RO(5);
#undef ADVNN__RO
#define ADVNN__K1(AO, BO)                                                                          \
    do {                                                                                           \
        __m256 b0 = _mm256_loadu_ps(b + (BO)), b1 = _mm256_loadu_ps(b + (BO) + 8), av;             \
        const float *ap_ = a + (AO);                                                               \
        av = _mm256_broadcast_ss(ap_);      c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
        av = _mm256_broadcast_ss(ap_ + r1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
        av = _mm256_broadcast_ss(ap_ + r2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
        av = _mm256_broadcast_ss(ap_ + r3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
        av = _mm256_broadcast_ss(ap_ + r4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
        av = _mm256_broadcast_ss(ap_ + r5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51); \
    } while (0)
    /* alpha and beta wait in memory: held in two registers across the k loop, they left the 12
     * accumulators too few and g++ -O3 kept one on the stack (a store and a reload per k) */
    volatile float ab_[2];
    ab_[0] = alpha; ab_[1] = beta;
    /* one k per iteration: unrolled by 4, the 24 offsets of A did not fit in registers and came back
     * from the stack on every step (the short-K layers of a batch-1 W2 branch ran at 55-75 GFLOP/s) */
    for (int p = 0; p < k; p++) {
        ADVNN__K1(0, 0);
        a += csa;
        b += ldbp;
    }
#undef ADVNN__K1
    alpha = ab_[0]; beta = ab_[1];
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), zero = _mm256_setzero_ps();
    const __m256 eb0 = e && e->bias ? _mm256_loadu_ps(e->bias) : zero;
    const __m256 eb1 = e && e->bias ? _mm256_loadu_ps(e->bias + 8) : zero;
#define ADVNN__ST(R, X0, X1)                                                                                     \
    do {                                                                                                         \
        float *cr_ = c + (R) * ldc;                                                                              \
        __m256 r0_, r1_;                                                                                         \
        if (beta == 0.0f) {                                                                                      \
            r0_ = _mm256_mul_ps(va, X0);                                                                         \
            r1_ = _mm256_mul_ps(va, X1);                                                                         \
        } else if (beta == 1.0f) {                                                                               \
            r0_ = _mm256_fmadd_ps(va, X0, _mm256_loadu_ps(cr_));                                                 \
            r1_ = _mm256_fmadd_ps(va, X1, _mm256_loadu_ps(cr_ + 8));                                             \
        } else {                                                                                                 \
            r0_ = _mm256_fmadd_ps(va, X0, _mm256_mul_ps(vb, _mm256_loadu_ps(cr_)));                              \
            r1_ = _mm256_fmadd_ps(va, X1, _mm256_mul_ps(vb, _mm256_loadu_ps(cr_ + 8)));                          \
        }                                                                                                        \
        if (e) {                                                                                                 \
            if (e->bias) { r0_ = _mm256_add_ps(r0_, eb0); r1_ = _mm256_add_ps(r1_, eb1); }                       \
            if (e->relu) {                                                                                       \
                float *yr_ = e->y + (R) * e->ldy;                                                                \
                if (yr_ != cr_) { _mm256_storeu_ps(cr_, r0_); _mm256_storeu_ps(cr_ + 8, r1_); }                  \
                r0_ = _mm256_max_ps(r0_, zero);                                                                  \
                r1_ = _mm256_max_ps(r1_, zero);                                                                  \
                cr_ = yr_;                                                                                       \
            }                                                                                                    \
        }                                                                                                        \
        _mm256_storeu_ps(cr_, r0_);                                                                              \
        _mm256_storeu_ps(cr_ + 8, r1_);                                                                          \
    } while (0)
    ADVNN__ST(0, c00, c01);
    ADVNN__ST(1, c10, c11);
    ADVNN__ST(2, c20, c21);
    ADVNN__ST(3, c30, c31);
    ADVNN__ST(4, c40, c41);
    ADVNN__ST(5, c50, c51);
#undef ADVNN__ST
}
ADVNN__AVX2_FN static void advnn__ukr_v(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                                        const float *ADVNN__RESTRICT b, float *c, advnn__idx ldc, float alpha,
                                        float beta) {
    advnn__ukr_v_body(k, a, rsa, csa, b, 16, c, ldc, alpha, beta, NULL, 6);
}
/* the first mr (1..6) rows of a tile with A, and B's rows (ldbp apart), read in place: a weight
 * gradient (A^T B, M = a layer's 10-64 inputs, K = all rows of the batch) copies neither its bottom
 * rows of A nor B (the batch's output gradient) into panels */
ADVNN__AVX2_FN static void advnn__ukr_v_rows(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                                             const float *ADVNN__RESTRICT b, advnn__idx ldbp, float *c,
                                             advnn__idx ldc, float alpha, float beta, int mr) {
    advnn__ukr_v_body(k, a, rsa, csa, b, ldbp, c, ldc, alpha, beta, NULL, mr);
}
ADVNN__AVX2_FN static void advnn__ukr_v_epi(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                                            const float *ADVNN__RESTRICT b, float *c, advnn__idx ldc, float alpha,
                                            float beta, const advnn__epi *e) {
    advnn__ukr_v_body(k, a, rsa, csa, b, 16, c, ldc, alpha, beta, e, 6);
}

/* The right edge of C: 6 full rows, 1 <= nr < 16 columns. Narrow outputs (convolutions with 5 or
 * 10 filters) are all edge, so this is their main kernel. nr <= 8 uses one vector column, otherwise
 * the 6x16 scheme. Results are bit-identical to the full kernel into a scratch tile merged by
 * advnn__store_edge_t (same k order, alpha*acc + beta*c rounded as there), so speeding up the edge
 * changed no trained weight. The partial vector goes through a stack buffer and short scalar moves:
 * vmaskmovps stores cost ~18 cycles each on Zen 4 (N = 10 tiles took 66 vs 37 ns for N = 16).
 * In three parts, so that advnn_conv_implicit can run the k loop once per kernel row of a
 * convolution on the same accumulators: the accumulators, their k loop, their store. */
typedef struct { __m256 x0, x1, x2, x3, x4, x5, y0, y1, y2, y3, y4, y5; } advnn__acc6;
/* q += rows o[0..5] of a times b (16 floats per k) over k steps; x only (nr <= 8) unless wide */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__edge_k(advnn__acc6 *q, int wide, int k, const float *ADVNN__RESTRICT a,
                                               const advnn__idx *o, advnn__idx csa, const float *ADVNN__RESTRICT b) {
    const advnn__idx r1 = o[1], r2 = o[2], r3 = o[3], r4 = o[4], r5 = o[5];
    __m256 x0 = q->x0, x1 = q->x1, x2 = q->x2, x3 = q->x3, x4 = q->x4, x5 = q->x5;
    __m256 y0 = q->y0, y1 = q->y1, y2 = q->y2, y3 = q->y3, y4 = q->y4, y5 = q->y5;
    if (!wide) {
        /* one vector column, k in order (the sums are bit-identical to the full kernel's; an even/odd
         * split of k measured no faster at W3's shapes and changed every result in the last bits) */
        for (int p = 0; p < k; p++, a += csa, b += 16) {
            __m256 bv = _mm256_loadu_ps(b);
            x0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a), bv, x0);
            x1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r1), bv, x1);
            x2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r2), bv, x2);
            x3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r3), bv, x3);
            x4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r4), bv, x4);
            x5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r5), bv, x5);
        }
    } else {
        for (int p = 0; p < k; p++, a += csa, b += 16) {
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), av;
            av = _mm256_broadcast_ss(a);      x0 = _mm256_fmadd_ps(av, b0, x0); y0 = _mm256_fmadd_ps(av, b1, y0);
            av = _mm256_broadcast_ss(a + r1); x1 = _mm256_fmadd_ps(av, b0, x1); y1 = _mm256_fmadd_ps(av, b1, y1);
            av = _mm256_broadcast_ss(a + r2); x2 = _mm256_fmadd_ps(av, b0, x2); y2 = _mm256_fmadd_ps(av, b1, y2);
            av = _mm256_broadcast_ss(a + r3); x3 = _mm256_fmadd_ps(av, b0, x3); y3 = _mm256_fmadd_ps(av, b1, y3);
            av = _mm256_broadcast_ss(a + r4); x4 = _mm256_fmadd_ps(av, b0, x4); y4 = _mm256_fmadd_ps(av, b1, y4);
            av = _mm256_broadcast_ss(a + r5); x5 = _mm256_fmadd_ps(av, b0, x5); y5 = _mm256_fmadd_ps(av, b1, y5);
        }
    }
    q->x0 = x0; q->x1 = x1; q->x2 = x2; q->x3 = x3; q->x4 = x4; q->x5 = x5;
    q->y0 = y0; q->y1 = y1; q->y2 = y2; q->y3 = y3; q->y4 = y4; q->y5 = y5;
}
/* c[0..mr)[0..nr) = alpha * q + beta * c, then the epilogue e (1 <= nr <= 16, 1 <= mr <= 6) */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__edge_store(const advnn__acc6 *q, float *c, advnn__idx ldc, float alpha,
                                                   float beta, int nr, int mr, const advnn__epi *e) {
    const int full = nr >= 8, tail = nr > 8 ? nr - 8 : nr < 8 ? nr : 0; /* whole vectors, then < 8 (16: 8) */
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta), zero = _mm256_setzero_ps();
    ADVNN__ALIGN64 float t[8], eb[16] = {0};
    if (e && e->bias) { /* (no memcpy call per tile: it cost W3, all edge tiles, 10% of its inference) */
        if (nr > 8) {
            _mm256_store_ps(eb, _mm256_loadu_ps(e->bias));
            if (nr < 16) advnn__copy_lt8(nr - 8, e->bias + 8, eb + 8);
            else _mm256_store_ps(eb + 8, _mm256_loadu_ps(e->bias + 8));
        } else if (nr == 8) _mm256_store_ps(eb, _mm256_loadu_ps(e->bias));
        else advnn__copy_lt8(nr, e->bias, eb);
    }
    const __m256 eb0 = _mm256_load_ps(eb), eb1 = _mm256_load_ps(eb + 8);
    /* the epilogue on r_ (columns from O of the tile); Q: where the result goes, after C got z */
#define ADVNN__EP(P, R, O, Q, STORE)                                                                           \
    do {                                                                                                    \
        if (e) {                                                                                            \
            if (e->bias) r_ = _mm256_add_ps(r_, (O) ? eb1 : eb0);                                           \
            if (e->relu) {                                                                                  \
                Q = e->y + (R) * e->ldy + (O);                                                              \
                if (Q != P) STORE(P, r_);                                                                   \
                r_ = _mm256_max_ps(r_, zero);                                                               \
            }                                                                                               \
        }                                                                                                   \
    } while (0)
#define ADVNN__FULL(P, R) _mm256_storeu_ps(P, R)
#define ADVNN__PART(P, R) do { _mm256_store_ps(t, R); advnn__copy_lt8(tail, t, P); } while (0)
#define ADVNN__SV(P, R, X, O)                                                                                \
    do {                                                                                                    \
        float *q_ = P;                                                                                      \
        __m256 r_ = _mm256_mul_ps(va, X);                                                                   \
        if (beta != 0.0f) r_ = _mm256_add_ps(r_, _mm256_mul_ps(vb, _mm256_loadu_ps(P)));                    \
        ADVNN__EP(P, R, O, q_, ADVNN__FULL);                                                                   \
        _mm256_storeu_ps(q_, r_);                                                                           \
    } while (0)
#define ADVNN__ST(P, R, X, O)                                                                                \
    do {                                                                                                    \
        float *q_ = P;                                                                                      \
        __m256 r_ = _mm256_mul_ps(va, X);                                                                   \
        if (beta != 0.0f) {                                                                                 \
            advnn__copy_lt8(tail, P, t);                                                                    \
            r_ = _mm256_add_ps(r_, _mm256_mul_ps(vb, _mm256_load_ps(t)));                                   \
        }                                                                                                   \
        ADVNN__EP(P, R, O, q_, ADVNN__PART);                                                                   \
        ADVNN__PART(q_, r_);                                                                                \
    } while (0)
#define ADVNN__SR(R, X, Y)                                                                                  \
    do {                                                                                                    \
        float *cr_ = c + (R) * ldc;                                                                         \
        if ((R) >= mr) break;                                                                               \
        if (nr == 16) { ADVNN__SV(cr_, R, X, 0); ADVNN__SV(cr_ + 8, R, Y, 8); }                             \
        else if (nr > 8) { ADVNN__SV(cr_, R, X, 0); ADVNN__ST(cr_ + 8, R, Y, 8); }                          \
        else if (full) ADVNN__SV(cr_, R, X, 0);                                                             \
        else ADVNN__ST(cr_, R, X, 0);                                                                       \
    } while (0)
    ADVNN__SR(0, q->x0, q->y0);
    ADVNN__SR(1, q->x1, q->y1);
    ADVNN__SR(2, q->x2, q->y2);
    ADVNN__SR(3, q->x3, q->y3);
    ADVNN__SR(4, q->x4, q->y4);
    ADVNN__SR(5, q->x5, q->y5);
#undef ADVNN__SR
#undef ADVNN__ST
#undef ADVNN__SV
#undef ADVNN__PART
#undef ADVNN__FULL
#undef ADVNN__EP
}
ADVNN__INLINE ADVNN__AVX2_FN void advnn__ukr_v_edge_body(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa,
                                                        advnn__idx csa, const float *ADVNN__RESTRICT b, float *c,
                                                        advnn__idx ldc, float alpha, float beta, int nr,
                                                        const advnn__epi *e) {
    const advnn__idx o[6] = {0, rsa, 2 * rsa, 3 * rsa, 4 * rsa, 5 * rsa};
    advnn__acc6 q;
    volatile float ab_[2];  /* alpha and beta wait in memory (see advnn__ukr_v_body) */
    ab_[0] = alpha; ab_[1] = beta;
    q.x0 = q.x1 = q.x2 = q.x3 = q.x4 = q.x5 = _mm256_setzero_ps();
    q.y0 = q.y1 = q.y2 = q.y3 = q.y4 = q.y5 = q.x0;
    advnn__edge_k(&q, nr > 8, k, a, o, csa, b);
    advnn__edge_store(&q, c, ldc, ab_[0], ab_[1], nr, 6, e);
}
ADVNN__AVX2_FN static void advnn__ukr_v_edge(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                                             const float *ADVNN__RESTRICT b, float *c, advnn__idx ldc, float alpha,
                                             float beta, int nr) {
    advnn__ukr_v_edge_body(k, a, rsa, csa, b, c, ldc, alpha, beta, nr, NULL);
}
ADVNN__AVX2_FN static void advnn__ukr_v_edge_epi(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa,
                                                 advnn__idx csa, const float *ADVNN__RESTRICT b, float *c,
                                                 advnn__idx ldc, float alpha, float beta, int nr, const advnn__epi *e) {
    advnn__ukr_v_edge_body(k, a, rsa, csa, b, c, ldc, alpha, beta, nr, e);
}

/* The image (H x W x C) padded with zeros to Hp x Wp x C, x's pixel (ih, iw) at (ih + PT, iw + PL): the
 * extent the taps of a convolution read (pixels that land outside are never read, so not copied). */
ADVNN__VFN void advnn__pad_nhwc(int H, int W, int C, int PT, int PL, int Hp, int Wp, const float *x, float *xp) {
    const advnn__idx rowp = (advnn__idx)Wp * C;
    const int lo = PL < 0 ? 0 : PL > Wp ? Wp : PL, hi = PL + W < lo ? lo : PL + W > Wp ? Wp : PL + W;  /* x's columns */
    for (int r = 0; r < Hp; r++) {
        float *d = xp + r * rowp;
        const int ih = r - PT;
        if (ih < 0 || ih >= H) { memset(d, 0, (size_t)rowp * sizeof(float)); continue; }
        memset(d, 0, (size_t)lo * C * sizeof(float));
        memcpy(d + (advnn__idx)lo * C, x + ((advnn__idx)ih * W + lo - PL) * C, (size_t)(hi - lo) * C * sizeof(float));
        memset(d + (advnn__idx)hi * C, 0, (size_t)(Wp - hi) * C * sizeof(float));
    }
}

/* advnn_conv_implicit on AVX2: tiles of up to 6 positions of one output row (A rows SW*C apart in the
 * padded image) by 16 filters, the k loop run once per kernel row, as one sum in the order of a cols row */
ADVNN__AVX2_FN static void advnn__conv_implicit_v(int H, int W, int C, int KH, int KW, int SH, int SW, int PT,
                                                  int PL, int Ho, int Wo, const float *x, int F, const float *kern,
                                                  const float *bias, int relu, float *z, float *y, float *work) {
    const int Hp = (Ho - 1) * SH + KH, Wp = (Wo - 1) * SW + KW, KC = KW * C, KKC = KH * KC;
    const advnn__idx rowp = (advnn__idx)Wp * C;
    float *xp = work, *wp = work + (((advnn__idx)Hp * rowp + 7) & ~(advnn__idx)7);
    advnn__pad_nhwc(H, W, C, PT, PL, Hp, Wp, x, xp);
    /* the kernel in panels of 16 filters, zero-padded as the blocked GEMM packs B */
    for (int j0 = 0; j0 < F; j0 += 16) {
        const int nr = F - j0 < 16 ? F - j0 : 16;
        float *pp = wp + (advnn__idx)j0 * KKC;
        for (int k = 0; k < KKC; k++) {
            memcpy(pp + 16 * k, kern + (advnn__idx)k * F + j0, (size_t)nr * sizeof(float));
            memset(pp + 16 * k + nr, 0, (size_t)(16 - nr) * sizeof(float));
        }
    }
    for (int oy = 0; oy < Ho; oy++)
        for (int ox = 0; ox < Wo; ox += 6) {
            const int mr = Wo - ox < 6 ? Wo - ox : 6;
            const float *a = xp + (advnn__idx)oy * SH * rowp + (advnn__idx)ox * SW * C;
            advnn__idx o[6];
            for (int i = 0; i < 6; i++) o[i] = (advnn__idx)(i < mr ? i : mr - 1) * SW * C; /* rows past mr: row mr-1 */
            for (int j0 = 0; j0 < F; j0 += 16) {
                const int nr = F - j0 < 16 ? F - j0 : 16;
                const advnn__idx at = ((advnn__idx)oy * Wo + ox) * F + j0;
                const float *pp = wp + (advnn__idx)j0 * KKC;
                advnn__epi e;
                advnn__acc6 q;
                e.bias = bias ? bias + j0 : NULL;
                e.relu = relu;
                e.y = (relu ? y : z) + at;
                e.ldy = F;
                q.x0 = q.x1 = q.x2 = q.x3 = q.x4 = q.x5 = _mm256_setzero_ps();
                q.y0 = q.y1 = q.y2 = q.y3 = q.y4 = q.y5 = q.x0;
                for (int ky = 0; ky < KH; ky++)
                    advnn__edge_k(&q, nr > 8, KC, a + ky * rowp, o, 1, pp + (advnn__idx)16 * ky * KC);
                advnn__edge_store(&q, z + at, F, 1.0f, 0.0f, nr, mr, &e);
            }
        }
}

/* advnn_conv_implicit with one filter: each output is the dot product of its cols row with the kernel
 * as advnn_sgemm sums a matrix-vector product (advnn__gemv_t: vectors k, k + 8 into two accumulators
 * 16 taps at a time, then one more, their sum reduced by advnn__vhsum, the last K % 8 taps added one by
 * one), then + bias and ReLU as advnn_add_bias and advnn_act_forward add them: the same values. The
 * cols row is read in the padded image, its KH runs of R = KW*C >= 8 taps: a vector of taps that
 * crosses from one kernel row to the next is two loads blended (lanes from R - k % R on from the next
 * run). Four positions at a time, for the accumulators' latency. */
ADVNN__AVX2_FN static void advnn__conv_dot_v(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL,
                                             int Ho, int Wo, const float *x, const float *kern, const float *bias,
                                             int relu, const float *prelu, float *z, float *y, float *work) {
    enum { NV = ADVNN__KC / 8 };   /* vectors of a row (K <= 256) */
    const int Hp = (Ho - 1) * SH + KH, Wp = (Wo - 1) * SW + KW, R = KW * C, K = KH * R, nv = K / 8;
    const advnn__idx rowp = (advnn__idx)Wp * C;
    advnn__idx oa[NV], ob[NV];
    __m256 mb[NV];
    int two[NV];
    float *xp = work;
    advnn__pad_nhwc(H, W, C, PT, PL, Hp, Wp, x, xp);
    memset(xp + (advnn__idx)Hp * rowp, 0, 8 * sizeof(float));   /* a last split vector reads up to 7 past the image */
    for (int v = 0; v < nv; v++) {   /* where each vector of taps lies relative to a position's first tap */
        const int a = 8 * v / R, o = 8 * v % R;
        oa[v] = (advnn__idx)a * rowp + o;
        two[v] = o + 8 > R;
        ob[v] = two[v] ? (advnn__idx)(a + 1) * rowp + o - R : 0;   /* lanes R - o.. of the next run */
        mb[v] = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                       _mm256_set1_epi32(R - o - 1)));
    }
#define ADVNN__DOT_V(B, V) (two[V] ? _mm256_blendv_ps(_mm256_loadu_ps((B) + oa[V]), _mm256_loadu_ps((B) + ob[V]), \
                                                     mb[V]) : _mm256_loadu_ps((B) + oa[V]))
    for (int p0 = 0; p0 < Ho * Wo; p0 += 4) {
        const int np = Ho * Wo - p0 < 4 ? Ho * Wo - p0 : 4;
        const float *b[4];
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        float r[4];
        int k = 0, v = 0;
        for (int i = 0; i < 4; i++) {   /* positions past np: the last again (computed, not stored) */
            const int p = p0 + (i < np ? i : np - 1), oy = p / Wo, ox = p % Wo;
            b[i] = xp + (advnn__idx)oy * SH * rowp + (advnn__idx)ox * SW * C;
        }
        for (; k + 16 <= K; k += 16, v += 2) {
            const __m256 w0 = _mm256_loadu_ps(kern + k), w1 = _mm256_loadu_ps(kern + k + 8);
            s0 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[0], v), s0); t0 = _mm256_fmadd_ps(w1, ADVNN__DOT_V(b[0], v + 1), t0);
            s1 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[1], v), s1); t1 = _mm256_fmadd_ps(w1, ADVNN__DOT_V(b[1], v + 1), t1);
            s2 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[2], v), s2); t2 = _mm256_fmadd_ps(w1, ADVNN__DOT_V(b[2], v + 1), t2);
            s3 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[3], v), s3); t3 = _mm256_fmadd_ps(w1, ADVNN__DOT_V(b[3], v + 1), t3);
        }
        if (k + 8 <= K) {
            const __m256 w0 = _mm256_loadu_ps(kern + k);
            s0 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[0], v), s0); s1 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[1], v), s1);
            s2 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[2], v), s2); s3 = _mm256_fmadd_ps(w0, ADVNN__DOT_V(b[3], v), s3);
            k += 8;
        }
        r[0] = advnn__vhsum(_mm256_add_ps(s0, t0)); r[1] = advnn__vhsum(_mm256_add_ps(s1, t1));
        r[2] = advnn__vhsum(_mm256_add_ps(s2, t2)); r[3] = advnn__vhsum(_mm256_add_ps(s3, t3));
        for (; k < K; k++) {
            const advnn__idx o = (advnn__idx)(k / R) * rowp + k % R;
            r[0] += kern[k] * b[0][o]; r[1] += kern[k] * b[1][o]; r[2] += kern[k] * b[2][o]; r[3] += kern[k] * b[3][o];
        }
        for (int i = 0; i < np; i++) {
            float zi = bias ? r[i] + bias[0] : r[i];
            if (!(relu || prelu) || y != z) z[p0 + i] = zi;
            if (relu) y[p0 + i] = zi > 0.0f ? zi : 0.0f;
            else if (prelu) y[p0 + i] = zi > 0.0f ? zi : prelu[0] * zi;
        }
    }
#undef ADVNN__DOT_V
}

/* The planar kernels' step: for j < N (at most 6), the weight S[j * STRIDE] broadcast and its products
 * with the two position vectors V0, V1 added to accumulators A##j, B##j. */
#define ADVNN__PL_FMA(N, J, S, STRIDE, V0, V1, A, B)                                                  \
    if ((N) > (J)) {                                                                               \
        const __m256 w_ = _mm256_broadcast_ss((S) + (J) * (STRIDE));                               \
        A = _mm256_fmadd_ps(V0, w_, A);                                                            \
        B = _mm256_fmadd_ps(V1, w_, B);                                                            \
    }
#define ADVNN__PL_FMA6(N, S, STRIDE, V0, V1, A, B)                                                    \
    do {                                                                                           \
        ADVNN__PL_FMA(N, 0, S, STRIDE, V0, V1, A##0, B##0) ADVNN__PL_FMA(N, 1, S, STRIDE, V0, V1, A##1, B##1) \
        ADVNN__PL_FMA(N, 2, S, STRIDE, V0, V1, A##2, B##2) ADVNN__PL_FMA(N, 3, S, STRIDE, V0, V1, A##3, B##3) \
        ADVNN__PL_FMA(N, 4, S, STRIDE, V0, V1, A##4, B##4) ADVNN__PL_FMA(N, 5, S, STRIDE, V0, V1, A##5, B##5) \
    } while (0)
/* advnn_conv_implicit at stride 1 with few filters: positions on the lanes. The image is copied
 * channel by channel (planar) into rows of Wp = Wo + KW - 1 padded columns, so that for each tap
 * (kh, kw, c) the inputs of 16 consecutive positions q = oh * Wp + ow are one unaligned 16-float
 * run; the ow >= Wo positions of each row are computed and dropped. A filter's lanes then hold 16
 * positions instead of the NHWC kernel's one position's 5 or 10 filters in 8 or 16 lanes, and an
 * output still gets the FMA chain of its cols row, in its order. Tile: 16 positions x NF <= 6
 * filters (12 accumulators; per tap 2 loads and NF broadcasts); values (+ bias) to t[j * 16 + i]. */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__conv_planar_tile(int NF, const float *xq, advnn__idx plane, int C, int KH,
                                                         int KW, int Wp, const float *wk, int F, const float *bias,
                                                         float *t) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
    for (int ky = 0; ky < KH; ky++)
        for (int kx = 0; kx < KW; kx++) {
            const float *xs = xq + (advnn__idx)ky * Wp + kx;
            for (int c = 0; c < C; c++, xs += plane, wk += F) {
                const __m256 v0 = _mm256_loadu_ps(xs), v1 = _mm256_loadu_ps(xs + 8);
                ADVNN__PL_FMA6(NF, wk, 1, v0, v1, a, b);
            }
        }
#define ADVNN__PS(J, A, B)                                                                            \
    if (NF > (J)) {                                                                                \
        if (bias) {                                                                                \
            const __m256 bv = _mm256_broadcast_ss(bias + (J));                                     \
            A = _mm256_add_ps(A, bv);                                                              \
            B = _mm256_add_ps(B, bv);                                                              \
        }                                                                                          \
        _mm256_store_ps(t + 16 * (J), A);                                                          \
        _mm256_store_ps(t + 16 * (J) + 8, B);                                                      \
    }
    ADVNN__PS(0, a0, b0) ADVNN__PS(1, a1, b1) ADVNN__PS(2, a2, b2)
    ADVNN__PS(3, a3, b3) ADVNN__PS(4, a4, b4) ADVNN__PS(5, a5, b5)
#undef ADVNN__PS
}
#define ADVNN__CONV_PLANAR_MAX_F 12
/* r[0..8) transposed as an 8 x 8 matrix */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__tr8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20); r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20); r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31); r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31); r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
/* The image x (H x W x C) into C planes of Hp x Wp floats, plane floats apart, at rows [PT, PT + H) and
 * columns [PL, PL + W) (clipped to the planes), zeros elsewhere up to each plane's end. */
ADVNN__AVX2_FN static void advnn__planar_pad(int H, int W, int C, int PT, int PL, int Hp, int Wp, advnn__idx plane,
                                             const float *x, float *work) {
    const int r0 = PT < Hp ? PT : Hp, r1 = PT + H < Hp ? PT + H : Hp;    /* rows [r0, r1) hold the image */
    const int c0 = PL < Wp ? PL : Wp, c1 = PL + W < Wp ? PL + W : Wp;    /* and columns [c0, c1) */
    for (int c = 0; c < C; c++) {   /* zero the border, then copy the image in */
        float *pc = work + c * plane;
        memset(pc, 0, (size_t)r0 * Wp * sizeof(float));
        memset(pc + (advnn__idx)r1 * Wp, 0, (size_t)(plane - (advnn__idx)r1 * Wp) * sizeof(float));
        for (int r = r0; r < r1; r++) {
            float *d = pc + (advnn__idx)r * Wp;
            memset(d, 0, (size_t)c0 * sizeof(float));
            memset(d + c1, 0, (size_t)(Wp - c1) * sizeof(float));
            if (C == 1) memcpy(d + c0, x + (advnn__idx)(r - PT) * W + (c0 - PL), (size_t)(c1 - c0) * sizeof(float));
        }
    }
    if (C > 1) /* the image, 8 pixels x 8 channels at a time (C > 8: the last 8 channels overlap the others) */
        for (int r = r0; r < r1; r++) {
            const advnn__idx p0 = (advnn__idx)(r - PT) * W + (c0 - PL), row = (advnn__idx)r * Wp + c0;
            int i = 0;
            for (; i + 8 <= c1 - c0; i += 8) {
                if (C < 8 && (p0 + i + 8) * C > (advnn__idx)H * W * C - 8 + C) break; /* 8 floats from the last pixel */
                for (int cb = 0; cb < C; cb += 8) {
                    const int cs = C < 8 ? 0 : cb + 8 <= C ? cb : C - 8, nc = C < 8 ? C : 8;
                    __m256 v[8];
                    for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps(x + (p0 + i + k) * C + cs);
                    advnn__tr8(v);
                    for (int k = 0; k < nc; k++) _mm256_storeu_ps(work + (cs + k) * plane + row + i, v[k]);
                }
            }
            for (; i < c1 - c0; i++)
                for (int c = 0; c < C; c++) work[c * plane + row + i] = x[(p0 + i) * C + c];
        }
}
ADVNN__AVX2_FN static void advnn__conv_planar_v(int H, int W, int C, int KH, int KW, int PT, int PL, int Ho, int Wo,
                                                const float *x, int F, const float *kern, const float *bias, int relu,
                                                const float *prelu, float *z, float *y, float *work) {
    const int Hp = Ho - 1 + KH, Wp = Wo - 1 + KW;
    const advnn__idx plane = (advnn__idx)Hp * Wp + 16, nq = (advnn__idx)Ho * Wp; /* 16: the last tile's overhang */
    /* t: a tile, 8 rows of 16 positions (rows >= nf unused); u: 16 positions x F, rows 16 floats apart */
    ADVNN__ALIGN64 float t[16 * 8] = {0}, u[16 * 16], sl[8] = {0};   /* sl: F < 8 PReLU slopes */
    const __m256 zero = _mm256_setzero_ps();
    __m256 s0 = zero, s1 = zero;   /* PReLU slopes of the two overlapping vectors (F >= 8) */
    if (prelu && F >= 8) { s0 = _mm256_loadu_ps(prelu); s1 = _mm256_loadu_ps(prelu + F - 8); }
    else if (prelu) { memcpy(sl, prelu, (size_t)F * sizeof(float)); s0 = _mm256_load_ps(sl); }
    advnn__planar_pad(H, W, C, PT, PL, Hp, Wp, plane, x, work);
    for (advnn__idx q0 = 0; q0 < nq; q0 += 16) {
        for (int f0 = 0; f0 < F; f0 += 6) {
            const int nf = F - f0 < 6 ? F - f0 : 6;
            const float *wk = kern + f0, *bs = bias ? bias + f0 : NULL;
            switch (nf) {
            case 1: advnn__conv_planar_tile(1, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            case 2: advnn__conv_planar_tile(2, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            case 3: advnn__conv_planar_tile(3, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            case 4: advnn__conv_planar_tile(4, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            case 5: advnn__conv_planar_tile(5, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            default: advnn__conv_planar_tile(6, work + q0, plane, C, KH, KW, Wp, wk, F, bs, t); break;
            }
            for (int h = 0; h < 2; h++) { /* u[i][f0 + j] = t[j][i] (j >= nf: overwritten by the next group, or unused) */
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_load_ps(t + 16 * j + 8 * h);
                advnn__tr8(r);
                for (int i = 0; i < 8; i++) _mm256_storeu_ps(u + 16 * (8 * h + i) + f0, r[i]);
            }
        }
        /* to NHWC, the padding columns dropped; ReLU as the GEMM's epilogue does it, PReLU as
         * advnn_act_forward (z > 0 ? z : slope z) */
#define ADVNN__PL_ACT(V, S) (relu ? _mm256_max_ps((V), zero) \
                              : _mm256_blendv_ps(_mm256_mul_ps((S), (V)), (V), _mm256_cmp_ps((V), zero, _CMP_GT_OQ)))
        advnn__idx oy = q0 / Wp, ox = q0 - oy * Wp;
        for (int i = 0; i < 16 && q0 + i < nq; i++) {
            if (ox < Wo) {
                const advnn__idx o = (oy * Wo + ox) * F;
                const float *ui = u + 16 * i;
                if (F >= 8) {   /* two overlapping vectors */
                    __m256 v0 = _mm256_load_ps(ui), v1 = _mm256_loadu_ps(ui + F - 8);
                    if (!(relu || prelu) || y != z) {
                        _mm256_storeu_ps(z + o, v0);
                        _mm256_storeu_ps(z + o + F - 8, v1);
                    }
                    if (relu || prelu) {
                        _mm256_storeu_ps(y + o, ADVNN__PL_ACT(v0, s0));
                        _mm256_storeu_ps(y + o + F - 8, ADVNN__PL_ACT(v1, s1));
                    }
                } else {
                    ADVNN__ALIGN64 float m[8];
                    if (!(relu || prelu) || y != z) advnn__copy_lt8(F, ui, z + o);
                    if (relu || prelu) {
                        _mm256_store_ps(m, ADVNN__PL_ACT(_mm256_load_ps(ui), s0));
                        advnn__copy_lt8(F, m, y + o);
                    }
                }
            }
            if (++ox == Wp) { ox = 0; oy++; }
        }
    }
#undef ADVNN__PL_ACT
}

/* advnn_conv_dgrad at stride 1 with few channels, planar as advnn__conv_planar_v runs the forward: dz is
 * copied filter by filter into zero-padded planes of Hq x Wq = (H + KH - 1) x (W + KW - 1), output
 * (oh, ow) at row oh + KH - 1 - PT, column ow + KW - 1 - PL, so that input position q = ih * Wq + iw
 * reads tap (kh, kw) at q + (KH - 1 - kh) * Wq + KW - 1 - kw: 16 consecutive positions are one
 * unaligned run per filter (the iw >= W positions of each row are computed and dropped). Each tap's
 * term is its dcols element (the GEMM's F-term FMA chain from zero), added to the sum in col2im's
 * order (output pixels ascending: taps kh, kw descending). The taps that col2im drops read padding
 * zeros here: their term is +0 (the kernel is finite) and the sum, which starts at +0, is never -0, so
 * adding +0 leaves it. Tile: 16 positions x NC <= 6 channels, 12 chains (per tap and filter 2 loads
 * and NC broadcasts for 2 NC FMAs); the sums to t[j * 16 + i], kept there between taps. */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__dgrad_planar_tile(int NC, const float *dq, advnn__idx plane, int F, int T,
                                                          const advnn__idx *off, const float *wk, advnn__idx ws,
                                                          float *t) {
    /* the sums stay in t (per tap NC loads, adds and stores of 2 vectors): registers for 12 chains */
    for (int j = 0; j < 2 * NC; j++) _mm256_store_ps(t + 8 * j, _mm256_setzero_ps());
    for (int k = 0; k < T; k++) {
        const float *d = dq + off[k], *w = wk + (T - 1 - k) * ws;
        __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0, p4 = p0, p5 = p0;
        __m256 q0 = p0, q1 = p0, q2 = p0, q3 = p0, q4 = p0, q5 = p0;
        for (int f = 0; f < F; f++, d += plane) {
            const __m256 x0 = _mm256_loadu_ps(d), x1 = _mm256_loadu_ps(d + 8);
            ADVNN__PL_FMA6(NC, w + f, F, x0, x1, p, q);
        }
#define ADVNN__DS(J, P, Q)                                                                            \
        if (NC > (J)) {                                                                            \
            _mm256_store_ps(t + 16 * (J), _mm256_add_ps(_mm256_load_ps(t + 16 * (J)), P));         \
            _mm256_store_ps(t + 16 * (J) + 8, _mm256_add_ps(_mm256_load_ps(t + 16 * (J) + 8), Q)); \
        }
        ADVNN__DS(0, p0, q0) ADVNN__DS(1, p1, q1) ADVNN__DS(2, p2, q2)
        ADVNN__DS(3, p3, q3) ADVNN__DS(4, p4, q4) ADVNN__DS(5, p5, q5)
#undef ADVNN__DS
    }
}
#undef ADVNN__PL_FMA6
#undef ADVNN__PL_FMA
#define ADVNN__DGRAD_MAX_C 12
#define ADVNN__DGRAD_MAX_TAPS 49
ADVNN__AVX2_FN static void advnn__conv_dgrad_planar_v(int H, int W, int C, int KH, int KW, int PT, int PL, int Ho,
                                                      int Wo, const float *dz, int F, const float *kern, float *dx,
                                                      float *work) {
    const int Hq = H + KH - 1, Wq = W + KW - 1, T = KH * KW;
    const advnn__idx plane = (advnn__idx)Hq * Wq + KW + 16, nq = (advnn__idx)H * Wq; /* KW + 16: the overhang */
    /* t: the tile, 16 rows of 16 positions (rows >= C unused); u: 16 positions x C, rows 16 floats apart */
    ADVNN__ALIGN64 float t[16 * 16] = {0}, u[16 * 16];
    advnn__idx off[ADVNN__DGRAD_MAX_TAPS];   /* tap r * KW + s (kh = KH - 1 - r, kw = KW - 1 - s) at q + off */
    for (int r = 0; r < KH; r++)
        for (int s = 0; s < KW; s++) off[r * KW + s] = (advnn__idx)r * Wq + s;
    advnn__planar_pad(Ho, Wo, F, KH - 1 - PT, KW - 1 - PL, Hq, Wq, plane, dz, work);
    for (advnn__idx q0 = 0; q0 < nq; q0 += 16) {
        for (int c0 = 0, nc; c0 < C; c0 += nc) {   /* groups of <= 6 channels, sizes balanced */
            const float *dq = work + q0, *wk = kern + (advnn__idx)c0 * F;
            const advnn__idx ws = (advnn__idx)C * F;
            nc = C - c0 > 6 ? (C - c0 + 1) / 2 : C - c0;
            switch (nc) {
            case 1: advnn__dgrad_planar_tile(1, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            case 2: advnn__dgrad_planar_tile(2, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            case 3: advnn__dgrad_planar_tile(3, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            case 4: advnn__dgrad_planar_tile(4, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            case 5: advnn__dgrad_planar_tile(5, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            default: advnn__dgrad_planar_tile(6, dq, plane, F, T, off, wk, ws, t + 16 * c0); break;
            }
        }
        for (int cb = 0; cb < C; cb += 8)   /* u[i][cb + j] = t[cb + j][i] */
            for (int h = 0; h < 2; h++) {
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_load_ps(t + 16 * (cb + j) + 8 * h);
                advnn__tr8(r);
                for (int i = 0; i < 8; i++) _mm256_storeu_ps(u + 16 * (8 * h + i) + cb, r[i]);
            }
        advnn__idx iy = q0 / Wq, ix = q0 - iy * Wq;
        for (int i = 0; i < 16 && q0 + i < nq; i++) {   /* to NHWC, the padding columns dropped */
            if (ix < W) {
                float *d = dx + (iy * W + ix) * C;
                if (C >= 8) {   /* two overlapping vectors */
                    const __m256 v1 = _mm256_loadu_ps(u + 16 * i + C - 8);
                    _mm256_storeu_ps(d, _mm256_load_ps(u + 16 * i));
                    _mm256_storeu_ps(d + C - 8, v1);
                } else advnn__copy_lt8(C, u + 16 * i, d);
            }
            if (++ix == Wq) { ix = 0; iy++; }
        }
    }
}

/* C = A^T B + beta C for a narrow C (5 <= M rows, 2 <= N <= 12 columns) and a long K: the weight
 * gradient of a convolution with few filters, cols^T dz (M = KH*KW*C, N = filters, K = positions).
 * The blocked path puts N on the vector lanes, so 5 or 10 filters fill 5 or 10 of 16 and each
 * 256-row block of dz is packed; here the lanes run over C's rows (A's rows are contiguous), a
 * block of 8*MV rows by NJ columns in registers, reading A and B in place. Each C element is the
 * blocked path's sum bit for bit: the same K blocks of ADVNN__KC rows, each summed in order from
 * zero by FMAs, then added to C as there (alpha == 1 only). W3's backward, K blocks of 4 MiB:
 * 40x40x5 -> 5 filters 27 -> 11 us per image, all nine convolutions 164 -> 123 us. A block's rows
 * come as runs of rows lda apart (one run here; advnn_conv_wgrad: one per output row, in the padded
 * images). */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__tn_block(int MV, int NJ, int masked, int nrun, const float *const *ar,
                                                 const int *len, advnn__idx aoff, advnn__idx lda, const float *b,
                                                 advnn__idx ldb, __m256i ml, float *t) {
    const __m256 z = _mm256_setzero_ps();
    __m256 c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z, c32 = z;
    for (int r = 0; r < nrun; r++) {   /* the block's rows: len[r] rows lda apart from ar[r] + aoff, in turn */
        const float *a = ar[r] + aoff;
        for (int p = 0; p < len[r]; p++, a += lda, b += ldb) {
            /* (MV, NJ and masked are constants in every call: the unused lanes and columns compile away) */
#define ADVNN__LDV(V) (MV > (V) ? (masked && MV == (V) + 1 ? _mm256_maskload_ps(a + 8 * (V), ml) \
                                                          : _mm256_loadu_ps(a + 8 * (V))) : z)
            __m256 a0 = ADVNN__LDV(0), a1 = ADVNN__LDV(1), a2 = ADVNN__LDV(2), a3 = ADVNN__LDV(3), bv;
#undef ADVNN__LDV
#define ADVNN__COL(J, X0, X1, X2, X3)                                                                  \
            if (NJ > (J)) {                                                                        \
                bv = _mm256_broadcast_ss(b + (J));                                                 \
                X0 = _mm256_fmadd_ps(a0, bv, X0);                                                  \
                if (MV > 1) X1 = _mm256_fmadd_ps(a1, bv, X1);                                      \
                if (MV > 2) X2 = _mm256_fmadd_ps(a2, bv, X2);                                      \
                if (MV > 3) X3 = _mm256_fmadd_ps(a3, bv, X3);                                      \
            }
            ADVNN__COL(0, c00, c10, c20, c30)
            ADVNN__COL(1, c01, c11, c21, c31)
            ADVNN__COL(2, c02, c12, c22, c32)
#undef ADVNN__COL
        }
    }
    _mm256_store_ps(t, c00); _mm256_store_ps(t + 8, c10); _mm256_store_ps(t + 16, c20); _mm256_store_ps(t + 24, c30);
    if (NJ > 1) {
        _mm256_store_ps(t + 32, c01); _mm256_store_ps(t + 40, c11);
        _mm256_store_ps(t + 48, c21); _mm256_store_ps(t + 56, c31);
    }
    if (NJ > 2) {
        _mm256_store_ps(t + 64, c02); _mm256_store_ps(t + 72, c12);
        _mm256_store_ps(t + 80, c22); _mm256_store_ps(t + 88, c32);
    }
}
/* One K block: C (M x N) = block sum + bt C, the block's rows of A given as runs (advnn__tn_block) with
 * A's M columns from aoff on; B's rows b, b + ldb, ... */
ADVNN__AVX2_FN static void advnn__tn_panel(int M, int N, int nrun, const float *const *ar, const int *len,
                                          advnn__idx aoff, advnn__idx lda, const float *B, int ldb, float bt, float *C,
                                          int ldc) {
    ADVNN__ALIGN64 float t[96];   /* one block, column-major: t[j * 32 + i] */
    const int nv = (M + 7) / 8, rem = M - 8 * (nv - 1);
    const __m256i ml = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int v0 = 0; v0 < nv; v0 += 4) {
        const int mv = nv - v0 < 4 ? nv - v0 : 4, masked = v0 + mv == nv && rem < 8;
        const int mi = M - 8 * v0 < 32 ? M - 8 * v0 : 32;
        const advnn__idx ao = aoff + 8 * v0;
        for (int j0 = 0; j0 < N; j0 += 3) {
            const int nj = N - j0 < 3 ? N - j0 : 3;
            const float *bp = B + j0;
#define ADVNN__TN(MV, NJ) (masked ? advnn__tn_block(MV, NJ, 1, nrun, ar, len, ao, lda, bp, ldb, ml, t) \
                                  : advnn__tn_block(MV, NJ, 0, nrun, ar, len, ao, lda, bp, ldb, ml, t))
            switch (mv * 4 + nj) {
            case 5: ADVNN__TN(1, 1); break;
            case 6: ADVNN__TN(1, 2); break;
            case 7: ADVNN__TN(1, 3); break;
            case 9: ADVNN__TN(2, 1); break;
            case 10: ADVNN__TN(2, 2); break;
            case 11: ADVNN__TN(2, 3); break;
            case 13: ADVNN__TN(3, 1); break;
            case 14: ADVNN__TN(3, 2); break;
            case 15: ADVNN__TN(3, 3); break;
            case 17: ADVNN__TN(4, 1); break;
            case 18: ADVNN__TN(4, 2); break;
            default: ADVNN__TN(4, 3); break;
            }
#undef ADVNN__TN
            for (int i = 0; i < mi; i++) /* as advnn__store_edge_t with alpha 1 */
                for (int j = 0; j < nj; j++) {
                    float *cp = C + (advnn__idx)(8 * v0 + i) * ldc + j0 + j, v = t[j * 32 + i];
                    *cp = bt == 0.0f ? v : v + bt * *cp;
                }
        }
    }
}
ADVNN__AVX2_FN static void advnn__sgemm_tn_narrow(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                                 float beta, float *C, int ldc) {
    for (int pc = 0; pc < K; pc += ADVNN__KC) {
        const int kc = K - pc < ADVNN__KC ? K - pc : ADVNN__KC;
        const float *ap = A + (advnn__idx)pc * lda;
        advnn__tn_panel(M, N, 1, &ap, &kc, 0, lda, B + (advnn__idx)pc * ldb, ldb, pc == 0 ? beta : 1.0f, C, ldc);
    }
}
#elif defined(ADVNN__NEON)
/* 8x12 micro-kernel: 24 q accumulators, per k 2 loads of packed A + 3 loads of B + 24 lane-FMAs. */
static void advnn__ukr_v(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                         const float *ADVNN__RESTRICT b, float *c, advnn__idx ldc, float alpha, float beta) {
    float32x4_t acc[8][3];
    (void)rsa; (void)csa; /* packed A only: rsa == 1, csa == 8 */
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = vdupq_n_f32(0.0f);
    for (int p = 0; p < k; p++) {
        float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
#define ADVNN__NR1(I, AV, L)                                     \
        acc[I][0] = vfmaq_laneq_f32(acc[I][0], b0, AV, L);       \
        acc[I][1] = vfmaq_laneq_f32(acc[I][1], b1, AV, L);       \
        acc[I][2] = vfmaq_laneq_f32(acc[I][2], b2, AV, L);
        ADVNN__NR1(0, a0, 0) ADVNN__NR1(1, a0, 1) ADVNN__NR1(2, a0, 2) ADVNN__NR1(3, a0, 3)
        ADVNN__NR1(4, a1, 0) ADVNN__NR1(5, a1, 1) ADVNN__NR1(6, a1, 2) ADVNN__NR1(7, a1, 3)
#undef ADVNN__NR1
        a += 8;
        b += 12;
    }
    float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
    for (int i = 0; i < 8; i++)
        for (int q = 0; q < 3; q++) {
            float *cp = c + i * ldc + 4 * q;
            float32x4_t r = vmulq_f32(va, acc[i][q]);
            if (beta != 0.0f) r = vfmaq_f32(r, vb, vld1q_f32(cp));
            vst1q_f32(cp, r);
        }
}
#endif
#ifdef ADVNN__GEMM_S
/* Portable 4x8 micro-kernel (strided A). */
static void advnn__ukr_s(int k, const float *ADVNN__RESTRICT a, advnn__idx rsa, advnn__idx csa,
                         const float *ADVNN__RESTRICT b, float *c, advnn__idx ldc, float alpha, float beta) {
    float acc[4][8];
    memset(acc, 0, sizeof acc);
    for (int p = 0; p < k; p++) {
        for (int i = 0; i < 4; i++) {
            float av = a[i * rsa];
            for (int j = 0; j < 8; j++) acc[i][j] += av * b[j];
        }
        a += csa;
        b += 8;
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++) {
            float *cp = c + i * ldc + j;
            *cp = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *cp;
        }
}
#endif

#ifdef ADVNN__AVX2
/* n8 (a multiple of 8) rows of B stored N x K into a panel's columns 0..n8: eight rows by eight k at a
 * time through an 8 x 8 transpose in registers (the 4-row scalar gather below was 5.6% of the GEMM
 * driver's time in W1's training, whose input gradients pack every weight matrix transposed). */
ADVNN__AVX2_FN static void advnn__pack_bt8_v(int NR, const float *s, int ldb, int kc, int n8, float *d) {
    for (int jj = 0; jj < n8; jj += 8) {
        const float *s0 = s + (advnn__idx)jj * ldb;
        int p = 0;
        for (; p + 8 <= kc; p += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps(s0 + (advnn__idx)t * ldb + p);
            advnn__tr8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(d + (advnn__idx)(p + t) * NR + jj, r[t]);
        }
        for (; p < kc; p++)
            for (int t = 0; t < 8; t++) d[(advnn__idx)p * NR + jj + t] = s0[(advnn__idx)t * ldb + p];
    }
}
#endif
/* Pack B(pc:pc+kc, jc:jc+nc) of op(B) into NR-wide micro-panels: panel q, element (p, jj) at
 * dst[q*NR*kc + p*NR + jj]; columns beyond nc are zero. vt: the AVX2 instance (advnn__pack_bt8_v). */
ADVNN__INLINE void advnn__pack_b_t(int NR, int vt, int transB, const float *B, int ldb, int pc, int jc, int kc, int nc,
                                   float *dst) {
    for (int jr = 0; jr < nc; jr += NR) {
        int nr = nc - jr < NR ? nc - jr : NR;
        float *d = dst + (advnn__idx)jr * kc;
        if (!transB) {
            const float *s = B + (advnn__idx)pc * ldb + jc + jr;
            if (nr == NR) {
                for (int p = 0; p < kc; p++, s += ldb, d += NR) memcpy(d, s, NR * sizeof(float));
            } else {   /* the last panel of a product with N % NR columns (an LSTM's 4H = 40): no per-element loop */
                const int n8 = nr & ~7;
                for (int p = 0; p < kc; p++, s += ldb, d += NR) {
                    memset(d, 0, NR * sizeof(float));
                    if (n8) memcpy(d, s, 8 * sizeof(float));
                    if (nr > n8) advnn__copy_lt8(nr - n8, s + n8, d + n8);
                }
            }
        } else {
            /* B stored N x K: column jj of the panel is row (jc+jr+jj) of B */
            const float *s = B + (advnn__idx)(jc + jr) * ldb + pc;
            int jj = 0;
#ifdef ADVNN__AVX2
            if (vt) advnn__pack_bt8_v(NR, s, ldb, kc, jj = nr & ~7, d);
#else
            (void)vt;
#endif
            for (; jj + 4 <= nr; jj += 4) {
                const float *s0 = s + (advnn__idx)jj * ldb, *s1 = s0 + ldb, *s2 = s1 + ldb, *s3 = s2 + ldb;
                float *dd = d + jj;
                for (int p = 0; p < kc; p++, dd += NR) {
                    dd[0] = s0[p]; dd[1] = s1[p]; dd[2] = s2[p]; dd[3] = s3[p];
                }
            }
            for (; jj < nr; jj++) {
                const float *s0 = s + (advnn__idx)jj * ldb;
                for (int p = 0; p < kc; p++) d[p * NR + jj] = s0[p];
            }
            for (; jj < NR; jj++)
                for (int p = 0; p < kc; p++) d[p * NR + jj] = 0.0f;
        }
    }
}

/* Pack op(A)(ic:ic+mc, pc:pc+kc) into MR-tall micro-panels: panel r, element (i, p) at
 * dst[r*MR*kc + p*MR + i]; rows beyond mc are zero. */
ADVNN__INLINE void advnn__pack_a_t(int MR, int transA, const float *A, int lda, int ic, int pc, int mc, int kc,
                                   float *dst) {
    for (int ir = 0; ir < mc; ir += MR) {
        int mr = mc - ir < MR ? mc - ir : MR;
        float *d = dst + (advnn__idx)ir * kc;
        if (transA) {
            /* A stored K x M: row p of storage holds op(A)(:, p) contiguous */
            const float *s = A + (advnn__idx)pc * lda + ic + ir;
            if (mr == MR) {
                for (int p = 0; p < kc; p++, s += lda, d += MR) memcpy(d, s, MR * sizeof(float));
            } else {   /* the weight gradients' last rows (M = 10, 16, 64, ...) over long K: no per-element loop */
                for (int p = 0; p < kc; p++, s += lda, d += MR) {
                    memset(d, 0, MR * sizeof(float));
                    advnn__copy_lt8(mr, s, d);
                }
            }
        } else {
            const float *s = A + (advnn__idx)(ic + ir) * lda + pc;
            int i = 0;
            for (; i < mr; i++) {
                const float *si = s + (advnn__idx)i * lda;
                for (int p = 0; p < kc; p++) d[p * MR + i] = si[p];
            }
            for (; i < MR; i++)
                for (int p = 0; p < kc; p++) d[p * MR + i] = 0.0f;
        }
    }
}

/* Merge an MR x NR tile t (mr x nr valid) into C with alpha/beta. */
ADVNN__INLINE void advnn__store_edge_t(int NR, const float *t, int mr, int nr, float *C, int ldc, float alpha,
                                       float beta) {
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float *cp = C + (advnn__idx)i * ldc + j;
            float v = alpha * t[i * NR + j];
            *cp = beta == 0.0f ? v : v + beta * *cp;
        }
}

/* B packed ahead (advnn_sgemm_pack_b): block (jc, pc) of op(B), nc x kc, packed as the driver packs it
 * (panels of NR columns, the last one zero-padded), the blocks of columns in turn, each with all of K. */
ADVNN__INLINE advnn__idx advnn__pb_off(int NR, int K, int jc, int pc, int nc) {
    return (advnn__idx)jc * K + (advnn__idx)((nc + NR - 1) / NR * NR) * pc;
}
ADVNN__INLINE void advnn__pack_b_all_t(int NR, int NC, int vt, int transB, int K, int N, const float *B, int ldb,
                                       float *P) {
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += ADVNN__KC)
            advnn__pack_b_t(NR, vt, transB, B, ldb, pc, jc, K - pc < ADVNN__KC ? K - pc : ADVNN__KC, nc,
                            P + advnn__pb_off(NR, K, jc, pc, nc));
    }
}

/* The blocked driver for an MR x NR micro-kernel ukr (strided: ukr accepts unpacked A). packA: 1 =
 * always pack A blocks, 0 = read A in place for full MR tiles (forced to 1 when the micro-kernel needs
 * packed A). work >= ADVNN_SGEMM_WORK_FLOATS. P: op(B) packed by advnn__pack_b_all_t with this NR and NC, or
 * NULL (each block packed here). */
ADVNN__INLINE void advnn__sgemm_blocked_t(int MR, int NR, int NC, int strided, int vt, advnn__ukr_fn ukr,
                                          advnn__ukr_edge_fn ukr_e, advnn__ukr_epi_fn ukr_x,
                                          advnn__ukr_edge_epi_fn ukr_ex, advnn__ukr_rows_fn ukr_r, int transA,
                                          int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                          const float *B, int ldb, const float *P, float beta, float *C, int ldc,
                                          float *work, int packA, const advnn__epi *ep) {
    float *bpack = work;                              /* KC x NC */
    float *apack = work + (advnn__idx)ADVNN__KC * NC; /* MC x KC */
    ADVNN__ALIGN64 float tile[ADVNN__TILE_MAX];
    if (!strided) packA = 1;
    const advnn__idx rsa_u = transA ? 1 : lda, csa_u = transA ? lda : 1;
    /* B read in place for a weight gradient (A^T B with M = a layer's inputs <= one block of rows):
     * each panel is reused by a few row tiles only, so a packed copy would cost as much as the reads
     * it speeds up. (Not for A B: a forward product of a chunk of <= 96 rows keeps its packed weights
     * and its in-register epilogue.) */
    const int inb = ukr_r && transA && !transB && !ep && M <= ADVNN__MC;
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += ADVNN__KC) {
            int kc = K - pc < ADVNN__KC ? K - pc : ADVNN__KC;
            float bt = pc == 0 ? beta : 1.0f;
            const int nb0 = inb ? nc - nc % NR : 0;   /* full panels read in place: only the last is packed */
            const float *bpk = P ? P + advnn__pb_off(NR, K, jc, pc, nc) : bpack;   /* P: packed by the caller */
            if (!P && nb0 < nc)
                advnn__pack_b_t(NR, vt, transB, B, ldb, pc, jc + nb0, kc, nc - nb0, bpack + (advnn__idx)nb0 * kc);
            for (int ic = 0; ic < M; ic += ADVNN__MC) {
                int mc = M - ic < ADVNN__MC ? M - ic : ADVNN__MC;
                int mfull = packA ? 0 : ukr_r ? mc : mc - mc % MR; /* rows read in place */
                if (mfull < mc)
                    advnn__pack_a_t(MR, transA, A, lda, ic + mfull, pc, mc - mfull, kc, apack + (advnn__idx)mfull * kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    const float *bp = jr < nb0 ? B + (advnn__idx)pc * ldb + jc + jr : bpk + (advnn__idx)jr * kc;
                    const advnn__idx ldbp = jr < nb0 ? ldb : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        const float *ap;
                        advnn__idx rsa, csa;
                        if (ir < mfull) {
                            ap = transA ? A + (advnn__idx)pc * lda + ic + ir : A + (advnn__idx)(ic + ir) * lda + pc;
                            rsa = rsa_u;
                            csa = csa_u;
                        } else {
                            ap = apack + (advnn__idx)ir * kc;
                            rsa = 1;
                            csa = MR;
                        }
                        float *cp = C + (advnn__idx)(ic + ir) * ldc + jc + jr;
                        advnn__epi et, *e = NULL;
                        if (ep && pc + kc >= K) { /* the epilogue, at the last K block */
                            et.bias = ep->bias ? ep->bias + jc + jr : NULL;
                            et.ldy = ep->ldy;
                            et.y = ep->y + (advnn__idx)(ic + ir) * ep->ldy + jc + jr;
                            et.relu = ep->relu;
                            e = &et;
                        }
                        if (jr < nb0 && mr == MR) /* (B in place: never with an epilogue) */
                            ukr_r(kc, ap, rsa, csa, bp, ldbp, cp, ldc, alpha, bt, MR);
                        else if (mr == MR && nr == NR) {
                            if (e && ukr_x) ukr_x(kc, ap, rsa, csa, bp, cp, ldc, alpha, bt, e);
                            else {
                                ukr(kc, ap, rsa, csa, bp, cp, ldc, alpha, bt);
                                if (e) advnn__epi_tile(e, cp, ldc, mr, nr);
                            }
                        } else if (mr == MR && ukr_e) {
                            if (e && ukr_ex) ukr_ex(kc, ap, rsa, csa, bp, cp, ldc, alpha, bt, nr, e);
                            else {
                                ukr_e(kc, ap, rsa, csa, bp, cp, ldc, alpha, bt, nr);
                                if (e) advnn__epi_tile(e, cp, ldc, mr, nr);
                            }
                        } else {
                            if (ukr_r) ukr_r(kc, ap, rsa, csa, bp, ldbp, tile, NR, 1.0f, 0.0f, mr);
                            else ukr(kc, ap, rsa, csa, bp, tile, NR, 1.0f, 0.0f);
                            advnn__store_edge_t(NR, tile, mr, nr, cp, ldc, alpha, bt);
                            if (e) advnn__epi_tile(e, cp, ldc, mr, nr);
                        }
                    }
                }
            }
        }
    }
}

typedef void (*advnn__blocked_fn)(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                  const float *B, int ldb, const float *P, float beta, float *C, int ldc, float *work,
                                  int packA);
#ifdef ADVNN__VECTOR
/* One instance of the driver for both entry points below: with a second one the edge kernel (the
 * main kernel of 5- and 10-filter convolutions) had two callers and was no longer inlined into
 * either (W3's batch-512 inference 246 -> 285 µs per sample). */
ADVNN__NOINLINE ADVNN__VKFN void advnn__sgemm_blocked_vx(int transA, int transB, int M, int N, int K, float alpha,
                                                         const float *A, int lda, const float *B, int ldb,
                                                         const float *P, float beta, float *C, int ldc, float *work,
                                                         int packA, const advnn__epi *ep) {
    advnn__sgemm_blocked_t(ADVNN__MR_V, ADVNN__NR_V, ADVNN__NC_V, ADVNN__STRIDED_A_V, ADVNN__PACK_BT8_V, advnn__ukr_v,
                           ADVNN__UKR_EDGE_V, ADVNN__UKR_EPI_V, ADVNN__UKR_EDGE_EPI_V, ADVNN__UKR_ROWS_V, transA, transB,
                           M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA, ep);
}
ADVNN__VKFN void advnn__sgemm_blocked_v(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                                        int lda, const float *B, int ldb, const float *P, float beta, float *C, int ldc,
                                        float *work, int packA) {
    advnn__sgemm_blocked_vx(transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA, NULL);
}
#endif
#ifdef ADVNN__GEMM_S
ADVNN__FN void advnn__sgemm_blocked_s(int transA, int transB, int M, int N, int K, float alpha, const float *A,
                                      int lda, const float *B, int ldb, const float *P, float beta, float *C, int ldc,
                                      float *work, int packA) {
    advnn__sgemm_blocked_t(ADVNN__MR_S, ADVNN__NR_S, ADVNN__NC_S, 1, 0, advnn__ukr_s, NULL, NULL, NULL, NULL, transA, transB,
                           M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA, NULL);
}
#endif

/* The blocked driver of the live path (tests call it to choose the packing of A). */
ADVNN__FN void advnn__sgemm_blocked(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                    const float *B, int ldb, float beta, float *C, int ldc, float *work, int packA) {
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        advnn__sgemm_blocked_v(transA, transB, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, work, packA);
        return;
    }
#endif
#ifdef ADVNN__GEMM_S
    advnn__sgemm_blocked_s(transA, transB, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, work, packA);
#endif
}

/* blocked(...) with a 224 KiB stack buffer as work */
ADVNN__NOINLINE static void advnn__sgemm_stack(advnn__blocked_fn blocked, int transA, int transB, int M, int N, int K,
                                               float alpha, const float *A, int lda, const float *B, int ldb,
                                               const float *P, float beta, float *C, int ldc, int packA) {
    ADVNN__ALIGN64 float buf[ADVNN_SGEMM_WORK_FLOATS]; /* 224 KiB of stack */
    blocked(transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, buf, packA);
}

#ifdef ADVNN__VECTOR
/* y[0..n) = alpha * sum_k x[k*incx] * Mat[k*ld + j] + beta*y  (y contiguous). 8 vector accumulators. */
/* s0..s7 += x[k] * M[k][0..8 VL) over k < K (rows LD apart; XK may use k): the 8-vector column panel
 * of the matrix-vector kernels, in named accumulators (gcc -O2 kept an array of them in memory: a
 * store and a reload per FMA, which made W1's batch-1 GEMV ~3x slower) */
#define ADVNN__GEMV_PANEL8(M, LD, K, XK) do { const float *m_ = (M); \
        for (int k = 0; k < (K); k++, m_ += (LD)) { \
            advnn__v xk_ = advnn__vset(XK); \
            s0 = advnn__vfma(xk_, advnn__vld(m_), s0); s1 = advnn__vfma(xk_, advnn__vld(m_ + ADVNN__VL), s1); \
            s2 = advnn__vfma(xk_, advnn__vld(m_ + 2 * ADVNN__VL), s2); s3 = advnn__vfma(xk_, advnn__vld(m_ + 3 * ADVNN__VL), s3); \
            s4 = advnn__vfma(xk_, advnn__vld(m_ + 4 * ADVNN__VL), s4); s5 = advnn__vfma(xk_, advnn__vld(m_ + 5 * ADVNN__VL), s5); \
            s6 = advnn__vfma(xk_, advnn__vld(m_ + 6 * ADVNN__VL), s6); s7 = advnn__vfma(xk_, advnn__vld(m_ + 7 * ADVNN__VL), s7); \
        } } while (0)
ADVNN__VKFN void advnn__gemv_n(int K, int n, const float *Mat, int ld, const float *x, int incx, float *y,
                               float alpha, float beta) {
    const int W = 8 * ADVNN__VL;
    const advnn__v va = advnn__vset(alpha), vb = advnn__vset(beta);
    int j = 0;
    for (; j + W <= n; j += W) {
        advnn__v s[8], s0 = advnn__vset(0.0f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        ADVNN__GEMV_PANEL8(Mat + j, ld, K, x[(advnn__idx)k * incx]);
        s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3; s[4] = s4; s[5] = s5; s[6] = s6; s[7] = s7;
        for (int u = 0; u < 8; u++) {
            float *yp = y + j + u * ADVNN__VL;
            advnn__v r = advnn__vmul(va, s[u]);
            if (beta != 0.0f) r = advnn__vfma(vb, advnn__vld(yp), r);
            advnn__vst(yp, r);
        }
    }
    for (; j + ADVNN__VL <= n; j += ADVNN__VL) {
        advnn__v s0 = advnn__vset(0.0f), s1 = s0;
        const float *m = Mat + j;
        int k = 0;
        for (; k + 2 <= K; k += 2, m += 2 * (advnn__idx)ld) {
            s0 = advnn__vfma(advnn__vset(x[(advnn__idx)k * incx]), advnn__vld(m), s0);
            s1 = advnn__vfma(advnn__vset(x[(advnn__idx)(k + 1) * incx]), advnn__vld(m + ld), s1);
        }
        if (k < K) s0 = advnn__vfma(advnn__vset(x[(advnn__idx)k * incx]), advnn__vld(m), s0);
        advnn__v r = advnn__vmul(va, advnn__vadd(s0, s1));
        if (beta != 0.0f) r = advnn__vfma(vb, advnn__vld(y + j), r);
        advnn__vst(y + j, r);
    }
    for (; j < n; j++) {
        float s = 0.0f;
        for (int k = 0; k < K; k++) s += x[(advnn__idx)k * incx] * Mat[(advnn__idx)k * ld + j];
        y[j] = beta == 0.0f ? alpha * s : alpha * s + beta * y[j];
    }
}

/* One row of the 4-row blocks below, summed exactly as a block sums each of its rows, so that a
 * row's result does not depend on whether it falls in a block or in the last n % 4 rows (a batch
 * split over threads, advnn_infer, must give the rows of one call bit for bit). */
ADVNN__VKFN float advnn__gemv_t_row(int K, const float *x, const float *m) {
    advnn__v s = advnn__vset(0.0f), t = s;
    int k = 0;
    for (; k + 2 * ADVNN__VL <= K; k += 2 * ADVNN__VL) {
        s = advnn__vfma(advnn__vld(x + k), advnn__vld(m + k), s);
        t = advnn__vfma(advnn__vld(x + k + ADVNN__VL), advnn__vld(m + k + ADVNN__VL), t);
    }
    for (; k + ADVNN__VL <= K; k += ADVNN__VL) s = advnn__vfma(advnn__vld(x + k), advnn__vld(m + k), s);
    float r = advnn__vhsum(advnn__vadd(s, t));
    for (; k < K; k++) r += x[k] * m[k];
    return r;
}
/* y[j*incy] = alpha * dot(x[0..K), Mat[j*ld .. +K)) + beta*y, j < n  (x contiguous). */
ADVNN__VKFN void advnn__gemv_t(int K, int n, const float *Mat, int ld, const float *x, float *y, int incy,
                               float alpha, float beta) {
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *m0 = Mat + (advnn__idx)j * ld, *m1 = m0 + ld, *m2 = m1 + ld, *m3 = m2 + ld;
        advnn__v s0 = advnn__vset(0.0f), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        int k = 0;
        for (; k + 2 * ADVNN__VL <= K; k += 2 * ADVNN__VL) {
            advnn__v x0 = advnn__vld(x + k), x1 = advnn__vld(x + k + ADVNN__VL);
            s0 = advnn__vfma(x0, advnn__vld(m0 + k), s0); t0 = advnn__vfma(x1, advnn__vld(m0 + k + ADVNN__VL), t0);
            s1 = advnn__vfma(x0, advnn__vld(m1 + k), s1); t1 = advnn__vfma(x1, advnn__vld(m1 + k + ADVNN__VL), t1);
            s2 = advnn__vfma(x0, advnn__vld(m2 + k), s2); t2 = advnn__vfma(x1, advnn__vld(m2 + k + ADVNN__VL), t2);
            s3 = advnn__vfma(x0, advnn__vld(m3 + k), s3); t3 = advnn__vfma(x1, advnn__vld(m3 + k + ADVNN__VL), t3);
        }
        for (; k + ADVNN__VL <= K; k += ADVNN__VL) {
            advnn__v x0 = advnn__vld(x + k);
            s0 = advnn__vfma(x0, advnn__vld(m0 + k), s0);
            s1 = advnn__vfma(x0, advnn__vld(m1 + k), s1);
            s2 = advnn__vfma(x0, advnn__vld(m2 + k), s2);
            s3 = advnn__vfma(x0, advnn__vld(m3 + k), s3);
        }
        float r[4] = {advnn__vhsum(advnn__vadd(s0, t0)), advnn__vhsum(advnn__vadd(s1, t1)),
                      advnn__vhsum(advnn__vadd(s2, t2)), advnn__vhsum(advnn__vadd(s3, t3))};
        for (; k < K; k++) {
            r[0] += x[k] * m0[k]; r[1] += x[k] * m1[k]; r[2] += x[k] * m2[k]; r[3] += x[k] * m3[k];
        }
        for (int u = 0; u < 4; u++) {
            float *yp = y + (advnn__idx)(j + u) * incy;
            *yp = beta == 0.0f ? alpha * r[u] : alpha * r[u] + beta * *yp;
        }
    }
    for (; j < n; j++) {
        float s = advnn__gemv_t_row(K, x, Mat + (advnn__idx)j * ld);
        float *yp = y + (advnn__idx)j * incy;
        *yp = beta == 0.0f ? alpha * s : alpha * s + beta * *yp;
    }
}

/* A layer at batch 1: z[0..N) = x W + bias (W row-major K x N, rows ldw apart), y = max(z, 0) with relu (y == z: in
 * place; else z keeps the value before the ReLU). The sums of advnn__gemv_n (each column's FMAs in k
 * order from 0), bias and ReLU as advnn_add_bias and advnn_act_forward apply them, so the bits of
 * advnn_sgemm + advnn_add_bias + advnn_act_forward; one pass with the epilogue on the registers and
 * nothing re-tested per vector (the per-jet call of reconstruction software spends its time here). */
ADVNN__VKFN void advnn__gemv1(int K, int N, const float *W, int ldw, const float *x, const float *bias, int relu,
                              float *z, float *y) {
    const advnn__v zero = advnn__vset(0.0f);
    int j = 0, inplace = relu && y == z;
#define ADVNN__G1_OUT(J, R) do { advnn__v r_ = (R); if (bias) r_ = advnn__vadd(r_, advnn__vld(bias + (J))); \
        if (!inplace) { advnn__vst(z + (J), r_); } if (relu) { advnn__vst(y + (J), advnn__vmax(r_, zero)); } } while (0)
    for (; j + 8 * ADVNN__VL <= N; j += 8 * ADVNN__VL) {
        advnn__v s0 = zero, s1 = zero, s2 = zero, s3 = zero, s4 = zero, s5 = zero, s6 = zero, s7 = zero;
        ADVNN__GEMV_PANEL8(W + j, ldw, K, x[k]);
        ADVNN__G1_OUT(j, s0); ADVNN__G1_OUT(j + ADVNN__VL, s1);
        ADVNN__G1_OUT(j + 2 * ADVNN__VL, s2); ADVNN__G1_OUT(j + 3 * ADVNN__VL, s3);
        ADVNN__G1_OUT(j + 4 * ADVNN__VL, s4); ADVNN__G1_OUT(j + 5 * ADVNN__VL, s5);
        ADVNN__G1_OUT(j + 6 * ADVNN__VL, s6); ADVNN__G1_OUT(j + 7 * ADVNN__VL, s7);
    }
    for (; j + ADVNN__VL <= N; j += ADVNN__VL) {   /* gemv_n's two accumulators (even and odd k) */
        advnn__v s0 = zero, s1 = zero;
        const float *m = W + j;
        int k = 0;
        for (; k + 2 <= K; k += 2, m += 2 * (advnn__idx)ldw) {
            s0 = advnn__vfma(advnn__vset(x[k]), advnn__vld(m), s0);
            s1 = advnn__vfma(advnn__vset(x[k + 1]), advnn__vld(m + ldw), s1);
        }
        if (k < K) s0 = advnn__vfma(advnn__vset(x[k]), advnn__vld(m), s0);
        ADVNN__G1_OUT(j, advnn__vadd(s0, s1));
    }
#undef ADVNN__G1_OUT
    for (; j < N; j++) {
        float s = 0.0f, t;
        for (int k = 0; k < K; k++) s += x[k] * W[(advnn__idx)k * ldw + j];
        t = bias ? s + bias[j] : s;
        if (relu) y[j] = t > 0.0f ? t : 0.0f;
        if (!inplace) z[j] = t;
    }
}

/* The vector path of advnn_sgemm (M, N, K >= 1, alpha != 0). */
ADVNN__VKFN void advnn__sgemm_v(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                const float *B, int ldb, const float *P, float beta, float *C, int ldc, float *work,
                                int packA) {
    if (M == 1) { /* row vector times op(B) */
        if (N == 1 && !transA && !transB && ldb == 1) {   /* a dot product: summed as gemv_t sums a row of a */
            advnn__gemv_t(K, 1, A, lda, B, C, 1, alpha, beta);   /* batch, so that batch 1 gives that row's bits */
            return;
        }
        if (!transB) {
            advnn__gemv_n(K, N, B, ldb, A, transA ? lda : 1, C, alpha, beta);
            return;
        }
        if (!transA || lda == 1) {
            advnn__gemv_t(K, N, B, ldb, A, C, 1, alpha, beta);
            return;
        }
    }
    if (N == 1) { /* op(A) times column vector */
        int incb = transB ? 1 : ldb;
        if (!transA && incb == 1) {
            advnn__gemv_t(K, M, A, lda, B, C, ldc, alpha, beta);
            return;
        }
        if (transA && ldc == 1) {
            advnn__gemv_n(K, M, A, lda, B, incb, C, alpha, beta);
            return;
        }
    }
    /* two to four columns or rows (a layer's gradient into 2-4 inputs, e.g. W1's adversary input
     * [score, pT]): one dot-product (or axpy) sweep per column beats 16-lane tiles mostly empty */
    if (N <= 4 && !transA && transB) {
        for (int j = 0; j < N; j++) advnn__gemv_t(K, M, A, lda, B + (advnn__idx)j * ldb, C + j, ldc, alpha, beta);
        return;
    }
    if (M <= 4 && transA && !transB) {
        for (int i = 0; i < M; i++) advnn__gemv_n(K, N, B, ldb, A + i, lda, C + (advnn__idx)i * ldc, alpha, beta);
        return;
    }
#ifdef ADVNN__AVX2
    if (transA && !transB && alpha == 1.0f && N >= 2 && N <= 12 && lda <= 800) {   /* (M >= 5 here) */
        advnn__sgemm_tn_narrow(M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    if (work)
        advnn__sgemm_blocked_v(transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA);
    else
        advnn__sgemm_stack(advnn__sgemm_blocked_v, transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, packA);
}
#endif

ADVNN_SIMD_DEF void advnn_sgemm_p(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                  const float *B, int ldb, const float *P, float beta, float *C, int ldc, float *work) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        for (int i = 0; i < M; i++) {
            float *c = C + (advnn__idx)i * ldc;
            if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
            else if (beta != 1.0f)
                for (int j = 0; j < N; j++) c[j] *= beta;
        }
        return;
    }
    /* A is read in place (no packing cost) except for A^T with a long row stride, where the
     * k-walk touches one page per step (TLB/L1-set thrash): measured crossover on Zen 4 ~ lda 800. */
    int packA = transA && lda > 800;
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        advnn__sgemm_v(transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA);
        return;
    }
#endif
#ifdef ADVNN__GEMM_S
    if (work)
        advnn__sgemm_blocked_s(transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, work, packA);
    else
        advnn__sgemm_stack(advnn__sgemm_blocked_s, transA, transB, M, N, K, alpha, A, lda, B, ldb, P, beta, C, ldc, packA);
#endif
}
ADVNN_SIMD_DEF void advnn_sgemm(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                                const float *B, int ldb, float beta, float *C, int ldc, float *work) {
    advnn_sgemm_p(transA, transB, M, N, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc, work);
}

ADVNN_SIMD_DEF size_t advnn_sgemm_pack_floats(int K, int N) {
    size_t n = 0, r;
    if (K <= 0 || N <= 0) return 0;
#ifdef ADVNN__VECTOR
    n = (size_t)K * (size_t)((N + ADVNN__NR_V - 1) / ADVNN__NR_V * ADVNN__NR_V);
#endif
    r = (size_t)K * (size_t)((N + ADVNN__NR_S - 1) / ADVNN__NR_S * ADVNN__NR_S);   /* (the portable path's) */
    return r > n ? r : n;
}
ADVNN_SIMD_DEF void advnn_sgemm_pack_b(int transB, int K, int N, const float *B, int ldb, float *P) {
    if (K <= 0 || N <= 0) return;
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE()) {
        advnn__pack_b_all_t(ADVNN__NR_V, ADVNN__NC_V, ADVNN__PACK_BT8_V, transB, K, N, B, ldb, P);
        return;
    }
#endif
#ifdef ADVNN__GEMM_S
    advnn__pack_b_all_t(ADVNN__NR_S, ADVNN__NC_S, 0, transB, K, N, B, ldb, P);
#endif
}

/* The packed LSTM sequence (declared with the LSTM cell; here, after the GEMM's blocking it sums as). */
#ifdef ADVNN__AVX2
/* One panel of NV <= 8 vectors (constant where inlined): z[0..8 NV) (+)= v[k0..k1) M[k0..k1) (+ b), the
 * columns in named accumulators, one broadcast of v[k] for all of them. */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__lstm_vm8(int NV, int k0, int k1, int L, const float *v, const float *M,
                                                  const float *b, float *z, int add) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *u = M + (advnn__idx)k0 * L;
    for (int k = k0; k < k1; k++, u += L) {
        __m256 vk = _mm256_broadcast_ss(v + k);
        a0 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u), a0);
        if (NV > 1) a1 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 8), a1);
        if (NV > 2) a2 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 16), a2);
        if (NV > 3) a3 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 24), a3);
        if (NV > 4) a4 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 32), a4);
        if (NV > 5) a5 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 40), a5);
        if (NV > 6) a6 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 48), a6);
        if (NV > 7) a7 = _mm256_fmadd_ps(vk, _mm256_loadu_ps(u + 56), a7);
    }
#define ADVNN__VM_OUT(Q, A) if (NV > (Q)) { __m256 r_ = add ? _mm256_add_ps(_mm256_loadu_ps(z + 8 * (Q)), (A)) : (A); \
        _mm256_storeu_ps(z + 8 * (Q), b ? _mm256_add_ps(r_, _mm256_loadu_ps(b + 8 * (Q))) : r_); }
    ADVNN__VM_OUT(0, a0) ADVNN__VM_OUT(1, a1) ADVNN__VM_OUT(2, a2) ADVNN__VM_OUT(3, a3)
    ADVNN__VM_OUT(4, a4) ADVNN__VM_OUT(5, a5) ADVNN__VM_OUT(6, a6) ADVNN__VM_OUT(7, a7)
#undef ADVNN__VM_OUT
}
/* z[0..L) (+)= v M (+ b) (v: K >= 1 values, M: K x L), each column summed as the blocked GEMM sums it
 * (k in order from 0 in blocks of ADVNN__KC rows, each block's sum added to z; add == 0: the first
 * one stored), then b added as advnn_add_bias adds it (b NULL: none) */
ADVNN__VFN void advnn__lstm_vm_v(int K, int L, const float *v, const float *M, const float *b, float *z, int add) {
    for (int k0 = 0; k0 < K; k0 += ADVNN__KC, add = 1) {
        const int k1 = K - k0 < ADVNN__KC ? K : k0 + ADVNN__KC;
        const float *bk = k1 == K ? b : NULL;
        for (int j = 0; j < L; j += 64) {
            const float *Mj = M + j, *bj = bk ? bk + j : NULL;
            switch (L - j < 64 ? (L - j) / 8 : 8) {
            case 1: advnn__lstm_vm8(1, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 2: advnn__lstm_vm8(2, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 3: advnn__lstm_vm8(3, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 4: advnn__lstm_vm8(4, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 5: advnn__lstm_vm8(5, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 6: advnn__lstm_vm8(6, k0, k1, L, v, Mj, bj, z + j, add); break;
            case 7: advnn__lstm_vm8(7, k0, k1, L, v, Mj, bj, z + j, add); break;
            default: advnn__lstm_vm8(8, k0, k1, L, v, Mj, bj, z + j, add); break;
            }
        }
    }
}
/* c, h (8 lanes, stored whole) = the cell of advnn__lstm_fwd_v on gates i, f, g, o */
#define ADVNN__LSTM_CELL8(I, F, G, O, CP, HP) do { \
        __m256 cv_ = _mm256_fmadd_ps((F), _mm256_loadu_ps(CP), _mm256_mul_ps((I), (G))); \
        _mm256_storeu_ps((CP), cv_); _mm256_storeu_ps((HP), _mm256_mul_ps((O), advnn__vtanh(cv_))); } while (0)
/* One step's cell on the packed gates zt (nf blocks of 8 units, then the tail of s lanes a gate). */
ADVNN__VFN void advnn__lstm_pcell_v(int nf, int s, const float *zt, float *c, float *h) {
    /* the packed tail's gates moved to lanes 0..: f at 2 (s = 2) or 4 (s = 4), g at 4, o at 6 (s = 2) */
    const __m256i p2f = _mm256_setr_epi32(2, 3, 2, 3, 2, 3, 2, 3), p2g = _mm256_setr_epi32(4, 5, 4, 5, 4, 5, 4, 5);
    const __m256i p2o = _mm256_setr_epi32(6, 7, 6, 7, 6, 7, 6, 7), p4 = _mm256_setr_epi32(4, 5, 6, 7, 4, 5, 6, 7);
    for (int q = 0; q < nf || (q == nf && s == 8); q++) {
        const float *zq = zt + 32 * q;
        __m256 i = advnn__vsigmoid(_mm256_loadu_ps(zq)), f = advnn__vsigmoid(_mm256_loadu_ps(zq + 8));
        __m256 g = advnn__vtanh(_mm256_loadu_ps(zq + 16)), o = advnn__vsigmoid(_mm256_loadu_ps(zq + 24));
        ADVNN__LSTM_CELL8(i, f, g, o, c + 8 * q, h + 8 * q);
    }
    if (s == 2) {   /* [i i f f g g o o]: one sigmoid and one tanh for the four gates */
        __m256 v = _mm256_loadu_ps(zt + 32 * nf), sg = advnn__vsigmoid(v), th = advnn__vtanh(v);
        ADVNN__LSTM_CELL8(sg, _mm256_permutevar8x32_ps(sg, p2f), _mm256_permutevar8x32_ps(th, p2g),
                          _mm256_permutevar8x32_ps(sg, p2o), c + 8 * nf, h + 8 * nf);
    } else if (s == 4) {   /* [i f] [g o], 4 lanes each */
        __m256 v0 = advnn__vsigmoid(_mm256_loadu_ps(zt + 32 * nf)), v1 = _mm256_loadu_ps(zt + 32 * nf + 8);
        ADVNN__LSTM_CELL8(v0, _mm256_permutevar8x32_ps(v0, p4), advnn__vtanh(v1),
                          _mm256_permutevar8x32_ps(advnn__vsigmoid(v1), p4), c + 8 * nf, h + 8 * nf);
    }
}
/* Eight samples at once, sample s in lane s (the inputs projected here, z NULL): every gate is then a
 * full vector of one unit's gate in 8 samples (at H = 10, 50 transcendental calls a step for 8 samples
 * against 64 with the units on the lanes, and no lanes moved between gates). Each value is
 * computed by the same operations in the same order as one sample alone: the columns' FMA chains
 * from 0 (k in order), + bp, + the recurrent chain from 0, the cell of ADVNN__LSTM_CELL8; a masked
 * lane keeps its state. X: the step's inputs, F vectors; Z: L gate columns; C, S: the cell and h,
 * H vectors each (all 8 floats apart). Here: NC <= 6 columns (a constant where inlined), Wp, bp, Up
 * and Z at the first of them. */
ADVNN__INLINE ADVNN__AVX2_FN void advnn__lstm_cols8(int NC, int F, int H, int L, int rec, const float *X,
                                                   const float *S, const float *Wp, const float *bp,
                                                   const float *Up, float *Z) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    /* named accumulators: gcc -O2 kept an array's in memory, a load and a store per FMA */
#define ADVNN__L8_FMA(A, C, V, M) if (NC > (C)) A = _mm256_fmadd_ps((V), _mm256_broadcast_ss((M) + (C)), A);
#define ADVNN__L8_ALL(V, M) ADVNN__L8_FMA(a0, 0, V, M) ADVNN__L8_FMA(a1, 1, V, M) ADVNN__L8_FMA(a2, 2, V, M) \
                            ADVNN__L8_FMA(a3, 3, V, M) ADVNN__L8_FMA(a4, 4, V, M) ADVNN__L8_FMA(a5, 5, V, M)
#define ADVNN__L8_EACH(OP) OP(a0, 0) OP(a1, 1) OP(a2, 2) OP(a3, 3) OP(a4, 4) OP(a5, 5)
    for (int k = 0; k < F; k++) {
        const __m256 xk = _mm256_load_ps(X + 8 * k);
        const float *w = Wp + (advnn__idx)k * L;
        ADVNN__L8_ALL(xk, w)
    }
#define ADVNN__L8_BIAS(A, C) if (NC > (C)) A = _mm256_add_ps(A, _mm256_broadcast_ss(bp + (C)));
    ADVNN__L8_EACH(ADVNN__L8_BIAS)
    if (rec) {   /* the recurrent chains from 0 in the same registers, after the sums so far are stored */
#define ADVNN__L8_PARK(A, C) if (NC > (C)) { _mm256_store_ps(Z + 8 * (C), A); A = _mm256_setzero_ps(); }
        ADVNN__L8_EACH(ADVNN__L8_PARK)
        for (int k = 0; k < H; k++) {
            const __m256 hk = _mm256_load_ps(S + 8 * k);
            const float *u = Up + (advnn__idx)k * L;
            ADVNN__L8_ALL(hk, u)
        }
#define ADVNN__L8_ADD(A, C) if (NC > (C)) A = _mm256_add_ps(_mm256_load_ps(Z + 8 * (C)), A);
        ADVNN__L8_EACH(ADVNN__L8_ADD)
    }
#define ADVNN__L8_OUT(A, C) if (NC > (C)) _mm256_store_ps(Z + 8 * (C), A);
    ADVNN__L8_EACH(ADVNN__L8_OUT)
#undef ADVNN__L8_FMA
#undef ADVNN__L8_ALL
#undef ADVNN__L8_EACH
#undef ADVNN__L8_BIAS
#undef ADVNN__L8_PARK
#undef ADVNN__L8_ADD
#undef ADVNN__L8_OUT
}
/* the floats advnn__lstm_seq8_v keeps (X, Z, C, S), and the most it may keep on the stack */
#define ADVNN__LSTM8_FLOATS(F, H, L) (8 * ((F) + (L) + 2 * (H)))
#define ADVNN__LSTM8_MAX 4096
/* advnn__lstm_seq_fwd_v on samples 0-7 of x, mask, hseq, hlast (z NULL) */
ADVNN__VKFN void advnn__lstm_seq8_v(int T, int F, int H, const float *x, const float *Wp, const float *bp,
                                    const float *Up, const float *mask, float *hseq, float *hlast) {
    const int L = advnn__lstm_width(H);
    ADVNN__ALIGN64 float buf[ADVNN__LSTM8_MAX];
    float *X = buf, *Z = X + 8 * F, *C = Z + 8 * L, *S = C + 8 * H;
    int gi[ADVNN__KC], gs[ADVNN__KC];   /* unit v's gates in Z: columns gi[v] + q gs[v], q = i, f, g, o */
    const __m256 zero = _mm256_setzero_ps();
    for (int v = 0; v < H; v++) {
        gi[v] = advnn__lstm_pcol(H, 0, v);
        gs[v] = advnn__lstm_pcol(H, 1, v) - gi[v];
    }
    memset(C, 0, (size_t)16 * H * sizeof(float));   /* C and S: the zero state */
    for (int t = 0; t < T; t++) {
        int k = 0;
        for (; k + 8 <= F; k += 8) {   /* X[k][s] = x[s][t][k], 8 x 8 blocks */
            __m256 r[8];
            for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(x + ((advnn__idx)q * T + t) * F + k);
            advnn__tr8(r);
            for (int q = 0; q < 8; q++) _mm256_store_ps(X + 8 * (k + q), r[q]);
        }
        for (; k < F; k++)
            for (int q = 0; q < 8; q++) X[8 * k + q] = x[((advnn__idx)q * T + t) * F + k];
        for (int j = 0; j < L; j += 6) {
            const float *w = Wp + j, *b = bp + j, *u = Up + j;
            switch (L - j < 6 ? L - j : 6) {
            case 2: advnn__lstm_cols8(2, F, H, L, t > 0, X, S, w, b, u, Z + 8 * j); break;
            case 4: advnn__lstm_cols8(4, F, H, L, t > 0, X, S, w, b, u, Z + 8 * j); break;
            default: advnn__lstm_cols8(6, F, H, L, t > 0, X, S, w, b, u, Z + 8 * j); break;   /* L % 8 == 0 */
            }
        }
        __m256 keep = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
        if (mask) {
            ADVNN__ALIGN64 float m[8];
            for (int q = 0; q < 8; q++) m[q] = mask[(advnn__idx)q * T + t];
            keep = _mm256_cmp_ps(_mm256_load_ps(m), zero, _CMP_NEQ_UQ);   /* != 0, as the scalar test */
        }
        for (int v = 0; v < H; v++) {
            const float *zi = Z + 8 * gi[v], *zf = zi + 8 * gs[v], *zg = zi + 16 * gs[v], *zo = zi + 24 * gs[v];
            __m256 i = advnn__vsigmoid(_mm256_load_ps(zi)), f = advnn__vsigmoid(_mm256_load_ps(zf));
            __m256 g = advnn__vtanh(_mm256_load_ps(zg)), o = advnn__vsigmoid(_mm256_load_ps(zo));
            __m256 cp = _mm256_load_ps(C + 8 * v), cv = _mm256_fmadd_ps(f, cp, _mm256_mul_ps(i, g));
            __m256 hv = _mm256_mul_ps(o, advnn__vtanh(cv));
            _mm256_store_ps(C + 8 * v, _mm256_blendv_ps(cp, cv, keep));
            _mm256_store_ps(S + 8 * v, _mm256_blendv_ps(_mm256_load_ps(S + 8 * v), hv, keep));
        }
        for (int q = 0; hseq && q < 8; q++)
            for (int v = 0; v < H; v++) hseq[((advnn__idx)q * T + t) * H + v] = S[8 * v + q];
    }
    for (int q = 0; hlast && q < 8; q++)
        for (int v = 0; v < H; v++) hlast[(advnn__idx)q * H + v] = S[8 * v + q];
}
ADVNN__VKFN void advnn__lstm_seq_fwd_v(int n, int T, int F, int H, const float *x, const float *Wp, const float *bp,
                                       const float *Up, float *z, const float *mask, float *hseq, float *hlast,
                                       float *state) {
    const int nf = H / 8, s = advnn__lstm_slot(H), L = advnn__lstm_width(H), Hp = 8 * nf + (s ? 8 : 0);
    float *c = state, *h = state + Hp;
    advnn__idx r = 0;
    if (!z && F <= ADVNN__KC && H <= ADVNN__KC && ADVNN__LSTM8_FLOATS(F, H, L) <= ADVNN__LSTM8_MAX)
        for (; r + 8 <= n; r += 8)
            advnn__lstm_seq8_v(T, F, H, x + r * T * F, Wp, bp, Up, mask ? mask + r * T : NULL,
                               hseq ? hseq + r * T * H : NULL, hlast ? hlast + r * H : NULL);
    for (; r < n; r++) {
        memset(state, 0, 2 * (size_t)Hp * sizeof(float));
        for (int t = 0; t < T; t++) {
            float *zt = z ? z + (r * T + t) * L : h + Hp;
            if (!z) advnn__lstm_vm_v(F, L, x + (r * T + t) * F, Wp, bp, zt, 0);   /* x_t Wp + bp */
            if (t) advnn__lstm_vm_v(H, L, h, Up, NULL, zt, 1);
            if (!mask || mask[r * T + t] != 0.0f) advnn__lstm_pcell_v(nf, s, zt, c, h);
            if (hseq) memcpy(hseq + (r * T + t) * H, h, (size_t)H * sizeof(float));
        }
        if (hlast) memcpy(hlast + r * H, h, (size_t)H * sizeof(float));
    }
}
#undef ADVNN__LSTM_CELL8
#endif
ADVNN_SIMD_DEF int advnn_lstm_packed_width(int H) {
    if (H <= 0) return 0;
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) return advnn__lstm_width(H);
#endif
    return 0;
}
ADVNN_SIMD_DEF void advnn_lstm_pack(int F, int H, int L, const float *W, const float *U, const float *b, float *Wp,
                                    float *Up, float *bp) {
    const advnn__idx H4 = 4 * (advnn__idx)H;
    memset(Wp, 0, (size_t)F * L * sizeof(float));
    memset(Up, 0, (size_t)H * L * sizeof(float));
    memset(bp, 0, (size_t)L * sizeof(float));
    for (int q = 0; q < 4; q++)
        for (int u = 0; u < H; u++) {
            const int j = advnn__lstm_pcol(H, q, u);
            const advnn__idx o = q * (advnn__idx)H + u;
            for (int k = 0; k < F; k++) Wp[(advnn__idx)k * L + j] = W[k * H4 + o];
            for (int k = 0; k < H; k++) Up[(advnn__idx)k * L + j] = U[k * H4 + o];
            bp[j] = b ? b[o] : 0.0f;
        }
}
ADVNN_SIMD_DEF void advnn_lstm_seq_fwd(int n, int T, int F, int H, const float *x, const float *Wp, const float *bp,
                                       const float *Up, float *z, const float *mask, float *hseq, float *hlast,
                                       float *state) {
    if (n <= 0 || T <= 0 || H <= 0) return;
#ifdef ADVNN__AVX2
    if (ADVNN__VEC_LIVE()) { advnn__lstm_seq_fwd_v(n, T, F, H, x, Wp, bp, Up, z, mask, hseq, hlast, state); return; }
#endif
    const advnn__idx L = advnn__lstm_width(H);
    for (int r = 0; r < n; r++) {
        const advnn__idx rT = (advnn__idx)r * T;
        advnn__lstm_seq_fwd_ref(T, F, H, x + rT * F, Wp, bp, Up, z ? z + rT * L : NULL, mask ? mask + rT : NULL,
                                hseq ? hseq + rT * H : NULL, hlast ? hlast + (advnn__idx)r * H : NULL, state);
    }
}

ADVNN_SIMD_DEF size_t advnn_conv_implicit_floats(int C, int KH, int KW, int SH, int SW, int Ho, int Wo, int F) {
    size_t Hp = (size_t)(Ho - 1) * SH + KH, Wp = (size_t)(Wo - 1) * SW + KW;
    size_t nhwc, planar = (size_t)C * (Hp * Wp + 16);   /* advnn__conv_implicit_v, advnn__conv_planar_v */
    if (C < 1 || KH < 1 || KW < 1 || SH < 1 || SW < 1 || Ho < 1 || Wo < 1 || F < 1) return 0;
    nhwc = ((Hp * Wp * C + 7) & ~(size_t)7) + (size_t)KH * KW * C * 16 * (size_t)((F + 15) / 16);
    return nhwc > planar ? nhwc : planar;
}
ADVNN_SIMD_DEF int advnn_conv_implicit(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                       int Wo, const float *x, int F, const float *kernel, const float *bias, int relu,
                                       const float *prelu, float *z, float *y, float *work) {
#ifdef ADVNN__AVX2
    const int ok = ADVNN__VEC_LIVE() && H > 0 && W > 0 && C > 0 && KH > 0 && KW > 0 && SH > 0 && SW > 0 && Ho > 0 &&
                   Wo > 0 && (int64_t)Ho * Wo >= 2 && (int64_t)KH * KW * C <= ADVNN__KC && !(relu && prelu);
    if (!relu && !prelu) y = z;
    if (ok && F == 1 && (int64_t)KW * C >= 8) {
        advnn__conv_dot_v(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, kernel, bias, relu, prelu, z, y, work);
        return 1;
    }
    if (ok && F >= 2) {
        if (SH == 1 && SW == 1 && F <= ADVNN__CONV_PLANAR_MAX_F)
            advnn__conv_planar_v(H, W, C, KH, KW, PT, PL, Ho, Wo, x, F, kernel, bias, relu, prelu, z, y, work);
        else {
            advnn__conv_implicit_v(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, x, F, kernel, bias, relu, z, y, work);
            if (prelu) advnn_act_forward(ADVNN_ACT_PRELU, Ho * Wo, F, z, F, y, F, 0.0f, prelu);   /* in cache */
        }
        return 1;
    }
#else
    (void)H; (void)W; (void)C; (void)KH; (void)KW; (void)SH; (void)SW; (void)PT; (void)PL; (void)Ho; (void)Wo;
    (void)x; (void)F; (void)kernel; (void)bias; (void)relu; (void)prelu; (void)z; (void)y; (void)work;
#endif
    return 0;
}

ADVNN_SIMD_DEF size_t advnn_conv_dgrad_floats(int H, int W, int KH, int KW, int F) {
    if (H < 1 || W < 1 || KH < 1 || KW < 1 || F < 1) return 0;
    return (size_t)F * ((size_t)(H + KH - 1) * (W + KW - 1) + KW + 16);   /* advnn__conv_dgrad_planar_v */
}
ADVNN_SIMD_DEF int advnn_conv_dgrad_ok(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                       int Wo, int n, int F, const float *kernel) {
#ifdef ADVNN__AVX2
    const advnn__idx nk = (advnn__idx)KH * KW * C * F;
    if (!ADVNN__VEC_LIVE() || H < 1 || W < 1 || C < 1 || C > ADVNN__DGRAD_MAX_C || KH < 1 || KW < 1 || SH != 1 ||
        SW != 1 || PT < 0 || PT >= KH || PL < 0 || PL >= KW || Ho < 1 || Wo < 1 || (int64_t)Ho * Wo < 2 || n < 1 ||
        F < 1 || F > ADVNN__KC || nk < 5 * (advnn__idx)F || KH * KW > ADVNN__DGRAD_MAX_TAPS || !kernel)
        return 0;
    for (advnn__idx k = 0; k < nk; k++)
        if (!(kernel[k] - kernel[k] == 0.0f)) return 0;   /* Inf or NaN */
    return 1;
#else
    (void)H; (void)W; (void)C; (void)KH; (void)KW; (void)SH; (void)SW; (void)PT; (void)PL; (void)Ho; (void)Wo;
    (void)n; (void)F; (void)kernel;
    return 0;
#endif
}
ADVNN_SIMD_DEF int advnn_conv_dgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                    int Wo, const float *dz, int n, int F, const float *kernel, float *dx, float *work) {
    if (!advnn_conv_dgrad_ok(H, W, C, KH, KW, SH, SW, PT, PL, Ho, Wo, n, F, kernel)) return 0;
#ifdef ADVNN__AVX2
    for (int j = 0; j < n; j++)
        advnn__conv_dgrad_planar_v(H, W, C, KH, KW, PT, PL, Ho, Wo, dz + (size_t)j * Ho * Wo * F, F, kernel,
                                   dx + (size_t)j * H * W * C, work);
    return 1;
#else
    (void)dz; (void)dx; (void)work;
    return 0;
#endif
}

/* advnn_conv_wgrad reads the taps in zero-padded copies of the images (Hp x Wp x C, padded as
 * advnn_conv_implicit pads), enough of them for one 256-row block plus one (a ring: each image is
 * copied once). A cols row is KH runs of KW*C taps, each contiguous in the copy, and consecutive
 * positions of an output row are SW*C floats apart there: so each kernel row kh is an M block of the
 * narrow kernel (dW rows kh*KW*C..), its rows walked as runs, one per output row in the block. */
ADVNN__FN int advnn__wg_ring(int64_t P) { return (int)((ADVNN__KC + P - 1) / P) + 1; }
ADVNN_SIMD_DEF size_t advnn_conv_wgrad_floats(int C, int KH, int KW, int SH, int SW, int Ho, int Wo) {
    size_t Hp = (size_t)(Ho - 1) * SH + KH, Wp = (size_t)(Wo - 1) * SW + KW;
    if (C < 1 || KH < 1 || KW < 1 || SH < 1 || SW < 1 || Ho < 1 || Wo < 1) return 0;
    return (size_t)advnn__wg_ring((int64_t)Ho * Wo) * Hp * Wp * C;
}
ADVNN_SIMD_DEF int advnn_conv_wgrad(int H, int W, int C, int KH, int KW, int SH, int SW, int PT, int PL, int Ho,
                                    int Wo, const float *x, int n, const float *dz, int F, float *dW, float *work) {
#ifdef ADVNN__AVX2
    const int64_t kkc = (int64_t)KH * KW * C, P = (int64_t)Ho * Wo, K = P * n;
    const advnn__idx Hp = (advnn__idx)(Ho - 1) * SH + KH, Wp = (advnn__idx)(Wo - 1) * SW + KW, img = Hp * Wp * C;
    const float *ar[ADVNN__KC + 1];
    int len[ADVNN__KC + 1], ring, done = 0;   /* images [0, done) copied */
    if (!ADVNN__VEC_LIVE() || H < 1 || W < 1 || C < 1 || KH < 1 || KW < 1 || SH < 1 || SW < 1 || Ho < 1 || Wo < 1 ||
        n < 1 || F < 2 || F > 12 || kkc < 5 || kkc > 800 || KW * C < 8 || K > 0x7fffffff)
        return 0;
    ring = advnn__wg_ring(P);
    for (int64_t a = 0; a < K; a += ADVNN__KC) {
        const int64_t b = K - a < ADVNN__KC ? K : a + ADVNN__KC;
        int nrun = 0;
        for (; done <= (b - 1) / P; done++) {   /* the block's images, padded */
            advnn__pad_nhwc(H, W, C, PT, PL, (int)Hp, (int)Wp, x + (size_t)done * H * W * C,
                            work + (size_t)(done % ring) * img);
        }
        for (int64_t r = a; r < b; nrun++) {   /* runs of positions along output rows */
            const int64_t j = r / P, q = r % P, oh = q / Wo, ow = q % Wo;
            len[nrun] = (int)(b - r < Wo - ow ? b - r : Wo - ow);
            ar[nrun] = work + (size_t)(j % ring) * img + ((advnn__idx)oh * SH * Wp + (advnn__idx)ow * SW) * C;
            r += len[nrun];
        }
        for (int kh = 0; kh < KH; kh++)
            advnn__tn_panel(KW * C, F, nrun, ar, len, (advnn__idx)kh * Wp * C, (advnn__idx)SW * C,
                            dz + (size_t)a * F, F, 1.0f, dW + (size_t)kh * KW * C * F, F);
    }
    return 1;
#else
    (void)H; (void)W; (void)C; (void)KH; (void)KW; (void)SH; (void)SW; (void)PT; (void)PL; (void)Ho; (void)Wo;
    (void)x; (void)n; (void)dz; (void)F; (void)dW; (void)work;
    return 0;
#endif
}

ADVNN_SIMD_DEF void advnn_sgemm_bias_relu_p(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                            const float *P, const float *bias, int relu, float *C, int ldc, float *Y,
                                            int ldy, float *work) {
    if (M <= 0 || N <= 0) return;
    if (!relu) { Y = C; ldy = ldc; }
#ifdef ADVNN__VECTOR
    if (ADVNN__VEC_LIVE() && M == 1 && N > 1 && K > 0) {   /* batch 1: one pass, epilogue on the registers */
        advnn__gemv1(K, N, B, ldb, A, bias, relu, C, Y);
        return;
    }
    if (ADVNN__VEC_LIVE() && M == 1 && N == 1 && K > 0 && ldb == 1) {   /* a dot product, as advnn_sgemm sums it */
        float z = advnn__gemv_t_row(K, B, A);
        if (bias) z += bias[0];
        if (relu) Y[0] = z > 0.0f ? z : 0.0f;
        if (!relu || Y != C) C[0] = z;
        return;
    }
#endif
#if defined(ADVNN__AVX2)
    /* the shapes advnn_sgemm sends to the blocked driver (M or N == 1: matrix-vector paths). Only
     * with the AVX2 kernels, whose epilogue works on registers: elsewhere three passes, which also
     * keeps NEON's ReLU of NaN (vmaxq returns NaN; the scalar epilogue of edge tiles would not). */
    if (ADVNN__VEC_LIVE() && M > 1 && N > 1 && K > 0 && work) {
        advnn__epi e;
        e.bias = bias;
        e.y = Y;
        e.ldy = ldy;
        e.relu = relu;
        advnn__sgemm_blocked_vx(0, 0, M, N, K, 1.0f, A, lda, B, ldb, P, 0.0f, C, ldc, work, 0, &e);
        return;
    }
#endif
    advnn_sgemm_p(0, 0, M, N, K, 1.0f, A, lda, B, ldb, P, 0.0f, C, ldc, work);
    if (bias) advnn_add_bias(M, N, C, ldc, bias);
    if (relu) advnn_act_forward(ADVNN_ACT_RELU, M, N, C, ldc, Y, ldy, 0.0f, NULL);
}
ADVNN_SIMD_DEF void advnn_sgemm_bias_relu(int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                          const float *bias, int relu, float *C, int ldc, float *Y, int ldy,
                                          float *work) {
    advnn_sgemm_bias_relu_p(M, N, K, A, lda, B, ldb, NULL, bias, relu, C, ldc, Y, ldy, work);
}

#ifdef __cplusplus
}
#endif
#endif /* ADVNN_SIMD_IMPLEMENTATION */
