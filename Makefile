# CheeseCoin developer commands. `make test` builds everything from scratch.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install lint test test-fast bench demo clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

# The formatter, the linter and the type checker, all clean (ruff.toml, mypy.ini).
LINTED := cheesecoin twisted tests bench scripts setup.py
lint: $(STAMP)
	$(VENV)/bin/ruff format --check -q $(LINTED)
	$(VENV)/bin/ruff check -q $(LINTED)
	$(VENV)/bin/mypy -p cheesecoin

test: $(STAMP) lint
	bash scripts/install-chromium.sh
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -x -m "not slow" tests

bench: $(STAMP)
	$(PIP) install -q -e '.[bench]' --config-settings editable_mode=compat
	$(PY) bench/run_all.py

demo: $(STAMP)
	$(PY) -m cheesecoin.cli.demo

clean:
	rm -rf $(VENV) build dist *.egg-info _trial_temp .pytest_cache .mypy_cache .ruff_cache cheesecoin/core/*.so
