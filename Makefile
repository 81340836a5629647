# `make serve` and `make test` work on a fresh clone: they create .venv and install the project first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: install serve train test bench drift dashboard score simulate build clean

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

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# MLServer, the benchmark's peer, in its own virtualenv (never a project dependency).
MLSERVER_VENV := bench/.mlserver-venv
$(MLSERVER_VENV)/.installed: $(BIN)/.installed bench/mlserver_peer.py
	$(BIN)/python -m bench.mlserver_peer install

bench: install $(MLSERVER_VENV)/.installed
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m bench.run --out bench/results $(BENCH_ARGS)
	$(BIN)/python bench/bench_scoring.py $(BENCH_SCORING_ARGS)

# py-spy of the service's worker under /predict load: bench/results/profile/top.md
.PHONY: bench-profile
bench-profile: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m bench.profile --out bench/results/profile $(PROFILE_ARGS)

DRIFT_MODEL ?= purchase_gbm
drift: install
	$(BIN)/python -m monitoring.drift --model $(DRIFT_MODEL) $(DRIFT_ARGS)

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
	rm -rf $(VENV) artifacts bench/results bench/.mlserver-venv .pytest_cache
