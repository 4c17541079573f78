#!/usr/bin/env bash
# advnn vs PyTorch on the reference workloads W1, W2, W3 (issue 6's yardstick).
#
#   bench/compare.sh                 build bench_workloads, run advnn and torch_workloads.py for each
#                                    workload at 1 and 2 threads, print a table of ratios torch/advnn,
#                                    peak RSS, and whether each issue-6 bar holds
#   bench/compare.sh --advnn-only    only advnn's JSON lines on stdout (make bench-json)
#
# Options: --workload w1,w2,w3  --threads 1,2  --repeats R (fresh processes each; the table shows
# medians)  --quick (short timing loops on both sides; figures are rough)  --out DIR (JSON lines kept
# in DIR/advnn.jsonl and DIR/torch.jsonl, default build/bench/compare).
# The torch script is ${ADVNN_TORCH_SCRIPT:-../shared/peers/torch_workloads.py} (relative to the repo
# root), run with /usr/bin/python3 (Debian's python3-torch). Each (workload, threads) runs in its own
# process on both sides, so each peak RSS (ru_maxrss) is that workload's alone; torch's includes the
# interpreter and libtorch, advnn's the whole C process.
# The machine has 2 cores: other busy processes distort the figures; the table prints the largest
# other_cpus_* (cores used by other processes during the timed loops) of each row.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=/usr/bin/python3
TORCH_SCRIPT=${ADVNN_TORCH_SCRIPT:-../shared/peers/torch_workloads.py}
BIN=build/bench/bench_workloads
WORKLOADS=w1,w2,w3
THREADS=1,2
REPEATS=1
QUICK=0
ADVNN_ONLY=0
OUT=build/bench/compare

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --advnn-only) ADVNN_ONLY=1 ;;
    --quick) QUICK=1 ;;
    --workload) WORKLOADS=${2:?}; shift ;;
    --threads) THREADS=${2:?}; shift ;;
    --repeats) REPEATS=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    -h|--help) usage ;;
    *) echo "compare.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
[ "$WORKLOADS" = all ] && WORKLOADS=w1,w2,w3

# ---- build (make's output to stderr, so that --advnn-only prints JSON lines only). The bench rule
# does not list examples/workloads.h, so rebuild when that is newer than the binary.
if [ -f "$BIN" ] && [ examples/workloads.h -nt "$BIN" ]; then rm -f "$BIN"; fi
make --no-print-directory "$BIN" >&2

ADVNN_ARGS=(--threads "$THREADS")
TORCH_ARGS=()
if [ "$QUICK" = 1 ]; then
  ADVNN_ARGS+=(--quick)
  TORCH_ARGS+=(--warmup 3 --min-steps 10 --min-seconds 0.5)
fi

if [ "$ADVNN_ONLY" = 1 ]; then
  exec ./"$BIN" --workload "$WORKLOADS" --repeats "$REPEATS" "${ADVNN_ARGS[@]}"
fi

# ---- torch must be importable by Debian's python
if [ ! -f "$TORCH_SCRIPT" ]; then
  echo "compare.sh: the torch script $TORCH_SCRIPT does not exist (set ADVNN_TORCH_SCRIPT)" >&2
  exit 1
fi
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
  echo "compare.sh: PyTorch is not importable by $PY; it is a benchmark-only dependency. Install it with:" >&2
  echo "    apt-get install python3-torch" >&2
  exit 1
fi

# Debian's torch does its Linear layers through libblas.so.3. With only the reference BLAS behind
# that name torch runs 3-10x slower than the figures it is known for, which would flatter advnn.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*|*blis*|*mkl*) ;;
  *) echo "compare.sh: libblas.so.3 is '${blas:-missing}', not OpenBLAS: torch would be timed on the reference" >&2
     echo "    BLAS. Install OpenBLAS first: apt-get install libopenblas-dev (make compare does it as root)" >&2
     exit 1 ;;
esac

mkdir -p "$OUT"
: > "$OUT/advnn.jsonl"
: > "$OUT/torch.jsonl"

# torch: one wrapper process per (workload, threads), so that RUSAGE_CHILDREN's ru_maxrss is the
# peak RSS of that measurement's child alone; the wrapper adds framework and peak_rss_mb.
run_torch() {  # workload threads
  "$PY" - "$TORCH_SCRIPT" "$1" "$2" "${TORCH_ARGS[@]}" <<'EOF'
import json, resource, subprocess, sys
script, wl, th, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
p = subprocess.run([sys.executable, script, "--workload", wl, "--threads", th] + extra,
                   stdout=subprocess.PIPE, universal_newlines=True)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
for line in p.stdout.splitlines():
    line = line.strip()
    if line.startswith("{"):
        d = json.loads(line)
        d["framework"] = "torch"
        d["peak_rss_mb"] = round(rss, 1)
        print(json.dumps(d), flush=True)
sys.exit(p.returncode)
EOF
}

