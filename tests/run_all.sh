#!/usr/bin/env bash
# tests/run_all.sh -- build and run every tests/test_*.c in every configuration; called by `make test`.
#
# Each tests/test_*.c is a standalone program (it #includes "harness.h" and defines
# ADVNN_IMPLEMENTATION / ADVNN_SIMD_IMPLEMENTATION itself) whose last output line is
# "N passed, N failed". It is compiled from the repo root with -I. -Itests and linked with
# -lsleef -lm. A line "advnn-build: FLAGS" inside a comment of the test file adds FLAGS to its
# compile/link line in every configuration (e.g. /* advnn-build: -fopenmp */).
#
# Configurations:
#   native   gcc -O2 (+ -mavx2 -mfma when the CPU has both), -Werror
#   scalar   the same at -O1 with -DADVNN_FORCE_SCALAR (the generic-scalar and aarch64 builds keep -O2)
#   asan     gcc -O0 -g -fsanitize=address,undefined, halt on the first UB report, leak check (-O0: the
#            compile is 4x faster than at -O1 and these builds were over half of make test's time)
#   clang-asan  the same with clang-14 (its UBSan checks more, e.g. arithmetic on a NULL pointer)
#   tsan     clang-14 -O1 -g -fsanitize=thread, stopping at the first report (TSAN_OPTIONS
#            halt_on_error=1): the files that train or infer on several threads
#   clang    clang-14 -O2 native, -Werror
#   cxx      every test compiled as C++: g++ -x c++ -std=c++17 -O1, -Werror (-O1: the code is the same
#            as native's; the header configuration compiles the whole header as C++ at -O2)
#   aarch64  aarch64-linux-gnu-gcc -O2 (NEON path), run with qemu-aarch64 (no -L: the arm64 loader
#            and libraries are installed multiarch under /lib/aarch64-linux-gnu)
#   header   the whole header as one TU: #define ADVNN_IMPLEMENTATION + #include "advnn.h", compiled
#            (-c) with gcc, clang, g++ -x c++, gcc -DADVNN_STATIC, gcc -DADVNN_NO_STDIO, gcc
#            -DADVNN_NO_THREADS, gcc, clang and
#            g++ for generic x86-64 (no -mavx2), and advnn_simd.h alone with gcc and g++; each compile
#            is one test
#   generic  gcc -O1 -march=x86-64 (no -mavx2): the runtime ISA dispatch of advnn_simd.h, run with
#            ADVNN_SIMD=avx2 (the AVX2+FMA kernels on a CPU that has them, else scalar)
#   generic-scalar  the generic build of test_simd.c and test_dispatch.c run with ADVNN_SIMD=scalar
#   generic-clang   test_simd.c and test_dispatch.c built with clang-14 -O2 -march=x86-64 (clang's
#            target-attribute code path), default dispatch
#   examples tests/examples_smoke.sh: the data generators and the three physics examples end to end
#            on a reduced setting (--quick, 2 threads); counts its own checks
#   scaleout tests/scan_slurm.sh (tools/scan.sh on a private one-node SLURM cluster; needs root,
#            slurm-wlm, munge), tests/ooc_limit.sh (out-of-core training under a memory limit) and
#            tests/mpi_check.sh (MPI data-parallel training: tests/mpi_train.c built with mpicc
#            -DADVNN_MPI, run by `mpirun -np 1/2/3` (as root with --allow-run-as-root --oversubscribe):
#            the weights equal one process's byte for byte; errors, divergence and dead ranks end every
#            rank; needs openmpi-bin, libopenmpi-dev); each script counts its own checks
#   onnx     tests/onnx_export_check.sh: the ONNX export run in ONNX Runtime and checked by
#            onnx.checker (needs node, onnxruntime-node, python3-onnx); counts its own checks
#
# A build failure, a crash, a timeout or a non-zero exit without a summary line counts as one
# failed test for that (configuration, file), and its output is shown. The last line printed is
# "N passed, N failed" over everything; the exit status is non-zero when anything failed.
#
# Environment: ADVNN_TEST_CONFIGS="native scalar ..." (default: all), ADVNN_TEST_JOBS (default:
# number of cores), ADVNN_TEST_TIMEOUT seconds per test program (default 300; x3 under qemu),
# ADVNN_TEST_FILES="tests/test_a.c ..." (default: tests/test_*.c).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
OUT="$ROOT/build/test"
ALL_CONFIGS="native scalar asan clang-asan tsan clang cxx aarch64 generic generic-scalar generic-clang header examples scaleout onnx"
CONFIGS="${ADVNN_TEST_CONFIGS:-$ALL_CONFIGS}"
JOBS="${ADVNN_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}"
TIMEOUT="${ADVNN_TEST_TIMEOUT:-300}"

