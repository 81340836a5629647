"""The Open Inference Protocol (KServe "V2") REST surface, as MLServer and Triton serve it.

    GET  /v2 (and /v2/)                        server metadata
    GET  /v2/health/live, /v2/health/ready     liveness; readiness: the same answer as /readyz
    GET  /v2/models/{name}[/versions/{v}]      model metadata: one input tensor per input column
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer  JSON tensors, Triton binary tensors, or an Arrow stream

Requests name their model (no A/B routing here) and go through the same column validation, model call,
metrics and prediction log as every other endpoint (`Predictor.score`, endpoint label `/v2/infer`). Errors are
the protocol's `{"error": "..."}` (serving/web/errors.py, shape ERROR): 400 bad request (naming the input and row,
or the parameter), 401/403 without a predict token (when API_TOKENS is set), 404 unknown model or version or route,
405 a route without this method, 413 body too large (also once decompressed), 415 content type or coding, 503 model
not loaded, and the documented 500.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version as package_version
from typing import Any

import bentoml
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.responses import Response

from serving.codecs import arrow
from serving.codecs.columns import ColumnsInvalid, validate_columns
from serving.codecs.errors import CodecError
from serving.codecs.media import ARROW_STREAM, JSON, OCTET_STREAM
from serving.codecs.v2_schemas import ERRORS_DOC, INFER_DOC, InferenceRequest, ModelMetadata, ServerMetadata
from serving.codecs.v2_answers import encode_response, plan_answer
from serving.codecs.v2_tensors import HEADER_LENGTH, SCHEMA_DATATYPES, V2Invalid, decode_inputs, parse_request
from serving.core.predictor import Predictor
from serving.core.registry import ModelEntry, ModelUnavailable
from serving.errors import ServingError
from serving.web.errors import ERROR, documented
from serving.web.gate import SAFE_ID, DoorRoute, request_id
from serving.web.policy import Lane, Policy, Scope, declare, run_in

logger = logging.getLogger(__name__)
SERVER_NAME = "purchase_serving"
EXTENSIONS = ["binary_tensor_data"]  # Triton's binary tensor data extension, in and out
# prediction_id: one id per row for POST /v1/feedback, an output tensor (response parameters hold scalars only).
OUTPUT_TYPES = {"predict_proba": "FP64", "predicted_class": "INT64", "prediction_id": "BYTES"}

# Metadata and health are public (they carry no data and no secrets); inference takes the predict tokens and runs
# on the bulk lane, as /batch_predict does.
V2_PUBLIC = Policy("/v2", Scope.PUBLIC, Lane.LOOP, ERROR)
V2_INFER = Policy("/v2/infer", Scope.PREDICT, Lane.BULK, ERROR, (JSON, OCTET_STREAM, ARROW_STREAM))

# The protocol's documented answers, with the token refusals and the documented 500 of this service.
INFER = {**INFER_DOC, "responses": {**INFER_DOC["responses"], **documented(ERROR, {
    401: "No valid bearer token (when API_TOKENS is set).", 403: "The token does not grant the predict scope."})}}

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (V2)"], route_class=DoorRoute)
_SHOWN_PATH = 200  # characters of an unknown path repeated in its 404


async def current_predictor() -> Predictor:
    """The running service's predictor (a FastAPI dependency, so in-process tests can override it)."""
    return bentoml.get_current_service().predictor


def _entry(predictor: Predictor, name: str, version: str | None) -> ModelEntry:
    try:
        return predictor.registry.get(name, version)
    except ModelUnavailable as exc:
        raise ServingError(f"Model is not loaded: {exc}", exc.reason, exc.status) from None
    except ServingError as exc:  # not served: 404
        raise ServingError(str(exc).capitalize() + ".", exc.reason, exc.status) from None


@router.get("", response_model=ServerMetadata)
@declare(V2_PUBLIC)
async def server_metadata() -> dict[str, Any]:
    try:
        own_version = package_version("purchase-serving")
    except PackageNotFoundError:
        own_version = "unknown"
    return {"name": SERVER_NAME, "version": own_version, "extensions": EXTENSIONS}


