# Makefile: thin wrappers over cargo, so that people and CI run the same
# commands. GNU make. `make help` lists the targets.

CARGO       ?= cargo
PREFIX      ?= /usr/local
DESTDIR     ?=
SBINDIR     ?= $(PREFIX)/sbin
MAN1DIR     ?= $(PREFIX)/share/man/man1

# Debian's postfix package, unpacked (never installed) by
# tests/fetch-reference.sh; the differential tests look for it here.
REFERENCE   ?= target/reference
# The binary `make demo` runs; point it at another smtp-source to compare.
SMTP_SOURCE ?= target/release/smtp-source
MANPAGE     := man/smtp-source.1
REPORT_MAN  := man/smtp-report.1

# cargo-nextest when it is installed, plain cargo test otherwise.
HAVE_NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_NEXTEST),yes)
TEST_CMD := $(CARGO) nextest run --workspace --all-targets --no-tests=warn
else
TEST_CMD := $(CARGO) test --workspace --all-targets
endif

.PHONY: all build test reference differential demo lint man install \
	clean bench soak fuzz sink-test interop multihost help

all: build

build:
	$(CARGO) build --release

# The reference is wanted but not required: without apt (or without
# network) the differential tests skip themselves and the rest still runs.
# A test that skips itself (a tool or the reference missing) is counted
# as passed by the runner: each one appends a line to SKIP_LOG, and the
# summary after the runner's says how many did not run and why. With
# SMTP_SOURCE_REQUIRE_ALL=1 (.ci/run) a skip fails its test instead.
SKIP_LOG    := $(CURDIR)/target/skipped-tests
test:
	@$(MAKE) --no-print-directory reference || \
		echo "make test: no reference smtp-source in $(REFERENCE);" \
			"the differential tests will skip" >&2
	@mkdir -p target && rm -f $(SKIP_LOG)
	# The sink tests run the example binary itself, which the test runner
	# builds only as a test target (under another name).
	$(CARGO) build --example sink
	@echo "$(TEST_CMD)"; status=0; \
		SMTP_SOURCE_SKIP_LOG=$(SKIP_LOG) $(TEST_CMD) || status=$$?; \
		sh tests/skip-summary.sh $(SKIP_LOG); exit $$status

reference:
	@test -f tests/fetch-reference.sh || \
		{ echo "make reference: tests/fetch-reference.sh is missing" >&2; \
		  exit 1; }
	sh tests/fetch-reference.sh $(REFERENCE)

differential: reference
	$(CARGO) test --test integration differential

demo: build
	$(CARGO) build --release --example sink
	SMTP_SOURCE=$(SMTP_SOURCE) bash scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# man --warnings exits 0 even when groff warns, so any stderr fails.
# Rendered at the default width and at MANWIDTH=60 (a narrow terminal,
# where a long tag or an unbreakable word would overflow).
man:
	@for page in $(MANPAGE) $(REPORT_MAN); do \
		for width in "" 60; do \
			echo "MANWIDTH=$$width man --warnings -l $$page >/dev/null"; \
			out=$$(MANWIDTH=$$width man --warnings -l $$page 2>&1 >/dev/null); \
			if [ -n "$$out" ]; then \
				printf '%s\n' "$$out" >&2; \
				echo "make man: $$page renders with warnings" \
					"(MANWIDTH=$$width)" >&2; \
				exit 1; \
			fi; \
		done; \
	done
	sh tests/check-man.sh $(MANPAGE)
	sh tests/check-man-report.sh $(REPORT_MAN)

# Installed stripped (2.3 MB and 0.8 MB instead of 21 MB and 20 MB with
# the release profile's line tables); the unstripped builds stay in
# target/release for a debugger or a profiler.
install: build
	install -D -m 0755 -s target/release/smtp-source \
		$(DESTDIR)$(SBINDIR)/smtp-source
	install -D -m 0755 -s target/release/smtp-report \
		$(DESTDIR)$(SBINDIR)/smtp-report
	install -D -m 0644 $(MANPAGE) $(DESTDIR)$(MAN1DIR)/smtp-source.1
	install -D -m 0644 $(REPORT_MAN) $(DESTDIR)$(MAN1DIR)/smtp-report.1

clean:
	$(CARGO) clean
	rm -rf $(REFERENCE) target/postfix