WARN="-Wall -Wextra -Wpedantic -Werror"
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then
  ARCH="-mavx2 -mfma"
fi
CLANG=$(command -v clang-14 || command -v clang || echo clang-14)
LIBS="-lsleef -lm"

ulimit -c 0 2>/dev/null   # no core files from crashing tests (qemu writes them in the cwd)
now() { date +%s.%N; }

# config_setup CFG: sets CC, CFLAGS, RUNNER, RUNENV (VAR=VALUE for the run) and ONLY (the test files
# of this configuration, by basename; empty: all) for a configuration of test programs
config_setup() {
  RUNNER=""; RUNENV=""; ONLY=""
  case "$1" in
    native)  CC=gcc;     CFLAGS="-O2 -std=c11 $WARN $ARCH" ;;
    scalar)  CC=gcc;     CFLAGS="-O1 -std=c11 $WARN $ARCH -DADVNN_FORCE_SCALAR" ;;
    # no -Werror here: gcc's sanitizer instrumentation makes some flow warnings noisy; the native
    # configuration is the warning gate.
    asan)    CC=gcc;     CFLAGS="-O0 -g -std=c11 -Wall -Wextra $ARCH -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" ;;
    clang)   CC=$CLANG;  CFLAGS="-O2 -std=c11 $WARN $ARCH" ;;
    # data races between the trainer's or an inference workspace's threads
    tsan)    CC=$CLANG;  CFLAGS="-O1 -g -std=c11 $WARN $ARCH -fsanitize=thread"; RUNENV="TSAN_OPTIONS=halt_on_error=1"
             ONLY="test_threads test_infer test_adv_trainer test_harden test_decorr" ;;
    # clang's UBSan reports what gcc's does not (pointer arithmetic on NULL, for one)
    clang-asan) CC=$CLANG; CFLAGS="-O0 -g -std=c11 $WARN $ARCH -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" ;;
    cxx)     CC="g++ -x c++"; CFLAGS="-O1 -std=c++17 -Wall -Wextra -Werror $ARCH" ;;
    aarch64) CC=aarch64-linux-gnu-gcc; CFLAGS="-O2 -std=c11 $WARN"; RUNNER=qemu-aarch64 ;;
    # generic x86-64 (no -mavx2 -mfma): the runtime-dispatch path, forced each way
    generic) CC=gcc;     CFLAGS="-O1 -std=c11 $WARN -march=x86-64"; RUNENV="ADVNN_SIMD=avx2" ;;
    generic-scalar) CC=gcc; CFLAGS="-O2 -std=c11 $WARN -march=x86-64"; RUNENV="ADVNN_SIMD=scalar"
             ONLY="test_simd test_dispatch" ;;
    generic-clang) CC=$CLANG; CFLAGS="-O2 -std=c11 $WARN -march=x86-64"; ONLY="test_simd test_dispatch" ;;
    *) echo "unknown configuration $1" >&2; return 1 ;;
  esac
}

describe() {
  case "$1" in
    header) echo "whole-header compile checks (advnn.h, advnn_simd.h)" ;;
    examples) echo "tests/examples_smoke.sh (generators + examples --quick)" ;;
    scaleout) echo "tests/{$(echo $SCALEOUT_TESTS | sed 's/ /,/g')}.sh (script tests: SLURM scan, out-of-core under a memory limit, MPI training)" ;;
    onnx) echo "tests/onnx_export_check.sh (exports vs ONNX Runtime, onnx.checker)" ;;
    *) config_setup "$1"
       echo "$CC $CFLAGS -I. -Itests FILE $LIBS${RUNNER:+ ; $RUNNER ./prog}${RUNENV:+ ; $RUNENV ./prog}${ONLY:+ [$ONLY]}" ;;
  esac
}

