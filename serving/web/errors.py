"""Client errors carry their HTTP status; one function turns them into the HTTP answer.

The pattern is MLServer's (`mlserver/errors.py` + `mlserver/rest/errors.py`): code anywhere on the request path
raises `ClientError(status, detail, reason)` while a request is admitted; `serving.web.gate.Gate` catches it, and
`error_response` is the only place that builds the answer for it.
The body's shape belongs to the error: the seeds' endpoints answer `{"detail": ...}` (FastAPI's shape, the
default); a protocol with its own convention (KServe V2: `{"error": "..."}`) raises with `shape="error"`.

Unexpected failures get one documented 500 per endpoint (`UNEXPECTED`): text/plain on /v1/predict, as seed 000
says, and `{"detail": ...}` JSON elsewhere. Nothing internal is ever in it; the traceback goes to the server log.
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.responses import Response

from serving.core import metrics

logger = logging.getLogger("bentoml.service")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
Shape = Literal["detail", "error"]


class ClientError(Exception):
    """A request the client must change: answered with `status` and `{shape: detail}`."""

    def __init__(self, status: int, detail: Any, reason: str, shape: Shape = "detail"):
        super().__init__(detail if isinstance(detail, str) else reason)
        self.status = status
        self.detail = detail
        self.reason = reason  # a short label for the serving_validation_failures metric
        self.shape = shape


# Fresh ids: a random per-process prefix and a counter (uuid4 per request was 2.6% of /predict's CPU).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count()


def request_id_of(headers: Any) -> str:
    """The client's request id when it is a short plain token, else a fresh one: ids reach the log verbatim."""
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if given and _SAFE_ID.match(given) else f"{_ID_PREFIX}{next(_ids):016x}"


def json_response(status: int, payload: Any, request_id: str | None = None) -> Response:
    # Always a new Response: BentoML attaches background tasks and headers to the object it gets.
    headers = {REQUEST_ID_HEADER: request_id} if request_id else None
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def error_response(exc: ClientError, endpoint: str, request_id: str | None = None) -> Response:
    """The HTTP answer to a client error: the one place that builds it (and counts it)."""
    metrics.VALIDATION_FAILURES.labels(endpoint, exc.reason).inc()
    return json_response(exc.status, {exc.shape: exc.detail}, request_id)


@dataclass(frozen=True)
class Unexpected:
    """An endpoint's documented answer to a failure that is not the client's."""

    media_type: str
    body: bytes
    example: Any

    def response(self, request_id: str | None = None) -> Response:
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        return Response(self.body, status_code=500, media_type=self.media_type, headers=headers)


_FAILED = "Prediction failed; the error is in the server log."
_V1_FAILED = "An unexpected error occurred while processing batch predictions"  # seed 000, verbatim
UNEXPECTED: dict[str, Unexpected] = {
    "/predict": Unexpected("application/json", orjson.dumps({"detail": _FAILED}), {"detail": _FAILED}),
    "/batch_predict": Unexpected("application/json", orjson.dumps({"detail": _FAILED}), {"detail": _FAILED}),
    "/v1/predict": Unexpected("text/plain", _V1_FAILED.encode(), _V1_FAILED),
    "/v2/infer": Unexpected("application/json", orjson.dumps({"error": _FAILED}), {"error": _FAILED}),  # KServe V2
}


def unexpected_response(endpoint: str, request_id: str | None = None) -> Response:
    logger.exception("%s failed", endpoint)
    return UNEXPECTED[endpoint].response(request_id)

