"""The quality job on a written log (no server): aliases as variants, shadow rows left out, late and unmatched
outcomes, rows logged before ids existed, regressions; the model store is the session's real one."""

from __future__ import annotations

import json

import orjson
import pytest

from monitoring.outcomes import Outcome, OutcomeStore
from monitoring.quality.cli import main
from monitoring.simulate import draw_traffic
from serving.core.ids import new_ids
from training.schema import PURCHASE
from training.store import load_model


def _write(path, model, frame, *, alias=None, shadow=False, ids=True):
    proba = model.predict_proba(frame[PURCHASE.columns])
    rows = []
    for (_, record), p, pid in zip(frame[PURCHASE.columns].iterrows(), proba, new_ids(len(frame))):
        rows.append({"ts": "2026-11-23T10:00:00+00:00", "endpoint": "/batch_predict", "model_name": model.name,
                     "model_version": model.version, "variant": model.labels["variant"], "alias": alias,
                     "shadow": shadow, **({"prediction_id": pid} if ids else {}), **record.to_dict(),
                     "probability": float(p), "prediction": int(p >= model.threshold)})
    with open(path, "ab") as handle:
        handle.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return [r.get("prediction_id") for r in rows]


@pytest.fixture(scope="module")
def loop_files(trained_store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quality")
    log, store = folder / "prediction_log.jsonl", OutcomeStore(folder / "outcomes.jsonl", 1 << 20)
    gbm = load_model("purchase_gbm")
    frame = draw_traffic(6_000, seed=3, with_outcome=True)
    labels = frame[PURCHASE.label].to_numpy()
    production = _write(log, gbm, frame.iloc[:3_000], alias="purchase@production")
    candidate = _write(log, gbm, frame.iloc[3_000:], alias="purchase@candidate")  # the same version, other alias
    _write(log, gbm, frame.iloc[:3_000], shadow=True)  # shadow copies of the production rows: no outcome names them
    _write(log, gbm, frame.iloc[:100], ids=False)  # logged before prediction ids existed
    leftover = _write(log, load_model("purchase_lr"), frame.iloc[:2], alias="purchase@production")  # a promotion's rest
    half = [Outcome(i, int(y)) for i, y in zip(production + candidate, labels) if int(i[-1], 16) % 2 == 0]
    store.ingest(half + [Outcome(i, int(y)) for i, y in zip(leftover, labels[:2])])
    store.ingest([Outcome(i, 1) for i in new_ids(7)])  # ids no prediction has
    return folder, log, folder / "outcomes.jsonl", len(half)


def _run(loop_files, capsys, *args):
    folder, log, outcomes, _ = loop_files
    code = main(["--task", "purchase", "--log", str(log), "--outcomes", str(outcomes), "--out", str(folder / "out"),
                 "--state", str(folder / "state.json"), "--no-evidently", *args])
    out = capsys.readouterr()
    assert code == 0, out
    return json.loads((folder / "out" / "quality_purchase.json").read_text()), out.out


def test_aliases_are_variants_shadow_rows_are_not_and_strangers_are_unmatched(loop_files, capsys):
    folder, log, outcomes, matched = loop_files
    code = main(["--task", "purchase", "--log", str(log), "--outcomes", str(outcomes), "--out", str(folder / "out"),
                 "--state", str(folder / "state.json"), "--no-evidently"])
    assert code == 0, capsys.readouterr()
    summary = json.loads((folder / "out" / "quality_purchase.json").read_text())
    arms = {g["alias"]: g for g in summary["groups"] if g["model"] == "purchase_gbm"}
    assert set(arms) == {"purchase@production", "purchase@candidate"}
    assert all(g["predictions"] == 3_000 for g in arms.values())
    assert sum(g["with_outcome"] for g in arms.values()) == matched and 0.4 < arms["purchase@production"]["outcome_share"] < 0.6
    assert summary["unmatched_outcomes"] == 7 and summary["predictions_without_id"] == 100
    (pair,) = summary["ab"]
    assert pair["a"].endswith(" (purchase@candidate)") and pair["b"].endswith(" (purchase@production)")
    assert all(c["verdict"] == "not yet significant" for c in pair["comparisons"])  # the same model twice
    state = json.loads((folder / "state.json").read_text())["purchase"]
    assert {v["metric"] for v in state["ab"]} == {"roc_auc", "log_loss", "brier"}
    # The label-free estimates follow the same groups and sit beside the realized metrics (issue 23)
    estimated = {g["alias"]: g for g in summary["estimate"]["groups"]}
    assert set(estimated) == set(arms)
    for alias, group in estimated.items():
        assert (group["rows"], group["with_outcome"]) == (arms[alias]["predictions"], arms[alias]["with_outcome"])
        assert group["on_rows_with_outcome"]["roc_auc"]["realized"] == pytest.approx(arms[alias]["metrics"]["roc_auc"], abs=1e-4)
    assert len(state["estimates"]) == 1  # one model version under two aliases: one set of gauges


def test_fail_on_regression_exits_1_when_live_auc_falls_below_held_out(loop_files, tmp_path):
    folder, log, outcomes, _ = loop_files
    flipped = OutcomeStore(tmp_path / "flipped.jsonl", 1 << 20)  # every outcome wrong: AUC far below held-out
    rows = [json.loads(line) for line in outcomes.read_text().splitlines()]
    flipped.ingest([Outcome(r["prediction_id"], 1 - r["outcome"]) for r in rows])
    args = ["--task", "purchase", "--log", str(log), "--outcomes", str(tmp_path / "flipped.jsonl"), "--out",
            str(tmp_path), "--state", str(tmp_path / "state.json"), "--no-evidently"]
    assert main(args) == 0
    assert main([*args, "--fail-on-regression"]) == 1


def test_the_table_names_each_variant_with_one_at_sign_and_its_columns_line_up(loop_files, capsys):
    summary, out = _run(loop_files, capsys)
    assert all(g["arm"].count("@") == 1 for g in summary["groups"]), [g["arm"] for g in summary["groups"]]
    assert all(pair[side].count("@") == 1 for pair in summary["ab"] for side in ("a", "b"))
    header, *rows = [line for line in out.splitlines()][:3]
    assert header.split() == ["variant", "rows", "outcomes", "share", "auc", "held", "logloss", "brier", "prec",
                              "recall"]
    assert len(rows) == 2 and all(" (purchase@" in row for row in rows)
    for name in ("rows", "outcomes", "auc", "recall"):  # right-aligned under their headers
        end = header.index(name) + len(name)
        for row in rows:
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (name, header, row)
            value = row[:end].split()[-1]
            assert row[end - len(value):end] == value


def test_leftover_variants_under_the_minimum_rows_are_named_once_not_tabled(loop_files, capsys):
    summary, out = _run(loop_files, capsys)
    (leftover,) = [g for g in summary["groups"] if g["model"] == "purchase_lr"]
    assert leftover["predictions"] == 2 and leftover["below_min_rows"] and leftover["metrics"] is None
    assert leftover["note"] == "fewer than 100 predictions (--min-rows): no metrics"
    assert "-" not in " ".join(out.splitlines()[1].split()[1:])  # no row of dashes
    assert f"left out: 1 variant(s) under 100 predictions (--min-rows): {leftover['arm']} (2 rows, 2 outcomes)" in out
    assert all(leftover["arm"] not in (pair["a"], pair["b"]) for pair in summary["ab"])
    state = json.loads((loop_files[0] / "state.json").read_text())["purchase"]
    assert {m["model"] for m in state["models"]} == {"purchase_gbm"}
    summary, out = _run(loop_files, capsys, "--min-rows", "1")  # the rule is a setting: at 1 it is tabled
    assert "left out" not in out and any(line.startswith(leftover["arm"]) for line in out.splitlines())


def test_an_id_logged_twice_joins_its_outcome_once(loop_files, tmp_path, capsys):
    folder, log, outcomes, matched = loop_files
    twice = tmp_path / "twice"
    twice.mkdir()
    (twice / "a.jsonl").write_bytes(log.read_bytes())
    (twice / "b.jsonl").write_bytes(log.read_bytes())  # the same log under another name: every line twice
    code = main(["--task", "purchase", "--log", str(twice), "--outcomes", str(outcomes), "--out", str(tmp_path),
                 "--state", str(tmp_path / "state.json"), "--no-evidently"])
    assert code == 0, capsys.readouterr()
    summary = json.loads((tmp_path / "quality_purchase.json").read_text())
    gbm = [g for g in summary["groups"] if g["model"] == "purchase_gbm"]
    assert sum(g["with_outcome"] for g in gbm) == matched
    assert summary["repeated_prediction_ids"] == matched + 2  # the leftover's two, too
