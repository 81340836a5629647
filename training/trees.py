"""A fitted HistGradientBoostingClassifier's trees, walked by one compiled loop per call.

scikit-learn walks the trees one Cython call per tree (`_predict_iterations`), each copying a whole node record at
every step down; between the calls, back in Python, the thread takes the GIL again. `Forest` holds the same nodes
as flat columns over all trees and walks every tree for every row in one numba-compiled function that holds no GIL
from the first tree to the last, adding the leaf values tree by tree in the estimator's own order, so the sums are
bit for bit scikit-learn's. 10,000 rows of `purchase_gbm` on one thread, features included: 34.1 ms against 43.9 ms
(docs/performance.md). The walk follows `_predict_one_from_raw_data` of scikit-learn's `_predictor.pyx` (the version
pinned in pyproject.toml): a missing value goes where the node sends missing values, a category is looked up in the
node's bitset of categories going left, then in the feature's known categories, and an unknown category is treated
as missing. training/inference.py uses it only where it answers like the estimator on a sample.

numba's own compiled-code cache keeps the compilation (about 0.7 s) to a process's first load; where no cache folder
is writable the function is compiled uncached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

_SIGNATURE = ("void(float64[:, :], int64[:, :], int64[:], float64[:], int64[:], int64[:], uint8[:], uint8[:], "
              "uint8[:], float64[:], int64[:], uint32[:, :], uint32[:, :], int64[:], float64[:, :])")


def _walk(rows, roots, feature, threshold, left, right, is_leaf, is_categorical, missing_left, value, bitset,
          left_bitsets, known_bitsets, known_row, raw):  # pragma: no cover - compiled; tested through Forest
    # Tree by tree, then row by row: one tree's nodes stay in cache while every row walks it.
    for iteration in range(roots.shape[0]):
        for k in range(roots.shape[1]):
            root = roots[iteration, k]
            for i in range(rows.shape[0]):
                node = root
                while not is_leaf[node]:
                    data = rows[i, feature[node]]
                    if np.isnan(data):
                        go_left = missing_left[node] != 0
                    elif is_categorical[node]:
                        if data < 0:
                            go_left = missing_left[node] != 0
                        else:
                            category = np.uint8(data)
                            word, bit = category >> 5, category & 31
                            if (left_bitsets[bitset[node], word] >> bit) & 1:
                                go_left = True
                            elif (known_bitsets[known_row[feature[node]], word] >> bit) & 1:
                                go_left = False
                            else:
                                go_left = missing_left[node] != 0
                    else:
                        go_left = data <= threshold[node]
                    node = left[node] if go_left else right[node]
                raw[i, k] += value[node]


def _compile() -> Any:
    try:
        return numba.njit(_SIGNATURE, nogil=True, cache=True)(_walk)
    except RuntimeError:  # "cannot cache function": no writable folder beside the module or in the user's cache
        return numba.njit(_SIGNATURE, nogil=True)(_walk)


_KERNEL = _compile()


@dataclass(frozen=True)
class Forest:
    """The trees of one fitted HistGradientBoostingClassifier as flat node columns (indices are global)."""

    roots: np.ndarray  # (iterations, trees per iteration): each tree's first node
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    is_categorical: np.ndarray
    missing_left: np.ndarray
    value: np.ndarray
    bitset: np.ndarray  # the node's row in left_bitsets
    left_bitsets: np.ndarray
    known_bitsets: np.ndarray
    known_row: np.ndarray  # feature -> its row in known_bitsets
    baseline: np.ndarray  # (1, trees per iteration)

    @classmethod
    def of(cls, estimator: Any) -> Forest:
        predictors = [tree for iteration in estimator._predictors for tree in iteration]
        nodes = np.concatenate([tree.nodes for tree in predictors])
        sizes = [len(tree.nodes) for tree in predictors]
        starts = np.cumsum([0, *sizes[:-1]]).astype(np.int64)  # each tree's first node in the flat columns
        first = np.repeat(starts, sizes)
        bitsets = [tree.raw_left_cat_bitsets for tree in predictors]
        first_bitset = np.repeat(np.cumsum([0, *[len(b) for b in bitsets[:-1]]]), sizes).astype(np.int64)
        known_bitsets, known_row = estimator._bin_mapper.make_known_categories_bitsets()
        return cls(
            roots=starts.reshape(len(estimator._predictors), -1),
            feature=nodes["feature_idx"].astype(np.int64),
            threshold=nodes["num_threshold"].astype(np.float64),
            left=nodes["left"].astype(np.int64) + first,
            right=nodes["right"].astype(np.int64) + first,
            is_leaf=nodes["is_leaf"].astype(np.uint8),
            is_categorical=nodes["is_categorical"].astype(np.uint8),
            missing_left=nodes["missing_go_to_left"].astype(np.uint8),
            value=nodes["value"].astype(np.float64),
            bitset=nodes["bitset_idx"].astype(np.int64) + first_bitset,
            left_bitsets=np.ascontiguousarray(np.concatenate(bitsets).astype(np.uint32).reshape(-1, 8)),
            known_bitsets=np.ascontiguousarray(known_bitsets.astype(np.uint32).reshape(-1, 8)),
            known_row=known_row.astype(np.int64),
            baseline=np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1, -1),
        )

    def raw_predict(self, rows: np.ndarray) -> np.ndarray:
        """The estimator's raw predictions (baseline plus every tree) for rows of its preprocessed inputs."""
        raw = np.zeros((rows.shape[0], self.roots.shape[1]), dtype=np.float64, order="F")
        raw += self.baseline
        _KERNEL(np.asarray(rows, dtype=np.float64), self.roots, self.feature, self.threshold, self.left, self.right,
                self.is_leaf, self.is_categorical, self.missing_left, self.value, self.bitset, self.left_bitsets,
                self.known_bitsets, self.known_row, raw)
        return raw
