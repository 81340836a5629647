# `make serve` and `make test` work on a fresh clone: they create .venv and install the project first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
# Loopback by default; HOST=0.0.0.0 exposes the server to the network.
HOST ?= 127.0.0.1
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: install serve train test test-fast bench drift dashboard score simulate build clean sample promote quality \
	rollout-start rollout-status rollout-abort rollout-history replay

# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (this workplace) every
# start would compile Evidently, pandas and BentoML from source again: 2.7 s of the drift job's 11 s at 1M rows.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "uv==0.13.9"
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -e '.[dev]'
	touch $@

install: $(BIN)/.installed

train: install
	$(BIN)/python -m training.train

# serving.serve checks the port and the settings first, then trains if needed, then runs `bentoml serve .`.
serve: install
	@$(BIN)/python -m serving.serve --host $(HOST) --port $(PORT)

# One pytest session, one trained store: the in-process tier (tests/fast) is collected first, then real servers.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest tests/fast -q $(PYTEST_ARGS)

# MLServer, the benchmark's peer, in its own virtualenv (never a project dependency).
MLSERVER_VENV := bench/.mlserver-venv
$(MLSERVER_VENV)/.installed: $(BIN)/.installed bench/mlserver_peer.py
	$(BIN)/python -m bench.mlserver_peer install

# The bench checks its figures with tools not written here: hey (load) and curl (single big requests), from Debian.
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo) apt-get
.PHONY: bench-tools
bench-tools:
	@command -v hey >/dev/null && command -v curl >/dev/null || { $(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq hey curl >/dev/null; }

bench: install bench-tools $(MLSERVER_VENV)/.installed
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m bench.run --out bench/results $(BENCH_ARGS)
	$(BIN)/python bench/bench_scoring.py $(BENCH_SCORING_ARGS)
	$(BIN)/python bench/bench_drift.py $(BENCH_DRIFT_ARGS)
	$(BIN)/python bench/bench_loop.py $(BENCH_LOOP_ARGS)

# py-spy of the service's worker: PROFILE_SCENARIO=predict (/predict at c=32; bench/results/profile/top.md) or
# v2-10k (back-to-back 10,000-row /v2 calls; bench/results/profile-v2-10k/top.md)
PROFILE_SCENARIO ?= predict
.PHONY: bench-profile
bench-profile: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m bench.profile --scenario $(PROFILE_SCENARIO) --out bench/results/profile$(if $(filter-out predict,$(PROFILE_SCENARIO)),-$(PROFILE_SCENARIO)) $(PROFILE_ARGS)

DRIFT_MODEL ?= purchase_gbm
# GNU make exits 2 whenever a recipe fails, whatever code the recipe returned: the job's own exit code (0 done,
# 1 drift with --fail-on-drift, 2 could not run) goes to DRIFT_STATUS when set (docs/monitoring.md).
drift: install
	@$(if $(DRIFT_STATUS),rm -f "$(DRIFT_STATUS)")
	$(BIN)/python -m monitoring.drift --model $(DRIFT_MODEL) $(if $(DRIFT_STATUS),--status-file "$(DRIFT_STATUS)") $(DRIFT_ARGS)

QUALITY_TASK ?= purchase
quality: install
	$(BIN)/python -m monitoring.quality --task $(QUALITY_TASK) $(QUALITY_ARGS)

DASHBOARD_PORT ?= 8000
# The drift job's workspace: beside DRIFT_STATE_PATH (under STATE_DIR), wherever `make` runs.
dashboard: install
	$(BIN)/evidently ui --workspace "$(or $(DASHBOARD_WORKSPACE),$(shell $(BIN)/python -c 'from settings import get_settings; print(get_settings().drift_state_path.parent / "workspace")'))" --host 127.0.0.1 --port $(DASHBOARD_PORT)

simulate: install
	$(BIN)/python -m monitoring.simulate --url http://127.0.0.1:$(PORT) --rows $(or $(ROWS),5000) $(SIM_ARGS)

INPUT ?=
MODEL ?= purchase_gbm
ENGINE ?= local
OUTPUT ?= artifacts/scored/$(shell date +%F).parquet
score: install
	@test -n "$(INPUT)" || { echo "usage: make score INPUT=students.parquet [MODEL=purchase_gbm] [OUTPUT=...] [ENGINE=spark] [SCORE_ARGS=\"--overwrite --log-predictions\"]"; exit 2; }
	$(BIN)/python -m training.train --if-missing
	$(BIN)/python -m scoring --input $(INPUT) --model $(MODEL) --output $(OUTPUT) --engine $(ENGINE) $(SCORE_ARGS)

# 10,000 labelled synthetic students (a seed training does not use) to try training on files and scoring.
sample: install
	mkdir -p artifacts
	$(BIN)/python -c "from training.data import generate_purchase as g; f = g(10_000, seed=7); f.to_parquet('artifacts/students.parquet', index=False); f.to_csv('artifacts/students.csv', index=False)"
	@echo "wrote artifacts/students.parquet and artifacts/students.csv"

# make promote MODEL=purchase_lr STAGE=production [PROMOTE_ARGS='--reason "better recall"']
STAGE ?= production
promote: install
	@test "$(origin MODEL)" != file || { echo "usage: make promote MODEL=purchase_lr[:VERSION] STAGE=production [PROMOTE_ARGS=...]"; exit 2; }
	$(BIN)/python -m training.promote $(MODEL) --stage $(STAGE) $(PROMOTE_ARGS)

# Guarded rollouts (docs/rollout.md): make rollout-start [TASK=purchase] [ROLLOUT_ARGS='--steps shadow,10,50']
TASK ?= purchase
rollout-start: install
	$(BIN)/python -m training.rollout start --task $(TASK) $(ROLLOUT_ARGS)

rollout-status: install
	$(BIN)/python -m training.rollout status $(ROLLOUT_ARGS)

rollout-abort: install
	$(BIN)/python -m training.rollout abort --task $(TASK) $(ROLLOUT_ARGS)

rollout-history: install
	$(BIN)/python -m training.rollout history --task $(TASK) $(ROLLOUT_ARGS)

# The candidate scored on logged production traffic: make replay [TASK=purchase] [REPLAY_ARGS='--since 24h']
replay: install
	$(BIN)/python -m monitoring.replay --task $(TASK) $(REPLAY_ARGS)

soak: install
	$(BIN)/python -m bench.soak --seconds $(or $(SECONDS),300) --concurrency 32

build: install
	$(BIN)/python -m training.train --if-missing
	$(BIN)/bentoml build .

# The bento as an OCI image (docs/deployment.md): BASE_IMAGE=python:3.11-slim builds on a registry's base instead
# of the local Debian one; IMAGE names it (localhost/purchase-serving); BACKEND=podman uses podman's builder.
.PHONY: container container-run
container: build
	$(BIN)/python -m deploy.build

# Serves localhost/purchase-serving:latest with docker or podman where they run containers, else buildah (chroot).
container-run: install
	$(BIN)/python -m deploy.run

clean:
	rm -rf $(VENV) artifacts bench/results bench/.mlserver-venv .pytest_cache
