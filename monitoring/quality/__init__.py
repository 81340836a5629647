"""The quality job (`python -m monitoring.quality --help`), one module per part:

- `cli`: the command line and its exit codes;
- `join`: predictions and outcomes read through monitoring/logreader.py and joined by prediction_id;
- `groups`: live metrics per model, version, alias and variant beside the held-out metrics;
- `job`: the run: metrics, A/B verdicts (monitoring/abtest.py), reports, state for the gauges;
- `report`: Evidently's classification reports and the workspace snapshots; `dashboard`: their projects' panels;
- label-free estimates (issue 23): `estimate` (the typed entry point), `cbpe` (the vectorized method), `keys`
  (segment codes), `window_estimates` (the job's estimate block, beside the realized metrics), `estimate_html`.
"""
