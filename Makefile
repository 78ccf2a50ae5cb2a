# Two commands on a fresh machine: `make run` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTHON ?= python3

.PHONY: install run demo worker beat test lint format bench clean webapp

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The technician web app at /app/ (webapp/, TypeScript bundled by esbuild): built
# when Node and npm are there; without them the rest of the server runs as it is.
WEBAPP_SOURCES := $(wildcard webapp/src/*.ts clients/typescript/src/*.ts) webapp/sw.ts \
	webapp/index.html webapp/app.css webapp/build.mjs webapp/package-lock.json
webapp/dist/BUILD: $(WEBAPP_SOURCES)
	cd webapp && npm ci --no-audit --no-fund && npm run build

webapp:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory webapp/dist/BUILD; \
	else echo "npm not found: /app/ (the web app) is not built; the rest runs as it is"; fi

# Embedded default: SQLite file, local-memory cache, eager Celery (no service needed).
run: install webapp
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	DEBUG=$${DEBUG:-1} LOG_FORMAT=$${LOG_FORMAT:-plain} $(PY) manage.py runserver 0.0.0.0:$(PORT)

# Three devices of the reference client (client/) against the server of `make run`:
# offline edits, a merge, a conflict resolved from the app, convergence.
demo: install
	@SYNC_URL=$${SYNC_URL:-http://127.0.0.1:$(PORT)} $(PY) -m client.demo

# The real background processes (need REDIS_URL; see README "Push notifications").
worker: install
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$${CELERY_CONCURRENCY:-4}

beat: install
	$(VENV)/bin/celery -A config beat --loglevel=INFO --schedule=$${CELERY_BEAT_SCHEDULE_FILE:-/tmp/syncserver-celerybeat}

# The whole suite. With DATABASE_URL / REDIS_URL set it runs on PostgreSQL and
# Redis; without them on SQLite, skipping (with the reason) only the tests that
# need a real service. REQUIRE_SERVICES=1 turns those skips into failures.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	@! git grep -nE '^(<<<<<<<|>>>>>>>) ' -- . || { echo "merge conflict markers left in the files above" >&2; exit 1; }
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sync devices syncbase client

# Benchmarks on PostgreSQL: bench/http_bench.py (over HTTP, against the baseline
# and the raw floor), bench/run.py (in process), fan-out, compression, and
# bench/live.py (wake-up and live pull latency, a thousand waiting devices),
# bench/standby.py (pulls from a streaming standby beside the primary),
# bench/versions.py (what serving an older app costs: downgraded pulls, upgraded pushes),
# bench/files.py (uploads, downloads and skips of files, on the file system and on S3).
# QUICK=1 runs small versions of each in a few minutes.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/syncserver_bench
bench: install
	psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" | grep -q 1 \
	  || createdb -h 127.0.0.1 -U postgres $(notdir $(BENCH_DATABASE_URL))
	DATABASE_URL=$(BENCH_DATABASE_URL) QUICK=$(QUICK) $(PY) bench/http_bench.py
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/run.py $(if $(QUICK),--objects 20000) $(BENCH_ARGS)
	DATABASE_URL=$(BENCH_DATABASE_URL) $(PY) bench/fanout.py
	$(PY) bench/compression.py
	DATABASE_URL=$(BENCH_DATABASE_URL) QUICK=$(QUICK) $(PY) bench/live.py
	DATABASE_URL=$(BENCH_DATABASE_URL) QUICK=$(QUICK) $(PY) bench/versions.py
	DATABASE_URL=$(BENCH_DATABASE_URL) QUICK=$(QUICK) $(PY) bench/files.py
	QUICK=$(QUICK) $(PY) bench/standby.py

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache
