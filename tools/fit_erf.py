#!/usr/bin/python3
"""Derives the coefficients of advnn_verf_e_f64 (advnn_simd.h): erf(x) for |x| < 0.75 by its
Taylor series, and for 0.75 <= |x| < 6 as 1 - exp(-x^2) R(x) with R(x) = erfc(x) exp(x^2) a
polynomial of degree 17 in s = (2/(2+x) - TM) / TH (s in [-1, 1]), fitted by least squares in
relative error at 400 Chebyshev points, in 50-digit arithmetic, then written in the monomial basis.
Prints the two tables and the largest errors of the double-precision evaluation over 4001 points
(R relative, and erf absolute = |R error| exp(-x^2)).

Needs Debian's python3-mpmath (the fit needs references beyond double precision; numpy cannot
give them). Not run by the build or the tests: the tables are committed in the header.
Run: /usr/bin/python3 tools/fit_erf.py   (about a minute)"""
import mpmath as mp

mp.mp.dps = 50
LO, HI, DEG, NTAYLOR, NPTS = mp.mpf("0.75"), mp.mpf(6), 17, 16, 400
TLO, THI = 2 / (2 + HI), 2 / (2 + LO)
TM, TH = (TLO + THI) / 2, (THI - TLO) / 2


def R(x):
    return mp.erfc(x) * mp.exp(x * x)


def fit():
    ss = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / NPTS) for k in range(NPTS)]
    A, b = mp.matrix(NPTS, DEG + 1), mp.matrix(NPTS, 1)
    for i, s in enumerate(ss):
        y = R(2 / (s * TH + TM) - 2)
        for j in range(DEG + 1):
            A[i, j] = mp.chebyt(j, s) / y
        b[i] = 1
    c = mp.qr_solve(A, b)[0]
    mono = [mp.mpf(0)] * (DEG + 1)
    for j in range(DEG + 1):
        for k, t in enumerate(mp.taylor(lambda s: mp.chebyt(j, s), 0, DEG)):
            mono[k] += c[j] * t
    return [float(m) for m in mono]


def main():
    rc = fit()
    ta = [float(2 / mp.sqrt(mp.pi) * (-1) ** k / (mp.factorial(k) * (2 * k + 1))) for k in range(NTAYLOR)]
    tm, ith = float(TM), 1.0 / float(TH)
    worst_r = worst_erf = 0.0
    for i in range(4001):
        x = float(LO) + (float(HI) - float(LO)) * i / 4000
        s, p = (2.0 / (2.0 + x) - tm) * ith, 0.0
        for c in reversed(rc):
            p = p * s + c
        r = R(mp.mpf(x))
        worst_r = max(worst_r, float(abs((p - r) / r)))
        worst_erf = max(worst_erf, float(abs(p - r) * mp.exp(-mp.mpf(x) ** 2)))
    print("ADVNN__ERF_TM %r, ADVNN__ERF_ITH 1.0 / %r" % (tm, float(TH)))
    print("taylor (%d):" % NTAYLOR, ", ".join(repr(v) for v in ta))
    print("R (%d):" % (DEG + 1), ", ".join(repr(v) for v in rc))
    print("largest error of the double evaluation: R %.3g relative, erf %.3g absolute" % (worst_r, worst_erf))


if __name__ == "__main__":
    main()
