"""BentoML 1.4 glue that lets the service keep the seeds' HTTP contracts.

BentoML would parse every body into its own pydantic model and answer errors as 400 `{"error": ...}`; the seeds
want FastAPI's 422 shapes, 413/415 for bad bodies, and a single-record `/predict` body fed to the adaptive
batcher. So the input specs here override `from_http_request` to hand the API either the raw body (validated
by `serving.validation` in one pydantic-core pass) or a ready error response, and `/predict`'s output spec
unwraps its one-item slice of the batch. These hooks are BentoML internals (`_bentoml_sdk.io_models`): bentoml
is pinned to 1.4.39 and tests/test_service.py checks every contract against a real server.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from _bentoml_sdk.io_models import IODescriptor
from _bentoml_sdk.service import openapi as bentoml_openapi
from starlette.requests import Request
from starlette.responses import Response

from serving import arrow, metrics
from serving.schemas import (
    BatchPredictRequest,
    BatchPredictResponse,
    Detail,
    PredictResponse,
    V1PredictRequest,
    V1PredictResponse,
)
from serving.validation import RequestRejected
from settings import get_settings
from training.schema import PredictRequest

_settings = get_settings()
REQUEST_ID_HEADER = "x-request-id"
ROUTING_KEY_HEADER = "x-routing-key"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@\-]")
MAX_ROUTING_KEY = 128
JSON_TYPES = ("application/json", "")
OVERLOADED = "The adaptive batcher is overloaded: this request could not be scheduled within BATCH_MAX_LATENCY_MS; retry later."


def json_response(status: int, payload: Any, request_id: str | None = None) -> Response:
    # Always a new Response: BentoML attaches background tasks and headers to the object it gets.
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def rejection(exc: RequestRejected, endpoint: str, request_id: str | None = None) -> Response:
    metrics.VALIDATION_FAILURES.labels(endpoint, exc.reason).inc()
    return json_response(exc.status, {"detail": exc.detail}, request_id)


def request_id_of(request: Request) -> str:
    """The client's request id when it is a short plain token, else a fresh one: ids reach the log verbatim."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def routing_key_of(request: Request) -> str | None:
    key = request.headers.get(ROUTING_KEY_HEADER)
    if not key:
        return None
    return _UNSAFE.sub("_", key)[:MAX_ROUTING_KEY]


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip().lower()


async def read_body(
    request: Request, limit: int = _settings.max_body_bytes, media_types: tuple[str, ...] = JSON_TYPES
) -> bytes:
    """The body, refusing other content types (415) and bodies over `limit` bytes (413) without reading them."""
    media_type = media_type_of(request)
    if media_type not in media_types:
        expected = " or ".join(t for t in media_types if t)
        raise RequestRejected(415, f"Content-Type must be {expected}, got {media_type!r}.", reason="content_type")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestRejected(413, f"Request body of {declared} bytes is over the limit of {limit} bytes.", reason="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestRejected(413, f"Request body is over the limit of {limit} bytes.", reason="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Call:
    """What a non-batched endpoint receives: the raw body and who is calling, or a ready error response."""

    body: bytes
    request_id: str
    routing_key: str | None
    rejected: Response | None = None
    media_type: str = "application/json"  # or serving.arrow.ARROW_STREAM where the endpoint takes Arrow
    accept: str = ""


@dataclass
class PendingRecord:
    """One /predict call inside an adaptive batch."""

    record: dict[str, Any]
    request_id: str
    routing_key: str | None


class RawJSONInput(IODescriptor):
    """An input spec whose fields only document the body: the API receives a `Call` with the raw bytes."""

    __root_input__ = True
    endpoint: ClassVar[str] = ""
    media_types: ClassVar[tuple[str, ...]] = JSON_TYPES

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Call:  # type: ignore[override]
        request_id = request_id_of(request)
        try:
            body = await read_body(request, media_types=cls.media_types)
        except RequestRejected as exc:
            return Call(b"", request_id, None, rejected=rejection(exc, cls.endpoint, request_id))
        return Call(body, request_id, routing_key_of(request), None, media_type_of(request), request.headers.get("accept", ""))


class SingleRecordInput(IODescriptor):
    """/predict: validates the one record here, before the batcher, so a bad request never costs a batch slot
    of model work; the batcher receives a one-item list holding the record or the ready 422."""

    __root_input__ = True
    endpoint: ClassVar[str] = "/predict"
    validator: ClassVar[Any] = None  # set by the service: a serving.validation.RecordsValidator

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> list:  # type: ignore[override]
        request_id = request_id_of(request)
        try:
            record = cls.validator.single_record(await read_body(request))
        except RequestRejected as exc:
            return [rejection(exc, cls.endpoint, request_id)]
        return [PendingRecord(record, request_id, routing_key_of(request))]


class SingleRecordOutput(IODescriptor):
    """/predict: the batch function answers each item with a payload dict or a ready Response."""

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:  # type: ignore[override]
        item = obj[0]
        if isinstance(item, Response):
            return item
        payload, request_id = item
        return json_response(200, payload, request_id)


class OverloadedAsJSON:
    """ASGI middleware: BentoML answers a request the batcher dropped (past its max latency) with a generic 503;
    say instead, in the seed's `detail` shape, that the batcher was overloaded. Our own 503s pass untouched."""

    def __init__(self, app: Any, paths: tuple[str, ...] = ("/predict",)):
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        held: dict | None = None

        async def rewrite(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] == 503:
                held = message
                return
            if held is not None and message["type"] == "http.response.body":
                body = message.get("body", b"")
                if b'"detail"' not in body:
                    body = orjson.dumps({"detail": OVERLOADED})
                headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
                await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                held = None
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, rewrite)


