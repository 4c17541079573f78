#!/bin/sh
# tools/scan.sh -- a decorrelation scan (strengths x seeds x ...) as independent batch jobs.
#
#   tools/scan.sh generate SCAN OUT   expand the scan description SCAN into OUT/: tasks.tsv (one task a
#                                     line), run_task.sh ID (runs one task), slurm.sh (a SLURM job array),
#                                     condor.sub (an HTCondor submit file, `queue task from ...`); refuses
#                                     an OUT that holds a different scan
#   tools/scan.sh run OUT [-j N] [ID ...]   run the tasks (default all) here, N at a time (default 1)
#   tools/scan.sh merge OUT           merge the finished tasks' summary.csv into OUT/merged.csv, print it,
#                                     list missing and failed tasks (OUT/rerun.txt); exit 1 if any;
#                                     OUT/scan.png by tools/plot_scan.py when matplotlib is there
#                                     (SCAN_PLOT=0: no plot)
#
# Submit: `sbatch OUT/slurm.sh` or `condor_submit OUT/condor.sub` (the repository, the program, the data
# and OUT must be on a file system the batch nodes share: every path written is absolute).
#
# Scan description: one directive a line; '#' starts a comment; words are separated by blanks and may
# only use the characters A-Z a-z 0-9 _ . , : / = + @ % - (no quoting, so no word has a blank in it).
#   example NAME             the program: build/examples/NAME of this repository (required, or `program`)
#   program PATH             any program taking --out DIR (relative paths: from the current directory)
#   data DIR                 passed to every task as --data DIR
#   args WORD...             arguments of every task (repeatable)
#   vary AXIS OPTION V1 V2.. an axis: every task gets `OPTION Vi`; the tasks are all combinations of the
#                            axes, the first axis varying slowest (e.g. `vary lambda --lambda 0 1 10 30`)
#   case NAME WORD...        a named argument list (e.g. `case adv --method adversary`); each case is
#                            combined with every point of the axes; without `case` lines there is one
#   cpus N                   CPUs a task asks for (SLURM --cpus-per-task, HTCondor request_cpus; default 1)
#   slurm WORD...            an extra `#SBATCH WORD...` line (e.g. `slurm --time=02:00:00`)
#   condor WORD...           an extra submit-file line (e.g. `condor request_memory = 4GB`)
# A task is just an argument list, so new options of the examples need no change here.
#
# Task ID (0..N-1, the array index) writes into OUT/tasks/ID/: the program's outputs (--out), log.txt
# (its stdout and stderr) and, last, `status` ("exit CODE" ...). merge counts a task as done when its
# status says exit 0 and summary.csv has a header and at least one row; failed when the status is
# non-zero or the summary is missing/empty/differently shaped; missing when there is no status (never
# ran, still running, killed, or its folder deleted). The merged table has the columns task, case, one
# per axis, then the summary's own columns, one line per summary row.
set -u

die() { echo "scan.sh: $*" >&2; exit 2; }
usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
absdir() { (cd "$1" 2>/dev/null && pwd -P); }
ROOT=$(absdir "$(dirname "$0")/..") || die "cannot find the repository"

