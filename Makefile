# advnn -- GNU make. Everything built goes under build/.
#
#   make            build the tests, examples and benchmarks (nothing is run)
#   make deps       install (as root) or list the Debian packages for everything below
#   make test       every tests/test_*.c in every configuration (tests/run_all.sh); last line "N passed, N failed"
#   make demo       generate data, run the three physics examples (W tagger, LLP tagger, anomaly AE)
#                   on 2 threads and plot their results into build/demo/ (DEMO_THREADS=2)
#   make bench      build and run bench/*.c (OpenBLAS figures beside ours when libopenblas-dev is installed)
#   make bench-json advnn's W1-W3 figures (1 and 2 threads) as JSON lines, the fields of the PyTorch script
#   make compare    the same next to ../shared/peers/torch_workloads.py, with ratios and the issue-6 bars
#   make bench-ab OLD=REV   the working tree's training step against REV's, in turn in one process (AB_ARGS)
#   make fuzz       libFuzzer targets in fuzz/, FUZZ_SECONDS each (default 60), seeded by fuzz/make_corpus.c
#   make run-NAME   build and run examples/NAME.c
#   make install    headers to $(PREFIX)/include, advnn.pc to $(PREFIX)/lib/pkgconfig (PREFIX=/usr/local)
#   make uninstall / make clean
#
# A line "advnn-build: FLAGS" in a comment of a test, example or bench source adds FLAGS to its
# compile/link line (tests/run_all.sh reads the same marker).

SHELL := /bin/bash
MAKEFLAGS += --no-print-directory

ifeq ($(origin CC),default)
CC := gcc
endif
CLANG        ?= clang-14
PREFIX       ?= /usr/local
DESTDIR      ?=
FUZZ_SECONDS ?= 60
B            := build

# -mavx2 -mfma when this CPU has both (the library also dispatches at run time where it can)
ARCHFLAGS := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo 2>/dev/null && echo -mavx2 -mfma)
CFLAGS    ?= -O2
WARN      := -std=c11 -Wall -Wextra -Wpedantic -Werror
ALL_CFLAGS = $(CFLAGS) $(WARN) $(ARCHFLAGS) -I. -Itests
LDLIBS    := -lsleef -lm
HEADERS   := $(wildcard advnn.h advnn_simd.h)

