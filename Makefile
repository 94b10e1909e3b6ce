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

# cargo-nextest when it is installed, plain cargo test otherwise.
HAVE_NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(HAVE_NEXTEST),yes)
TEST_CMD := $(CARGO) nextest run --workspace --all-targets --no-tests=warn
else
TEST_CMD := $(CARGO) test --workspace --all-targets
endif

.PHONY: all build test reference differential demo lint man install \
	clean bench soak fuzz sink-test help

all: build

build:
	$(CARGO) build --release

# The reference is wanted but not required: without apt (or without
# network) the differential tests skip themselves and the rest still runs.
test:
	@$(MAKE) --no-print-directory reference || \
		echo "make test: no reference smtp-source in $(REFERENCE);" \
			"the differential tests will skip" >&2
	$(TEST_CMD)

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
man:
	@echo "man --warnings -l $(MANPAGE) >/dev/null"
	@out=$$(man --warnings -l $(MANPAGE) 2>&1 >/dev/null); \
	if [ -n "$$out" ]; then \
		printf '%s\n' "$$out" >&2; \
		echo "make man: $(MANPAGE) renders with warnings" >&2; \
		exit 1; \
	fi
	sh tests/check-man.sh $(MANPAGE)

install: build
	install -D -m 0755 target/release/smtp-source \
		$(DESTDIR)$(SBINDIR)/smtp-source
	install -D -m 0644 $(MANPAGE) $(DESTDIR)$(MAN1DIR)/smtp-source.1

clean:
	$(CARGO) clean
	rm -rf $(REFERENCE) target/postfix

# The smtp-sink fault recipes (faults.md §5.2): our release binary
# against Debian's smtp-sink, expected vs. actual exit status and stderr.
sink-test: build reference
	SMTP_SOURCE=$(SMTP_SOURCE) REFERENCE=$(REFERENCE) sh scripts/sink-test.sh

# The #[ignore]d load tests (tests/load.rs, faults.md F34, F37) against
# smtp-sink, one at a time so the timings are not skewed; peak RSS is
# measured with GNU time.
soak: reference
	@test -x /usr/bin/time || apt-get install -y time || \
		{ echo "make soak: /usr/bin/time is needed (package time)" >&2; \
		  exit 1; }
	$(CARGO) test --release --test integration -- --ignored \
		--test-threads=1 --nocapture load::

bench fuzz:
	@echo "make $@: not yet implemented"

help:
	@echo "targets:"
	@echo "  all, build    cargo build --release"
	@echo "  test          fetch the reference if possible, then run all tests"
	@echo "                (cargo nextest when installed, else cargo test)"
	@echo "  reference     unpack Debian's postfix into $(REFERENCE)"
	@echo "  differential  compare transcripts with the reference smtp-source"
	@echo "  demo          run smtp-source against Debian's smtp-sink on loopback"
	@echo "  lint          cargo fmt --check and cargo clippy -D warnings"
	@echo "  man           check that $(MANPAGE) renders without warnings"
	@echo "                and documents every option"
	@echo "  install       install into \$$(DESTDIR)\$$(PREFIX) (PREFIX=$(PREFIX))"
	@echo "  clean         cargo clean, remove $(REFERENCE)"
	@echo "  sink-test     smtp-sink fault recipes (expected vs. actual)"
	@echo "  soak          heavy load tests against smtp-sink (RSS, wall time)"
	@echo "  bench, fuzz:  not yet implemented"
