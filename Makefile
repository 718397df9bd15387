# Everything a developer or CI needs, from a clean clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The package alone (what `make run` needs) and the documentation tools: each its own stamp in
# the same virtualenv, so `make run` or `make docs` never installs the test tools.
RUN_STAMP  := $(VENV)/.installed-run
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: install lock test chromium run worker lint docs bench bench-peers chaos clean settings-docs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The distribution was called "supervisor" (supervisord's name on PyPI) before the rename: drop an old
	@# editable install of ours, whose metadata would otherwise linger beside supervisor-jobs.
	$(BIN)/pip uninstall --quiet --yes supervisor 2>/dev/null || true
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Re-pin what development and CI install (constraints.txt) from the newest releases that the
# ranges in pyproject.toml allow. Deliberate: run it, run `make lint test`, commit the file.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[test,docs]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e' | sort -f; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf .lock-venv

# The suite starts its own private redis-server on a free loopback port (see tests/conftest.py),
# or uses REDIS_URL when it is set. The dashboard's browser tests (tests/test_dashboard_browser.py,
# marker `browser`) drive Debian's chromium through Playwright; `make chromium` installs it.
test: install chromium
	$(BIN)/python -m pytest -q

# Debian's chromium for the browser tests, installed only when missing (needs root, as in CI).
# Playwright's own browser download (`playwright install`) is never used.
chromium:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }

$(RUN_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip uninstall --quiet --yes supervisor 2>/dev/null || true
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(DOCS_STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip uninstall --quiet --yes supervisor 2>/dev/null || true
	$(BIN)/pip install --quiet -c constraints.txt -e '.[docs]'
	touch $@

# The example app in examples/demo.py: enqueues a few tasks and runs them. Installs the package
# alone (no test tools); starts a throwaway redis-server when none answers at REDIS_URL.
run: $(RUN_STAMP)
	$(BIN)/python examples/run_demo.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken
# link, an API reference that does not resolve) into a failure. CI runs it.
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The daemon's entry point, configured from the environment and .env (if present).
worker: install
	$(BIN)/supervisor start $(if $(wildcard .env),--env-file .env,)

# Idle pick-up latency (enqueue -> handler start), one worker, private redis-server; then the
# scenarios of bench/run.py for ours alone (drain, enqueue, pickup, I/O, footprint), a minute or
# two. Writes bench/results/latest.{md,json,png}; the chart's matplotlib lives in a venv under
# bench/results/venvs/, never in the project's. Then the scale-out table (bench/scaleout.py, under
# a minute): 1, 2, 4 supervisors against one Redis and a 3-primary cluster -> bench/results/scaleout.md.
# Then an idle pool's CPU (8 workers, --concurrency 1 and 100, no task queued: the median of three
# 10 s windows, the parent, the children and the redis-server apart), the chord against plain tasks
# (bench/flows.py), and what flow control costs the tasks it does not limit: the drain with and
# without limits declared on other types of its queue, alternating (bench/limits.py, under a minute).
bench: install
	$(BIN)/python -m bench.pickup_latency
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.scaleout
	$(BIN)/python -m bench.idle_cpu
	$(BIN)/python -m bench.flows
	$(BIN)/python -m bench.limits

# The same scenarios, ours alternating with Celery, RQ, Dramatiq, huey, arq, taskiq, saq and BullMQ (each
# installed from PyPI into its own venv under bench/results/venvs/ on first use; one that fails is
# skipped; BullMQ's Node.js workers use the machine's node and npm). The I/O scenario runs ours
# with ASYNQ_WORKER_CONCURRENCY (see bench/README.md).
bench-peers: install
	$(BIN)/python -m bench.run --peers --update-docs

# 100,000 tasks through 4 workers while children, connections, Redis and the parent are killed
# and Redis stalls past the socket timeout; then 20,000 tasks on a 3-primary Redis Cluster while
# one primary is stopped for 8 s. Exits non-zero if a task was lost (tests/test_chaos.py runs
# short versions).
chaos: install
	$(BIN)/python -m bench.chaos
	$(BIN)/python -m bench.chaos --cluster
	$(BIN)/python -m bench.chaos_flows

lint: install
	$(BIN)/ruff check supervisor tests bench examples
	$(BIN)/ruff format --check supervisor tests bench examples
	$(BIN)/mypy
	@# what a user's app sees of our types (py.typed, @app.task); celery_app.py is the Celery original,
	@# for reading only (Celery is not installed here)
	$(BIN)/mypy --strict examples --exclude 'examples/from_celery/celery_app\.py$$'

clean:
	rm -rf $(VENV) build site *.egg-info

# .env.example and docs/configuration.md, from the settings' declarations in supervisor/config/.
settings-docs: install
	$(BIN)/python -m supervisor.config.docs
