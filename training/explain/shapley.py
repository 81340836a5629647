"""Exact Shapley values of a model's inputs, by enumerating every coalition.

The game is the interventional one (Janzing et al. 2020; shap's "interventional" TreeExplainer and its Exact
explainer with an independent masker play the same game): the value of a coalition S of inputs is the model's
mean output when the inputs in S keep the record's values and the others take the values of each row of a
background sample. With k inputs there are 2^k coalitions (128 for the seven purchase inputs, 512 for the nine
drive-stats inputs), so every value is computed, none estimated: the contributions plus the base value (the mean
output on the background) equal the model's output on the record, to the rounding of a float sum.

Pure NumPy and pandas, no model knowledge: the model is a function from rows (raw inputs, features, or the encoded
matrix, as `Features` says) to one number per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from math import factorial

import numpy as np
import pandas as pd

Output = Callable[[pd.DataFrame], np.ndarray]  # feature rows (or raw input rows) -> one output per row
MAX_INPUTS = 12  # 4,096 coalitions: beyond, enumeration is no longer cheap
# Hybrid positions (records x coalitions x background rows) held at once: a few int64 arrays of this length, about
# 100 MB at the peak; 160 purchase records (12,800 positions each) or 40 drive records (51,200).
CHUNK_POSITIONS = 2_097_152
# Distinct rows per model call: a tree ensemble walks all its trees over a call's rows, and a call whose rows stay in
# the CPU's caches across trees was 24% faster than one call of 600,000 rows (purchase_gbm, one thread).
SCORE_ROWS = 131_072


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


@dataclass(frozen=True)
class Features:
    """How a model sees its inputs: `make(raw frame) -> feature frame`, and the raw inputs each feature is computed
    from (training/features.py declares them). The hybrid rows are then built feature by feature from small tables
    (below), never input by input through `make`."""

    make: Callable[[pd.DataFrame], pd.DataFrame]
    inputs: Mapping[str, tuple[str, ...]]
    # Optional: the model's encoding when it maps each feature column on its own (serving's pipelines: an ordinal or
    # one-hot encoder, a scaler, passthrough), and the feature each encoded column comes from. Then each distinct
    # value of a feature is encoded once, rows are assembled already encoded, and `output` takes the encoded matrix.
    encode: Callable[[pd.DataFrame], np.ndarray] | None = None
    encoded_from: tuple[str, ...] = ()


def _aligned(records: pd.DataFrame, background: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with each column of one dtype (an integer input may be logged as a float)."""
    records, background = records.copy(), background.copy()
    for column in records.columns:
        mine, theirs = records[column].to_numpy(), background[column].to_numpy()
        if mine.dtype != theirs.dtype:
            common = np.result_type(mine, theirs)
            records[column], background[column] = mine.astype(common), theirs.astype(common)
    return records, background


@dataclass
class _Part:
    """One feature of the hybrid rows: which of its inputs each coalition takes from the record (its pattern), and
    its value under each pattern for every (record, background row) pair, as codes into `values`."""

    pattern: np.ndarray  # (coalitions,): an index into `codes`
    codes: np.ndarray  # (patterns, records, background rows)
    values: np.ndarray  # code -> value


def _parts(records: pd.DataFrame, background: pd.DataFrame, masks: np.ndarray,
           features: Features | None) -> tuple[list[str], list[_Part]]:
    """The feature frame's columns and, for each, its value tables. A feature made of inputs D takes, in coalition S,
    the record's value when D is in S, the background row's when D and S do not meet, and otherwise the value of
    a mix: one table per mix, made on the (record, background row) pairs (D has two or three inputs at most, so
    there are few). Everything `make` must see goes to it in one call (its cost is mostly per call)."""
    inputs = list(records.columns)
    n, b = len(records), len(background)
    depends = {c: (c,) for c in inputs} if features is None else features.inputs
    names = inputs if features is None else list(depends)
    used = {name: [inputs.index(c) for c in depends[name]] for name in names}
    bits = {name: (masks[:, used[name]] << np.arange(len(used[name]))).sum(axis=1) for name in names}
    mixes = sorted({frozenset(inputs[u[i]] for i in range(len(u)) if bit >> i & 1)
                    for name, u in used.items() for bit in np.unique(bits[name]) if 0 < bit < (1 << len(u)) - 1},
                   key=sorted)
    # The records, the background rows, then for each mix every (record, background row) pair, record-major, with the
    # mix's inputs from the record and the others from the background row.
    made = pd.DataFrame({c: np.concatenate([records[c].to_numpy(), background[c].to_numpy(), *(
        np.repeat(records[c].to_numpy(), b) if c in mix else np.tile(background[c].to_numpy(), n) for mix in mixes)])
        for c in inputs})
    if features is not None:
        made = features.make(made)
        names = list(made.columns)  # the order the model takes them in
    starts = np.cumsum([0, n, b, *([n * b] * len(mixes))])
    parts = []
    for name in names:
        column = made[name].to_numpy()
        present = np.unique(bits[name])
        tables = []
        for bit in present:
            if bit == (1 << len(used[name])) - 1:
                tables.append(column[:n, None])
            elif bit == 0:
                tables.append(column[None, n:n + b])
            else:
                at = 2 + mixes.index(frozenset(inputs[used[name][i]] for i in range(len(used[name])) if bit >> i & 1))
                tables.append(column[starts[at]:starts[at + 1]].reshape(n, b))
        codes, values = pd.factorize(np.concatenate([t.ravel() for t in tables]), use_na_sentinel=False)
        pieces = np.split(codes, np.cumsum([t.size for t in tables])[:-1])
        table = np.stack([np.broadcast_to(c.reshape(t.shape), (n, b)) for c, t in zip(pieces, tables)])
        parts.append(_Part(np.searchsorted(present, bits[name]), table, np.asarray(values)))
    return names, parts


