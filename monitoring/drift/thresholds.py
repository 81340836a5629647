"""A metric whose value is a constant threshold, stored with every run so the workspace dashboard can draw it as a
line: Evidently 0.7's dashboard panels plot only metric values and have no reference lines.

Imports Evidently (seconds): imported only when a report runs. The Evidently UI needs no import of this module to
show the value: the workspace stores it as a plain single value with its parameters.
"""

from __future__ import annotations

from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric

COLUMN_SCORE = "column score"
DATASET_SHARE = "dataset share"


class DriftThreshold(SingleValueMetric):
    applies_to: str  # COLUMN_SCORE or DATASET_SHARE
    threshold: float

    def _default_tests(self, context):
        return []

    def _default_tests_with_reference(self, context):
        return []


class DriftThresholdCalculation(SingleValueCalculation[DriftThreshold]):
    def calculate(self, context, current_data, reference_data):
        return self.result(self.metric.threshold)

    def display_name(self) -> str:
        return f"Drift threshold ({self.metric.applies_to})"
