"""Live feature signals (serving/core/metrics.py FeatureSignals): the vectorized counts of a big batch equal the
per-value counts of the same rows, for numeric deciles and categorical values alike."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
from prometheus_client import REGISTRY

from serving.core import metrics

SCHEMA = {"columns": {"country": {"type": "string"}, "minutes": {"type": "number"}, "days": {"type": "integer"}},
          "categorical": ["country"]}


def _model(name: str) -> SimpleNamespace:
    """A stored model's two facts FeatureSignals reads: its input schema and its reference sample."""
    rng = np.random.default_rng(1)
    countries = [f"c{i}" for i in range(30)]  # more than TOP_CATEGORIES: the rarest fall into __other__
    reference = pd.DataFrame({
        "country": rng.choice(countries, 5_000, p=np.arange(30, 0, -1) / 465),
        "minutes": rng.gamma(2.0, 50.0, 5_000),
        "days": rng.integers(0, 400, 5_000),
    })
    return SimpleNamespace(name=name, input_schema=SCHEMA, reference=lambda: reference)


def _counts(model: str, counter: str, label: str) -> Counter:
    out: Counter = Counter()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == counter and sample.labels.get("model") == model:
                out[(sample.labels["feature"], sample.labels[label])] += sample.value
    return out


def _expected(signals: metrics.FeatureSignals, frame: pd.DataFrame) -> tuple[Counter, Counter]:
    """The counts one value at a time: the decile a value falls in, the category or __other__."""
    deciles: Counter = Counter()
    for column, edges in signals.edges.items():
        for value in frame[column]:
            deciles[(column, str(int(np.searchsorted(edges, value, side="right"))))] += 1
    categories: Counter = Counter()
    for column, known in signals.categories.items():
        for value in frame[column]:
            categories[(column, value if value in known else metrics.OTHER)] += 1
    return deciles, categories


def test_big_and_small_batches_count_what_one_value_at_a_time_counts():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({
        "country": rng.choice([f"c{i}" for i in range(32)], 10_000),  # c30, c31: unknown to the reference
        "minutes": np.concatenate([rng.gamma(2.0, 50.0, 9_990), [0.0] * 5, [1e9] * 5]),
        "days": rng.integers(0, 500, 10_000),
    })
    for name, rows in (("big", 10_000), ("small", metrics.FeatureSignals.SMALL - 1)):
        signals = metrics.FeatureSignals(_model(f"signals-{name}"))
        part = frame.iloc[:rows]
        # Edges are values of the reference sample: put some rows exactly on them (a value on an edge goes up).
        part = part.assign(minutes=np.where(np.arange(rows) % 50 == 0, signals.edges["minutes"][3], part["minutes"]))
        signals.observe(part)
        signals.observe(part.iloc[:0])
        deciles, categories = _expected(signals, part)
        assert _counts(signals.model, "serving_feature_decile_total", "decile") == deciles, name
        assert _counts(signals.model, "serving_feature_category_total", "value") == categories, name
        assert sum(categories.values()) == rows and ("country", metrics.OTHER) in categories
