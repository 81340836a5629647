"""The daily scoring job (`python -m scoring`): small files through the real CLI, both engines, one model store."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.predictlog import read_log
from monitoring.segments import family
from scoring import job
from scoring.sources import open_source
from tests.conftest import run_cli
from training.data import generate_purchase
from training.store import load_model

ROWS = 2_000
MODEL = "purchase_gbm"
OUTPUTS = ["probability", "prediction", "model_name", "model_version"]
# Rows broken on purpose, by student_id, and a word their reason must contain.
BROKEN = {
    3: "practice_exams_passed cannot exceed",
    10: "days_on_platform must be >= 0",
    17: "minutes_watched is missing",
    42: "courses_started is not an integer",
}
NOT_A_NUMBER = {99: "minutes_spent_on_exams is not a number"}  # CSV only: Parquet columns cannot hold text


def students(rows: int = ROWS, seed: int = 11) -> pd.DataFrame:
    frame = generate_purchase(rows, seed).drop(columns="purchased")
    frame.insert(0, "student_id", np.arange(rows, dtype=np.int64))
    frame["cohort"] = np.where(frame["student_id"] % 2 == 0, "2026-09", "2026-10")  # a column the model ignores
    frame["courses_started"] = frame["courses_started"].astype("float64")
    frame.loc[3, "practice_exams_passed"] = frame.loc[3, "practice_exams_started"] + 1
    frame.loc[10, "days_on_platform"] = -5
    frame.loc[17, "minutes_watched"] = np.nan
    frame.loc[42, "courses_started"] = 1.5
    return frame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scoring-inputs")
    frame = students()
    csv = folder / "students.csv"
    text = frame.astype(object)
    text.loc[99, "minutes_spent_on_exams"] = "lots"
    text.to_csv(csv, index=False)
    # A folder of Parquet files, as a daily export lands; files sort in row order.
    parts = folder / "students_parquet"
    parts.mkdir()
    for i, start in enumerate(range(0, ROWS, 750)):  # 750 + 750 + 500 rows
        frame.iloc[start : start + 750].to_parquet(parts / f"part-{i:03d}.parquet", index=False, row_group_size=250)
    single = folder / "students.parquet"
    frame.to_parquet(single, index=False)
    return {"csv": csv, "folder": parts, "parquet": single, "frame": frame}


def score(*args: str, check: bool = True, env: dict[str, str] | None = None):
    return run_cli("-m", "scoring", "--no-progress", *args, check=check, env=env)


# One Spark worker: a 2,000-row input gains nothing from two, and each would import the stack and load the model
# (half a minute on a loaded 2-core CI machine). Three input files still make three tasks through that one worker.
SPARK = ("--engine", "spark", "--spark-master", "local[1]", "--spark-conf", "spark.ui.enabled=false")


@pytest.fixture(scope="module")
def local_csv(trained_store, inputs, tmp_path_factory):
    """The embedded engine on the CSV, in chunks smaller than the file: (output, rejects, stdout)."""
    output = tmp_path_factory.mktemp("local-csv") / "scored.parquet"
    result = score("--input", str(inputs["csv"]), "--model", MODEL, "--output", str(output), "--chunk-rows", "700")
    return output, job.rejects_path(output), result.stdout


@pytest.fixture(scope="module")
def local_folder(trained_store, inputs, tmp_path_factory):
    output = tmp_path_factory.mktemp("local-folder") / "scored.parquet"
    result = score("--input", str(inputs["folder"]), "--model", MODEL, "--output", str(output))
    return output, job.rejects_path(output), result.stdout


def summary_of(stdout: str) -> dict[str, str]:
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in stdout.splitlines())}


def expected_probability(frame: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Scores computed without the job: the stored model on the clean rows, straight from the generator."""
    model = load_model(MODEL)
    rows = frame.set_index("student_id").loc[ids].reset_index()
    return model.predict_proba(rows[list(model.input_schema["columns"])])


def test_local_engine_scores_a_csv_and_rejects_broken_rows_with_reasons(inputs, local_csv):
    output, rejects_file, stdout = local_csv
    scored = pd.read_parquet(output)
    rejects = pd.read_parquet(rejects_file)
    broken = {**BROKEN, **NOT_A_NUMBER}

    assert len(scored) + len(rejects) == ROWS
    assert sorted(rejects["student_id"].astype(int)) == sorted(broken)
    for student, reason in zip(rejects["student_id"].astype(int), rejects["reason"]):
        assert broken[student] in reason
    # rejects keep the file's text exactly as read
    assert rejects.set_index(rejects["student_id"].astype(int)).loc[99, "minutes_spent_on_exams"] == "lots"

    assert list(scored.columns) == [*inputs["frame"].columns, *OUTPUTS]
    assert scored["student_id"].astype(int).is_monotonic_increasing  # input order kept across chunks
    assert scored["cohort"].isin(["2026-09", "2026-10"]).all()
    assert scored["days_on_platform"].dtype == np.int64 and scored["probability"].dtype == np.float64
    model = load_model(MODEL)
    assert set(scored["model_name"]) == {MODEL} and set(scored["model_version"]) == {model.version}
    ids = scored["student_id"].astype(int).to_numpy()
    np.testing.assert_allclose(scored["probability"], expected_probability(inputs["frame"], ids), rtol=0, atol=1e-12)
    assert (scored["prediction"] == (scored["probability"] >= model.threshold)).all()

    summary = summary_of(stdout)
    assert summary["rows in"] == f"{ROWS:,}"
    assert summary["scored"].startswith(f"{len(scored):,} ")
    assert summary["rejected"].startswith(f"{len(rejects):,} ")
    share = scored["prediction"].mean()
    assert f"({share:.1%} of scored)" in summary["predicted 1"]
    assert "rows/s" in summary["time"]


