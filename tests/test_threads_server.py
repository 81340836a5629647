"""A real server's model calls take their OpenMP threads from the cores its workers share (serving/core/threads.py),
read from `serving_model_call_threads` on /metrics: a lone big batch every core, a single record one, a big batch
beside a call holding a core what is left."""

from __future__ import annotations

import fcntl
import os

import orjson
import pytest

from bench.mlserver_peer import v2_request
from tests.test_monitoring_loop import metric
from training.data import generate_purchase

ROWS = 10_000


@pytest.fixture(scope="module")
def shared_cores(start_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cores")
    # Two workers and two cores, in a folder of the test's choosing (CORE_TOKENS_DIR), so the test can hold a core.
    # OMP_DISPLAY_ENV: each process's libgomp prints its settings to the server's output as it loads.
    return start_server({"WORKERS": "2", "MODEL_THREADS": "2", "CORE_TOKENS_DIR": str(folder),
                         "OMP_DISPLAY_ENV": "VERBOSE"}), folder


def threads_used(server, endpoint: str) -> tuple[float, float]:
    """(calls, threads summed over them) for one endpoint, over both workers."""
    text = server.get("/metrics").text
    return (metric(text, "serving_model_call_threads_count", endpoint=endpoint),
            metric(text, "serving_model_call_threads_sum", endpoint=endpoint))


def big_call(server) -> None:
    frame = generate_purchase(ROWS, seed=3).drop(columns="purchased")
    response = server.post("/v2/models/purchase_gbm/infer", content=orjson.dumps(v2_request(frame)),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_a_lone_big_batch_uses_every_core_and_a_single_record_one(shared_cores):
    server, _ = shared_cores
    calls, threads = threads_used(server, "/v2/infer")
    big_call(server)
    assert threads_used(server, "/v2/infer") == (calls + 1, threads + 2)
    calls, threads = threads_used(server, "/predict")
    record = generate_purchase(1, seed=4).drop(columns="purchased").to_dict("records")[0]
    assert server.post("/predict", record).status_code == 200
    assert threads_used(server, "/predict") == (calls + 1, threads + 1)


def test_a_big_batch_beside_a_busy_core_takes_what_is_left(shared_cores):
    server, folder = shared_cores
    # Hold one token as a busy worker would; the workers made the files with their first call (the test above).
    fd = os.open(folder / "core-0", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        calls, threads = threads_used(server, "/v2/infer")
        big_call(server)
        assert threads_used(server, "/v2/infer") == (calls + 1, threads + 1)
    finally:
        os.close(fd)
    calls, threads = threads_used(server, "/v2/infer")
    big_call(server)
    assert threads_used(server, "/v2/infer") == (calls + 1, threads + 2)


def test_every_process_of_the_server_loads_libgomp_with_sleeping_waits(shared_cores):
    """OMP_WAIT_POLICY=PASSIVE reaches libgomp in every process that loads it (`bentoml serve`, both workers), so
    none of them spins at a barrier: libgomp reads the policy once, when it loads, and nothing may load it earlier."""
    server, _ = shared_cores
    spin_counts = [line.split("=")[1].strip().strip("'") for line in server.output.read_text().splitlines()
                   if line.strip().startswith("GOMP_SPINCOUNT")]
    assert len(spin_counts) >= 3, server.output.read_text()[-3000:]  # the serve process and two workers at least
    assert set(spin_counts) == {"0"}
