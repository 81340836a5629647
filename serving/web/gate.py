"""The gate: one ASGI middleware (BentoML's public `Service.add_asgi_middleware`) in front of every route, BentoML's
and the mounted FastAPI app's alike, applying the route's declared policy (serving/web/policy.py):

1. the token scope (serving/web/auth.py): 401, 403, or 404 for the admin routes when they are off;
2. the body: 415 for a media type the route does not take, 413 past its limit, without reading on;
3. for a BentoML API, admission: the route's `admit` turns the body into the API's typed input in the route's lane
   (or raises), so only admitted requests reach BentoML's route: a rejected /predict never takes a batch slot or
   a queue position, so it is a 413/415/422/503 at once, never an overload 503. The admitted input rides in the
   ASGI scope to the route's input spec (serving/seam.py), so the body is parsed exactly once;
4. errors: every refusal above is answered by serving/web/errors.py in the route's shape, and so are BentoML's
   own error answers from inside an API (its 500 becomes the route's documented 500; an overload 503 from the
   adaptive batcher says what it means). The mounted app's routes answer theirs through `DoorRoute`.
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.responses import Response

from serving.codecs.errors import CodecError
from serving.codecs.media import JSON, body_type, media_type_of
from serving.errors import ServingError
from serving.seam import ADMITTED
from serving.web import content_encoding
from serving.web.auth import Tokens
from serving.web.errors import REQUEST_ID_HEADER, BodyTooLarge, Disconnected, answer, unexpected
from serving.web.policy import Doors, Lane, POLICY, Policy, UNDECLARED, policy_of, run_in
from settings import Settings

logger = logging.getLogger("bentoml.service")
REQUEST_ID = "purchase_serving.request_id"  # the ASGI scope key of the request's id
SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
ROUTING_KEY_HEADER = "x-routing-key"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@\-]")
MAX_ROUTING_KEY = 128
OVERLOADED = "The adaptive batcher is overloaded: this request could not be scheduled within BATCH_MAX_LATENCY_MS; retry later."
BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass
class Call:
    """A request's body and who is calling: what every route's `admit` receives."""

    body: bytes
    media_type: str
    accept: str  # the first media type of the Accept header ("*/*" when absent)
    request_id: str
    routing_key: str | None


# Fresh ids: a random per-process prefix and a counter (uuid4 per request was 2.6% of /predict's CPU).
_ID_PREFIX = uuid.uuid4().hex[:16]
_ids = itertools.count()


def request_id_of(headers: Any) -> str:
    """The client's request id when it is a short plain token, else a fresh one: ids reach the log verbatim."""
    given = headers.get(REQUEST_ID_HEADER, "")
    return given if given and SAFE_ID.match(given) else f"{_ID_PREFIX}{next(_ids):016x}"


def request_id(request: Any) -> str:
    """The id the gate gave this request (scope), or one from its headers."""
    return request.scope.get(REQUEST_ID) or request_id_of(request.headers)


def routing_key_of(headers: Headers) -> str | None:
    key = headers.get(ROUTING_KEY_HEADER)
    if not key:
        return None
    return _UNSAFE.sub("_", key)[:MAX_ROUTING_KEY]


