/* gen_wtagger.c -- synthetic boosted W (signal) vs QCD (background) large-R jets for the
 * mass-decorrelated W tagger (PHYSICS.md 1.5, workload W1).
 *
 * Model (toy, but every observable is computed from generated constituents):
 *   - jet pT from dN/dpT ~ pT^-2 on [280, 1600] GeV (falling; milder than pT^-4 so that the flat-pT
 *     weights keep ~50% effective statistics), eta uniform in |eta| < 2; the jet is kept if the
 *     reconstructed 50 <= m < 300 GeV and 300 <= pT < 1500 GeV, otherwise it is regenerated.
 *   - W: m from a Breit-Wigner (80.4, 2.1 GeV, |m - 80.4| < 15), dN/dcos(theta*) ~ 1 + cos^2,
 *     prong momentum fractions z = (1 + cos theta*)/2 and 1 - z, opening angle
 *     theta12 = m / (pT sqrt(z(1-z))); each quark prong showers (C_F) inside theta12 (colour singlet,
 *     no wide-angle radiation), then the prong separation is set so that the showered system keeps m.
 *   - QCD: one hard parton showering inside R = 1.0, gluon (C_A) with probability 0.70 at pT = 300 GeV
 *     falling linearly to 0.45 at 1500 GeV (gluon fraction of 13 TeV dijet jets; quark C_F otherwise):
 *     emissions in decreasing angle by the veto algorithm, density alpha_s(kt) C/pi dz/z dtheta^2/theta^2,
 *     recursive angular-ordered secondary showers (gen_common.h gc_shower with full_pqq: the q -> qg
 *     splitting function below). Hard wide-angle emissions give the falling QCD mass tail with W-like
 *     two-prong jets at high mass.
 *   - splitting function: a quark's emission of fraction z <= 1/2 is kept with probability
 *     P_qq(z) / (2 C_F / z) = (1 + (1-z)^2)/2 (the soft form alone overstates hard, symmetric q -> qg
 *     splittings by up to 60%); g -> gg keeps the soft form (within 13% of P_gg on z <= 1/2). Applies to
 *     the W prongs and to QCD quarks alike.
 *   - underlying event / pile-up pedestal: 5-15 soft particles (pT ~ Exp(1.2 GeV)) uniform in the disc.
 *   - detector: particles within dR < 1 of the axis summed in 0.1 x 0.1 (eta, phi) cells (position =
 *     pT-weighted centroid); each shower parton first gets a response factor 1 + 0.20 N(0,1) (the toy
 *     has no hadronisation: the fluctuating pi0 fraction of the parton's hadrons in a non-compensating
 *     calorimeter, e/h ~ 1.3, plus out-of-cluster losses), cell energy smeared by 50%/sqrt(E) (+) 3%,
 *     cells with pT < 1 GeV dropped; trimming as ATLAS large-R jets (cells grouped in R = 0.2 subjets,
 *     subjets below 5% of the jet pT dropped); the 40 hardest surviving cells are the (massless)
 *     constituents. All features, m_calo and pT come from these constituents.
 *   - tracks and jet mass (ATLAS combined mass, PHYSICS.md 1.3): each shower parton has a charged fraction
 *     0.62 + 0.15 N(0,1) (clipped to [0,1]); tracks = charged part of the partons in the kept cells (pile-up
 *     tracks removed by the vertex association, tracking resolution neglected); track-assisted mass
 *     m_TA = m_trk pT_calo / pT_trk; the written mass m = 0.64 m_calo + 0.36 m_TA (roughly inverse-variance
 *     weights, sigma_calo ~ 0.85 sigma_TA here). The 50 <= m < 300 GeV selection uses this m; zcut12 and
 *     angularity use m_calo (constituent mass), as in ATLAS.
 *   Why the response / track / splitting-function terms (absent in the first version): with exact per-cell
 *   positions and only 3%-level calorimeter fluctuations the W calo-mass peak was ~8% wide and the mass was
 *   exactly recoverable from the inputs (m^2 = split12^2 (1 - zcut12) / zcut12), so the plain NN's rejection
 *   (R50 ~ 45) was mostly a mass cut, far above ATLAS's (R50 ~ 20), while the separation at fixed mass was
 *   weak (NN R50 ~ 15 in 65-95 GeV; the ANN kept only 0.25x of the NN's R50). Real large-R calo-mass
 *   resolution for W jets is ~12-20%; the parton response brings the W peak there (narrowest 50% window
 *   ~16 GeV), the combined mass decouples the written mass slightly from the calo constituents the features
 *   see, and P_qq(z) makes the W prongs cleaner and the in-window QCD jets more often asymmetric (one hard
 *   prong plus a soft one), so D2 / tau21 separate better at fixed mass. The QCD D2 / tau21 fall with mass
 *   (the sculpting mechanism) is unchanged in shape.
 *   - observables on the constituents (angles in (eta, phi), beta = 1, R = 1):
 *     tau21 = tau2/tau1, axes: tau1 = jet axis, tau2 = exclusive-kt 2 subjets refined by 3 2-means
 *     iterations; C2 = e3/e2^2, D2 = e3/e2^3 (energy correlation functions with pT fractions);
 *     angularity (ATLAS, a = -2) = (1/m) sum E_i sin^-2(theta_i) (1 - cos theta_i)^3 wrt the jet axis;
 *     aplanarity = 3/2 * smallest eigenvalue of the sphericity tensor in the jet rest frame;
 *     Fox-Wolfram R2 = H2/H0 in the jet rest frame; kT-dR = dR of the two exclusive-kt subjets;
 *     planar flow = 4 det(I)/tr(I)^2, I = pT-weighted (deta, dphi) second moment about the axis;
 *     split12 = sqrt(d12) [GeV], d12 = min(pT1,pT2)^2 dR12^2 at the last kt clustering step;
 *     zcut12 = d12 / (d12 + m^2).
 *   QCD D2 and tau21 fall with mass at fixed pT, so cutting on them (or on a NN) sculpts the QCD mass
 *   towards the W peak -- the effect the adversary has to remove. The program prints that profile, plus
 *   the rejection of the narrowest mass window keeping 50% of the W and of D2 / tau21 cuts at 50% W
 *   efficiency within 65-95 GeV (the substructure separation at fixed mass).
 *
 * Files written to --out DIR (float32 .npy, N = 2n rows, signal and background interleaved at random;
 * n = --n for train, --ntest (default n/2) for test):
 *   wtag_{train,test}_x   (N, 10)  raw features: tau21, C2, D2, angularity, aplanarity, FoxWolfram R2,
 *                                  kT-dR, planar flow, split12 [GeV], zcut12
 *   wtag_{train,test}_m   (N)      combined jet mass [GeV], 50 <= m < 300
 *   wtag_{train,test}_pt  (N)      jet pT [GeV], 300 <= pT < 1500
 *   wtag_{train,test}_y   (N)      1 = W, 0 = QCD
 *   wtag_{train,test}_w   (N)      flat-pT weights (100 bins on [300, 1500] GeV), unit mean per class
 *
 * Build and run:
 *   gcc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror -I. tools/gen_wtagger.c -o build/tools/gen_wtagger -lsleef -lm
 *   build/tools/gen_wtagger --out build/data/wtag [--n 100000] [--ntest N] [--seed 1]
 * Same seed and build -> byte-identical files (gcc and clang builds differ in ~2% of the x values:
 * floating-point rounding flips near-tie clustering / 2-means choices; m, pT, y, w agree). */
