#!/usr/bin/python3
"""Writes tests/fixtures/decorr_*.npy: reference values for tests/test_decorr.c (advnn_disco, advnn_mode).

Run as `/usr/bin/python3 tools/make_decorr_fixtures.py` (numpy and torch from Debian: python3-numpy,
python3-torch). The C test does not need Python: the fixtures are committed. Fixed seed.

Inputs, float32, N = 200 rows: decorr_in.npy (N, 3) = columns m (a mass, 50..250), s (a score in
(0, 1) on a 1/512 grid, so there are ties, correlated with m), w (weights, 0 for ~20% of the rows:
the "signal" rows a background-only weight leaves out).

DisCo (decorr_disco_ref.npy, (3, 1 + N, 2)): case k = (unweighted power 1, weighted power 1, weighted
power 2); row 0 the value, rows 1.. d value / d s_i; each float64 stored as a float32 pair (hi, lo).
Computed with torch autograd in float64 on the N x N matrices exactly as the reference code
(gkasieczka/DisCo, Disco.py) writes them: weights normalised to mean 1 over the rows kept (w > 0),
row means of |m_i - m_j| * w_j, double centring, mean(mean(A B w) w) / sqrt(...).

MoDe (decorr_mode_ref.npy, (6, 1 + N, 2)): value and the reference's backward (okitouni/MoDe,
modeloss/pytorch.py: the derivative of the s-integral taken exactly at s = s_i), written here in
numpy from the formulas, for: (order, bins, sbins, power, max_slope, flatness) =
  (0, 8, 32, 2, 0, 0), (1, 8, 32, 2, 0, 0), (2, 8, 32, 2, 0, 0), (1, 8, 32, 2, 0.5, 0),
  (0, 8, 32, 2, 0, 1) [flatness: bin widths 2/bins], (0, 10, 20, 2, 0, 0) [unweighted]
Rows with w = 0 are left out first (as the reference's background mask), then the last n mod bins.
"""
import numpy as np
import torch

from bench_disco_torch import disco as disco_ref   # the reference's N x N formula, one copy

torch.set_default_dtype(torch.float64)
N = 200
OUT = "tests/fixtures/"

def pair(v):
    v = np.asarray(v, dtype=np.float64).ravel()
    hi = v.astype(np.float32)
    lo = (v - hi.astype(np.float64)).astype(np.float32)
    return np.stack([hi, lo], axis=1)

def disco_torch(m, s, w, power):
    keep = w > 0
    mm = torch.tensor(m[keep].astype(np.float64))
    ss = torch.tensor(s[keep].astype(np.float64), requires_grad=True)
    ww = torch.tensor(w[keep].astype(np.float64))
    val = disco_ref(mm, ss, ww) ** power             # weights normalised to mean 1 inside, as the reference's callers
    val.backward()
    g = np.zeros(len(m))
    g[keep] = ss.grad.numpy()
    return float(val), g

def heav(x):
    return np.where(x > 0, 1.0, np.where(x == 0, 0.5, 0.0))

