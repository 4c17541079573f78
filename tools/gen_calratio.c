/* gen_calratio.c -- synthetic CalRatio jets (ATLAS EXOT-2019-23 style) for the per-jet LLP tagger with a
 * data/MC adversary (PHYSICS.md 2.2-2.5, workload W2).
 *
 * Model (toy; every class is built from clusters, tracks and muon segments, then preprocessed as 2.3):
 *   - geometry: a calorimeter depth coordinate u [m] from the ECAL front face (barrel r = 1.5 m, endcap
 *     |z| = 3.6 m): ECAL layers [0,.03) [.03,.13) [.13,.40) [.40,.50), gap, HCAL layers [.78,1.1)
 *     [1.1,1.5) [1.5,1.9) [1.9,2.4). Cluster layer energies: EM part in the ECAL layers, hadronic part
 *     with an exponential longitudinal profile from its start depth; fractions of the cluster energy.
 *   - QCD: pT ~ pT^-3 on [40, 500] GeV, |eta| < 2.5; 6 + Poisson(4 + pT/10) (<= 30) clusters with a Gaussian spread of 0.05-0.18
 *     (dR < 0.4); jet EMF ~ Beta(mean 0.15, kappa 2.5) (the low-EMF tail of the Beta(mean 0.5) of 2.5
 *     that passes the preselection, reaching down to EMF ~ 0 like signal), cluster EMF around it; start
 *     of the hadronic shower 0.78 m + Exp(0.25 m) (low-EMF preselected jets are enriched in late,
 *     neutral-hadron showers, so the first HCAL layer is sometimes empty); cluster time N(0, 0.15 ns) per jet
 *     (collision time) + N(0, sqrt(0.3^2 + (1 ns GeV/E)^2)) per cluster; Poisson(fch (1 + pT/8)) prompt
 *     tracks (charged fraction fch ~ Beta(mean 0.3))
 *     (|d0| ~ 0.03 mm with 5% tails, z0 ~ 0.5 mm, 7-9 SCT hits); rare punch-through muon segments.
 *   - signal (LLP decaying in the calorimeter): jet pT ~ pT^-2.3 on [40, 500] (harder than QCD, as for
 *     the low-ET mH = 125 GeV samples, whose LLP jets are mostly below 100 GeV); barrel (|eta| < 1.4,
 *     Lxy ~ U(1.2, 4.0) m) or endcap (1.4 < |eta| < 2.5, |Lz| ~ U(3.5, 6.0) m); LLP mass from
 *     {5, 15, 25, 40, 55} GeV gives beta and a delay L (1/beta - 1)/c (+ per-cluster resolution; light
 *     boosted LLPs have delays << 0.3 ns, i.e. prompt-looking); 4 + Poisson(4 + pT/15) (<= 20) narrow
 *     clusters (spread 0.5 mS/p + U(0.03, 0.09)); the LLP's own deposit has no ECAL energy when the
 *     decay is past the ECAL and no energy in the HCAL layers in front of the decay, but every cluster
 *     also holds a prompt pile-up / underlying-event share ~ Beta(mean 0.12) with the normal shower
 *     profile (EMF ~ 0.45 of that share), so the jet EMF is ~0.05-0.1 as in 2.5 and the layer pattern
 *     and time (energy-weighted) overlap with QCD; Poisson(1.5) soft underlying-event tracks
 *     (pT 1-3 GeV, dR < 0.4) + Poisson(0.8) pile-up tracks (no tracks from the LLP); muon segments
 *     Poisson(0.3), Poisson(3) punch-through when the decay is near the HCAL exit.
 *     (Why the overlap: with an idealised LLP deposit -- empty ECAL layers 1-3, empty HCAL layers in
 *     front of the decay, all clusters narrow -- the tagger reached AUC 0.9999 after one epoch, unlike
 *     the real tagger's ~0.96 quoted in 2.2; with the overlap above it reaches ~0.99 after a few epochs
 *     on the demo settings, and it then relies on timing and EMF as in the real analysis.)
 *   - BIB (beam-halo muon at radius R parallel to the beam): pT ~ pT^-3.5, phi near 0 or pi;
 *     2-8 clusters on a line in eta (dphi ~ 0.02) with the energy in one HCAL (ECAL) layer set by R,
 *     low EMF, early time t = (s z - sqrt(R^2 + z^2))/c (z = R sinh eta, s = beam direction; jets
 *     with mean time < -12 ns regenerated as out of the readout window), ~no tracks, 2-10 muon
 *     segments parallel to the beam (|etaDir| ~ 4-6) at the jet phi with t0 from the same formula.
 *   - control region (CR): "MC" = nominal QCD; "data" = QCD with cluster time +0.2 ns and an extra
 *     0.3 ns smearing per cluster, EMF +0.03 (energy moved from HCAL to ECAL layers), track efficiency
 *     x0.95, and 1% BIB contamination (with the same shifts). Track absence, cluster spread, layer
 *     pattern and muon segments are not shifted, so a tagger can be made robust. These are the numbers of
 *     PHYSICS.md 2.5 unchanged; the un-adversarial tagger's scores differ strongly between data and MC
 *     (sum KS ~1 on the demo settings) because it uses the cluster timing and EMF.
 *   - MC weights exp(N(0, 0.1)); data weights 1.
 *
 * Files written to --out DIR (float32 .npy; rows shuffled; sequences pT-ordered (segments by dR to the
 * jet axis), zero-padded):
 *   main sample, n jets per class (--n train, --ntest test), N = 3n:
 *   llp_{train,test}_clusters (N, 30, 12) pT (pT[MeV] - 40)/460000, deta, dphi (wrt the leading cluster;
 *                                         eta flipped so that the pT-weighted sum of deta >= 0),
 *                                         4 ECAL + 4 HCAL layer energy fractions, time [ns]
 *   llp_{train,test}_tracks   (N, 20, 10) pT (pT[GeV] - 40)/460, deta, dphi (wrt the jet, same flip),
 *                                         vertex nParticles/100, d0 [mm], z0 [mm]/250, chi2/ndf,
 *                                         SCT shared, SCT holes, SCT hits/10
 *   llp_{train,test}_msegs    (N, 30, 6)  etaPos, phiPos, etaDir, phiDir (wrt the jet, same flip),
 *                                         chi2/10, t0 [ns]/10
 *   llp_{train,test}_jet      (N, 3)      (pT - 40)/460, eta, phi
 *   llp_{train,test}_y        (N)         0 = QCD, 1 = signal, 2 = BIB
 *   llp_{train,test}_w        (N)         MC weights; QCD and BIB rescaled so each class sums to sum w(signal)
 *   control region, ncr jets per class (--ncr, default n; test: ncr * ntest / n), N = 2 ncr:
 *   llpcr_{train,test}_{clusters,tracks,msegs,jet}  as above
 *   llpcr_{train,test}_y      (N)         0 = MC, 1 = data
 *   llpcr_{train,test}_w      (N)         data 1, MC rescaled so sum w(MC) = sum w(data)
 *
 * Build and run:
 *   gcc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror -I. tools/gen_calratio.c -o build/tools/gen_calratio -lsleef -lm
 *   build/tools/gen_calratio --out build/data/llp [--n 100000] [--ntest N] [--ncr N] [--seed 1]
 * (--n 100000 writes ~2.2 GB.) Same seed -> byte-identical files. */
