# Two commands set everything up on a fresh machine: `make run` and `make test`.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
YEAR    ?= 2025
OUT     ?= out
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: run test bench samples clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "python 3.11 is required ($(PY) not found)"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/cpf run --year $(YEAR) --dsn data/samples --lake $(OUT) \
	    --holders data/samples/holders.csv --balances data/samples/balances.csv

test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

samples: $(STAMP)
	$(BIN)/python -m generator.samples data/samples

clean:
	rm -rf $(OUT) .prefect .pytest_cache
