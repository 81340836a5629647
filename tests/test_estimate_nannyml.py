"""The estimator against NannyML 0.13.1's CBPE, the reference implementation, on the same fixture: purchase_gbm's
held-out split as the reference, six hours of traffic as the analysis data (three like training, three drifted into
a region where the model is worse), hourly chunks.

NannyML runs in its own virtualenv (bench/nannyml_reference.py; built on first use, about 1.5 minutes from the
registries, then cached in the gitignored bench/.nannyml-venv). Tolerances:
- estimates: 1e-6 (measured: ROC AUC within 3e-9, the confusion-matrix metrics within 1e-14), given the same
  calibration decision; the store's own decision is also compared;
- standard errors: precision, recall and accuracy within 10% of NannyML's on the undrifted chunks (the same
  binomial formula; NannyML takes the class balance from the reference, this estimator from the chunk); ROC AUC's is
  Hanley & McNeil's, 1.4 times NannyML's on undrifted chunks and 2 times on drifted ones, by design
  (tests/test_estimate.py checks that it covers the realized AUC's spread; NannyML's is below that spread).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import nannyml_reference
from monitoring.quality.cbpe import METRICS
from monitoring.quality.estimate import ModelCalibration, estimate_quality
from tests.test_estimate import drifted_students
from training.calibration import Calibrator, fit_isotonic
from training.data import generate_purchase
from training.schema import PURCHASE
from training.store import load_model

pytestmark = pytest.mark.slow

HOURS_NORMAL, HOURS_DRIFTED, ROWS_PER_HOUR = 3, 3, 4_000


@pytest.fixture(scope="module")
def fixture(trained_store):
    gbm = load_model("purchase_gbm")
    holdout = gbm.holdout()
    reference = pd.DataFrame({"y_pred_proba": holdout["probability"], "y_true": holdout["label"],
                              "y_pred": (holdout["probability"] >= gbm.threshold).astype(int)})
    students = pd.concat([generate_purchase(HOURS_NORMAL * ROWS_PER_HOUR, seed=31),
                          drifted_students(HOURS_DRIFTED * ROWS_PER_HOUR, seed=32)], ignore_index=True)
    proba = gbm.predict_proba(students[PURCHASE.columns])
    ts = pd.Timestamp("2026-11-23T00:00:00") + pd.to_timedelta(np.arange(len(proba)) * (3600 / ROWS_PER_HOUR), "s")
    analysis = pd.DataFrame({"y_pred_proba": proba, "y_pred": (proba >= gbm.threshold).astype(int), "timestamp": ts})
    nannyml = nannyml_reference.cbpe(reference, analysis, chunk_period="h")
    predictions = pd.DataFrame({"model_name": gbm.name, "model_version": gbm.version, "probability": proba,
                                "ts": ts.tz_localize("UTC")})
    return gbm, holdout, predictions, nannyml


def _ours(gbm, predictions, calibrator: Calibrator):
    return estimate_quality(predictions, {(gbm.name, gbm.version): ModelCalibration(gbm.threshold, calibrator)},
                            chunk="1h")


def test_estimates_agree_with_nannyml_chunk_by_chunk(fixture):
    gbm, holdout, predictions, nannyml = fixture
    # NannyML's own calibration decision, with its calibrator (isotonic on the reference)
    same = (fit_isotonic(holdout["probability"].to_numpy(), holdout["label"].to_numpy())
            if nannyml["needs_calibration"] else Calibrator())
    ours = _ours(gbm, predictions, same)
    assert len(ours) == len(nannyml["chunks"]) == HOURS_NORMAL + HOURS_DRIFTED
    worst = {m: 0.0 for m in METRICS}
    for mine, theirs in zip(ours, nannyml["chunks"]):
        assert mine.group["chunk"].tz_localize(None) == pd.Timestamp(theirs["start"])
        assert mine.rows == theirs["end_index"] - theirs["start_index"] + 1 == ROWS_PER_HOUR
        for m in METRICS:
            difference = abs(mine.metrics[m].value - theirs[m]["value"])
            worst[m] = max(worst[m], difference)
            assert difference < 1e-6, (m, mine.group["chunk"], mine.metrics[m].value, theirs[m]["value"])
    print(f"\nNannyML needs_calibration={nannyml['needs_calibration']}; largest |ours - NannyML| per metric: "
          + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()) + f"; NannyML's seconds: {nannyml['seconds']}")

    # The drifted hours: both say quality dropped
    for m, drop in (("roc_auc", 0.1), ("recall", 0.2)):
        normal = np.mean([c[m]["value"] for c in nannyml["chunks"][:HOURS_NORMAL]])
        drifted = np.mean([c[m]["value"] for c in nannyml["chunks"][HOURS_NORMAL:]])
        assert drifted < normal - drop, (m, normal, drifted)


def test_the_stores_calibration_decision_gives_nannymls_estimates(fixture):
    gbm, _, predictions, nannyml = fixture
    stored = gbm.calibrator()
    print(f"\ncalibrator stored with {gbm.tag}: {stored.method}; NannyML calibrates: {nannyml['needs_calibration']}")
    assert (stored.method != "none") == nannyml["needs_calibration"]
    for mine, theirs in zip(_ours(gbm, predictions, stored), nannyml["chunks"]):
        for m in METRICS:  # isotonic both sides: the same; Platt here would differ by the calibrators' gap only
            assert mine.metrics[m].value == pytest.approx(theirs[m]["value"], abs=1e-6 if stored.method == "isotonic" else 0.01)


def test_standard_errors_beside_nannymls_sampling_errors(fixture):
    gbm, _, predictions, nannyml = fixture
    ours = _ours(gbm, predictions, gbm.calibrator())
    ratios = {m: [mine.metrics[m].standard_error / theirs[m]["sampling_error"]
                  for mine, theirs in zip(ours, nannyml["chunks"])] for m in METRICS}
    print("\nstandard error / NannyML's sampling error, undrifted | drifted hours: " + "; ".join(
        f"{m} {min(r[:HOURS_NORMAL]):.2f}-{max(r[:HOURS_NORMAL]):.2f} | {min(r[HOURS_NORMAL:]):.2f}-{max(r[HOURS_NORMAL:]):.2f}"
        for m, r in ratios.items()))
    for m in ("precision", "recall", "accuracy"):
        assert all(0.9 <= r <= 1.1 for r in ratios[m][:HOURS_NORMAL]), (m, ratios[m])
    assert all(1.0 <= r <= 1.6 for r in ratios["roc_auc"][:HOURS_NORMAL]), ratios["roc_auc"]
    # Drifted into a region where the AUC is 0.70: a lower AUC varies more, which the chunk's own Hanley & McNeil
    # variance sees and the reference's components do not
    assert all(r > 1.6 for r in ratios["roc_auc"][HOURS_NORMAL:]), ratios["roc_auc"]
