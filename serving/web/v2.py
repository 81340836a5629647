"""The Open Inference Protocol (KServe "V2") REST surface, as MLServer and Triton serve it.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     liveness; readiness = every configured model loaded (as /readyz)
    GET  /v2/models/{name}[/versions/{v}]      model metadata: one input tensor per input column
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer  JSON tensors, Triton binary tensors, or an Arrow stream

Requests name their model (no A/B routing here) and go through the same column validation, model call,
metrics and prediction log as every other endpoint (`Predictor.score`, endpoint label `/v2/infer`). Errors are
the protocol's `{"error": "..."}`: 400 bad request (naming the input and row), 404 unknown model or version,
413 body too large, 415 content type, 503 model not loaded.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version as package_version
from typing import Any

import bentoml
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from serving.codecs import arrow
from serving.codecs.columns import ColumnsInvalid, validate_columns
from serving.web.errors import _SAFE_ID as SAFE_ID  # ids reach the log verbatim: the same check as other endpoints
from serving.web.errors import ClientError, error_response, request_id_of, unexpected_response
from serving.web.gate import read_body
from serving.core.predictor import Predictor
from serving.core.registry import ModelEntry, ModelUnavailable
from serving.codecs.v2_tensors import (
    HEADER_LENGTH,
    SCHEMA_DATATYPES,
    V2Invalid,
    check_requested_outputs,
    decode_inputs,
    encode_response,
    parse_request,
)
from serving.codecs.v2_schemas import ERRORS_DOC, INFER_DOC, InferenceRequest, ModelMetadata, ServerMetadata

logger = logging.getLogger(__name__)
ENDPOINT = "/v2/infer"
SERVER_NAME = "purchase_serving"
EXTENSIONS = ["binary_tensor_data"]  # Triton's binary tensor data extension, in and out
MEDIA_TYPES = ("application/json", "application/octet-stream", arrow.ARROW_STREAM)
OUTPUT_TYPES = {"predict_proba": "FP64", "predicted_class": "INT64"}


def v2_error(status: int, message: str, reason: str) -> ClientError:
    """A client error in the protocol's shape, `{"error": message}`, answered by serving.web.errors like any other."""
    return ClientError(status, message, reason, shape="error")


class V2Route(APIRoute):
    """Every V2 route answers its client errors through serving.web.errors (counted under /v2/infer for inferences)
    and an unexpected failure with the documented `{"error": ...}` 500."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            endpoint = ENDPOINT if request.url.path.endswith("/infer") else "/v2"
            try:
                return await handler(request)
            except ClientError as exc:
                return error_response(exc, endpoint, request_id_of(request.headers))
            except Exception:  # noqa: BLE001 - the protocol's error shape, nothing internal in it
                return unexpected_response(ENDPOINT, request_id_of(request.headers))

        return answer


router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"], route_class=V2Route)


def current_predictor() -> Predictor:
    """The running service's predictor (a FastAPI dependency, so in-process tests can override it)."""
    return bentoml.get_current_service().predictor


def _entry(predictor: Predictor, name: str, version: str | None) -> ModelEntry:
    try:
        return predictor.registry.get(name, version)
    except ModelUnavailable as exc:
        raise v2_error(503, f"Model is not loaded: {exc}", "model_not_loaded") from None
    except LookupError as exc:
        raise v2_error(404, str(exc).capitalize() + ".", "unknown_model") from None


@router.get("", response_model=ServerMetadata)
def server_metadata() -> dict[str, Any]:
    try:
        own_version = package_version("purchase-serving")
    except PackageNotFoundError:
        own_version = "unknown"
    return {"name": SERVER_NAME, "version": own_version, "extensions": EXTENSIONS}


