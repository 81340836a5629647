"""Monitoring config: the Prometheus scrape config passes promtool, and the Grafana dashboard queries only metrics the
service exports, each with PromQL that promtool parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_CONFIG = ROOT / "monitoring" / "prometheus.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboard.json"

# Every series the service's /metrics exposes that a dashboard may query. BentoML's own first, then ours
# (prometheus_client adds `_total` to counters and `_bucket`/`_sum`/`_count` to histograms).
BENTOML_METRICS = {
    "bentoml_service_request_total",
    "bentoml_service_request_in_progress",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_request_duration_seconds_sum",
    "bentoml_service_request_duration_seconds_count",
    "bentoml_service_adaptive_batch_size_bucket",
    "bentoml_service_adaptive_batch_size_sum",
    "bentoml_service_adaptive_batch_size_count",
}
SERVING_METRICS = {
    "serving_predictions_total",  # {model, version, endpoint, predicted_class}
    "serving_prediction_probability_bucket",  # {model}
    "serving_prediction_probability_sum",
    "serving_prediction_probability_count",
    "serving_inference_seconds_bucket",  # {model}
    "serving_inference_seconds_sum",
    "serving_inference_seconds_count",
    "serving_validation_failures_total",  # {endpoint, reason}
    "serving_model_loaded",  # {model, version}
    "serving_feature_decile_total",  # {model, feature, decile}
    "serving_feature_category_total",  # {model, feature, value}
    "serving_drift_share",  # {model}
    "serving_drift_feature_score",  # {model, feature}
    "serving_drift_feature_drifted",  # {model, feature}
    "serving_drift_last_run_timestamp_seconds",  # {model}
    "serving_prediction_log_write_failures_total",
    "serving_drift_level",  # {model}: 0 ok, 1 warning, 2 drift (issue 14)
    "serving_drift_reason",  # {model, reason}
    "serving_prediction_log_bytes",
    "serving_prediction_log_segments_deleted_total",  # {reason}
    "serving_prediction_failures_total",  # {model, version, endpoint} (issue 22)
    "serving_shadow_probability_bucket",  # {model, version}
    "serving_traffic_revision",
    "serving_ab_arm_weight",  # {arm}
    "serving_rollout_active",  # {task}
    "serving_rollout_step",  # {task}
    "serving_rollout_candidate_weight",  # {task}
    "serving_rollout_gate",  # {task, gate}
    "serving_rollout_verdict",  # {task}
    # the quality job's state (serving/quality_gauges.py)
    "serving_model_quality",  # {model, version, metric}
    "serving_ab_verdict",  # {endpoint, a, b, metric}
    "serving_model_quality_estimate",  # {model, version, metric}: label-free (CBPE)
    "serving_model_quality_estimate_standard_error",  # {model, version, metric}
    "serving_model_quality_estimate_rows",  # {model, version}
    "serving_model_quality_estimation_error",  # {model, version, metric}
}
QUALITY_METRICS = {m for m in SERVING_METRICS if m.startswith(("serving_model_quality", "serving_ab_verdict"))}
EXPORTED_METRICS = BENTOML_METRICS | SERVING_METRICS

# The issue asks for a panel on each of these.
REQUIRED_ON_DASHBOARD = {
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
    "bentoml_service_adaptive_batch_size_bucket",
    "serving_predictions_total",
    "serving_prediction_probability_bucket",
    "serving_inference_seconds_bucket",
    "serving_validation_failures_total",
    "serving_model_loaded",
    "serving_feature_decile_total",
    "serving_feature_category_total",
    "serving_drift_share",
    "serving_drift_feature_score",
    "serving_drift_feature_drifted",
    "serving_drift_last_run_timestamp_seconds",
    "serving_prediction_log_write_failures_total",
    # Rollouts (issue 22): step and weight, each gate's state, the verdict, candidate against control per version.
    "serving_rollout_step",
    "serving_rollout_candidate_weight",
    "serving_rollout_gate",
    "serving_rollout_verdict",
    "serving_prediction_failures_total",
    "serving_traffic_revision",
    # issue 23: panels for the quality and estimate gauges
    *QUALITY_METRICS,
}

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (apt-get install -y prometheus)")
    return path


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (label matchers, grouping labels, ranges and functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def query_panels(board: dict) -> list[dict]:
    panels = []
    for panel in board["panels"]:
        panels.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return panels


def expressions(board: dict) -> list[str]:
    exprs = [t["expr"] for p in query_panels(board) for t in p.get("targets", [])]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            text = query["query"] if isinstance(query, dict) else query
            inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
            exprs.append(inner.group(1) if inner else text)
    return exprs


def test_metric_name_parser():
    expr = ('sum by (feature, decile) (rate(serving_feature_decile_total{model=~"$model", feature="a b"}[5m])) '
            "/ on (feature) group_left sum(rate(x_total[$__rate_interval])) + time() - y_seconds offset 5m")
    assert metric_names(expr) == {"serving_feature_decile_total", "x_total", "y_seconds"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(a_bucket[1m])))") == {"a_bucket"}


def test_prometheus_config_passes_promtool():
    result = subprocess.run([promtool(), "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["scrape_interval"] == "5s"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:3000"]


def test_grafana_dashboard_shape():
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = query_panels(board)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"]), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has a target without PromQL"
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_queries_only_exported_metrics_and_covers_the_required_ones():
    used = set().union(*(metric_names(expr) for expr in expressions(dashboard())))
    unknown = used - EXPORTED_METRICS
    assert not unknown, f"the dashboard queries metrics the service does not export: {sorted(unknown)}"
    missing = REQUIRED_ON_DASHBOARD - used
    assert not missing, f"no panel shows: {sorted(missing)}"


def test_dashboard_promql_parses(tmp_path: Path):
    """Every expression, with Grafana's variables filled in, as a recording rule: promtool parses the PromQL."""
    substitutions = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "${datasource}": "x",
                     "$model": ".*", "$feature": ".*"}
    rules = []
    for index, expr in enumerate(expressions(dashboard())):
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:expr_{index}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_quality_gauges_listed_here_are_the_ones_the_service_defines():
    from serving.core import quality_gauges

    defined = {g._name for g in vars(quality_gauges).values() if type(g).__name__ == "Gauge"}
    assert defined == QUALITY_METRICS


def test_quality_panels_show_three_decimals_and_points():
    """Issue 23: an axis rounded ROC AUC 0.87 to "1" and log loss 0.42 to "0"; a gauge the job sets once must show as
    a point, not an empty chart."""
    panels = [p for p in query_panels(dashboard())
              if any(metric_names(t["expr"]) & QUALITY_METRICS for t in p["targets"])]
    assert len(panels) >= 6
    for panel in panels:
        defaults = panel["fieldConfig"]["defaults"]
        if panel["type"] == "timeseries":
            assert defaults["decimals"] >= 3 and defaults["unit"] == "none", panel["title"]
            assert defaults["custom"]["showPoints"] == "always", panel["title"]
        elif defaults.get("unit") == "percentunit":
            assert defaults["decimals"] >= 1, panel["title"]
    band = next(p for p in panels if p["title"].startswith("ROC AUC"))
    legends = [t["legendFormat"] for t in band["targets"]]
    assert any(legend.endswith("estimated") for legend in legends)
    assert any(legend.endswith("realized") for legend in legends)
    assert sum("95%" in legend for legend in legends) == 2
