"""Exact Shapley values of a model's inputs, by enumerating every coalition.

The game is the interventional one (Janzing et al. 2020; shap's "interventional" TreeExplainer and its Exact
explainer with an independent masker play the same game): the value of a coalition S of inputs is the model's
mean output when the inputs in S keep the record's values and the others take the values of each row of a
background sample. With k inputs there are 2^k coalitions (128 for the seven purchase inputs, 512 for the nine
drive-stats inputs), so every value is computed, none estimated: the contributions plus the base value (the mean
output on the background) equal the model's output on the record, to the rounding of a float sum.

Pure NumPy and pandas, no model knowledge: the model is a function from raw input frames to one number per row.
"""

from __future__ import annotations

from collections.abc import Callable
from math import factorial

import numpy as np
import pandas as pd

Output = Callable[[pd.DataFrame], np.ndarray]  # raw input rows -> one output per row
MAX_INPUTS = 12  # 4,096 coalitions: beyond, enumeration is no longer cheap


def coalitions(k: int) -> np.ndarray:
    """Every subset of k inputs as a boolean mask, shape (2^k, k); row m holds input i when bit i of m is set, so
    row 0 is the empty coalition and the last row holds every input."""
    if not 0 < k <= MAX_INPUTS:
        raise ValueError(f"exact Shapley values enumerate 2^k coalitions: k={k} inputs is outside 1..{MAX_INPUTS}")
    masks = np.arange(2**k)[:, None] >> np.arange(k)[None, :]
    return (masks & 1).astype(bool)


def shapley_matrix(masks: np.ndarray) -> np.ndarray:
    """W with contributions = v @ W for the coalition values v (one per row of `masks`).

    phi_i = sum over S not holding i of |S|! (k-|S|-1)! / k! * (v(S + i) - v(S)): each coalition's value enters
    phi_i with + weight(|S|-1) when it holds i, and with - weight(|S|) when it does not."""
    k = masks.shape[1]
    weight = np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)] + [0.0])
    sizes = masks.sum(axis=1)
    return np.where(masks, weight[np.maximum(sizes - 1, 0)][:, None], -weight[sizes][:, None])


def _aligned(records: pd.DataFrame, background: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(column, record values, background values) per input, both of one dtype (an integer input may be logged as
    a float)."""
    out = []
    for column in records.columns:
        mine, theirs = records[column].to_numpy(), background[column].to_numpy()
        if mine.dtype != theirs.dtype:
            common = np.result_type(mine, theirs)
            mine, theirs = mine.astype(common), theirs.astype(common)
        out.append((column, mine, theirs))
    return out


def coalition_values(output: Output, records: pd.DataFrame, background: pd.DataFrame, masks: np.ndarray,
                     chunk_rows: int) -> np.ndarray:
    """v, shape (records, coalitions): each coalition's mean output over the background rows.

    A hybrid row takes each input from the record where the coalition holds it, else from the background row. Where
    the record and a background row agree on an input (the same country, no practice exams), coalitions that differ
    only in that input build the same row: only one row per distinct hybrid is scored (about half of them for the
    purchase inputs), then copied to the coalitions that share it. Records are taken a chunk at a time, so that
    about `chunk_rows` hybrid positions are held at once whatever the number of records."""
    m, b = masks.shape[0], len(background)
    step = max(1, chunk_rows // (m * b))
    columns = _aligned(records, background)
    ids = np.arange(m)
    values = np.empty((len(records), m))
    for start in range(0, len(records), step):
        n = min(step, len(records) - start)
        differ = np.zeros((n, b), dtype=np.int64)  # bit j set: record and background row differ in input j
        for j, (_, mine, theirs) in enumerate(columns):
            differ |= (mine[start:start + n, None] != theirs[None, :]).astype(np.int64) << j
        # The coalition a position's hybrid row equals when only inputs that differ count: the row that is scored.
        canonical = ids[None, :, None] & differ[:, None, :]  # (records, coalitions, background)
        scored = np.flatnonzero(canonical == ids[None, :, None])
        record, coalition, row = np.unravel_index(scored, (n, m, b))
        hybrid = pd.DataFrame(
            {name: np.where(masks[coalition, j], mine[start + record], theirs[row])
             for j, (name, mine, theirs) in enumerate(columns)},
            columns=records.columns,
        )
        out = np.asarray(output(hybrid), dtype=np.float64)
        where = np.empty(n * m * b, dtype=np.int64)
        where[scored] = np.arange(len(scored))
        canonical_flat = (np.arange(n)[:, None, None] * m + canonical) * b + np.arange(b)[None, None, :]
        values[start:start + n] = out[where[canonical_flat]].reshape(n, m, b).mean(axis=2)
    return values


def shapley_values(output: Output, records: pd.DataFrame, background: pd.DataFrame,
                   chunk_rows: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
    """(contributions of shape (records, inputs), coalition values of shape (records, coalitions)). The first
    coalition value is the base value (the mean output on the background), the last the output on the record."""
    masks = coalitions(records.shape[1])
    values = coalition_values(output, records, background[list(records.columns)], masks, chunk_rows)
    return values @ shapley_matrix(masks), values
