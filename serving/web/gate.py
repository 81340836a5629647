"""The gate in front of the API endpoints: every client error and every 500 is answered here.

`Gate` is an ASGI middleware (BentoML's public `Service.add_asgi_middleware`). For each API route it reads the
body (415 for a media type the route does not take, 413 past MAX_BODY_BYTES, without reading on), then runs the
route's `admit` function, which turns the body into the route's typed input or raises `ClientError`. Only admitted
requests reach BentoML's route: a rejected `/predict` never takes a batch slot or a queue position, so it is a
413/415/422/503 at once, never an overload 503. The admitted input rides in the ASGI scope to the route's input
spec (serving/web/bentoml_io.py), so the body is parsed exactly once.

Heavy admissions (thousands of records) run in a thread of their own limiter, not on the event loop, so they
never stall the single-record traffic; `/predict`'s admission (one record, ~20 us) runs inline.

Unexpected failures inside the route come back from BentoML as a 500 with its own body; the gate answers them in
the endpoint's documented 500 shape instead (serving.web.errors.UNEXPECTED), and says what an overload 503 from the
adaptive batcher means.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from starlette.datastructures import Headers

from serving.web.errors import ClientError, UNEXPECTED, error_response, request_id_of, unexpected_response
from settings import get_settings

logger = logging.getLogger("bentoml.service")
_settings = get_settings()

ADMITTED = "purchase_serving.admitted"  # the scope key the input specs read
JSON = "application/json"
ROUTING_KEY_HEADER = "x-routing-key"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@\-]")
MAX_ROUTING_KEY = 128
OVERLOADED = "The adaptive batcher is overloaded: this request could not be scheduled within BATCH_MAX_LATENCY_MS; retry later."


@dataclass
class Call:
    """A request's body and who is calling: what every route's `admit` receives."""

    body: bytes
    media_type: str
    accept: str  # the first media type of the Accept header ("*/*" when absent): the seam for other encodings
    request_id: str
    routing_key: str | None


def routing_key_of(headers: Headers) -> str | None:
    key = headers.get(ROUTING_KEY_HEADER)
    if not key:
        return None
    return _UNSAFE.sub("_", key)[:MAX_ROUTING_KEY]


def media_type_of(value: str | None, default: str) -> str:
    return (value or default).split(",")[0].split(";")[0].strip().lower() or default


async def read_body(receive: Any, headers: Headers, media_types: tuple[str, ...], limit: int) -> bytes:
    """The body, refusing media types outside `media_types` (415) and bodies over `limit` bytes (413) early."""
    media_type = media_type_of(headers.get("content-type"), JSON)
    if media_type not in media_types:
        raise ClientError(415, f"Content-Type must be {' or '.join(media_types)}, got {media_type!r}.", "content_type")
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ClientError(413, f"Request body of {declared} bytes is over the limit of {limit} bytes.", "too_large")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError(400, "The client disconnected before sending the whole body.", "disconnect")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"Request body is over the limit of {limit} bytes.", "too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Admit = Callable[[Any, Call], Any]  # (the service instance, the call) -> the route's typed input; raises ClientError


@dataclass(frozen=True)
class Route:
    """How the gate admits one API route."""

    admit: Admit
    media_types: tuple[str, ...] = (JSON,)
    in_thread: bool = True  # False only for admissions cheap enough for the event loop
    batched: bool = False  # a 503 from inside is the adaptive batcher's overload answer


@dataclass
class Gate:
    """ASGI middleware: admit or reject each API request before BentoML's route; answer inner failures."""

    app: Any
    routes: dict[str, Route]
    max_body_bytes: int = _settings.max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = Headers(scope=scope)
        request_id = request_id_of(headers)
        try:
            body = await read_body(receive, headers, route.media_types, self.max_body_bytes)
            call = Call(body, media_type_of(headers.get("content-type"), JSON), media_type_of(headers.get("accept"), "*/*"),
                        request_id, routing_key_of(headers))
            service = _service()
            if route.in_thread:
                scope[ADMITTED] = await anyio.to_thread.run_sync(route.admit, service, call, limiter=bulk_lane())
            else:
                scope[ADMITTED] = route.admit(service, call)
        except ClientError as exc:
            await error_response(exc, path, request_id)(scope, receive, send)
            return
        except Exception:  # noqa: BLE001 - the endpoint's documented 500, never a traceback
            await unexpected_response(path, request_id)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), _Answers(send, path, request_id, route.batched))



_BULK: anyio.CapacityLimiter | None = None


def bulk_lane() -> anyio.CapacityLimiter:
    """The one thread for big requests: admitting (parsing, validating) and scoring /batch_predict and /v1/predict.

    BentoML's own limiter (`threads`) then serves only /predict's batch function, so single records never queue
    behind a 10,000-record request: two lanes, one per core. One bulk thread, not more: parsing holds the GIL,
    and each model call already uses its OpenMP thread (serving/core/predictor.py)."""
    global _BULK
    if _BULK is None:
        _BULK = anyio.CapacityLimiter(1)
    return _BULK


def _service() -> Any:
    import bentoml

    return bentoml.get_current_service()


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict]]:
    """The body once more (nothing downstream parses it today), then the client's own messages (disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Answers:
    """Wraps `send`: BentoML's own 500 body becomes the endpoint's documented 500, and an overload 503 from the
    adaptive batcher says so in the seed's `detail` shape."""

    def __init__(self, send: Any, path: str, request_id: str, batched: bool):
        self.send, self.path, self.request_id, self.batched = send, path, request_id, batched
        self.replacement: tuple[dict, bytes, str] | None = None

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if status == 500:
                unexpected = UNEXPECTED[self.path]
                self.replacement = (message, unexpected.body, unexpected.media_type)
                return
            if status == 503 and self.batched:
                self.replacement = (message, orjson.dumps({"detail": OVERLOADED}), JSON)
                return
        elif self.replacement is not None and message["type"] == "http.response.body":
            if message.get("more_body", False):
                return  # BentoML's own body is dropped
            start, body, media_type = self.replacement
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-length", str(len(body)).encode()), (b"content-type", media_type.encode())]
            if not any(k.lower() == b"x-request-id" for k, _ in headers):
                headers.append((b"x-request-id", self.request_id.encode()))
            await self.send({**start, "headers": headers})
            await self.send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self.send(message)
