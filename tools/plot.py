#!/usr/bin/python3
"""tools/plot.py DIR [DIR ...] -- PNGs from the output folder of any of the three examples.

Recognises each folder by the files its example writes and runs the matching script
(tools/plot_wtagger.py, tools/plot_llp_tagger.py, tools/plot_anomaly_ae.py), which writes the
PNGs into that folder. Needs Debian's python3-numpy and python3-matplotlib (/usr/bin/python3).
`make demo` calls it on build/demo/{wtagger,llp_tagger,anomaly_ae}.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# a file only that example writes -> its plotting script
KINDS = [("profile.csv", "plot_wtagger.py"),
         ("score_hists.csv", "plot_llp_tagger.py"),
         ("mse_vs_mass.csv", "plot_anomaly_ae.py")]


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(argv) >= 2 else 2
    status = 0
    for d in argv[1:]:
        script = next((s for f, s in KINDS if os.path.isfile(os.path.join(d, f))), None)
        if script is None:
            print(f"plot.py: {d}: not the output folder of wtagger, llp_tagger or anomaly_ae "
                  f"(none of {', '.join(f for f, _ in KINDS)} there)", file=sys.stderr)
            status = 1
            continue
        r = subprocess.run([sys.executable, os.path.join(HERE, script), d])
        if r.returncode != 0:
            print(f"plot.py: {script} failed on {d} (exit {r.returncode})", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
