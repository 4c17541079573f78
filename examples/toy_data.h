/* A small generated two-class problem for the demo and the tests: 10 features; background is a
 * correlated Gaussian, signal puts (x0, x1) on a ring of radius 2.5 and shifts x2. A linear cut
 * barely separates them (AUC ~0.61), a small MLP does (AUC ~0.94): the task needs the hidden layers.
 * Per-sample weights in [0.5, 1.5] so the weighted code paths are used. */
#ifndef ADVNN_TOY_DATA_H
#define ADVNN_TOY_DATA_H
#include <math.h>
#include <stdint.h>

typedef struct { uint64_t s; } toy_rng;
static inline double toy_uniform(toy_rng *r) {   /* splitmix64 -> [0, 1) */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
static inline double toy_normal(toy_rng *r) {    /* Box-Muller */
    double u = toy_uniform(r), v = toy_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
}

#define TOY_FEATURES 10
/* Fills x (n x 10), y (n) and w (n); rows alternate signal/background. */
static inline void toy_generate(uint64_t seed, int64_t n, float *x, float *y, float *w) {
    toy_rng r;
    int64_t i;
    int j;
    r.s = seed;
    for (i = 0; i < n; i++) {
        float *xi = x + i * TOY_FEATURES;
        int sig = (int)(i & 1);
        for (j = 0; j < TOY_FEATURES; j++) xi[j] = (float)toy_normal(&r);
        xi[3] = (float)(0.6 * xi[3] + 0.8 * xi[4]);  /* some correlation */
        if (sig) {
            double rad = 2.5 + 0.2 * toy_normal(&r), phi = 6.283185307179586 * toy_uniform(&r);
            xi[0] = (float)(rad * cos(phi));
            xi[1] = (float)(rad * sin(phi));
            xi[2] += 0.5f;
        }
        y[i] = (float)sig;
        w[i] = (float)(0.5 + toy_uniform(&r));
    }
}
#endif
