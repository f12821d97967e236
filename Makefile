# Set-up and everyday commands. `make run` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
# A CPU build is enough for the tests; on a GPU machine use e.g. `make run TORCH=torch`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.seispolarity-installed

.PHONY: install run test test-slow bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## run the default job (synthetic data, PPNet, train + test); pass overrides with ARGS="model=ross ..."
run: install
	$(BIN)/python train.py $(ARGS)

# One test process per core (pytest-xdist); a file's tests stay in one process, so its module
# fixtures (a trained run, a DDP job) are made once. `make test PARALLEL=` runs them one at a time.
PARALLEL ?= -n auto --dist loadfile

## the test suite (slow checks are deselected; see test-slow)
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PARALLEL) $(PYTEST_ARGS)

## the slow checks too (long sweeps, big benchmarks)
test-slow: install
	$(BIN)/python -m pytest -q -m "slow or not slow" $(PARALLEL) $(PYTEST_ARGS)

## the linter (ruff, configured in pyproject.toml); `$(BIN)/ruff check --fix ...` sorts imports and drops unused ones
lint: install
	$(BIN)/ruff check seispolarity tests benchmarks train.py

## throughput benchmark (see benchmarks/README.md)
bench: install
	$(BIN)/python benchmarks/throughput.py $(ARGS)

clean:
	rm -rf $(VENV) outputs data/cache .pytest_cache
