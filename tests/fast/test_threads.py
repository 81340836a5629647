"""The threads of a model call follow the load (serving/core/threads.py): a big call takes the cores that are free
when it starts, a small one one thread; a call of n threads is n slices of rows on n Python threads of one OpenMP
thread each; the budget is shared between processes through flocks, which a killed process gives back; libgomp's
waiting threads sleep in a server process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_info

from serving.core.threads import MIN_ROWS_PER_THREAD, CoreBudget, ModelThreads, wanted_threads

ROOT = Path(__file__).resolve().parents[2]
BIG = 10_000


def openmp_threads() -> list[int]:
    """What this thread's next OpenMP region would use, per loaded libgomp (sklearn's own copy among them)."""
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "openmp"]


@pytest.fixture(autouse=True, scope="module")
def _libgomp_loaded():
    import sklearn.ensemble  # noqa: F401 - loads sklearn's libgomp, as the models do

    assert openmp_threads(), "scikit-learn's libgomp is not loaded"


def test_small_batches_want_one_thread_and_big_ones_every_core():
    assert wanted_threads(1, 8) == 1
    assert wanted_threads(2 * MIN_ROWS_PER_THREAD - 1, 8) == 1
    assert wanted_threads(2 * MIN_ROWS_PER_THREAD, 8) == 2
    assert wanted_threads(BIG, 2) == 2
    assert wanted_threads(1_000_000, 4) == 4


def test_a_call_takes_what_is_free_when_it_starts_and_gives_it_back():
    threads = ModelThreads(CoreBudget(2))
    with threads.call(BIG) as alone:
        assert alone == 2 and set(openmp_threads()) == {1}  # two slices of one OpenMP thread each (`run`)
        assert threads.budget.free() == 0
    assert threads.budget.free() == 2
    with threads.call(1) as single:  # a single record holds one token meanwhile
        assert single == 1 and set(openmp_threads()) == {1}
        seen: list[int] = []
        worker = threading.Thread(target=lambda: seen.append(_big_call(threads)))
        worker.start()
        worker.join()
        assert seen == [1]  # the big call started beside it got the one core left
    with threads.call(BIG):
        with threads.call(1) as squeezed:  # nothing free: a small call still runs, with one thread, at once
            assert squeezed == 1
    assert threads.budget.free() == 2


def _big_call(threads: ModelThreads) -> int:
    with threads.call(BIG) as n:
        assert set(openmp_threads()) == {1}
        return n


def test_background_work_takes_one_thread_at_most():
    threads = ModelThreads(CoreBudget(4))
    with threads.call(1_000_000, background=True) as n:
        assert n == 1 and threads.budget.free() == 3


def test_an_explicit_omp_num_threads_is_respected():
    threads = ModelThreads.from_settings(None, None, "3,1")
    with threads.call(BIG) as n:
        assert n == 3
    assert threads.budget.free() == threads.budget.cores  # no tokens taken


class Recorder:
    """A stand-in for a model (serving.core.threads.Scorer) that records how often its inputs were prepared, and
    which thread scored which rows at how many OpenMP threads; `fail_at` raises for the slice starting at that row."""

    def __init__(self, fail_at: int | None = None):
        self.prepared = 0
        self.calls: list[tuple[str, int, int, list[int]]] = []
        self.fail_at = fail_at
        self.ended: list[int] = []  # first rows of the slices that returned
        self._lock = threading.Lock()

    def prepare(self, raw: pd.DataFrame) -> pd.DataFrame:
        self.prepared += 1
        return raw

    def score(self, rows: pd.DataFrame) -> np.ndarray:
        with self._lock:
            self.calls.append((threading.current_thread().name, int(rows.index[0]), len(rows), openmp_threads()))
        if self.fail_at == rows.index[0]:
            raise ValueError("this slice fails")
        time.sleep(0.2)  # long enough that a slice still running when the call returns would show
        self.ended.append(int(rows.index[0]))
        return rows["x"].to_numpy() * 2.0


def test_a_call_of_n_threads_is_n_slices_of_rows_on_one_openmp_thread_each():
    threads = ModelThreads(CoreBudget(3))
    frame = pd.DataFrame({"x": np.arange(BIG, dtype=float)})
    predict = Recorder()
    with threads.call(BIG) as n:
        out = threads.run(predict, frame, n)
    assert n == 3 and np.array_equal(out, frame["x"].to_numpy() * 2.0), "the slices come back in their order"
    assert predict.prepared == 1, "the inputs are prepared once for every slice"
    assert sorted((start, rows) for _, start, rows, *_ in predict.calls) == [(0, 3333), (3333, 3333), (6666, 3334)]
    assert len({name for name, *_ in predict.calls}) == 3, "each slice on its own thread"
    assert all(set(omp) == {1} for *_, omp in predict.calls), "one OpenMP thread per slice"
    assert threading.current_thread().name in {name for name, *_ in predict.calls}, "the calling thread takes a slice"
    single = Recorder()
    with threads.call(1) as n:
        assert np.array_equal(threads.run(single, frame.iloc[:1], n), [0.0]) and len(single.calls) == 1
    threads.close()


def test_a_failing_slice_fails_the_call_after_every_slice_ended():
    threads = ModelThreads(CoreBudget(2))
    frame = pd.DataFrame({"x": np.arange(BIG, dtype=float)})
    predict = Recorder(fail_at=0)  # the calling thread's own slice fails; the other is still sleeping
    with pytest.raises(ValueError, match="this slice fails"), threads.call(BIG) as n:
        threads.run(predict, frame, n)
    assert predict.ended == [5000], "the other slice ended before the call failed"
    assert threads.budget.free() == 2
    threads.close()


def test_an_explicit_omp_num_threads_is_that_many_slices_of_one_openmp_thread_each():
    threads = ModelThreads.from_settings(1, None, "3")  # more than the budget's cores: the count set wins
    predict = Recorder()
    with threads.call(BIG) as n:
        threads.run(predict, pd.DataFrame({"x": np.arange(BIG, dtype=float)}), n)
    assert n == 3 and sorted((start, rows) for _, start, rows, _ in predict.calls) == [(0, 3333), (3333, 3333),
                                                                                        (6666, 3334)]
    assert len({name for name, *_ in predict.calls}) == 3 and all(set(omp) == {1} for *_, omp in predict.calls)
    with threads.call(BIG, background=True) as shadow, threads.call(1) as single:
        assert shadow == 1 and single == 1
    threads.close()


HOLDER = """
import sys, time
from pathlib import Path
from serving.core.threads import CoreBudget
budget = CoreBudget(2, Path(sys.argv[1]))
assert budget.take(int(sys.argv[2])) != []
print("holding", flush=True)
time.sleep(600)
"""


def _holder(folder: Path, tokens: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(tokens)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_workers_share_the_budget_and_a_killed_worker_gives_its_cores_back(tmp_path):
    """Two processes on one folder (the workers of one server): a call sees the other's tokens; SIGKILL frees them."""
    threads = ModelThreads(CoreBudget(2, tmp_path))
    other = _holder(tmp_path, 1)
    try:
        with threads.call(BIG) as n:
            assert n == 1
        os.kill(other.pid, signal.SIGKILL)
        other.wait(timeout=10)
        with threads.call(BIG) as n:
            assert n == 2
    finally:
        if other.poll() is None:
            other.kill()
    both = _holder(tmp_path, 2)
    try:
        with threads.call(1) as n:  # every core taken elsewhere: a single record still runs at once
            assert n == 1
    finally:
        both.kill()
        both.wait(timeout=10)
    threads.budget.close()


WAIT_POLICY = "import serving.web.startup, sklearn.ensemble"


def _spin_count(env: dict[str, str | None]) -> str:
    """libgomp's spin count before a waiting thread sleeps, as it prints its settings when it loads
    (OMP_DISPLAY_ENV=VERBOSE): 0 is the passive policy."""
    run = subprocess.run([sys.executable, "-c", WAIT_POLICY], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in {**os.environ, "OMP_DISPLAY_ENV": "VERBOSE", **env}.items() if v is not None})
    assert run.returncode == 0, run.stderr[-2000:]
    [line] = [line for line in run.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    return line.split("=")[1].strip().strip("'")


def test_a_server_process_makes_waiting_openmp_threads_sleep():
    """Passive in a process that starts the service; an explicit policy or spin count is kept."""
    assert _spin_count({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}) == "0"
    assert int(_spin_count({"OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": None})) > 300_000
    assert _spin_count({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}) == "1000"
