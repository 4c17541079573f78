#!/usr/bin/python3
"""tools/plot_scan.py MERGED.csv OUT.png -- the comparison plot of a scan (tools/scan.sh merge calls it).

One point per row of the merged table in the performance vs decorrelation plane of the example:
  wtagger     background rejection R50 vs 1/JSD of the QCD mass (the random-split floor dashed)
  llp_tagger  AUC vs the sum of the data/simulation KS distances (lower: better decorrelated)
Points are coloured by the first scan axis and labelled with every axis value; several seeds of
one setting show as a spread. Other summary formats: says so and writes nothing (exit 0).
Needs Debian's python3-matplotlib (/usr/bin/python3).
"""
import csv
import sys

PLANES = [  # (x column, y column, x label, y label, floor column or None)
    ("r50", "inv_jsd", "background rejection at eps_S = 50% (R50)", "1/JSD of the QCD mass (higher: less sculpting)", "inv_jsd_floor"),
    ("auc", "sum_ks", "AUC", "sum of KS distances data vs simulation (lower: better)", None),
]


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"plot_scan: {argv[1]} has no rows", file=sys.stderr)
        return 1
    cols = rows[0].keys()
    plane = next((p for p in PLANES if p[0] in cols and p[1] in cols), None)
    if plane is None:
        print(f"plot_scan: no comparison plot for these summary columns ({', '.join(cols)})")
        return 0
    xcol, ycol, xlab, ylab, floor = plane
    axes = [c for c in cols if c.startswith("scan_")]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({r[axes[0]] for r in rows}, key=lambda v: (len(v), v)) if axes else [""]
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=80)
    for i, k in enumerate(keys):
        pts = [r for r in rows if not axes or r[axes[0]] == k]
        ax.scatter([float(r[xcol]) for r in pts], [float(r[ycol]) for r in pts], color=cmap(0.1 + 0.8 * i / max(1, len(keys) - 1)),
                   label=f"{axes[0][5:]} = {k}" if axes else None, zorder=3)
        for r in pts:
            ax.annotate(" ".join(r[a] for a in axes[1:]) or r["task"], (float(r[xcol]), float(r[ycol])), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    if floor and floor in cols:
        ax.axhline(sum(float(r[floor]) for r in rows) / len(rows), ls="--", color="grey", label="random-split floor (mean)")
    ax.set_xlabel(xlab)
    ax.set_ylabel(ylab)
    ax.set_title(f"scan: {len(rows)} results")
    if axes or floor:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(argv[2])
    print(f"plot_scan: {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