@router.get("/health/live")
@declare(V2_PUBLIC)
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses={503: ERRORS_DOC[503]})
@declare(V2_PUBLIC)
async def ready(predictor: Predictor = Depends(current_predictor)) -> dict[str, bool]:
    """The server's readiness: the same answer as /readyz (serving/core/readiness.py)."""
    state = predictor.readiness()
    if not state.ready:
        raise ServingError(f"Not ready: {state.describe()}.", "not_ready", 503)
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
@declare(V2_PUBLIC)
async def model_metadata(name: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    return _metadata(_entry(predictor, name, None), predictor)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS_DOC)
@declare(V2_PUBLIC)
async def model_version_metadata(name: str, version: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    return _metadata(_entry(predictor, name, version), predictor)


@router.get("/models/{name}/ready", responses=ERRORS_DOC)
@declare(V2_PUBLIC)
async def model_ready(name: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    entry = _entry(predictor, name, None)
    return {"name": entry.name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=ERRORS_DOC)
@declare(V2_PUBLIC)
async def model_version_ready(name: str, version: str, predictor: Predictor = Depends(current_predictor)) -> dict[str, Any]:
    entry = _entry(predictor, name, version)
    return {"name": entry.name, "ready": True}


@router.get("/models/{name}/config", include_in_schema=False)
@router.get("/models/{name}/versions/{version}/config", include_in_schema=False)
@declare(V2_PUBLIC)
async def model_config(name: str, version: str | None = None, predictor: Predictor = Depends(current_predictor)) -> None:
    """Triton's model configuration extension (tritonclient's get_model_config) describes Triton's own scheduler
    (max_batch_size, instance groups, dynamic batching): this server has none of it to describe, and a made-up
    config would mislead Triton's tools, so it answers a 404 that points to the protocol's model metadata."""
    entry = _entry(predictor, name, version)
    raise ServingError(f"No model configuration: it is Triton's model configuration extension, which this server "
                   f"does not implement. The model's inputs and outputs are its metadata: GET /v2/models/{entry.name}.",
                       "no_model_config", 404)


def _limit_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise V2Invalid(f"{rows} rows is over the limit of {max_rows} (MAX_RECORDS); send them in several requests.",
                        "too_many_records")


def _score(predictor: Predictor, entry: ModelEntry, body: bytes, headers: dict[str, str], request_id: str) -> Response:
    """Decode, validate, predict and encode: CPU work, run in the route's lane (the bulk thread)."""
    assert entry.model is not None
    request: InferenceRequest | None = None
    try:
        if arrow.is_arrow(headers.get("content-type")):
            columns, rank = arrow.read_columns(body, predictor.settings.max_records), 2
        else:
            request, binary = parse_request(body, headers.get(HEADER_LENGTH))
            _limit_rows(max((t.shape[0] for t in request.inputs if t.shape), default=0), predictor.settings.max_records)
            decoded = decode_inputs(request, binary)
            columns, rank = decoded.columns, decoded.rank
        plan = plan_answer(request, list(OUTPUT_TYPES))
        frame = validate_columns(columns, entry.model.input_schema)
    except (V2Invalid, arrow.ArrowBodyInvalid) as exc:
        raise CodecError(str(exc), exc.reason) from None
    except ColumnsInvalid as exc:
        raise CodecError(exc.message("input", "rows"), exc.kind) from None
    if request is not None and request.id and "x-request-id" not in headers and SAFE_ID.match(request.id):
        request_id = request.id  # the protocol's own request id (tritonclient's request_id=...) names the log lines
    scored = predictor.score(entry, frame, endpoint=V2_INFER.name, request_id=request_id)
    answer_id = request.id if request is not None and request.id else request_id
    out_headers = {"x-request-id": request_id}
    if arrow.wants_arrow(headers.get("accept")):
        stream = arrow.predictions_stream(arrow.V2_COLUMNS, scored.proba, scored.classes, entry.name, entry.version,
                                          scored.ids)
        return Response(stream, media_type=ARROW_STREAM, headers=out_headers)
    outputs = {"predict_proba": ("FP64", scored.proba), "predicted_class": ("INT64", scored.classes.astype(np.int64)),
               "prediction_id": ("BYTES", scored.ids)}
    payload, header_length = encode_response(outputs, entry.name, entry.version, answer_id, plan, rank)
    if header_length is None:
        return Response(payload, media_type=JSON, headers=out_headers)
    out_headers["Inference-Header-Content-Length"] = str(header_length)
    return Response(payload, media_type=OCTET_STREAM, headers=out_headers)


async def _infer(request: Request, predictor: Predictor, name: str, version: str | None) -> Response:
    entry = _entry(predictor, name, version)
    body = await request.body()  # read, and held to its media types and size, by the gate
    headers = {k: request.headers[k] for k in ("content-type", "accept", HEADER_LENGTH) if k in request.headers}
    rid = request_id(request)
    if request.headers.get("x-request-id") == rid:
        headers["x-request-id"] = rid  # the client's own id: it wins over the body's
    return await run_in(V2_INFER.lane, _score, predictor, entry, body, headers, rid)


@router.post("/models/{name}/infer", **INFER)
@declare(V2_INFER)
async def infer(name: str, request: Request, predictor: Predictor = Depends(current_predictor)) -> Response:
    """Predict with the named model (its configured default version)."""
    return await _infer(request, predictor, name, None)


@router.post("/models/{name}/versions/{version}/infer", **INFER)
@declare(V2_INFER)
async def infer_version(
    name: str, version: str, request: Request, predictor: Predictor = Depends(current_predictor)
) -> Response:
    """Predict with one version of the named model."""
    return await _infer(request, predictor, name, version)


# Last of the router's routes: what no route above takes. BentoML mounts this app "passively" (a path matching
# none of its routes never reaches it), so without this route an unknown /v2 path or a wrong method got BentoML's
# plain-text 404 or FastAPI's {"detail"} 405; tritonclient then reports a JSON parse error, not the server's message.
@router.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
@declare(V2_PUBLIC)
async def no_route(path: str, request: Request) -> None:
    """404 `{"error"}` for a path no V2 route has; 405 with `Allow` for a route that exists without this method."""
    allowed = sorted({method for route in router.routes if isinstance(route, APIRoute)
                      and route.matches(request.scope)[0] == Match.PARTIAL for method in route.methods})
    shown = request.url.path[:_SHOWN_PATH]
    if allowed:
        raise ServingError(f"{request.method} is not allowed on {shown}; allowed: {', '.join(allowed)}.",
                           "method_not_allowed", 405, headers={"Allow": ", ".join(allowed)})
    raise ServingError(f"No V2 route is {request.method} {shown}. The routes: GET /v2, /v2/health/live, "
                       "/v2/health/ready, /v2/models/{name}[/versions/{version}][/ready]; POST "
                       "/v2/models/{name}[/versions/{version}]/infer.", "no_route", 404)
