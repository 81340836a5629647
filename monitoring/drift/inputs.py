"""What the drift job compares, read from the model store and the prediction log: the model (its metadata and
reference sample, not its fitted pipeline, which the job never needs to unpickle), the window and the two typed
frames."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from monitoring.drift.errors import DriftError
from monitoring.drift.frames import prepare
from monitoring.drift.window import Engine, WindowChoice, describe_others, load_window, log_source, require_log

if TYPE_CHECKING:
    from training.store import StoredModel


@dataclass(frozen=True)
class ReadRequest:
    """The job's arguments that decide what is read."""

    model: str
    log: str | None
    out: str | None
    state: str | None
    choice: WindowChoice
    max_rows: int
    seed: int
    min_rows: int
    engine: Engine = field(default_factory=Engine)


@dataclass
class DriftInputs:
    """Everything the report and the outputs need: the typed frames, and of the raw window only its description."""

    model: StoredModel
    log_path: Path | str  # a URL for the Spark engine
    out_dir: Path
    state_path: Path
    reference: pd.DataFrame
    current: pd.DataFrame
    numerical: list[str]
    categorical: list[str]
    rows: int
    sample: dict | None
    skipped_lines: int
    other_versions: dict[str, int]
    first_ts: str | None
    last_ts: str | None
    seconds: dict[str, float] = field(default_factory=dict)


def resolve_model(tag: str) -> StoredModel:
    """The model version by tag, without its pipeline; unknown models are a DriftError naming what the store has."""
    import bentoml

    from training.store import load_model

    try:
        return load_model(tag, estimator=False)
    except ValueError as exc:
        raise DriftError(f"invalid model tag {tag!r}: {exc}") from None
    except bentoml.exceptions.NotFound:
        try:
            known = sorted({str(m.tag) for m in bentoml.models.list()})
        except Exception:  # noqa: BLE001 - only to enrich the message
            known = []
        name = tag.split(":", 1)[0]
        versions = [k for k in known if k.split(":", 1)[0] == name]
        if versions:
            hint = f"; {name} has: {', '.join(versions)}"
        elif known:
            hint = f"; the store has: {', '.join(sorted({k.split(':', 1)[0] for k in known}))}"
        else:
            hint = "; the model store is empty (make train)"
        raise DriftError(f"unknown model {tag!r} in the model store{hint}") from None


def read_inputs(request: ReadRequest) -> DriftInputs:
    """The model, the window (sampled past max_rows) and the typed frames; DriftError when the job cannot run."""
    from settings import get_settings

    settings = get_settings()
    log_path = log_source(request.log or settings.prediction_log_path)
    choice = request.choice
    require_log(log_path, request.engine)  # before the model store: the cheapest check first
    seconds: dict[str, float] = {}
    mark = time.perf_counter()
    model = resolve_model(request.model)
    seconds["load_model"] = time.perf_counter() - mark
    mark = time.perf_counter()
    inputs = list(model.input_schema["columns"])
    window = load_window(log_path, model.name, model.version, since=choice.since, last=choice.last,
                         columns=["ts", "model_version", *inputs, "probability"],
                         max_rows=request.max_rows, seed=request.seed, engine=request.engine,
                         input_schema=model.input_schema)
    if window.other_versions:
        print(f"note: {model.name}: analysing version {model.version} only; {describe_others(window)}",
              file=sys.stderr)
    if window.rows < request.min_rows:
        where = f" since {choice.since.isoformat()}" if choice.since else ""
        others = f"; {describe_others(window)} (pass --model {model.name}:VERSION)" if window.other_versions else ""
        raise DriftError(
            f"too few rows: {window.rows} logged rows of {model.tag}{where} in {log_path}, window "
            f"{choice.description}, at least {request.min_rows} needed (--min-rows){others}"
        )
    reference, current, numerical, categorical = prepare(
        model.input_schema, model.reference(), window.frame, source=str(log_path)
    )
    seconds["read_log"] = time.perf_counter() - mark
    first_ts, last_ts = window.bounds()
    return DriftInputs(
        model=model, log_path=log_path, out_dir=Path(request.out or Path(settings.drift_state_path).parent),
        state_path=Path(request.state or settings.drift_state_path), reference=reference, current=current,
        numerical=numerical, categorical=categorical, rows=window.rows, sample=window.sample(),
        skipped_lines=window.skipped_lines, other_versions=window.other_versions, first_ts=first_ts,
        last_ts=last_ts, seconds=seconds,
    )
