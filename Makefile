PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-airflow demo test lint bench bench-quick clean

install:  ## create .venv and install campaign-sync with its dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'

AIRFLOW_VENV ?= .venv-airflow

install-airflow:  ## a second environment, .venv-airflow, with Airflow and campaign-sync: the DAG test runs the DAG in it
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install --quiet -c constraints.txt -e '.[airflow]'

demo:  ## start the sandbox, load every provider into campaign_sync_demo.duckdb, print a summary
	$(BIN)/campaign-sync demo

# two test workers per core: many tests wait on the sandbox's rate limits and latency, not on the CPU
TEST_WORKERS ?= $(shell echo $$(( 2 * $$(nproc) )))

test:  ## the whole test suite, two workers per core (needs PostgreSQL on 127.0.0.1:5432 for the tests that run on both destinations)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

lint:  ## ruff, and mypy (strict on sources/ and pipelines/, see pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf .venv-airflow .campaign_sync_demo campaign_sync_demo.duckdb .pytest_cache

bench:  ## the performance suite (an hour or more, with a 10M-event account): table on stdout, figures in benchmarks/results/latest.json
	$(BIN)/python -m benchmarks.run

bench-quick:  ## the same scenarios at small scale, one run each (under a minute)
	$(BIN)/python -m benchmarks.run --quick
