"""Rollout figures on a real server (issue 22): time from start to verdict for a worse and a better candidate at a
stated traffic rate (every outcome posted at once), and for a worse one before any outcome (the estimate decides);
the requests a candidate that raises on every call answered before its rollback; and the controller's cost on the
server's throughput.

    .venv/bin/python bench/bench_rollout.py [--seconds 20] [--tick 1] [--only verdicts|cost]

It works on a private copy of the store BENTOML_HOME points at (trained: `make train`), so no alias of yours
moves; the candidates are variants of the production purchase_gbm (bench/rollout_models.py). Traffic: `Driver`,
four clients posting 40-record /batch_predict requests and the true outcomes of every answer at once; /predict for
the raising candidate and the throughput, through bench_lifecycle's Hammer. Results in bench/results/rollout.json.

`Driver`, `make_versions` and `stage` are also what tests/test_rollout.py uses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_lifecycle import Hammer, p99, private_store  # noqa: E402
from monitoring.simulate import draw_traffic  # noqa: E402
from training.schema import PURCHASE  # noqa: E402

RECORD = orjson.dumps({name: field.examples[0] for name, field in PURCHASE.record.model_fields.items()})


class Driver:
    """`clients` clients sending `batch`-record /batch_predict requests (several connections, so every worker
    answers) and posting the generator's true outcome of every prediction that comes back, until stopped."""

    def __init__(self, url: str, outcomes: bool = True, clients: int = 4, batch: int = 40, pause: float = 0.02):
        self.url, self.outcomes, self.batch, self.pause = url, outcomes, batch, pause
        self.statuses: list[int] = []
        self.started = self.stopped = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(clients)]

    def __enter__(self) -> Driver:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.stopped = time.monotonic()

    def rate(self) -> float:
        """Records per second sent."""
        return len(self.statuses) * self.batch / max(1e-9, (self.stopped or time.monotonic()) - self.started)

    def _run(self, seed: int) -> None:
        frame = draw_traffic(20_000, seed=1000 + seed, with_outcome=True)
        records = frame[PURCHASE.columns].to_dict(orient="records")
        labels = frame[PURCHASE.label].tolist()
        with httpx.Client(base_url=self.url, timeout=60) as client:
            start = 0
            while not self._stop.is_set():
                chunk = slice(start, start + self.batch)
                answer = client.post("/batch_predict", json={"records": records[chunk]})
                self.statuses.append(answer.status_code)
                if answer.status_code == 200 and self.outcomes:
                    ids = [p["prediction_id"] for p in answer.json()["predictions"]]
                    feedback = [{"prediction_id": i, "outcome": y} for i, y in zip(ids, labels[chunk])]
                    client.post("/v1/feedback", json={"outcomes": feedback}).raise_for_status()
                start = (start + self.batch) % (len(records) - self.batch)
                time.sleep(self.pause)


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, "BENTOML_HOME": str(home), **(env or {})},
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{args} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def make_versions(home: Path) -> dict[str, str]:
    """The production purchase_gbm and its variants (bench/rollout_models.py), saved in the store at `home`."""
    gbm = orjson.loads((home / "models" / ".lifecycle-stages.json").read_bytes())["purchase"]["production"]
    made = {"gbm": gbm}
    for kind in ("degraded", "uninformed", "raising", "copy"):
        made[kind] = cli(home, "-m", "bench.rollout_models", kind, gbm).strip().splitlines()[-1]
    return made


def stage(home: Path, production: str, candidate: str) -> None:
    for tag, name in ((production, "production"), (candidate, "candidate")):
        cli(home, "-m", "training.promote", tag, "--stage", name, "--reason", "bench setup")


def saved_state(home: Path) -> dict:
    return orjson.loads((home / "models" / ".rollout-purchase.json").read_bytes())


