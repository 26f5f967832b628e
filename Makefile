# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,flax,nir]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m eqslax compare --out demo-out

# Tests run on every core (pytest-xdist): most of their time is XLA compilation.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto

lint: $(STAMP)
	$(BIN)/ruff check eqslax tests examples benchmarks
	$(BIN)/ruff format --check eqslax tests examples benchmarks

format: $(STAMP)
	$(BIN)/ruff format eqslax tests examples benchmarks
	$(BIN)/ruff check --fix eqslax tests examples benchmarks

clean:
	rm -rf $(VENV) demo-out .pytest_cache
