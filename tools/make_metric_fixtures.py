#!/usr/bin/python3
"""Writes tests/fixtures/metrics_*.npy: reference values for the weighted metrics tested by
tests/test_metrics2.c (advnn_auc, advnn_roc, advnn_rejection_at, advnn_ks, advnn_histogram,
advnn_jsd, advnn_jsd_pass_fail, advnn_pearson).

Run as `/usr/bin/python3 tools/make_metric_fixtures.py` (numpy, scipy, scikit-learn from Debian).
The C test does not need Python: the fixtures are committed. Everything is drawn with a fixed
seed, so re-running gives the same files.

Inputs (float32, 1-d; all values are float32 in the files and every reference below is computed
in float64 from exactly those float32 values):
  metrics_score.npy   (N,)  classifier score, rounded to a 1/64 grid so there are many ties
  metrics_label.npy   (N,)  1 = signal, 0 = background
  metrics_weight.npy  (N,)  positive event weights (log-normal-ish)
  metrics_var.npy     (N,)  a "mass": correlated with the score for background (sculpting), with
                            some values outside [LO, HI), some exactly on bin edges and on HI
  metrics_y2.npy      (N,)  a second variable correlated with the score (for Pearson)
  metrics_ks_a.npy, metrics_ks_wa.npy   (NA,) sample a and its weights (values on a 0.05 grid: ties
  metrics_ks_b.npy, metrics_ks_wb.npy   (NB,)  within and across the samples)
  metrics_hist.npy    (NBINS, 2) weighted histogram of var on [LO, HI) (numpy.histogram with the
                            values == HI removed, since numpy's last bin is closed), as hi/lo pairs

Reference vector metrics_ref.npy, shape (K, 2) float32: value k = ref[k,0] + ref[k,1] (a float32
pair, so float64 references survive advnn_npy_load's float32 tensors to ~1e-14 relative):
   0 AUC weighted        sklearn.metrics.roc_auc_score(label, score, sample_weight=weight)
   1 AUC unweighted      sklearn.metrics.roc_auc_score(label, score)
   2 KS D unweighted     scipy.stats.ks_2samp(a, b).statistic
   3 KS p unweighted     scipy.special.kolmogorov(lam), lam = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) D,
                         ne = na nb / (na + nb)   (the formula advnn_ks implements)
   4 KS p scipy asymp    scipy.stats.ks_2samp(a, b, method='asymp').pvalue -- information only:
                         scipy uses kstwo.sf(D, round(ne)), a different approximation
   5 KS D weighted       numpy: max over pooled values x of |Fa(x) - Fb(x)|, F right-continuous
                         weighted ECDFs (cumulative normalised weights, searchsorted side='right')
   6 KS p weighted       scipy.special.kolmogorov(lam) with ne from effective sizes
                         n_k = (sum w)^2 / sum w^2 (scipy has no weighted KS test)
   7 JSD pass/fail       scipy.spatial.distance.jensenshannon(h_pass, h_fail, base=2)**2 (scipy
                         returns the JS distance, the square root of the divergence); histograms of
                         var for score >= CUT and < CUT as metrics_hist
   8 Pearson weighted    numpy.cov(score, y2, aweights=weight) -> r
   9 Pearson unweighted  scipy.stats.pearsonr(score, y2)
  10 rejection @ eps_S = TARGET  1/eps_B, eps_B linearly interpolated in eps_S between the ROC
                         points bracketing the target (ROC from sklearn.metrics.roc_curve with
                         drop_intermediate=False, i.e. one point per distinct score)
  11 weighted sum of var in [LO, HI)
  12 CUT   13 LO   14 HI   15 NBINS   16 TARGET   (parameters used above)
  17 number of distinct scores (the ROC has this + 1 points)
"""
import os

import numpy as np
from scipy import special, stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score, roc_curve

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
N, NA, NB = 2000, 700, 900
CUT, LO, HI, NBINS, TARGET = 0.5, 50.0, 200.0, 30, 0.5


