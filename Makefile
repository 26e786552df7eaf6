# The two commands a newcomer needs: `make demo` (the main job end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint demo dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Tests and linters: the whole toolchain (browser tests, schema fuzzing, the RunPod SDK, ruff, mypy).
$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# The demo and the dev stack: the service, the Flask half, the simulators and the embedded Redis only.
$(BIN)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three test processes: most tests wait on HTTP and subprocesses, so this halves the time on two cores.
test: lint
	$(BIN)/python -m pytest -n 3

demo: $(BIN)/.installed-run
	$(BIN)/strangler-bridge demo

dev: $(BIN)/.installed-run
	$(BIN)/strangler-bridge dev

bench: setup
	$(BIN)/python scripts/bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