#define _POSIX_C_SOURCE 200809L
#define ADVNN_IMPLEMENTATION
#include "advnn.h"
#include "gen_common.h"

#define CR_NC 30   /* clusters */
#define CR_FC 12
#define CR_NT 20   /* tracks */
#define CR_FT 10
#define CR_NS 30   /* muon segments */
#define CR_FS 6
#define CR_MAX 64
#define CR_CLIGHT 0.299792458   /* m / ns */
#define CR_CLMIN 0.4            /* GeV, smallest cluster pT */

/* data/MC shift of the control region */
#define CR_DT_SHIFT 0.2     /* ns, per jet */
#define CR_DT_SMEAR 0.3     /* ns, per cluster */
#define CR_EMF_SHIFT 0.03
#define CR_TRK_EFF 0.95
#define CR_BIB_FRAC 0.01
#define CR_PRESEL_EMF 0.25 /* all jets: pT-weighted EMF below this */

static const char *cr_usage =
    "usage: gen_calratio --out DIR [--n N] [--ntest N] [--ncr N] [--seed S]\n"
    "  Synthetic CalRatio LLP jets (PHYSICS.md 2.5): QCD / signal / BIB main sample and a control region\n"
    "  of QCD MC vs shifted \"data\". Writes DIR/llp_{train,test}_* and DIR/llpcr_{train,test}_*.npy\n"
    "  --out DIR    output directory (created if missing), required\n"
    "  --n N        main-sample jets per class in the train split (default 100000)\n"
    "  --ntest N    main-sample jets per class in the test split (default n/2)\n"
    "  --ncr N      control-region jets per class (MC, data) in the train split (default n);\n"
    "               the CR test split has ncr*ntest/n per class\n"
    "  --seed S     RNG seed (default 1); same seed -> identical files\n";

static const double cr_ecal_lo[4] = {0.0, 0.03, 0.13, 0.40}, cr_ecal_hi[4] = {0.03, 0.13, 0.40, 0.50};
static const double cr_hcal_lo[4] = {0.78, 1.10, 1.50, 1.90}, cr_hcal_hi[4] = {1.10, 1.50, 1.90, 2.40};

