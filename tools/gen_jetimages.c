/* gen_jetimages.c -- synthetic 40x40 jet images, QCD (background) vs hadronic top (anomaly), for the
 * adversarial anomaly autoencoder (PHYSICS.md 3.1 and 3.5, workload W3).
 *
 * Model (toy, in the spirit of the top-tagging landscape sample: no pile-up, R = 0.8):
 *   - jet pT ~ U(550, 650) GeV at generation, eta uniform in |eta| < 2.
 *   - QCD: one hard parton (quark C_F or gluon C_A, 50/50) showering inside R = 0.8: emissions in
 *     decreasing angle by the veto algorithm with density alpha_s(kt) C/pi dz/z dtheta^2/theta^2 and
 *     recursive angular-ordered secondary showers (gen_common.h gc_shower): a falling mass spectrum
 *     (m ~ pT theta sqrt(z(1-z))) with a tail of two-prong, high-mass jets.
 *   - top: t -> b W, W -> q q' isotropic in the rest frames (top Breit-Wigner 172.5 GeV, W 80.4 GeV,
 *     widths 2 GeV), boosted to the jet momentum; the jet is kept only if the three partons lie within
 *     dR < 0.8 of the top direction. Each parton showers (C_F) inside the angle to its nearest partner;
 *     the showered system is then rescaled about its centroid to the top mass times a 6% resolution.
 *   - detector: particle energy smeared by 10%/sqrt(E) (+) 2%, particles below 1 GeV or outside
 *     dR = 0.8 dropped; at most 200 constituents. m and pT from the constituents (massless).
 *   - image: pT-weighted centroid moved to the origin, rotated so the principal axis of the pT-weighted
 *     (deta, dphi) covariance is vertical, flipped in x and in y so that the larger pT half lies at
 *     positive x and positive y (the hottest quadrant is the upper right), pixelated on 40 x 40 cells
 *     of 0.04 over [-0.8, 0.8]^2 with pT as intensity, normalised to unit sum.
 *   The AE reconstruction error grows with image complexity, which for QCD grows with the mass, so a
 *   loss cut sculpts the QCD mass towards the top mass; the program prints the QCD mass profile.
 *
 * Files written to --out DIR (float32 .npy):
 *   train split (QCD only, n = --n jets; the autoencoder trains on QCD):
 *     img_train_x  (n, 40, 40, 1)  unit-sum images, x[i][row][col][0]: row = phi' bin, col = eta' bin
 *     img_train_m  (n)             jet mass [GeV]
 *     img_train_pt (n)             jet pT [GeV]
 *     img_train_y  (n)             0 (QCD)
 *   test split (--ntest QCD + --ntest top, default n/2 each, rows shuffled):
 *     img_test_x   (N, 40, 40, 1), img_test_m (N), img_test_pt (N), img_test_y (N): 0 = QCD, 1 = top
 *
 * Build and run:
 *   gcc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror -I. tools/gen_jetimages.c -o build/tools/gen_jetimages -lsleef -lm
 *   build/tools/gen_jetimages --out build/data/img [--n 100000] [--ntest N] [--seed 1]
 * (--n 100000 writes ~1.3 GB.) Same seed -> byte-identical files. */
#define _POSIX_C_SOURCE 200809L
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "gen_common.h"

#define IM_NPIX 40
#define IM_PITCH 0.04
#define IM_R 0.8
#define IM_MAXP 1024
#define IM_MAXC 200
#define IM_MTOP 172.5
#define IM_MW 80.4

static const char *im_usage =
    "usage: gen_jetimages --out DIR [--n N] [--ntest N] [--seed S]\n"
    "  Synthetic 40x40 jet images, QCD vs top (PHYSICS.md 3.5). Writes DIR/img_{train,test}_{x,m,pt,y}.npy;\n"
    "  the train split is QCD only, the test split has --ntest QCD and --ntest top jets.\n"
    "  --out DIR    output directory (created if missing), required\n"
    "  --n N        QCD jets in the train split (default 100000)\n"
    "  --ntest N    jets per class in the test split (default n/2)\n"
    "  --seed S     RNG seed (default 1); same seed -> identical files\n";

