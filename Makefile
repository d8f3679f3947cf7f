# The two set-up commands of the README:
#   make run    builds .venv if needed, then trains the example TrainingJob locally (no cluster)
#   make test   builds .venv if needed, then runs lint, types, the drift checks and the tests
# .venv is installed from the committed lock (requirements/dev.txt); `make lock` regenerates it.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE ?= examples/tiny-llm-lora.yaml
# The tests run in parallel, one worker a core (at most 4: each may train a model).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: run test lint crds lock bench clean

# The virtualenv is the committed lock, exactly: every package at its locked version and hash
# (requirements/dev.txt: the CPU build of torch), then the project itself without resolving anything.
$(BIN)/.installed: pyproject.toml requirements/build.txt requirements/dev.txt
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/build.txt -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

run: $(BIN)/.installed
	$(BIN)/t1 train $(EXAMPLE)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m tensorone.api.crd --check
	$(BIN)/python -m tensorone.api.docs --check
	$(BIN)/python -m tensorone_operator.chart --check
	$(BIN)/python -m tensorone.gateway.openapi --check
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# Everything generated from the models: the CRDs (crds/ and the chart's), docs/api.md, the
# chart's operatorConfig values and schema (from OperatorConfig), and the gateway's OpenAPI document.
crds: $(BIN)/.installed
	$(BIN)/python -m tensorone.api.crd
	$(BIN)/python -m tensorone.api.docs
	$(BIN)/python -m tensorone_operator.chart
	$(BIN)/python -m tensorone.gateway.openapi

# pyproject.toml into requirements/*.txt (needs PyPI); locked versions stay while still allowed.
# make lock UPGRADE=--upgrade, or UPGRADE="--upgrade-package transformers": an upgrade is a commit CI checks.
lock: $(BIN)/.installed
	$(BIN)/python requirements/lock.py $(UPGRADE)

bench: $(BIN)/.installed
	$(BIN)/python bench/operator_reconcile.py
	$(BIN)/python bench/trainer_speed.py
	$(BIN)/python bench/vision_detection.py
	$(BIN)/python bench/status_freshness.py
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
