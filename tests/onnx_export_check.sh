#!/usr/bin/env bash
# tests/onnx_export_check.sh -- the external checks of the ONNX export (advnn_onnx_save), run once per
# `make test` by tests/run_all.sh (configuration "onnx"):
#   1. tests/test_onnx_export.c with ADVNN_ONNX_ORT set: every case exported, run in ONNX Runtime
#      (tests/onnx_run.js, onnxruntime-node, one intra-op thread) and compared with advnn's outputs;
#   2. tools/onnx_check.py (Debian's python3-onnx): onnx.checker.check_model(full_check=True) on every
#      file step 1 wrote.
# A missing node, onnxruntime-node or python3-onnx fails with a message naming it (tools/deps.sh test
# installs them). Prints "N passed, N failed" last (the sum of both steps).
# Usage: tests/onnx_export_check.sh [BUILD_DIR]   (default build/test/onnx)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT="${1:-build/test/onnx}"
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
rm -rf "$OUT"; mkdir -p "$OUT/files"
pass=0; fail=0
count() {  # count LOG: add the log's "N passed, N failed" line (none: one failure)
  local s; s=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1)
  if [ -z "$s" ]; then fail=$((fail + 1)); echo "FAIL $1 has no summary line"; tail -n 20 "$1"; return; fi
  pass=$((pass + ${s%% passed*})); s=${s#*passed, }; fail=$((fail + ${s%% failed*}))
}

if gcc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror $ARCH -I. -Itests tests/test_onnx_export.c \
     -o "$OUT/test_onnx_export" -lsleef -lm > "$OUT/build.log" 2>&1; then
  ADVNN_ONNX_ORT="$OUT/files" "$OUT/test_onnx_export" > "$OUT/ort.log" 2>&1 < /dev/null
  cat "$OUT/ort.log"
  count "$OUT/ort.log"
else
  fail=$((fail + 1)); echo "FAIL build tests/test_onnx_export.c"; head -n 20 "$OUT/build.log"
fi

mapfile -t files < <(find "$OUT/files" -name '*.onnx' | sort)
if [ "${#files[@]}" -eq 0 ]; then
  fail=$((fail + 1)); echo "FAIL no .onnx files were written"
elif [ ! -x /usr/bin/python3 ]; then
  fail=$((fail + 1)); echo "FAIL /usr/bin/python3 is missing (tools/deps.sh test installs python3-onnx)"
else
  /usr/bin/python3 tools/onnx_check.py "${files[@]}" > "$OUT/checker.log" 2>&1
  grep -v '^ok' "$OUT/checker.log" | head -n 40
  echo "onnx.checker: $(tail -n 1 "$OUT/checker.log") (${#files[@]} files)"
  count "$OUT/checker.log"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
