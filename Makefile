# Everything a developer or CI needs, from a clean clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test run worker lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The suite starts its own private redis-server on a free loopback port (see tests/conftest.py),
# or uses REDIS_URL when it is set.
test: install
	$(BIN)/python -m pytest -q

# The example app in examples/demo.py: enqueues a few tasks and runs them.
run: install
	$(BIN)/python examples/run_demo.py

# The daemon's entry point, configured from the environment and .env (if present).
worker: install
	$(BIN)/supervisor start $(if $(wildcard .env),--env-file .env,)

# Idle pick-up latency (enqueue -> handler start), one worker, private redis-server.
bench: install
	$(BIN)/python -m bench.pickup_latency

lint: install
	$(BIN)/ruff check supervisor tests bench examples
	$(BIN)/ruff format --check supervisor tests bench examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