typedef struct { double pt, eta, phi, lay[8], t; } cr_clus;
typedef struct { double pt, eta, phi, npart, d0, z0, chi2, shared, holes, hits; } cr_trk;
typedef struct { double eta, phi, etadir, phidir, chi2, t0; } cr_seg;
typedef struct {
    double pt, eta, phi, w;
    int nc, nt, ns;
    cr_clus c[CR_MAX];
    cr_trk t[CR_MAX];
    cr_seg s[CR_MAX];
} cr_jet;

/* per-class bookkeeping for the printout */
typedef struct { double n, t, emf, nc, nt, ns, w; } cr_stat;

/* ------------------------------------------------------------------ building blocks */
/* EM energy (fraction emf) in the ECAL layers starting at depth u0 (< 0.5), hadronic energy with an
 * exponential profile (length lam) from depth h0 into the HCAL layers; lognormal layer noise. */
static void cr_layers(gc_rng *r, double emf, double u0, double h0, double lam, double *lay) {
    static const double emprof[4] = {0.04, 0.30, 0.56, 0.10};
    double se = 0, sh = 0;
    int k;
    for (k = 0; k < 4; k++) {
        double lo = cr_ecal_lo[k] > u0 ? cr_ecal_lo[k] : u0, f = 0;
        if (lo < cr_ecal_hi[k]) f = emprof[k] * (cr_ecal_hi[k] - lo) / (cr_ecal_hi[k] - cr_ecal_lo[k]);
        lay[k] = f * exp(0.35 * gc_normal(r));
        se += lay[k];
    }
    for (k = 0; k < 4; k++) {
        double lo = cr_hcal_lo[k] > h0 ? cr_hcal_lo[k] : h0, f = 0;
        if (lo < cr_hcal_hi[k]) f = exp(-(lo - h0) / lam) - exp(-(cr_hcal_hi[k] - h0) / lam);
        lay[4 + k] = f * exp(0.35 * gc_normal(r));
        sh += lay[4 + k];
    }
    if (se <= 0) { lay[3] = 1; se = 1; }
    if (sh <= 0) { lay[7] = 1; sh = 1; }
    for (k = 0; k < 4; k++) { lay[k] *= emf / se; lay[4 + k] *= (1.0 - emf) / sh; }
}
static double cr_emf(const double *lay) { return lay[0] + lay[1] + lay[2] + lay[3]; }

/* Splits pt among n clusters with a hierarchy (weights Exp(1)^2), positions 2D-Gaussian of width sig
 * around the jet axis (dR < rmax). */
static void cr_spray(gc_rng *r, cr_jet *J, int n, double sig, double rmax) {
    double w[CR_MAX], s = 0;
    int i;
    for (i = 0; i < n; i++) { w[i] = gc_expo(r, 1.0); w[i] *= w[i]; s += w[i]; }
    for (i = 0; i < n; i++) {
        double dx, dy;
        do { dx = sig * gc_normal(r); dy = sig * gc_normal(r); } while (dx * dx + dy * dy > rmax * rmax);
        J->c[i].pt = J->pt * w[i] / s;
        if (J->c[i].pt < CR_CLMIN) J->c[i].pt = CR_CLMIN;   /* cluster threshold */
        J->c[i].eta = J->eta + dx;
        J->c[i].phi = J->phi + dy;
    }
    J->nc = n;
}
static double cr_tres(double E) { return sqrt(0.3 * 0.3 + (1.0 / E) * (1.0 / E)); } /* ns */

