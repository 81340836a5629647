"""The benchmark suite's CI smoke: `python -m bench.run --quick` end to end, so the suite cannot rot, and the
MLServer export checked without MLServer (CI has no MLServer virtualenv; `make bench` does). The quick run measures
with the bench's own clients and with hey and curl (Debian's packages; .ci/run installs them).

It starts its own servers (on a private copy of the session store) and loads them for a few seconds; the numbers
are not checked against targets here, only for being produced by both tools and sane. Beside it: how the bench's
clients ask for answers (never compressed: MLServer gzips when asked, and that made the bench's MLServer figure
twice curl's), how hey's summary is read, and how a target is judged from two tools.
"""

from __future__ import annotations

import json
import math
import os
import pickletools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
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

    # one pipeline file, two models in one MLServer: with issue 21's adaptive batching and without (its default)
    found = {p.parent.name: json.loads(p.read_text()) for p in folder.rglob("model-settings.json")}
    assert set(found) == {mlserver_peer.MODEL, mlserver_peer.UNBATCHED}
    for name, model_settings in found.items():
        assert model_settings["name"] == name and model_settings["implementation"] == "mlserver_sklearn.SKLearnModel"
        uri = folder / "models" / name / model_settings["parameters"]["uri"]
        assert uri.resolve() == (folder / "model.joblib").resolve()
    batched = found[mlserver_peer.MODEL]
    assert (batched["max_batch_size"], batched["max_batch_time"]) == (256, 0.005)
    assert "max_batch_size" not in found[mlserver_peer.UNBATCHED]
    assert json.loads((folder / "settings.json").read_text()) == settings
    assert settings["parallel_workers"] == 0 and settings["host"] == "127.0.0.1"
    assert "parallel_workers" not in mlserver_peer.server_settings(folder, 1, 2, 3, parallel_workers=None)
    # MLServer runs in the environment the service gets: the bench sets no thread count of its own for it
    env = mlserver_peer.environment(folder)
    assert env.get("OMP_NUM_THREADS") == os.environ.get("OMP_NUM_THREADS")
    assert env["PYTHONPATH"] == str(folder / "pythonpath") and "PROMETHEUS_MULTIPROC_DIR" not in env
    assert "uvloop==0.21.0" in mlserver_peer.requirements()  # MLServer 1.7.1's parallel workers die on uvloop 0.22

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


class _Recorder(BaseHTTPRequestHandler):
    """Answers 200 with a small JSON body and keeps the headers of every request."""

    seen: list[dict[str, str]] = []
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recorder():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_no_client_of_the_bench_asks_for_a_compressed_answer(recorder, tmp_path):
    """MLServer's GZipMiddleware (on by default) compresses any answer whose request accepts gzip; httpx and aiohttp
    accept it unless told otherwise, curl and hey (with -disable-compression) do not. A bench that asks for gzip
    times MLServer's compression (and its own decompression) but not the service's, which never compresses."""
    from bench import external
    from bench.load import load
    from bench.measure import post

    url, seen = recorder
    with httpx.Client() as client:
        post(client, url, b"{}")
    load(url, [b"{}"], concurrency=2, requests=4, duration=5)
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    external.require()
    external.curl(url, body, {"Content-Type": "application/json", "Accept-Encoding": "identity"})
    external.hey(url, body, concurrency=1, seconds=0.3)
    assert len(seen) >= 7
    offered = {h.get("accept-encoding", "") for h in seen}
    assert not any("gzip" in value or "br" in value or "deflate" in value for value in offered), offered


HEY_SUMMARY = """
Summary:
  Total:	4.0031 secs
  Slowest:	0.3010 secs
  Fastest:	0.0021 secs
  Average:	0.0345 secs
  Requests/sec:	926.1234

Latency distribution:
  10% in 0.0123 secs
  50% in 0.0301 secs
  99% in 0.1502 secs

Status code distribution:
  [200]	3700 responses
  [503]	4 responses

Error distribution:
  [3]	Post "http://127.0.0.1:1/predict": read: connection reset by peer
  [1]	Post "http://127.0.0.1:1/predict": EOF
"""


