"""The quality job's label-free estimates (monitoring/quality/estimate.py) over its window: per model, version,
alias and variant, per time chunk of each, and per model version (the gauges'); beside each, once outcomes
arrived for some of its rows, the estimate on those rows, the realized metric and the estimation error, and per
group how often the realized metric fell within the estimate's 95% interval: how far to trust the estimate.

Vectorized: every level is one pass of monitoring/quality/cbpe.py over all rows (and one over the rows with an
outcome); Python loops only over the resulting segments.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from monitoring.quality.cbpe import METRICS, Segments, realized_segments
from monitoring.quality.estimate import (CHUNK_COLUMN, DEFAULT_BY, Z95, ModelCalibration, estimate_codes,
                                         group_estimates, score_rows)
from monitoring.quality.errors import QualityError
from monitoring.quality.groups import GROUP_KEYS, arm_name
from monitoring.quality.segment_codes import Factorized, chunk_codes, segment_codes

METHOD = ("CBPE (confidence-based performance estimation, as NannyML 0.13): the expected confusion matrix and ROC "
          "curve of the calibrated probabilities; standard error of the metric on as many rows")
AUTO = "auto"
# Chunk lengths `auto` picks from: the shortest giving at most MAX_CHUNKS chunks over the window.
CHUNK_LADDER = ("1min", "5min", "15min", "1h", "6h", "1D", "7D")
MAX_CHUNKS = 24


def pick_chunk(ts: pd.Series) -> str:
    span = ts.max() - ts.min() if len(ts) else pd.Timedelta(0)
    for chunk in CHUNK_LADDER:
        if span / pd.Timedelta(chunk) <= MAX_CHUNKS - 1:  # periods start on multiples: one more may begin
            return chunk
    return CHUNK_LADDER[-1]


def _compared(estimated: Segments, realized: Segments, i: int) -> dict[str, Any]:
    """The estimate on the rows with an outcome beside the realized metric on the same rows."""
    out = {}
    for m in METRICS:
        value, se, real = (float(a[m][i]) for a in (estimated.values, estimated.standard_errors, realized.values))
        ok = np.isfinite(value) and np.isfinite(real)
        error = value - real if ok else None
        out[m] = {"estimate": round(value, 5) if np.isfinite(value) else None,
                  "realized": round(real, 5) if np.isfinite(real) else None,
                  "error": round(error, 5) if error is not None else None,
                  "standard_error": round(se, 5) if np.isfinite(se) else None,
                  "within_ci95": bool(abs(error) <= Z95 * se) if error is not None and np.isfinite(se) else None}
    return out


def _level(columns: Factorized, scored, labelled: np.ndarray, outcome: np.ndarray,
           names: list[str]) -> list[dict[str, Any]]:
    codes, keys = segment_codes(columns, names)
    k = len(keys)
    entries = [g.as_dict() for g in group_estimates(estimate_codes(scored, codes, k), keys)]
    with_outcome = np.bincount(codes[labelled], minlength=k)
    if labelled.any():
        lc = codes[labelled]
        estimated = estimate_codes(scored, lc, k, rows=labelled)
        realized = realized_segments(lc, k, scored.score[labelled], scored.predicted[labelled], outcome[labelled])
    for i, entry in enumerate(entries):
        entry["with_outcome"] = int(with_outcome[i])
        entry["on_rows_with_outcome"] = _compared(estimated, realized, i) if with_outcome[i] else None
    return entries


def trust(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Over a group's chunks with outcomes: per metric, the chunks compared, the mean and largest |error| and the
    share of chunks whose realized metric lay within the estimate's 95% interval."""
    out = {}
    for m in METRICS:
        compared = [c["on_rows_with_outcome"][m] for c in chunks
                    if c["on_rows_with_outcome"] and c["on_rows_with_outcome"][m]["error"] is not None]
        errors = np.abs([c["error"] for c in compared])
        inside = [c["within_ci95"] for c in compared if c["within_ci95"] is not None]
        out[m] = {"chunks": len(compared),
                  "mean_abs_error": round(float(errors.mean()), 5) if len(errors) else None,
                  "max_abs_error": round(float(errors.max()), 5) if len(errors) else None,
                  "within_ci95_share": round(float(np.mean(inside)), 4) if inside else None}
    return out