def _distinct(parts: list[_Part], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(an id per hybrid position, shape coalitions x records x background rows, equal ids for equal feature rows;
    a position of each id)."""
    key = np.zeros(shape, dtype=np.int64)
    gathered = np.empty(shape, dtype=np.int64)
    radix = 1
    for part in parts:
        cardinality = len(part.values)
        if radix * cardinality >= 2**62:  # renumber the keys so far densely (fewer than 2^31) before going on
            key = pd.factorize(key.ravel())[0].reshape(shape)
            radix = int(key.max()) + 1
        # mode='clip' (the patterns are in range): with the default 'raise', numpy buffers `out`, 5x slower here
        np.take(part.codes * radix, part.pattern, axis=0, out=gathered, mode="clip")
        key += gathered
        radix *= cardinality
    ids, uniques = pd.factorize(key.ravel())
    first = np.empty(len(uniques), dtype=np.int64)
    first[ids] = np.arange(len(ids))  # a position of each distinct row (the last one written)
    return ids, first


def _rows(columns: list[str], parts: list[_Part], first: np.ndarray, shape: tuple[int, int, int]) -> pd.DataFrame:
    """The feature rows at `first` positions."""
    coalition, record, row = np.unravel_index(first, shape)
    return pd.DataFrame({name: part.values[part.codes[part.pattern[coalition], record, row]]
                         for name, part in zip(columns, parts)}, columns=columns)


def _encoded(columns: list[str], parts: list[_Part], features: Features) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per feature: (its encoded columns, their values for each of its distinct values), by one call of `encode` on
    a frame holding every distinct value of every feature (shorter columns repeated)."""
    length = max(len(part.values) for part in parts)
    padded = pd.DataFrame({name: np.resize(part.values, length) for name, part in zip(columns, parts)}, columns=columns)
    matrix = np.asarray(features.encode(padded), dtype=np.float64)  # type: ignore[misc]
    sources = np.asarray(features.encoded_from)
    return [(np.flatnonzero(sources == name), matrix[:len(part.values)][:, sources == name])
            for name, part in zip(columns, parts)]


def _encoded_rows(encoded: list[tuple[np.ndarray, np.ndarray]], parts: list[_Part], first: np.ndarray,
                  shape: tuple[int, int, int]) -> np.ndarray:
    """The encoded rows at `first` positions."""
    coalition, record, row = np.unravel_index(first, shape)
    out = np.empty((len(first), sum(len(columns) for columns, _ in encoded)))
    for (columns, table), part in zip(encoded, parts):
        out[:, columns] = table[part.codes[part.pattern[coalition], record, row]]
    return out


def coalition_values(output: Output, records: pd.DataFrame, background: pd.DataFrame, masks: np.ndarray,
                     chunk_positions: int, features: Features | None = None) -> np.ndarray:
    """v, shape (records, coalitions): each coalition's mean output over the background rows.

    A hybrid row takes each input from the record where the coalition holds it, else from the background row. Many
    hybrids are the same row: where a record and a background row agree on an input (the same country, no practice
    exams), across coalitions; across records, wherever they agree on the inputs a coalition takes from them; and
    in feature space, where different inputs make the same feature (a pass rate of 0 for any passed count when no
    exam was started). Each distinct feature row is scored once, then copied to every position that holds it.
    Records are taken a chunk at a time, about `chunk_positions` positions (records x coalitions x background rows)
    at once, so memory stays bounded whatever the number of records."""
    records, background = _aligned(records, background)
    m, b = masks.shape[0], len(background)
    step = max(1, chunk_positions // (m * b))
    values = np.empty((len(records), m))
    for start in range(0, len(records), step):
        chunk = records.iloc[start:start + step].reset_index(drop=True)
        shape = (m, len(chunk), b)
        columns, parts = _parts(chunk, background, masks, features)
        ids, first = _distinct(parts, shape)
        encoded = _encoded(columns, parts, features) if features is not None and features.encode else None
        out = np.empty(len(first))
        for at in range(0, len(first), SCORE_ROWS):
            rows = first[at:at + SCORE_ROWS]
            out[at:at + SCORE_ROWS] = output(_rows(columns, parts, rows, shape) if encoded is None
                                             else _encoded_rows(encoded, parts, rows, shape))
        values[start:start + len(chunk)] = out[ids].reshape(shape).mean(axis=2).T
    return values


def shapley_values(output: Output, records: pd.DataFrame, background: pd.DataFrame, features: Features | None = None,
                   chunk_positions: int = CHUNK_POSITIONS) -> tuple[np.ndarray, np.ndarray]:
    """(contributions of shape (records, inputs), coalition values of shape (records, coalitions)). The first
    coalition value is the base value (the mean output on the background), the last the output on the record.
    `output` takes the encoded matrix when `features.encode` is given, else feature rows (`features.make`'s columns),
    or raw input rows when `features` is None."""
    masks = coalitions(records.shape[1])
    values = coalition_values(output, records, background[list(records.columns)], masks, chunk_positions, features)
    return values @ shapley_matrix(masks), values
