#!/usr/bin/env bash
# tests/mpi_check.sh -- MPI data-parallel training (advnn_trainer_set_mpi) under OpenMPI's mpirun:
# builds tests/mpi_train.c with mpicc -DADVNN_MPI, then
#  - for advnn_fit (BatchNorm, dropout, validation split, a one-chunk last batch), two bare train
#    steps, both adversarial schedules (joint, alternating with 2 adversary steps) with a
#    control-region second stream and skipped zero-weight rows, and a graph with a DisCo term (one
#    chunk per step: every rank runs the whole batch): the weights and evaluation loss written by
#    1 rank x 2 threads, 2 ranks x 1 thread, 3 ranks x 1 thread and 2 ranks x 2 threads equal byte
#    for byte those of one process without MPI on 1 thread (and every rank's weights equal rank 0's);
#  - the same for advnn_fit + advnn_evaluate on features read from a file in windows (ooc: with rows
#    carried between windows; oocx: without, where each rank reads exactly its chunks' share);
#  - failure cases under `timeout` (a hang fails): a bad label in rank 1's chunk, a rank whose
#    learning rate differs (weights diverge), a rank with other data sizes, a rank with other initial
#    weights: every rank returns the same error; a rank killed (SIGKILL) or exiting mid-training and
#    a file read failing on one rank: mpirun ends the job, non-zero, saying so.
# Runs as root with --allow-run-as-root --oversubscribe. mpicc or mpirun missing: fails saying so.
# Called by tests/run_all.sh (configuration "scaleout"); prints "N passed, N failed" last.
# Usage: tests/mpi_check.sh [WORK_DIR]   (default build/test/scaleout/mpi_check)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
W="${1:-build/test/scaleout/mpi_check}"
W=$(mkdir -p "$W" && cd "$W" && pwd) || exit 2
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

