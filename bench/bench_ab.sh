#!/usr/bin/env bash
# bench/bench_ab.sh -- the working tree's training step against revision REV's, in one process, a step
# of each in turn (bench/bench_ab.c): `make bench-ab OLD=REV [AB_ARGS="w1 1 40 20"]`. Pin it for 1 thread
# (taskset -c 0 bench/bench_ab.sh REV w1 1 40 20). Uses bench/bench_wl.h of the working tree for both,
# so REV must have the public API that file uses.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
[ $# -ge 1 ] || { echo "usage: $0 REV [w1|w2|w3 THREADS ROUNDS STEPS [BATCH]]" >&2; exit 2; }
rev=$1; shift
args=("$@"); [ ${#args[@]} -gt 0 ] || args=(w1 1 40 20)
d=build/bench/ab; mkdir -p "$d/old" || exit 1
for f in advnn.h advnn_simd.h; do git show "$rev:$f" > "$d/old/$f" || exit 1; done
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
CF=(-O2 -std=c11 -Wall -Wextra -Wpedantic $ARCH)
gcc "${CF[@]}" -w -DAB_SIDE=old -I"$d/old" -I. -c bench/bench_ab.c -o "$d/old.o" || exit 1   # (its warnings: not the change's)
gcc "${CF[@]}" -DAB_SIDE=new -I. -c bench/bench_ab.c -o "$d/new.o" || exit 1
gcc "${CF[@]}" bench/bench_ab.c "$d/old.o" "$d/new.o" -o "$d/bench_ab" -lsleef -lm -pthread || exit 1
echo "bench_ab: $(git rev-parse --short "$rev") against the working tree, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$d/bench_ab" "${args[@]}"