def test_parquet_folder_in_small_chunks_with_workers_equals_one_chunk(inputs, local_folder, local_csv, tmp_path):
    many = tmp_path / "many.parquet"
    score("--input", str(inputs["folder"]), "--model", MODEL, "--output", str(many), "--chunk-rows", "300",
          "--workers", "2")  # fmt: skip
    one, one_rejects, _ = local_folder  # a single chunk: the folder holds fewer rows than the default chunk
    pd.testing.assert_frame_equal(pd.read_parquet(many), pd.read_parquet(one))
    rejects = pd.read_parquet(job.rejects_path(many))
    pd.testing.assert_frame_equal(rejects, pd.read_parquet(one_rejects))
    assert sorted(rejects["student_id"]) == sorted(BROKEN)
    assert rejects["student_id"].dtype == np.int64  # Parquet types are carried through as read
    # the same rows score the same from CSV text and from Parquet, apart from the one CSV-only broken row
    from_csv = pd.read_parquet(local_csv[0]).astype({"student_id": "int64"})
    from_parquet = pd.read_parquet(many)
    from_parquet = from_parquet[~from_parquet["student_id"].isin(list(NOT_A_NUMBER))].reset_index(drop=True)
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_parquet_chunks_are_bounded_and_regrouped_across_files(inputs):
    source = open_source(inputs["folder"])
    sizes = [len(chunk) for chunk in source.chunks(400)]
    assert source.total_rows == ROWS and sum(sizes) == ROWS
    assert sizes == [400] * 5  # three files of 250-row groups, regrouped into full chunks


def test_spark_engine_equals_local_engine_on_a_parquet_folder(inputs, local_folder, tmp_path):
    local, local_rejects, _ = local_folder
    spark = tmp_path / "spark.parquet"
    result = score("--input", str(inputs["folder"]), "--model", MODEL, "--output", str(spark), *SPARK)
    assert spark.is_dir()
    by_id = lambda frame: frame.sort_values("student_id").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(spark)), pd.read_parquet(local))
    pd.testing.assert_frame_equal(
        by_id(pd.read_parquet(job.rejects_path(spark))), by_id(pd.read_parquet(local_rejects))
    )
    summary = summary_of(result.stdout)
    assert summary["rows in"] == f"{ROWS:,}" and summary["rejected"].startswith(f"{len(BROKEN)} ")
    assert "spark engine" in summary["model"]


def test_spark_engine_equals_local_engine_on_a_csv(inputs, local_csv, tmp_path):
    local, local_rejects, _ = local_csv
    spark = tmp_path / "spark.parquet"
    score("--input", str(inputs["csv"]), "--model", MODEL, "--output", str(spark), *SPARK)
    # CSV ids are text in both engines: sort them as numbers
    by_id = lambda frame: frame.sort_values("student_id", key=lambda ids: ids.astype(int)).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(spark)), pd.read_parquet(local))
    pd.testing.assert_frame_equal(
        by_id(pd.read_parquet(job.rejects_path(spark))), pd.read_parquet(local_rejects)
    )


def test_unknown_model_exits_2_with_one_line(trained_store, inputs, tmp_path):
    output = tmp_path / "scored.parquet"
    result = score("--input", str(inputs["csv"]), "--model", "no_such_model", "--output", str(output), check=False)
    assert result.returncode == 2
    assert "no_such_model" in result.stderr and "not in the model store" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not output.exists()


def test_missing_column_exits_2_naming_it(trained_store, inputs, tmp_path):
    path = tmp_path / "no_minutes.parquet"
    inputs["frame"].drop(columns="minutes_watched").to_parquet(path)
    output = tmp_path / "scored.parquet"
    result = score("--input", str(path), "--model", MODEL, "--output", str(output), check=False)
    assert result.returncode == 2
    assert "missing column(s): minutes_watched;" in result.stderr and "Traceback" not in result.stderr
    assert not output.exists() and not job.rejects_path(output).exists()


def test_input_holding_an_output_column_exits_2(trained_store, inputs, tmp_path):
    path = tmp_path / "rescored.parquet"
    inputs["frame"].assign(probability=0.5).to_parquet(path)
    result = score("--input", str(path), "--model", MODEL, "--output", str(tmp_path / "o.parquet"), check=False)
    assert result.returncode == 2 and "probability" in result.stderr


