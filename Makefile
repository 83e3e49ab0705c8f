# The README's two commands are `make run` and `make test`; both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stages of one virtualenv: what running needs (`make run`), then everything the checks need.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
DATA_DIR ?= ./ml-data
PORT ?= 52004

.PHONY: run mine serve check test lint typecheck layers pytest pytest-fast sysdeps-test clean \
	constraints test-spark

# gcc and the Python headers build pyfim and the recommender's compiled small-query path
# (recommender/_smallquery.c; without them the server falls back to its slower Python path).
BUILD_SYSTEM_PACKAGES := gcc:gcc python3-config:python3-dev
PACKAGING := pyproject.toml setup.py constraints.txt recommender/_smallquery.c
# The extras running needs: the job (with pyfim) and the server; no test, lint or plot tools.
RUN_EXTRAS := mining,serve,fast

# The versions constraints.txt pins are the ones the images install: the tests run against them.
# The build requirements go in too, so `make constraints` finds them here to pin.
# $(1): the extras to install.
define install_project
	scripts/ensure-system-packages $(BUILD_SYSTEM_PACKAGES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python containers/requirements.py --build | \
	    $(BIN)/python -m pip install --quiet --constraint constraints.txt -e '.[$(1)]' -r /dev/stdin
endef

$(RUN_STAMP): $(PACKAGING)
	$(call install_project,$(RUN_EXTRAS))
	touch $(RUN_STAMP)

# dev includes the run extras, so the run stage is then up to date too.
$(STAMP): $(PACKAGING)
	$(call install_project,dev)
	touch $(RUN_STAMP) $(STAMP)

## Pin every package the images install at its version in .venv (after changing pyproject.toml).
constraints: $(STAMP)
	$(BIN)/python scripts/constraints.py

## Mine the bundled sample into $(DATA_DIR).
mine: $(RUN_STAMP)
	DATA_DIR=$(DATA_DIR) $(BIN)/python -m mining

## Set up, mine the bundled sample, start the server on $(PORT) and show a request.
run: $(RUN_STAMP)
	DATA_DIR=$(DATA_DIR) PORT=$(PORT) PY=$(BIN)/python scripts/run-demo

# System packages the tests drive for real (installed only when missing).
# Each entry is COMMAND:DEBIAN_PACKAGE. prometheus: promtool checks and unit-tests the alerts, and
# a real Prometheus scrapes a real server (tests/deploy/test_monitoring.py). Java runs
# MINING_ENGINE=spark (Spark 4: Java 17 or 21).
TEST_SYSTEM_PACKAGES := xz:xz-utils openssl:openssl chromium:chromium haproxy:haproxy \
	promtool:prometheus prometheus:prometheus java:openjdk-17-jre-headless
sysdeps-test:
	scripts/ensure-system-packages $(TEST_SYSTEM_PACKAGES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The import layers (scripts/check_layers.py): e.g. actors never import http_api.
layers: $(STAMP)
	$(BIN)/python scripts/check_layers.py

pytest: $(STAMP) sysdeps-test
	$(BIN)/pytest -q -m "not slow_spark"

## Every test of MINING_ENGINE=spark, the long ones included (synth_ds1 at 0.025, ...).
test-spark: $(STAMP) sysdeps-test
	$(BIN)/pytest -q tests/mining/test_spark.py tests/mining/test_engines.py \
		tests/mining/test_rules.py -k spark

pytest-fast: $(STAMP) sysdeps-test
	$(BIN)/pytest -q -m "not slow"

## The quick loop while working: ruff, mypy, the import layers, the tests not marked slow.
check: lint typecheck layers pytest-fast

## Set up and run every check: ruff, mypy, the import layers, every test.
test: lint typecheck layers pytest

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache recommender/_smallquery.*.so

# --- Benchmarks (each prints ratios against a baseline measured in the same run) ---------------
.PHONY: bench bench-mining bench-recommend bench-throughput bench-reload bench-startup
BENCH_DATASET ?= tests/data/synth_dense.csv.xz

bench-mining: $(STAMP)
	$(BIN)/python -m benchmarks.mining $(BENCH_DATASET)

bench-recommend: $(STAMP)
	$(BIN)/python -m benchmarks.recommend

bench-throughput: $(STAMP)
	scripts/ensure-system-packages wrk:wrk taskset:util-linux
	$(BIN)/python -m benchmarks.serve_throughput

bench-reload: $(STAMP)
	scripts/ensure-system-packages wrk:wrk taskset:util-linux
	$(BIN)/python -m benchmarks.serve_reload

bench-startup: $(STAMP)
	$(BIN)/python -m benchmarks.serve_startup

## Every benchmark, one after the other.
bench: bench-mining bench-recommend bench-throughput bench-reload bench-startup

# --- Containers and Kubernetes (containers/, manifests/, scripts/images.py) ---------------------
# The fast checks of the manifests and the Dockerfile are tests/deploy, run by `make test`.
.PHONY: images images-build

## Build both images and run them like the manifests do (slow: podman, debootstrap; in .ci/run).
images: $(STAMP)
	$(BIN)/python scripts/images.py check

## Build both images only (localhost/playlist-recommender-{mining,api}:VERSION), e.g. to push them.
images-build: $(STAMP)
	$(BIN)/python scripts/images.py build

# --- Rollout rehearsal (issue 6) ---------------------------------------------------------------
# HAProxy as the Service in front of real servers, the real mining job and the continuous client:
# scale 3 -> 2, code update, dataset update, and a control run without drain. Results go to
# $(REHEARSAL_DIR); PUBLISH=1 also refreshes docs/rollouts/. Exits non-zero when a target is
# missed. `timeout` bounds the whole run (it takes about 1.5 minutes).
REHEARSAL_DIR ?= artifacts/rehearsal
.PHONY: rehearse
rehearse: $(STAMP)
	scripts/ensure-system-packages haproxy:haproxy
	timeout 600 $(BIN)/python -m rehearsal --output $(REHEARSAL_DIR) $(if $(PUBLISH),--publish docs/rollouts)

# --- Evaluation: the mined rules on held-out playlists, beside popularity and item kNN ----------
# DATASET is a playlists CSV (path or URL); EVALUATE_ARGS adds options (a grid, --json, ...).
.PHONY: evaluate
evaluate: $(STAMP)
	@test -n "$(DATASET)" || { echo "usage: make evaluate DATASET=playlists.csv [EVALUATE_ARGS=...]" >&2; exit 2; }
	$(BIN)/python -m evaluation $(DATASET) $(EVALUATE_ARGS)
