"""Bearer tokens for the admin routes (ADMIN_TOKEN) and, optionally, the prediction routes (API_TOKENS).

Both are off unless set. A request must carry `Authorization: Bearer <token>`; the token is compared with every
configured one in constant time (`hmac.compare_digest`, no early exit), and a missing or wrong token gets a 401
that says only that a bearer token is required. Tokens live in pydantic `SecretStr` settings, so they never show
in a repr, a log line, a response or /metrics.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from pydantic import SecretStr

UNAUTHORIZED = "A valid bearer token is required."
CHALLENGE = (b"www-authenticate", b'Bearer realm="purchase_serving"')


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_matches(given: str | None, accepted: list[SecretStr]) -> bool:
    """True when `given` equals one of `accepted`; every comparison runs, whatever the outcome of the others."""
    if given is None or not accepted:
        return False
    given_bytes = given.encode()
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given_bytes, token.get_secret_value().encode())
    return matched


def client_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"


class PredictionTokens:
    """ASGI middleware: with API_TOKENS set, the prediction routes answer 401 unless the bearer token is one of
    them. Other routes (/v1/models, health, /metrics, the admin routes with their own token) pass untouched."""

    def __init__(self, app: Any, tokens: list[SecretStr], paths: tuple[str, ...]):
        self.app = app
        self.tokens = tokens
        self.paths = paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.tokens or scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        if token_matches(given, self.tokens):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"detail": UNAUTHORIZED})
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), CHALLENGE],
        })
        await send({"type": "http.response.body", "body": body})