def test_log_predictions_appends_readable_lines_for_the_drift_job(trained_store, inputs, tmp_path):
    log_path = tmp_path / "logs" / "prediction_log.jsonl"
    output = tmp_path / "scored.parquet"
    result = score(
        "--input", str(inputs["folder"]), "--model", MODEL, "--output", str(output), "--log-predictions",
        "--chunk-rows", "500", "--summary-json", str(tmp_path / "summary.json"),
        env={"PREDICTION_LOG_PATH": str(log_path)},
    )  # fmt: skip
    scored = pd.read_parquet(output)
    stats: dict[str, int] = {}
    logged = read_log(log_path, stats)
    assert stats["skipped"] == 0 and len(logged) == len(scored)
    assert set(logged["endpoint"]) == {"scoring"} and logged["request_id"].nunique() == 1
    model = load_model(MODEL)
    assert set(logged["model_name"]) == {MODEL} and set(logged["model_version"]) == {model.version}
    columns = list(model.input_schema["columns"])
    assert set(columns) <= set(logged.columns) and "student_id" not in logged.columns
    np.testing.assert_allclose(logged["probability"], scored["probability"], rtol=0, atol=0)
    assert logged["prediction"].tolist() == scored["prediction"].tolist()
    pd.testing.assert_frame_equal(logged[columns], scored[columns], check_dtype=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["logged"] == summary["scored"] == len(scored)
    assert summary["rows_in"] == summary["scored"] + summary["rejected"] == ROWS
    assert "prediction log" in result.stdout


def test_log_predictions_compacts_rotated_segments_and_keeps_the_retention_bound(trained_store, inputs, tmp_path):
    # 2,000 rows of about 450 bytes in 60 kB segments (about 130 rows each, written 50 at a time): over a dozen
    # rotations, and a bound that holds only a few compacted segments beside the newest rotated one.
    log_path = tmp_path / "logs" / "prediction_log.jsonl"
    bound = 150_000
    score(
        "--input", str(inputs["folder"]), "--model", MODEL, "--output", str(tmp_path / "scored.parquet"),
        "--log-predictions", "--chunk-rows", "50",
        env={"PREDICTION_LOG_PATH": str(log_path), "PREDICTION_LOG_MAX_BYTES": "60000",
             "PREDICTION_LOG_MAX_TOTAL_BYTES": str(bound)},
    )  # fmt: skip
    rotated = [p for p in family(log_path) if p != log_path]
    assert rotated and all(p.name.endswith(".parquet") for p in rotated), sorted(rotated)
    on_disk = sum(p.stat().st_size for p in family(log_path))
    assert on_disk <= bound + (log_path.stat().st_size if log_path.exists() else 0)
    logged = read_log(log_path)
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert 0 < len(logged) < len(scored)  # the oldest segments went
    # Compaction sorts a segment by time, so rows keep their values, not their order; the newest rows stayed.
    assert Counter(logged["probability"]) <= Counter(scored["probability"])
    assert scored["probability"].iloc[-1] in set(logged["probability"])


def test_score_chunk_keeps_every_row_once(trained_store):
    model = job.cached_model(MODEL)
    frame = students(300, seed=5).iloc[::-1]  # an index that is not 0..n-1
    chunk = job.score_chunk(frame, model)
    assert len(chunk.scored) + len(chunk.rejects) == len(frame)
    assert sorted([*chunk.scored["student_id"], *chunk.rejects["student_id"]]) == sorted(frame["student_id"])
    assert chunk.scored["student_id"].tolist() == [i for i in frame["student_id"] if i not in BROKEN]
    assert chunk.positives == int(chunk.scored["prediction"].sum())


@pytest.mark.parametrize(
    ("output", "rejects"),
    [("day.parquet", "day.rejects.parquet"), ("out/day", "out/day.rejects.parquet"), ("d.pq", "d.rejects.pq")],
)
def test_rejects_sit_beside_the_output(output, rejects):
    assert job.rejects_path(Path(output)) == Path(rejects)



def test_an_existing_output_is_kept_unless_overwrite_is_passed(trained_store, inputs, tmp_path):
    output = tmp_path / "scored.parquet"
    score("--input", str(inputs["parquet"]), "--model", MODEL, "--output", str(output))
    first = output.stat().st_mtime_ns
    result = score("--input", str(inputs["parquet"]), "--model", MODEL, "--output", str(output), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {output}: already exists; pass --overwrite to replace it"
    assert output.stat().st_mtime_ns == first
    # Only the rejects left behind (a crashed run, a removed output) are protected just the same.
    output.unlink()
    result = score("--input", str(inputs["parquet"]), "--model", MODEL, "--output", str(output), check=False)
    assert result.returncode == 2 and "rejects.parquet: already exists" in result.stderr and not output.exists()
    score("--input", str(inputs["parquet"]), "--model", MODEL, "--output", str(output), "--overwrite")
    assert len(pd.read_parquet(output)) + len(pd.read_parquet(job.rejects_path(output))) == ROWS
