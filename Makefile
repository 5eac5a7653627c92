PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench bench-all soak clean interop-deps validators

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(MAKE) --no-print-directory validators
	touch $(STAMP)

# The OCPP schemas' validators generated ahead and byte-compiled, as the Debian package has
# them (src/cpagent/protocol/_validators/, git-ignored; see cpagent.protocol.validator_build):
# part of the venv step, and again by hand after the ocpp or fastjsonschema library changed
# (until then the agent compiles the schemas whose validators no longer match at run time).
validators:
	$(BIN)/python -m cpagent.protocol.validator_build
	$(BIN)/python -m compileall -q src/cpagent/protocol/_validators

run: $(STAMP)
	$(BIN)/cpagent demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: $(STAMP) lint interop-deps
	$(BIN)/pytest -n 4

# The independent OCPP 2.0.1 CSMS of tests/integration/test_interop_ocpp201.py (ocpp-rpc, a
# Node.js package): its modules exactly as package-lock.json pins them. Without node the
# test is skipped, so this only says so; with node but no npm it stops with the reason.
INTEROP201 := tests/interop/ocpp201-csms
INTEROP201_STAMP := $(INTEROP201)/node_modules/.installed

interop-deps:
	@if ! command -v node >/dev/null; then \
	    echo "node not found: the OCPP 2.0.1 interop test will be skipped (apt-get install nodejs npm)"; \
	elif ! command -v npm >/dev/null; then \
	    echo "npm not found: cannot install $(INTEROP201)'s modules (apt-get install npm)" >&2; exit 1; \
	else \
	    $(MAKE) -s --no-print-directory $(INTEROP201_STAMP); \
	fi

$(INTEROP201_STAMP): $(INTEROP201)/package.json $(INTEROP201)/package-lock.json
	cd $(INTEROP201) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The performance figures in one table beside their goals and the previous release's
# (benchmarks/baseline.json); BENCH_ARGS e.g. "--quick", "--ocpp 2.0.1", "--save-baseline".
# bench-all runs every benchmark script with its readable output, one after the other.
BENCH_ARGS ?=

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-all: $(STAMP)
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/idle.py
	$(BIN)/python benchmarks/replay.py
	$(BIN)/python benchmarks/modbus_poll.py
	$(BIN)/python benchmarks/firmware_download.py
	$(BIN)/python benchmarks/smart_charging.py
	$(BIN)/python benchmarks/requests.py
	$(BIN)/python benchmarks/requests.py --ocpp 2.0.1
	$(BIN)/python benchmarks/first_validation.py
	$(BIN)/python benchmarks/first_validation.py --ocpp 2.0.1

soak: $(STAMP)
	$(BIN)/python benchmarks/crash_soak.py --ocpp 1.6 --iterations 200
	$(BIN)/python benchmarks/crash_soak.py --ocpp 2.0.1 --iterations 200

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache $(INTEROP201)/node_modules \
	    src/cpagent/protocol/_validators

# The Debian package (packaging/debian; see packaging/debian/README.Debian) for ARCH=amd64,
# arm64 or armhf (default: this machine's), cross-built on amd64; deb-test installs it in a
# clean bookworm root of ARCH (under qemu-user-static when it is not this machine's). Both
# need root and network access to PyPI and Debian's mirror; not part of "make test".
.PHONY: deb deb-test apt-repo
ARCH ?=

deb:
	ARCH=$(ARCH) bash packaging/build-deb.sh

deb-test: $(STAMP)
	CPAGENT_DEB_TEST=1 CPAGENT_DEB_ARCH=$(ARCH) $(BIN)/pytest -p no:xdist -s tests/packaging

# A signed apt repository (reprepro) of the packages in build/deb/, in build/apt-repo/; see
# docs/apt-repository.md. APT_REPO_KEY=<fingerprint> signs with your release key.
apt-repo:
	bash packaging/apt-repo.sh