def f32(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def pair(v):
    """float64 values -> (K, 2) float32 hi/lo pairs with hi + lo == v to ~1e-14 relative."""
    v = np.asarray(v, dtype=np.float64)
    hi = v.astype(np.float32)
    lo = (v - hi.astype(np.float64)).astype(np.float32)
    return np.stack([hi, lo], axis=1)


def wecdf_D(a, wa, b, wb):
    x = np.unique(np.concatenate([a, b]))
    def cdf(s, w):
        o = np.argsort(s, kind="stable")
        s, c = s[o], np.cumsum(w[o]) / w.sum()
        k = np.searchsorted(s, x, side="right")
        return np.where(k > 0, c[np.maximum(k - 1, 0)], 0.0)
    return float(np.max(np.abs(cdf(a, wa) - cdf(b, wb))))


def ks_p(D, wa, wb):
    na, nb = wa.sum() ** 2 / (wa ** 2).sum(), wb.sum() ** 2 / (wb ** 2).sum()
    ne = na * nb / (na + nb)
    return float(special.kolmogorov((np.sqrt(ne) + 0.12 + 0.11 / np.sqrt(ne)) * D))


def hist(x, w, sel):
    keep = sel & (x != HI)   # numpy's last bin is [.., HI]; advnn's is [.., HI)
    h, _ = np.histogram(x[keep], bins=NBINS, range=(LO, HI), weights=w[keep])
    return h


def main():
    rng = np.random.default_rng(20240531)
    label = (rng.random(N) < 0.4).astype(np.float64)
    raw = rng.normal(0.0, 1.0, N) + 1.2 * label
    score = np.round(64 * (1 / (1 + np.exp(-raw)))) / 64            # 1/64 grid: many ties
    weight = np.exp(rng.normal(0.0, 0.5, N)) * np.where(label > 0, 0.7, 1.3)
    mass = np.where(label > 0, rng.normal(125, 15, N), rng.exponential(60, N) + 30)
    mass = mass + (1 - label) * 40 * score                           # background sculpted by the score
    on_edge = rng.random(N) < 0.03                                    # exactly on bin edges (5 GeV steps) ...
    mass = np.where(on_edge, LO + 5.0 * rng.integers(0, NBINS + 1, N), mass)   # ... including HI itself
    y2 = 0.6 * score + rng.normal(0, 0.3, N)
    score, label, weight, mass, y2 = (f32(v).astype(np.float64) for v in (score, label, weight, mass, y2))

    a = f32(np.round(rng.normal(0.0, 1.0, NA) * 20) / 20).astype(np.float64)
    b = f32(np.round(rng.normal(0.02, 1.02, NB) * 20) / 20).astype(np.float64)
    wa = f32(np.exp(rng.normal(0, 0.4, NA))).astype(np.float64)
    wb = f32(np.exp(rng.normal(0, 0.6, NB))).astype(np.float64)

    # --- references
    auc_w = roc_auc_score(label, score, sample_weight=weight)
    auc_u = roc_auc_score(label, score)
    ks_u = stats.ks_2samp(a, b)
    D_u = float(ks_u.statistic)
    assert abs(D_u - wecdf_D(a, np.ones(NA), b, np.ones(NB))) < 1e-12
    p_u = ks_p(D_u, np.ones(NA), np.ones(NB))
    p_u_scipy = float(stats.ks_2samp(a, b, method="asymp").pvalue)
    D_w = wecdf_D(a, wa, b, wb)
    p_w = ks_p(D_w, wa, wb)
    h_all = hist(mass, weight, np.ones(N, bool))
    h_pass, h_fail = hist(mass, weight, score >= CUT), hist(mass, weight, score < CUT)
    jsd = float(jensenshannon(h_pass, h_fail, base=2) ** 2)
    c = np.cov(score, y2, aweights=weight)
    r_w = float(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]))
    r_u = float(stats.pearsonr(score, y2)[0])
    fpr, tpr, _ = roc_curve(label, score, sample_weight=weight, drop_intermediate=False)
    k = int(np.argmax(tpr >= TARGET))
    if tpr[k] == TARGET:
        eb = fpr[k]
    else:
        eb = fpr[k - 1] + (TARGET - tpr[k - 1]) / (tpr[k] - tpr[k - 1]) * (fpr[k] - fpr[k - 1])
    rej = 1.0 / eb
    ndist = len(np.unique(score))
    assert len(tpr) == ndist + 1 and tpr[0] == 0 and fpr[0] == 0

    ref = [auc_w, auc_u, D_u, p_u, p_u_scipy, D_w, p_w, jsd, r_w, r_u, rej, h_all.sum(),
           CUT, LO, HI, NBINS, TARGET, ndist]
    os.makedirs(OUT, exist_ok=True)
    files = {
        "metrics_score": f32(score), "metrics_label": f32(label), "metrics_weight": f32(weight),
        "metrics_var": f32(mass), "metrics_y2": f32(y2),
        "metrics_ks_a": f32(a), "metrics_ks_wa": f32(wa), "metrics_ks_b": f32(b), "metrics_ks_wb": f32(wb),
        "metrics_hist": pair(h_all), "metrics_ref": pair(ref),
    }
    total = 0
    for name, arr in files.items():
        path = os.path.join(OUT, name + ".npy")
        np.save(path, arr)
        total += os.path.getsize(path)
    names = ["auc_w", "auc_u", "ks_D_u", "ks_p_u", "ks_p_u_scipy", "ks_D_w", "ks_p_w", "jsd", "r_w", "r_u",
             "rej@0.5", "hist_sum", "cut", "lo", "hi", "nbins", "target", "n_distinct"]
    for n_, v in zip(names, ref):
        print(f"  {n_:13s} {v:.15g}")
    print(f"wrote {len(files)} files, {total} bytes, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