typedef struct { double m, pt, npart; } im_info;

static gc_shower_par im_shower_par(void) {
    gc_shower_par sp;
    sp.ktmin = 1.0; sp.lambda = 0.2; sp.asmax = 0.45; sp.thmin = 0.005; sp.maxdepth = 6; sp.full_pqq = 0;
    return sp;
}

/* Two-body decay of parent P (mass M) into massless daughters, isotropic in the rest frame. */
static void im_decay2(gc_rng *r, gc_p4 P, double M, double m1, gc_p4 *d1, gc_p4 *d2) {
    double ct = gc_unif(r, -1.0, 1.0), st = sqrt(1.0 - ct * ct), ph = GC_TWOPI * gc_u01(r);
    double E1 = (M * M + m1 * m1) / (2.0 * M), p = (M * M - m1 * m1) / (2.0 * M);
    gc_p4 a, b;
    a.E = E1; a.px = p * st * cos(ph); a.py = p * st * sin(ph); a.pz = p * ct;
    b.E = M - E1; b.px = -a.px; b.py = -a.py; b.pz = -a.pz;
    *d1 = gc_boost(a, P.px / P.E, P.py / P.E, P.pz / P.E);
    *d2 = gc_boost(b, P.px / P.E, P.py / P.E, P.pz / P.E);
}
static double im_bw(gc_rng *r, double m0, double g, double win) {
    double m;
    do m = m0 + 0.5 * g * tan(GC_PI * (gc_u01(r) - 0.5)); while (fabs(m - m0) > win);
    return m;
}