#define _POSIX_C_SOURCE 200809L
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "gen_common.h"

#define WT_NF 10
#define WT_MAXC 40       /* constituents kept */
#define WT_R 1.0
#define WT_CELL 0.1
#define WT_NCELL 22      /* cells cover [-1.1, 1.1] */
#define WT_MAXP 1024     /* partons per jet */
#define WT_RSUB 0.2      /* trimming subjet radius */
#define WT_FCUT 0.05     /* trimming pT fraction */
#define WT_PTPOW 2.0     /* generated dN/dpT ~ pT^-WT_PTPOW */
#define WT_PUPT 1.2      /* mean pT of a pedestal particle [GeV] */
#define WT_RESP 0.20     /* per-parton calorimeter response spread (hadronisation + e/h != 1) */
#define WT_FCH 0.62      /* mean charged fraction of a parton's hadrons */
#define WT_FCHS 0.15     /* its spread */
#define WT_WCALO 0.64    /* combined mass: m = WT_WCALO m_calo + (1 - WT_WCALO) m_TA */
#define WT_FG300 0.70    /* QCD gluon fraction at pT = 300 GeV ... */
#define WT_FG1500 0.45   /* ... falling linearly to this at 1500 GeV (13 TeV dijets, |eta| < 2) */

static const char *wt_usage =
    "usage: gen_wtagger --out DIR [--n N] [--ntest N] [--seed S]\n"
    "  Synthetic W vs QCD large-R jets (PHYSICS.md 1.5). Writes DIR/wtag_{train,test}_{x,m,pt,y,w}.npy\n"
    "  --out DIR    output directory (created if missing), required\n"
    "  --n N        jets per class in the train split (default 100000)\n"
    "  --ntest N    jets per class in the test split (default n/2)\n"
    "  --seed S     RNG seed (default 1); same seed -> identical files\n";

