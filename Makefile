# The two set-up commands of the README:
#   make run    builds .venv if needed, then trains the example TrainingJob locally (no cluster)
#   make test   builds .venv if needed, then runs lint, types, the CRD drift check and the tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE ?= examples/tiny-llm-lora.yaml

.PHONY: run test lint crds bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch==2.13.0 is the CPU build on this machine's disk: pinned so nothing pulls a CUDA build.
	$(BIN)/pip install --quiet -e '.[dev]'
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
	$(BIN)/pytest

crds: $(BIN)/.installed
	$(BIN)/python -m tensorone.api.crd
	$(BIN)/python -m tensorone.api.docs

bench: $(BIN)/.installed
	$(BIN)/python bench/operator_reconcile.py
	$(BIN)/python bench/trainer_speed.py
	$(BIN)/python bench/status_freshness.py

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