/* Generates one jet into an image (40x40, unit sum); returns 0 if rejected. */
static int im_gen_jet(gc_rng *r, int top, gc_plist *L, const gc_shower_par *sp, float *img, im_info *info) {
    double pt0 = gc_unif(r, 550.0, 650.0), eta0 = gc_unif(r, -2.0, 2.0);
    double cpt[IM_MAXC], cx[IM_MAXC], cy[IM_MAXC], sum = 0, mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0, ang, ca, sa;
    double hx = 0, hy = 0, fx, fy;
    int i, j, nc = 0;
    gc_p4 J;
    L->n = 0;
    if (!top) {
        int i0 = gc_plist_add(L, pt0, 0.0, 0.0, 0);
        gc_shower(r, L, i0, IM_R, gc_u01(r) < 0.5 ? 4.0 / 3.0 : 3.0, sp, 0);
    } else {
        double mt = im_bw(r, IM_MTOP, 2.0, 15.0), mw = im_bw(r, IM_MW, 2.0, 10.0), target, m2 = 0, ptot = 0, k;
        double px[3], py[3], pp[3];
        gc_p4 T = gc_p4_ptetaphi(pt0, eta0, 0.0), b, W, q1, q2, d[3];
        int start[4];
        T.E = sqrt(T.E * T.E + mt * mt);
        im_decay2(r, T, mt, mw, &W, &b);     /* W massive: E1 formula with m1 = mW */
        im_decay2(r, W, mw, 0.0, &q1, &q2);
        d[0] = b; d[1] = q1; d[2] = q2;
        for (i = 0; i < 3; i++) {
            double ptd = gc_p4_pt(d[i]);
            pp[i] = ptd;
            px[i] = asinh(d[i].pz / ptd) - eta0;
            py[i] = atan2(d[i].py, d[i].px);
            if (px[i] * px[i] + py[i] * py[i] > IM_R * IM_R) return 0;   /* partons not contained */
        }
        for (i = 0; i < 3; i++) {
            double th = 10.0;
            int ii;
            for (j = 0; j < 3; j++)
                if (j != i) {
                    double dd = sqrt((px[i] - px[j]) * (px[i] - px[j]) + (py[i] - py[j]) * (py[i] - py[j]));
                    if (dd < th) th = dd;
                }
            start[i] = L->n;
            ii = gc_plist_add(L, pp[i], px[i], py[i], i);
            gc_shower(r, L, ii, th, 4.0 / 3.0, sp, 0);
        }
        start[3] = L->n;
        (void)start;
        /* rescale the showered system about its centroid to the top mass (x resolution) */
        for (i = 0; i < L->n; i++) { ptot += L->p[i].pt; mx += L->p[i].pt * L->p[i].x; my += L->p[i].pt * L->p[i].y; }
        mx /= ptot; my /= ptot;
        for (i = 0; i < L->n; i++) {
            double dx = L->p[i].x - mx, dy = L->p[i].y - my;
            m2 += L->p[i].pt * (dx * dx + dy * dy);
        }
        m2 *= ptot;                                   /* m^2 ~ sum_i<j pt_i pt_j dR_ij^2 = P sum pt dr^2 */
        target = mt * (1.0 + 0.06 * gc_normal(r));
        k = target / sqrt(m2);
        for (i = 0; i < L->n; i++) { L->p[i].x = mx + k * (L->p[i].x - mx); L->p[i].y = my + k * (L->p[i].y - my); }
        mx = my = 0;
    }
    /* detector */
    for (i = 0; i < L->n && nc < IM_MAXC; i++) {
        const gc_part *p = &L->p[i];
        double E, res, pt;
        if (p->x * p->x + p->y * p->y >= IM_R * IM_R) continue;
        E = p->pt * cosh(eta0 + p->x);
        res = sqrt(0.01 / E + 0.02 * 0.02);
        pt = p->pt * (1.0 + res * gc_normal(r));
        if (pt < 1.0) continue;
        cpt[nc] = pt; cx[nc] = p->x; cy[nc] = p->y; nc++;
    }
    if (nc < 1) return 0;
    J.E = J.px = J.py = J.pz = 0;
    for (i = 0; i < nc; i++) {
        gc_p4 p = gc_p4_ptetaphi(cpt[i], eta0 + cx[i], cy[i]);
        J.E += p.E; J.px += p.px; J.py += p.py; J.pz += p.pz;
    }
    info->m = gc_p4_m(J);
    info->pt = gc_p4_pt(J);
    info->npart = nc;
    /* image preprocessing: centroid, principal axis, flips */
    for (i = 0; i < nc; i++) { sum += cpt[i]; mx += cpt[i] * cx[i]; my += cpt[i] * cy[i]; }
    mx /= sum; my /= sum;
    for (i = 0; i < nc; i++) {
        cx[i] -= mx; cy[i] -= my;
        sxx += cpt[i] * cx[i] * cx[i]; syy += cpt[i] * cy[i] * cy[i]; sxy += cpt[i] * cx[i] * cy[i];
    }
    ang = 0.5 * atan2(2.0 * sxy, sxx - syy);     /* principal axis angle wrt x */
    ca = cos(GC_PI / 2 - ang); sa = sin(GC_PI / 2 - ang);   /* rotate it onto the y axis */
    for (i = 0; i < nc; i++) {
        double x = ca * cx[i] - sa * cy[i], y = sa * cx[i] + ca * cy[i];
        cx[i] = x; cy[i] = y;
        hx += cpt[i] * (x > 0 ? 1 : -1); hy += cpt[i] * (y > 0 ? 1 : -1);
    }
    fx = hx < 0 ? -1.0 : 1.0; fy = hy < 0 ? -1.0 : 1.0;
    memset(img, 0, sizeof(float) * IM_NPIX * IM_NPIX);
    sum = 0;
    for (i = 0; i < nc; i++) {
        int col = (int)floor((fx * cx[i] + IM_R) / IM_PITCH), row = (int)floor((fy * cy[i] + IM_R) / IM_PITCH);
        if (col < 0 || row < 0 || col >= IM_NPIX || row >= IM_NPIX) continue;
        img[row * IM_NPIX + col] += (float)cpt[i];
        sum += cpt[i];
    }
    if (sum <= 0) return 0;
    {
        double s2 = 0;
        for (i = 0; i < IM_NPIX * IM_NPIX; i++) s2 += img[i];
        for (i = 0; i < IM_NPIX * IM_NPIX; i++) img[i] = (float)(img[i] / s2);
    }
    return 1;
}

