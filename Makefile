PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cpagent demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -n 4

bench: $(STAMP)
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/idle.py
	$(BIN)/python benchmarks/replay.py
	$(BIN)/python benchmarks/modbus_poll.py
	$(BIN)/python benchmarks/firmware_download.py
	$(BIN)/python benchmarks/smart_charging.py

soak: $(STAMP)
	$(BIN)/python benchmarks/crash_soak.py --ocpp 1.6 --iterations 200
	$(BIN)/python benchmarks/crash_soak.py --ocpp 2.0.1 --iterations 200

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache

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
