"""The benchmark suite's CI smoke: `python -m bench.run --quick` end to end, so the suite cannot rot.

It starts its own servers (on a private copy of the session store) and loads them for a few seconds; the numbers
are not checked against targets here, only for being produced and sane.
"""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_bench_writes_tables_and_plots(trained_store, tmp_path):
    out = tmp_path / "results"
    result = run_cli("-m", "bench.run", "--quick", "--out", str(out), timeout=600)
    assert "wrote" in result.stdout

    markdown = (out / "results.md").read_text()
    for heading in ("## Targets", "## 1. Adaptive batching", "## 2 and 5.", "## 3. /v1/predict", "## 4. Prediction log",
                    "## 6. Start-up and memory"):
        assert heading in markdown
    assert markdown.count("| target | measured (same run) | verdict |") == 1
    for image in ("batching.png", "batch_latency.png"):
        data = (out / image).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
        assert f"]({image})" in markdown

    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["mode"] == "quick"
    for row in results["batching"]["rows"]:
        assert row["ok"] > 0 and row["throughput"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 60_000
        assert set(row["statuses"]) <= {"200", "503"}, row["statuses"]  # 503 only: the batcher's overload answer
    assert {r["server"] for r in results["batching"]["rows"]} >= {"on", "off", "nolog"}
    on = next(r for r in results["batching"]["rows"] if r["server"] == "on")
    assert on["mean_batch"] >= 1, "the batching server's /metrics shows no adaptive batch"
    for row in results["batch"]["rows"]:
        for key in ("service_ms", "raw_ms", "reference_ms", "raw_columnar_ms"):
            assert 0 < row[key] < 60_000 and math.isfinite(row[key]), (key, row)
    assert [r["models"] for r in results["multimodel"]["rows"]] == [1, 2, 4]
    assert all(r["latency_ms"] > 0 for r in results["multimodel"]["rows"])
    assert {s["name"] for s in results["servers"]} == {"on", "off", "nolog", "reference"}
    assert all(s["ready_s"] > 0 and 50 < s["rss_ready_mb"] < 8_000 for s in results["servers"])
    assert all(t["ok"] in (True, False) and t["measured"] for t in results["targets"])
