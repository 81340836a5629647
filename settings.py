"""The one place for configuration: every knob is an environment variable, documented in docs/configuration.md.

Serving, training, scoring and monitoring read their settings from here, so a deployment is described by its
environment alone.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Both tools send usage events unless told not to; set before either is imported anywhere.
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

DEFAULT_MODELS = ("purchase_gbm", "purchase_lr", "drive_stats_a", "drive_stats_b")
# Served by stage alias (task@stage, see training/stages.py): promotions reach running servers without a restart.
DEFAULT_SERVED = ("purchase@production", "purchase@candidate", "drive_stats@production", "drive_stats@candidate")


def default_state_dir() -> Path:
    """Where the service and the jobs keep their state when not told otherwise: the XDG state folder, so a bento
    served from the store and `make drift` run from a checkout meet in the same place."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "purchase_serving"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # NoDecode: plain comma lists in the environment, not JSON.
    served_models: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_SERVED),
        description="SERVED_MODELS: comma-separated references (name, name:version or task@stage) loaded at start.",
    )
    default_purchase_model: str = Field(
        default="purchase@production",
        description="DEFAULT_PURCHASE_MODEL: the model (name or task@stage) behind /predict and /batch_predict.",
    )
    ab_weights: Annotated[dict[str, float], NoDecode] = Field(
        default={},
        description="AB_WEIGHTS: e.g. 'purchase@production=0.9,purchase@candidate=0.1' (names or aliases); "
        "empty means no A/B split.",
    )
    batching: bool = Field(default=True, description="BATCHING: coalesce concurrent /predict calls.")
    batch_max_size: int = Field(default=64, ge=2, description="BATCH_MAX_SIZE: most records in one model call.")
    batch_max_latency_ms: int = Field(
        default=1000, ge=1, description="BATCH_MAX_LATENCY_MS: a /predict call waiting longer gets 503."
    )
    max_records: int = Field(default=10_000, ge=1, description="MAX_RECORDS: most records in one request.")
    max_predict_items: int = Field(default=16, ge=1, description="MAX_PREDICT_ITEMS: most items in /v1/predict.")
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="MAX_BODY_BYTES: larger bodies get 413.")
    workers: int = Field(default=1, ge=1, description="WORKERS: BentoML worker processes.")
    max_connection_age_seconds: float = Field(
        default=1.0, ge=0,
        description="MAX_CONNECTION_AGE_SECONDS: a keep-alive connection's first response after this age says "
        "`Connection: close` and ends it, so a client that keeps its connections reconnects and the workers share it "
        "(serving/web/keepalive.py); 0 never.",
    )
    model_threads: int | None = Field(
        default=None, ge=1,
        description="MODEL_THREADS: the cores a server's model calls share (default: the CPUs the server may use, "
        "its affinity and cgroup quota). A big batch takes the free ones, a small one one (docs/performance.md).",
    )
    core_tokens_dir: Path | None = Field(
        default=None,
        description="CORE_TOKENS_DIR: the folder of the core tokens a server's workers share (default: one of the "
        "server's own, made by `bentoml serve`); servers on one host given the same folder share their cores.",
    )
    omp_num_threads: str | None = Field(
        default=None, description="OMP_NUM_THREADS: OpenMP's own; when set, every model call uses that many threads.",
    )
    # --- monitoring data (issue 14): where the log and drift artifacts live, compaction, retention
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="STATE_DIR: the folder of the prediction log and the drift artifacts "
        "(default $XDG_STATE_HOME/purchase_serving, i.e. ~/.local/state/purchase_serving).",
    )
    prediction_log_path: Path = Field(
        default=Path("prediction_log.jsonl"),
        description="PREDICTION_LOG_PATH: names the prediction log (default STATE_DIR/prediction_log.jsonl); its "
        "segments are PATH.<stamp>.<pid>.arrows and .parquet beside it (docs/prediction-log.md). One name per server: "
        "on a shared volume give each replica its own.",
    )
    prediction_log_compact: bool = Field(
        default=True,
        description="PREDICTION_LOG_COMPACT: compact each sealed segment into Parquet (the log's maintenance process).",
    )
    prediction_log_retention: float = Field(
        default=30.0, gt=0, description="PREDICTION_LOG_RETENTION: days a sealed segment is kept."
    )
    prediction_log_max_total_bytes: int = Field(
        default=10 * 1024**3, ge=1024,
        description="PREDICTION_LOG_MAX_TOTAL_BYTES: most bytes of one server's log on disk; oldest segments go first.",
    )
    prediction_log: bool = Field(default=True, description="PREDICTION_LOG: write the prediction log.")
    prediction_log_mode: Literal["sync", "background"] = Field(
        default="sync",
        description="PREDICTION_LOG_MODE: 'sync' writes before answering (no answered prediction is lost, even "
        "to SIGKILL); 'background' encodes and writes on a thread (a SIGKILL loses what is queued).",
    )
    prediction_log_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024,
        description="PREDICTION_LOG_MAX_BYTES: a writer seals its segment and opens another past this size.",
    )
    drift_state_path: Path = Field(
        default=Path("drift/latest.json"),
        description="DRIFT_STATE_PATH: the last drift job's summary, exported as gauges on /metrics "
        "(default STATE_DIR/drift/latest.json; reports and the Evidently workspace go beside it).",
    )
    # Model lifecycle (issue 12): hot swap, shadow traffic, tokens.
    model_refresh_seconds: float = Field(
        default=10.0, ge=0, description="MODEL_REFRESH_SECONDS: how often served aliases are re-resolved (0: never)."
    )
    shadow_models: Annotated[list[str], NoDecode] = Field(
        default=[], description="SHADOW_MODELS: references also scoring every /predict and /batch_predict record, logged only."
    )
    shadow_queue: int = Field(
        default=256, ge=1, description="SHADOW_QUEUE: most batches waiting for shadow scoring; more are skipped and counted."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="ADMIN_TOKEN: bearer token of the /v1/admin routes; unset, they are off (404)."
    )
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default=[], description="API_TOKENS: comma-separated bearer tokens required by the prediction routes; unset, open."
    )
    feedback_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default=[], description="FEEDBACK_TOKENS: comma-separated bearer tokens of POST /v1/feedback; unset, API_TOKENS "
        "are taken. Feedback is open only while no token at all is configured.",
    )
    # Explanations (issue 25): POST /v1/explain, /v1/predict items with `explain`, GET /v1/predictions/{id}/explanation.
    max_explain_records: int = Field(
        default=1_000, ge=1, description="MAX_EXPLAIN_RECORDS: most records explained in one call with a model of up to 7 "
        "inputs; halved for each input more (a record costs 2^k coalitions times the background rows of model calls)."
    )
    explain_background_rows: int = Field(
        default=100, ge=1, description="EXPLAIN_BACKGROUND_ROWS: rows of the model's reference sample that stand in "
        "for an absent input (seeded: the same record always gets the same explanation)."
    )
    explain_nice: int = Field(
        default=19, ge=0, le=19, description="EXPLAIN_NICE: the explanation thread's nice value (Linux), so "
        "explanations take the CPU that /predict leaves idle (0: the same priority as /predict)."
    )
    explain_queue: int = Field(
        default=4, ge=0, description="EXPLAIN_QUEUE: most explanation calls waiting behind the running one; the next "
        "is answered 503 at once."
    )
    explain_queue_seconds: float = Field(
        default=60.0, gt=0, le=110, description="EXPLAIN_QUEUE_SECONDS: an explanation call that has waited this long "
        "without starting is answered 503 and never run (below the 120 s request timeout, so it can still run)."
    )
    # Request path (HOTPATH, issue 10).
    access_log: bool = Field(
        default=False,
        description="ACCESS_LOG: BentoML's per-request access log lines (off by default: they cost about a third "
        "of a single-record request's time; errors and the prediction log are unaffected).",
    )
    tracing: bool = Field(
        default=False,
        description="TRACING: OpenTelemetry spans for every request (configure the exporter in BentoML's config); "
        "off by default, as the spans cost about a tenth of a single-record request.",
    )
    seed: int = Field(default=42, description="SEED: random seed of data generation and training.")
    purchase_rows: int = Field(default=60_000, ge=1_000, description="PURCHASE_ROWS: synthetic training rows.")
    drive_rows: int = Field(default=200_000, ge=1_000, description="DRIVE_ROWS: synthetic drive-days.")
    fleet_size: int = Field(default=1_000, ge=10, description="FLEET_SIZE: drives in the bound latest-day dataset.")
    # --- the experiment loop (issue 13): outcome feedback and the quality job
    outcome_log_path: Path = Field(
        default=Path("outcomes.jsonl"),
        description="OUTCOME_LOG_PATH: the outcome store written by POST /v1/feedback (default STATE_DIR/outcomes.jsonl); "
        "its index is <path>.index.sqlite beside it. Servers on one host share a store by sharing this path.",
    )
    outcome_retention: float = Field(
        default=30.0, gt=0,
        description="OUTCOME_RETENTION: days an outcome is kept, in the log's rotated segments and in the index "
        "(a re-sent outcome counts as a duplicate within this window).",
    )
    outcome_max_total_bytes: int = Field(
        default=2 * 1024**3, ge=1024,
        description="OUTCOME_MAX_TOTAL_BYTES: most bytes of the outcome log on disk (index apart); oldest segments go first.",
    )
    outcome_index_cache_mb: int = Field(
        default=8, ge=1, description="OUTCOME_INDEX_CACHE_MB: SQLite page cache of the outcome index, per process."
    )
    quality_state_path: Path = Field(
        default=Path("quality/latest.json"),
        description="QUALITY_STATE_PATH: the last quality job's summary, exported as serving_model_quality and "
        "serving_ab_verdict gauges (default STATE_DIR/quality/latest.json; reports go beside it).",
    )

    # --- guarded rollouts (issue 22): the controller's servers, clock and SLOs (training/rollout/)
    rollout_servers: Annotated[list[str], NoDecode] = Field(
        default=["http://127.0.0.1:3000"],
        description="ROLLOUT_SERVERS: comma-separated base URLs of the servers a rollout's controller reads "
        "(/metrics, /v1/models); every server sharing the model store follows the plan either way.",
    )
    rollout_tick_seconds: float = Field(
        default=5.0, gt=0, description="ROLLOUT_TICK_SECONDS: how often a rollout's controller looks and decides."
    )
    rollout_apply_seconds: float = Field(
        default=120.0, gt=0,
        description="ROLLOUT_APPLY_SECONDS: how long the servers may take to follow a step before the rollout rolls back.",
    )
    rollout_quality_seconds: float = Field(
        default=30.0, ge=0,
        description="ROLLOUT_QUALITY_SECONDS: the quality gate (log and outcomes joined) runs at most this often.",
    )
    rollout_max_error_rate: float = Field(
        default=0.01, ge=0, le=1,
        description="ROLLOUT_MAX_ERROR_RATE: SLO: the candidate's share of rows whose model call raised.",
    )
    rollout_max_p99_seconds: float = Field(
        default=0.5, gt=0, description="ROLLOUT_MAX_P99_SECONDS: SLO: the p99 of the candidate's model call."
    )
    rollout_max_p99_ratio: float = Field(
        default=3.0, ge=1, description="ROLLOUT_MAX_P99_RATIO: the candidate's model-call p99 at most this times control's."
    )
    rollout_max_psi: float = Field(
        default=0.25, gt=0,
        description="ROLLOUT_MAX_PSI: the most the candidate's predicted probabilities may shift from control's (PSI).",
    )
    rollout_min_evidence: int = Field(
        default=50, ge=1,
        description="ROLLOUT_MIN_EVIDENCE: candidate rows (error rate, drift, estimate) or model calls (latency) a gate "
        "needs; rows with an outcome per arm before the quality gate judges realized metrics instead of the estimate.",
    )

    @model_validator(mode="after")
    def _under_state_dir(self) -> Settings:
        # These defaults live under STATE_DIR, never under the working directory; a value that is set is used as given.
        for name in ("prediction_log_path", "drift_state_path", "outcome_log_path", "quality_state_path"):
            if name not in self.model_fields_set:
                setattr(self, name, self.state_dir / getattr(self, name))
        return self

    @field_validator("served_models", "shadow_models", "api_tokens", "feedback_tokens", "rollout_servers", mode="before")
    @classmethod
    def _split_tags(cls, value: object) -> object:
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    @field_validator("ab_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("AB_WEIGHTS must look like 'purchase_gbm=0.9,purchase_lr=0.1'")
            return {name.strip(): float(weight) for name, weight in pairs}
        return value

    @field_validator("ab_weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float]) -> dict[str, float]:
        if any(weight < 0 for weight in value.values()) or (value and sum(value.values()) <= 0):
            raise ValueError("AB_WEIGHTS must be non-negative and not all zero")
        return value


def settings_error(exc: ValidationError) -> str:
    """A settings ValidationError as one line naming each offending environment variable."""
    parts = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        name = str(error["loc"][0]).upper() if error["loc"] else ""
        parts.append(message if not name or name in message else f"{name}: {message}")
    return "invalid settings: " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