static void cr_prompt_tracks(gc_rng *r, cr_jet *J, int n, double chargedpt, double sig, double npv) {
    double w[CR_MAX], s = 0;
    int i;
    if (n > CR_MAX - J->nt) n = CR_MAX - J->nt;
    for (i = 0; i < n; i++) { w[i] = gc_expo(r, 1.0); w[i] *= w[i]; s += w[i]; }
    for (i = 0; i < n; i++) {
        cr_trk *t = &J->t[J->nt + i];
        double dx, dy;
        do { dx = sig * gc_normal(r); dy = sig * gc_normal(r); } while (dx * dx + dy * dy > 0.16);
        t->pt = 1.0 + chargedpt * w[i] / s;
        t->eta = J->eta + dx; t->phi = J->phi + dy;
        t->npart = npv;
        t->d0 = gc_u01(r) < 0.05 ? gc_gauss(r, 0, 0.8) : gc_gauss(r, 0, 0.03);
        t->z0 = gc_gauss(r, 0, 0.5);
        t->chi2 = gc_gamma(r, 5.0) / 5.0;
        t->shared = gc_u01(r) < 0.08 ? 1 : 0;
        t->holes = gc_u01(r) < 0.05 ? 1 : 0;
        t->hits = 7 + gc_randint(r, 3);
    }
    J->nt += n;
}
static void cr_pileup_tracks(gc_rng *r, cr_jet *J, int n) {
    int i;
    for (i = 0; i < n && J->nt < CR_MAX; i++) {
        cr_trk *t = &J->t[J->nt++];
        double rr = 0.4 * sqrt(gc_u01(r)), az = GC_TWOPI * gc_u01(r);
        t->pt = 1.0 + gc_expo(r, 1.0);
        t->eta = J->eta + rr * cos(az); t->phi = J->phi + rr * sin(az);
        t->npart = 5 + gc_poisson(r, 10.0);
        t->d0 = gc_gauss(r, 0, 0.06);
        t->z0 = gc_gauss(r, 0, 45.0);
        t->chi2 = gc_gamma(r, 4.0) / 4.0;
        t->shared = gc_u01(r) < 0.1 ? 1 : 0;
        t->holes = gc_u01(r) < 0.08 ? 1 : 0;
        t->hits = 6 + gc_randint(r, 4);
    }
}
/* Prompt (pointing) muon segments behind the calorimeter, e.g. punch-through. */
static void cr_pointing_segs(gc_rng *r, cr_jet *J, int n, double t0) {
    int i;
    for (i = 0; i < n && J->ns < CR_MAX; i++) {
        cr_seg *s = &J->s[J->ns++];
        s->eta = J->eta + gc_gauss(r, 0, 0.1);
        s->phi = J->phi + gc_gauss(r, 0, 0.1);
        s->etadir = s->eta + gc_gauss(r, 0, 0.08);
        s->phidir = s->phi + gc_gauss(r, 0, 0.08);
        s->chi2 = gc_gamma(r, 3.0) * 1.0;
        s->t0 = t0 + gc_gauss(r, 0, 2.0);
    }
}
static double cr_jet_pt(gc_rng *r, double k) { return gc_powerlaw(r, k, 40.0, 500.0); }

/* ------------------------------------------------------------------ the three classes */
/* Tracks first, so that jets failing the track part of the preselection are dropped before the
 * clusters are made (data: track inefficiency applied here). Returns 0 for such a jet. */
static int cr_core_track(const cr_jet *J);
static void cr_track_ineff(gc_rng *r, cr_jet *J);
static int cr_gen_qcd(gc_rng *r, cr_jet *J, int data) {
    double jemf, sig, tcol, h0, fch;
    int i, n, nt;
    J->pt = cr_jet_pt(r, 3.0);
    J->eta = gc_unif(r, -2.5, 2.5);
    J->phi = gc_unif(r, -GC_PI, GC_PI);
    sig = gc_unif(r, 0.05, 0.18);
    fch = gc_beta_mk(r, 0.30, 3.0);          /* charged fraction of the jet */
    nt = gc_poisson(r, fch * (1.0 + J->pt / 8.0) * (fabs(J->eta) > 2.3 ? 0.5 : 1.0));  /* tracker edge */
    cr_prompt_tracks(r, J, nt, fch * J->pt, 0.8 * sig, 20 + gc_poisson(r, 30.0));
    cr_pileup_tracks(r, J, gc_poisson(r, 0.8));
    if (data) cr_track_ineff(r, J);
    if (cr_core_track(J)) return 0;
    n = 6 + gc_poisson(r, 4.0 + J->pt / 10.0);
    if (n > CR_NC) n = CR_NC;
    cr_spray(r, J, n, sig, 0.4);
    jemf = gc_beta_mk(r, 0.15, 2.5);         /* (the tail of QCD that passes the preselection) */
    h0 = 0.78 + gc_expo(r, 0.25);           /* start of the hadronic shower in the HCAL */
    tcol = gc_gauss(r, 0, 0.15);
    for (i = 0; i < n; i++) {
        cr_clus *c = &J->c[i];
        double emf = gc_beta_mk(r, jemf, 12.0), E = c->pt * cosh(c->eta);
        cr_layers(r, emf, 0.0, h0, 0.35, c->lay);
        c->t = tcol + cr_tres(E) * gc_normal(r);
    }
    cr_pointing_segs(r, J, gc_poisson(r, 0.03 + 0.3 * (J->pt / 500.0) * (J->pt / 500.0)), tcol);
    return 1;
}

