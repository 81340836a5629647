"""Payloads of the explanation doors (serving/web/explain.py) and of the `explain` option of /v1/predict items."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serving.core.registry import MODEL_PATTERN, NAME_PATTERN
from settings import get_settings

_settings = get_settings()
Record = dict[str, Any]
OUTPUT_DOC = ("What is explained: `probability` (the answered probability of the positive class, default) or "
              "`log_odds` (its logit, the scale on which the models add up their parts).")


class ExplainRequest(BaseModel):
    """Records to explain with one served model."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str = Field(_settings.default_purchase_model, pattern=MODEL_PATTERN,
                            description="A served model name or a stage alias (task@stage); default "
                            "DEFAULT_PURCHASE_MODEL.", examples=["purchase_gbm"])
    model_version: str | None = Field(None, pattern=NAME_PATTERN, description="Defaults to the served version.")
    records: list[Record] = Field(min_length=1, max_length=_settings.max_explain_records,
                                  description="The model's input records: at most MAX_EXPLAIN_RECORDS for a model of up "
                                  "to 7 inputs, halved for each input more (2^k coalitions each).")
    output: Literal["probability", "log_odds"] = Field("probability", description=OUTPUT_DOC)


class Contributions(BaseModel):
    """One record: value == base_value + sum(contributions.values()), to float rounding."""

    value: float = Field(description="The model's output on the record (probability or log-odds, as `output`).")
    base_value: float = Field(description="The mean output on the background sample: the value with no input known.")
    contributions: dict[str, float] = Field(description="Each input's contribution, largest magnitude first.")


class ExplainResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_name: str
    model_version: str
    output: Literal["probability", "log_odds"]
    method: str
    background_rows: int
    explanations: list[Contributions] = Field(description="One per record, in input order.")


class PredictionExplanation(Contributions):
    """A logged prediction, explained by the version that made it."""

    model_config = ConfigDict(protected_namespaces=())
    prediction_id: str
    model_name: str
    model_version: str
    served_now: bool = Field(description="Whether this server still serves that version.")
    ts: str | None = Field(description="When the prediction was made.")
    endpoint: str | None
    probability: float | None = Field(description="The probability answered then (from the prediction log).")
    inputs: dict[str, Any]
    output: Literal["probability", "log_odds"]
    method: str
    background_rows: int