def test_hey_summary_counts_statuses_and_dropped_connections():
    from bench.external import parse_hey
    from bench.load import pooled

    r = parse_hey(HEY_SUMMARY, concurrency=32)
    assert (r.ok, r.errors, r.elapsed, r.p50, r.p99) == (3700, 8, 4.0031, 0.0301, 0.1502)
    assert r.statuses == {"200": 3700, "503": 4, "-1": 4}
    row = pooled([r, r])
    assert row["throughput"] == pytest.approx(3700 / 4.0031) and row["p99_ms"] == pytest.approx(150.2)
    few = parse_hey(HEY_SUMMARY.replace("  99% in 0.1502 secs\n", ""), concurrency=32)  # under 100 answers
    assert few.p99 == 0.3010, "the slowest answer stands for p99 when hey prints none"
    with pytest.raises(RuntimeError, match="no summary"):
        parse_hey("hey: connection refused", 32)


def test_a_verdict_needs_both_tools_to_agree():
    from bench.report import target_lines
    from bench.targets import TOLERANCE, judge

    def j(bench, curl, kind="ratio"):
        return judge("21", "t", kind, "call", {"bench": bench, "external": curl}, {}, lambda v: v <= 1.0)

    assert (j(0.90, 0.95).verdict, j(0.90, 0.95).ok) == ("holds", True)
    assert (j(1.20, 1.25).verdict, j(1.20, 1.25).ok) == ("missed", False)
    assert j(0.98, 1.04).verdict.startswith("unsettled") and j(0.98, 1.04).ok is None
    # the bench's old MLServer figure (113.8 ms) against curl's (57 ms): the service's 82 ms looked 0.72x, was 1.44x
    wrong = j(82 / 113.8, 82 / 57)
    assert (wrong.verdict, wrong.ok) == ("TOOLS DISAGREE", None)
    assert j(1.0, 1.0 + TOLERANCE["ratio"] - 0.01).verdict != "TOOLS DISAGREE"
    assert j(0.5, 0.5 * (1 + TOLERANCE["tail"]) - 0.01, "tail").verdict == "holds"
    assert j(0.03, 0.07, "share").verdict == "holds" and j(0.03, 0.09, "share").verdict == "TOOLS DISAGREE"
    assert j(None, 0.9).verdict == "holds (curl only)" and j(None, None).verdict == "not measured"
    lines = "\n".join(target_lines([wrong, j(0.9, 0.95)], quick=False))
    assert "WARNING: the bench's client and the external tool disagree on 1 target(s)" in lines
    assert "**TOOLS DISAGREE**" in lines and "**holds**" in lines


