# Two entry points, as README says: `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

# What `ipbx serve` runs that pip does not install: espeak-ng speaks the prompts written
# as text, libbcg729 is G.729 (src/ipbx/pbx/prerequisites.py names what needs them),
# nftables's library forwards relayed calls in the kernel (media.relay: kernel).
# The test peers are `make peers`'s, for `make test` and `make bench` only.
RUNTIME_PACKAGES := espeak-ng libbcg729-0 nftables

.PHONY: serve test install runtime peers lint bench

$(VENV)/.installed: pyproject.toml
	@python3 -c 'import ensurepip' 2>/dev/null || scripts/install-peers python3-venv
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

runtime:
	scripts/install-peers $(RUNTIME_PACKAGES)

peers:
	scripts/install-peers

serve: install runtime
	$(VENV)/bin/ipbx serve $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# The suite with two media workers in every server, then the media and interop suites
# again with all media in the server's own process (media.workers: 0) and relayed calls
# forwarded by the kernel once they stand (media.relay: kernel; CI runs as root).
test: install peers lint
	IPBX_TEST_MEDIA_WORKERS=2 $(VENV)/bin/pytest -q
	IPBX_TEST_MEDIA_WORKERS=0 IPBX_TEST_MEDIA_RELAY=kernel $(VENV)/bin/pytest -q tests/media tests/interop

bench: install peers
	$(PY) bench/run.py
