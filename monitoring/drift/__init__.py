"""The drift job (`python -m monitoring.drift --help`), one module per part:

- `cli`: the command line and its exit codes;
- `window`: which logged rows are analysed (the only reader of the prediction log; locally or on Spark);
- `inputs`: the model and the window read and typed for the report;
- `outputs`: the per-run report files and their `latest` links;
- `frames`: the reference and current frames, typed from the model's input schema;
- `report`: the Evidently DataDriftPreset run and the results read from its snapshot;
- `workspace`: the Evidently workspace and its drift-over-time dashboard;
- `state`: the state file the service exports as `serving_drift_*` gauges;
- `job`: the run that ties them together.
"""

from monitoring.drift.cli import DEFAULT_MIN_ROWS, build_parser, main
from monitoring.drift.errors import DriftError
from monitoring.drift.frames import PREDICTION_COLUMN, column_types, prepare
from monitoring.drift.inputs import resolve_model
from monitoring.drift.job import format_table, run
from monitoring.drift.outputs import RunFiles, link_latest, run_files
from monitoring.drift.report import DEFAULT_DRIFT_SHARE, extract, run_report
from monitoring.drift.state import state_entry, update_state, write_json_atomic
from monitoring.drift.window import (
    DEFAULT_SINCE, Engine, Window, WindowChoice, choose_window, describe_others, load_window, parse_since,
)
from monitoring.drift.workspace import add_to_workspace

__all__ = [
    "DEFAULT_DRIFT_SHARE", "DEFAULT_MIN_ROWS", "DEFAULT_SINCE", "PREDICTION_COLUMN", "DriftError", "Engine", "RunFiles",
    "Window", "WindowChoice", "add_to_workspace", "build_parser", "choose_window", "column_types",
    "describe_others", "extract", "format_table", "link_latest", "load_window", "main", "parse_since", "prepare",
    "resolve_model", "run", "run_files", "run_report", "state_entry", "update_state", "write_json_atomic",
]
