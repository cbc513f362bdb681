# One venv for everything; every target creates it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-smoke examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gwsproxy demo

test: $(STAMP)
	$(BIN)/pytest -q

# The tests that start no process (those are marked e2e), with fewer hypothesis examples.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not e2e" --hypothesis-profile=fast

lint: $(STAMP)
	$(BIN)/ruff check gwsproxy tests bench addons
	$(BIN)/ruff format --check gwsproxy tests bench addons
	$(BIN)/mypy  # what it checks, and how strictly: [tool.mypy] in pyproject.toml

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

bench-smoke: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b --smoke || exit 1; done

examples: $(STAMP)
	$(BIN)/python -m gwsproxy.testing.examples captures/examples

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