# Our smtp-source against the reference, both driving Debian's smtp-sink
# on loopback; writes BENCHMARKS.md. BENCH_ROUNDS (default 3) and
# BENCH_SCALE (default 1.0, multiplies every -m) tune it: a quick run is
# `make bench BENCH_SCALE=0.1 BENCH_ROUNDS=1`. See benches/README.md.
BENCH_TIMEOUT_ALL ?= 1500
# cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly;
# cargo install cargo-fuzz). FUZZ_SECONDS per target; new corpus entries
# go to target/fuzz-corpus so the committed seeds stay as they are.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := reply lineio dotstuff endpoint identity
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p target/fuzz-corpus/$$t; \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		cargo +nightly fuzz run $$t target/fuzz-corpus/$$t \
			fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
			-max_len=65536 -print_final_stats=1 || exit 1; \
	done

# BENCH_ONLY=tls runs only the TLS rows (our sink with --tls and
# --tls-wrapper, openssl s_time, postal), which need no reference; bench.py
# says what is missing for the rows it runs.
bench: build
	$(CARGO) build --release --example sink
	@$(MAKE) --no-print-directory reference || \
		{ test -x $(REFERENCE)/usr/sbin/smtp-source && \
		  test -x $(REFERENCE)/usr/sbin/smtp-sink && \
		  echo "make bench: using the existing $(REFERENCE)" >&2; } || \
		test "$(BENCH_ONLY)" = tls
	BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_SCALE=$(BENCH_SCALE) BENCH_ONLY=$(BENCH_ONLY) \
		timeout $(BENCH_TIMEOUT_ALL) python3 benches/bench.py

# The smtp-sink fault recipes (scripts/sink-test.sh): our release binary
# against Debian's smtp-sink, expected vs. actual exit status and stderr.
sink-test: build reference
	SMTP_SOURCE=$(SMTP_SOURCE) REFERENCE=$(REFERENCE) sh scripts/sink-test.sh

# Our release binary against servers nobody here wrote: Debian's Postfix
# and Dovecot LMTP (apt-get installs them, no service is started) and
# aiosmtpd (pip), all on loopback under target/interop. Root only.
interop: build
	SMTP_SOURCE=$(SMTP_SOURCE) bash scripts/interop/run.sh

# One load over three hosts made of network namespaces (198.18.0.0/15,
# a bridge with no way out): GNU parallel starts the shards over real
# ssh (an sshd per host, all in a temporary directory), smtp-report
# merges their reports, and the counts are checked against the sink's.
# Root only; torn down at exit. See scripts/multihost/run.sh.
MULTIHOST_TIMEOUT ?= 300
multihost: build
	$(CARGO) build --release --example sink
	timeout --kill-after=20 $(MULTIHOST_TIMEOUT) \
		bash scripts/multihost/run.sh

# The #[ignore]d load tests (tests/load.rs: 2000 sessions, 40,000
# connections) against smtp-sink, one at a time so the timings are not
# skewed; peak RSS is measured with GNU time.
soak: reference
	@test -x /usr/bin/time || apt-get install -y time || \
		{ echo "make soak: /usr/bin/time is needed (package time)" >&2; \
		  exit 1; }
	$(CARGO) test --release --test integration -- --ignored \
		--test-threads=1 --nocapture load::


help:
	@echo "targets:"
	@echo "  all, build    cargo build --release"
	@echo "  test          fetch the reference if possible, then run all tests"
	@echo "                (cargo nextest when installed, else cargo test);"
	@echo "                ends with the tests that skipped themselves"
	@echo "  reference     unpack Debian's postfix into $(REFERENCE)"
	@echo "  differential  compare transcripts with the reference smtp-source"
	@echo "  demo          run smtp-source against examples/sink.rs on loopback"
	@echo "  lint          cargo fmt --check and cargo clippy -D warnings"
	@echo "  man           check that $(MANPAGE) and $(REPORT_MAN) render"
	@echo "                without warnings and document every option"
	@echo "  install       smtp-source and smtp-report into"
	@echo "                \$$(DESTDIR)\$$(PREFIX) (PREFIX=$(PREFIX))"
	@echo "  clean         cargo clean, remove $(REFERENCE)"
	@echo "  bench         time ours against the reference smtp-source, and the"
	@echo "                TLS rows (BENCH_ROUNDS=3, BENCH_SCALE=1.0,"
	@echo "                BENCH_ONLY=tls for those alone); writes BENCHMARKS.md"
	@echo "  fuzz          cargo +nightly fuzz, FUZZ_SECONDS per target"
	@echo "  sink-test     smtp-sink fault recipes (expected vs. actual)"
	@echo "  interop       TLS, AUTH, XCLIENT, PROXY, LMTP against real Postfix,"
	@echo "                Dovecot and aiosmtpd (root; installs them)"
	@echo "  multihost     three shards over ssh between network namespaces,"
	@echo "                merged and checked against the sink (root)"
	@echo "  soak          heavy load tests against smtp-sink (RSS, wall time)"
