# weaksam: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.weaksam-installed
CORES ?= 2
CONFIG ?= config/config.yaml

.PHONY: setup demo test lint typecheck pytest clean-results

# Create the virtual environment and install the pinned dependencies plus weaksam itself.
# The stamp is rebuilt whenever the pins or the package metadata change.
$(STAMP): requirements.txt requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Run the whole workflow on the embedded default (generated dataset, CPU only), then write
# the Snakemake report next to the results.
NAME_OF = $(BIN)/python -c 'import sys; from weaksam.config import load_config_file as f; print(f(sys.argv[1]).dataset.name)'
demo: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake --profile profiles/local --configfile $(CONFIG) \
		--report results/$$($(NAME_OF) $(CONFIG))/report.html
	@echo "report: results/$$($(NAME_OF) $(CONFIG))/report.html"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile $(CONFIG)

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

clean-results:
	rm -rf results/*/ .snakemake