static void cr_gen_signal(gc_rng *r, cr_jet *J) {
    static const double ms[5] = {5, 15, 25, 40, 55};
    double L, u, p, mS, beta, delay, sig, tcol, fpu, pu[8];
    int i, k, n, barrel = gc_u01(r) < 0.7;
    J->pt = cr_jet_pt(r, 2.3);
    J->phi = gc_unif(r, -GC_PI, GC_PI);
    if (barrel) {
        double lxy = gc_unif(r, 1.2, 4.0);
        J->eta = gc_unif(r, -1.4, 1.4);
        u = lxy - 1.5;
        L = lxy * cosh(J->eta);
    } else {
        double lz = gc_unif(r, 3.5, 6.0);
        J->eta = (gc_u01(r) < 0.5 ? -1 : 1) * gc_unif(r, 1.4, 2.5);
        u = lz - 3.6;
        L = lz * cosh(J->eta) / fabs(sinh(J->eta));
    }
    mS = ms[gc_randint(r, 5)];
    p = J->pt * cosh(J->eta) * gc_unif(r, 1.0, 1.3);  /* LLP momentum (visible jet carries most of it) */
    beta = p / sqrt(p * p + mS * mS);
    delay = L * (1.0 / beta - 1.0) / CR_CLIGHT;
    n = 4 + gc_poisson(r, 4.0 + J->pt / 15.0);
    if (n > 20) n = 20;
    sig = 0.5 * mS / p + gc_unif(r, 0.03, 0.09);   /* decay-product opening grows with mS/p */
    if (sig > 0.2) sig = 0.2;
    cr_spray(r, J, n, sig, 0.4);
    tcol = gc_gauss(r, 0, 0.15);
    for (i = 0; i < n; i++) {
        cr_clus *c = &J->c[i];
        double E = c->pt * cosh(c->eta), emf, u0, h0;
        if (u < 0.0) { emf = gc_beta_mk(r, 0.30, 8.0); u0 = 0.0; h0 = 0.78; }
        else if (u < 0.5) { emf = gc_beta_mk(r, 0.04 + 0.5 * (0.5 - u), 10.0); u0 = u; h0 = 0.78; }
        else { emf = 0.0; u0 = 0.5; h0 = u > 0.78 ? u : 0.78; }
        cr_layers(r, emf, u0, h0, 0.30, c->lay);
        /* prompt pile-up / underlying-event energy in the same cluster (normal shower profile from the
         * front face): gives decays past the ECAL their EMF ~ 0.05-0.1 and the HCAL layers in front of
         * the decay a little energy; the cluster time is energy-weighted */
        fpu = gc_beta_mk(r, 0.12, 8.0);
        cr_layers(r, gc_beta_mk(r, 0.45, 6.0), 0.0, 0.78, 0.35, pu);
        for (k = 0; k < 8; k++) c->lay[k] = (1.0 - fpu) * c->lay[k] + fpu * pu[k];
        c->t = tcol + (1.0 - fpu) * delay + cr_tres(E) * gc_normal(r);
    }
    cr_prompt_tracks(r, J, gc_poisson(r, 1.5), 2.0, 0.2, 20 + gc_poisson(r, 30.0));  /* underlying event */
    cr_pileup_tracks(r, J, gc_poisson(r, 0.8));
    J->ns = 0;
    cr_pointing_segs(r, J, gc_poisson(r, u > 1.6 ? 3.0 : 0.3), tcol + delay);
}

static double cr_bib_time(double R, double eta, int s) {
    double z = R * sinh(eta);
    return (s * z - sqrt(R * R + z * z)) / CR_CLIGHT;
}
static void cr_gen_bib(gc_rng *r, cr_jet *J) {
    double R, tmean;
    int i, n, s, lay;
    do {
        double w[CR_MAX], sw = 0, emf;
        J->pt = cr_jet_pt(r, 3.5);
        J->eta = gc_unif(r, -2.5, 2.5);
        J->phi = (gc_u01(r) < 0.5 ? 0.0 : GC_PI) + gc_gauss(r, 0, 0.3);
        J->phi = gc_dphi(J->phi, 0.0);
        s = gc_u01(r) < 0.5 ? -1 : 1;
        lay = gc_randint(r, 4);                  /* HCAL layer the muon runs through */
        R = 1.5 + 0.5 * (cr_hcal_lo[lay] + cr_hcal_hi[lay]);
        n = 2 + gc_randint(r, 7);
        emf = gc_beta_mk(r, 0.10, 10.0);
        tmean = 0;
        for (i = 0; i < n; i++) { w[i] = gc_expo(r, 1.0); sw += w[i]; }
        for (i = 0; i < n; i++) {
            cr_clus *c = &J->c[i];
            int k;
            double E;
            c->pt = J->pt * w[i] / sw;
            if (c->pt < CR_CLMIN) c->pt = CR_CLMIN;
            c->eta = J->eta + gc_unif(r, -0.3, 0.3);
            c->phi = J->phi + gc_gauss(r, 0, 0.02);
            E = c->pt * cosh(c->eta);
            for (k = 0; k < 8; k++) c->lay[k] = 0.005 * gc_expo(r, 1.0);
            c->lay[4 + lay] += 1.0;
            c->lay[2] += emf / (1.0 - emf);
            {   /* normalise */
                double t2 = 0;
                for (k = 0; k < 8; k++) t2 += c->lay[k];
                for (k = 0; k < 8; k++) c->lay[k] /= t2;
            }
            c->t = cr_bib_time(R, c->eta, s) + cr_tres(E) * gc_normal(r);
            tmean += c->t / n;
        }
        J->nc = n;
    } while (tmean < -12.0);
    J->nt = 0;
    cr_pileup_tracks(r, J, gc_poisson(r, 0.3));
    J->ns = 0;
    n = 2 + gc_randint(r, 9);
    for (i = 0; i < n; i++) {
        cr_seg *g = &J->s[J->ns++];
        double Rm, z;
        do {   /* segments along the halo track, inside the readout window */
            Rm = gc_unif(r, 4.5, 10.0); z = gc_unif(r, -12.0, 12.0);
            g->t0 = cr_bib_time(Rm, asinh(z / Rm), s) + gc_gauss(r, 0, 2.0);
        } while (g->t0 < -50.0);
        g->eta = asinh(z / Rm);
        g->phi = J->phi + gc_gauss(r, 0, 0.05);
        g->etadir = s * gc_unif(r, 4.0, 6.0);
        g->phidir = J->phi + gc_gauss(r, 0, 0.15);
        g->chi2 = gc_gamma(r, 2.0) * 2.0;
    }
}