async def read_body(receive: Any, headers: Headers, media_types: tuple[str, ...], limit: int) -> bytes:
    """The body, decoded when it has a Content-Encoding (serving/web/content_encoding.py), refusing media types outside
    `media_types` (415), codings other than gzip and deflate (415), and bodies over `limit` bytes (413) early:
    the limit holds for the bytes on the wire and for the decoded bytes, checked while they are decoded."""
    body_type(headers.get("content-type"), media_types)
    decoder = content_encoding.decoder(headers.get("content-encoding"), limit)
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body of {declared} bytes is over the limit of {limit} bytes.")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected("The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body is over the limit of {limit} bytes.")
        chunks.append(chunk if decoder is None else decoder.feed(chunk))
        if not message.get("more_body", False):
            if decoder is not None:
                chunks.append(decoder.finish())
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Gate:
    """ASGI middleware: each request meets its route's policy before the route runs."""

    def __init__(self, app: Any, service: Any, settings: Settings):
        self.app = app
        self.service = service
        self.settings = settings
        self.tokens = Tokens(settings)
        self.doors: Doors | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.doors is None and "app" in scope:  # the first scope is the lifespan's: the app is built by then
            self.doors = Doors.of(scope["app"], self.service)
            logger.info(self.tokens.describe())
        found = self.doors.match(scope["path"], scope["method"]) if scope["type"] == "http" and self.doors else None
        if found is None:  # no route: the app's own 404 (or not HTTP at all)
            await self.app(scope, receive, send)
            return
        door, path = found
        policy = door.policy
        headers = Headers(scope=scope)
        rid = request_id_of(headers)
        scope[POLICY], scope[REQUEST_ID] = policy, rid
        if path != scope["path"]:  # a trailing slash: the route itself, not a redirect
            scope["path"], scope["raw_path"] = path, path.encode()
        try:
            if policy is UNDECLARED:
                raise RuntimeError(f"{scope['method']} {path} has no declared policy")
            self.tokens.check(policy.scope, scope)
            if policy.media_types and scope["method"] in BODY_METHODS:
                limit = policy.max_body_bytes or self.settings.max_body_bytes
                body = await read_body(receive, headers, policy.media_types, limit)
                receive = _replay(body, receive)
                if policy.admit is not None:
                    call = Call(body, media_type_of(headers.get("content-type"), JSON),
                                media_type_of(headers.get("accept"), "*/*"), rid, routing_key_of(headers))
                    scope[ADMITTED] = await run_in(policy.lane, policy.admit, _predictor(), call)
        except ServingError as exc:
            await answer(exc, policy.errors, policy.name, rid)(scope, receive, send)
            return
        except Exception:  # noqa: BLE001 - the route's documented 500, never a traceback
            await unexpected(policy.errors, policy.name, rid)(scope, receive, send)
            return
        if policy.admit is not None:
            send = _Answers(send, policy, rid)
        await self.app(scope, receive, send)


def _predictor() -> Any:
    import bentoml

    return bentoml.get_current_service().predictor


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[dict]]:
    """The body once more, for the route (FastAPI's handlers read it), then the client's own messages."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Answers:
    """Wraps `send` for a BentoML API: BentoML's own 500 body becomes the route's documented 500, and an overload
    503 from the adaptive batcher says so, in the route's shape."""

    def __init__(self, send: Any, policy: Policy, request_id: str):
        self.send, self.policy, self.request_id = send, policy, request_id
        self.replacement: tuple[dict, bytes, str] | None = None

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            status, shape = message["status"], self.policy.errors
            if status == 500:
                self.replacement = (message, shape.failed_body, shape.failed_media_type)
                return
            if status == 503 and self.policy.lane is Lane.BATCH:
                self.replacement = (message, orjson.dumps({shape.key: OVERLOADED}), JSON)
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


class DoorRoute(APIRoute):
    """The mounted app's routes: a `ServingError` raised by a handler (or a query parameter FastAPI refused) is
    answered in the route's declared shape, any other failure with its documented 500 (the route class of every
    router the service includes)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def answer_errors(request: Request) -> Response:
            policy: Policy = request.scope.get(POLICY) or policy_of(self.endpoint)
            try:
                return await handler(request)
            except ServingError as exc:
                return answer(exc, policy.errors, policy.name, request_id(request))
            except RequestValidationError as exc:  # a query or path parameter, named as FastAPI names it
                errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
                invalid = CodecError(errors, errors[0]["type"] if errors else "invalid_parameter")
                return answer(invalid, policy.errors, policy.name, request_id(request))
            except Exception:  # noqa: BLE001 - the route's documented 500, nothing internal in it
                return unexpected(policy.errors, policy.name, request_id(request))

        return answer_errors
