"""The servers' own evidence, as a rollout's controller sees it: each server's /metrics (Prometheus text, every
worker's values merged by BentoML) and /v1/models, read over HTTP.

A snapshot keeps, per server and per model version, the cumulative counters a gate needs: rows predicted and rows
whose model call raised (served and shadow-scored apart), the model-call latency histogram and the predicted
probability histograms. A step's evidence is the difference between now and the snapshot taken when the step's
clock started (its baseline, saved with the rollout, so a restarted controller keeps its window). A counter that
went down on a server (the server restarted) counts from zero again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

SERIES = {  # sample name -> the key it adds to (histogram buckets get ":<le>")
    "serving_predictions_total": "rows",
    "serving_shadow_predictions_total": "shadow_rows",
    "serving_inference_seconds_bucket": "latency",
    "serving_prediction_probability_bucket": "probability",
    "serving_shadow_probability_bucket": "shadow_probability",
}
Counts = dict[str, float]  # key -> value, for one model version


@dataclass
class ServerView:
    url: str
    revision: float | None = None  # serving_traffic_revision: the lowest any of its workers follows
    arms: dict[str, Counts] = field(default_factory=dict)  # name:version -> counts
    models: list[dict] = field(default_factory=list)  # GET /v1/models
    traffic_errors: dict[str, str] = field(default_factory=dict)  # plan references this server cannot serve
    error: str | None = None  # why the server could not be read


def parse_metrics(text: str, tags: set[str]) -> tuple[float | None, dict[str, Counts]]:
    """(the traffic revision, counts per model version) of one server's /metrics, for the versions in `tags`."""
    revision = None
    arms: dict[str, Counts] = {tag: {} for tag in tags}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "serving_traffic_revision":
                revision = sample.value
                continue
            if sample.name == "serving_prediction_failures_total":
                key = "shadow_failures" if sample.labels.get("endpoint") == "shadow" else "failures"
            else:
                key = SERIES.get(sample.name)
            if key is None:
                continue
            tag = f"{sample.labels.get('model')}:{sample.labels.get('version')}"
            if tag not in arms:
                continue
            if "le" in sample.labels:
                key = f"{key}:{sample.labels['le']}"
            arms[tag][key] = arms[tag].get(key, 0.0) + sample.value
    return revision, arms


def look(url: str, tags: set[str], timeout: float = 10.0) -> ServerView:
    view = ServerView(url)
    try:
        metrics = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout)
        models = httpx.get(url.rstrip("/") + "/v1/models", timeout=timeout)
        metrics.raise_for_status()
        models.raise_for_status()
    except httpx.HTTPError as exc:
        view.error = f"{type(exc).__name__}: {exc}"
        return view
    view.revision, view.arms = parse_metrics(metrics.text, tags)
    body = models.json()
    view.models = body.get("models", [])
    view.traffic_errors = body.get("traffic", {}).get("errors", {})
    return view


def snapshot(views: list[ServerView]) -> dict[str, dict[str, Counts]]:
    """The part of the views a baseline keeps: server -> version -> counts."""
    return {view.url: view.arms for view in views if view.error is None}


def window(views: list[ServerView], baseline: dict[str, dict[str, Counts]]) -> dict[str, Counts]:
    """Counts since the baseline, summed over the servers: version -> counts."""
    total: dict[str, Counts] = {}
    for view in views:
        if view.error is not None:
            continue
        before = baseline.get(view.url, {})
        for tag, counts in view.arms.items():
            into = total.setdefault(tag, {})
            for key, value in counts.items():
                start = before.get(tag, {}).get(key, 0.0)
                into[key] = into.get(key, 0.0) + (value - start if value >= start else value)
    return total


def buckets(counts: Counts, prefix: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of one histogram, in bound order (+Inf last)."""
    found = [(float(key.split(":", 1)[1]), value) for key, value in counts.items() if key.startswith(prefix + ":")]
    return sorted(found)


def quantile(counts: Counts, prefix: str, q: float) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket; the highest finite bound for the +Inf bucket."""
    cumulative = buckets(counts, prefix)
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def above(counts: Counts, prefix: str, threshold: float) -> float:
    """How many observations of one histogram exceed `threshold`, linear inside its bucket (as `quantile`)."""
    cumulative = buckets(counts, prefix)
    if not cumulative:
        return 0.0
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if threshold < bound:
            if math.isinf(bound):
                return cumulative[-1][1] - lower_count
            below = lower_count + (count - lower_count) * (threshold - lower_bound) / (bound - lower_bound)
            return cumulative[-1][1] - below
        lower_bound, lower_count = bound, count
    return 0.0


def histogram(counts: Counts, prefix: str) -> list[float]:
    """Per-bucket (not cumulative) counts of one histogram, in bound order."""
    cumulative = [count for _, count in buckets(counts, prefix)]
    return [b - a for a, b in zip([0.0, *cumulative], cumulative)]


def psi(expected: list[float], actual: list[float]) -> float | None:
    """Population stability index of `actual` against `expected` (bucket counts), with a half-count floor per
    bucket so that an empty bucket does not make it infinite; None without counts on both sides."""
    if len(expected) != len(actual) or sum(expected) <= 0 or sum(actual) <= 0:
        return None
    e_total, a_total = sum(expected) + 0.5 * len(expected), sum(actual) + 0.5 * len(actual)
    total = 0.0
    for e, a in zip(expected, actual):
        pe, pa = (e + 0.5) / e_total, (a + 0.5) / a_total
        total += (pa - pe) * math.log(pa / pe)
    return total


def psi_noise(rows_a: float, rows_b: float, bins: int, q: float = 0.99) -> float:
    """The PSI two samples of one distribution reach with probability 1 - q: PSI is close to a two-sample
    chi-square statistic over (1/n_a + 1/n_b), so its noise is the chi-square quantile with bins - 1 degrees of
    freedom times that (about 0.4 for 50 rows against many over 20 bins; 0.02 for 2,000)."""
    from scipy.stats import chi2

    if rows_a <= 0 or rows_b <= 0:
        return math.inf
    return float(chi2.ppf(q, max(1, bins - 1))) * (1 / rows_a + 1 / rows_b)


def serves(view: ServerView, tag: str) -> tuple[bool, str | None]:
    """Whether the server has a loaded slot with this exact version, and the reason it does not (a failed load)."""
    name, _, version = tag.partition(":")
    for model in view.models:
        if model.get("name") == name and model.get("version") == version and model.get("status") == "loaded":
            return True, None
    reasons = [f"{ref}: {error}" for ref, error in view.traffic_errors.items() if tag in ref or ref.startswith(name)]
    reasons += [m["swap_error"] for m in view.models if m.get("swap_error") and tag in m["swap_error"]]
    return False, "; ".join(reasons) or None