static const char *wt_names[WT_NF] = {"tau21", "C2", "D2", "angularity", "aplanarity",
                                      "FoxWolframR2", "kT-dR", "planarflow", "split12", "zcut12"};

typedef struct {
    gc_plist L;
    double cpt[WT_NCELL * WT_NCELL], cx[WT_NCELL * WT_NCELL], cy[WT_NCELL * WT_NCELL];
    int used[WT_NCELL * WT_NCELL], nused;
    double apt[WT_NCELL * WT_NCELL], ax[WT_NCELL * WT_NCELL], ay[WT_NCELL * WT_NCELL];
    int asub[WT_NCELL * WT_NCELL], acell[WT_NCELL * WT_NCELL], ckeep[WT_NCELL * WT_NCELL];
    int pcell[WT_MAXP];
    double fch[WT_MAXP];
} wt_work;

typedef struct { double f[WT_NF], m, pt; } wt_jet;

static gc_shower_par wt_shower_par(void) {
    gc_shower_par sp;
    sp.ktmin = 1.0; sp.lambda = 0.2; sp.asmax = 0.45; sp.thmin = 0.005; sp.maxdepth = 6; sp.full_pqq = 1;   /* see the header comment */
    return sp;
}

static int wt_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double wt_sq(double x) { return x * x; }

