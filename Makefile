PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench bench-full clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/masksearch warmup --quiet
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m masksearch.demo

lint: $(STAMP)
	$(BIN)/ruff check masksearch tests benchmarks
	$(BIN)/mypy

# Lint, types and the tests but the long sets (marked slow): a few minutes.
test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# Everything, the long sets too (crash points, long fuzzing, concurrency), and every property
# test with its full number of examples: what CI runs.
test-all: lint
	MASKSEARCH_TESTS=all $(BIN)/python -m pytest -q -p no:cacheprovider

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The suite on 2,000 masks per kind (under 5 minutes with the data built).
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py --quick

# 20,000 masks per kind, the engine, aggregation, DuckDB, prototype-baseline and per-mask-cost
# benchmarks, then the 1,000,000-mask scale run (about 30 minutes and 20 GB of disk by itself).
bench-full: $(BENCH_STAMP)
	$(BIN)/python benchmarks/suite.py
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_aggregation.py
	$(BIN)/python benchmarks/bench_duckdb.py
	$(BIN)/python benchmarks/bench_prototype.py
	$(BIN)/python benchmarks/bench_costs.py
	$(BIN)/python benchmarks/bench_million.py

clean:
	rm -rf $(VENV) demo.msdb demo_images demo.html demo_sheet.png
