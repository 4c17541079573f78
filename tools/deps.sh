#!/usr/bin/env bash
# tools/deps.sh [base|test|fuzz|bench|all] -- make sure the Debian packages advnn needs are installed.
#
#   base   build the library users' way: gcc, make, libc headers, SLEEF, xxHash
#   test   base + everything `make test` uses: g++, clang, the aarch64 cross compiler,
#          qemu-user and the arm64 SLEEF/xxHash/libgomp (multiarch, `dpkg --add-architecture arm64`),
#          slurm-wlm + munge (tests/scan_slurm.sh), openmpi-bin + libopenmpi-dev (tests/mpi_check.sh); for the ONNX export's checks python3-onnx, node +
#          npm (nodejs/npm packages when `node`/`npm` are missing) and onnxruntime-node from npm into
#          build/npm (not root-only; a failed npm install is reported and the ONNX Runtime tests then
#          fail saying so)
#   fuzz   base + clang-14 with its sanitizer/libFuzzer runtimes
#   bench  base + libopenblas-dev (OpenBLAS only as a comparison figure in bench/ and as the BLAS
#          behind PyTorch in make compare; never a library dependency)
#   plot   python3-numpy and python3-matplotlib for tools/plot*.py (the examples' PNGs; optional)
#   all    test + fuzz
#
# Nothing missing: exits 0 and prints nothing. Missing and root: apt-get update + install.
# Missing and not root: prints the exact commands to run and exits 1.
# ADVNN_DEPS_AS_USER=1 pretends not to be root (to test the non-root path).
# ADVNN_DEPS_EXTRA="pkg ..." adds packages to the check (to test the missing-package path).
set -euo pipefail

purpose="${1:-base}"

base_pkgs=(gcc make libc6-dev libsleef-dev libxxhash-dev)
# clang-14 is the compiler (the `clang` package only adds the unversioned symlink; the scripts call
# clang-14 directly). libc6-dev-arm64-cross is only a Recommends of gcc-aarch64-linux-gnu, so it is
# listed. libc6:arm64 comes in through libsleef3:arm64 and gives /lib/ld-linux-aarch64.so.1, which
# lets qemu-aarch64 run the cross-built tests without -L / QEMU_LD_PREFIX.
# libclang-rt-14-dev (the sanitizer runtimes of the clang-asan and tsan configurations) is only a
# Recommends of clang-14, which --no-install-recommends leaves out.
test_pkgs=(g++ clang-14 libclang-rt-14-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
           libsleef-dev:arm64 libxxhash-dev:arm64 libgomp1:arm64 python3-onnx
           slurm-wlm munge    # tests/scan_slurm.sh: a private one-node SLURM cluster
           openmpi-bin libopenmpi-dev)   # tests/mpi_check.sh: mpicc, mpirun (ADVNN_MPI)
# node from any source will do (a NodeSource nodejs ships its own npm and conflicts with Debian's npm)
node_pkgs=()
command -v node >/dev/null 2>&1 || node_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || node_pkgs+=(npm)
ORT_NODE_VERSION=1.30.0   # the onnxruntime-node the ONNX tests were checked with

# onnxruntime-node into build/npm (tests/onnx_run.js looks there). Its install script would download
# CUDA binaries; the CPU library is inside the package, so ONNXRUNTIME_NODE_INSTALL=skip.
npm_step() {
  local root dir
  case "$purpose" in test|all) ;; *) return 0 ;; esac
  root=$(cd "$(dirname "$0")/.." && pwd); dir="$root/build/npm"
  [[ -f "$dir/node_modules/onnxruntime-node/package.json" ]] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    echo "tools/deps.sh: npm is missing: onnxruntime-node not installed (the ONNX Runtime tests will fail)" >&2
    return 0
  fi
  echo "tools/deps.sh: npm install onnxruntime-node@$ORT_NODE_VERSION into build/npm"
  mkdir -p "$dir"
  if ! ONNXRUNTIME_NODE_INSTALL=skip ONNXRUNTIME_NODE_INSTALL_CUDA=skip \
       npm install --prefix "$dir" --no-audit --no-fund --no-save --loglevel=error "onnxruntime-node@$ORT_NODE_VERSION" >&2; then
    echo "tools/deps.sh: npm install onnxruntime-node failed (the ONNX Runtime tests will fail)" >&2
  fi
  return 0
}
fuzz_pkgs=(clang-14 libclang-rt-14-dev)
bench_pkgs=(libopenblas-dev)
plot_pkgs=(python3-numpy python3-matplotlib)

case "$purpose" in
  base)  want=("${base_pkgs[@]}") ;;
  test)  want=("${base_pkgs[@]}" "${test_pkgs[@]}" ${node_pkgs[@]+"${node_pkgs[@]}"}) ;;
  fuzz)  want=("${base_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  bench) want=("${base_pkgs[@]}" "${bench_pkgs[@]}") ;;
  plot)  want=("${plot_pkgs[@]}") ;;
  all)   want=("${base_pkgs[@]}" "${test_pkgs[@]}" ${node_pkgs[@]+"${node_pkgs[@]}"} "${fuzz_pkgs[@]}") ;;
  -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
  *) echo "usage: $0 [base|test|fuzz|bench|plot|all]" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
want+=(${ADVNN_DEPS_EXTRA:-})

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "tools/deps.sh: no dpkg-query: not a Debian-like system; install by hand the equivalents of:" >&2
  echo "  ${want[*]}" >&2
  exit 1
fi

missing=()
declare -A foreign=()
declare -A seen=()
for p in "${want[@]}"; do
  [[ -n "${seen[$p]:-}" ]] && continue
  seen[$p]=1
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  if [[ "$status" != ii* ]]; then
    missing+=("$p")
    [[ "$p" == *:* ]] && foreign[${p##*:}]=1
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then npm_step; exit 0; fi

# foreign architectures (arm64) that dpkg does not know yet
add_archs=()
native_arch=$(dpkg --print-architecture)
for a in "${!foreign[@]}"; do
  [[ "$a" == "$native_arch" || "$a" == all ]] && continue
  dpkg --print-foreign-architectures | grep -qx "$a" || add_archs+=("$a")
done

uid=$(id -u)
[[ -n "${ADVNN_DEPS_AS_USER:-}" ]] && uid=1000

if [[ "$uid" -ne 0 ]]; then
  echo "tools/deps.sh: missing Debian packages for '$purpose': ${missing[*]}" >&2
  echo "Run:" >&2
  for a in ${add_archs[@]+"${add_archs[@]}"}; do echo "  sudo dpkg --add-architecture $a" >&2; done
  echo "  sudo apt-get update" >&2
  echo "  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "tools/deps.sh: installing for '$purpose': ${missing[*]}"
for a in ${add_archs[@]+"${add_archs[@]}"}; do dpkg --add-architecture "$a"; done
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "tools/deps.sh: done"
npm_step
