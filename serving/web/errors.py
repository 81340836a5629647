"""The one place that answers errors, in the body shape each route declares (its policy's `errors`).

The pattern is MLServer's (`mlserver/errors.py` + `mlserver/rest/errors.py`): code anywhere on the request path
raises a `ServingError` that carries its status (serving/errors.py; the core's and the codecs' own kinds derive
from it), and `answer` turns it into the HTTP answer. Three shapes:

- `DETAIL`: FastAPI's `{"detail": ...}` (the seeds' routes, feedback, admin, /v1/models); a refused body is a 422;
- `ERROR`: the Open Inference Protocol's `{"error": "..."}`; a refused body is a 400, as the protocol says;
- `TEXT`: client errors as `DETAIL`, but the unexpected failure is seed 000's `text/plain` line (/v1/predict).

Every shape has its documented 500: nothing internal is ever in it; the traceback goes to the server log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson
from starlette.responses import Response

from serving.codecs.errors import CodecError
from serving.codecs.media import JSON
from serving.core import metrics
from serving.errors import ServingError

logger = logging.getLogger("bentoml.service")

REQUEST_ID_HEADER = "x-request-id"
FAILED = "Prediction failed; the error is in the server log."
V1_FAILED = "An unexpected error occurred while processing batch predictions"  # seed 000, verbatim


@dataclass(frozen=True)
class ErrorShape:
    key: str  # the body's one field
    invalid_status: int  # the status of a body the codecs refused
    failed_media_type: str  # the documented 500
    failed_body: bytes

    def example(self) -> Any:
        return orjson.loads(self.failed_body) if self.failed_media_type == JSON else self.failed_body.decode()

    def failing(self, message: str) -> ErrorShape:
        """The same shape, with another documented 500 message."""
        return replace(self, failed_body=orjson.dumps({self.key: message}))


DETAIL = ErrorShape("detail", 422, JSON, orjson.dumps({"detail": FAILED}))
ERROR = ErrorShape("error", 400, JSON, orjson.dumps({"error": FAILED}))
TEXT = ErrorShape("detail", 422, "text/plain", V1_FAILED.encode())


class Unauthorized(ServingError):
    status = 401
    reason = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="purchase_serving"'}


class Forbidden(ServingError):
    status = 403
    reason = "forbidden"
    headers = {"WWW-Authenticate": 'Bearer realm="purchase_serving", error="insufficient_scope"'}


class NotFound(ServingError):
    status = 404
    reason = "not_found"


class BodyTooLarge(ServingError):
    status = 413
    reason = "too_large"


class Disconnected(ServingError):
    status = 400
    reason = "disconnect"


def json_response(status: int, payload: Any, request_id: str | None = None,
                  headers: dict[str, str] | None = None) -> Response:
    # Always a new Response: BentoML attaches background tasks and headers to the object it gets.
    headers = {**(headers or {}), **({REQUEST_ID_HEADER: request_id} if request_id else {})}
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def _text(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail)  # FastAPI's list


def answer(exc: ServingError, shape: ErrorShape, endpoint: str, request_id: str | None = None) -> Response:
    """The HTTP answer to an error that carries its status: the one place that builds it (and counts it)."""
    status = shape.invalid_status if isinstance(exc, CodecError) and exc.status == 422 else exc.status
    metrics.VALIDATION_FAILURES.labels(endpoint, exc.reason).inc()
    detail = exc.detail if shape.key == "detail" else _text(exc.detail)
    return json_response(status, {shape.key: detail}, request_id, exc.headers)


def unexpected(shape: ErrorShape, endpoint: str, request_id: str | None = None) -> Response:
    """The documented 500; call it from an `except` block, so the traceback reaches the server log."""
    logger.exception("%s failed", endpoint)
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return Response(shape.failed_body, status_code=500, media_type=shape.failed_media_type, headers=headers)


def documented(shape: ErrorShape, statuses: dict[int, str]) -> dict[int, dict[str, Any]]:
    """OpenAPI responses for `statuses` ({status: description}) in this shape, and the documented 500."""
    body = {"type": "object", "properties": {shape.key: {"type": "string"} if shape.key == "error" else {
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}, "required": [shape.key]}
    responses: dict[int, dict[str, Any]] = {
        status: {"description": text, "content": {JSON: {"schema": body}}} for status, text in statuses.items()
    }
    schema = body if shape.failed_media_type == JSON else {"type": "string"}
    responses[500] = {
        "description": "Unexpected failure of the whole request; the traceback is in the server log.",
        "content": {shape.failed_media_type: {"schema": schema, "example": shape.example()}},
    }
    return responses
