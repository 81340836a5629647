"""The drift verdict on single-cause shifts: real model predictions, real Evidently reports on 5,000-row windows,
the importance the model was saved with (permutation importance on its held-out split)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring import drift, simulate
from monitoring.drift.verdict import exit_code, important_inputs, judge

ROWS = 5_000


@pytest.fixture(scope="module")
def model(trained_store):
    from training.store import load_model

    return load_model("purchase_gbm:latest")


def verdict_of(model, traffic: pd.DataFrame):
    traffic = traffic.copy()
    traffic["probability"] = model.predict_proba(traffic)
    reference, current, numerical, categorical = drift.prepare(model.input_schema, model.reference(), traffic)
    result = drift.extract(drift.run_report(reference, current, numerical, categorical).dict())
    return result, judge(result, important_inputs(model.metadata))


def test_importance_is_saved_with_the_model_and_ranks_minutes_watched_first(model):
    importance = model.metadata["feature_importance"]
    assert set(importance["scores"]) == set(model.input_schema["columns"])
    assert next(iter(importance["scores"])) == "minutes_watched" == importance["important"][0]
    assert "student_country" not in importance["important"] and "courses_started" not in importance["important"]
    assert "permutation" in importance["method"]


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_normal_windows_are_ok(model, seed):
    result, verdict = verdict_of(model, simulate.draw_traffic(ROWS, seed=seed))
    assert verdict.level == "ok" and verdict.reasons == [] and result["drifted_columns"] == 0


def test_one_important_input_inflated_is_drift_although_the_share_rule_is_silent(model):
    traffic = simulate.draw_traffic(ROWS, seed=41)
    traffic["minutes_watched"] *= 1.6
    result, verdict = verdict_of(model, traffic)
    assert result["dataset_drift"] is False, "the share rule alone would have said nothing"
    assert verdict.level == "drift" and "important_input" in verdict.reasons
    assert "minutes_watched" in verdict.message
    assert exit_code(verdict, fail_on_drift=True, strict=False) == 1


def test_a_category_mix_changed_is_a_warning_unless_the_prediction_moves(model):
    rng = np.random.default_rng(42)
    traffic = simulate.draw_traffic(ROWS, seed=42)
    movers = rng.random(ROWS) < 0.5
    traffic.loc[movers, "student_country"] = rng.choice(["India", "Nigeria", "Pakistan"], movers.sum())
    result, verdict = verdict_of(model, traffic)
    assert result["features"]["student_country"]["drifted"]
    expected = "drift" if result["features"][drift.PREDICTION_COLUMN]["drifted"] else "warning"
    assert verdict.level == expected and "student_country" in verdict.message
    if expected == "warning":
        assert verdict.reasons == ["input"]
        assert exit_code(verdict, fail_on_drift=True, strict=False) == 0
        assert exit_code(verdict, fail_on_drift=True, strict=True) == 1


def test_a_rule_bound_pair_moved_together_is_drift(model):
    traffic = simulate.draw_traffic(ROWS, seed=43)
    traffic["practice_exams_started"] += 3
    traffic["practice_exams_passed"] += 3  # passed <= started still holds
    assert (traffic["practice_exams_passed"] <= traffic["practice_exams_started"]).all()
    result, verdict = verdict_of(model, traffic)
    assert result["features"]["practice_exams_started"]["drifted"]
    assert verdict.level == "drift" and "important_input" in verdict.reasons
    assert "practice_exams" in verdict.message


def test_an_unimportant_input_alone_is_a_warning(model):
    traffic = simulate.draw_traffic(ROWS, seed=44)
    traffic["minutes_spent_on_exams"] *= 3
    result, verdict = verdict_of(model, traffic)
    assert result["features"]["minutes_spent_on_exams"]["drifted"]
    assert not result["features"][drift.PREDICTION_COLUMN]["drifted"]
    assert verdict.level == "warning" and verdict.reasons == ["input"]


def test_a_model_saved_without_importance_still_gets_a_verdict():
    result = {"features": {"a": {"drifted": True}, drift.PREDICTION_COLUMN: {"drifted": False}},
              "dataset_drift": False, "drifted_columns": 1, "columns": 2, "drift_share": 0.5,
              "drift_share_threshold": 0.6}
    verdict = judge(result, important_inputs({}))
    assert verdict.level == "warning" and "no importance saved" in verdict.message


def test_models_endpoint_shows_the_importance_the_verdict_uses(server, model):
    described = {m["name"]: m for m in server.get("/v1/models").json()["models"]}["purchase_gbm"]
    assert described["feature_importance"] == model.metadata["feature_importance"]
    assert described["feature_importance"]["important"][0] == "minutes_watched"
