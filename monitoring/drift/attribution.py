"""What the model relies on, before and now: each input's mean absolute contribution (exact Shapley values,
training/explain) over a sample of the reference and a sample of the window, side by side. A feature drifting is a
fact about the data; the share of the answer it carries moving is what the drift did to the model.

Both samples are explained against the same background (the model's own reference sample), in probability.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

from training.explain.explainer import Explainer
from training.store import load_model


def global_view(tag: str, reference: pd.DataFrame, window: pd.DataFrame, rows: int,
                seed: int = 0) -> dict[str, Any]:
    """Mean absolute contribution per input on `rows` rows of each frame (all of them when fewer)."""
    model = load_model(tag)  # with its pipeline: the job otherwise never unpickles it
    explainer = Explainer(model)
    sides = {}
    with threadpool_limits(1, user_api="openmp"):
        for side, frame in (("reference", reference), ("window", window)):
            sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
            sides[side] = (len(sample), explainer.explain(sample[explainer.inputs].pipe(_as_model_types, model)))
    reference_means, window_means = sides["reference"][1].mean_absolute(), sides["window"][1].mean_absolute()
    order = sorted(reference_means, key=lambda c: -reference_means[c])
    return {
        "output": "probability",
        "method": sides["reference"][1].method,
        "rows": {side: count for side, (count, _) in sides.items()},
        "features": {c: {"reference": reference_means[c], "window": window_means[c],
                         "change": window_means[c] - reference_means[c]} for c in order},
    }


def _as_model_types(frame: pd.DataFrame, model) -> pd.DataFrame:
    """The drift frames type every number as float; the model's integer inputs go back to integers."""
    out = frame.copy()
    for column, spec in model.input_schema["columns"].items():
        if spec["type"] == "integer":
            out[column] = out[column].round().astype("int64")
    return out
