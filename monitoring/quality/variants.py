"""The quality job's variants: which predictions of the join belong to which (model, version, alias, variant), and
what each hands on: its rows for the metrics (and any other per-variant computation) and its sample for Evidently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitoring.quality.groups import GROUP_KEYS, GroupKey, store_info
from monitoring.quality.join import Joined
from monitoring.quality.segment_codes import Factorized, factorize


@dataclass
class Variant:
    """One group of the report (model, version, alias, variant) and where its predictions are in the join."""

    key: GroupKey
    cells: np.ndarray  # the join's cell codes (one per endpoint it served)
    positions: np.ndarray  # its predictions' positions in the Joined arrays


def task_cells(joined: Joined, task: str) -> tuple[np.ndarray, list[str]]:
    """Which cells are predictions of models of `task` (from the store's metadata), and the models the store does
    not hold."""
    in_task = np.zeros(len(joined.cells), dtype=bool)
    missing = []
    for (name, version), codes in joined.cells.groupby(["model_name", "model_version"], sort=True).groups.items():
        info = store_info(str(name), str(version))
        if info is None:
            missing.append(f"{name}:{version}")
        elif info.task == task:
            in_task[np.asarray(codes)] = True
    return in_task, missing


def split(joined: Joined, in_task: np.ndarray) -> list[Variant]:
    """The task's predictions by variant: one stable sort of the rows by variant, then a slice each."""
    cells = joined.cells[in_task]
    if cells.empty:
        return []
    group_of_cell = np.full(len(joined.cells), -1, dtype=np.int32)
    keyed = cells[GROUP_KEYS].fillna("")  # groupby drops None keys otherwise
    variants = []
    for number, (key, codes) in enumerate(keyed.groupby(GROUP_KEYS, sort=True).groups.items()):
        group_of_cell[np.asarray(codes)] = number
        name, version, alias, variant = (str(part) for part in key)
        variants.append(Variant(GroupKey(name, version, alias or None, variant or None), np.asarray(codes),
                                np.empty(0, np.int64)))
    of_row = group_of_cell[joined.cell]
    order = np.argsort(of_row, kind="stable")
    bounds = np.searchsorted(of_row[order], np.arange(len(variants) + 1))
    for number, variant in enumerate(variants):
        variant.positions = order[bounds[number]:bounds[number + 1]]
    return variants


def rows_of(joined: Joined, positions: np.ndarray) -> pd.DataFrame:
    """A variant's predictions: ts, probability and outcome (NaN while none came), in log order."""
    outcome = joined.outcome[positions].astype(np.float32)
    outcome[outcome < 0] = np.nan
    stamps = pd.Series(joined.ts[positions].view("datetime64[us]")).dt.tz_localize("UTC")
    return pd.DataFrame({"ts": stamps, "probability": joined.probability[positions], "outcome": outcome})


def estimate_input(joined: Joined, variants: list[Variant]) -> tuple[pd.DataFrame, Factorized]:
    """The variants' predictions as the label-free estimate takes them (monitoring/quality/window_estimates.py):
    ts, probability and outcome (NaN while none came) in join order, and the group keys already factorized from
    the join's cells, so no string column of the window's length is ever built (10M rows: codes of one byte each)."""
    in_task = np.zeros(len(joined.cells), dtype=bool)
    for variant in variants:
        in_task[variant.cells] = True
    rows = in_task[joined.cell]
    every = bool(rows.all())  # the usual case: no copy to select them

    def take(values: np.ndarray) -> np.ndarray:
        return values if every else values[rows]

    cell = take(joined.cell)
    outcome = take(joined.outcome).astype(np.float32)
    outcome[outcome < 0] = np.nan
    stamps = pd.Series(take(joined.ts).view("datetime64[us]"), copy=False).dt.tz_localize("UTC")
    frame = pd.DataFrame({"ts": stamps, "probability": take(joined.probability), "outcome": outcome}, copy=False)
    columns = Factorized(frame)
    for key in GROUP_KEYS:
        codes, values = factorize(joined.cells[key])  # a few cells: their values, sorted, None a value of its own
        columns.put(key, codes[cell], values)
    return frame, columns


def report_samples(joined: Joined, variants: list[Variant], groups: list[dict[str, Any]], rows: int,
                   seed: int) -> list[tuple[dict[str, Any], pd.DataFrame, dict[str, int]]]:
    """Per variant with metrics, a uniform sample (seeded) of at most `rows` of its predictions with an outcome,
    for Evidently's report: its time grows with the rows it is given, not with the log."""
    samples = []
    for variant, group in zip(variants, groups):
        if group["metrics"] is None:
            continue
        labelled = variant.positions[joined.outcome[variant.positions] >= 0]
        chosen = labelled
        if len(labelled) > rows:
            chosen = np.sort(np.random.default_rng(seed).choice(labelled, size=rows, replace=False))
        frame = pd.DataFrame({"target": joined.outcome[chosen].astype("int64"),
                              "prediction": joined.probability[chosen]})
        samples.append((group, frame, {"rows": len(chosen), "of": len(labelled), "seed": seed}))
    return samples
