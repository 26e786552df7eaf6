# The two commands a newcomer needs: `make demo` (the main job end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint demo dev bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Three test processes: most tests wait on HTTP and subprocesses, so this halves the time on two cores.
test: lint
	$(BIN)/python -m pytest -n 3

demo: setup
	$(BIN)/strangler-bridge demo

dev: setup
	$(BIN)/strangler-bridge dev

bench: setup
	$(BIN)/python scripts/bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
