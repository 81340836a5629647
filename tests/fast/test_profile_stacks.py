"""The profile's busy samples (bench/stacks.py): a thread parked in a wait is not work, whatever waits there."""

from __future__ import annotations

from bench.stacks import top_frames


def test_waiting_threads_are_not_busy_samples(tmp_path):
    collapsed = tmp_path / "raw.txt"
    collapsed.write_text("\n".join([
        "thread (1): AnyIO worker thread;_score (serving/web/v2.py);predict_proba (sklearn/pipeline.py) 60",
        "thread (2): MainThread;select (selectors.py) 30",
        # the thread that reaps the log's maintenance process sits in waitpid for the worker's whole life
        "thread (3): prediction-log-maintenance-reaper;Popen.wait (subprocess.py);Popen._try_wait (subprocess.py) 40",
    ]))
    total, busy, rows, packages = top_frames(collapsed)
    assert (total, busy) == (130, 60)
    assert dict((frame, share) for frame, share, _ in rows)["predict_proba (sklearn/pipeline.py)"] == 1.0
    assert [name for name, _ in packages] == ["sklearn"]