# write_result DIR NAME PASSED FAILED T0 TBUILT NOTE   (TBUILT: time when the build ended, or "")
write_result() {
  local t1 tb; t1=$(now)
  tb=$(awk -v a="$5" -v b="${6:-$t1}" 'BEGIN{printf "%.1f", b-a}')
  printf '%s %s %s %s %s\n' "$3" "$4" "$(awk -v a="$5" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')" "$tb" "$7" > "$1/$2.res"
}

# ---- one job: a test file in a configuration ----
run_test() {
  local cfg=$1 src=$2 name dir bin log t0 tb extra rc summary p f note to
  name=$(basename "$src" .c)
  dir="$OUT/$cfg"; mkdir -p "$dir"
  bin="$dir/$name"; log="$dir/$name.log"
  t0=$(now)
  config_setup "$cfg" || return 0
  extra=$(sed -n 's/.*advnn-build:[[:space:]]*\(.*\)$/\1/p' "$src" | head -n 1 | sed 's#\*/.*##')
  local cmd="$CC $CFLAGS -I. -Itests $src -o $bin $extra $LIBS"
  echo "\$ $cmd" > "$log"
  rm -f "$bin"
  # shellcheck disable=SC2086
  if ! $CC $CFLAGS -I. -Itests "$src" -o "$bin" $extra $LIBS >> "$log" 2>&1 || [ ! -x "$bin" ]; then
    write_result "$dir" "$name" 0 1 "$t0" "" "build failed"; return 0
  fi
  tb=$(now)
  to=$TIMEOUT; [ -n "$RUNNER" ] && to=$((TIMEOUT * 3))
  echo "\$ ${RUNENV:+$RUNENV }${RUNNER:+$RUNNER }$bin" >> "$log"
  (
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
    # shellcheck disable=SC2086
    env $RUNENV timeout -k 10 "$to" $RUNNER "$bin" < /dev/null
  ) >> "$log" 2>&1
  rc=$?
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  note=""
  if [ -z "$summary" ]; then
    p=0; f=1
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then note="timed out after ${to}s"
    elif [ $rc -gt 128 ]; then note="killed by signal $((rc - 128)), no summary line"
    elif [ $rc -ne 0 ]; then note="exit status $rc, no summary line"
    else note="no summary line"; fi
  else
    p=${summary%% passed*}; f=${summary#*passed, }; f=${f%% failed*}
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; note="exit status $rc after the summary"
    elif [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; note="ran no test"; fi
  fi
  write_result "$dir" "$name" "$p" "$f" "$t0" "$tb" "$note"
}

# ---- one job: a whole-header compile check ----
run_header() {
  local which=$1 dir="$OUT/header" tu log t0 cc flags hdr def f ok=1 defs
  mkdir -p "$dir"; t0=$(now)
  if [ "$which" = benches ]; then   # make bench builds bench/*.c, make test does not: that they still compile
    log="$dir/benches.log"; : > "$log"
    for f in bench/*.c; do
      [ "$f" = bench/bench_mpi.c ] && continue   # (mpicc: tests/mpi_check.sh)
      defs=("")
      [ "$f" = bench/bench_ab.c ] && defs=("" -DAB_SIDE=new)   # its driver, and one version's side
      for def in "${defs[@]}"; do
        echo "\$ gcc -std=c11 $WARN $ARCH $def -fsyntax-only -I. -Itests $f" >> "$log"
        # shellcheck disable=SC2086
        gcc -std=c11 $WARN $ARCH $def -fsyntax-only -I. -Itests "$f" >> "$log" 2>&1 || ok=0
      done
    done
    if [ $ok = 1 ]; then write_result "$dir" benches 1 0 "$t0" "" ""; else write_result "$dir" benches 0 1 "$t0" "" "compile failed"; fi
    return
  fi
  hdr=advnn.h; def=ADVNN_IMPLEMENTATION
  case "$which" in
    gcc)      cc=gcc;          flags="-std=c11 $WARN $ARCH" ;;
    clang)    cc=$CLANG;       flags="-std=c11 $WARN $ARCH" ;;
    gxx)      cc="g++ -x c++"; flags="-std=c++17 $WARN $ARCH" ;;
    static)   cc=gcc;          flags="-std=c11 $WARN $ARCH -DADVNN_STATIC" ;;
    nostdio)  cc=gcc;          flags="-std=c11 $WARN $ARCH -DADVNN_NO_STDIO" ;;
    nothreads) cc=gcc;         flags="-std=c11 $WARN $ARCH -DADVNN_NO_THREADS" ;;
    generic)  cc=gcc;          flags="-std=c11 $WARN -march=x86-64" ;;
    generic-clang) cc=$CLANG;  flags="-std=c11 $WARN -march=x86-64" ;;
    generic-gxx) cc="g++ -x c++"; flags="-std=c++17 $WARN -march=x86-64" ;;
    simd-gcc) cc=gcc;          flags="-std=c11 $WARN $ARCH"; hdr=advnn_simd.h; def=ADVNN_SIMD_IMPLEMENTATION ;;
    simd-gxx) cc="g++ -x c++"; flags="-std=c++17 $WARN $ARCH"; hdr=advnn_simd.h; def=ADVNN_SIMD_IMPLEMENTATION ;;
  esac
  tu="$dir/tu_$which.c"; log="$dir/$which.log"
  printf '#define %s\n#include "%s"\n' "$def" "$hdr" > "$tu"
  echo "\$ $cc $flags -O2 -I. -c $tu" > "$log"
  # shellcheck disable=SC2086
  if $cc $flags -O2 -I. -c "$tu" -o "$dir/tu_$which.o" >> "$log" 2>&1; then
    write_result "$dir" "$which" 1 0 "$t0" "" ""
  else
    write_result "$dir" "$which" 0 1 "$t0" "" "compile failed"
  fi
}

# ---- one job: a script test SCRIPT WORK_DIR with its own summary line (the examples' smoke test, the
# scale-out scripts, the ONNX export's external checks), its result filed as CFG/NAME ----
run_script() {
  local cfg=$1 name=$2 script=$3 dir="$OUT/$1" log t0 summary p=0 f=1 note=""
  mkdir -p "$dir"; t0=$(now); log="$dir/$name.log"
  echo "\$ $script $dir/$name.work" > "$log"
  timeout -k 10 $((TIMEOUT * 2)) "$script" "$dir/$name.work" >> "$log" 2>&1 < /dev/null
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$summary" ]; then p=${summary%% passed*}; f=${summary#*passed, }; f=${f%% failed*}; else note="no summary line"; fi
  write_result "$dir" "$name" "$p" "$f" "$t0" "" "$note"
}
SCALEOUT_TESTS=$(for s in tests/scan_slurm.sh tests/ooc_limit.sh tests/mpi_check.sh; do [ -f "$s" ] && basename "$s" .sh; done)

if [ "${1:-}" = "--one" ]; then
  case "$2" in
    header)   run_header "$3" ;;
    examples) run_script examples smoke tests/examples_smoke.sh ;;
    scaleout) run_script scaleout "$3" "tests/$3.sh" ;;
    onnx)     run_script onnx check tests/onnx_export_check.sh ;;
    *)        run_test "$2" "$3" ;;
  esac
  exit 0
fi

# ---- main: list the jobs, run them JOBS at a time, print grouped results ----
if [ -n "${ADVNN_TEST_FILES:-}" ]; then
  read -r -a FILES <<< "$ADVNN_TEST_FILES"
else
  FILES=(tests/test_*.c)
  [ -e "${FILES[0]}" ] || FILES=()
fi

header_checks=()
[ -f advnn.h ] && header_checks+=(gcc clang gxx static nostdio nothreads generic generic-clang generic-gxx)
[ -f advnn_simd.h ] && header_checks+=(simd-gcc simd-gxx)
compgen -G 'bench/*.c' > /dev/null && header_checks+=(benches)

rm -rf "$OUT"; mkdir -p "$OUT"
joblist="$OUT/jobs"; : > "$joblist"
# in_config CFG FILE: is FILE one of CFG's test files (config_setup's ONLY)?
in_config() {
  config_setup "$1" >/dev/null 2>&1 || return 1
  [ -z "$ONLY" ] && return 0
  case " $ONLY " in *" $(basename "$2" .c) "*) return 0 ;; esac
  return 1
}

# slowest configurations first so the two cores stay busy until the end
for cfg in aarch64 examples scaleout onnx asan clang-asan tsan native scalar clang cxx generic generic-scalar generic-clang header; do
  case " $CONFIGS " in *" $cfg "*) ;; *) continue ;; esac
  if [ "$cfg" = examples ]; then echo "examples smoke" >> "$joblist"; continue; fi
  if [ "$cfg" = scaleout ]; then for s in $SCALEOUT_TESTS; do echo "scaleout $s" >> "$joblist"; done; continue; fi
  if [ "$cfg" = onnx ]; then echo "onnx check" >> "$joblist"; continue; fi
  if [ "$cfg" = header ]; then
    for h in ${header_checks[@]+"${header_checks[@]}"}; do echo "header $h" >> "$joblist"; done
  else
    for f in ${FILES[@]+"${FILES[@]}"}; do in_config "$cfg" "$f" && echo "$cfg $f" >> "$joblist"; done
  fi
done

njobs=$(wc -l < "$joblist")
echo "advnn tests: ${#FILES[@]} test file(s) x configurations [$CONFIGS], $njobs jobs on $JOBS core(s)"
T0=$(now)
xargs -P "$JOBS" -L 1 "$0" --one < "$joblist"
T1=$(now)

total_p=0; total_f=0
for cfg in $CONFIGS; do
  echo
  echo "=== $cfg: $(describe "$cfg")"
  if [ "$cfg" = header ]; then
    names=(${header_checks[@]+"${header_checks[@]}"})
    [ -f advnn.h ] || echo "  (advnn.h not found: advnn.h checks skipped)"
  elif [ "$cfg" = examples ]; then names=(smoke)
  elif [ "$cfg" = scaleout ]; then read -r -a names <<< "$(echo $SCALEOUT_TESTS)"
  elif [ "$cfg" = onnx ]; then names=(check)
  else
    names=(); for f in ${FILES[@]+"${FILES[@]}"}; do in_config "$cfg" "$f" && names+=("$(basename "$f" .c)"); done
  fi
  cp=0; cf=0; ct=0
  for n in ${names[@]+"${names[@]}"}; do
    res="$OUT/$cfg/$n.res"; log="$OUT/$cfg/$n.log"
    if [ -f "$res" ]; then read -r p f t tb note < "$res"; else p=0; f=1; t=0; tb=0; note="job did not run"; fi
    if [ "$cfg" = header ] || [ "$cfg" = examples ] || [ "$cfg" = scaleout ] || [ "$cfg" = onnx ]; then tinfo=$(printf '%6ss' "$t")
    else tinfo=$(printf '%6ss (build %ss, run %ss)' "$t" "$tb" "$(awk -v a="$t" -v b="$tb" 'BEGIN{printf "%.1f", a-b}')"); fi
    printf '  %-24s %4d passed, %d failed  %s%s\n' "$n" "$p" "$f" "$tinfo" "${note:+  ($note)}"
    if [ "$f" -ne 0 ] && [ -f "$log" ]; then
      nl=$(wc -l < "$log")
      if [ "$nl" -gt 120 ]; then
        sed -n '1p' "$log" | sed 's/^/    | /'
        echo "    | ... ($((nl - 120)) lines cut; full log: ${log#"$ROOT"/})"
        tail -n 119 "$log" | sed 's/^/    | /'
      else
        sed 's/^/    | /' "$log"
      fi
    fi
    cp=$((cp + p)); cf=$((cf + f)); ct=$(awk -v a="$ct" -v b="$t" 'BEGIN{print a+b}')
  done
  printf '  -- %s: %d passed, %d failed, %.1fs of job time\n' "$cfg" "$cp" "$cf" "$ct"
  total_p=$((total_p + cp)); total_f=$((total_f + cf))
done
# results of other runs to count in the closing line (CI: the fuzz targets), one per line:
# "NAME PASSED FAILED SECONDS NOTE..."
if [ -n "${ADVNN_TEST_EXTRA:-}" ]; then
  echo
  echo "=== extra: results from $ADVNN_TEST_EXTRA"
  if [ -s "$ADVNN_TEST_EXTRA" ]; then
    while read -r n p f t note; do
      printf '  %-24s %4d passed, %d failed  %6ss%s\n' "$n" "$p" "$f" "$t" "${note:+  ($note)}"
      total_p=$((total_p + p)); total_f=$((total_f + f))
    done < "$ADVNN_TEST_EXTRA"
  else
    echo "  (missing or empty: counted as 1 failed)"; total_f=$((total_f + 1))
  fi
fi

echo
printf 'wall time %.1fs\n' "$(awk -v a="$T0" -v b="$T1" 'BEGIN{print b-a}')"
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
