"""The explanation doors on a real `bentoml serve` over a private copy of the model store: by id after a promotion
(the old version explains), 404, 410 once the version is deleted, the predict token scope, the explain option of
/v1/predict, the HTML chart in Debian's chromium, and the drift report's global view on the server's own log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from bench.bench_lifecycle import private_store
from bench.harness import Server
from tests.conftest import run_cli
from tests.test_drift import browser  # noqa: F401 - the drift tests' headless chromium (a fixture)
from training.data import generate_purchase
from training.schema import PURCHASE

API_TOKEN = "api-3c1f9e7d5b2a4680"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
RECORD = {name: field.examples[0] for name, field in PURCHASE.record.model_fields.items()}
UNKNOWN_ID = "01a00000-0000-7000-8000-000000000000"


@pytest.fixture(scope="module")
def home(trained_store, bentoml_home, tmp_path_factory) -> Path:
    return private_store(bentoml_home, tmp_path_factory.mktemp("explain-store"))


@pytest.fixture(scope="module")
def xserver(home, tmp_path_factory) -> Server:
    previous = os.environ["BENTOML_HOME"]
    os.environ["BENTOML_HOME"] = str(home)  # the harness links the server's home to this store
    try:
        started = Server(tmp_path_factory.mktemp("explain-server"), {
            "SERVED_MODELS": "purchase@production", "DEFAULT_PURCHASE_MODEL": "purchase@production",
            "MODEL_REFRESH_SECONDS": "1", "API_TOKENS": API_TOKEN, "BATCH_MAX_LATENCY_MS": "20000",
        })
    finally:
        os.environ["BENTOML_HOME"] = previous
    yield started.wait_until_up()
    started.stop()


def cli(home: Path, *args: str):
    return run_cli(*args, env={"BENTOML_HOME": str(home)})


def explanation(xserver: Server, prediction_id: str, **params):
    return xserver.get(f"/v1/predictions/{prediction_id}/explanation", headers=AUTH, params=params)


def test_the_predict_token_scope_covers_both_doors(xserver):
    made = xserver.post("/predict", RECORD, headers=AUTH).json()
    for response in (xserver.post("/v1/explain", {"records": [RECORD]}),
                     xserver.post("/v1/explain", {"records": [RECORD]}, headers={"Authorization": "Bearer nope"}),
                     xserver.get(f"/v1/predictions/{made['prediction_id']}/explanation"),
                     xserver.get(f"/v1/predictions/{UNKNOWN_ID}/explanation?format=html")):
        assert response.status_code == 401 and response.json() == {"detail": "A valid bearer token is required."}
        assert API_TOKEN not in response.text
    assert xserver.post("/v1/explain", {"records": [RECORD]}, headers=AUTH).status_code == 200
    assert explanation(xserver, made["prediction_id"]).status_code == 200
    assert xserver.get("/v1/models").status_code == 200, "the listing stays open"


def test_explain_answers_contributions_that_add_up(xserver):
    records = generate_purchase(30, seed=3)[PURCHASE.columns].to_dict("records")
    answer = xserver.post("/v1/explain", {"records": records, "output": "log_odds"}, headers=AUTH).json()
    predicted = xserver.post("/batch_predict", {"records": records}, headers=AUTH).json()
    assert answer["model_name"] == predicted["model_name"] and answer["output"] == "log_odds"
    for item, prediction in zip(answer["explanations"], predicted["predictions"], strict=True):
        assert list(item["contributions"]) == sorted(item["contributions"], key=lambda c: -abs(item["contributions"][c]))
        assert set(item["contributions"]) == set(PURCHASE.columns)
        assert abs(item["base_value"] + sum(item["contributions"].values()) - item["value"]) < 1e-6
        assert abs(1 / (1 + np.exp(-item["value"])) - prediction["predicted_purchase_probability"]) < 1e-9


def test_a_past_prediction_is_explained_by_the_version_that_made_it_after_a_promotion(home, xserver):
    before = xserver.post("/predict", RECORD, headers=AUTH).json()
    first = explanation(xserver, before["prediction_id"]).json()
    assert first["served_now"] is True and first["model_name"] == before["model_name"] == "purchase_gbm"

    cli(home, "-m", "training.promote", "purchase_lr", "--stage", "production", "--reason", "test_explain_server")
    deadline = time.monotonic() + 60
    while (after := xserver.post("/predict", RECORD, headers=AUTH).json())["model_name"] != "purchase_lr":
        assert time.monotonic() < deadline, "the server never followed the promotion"
        time.sleep(0.5)
    assert after["predicted_purchase_probability"] != before["predicted_purchase_probability"], "two different models"

    old = explanation(xserver, before["prediction_id"])
    assert old.status_code == 200, old.text
    old = old.json()
    assert (old["model_name"], old["model_version"], old["served_now"]) == ("purchase_gbm", before["model_version"], False)
    assert old["probability"] == before["predicted_purchase_probability"]
    assert abs(old["value"] - before["predicted_purchase_probability"]) < 1e-12, "the old version, rebuilt exactly"
    assert abs(old["base_value"] + sum(old["contributions"].values()) - old["value"]) < 1e-6
    assert old["contributions"] == first["contributions"] and old["inputs"] == RECORD
    new = explanation(xserver, after["prediction_id"]).json()
    assert (new["model_name"], new["served_now"]) == ("purchase_lr", True)
    assert abs(new["value"] - after["predicted_purchase_probability"]) < 1e-12
    logit = explanation(xserver, before["prediction_id"], output="log_odds").json()
    assert abs(1 / (1 + np.exp(-logit["value"])) - old["value"]) < 1e-12


def test_unknown_ids_are_404_and_malformed_ids_422(xserver):
    missing = explanation(xserver, UNKNOWN_ID)
    assert missing.status_code == 404 and UNKNOWN_ID in missing.json()["detail"]
    malformed = explanation(xserver, "not-an-id")
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["path", "prediction_id"]


def test_a_version_deleted_from_the_store_is_410(home, xserver):
    made = xserver.post("/predict", RECORD, headers=AUTH).json()
    tag = f"{made['model_name']}:{made['model_version']}"
    # Hand the stage to the other model first (nothing serves this version then), then delete this version from the
    # store, as an operator would.
    successor = "purchase_gbm" if made["model_name"] == "purchase_lr" else "purchase_lr"
    cli(home, "-m", "training.promote", successor, "--stage", "production", "--reason", "test_explain_server")
    deadline = time.monotonic() + 60
    while xserver.post("/predict", RECORD, headers=AUTH).json()["model_name"] != successor:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    kept = explanation(xserver, made["prediction_id"])
    assert kept.status_code == 200 and kept.json()["served_now"] is False  # loaded from the store (and kept)
    cli(home, "-m", "bentoml", "models", "delete", "-y", tag)
    gone = explanation(xserver, made["prediction_id"])
    assert gone.status_code == 410, gone.text
    assert tag in gone.json()["detail"] and "no longer in the model store" in gone.json()["detail"]


def test_predict_items_can_ask_for_explanations_within_the_limit(xserver):
    records = generate_purchase(3, seed=5)[PURCHASE.columns].to_dict("records")
    body = {"inputs": records, "predictions": [{"model_name": "purchase@production", "explain": True}]}
    item = xserver.post("/v1/predict", body, headers=AUTH).json()["predictions"][0]
    assert item["status"] == "Success" and len(item["explanations"]) == 3
    for value, explained in zip(item["prediction"], item["explanations"], strict=True):
        assert abs(explained["value"] - value) < 1e-12
        assert abs(explained["base_value"] + sum(explained["contributions"].values()) - value) < 1e-6


BARS_JS = """
const zero = document.querySelector('svg.contributions line').getBoundingClientRect().left;
return [...document.querySelectorAll('svg.contributions rect.bar')].map(r => {
  const box = r.getBoundingClientRect();
  return {input: r.dataset.input, value: parseFloat(r.dataset.value), left: box.left - zero,
          right: box.right - zero, width: box.width, fill: r.getAttribute('fill')};
});
"""


def test_the_html_answer_draws_one_bar_per_input_in_chromium(xserver, browser, tmp_path):
    made = xserver.post("/predict", RECORD, headers=AUTH).json()
    page = explanation(xserver, made["prediction_id"], format="html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    data = explanation(xserver, made["prediction_id"]).json()
    path = tmp_path / "explanation.html"  # the browser cannot send the bearer token: it reads the answer saved
    path.write_text(page.text)
    browser.get(path.as_uri())
    bars = browser.execute_script(BARS_JS)
    browser.save_screenshot(str(tmp_path / "explanation.png"))
    assert [b["input"] for b in bars] == list(data["contributions"]), "one bar per input, largest first"
    scale = max(b["width"] / abs(b["value"]) for b in bars if b["value"])
    for bar in bars:
        assert abs(bar["width"] - scale * abs(bar["value"])) < 1.0, bar  # lengths in proportion
        if bar["value"] > 0:
            assert bar["left"] >= -0.5 and bar["fill"] == "#c0392b", bar  # right of zero, red: raises
        elif bar["value"] < 0:
            assert bar["right"] <= 0.5 and bar["fill"] == "#2e6da4", bar  # left of zero, blue: lowers
    text = browser.find_element("tag name", "body").text
    assert f"{data['value']:.4f}" in text and "minutes_watched = 320.5" in text


def test_the_drift_report_shows_mean_contributions_of_reference_and_window(xserver, home, tmp_path, browser):
    records = generate_purchase(1_200, seed=11)[PURCHASE.columns].to_dict("records")
    answered = xserver.post("/batch_predict", {"records": records}, headers=AUTH).json()
    tag = f"{answered['model_name']}:{answered['model_version']}"
    cli(home, "-m", "monitoring.drift", "--model", tag, "--log", str(xserver.log_path), "--all", "--out",
        str(tmp_path), "--min-rows", "1000", "--attribution-rows", "60")
    summary = json.loads((tmp_path / f"{answered['model_name']}_drift_latest.json").read_text())
    attribution = summary["attribution"]
    assert attribution["rows"] == {"reference": 60, "window": 60} and attribution["output"] == "probability"
    assert set(attribution["features"]) == set(PURCHASE.columns)
    means = attribution["features"]
    assert all(f["reference"] >= 0 and f["window"] >= 0 for f in means.values())
    assert max(means, key=lambda c: means[c]["reference"]) == max(means, key=lambda c: means[c]["window"]), \
        "training-like traffic: the same input carries the most of the answer"
    browser.get((tmp_path / f"{answered['model_name']}_drift_latest.html").resolve().as_uri())
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#drift-report-attribution rect.bar')].map(r => "
        "({input: r.dataset.input, series: r.dataset.series, width: r.getBoundingClientRect().width}));")
    assert len(bars) == 2 * len(PURCHASE.columns)
    widest = max(bars, key=lambda b: b["width"])
    assert means[widest["input"]][widest["series"]] == max(v for f in means.values() for v in f.values())
