# `make serve` and `make test` work on a fresh clone: they create .venv and install the project first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: install serve train test test-fast bench drift dashboard score simulate build clean quality

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "uv==0.13.9"
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $@

install: $(BIN)/.installed

train: install
	$(BIN)/python -m training.train

serve: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/bentoml serve . --port $(PORT)

# Two tiers, two pytest sessions (each trains its own temporary model store): in-process first, then real servers.
test: test-fast
	$(BIN)/python -m pytest --ignore=tests/fast $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest tests/fast -q $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m bench.run --out bench/results
	$(BIN)/python bench/bench_scoring.py $(BENCH_SCORING_ARGS)

DRIFT_MODEL ?= purchase_gbm
drift: install
	$(BIN)/python -m monitoring.drift --model $(DRIFT_MODEL) $(DRIFT_ARGS)

QUALITY_TASK ?= purchase
quality: install
	$(BIN)/python -m monitoring.quality --task $(QUALITY_TASK) $(QUALITY_ARGS)

dashboard: install
	$(BIN)/evidently ui --workspace artifacts/drift/workspace --host 127.0.0.1 --port 8000

simulate: install
	$(BIN)/python -m monitoring.simulate --url http://127.0.0.1:$(PORT) --rows $(or $(ROWS),5000) $(SIM_ARGS)

INPUT ?=
MODEL ?= purchase_gbm
ENGINE ?= local
OUTPUT ?= artifacts/scored/$(shell date +%F).parquet
score: install
	@test -n "$(INPUT)" || { echo "usage: make score INPUT=students.parquet [MODEL=purchase_gbm] [OUTPUT=...] [ENGINE=spark] [SCORE_ARGS=--log-predictions]"; exit 2; }
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m scoring --input $(INPUT) --model $(MODEL) --output $(OUTPUT) --engine $(ENGINE) $(SCORE_ARGS)

soak: install
	$(BIN)/python -m bench.soak --seconds $(or $(SECONDS),300) --concurrency 32

build: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/bentoml build .

clean:
	rm -rf $(VENV) artifacts bench/results .pytest_cache