/* data/MC shift for "data" jets of the control region */
static void cr_track_ineff(gc_rng *r, cr_jet *J) {
    int i, nt = 0;
    for (i = 0; i < J->nt; i++)
        if (gc_u01(r) < CR_TRK_EFF) J->t[nt++] = J->t[i];
    J->nt = nt;
}
static void cr_shift_calo(gc_rng *r, cr_jet *J) {
    int i, k;
    for (i = 0; i < J->nc; i++) {
        cr_clus *c = &J->c[i];
        double e = cr_emf(c->lay), h = 1.0 - e, d = CR_EMF_SHIFT < h ? CR_EMF_SHIFT : h;
        c->t += CR_DT_SHIFT + CR_DT_SMEAR * gc_normal(r);
        if (h > 0 && d > 0) {
            for (k = 4; k < 8; k++) c->lay[k] *= (h - d) / h;
            if (e > 0) for (k = 0; k < 4; k++) c->lay[k] *= (e + d) / e;
            else c->lay[2] = d;
        }
    }
}

/* Preselection (CalRatio-like, on the measured jet): pT-weighted EMF < CR_PRESEL_EMF and no track
 * with pT > 2 GeV within dR < 0.2 of the jet axis. */
static int cr_core_track(const cr_jet *J) {
    int i;
    for (i = 0; i < J->nt; i++) {
        double de = J->t[i].eta - J->eta, dp = gc_dphi(J->t[i].phi, J->phi);
        if (J->t[i].pt > 2.0 && de * de + dp * dp < 0.04) return 1;
    }
    return 0;
}
static int cr_presel(const cr_jet *J) {
    double se = 0, sp = 0;
    int i;
    if (cr_core_track(J)) return 0;
    for (i = 0; i < J->nc; i++) { se += J->c[i].pt * cr_emf(J->c[i].lay); sp += J->c[i].pt; }
    return sp > 0 && se < CR_PRESEL_EMF * sp;
}
/* kind: 0 QCD (MC), 1 signal, 2 BIB, 3 CR "data"; regenerated until it passes the preselection. */
static void cr_gen(gc_rng *r, cr_jet *J, int kind) {
    int what = kind == 3 ? (gc_u01(r) < CR_BIB_FRAC ? 2 : 0) : kind;
    for (;;) {
        J->nc = J->nt = J->ns = 0;
        if (what == 0) {
            if (!cr_gen_qcd(r, J, kind == 3)) continue;
        } else {
            if (what == 1) cr_gen_signal(r, J);
            else cr_gen_bib(r, J);
            if (kind == 3) cr_track_ineff(r, J);
        }
        if (kind == 3) cr_shift_calo(r, J);
        if (cr_presel(J)) break;
    }
    J->w = kind == 3 ? 1.0 : exp(0.1 * gc_normal(r));
}

/* ------------------------------------------------------------------ preprocessing into the arrays */
static int cr_cmp_clus(const void *a, const void *b) {
    double x = ((const cr_clus *)a)->pt, y = ((const cr_clus *)b)->pt;
    return x < y ? 1 : x > y ? -1 : 0;
}
static int cr_cmp_trk(const void *a, const void *b) {
    double x = ((const cr_trk *)a)->pt, y = ((const cr_trk *)b)->pt;
    return x < y ? 1 : x > y ? -1 : 0;
}
static double cr_seg_key_eta, cr_seg_key_phi;
static int cr_cmp_seg(const void *a, const void *b) {
    const cr_seg *p = (const cr_seg *)a, *q = (const cr_seg *)b;
    double dp = (p->eta - cr_seg_key_eta) * (p->eta - cr_seg_key_eta) + gc_dphi(p->phi, cr_seg_key_phi) * gc_dphi(p->phi, cr_seg_key_phi);
    double dq = (q->eta - cr_seg_key_eta) * (q->eta - cr_seg_key_eta) + gc_dphi(q->phi, cr_seg_key_phi) * gc_dphi(q->phi, cr_seg_key_phi);
    return dp < dq ? -1 : dp > dq ? 1 : 0;
}

