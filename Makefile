# graphforge developer tasks. `make demo` and `make test` each set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
STAMP := $(VENV)/.graphforge-installed
NATIVE_SOURCES := setup.py pyproject.toml $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' 2>/dev/null)
PLUGIN_PACKAGES := $(wildcard plugins/*/pyproject.toml)

.PHONY: setup demo test test-python test-cpp bench clean

setup: $(STAMP)

# torch is installed first (and on its own) because the extension is built
# against it with --no-build-isolation; see docs/environment.md for why
# torch>=2.14 / torchvision>=0.29 and never the local torch 2.13 CPU wheel.
$(STAMP): $(NATIVE_SOURCES) $(PLUGIN_PACKAGES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check "torch>=2.14" "torchvision>=0.29"
	$(PIP) install --quiet --disable-pip-version-check "setuptools>=69" wheel ninja pybind11
	MAX_JOBS=$(JOBS) $(PIP) install --quiet --disable-pip-version-check --no-build-isolation -e ".[test]"
	# the separately installable example plugins (plugins/*), so their tests run too
	for p in $(dir $(PLUGIN_PACKAGES)); do \
		$(PIP) install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e $$p || exit 1; \
	done
	touch $@

demo: setup
	$(VENV)/bin/graphforge run --converter dyn_knn --model sage

test: setup test-python test-cpp

test-python: setup
	$(PY) -m pytest -q tests plugins

test-cpp: setup
	PYTHON=$(PY) bash scripts/ctest.sh

bench: setup
	$(VENV)/bin/graphforge bench knn --quick

clean:
	rm -rf build graphforge/_C*.so *.egg-info
