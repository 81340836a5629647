"""How many OpenMP threads a model call gets: the threads follow the load.

scikit-learn's HistGradientBoosting predicts with OpenMP, one parallel region per tree; the direct path
(training/inference.py) walks the same trees in one compiled loop per slice of rows. Either way a big call is
faster with more threads, and with more threads than free cores the threads only wait for each other. Three things
make the count follow the load:

1. **Waiting threads sleep.** libgomp's default spins at a barrier before it sleeps: a thread whose team-mate lost
   its core burns its own core spinning (a 10,000-row call took 1.4 s instead of 50 ms here under load).
   `serving/web/startup.py` sets `OMP_WAIT_POLICY=PASSIVE` before libgomp loads, so a second thread costs no more
   CPU than one thread where it cannot run (measured in docs/performance.md, which also says what is left to
   measure on a quiet machine).
2. **A core budget per server** (`CoreBudget`): one token per core (`MODEL_THREADS`, default the CPUs this process
   may use: affinity and cgroup quota). A call takes the tokens free when it starts, as many as its rows can use
   (`wanted_threads`): a big call every free one, a small call one. It runs with as many threads as it holds, and
   with one when it finds none (it never waits, so a single record is never queued behind a big call). The
   tokens are `flock`s on files in a folder the server's workers share (made by `bentoml serve`,
   serving/web/startup.py), so with `WORKERS>1` a big call in one worker sees the other workers' calls, and the
   kernel frees a killed worker's tokens.
3. **A call of n threads is n slices of rows** (`ModelThreads.run`): the inputs are prepared once (features and
   encoders, under the GIL), then each slice is scored by its own Python thread with one OpenMP thread. The slices
   never meet at the barriers an OpenMP team does, where a sleeping team-mate must be woken each time, and the
   trees release the GIL while they walk (on the direct path, training/trees.py, for the whole slice at once).
   10,000 rows of `purchase_gbm` (docs/performance.md): 21.1 ms as two slices of the compiled walk, against 37.1
   ms for scikit-learn's own walk as one team of two passive threads.

An explicit `OMP_NUM_THREADS` in the environment is respected instead: every big call then gets that many slices,
and the budget is not used.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

# Below this many rows per thread a second thread gained nothing in scikit-learn's walk: one tree's region over 2,000
# rows was ~25 us of work (10,000 rows took ~32 ms of CPU over 250 trees, docs/performance.md), about what waking a
# sleeping thread costs. The compiled walk (training/trees.py) hands a slice over once per call, so a lower bound
# may pay there; not measured yet.
MIN_ROWS_PER_THREAD = 2_000
TOKEN = "core-{}"


def wanted_threads(rows: int, cores: int) -> int:
    """The threads a call of `rows` rows can use: 1 for small batches, up to `cores` for big ones."""
    return max(1, min(cores, rows // MIN_ROWS_PER_THREAD))


def available_cores() -> int:
    """The CPUs this process may use: its affinity and its cgroup's CPU quota (a container's limit)."""
    return max(1, joblib.cpu_count())


class CoreBudget:
    """The cores a server's model calls share, as tokens: `take` what is free, `give_back` when done.

    `folder`: the server's token files, shared by its workers; None keeps the budget to this process."""

    def __init__(self, cores: int, folder: Path | None = None):
        self.cores = cores
        self.folder = folder
        self._lock = threading.Lock()
        self._held: set[int] = set()  # tokens this process holds (a flock is per open file, not per thread)
        self._files: dict[int, int] = {}

    def _lock_file(self, token: int) -> bool:
        if self.folder is None:
            return True
        fd = self._files.get(token)
        if fd is None:
            fd = self._files[token] = os.open(self.folder / TOKEN.format(token), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another worker holds it
        return True

    def take(self, wanted: int) -> list[int]:
        """Up to `wanted` free tokens (possibly none); never waits."""
        got: list[int] = []
        with self._lock:
            for token in range(self.cores):
                if len(got) == wanted:
                    break
                if token not in self._held and self._lock_file(token):
                    self._held.add(token)
                    got.append(token)
        return got

    def give_back(self, tokens: list[int]) -> None:
        with self._lock:
            for token in tokens:
                if self.folder is not None:
                    fcntl.flock(self._files[token], fcntl.LOCK_UN)
                self._held.discard(token)

    def free(self) -> int:
        """Tokens free now (for tests and the bench; a call uses `take`)."""
        tokens = self.take(self.cores)
        self.give_back(tokens)
        return len(tokens)

    def close(self) -> None:
        with self._lock:
            for fd in self._files.values():
                os.close(fd)  # also releases its flock
            self._files.clear()
            self._held.clear()


class Scorer(Protocol):
    """A model as a call uses it (training.store.StoredModel): inputs prepared once, then scored in row slices."""

    def prepare(self, raw: pd.DataFrame) -> Any: ...

    def score(self, rows: Any) -> np.ndarray: ...


def _rows(prepared: Any, start: int, end: int) -> Any:
    return prepared.iloc[start:end] if isinstance(prepared, pd.DataFrame) else prepared[start:end]


class ModelThreads:
    """Sets each model call's OpenMP threads from the budget (`call`), or leaves an explicit OMP_NUM_THREADS alone."""

    def __init__(self, budget: CoreBudget, fixed: int | None = None):
        self.budget = budget
        self.fixed = fixed  # OMP_NUM_THREADS was set: every call gets that many, no budget
        self._openmp: ThreadpoolController | None = None
        self._set = threading.local()  # the count last set in each thread (omp_set_num_threads is per thread)
        self._slices: ThreadPoolExecutor | None = None  # the threads predicting a split call's other slices

    @classmethod
    def from_settings(cls, model_threads: int | None, folder: Path | None, omp_num_threads: str | None) -> ModelThreads:
        cores = model_threads or available_cores()
        if folder is not None and not folder.is_dir():
            folder = None  # not under `bentoml serve` (an in-process app): this process's own budget
        fixed = None
        if omp_num_threads:  # "4" or a list per nesting level, "4,2": the outer level is what a call gets
            first = omp_num_threads.split(",")[0].strip()
            fixed = int(first) if first.isdigit() else 1
        return cls(CoreBudget(cores, folder), fixed)

    def _apply(self, threads: int) -> None:
        if getattr(self._set, "threads", None) == threads:
            return
        if self._openmp is None or not self._openmp.lib_controllers:
            # Found lazily: libgomp loads with the first model that uses it (sklearn ships its own copy).
            self._openmp = ThreadpoolController().select(user_api="openmp")
        for library in self._openmp.lib_controllers:
            library.set_num_threads(threads)
        if self._openmp.lib_controllers:
            self._set.threads = threads

    @contextmanager
    def call(self, rows: int, *, background: bool = False) -> Iterator[int]:
        """Around one model call of `rows` rows: yields its thread count. Background work (shadow models) takes at
        most one thread."""
        self._apply(1)  # more threads are more slices (`run`), each on one OpenMP thread
        if self.fixed is not None:  # that many slices, as many as the rows can use
            yield 1 if background else wanted_threads(rows, self.fixed)
            return
        wanted = 1 if background else wanted_threads(rows, self.budget.cores)
        tokens = self.budget.take(wanted)
        threads = max(1, len(tokens))
        try:
            yield threads
        finally:
            self.budget.give_back(tokens)

    def run(self, model: Scorer, frame: pd.DataFrame, threads: int) -> np.ndarray:
        """The model's probabilities for `frame`, inside `call`, with the `threads` it yielded: prepared once, then
        scored in that many slices of rows, each on its own Python thread with one OpenMP thread, this thread taking
        the first."""
        if len(frame) == 0:
            return np.empty(0)
        prepared = model.prepare(frame)
        if threads <= 1 or len(frame) < 2:
            return model.score(prepared)
        if self._slices is None:
            self._slices = ThreadPoolExecutor(max(self.budget.cores, self.fixed or 0) - 1 or 1,
                                              thread_name_prefix="model-slice")
        bounds = np.linspace(0, len(frame), min(threads, len(frame)) + 1).astype(int)
        others = [self._slices.submit(self._one_thread, model, _rows(prepared, start, end))
                  for start, end in zip(bounds[1:-1], bounds[2:])]
        try:
            first = model.score(_rows(prepared, 0, bounds[1]))
            return np.concatenate([first, *(other.result() for other in others)])
        finally:
            for other in others:  # a failed slice: the others still end before the call gives its cores back
                other.exception()

    def _one_thread(self, model: Scorer, rows: Any) -> np.ndarray:
        self._apply(1)  # the estimator's own path reads the thread's setting
        return model.score(rows)

    def close(self) -> None:
        if self._slices is not None:
            self._slices.shutdown(wait=True)
        self.budget.close()

    def one_thread(self) -> None:
        """Niced work (explanations): one OpenMP thread and no token, so it never holds a core the prediction lanes
        could take."""
        if self.fixed is None:
            self._apply(1)
