"""MLServer as the benchmark's peer: its own virtualenv, the service's model exported for its sklearn runtime, its
settings, its V2 request bodies, and its process.

    python -m bench.mlserver_peer install     # create bench/.mlserver-venv (make bench does this)

MLServer is never a project dependency: it lives in `bench/.mlserver-venv` (gitignored), with scikit-learn, NumPy
and pandas pinned to the versions of the project's own environment, so that the exported pipeline unpickles
to the very estimator the service runs. The export is one sklearn `Pipeline`: the feature step of
`training/features.py` (a `FunctionTransformer`) and the fitted model from the store. The pickle refers to
`training.features.purchase_features` by name, so the export folder carries a copy of `training/features.py`
(and nothing else of the project) on MLServer's PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd

from bench.harness import ROOT, free_port
from bench.side_venv import SideVenv

VENV = ROOT / "bench" / ".mlserver-venv"
# uvloop 0.22 made `asyncio.get_event_loop()` raise where no loop is set, which kills MLServer 1.7.1's parallel
# inference workers at start (SeldonIO/MLServer#2286, fix pending in #2285): its default `parallel_workers: 1` then
# loads no model at all. 0.21 is the last uvloop it works with.
MLSERVER = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0")
# The unpickled pipeline must be the one the service runs: same library versions as the project's environment.
SHARED = ("scikit-learn", "numpy", "pandas", "joblib", "scipy")
MODEL = "purchase_gbm"
# The same pipeline once more, without adaptive batching: a lone big request to the batched model waits the whole
# max_batch_time for company, and is merged and split again; MLServer's own default (max_batch_size 0) does neither.
UNBATCHED = "purchase_gbm_unbatched"
# MLServer's adaptive batching as issue 21 measured it; inference in the server process (parallel_workers 0).
MAX_BATCH_SIZE = 256
MAX_BATCH_TIME_S = 0.005
PARALLEL_WORKERS = 0


SIDE = SideVenv(VENV, MLSERVER, SHARED,
                check="import mlserver, mlserver_sklearn, sklearn; print(mlserver.__version__, sklearn.__version__)")


def requirements() -> list[str]:
    return SIDE.requirements()


def venv_python() -> Path:
    return SIDE.python


def is_installed() -> bool:
    return SIDE.is_installed()


def install() -> Path:
    """Create (or refresh) bench/.mlserver-venv (bench/side_venv.py)."""
    return SIDE.install()


# --- the export ------------------------------------------------------------------------------------------------------

def export_pipeline(model, folder: Path) -> Path:
    """Write `model` (a training.store.StoredModel of the purchase task) as one sklearn pipeline, features included,
    and MLServer's model settings for it twice (MODEL with adaptive batching, UNBATCHED without; one file, one
    process) into `folder`; returns the folder."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from training import features

    folder.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline([("features", FunctionTransformer(features.FEATURES[model.task])), ("model", model.estimator)])
    joblib.dump(pipeline, folder / "model.joblib")
    package = folder / "pythonpath" / "training"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    shutil.copy(features.__file__, package / "features.py")  # the very module the pipeline was built with
    batching = {"max_batch_size": MAX_BATCH_SIZE, "max_batch_time": MAX_BATCH_TIME_S}
    for name, extra in ((MODEL, batching), (UNBATCHED, {})):
        settings = {"name": name, "implementation": "mlserver_sklearn.SKLearnModel", **extra,
                    # relative to this settings file; MLServer finds every model-settings.json under its folder
                    "parameters": {"uri": "../../model.joblib", "version": model.version}}
        (folder / "models" / name).mkdir(parents=True, exist_ok=True)
        (folder / "models" / name / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder


def server_settings(folder: Path, http_port: int, grpc_port: int, metrics_port: int,
                    parallel_workers: int | None = PARALLEL_WORKERS) -> dict:
    """settings.json: loopback and free ports; `parallel_workers` None leaves MLServer's default (1: inference in a
    separate process)."""
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "debug": False,
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    return settings


# --- request bodies --------------------------------------------------------------------------------------------------

_DATATYPES = {"i": "INT64", "u": "INT64", "f": "FP64", "b": "BOOL"}


def v2_request(frame: pd.DataFrame, outputs: tuple[str, ...] = ("predict_proba",)) -> dict:
    """The columnar V2 JSON MLServer's own `PandasCodec.encode_request` produces: one `[rows, 1]` tensor per
    column, strings as BYTES with `content_type: "str"`, and `parameters.content_type: "pd"` on the request.
    Asking for `predict_proba` makes MLServer's sklearn runtime do the work the service does."""
    inputs = []
    rows = len(frame)
    for name in frame.columns:
        column = frame[name]
        kind = column.dtype.kind
        if kind in _DATATYPES:
            data = column.to_numpy().tolist()
            inputs.append({"name": name, "shape": [rows, 1], "datatype": _DATATYPES[kind], "data": data})
        else:
            inputs.append({"name": name, "shape": [rows, 1], "datatype": "BYTES", "data": column.astype(str).tolist(),
                           "parameters": {"content_type": "str"}})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs, "outputs": [{"name": o} for o in outputs]}


def positive_proba(answer: dict) -> np.ndarray:
    """Column 1 of the `predict_proba` output of a V2 answer (MLServer's: shape [rows, 2])."""
    output = next(o for o in answer["outputs"] if o["name"] == "predict_proba")
    return np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])[:, 1]


# --- the process -----------------------------------------------------------------------------------------------------

@dataclass
class MLServerProcess:
    folder: Path
    process: subprocess.Popen
    url: str
    output: Path

    def wait_until_up(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited {self.process.returncode}:\n{self.output.read_text()[-4000:]}")
            try:
                if all(httpx.get(f"{self.url}/v2/models/{m}/ready", timeout=2).status_code == 200
                       for m in (MODEL, UNBATCHED)):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"mlserver not ready in {timeout}s:\n{self.output.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)


def environment(folder: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the service's servers get (bench/harness.py), so that a setting the user exports (say
    OMP_NUM_THREADS) reaches both peers alike; nothing is set for MLServer that the service does not get. (Until
    issue 21 the bench set OMP_NUM_THREADS=1 here: MLServer's model calls lost the second core and its figures were
    not its defaults'. See docs/benchmarks.md.)"""
    return {
        **{k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "PYTHONPATH", "VIRTUAL_ENV")},
        "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(folder / "pythonpath"),
        **(env or {}),
    }


def start(model, workdir: Path, env: dict[str, str] | None = None,
          parallel_workers: int | None = PARALLEL_WORKERS) -> MLServerProcess:
    """Export `model` into workdir/mlserver and start `mlserver start` on free loopback ports (not yet ready)."""
    if not is_installed():
        raise RuntimeError(f"{VENV} is missing or stale: run `python -m bench.mlserver_peer install`")
    folder = export_pipeline(model, workdir / "mlserver")
    http_port = free_port()
    server_settings(folder, http_port, free_port(), free_port(), parallel_workers)
    output = workdir / "mlserver.out"
    with open(output, "wb") as out:
        process = subprocess.Popen([str(VENV / "bin" / "mlserver"), "start", str(folder)], cwd=folder,
                                   env=environment(folder, env), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return MLServerProcess(folder, process, f"http://127.0.0.1:{http_port}", output)


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python -m bench.mlserver_peer install")
    print(f"MLServer environment ready: {install()}")
