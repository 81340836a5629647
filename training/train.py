"""Train both variants of both tasks, evaluate them on a held-out split and save them to the BentoML model store.

    python -m training.train                     # the four default models on synthetic data
    python -m training.train --if-missing        # only when the store lacks one of them (what `make serve` runs)
    python -m training.train --task purchase --data students.csv    # a candidate; production unchanged
    python -m training.train --task purchase --data students.csv --promote   # production now, audited

Training proposes (training/propose.py): on a store whose task has a production model, the run's best new
version becomes the candidate, and one line per task compares it with production on the same held-out rows.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from settings import get_settings
from training.data import fingerprint, generate_drive_stats, generate_purchase, latest_fleet_day, load_dataset
from training.calibration import check_calibration
from training.evaluate import best_threshold, evaluate
from training.features import build_features
from training.schema import DRIVE_STATS, PURCHASE, TASKS, Task, input_schema
from training.propose import NewVersion, propose
from training.store import PREDICTION, has_model, save_model
from training.validation import DataError

REFERENCE_ROWS = 5_000
TEST_SHARE = 0.2
IMPORTANCE_ROWS = 5_000
IMPORTANCE_REPEATS = 3
# An input is one of the model's most important when shuffling it costs at least this share of the top input's
# ROC AUC drop, and at least IMPORTANT_MIN_DROP of AUC: the drift verdict calls its drift `drift`, not `warning`.
# For purchase_gbm that is minutes_watched, days_on_platform and the two practice-exam counts (country: 7% of top).
IMPORTANT_SHARE_OF_TOP = 0.1
IMPORTANT_MIN_DROP = 0.005


def input_importance(pipeline: Pipeline, task: Task, raw_test: pd.DataFrame, y_test: np.ndarray, seed: int) -> dict:
    """Permutation importance of each raw input on the held-out split: the drop in ROC AUC when that input's values
    are shuffled (features rebuilt from the shuffled inputs, so derived features move with their input)."""

    def auc(estimator: Pipeline, frame: pd.DataFrame, y: np.ndarray) -> float:
        return float(roc_auc_score(y, estimator.predict_proba(build_features(task.name, frame))[:, 1]))

    # One OpenMP thread, as serving does (serving/core/predictor.py): on busy cores libgomp's spinning made the 36
    # predictions of a boosted model take 37 s instead of a few.
    with threadpool_limits(1, user_api="openmp"):
        result = permutation_importance(
            pipeline, raw_test, y_test, scoring=auc, n_repeats=IMPORTANCE_REPEATS, random_state=seed,
            max_samples=min(IMPORTANCE_ROWS, len(raw_test)),
        )
    means = dict(zip(raw_test.columns, (round(float(v), 5) for v in result.importances_mean)))
    stds = dict(zip(raw_test.columns, (round(float(v), 5) for v in result.importances_std)))
    top = max(means.values())
    ranked = sorted(means, key=means.get, reverse=True)
    important = [c for c in ranked if means[c] >= max(IMPORTANT_MIN_DROP, IMPORTANT_SHARE_OF_TOP * top)]
    return {
        "method": f"permutation importance: ROC AUC drop on {min(IMPORTANCE_ROWS, len(raw_test))} held-out rows, "
        f"{IMPORTANCE_REPEATS} repeats",
        "scores": {c: means[c] for c in ranked},
        "std": {c: stds[c] for c in ranked},
        "important": important,
    }


def linear(task: Task, seed: int) -> Pipeline:
    features = build_features(task.name, _example_frame(task))
    numeric = [c for c in features.columns if c not in task.categorical]
    encode = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(task.categorical)),
            ("numeric", StandardScaler(), numeric),
        ]
    )
    return Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=2_000, C=1.0, random_state=seed))])


# Features whose effect the data's story (training/data.py) says only rises: the trees are held to it, so more
# minutes watched never lower a student's purchase probability at fixed everything else (tests/test_behavior.py).
# Unconstrained, the boosted model dipped by up to 0.2 for some students between neighbouring minute levels.
INCREASING: dict[str, tuple[str, ...]] = {"purchase": ("log_minutes_watched", "log_minutes_per_day")}


def _monotonic(task: Task) -> list[int] | None:
    increasing = INCREASING.get(task.name)
    if not increasing:
        return None
    # The column order the trees see: categorical columns first, then the rest (ColumnTransformer's remainder).
    features = [c for c in build_features(task.name, _example_frame(task)).columns if c not in task.categorical]
    return [0] * len(task.categorical) + [1 if c in increasing else 0 for c in features]


def boosted(task: Task, seed: int) -> Pipeline:
    # Unknown categories become NaN, which the trees treat as missing rather than failing.
    encode = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
                list(task.categorical),
            )
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingClassifier(
        max_iter=250,
        learning_rate=0.08,
        max_leaf_nodes=31,
        categorical_features=list(range(len(task.categorical))),
        monotonic_cst=_monotonic(task),
        early_stopping=True,
        random_state=seed,
    )
    return Pipeline([("encode", encode), ("model", model)])


def _example_frame(task: Task) -> pd.DataFrame:
    record = {name: field.examples[0] for name, field in task.record.model_fields.items()}
    return pd.DataFrame([record])


@dataclass(frozen=True)
class Variant:
    name: str
    task: Task
    variant: str
    stage: str
    build: Callable[[Task, int], Pipeline]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("purchase_lr", PURCHASE, "lr", "candidate", linear),
        Variant("purchase_gbm", PURCHASE, "gbm", "production", boosted),
        Variant("drive_stats_a", DRIVE_STATS, "a", "production", linear),
        Variant("drive_stats_b", DRIVE_STATS, "b", "candidate", boosted),
    )
}


@dataclass(frozen=True)
class Split:
    raw_train: pd.DataFrame
    raw_test: pd.DataFrame
    y_train: np.ndarray
    y_test: np.ndarray


def split(task: Task, data: pd.DataFrame, seed: int) -> Split:
    """The training and held-out rows; every variant of a task in a run shares them."""
    y = data[task.label].to_numpy()
    return Split(*train_test_split(data[task.columns], y, test_size=TEST_SHARE, random_state=seed, stratify=y))


def fit_variant(variant: Variant, rows: Split, data: pd.DataFrame, seed: int, source: str,
                bound: pd.DataFrame | None) -> dict:
    """Fit on the training split, evaluate on the held-out split, save to the store; return the metrics row."""
    task = variant.task
    raw_train, raw_test, y_train, y_test = rows.raw_train, rows.raw_test, rows.y_train, rows.y_test
    pipeline = variant.build(task, seed)
    if task.name == "drive_stats":
        # Rare positives: choose the threshold on a validation part of the training split, never on the test split.
        fit_raw, val_raw, fit_y, val_y = train_test_split(
            raw_train, y_train, test_size=0.25, random_state=seed, stratify=y_train
        )
        pipeline.fit(build_features(task.name, fit_raw), fit_y)
        threshold = best_threshold(val_y, pipeline.predict_proba(build_features(task.name, val_raw))[:, 1])
        pipeline.fit(build_features(task.name, raw_train), y_train)
    else:
        threshold = 0.5
        pipeline.fit(build_features(task.name, raw_train), y_train)
    proba = pipeline.predict_proba(build_features(task.name, raw_test))[:, 1]
    metrics = evaluate(y_test, proba, threshold)
    calibration = check_calibration(y_test, proba, seed)
    importance = input_importance(pipeline, task, raw_test, y_test, seed)

    reference = raw_train.sample(n=min(REFERENCE_ROWS, len(raw_train)), random_state=seed).reset_index(drop=True)
    reference[PREDICTION] = pipeline.predict_proba(build_features(task.name, reference))[:, 1]
    tag = save_model(
        variant.name,
        pipeline,
        labels={"task": task.name, "variant": variant.variant, "stage": variant.stage, "source": source},
        metadata={
            "task": task.name,
            "metrics": metrics,
            "threshold": threshold,
            "input_schema": input_schema(task),
            "training_rows": int(len(raw_train)),
            "test_rows": int(len(raw_test)),
            "data_fingerprint": fingerprint(data),
            "seed": seed,
            "algorithm": type(pipeline[-1]).__name__,
            "feature_importance": importance,
            "calibrator": calibration.metadata(),
        },
        reference=reference,
        bound=bound,
        holdout=pd.DataFrame({"probability": proba, "label": y_test.astype(np.int64)}),
        calibrator=calibration.calibrator,
    )
    return {"tag": tag, **{k: v for k, v in metrics.items() if k != "calibration"}, "ece": metrics["calibration"]["ece"],
            "calibrator": calibration.method}


def task_data(task: Task, seed: int, data_path: str | None) -> tuple[pd.DataFrame, str]:
    settings = get_settings()
    if data_path:
        return load_dataset(data_path, task), "file"
    if task.name == "purchase":
        return generate_purchase(settings.purchase_rows, seed), "synthetic"
    return generate_drive_stats(settings.drive_rows, seed), "synthetic"


def print_table(rows: list[dict]) -> None:
    columns = ["tag", "roc_auc", "log_loss", "brier", "precision", "recall", "threshold", "ece", "calibrator",
               "positive_rate"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def train(names: list[str], seed: int, data_path: str | None = None, promote_best: bool = False
          ) -> tuple[list[dict], list[str]]:
    """Fit, evaluate and save each model; then each task's new versions take their stages (training/propose.py).
    Returns the metrics rows and one line per task saying which stage its new versions took."""
    datasets: dict[str, tuple[pd.DataFrame, str, Split]] = {}
    rows, proposed = [], []
    new: dict[str, list[NewVersion]] = {}
    progress = tqdm(names, desc="training", unit="model", file=sys.stderr)
    for name in progress:
        variant = VARIANTS[name]
        progress.set_postfix_str(name)
        if variant.task.name not in datasets:
            data, source = task_data(variant.task, seed, data_path)
            datasets[variant.task.name] = (data, source, split(variant.task, data, seed))
        data, source, rows_split = datasets[variant.task.name]
        bound = latest_fleet_day(get_settings().fleet_size, seed) if variant.task.name == "drive_stats" else None
        row = fit_variant(variant, rows_split, data, seed, source, bound)
        new.setdefault(variant.task.name, []).append(NewVersion(row["tag"], variant.stage, row))
        rows.append(row)
    for task, versions in new.items():
        held_out = datasets[task][2]
        proposed.append(propose(task, versions, held_out.raw_test, held_out.y_test, promote_best=promote_best))
    return rows, proposed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["all", *TASKS], default="all")
    parser.add_argument("--models", nargs="+", choices=list(VARIANTS), help="train only these models")
    parser.add_argument("--data", help="a CSV or Parquet file of labelled records instead of synthetic data")
    parser.add_argument("--seed", type=int, default=get_settings().seed)
    parser.add_argument("--if-missing", action="store_true", help="train only models the store does not have")
    parser.add_argument("--promote", action="store_true",
                        help="give production to the run's best new version now (audited) instead of proposing it")
    args = parser.parse_args(argv)

    names = args.models or [n for n, v in VARIANTS.items() if args.task in ("all", v.task.name)]
    if args.data and len({VARIANTS[n].task.name for n in names}) > 1:
        parser.error("--data holds one task's records: add --task purchase or --task drive_stats")
    if args.if_missing:
        names = [n for n in names if not has_model(n)]
        if not names:
            print("model store already holds: " + ", ".join(VARIANTS))
            return 0
    try:
        rows, proposed = train(names, args.seed, args.data, promote_best=args.promote)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows)
    for line in proposed:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