echo "compare.sh: workloads $WORKLOADS, threads $THREADS, repeats $REPEATS$([ "$QUICK" = 1 ] && echo ', quick'); JSON lines in $OUT/" >&2
IFS=, read -r -a WL_LIST <<< "$WORKLOADS"
IFS=, read -r -a TH_LIST <<< "$THREADS"
for ((r = 0; r < REPEATS; r++)); do
  for wl in "${WL_LIST[@]}"; do   # advnn then torch per workload, so both see similar machine load
    echo "  $wl: advnn ..." >&2
    ./"$BIN" --workload "$wl" "${ADVNN_ARGS[@]}" | tee -a "$OUT/advnn.jsonl" >&2
    for th in "${TH_LIST[@]}"; do
      echo "  $wl: torch, $th thread(s) ..." >&2
      run_torch "$wl" "$th" | tee -a "$OUT/torch.jsonl" >&2
    done
  done
done

# ---- the table (medians over repeats) and the issue-6 bars
"$PY" - "$OUT/advnn.jsonl" "$OUT/torch.jsonl" <<'EOF'
import json, sys
def load(path):
    rows = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            d = json.loads(line)
            rows.setdefault((d["workload"], int(d["threads"])), []).append(d)
    return rows
def med(rows, key):
    v = sorted(float(r[key]) for r in rows if r.get(key) is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
def mx(rows, keys):
    v = [float(r[k]) for r in rows for k in keys if r.get(k) is not None and float(r[k]) >= 0]
    return max(v) if v else None
def f(x, nd=3):
    if x is None:
        return "-"
    return "%.0f" % x if abs(x) >= 100 else "%.1f" % x if abs(x) >= 10 else "%.*g" % (nd, x)
A, T = load(sys.argv[1]), load(sys.argv[2])
BARS = (("step_ms_median", 3.0, "train"), ("infer_us_per_sample_b1", 10.0, "b1"), ("infer_us_per_sample_b512", 1.5, "b512"))
hdr = ("wl", "thr", "step ms adv", "torch", "ratio", "b1 us adv", "torch", "ratio", "b512 us adv", "torch", "ratio",
       "RSS MB adv", "torch", "other cpus", "train>=3x", "b1>=10x", "b512>=1.5x")
out = [hdr]
held = failed = 0
for key in sorted(set(A) | set(T)):
    a, t = A.get(key, []), T.get(key, [])
    row = [key[0], str(key[1])]
    verdict = []
    for field, bar, _ in BARS:
        va, vt = med(a, field), med(t, field)
        ratio = vt / va if va and vt else None
        row += [f(va), f(vt), ("%.2fx" % ratio) if ratio else "-"]
        if ratio is None:
            verdict.append("-")
        elif ratio >= bar:
            verdict.append("yes"); held += 1
        else:
            verdict.append("NO"); failed += 1
    row += [f(med(a, "peak_rss_mb")), f(med(t, "peak_rss_mb"))]
    other = mx(a + t, ("other_cpus_train", "other_cpus_b1", "other_cpus_b512"))
    row += [("%.2f" % other) if other is not None else "-"]
    row += verdict
    out.append(tuple(row))
w = [max(len(r[i]) for r in out) for i in range(len(hdr))]
for i, r in enumerate(out):
    print("  ".join(c.rjust(w[j]) if j > 1 else c.ljust(w[j]) for j, c in enumerate(r)))
    if i == 0:
        print("  ".join("-" * x for x in w))
print()
print("ratio = torch / advnn (higher is better for advnn); medians over %s; peak RSS = ru_maxrss of each "
      "measurement's own process." % ("repeats" if max(len(v) for v in list(A.values()) + list(T.values()) or [[0]]) > 1 else "one run"))
print("bars (issue 6): training step >= 3x, inference batch 1 >= 10x, batch 512 >= 1.5x: %d held, %d not." % (held, failed))
print("other cpus = the largest other_cpus_* of the row (cores busy with other processes during a timed loop): "
      "well above 0 means the row's figures are disturbed.")
EOF