def _error(description: str) -> dict[str, Any]:
    schema = Detail.model_json_schema()
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schema(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=bentoml_openapi.REF_TEMPLATE)
    schema.pop("$defs", None)  # BentoML already lists the nested models as components
    return schema


_TOO_LARGE = _error("Body over MAX_BODY_BYTES.")
_NOT_JSON = _error("Content-Type is not application/json (or, on /batch_predict, an Arrow stream).")

# route -> (request body model, 200 body model, other documented responses)
DOCUMENTED: dict[str, tuple[type, type, dict[int, dict[str, Any]]]] = {
    "/predict": (
        PredictRequest,
        PredictResponse,
        {
            413: _TOO_LARGE,
            415: _NOT_JSON,
            422: _error("Field errors (loc = ['body', field]) or the business rule, which JSON Schema cannot "
                        "express: practice_exams_passed <= practice_exams_started."),
            503: _error("Model is not loaded, or the adaptive batcher is overloaded."),
        },
    ),
    "/batch_predict": (
        BatchPredictRequest,
        BatchPredictResponse,
        {
            413: _TOO_LARGE,
            415: _NOT_JSON,
            422: _error("Field errors (loc = ['body', 'records', i, field]), an empty or oversized list, or the "
                        "business rule practice_exams_passed <= practice_exams_started, naming the records."),
            503: _error("Model is not loaded."),
        },
    ),
    "/v1/predict": (
        V1PredictRequest,
        V1PredictResponse,
        {
            413: _TOO_LARGE,
            415: _NOT_JSON,
            422: _error("The request itself is malformed (per-item problems are BadRequest items in a 200)."),
            500: {
                "description": "Unexpected failure of the whole request.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        },
    ),
}

_bentoml_api_routes = bentoml_openapi._get_api_routes


def _documented_api_routes(svc: Any) -> dict[str, Any]:
    """BentoML documents 400/404/500 for every API, and flattens `X | None` to `X` (keeping the first anyOf
    branch); document what our routes really accept and answer, with pydantic's own schemas."""
    routes = _bentoml_api_routes(svc)
    for path, (request, response, errors) in DOCUMENTED.items():
        if path not in routes:
            continue
        operation = routes[path].post
        operation["requestBody"]["content"] = {"application/json": {"schema": _schema(request)}}
        operation["responses"] = {
            200: {"description": "Successful Response", "content": {"application/json": {"schema": _schema(response)}}},
            **errors,
        }
    if "/batch_predict" in routes:  # the Arrow door (serving/arrow.py)
        routes["/batch_predict"].post["requestBody"]["content"].update(arrow.REQUEST_DOC)
        routes["/batch_predict"].post["responses"][200]["content"].update(arrow.BATCH_RESPONSE_DOC)
    return routes


def document_error_responses() -> None:
    # generate_spec looks the function up at call time, so replacing it changes every /docs.json answer.
    bentoml_openapi._get_api_routes = _documented_api_routes
