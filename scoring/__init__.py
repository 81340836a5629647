"""Batch scoring of large files with stored models (`python -m scoring`).

- `sources`: chunked readers for CSV, Parquet and Parquet folders.
- `job`: the per-chunk step both engines share (validate -> predict -> attach outputs) and the output schemas.
- `local`: the embedded engine (in-process, chunked, a thread pool, streaming Parquet writers).
- `spark`: the same step in Spark's `mapInPandas`, for inputs one machine cannot score in time.
- `summary`: the end-of-run counts and speed.
"""