/* Constituent-level observables. pt/x/y: n constituents (offsets from the jet axis), eta0 the jet eta. */
static void wt_features(int n, const double *pt, const double *x, const double *y, double eta0, gc_p4 J, double m, double *f) {
    static double dR[WT_MAXC][WT_MAXC];
    double z[WT_MAXC], sumpt = 0, e2 = 0, e3 = 0, tau1 = 0, tau2 = 0;
    double kpt[WT_MAXC], kx[WT_MAXC], ky[WT_MAXC], d12 = 0, dr12 = 0, ax[2], ay[2];
    double Ixx = 0, Iyy = 0, Ixy = 0, ang = 0, S[3][3], T[3][3], psum = 0, p2sum = 0, ev[3];
    double bx, by, bz, Jp, h2 = 0;
    int i, j, k, a, b, nk, it;

    for (i = 0; i < n; i++) sumpt += pt[i];
    for (i = 0; i < n; i++) z[i] = pt[i] / sumpt;
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++) dR[i][j] = dR[j][i] = sqrt(wt_sq(x[i] - x[j]) + wt_sq(y[i] - y[j]));
    /* energy correlation functions, beta = 1 */
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++) {
            double zz = z[i] * z[j] * dR[i][j], s = 0;
            e2 += zz;
            for (k = j + 1; k < n; k++) s += z[k] * dR[i][k] * dR[j][k];
            e3 += zz * s;
        }
    /* exclusive kt clustering down to 2 subjets (pt scheme), R = 1 */
    nk = n;
    for (i = 0; i < n; i++) { kpt[i] = pt[i]; kx[i] = x[i]; ky[i] = y[i]; }
    if (nk == 1) { kpt[1] = 0; kx[1] = kx[0]; ky[1] = ky[0]; nk = 2; }
    while (nk > 1) {
        double best = 1e300;
        int bi = 0, bj = 1;
        for (i = 0; i < nk; i++)
            for (j = i + 1; j < nk; j++) {
                double mp = kpt[i] < kpt[j] ? kpt[i] : kpt[j];
                double d = mp * mp * (wt_sq(kx[i] - kx[j]) + wt_sq(ky[i] - ky[j]));
                if (d < best) { best = d; bi = i; bj = j; }
            }
        if (nk == 2) {
            d12 = best / (WT_R * WT_R);
            dr12 = sqrt(wt_sq(kx[0] - kx[1]) + wt_sq(ky[0] - ky[1]));
            break;
        }
        {
            double p = kpt[bi] + kpt[bj];
            kx[bi] = (kpt[bi] * kx[bi] + kpt[bj] * kx[bj]) / p;
            ky[bi] = (kpt[bi] * ky[bi] + kpt[bj] * ky[bj]) / p;
            kpt[bi] = p;
            kpt[bj] = kpt[nk - 1]; kx[bj] = kx[nk - 1]; ky[bj] = ky[nk - 1];
            nk--;
        }
    }
    /* N-subjettiness: tau2 axes = kt subjets refined by 3 iterations of 2-means */
    ax[0] = kx[0]; ay[0] = ky[0]; ax[1] = kx[1]; ay[1] = ky[1];
    for (it = 0; it < 3; it++) {
        double sw[2] = {0, 0}, sx[2] = {0, 0}, sy[2] = {0, 0};
        for (i = 0; i < n; i++) {
            double d0 = wt_sq(x[i] - ax[0]) + wt_sq(y[i] - ay[0]), d1 = wt_sq(x[i] - ax[1]) + wt_sq(y[i] - ay[1]);
            a = d1 < d0 ? 1 : 0;
            sw[a] += pt[i]; sx[a] += pt[i] * x[i]; sy[a] += pt[i] * y[i];
        }
        for (a = 0; a < 2; a++)
            if (sw[a] > 0) { ax[a] = sx[a] / sw[a]; ay[a] = sy[a] / sw[a]; }
    }
    {
        double cx = 0, cy = 0;
        for (i = 0; i < n; i++) { cx += z[i] * x[i]; cy += z[i] * y[i]; }
        for (i = 0; i < n; i++) {
            double d0 = sqrt(wt_sq(x[i] - ax[0]) + wt_sq(y[i] - ay[0])), d1 = sqrt(wt_sq(x[i] - ax[1]) + wt_sq(y[i] - ay[1]));
            tau1 += z[i] * sqrt(wt_sq(x[i] - cx) + wt_sq(y[i] - cy));
            tau2 += z[i] * (d0 < d1 ? d0 : d1);
            Ixx += pt[i] * wt_sq(x[i] - cx); Iyy += pt[i] * wt_sq(y[i] - cy); Ixy += pt[i] * (x[i] - cx) * (y[i] - cy);
        }
    }
    /* angularity (a = -2) wrt the jet 3-momentum; rest-frame sphericity tensor and Fox-Wolfram */
    Jp = sqrt(J.px * J.px + J.py * J.py + J.pz * J.pz);
    bx = -J.px / J.E; by = -J.py / J.E; bz = -J.pz / J.E;
    for (a = 0; a < 3; a++)
        for (b = 0; b < 3; b++) S[a][b] = T[a][b] = 0;
    for (i = 0; i < n; i++) {
        gc_p4 p = gc_p4_ptetaphi(pt[i], eta0 + x[i], y[i]), q;
        double cxp = p.py * J.pz - p.pz * J.py, cyp = p.pz * J.px - p.px * J.pz, czp = p.px * J.py - p.py * J.px;
        double pm = p.E, s2 = (cxp * cxp + cyp * cyp + czp * czp) / (pm * pm * Jp * Jp);
        double c = (p.px * J.px + p.py * J.py + p.pz * J.pz) / (pm * Jp), omc = s2 / (1.0 + c);
        double v[3], qm;
        if (s2 > 1e-14) ang += p.E * omc * omc * omc / s2;
        q = gc_boost(p, bx, by, bz);
        v[0] = q.px; v[1] = q.py; v[2] = q.pz;
        qm = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
        psum += qm; p2sum += qm * qm;
        for (a = 0; a < 3; a++)
            for (b = 0; b < 3; b++) {
                S[a][b] += v[a] * v[b];
                if (qm > 0) T[a][b] += v[a] * v[b] / qm;
            }
    }
    for (a = 0; a < 3; a++)
        for (b = 0; b < 3; b++) { S[a][b] /= p2sum; h2 += T[a][b] * T[a][b]; }
    gc_eig3((const double(*)[3])S, ev);

    f[0] = tau1 > 0 ? tau2 / tau1 : 0;
    f[1] = e2 > 0 ? e3 / (e2 * e2) : 0;
    f[2] = e2 > 0 ? e3 / (e2 * e2 * e2) : 0;
    f[3] = ang / m;
    f[4] = 1.5 * (ev[0] > 0 ? ev[0] : 0);
    f[5] = (1.5 * h2 - 0.5 * psum * psum) / (psum * psum);   /* H2/H0, P2 = (3c^2-1)/2 */
    f[6] = dr12;
    f[7] = (Ixx + Iyy) > 0 ? 4.0 * (Ixx * Iyy - Ixy * Ixy) / wt_sq(Ixx + Iyy) : 0;
    f[8] = sqrt(d12);
    f[9] = d12 / (d12 + m * m);
}