TESTS    := $(wildcard tests/test_*.c)
GENS     := $(wildcard tools/gen_*.c)
GEN_BINS := $(GENS:tools/%.c=$(B)/tools/%)
TOOL_BINS := $(B)/tools/advnn_inspect
EXAMPLES := $(wildcard examples/*.c)
BENCHES  := $(filter-out bench/bench_mpi.c bench/bench_ab.c,$(wildcard bench/*.c))   # make bench-mpi, make bench-ab
TEST_BINS    := $(TESTS:tests/%.c=$(B)/tests/%)
EXAMPLE_BINS := $(EXAMPLES:examples/%.c=$(B)/examples/%)
BENCH_BINS   := $(BENCHES:bench/%.c=$(B)/bench/%)

# per-file extra flags from an "advnn-build:" comment line (expanded when the recipe runs)
EXTRA_OF = $(shell sed -n 's/.*advnn-build:[[:space:]]*//p' $< | head -n 1 | sed 's@\*/.*@@')

# OpenBLAS for the bench comparison only (never a library dependency); evaluated when used
HAVE_OPENBLAS = $(eval HAVE_OPENBLAS := $$(shell printf '\043include <cblas.h>\nint main(void){return 0;}\n' | $(CC) -x c - -o /dev/null -lopenblas 2>/dev/null && echo 1))$(HAVE_OPENBLAS)
BENCH_FLAGS   = $(if $(HAVE_OPENBLAS),-DADVNN_BENCH_OPENBLAS)
BENCH_LIBS    = $(if $(HAVE_OPENBLAS),-lopenblas)

VERSION = $(shell sed -n 's/^\#define ADVNN_VERSION_MAJOR \([0-9]*\).*/\1/p;s/^\#define ADVNN_VERSION_MINOR \([0-9]*\).*/\1/p;s/^\#define ADVNN_VERSION_PATCH \([0-9]*\).*/\1/p' advnn.h 2>/dev/null | paste -sd. -)

.PHONY: all deps test demo bench fuzz install uninstall clean bench-build fuzz-build bench-json compare bench-mpi bench-ab
.DELETE_ON_ERROR:

all: $(TEST_BINS) $(EXAMPLE_BINS) $(BENCH_BINS) $(GEN_BINS) $(TOOL_BINS)

deps:
	@tools/deps.sh all

$(B)/tests/%: tests/%.c $(HEADERS) $(wildcard tests/*.h) | $(B)/tests
	$(CC) $(ALL_CFLAGS) $< -o $@ $(EXTRA_OF) $(LDLIBS)

$(B)/examples/%: examples/%.c $(HEADERS) $(wildcard examples/*.h) | $(B)/examples
	$(CC) $(ALL_CFLAGS) $< -o $@ $(EXTRA_OF) $(LDLIBS)

$(B)/bench/%: bench/%.c $(HEADERS) $(wildcard bench/*.h) $(wildcard examples/*.h) | $(B)/bench
	$(CC) $(ALL_CFLAGS) $(BENCH_FLAGS) $< -o $@ $(EXTRA_OF) $(BENCH_LIBS) $(LDLIBS)

$(B)/tools/%: tools/%.c $(HEADERS) $(wildcard tools/*.h) | $(B)/tools
	$(CC) $(ALL_CFLAGS) $< -o $@ $(EXTRA_OF) $(LDLIBS)

$(B)/tests $(B)/examples $(B)/bench $(B)/fuzz $(B)/tools:
	@mkdir -p $@

# The runner prints one closing "N passed, N failed" line; it is the last recipe line so that
# nothing of make's comes after it (except make's own error line when something failed).
test:
	@tools/deps.sh test
	@tests/run_all.sh

# The demo data: sizes the three examples' defaults use (a few seconds to generate).
DEMO_THREADS ?= 2
# the W tagger compares every decorrelation method at one moderate strength (the adversary at two);
# the full scan of README's comparison: build/examples/wtagger --method all --full
WTAGGER_DEMO ?= --method all --scan adversary:1,10
DEMO_DATA    := $(B)/data
$(DEMO_DATA)/.stamp: $(GEN_BINS)
	@mkdir -p $(DEMO_DATA)
	./$(B)/tools/gen_wtagger   --out $(DEMO_DATA) --n 100000 --seed 1
	./$(B)/tools/gen_calratio  --out $(DEMO_DATA) --n 40000 --seed 2
	./$(B)/tools/gen_jetimages --out $(DEMO_DATA) --n 30000 --ntest 10000 --seed 3
	@touch $@

demo:
	@tools/deps.sh base
	@$(MAKE) $(GEN_BINS) $(B)/examples/wtagger $(B)/examples/llp_tagger $(B)/examples/anomaly_ae
	@$(MAKE) $(DEMO_DATA)/.stamp
	@set -e; t0=$$(date +%s); \
	for ex in wtagger llp_tagger anomaly_ae; do \
	  echo; echo "=================== $$ex"; \
	  ./$(B)/examples/$$ex --threads $(DEMO_THREADS) --data $(DEMO_DATA) --out $(B)/demo/$$ex $$(test $$ex = wtagger && echo "$(WTAGGER_DEMO)"); \
	done; \
	echo; echo "demo: the three examples took $$(( $$(date +%s) - t0 )) s"
	@if tools/deps.sh plot; then \
	  /usr/bin/python3 tools/plot.py $(B)/demo/wtagger $(B)/demo/llp_tagger $(B)/demo/anomaly_ae || exit 1; \
	  echo "demo: plots in $(B)/demo/*/*.png"; \
	else echo "demo: python3-matplotlib is missing, so no plots (the numbers above are complete; see the apt-get line above)"; fi

run-%:
	@tools/deps.sh base
	@$(MAKE) -q $(B)/examples/$* || $(MAKE) $(B)/examples/$*
	./$(B)/examples/$*

bench:
	@tools/deps.sh base
	@$(MAKE) bench-build
	@$(if $(HAVE_OPENBLAS),,echo "bench: libopenblas-dev not installed: no OpenBLAS figures (tools/deps.sh bench installs it)";)
	@set -e; for b in $(BENCH_BINS); do echo "== $$b"; OPENBLAS_NUM_THREADS=1 ./$$b; done

COMPARE_ARGS ?=
# MPI data-parallel training throughput (needs openmpi-bin libopenmpi-dev; BENCH_MPI_ARGS e.g. --workload w1)
BENCH_MPI_ARGS ?=
bench-mpi:
	@tools/deps.sh base
	@bench/bench_mpi.sh $(BENCH_MPI_ARGS)

# the working tree's training step against revision OLD's, a step of each in turn in one process
AB_ARGS ?= w1 1 40 20
bench-ab:
	@tools/deps.sh base
	@test -n "$(OLD)" || { echo "usage: make bench-ab OLD=<git revision> [AB_ARGS='w1 1 40 20']"; exit 2; }
	@bench/bench_ab.sh $(OLD) $(AB_ARGS)

bench-json:
	@tools/deps.sh base
	@bench/compare.sh --advnn-only $(COMPARE_ARGS)

compare:
	@tools/deps.sh bench
	@bench/compare.sh $(COMPARE_ARGS)

# (a recipe, even an empty one, keeps make from saying "Nothing to be done")
bench-build: $(BENCH_BINS)
	@:

# ---------------------------------------------------------------- fuzzing (clang-14 + libFuzzer)
FUZZ_CFLAGS := -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -I.
FUZZERS     := npy model onnx
FUZZ_BUILD  := $(FUZZERS:%=$(B)/fuzz/fuzz_%) $(B)/fuzz/corpus.stamp

fuzz-build: $(FUZZ_BUILD)
	@:

$(B)/fuzz/fuzz_%: fuzz/fuzz_%.c $(HEADERS) $(wildcard fuzz/*.h) | $(B)/fuzz
	$(CLANG) $(FUZZ_CFLAGS) $(ARCHFLAGS) $< -o $@ $(LDLIBS)

$(B)/fuzz/make_corpus: fuzz/make_corpus.c $(HEADERS) | $(B)/fuzz
	$(CC) -O1 -g -std=c11 -Wall -Wextra -Werror $(ARCHFLAGS) -I. $< -o $@ $(LDLIBS)

$(B)/fuzz/corpus.stamp: $(B)/fuzz/make_corpus $(wildcard tests/fixtures/onnx/*.onnx)
	@rm -rf $(B)/fuzz/corpus_npy $(B)/fuzz/corpus_model $(B)/fuzz/corpus_onnx
	./$< $(B)/fuzz
	@touch $@

fuzz:
	@tools/deps.sh fuzz
	@rm -f $(B)/fuzz/results
	@$(MAKE) -j2 fuzz-build
	@mkdir -p $(B)/fuzz/artifacts; \
	echo "fuzz: $(FUZZERS:%=fuzz_%) for $(FUZZ_SECONDS)s each, in parallel"; \
	for t in $(FUZZERS); do \
	  mkdir -p $(B)/fuzz/work_$$t; \
	  dict=; [ -f $(B)/fuzz/$$t.dict ] && dict=-dict=$(B)/fuzz/$$t.dict; \
	  ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ./$(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=512 \
	    -print_final_stats=1 $$dict -artifact_prefix=$(B)/fuzz/artifacts/$$t- \
	    $(B)/fuzz/work_$$t $(B)/fuzz/corpus_$$t > $(B)/fuzz/fuzz_$$t.log 2>&1 & \
	  eval "pid_$$t=$$!"; \
	done; \
	fail=0; \
	for t in $(FUZZERS); do \
	  eval "pid=\$$pid_$$t"; st=0; wait $$pid || st=$$?; log=$(B)/fuzz/fuzz_$$t.log; \
	  runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	  cov=$$(grep -E '^#[0-9]+' $$log | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9a-zA-Z]+'); \
	  if [ $$st -eq 0 ]; then echo "  fuzz_$$t: ok, $${runs:-?} runs, $$cov"; \
	    echo "fuzz_$$t 1 0 $(FUZZ_SECONDS) $${runs:-?} runs" >> $(B)/fuzz/results; \
	  else fail=1; echo "fuzz_$$t 0 1 $(FUZZ_SECONDS) exit $$st, see $$log" >> $(B)/fuzz/results; echo "  fuzz_$$t: FAILED (exit $$st), artifacts in $(B)/fuzz/artifacts/, log $$log:"; \
	    awk '/ERROR: |runtime error:|deadly signal|==ERROR|ALARM|out-of-memory/ {on=1} on && n < 60 {print; n++} /^SUMMARY:/ {on=0} /Test unit written|^Base64:/ {print}' $$log | sed 's/^/    | /'; fi; \
	done; \
	exit $$fail

# ---------------------------------------------------------------- install
$(B)/advnn.pc: advnn.pc.in advnn.h FORCE
	@mkdir -p $(B)
	@sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

install: $(B)/advnn.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 advnn.h advnn_simd.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/advnn.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/advnn.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/advnn.h $(DESTDIR)$(PREFIX)/include/advnn_simd.h \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/advnn.pc

clean:
	rm -rf $(B)

.PHONY: FORCE
FORCE:
