"""The benchmark suite's CI smoke: `python -m bench.run --quick` end to end, so the suite cannot rot, and the
MLServer export checked without MLServer (CI has no MLServer virtualenv; `make bench` does).

It starts its own servers (on a private copy of the session store) and loads them for a few seconds; the numbers
are not checked against targets here, only for being produced and sane.
"""

from __future__ import annotations

import json
import math
import pickletools

import joblib
import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _pickled_modules(path) -> set[str]:
    """Every module a pickle imports (joblib writes a plain pickle stream around its arrays)."""
    modules, strings = set(), []
    with open(path, "rb") as handle:
        data = handle.read()
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
        elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            modules.add(strings[-2])
        if opcode.name == "STOP":
            break
    return modules


def test_mlserver_export_is_the_served_pipeline(trained_store, tmp_path):
    from bench import mlserver_peer
    from training.data import generate_purchase
    from training.store import load_model

    model = load_model("purchase_gbm:latest")
    folder = mlserver_peer.export_pipeline(model, tmp_path / "mlserver")
    settings = mlserver_peer.server_settings(folder, 18080, 18081, 18082)

    model_settings = json.loads((folder / "model-settings.json").read_text())
    assert model_settings["implementation"] == "mlserver_sklearn.SKLearnModel"
    assert (model_settings["max_batch_size"], model_settings["max_batch_time"]) == (256, 0.005)
    assert model_settings["parameters"]["uri"] == "./model.joblib"
    assert json.loads((folder / "settings.json").read_text()) == settings
    assert settings["parallel_workers"] == 0 and settings["host"] == "127.0.0.1"

    # MLServer's venv has only the copied feature module of the project on its path: the pickle needs no more.
    assert (folder / "pythonpath" / "training" / "features.py").read_text() == (ROOT / "training" / "features.py").read_text()
    project = {m for m in _pickled_modules(folder / "model.joblib") if m.split(".")[0] in ("training", "serving", "monitoring")}
    assert project == {"training.features"}

    frame = generate_purchase(200, seed=3).drop(columns="purchased")
    pipeline = joblib.load(folder / "model.joblib")
    assert np.array_equal(pipeline.predict_proba(frame)[:, 1], model.predict_proba(frame))

    body = mlserver_peer.v2_request(frame.iloc[:5])
    assert body["parameters"] == {"content_type": "pd"} and body["outputs"] == [{"name": "predict_proba"}]
    inputs = {i["name"]: i for i in body["inputs"]}
    assert list(inputs) == list(frame.columns)
    assert all(i["shape"] == [5, 1] and len(i["data"]) == 5 for i in inputs.values())
    assert inputs["student_country"]["datatype"] == "BYTES"
    assert inputs["student_country"]["parameters"] == {"content_type": "str"}
    assert inputs["days_on_platform"]["datatype"] == "INT64" and inputs["minutes_watched"]["datatype"] == "FP64"


@pytest.mark.slow
def test_quick_bench_writes_tables_and_plots(trained_store, tmp_path):
    out = tmp_path / "results"
    result = run_cli("-m", "bench.run", "--quick", "--out", str(out), timeout=600)
    assert "wrote" in result.stdout

    markdown = (out / "results.md").read_text()
    for heading in ("## Targets", "## /predict at concurrency", "rows in one request", "## Mixed load",
                    "## /v1/predict", "## Prediction log and metrics", "## Start-up and memory"):
        assert heading in markdown, heading
    assert markdown.count("| target | measured (same run) | verdict |") == 1
    for image in ("predict.png", "batch.png", "contention.png"):
        data = (out / image).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
        assert f"]({image})" in markdown

    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["mode"] == "quick"
    rows = {r["server"]: r for r in results["predict"]["rows"]}
    assert {"service", "ceiling", "reference"} <= set(rows)
    for row in [*rows.values(), *results["mixed"]["rows"]]:
        assert row["ok"] > 0 and row["throughput"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 60_000
        assert set(row["statuses"]) <= {"200", "503"}, row["statuses"]  # 503 only: the batcher's overload answer
    assert rows["service"]["mean_batch"] >= 1, "the service's /metrics shows no adaptive batch"
    assert results["mixed"]["batches"] >= 1 and not results["mixed"]["batch_statuses"]
    batch = results["batch"]["median_ms"]
    assert {"service", "raw", "reference", "raw_dataframe"} <= set(batch)
    assert all(0 < v < 60_000 and math.isfinite(v) for v in batch.values()), batch
    # a door of issue 11 is either measured or skipped with its reason, never both, never silently
    for door, variant in (("v2", "service_v2"), ("arrow", "service_arrow")):
        assert (variant in batch) != (door in results["batch"]["skipped"])
    assert ("skipped" in results["arrow_big"]) != ("median_ms" in results["arrow_big"])
    assert [r["models"] for r in results["multimodel"]["rows"]] == [1, 2, 4]
    assert all(r["latency_ms"] > 0 for r in results["multimodel"]["rows"])
    assert {"service", "ceiling", "reference"} <= {s["name"] for s in results["servers"]}
    assert all(s["ready_s"] > 0 and 50 < s["rss_ready_mb"] < 8_000 for s in results["servers"])
    assert all(t["ok"] in (True, False, None) and t["measured"] for t in results["targets"])


@pytest.mark.slow
def test_loop_bench_runs_small_and_states_its_figures(trained_store, tmp_path):
    out = tmp_path / "results"
    result = run_cli("bench/bench_loop.py", "--predictions", "30000", "--outcomes", "6000", "--requests", "1",
                     "--out", str(out), env={"BENCH_LOOP_CACHE": str(tmp_path / "cache")}, timeout=900)
    results = json.loads((out / "loop.json").read_text())
    quality = results["quality"]
    for label in ("with_evidently", "without_evidently"):
        assert quality[label]["predictions"] == 30_000 and 5_000 < quality[label]["with_outcome"] < 7_000
        assert quality[label]["wall_s"] > 0 and quality[label]["peak_rss_mb"] > 100
    assert {r["sample"]["seed"] for r in quality["with_evidently"]["reports"]} == {0}
    assert "evidently" in quality["with_evidently"]["phases_cpu_s"]
    ingestion = results["ingestion"]
    assert ingestion["http_new_outcomes_per_s"] > 0 and ingestion["store_bytes_per_outcome"] > 0
    assert ingestion["curl_new_outcomes_per_s"] > 0  # Debian's curl: installed wherever the suite runs
    markdown = (out / "loop.md").read_text()
    assert "## Quality job: 30,000 predictions" in markdown and "load average" in markdown
    assert "Evidently's reports, its import included" in markdown and result.stdout.startswith("# The experiment loop")
