"""The outcome store on a real server with two workers: a duplicate sent to the other worker is still a duplicate,
and a million outcomes leave every worker's memory flat (RSS sampled while they arrive)."""

from __future__ import annotations

import http.client
import json
import random
import re
import sqlite3
import threading
import time

from pathlib import Path

import psutil
import pytest

from monitoring.logreader import LogReader
from monitoring.segments import family
from serving.core.ids import new_ids
from settings import Settings

# A million outcomes: the first warm the workers up until each has rotated the log (every 8 MiB, about 55,000
# outcomes) at least once, the rest are measured (the store's JSON-lines writer only appends and rotates; rotated
# segments are compacted by the quality job's reader). The in-memory index this store replaced grew by about 150
# bytes per outcome in every worker (each held every worker's outcomes): 120 MB over the measured outcomes, 60 MB
# over their second half. Bounded: no sample of a worker's RSS exceeds its RSS after the warm-up by more than
# PEAK_MB (retention's passes and SQLite's checkpoints are transients; allocators and pools may also step up
# once). Flat: over the second half of the run, each worker's RSS floor (its lowest sample, below the transients)
# rises by less than FLAT_MB.
FLAT_MB = 10
PEAK_MB = 64
SEGMENT_BYTES = 8 << 20
TOTAL_BATCHES = 100
BATCH = 10_000
MAX_AGE = Settings.model_fields["max_connection_age_seconds"].default  # the fixture keeps it


@pytest.fixture(scope="module")
def two_workers(start_server, tmp_path_factory):
    state = tmp_path_factory.mktemp("outcome-store")
    server = start_server({"WORKERS": "2", "OUTCOME_LOG_PATH": str(state / "outcomes.jsonl"),
                           "PREDICTION_LOG_MAX_BYTES": str(SEGMENT_BYTES)})
    server.outcomes = state / "outcomes.jsonl"
    return server


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # exited between the listing and the look (a maintenance process losing its election)
        return []


def _workers(server) -> list[psutil.Process]:
    root = psutil.Process(server.process.pid)
    workers = [p for p in root.children(recursive=True) if "--worker-id" in _cmdline(p)]
    assert len(workers) == 2, [p.cmdline() for p in workers]
    return workers


def _worker_of(connection: http.client.HTTPConnection, workers: list[psutil.Process]) -> int:
    """The pid of the worker that accepted this (kept-alive) connection."""
    port = connection.sock.getsockname()[1]
    for worker in workers:
        if any(c.raddr and c.raddr.port == port for c in worker.net_connections(kind="tcp")):
            return worker.pid
    raise AssertionError(f"no worker holds the connection from port {port}")


def _connect(server, workers: list[psutil.Process]) -> tuple[int, http.client.HTTPConnection]:
    """A new kept-alive connection and the pid of the worker that accepted it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    connection.request("GET", "/livez")
    connection.getresponse().read()
    return _worker_of(connection, workers), connection


class Pinned:
    """Requests to one worker: a kept-alive connection stays with the worker that accepted it. When the server ends
    one (idle for its keep-alive of 5 s, or older than MAX_CONNECTION_AGE_SECONDS), connections are opened until that
    worker accepts one again."""

    def __init__(self, server, pid: int, connection: http.client.HTTPConnection):
        self.server, self.pid, self.connection = server, pid, connection

    def _reconnect(self) -> None:
        self.connection.close()
        workers = _workers(self.server)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pid, connection = _connect(self.server, workers)
            if pid == self.pid:
                self.connection = connection
                return
            connection.close()
            time.sleep(0.05)
        raise AssertionError(f"for 180 s no connection went to worker {self.pid}")

    def post(self, outcomes: list[dict]) -> dict:
        body = json.dumps({"outcomes": outcomes})
        for attempt in range(2):
            try:
                self.connection.request("POST", "/v1/feedback", body, {"Content-Type": "application/json"})
                response = self.connection.getresponse()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                if attempt:
                    raise
                self._reconnect()  # the request never reached the worker: the connection was closed before it
        text = response.read()
        if response.will_close:  # `Connection: close` by age: http.client would reopen to either worker
            self._reconnect()
        assert response.status == 200, text
        return json.loads(text)

    def worker(self) -> int:
        return _worker_of(self.connection, _workers(self.server))

    def close(self) -> None:
        self.connection.close()


def _one_connection_per_worker(server) -> list[Pinned]:
    """One pinned connection per worker (a worker still loading its models accepts none yet: wait for it)."""
    workers = _workers(server)
    pinned: dict[int, http.client.HTTPConnection] = {}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pid, connection = _connect(server, workers)
        if pid in pinned:
            connection.close()
            time.sleep(0.1)
        else:
            pinned[pid] = connection
        if len(pinned) == 2:
            return [Pinned(server, pid, connection) for pid, connection in pinned.items()]
    raise AssertionError(f"for 180 s every connection went to worker(s) {sorted(pinned)}")


def test_a_duplicate_sent_to_the_other_worker_is_still_a_duplicate(two_workers):
    first, second = _one_connection_per_worker(two_workers)
    ids = new_ids(50)
    assert first.post([{"prediction_id": i, "outcome": 1} for i in ids])["accepted"] == 50
    again = second.post([{"prediction_id": i, "outcome": 1} for i in ids])
    assert (again["accepted"], again["duplicates"]) == (0, 50)
    corrected = second.post([{"prediction_id": ids[0], "outcome": 0}])
    assert (corrected["accepted"], corrected["corrections"], corrected["corrected"]) == (1, 1, [ids[0]])
    time.sleep(MAX_AGE + 0.2)  # the pinned connections are ended by age and found again
    assert first.post([{"prediction_id": ids[0], "outcome": 0}])["duplicates"] == 1  # the correction, seen back
    assert second.post([{"prediction_id": ids[1], "outcome": 1}])["duplicates"] == 1
    assert (first.worker(), second.worker()) == (first.pid, second.pid) and first.pid != second.pid
    for connection in (first, second):
        connection.close()
    rows = LogReader(two_workers.outcomes).table(["prediction_id", "outcome", "correction"]).to_pylist()
    mine = [(r["prediction_id"], r["outcome"], r["correction"]) for r in rows if r["prediction_id"] in ids]
    assert len(mine) == 51 and mine[-1] == (ids[0], 0, True)  # 50 new lines, one correction, no duplicate line


class _Sampler(threading.Thread):
    """Each worker's RSS every 0.2 s, from `start()` to `stop()`."""

    def __init__(self, workers: list[psutil.Process]):
        super().__init__(daemon=True)
        self.workers = workers
        self.peaks = {w.pid: 0 for w in workers}
        self.series: dict[int, list[int]] = {w.pid: [] for w in workers}
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.2):
            for worker in self.workers:
                rss = worker.memory_info().rss
                self.peaks[worker.pid] = max(self.peaks[worker.pid], rss)
                self.series[worker.pid].append(rss >> 20)
            self.samples += 1

    def stop(self) -> dict[int, int]:
        self._done.set()
        self.join()
        return self.peaks


