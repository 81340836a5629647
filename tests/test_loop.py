"""The experiment loop against real servers: prediction ids on every endpoint and in the log, POST /v1/feedback,
and an A/B test between purchase_gbm and purchase_lr closed by simulated outcomes and the quality job."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import raw_post, run_cli
from monitoring.predictlog import read_log
from serving.core.ids import new_ids

RECORD = {"student_country": "Canada", "days_on_platform": 12, "minutes_watched": 45.0, "courses_started": 1,
          "practice_exams_started": 2, "practice_exams_passed": 1, "minutes_spent_on_exams": 20.0}


def _is_uuid7(value) -> bool:
    return isinstance(value, str) and uuid.UUID(value).version == 7 and str(uuid.UUID(value)) == value


def _outcome_store(server) -> Path:
    env = getattr(server, "env", None)
    if env is None:  # the in-process tier (tests/fast): this process's settings
        from settings import get_settings

        return get_settings().outcome_log_path
    return Path(env.get("OUTCOME_LOG_PATH") or Path(env["STATE_DIR"]) / "outcomes.jsonl")


def _batch_ids(server, rows: int) -> list[str]:
    response = server.post("/batch_predict", {"records": [RECORD] * rows})
    assert response.status_code == 200, response.text
    return [p["prediction_id"] for p in response.json()["predictions"]]


def test_every_endpoint_answers_and_logs_prediction_ids(server):
    single = server.post("/predict", RECORD).json()
    batch = _batch_ids(server, 3)
    v1 = server.post("/v1/predict", {"predictions": [{"model_name": "drive_stats_a"},
                                                     {"model_name": "purchase_gbm", "inputs": [RECORD, RECORD]}]})
    assert v1.status_code == 200, v1.text
    bound, given = v1.json()["predictions"]
    assert _is_uuid7(single["prediction_id"]) and all(_is_uuid7(i) for i in batch) and len(set(batch)) == 3
    assert len(bound["prediction_ids"]) == len(bound["prediction"]) == len(bound["serial_numbers"]) > 100
    assert bound["serial_numbers"][0].startswith("ZA") and len(set(bound["serial_numbers"])) == len(bound["prediction"])
    assert len(given["prediction_ids"]) == 2 and given["serial_numbers"] is None

    log = read_log(server.log_path).set_index("prediction_id")
    every = [single["prediction_id"], *batch, *bound["prediction_ids"], *given["prediction_ids"]]
    assert set(every) <= set(log.index)
    assert log.loc[single["prediction_id"], "endpoint"] == "/predict"
    logged = log.loc[bound["prediction_ids"], "serial_number"].tolist()
    assert logged == bound["serial_numbers"]  # each bound row's drive, in the log too
    assert log.loc[bound["prediction_ids"][0], "probability"] == pytest.approx(bound["prediction"][0])


def test_feedback_counts_duplicates_and_corrections_and_names_bad_items(server):
    a, b, c = _batch_ids(server, 3)
    first = server.post("/v1/feedback", {"outcomes": [{"prediction_id": a, "outcome": 1},
                                                      {"prediction_id": b, "outcome": 0, "observed_at": "2026-11-24T09:00:00Z"},
                                                      {"prediction_id": a.upper(), "outcome": 1.0}]})
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "duplicates": 1, "corrections": 0, "corrected": []}
    again = server.post("/v1/feedback", {"outcomes": [{"prediction_id": a, "outcome": 1}, {"prediction_id": b, "outcome": 1},
                                                      {"prediction_id": c, "outcome": 0}]})
    assert again.json() == {"accepted": 2, "duplicates": 1, "corrections": 1, "corrected": [b]}
    stored = [json.loads(line) for line in _outcome_store(server).read_text().splitlines() if line.strip()]
    mine = [(r["prediction_id"], r["outcome"], r["correction"]) for r in stored if r["prediction_id"] in (a, b, c)]
    assert mine == [(a, 1, False), (b, 0, False), (b, 1, True), (c, 0, False)]

    good = {"prediction_id": a, "outcome": 1}
    bad_items = [
        ({"prediction_id": "not-an-id", "outcome": 1}, "prediction_id"),
        ({"prediction_id": a, "outcome": 2}, "outcome"),
        ({"prediction_id": a, "outcome": True}, "outcome"),
        ({"prediction_id": a, "outcome": "1"}, "outcome"),
        ({"prediction_id": a, "outcome": 0.5}, "outcome"),
        ({"prediction_id": a}, "outcome"),
        ({"prediction_id": a, "outcome": 1, "observed_at": "yesterday"}, "observed_at"),
        ({"prediction_id": a, "outcome": 1, "observed_at": 0}, "observed_at"),  # found by schemathesis
        ({"prediction_id": a, "outcome": 1, "extra": 1}, "extra"),
    ]
    for item, field in bad_items:
        response = server.post("/v1/feedback", {"outcomes": [good, item]})
        assert response.status_code == 422, (item, response.text)
        assert response.json()["detail"][0]["loc"] == ["body", "outcomes", 1, field], response.text
    assert server.post("/v1/feedback", {"outcomes": []}).status_code == 422
    assert server.post("/v1/feedback", {"outcomes": [good] * 10_001}).status_code == 422
    assert server.post("/v1/feedback", {"nothing": []}).status_code == 422
    assert raw_post(server, "/v1/feedback", b'{"outcomes": [', "application/json").status_code == 422
    assert raw_post(server, "/v1/feedback", b"a=1", "application/x-www-form-urlencoded").status_code == 415
    assert server.post("/v1/feedback", {"outcomes": [good]}).json()["duplicates"] == 1  # still answering
    metrics = server.get("/metrics").text
    for result in ("accepted", "duplicate", "correction", "rejected"):
        assert f'serving_feedback_total{{result="{result}"}}' in metrics


@pytest.fixture(scope="module")
def ab_server(start_server, tmp_path_factory):
    state = tmp_path_factory.mktemp("loop")
    server = start_server({"AB_WEIGHTS": "purchase_gbm=0.5,purchase_lr=0.5",
                           "OUTCOME_LOG_PATH": str(state / "outcomes.jsonl"),
                           "QUALITY_STATE_PATH": str(state / "quality" / "latest.json")})
    server.state = state
    return server


def _quality(server, *args: str, check: bool = True):
    return run_cli("-m", "monitoring.quality", "--log", str(server.log_path), "--outcomes",
                   str(server.state / "outcomes.jsonl"), "--state", str(server.state / "quality" / "latest.json"),
                   "--workspace", str(server.state / "workspace"), *args, check=check)


def test_quality_job_errors_are_one_line_and_exit_2(ab_server, tmp_path):
    # Before any traffic: no log yet (no outcome yet is no error: the job estimates without them, tests/test_estimate.py)
    for args, message in ((("--task", "purchase"), "no prediction log at"), (("--task", "churn"), "unknown task")):
        result = _quality(ab_server, *args, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_ab_test_closed_by_outcomes_reports_both_variants_and_a_verdict(ab_server, tmp_path):
    result = run_cli("-m", "monitoring.simulate", "--url", ab_server.url, "--rows", "16000", "--batch", "100",
                     "--outcomes", "--seed", "7")
    assert "posted 16000 outcomes: 16000 accepted" in result.stdout, result.stdout
    unknown = new_ids(5)
    answer = ab_server.post("/v1/feedback", {"outcomes": [{"prediction_id": i, "outcome": 1} for i in unknown]})
    assert answer.json()["accepted"] == 5

    out = tmp_path / "report"
    result = _quality(ab_server, "--task", "purchase", "--since", "1h", "--out", str(out), "--report-rows", "3000",
                      "--seed", "5")
    summary = json.loads((out / "quality_purchase.json").read_text())
    groups = {g["model"]: g for g in summary["groups"]}
    assert set(groups) == {"purchase_gbm", "purchase_lr"}, result.stdout
    for name, group in groups.items():
        assert group["predictions"] > 4_000 and group["with_outcome"] == group["predictions"]
        assert group["outcome_share"] == 1.0 and group["variant"] in ("gbm", "lr")
        assert abs(group["metrics"]["roc_auc"] - group["held_out"]["roc_auc"]) < 0.03, (name, group)
        assert group["live_minus_held_out"]["roc_auc"] == pytest.approx(
            group["metrics"]["roc_auc"] - group["held_out"]["roc_auc"], abs=1e-3)
        assert len(group["metrics"]["calibration"]["bins"]) == 5
    assert sum(g["predictions"] for g in groups.values()) == 16_000
    assert summary["unmatched_outcomes"] == 5 and set(summary["unmatched_examples"]) == set(unknown)

    (pair,) = summary["ab"]
    assert pair["endpoint"] == "/batch_predict" and pair["a"].startswith("purchase_gbm:")
    verdicts = {c["metric"]: c for c in pair["comparisons"]}
    assert set(verdicts) == {"roc_auc", "log_loss", "brier"}
    for c in verdicts.values():
        assert c["verdict"] in ("better", "worse", "not yet significant")
        low, high = c["always_valid"]
        assert low <= c["difference"] <= high and c["ci95"][0] >= low
    print(result.stdout)
    # One Evidently report per version (and alias, when the traffic named one: the default serves purchase@production),
    # on a seeded sample of its outcomes that the JSON, the page and the printed table state.
    (report,) = out.glob(f"quality_purchase_gbm_{groups['purchase_gbm']['version']}*.html")
    assert report.stat().st_size > 10_000
    for written in summary["reports"]:
        group = next(g for g in summary["groups"] if g["arm"] == written["arm"])
        assert written["sample"] == {"rows": 3000, "of": group["with_outcome"], "seed": 5}
        assert f"{written['html']}: 3000 of {group['with_outcome']} outcomes of {written['arm']} (seeded sample, " \
               f"--report-rows 3000, --seed 5)" in result.stdout
    page = report.read_text()
    assert 'id="quality-report-header"' in page and "3,000 of the" in page and "seed 5" in page
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(ab_server.state / "workspace"))
    for name in groups:
        (project,) = workspace.search_project(f"{name} quality")
        assert len(workspace.list_runs(project.id)) == 1

    deadline = time.monotonic() + 20  # the service polls the state file every 5 s
    while time.monotonic() < deadline:
        metrics = ab_server.get("/metrics").text
        if "serving_ab_verdict{" in metrics and "serving_model_quality{" in metrics:
            break
        time.sleep(1)
    auc_line = f'serving_model_quality{{metric="roc_auc",model="purchase_gbm",version="{groups["purchase_gbm"]["version"]}"}}'
    assert auc_line in metrics, metrics[-2000:]
    assert f'serving_ab_verdict{{a="{pair["a"]}",b="{pair["b"]}",endpoint="/batch_predict",metric="roc_auc"}}' in metrics
    # The label-free estimate beside the realized metric, and its error, per version (issue 23)
    estimates = {e["model_name"]: e for e in summary["estimate"]["versions"]}
    for name, group in groups.items():
        compared = estimates[name]["on_rows_with_outcome"]["roc_auc"]
        assert compared["realized"] == pytest.approx(group["metrics"]["roc_auc"], abs=1e-4)
        assert abs(compared["error"]) < 0.03, (name, compared)
        version = group["version"]
        for gauge, value in (("serving_model_quality_estimate", estimates[name]["estimate"]["roc_auc"]["value"]),
                             ("serving_model_quality_estimation_error", compared["error"])):
            line = f'{gauge}{{metric="roc_auc",model="{name}",version="{version}"}} '
            (sample,) = [x for x in metrics.splitlines() if x.startswith(line)]
            assert float(sample.split()[-1]) == pytest.approx(value, abs=1e-6), sample
        assert f'serving_model_quality_estimate_rows{{model="{name}",version="{version}"}} {float(group["predictions"])}' in metrics


def test_outcomes_that_match_no_prediction_are_counted_and_the_job_still_estimates(ab_server, tmp_path):
    """Outcomes come weeks late: a window none of whose predictions has one yet is the normal case, not an error."""
    from monitoring.outcomes import Outcome, OutcomeStore

    store = OutcomeStore(tmp_path / "strangers.jsonl", max_bytes=1 << 20)
    store.ingest([Outcome(i, 1) for i in new_ids(3)])
    result = run_cli("-m", "monitoring.quality", "--task", "purchase", "--log", str(ab_server.log_path),
                     "--outcomes", str(tmp_path / "strangers.jsonl"), "--no-evidently", "--state",
                     str(tmp_path / "state.json"), "--out", str(tmp_path), check=False)
    assert result.returncode == 0, result.stderr
    assert "no outcome yet for these predictions (3 outcomes in the store): estimates only" in result.stdout
    summary = json.loads((tmp_path / "quality_purchase.json").read_text())
    assert summary["with_outcome"] == 0 and summary["unmatched_outcomes"] == 3
    assert {g["model_name"] for g in summary["estimate"]["groups"]} == {"purchase_gbm", "purchase_lr"}
    assert all(g["on_rows_with_outcome"] is None for g in summary["estimate"]["groups"])
