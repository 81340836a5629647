"""The quality projects of `make dashboard` (Evidently's UI) in Debian's headless chromium, after one run and after
two (issue 23: its axes rounded ROC AUC to "1" and log loss to "0", and after one run every chart looked empty).

Two quality-job runs write one workspace: the first before any outcome (estimates only), the second once outcomes
arrived for every prediction. A copy of the project as the first run left it is served beside it. Screenshots go to
the test's temporary folder (never committed)."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from monitoring.outcomes import Outcome, OutcomeStore
from tests.conftest import run_cli
from tests.test_drift import (  # noqa: F401  (browser: the drift tests' chromium fixture)
    CARDS_JS, assert_ticks_are_numbers_in_order, browser, dashboard, line_ys, project_copy, y_at)
from tests.test_estimate import write_log
from training.data import generate_purchase
from training.schema import PURCHASE
from training.store import load_model

pytestmark = pytest.mark.slow

LEGENDS = ["realized", "estimate", "estimate - 95%", "estimate + 95%", "held-out"]
MARKS_JS = """
return [...document.querySelectorAll('.MuiCard-root')].map(card => ({
  title: card.querySelector('h5')?.textContent ?? '',
  marks: [...card.querySelectorAll('.MuiMarkElement-root')].map(m => m.getBoundingClientRect().y),
}));
"""


def _quality(folder, outcomes, *extra):
    return run_cli("-m", "monitoring.quality", "--task", "purchase", "--log", str(folder / "log.jsonl"),
                   "--outcomes", str(outcomes), "--out", str(folder / "out"), "--state", str(folder / "state.json"),
                   "--workspace", str(folder / "workspace"), "--chunk", "1h", *extra)


@pytest.fixture(scope="module")
def workspaces(trained_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality-ui")
    gbm = load_model("purchase_gbm")
    students = generate_purchase(4_000, seed=41)
    ids = write_log(folder / "log.jsonl", gbm, students, "2026-11-23T10:00:00Z", 3 * 3600)
    _quality(folder, folder / "none-yet.jsonl")  # run 1: no outcome yet
    shutil.copytree(folder / "workspace", folder / "one_run")
    OutcomeStore(folder / "outcomes.jsonl", 1 << 24).ingest(
        [Outcome(i, int(y)) for i, y in zip(ids, students[PURCHASE.label])])
    _quality(folder, folder / "outcomes.jsonl")  # run 2: every outcome arrived
    return folder, gbm


@pytest.fixture(scope="module")
def ui(workspaces):
    """`make dashboard` on a free port over the two-run workspace, with the one-run project copied in."""
    folder, gbm = workspaces
    project = next(p.parent for p in (folder / "workspace").glob("*/metadata.json"))
    one_run = project_copy(folder / "one_run", folder / "workspace", "purchase_gbm quality after one run")
    with dashboard(folder / "workspace", folder / "ui.log") as url:
        yield {"url": url, "two_runs": project.name, "one_run": one_run}


def _load(browser, url: str, screenshot, charts: int = 5) -> tuple[dict[str, dict], dict[str, list[float]]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 120).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".MuiChartsAxis-directionY")) >= charts
        and "Quality (last run)" in d.find_element(By.TAG_NAME, "body").text)
    time.sleep(1)  # the charts' appearing animation
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    cards = {c["title"]: c for c in browser.execute_script(CARDS_JS) if c["title"]}
    marks = {c["title"]: c["marks"] for c in browser.execute_script(MARKS_JS) if c["title"]}
    return cards, marks


def _check_axis(card: dict, low: float, high: float) -> None:
    """Tick labels are distinct numbers in order, inside the metric's neighbourhood: never one rounded "1"."""
    assert_ticks_are_numbers_in_order(card)
    values = [float(t["label"]) for t in card["yTicks"]]
    assert low <= min(values) and max(values) <= high and len(values) >= 3, (card["title"], values)


def test_after_one_run_every_chart_shows_its_points_on_a_readable_axis(ui, browser, workspaces, tmp_path):
    folder, gbm = workspaces
    cards, marks = _load(browser, f"{ui['url']}/projects/{ui['one_run']}", tmp_path / "quality_one_run.png")
    text = cards["Quality (last run)"]["text"]
    assert f"{gbm.name}:{gbm.version} (purchase@production): 4000 predictions, 0 with an outcome" in text
    assert "estimated 0.8" in text and "held-out 0.8" in text
    auc = cards["ROC AUC"]
    assert [item["label"] for item in auc["legend"]] == LEGENDS[1:]  # no outcome yet: no realized series
    _check_axis(auc, 0.8, 0.95)
    # No outcome yet: the realized series is empty, the estimate, its interval and the held-out value are there,
    # each a visible mark at its own height.
    assert len(set(np.round(marks["ROC AUC"], 1))) == 4, marks["ROC AUC"]
    for title in ("Precision at the threshold", "Recall at the threshold", "Accuracy at the threshold"):
        assert [item["label"] for item in cards[title]["legend"]] == LEGENDS[1:]
        assert_ticks_are_numbers_in_order(cards[title])
        assert len(set(np.round(marks[title], 1))) == 4, (title, marks[title])
    losses = "Log loss and Brier score (lower is better)"  # no outcome yet: the held-out values, two heights
    assert_ticks_are_numbers_in_order(cards[losses])
    assert len(set(np.round(marks[losses], 1))) == 2, marks[losses]


def test_after_two_runs_realized_lines_sit_beside_the_estimate(ui, browser, workspaces, tmp_path):
    folder, _ = workspaces
    cards, marks = _load(browser, f"{ui['url']}/projects/{ui['two_runs']}", tmp_path / "quality_two_runs.png")
    text = cards["Quality (last run)"]["text"]
    assert "4000 predictions, 4000 with an outcome, ROC AUC 0.8" in text
    auc = cards["ROC AUC"]
    assert sorted(item["label"] for item in auc["legend"]) == sorted(LEGENDS)
    _check_axis(auc, 0.8, 0.95)
    held_out = load_model("purchase_gbm").metadata["metrics"]["roc_auc"]
    position = [item["label"] for item in auc["legend"]].index("held-out")
    ys = line_ys(auc["lines"][position])
    assert len(ys) == 2 and all(abs(y - y_at(auc, held_out)) < 1.5 for y in ys), (ys, auc["yTicks"])
    losses = cards["Log loss and Brier score (lower is better)"]
    assert sorted(item["label"] for item in losses["legend"]) == ["Brier score", "held-out Brier score",
                                                                   "held-out log loss", "log loss"]
    _check_axis(losses, 0.0, 0.6)  # was a lone "0"
