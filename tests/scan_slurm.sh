#!/usr/bin/env bash
# tests/scan_slurm.sh -- tools/scan.sh on a real batch system: a private one-node SLURM cluster on
# localhost (munged, slurmctld, slurmd; /work/shared/SCALEOUT.md), a 4-task wtagger lambda scan
# (--quick) submitted as the generated job array, merged; the merge must equal the same tasks run
# locally (tools/scan.sh run -j 2) and the example's own scan (--lambdas 0,1,10,30 in one process);
# a deleted task output must be reported as missing (with the rerun list) and rerunning it must
# complete the table; the HTCondor submit file is checked against condor_submit's documented syntax
# (HTCondor is not in Debian 12). Needs root and slurm-wlm + munge (tools/deps.sh test): without
# them it FAILS, saying what is missing. Daemons are stopped by their pids on exit (a trap).
# Called by tests/run_all.sh (configuration "scaleout"); prints "N passed, N failed" last.
# Usage: tests/scan_slurm.sh [WORK_DIR]   (default build/test/scaleout/scan)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd -P)
W="${1:-build/test/scaleout/scan}"
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1  [${SECONDS}s]"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

rm -rf "$W"; mkdir -p "$W/bin" "$W/data" || exit 2
W=$(cd "$W" && pwd -P)
ARCH=""
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null; then ARCH="-mavx2 -mfma"; fi
for src in tools/gen_wtagger.c examples/wtagger.c; do   # the two builds side by side
  # shellcheck disable=SC2086
  gcc -O2 -std=c11 $ARCH -I. -Iexamples "$src" -o "$W/bin/$(basename "$src" .c)" -lsleef -lm -pthread 2>"$W/$(basename "$src" .c).build.log" &
done
wait
for name in gen_wtagger wtagger; do
  if [ -x "$W/bin/$name" ]; then ok "build $name"; else bad "build $name" "$(head -n 20 "$W/$name.build.log")"; finish; fi
done
"$W/bin/gen_wtagger" --out "$W/data" --n 3000 --ntest 2000 --seed 5 > "$W/gen.log" 2>&1 || { bad "gen_wtagger" "$(tail -n 5 "$W/gen.log")"; finish; }

cat > "$W/scan.txt" <<EOF
# a lambda scan of the W tagger, tiny (--quick)
program $W/bin/wtagger
data $W/data
args --quick --threads 1 --seed 3
vary lambda --lambda 0 1 10 30
slurm --time=00:05:00
condor request_memory = 512MB
EOF

# ---- generate, and the HTCondor submit file against the documented syntax
if tools/scan.sh generate "$W/scan.txt" "$W/scan" > "$W/generate.log" 2>&1 && [ "$(awk 'END { print NR }' "$W/scan/task_ids.txt")" = 4 ]; then
  ok "generate: 4 tasks"
