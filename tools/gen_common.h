/* gen_common.h -- helpers shared by the synthetic data generators in tools/ (gen_wtagger.c,
 * gen_calratio.c, gen_jetimages.c): a seeded xoshiro256** RNG with the few distributions the
 * generators draw from, the command line (--out --n --ntest --ncr --seed --help), mkdir -p,
 * saving advnn tensors as .npy (exit 1 with advnn_last_error() on failure), a small-angle
 * parton shower (veto algorithm, angular ordering, running coupling) and 4-vector helpers.
 *
 * Include after `#define ADVNN_IMPLEMENTATION` + `#include "advnn.h"` in exactly one .c file.
 * Everything here is static: each generator is a single translation unit. C11 and C++ clean. */
#ifndef GEN_COMMON_H
#define GEN_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define GC_PI 3.14159265358979323846
#define GC_TWOPI 6.28318530717958647692

/* ------------------------------------------------------------------ RNG: xoshiro256** */
typedef struct { uint64_t s[4]; double spare; int has_spare; } gc_rng;

static inline uint64_t gc_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Independent streams: (seed, stream) -> state through splitmix64. */
static inline void gc_rng_seed(gc_rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (0xD1B54A32D192ED03ull * (stream + 1));
    int i;
    for (i = 0; i < 4; i++) r->s[i] = gc_splitmix64(&x);
    r->spare = 0; r->has_spare = 0;
}
static inline uint64_t gc_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static inline uint64_t gc_next(gc_rng *r) {
    uint64_t *s = r->s, res = gc_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = gc_rotl(s[3], 45);
    return res;
}
static inline double gc_u01(gc_rng *r) { return (double)(gc_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double gc_uopen(gc_rng *r) { return ((double)(gc_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static inline double gc_unif(gc_rng *r, double a, double b) { return a + (b - a) * gc_u01(r); }
static inline int gc_randint(gc_rng *r, int n) { return (int)(gc_u01(r) * n); } /* 0..n-1 */
static inline double gc_normal(gc_rng *r) {          /* Marsaglia polar method, second value cached */
    double u, v, s, f;
    if (r->has_spare) { r->has_spare = 0; return r->spare; }
    do {
        u = 2.0 * gc_u01(r) - 1.0; v = 2.0 * gc_u01(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f; r->has_spare = 1;
    return u * f;
}
static inline double gc_gauss(gc_rng *r, double mu, double sigma) { return mu + sigma * gc_normal(r); }
static inline double gc_expo(gc_rng *r, double mean) { return -mean * log(gc_uopen(r)); }
static inline int gc_poisson(gc_rng *r, double mu) {
    if (mu <= 0) return 0;
    if (mu < 30) {                       /* Knuth */
        double L = exp(-mu), p = 1.0;
        int k = 0;
        do { k++; p *= gc_u01(r); } while (p > L);
        return k - 1;
    } else {
        double x = floor(mu + sqrt(mu) * gc_normal(r) + 0.5);
        return x < 0 ? 0 : (int)x;
    }
}
static inline double gc_gamma(gc_rng *r, double a) {  /* Marsaglia-Tsang, shape a > 0, scale 1 */
    double d, c, x, v, u;
    if (a < 1.0) return gc_gamma(r, a + 1.0) * pow(gc_uopen(r), 1.0 / a);
    d = a - 1.0 / 3.0; c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        do { x = gc_normal(r); v = 1.0 + c * x; } while (v <= 0);
        v = v * v * v; u = gc_uopen(r);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}
/* Beta with the given mean and concentration kappa = a + b. */
static inline double gc_beta_mk(gc_rng *r, double mean, double kappa) {
    double a = gc_gamma(r, mean * kappa), b = gc_gamma(r, (1.0 - mean) * kappa);
    return a / (a + b);
}
/* x from dN/dx ~ x^-k on [a, b] (k != 1). */
static inline double gc_powerlaw(gc_rng *r, double k, double a, double b) {
    double e = 1.0 - k, u = gc_u01(r);
    return pow(pow(a, e) + u * (pow(b, e) - pow(a, e)), 1.0 / e);
}
static inline double gc_dphi(double a, double b) {      /* a - b wrapped to (-pi, pi] */
    double d = fmod(a - b, GC_TWOPI);
    if (d > GC_PI) d -= GC_TWOPI;
    if (d <= -GC_PI) d += GC_TWOPI;
    return d;
}
static inline void gc_shuffle_int(gc_rng *r, int *a, int64_t n) {
    int64_t i;
    for (i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(gc_u01(r) * (double)(i + 1));
        int t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* ------------------------------------------------------------------ command line */
typedef struct {
    const char *out;
    int64_t n, ntest, ncr;
    uint64_t seed;
} gc_args;

static inline void gc_die_usage(const char *prog, const char *usage, const char *msg, const char *arg) {
    if (msg) fprintf(stderr, "%s: %s%s%s\n", prog, msg, arg ? ": " : "", arg ? arg : "");
    fprintf(stderr, "%s", usage);
    exit(2);
}
static inline int gc_parse_u64(const char *s, uint64_t *v) {
    char *end = NULL;
    unsigned long long x;
    if (!s || !*s || *s == '-' || *s == '+') return 0;
    errno = 0;
    x = strtoull(s, &end, 10);
    if (errno || !end || *end) return 0;
    *v = (uint64_t)x;
    return 1;
}
/* Parses --out DIR, --n N, --ntest N, --seed S, --ncr N (only if allow_ncr), --help; also --opt=V.
 * n, ntest, ncr must be in [1, nmax]. ntest defaults to max(1, n/2), ncr to n. Exits 2 on errors. */
static inline void gc_parse_args(int argc, char **argv, gc_args *a, const char *usage, int allow_ncr, int64_t nmax) {
    const char *prog = argc > 0 && argv[0] ? argv[0] : "gen";
    int i, have_ntest = 0, have_ncr = 0;
    a->out = NULL; a->n = 100000; a->ntest = 0; a->ncr = 0; a->seed = 1;
    for (i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = NULL, *eq;
        char name[32];
        size_t len;
        uint64_t v;
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) { printf("%s", usage); exit(0); }
        if (strncmp(opt, "--", 2) != 0) gc_die_usage(prog, usage, "unexpected argument", opt);
        eq = strchr(opt, '=');
        len = eq ? (size_t)(eq - opt) : strlen(opt);
        if (len >= sizeof name) gc_die_usage(prog, usage, "unknown option", opt);
        memcpy(name, opt, len); name[len] = 0;
        if (strcmp(name, "--out") && strcmp(name, "--n") && strcmp(name, "--ntest") && strcmp(name, "--seed") &&
            (!allow_ncr || strcmp(name, "--ncr")))
            gc_die_usage(prog, usage, "unknown option", opt);
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else gc_die_usage(prog, usage, "missing value for", name);
        if (strcmp(name, "--out") == 0) {
            if (!*val) gc_die_usage(prog, usage, "empty value for", name);
            a->out = val;
            continue;
        }
        if (!gc_parse_u64(val, &v)) gc_die_usage(prog, usage, "not a non-negative integer", val);
        if (strcmp(name, "--seed") == 0) { a->seed = v; continue; }
        if (v < 1 || v > (uint64_t)nmax) {
            fprintf(stderr, "%s: %s must be in [1, %lld], got %s\n", prog, name, (long long)nmax, val);
            exit(2);
        }
        if (strcmp(name, "--n") == 0) a->n = (int64_t)v;
        else if (strcmp(name, "--ntest") == 0) { a->ntest = (int64_t)v; have_ntest = 1; }
        else { a->ncr = (int64_t)v; have_ncr = 1; }
    }
    if (!a->out) gc_die_usage(prog, usage, "--out DIR is required", NULL);
    if (!have_ntest) a->ntest = a->n / 2 > 0 ? a->n / 2 : 1;
    if (!have_ncr) a->ncr = a->n;
}

/* mkdir -p; exits 1 on failure. */
static inline void gc_mkdir_p(const char *path) {
    char buf[4096];
    size_t len = strlen(path), i;
    struct stat st;
    if (len == 0 || len >= sizeof buf) { fprintf(stderr, "output directory path is empty or too long\n"); exit(1); }
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "cannot create directory %s: %s\n", buf, strerror(errno));
                exit(1);
            }
            buf[i] = c;
        }
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) { fprintf(stderr, "%s is not a directory\n", path); exit(1); }
}

/* ------------------------------------------------------------------ tensors and .npy */
static inline advnn_tensor *gc_tensor(int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t shape[4];
    advnn_tensor *t;
    shape[0] = d0; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    t = advnn_tensor_new(ndim, shape);
    if (!t) { fprintf(stderr, "tensor allocation failed: %s\n", advnn_last_error()); exit(1); }
    return t;
}
/* Saves DIR/NAME.npy and frees the tensor. */
static inline void gc_save(const char *dir, const char *name, advnn_tensor *t) {
    char path[4352];
    int k = snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (k < 0 || (size_t)k >= sizeof path) { fprintf(stderr, "output path too long\n"); exit(1); }
    if (advnn_npy_save(path, t) != ADVNN_OK) {
        fprintf(stderr, "cannot write %s: %s\n", path, advnn_last_error());
        exit(1);
    }
    advnn_tensor_free(t);
}
static inline void *gc_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory (%zu bytes)\n", n); exit(1); }
    return p;
}

/* ------------------------------------------------------------------ particles and shower */
/* A massless particle in small-angle jet coordinates: pt [GeV], x = eta offset, y = phi offset
 * from the jet axis. tag: which hard parton it descends from (0..). */
typedef struct { double pt, x, y; int tag; } gc_part;
typedef struct { gc_part *p; int n, cap; } gc_plist;

static inline void gc_plist_init(gc_plist *L, int cap) { L->p = (gc_part *)gc_malloc(sizeof(gc_part) * (size_t)cap); L->n = 0; L->cap = cap; }
static inline void gc_plist_free(gc_plist *L) { free(L->p); L->p = NULL; L->n = L->cap = 0; }
static inline int gc_plist_add(gc_plist *L, double pt, double x, double y, int tag) {
    if (L->n >= L->cap) return -1;
    L->p[L->n].pt = pt; L->p[L->n].x = x; L->p[L->n].y = y; L->p[L->n].tag = tag;
    return L->n++;
}

typedef struct {
    double ktmin;    /* GeV: emissions need z*theta*pt > ktmin (hadronisation cut-off) */
    double lambda;   /* GeV: Lambda_QCD of the one-loop running coupling alpha_s(kt) */
    double asmax;    /* alpha_s frozen below this value (also the veto-algorithm overestimate) */
    double thmin;    /* smallest emission angle */
    int maxdepth;    /* recursion depth of secondary showers */
    int full_pqq;    /* 1: a quark's (C < 2) emission is kept with probability P_qq(z) / (2 C_F / z) =
                      * (1 + (1-z)^2)/2, the full q -> qg splitting function instead of its soft form */
} gc_shower_par;

static inline double gc_alphas(const gc_shower_par *sp, double kt) {
    double l = log(kt * kt / (sp->lambda * sp->lambda)), a;
    if (l <= 0) return sp->asmax;
    a = 1.0 / (0.6101 * l);   /* b0 = (33 - 2*5) / (12 pi) */
    return a < sp->asmax ? a : sp->asmax;
}

/* Shower particle idx of L: emissions at angles below thmax with colour factor C (C_F = 4/3 for a
 * quark, C_A = 3 for a gluon), density (alpha_s(kt) C / pi) dz/z dtheta^2/theta^2, z in (0, 1/2],
 * generated in decreasing angle with the veto algorithm (trial with alpha_s = asmax on the rectangle
 * z in [ktmin/(pt thmax), 1/2]; accept alpha_s(kt)/asmax if kt > ktmin), so the no-emission
 * probability is the Sudakov factor. An emission at (z, theta, azimuth) puts the daughter at
 * (1-z) theta from the parent's old direction and recoils the parent by -z theta (pt-weighted
 * centroid kept); the daughter (a gluon) showers recursively with angles below theta (angular
 * ordering). Stops silently when L is full. */
static inline void gc_shower(gc_rng *r, gc_plist *L, int idx, double thmax, double C, const gc_shower_par *sp, int depth) {
    double lnth2 = 2.0 * log(thmax);
    for (;;) {
        double pt = L->p[idx].pt, zlo, lz, rate, th, z, kt, az, ux, uy;
        int j;
        if (pt * exp(0.5 * lnth2) * 0.5 < sp->ktmin) return;     /* no z <= 1/2 can pass the cut */
        zlo = sp->ktmin / (pt * exp(0.5 * lnth2));
        lz = log(0.5 / zlo);
        rate = sp->asmax * C / GC_PI * lz;                       /* trials per unit ln theta^2 */
        lnth2 -= gc_expo(r, 1.0) / rate;
        th = exp(0.5 * lnth2);
        if (th < sp->thmin) return;
        z = zlo * exp(lz * gc_u01(r));                           /* dz/z on [zlo, 1/2] */
        kt = z * th * pt;
        if (kt < sp->ktmin) continue;
        if (gc_u01(r) * sp->asmax > gc_alphas(sp, kt)) continue;
        if (sp->full_pqq && C < 2.0 && 2.0 * gc_u01(r) > 1.0 + (1.0 - z) * (1.0 - z)) continue;
        az = GC_TWOPI * gc_u01(r);
        ux = cos(az); uy = sin(az);
        j = gc_plist_add(L, z * pt, L->p[idx].x + (1.0 - z) * th * ux, L->p[idx].y + (1.0 - z) * th * uy, L->p[idx].tag);
        if (j < 0) return;
        L->p[idx].x -= z * th * ux;
        L->p[idx].y -= z * th * uy;
        L->p[idx].pt = (1.0 - z) * pt;
        if (depth < sp->maxdepth) gc_shower(r, L, j, th, 3.0, sp, depth + 1);
    }
}

/* ------------------------------------------------------------------ 4-vectors */
typedef struct { double E, px, py, pz; } gc_p4;
static inline gc_p4 gc_p4_ptetaphi(double pt, double eta, double phi) {
    gc_p4 v;
    v.px = pt * cos(phi); v.py = pt * sin(phi); v.pz = pt * sinh(eta); v.E = pt * cosh(eta);
    return v;
}
static inline double gc_p4_m(gc_p4 v) {
    double m2 = v.E * v.E - v.px * v.px - v.py * v.py - v.pz * v.pz;
    return m2 > 0 ? sqrt(m2) : 0.0;
}
static inline double gc_p4_pt(gc_p4 v) { return sqrt(v.px * v.px + v.py * v.py); }
/* Boost v by velocity (bx, by, bz). */
static inline gc_p4 gc_boost(gc_p4 v, double bx, double by, double bz) {
    double b2 = bx * bx + by * by + bz * bz, g, bp, g2;
    gc_p4 o;
    if (b2 <= 0) return v;
    if (b2 >= 1) b2 = 1 - 1e-12;
    g = 1.0 / sqrt(1.0 - b2);
    bp = bx * v.px + by * v.py + bz * v.pz;
    g2 = (g - 1.0) / b2;
    o.px = v.px + g2 * bp * bx + g * bx * v.E;
    o.py = v.py + g2 * bp * by + g * by * v.E;
    o.pz = v.pz + g2 * bp * bz + g * bz * v.E;
    o.E = g * (v.E + bp);
    return o;
}

/* Eigenvalues of a symmetric 3x3 matrix, ascending (trigonometric closed form). */
static inline void gc_eig3(const double a[3][3], double ev[3]) {
    double p1 = a[0][1] * a[0][1] + a[0][2] * a[0][2] + a[1][2] * a[1][2], q, p2, p, b[3][3], rr, phi, e0, e2;
    int i, j;
    if (p1 < 1e-300) {
        ev[0] = a[0][0]; ev[1] = a[1][1]; ev[2] = a[2][2];
    } else {
        q = (a[0][0] + a[1][1] + a[2][2]) / 3.0;
        p2 = (a[0][0] - q) * (a[0][0] - q) + (a[1][1] - q) * (a[1][1] - q) + (a[2][2] - q) * (a[2][2] - q) + 2.0 * p1;
        p = sqrt(p2 / 6.0);
        for (i = 0; i < 3; i++)
            for (j = 0; j < 3; j++) b[i][j] = (a[i][j] - (i == j ? q : 0.0)) / p;
        rr = 0.5 * (b[0][0] * (b[1][1] * b[2][2] - b[1][2] * b[2][1]) - b[0][1] * (b[1][0] * b[2][2] - b[1][2] * b[2][0]) +
                    b[0][2] * (b[1][0] * b[2][1] - b[1][1] * b[2][0]));
        phi = rr <= -1 ? GC_PI / 3.0 : rr >= 1 ? 0.0 : acos(rr) / 3.0;
        e2 = q + 2.0 * p * cos(phi);
        e0 = q + 2.0 * p * cos(phi + 2.0 * GC_PI / 3.0);
        ev[2] = e2; ev[0] = e0; ev[1] = 3.0 * q - e0 - e2;
    }
    /* sort ascending */
    for (i = 0; i < 2; i++)
        for (j = 0; j < 2 - i; j++)
            if (ev[j] > ev[j + 1]) { double t = ev[j]; ev[j] = ev[j + 1]; ev[j + 1] = t; }
}

#endif /* GEN_COMMON_H */
