# ChurnShield: `make run` serves the product, `make test` runs the suite. Both set themselves up.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
DEMO_CUSTOMERS ?= 500
# pytest-xdist workers for `make test`: the live tests run on one worker (conftest.py), the rest
# spreads over all of them; most of the live tests' time is waiting on their processes, so more
# workers than cores pays on a 2-core machine. The fault suite then runs alone (its timing bounds
# assume a quiet machine).
TEST_WORKERS ?= 4

# The first interpreter that actually runs and is >= 3.12 (Django 6 needs it). A pyenv shim can
# exist on PATH and still fail, so each candidate is run, not just looked up.
PYTHON ?= $(shell for c in python3.13 python3.12 python3 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	"$$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1 && { echo "$$c"; break; }; \
	done)

.PHONY: run test lint bench bench-batch bench-realtime bench-playbooks bench-ws bench-webhooks bench-monitoring bench-import bench-import-api bench-admin venv clean

# deploy/install.sh is also the Dockerfile's install step: CI tests what the image installs.
$(VENV)/.installed: requirements.txt requirements-dev.txt deploy/install.sh requirements-bench.txt
	@test -n "$(PYTHON)" || { echo "No Python >= 3.12 found (tried python3.13, python3.12, python3, pyenv)."; exit 1; }
	@echo "Using $(PYTHON) ($$($(PYTHON) --version))"
	PYTHON=$(PYTHON) deploy/install.sh $(VENV) requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-bench.txt
	@touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --if-empty --customers $(DEMO_CUSTOMERS) --seed 7
	$(PY) manage.py train_model --if-no-model
	$(PY) manage.py score_history
	$(PY) manage.py score_customers
	$(PY) manage.py sync_schedules
	$(PY) manage.py demo_user --port $(PORT)
	$(VENV)/bin/uvicorn churnshield.asgi:application --host 127.0.0.1 --port $(PORT)

test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --ignore=tests/faults --durations=20
	$(PY) -m pytest tests/faults --durations=10

lint: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: venv
	$(PY) bench/api_list.py

bench-batch: venv
	$(PY) bench/batch_scoring.py

bench-realtime: venv
	$(PY) bench/realtime_predict.py

# 10,000 playbook executions through a real worker, beat and the claimer: steps/s and wait lag.
bench-playbooks: venv
	$(PY) bench/playbooks.py

# Live alert feed: 1,000 WebSocket clients on uvicorn with the Redis pub/sub layer (needs PostgreSQL and Redis).
bench-ws: venv
	$(PY) bench/ws_fanout.py
bench-webhooks: venv
	$(PY) bench/webhooks.py

# Every admin workspace page, as a CSM and as a manager, on 100,000 customers, vs a stock changelist (docs/benchmarks.md).
bench-admin: venv
	$(PY) bench/admin_pages.py

clean:
	rm -rf $(VENV) churnshield.sqlite3 .pytest-sqlite.sqlite3*

# Backup/restore time and probe latencies, so operators know what a restore costs (docs/benchmarks.md).
bench-monitoring: venv
	$(PY) bench/monitoring.py

# History import: 1M sessions + 50k tickets + 30k NPS + 30k subscriptions, against raw COPY (PostgreSQL).
bench-import: venv
	$(PY) bench/import_history.py

# The same book through one CLI process and through POST /api/imports + a Celery worker (needs REDIS_URL).
bench-import-api: venv
	$(PY) bench/import_history.py --api