/* One jet attempt; returns 1 and fills *o if it passes 50 <= m < 300, 300 <= pT < 1500. */
static int wt_gen_jet(gc_rng *r, int sig, wt_work *w, const gc_shower_par *sp, wt_jet *o) {
    gc_plist *L = &w->L;
    double ptg = gc_powerlaw(r, WT_PTPOW, 280.0, 1600.0), eta0 = gc_unif(r, -2.0, 2.0);
    double cpt[WT_MAXC], cx[WT_MAXC], cy[WT_MAXC], m, ptsum = 0;
    double spt[WT_NCELL * WT_NCELL], sx[WT_NCELL * WT_NCELL], sy[WT_NCELL * WT_NCELL];
    int nall = 0, nsub = 0;
    int i, npu, npart, nc = 0, c;
    double mcalo, mta, ptrk;
    gc_p4 J, T;
    L->n = 0;
    if (sig) {
        /* shower each prong about its own axis, then place the prongs at the separation s that gives
         * the two-body mass: m^2 = m1^2/z + m2^2/(1-z) + z(1-z) pT^2 s^2 (small angles, pT-weighted
         * centroids of the prongs kept by the recoil) */
        double mw, ct, zz, th, az, m1 = 0, m2 = 0, P1 = 0, P2 = 0, s2;
        int i1, i2;
        do mw = 80.4 + 1.05 * tan(GC_PI * (gc_u01(r) - 0.5)); while (fabs(mw - 80.4) > 15.0);
        do ct = gc_unif(r, -1.0, 1.0); while (2.0 * gc_u01(r) > 1.0 + ct * ct);
        zz = 0.5 * (1.0 + ct);
        if (zz < 1e-3 || zz > 1 - 1e-3) return 0;
        th = mw / (ptg * sqrt(zz * (1.0 - zz)));
        if (th > 2.0) return 0;
        i1 = gc_plist_add(L, zz * ptg, 0.0, 0.0, 0);
        gc_shower(r, L, i1, th, 4.0 / 3.0, sp, 0);
        i2 = gc_plist_add(L, (1.0 - zz) * ptg, 0.0, 0.0, 1);
        gc_shower(r, L, i2, th, 4.0 / 3.0, sp, 0);
        for (i = 0; i < L->n; i++) {
            double q = L->p[i].pt * (L->p[i].x * L->p[i].x + L->p[i].y * L->p[i].y);
            if (i < i2) { m1 += q; P1 += L->p[i].pt; } else { m2 += q; P2 += L->p[i].pt; }
        }
        s2 = (mw * mw - P2 * m1 / zz - P1 * m2 / (1.0 - zz)) / (zz * (1.0 - zz) * ptg * ptg);  /* m_i^2 = P_i sum pt x^2 */
        if (s2 <= 0) return 0;
        th = sqrt(s2);
        az = GC_TWOPI * gc_u01(r);
        for (i = 0; i < L->n; i++) {
            double f = i < i2 ? (1.0 - zz) * th : -zz * th;
            L->p[i].x += f * cos(az); L->p[i].y += f * sin(az);
        }
    } else {
        int i0 = gc_plist_add(L, ptg, 0.0, 0.0, 0);
        gc_shower(r, L, i0, WT_R, gc_u01(r) < WT_FG300 + (WT_FG1500 - WT_FG300) * (ptg - 300.0) / 1200.0 ? 3.0 : 4.0 / 3.0, sp, 0);
    }
    npart = L->n;
    npu = 5 + gc_randint(r, 11);
    for (i = 0; i < npu; i++) {
        double rr = WT_R * sqrt(gc_u01(r)), az = GC_TWOPI * gc_u01(r);
        gc_plist_add(L, gc_expo(r, WT_PUPT), rr * cos(az), rr * sin(az), 9);
    }
    /* calorimeter cells; each shower parton gets a response factor (hadronisation + non-compensating
     * calorimeter: fluctuating pi0 fraction) and a charged fraction (its tracks) */
    w->nused = 0;
    for (i = 0; i < L->n; i++) {
        const gc_part *p = &L->p[i];
        double resp = 1.0;
        int ix, iy;
        w->pcell[i] = -1;
        if (i < npart) {
            resp = 1.0 + WT_RESP * gc_normal(r);
            resp = resp < 0.3 ? 0.3 : resp;
            w->fch[i] = WT_FCH + WT_FCHS * gc_normal(r);
            w->fch[i] = w->fch[i] < 0.0 ? 0.0 : w->fch[i] > 1.0 ? 1.0 : w->fch[i];
        }
        if (p->x * p->x + p->y * p->y >= WT_R * WT_R) continue;
        ix = (int)floor((p->x + 0.5 * WT_NCELL * WT_CELL) / WT_CELL);
        iy = (int)floor((p->y + 0.5 * WT_NCELL * WT_CELL) / WT_CELL);
        if (ix < 0 || iy < 0 || ix >= WT_NCELL || iy >= WT_NCELL) continue;
        c = iy * WT_NCELL + ix;
        w->pcell[i] = c;
        if (w->cpt[c] == 0) w->used[w->nused++] = c;
        w->cpt[c] += resp * p->pt; w->cx[c] += resp * p->pt * p->x; w->cy[c] += resp * p->pt * p->y;
    }
    for (i = 0; i < w->nused; i++) {
        double pt, E, res, x, y;
        int k;
        c = w->used[i];
        pt = w->cpt[c]; x = w->cx[c] / pt; y = w->cy[c] / pt;
        w->cpt[c] = w->cx[c] = w->cy[c] = 0;
        w->ckeep[c] = 0;
        E = pt * cosh(eta0 + x);
        res = sqrt(0.25 / E + 0.03 * 0.03);
        pt *= 1.0 + res * gc_normal(r);
        if (pt < 1.0) continue;
        k = nall++;                              /* insertion into the pt-ordered cell list */
        while (k > 0 && w->apt[k - 1] < pt) {
            w->apt[k] = w->apt[k - 1]; w->ax[k] = w->ax[k - 1]; w->ay[k] = w->ay[k - 1]; w->acell[k] = w->acell[k - 1]; k--;
        }
        w->apt[k] = pt; w->ax[k] = x; w->ay[k] = y; w->acell[k] = c;
        ptsum += pt;
    }
    /* trimming: cells grouped into R = 0.2 subjets (hardest-first seeded cones), subjets with less
     * than 5% of the jet pT dropped; the WT_MAXC hardest surviving cells are the constituents */
    for (i = 0; i < nall; i++) {
        int k, best = -1;
        double bd = WT_RSUB * WT_RSUB;
        for (k = 0; k < nsub; k++) {
            double d = (w->ax[i] - sx[k]) * (w->ax[i] - sx[k]) + (w->ay[i] - sy[k]) * (w->ay[i] - sy[k]);
            if (d < bd) { bd = d; best = k; }
        }
        if (best < 0) { best = nsub++; sx[best] = w->ax[i]; sy[best] = w->ay[i]; spt[best] = 0; }
        spt[best] += w->apt[i];
        w->asub[i] = best;
    }
    for (i = 0; i < nall && nc < WT_MAXC; i++) {
        if (spt[w->asub[i]] < WT_FCUT * ptsum) continue;
        cpt[nc] = w->apt[i]; cx[nc] = w->ax[i]; cy[nc] = w->ay[i]; nc++;
        w->ckeep[w->acell[i]] = 1;
    }
    if (nc < 2) return 0;
    J.E = J.px = J.py = J.pz = 0;
    for (i = 0; i < nc; i++) {
        gc_p4 p = gc_p4_ptetaphi(cpt[i], eta0 + cx[i], cy[i]);
        J.E += p.E; J.px += p.px; J.py += p.py; J.pz += p.pz;
    }
    /* tracks: charged part of the shower partons in the kept cells (pile-up tracks removed by the
     * vertex association); track-assisted mass m_TA = m_trk pT_calo / pT_trk */
    T.E = T.px = T.py = T.pz = 0;
    for (i = 0; i < npart; i++) {
        gc_p4 p;
        if (w->pcell[i] < 0 || !w->ckeep[w->pcell[i]] || w->fch[i] <= 0) continue;
        p = gc_p4_ptetaphi(w->fch[i] * L->p[i].pt, eta0 + L->p[i].x, L->p[i].y);
        T.E += p.E; T.px += p.px; T.py += p.py; T.pz += p.pz;
    }
    mcalo = gc_p4_m(J);
    o->pt = gc_p4_pt(J);
    ptrk = gc_p4_pt(T);
    mta = ptrk > 0.05 * o->pt ? gc_p4_m(T) * o->pt / ptrk : mcalo;
    m = WT_WCALO * mcalo + (1.0 - WT_WCALO) * mta;
    if (m < 50.0 || m >= 300.0 || o->pt < 300.0 || o->pt >= 1500.0 || mcalo <= 0) return 0;
    o->m = m;
    {   /* re-centre on the reconstructed jet axis */
        double pz = J.pz, etaJ = asinh(pz / o->pt), phiJ = atan2(J.py, J.px);
        for (i = 0; i < nc; i++) { cx[i] = eta0 + cx[i] - etaJ; cy[i] = gc_dphi(cy[i], phiJ); }
        eta0 = etaJ;
        /* keep phi offsets relative to phi = 0 frame for the 4-vectors: rotate J to phi = 0 */
        J.px = o->pt; J.py = 0;
    }
    wt_features(nc, cpt, cx, cy, eta0, J, mcalo, o->f);
    return 1;
}