static void cr_fill(cr_jet *J, float *cl, float *tr, float *sg, float *jt) {
    double sdeta = 0, flip;
    int i, k, nc, nt, ns;
    qsort(J->c, (size_t)J->nc, sizeof(cr_clus), cr_cmp_clus);
    qsort(J->t, (size_t)J->nt, sizeof(cr_trk), cr_cmp_trk);
    cr_seg_key_eta = J->eta; cr_seg_key_phi = J->phi;
    qsort(J->s, (size_t)J->ns, sizeof(cr_seg), cr_cmp_seg);
    nc = J->nc < CR_NC ? J->nc : CR_NC;
    nt = J->nt < CR_NT ? J->nt : CR_NT;
    ns = J->ns < CR_NS ? J->ns : CR_NS;
    for (i = 0; i < nc; i++) sdeta += J->c[i].pt * (J->c[i].eta - J->c[0].eta);
    flip = sdeta < 0 ? -1.0 : 1.0;
    memset(cl, 0, sizeof(float) * CR_NC * CR_FC);
    memset(tr, 0, sizeof(float) * CR_NT * CR_FT);
    memset(sg, 0, sizeof(float) * CR_NS * CR_FS);
    for (i = 0; i < nc; i++) {
        const cr_clus *c = &J->c[i];
        float *o = cl + i * CR_FC;
        o[0] = (float)((c->pt * 1000.0 - 40.0) / 460000.0);
        o[1] = (float)(flip * (c->eta - J->c[0].eta));
        o[2] = (float)gc_dphi(c->phi, J->c[0].phi);
        for (k = 0; k < 8; k++) o[3 + k] = (float)c->lay[k];
        o[11] = (float)c->t;
    }
    for (i = 0; i < nt; i++) {
        const cr_trk *t = &J->t[i];
        float *o = tr + i * CR_FT;
        o[0] = (float)((t->pt - 40.0) / 460.0);
        o[1] = (float)(flip * (t->eta - J->eta));
        o[2] = (float)gc_dphi(t->phi, J->phi);
        o[3] = (float)(t->npart / 100.0);
        o[4] = (float)t->d0;
        o[5] = (float)(t->z0 / 250.0);
        o[6] = (float)t->chi2;
        o[7] = (float)t->shared;
        o[8] = (float)t->holes;
        o[9] = (float)(t->hits / 10.0);
    }
    for (i = 0; i < ns; i++) {
        const cr_seg *s = &J->s[i];
        float *o = sg + i * CR_FS;
        o[0] = (float)(flip * (s->eta - J->eta));
        o[1] = (float)gc_dphi(s->phi, J->phi);
        o[2] = (float)(flip * (s->etadir - J->eta));
        o[3] = (float)gc_dphi(s->phidir, J->phi);
        o[4] = (float)(s->chi2 / 10.0);
        o[5] = (float)(s->t0 / 10.0);
    }
    jt[0] = (float)((J->pt - 40.0) / 460.0);
    jt[1] = (float)J->eta;
    jt[2] = (float)J->phi;
}

static void cr_accumulate(cr_stat *st, const cr_jet *J) {
    double se = 0, sp = 0, stt = 0;
    int i;
    for (i = 0; i < J->nc; i++) { se += J->c[i].pt * cr_emf(J->c[i].lay); stt += J->c[i].pt * J->c[i].t; sp += J->c[i].pt; }
    st->n += 1;
    st->emf += se / sp;
    st->t += stt / sp;
    st->nc += J->nc; st->nt += J->nt; st->ns += J->ns;
}