typedef struct { double n, m, m2, np, maxdev; double hist[7]; } im_stat;

static void im_make_split(const char *dir, const char *split, int64_t nqcd, int64_t ntop, uint64_t seed, uint64_t stream,
                          im_stat *st) {
    int64_t N = nqcd + ntop, i;
    int *lab = (int *)gc_malloc(sizeof(int) * (size_t)N);
    advnn_tensor *X = gc_tensor(4, N, IM_NPIX, IM_NPIX, 1), *M = gc_tensor(1, N, 0, 0, 0);
    advnn_tensor *PT = gc_tensor(1, N, 0, 0, 0), *Y = gc_tensor(1, N, 0, 0, 0);
    gc_shower_par sp = im_shower_par();
    gc_plist L;
    gc_rng r;
    char name[64];

    gc_plist_init(&L, IM_MAXP);
    gc_rng_seed(&r, seed, stream);
    for (i = 0; i < N; i++) lab[i] = i < ntop ? 1 : 0;
    gc_shuffle_int(&r, lab, N);
    for (i = 0; i < N; i++) {
        float *img = X->data + i * IM_NPIX * IM_NPIX;
        im_info info;
        int y = lab[i], k;
        double s = 0;
        while (!im_gen_jet(&r, y, &L, &sp, img, &info)) {}
        M->data[i] = (float)info.m; PT->data[i] = (float)info.pt; Y->data[i] = (float)y;
        for (k = 0; k < IM_NPIX * IM_NPIX; k++) s += img[k];
        st[y].n += 1; st[y].m += info.m; st[y].m2 += info.m * info.m; st[y].np += info.npart;
        if (fabs(s - 1.0) > st[y].maxdev) st[y].maxdev = fabs(s - 1.0);
        k = (int)(info.m / 50.0); k = k > 6 ? 6 : k;
        st[y].hist[k] += 1;
    }
    snprintf(name, sizeof name, "img_%s_x", split);  gc_save(dir, name, X);
    snprintf(name, sizeof name, "img_%s_m", split);  gc_save(dir, name, M);
    snprintf(name, sizeof name, "img_%s_pt", split); gc_save(dir, name, PT);
    snprintf(name, sizeof name, "img_%s_y", split);  gc_save(dir, name, Y);
    gc_plist_free(&L);
    free(lab);
}

int main(int argc, char **argv) {
    gc_args a;
    im_stat st[2];
    int c, k;
    gc_parse_args(argc, argv, &a, im_usage, 0, (int64_t)10000000);
    gc_mkdir_p(a.out);
    memset(st, 0, sizeof st);
    im_make_split(a.out, "train", a.n, 0, a.seed, 1, st);
    im_make_split(a.out, "test", a.ntest, a.ntest, a.seed, 2, st);
    printf("gen_jetimages: train %lld QCD; test %lld QCD + %lld top (40x40, pitch 0.04, unit sum)\n", (long long)a.n,
           (long long)a.ntest, (long long)a.ntest);
    printf("  class   jets     <m> GeV  RMS    <nconst>  max|sum-1|\n");
    for (c = 0; c < 2; c++) {
        double mu = st[c].m / st[c].n;
        printf("  %-5s %8.0f  %7.1f  %6.1f  %7.1f   %.1e\n", c ? "top" : "QCD", st[c].n, mu, sqrt(st[c].m2 / st[c].n - mu * mu),
               st[c].np / st[c].n, st[c].maxdev);
    }
    printf("  mass profile (fraction of jets)  [0,50) [50,100) [100,150) [150,200) [200,250) [250,300) >=300\n");
    for (c = 0; c < 2; c++) {
        printf("  %-5s                          ", c ? "top" : "QCD");
        for (k = 0; k < 7; k++) printf(" %.3f", st[c].hist[k] / st[c].n);
        printf("\n");
    }
    printf("wrote %s/img_{train,test}_{x,m,pt,y}.npy\n", a.out);
    return 0;
}
