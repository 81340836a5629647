"""Request and response payloads of every endpoint: the field names are the seeds' contracts, verbatim.

Limits come from settings, so the OpenAPI document states the limits actually enforced.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.core.registry import MODEL_PATTERN, NAME_PATTERN
from serving.web.explain_schemas import Contributions
from settings import get_settings
from training.schema import PredictRequest

_settings = get_settings()
Record = dict[str, Any]


PREDICTION_ID = "This prediction's id (a UUIDv7): send it with the true outcome to POST /v1/feedback."


class BatchPredictRequest(BaseModel):
    """Seed 001: student records, scored in one vectorized pass."""

    records: list[PredictRequest] = Field(min_length=1, max_length=_settings.max_records)


class PredictResponse(BaseModel):
    predicted_purchase_probability: float = Field(ge=0, le=1, examples=[0.7834])
    predicted_purchase: Literal[0, 1] = Field(examples=[1])
    prediction_id: str | None = Field(None, description=PREDICTION_ID)
    model_name: str | None = Field(None, description="The model that answered (A/B analysis).")
    model_version: str | None = None


class BatchPrediction(BaseModel):
    predicted_purchase_probability: float = Field(ge=0, le=1)
    predicted_purchase: Literal[0, 1]
    prediction_id: str | None = Field(None, description=PREDICTION_ID)


class BatchPredictResponse(BaseModel):
    predictions: list[BatchPrediction] = Field(description="One per input record, in input order.")
    model_name: str | None = Field(None, description="The model that answered (A/B analysis).")
    model_version: str | None = None


class Detail(BaseModel):
    """An error: a message, or FastAPI's list of field errors with `loc` = ["body", "records", i, field]."""

    detail: str | list[dict[str, Any]]


class ModelPredictRequest(BaseModel):
    """Seed 000's PredictRequest, plus an optional version and inputs of its own."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str = Field(pattern=MODEL_PATTERN, examples=["drive_stats_a"], description="A model name or a stage alias (task@stage).")
    model_version: str | None = Field(None, pattern=NAME_PATTERN, description="Defaults to the served default.")
    inputs: list[Record] | None = Field(
        None,
        max_length=_settings.max_records,
        description="Records for this model. Without them the request's shared `inputs`, else the model's bound dataset.",
    )
    explain: bool = Field(False, strict=True, description="Also answer each input's contribution to each probability "
                          "(`explanations`, as POST /v1/explain; at most MAX_EXPLAIN_RECORDS records).")


class Ensemble(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    method: Literal["mean"] = "mean"
    weights: dict[str, float] | None = Field(None, description="Per model name; default equal weights.")


class V1PredictRequest(BaseModel):
    """Seed 000's BatchPredictRequest."""

    model_config = ConfigDict(extra="forbid")
    predictions: list[ModelPredictRequest] = Field(min_length=1, max_length=_settings.max_predict_items)
    inputs: list[Record] | None = Field(
        None, max_length=_settings.max_records, description="Records shared by every item that has none of its own."
    )
    ensemble: Literal["mean"] | Ensemble | None = Field(
        None, description="Add the combined prediction of the successful items (same inputs required)."
    )

    @model_validator(mode="after")
    def _no_repeated_items(self) -> V1PredictRequest:
        # The same model and version twice would compute the same answer twice: almost surely a client bug.
        seen: dict[tuple[str, str | None], int] = {}
        for index, item in enumerate(self.predictions):
            key = (item.model_name, item.model_version)
            if key in seen and item.inputs is None:
                raise ValueError(
                    f"predictions[{index}] repeats predictions[{seen[key]}] "
                    f"(model_name {item.model_name!r}, model_version {item.model_version!r})"
                )
            seen.setdefault(key, index)
        return self


PredictStatus = Literal["Success", "BadRequest", "InternalError"]


class ModelPrediction(BaseModel):
    """Seed 000's PredictResponse."""

    model_config = ConfigDict(protected_namespaces=())
    status: PredictStatus
    model_name: str
    model_version: str | None = None
    prediction: list[float] | None = None
    prediction_ids: list[str] | None = Field(
        None, description="One prediction_id per value of `prediction`, for POST /v1/feedback."
    )
    serial_numbers: list[str] | None = Field(
        None, description="Predictions on a bound dataset: each row's serial_number, aligned with `prediction`."
    )
    duration_ms: int = Field(ge=0)
    error_message: str | None = None
    explanations: list[Contributions] | None = Field(
        None, description="With `explain`: each record's contributions to its probability, aligned with `prediction`."
    )


class EnsemblePrediction(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    method: Literal["mean"]
    models: list[str]
    weights: list[float]
    prediction: list[float] | None = None
    error_message: str | None = None


class V1PredictResponse(BaseModel):
    duration_ms: int = Field(ge=0)
    predictions: list[ModelPrediction]
    ensemble: EnsemblePrediction | None = None


class ServedModel(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="allow")
    name: str
    requested: str
    version: str | None
    status: Literal["loaded", "failed", "empty"]
    error: str | None
    load_seconds: float
    aliases: list[str] = Field(default=[], description="The stage aliases (task@stage) that name this version now.")
    swap_error: str | None = Field(default=None, description="The last version that failed to replace this one.")


class TrafficFollowed(BaseModel):
    revision: int = Field(description="The stage book's traffic plan revision this worker follows (training/traffic.py).")
    errors: dict[str, str] = Field(default_factory=dict,
                                   description="References the plan asks for that this worker cannot serve, and why.")


class ModelsResponse(BaseModel):
    models: list[ServedModel]
    traffic: TrafficFollowed | None = None
