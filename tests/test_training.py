"""Training into a real temporary model store: every model read back whole, quality bars, versioning."""

from __future__ import annotations

import bentoml
import numpy as np
import pytest

from settings import DEFAULT_MODELS
from tests.conftest import run_cli
from training.schema import PURCHASE, input_schema
from training.store import PREDICTION, load_model

LABELS = {
    "purchase_lr": ("purchase", "lr", "candidate"),
    "purchase_gbm": ("purchase", "gbm", "production"),
    "drive_stats_a": ("drive_stats", "a", "production"),
    "drive_stats_b": ("drive_stats", "b", "candidate"),
}


def test_training_prints_a_metrics_table(trained_store):
    header = trained_store.splitlines()[0].split()
    assert header[:3] == ["tag", "roc_auc", "log_loss"]
    assert [line.split(":")[0] for line in trained_store.splitlines()[1:5]] == list(LABELS)


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_every_model_is_read_back_whole(trained_store, name):
    model = load_model(f"{name}:latest")
    task, variant, stage = LABELS[name]
    assert model.labels == {"task": task, "variant": variant, "stage": stage, "source": "synthetic"}
    meta = model.metadata
    assert {"roc_auc", "log_loss", "precision", "recall", "calibration"} <= set(meta["metrics"])
    assert meta["training_rows"] > 10_000 and len(meta["data_fingerprint"]) == 16
    assert {"scikit-learn", "pandas", "bentoml"} <= set(meta["versions"])
    if task == "purchase":
        assert meta["input_schema"] == input_schema(PURCHASE)
        assert meta["input_schema"]["columns"]["days_on_platform"] == {"type": "integer", "minimum": 0, "maximum": 1_000_000}
    reference = model.reference()
    assert len(reference) == 5_000 and set(model.input_schema["columns"]) | {PREDICTION} == set(reference.columns)
    # the loaded pipeline predicts exactly what the fitted one predicted before it was saved
    np.testing.assert_allclose(model.predict_proba(reference), reference[PREDICTION], rtol=0, atol=1e-12)
    # The calibration check (training/calibration.py): its figures, the held-out sample it ran on, the calibrator
    check = meta["calibrator"]
    assert check["method"] in ("none", "isotonic", "platt") and check["rows"] == meta["test_rows"]
    assert set(check["ece_out_of_fold"]) == {"isotonic", "platt"} and "criterion" in check
    assert model.calibrator().method == check["method"]
    if check["method"] != "none":
        assert min(check["ece_out_of_fold"].values()) < check["ece"]
    holdout = model.holdout()
    assert list(holdout.columns) == ["probability", "label"] and len(holdout) == meta["test_rows"]
    assert holdout["label"].mean() == pytest.approx(meta["metrics"]["positive_rate"], abs=1e-4)
    assert meta["metrics"]["accuracy"] == pytest.approx(
        ((holdout["probability"] >= model.threshold) == holdout["label"]).mean(), abs=1e-4)
    if task == "drive_stats":
        assert model.bound is not None and len(model.bound) == 1_000
        assert model.predict_proba(model.bound).shape == (1_000,)
    else:
        assert model.bound is None


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_models_reach_quality_bar_on_held_out_data(trained_store, name):
    metrics = load_model(name).metadata["metrics"]
    assert metrics["roc_auc"] >= 0.80, metrics
    assert 0 < metrics["precision"] <= 1 and 0 < metrics["recall"] <= 1


def test_boosted_trees_beat_the_linear_model(trained_store):
    gbm = load_model("purchase_gbm").metadata["metrics"]
    lr = load_model("purchase_lr").metadata["metrics"]
    assert gbm["roc_auc"] > lr["roc_auc"] and gbm["log_loss"] < lr["log_loss"]


def test_retraining_adds_a_version_and_old_ones_stay_loadable(trained_store):
    first = load_model("purchase_lr:latest").version
    run_cli("-m", "training.train", "--models", "purchase_lr", "--seed", "11")
    second = load_model("purchase_lr:latest")
    assert second.version != first and second.metadata["seed"] == 11
    versions = {str(m.tag.version) for m in bentoml.models.list("purchase_lr")}
    assert {first, second.version} <= versions
    assert load_model(f"purchase_lr:{first}").metadata["seed"] == 42


def test_if_missing_trains_nothing_when_the_store_is_full(trained_store):
    result = run_cli("-m", "training.train", "--if-missing")
    assert "model store already holds" in result.stdout