static void wt_make_split(const char *dir, const char *split, int64_t n, uint64_t seed, uint64_t stream, int print) {
    int64_t N = 2 * n, i;
    int *lab = (int *)gc_malloc(sizeof(int) * (size_t)N);
    advnn_tensor *X = gc_tensor(2, N, WT_NF, 0, 0), *M = gc_tensor(1, N, 0, 0, 0), *PT = gc_tensor(1, N, 0, 0, 0);
    advnn_tensor *Y = gc_tensor(1, N, 0, 0, 0), *W = gc_tensor(1, N, 0, 0, 0);
    wt_work *w = (wt_work *)gc_malloc(sizeof(wt_work));
    gc_shower_par sp = wt_shower_par();
    gc_rng r;
    long long tries[2] = {0, 0};
    double cnt[2][100];
    char name[64];
    int j, b, cls;

    memset(w, 0, sizeof *w);
    gc_plist_init(&w->L, WT_MAXP);
    gc_rng_seed(&r, seed, stream);
    for (i = 0; i < N; i++) lab[i] = i < n ? 1 : 0;
    gc_shuffle_int(&r, lab, N);
    for (i = 0; i < N; i++) {
        wt_jet jet;
        int sig = lab[i];
        do tries[sig]++; while (!wt_gen_jet(&r, sig, w, &sp, &jet));
        for (j = 0; j < WT_NF; j++) X->data[i * WT_NF + j] = (float)jet.f[j];
        M->data[i] = (float)jet.m; PT->data[i] = (float)jet.pt; Y->data[i] = (float)sig;
    }
    /* flat-pT weights per class: 100 bins on [300, 1500), unit mean per class */
    memset(cnt, 0, sizeof cnt);
    for (i = 0; i < N; i++) {
        b = (int)((PT->data[i] - 300.0f) / 12.0f); b = b < 0 ? 0 : b > 99 ? 99 : b;
        cnt[lab[i]][b] += 1;
    }
    for (cls = 0; cls < 2; cls++) {
        double sumw = 0;
        for (b = 0; b < 100; b++) if (cnt[cls][b] > 0) sumw += 1;   /* sum over jets of 1/count */
        for (b = 0; b < 100; b++) if (cnt[cls][b] > 0) cnt[cls][b] = (double)n / (sumw * cnt[cls][b]);
    }
    for (i = 0; i < N; i++) {
        b = (int)((PT->data[i] - 300.0f) / 12.0f); b = b < 0 ? 0 : b > 99 ? 99 : b;
        W->data[i] = (float)cnt[lab[i]][b];
    }

    if (print) {
        static const double mb[] = {50, 65, 80, 95, 110, 130, 160, 200, 250, 300};
        const int nmb = 9;
        double s[2][WT_NF], sm[2] = {0, 0}, sm2[2] = {0, 0}, win[2] = {0, 0};
        printf("gen_wtagger %s: %lld W + %lld QCD jets; acceptance (50<=m<300, 300<=pT<1500): W %.3f, QCD %.3f\n",
               split, (long long)n, (long long)n, (double)n / (double)tries[1], (double)n / (double)tries[0]);
        memset(s, 0, sizeof s);
        for (i = 0; i < N; i++) {
            int c2 = lab[i];
            double mm = M->data[i];
            for (j = 0; j < WT_NF; j++) s[c2][j] += X->data[i * WT_NF + j];
            sm[c2] += mm; sm2[c2] += mm * mm;
            if (mm >= 60 && mm < 100) win[c2] += 1;
        }
        for (cls = 1; cls >= 0; cls--) {
            double mu = sm[cls] / (double)n;
            printf("  %-3s mass mean %6.1f GeV  RMS %5.1f GeV  fraction in [60,100): %.3f\n", cls ? "W" : "QCD", mu,
                   sqrt(sm2[cls] / (double)n - mu * mu), win[cls] / (double)n);
        }
        printf("  feature means      W        QCD\n");
        for (j = 0; j < WT_NF; j++) printf("  %-12s %9.4g %9.4g\n", wt_names[j], s[1][j] / (double)n, s[0][j] / (double)n);
        for (b = 0; b < 2; b++) {
            double plo = b == 0 ? 300 : 600, phi = b == 0 ? 1500 : 800;
            printf("  QCD profile vs mass (pT in [%.0f,%.0f) GeV): must fall with mass\n", plo, phi);
            printf("    m bin [GeV]     N       <D2>    <tau21>   <C2>\n");
            for (j = 0; j < nmb; j++) {
                double nn = 0, d2 = 0, t21 = 0, c2 = 0;
                for (i = 0; i < N; i++) {
                    if (lab[i] || M->data[i] < mb[j] || M->data[i] >= mb[j + 1]) continue;
                    if (PT->data[i] < plo || PT->data[i] >= phi) continue;
                    nn += 1; t21 += X->data[i * WT_NF + 0]; c2 += X->data[i * WT_NF + 1]; d2 += X->data[i * WT_NF + 2];
                }
                if (nn > 0) printf("    [%3.0f,%3.0f)  %8.0f  %7.3f  %7.3f  %7.3f\n", mb[j], mb[j + 1], nn, d2 / nn, t21 / nn, c2 / nn);
            }
        }
        {   /* rejection of single cuts at 50% W efficiency (flat-pT weighted): the narrowest mass window,
             * and D2 / tau21 within the 65-95 GeV window (the substructure separation at fixed mass) */
            double *v = (double *)gc_malloc(sizeof(double) * (size_t)N), lo = 0, hi = 0, best = 1e30, ws = 0, wb = 0, pb = 0;
            int64_t ns = 0, k;
            for (i = 0; i < N; i++) if (lab[i]) v[ns++] = M->data[i];
            qsort(v, (size_t)ns, sizeof(double), wt_cmp);
            for (k = 0; k + ns / 2 < ns; k++) if (v[k + ns / 2] - v[k] < best) { best = v[k + ns / 2] - v[k]; lo = v[k]; hi = v[k + ns / 2]; }
            for (i = 0; i < N; i++) if (!lab[i]) { wb += 1; if (M->data[i] >= lo && M->data[i] <= hi) pb += 1; }
            printf("  narrowest 50%% W mass window [%.1f, %.1f] GeV: QCD rejection %.2f\n", lo, hi, wb / (pb > 0 ? pb : 1));
            for (j = 0; j < 2; j++) {
                int f = j == 0 ? 2 : 0;
                double cut;
                ns = 0;
                for (i = 0; i < N; i++) if (lab[i] && M->data[i] >= 65 && M->data[i] < 95) v[ns++] = X->data[i * WT_NF + f];
                qsort(v, (size_t)ns, sizeof(double), wt_cmp);
                cut = v[ns / 2]; wb = pb = 0; ws = 0;
                for (i = 0; i < N; i++) if (!lab[i] && M->data[i] >= 65 && M->data[i] < 95) { wb += 1; if (X->data[i * WT_NF + f] < cut) pb += 1; }
                printf("  65-95 GeV window: %s < %.3f keeps 50%% of W, QCD rejection %.2f\n", wt_names[f], cut, wb / (pb > 0 ? pb : 1));
                (void)ws;
            }
            free(v);
        }
        fflush(stdout);
    }
    snprintf(name, sizeof name, "wtag_%s_x", split);  gc_save(dir, name, X);
    snprintf(name, sizeof name, "wtag_%s_m", split);  gc_save(dir, name, M);
    snprintf(name, sizeof name, "wtag_%s_pt", split); gc_save(dir, name, PT);
    snprintf(name, sizeof name, "wtag_%s_y", split);  gc_save(dir, name, Y);
    snprintf(name, sizeof name, "wtag_%s_w", split);  gc_save(dir, name, W);
    gc_plist_free(&w->L);
    free(w);
    free(lab);
}

int main(int argc, char **argv) {
    gc_args a;
    gc_parse_args(argc, argv, &a, wt_usage, 0, (int64_t)100000000);
    gc_mkdir_p(a.out);
    wt_make_split(a.out, "train", a.n, a.seed, 1, 1);
    wt_make_split(a.out, "test", a.ntest, a.seed, 2, 0);
    printf("wrote %s/wtag_{train,test}_{x,m,pt,y,w}.npy (train %lld, test %lld jets per class)\n", a.out,
           (long long)a.n, (long long)a.ntest);
    return 0;
}
