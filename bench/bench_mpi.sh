#!/usr/bin/env bash
# bench/bench_mpi.sh -- MPI data-parallel training throughput (`make bench-mpi`): builds bench/bench_mpi.c
# with mpicc -DADVNN_MPI and runs it as 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread,
# alternating, REPEATS rounds (default 3), then prints the JSON lines and a median table.
# Usage: bench/bench_mpi.sh [--workload w2] [--repeats N] [--seconds S]   (needs openmpi-bin, libopenmpi-dev)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
wl=w2; reps=3; secs=4
while [ $# -gt 0 ]; do
  case "$1" in
    --workload) wl=$2; shift 2 ;;
    --repeats) reps=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    *) echo "usage: $0 [--workload w1|w2|w3] [--repeats N] [--seconds S]" >&2; exit 2 ;;
  esac
done
for t in mpicc mpirun; do command -v $t > /dev/null || { echo "bench_mpi: $t is missing (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }; done
mkdir -p build/bench
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
# shellcheck disable=SC2086
mpicc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror $ARCH -I. bench/bench_mpi.c -o build/bench/bench_mpi -lsleef -lm -pthread || exit 1
MPIRUN=(mpirun --oversubscribe --bind-to none)   # OpenMPI binds each rank to one core by default: a rank's threads would share it
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
out=build/bench/bench_mpi_$wl.jsonl; : > "$out"
echo "bench_mpi: $wl, $reps rounds of (1x1, 1x2, 2x1), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$reps"); do
  for cfg in "1 1" "1 2" "2 1"; do
    set -- $cfg
    "${MPIRUN[@]}" -np "$1" build/bench/bench_mpi --workload "$wl" --threads "$2" --seconds "$secs" | tee -a "$out" || exit 1
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" <<'PY' 2>/dev/null || echo "(python3 missing: no table; the JSON lines are in $out)"
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1])]
print("ranks x threads | step ms (median of rounds) | jets/s | mpi share | grad exchange us | MPI_Allreduce us | other cpus")
for R, T in ((1, 1), (1, 2), (2, 1)):
    v = [r for r in rows if r["ranks"] == R and r["threads"] == T]
    if not v: continue
    m = lambda k: st.median(r[k] for r in v)
    each = ", ".join("%.1f" % r["step_ms_median"] for r in v)
    print("%d x %d | %.1f (%s) | %.0f | %.3f | %.0f | %.0f | %.2f" % (R, T, m("step_ms_median"), each, m("jets_per_s"),
          m("mpi_share"), m("grad_exchange_us"), m("allreduce_us"), m("other_cpus")))
PY
