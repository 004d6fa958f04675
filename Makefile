# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config/monitor.yaml
STAMP := $(VENV)/.installed

.PHONY: run once test lint bench robustness reliability reliability-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## create the virtualenv, install, run the daemon on the default config
	$(VENV)/bin/monitor run --config $(CONFIG)

once: $(STAMP)  ## poll every source once, deliver, exit
	$(VENV)/bin/monitor run --once --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check monitor tests bench
	$(VENV)/bin/ruff format --check monitor tests bench
	$(VENV)/bin/mypy monitor

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

robustness: $(STAMP)  ## every file of the feedparser corpus through parse + normalise
	$(PY) bench/robustness.py $(CURDIR)/../shared/corpus/feedparser

reliability: $(STAMP)  ## every hostile input and fault of RELIABILITY.md, then the report
	$(PY) -m pytest tests -m "reliability or reliability_case" -q

reliability-fast: $(STAMP)  ## the subset .ci/run runs (under 10 minutes)
	$(PY) -m pytest tests -m "(reliability or reliability_case) and not slow" -q

clean:
	rm -rf $(VENV) data .pytest_cache .hypothesis .mypy_cache .ruff_cache
