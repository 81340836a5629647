"""NannyML 0.13.1, the reference implementation of CBPE, in its own virtualenv: what the estimator of
monitoring/quality/cbpe.py is checked against (tests/test_estimate_nannyml.py) and timed beside
(bench/bench_estimate.py).

    python -m bench.nannyml_reference install     # create bench/.nannyml-venv (about 1.9 GB)

Never a project dependency: NannyML pulls in FLAML with XGBoost (and NVIDIA's NCCL), LightGBM, kaleido, gcsfs,
s3fs, plotly<6 and a Segment telemetry client, downgrades python-dateutil, and takes tens of seconds to import
(docs/quality.md has the figures). 0.13.1 also imports statsmodels without declaring it, so it is installed
beside. scikit-learn, NumPy, pandas and SciPy are pinned to the project's versions: both sides then fit the very
same isotonic calibrator. Telemetry off: NML_DISABLE_USAGE_LOGGING=1 (NannyML's variable) and DO_NOT_TRACK=1, and
the side script runs in a folder without a `.env` (NannyML loads one with python-dotenv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.harness import ROOT
from bench.side_venv import SideVenv

VENV = ROOT / "bench" / ".nannyml-venv"
SCRIPT = ROOT / "bench" / "nannyml_cbpe.py"
NANNYML = ("nannyml==0.13.1", "statsmodels==0.15.0")
SHARED = ("scikit-learn", "numpy", "pandas", "scipy", "pyarrow")
ENV = {"NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1"}


SIDE = SideVenv(VENV, NANNYML, SHARED, check="import nannyml, sklearn; print(nannyml.__version__, sklearn.__version__)",
                env=ENV, compile_bytecode=True)


def install() -> Path:
    """Create (or refresh) bench/.nannyml-venv (bench/side_venv.py)."""
    return SIDE.install()


def cbpe(reference: pd.DataFrame, analysis: pd.DataFrame, *, chunk_period: str | None = None,
         chunk_size: int | None = None, timeout: float = 900) -> dict:
    """NannyML's CBPE fitted on `reference` (y_pred_proba, y_pred, y_true) and run on `analysis` (y_pred_proba,
    y_pred, and timestamp for `chunk_period`): its JSON (needs_calibration, chunks with value and sampling_error
    per metric, seconds)."""
    with tempfile.TemporaryDirectory(prefix="nannyml-") as folder:
        spec = {"reference": f"{folder}/reference.parquet", "analysis": f"{folder}/analysis.parquet",
                "out": f"{folder}/out.json", "chunk_period": chunk_period, "chunk_size": chunk_size}
        reference.to_parquet(spec["reference"], index=False)
        analysis.to_parquet(spec["analysis"], index=False)
        Path(f"{folder}/spec.json").write_text(json.dumps(spec))
        environment = {"PATH": os.environ.get("PATH", ""), "HOME": folder, **ENV}
        result = subprocess.run([str(install()), str(SCRIPT), f"{folder}/spec.json"], cwd=folder, env=environment,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"NannyML failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return json.loads(Path(spec["out"]).read_text())


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m bench.nannyml_reference install")
    print(f"NannyML environment ready: {install()}")
