# convlora-geo: `make demo` runs the whole job on bundled data, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-quick lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml convlora/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e './convlora[progress]' -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/convlora-geo demo --out demo-output

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15

test-quick: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf demo-output .pytest_cache .ruff_cache
