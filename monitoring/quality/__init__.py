"""The quality job (`python -m monitoring.quality --help`), one module per part:

- `cli`: the command line and its exit codes;
- `join`: predictions and outcomes read through monitoring/logreader.py, segment by segment, and joined by
  prediction_id (`keys`: the ids as 128-bit numbers);
- `variants`: which joined predictions are whose, their rows, their Evidently samples and their estimate input;
- `groups`: live metrics per model, version, alias and variant beside the held-out metrics;
- `job`: the run: metrics, A/B verdicts (monitoring/abtest.py), reports, state for the gauges;
- `report`: Evidently's classification reports and the workspace snapshots; `dashboard`: their projects' panels;
- label-free estimates (issue 23): `estimate` (the typed entry point), `cbpe` (the vectorized method),
  `segment_codes`, `window_estimates` (the job's estimate block, beside the realized metrics), `estimate_html`.
"""
