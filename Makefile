# Tweezer: `make run` starts everything on the embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The locks (requirements/*.txt) are made from pyproject.toml by `make lock`; never edit them by hand.
# A development venv is runtime + test + lint + bench; the image installs runtime.txt alone.
DEV_LOCKS := requirements/runtime.txt requirements/test.txt requirements/lint.txt requirements/bench.txt
LOCK_VENV := var/venv-lock
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --strip-extras --allow-unsafe \
	--no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install lock run test test-sdk-pinned test-reliability lint format bench migrate assets emulators clean

# pulser-pasqal (tests/sdk only, not in the image) pins pasqal-cloud==0.22 and tenacity~=8.5, while the
# API is checked against pasqal-cloud 0.24: it goes in last, --no-deps, and is the one `pip check`
# complaint allowed (tests/test_dependencies.py). tests/sdk/run_pinned_sdk.sh covers the 0.22 line.
$(STAMP): $(DEV_LOCKS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(addprefix -r ,$(DEV_LOCKS))
	$(PIP) install -q --no-deps pulser-pasqal==0.24.0
	touch $(STAMP)

# Refresh the locks from pyproject.toml, keeping every pin that still fits (pip-tools, in its own venv).
# Upgrade one package: `make lock LOCK_ARGS="-P django"`; everything: `make lock LOCK_ARGS=-U`.
# Each lock after runtime.txt is constrained by the ones before it, so they never disagree.
$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q pip==26.3 pip-tools==7.7.0

lock: $(LOCK_VENV)/bin/pip-compile
	$(PIP_COMPILE) -o requirements/runtime.txt pyproject.toml
	$(PIP_COMPILE) --extra test -c requirements/runtime.txt -o requirements/test.txt pyproject.toml
	$(PIP_COMPILE) --extra lint $(foreach f,runtime test,-c requirements/$(f).txt) -o requirements/lint.txt pyproject.toml
	$(PIP_COMPILE) --extra bench $(foreach f,runtime test lint,-c requirements/$(f).txt) \
		-o requirements/bench.txt pyproject.toml
	$(PIP_COMPILE) --extra emulators $(foreach f,runtime test lint bench,-c requirements/$(f).txt) \
		-o requirements/emulators.txt pyproject.toml
	$(PIP_COMPILE) --extra s3 $(foreach f,runtime test lint bench emulators,-c requirements/$(f).txt) \
		-o requirements/s3.txt pyproject.toml

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
	$(VENV)/bin/hadolint Dockerfile

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/run_all.py

# torch first and alone, by pip: `torch==2.13.0` takes the CPU wheel this machine kind keeps on disk
# (the lock says 2.13.0+cpu); uv, or any other spelling, downloads a CUDA build of several GB.
emulators: $(STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements/emulators.txt

assets:
	npm install --no-audit --no-fund
	npm run vendor

clean:
	rm -rf var