def _outcomes(ids: list[str]) -> list[dict]:
    return [{"prediction_id": i, "outcome": int(i[-1], 16) % 2} for i in ids]


def _send(connection: Pinned, batches: list[list[str]], errors: list) -> None:
    try:
        for ids in batches:
            accepted = connection.post(_outcomes(ids))["accepted"]
            assert accepted == len(ids), accepted
    except Exception as exc:  # noqa: BLE001 - a sender thread's failure is the test's
        errors.append(exc)


def _rotators(outcomes: Path) -> set[int]:
    """The pids that rotated the outcome log (a rotated segment's name ends with its rotator's pid)."""
    return {int(m.group(1)) for p in family(outcomes) if (m := re.search(r"\.\d{8}T\d{12}\.(\d+)", p.name))}


def test_a_million_outcomes_keep_every_worker_flat(two_workers):
    connections = _one_connection_per_worker(two_workers)
    workers = _workers(two_workers)
    warm_up: list[list[str]] = []
    errors: list[Exception] = []
    pick = random.Random(0)  # not alternating: six requests fill a segment, so the sixth would always rotate it
    while len(warm_up) < 10 or _rotators(two_workers.outcomes) < {w.pid for w in workers}:
        assert len(warm_up) < 60, f"warm-up: rotations by {_rotators(two_workers.outcomes)} only"
        warm_up.append(new_ids(BATCH))
        _send(connections[pick.randrange(2)], [warm_up[-1]], errors)
    assert not errors, errors
    measured = TOTAL_BATCHES - len(warm_up)
    baseline = {w.pid: w.memory_info().rss for w in workers}
    sampler = _Sampler(workers)
    sampler.start()
    started = time.monotonic()
    batches = [[] for _ in connections]
    for number in range(measured):  # both workers at once
        batches[number % 2].append(new_ids(BATCH))
    senders = [threading.Thread(target=_send, args=(c, b, errors)) for c, b in zip(connections, batches)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    peaks = sampler.stop()
    assert not errors, errors
    seconds = time.monotonic() - started
    peak = {pid: round((peaks[pid] - baseline[pid]) / 2**20, 1) for pid in peaks}
    quarter = max(1, sampler.samples // 4)
    drift = {pid: min(series[-quarter:]) - min(series[-2 * quarter:-quarter]) for pid, series in sampler.series.items()}
    print(f"{TOTAL_BATCHES * BATCH:,} outcomes, the last {measured * BATCH:,} in "
          f"{seconds:.1f} s over 2 workers; peak over the warmed-up RSS (MB) {peak}; last quarter's floor minus the "
          f"third's (MB) {drift}; {sampler.samples} samples; RSS (MB) every tenth of the run: "
          f"{ {pid: series[::max(1, len(series) // 10)] for pid, series in sampler.series.items()} }")
    assert sampler.samples > 20
    assert all(d < FLAT_MB for d in drift.values()), drift
    assert all(p < PEAK_MB for p in peak.values()), peak
    # Still idempotent after all of it, whichever worker answers: the first warm-up batch is all duplicates.
    assert connections[1].post(_outcomes(warm_up[0]))["duplicates"] == BATCH
    for connection in connections:
        connection.close()
    index = sqlite3.connect(str(two_workers.outcomes) + ".index.sqlite")
    assert index.execute("SELECT count(*) FROM outcomes").fetchone()[0] >= 1_000_000
