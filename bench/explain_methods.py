"""The two candidate methods for per-input contributions, measured on the served purchase_gbm (issue 25):

- exact Shapley values in the input space (training/explain): all 2^7 = 128 coalitions of the seven seed inputs,
  absent inputs from B background rows of the model's reference sample;
- shap's TreeExplainer (interventional, the same background) on the eight encoded features the trees see, mapped
  back to the seven inputs: a feature made from one input goes to it, a feature made from two inputs (exam pass
  rate, minutes per day, minutes per exam) is split evenly between them.

For each: CPU time per record (one OpenMP thread, as serving), additivity (base + contributions - model output), and
the distance to the exact values. Then the exact method's own error from the background's size and how it is drawn (a seeded random sample, or
the rows at evenly spaced quantiles of the reference's predictions): B rows against the whole reference sample
(5,000 rows) as the truth.

    BENTOML_HOME=<a trained store> .venv/bin/python -m bench.explain_methods [--records 200] [--out bench/results]

Needs shap (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from bench.harness import train_if_missing
from training.explain.explainer import Explainer
from training.features import build_features
from training.store import load_model


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dependencies(task: str, inputs: list[str], sample: pd.DataFrame, features: list[str]) -> np.ndarray:
    """D[f, i] = 1 when encoded feature f changes with input i (found by shuffling that input alone)."""
    base = build_features(task, sample)[features].to_numpy()
    rng = np.random.default_rng(0)
    matrix = np.zeros((len(features), len(inputs)))
    for i, column in enumerate(inputs):
        moved = sample.copy()
        moved[column] = rng.permutation(moved[column].to_numpy())
        changed = build_features(task, moved)[features].to_numpy() != base
        matrix[:, i] = changed.any(axis=0)
    return matrix


def tree_candidate(model, explainer: Explainer, records: pd.DataFrame) -> dict:
    import shap

    pipeline = model.estimator
    encode, trees = pipeline[:-1], pipeline[-1]
    features = list(build_features(model.task, records.head(1)).columns)
    background = encode.transform(build_features(model.task, explainer.background))
    encoded = encode.transform(build_features(model.task, records))
    mark = cpu_seconds()
    tree = shap.TreeExplainer(trees, data=background, feature_perturbation="interventional", model_output="raw")
    values = tree.shap_values(encoded, check_additivity=False)
    seconds = cpu_seconds() - mark
    raw = trees.decision_function(encoded)
    additivity = np.abs(np.asarray(tree.expected_value).reshape(-1)[0] + values.sum(axis=1) - raw)
    names = list(encode.get_feature_names_out())
    d = dependencies(model.task, explainer.inputs, model.reference()[explainer.inputs].head(2000), names)
    split = d / d.sum(axis=1, keepdims=True)
    return {"seconds": seconds, "values": values @ split, "additivity": additivity, "features": names,
            "shared_features": [n for n, row in zip(names, d) if row.sum() > 1], "feature_count": len(features)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="purchase_gbm")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--truth-records", type=int, default=10)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    train_if_missing(args.model)
    model = load_model(args.model)
    explainer = Explainer(model, background_rows=100)
    records = model.reference()[explainer.inputs].iloc[-args.records:].reset_index(drop=True)
    result: dict = {"model": model.tag, "records": len(records), "loadavg": open("/proc/loadavg").read().split()[:3]}
    with threadpool_limits(1, user_api="openmp"):
        explainer.explain(records.head(2), "log_odds")  # warm
        mark = cpu_seconds()
        exact = explainer.explain(records, "log_odds")
        exact_seconds = cpu_seconds() - mark
        try:
            tree = tree_candidate(model, explainer, records)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is a result too
            tree = {"error": f"{type(exc).__name__}: {exc}"}
        result["exact"] = {
            "cpu_ms_per_record": 1e3 * exact_seconds / len(records),
            "additivity_max": float(np.abs(exact.base_value + exact.contributions.sum(1) - exact.values).max()),
            "output": "log_odds",
        }
        if "error" not in tree:
            diff = np.abs(tree["values"] - exact.contributions)
            result["tree"] = {
                "cpu_ms_per_record": 1e3 * tree["seconds"] / len(records),
                "additivity_max": float(tree["additivity"].max()),
                "additivity_median": float(np.median(tree["additivity"])),
                "max_abs_difference_to_exact": float(diff.max()),
                "mean_abs_difference_to_exact": {c: float(v) for c, v in zip(explainer.inputs, diff.mean(axis=0))},
                "mean_abs_exact": {c: float(v) for c, v in zip(explainer.inputs, np.abs(exact.contributions).mean(0))},
                "features_from_two_inputs": tree["shared_features"],
            }
        else:
            result["tree"] = tree
        # The exact method's sampling error: B background rows against the whole reference as the truth.
        truth_records = records.head(args.truth_records)
        truth = Explainer(model, background_rows=len(model.reference())).explain(truth_records)
        errors = {}
        for rows, how in [(r, h) for r in (25, 50, 100, 200) for h in ("random", "quantiles")]:
            mark = cpu_seconds()
            estimate = Explainer(model, background_rows=rows, how=how).explain(truth_records)
            seconds = cpu_seconds() - mark
            errors[f"{rows} {how}"] = {
                "max_abs_error": float(np.abs(estimate.contributions - truth.contributions).max()),
                "mean_abs_error": float(np.abs(estimate.contributions - truth.contributions).mean()),
                "base_value_error": abs(estimate.base_value - truth.base_value),
                "cpu_ms_per_record": 1e3 * seconds / len(truth_records),
            }
        result["background_rows"] = {"truth_rows": len(model.reference()), "output": "probability", "by_rows": errors}
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "explain_methods.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
