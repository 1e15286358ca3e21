# convlora-geo: `make demo` runs the whole job on bundled data, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.install-stamp
LOCK   := requirements.lock
PYTEST_WORKERS ?= 2

.PHONY: install lock demo test test-quick test-cuda lint typecheck format bench bench-gpu clean

install: $(STAMP)

# Exactly the locked versions (hash-checked, installed without resolving: the lock is complete, and a
# resolver would consider newer releases on the index), then the two local projects editable without
# dependencies; `pip check` fails if the lock lacks something a pyproject.toml asks for.
$(STAMP): $(LOCK) pyproject.toml convlora/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e ./convlora -e .
	$(BIN)/python -m pip check
	@touch $(STAMP)

# Resolve requirements.in (both pyproject.toml files with all extras) into requirements.lock,
# keeping current pins that still fit; `make lock UPGRADE=1` moves everything to the newest.
lock:
	@test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile requirements.in --universal --python-version 3.11 --generate-hashes \
		--no-emit-package convlora --no-emit-package convlora-geo $(if $(UPGRADE),--upgrade) \
		--output-file $(LOCK)

demo: install
	$(BIN)/convlora-geo demo --out demo-output

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15

test-quick: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow"

# On a machine with an NVIDIA GPU: the CUDA tests (skipped elsewhere, also inside `make test`).
test-cuda: install
	$(BIN)/python -m pytest tests/convlora/test_cuda.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over geo, flows and convlora; strict on convlora and the stage contracts (pyproject.toml).
typecheck: install
	$(BIN)/python -m mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m benchmarks

# On a machine with an NVIDIA GPU: benchmarks/results/gpu-<card>.{json,md} (without one: a notice).
bench-gpu: install
	$(BIN)/python -m benchmarks.gpu

clean:
	rm -rf demo-output .pytest_cache .ruff_cache