def wait_ended(home: Path, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while (state := saved_state(home))["status"] == "running":
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout still running: {state['reason']}")
        time.sleep(0.2)
    return state


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="each throughput window")
    parser.add_argument("--tick", type=float, default=1.0, help="ROLLOUT_TICK_SECONDS of the rollouts")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "rollout.json"))
    parser.add_argument("--only", choices=("verdicts", "cost"), help="run one part: the rollouts, or the controller's cost")
    args = parser.parse_args()
    from bench.harness import Server

    source = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    home = private_store(source, work / "home")
    os.environ["BENTOML_HOME"] = str(home)
    versions = make_versions(home)
    (work / "server").mkdir()
    refresh = 1.0
    server = Server(work / "server", {"MODEL_REFRESH_SECONDS": str(refresh), "BATCH_MAX_LATENCY_MS": "20000",
                                      "OUTCOME_LOG_PATH": str(work / "outcomes.jsonl")}).wait_until_up()
    env = {"ROLLOUT_SERVERS": server.url, "ROLLOUT_TICK_SECONDS": str(args.tick), "ROLLOUT_QUALITY_SECONDS": str(args.tick),
           "PREDICTION_LOG_PATH": str(server.log_path), "OUTCOME_LOG_PATH": str(work / "outcomes.jsonl"),
           "STATE_DIR": str(work / "state")}
    budget = ["--min-seconds", "10", "--max-seconds", "300", "--min-rows", "200", "--max-rows", "10000000"]
    results: dict = {"tick_seconds": args.tick, "model_refresh_seconds": refresh, "loadavg": []}

    def rollout(*more: str) -> None:
        cli(home, "-m", "training.rollout", "start", "--task", "purchase", *more, env=env)

    def load() -> str:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()

    try:
        if args.only != "cost":
            cases = {"worse": ("gbm", "degraded", True), "better": ("degraded", "gbm", True),
                     "worse_before_outcomes": ("gbm", "uninformed", False)}
            for case, (production, candidate, outcomes) in cases.items():
                stage(home, versions[production], versions[candidate])
                with Driver(server.url, outcomes=outcomes) as driver:
                    time.sleep(3)
                    started = time.monotonic()
                    rollout("--steps", "shadow,5,25,50", *budget)
                    state = wait_ended(home)
                    took = time.monotonic() - started
                non_200 = sum(1 for s in driver.statuses if s != 200)
                results[case] = {"status": state["status"], "seconds_to_verdict": round(took, 1), "reason": state["reason"],
                                 "records_per_second": round(driver.rate()), "non_200": non_200, "loadavg": load()}
                print(f"{case}: {state['status']} {took:.1f} s after start at {driver.rate():.0f} records/s "
                      f"(4 clients, 40 records a request, {'every outcome posted at once' if outcomes else 'no outcome'}); "
                      f"non-200 {non_200}; "
                      f"load {load()}: {state['reason'][:160]}")

            stage(home, versions["gbm"], versions["raising"])
            hammer = Hammer(server.url + "/predict", RECORD, concurrency=16).start()
            time.sleep(3)
            rollout("--steps", "5", *budget)
            state = wait_ended(home)
            time.sleep(1)
            answers = hammer.stop()
            failed = sorted(a.started for a in answers if a.status != 200)
            rate = len(answers) / (answers[-1].ended - answers[0].started)
            results["raising"] = {"status": state["status"], "answered_500": len(failed), "requests": len(answers),
                                  "requests_per_second": round(rate), "weight": 0.05,
                                  "failing_seconds": round(failed[-1] - failed[0], 2) if failed else 0.0, "loadavg": load()}
            print(f"raising: {len(failed)} requests answered 500 over {results['raising']['failing_seconds']} s at "
                  f"{rate:.0f} /predict requests/s with 5% routed to it, then {state['status']}; load {load()}")

        if args.only != "verdicts":
            stage(home, versions["gbm"], versions["copy"])
            windows: dict[str, list] = {"off": [], "on": []}
            for _ in range(2):  # alternate, so both see the same neighbours' load
                for mode in ("off", "on"):
                    if mode == "off":  # the same 50% split, written by hand: the difference is the controller alone
                        cli(home, "-m", "training.traffic", "--task", "purchase", "--weights",
                            f"{versions['gbm']}=0.5,{versions['copy']}=0.5", "--reason", "bench: split without controller")
                        time.sleep(3 * refresh)
                    if mode == "on":
                        rollout("--steps", "50", "--min-seconds", "10000", "--max-seconds", "20000", "--min-rows", "1",
                                "--max-rows", "100000000")
                        while saved_state(home)["step_started"] is None:
                            time.sleep(0.2)
                    hammer = Hammer(server.url + "/predict", RECORD, concurrency=32).start()
                    time.sleep(args.seconds)
                    windows[mode].append(hammer.stop())
                    if mode == "off":
                        cli(home, "-m", "training.traffic", "--task", "purchase", "--clear", "--reason", "bench")
                    if mode == "on":
                        cli(home, "-m", "training.rollout", "abort", "--task", "purchase", env=env)
                        wait_ended(home)
                        stage(home, versions["gbm"], versions["copy"])
            on = [a for w in windows["on"] for a in w]
            off = [a for w in windows["off"] for a in w]
            ratio = len(on) / len(off)
            results["controller_cost"] = {"throughput_on_over_off": round(ratio, 3), "p99_on_ms": round(p99(on) * 1000, 1),
                                          "p99_off_ms": round(p99(off) * 1000, 1), "seconds_per_window": args.seconds,
                                          "windows": 2, "loadavg": load()}
            print(f"controller on/off (the same 50% split both ways; tick {args.tick} s, quality gate every {args.tick} s): /predict "
                  f"throughput {ratio:.3f}x, p99 {p99(on) * 1000:.1f}/{p99(off) * 1000:.1f} ms at concurrency 32; load {load()}")
    finally:
        server.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text()) if args.only and out.exists() else {}  # one part updates its own keys
    out.write_text(json.dumps({**earlier, **results}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
