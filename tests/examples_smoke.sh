#!/usr/bin/env bash
# tests/examples_smoke.sh -- the three physics examples end to end on a reduced setting (seconds):
# generate small data sets with tools/gen_*.c, run each example with --quick on 2 threads, and check
# that it exits 0, prints its PASS/FAIL acceptance block and table, and writes its output files with
# finite numbers, and that each exports its tagger as ONNX which runs in ONNX Runtime (tests/onnx_run.js
# --smoke). Also checks the examples' argument errors. The acceptance numbers themselves come
# from `make demo` (full settings); quick mode is not expected to pass them.
# Called by tests/run_all.sh (configuration "examples"); prints "N passed, N failed" last.
# Usage: tests/examples_smoke.sh [BUILD_DIR]   (default build/test/examples)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT="${1:-build/test/examples}"
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
CFLAGS="-O2 -std=c11 -Wall -Wextra -Wpedantic -Werror $ARCH -I. -Iexamples -Itests"
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; }

rm -rf "$OUT"; mkdir -p "$OUT/bin" "$OUT/data"
for src in tools/gen_wtagger.c tools/gen_calratio.c tools/gen_jetimages.c \
           examples/wtagger.c examples/llp_tagger.c examples/anomaly_ae.c; do
  name=$(basename "$src" .c)
  if gcc $CFLAGS "$src" -o "$OUT/bin/$name" -lsleef -lm -pthread 2>"$OUT/$name.build.log"; then ok "build $name"
  else bad "build $name" "$(head -n 20 "$OUT/$name.build.log")"; fi
done

gen() {  # gen NAME ARGS...: run a generator into $OUT/data
  local name=$1; shift
  if "$OUT/bin/$name" --out "$OUT/data" "$@" >"$OUT/$name.log" 2>&1; then ok "$name"
  else bad "$name (exit $?)" "$(tail -n 15 "$OUT/$name.log")"; fi
}
gen gen_wtagger   --n 3000 --ntest 2000 --seed 5
gen gen_calratio  --n 600 --ntest 400 --seed 5
gen gen_jetimages --n 600 --ntest 300 --seed 5

run_example() {  # run_example NAME: --quick run, then checks of its output
  local name=$1 log="$OUT/$name.log" dir="$OUT/$name" st=0
  timeout 300 "$OUT/bin/$name" --quick --threads 2 --seed 3 --data "$OUT/data" --out "$dir" >"$log" 2>&1 || st=$?
  if [ "$st" -ne 0 ]; then bad "$name --quick (exit $st)" "$(tail -n 20 "$log")"; return; fi
  ok "$name --quick"
  if grep -Eq '^(PASS|FAIL) ' "$log"; then ok "$name prints its acceptance block"
  else bad "$name prints no PASS/FAIL lines" "$(tail -n 10 "$log")"; fi
  if grep -Eiq '(^|[^a-z])(nan|inf)([^a-z]|$)' "$log"; then bad "$name printed a NaN/Inf" "$(grep -Ei '(^|[^a-z])(nan|inf)([^a-z]|$)' "$log" | head -n 5)"
  else ok "$name prints finite numbers"; fi
  local files; files=$(find "$dir" -type f \( -name '*.csv' -o -name '*.npy' \) 2>/dev/null | wc -l)
  if [ "$files" -ge 2 ]; then ok "$name writes its results ($files files)"
  else bad "$name wrote $files result files to $dir"; fi
  # the tagger as ONNX (make demo's hand-off file), run in ONNX Runtime when tools/deps.sh test installed it
  if [ ! -s "$dir/$name.onnx" ]; then bad "$name wrote no $name.onnx"
  elif node tests/onnx_run.js --smoke "$dir/$name.onnx" >"$OUT/$name.onnx.log" 2>&1; then ok "$name.onnx runs in ONNX Runtime"
  else bad "$name.onnx in ONNX Runtime" "$(tail -n 5 "$OUT/$name.onnx.log")"; fi
  # argument errors: a clear message and exit 2, never a crash
  st=0; "$OUT/bin/$name" --epochs banana >"$OUT/$name.err" 2>&1 || st=$?
  if [ "$st" -eq 2 ] && [ -s "$OUT/$name.err" ]; then ok "$name rejects a bad --epochs"
  else bad "$name --epochs banana: exit $st" "$(head -n 5 "$OUT/$name.err")"; fi
  st=0; "$OUT/bin/$name" --quick --data "$OUT/nowhere" --out "$dir.x" >"$OUT/$name.err" 2>&1 || st=$?
  if [ "$st" -ne 0 ] && [ "$st" -lt 128 ] && grep -q "nowhere" "$OUT/$name.err"; then ok "$name names a missing data file"
  else bad "$name with missing data: exit $st" "$(head -n 5 "$OUT/$name.err")"; fi
}
for ex in wtagger llp_tagger anomaly_ae; do
  if [ -x "$OUT/bin/$ex" ]; then run_example "$ex"; else bad "$ex not built"; fi