def window_estimates(frame: pd.DataFrame, chunk: str = AUTO, columns: Factorized | None = None) -> dict[str, Any]:
    """The summary's `estimate` block for the task's rows of the window (the job's frame: model_name,
    model_version, alias, variant, ts, probability, outcome NaN where none yet). `columns`: the group keys
    already factorized over the frame's rows (the job's, monitoring/quality/variants.py: then the frame needs only
    ts, probability and outcome)."""
    started = time.perf_counter()
    columns = columns if columns is not None else Factorized(frame)
    _, version_keys = segment_codes(columns, DEFAULT_BY)
    calibrations = {(str(n), str(v)): ModelCalibration.from_store(str(n), str(v))
                    for n, v in version_keys.itertuples(index=False)}
    chunk = pick_chunk(frame["ts"]) if chunk == AUTO else chunk
    columns.put(CHUNK_COLUMN, *chunk_codes(frame["ts"], chunk))
    try:
        scored = score_rows(frame, columns, calibrations)
    except ValueError as exc:
        raise QualityError(f"cannot estimate: {exc}") from None
    outcome = frame["outcome"].to_numpy(dtype=np.float64)
    labelled = ~np.isnan(outcome)
    outcome = np.where(labelled, outcome, 0.0).astype(np.int8)
    groups = _level(columns, scored, labelled, outcome, GROUP_KEYS)
    chunks = _level(columns, scored, labelled, outcome, [*GROUP_KEYS, CHUNK_COLUMN])
    if len(version_keys) == len(groups):  # one group per version (the usual case): the same rows, nothing to redo
        versions = [{k: v for k, v in g.items() if k not in ("alias", "variant")} for g in groups]
    else:
        versions = _level(columns, scored, labelled, outcome, list(DEFAULT_BY))
    by_group: dict[tuple, list[dict[str, Any]]] = {}
    length = pd.Timedelta(chunk)
    for entry in chunks:
        entry["end"] = (pd.Timestamp(entry[CHUNK_COLUMN]) + length).isoformat()
        by_group.setdefault(tuple(entry[c] for c in GROUP_KEYS), []).append(
            {k: v for k, v in entry.items() if k not in GROUP_KEYS})
    for entry in groups:
        entry["arm"] = arm_name(str(entry["model_name"]), str(entry["model_version"]), entry["alias"] or None)
        entry["chunks"] = by_group[tuple(entry[c] for c in GROUP_KEYS)]
        entry["trust"] = trust(entry["chunks"])
        for column in ("alias", "variant"):
            entry[column] = entry[column] or None
    return {
        "method": METHOD,
        "metrics": list(METRICS),
        "chunk": chunk,
        "models": {f"{n}:{v}": c.describe() for (n, v), c in sorted(calibrations.items())},
        "groups": groups,
        "versions": versions,
        "seconds": round(time.perf_counter() - started, 3),
    }


def state_entries(block: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model version, what the service exports as estimate gauges (serving/quality_gauges.py)."""
    out = []
    for entry in block["versions"]:
        compared = entry["on_rows_with_outcome"] or {}
        out.append({
            "model": entry["model_name"], "version": entry["model_version"], "rows": entry["rows"],
            "metrics": {m: e["value"] for m, e in entry["estimate"].items()},
            "standard_errors": {m: e["standard_error"] for m, e in entry["estimate"].items()},
            "estimation_errors": {m: c["error"] for m, c in compared.items()},
        })
    return out


def _cell(estimate: dict[str, Any]) -> str:
    if estimate["value"] is None:
        return "-"
    if estimate["standard_error"] is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} ±{Z95 * estimate['standard_error']:.3f}"


def _realized_cell(compared: dict[str, Any]) -> str:
    if compared["realized"] is None:
        return "-"
    return f"{compared['realized']:.3f} ({compared['error']:+.3f})"


def format_estimates(block: dict[str, Any]) -> str:
    """The estimate table the CLI prints after the quality table; under each variant with outcomes, the realized
    metric on those rows and, in brackets, the estimate's error there."""
    labels = [g["arm"] for g in block["groups"]]
    labels += [f"  realized, {g['with_outcome']} with an outcome" for g in block["groups"] if g["with_outcome"]]
    width = max([len("variant"), *map(len, labels)])
    lines = [f"estimated without outcomes (CBPE, chunks of {block['chunk']}; ± is the 95% interval; under it the "
             "realized metric and the estimate's error):",
             f"{'variant':<{width}} {'rows':>9}  " + "  ".join(f"{m:<14}" for m in METRICS)]
    for g in block["groups"]:
        lines.append(f"{g['arm']:<{width}} {g['rows']:>9}  "
                     + "  ".join(f"{_cell(g['estimate'][m]):<14}" for m in METRICS))
        compared = g["on_rows_with_outcome"]
        if compared:
            label = f"  realized, {g['with_outcome']} with an outcome"
            lines.append(f"{label:<{width}} {'':>9}  " + "  ".join(f"{_realized_cell(compared[m]):<14}"
                                                                     for m in METRICS))
    return "\n".join(line.rstrip() for line in lines)
