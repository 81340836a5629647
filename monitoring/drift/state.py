"""The drift state file (DRIFT_STATE_PATH): each model's latest run, which the service exports as `serving_drift_*`
gauges. Several jobs may write it at once: a locked read-modify-write and an atomic replace."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def update_state(path: Path, model_name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge one model's entry into the drift state file: locked read-modify-write, atomic replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text())
            if not isinstance(state, dict):
                state = {}
        except (FileNotFoundError, ValueError):
            state = {}
        state[model_name] = entry
        write_json_atomic(path, state)
    return state


def write_json_atomic(path: Path, payload: Any) -> None:
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            json.dump(payload, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile creates 0600; the service may run as another user
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def state_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """What the service exports as gauges: one model's latest run."""
    return {
        "model_version": summary["model_version"],
        "ts": summary["ts"],
        "drift_share": summary["drift_share"],
        "drift_share_threshold": summary["drift_share_threshold"],
        "dataset_drift": summary["dataset_drift"],
        "rows": summary["rows"],
        "level": summary["verdict"]["level"],
        "reasons": summary["verdict"]["reasons"],
        "message": summary["verdict"]["message"],
        "features": summary["features"],
    }