else bad "generate" "$(cat "$W/generate.log")"; finish; fi
S="$W/scan"
# condor_submit: `command = value` lines (names are letters, digits, _ and .), comments, and a last
# `queue [N] VAR from FILE`; the submit macro $(task) must be the queue variable; FILE has one item a line.
sub_err=$(awk '
  /^[ \t]*(#|$)/ { next }
  tolower($1) == "queue" { q++; if ($0 !~ /^queue[ \t]+([0-9]+[ \t]+)?[A-Za-z_][A-Za-z0-9_]*[ \t]+from[ \t]+[^ \t(]+[ \t]*$/) print "bad queue statement: " $0
                           var = $(NF - 2); file = $NF; next }
  q { print "a command after queue: " $0; next }
  /^[A-Za-z_][A-Za-z0-9_.+]*[ \t]*=/ { split($0, kv, "="); k = tolower(kv[1]); gsub(/[ \t]/, "", k); seen[k] = 1
        s = $0; while (match(s, /\$\([A-Za-z_][A-Za-z0-9_]*\)/)) { used[substr(s, RSTART + 2, RLENGTH - 3)] = 1; s = substr(s, RSTART + RLENGTH) }
        next }
  { print "not a submit command: " $0 }
  END {
    if (q != 1) print "expected exactly one queue statement, found " q
    split("universe executable arguments output error log request_cpus request_memory should_transfer_files", need, " ")
    for (i in need) if (!(need[i] in seen)) print "missing command " need[i]
    for (u in used) if (u != var) print "macro $(" u ") is not the queue variable " var
    print "FILE " file
  }' "$S/condor.sub")
qfile=$(printf '%s\n' "$sub_err" | sed -n 's/^FILE //p'); sub_err=$(printf '%s\n' "$sub_err" | grep -v '^FILE ')
exe=$(sed -n 's/^executable = //p' "$S/condor.sub")
if [ -z "$sub_err" ] && [ -x "$exe" ] && [ -f "$qfile" ] && [ "$(cat "$qfile" | tr '\n' ' ')" = "0 1 2 3 " ]; then
  ok "condor.sub: documented syntax, executable exists, queue task from a file of the 4 task ids"
else bad "condor.sub" "$sub_err" "executable '$exe' queue file '$qfile'" "$(cat "$S/condor.sub")"; fi
if grep -qx '#SBATCH --array=0-3' "$S/slurm.sh" && grep -qx '#SBATCH --time=00:05:00' "$S/slurm.sh"; then ok "slurm.sh: array 0-3 and the extra #SBATCH line"
else bad "slurm.sh" "$(cat "$S/slurm.sh")"; fi
# a bad description is an error naming the line
printf 'program /bin/true\nvary lambda --lambda 0 "1"\n' > "$W/bad.txt"
st=0; tools/scan.sh generate "$W/bad.txt" "$W/bad" > "$W/bad.log" 2>&1 || st=$?
if [ "$st" -eq 2 ] && grep -q 'line 2' "$W/bad.log"; then ok "a bad scan description: exit 2, names the line"
else bad "bad description: exit $st" "$(cat "$W/bad.log")"; fi

# a different scan into the same folder is refused (its old task outputs would be merged)
sed 's/--lambda 0 1 10 30/--lambda 0 1/' "$W/scan.txt" > "$W/scan2.txt"
st=0; tools/scan.sh generate "$W/scan2.txt" "$S" > "$W/regen.log" 2>&1 || st=$?
if [ "$st" -eq 2 ] && grep -q "already holds a different scan" "$W/regen.log" && [ "$(wc -l < "$S/task_ids.txt")" -eq 4 ]; then
  ok "another scan into the same folder: refused, the folder unchanged"
else bad "regenerate into a used folder: exit $st" "$(cat "$W/regen.log")"; fi

# ---- the same tasks locally (-j 2), and the example's own scan in one process
L="$W/local"
tools/scan.sh generate "$W/scan.txt" "$L" > /dev/null 2>&1
if tools/scan.sh run "$L" -j 2 > "$W/local.log" 2>&1 && tools/scan.sh merge "$L" >> "$W/local.log" 2>&1; then ok "run -j 2 + merge locally"
else bad "local run/merge" "$(tail -n 20 "$W/local.log")"; fi
# the comparison PNG when python3-matplotlib is there (optional), else the merge says why there is none
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  if [ "$(head -c 4 "$L/scan.png" 2>/dev/null | od -An -c | tr -d ' ')" = "211PNG" ]; then ok "merge wrote the comparison PNG"
  else bad "no PNG from the merge although matplotlib is installed" "$(tail -n 5 "$W/local.log")"; fi
elif grep -q "no comparison PNG: python3-matplotlib is missing" "$W/local.log"; then ok "merge says the PNG needs python3-matplotlib"
else bad "merge: neither a PNG nor a note why not" "$(tail -n 5 "$W/local.log")"; fi
"$W/bin/wtagger" --quick --threads 1 --seed 3 --lambdas 0,1,10,30 --data "$W/data" --out "$W/own" > "$W/own.log" 2>&1
if [ -s "$L/merged.csv" ] && diff <(cut -d, -f4- "$L/merged.csv") "$W/own/summary.csv" > "$W/own.diff"; then
  ok "the merged table equals the example's own --lambdas 0,1,10,30 scan"
else bad "merged table vs the example's own scan" "$(head -n 20 "$W/own.diff")"; fi

# ---- SLURM: a private one-node cluster
need=""
[ "$(id -u)" -eq 0 ] || need="$need root"
for p in munged slurmctld slurmd sbatch squeue sinfo; do command -v "$p" > /dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then bad "SLURM test needs:$need (tools/deps.sh test installs slurm-wlm and munge; run as root)"; finish; fi
C="$W/cluster"; mkdir -p "$C/state" "$C/spool" || exit 2
# munged runs as user munge, which cannot reach a repo cloned under a 0700 folder (mktemp -d): its
# files live in a folder of their own under /tmp, removed at the end.
M=$(mktemp -d /tmp/advnn-munge.XXXXXX) || exit 2
chmod 755 "$M"
pids=()
cleanup() {
  local f p
  for f in "$C/slurmd.pid" "$C/slurmctld.pid" "$M/munged.pid"; do
    [ -s "$f" ] || continue
    p=$(cat "$f")
    kill "$p" 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$M"
  return 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM
chown munge:munge "$M"; chmod 755 "$M"   # munged: the socket folder must be o+x
dd if=/dev/urandom of="$M/munge.key" bs=1024 count=1 status=none
chown munge:munge "$M/munge.key"; chmod 400 "$M/munge.key"
SOCK="$M/munge.sock"
if su -s /bin/sh munge -c "/usr/sbin/munged --socket=$SOCK --key-file=$M/munge.key --pid-file=$M/munged.pid --log-file=$M/munged.log --seed-file=$M/munged.seed" > "$W/munged.log" 2>&1 &&
   munge -S "$SOCK" -n | unmunge -S "$SOCK" > "$W/unmunge.log" 2>&1 && grep -q Success "$W/unmunge.log"; then ok "munged on its own socket"
else bad "munged" "$(cat "$W/munged.log" "$M/munged.log" "$W/unmunge.log" 2>/dev/null | tail -n 10)"; finish; fi

host=$(hostname -s)
port=$((20000 + $$ % 20000))
memmb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 / 2 }' /proc/meminfo)
export SLURM_CONF="$C/slurm.conf"
cat > "$SLURM_CONF" <<EOF
ClusterName=advnntest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/slurmctld.log
SlurmdLogFile=$C/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) RealMemory=$memmb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF" > "$W/slurmctld.out" 2>&1 && slurmd -f "$SLURM_CONF" > "$W/slurmd.out" 2>&1
up=""
for _ in $(seq 1 60); do
  state=$(sinfo -h -o '%T' 2>/dev/null | head -n 1)
  case "$state" in idle*|mixed*|allocated*) up=1; break ;; esac
  sleep 0.25
done
if [ -n "$up" ]; then ok "slurmctld + slurmd up, node $host $state"
else bad "the cluster did not come up (sinfo: '${state:-}')" "$(tail -n 8 "$C/slurmctld.log" "$C/slurmd.log" 2>/dev/null)"; finish; fi

job=$(sbatch --parsable "$S/slurm.sh" 2>"$W/sbatch.err")
if [ -n "$job" ]; then ok "sbatch: job $job"; else bad "sbatch" "$(cat "$W/sbatch.err")"; finish; fi
left=1
for _ in $(seq 1 240); do   # at most 60 s
  left=$(squeue -h -j "$job" 2>/dev/null | wc -l)
  [ "$left" -eq 0 ] && break
  sleep 0.25
done
if [ "$left" -eq 0 ]; then ok "the job array left squeue"; else bad "the job array still queued after 60 s" "$(squeue 2>&1)"; fi
if SCAN_PLOT=0 tools/scan.sh merge "$S" > "$W/merge.log" 2>&1; then ok "merge: 4 of 4 tasks done"
else bad "merge after SLURM" "$(cat "$W/merge.log")" "$(cat "$S"/logs/* 2>/dev/null | tail -n 10)"; fi
if grep -q "host $host" "$S/tasks/0/status" 2>/dev/null && ls "$S"/logs/slurm_"${job}"_3.out > /dev/null 2>&1; then ok "the tasks ran under SLURM (status files, slurm_${job}_3.out)"
else bad "no sign the tasks ran under SLURM" "$(ls "$S/logs" "$S/tasks/0" 2>&1)"; fi
if [ -s "$S/merged.csv" ] && cmp -s "$S/merged.csv" "$L/merged.csv"; then ok "SLURM merge equals the local run, byte for byte"
else bad "SLURM merge differs from the local run" "$(diff "$S/merged.csv" "$L/merged.csv" 2>&1 | head -n 10)"; fi

# ---- a deleted task output is reported, and the rerun list reruns it
rm -rf "$S/tasks/2"
st=0; SCAN_PLOT=0 tools/scan.sh merge "$S" > "$W/merge2.log" 2>&1 || st=$?
if [ "$st" -eq 1 ] && grep -q 'MISSING task 2' "$W/merge2.log" && [ "$(cat "$S/rerun.txt")" = 2 ] && grep -q -- '--array=2 ' "$W/merge2.log" &&
   [ "$(wc -l < "$S/merged.csv")" -eq 4 ]; then ok "a deleted task: merge exits 1, reports task 2 missing, rerun.txt = 2, 3 rows kept"
else bad "deleted task: exit $st" "$(cat "$W/merge2.log")"; fi
job2=$(sbatch --parsable --array="$(paste -sd, "$S/rerun.txt")" "$S/slurm.sh" 2>>"$W/sbatch.err")
for _ in $(seq 1 240); do [ "$(squeue -h -j "$job2" 2>/dev/null | wc -l)" -eq 0 ] && break; sleep 0.25; done
if [ -n "$job2" ] && SCAN_PLOT=0 tools/scan.sh merge "$S" > "$W/merge3.log" 2>&1 && cmp -s "$S/merged.csv" "$L/merged.csv"; then ok "sbatch --array=<rerun list> completes the table"
else bad "rerun of task 2 (job ${job2:-none})" "$(cat "$W/merge3.log")"; fi
# a failing task is reported as failed, with its log's last line
printf '#!/bin/sh\necho "boom: cannot read data" >&2\nexit 3\n' > "$W/bin/failing"; chmod +x "$W/bin/failing"
printf 'program %s\nvary seed --seed 1 2\n' "$W/bin/failing" > "$W/fail.txt"
tools/scan.sh generate "$W/fail.txt" "$W/failscan" > /dev/null 2>&1; tools/scan.sh run "$W/failscan" -j 2 > /dev/null 2>&1
st=0; SCAN_PLOT=0 tools/scan.sh merge "$W/failscan" > "$W/merge4.log" 2>&1 || st=$?
if [ "$st" -eq 1 ] && grep -q 'FAILED  task 0: exit 3: boom' "$W/merge4.log" && [ "$(paste -sd, "$W/failscan/rerun.txt")" = "0,1" ]; then ok "failed tasks: reported with exit status and log line"
else bad "failed tasks: exit $st" "$(cat "$W/merge4.log")"; fi
finish