done
# the W tagger's comparison of every decorrelation method (--method all): a table row and a PASS/FAIL
# line per method, and methods.csv with finite numbers
if [ -x "$OUT/bin/wtagger" ]; then
  log="$OUT/wtagger_methods.log"; st=0
  timeout 300 "$OUT/bin/wtagger" --quick --method all --threads 2 --seed 3 --data "$OUT/data" --out "$OUT/wtagger_methods" >"$log" 2>&1 || st=$?
  if [ "$st" -ne 0 ]; then bad "wtagger --quick --method all (exit $st)" "$(tail -n 20 "$log")"
  else
    ok "wtagger --quick --method all"
    missing=""
    for m in adversary disco mode ddt planing; do
      grep -Eq "^(PASS|FAIL) $m " "$log" || missing="$missing $m"
      grep -Eq "^$m " "$log" || missing="$missing $m(table)"
    done
    if [ -z "$missing" ]; then ok "wtagger --method all prints every method"; else bad "wtagger --method all lacks:$missing" "$(tail -n 20 "$log")"; fi
    csv="$OUT/wtagger_methods/methods.csv"
    if [ -f "$csv" ] && [ "$(wc -l < "$csv")" -ge 7 ] && ! grep -Eiq '(nan|inf)' "$csv"; then ok "wtagger writes methods.csv"
    else bad "wtagger methods.csv missing, short or not finite" "$(cat "$csv" 2>/dev/null | head -n 10)"; fi
  fi
  st=0; "$OUT/bin/wtagger" --method banana >"$OUT/wtagger.err" 2>&1 || st=$?
  if [ "$st" -eq 2 ] && grep -q banana "$OUT/wtagger.err"; then ok "wtagger rejects --method banana"
  else bad "wtagger --method banana: exit $st" "$(head -n 5 "$OUT/wtagger.err")"; fi
fi
# the LLP tagger's DisCo run beside the adversary (--method all): three runs, their PASS/FAIL lines
if [ -x "$OUT/bin/llp_tagger" ]; then
  log="$OUT/llp_disco.log"; st=0
  timeout 300 "$OUT/bin/llp_tagger" --quick --method all --kappa 10 --threads 2 --seed 3 --data "$OUT/data" --out "$OUT/llp_disco" >"$log" 2>&1 || st=$?
  if [ "$st" -ne 0 ]; then bad "llp_tagger --quick --method all (exit $st)" "$(tail -n 20 "$log")"
  else
    ok "llp_tagger --quick --method all"
    if grep -Eq '^(PASS|FAIL) DisCo kappa=10 sum KS drops' "$log" && grep -Eq '^(PASS|FAIL) DisCo kappa=10 probe adversary' "$log" \
       && grep -Eq '^(PASS|FAIL) SF=10 sum KS drops' "$log"; then ok "llp_tagger --method all prints the DisCo and adversary lines"
    else bad "llp_tagger --method all lacks a PASS/FAIL line" "$(tail -n 12 "$log")"; fi
    if grep -Eiq '(^|[^a-z])(nan|inf)([^a-z]|$)' "$log"; then bad "llp_tagger --method all printed a NaN/Inf" "$(grep -Ei '(nan|inf)' "$log" | head -n 5)"
    else ok "llp_tagger --method all prints finite numbers"; fi
    sum="$OUT/llp_disco/summary.csv"
    if [ -f "$sum" ] && [ "$(wc -l < "$sum")" -eq 4 ] && [ "$(tail -n 1 "$sum" | awk -F, '{print $NF}')" = 10 ]; then ok "llp_tagger writes the DisCo run's summary row"
    else bad "llp_tagger summary.csv: not 3 runs with the DisCo run last" "$(cat "$sum" 2>/dev/null)"; fi
  fi
  st=0; "$OUT/bin/llp_tagger" --method banana >"$OUT/llp.err" 2>&1 || st=$?
  if [ "$st" -eq 2 ] && grep -q banana "$OUT/llp.err"; then ok "llp_tagger rejects --method banana"
  else bad "llp_tagger --method banana: exit $st" "$(head -n 5 "$OUT/llp.err")"; fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
