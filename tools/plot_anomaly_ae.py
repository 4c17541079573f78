#!/usr/bin/python3
"""Plots of examples/anomaly_ae.c: /usr/bin/python3 tools/plot_anomaly_ae.py OUTDIR

Reads OUTDIR/{summary,losses,roc,mass_hist,mse_vs_mass}.csv and the image .npy files, and writes:
  mass_sculpting.png  QCD mass of jets passing / failing the MSE cut at eps_B = 0.1, plain vs adversarial AE
  roc.png             background rejection 1/eps_B vs top efficiency eps_S, both networks
  mse_vs_mass.png     <log MSE> (+- spread) vs jet mass for QCD (and top), both networks
  losses.png          per-epoch AE loss and adversary cross entropy (ln 10 marked)
  images.png          mean QCD / top image, one QCD and one top jet with both reconstructions
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

DPI = 80
LN10 = np.log(10.0)
NETS = (("plain", "plain AE", "tab:blue"), ("adv", "adversarial AE", "tab:red"))


def path(outdir, name):
    p = os.path.join(outdir, name)
    if not os.path.exists(p):
        sys.exit(f"plot_anomaly_ae: missing {p} (run build/examples/anomaly_ae --out {outdir} first)")
    return p


def read(outdir, name):
    d = np.genfromtxt(path(outdir, name), delimiter=",", names=True, dtype=None, encoding="utf-8")
    return np.atleast_1d(d)


def summary(outdir):
    s = read(outdir, "summary.csv")
    return {r["metric"]: (float(r["plain"]), float(r["adversarial"])) for r in s}


def save(fig, outdir, name):
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, name), dpi=DPI)
    plt.close(fig)


def mass_sculpting(outdir, summ):
    h = read(outdir, "mass_hist.csv")
    edges = np.append(h["m_lo"], h["m_hi"][-1])
    width = np.diff(edges)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, (key, name, _), j in zip(axes, NETS, (0, 1)):
        for col, colour, lab, kw in (("qcd_all", "0.6", "all QCD", {"histtype": "stepfilled", "alpha": 0.5}),
                                     (f"{key}_fail_10pct", "tab:blue", "failing", {"histtype": "step", "lw": 1.5}),
                                     (f"{key}_pass_10pct", "tab:red", r"passing ($\epsilon_B$ = 0.1)", {"histtype": "step", "lw": 2})):
            tot = h[col].sum()
            dens = h[col] / (tot * width) if tot > 0 else h[col]
            ax.hist(edges[:-1], bins=edges, weights=dens, color=colour, label=lab, **kw)
        ax.axvline(172.5, color="0.3", ls=":", lw=1)
        inv = summ["inv_jsd_at_effB_0.1"][j]
        floor = summ["inv_jsd_floor_at_effB_0.1"][j]
        ax.set_title(f"{name}: 1/JSD = {inv:.1f} (random-split floor {floor:.0f})", fontsize=10)
        ax.set_xlabel("QCD jet mass [GeV]")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("normalised to unit area [1/GeV]")
    save(fig, outdir, "mass_sculpting.png")


def roc(outdir, summ):
    r = read(outdir, "roc.csv")
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for (key, name, colour), j, net in zip(NETS, (0, 1), ("plain", "adversarial")):
        sel = r[r["network"] == net]
        ok = sel["eps_b"] > 0
        ax.plot(sel["eps_s"][ok], 1.0 / sel["eps_b"][ok], color=colour, label=f"{name} (AUC {summ['auc'][j]:.3f})")
    x = np.linspace(0.01, 1, 100)
    ax.plot(x, 1.0 / x, color="0.6", ls="--", lw=1, label="random")
    ax.set_yscale("log")
    ax.set_xlabel(r"top efficiency $\epsilon_S$")
    ax.set_ylabel(r"QCD rejection $1/\epsilon_B$")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, outdir, "roc.png")


def mse_vs_mass(outdir, summ):
    p = read(outdir, "mse_vs_mass.csv")
    c = 0.5 * (p["m_lo"] + p["m_hi"])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (key, name, colour), j in zip(NETS, (0, 1)):
        q = p["n_qcd"] >= 20
        mu, sd = p[f"{key}_qcd_mean"][q], p[f"{key}_qcd_std"][q]
        ax.plot(c[q], mu, "o-", color=colour, label=f"{name}, QCD (Pearson {summ['pearson_logmse_mass_qcd'][j]:.2f})")
        ax.fill_between(c[q], mu - sd, mu + sd, color=colour, alpha=0.15)
        t = p["n_top"] >= 20
        ax.plot(c[t], p[f"{key}_top_mean"][t], "s--", color=colour, alpha=0.6, ms=4, label=f"{name}, top")
    ax.set_xlabel("jet mass [GeV]")
    ax.set_ylabel(r"$\langle \log \mathrm{MSE} \rangle$ ($\pm$ spread)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, outdir, "mse_vs_mass.png")


def losses(outdir):
    L = read(outdir, "losses.csv")
    e = L["epoch"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for stage, colour in (("plain", "tab:blue"), ("adversarial", "tab:red")):
        s = (L["stage"] == stage) & np.isfinite(L["ae_loss"])
        a1.plot(e[s], L["ae_loss"][s], "o-", color=colour, label=f"{stage} stage")
        s = (L["stage"] == stage) & np.isfinite(L["adv_ce"])
        for ph, mk in (("adv-pretrain", "s"), ("adversarial", "o")):
            t = s & (L["phase"] == ph)
            if t.any():
                a2.plot(e[t], L["adv_ce"][t], mk, color=colour, label=f"{ph} (train CE)")
    a1.set_yscale("log")
    a1.set_xlabel("epoch")
    a1.set_ylabel("AE loss (MSE of scaled images)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a2.axhline(LN10, color="0.3", ls="--", lw=1, label="ln 10 (blind)")
    a2.set_xlabel("epoch")
    a2.set_ylabel("adversary cross entropy")
    a2.set_xlim(a1.get_xlim())
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    save(fig, outdir, "losses.png")


def images(outdir):
    names = [("mean_qcd", "mean QCD"), ("mean_top", "mean top"),
             ("example_qcd", "QCD jet"), ("recon_qcd_plain", "plain AE recon."), ("recon_qcd_adv", "adv. AE recon."),
             ("example_top", "top jet"), ("recon_top_plain", "plain AE recon."), ("recon_top_adv", "adv. AE recon.")]
    imgs = [np.load(path(outdir, f"{n}.npy")) for n, _ in names]
    vmax = max(float(np.max(i)) for i in imgs)
    norm = LogNorm(vmin=vmax * 1e-4, vmax=vmax)
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.2))
    ax = axes.ravel()
    order = [0, 2, 3, 4, 1, 5, 6, 7]   # row 1: QCD (mean, one jet, its two reconstructions); row 2: top
    for a, k in zip(ax, order):
        im = a.imshow(np.clip(imgs[k], vmax * 1e-4, None), norm=norm, cmap="viridis", origin="lower",
                      extent=(-0.8, 0.8, -0.8, 0.8))
        a.set_title(names[k][1], fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
    fig.colorbar(im, ax=ax.tolist(), shrink=0.8, label="pixel pT fraction (negative clipped)")
    save_noadjust(fig, outdir, "images.png")


def save_noadjust(fig, outdir, name):
    fig.savefig(os.path.join(outdir, name), dpi=DPI)
    plt.close(fig)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: plot_anomaly_ae.py OUTDIR")
    outdir = sys.argv[1]
    summ = summary(outdir)
    mass_sculpting(outdir, summ)
    roc(outdir, summ)
    mse_vs_mass(outdir, summ)
    losses(outdir)
    images(outdir)
    print(f"plot_anomaly_ae: wrote mass_sculpting.png roc.png mse_vs_mass.png losses.png images.png to {outdir}")


if __name__ == "__main__":
    main()
