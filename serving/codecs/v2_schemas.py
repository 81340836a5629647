"""The Open Inference Protocol's (KServe V2) JSON bodies as pydantic models: they document /docs.json and check
the envelope of inference requests (the tensors' values are checked by `serving/codecs/v2_tensors.py`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from serving.codecs.arrow import ARROW_STREAM, REQUEST_DOC, V2_COLUMNS


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # a shape of ["3"] is a client bug, not 3


# The protocol's parameter values: "a $string, $number, or $boolean" (inference_rest.md, Parameters). Answers keep to
# it; requests are read leniently (a parameter this server does not read is ignored, whatever its value).
Scalar = str | int | float | bool


class MetadataTensor(_Wire):
    name: str
    datatype: str
    shape: list[int]


class RequestInput(_Wire):
    name: str = Field(examples=["days_on_platform"])
    shape: list[int] = Field(examples=[[2, 1]])
    datatype: str = Field(examples=["INT64"])
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(default=None, examples=[[45, 12]])


class RequestOutput(_Wire):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Wire):
    """One input tensor per model input column, shape [rows, 1] or [rows]."""

    id: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, examples=[{"content_type": "pd"}])
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Wire):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Scalar] | None = None
    data: list[Any] | None = None


class InferenceResponse(_Wire):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Scalar] | None = None
    outputs: list[ResponseOutput]


class ServerMetadata(_Wire):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(_Wire):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class V2Error(_Wire):
    error: str


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined: an OpenAPI requestBody cannot point into $defs."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


# What the V2 routes document beyond their models (serving/web/v2.py).
ERRORS_DOC: dict[int | str, dict[str, Any]] = {
    400: {"model": V2Error, "description": "Bad request: names the input and the row, or the parameter (a boolean "
          "that is not true or false, an unknown content_type, BYTES that are not valid base64)."},
    404: {"model": V2Error, "description": "Unknown model or version."},
    503: {"model": V2Error, "description": "The model is configured but not loaded."},
}

INFER_DOC: dict[str, Any] = {
    "responses": {
        200: {
            "description": "Predictions: outputs predict_proba (FP64), predicted_class (INT64) and prediction_id (BYTES, "
            "the id POST /v1/feedback takes), those requested or all. An Arrow stream (columns "
            f"{', '.join(V2_COLUMNS)}, prediction_id) with `Accept: {ARROW_STREAM}`.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceResponse"}},
                        ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        },
        **ERRORS_DOC,
        413: {"model": V2Error, "description": "Body over MAX_BODY_BYTES, on the wire or once decompressed."},
        415: {"model": V2Error, "description": "Content-Type is not JSON, binary tensors or an Arrow stream, or "
              "Content-Encoding is not gzip or deflate (the answer's Accept-Encoding lists them)."},
    },
    "response_model": InferenceResponse,
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": inline_schema(InferenceRequest)},
                **REQUEST_DOC,
            },
        }
    },
}
