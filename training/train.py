"""Train both variants of both tasks, evaluate them on a held-out split and save them to the BentoML model store.

    python -m training.train                     # the four default models on synthetic data
    python -m training.train --if-missing        # only when the store lacks one of them (what `make serve` runs)
    python -m training.train --task purchase --data students.csv
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
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from tqdm import tqdm

from settings import DEFAULT_MODELS, get_settings
from training.data import fingerprint, generate_drive_stats, generate_purchase, latest_fleet_day, load_dataset
from training.evaluate import best_threshold, evaluate
from training.features import build_features
from training.schema import DRIVE_STATS, PURCHASE, TASKS, Task, input_schema
from training.promote import promote
from training.store import PREDICTION, has_model, save_model
from training.validation import DataError

REFERENCE_ROWS = 5_000
TEST_SHARE = 0.2


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


def fit_variant(variant: Variant, data: pd.DataFrame, seed: int, source: str, bound: pd.DataFrame | None) -> dict:
    """Fit on the training split, evaluate on the held-out split, save to the store; return the metrics row."""
    task = variant.task
    raw = data[task.columns]
    y = data[task.label].to_numpy()
    raw_train, raw_test, y_train, y_test = train_test_split(
        raw, y, test_size=TEST_SHARE, random_state=seed, stratify=y
    )
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
        },
        reference=reference,
        bound=bound,
    )
    return {"tag": tag, **{k: v for k, v in metrics.items() if k != "calibration"}, "ece": metrics["calibration"]["ece"]}


def task_data(task: Task, seed: int, data_path: str | None) -> tuple[pd.DataFrame, str]:
    settings = get_settings()
    if data_path:
        return load_dataset(data_path, task), "file"
    if task.name == "purchase":
        return generate_purchase(settings.purchase_rows, seed), "synthetic"
    return generate_drive_stats(settings.drive_rows, seed), "synthetic"


def print_table(rows: list[dict]) -> None:
    columns = ["tag", "roc_auc", "log_loss", "brier", "precision", "recall", "threshold", "ece", "positive_rate"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def train(names: list[str], seed: int, data_path: str | None = None) -> list[dict]:
    datasets: dict[str, tuple[pd.DataFrame, str]] = {}
    rows = []
    progress = tqdm(names, desc="training", unit="model", file=sys.stderr)
    for name in progress:
        variant = VARIANTS[name]
        progress.set_postfix_str(name)
        if variant.task.name not in datasets:
            datasets[variant.task.name] = task_data(variant.task, seed, data_path)
        data, source = datasets[variant.task.name]
        bound = latest_fleet_day(get_settings().fleet_size, seed) if variant.task.name == "drive_stats" else None
        row = fit_variant(variant, data, seed, source, bound)
        # The new version takes its variant's stage through the audited promotion (allowed to change the schema:
        # the training data decides it).
        promote(row["tag"], variant.stage, reason="trained", allow_schema_change=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["all", *TASKS], default="all")
    parser.add_argument("--models", nargs="+", choices=list(VARIANTS), help="train only these models")
    parser.add_argument("--data", help="a CSV or Parquet file of labelled records instead of synthetic data")
    parser.add_argument("--seed", type=int, default=get_settings().seed)
    parser.add_argument("--if-missing", action="store_true", help="train only models the store does not have")
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
        rows = train(names, args.seed, args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
