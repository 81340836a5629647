"""The embedded engine: scores a file of any size in this process's machine, chunk by chunk.

One reader (this thread) feeds chunks to a pool of workers that each run `job.score_chunk` and turn the result
into Arrow tables; this thread writes them, in input order, through streaming Parquet writers. At most
`workers + 1` chunks are in flight, so memory is bounded by the chunk size, never by the file size.

Threads by default, measured on 2 cores with 1M rows (bench/results/scoring.md has the figures): the heavy
parts release the GIL (Parquet decoding and encoding in Arrow, the boosted trees' OpenMP loop, most NumPy), so
two threads beat one by ~10% for purchase_gbm and ~25% for purchase_lr. Worker processes (`--pool process`)
lost: each must import the stack and load the model (seconds), every chunk is pickled both ways, and their
trees run one OpenMP thread each where one process already used both cores. On a many-core machine where
validation, not the model, is the bottleneck, processes may win: measure with `bench/bench_scoring.py`.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from monitoring.logbatch import LogBatch, now
from monitoring.predictlog import PredictionLog
from scoring import job
from scoring.sources import Source
from scoring.summary import Summary


@dataclass
class ChunkResult:
    rows_in: int
    scored: pa.Table
    rejects: pa.Table
    positives: int
    log: LogBatch | None  # the rows for the prediction log, when the job logs


@dataclass(frozen=True)
class ChunkTask:
    """What a worker needs besides the chunk itself; small and picklable."""

    tag: str
    scored_schema: pa.Schema
    rejects_schema: pa.Schema
    request_id: str | None  # set when the job appends to the prediction log
    text: bool  # the chunks are a CSV's text

    def __call__(self, frame: pd.DataFrame) -> ChunkResult:
        model = job.cached_model(self.tag)
        chunk = job.score_chunk(frame, model, text=self.text)
        batch = None
        if self.request_id is not None:
            batch = job.log_batch(
                chunk.inputs,
                chunk.scored[job.PROBABILITY],
                chunk.scored[job.PREDICTION],
                model=model,
                request_id=self.request_id,
            )
        return ChunkResult(
            rows_in=len(frame),
            scored=pa.Table.from_pandas(chunk.scored, schema=self.scored_schema, preserve_index=False),
            rejects=pa.Table.from_pandas(chunk.rejects, schema=self.rejects_schema, preserve_index=False),
            positives=chunk.positives,
            log=batch,
        )


def _init_worker(tag: str) -> None:
    # One OpenMP thread per worker: the pool already uses every core, more threads would only contend.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    job.cached_model(tag)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _executor(workers: int, pool: str, tag: str) -> Executor | None:
    if workers <= 1:
        return None
    if pool == "thread":
        return ThreadPoolExecutor(workers)
    # forkserver, not fork: the parent may already run OpenMP and tqdm threads, which a fork would inherit broken.
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_init_worker, initargs=(tag,)
    )


def _ordered(
    chunks: Iterator[pd.DataFrame], work: Callable[[pd.DataFrame], ChunkResult], executor: Executor | None, limit: int
) -> Iterator[ChunkResult]:
    """Results in input order with at most `limit` chunks submitted and unwritten at any time."""
    if executor is None:
        yield from map(work, chunks)
        return
    pending: deque[Future[ChunkResult]] = deque()
    for frame in chunks:
        pending.append(executor.submit(work, frame))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def run(
    source: Source,
    tag: str,
    model_schema: dict,
    output: Path,
    *,
    chunk_rows: int,
    workers: int,
    pool: str = "thread",
    log: PredictionLog | None = None,
    request_id: str | None = None,
    progress: bool = True,
) -> Summary:
    """Score `source` with the model `tag` (exact name:version) into `output` and the rejects file beside it."""
    started = time.perf_counter()
    task = ChunkTask(
        tag=tag,
        scored_schema=job.output_schema(source.arrow_schema, model_schema),
        rejects_schema=job.rejects_schema(source.arrow_schema),
        request_id=request_id if log is not None else None,
        text=source.format == "csv",
    )
    if source.total_rows is not None and source.total_rows <= chunk_rows:
        workers = 1  # one chunk: a pool has nothing to overlap, and worker processes cost seconds to start
    rejects = job.rejects_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written under temporary names and renamed at the end: a failed run never leaves a half file that looks done.
    partial = {path: path.with_name(f".{path.name}.partial-{os.getpid()}") for path in (output, rejects)}
    summary = Summary("local", tag, str(source.path), str(output), str(rejects), 0, 0, 0, 0, 0.0)
    executor = _executor(workers, pool, tag)
    bar = tqdm(
        total=source.total_rows, unit="rows", unit_scale=True, desc="scoring", file=sys.stderr, disable=not progress
    )
    try:
        with (
            pq.ParquetWriter(partial[output], task.scored_schema) as scored_writer,
            pq.ParquetWriter(partial[rejects], task.rejects_schema) as rejects_writer,
        ):
            for result in _ordered(source.chunks(chunk_rows), task, executor, limit=workers + 1):
                scored_writer.write_table(result.scored)
                if result.rejects.num_rows:
                    rejects_writer.write_table(result.rejects)
                # Stamped as written, in the output's order (chunks are scored concurrently, and compaction sorts by
                # time): the log's rows of a run come in the order of the scored file.
                if log is not None and result.log is not None and log.append(
                        replace(result.log, context=replace(result.log.context, ts=now()))):
                    summary.logged += result.scored.num_rows
                summary.rows_in += result.rows_in
                summary.scored += result.scored.num_rows
                summary.rejected += result.rejects.num_rows
                summary.positives += result.positives
                bar.update(result.rows_in)
        for final, temporary in partial.items():
            os.replace(temporary, final)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
        for temporary in partial.values():
            temporary.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - started
    return summary
