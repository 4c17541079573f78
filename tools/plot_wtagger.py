#!/usr/bin/python3
"""Plots of examples/wtagger.c: /usr/bin/python3 tools/plot_wtagger.py OUTDIR

Reads OUTDIR/{summary,epochs,roc,mass_hists,profile}.csv and writes into OUTDIR:
  mass_sculpting.png  QCD mass before and after the cut at eps_S = 50%, NN vs ANN (lambda 10, or the
                      largest lambda run when 10 is absent)
  roc.png             background rejection vs signal efficiency per lambda
  score_vs_mass.png   <score> of QCD jets vs mass per lambda
  losses.png          per-epoch classifier and adversary losses
  methods.png         (when methods.csv exists: wtagger --method ...) R50 vs 1/JSD, log axes, one front
                      per decorrelation method (points joined in order of strength), the NN as a star
                      and the random-split floor of 1/JSD as a band
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 80


def read(outdir, name):
    path = os.path.join(outdir, name)
    if not os.path.exists(path):
        sys.exit(f"plot_wtagger: missing {path} (run build/examples/wtagger --out {outdir} first)")
    d = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    return np.atleast_1d(d)


def label(lam):
    return "NN ($\\lambda$=0)" if lam == 0 else f"ANN $\\lambda$={lam:g}"


def colours(lams):
    cmap = plt.get_cmap("viridis")
    return {lam: ("k" if lam == 0 else cmap(0.15 + 0.7 * i / max(1, len(lams) - 1))) for i, lam in enumerate(lams)}


def mass_sculpting(outdir, summ, hists):
    lams = list(summ["lambda"])
    shown = [lam for lam in (0.0,) if lam in lams]
    ann = [lam for lam in lams if lam > 0]
    if ann:
        shown.append(10.0 if 10.0 in ann else max(ann))
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4), sharey=True, squeeze=False)
    for ax, lam in zip(axes[0], shown):
        h = hists[hists["lambda"] == lam]
        s = summ[summ["lambda"] == lam][0]
        edges = np.append(h["m_lo"], h["m_hi"][-1])
        width = np.diff(edges)
        for key, col, lab, kw in (("all", "0.6", "all QCD", {"histtype": "stepfilled", "alpha": 0.5}),
                                  ("fail", "tab:blue", "failing", {"histtype": "step", "lw": 1.5}),
                                  ("pass", "tab:red", f"passing ($\\epsilon_B$={s['eps_b']:.3f})", {"histtype": "step", "lw": 2})):
            tot = h[key].sum()
            dens = h[key] / (tot * width) if tot > 0 else h[key]
            ax.hist(edges[:-1], bins=edges, weights=dens, color=col, label=lab, **kw)
        ax.axvline(80.4, color="0.3", ls=":", lw=1)
        ax.set_title(f"{label(lam)}: 1/JSD = {s['inv_jsd']:.1f} (floor {s['inv_jsd_floor']:.0f})", fontsize=10)
        ax.set_xlabel("jet mass [GeV]")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("normalised QCD jets / GeV")
    fig.suptitle("QCD mass before and after the cut at $\\epsilon_S$ = 50%", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "mass_sculpting.png"), dpi=DPI)
    plt.close(fig)


def roc(outdir, summ, r):
    lams = list(summ["lambda"])
    col = colours(lams)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for lam in lams:
        d = r[(r["lambda"] == lam) & (r["eff_bkg"] > 0) & (r["eff_sig"] > 0.1)]
        s = summ[summ["lambda"] == lam][0]
        ax.plot(d["eff_sig"], 1.0 / d["eff_bkg"], color=col[lam], lw=1.5,
                label=f"{label(lam)}: AUC {s['auc']:.3f}, R50 {s['r50']:.1f}")
    ax.axvline(0.5, color="0.5", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlim(0.1, 1)
    ax.set_xlabel("signal efficiency $\\epsilon_S$")
    ax.set_ylabel("background rejection 1/$\\epsilon_B$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "roc.png"), dpi=DPI)
    plt.close(fig)


def score_vs_mass(outdir, summ, prof):
    lams = list(summ["lambda"])
    col = colours(lams)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for lam in lams:
        p = prof[prof["lambda"] == lam]
        x = 0.5 * (p["m_lo"] + p["m_hi"])
        ax.errorbar(x, p["mean_score"], yerr=np.nan_to_num(p["err"]), color=col[lam], marker="o", ms=3, lw=1.2,
                    capsize=2, label=label(lam))
    ax.axvline(80.4, color="0.5", ls=":", lw=1)
    ax.set_xlabel("jet mass [GeV]")
    ax.set_ylabel("<score> of QCD jets")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "score_vs_mass.png"), dpi=DPI)
    plt.close(fig)


def losses(outdir, summ, ep):
    lams = list(summ["lambda"])
    col = colours(lams)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    pre = ep[ep["lambda"] < 0]
    if len(pre):
        a1.plot(pre["epoch"] + 1, pre["clf_loss"], color="0.5", lw=1.5, label="pre-training")
    for lam in lams:
        e = ep[ep["lambda"] == lam]
        ok = np.isfinite(e["clf_loss"])
        a1.plot(e["epoch"][ok] + 1, e["clf_loss"][ok], color=col[lam], lw=1.2, label=label(lam))
        ok = np.isfinite(e["adv_loss"])
        a2.plot(e["epoch"][ok] + 1, e["adv_loss"][ok], color=col[lam], lw=1.2, marker=".", ms=3, label=label(lam))
    s = summ[0]
    a2.axhline(s["h_m"], color="tab:red", ls="--", lw=1, label=f"H(m) = {s['h_m']:.3f}")
    a2.axhline(s["h_m_given_pt"], color="tab:orange", ls=":", lw=1, label=f"H(m|pT) = {s['h_m_given_pt']:.3f}")
    a1.set_title("classifier BCE (training batches)", fontsize=10)
    a2.set_title("adversary -log p(m | score, pT) on QCD (training)", fontsize=10)
    for a in (a1, a2):
        a.set_xlabel("epoch")
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "losses.png"), dpi=DPI)
    plt.close(fig)


METHOD_STYLE = {"nn": ("k", "*"), "adversary": ("tab:blue", "o"), "disco": ("tab:red", "s"), "mode": ("tab:green", "^"),
                "ddt": ("tab:purple", "D"), "planing": ("tab:orange", "v")}


def methods(outdir):
    path = os.path.join(outdir, "methods.csv")
    if not os.path.exists(path):
        return False
    d = np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8"))
    fig, ax = plt.subplots(figsize=(6, 4.6))
    knob = {"adversary": "$\\lambda$", "disco": "$\\kappa$", "mode": "$\\alpha$", "ddt": "$\\epsilon_B$",
            "planing": "$\\alpha$"}
    for name in METHOD_STYLE:
        m = d[d["method"] == name]
        if len(m) == 0:
            continue
        m = m[np.argsort(m["strength"])]
        col, mk = METHOD_STYLE[name]
        ok = np.isfinite(m["inv_jsd"]) & (m["r50"] > 0)
        ax.plot(m["inv_jsd"][ok], m["r50"][ok], color=col, marker=mk, ms=9 if name == "nn" else 6, lw=1.3, label=name)
        if name != "nn":
            for row in m[ok]:
                ax.annotate(f"{row['strength']:g}", (row["inv_jsd"], row["r50"]), fontsize=6, color=col,
                            xytext=(3, 3), textcoords="offset points")
    fl = d["inv_jsd_floor"][np.isfinite(d["inv_jsd_floor"])]
    if len(fl):
        ax.axvspan(fl.min(), fl.max(), color="0.85", zorder=0, label="1/JSD floor (random splits)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1/JSD of the QCD mass, pass vs fail at $\\epsilon_S$ = 50%")
    ax.set_ylabel("background rejection R50 = 1/$\\epsilon_B$")
    ax.set_title("decorrelation methods on the same data (labels: strength " + ", ".join(f"{k} {v}" for k, v in knob.items()) + ")",
                 fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "methods.png"), dpi=DPI)
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_wtagger.py OUTDIR")
    outdir = sys.argv[1]
    summ = read(outdir, "summary.csv")
    mass_sculpting(outdir, summ, read(outdir, "mass_hists.csv"))
    roc(outdir, summ, read(outdir, "roc.csv"))
    score_vs_mass(outdir, summ, read(outdir, "profile.csv"))
    losses(outdir, summ, read(outdir, "epochs.csv"))
    extra = " methods.png" if methods(outdir) else ""
    print(f"plots written to {outdir}: mass_sculpting.png roc.png score_vs_mass.png losses.png{extra}")


if __name__ == "__main__":
    main()