@router.get("/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses={503: ERRORS_DOC[503]})
def ready(predictor: Predictor = Depends(current_predictor)) -> dict[str, bool]:
    failed = [e.requested for e in predictor.registry.entries if e.status != "loaded"]
    if failed:
        raise v2_error(503, f"Not ready: model(s) not loaded: {', '.join(failed)}.", "not_ready")
    return {"ready": True}


def _metadata(entry: ModelEntry, predictor: Predictor) -> dict[str, Any]:
    assert entry.model is not None
    columns = entry.model.input_schema["columns"]
    return {
        "name": entry.name,
        "versions": [e.version for e in predictor.registry.entries if e.name == entry.name and e.version],
        "platform": "sklearn",
        "inputs": [{"name": c, "datatype": SCHEMA_DATATYPES[s["type"]], "shape": [-1, 1]} for c, s in columns.items()],
        "outputs": [{"name": n, "datatype": t, "shape": [-1, 1]} for n, t in OUTPUT_TYPES.items()],
    }


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS_DOC)
def model_metadata(name: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    return _metadata(_entry(predictor, name, None), predictor)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS_DOC)
def model_version_metadata(name: str, version: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    return _metadata(_entry(predictor, name, version), predictor)


@router.get("/models/{name}/ready", responses=ERRORS_DOC)
def model_ready(name: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    entry = _entry(predictor, name, None)
    return {"name": entry.name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS_DOC)
def model_version_ready(name: str, version: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    entry = _entry(predictor, name, version)
    return {"name": entry.name, "ready": True}


def _limit_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise V2Invalid(f"{rows} rows is over the limit of {max_rows} (MAX_RECORDS); send them in several requests.",
                        "too_many_records")


def _score(predictor: Predictor, entry: ModelEntry, body: bytes, headers: dict[str, str], request_id: str) -> Response:
    """Decode, validate, predict and encode: CPU work, run on a worker thread, off the event loop."""
    assert entry.model is not None
    request: InferenceRequest | None = None
    try:
        if arrow.is_arrow(headers.get("content-type")):
            columns, rank = arrow.read_columns(body, predictor.settings.max_records), 2
        else:
            request, binary = parse_request(body, headers.get(HEADER_LENGTH))
            _limit_rows(max((t.shape[0] for t in request.inputs if t.shape), default=0), predictor.settings.max_records)
            check_requested_outputs(request, list(OUTPUT_TYPES))
            decoded = decode_inputs(request, binary)
            columns, rank = decoded.columns, decoded.rank
        frame = validate_columns(columns, entry.model.input_schema)
    except (V2Invalid, arrow.ArrowBodyInvalid) as exc:
        raise v2_error(400, str(exc), exc.reason) from None
    except ColumnsInvalid as exc:
        raise v2_error(400, exc.message("input", "rows"), exc.kind) from None
    if request is not None and request.id and "x-request-id" not in headers and SAFE_ID.match(request.id):
        request_id = request.id  # the protocol's own request id (tritonclient's request_id=...) names the log lines
    scored = predictor.score(entry, frame, endpoint=ENDPOINT, request_id=request_id)
    answer_id = request.id if request is not None and request.id else request_id
    out_headers = {"x-request-id": request_id}
    if arrow.wants_arrow(headers.get("accept")):
        stream = arrow.predictions_stream(arrow.V2_COLUMNS, scored.proba, scored.classes, entry.name, entry.version,
                                          scored.ids)
        return Response(stream, media_type=arrow.ARROW_STREAM, headers=out_headers)
    outputs = {"predict_proba": ("FP64", scored.proba), "predicted_class": ("INT64", scored.classes.astype(np.int64))}
    payload, header_length = encode_response(outputs, entry.name, entry.version, answer_id, request, rank,
                                             prediction_ids=scored.ids)
    if header_length is None:
        return Response(payload, media_type="application/json", headers=out_headers)
    out_headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(payload, media_type="application/octet-stream", headers=out_headers)


async def _infer(request: Request, predictor: Predictor, name: str, version: str | None) -> Response:
    entry = _entry(predictor, name, version)
    try:
        body = await read_body(request.receive, request.headers, MEDIA_TYPES, predictor.settings.max_body_bytes)
    except ClientError as exc:
        raise v2_error(exc.status, str(exc.detail), exc.reason) from None
    headers = {k: request.headers[k] for k in ("content-type", "accept", HEADER_LENGTH) if k in request.headers}
    request_id = request_id_of(request.headers)
    if request.headers.get("x-request-id") == request_id:
        headers["x-request-id"] = request_id  # the client's own id: it wins over the body's
    return await run_in_threadpool(_score, predictor, entry, body, headers, request_id)


@router.post("/models/{name}/infer", **INFER_DOC)
async def infer(name: str, request: Request, predictor: Predictor = Depends(current_predictor)) -> Response:
    """Predict with the named model (its configured default version)."""
    return await _infer(request, predictor, name, None)


@router.post("/models/{name}/versions/{version}/infer", **INFER_DOC)
async def infer_version(
    name: str, version: str, request: Request, predictor: Predictor = Depends(current_predictor)
) -> Response:
    """Predict with one version of the named model."""
    return await _infer(request, predictor, name, version)
