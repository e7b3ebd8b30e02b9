PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-full clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m masksearch.demo

test: $(STAMP)
	$(BIN)/ruff check masksearch tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The suite on 2,000 masks per kind (under 5 minutes with the data built).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py --quick

# 20,000 masks per kind, the engine, aggregation and DuckDB benchmarks, then the
# 1,000,000-mask scale run (about 30 minutes and 20 GB of disk by itself).
bench-full: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_aggregation.py
	$(BIN)/python benchmarks/bench_duckdb.py
	$(BIN)/python benchmarks/bench_million.py

clean:
	rm -rf $(VENV) demo.msdb
