#!/usr/bin/env python3
"""Plots of examples/llp_tagger.c: python3 tools/plot_llp_tagger.py OUTDIR

Reads OUTDIR/{epochs,summary,score_hists,roc}.csv and writes into OUTDIR:
  ks_per_epoch.png        KS data vs simulation of each score and their sum per epoch, both runs,
                          with the alpha = 0.05 threshold and the chosen epochs
  losses.png              main CE, adversary BCE (mean over the epoch's batches; ln 2 = blind) and
                          test AUC per epoch
  data_vs_sim_scores.png  control-region score distributions (as logits log(p/(1-p)), which spread
                          the saturated softmax outputs), data vs simulation, chosen epochs of the
                          SF = 0 (top) and SF > 0 (bottom) runs
  roc.png                 background rejection vs signal efficiency (signal vs QCD + BIB)
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 80
SCORES = ("QCD", "signal", "BIB")
COLORS = ("tab:blue", "tab:red", "tab:green")


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"plot_llp_tagger: {path} is empty")
    return rows


def run_key(r):
    """A run: (SF, kappa); kappa > 0 is the DisCo run (--method disco|all; older files lack the column)."""
    return (float(r["sf"]), float(r.get("kappa") or 0))


def by_sf(rows):
    """Groups rows by run, in file order (SF = 0 first)."""
    out = {}
    for r in rows:
        out.setdefault(run_key(r), []).append(r)
    return out


def col(rows, name):
    return np.array([float(r[name]) for r in rows])


def label(key):
    sf, kappa = key
    if kappa > 0:
        return f"DisCo kappa = {kappa:g}"
    return "SF = 0 (no adversary)" if sf == 0 else f"SF = {sf:g}"


def plot_ks(outdir, epochs, summary):
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), sharex=True)
    thr = float(summary[0]["ks_threshold"])
    for i, (sf, rows) in enumerate(epochs.items()):
        ep = col(rows, "epoch")
        chosen = next(int(s["chosen_epoch"]) for s in summary if run_key(s) == sf)
        for k, (ax, key) in enumerate(zip(axes, ("ks_qcd", "ks_sig", "ks_bib", "sum_ks"))):
            y = col(rows, key)
            ax.plot(ep, y, "o-", ms=3, color=COLORS[i % 3], label=label(sf))
            if chosen >= 1:
                ax.plot([chosen], [y[chosen - 1]], "*", ms=12, color=COLORS[i % 3], mec="k")
    for k, ax in enumerate(axes):
        t = thr if k < 3 else 3 * thr
        ax.axhline(t, color="gray", ls="--", lw=1, label="threshold (alpha 0.05)")
        ax.set_title(f"KS {SCORES[k]} score" if k < 3 else "sum of the 3 KS")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("KS distance, CR data vs simulation")
    axes[3].legend(fontsize=7)
    fig.suptitle("data/simulation disagreement of the tagger scores per epoch (star: chosen epoch)", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "ks_per_epoch.png"), dpi=DPI)
    plt.close(fig)


def plot_losses(outdir, epochs):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharex=True)
    for i, (sf, rows) in enumerate(epochs.items()):
        ep = col(rows, "epoch")
        c = COLORS[i % 3]
        axes[0].plot(ep, col(rows, "main_ce"), "o-", ms=3, color=c, label=label(sf))
        axes[1].plot(ep, col(rows, "adv_bce"), "o-", ms=3, color=c, label=label(sf))
        axes[2].plot(ep, col(rows, "auc"), "o-", ms=3, color=c, label=label(sf))
    axes[1].axhline(np.log(2), color="gray", ls=":", lw=1.5, label="ln 2 (blind)")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("weighted CE (3 classes)")
    axes[1].set_ylabel("adversary BCE (data vs simulation)")
    axes[2].set_ylabel("AUC signal vs QCD+BIB (test)")
    for ax, t in zip(axes, ("main loss", "adversary loss", "test AUC")):
        ax.set_title(t)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "losses.png"), dpi=DPI)
    plt.close(fig)


def plot_scores(outdir, hists, summary):
    runs = list(hists.keys())
    fig, axes = plt.subplots(len(runs), 3, figsize=(12, 3.0 * len(runs)), squeeze=False)
    for i, sf in enumerate(runs):
        s = next(s for s in summary if run_key(s) == sf)
        ks = (float(s["ks_qcd"]), float(s["ks_sig"]), float(s["ks_bib"]))
        for k, name in enumerate(SCORES):
            rows = [r for r in hists[sf] if r["score"] == name]
            lo, hi = col(rows, "logit_lo"), col(rows, "logit_hi")
            edges = np.append(lo, hi[-1])
            ax = axes[i][k]
            ax.stairs(col(rows, "sim"), edges, color="tab:blue", lw=1.5, label="simulation")
            ax.stairs(col(rows, "data"), edges, color="k", lw=1.2, ls="--", label="data")
            ax.set_yscale("log")
            ax.set_xlabel(f"log(p / (1 - p)) of the {name} score (clipped)")
            ax.set_title(f"{label(sf)}, epoch {s['chosen_epoch']}: KS = {ks[k]:.3f}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[i][0].set_ylabel("density (control region)")
        axes[i][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "data_vs_sim_scores.png"), dpi=DPI)
    plt.close(fig)


def plot_roc(outdir, roc, summary):
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for i, (sf, rows) in enumerate(roc.items()):
        es, eb = col(rows, "eff_sig"), col(rows, "eff_bkg")
        ok = eb > 0
        s = next(s for s in summary if run_key(s) == sf)
        ax.plot(es[ok], 1 / eb[ok], color=COLORS[i % 3],
                label=f"{label(sf)}: AUC {float(s['auc']):.4f}, R50 {'>' if int(s['r50_is_lower_limit']) else ''}{float(s['r50']):.0f}")
    ax.axvline(0.5, color="gray", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background (QCD + BIB) rejection 1/eps_B")
    ax.set_title("CalRatio tagger, main test split", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "roc.png"), dpi=DPI)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_llp_tagger.py OUTDIR")
    outdir = sys.argv[1]
    need = ("epochs.csv", "summary.csv", "score_hists.csv", "roc.csv")
    for n in need:
        if not os.path.exists(os.path.join(outdir, n)):
            sys.exit(f"plot_llp_tagger: {os.path.join(outdir, n)} is missing (run build/examples/llp_tagger first)")
    epochs = by_sf(read_csv(os.path.join(outdir, "epochs.csv")))
    summary = read_csv(os.path.join(outdir, "summary.csv"))
    hists = by_sf(read_csv(os.path.join(outdir, "score_hists.csv")))
    roc = by_sf(read_csv(os.path.join(outdir, "roc.csv")))
    plot_ks(outdir, epochs, summary)
    plot_losses(outdir, epochs)
    plot_scores(outdir, hists, summary)
    plot_roc(outdir, roc, summary)
    print("wrote " + ", ".join(os.path.join(outdir, n) for n in
                               ("ks_per_epoch.png", "losses.png", "data_vs_sim_scores.png", "roc.png")))


if __name__ == "__main__":
    main()