/* ------------------------------------------------------------------ one split */
/* cr = 0: main sample (classes 0 QCD, 1 signal, 2 BIB); cr = 1: control region (0 MC, 1 data). */
static void cr_make_split(const char *dir, const char *prefix, const char *split, int cr, int64_t n, uint64_t seed,
                          uint64_t stream, cr_stat *stats) {
    int ncls = cr ? 2 : 3;
    int64_t N = ncls * n, i;
    int *lab = (int *)gc_malloc(sizeof(int) * (size_t)N);
    advnn_tensor *C = gc_tensor(3, N, CR_NC, CR_FC, 0), *T = gc_tensor(3, N, CR_NT, CR_FT, 0);
    advnn_tensor *S = gc_tensor(3, N, CR_NS, CR_FS, 0), *JT = gc_tensor(2, N, 3, 0, 0);
    advnn_tensor *Y = gc_tensor(1, N, 0, 0, 0), *W = gc_tensor(1, N, 0, 0, 0);
    cr_jet *J = (cr_jet *)gc_malloc(sizeof(cr_jet));
    double sumw[3] = {0, 0, 0};
    char name[96];
    gc_rng r;
    int c;

    gc_rng_seed(&r, seed, stream);
    for (i = 0; i < N; i++) lab[i] = (int)(i / n);
    gc_shuffle_int(&r, lab, N);
    for (i = 0; i < N; i++) {
        int y = lab[i];
        cr_gen(&r, J, cr ? (y ? 3 : 0) : y);
        if (stats) cr_accumulate(&stats[y], J);
        cr_fill(J, C->data + i * CR_NC * CR_FC, T->data + i * CR_NT * CR_FT, S->data + i * CR_NS * CR_FS, JT->data + i * 3);
        Y->data[i] = (float)y;
        W->data[i] = (float)J->w;
        sumw[y] += J->w;
    }
    /* normalisation: main: QCD and BIB to sum w(signal); CR: MC to sum w(data) */
    for (i = 0; i < N; i++) {
        int y = lab[i];
        double f = 1.0;
        if (!cr && y != 1) f = sumw[1] / sumw[y];
        if (cr && y == 0) f = sumw[1] / sumw[0];
        W->data[i] = (float)(W->data[i] * f);
    }
    if (stats)
        for (c = 0; c < ncls; c++) stats[c].w = sumw[c];
    snprintf(name, sizeof name, "%s_%s_clusters", prefix, split); gc_save(dir, name, C);
    snprintf(name, sizeof name, "%s_%s_tracks", prefix, split);   gc_save(dir, name, T);
    snprintf(name, sizeof name, "%s_%s_msegs", prefix, split);    gc_save(dir, name, S);
    snprintf(name, sizeof name, "%s_%s_jet", prefix, split);      gc_save(dir, name, JT);
    snprintf(name, sizeof name, "%s_%s_y", prefix, split);        gc_save(dir, name, Y);
    snprintf(name, sizeof name, "%s_%s_w", prefix, split);        gc_save(dir, name, W);
    free(J);
    free(lab);
}

int main(int argc, char **argv) {
    gc_args a;
    cr_stat st[3], sc[2];
    int64_t ncr_test;
    int c;
    static const char *cls[3] = {"QCD", "signal", "BIB"};
    gc_parse_args(argc, argv, &a, cr_usage, 1, (int64_t)10000000);
    gc_mkdir_p(a.out);
    ncr_test = (int64_t)((double)a.ncr * (double)a.ntest / (double)a.n);
    if (ncr_test < 1) ncr_test = 1;
    memset(st, 0, sizeof st);
    memset(sc, 0, sizeof sc);
    cr_make_split(a.out, "llp", "train", 0, a.n, a.seed, 1, st);
    cr_make_split(a.out, "llp", "test", 0, a.ntest, a.seed, 2, NULL);
    cr_make_split(a.out, "llpcr", "train", 1, a.ncr, a.seed, 3, sc);
    cr_make_split(a.out, "llpcr", "test", 1, ncr_test, a.seed, 4, NULL);

    printf("gen_calratio train split: %lld jets per class (main), %lld per class (control region)\n", (long long)a.n,
           (long long)a.ncr);
    printf("  class      <time> ns  <EMF>   <nclus>  <ntrk>  <nseg>   (pT-weighted cluster time and EMF)\n");
    for (c = 0; c < 3; c++)
        printf("  %-9s %8.3f  %7.3f  %7.2f  %6.2f  %6.2f\n", cls[c], st[c].t / st[c].n, st[c].emf / st[c].n, st[c].nc / st[c].n,
               st[c].nt / st[c].n, st[c].ns / st[c].n);
    printf("  control region (data = QCD with time +%.2f ns, +%.2f ns smear, EMF +%.2f, track eff x%.2f, %.0f%% BIB)\n",
           CR_DT_SHIFT, CR_DT_SMEAR, CR_EMF_SHIFT, CR_TRK_EFF, 100.0 * CR_BIB_FRAC);
    for (c = 0; c < 2; c++)
        printf("  CR %-6s %8.3f  %7.3f  %7.2f  %6.2f  %6.2f\n", c ? "data" : "MC", sc[c].t / sc[c].n, sc[c].emf / sc[c].n,
               sc[c].nc / sc[c].n, sc[c].nt / sc[c].n, sc[c].ns / sc[c].n);
    printf("  CR data - MC: <time> %+.3f ns, <EMF> %+.3f, <ntrk> %+.2f\n", sc[1].t / sc[1].n - sc[0].t / sc[0].n,
           sc[1].emf / sc[1].n - sc[0].emf / sc[0].n, sc[1].nt / sc[1].n - sc[0].nt / sc[0].n);
    printf("wrote %s/llp_{train,test}_{clusters,tracks,msegs,jet,y,w}.npy (train %lld, test %lld per class)\n", a.out,
           (long long)a.n, (long long)a.ntest);
    printf("wrote %s/llpcr_{train,test}_{clusters,tracks,msegs,jet,y,w}.npy (train %lld, test %lld per class)\n", a.out,
           (long long)a.ncr, (long long)ncr_test);
    return 0;
}