generate() {
  [ $# -eq 2 ] || usage
  scan=$1; out=$2
  [ -f "$scan" ] && [ -r "$scan" ] || die "cannot read the scan description '$scan'"
  mkdir -p "$out/tasks" "$out/logs" || die "cannot create '$out'"
  out=$(absdir "$out")
  # the description -> tasks.tsv and settings.txt (KEY VALUE lines); awk reports errors with line numbers
  awk -v out="$out" '
    function err(m) { printf "scan.sh: %s line %d: %s\n", FILENAME, FNR, m > "/dev/stderr"; bad = 1; exit 2 }
    { sub(/#.*/, ""); if (NF == 0) next
      for (i = 1; i <= NF; i++) if ($i !~ /^[A-Za-z0-9_.,:\/=+@%-]+$/) err("the word \"" $i "\" has a character outside A-Z a-z 0-9 _ . , : / = + @ % -")
      d = $1; rest = ""; for (i = 2; i <= NF; i++) rest = rest (i > 2 ? " " : "") $i }
    d == "example" { if (NF != 2) err("example NAME"); example = $2; next }
    d == "program" { if (NF != 2) err("program PATH"); program = $2; next }
    d == "data"    { if (NF != 2) err("data DIR"); data = $2; next }
    d == "args"    { if (NF < 2) err("args WORD..."); common = common (common != "" ? " " : "") rest; next }
    d == "cpus"    { if (NF != 2 || $2 !~ /^[1-9][0-9]*$/) err("cpus N (a positive integer)"); cpus = $2; next }
    d == "slurm"   { if (NF < 2) err("slurm WORD..."); nsl++; slurm[nsl] = rest; next }
    d == "condor"  { if (NF < 2) err("condor WORD..."); ncd++; condor[ncd] = rest; next }
    d == "vary"    { if (NF < 4) err("vary AXIS OPTION VALUE... (at least one value)")
                     if ($2 !~ /^[A-Za-z_][A-Za-z0-9_]*$/) err("axis name \"" $2 "\" (letters, digits, _)")
                     for (a = 1; a <= nax; a++) if (axname[a] == $2) err("axis \"" $2 "\" given twice")
                     nax++; axname[nax] = $2; axopt[nax] = $3; axn[nax] = NF - 3
                     for (i = 4; i <= NF; i++) axval[nax, i - 3] = $i; next }
    d == "case"    { if (NF < 2) err("case NAME [WORD...]"); for (c = 1; c <= ncase; c++) if (cname[c] == $2) err("case \"" $2 "\" given twice")
                     ncase++; cname[ncase] = $2; cargs[ncase] = ""; for (i = 3; i <= NF; i++) cargs[ncase] = cargs[ncase] (i > 3 ? " " : "") $i; next }
    { err("unknown directive \"" d "\" (example, program, data, args, vary, case, cpus, slurm, condor)") }
    END {
      if (bad) exit 2
      if (example == "" && program == "") { printf "scan.sh: %s: no `example NAME` or `program PATH`\n", FILENAME > "/dev/stderr"; exit 2 }
      if (ncase == 0) { ncase = 1; cname[1] = "-"; cargs[1] = "" }
      tsv = out "/tasks.tsv.new"
      printf "id\tcase" > tsv; for (a = 1; a <= nax; a++) printf "\t%s", axname[a] > tsv; printf "\targs\n" > tsv
      id = 0
      for (c = 1; c <= ncase; c++) {
        for (a = 1; a <= nax; a++) k[a] = 1
        while (1) {
          args = common; if (cargs[c] != "") args = args (args != "" ? " " : "") cargs[c]
          line = id "\t" cname[c]
          for (a = 1; a <= nax; a++) { line = line "\t" axval[a, k[a]]; args = args (args != "" ? " " : "") axopt[a] " " axval[a, k[a]] }
          print line "\t" args > tsv; id++
          for (a = nax; a >= 1; a--) { if (k[a] < axn[a]) { k[a]++; break } k[a] = 1 }  # odometer, last axis fastest
          if (a < 1) break
        }
      }
      set = out "/settings.txt.new"
      printf "example %s\nprogram %s\ndata %s\ncpus %d\nntasks %d\n", example, program, data, cpus ? cpus : 1, id > set
      for (i = 1; i <= nsl; i++) print "slurm " slurm[i] > set
      for (i = 1; i <= ncd; i++) print "condor " condor[i] > set
    }' "$scan" || exit 2
  setting() { sed -n "s/^$1 //p" "$out/settings.txt.new"; }
  example=$(setting example | head -n 1); program=$(setting program | head -n 1); data=$(setting data | head -n 1)
  cpus=$(setting cpus | head -n 1); n=$(setting ntasks | head -n 1)
  if [ -n "$program" ]; then
    case "$program" in /*) ;; *) program="$(pwd -P)/$program" ;; esac
  else
    program="$ROOT/build/examples/$example"
    [ -f "$ROOT/examples/$example.c" ] || die "no examples/$example.c in $ROOT"
    if [ ! -x "$program" ]; then
      echo "scan.sh: building $program"
      make -C "$ROOT" "build/examples/$example" >/dev/null || die "cannot build build/examples/$example (make build/examples/$example)"
    fi
  fi
  [ -x "$program" ] || die "the program '$program' is not an executable file"
  dataopt=""
  if [ -n "$data" ]; then
    [ -d "$data" ] || die "the data folder '$data' does not exist"
    dataopt=" --data $(absdir "$data")"
  fi
  # the data folder goes into every task's argument list (absolute, for the batch nodes)
  if [ -n "$dataopt" ]; then
    awk -F'\t' -v OFS='\t' -v d="$dataopt" 'NR > 1 { $NF = $NF d } { print }' "$out/tasks.tsv.new" > "$out/tasks.tsv.tmp" &&
      mv "$out/tasks.tsv.tmp" "$out/tasks.tsv.new"
  fi
  # OUT of an earlier, different scan: its task folders would be merged as this scan's results
  if [ -f "$out/tasks.tsv" ] && ! cmp -s "$out/tasks.tsv" "$out/tasks.tsv.new"; then
    rm -f "$out/tasks.tsv.new" "$out/settings.txt.new"
    die "$out already holds a different scan (its tasks.tsv differs): use a new folder, or delete that one"
  fi
  mv "$out/tasks.tsv.new" "$out/tasks.tsv"
  mv "$out/settings.txt.new" "$out/settings.txt"
  setting() { sed -n "s/^$1 //p" "$out/settings.txt"; }
  cp "$scan" "$out/scan.txt"
  awk -F'\t' 'NR > 1 { print $1 }' "$out/tasks.tsv" > "$out/task_ids.txt"

  cat > "$out/run_task.sh" <<EOF
#!/bin/sh
# Generated by tools/scan.sh: runs task ID of $out/tasks.tsv into $out/tasks/ID/
# (the program's outputs, log.txt, and last a status file: "exit CODE", seconds, host).
set -u
SCAN='$out'
PROG='$program'
[ \$# -eq 1 ] || { echo "usage: \$0 TASK_ID" >&2; exit 2; }
id=\$1
args=\$(awk -F'\t' -v id="\$id" 'NR > 1 && \$1 == id { print \$NF; found = 1; exit } END { exit !found }' "\$SCAN/tasks.tsv") ||
  { echo "\$0: no task '\$id' in \$SCAN/tasks.tsv" >&2; exit 2; }
dir="\$SCAN/tasks/\$id"
rm -rf "\$dir" && mkdir -p "\$dir" || exit 1
t0=\$(date +%s)
set -f   # the arguments are plain words (checked by scan.sh): split on blanks, no globbing
# shellcheck disable=SC2086
"\$PROG" \$args --out "\$dir" > "\$dir/log.txt" 2>&1
st=\$?
printf 'exit %d\nseconds %d\nhost %s\n' "\$st" "\$((\$(date +%s) - t0))" "\$(uname -n)" > "\$dir/status.tmp" &&
  mv "\$dir/status.tmp" "\$dir/status"
exit \$st
EOF
  chmod +x "$out/run_task.sh"

  name=${example:-$(basename "$program")}
  {
    echo "#!/bin/sh"
    echo "# Generated by tools/scan.sh from $out/scan.txt: $n tasks as one SLURM job array."
    echo "# Submit: sbatch $out/slurm.sh   (rerun some: sbatch --array=3,7 $out/slurm.sh)"
    echo "#SBATCH --job-name=scan-$name"
    echo "#SBATCH --array=0-$((n - 1))"
    echo "#SBATCH --ntasks=1"
    echo "#SBATCH --cpus-per-task=$cpus"
    echo "#SBATCH --output=$out/logs/slurm_%A_%a.out"
    setting slurm | sed 's/^/#SBATCH /'
    echo "exec $out/run_task.sh \"\$SLURM_ARRAY_TASK_ID\""
  } > "$out/slurm.sh"
  chmod +x "$out/slurm.sh"

  {
    echo "# Generated by tools/scan.sh from $out/scan.txt: $n tasks, one job each."
    echo "# Submit: condor_submit $out/condor.sub"
    echo "universe = vanilla"
    echo "executable = $out/run_task.sh"
    echo "arguments = \$(task)"
    echo "output = $out/logs/condor_\$(task).out"
    echo "error = $out/logs/condor_\$(task).err"
    echo "log = $out/logs/condor.log"
    echo "request_cpus = $cpus"
    echo "should_transfer_files = NO"
    setting condor
    echo "queue task from $out/task_ids.txt"
  } > "$out/condor.sub"
  echo "scan.sh: $n tasks in $out/tasks.tsv; submit with 'sbatch $out/slurm.sh' or 'condor_submit $out/condor.sub'," \
       "or run here with 'tools/scan.sh run $out -j 2'"
}

run_local() {
  [ $# -ge 1 ] || usage
  out=$1; shift
  jobs=1
  if [ "${1:-}" = "-j" ]; then
    [ $# -ge 2 ] || usage
    jobs=$2; shift 2
  fi
  case "$jobs" in ''|*[!0-9]*|0) die "-j needs a positive integer, not '$jobs'" ;; esac
  [ -x "$out/run_task.sh" ] || die "no $out/run_task.sh (tools/scan.sh generate SCAN $out first)"
  if [ $# -eq 0 ]; then ids=$(cat "$out/task_ids.txt"); else ids=$*; fi
  # xargs exits 123 when any task failed; every task still runs
  printf '%s\n' $ids | xargs -P "$jobs" -n 1 sh -c '"$0/run_task.sh" "$1" || echo "scan.sh: task $1 failed (exit $?): $0/tasks/$1/log.txt" >&2' "$out"
}

merge() {
  [ $# -eq 1 ] || usage
  out=$1
  [ -f "$out/tasks.tsv" ] || die "no $out/tasks.tsv (tools/scan.sh generate SCAN $out first)"
  out=$(absdir "$out")
  awk -F'\t' -v out="$out" '
    function csvline(f,   s) { s = ""; while ((getline s < f) > 0) return s; return "" }
    NR == 1 { nax = NF - 3; for (a = 1; a <= nax; a++) axname[a] = $(a + 2); next }
    {
      id = $1; dir = out "/tasks/" id; st = ""
      while ((getline l < (dir "/status")) > 0) if (l ~ /^exit /) st = substr(l, 6)
      close(dir "/status")
      if (st == "") { missing[++nm] = id; next }
      if (st != "0") { lastlog = ""; while ((getline l < (dir "/log.txt")) > 0) if (l != "") lastlog = l; close(dir "/log.txt")
                       failed[++nf] = id; why[nf] = "exit " st ": " lastlog; next }
      f = dir "/summary.csv"; h = ""; nrow = 0; delete rows
      while ((getline l < f) > 0) { if (h == "") h = l; else if (l != "") rows[++nrow] = l }
      close(f)
      if (h == "" || nrow == 0) { failed[++nf] = id; why[nf] = "exit 0 but no summary rows in " f; next }
      if (header == "") header = h
      else if (h != header) { failed[++nf] = id; why[nf] = "its summary columns differ from the first task'"'"'s"; next }
      pre = id "," $2; for (a = 1; a <= nax; a++) pre = pre "," $(a + 2)
      for (r = 1; r <= nrow; r++) body[++nb] = pre "," rows[r]
      done++
    }
    END {
      total = NR - 1
      m = out "/merged.csv"
      if (header != "") {
        hd = "task,case"; for (a = 1; a <= nax; a++) hd = hd ",scan_" axname[a]
        print hd "," header > m
        for (i = 1; i <= nb; i++) print body[i] > m
        close(m)
      } else printf "" > m
      rr = out "/rerun.txt"; printf "" > rr
      printf "scan.sh: %d of %d tasks done, %d failed, %d missing; merged table %s\n", done, total, nf, nm, m
      for (i = 1; i <= nf; i++) { printf "  FAILED  task %s: %s\n", failed[i], why[i]; print failed[i] > rr; list = list (list != "" ? "," : "") failed[i] }
      for (i = 1; i <= nm; i++) { printf "  MISSING task %s: no %s/tasks/%s/status (never ran, still running, killed, or deleted)\n", missing[i], out, missing[i]
                                  print missing[i] > rr; list = list (list != "" ? "," : "") missing[i] }
      if (list != "") {
        list2 = list; gsub(",", " ", list2)
        printf "rerun list in %s; rerun with: sbatch --array=%s %s/slurm.sh   or   tools/scan.sh run %s -j 2 %s\n", rr, list, out, out, list2
        exit 1
      }
    }' "$out/tasks.tsv"
  st=$?
  if [ -s "$out/merged.csv" ]; then
    echo
    column -s, -t < "$out/merged.csv" 2>/dev/null || cat "$out/merged.csv"
  fi
  if [ -s "$out/merged.csv" ] && [ -f "$ROOT/tools/plot_scan.py" ] && [ "${SCAN_PLOT:-1}" != 0 ]; then
    if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
      /usr/bin/python3 "$ROOT/tools/plot_scan.py" "$out/merged.csv" "$out/scan.png" || echo "scan.sh: the plot failed (the table is complete)" >&2
    else
      echo "scan.sh: no comparison PNG: python3-matplotlib is missing (tools/deps.sh plot)"
    fi
  fi
  return $st
}

[ $# -ge 1 ] || usage
cmd=$1; shift
case "$cmd" in
  generate) generate "$@" ;;
  run) run_local "$@" ;;
  merge) merge "$@" ;;
  -h|--help) usage ;;
  *) echo "scan.sh: unknown command '$cmd'" >&2; usage ;;
esac
