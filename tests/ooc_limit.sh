#!/usr/bin/env bash
# tests/ooc_limit.sh -- out-of-core training under a memory limit: tests/ooc_train.c writes a 410 MB
# data set (200000 x 512 float32 + labels); under `prlimit --as` of 96 MiB (a quarter of the file)
# loading it into memory must fail, while training from the files (advnn_dataset_add_npy_file,
# windows of 8192 rows) must finish, twice, with peak RSS under the limit and the same weights (hash)
# both times; a second seed must give other weights. The data is deleted at the end.
# Called by tests/run_all.sh (configuration "scaleout"); prints "N passed, N failed" last.
# Usage: tests/ooc_limit.sh [WORK_DIR]   (default build/test/scaleout/ooc_limit)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
W="${1:-build/test/scaleout/ooc_limit}"
LIMIT=$((96 * 1024 * 1024))
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; }
finish() { rm -f "$W"/big_x.npy "$W"/big_y.npy; echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$2"; }

rm -rf "$W"; mkdir -p "$W" || exit 2
command -v prlimit > /dev/null || { bad "prlimit (util-linux) is missing"; finish; }
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
# shellcheck disable=SC2086
if gcc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror $ARCH -I. tests/ooc_train.c -o "$W/ooc_train" -lsleef -lm -pthread 2> "$W/build.log"; then ok "build ooc_train"
else bad "build ooc_train" "$(head -n 20 "$W/build.log")"; finish; fi
if "$W/ooc_train" gen "$W/big" 200000 512 1 > "$W/gen.log" 2>&1; then ok "$(cat "$W/gen.log")"
else bad "gen" "$(cat "$W/gen.log")"; finish; fi
size=$(stat -c %s "$W/big_x.npy")
if [ "$size" -gt $((4 * LIMIT)) ]; then ok "the data ($size bytes) is over 4 times the limit ($LIMIT bytes)"
else bad "the data ($size bytes) is not 4 times the limit"; fi

st=0; prlimit --as=$LIMIT "$W/ooc_train" train "$W/big" --memory > "$W/mem.log" 2>&1 || st=$?
if [ "$st" -ne 0 ] && grep -q "out of memory" "$W/mem.log"; then ok "in memory under the limit: fails (the limit bites): $(head -n 1 "$W/mem.log")"
else bad "loading into memory under the limit did not fail (exit $st)" "$(cat "$W/mem.log")"; fi

for run in 1 2; do
  st=0; prlimit --as=$LIMIT "$W/ooc_train" train "$W/big" --epochs 2 --seed 4 > "$W/run$run.log" 2>&1 || st=$?
  rss=$(field maxrss_kb "$W/run$run.log")
  if [ "$st" -eq 0 ] && [ -n "$rss" ] && [ "$rss" -lt $((LIMIT / 1024)) ]; then ok "from files under the limit, run $run: peak RSS ${rss} KiB < $((LIMIT / 1024)) KiB ($(cat "$W/run$run.log"))"
  else bad "from files under the limit, run $run: exit $st, peak RSS '${rss}' KiB" "$(cat "$W/run$run.log")"; fi
done
h1=$(field weights_hash "$W/run1.log"); h2=$(field weights_hash "$W/run2.log")
if [ -n "$h1" ] && [ "$h1" = "$h2" ]; then ok "same seed twice: same weights ($h1)"; else bad "same seed, weights '$h1' vs '$h2'"; fi
loss=$(field best_val_loss "$W/run1.log")
if awk -v l="${loss:-9}" 'BEGIN { exit !(l < 0.45) }'; then ok "it learns: validation loss $loss (0.693 = chance)"; else bad "validation loss '$loss' not below 0.45"; fi
prlimit --as=$LIMIT "$W/ooc_train" train "$W/big" --epochs 2 --seed 5 > "$W/run3.log" 2>&1
h3=$(field weights_hash "$W/run3.log")
if [ -n "$h3" ] && [ "$h3" != "$h1" ]; then ok "another seed: other weights"; else bad "seed 5 gave '$h3' (seed 4: '$h1')" "$(cat "$W/run3.log")"; fi
finish
