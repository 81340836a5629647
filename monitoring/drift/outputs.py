"""The files a run leaves in --out: its report and summary under the run's UTC time, never overwritten, and a
`latest` link to each that always points at the newest run's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class RunFiles:
    html: Path
    json: Path
    latest_html: Path
    latest_json: Path


def run_files(out_dir: Path, model_name: str, run_at: datetime) -> RunFiles:
    """`<model>_drift_<UTC time>.html|json`, with a counter when two runs share a second."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{model_name}_drift_{run_at.strftime('%Y%m%dT%H%M%SZ')}"
    name, number = stem, 1
    while (out_dir / f"{name}.html").exists() or (out_dir / f"{name}.json").exists():
        number += 1
        name = f"{stem}-{number}"
    latest = out_dir / f"{model_name}_drift_latest"
    return RunFiles(out_dir / f"{name}.html", out_dir / f"{name}.json",
                    latest.with_suffix(".html"), latest.with_suffix(".json"))


def link_latest(target: Path, link: Path) -> None:
    """Point `link` at `target` (a relative symlink, so the folder can move), replacing the old link atomically."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target.name, temporary)
    os.replace(temporary, link)
