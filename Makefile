# Tweezer: `make run` starts everything on the embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-sdk-pinned test-reliability lint format bench migrate assets emulators clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps pulser-pasqal==0.24.0
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput -v0

run: migrate
	$(PY) manage.py demo --url http://$(HOST):$(PORT) > var/demo.txt
	$(PY) manage.py runall --bind $(HOST):$(PORT) --announce var/demo.txt

test: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/reliability $(PYTEST_ARGS)

# tests/sdk with pasqal-cloud 0.22 (what pulser-pasqal pins) in its own venv, var/venv-sdk022.
test-sdk-pinned:
	tests/sdk/run_pinned_sdk.sh $(PYTEST_ARGS)

# Exit code 5 = no test collected (the battery is empty on a fresh branch): not a failure.
test-reliability: $(STAMP)
	$(PY) -m pytest tests/reliability $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/run_all.py

emulators: $(STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements-emu.txt

assets:
	npm install --no-audit --no-fund
	npm run vendor

clean:
	rm -rf var
