"""Benchmark of the experiment loop: feedback ingestion and the quality job at a busy day's scale.

    python bench/bench_loop.py                                   # 10M predictions, 2M outcomes, 10 requests
    python bench/bench_loop.py --predictions 1000000 --outcomes 200000 --requests 3   # a tenth of it
    python bench/bench_loop.py --predictions 1000000 --outcomes 200000 --baseline /tmp/main   # before and after:
    #   mkdir /tmp/main && git archive main | tar -x -C /tmp/main   (main's code, run with this virtualenv)

1. Feedback ingestion: `--requests` POST /v1/feedback calls of 10,000 new outcomes each against a real
   `bentoml serve` (bench/harness.py), one at a time, then the same outcomes again (all duplicates); beside it,
   the outcome store alone in process (monitoring/outcomes.py), so the HTTP share shows as a ratio; and the
   store's bytes on disk per outcome.
2. The quality job over `--predictions` logged predictions (purchase_gbm and purchase_lr in alternate blocks of
   10,000, with prediction ids) and `--outcomes` outcomes: the real `python -m monitoring.quality` command, wall
   time, CPU time and the job's own peak RSS (`os.wait4`), with the Evidently reports (on their seeded sample) and
   without them, and the job's phase timings (wall and CPU); with `--baseline CHECKOUT`, that checkout's job and
   this one's alternating on the same log.

The log is in the writer's on-disk format: compacted Parquet segments of 150,000 rows written by
`monitoring.compaction.write_segment`, the function the log's compaction uses, plus a live Arrow segment written
by `PredictionLog.append` one scored batch (`LogBatch`) at a time, as a server writes it; the outcomes go through `OutcomeStore.ingest` in requests of
10,000, like POST /v1/feedback's. Rows are real traffic draws (`monitoring.simulate`) with the models' real
predictions. Segments are generated once per pair of model versions and cached in bench/.cache/loop (gitignored;
BENCH_LOOP_CACHE=DIR for another folder).
Needs the default models in the store (trained if missing). Results: bench/results/loop.json and loop.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")

CHUNK = 10_000  # outcomes per feedback request, and rows per model block in the log
CACHE = ROOT / "bench" / ".cache" / "loop"
SEGMENT_ROWS = 150_000
LIVE_ROWS = 20_000
MODELS = ("purchase_gbm", "purchase_lr")
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
STEP_US = 8_640  # 10M predictions a day: one every 8.64 ms
TARGETS = {"wall_s": 30.0, "peak_rss_mb": 2048.0, "evidently_s": 5.0}


def bench_ingestion(requests: int, workdir: Path) -> dict:
    from bench.harness import Server
    from monitoring.outcomes import Outcome, OutcomeStore
    from serving.core.ids import new_ids

    (workdir / "server").mkdir(exist_ok=True)
    server = Server(workdir / "server", {"OUTCOME_LOG_PATH": str(workdir / "server" / "outcomes.jsonl")})
    try:
        server.wait_until_up(timeout=300, ready=False)
        bodies = [{"outcomes": [{"prediction_id": i, "outcome": int(k % 3 == 0)} for k, i in enumerate(new_ids(CHUNK))]}
                  for _ in range(requests)]
        payloads = [json.dumps(b).encode() for b in bodies]
        with httpx.Client(timeout=120, headers={"content-type": "application/json"}) as client:
            client.post(server.url + "/v1/feedback", content=json.dumps({"outcomes": bodies[0]["outcomes"][:10]}))
            timings = {}
            for kind in ("new", "duplicate"):
                started = time.perf_counter()
                for payload in payloads:
                    response = client.post(server.url + "/v1/feedback", content=payload)
                    assert response.status_code == 200, response.text
                timings[kind] = time.perf_counter() - started
        curl = _curl_seconds(server.url + "/v1/feedback", requests, workdir)
    finally:
        server.stop()
    store = OutcomeStore(workdir / "inprocess.jsonl", 64 << 20)
    batches = [[Outcome(i, 1) for i in new_ids(CHUNK)] for _ in range(requests)]
    started = time.perf_counter()
    for batch in batches:
        store.ingest(batch)
    in_process = time.perf_counter() - started
    store.close()
    total = requests * CHUNK
    on_disk = sum(p.stat().st_size for p in workdir.glob("inprocess.*") if p.is_file())
    return {
        "requests": requests,
        "items_per_request": CHUNK,
        "http_new_outcomes_per_s": round(total / timings["new"]),
        "http_new_us_per_outcome": round(timings["new"] / total * 1e6, 2),
        "http_duplicate_outcomes_per_s": round(total / timings["duplicate"]),
        "in_process_store_outcomes_per_s": round(total / in_process),
        "http_over_store_time": round(timings["new"] / in_process, 2),
        # The same requests sent by curl (new outcomes again): the bench's own client, checked by an external one.
        "curl_new_outcomes_per_s": round(total / curl) if curl else None,
        "store_bytes_per_outcome": round(on_disk / total, 1),
    }


def _curl_seconds(url: str, requests: int, workdir: Path) -> float | None:
    """Time `requests` POSTs of 10,000 new outcomes each with curl (one process per request, its own timer)."""
    import shutil

    from serving.core.ids import new_ids

    if shutil.which("curl") is None:
        return None
    body = workdir / "curl-body.json"
    total = 0.0
    for _ in range(requests):
        body.write_text(json.dumps({"outcomes": [{"prediction_id": i, "outcome": 1} for i in new_ids(CHUNK)]}))
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-H",
                               "Content-Type: application/json", "--data-binary", f"@{body}", url],
                              capture_output=True, text=True, check=True)
        status, seconds = done.stdout.split()
        assert status == "200", done.stdout
        total += float(seconds)
    return total


# ------------------------------------------------------------------------------------------------- the log


def _models() -> list:
    from training.store import load_model

    return [load_model(f"{name}:latest") for name in MODELS]


def _cache(models) -> Path:
    """This pair of model versions' cached segments: a retrained model gets its own, never another's."""
    return Path(os.environ.get("BENCH_LOOP_CACHE", CACHE)) / "-".join(f"{m.name}-{m.version}" for m in models)


def _rows(models, number: int, rows: int, first_row: int) -> tuple[dict, np.ndarray]:
    """`rows` logged predictions starting at row `first_row` of the day (models alternating every CHUNK rows), as
    Arrow-ready columns, and the students' true outcomes."""
    import pyarrow as pa

    from monitoring.simulate import draw_traffic
    from serving.core.ids import new_ids
    from training.schema import PURCHASE

    frame = draw_traffic(rows, seed=1_000 + number, with_outcome=True)
    inputs = frame[PURCHASE.columns]
    micros = (first_row + np.arange(rows)) * STEP_US
    stamps = np.datetime64(START.replace(tzinfo=None), "us") + micros.astype("timedelta64[us]")
    start_ms = int(START.timestamp() * 1000)
    probability = np.empty(rows)
    names, versions, variants, ids = [], [], [], []
    for begin in range(0, rows, CHUNK):
        part = slice(begin, min(begin + CHUNK, rows))
        size = part.stop - part.start
        model = models[((first_row + begin) // CHUNK) % len(models)]
        probability[part] = model.predict_proba(inputs.iloc[part])
        names += [model.name] * size
        versions += [model.version] * size
        variants += [model.labels.get("variant")] * size
        for at in range(part.start, part.stop, 1_000):  # ids carry their prediction's millisecond (UUIDv7)
            ids += new_ids(min(1_000, part.stop - at), now_ms=start_ms + int(micros[at] // 1_000))
    threshold = {m.name: m.threshold for m in models}
    columns = {
        "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        "request_id": pa.array([f"bench-{number}-{i // 100}" for i in range(rows)]),
        "endpoint": pa.array(["/batch_predict"] * rows),
        "model_name": pa.array(names),
        "model_version": pa.array(versions),
        "routing_key": pa.nulls(rows),
        "variant": pa.array(variants),
        "alias": pa.nulls(rows),
        "shadow": pa.array(np.zeros(rows, dtype=bool)),
        "prediction_id": pa.array(ids),
        **{c: pa.array(inputs[c].to_numpy()) for c in inputs.columns},
        "probability": pa.array(probability),
        "prediction": pa.array((probability >= np.array([threshold[n] for n in names])).astype(np.int64)),
    }
    return columns, frame[PURCHASE.label].to_numpy()


def _segments(models, count: int) -> list[tuple[Path, Path]]:
    """The first `count` cached segments and their outcome files, generating the missing ones."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitoring.compaction import write_segment

    folder = _cache(models)
    (folder / "segments").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    paths = []
    for number in range(count):
        start = START + timedelta(microseconds=number * SEGMENT_ROWS * STEP_US)
        segment = folder / "segments" / f"prediction_log.jsonl.{start.strftime('%Y%m%dT%H%M%S%f')}.1.parquet"
        labels = folder / "labels" / f"{number:05d}.parquet"
        if not segment.exists() or not labels.exists():
            columns, outcome = _rows(models, number, SEGMENT_ROWS, number * SEGMENT_ROWS)
            pq.write_table(pa.table({"prediction_id": columns["prediction_id"], "outcome": outcome}), labels)
            write_segment(pa.table(columns), segment)
            print(f"  generated {segment.name} ({number + 1}/{count})", file=sys.stderr)
        paths.append((segment, labels))
    return paths


def _ingest(store, ids, labels, share: float, rng) -> int:
    from monitoring.outcomes import Outcome

    keep = np.flatnonzero(rng.random(len(ids)) < share)
    outcomes = [Outcome(ids[i], int(labels[i])) for i in keep]
    for begin in range(0, len(outcomes), CHUNK):
        store.ingest(outcomes[begin:begin + CHUNK])
    return len(outcomes)


def log_of(predictions: int, outcomes: int) -> tuple[Path, Path]:
    """A folder holding a log of `predictions` rows (linked cached segments plus a live Arrow segment written by
    PredictionLog) and an outcome store with about `outcomes` of their outcomes, in ingestion requests of 10,000."""
    import pyarrow.parquet as pq

    from monitoring.outcomes import OutcomeStore
    from monitoring.logbatch import LogBatch, LogContext
    from monitoring.predictlog import PredictionLog
    from training.schema import PURCHASE

    models = _models()
    folder = _cache(models) / f"log-{predictions}-{outcomes}"
    live, store_path = folder / "prediction_log.jsonl", folder / "outcomes" / "outcomes.jsonl"
    done = folder / "complete"
    if done.exists():
        return live, store_path
    if folder.exists():
        import shutil

        shutil.rmtree(folder)  # a generation that was interrupted
    folder.mkdir(parents=True)
    count = max(0, (predictions - LIVE_ROWS) // SEGMENT_ROWS)
    share = outcomes / predictions
    rng = np.random.default_rng(0)
    store = OutcomeStore(store_path, 64 << 20)
    for segment, labels in _segments(models, count):
        (folder / segment.name).symlink_to(segment)
        table = pq.read_table(labels)
        _ingest(store, table["prediction_id"].to_pylist(), table["outcome"].to_numpy(), share, rng)
    tail = predictions - count * SEGMENT_ROWS
    columns, labels = _rows(models, count, tail, count * SEGMENT_ROWS)
    log = PredictionLog(live, max_bytes=1 << 40)  # no maintenance: its Arrow segment stays live, as a server's
    ids = columns["prediction_id"].to_pylist()
    import pandas as pd

    inputs = pd.DataFrame({c: columns[c].to_numpy(zero_copy_only=False) for c in PURCHASE.columns})
    names = columns["model_name"].to_pylist()
    versions = columns["model_version"].to_pylist()
    variants = columns["variant"].to_pylist()
    stamps = columns["ts"].to_pylist()
    probability = columns["probability"].to_numpy()
    prediction = columns["prediction"].to_numpy()
    for begin in range(0, tail, 1_000):  # as a server logs them: one scored batch at a time, through the Arrow writer
        part = slice(begin, min(begin + 1_000, tail))
        context = LogContext(endpoint="/batch_predict", model_name=names[begin], model_version=versions[begin],
                             request_id=f"live-{begin}", variant=variants[begin], ts=stamps[begin])
        if not log.append(LogBatch(inputs.iloc[part], probability[part], prediction[part], context, ids[part])):
            raise RuntimeError(f"the prediction log at {live} refused a batch")
    log.close()
    _ingest(store, ids, labels, share, rng)
    store.close()
    done.touch()
    return live, store_path


# ----------------------------------------------------------------------------------------- the quality job


def run_job(command: list[str], cwd: Path = ROOT) -> dict:
    """A command as a user runs it: wall time, its CPU time and its own peak RSS (os.wait4 of the child)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        child = subprocess.Popen(command, cwd=cwd, stdout=out_file, stderr=err_file)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        err_file.seek(0)
        out_file.seek(0)
        stderr, stdout = err_file.read().decode(), out_file.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed: {stderr[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stdout": stdout}


def _quality_command(log_path: Path, outcome_path: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "monitoring.quality", "--task", "purchase", "--log", str(log_path.parent),
            "--outcomes", str(outcome_path), "--out", str(out), "--state", str(out / "state.json"),
            "--workspace", str(out / "workspace"), *extra]


def compare_baseline(predictions: int, outcomes: int, baseline: Path, rounds: int, workdir: Path) -> list[dict]:
    """The quality job with the reports, this checkout's and `baseline`'s (another checkout of the project, run
    with this virtualenv), alternating, on the same log: before and after, side by side."""
    log_path, outcome_path = log_of(predictions, outcomes)
    runs = []
    for number in range(rounds):
        for label, root in (("baseline", baseline), ("this checkout", ROOT)):
            out = workdir / f"compare-{number}-{label.replace(' ', '_')}"
            run = run_job(_quality_command(log_path, outcome_path, out, []), cwd=root)
            runs.append({"code": label, "root": str(root), **{k: v for k, v in run.items() if k != "stdout"},
                         "load_average": os.getloadavg()})
    return runs


def bench_quality(predictions: int, outcomes: int, workdir: Path) -> dict:
    log_path, outcome_path = log_of(predictions, outcomes)
    results: dict = {"predictions": predictions, "outcomes_target": outcomes}
    for label, extra in (("with_evidently", []), ("without_evidently", ["--no-evidently"])):
        out = workdir / label
        run = run_job(_quality_command(log_path, outcome_path, out, extra))
        summary = json.loads((out / "quality_purchase.json").read_text())
        results[label] = {**{k: v for k, v in run.items() if k != "stdout"}, "phases_s": summary["seconds"],
                          "phases_cpu_s": summary["cpu_seconds"],
                          "predictions": summary["predictions"], "with_outcome": summary["with_outcome"],
                          "reports": [{"arm": r["arm"], "sample": r["sample"]} for r in summary.get("reports", [])],
                          "load_average": os.getloadavg()}
        results[label]["table"] = run["stdout"].splitlines()[:3]
    return results


def markdown(results: dict) -> str:
    quality, ingestion = results["quality"], results["ingestion"]
    lines = ["# The experiment loop at scale (bench/bench_loop.py)", "",
             f"Command: `{results['command']}`; {os.cpu_count()} cores; load average (1, 5, 15 min) at the end: "
             + ", ".join(f"{v:.1f}" for v in results["load_average"]) + ".", "",
             f"## Quality job: {quality['predictions']:,} predictions, "
             f"{quality['with_evidently']['with_outcome']:,} with an outcome", "",
             "| run | wall (s) | CPU (s) | peak RSS (MB) | phases, wall (s) | phases, CPU (s) | target |",
             "|---|---|---|---|---|---|---|"]
    for label in ("with_evidently", "without_evidently"):
        r = quality[label]
        target = (f"<= {TARGETS['wall_s']:g} s, <= {TARGETS['peak_rss_mb'] / 1024:g} GB (at 10M / 2M)"
                  if label == "with_evidently" else "")
        lines.append(f"| {label.replace('_', ' ')} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | "
                     f"{json.dumps(r['phases_s'])} | {json.dumps(r['phases_cpu_s'])} | {target} |")
    samples = "; ".join(f"{r['arm']}: {r['sample']['rows']:,} of {r['sample']['of']:,} rows, seed "
                        f"{r['sample']['seed']}" for r in quality["with_evidently"]["reports"])
    evidently = quality["with_evidently"]["phases_s"].get("evidently")
    evidently_cpu = quality["with_evidently"]["phases_cpu_s"].get("evidently")
    lines += ["", f"Evidently's reports, its import included (target under {TARGETS['evidently_s']:g} s at any size): "
              f"{evidently} s wall, {evidently_cpu} s CPU, on seeded samples ({samples}).", "",
              "On a busy machine the wall time mostly measures the neighbours: the CPU time is the job's own.", "",
              "## Feedback ingestion (POST /v1/feedback, 10,000 outcomes per request, one client)", "",
              f"- new outcomes over HTTP: {ingestion['http_new_outcomes_per_s']:,}/s "
              f"({ingestion['http_new_us_per_outcome']} µs per outcome); the same requests sent by curl: "
              + (f"{ingestion['curl_new_outcomes_per_s']:,}/s" if ingestion.get("curl_new_outcomes_per_s")
                 else "curl not installed"),
              f"- duplicates over HTTP: {ingestion['http_duplicate_outcomes_per_s']:,}/s",
              f"- the store alone, in process: {ingestion['in_process_store_outcomes_per_s']:,}/s "
              f"(HTTP takes {ingestion['http_over_store_time']}x the store's time)",
              f"- the store on disk: {ingestion['store_bytes_per_outcome']} bytes per outcome (log and index)", ""]
    if results.get("baseline"):
        lines += ["## Before and after: the quality job with the reports, alternating on the same log", "",
                  "| code | wall (s) | CPU (s) | peak RSS (MB) | load average (1 min) |", "|---|---|---|---|---|"]
        lines += [f"| {r['code']} ({r['root']}) | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | "
                  f"{r['load_average'][0]:.1f} |" for r in results["baseline"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=10_000_000)
    parser.add_argument("--outcomes", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=10, help="10,000-outcome feedback requests to time")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also run another checkout's quality job (main's: mkdir /tmp/main; git archive main | "
                        "tar -x -C /tmp/main) alternating with this one's on the same log, --rounds times each")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if not 0 < args.outcomes <= args.predictions or args.predictions < LIVE_ROWS:
        parser.error(f"need 0 < --outcomes <= --predictions and --predictions >= {LIVE_ROWS}")
    from bench.harness import train_if_missing

    train_if_missing(*MODELS)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        workdir = Path(tmp)
        results = {"command": "python bench/bench_loop.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "ingestion": bench_ingestion(args.requests, workdir),
                   "quality": bench_quality(args.predictions, args.outcomes, workdir)}
        if args.baseline:
            results["baseline"] = compare_baseline(args.predictions, args.outcomes, args.baseline.resolve(),
                                                   args.rounds, workdir)
        results["load_average"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loop.json").write_text(json.dumps(results, indent=2))
    (args.out / "loop.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