def test_a_busy_machine_marks_every_comparison_with_a_spinning_peer_not_trusted():
    """MLServer and the in-process baselines (the bench's own process: libgomp's default policy) both spin."""
    from bench.targets import busy_machine, targets

    cfg = SimpleNamespace(focus_concurrency=32, focus_size=10_000, mixed_concurrency=8)
    medians = {"service_v2": {"bench": 80.0, "external": 79.0}, "mlserver_v2": {"bench": 90.0, "external": 91.0},
               "service_arrow": {"bench": 70.0, "external": 71.0}, "raw_dataframe": {"bench": 300.0}}
    quiet = {"meta": {"cpus": 2, "load_average_start_end": [[0.8, 1, 1], [1.9, 1, 1]]},
             "threads": {"default": 27.0, "bounded": 48.0}, "batch": {"median_ms": medians}}
    assert busy_machine(quiet) is None
    v2 = targets(quiet, cfg)[0]
    assert v2.target.startswith("10,000 rows on /v2") and (v2.verdict, v2.ok) == ("holds", True)
    # what this machine did with seven other engineers on it: libgomp's two threads took seconds per call
    busy = {**quiet, "threads": {"default": 2741.0, "bounded": 140.0}}
    assert "19.6x slower" in busy_machine(busy)
    v2 = targets(busy, cfg)[0]
    assert (v2.verdict, v2.ok) == ("holds on a busy machine: not trusted", None)
    [arrow_raw] = [t for t in targets(busy, cfg) if "raw pipeline on a DataFrame" in t.target]
    assert (arrow_raw.verdict, arrow_raw.ok) == ("holds on a busy machine: not trusted", None)
    [arrow_raw] = [t for t in targets(quiet, cfg) if "raw pipeline on a DataFrame" in t.target]
    assert (arrow_raw.verdict, arrow_raw.ok) == ("holds", True)
    loaded = {**quiet, "meta": {"cpus": 2, "load_average_start_end": [[17.1, 16, 14], [14, 16, 15]]}}
    assert "load average was 17.1 at the start on 2 CPUs" in busy_machine(loaded)


@pytest.mark.slow
def test_quick_bench_writes_tables_and_plots(trained_store, tmp_path):
    out = tmp_path / "results"
    result = run_cli("-m", "bench.run", "--quick", "--out", str(out), timeout=600)
    assert "wrote" in result.stdout and "### Issue 21" in result.stdout, "the targets are printed, not only written"

    markdown = (out / "results.md").read_text()
    for heading in ("## Targets", "### Issue 21", "### Issue 21's targets for BentoML's own path", "### Earlier targets", "## /predict at concurrency",
                    "rows in one request", "## Mixed load", "## /v1/predict", "## Prediction log and metrics",
                    "## Who used the cores", "## Start-up and memory"):
        assert heading in markdown, heading
    assert "Command: `python -m bench.run --quick --out" in markdown and "**Load average**" in markdown
    assert markdown.count("| target | bench client | external tool (hey / curl) | verdict |") == 3
    for image in ("predict.png", "batch.png", "contention.png"):
        data = (out / image).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
        assert f"]({image})" in markdown

    results = json.loads((out / "results.json").read_text())
    meta = results["meta"]
    assert meta["mode"] == "quick" and len(meta["load_average_start_end"]) == 2
    rows = {(r["server"], r["tool"]): r for r in results["predict"]["rows"]}
    assert {(s, t) for s in ("service", "ceiling", "reference") for t in ("bench", "external")} <= set(rows)
    for row in [*rows.values(), *results["mixed"]["rows"]]:
        assert row["ok"] > 0 and row["throughput"] > 0
        assert 0 < row["p50_ms"] <= row["p99_ms"] < 60_000
        assert set(row["statuses"]) <= {"200", "503"}, row["statuses"]  # 503 only: the batcher's overload answer
    assert {(r["server"], r["tool"]) for r in results["mixed"]["rows"]} == {
        (v, t) for v in ("alone", "with_batches") for t in ("bench", "external")}
    assert rows[("service", "bench")]["mean_batch"] >= 1, "the service's /metrics shows no adaptive batch"
    assert results["mixed"]["batches"] >= 1 and not results["mixed"]["batch_statuses"]
    batch = results["batch"]["median_ms"]
    assert {"service", "raw", "reference", "raw_dataframe"} <= set(batch)
    for name, by_tool in batch.items():  # HTTP variants timed by both clients, in-process ones by the bench only
        assert set(by_tool) == ({"bench"} if name.startswith("raw") else {"bench", "external"}), name
        assert all(0 < v < 60_000 and math.isfinite(v) for v in by_tool.values()), batch
    # a door of issue 11 is either measured or skipped with its reason, never both, never silently
    for door, variant in (("v2", "service_v2"), ("arrow", "service_arrow")):
        assert (variant in batch) != (door in results["batch"]["skipped"])
    assert ("skipped" in results["arrow_big"]) != ("median_ms" in results["arrow_big"])
    assert [r["models"] for r in results["multimodel"]["rows"]] == [1, 2, 4]
    assert all(r["latency_ms"] > 0 for r in results["multimodel"]["rows"])
    assert {"service", "ceiling", "reference"} <= {s["name"] for s in results["servers"]}
    assert all(s["ready_s"] > 0 and 50 < s["rss_ready_mb"] < 8_000 for s in results["servers"])
    assert set(results["core_use"]) == set(meta["scenarios"])
    assert results["core_use"]["predict"]["service"] > 0 and "bench driver" in results["core_use"]["predict"]
    targets = {t["target"]: t for t in results["targets"]}
    assert all(t["verdict"] and t["issue"] in ("10", "11", "21", "ceiling") for t in targets.values())
    mixed = next(t for name, t in targets.items() if name.startswith("mixed load: /predict c="))
    assert mixed["values"]["bench"] > 0 and mixed["values"]["external"] > 0  # both tools, every measured target


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