rm -rf "${W:?}"/*
for t in mpicc mpirun; do
  command -v $t > /dev/null || { bad "$t is missing (Debian: apt-get install openmpi-bin libopenmpi-dev; tools/deps.sh test)"; finish; }
done
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
# shellcheck disable=SC2086
if mpicc -O2 -std=c11 -Wall -Wextra -Wpedantic -Werror $ARCH -I. tests/mpi_train.c -o "$W/mpi_train" -lsleef -lm -pthread 2> "$W/build.log"; then
  ok "build mpi_train (mpicc -DADVNN_MPI)"
else bad "build mpi_train" "$(head -n 20 "$W/build.log")"; finish; fi

# run NAME NP THREADS CASE [nompi]: rank 0's weights in $W/NAME.bin; output in $W/NAME.log
run() {
  local name=$1 np=$2 th=$3 cas=$4 st=0
  timeout -k 5 60 "${MPIRUN[@]}" -np "$np" "$W/mpi_train" "$cas" "$th" "$W/$name.bin" ${5:-} > "$W/$name.log" 2>&1 || st=$?
  if [ "$st" -eq 0 ] && grep -q '^RESULT ok' "$W/$name.log"; then return 0; fi
  bad "$cas, $np rank(s) x $th thread(s): exit $st" "$(tail -n 15 "$W/$name.log")"
  return 1
}

for cas in fit step joint alt disco ooc oocx; do
  run "${cas}_ref" 1 1 "$cas" nompi || continue
  for cfg in "1 2" "2 1" "3 1" "2 2"; do
    set -- $cfg
    run "${cas}_$1x$2" "$1" "$2" "$cas" || continue
    if cmp -s "$W/${cas}_ref.bin" "$W/${cas}_$1x$2.bin"; then
      ok "$cas: $1 rank(s) x $2 thread(s) = 1 process without MPI, byte for byte ($(grep "^$cas:" "$W/${cas}_$1x$2.log"))"
    else bad "$cas: $1 rank(s) x $2 thread(s): weights or loss differ from 1 process without MPI" "$(cmp "$W/${cas}_ref.bin" "$W/${cas}_$1x$2.bin")"; fi
  done
  # the issue's stronger property, stated directly
  if [ -f "$W/${cas}_2x1.bin" ] && [ -f "$W/${cas}_1x2.bin" ] && cmp -s "$W/${cas}_2x1.bin" "$W/${cas}_1x2.bin"; then
    ok "$cas: 2 ranks x 1 thread = 1 rank x 2 threads, byte for byte"
  else bad "$cas: 2 ranks x 1 thread and 1 rank x 2 threads differ (or a run failed)"; fi
done

# oocx (features from a .npy file of 4 KiB rows, in windows; every batch 4 chunks of 32 rows and no
# partial batch anywhere): each rank reads exactly its chunks' share of what one process reads
readb() { sed -n "s/^oocx rank $2 read \([0-9]*\) bytes$/\1/p" "$W/$1.log" | head -n 1; }
ref=$(readb oocx_ref 0)
if [ -n "$ref" ] && [ "$ref" -gt 0 ]; then
  for cfg in "2 1" "3 1" "2 2"; do
    set -- $cfg
    line=""; okr=1
    for ((r = 0; r < $1; r++)); do
      b=$(readb "oocx_$1x$2" $r); [ -n "$b" ] || { okr=0; break; }
      share=$(( (4 * (r + 1) / $1) - (4 * r / $1) ))   # its chunks of the 4: [4r/R, 4(r+1)/R)
      line="$line rank $r $b ($share/4)"
      [ $((4 * b)) -eq $((share * ref)) ] || okr=0
    done
    if [ "$okr" -eq 1 ]; then ok "oocx: $1 rank(s) x $2 thread(s): each rank read its chunks' share of one process's $ref bytes:$line"
    else bad "oocx: $1 rank(s) x $2 thread(s): bytes read are not the chunks' shares of $ref:$line" "$(tail -n 5 "$W/oocx_$1x$2.log")"; fi
  done
else bad "oocx: no byte count from the run without MPI" "$(tail -n 5 "$W/oocx_ref.log")"; fi

# failure cases where every rank must return the same error: CASE PATTERN
expect_error() {
  local cas=$1 pat=$2 st=0 n0 n1
  timeout -k 5 60 "${MPIRUN[@]}" -np 2 "$W/mpi_train" "$cas" 1 "$W/$cas" > "$W/$cas.log" 2>&1 || st=$?
  n0=$(grep "^rank 0: " "$W/$cas.log" | head -n 1); n1=$(grep "^rank 1: " "$W/$cas.log" | head -n 1)
  if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then bad "$cas: timed out (a hang)" "$(tail -n 10 "$W/$cas.log")"; return; fi
  if [ -n "$n0" ] && [ "${n0#rank 0: }" = "${n1#rank 1: }" ] && printf '%s' "$n0" | grep -q -- "$pat"; then
    ok "$cas: both ranks return it: ${n0#rank 0: }"
  else bad "$cas: expected the same error matching '$pat' on both ranks (exit $st)" "$(tail -n 10 "$W/$cas.log")"; fi
}
expect_error badlabel "MPI rank 1: categorical cross-entropy: label 7 in row 200"
if grep -q "^rank 0: ok" "$W/badlabel.log" && grep -q "^rank 1: ok" "$W/badlabel.log" && grep -q '^RESULT ok' "$W/badlabel.log"; then
  ok "badlabel: the next step (label fixed) runs on both ranks, weights equal"
else bad "badlabel: the step after the error did not run alike on both ranks" "$(tail -n 10 "$W/badlabel.log")"; fi
expect_error diverge "MPI rank 1's weights differ from rank 0's after epoch 1"
expect_error rows "MPI rank 1's validation rows differ from rank 0's"
expect_error seed "MPI rank 1's initial weights"

# a rank that dies or fails alone: mpirun must end the job (not hang), non-zero, and say why: CASE PATTERN
expect_abort() {
  local cas=$1 pat=$2 st=0 t0 t1
  t0=$(date +%s)
  timeout -k 5 60 "${MPIRUN[@]}" -np 2 "$W/mpi_train" "$cas" 1 "$W/$cas" > "$W/$cas.log" 2>&1 || st=$?
  t1=$(date +%s)
  if [ "$st" -eq 124 ] || [ "$st" -eq 137 ] && [ $((t1 - t0)) -ge 60 ]; then bad "$cas: mpirun did not end within 60 s (a hang)" "$(tail -n 10 "$W/$cas.log")"; return; fi
  if [ "$st" -ne 0 ] && grep -q -- "$pat" "$W/$cas.log"; then ok "$cas: mpirun ended in $((t1 - t0)) s with exit $st: $(grep -m 1 -- "$pat" "$W/$cas.log" | sed 's/^ *//')"
  else bad "$cas: expected a non-zero exit and '$pat' (exit $st)" "$(tail -n 15 "$W/$cas.log")"; fi
}
expect_abort kill "process rank 1 .* exited on signal 9"
expect_abort exit "Exit code: *5"
expect_abort io "MPI rank 1: the other ranks cannot see this error: calling MPI_Abort"
finish