def mode_ref(s, m, w, order, bins, sbins, power, max_slope, flat, eps=1e-4):
    rows = np.nonzero(w != 0)[0]
    k = len(rows) // bins
    rows = rows[: k * bins]
    ss, mm, ww = s[rows].astype(np.float64), m[rows].astype(np.float64), w[rows].astype(np.float64)
    mm = 2 * (mm - mm.min()) / (mm.max() - mm.min()) - 1
    o = np.argsort(mm, kind="stable")
    mb = mm[o].reshape(bins, k)
    pb = ss[o].reshape(bins, k)
    wbar = ww[o].reshape(bins, k).mean(axis=1)
    c = mb.mean(axis=1)
    d = np.full(bins, 2.0 / bins) if flat else mb.max(axis=1) - mb.min(axis=1)
    p2 = 0.5 * (3 * c ** 2 - 1)

    def fit(F):   # F (..., bins)
        a0 = 0.5 * (F * d).sum(-1, keepdims=True)
        a1 = 1.5 * (F * c * d).sum(-1, keepdims=True)
        a2 = 2.5 * (F * p2 * d).sum(-1, keepdims=True)
        f = a0 + 0 * F
        if order > 0:
            f = f + (max_slope * a0 * np.tanh(a1 / (max_slope * a0 + eps)) * c if max_slope > 0 else a1 * c)
        if order > 1:
            f = f + a2 * p2
        return f, a0, a1

    grid = (np.arange(sbins) + 0.5) / sbins
    F = heav(grid[:, None, None] - pb[None, :, :]).mean(axis=2)           # (sbins, bins)
    r = F - fit(F)[0]
    value = ((np.abs(r) ** power) * wbar).sum() / sbins / bins
    # the reference's backward: residuals at s = s_i of every row, the bins' CDFs there
    flat_s = pb.ravel()
    Fi = heav(flat_s[:, None, None] - pb[None, :, :]).mean(axis=2)        # (n, bins)
    fi, a0, a1 = fit(Fi)
    ri = Fi - fi
    rho = np.sign(ri) * np.abs(ri) ** (power - 1)
    own = np.repeat(np.arange(bins), k)
    summ = rho[np.arange(bins * k), own] - 0.5 * d[own] * rho.sum(1)
    if order > 0:
        r1 = (rho * c).sum(1)
        if max_slope > 0:
            A0 = max_slope * a0[:, 0]
            u = a1[:, 0] / (A0 + eps)
            se = 1 / np.cosh(u) ** 2
            summ += r1 * (-1.5 * d[own] * c[own] * se + (-u) * se * (-0.5 * d[own] * max_slope) + np.tanh(u) * (-0.5 * d[own] * max_slope))
        else:
            summ += r1 * (-1.5 * d[own] * c[own])
    if order > 1:
        summ += (rho * p2).sum(1) * (-2.5 * d[own] * p2[own])
    g_sorted = -power / (bins * k) * wbar[own] * summ
    g = np.zeros(len(s))
    g[rows[o]] = g_sorted
    return value, g

def main():
    rng = np.random.default_rng(20260)
    m = (50 + 200 * rng.random(N)).astype(np.float32)
    z = (m - 150) / 60 + rng.normal(0, 1, N)
    s = (np.round(512 / (1 + np.exp(-z))) / 512).clip(1 / 512, 511 / 512).astype(np.float32)
    w = (0.5 + rng.random(N)).astype(np.float32)
    w[rng.random(N) < 0.2] = 0
    np.save(OUT + "decorr_in.npy", np.stack([m, s, w], axis=1).astype(np.float32))
    ones = np.ones(N, dtype=np.float32)
    d = []
    for (ww, pw) in [(ones, 1), (w, 1), (w, 2)]:
        v, g = disco_torch(m, s, ww, pw)
        d.append(pair(np.concatenate([[v], g])))
    np.save(OUT + "decorr_disco_ref.npy", np.stack(d).astype(np.float32))
    cases = [(0, 8, 32, 2, 0, 0, w), (1, 8, 32, 2, 0, 0, w), (2, 8, 32, 2, 0, 0, w), (1, 8, 32, 2, 0.5, 0, w),
             (0, 8, 32, 2, 0, 1, w), (0, 10, 20, 2, 0, 0, ones)]
    r = []
    for (order, bins, sbins, power, ms, flat, ww) in cases:
        v, g = mode_ref(s, m, ww, order, bins, sbins, power, ms, flat)
        r.append(pair(np.concatenate([[v], g])))
    np.save(OUT + "decorr_mode_ref.npy", np.stack(r).astype(np.float32))
    print("disco values", [float(x[0, 0]) for x in d], "mode values", [float(x[0, 0]) for x in r])

if __name__ == "__main__":
    main()