def test_the_log_cost_script_measures_this_checkout(trained_store):
    """`python bench/log_cost.py` (the log's before/after in docs/prediction-log.md) runs as typed."""
    result = run_cli("bench/log_cost.py", "--rows", "200", "--repeats", "3", "--segment-rows", "1000")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["log"] == "arrow" and measured["segment_rows"] == 1_000
    for step in ("predict", "signals", "ids", "log_encode", "log_write"):
        assert measured[step] > 0, step
    assert measured["compaction_cpu_ms"] >= 0  # process CPU time counts in clock ticks: a small segment may show 0


def test_the_request_cpu_script_times_every_step_of_a_request(trained_store):
    """`python -m bench.request_cpu` (the CPU of each step of a big request, docs/performance.md) runs as typed."""
    result = run_cli("-m", "bench.request_cpu", "--rows", "300", "--reps", "3")
    rows = [line.split("|")[1:3] for line in result.stdout.splitlines() if line.startswith("| ") and "CPU ms" not in line]
    steps = {name.strip(): float(ms) for name, ms in rows}
    assert "model call (features, predict_proba)" in steps and "V2 JSON: parse and decode the tensors" in steps
    assert len(steps) == 11 and all(ms >= 0 for ms in steps.values())
    assert steps["model call (features, predict_proba)"] > 0


def test_the_openmp_policies_script_measures_each_policy_in_its_own_process(trained_store):
    """`python -m bench.openmp_policies` (the wait policies behind serving/core/threads.py) runs as typed."""
    result = run_cli("-m", "bench.openmp_policies", "--rows", "300", "--reps", "2")
    rows = [line.split("|")[1:3] for line in result.stdout.splitlines() if line.startswith("| ") and "wait policy" not in line]
    seen = {(policy.strip(), threads.strip()) for policy, threads in rows}
    assert {policy for policy, _ in seen} >= {"default", "passive"}
    assert {threads for _, threads in seen} == {"scikit-learn, 1 thread", "scikit-learn, 2 threads", "compiled, 1 thread",
                                              "compiled, 2 slices prepared once"}


@pytest.mark.slow
def test_the_cpu_per_call_script_reads_a_real_servers_cpu_per_body(trained_store):
    """`python -m bench.cpu_per_call` (the CPU a big request costs each server, docs/performance.md) runs as typed;
    MLServer left out, as CI has no MLServer virtualenv."""
    result = run_cli("-m", "bench.cpu_per_call", "--no-mlserver", "--rows", "200", "--reps", "1")
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| the service")]
    assert [row[1] for row in rows] == ["V2 JSON", "records JSON", "Arrow"]
    for row in rows:
        cpu, bench, curl = (cell.split(" / ") for cell in row[2:])
        assert float(cpu[0]) > 0 and float(bench[0]) > 0 and float(curl[0]) > 0, row
