"""Bearer tokens, by scope: every route declares one (serving/web/policy.py) and the gate asks `Tokens.check`.

    API_TOKENS       predict:  /predict, /batch_predict, /v1/predict, /v2/.../infer   unset: open
    FEEDBACK_TOKENS  feedback: POST /v1/feedback           unset: API_TOKENS; never open once any token is set
    ADMIN_TOKEN      admin:    /v1/admin/...                unset: the admin routes are off (404)
    (none)           public:   health, /metrics, docs, /v1/models, V2 server and model metadata

A request carries `Authorization: Bearer <token>`. The token is compared with every configured token of every scope
in constant time (`hmac.compare_digest`, no early exit), so how long a refusal takes says nothing about which
tokens exist. No token, or an unknown one: 401 with a `WWW-Authenticate: Bearer` challenge. A token of another
scope: 403 (`error="insufficient_scope"`). The tokens are pydantic `SecretStr` settings: never in a repr, a log
line, a response or /metrics; the admin routes log each call with the caller's address, never with the token.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from pydantic import SecretStr

from serving.web.errors import Forbidden, NotFound, Unauthorized
from serving.web.policy import Scope
from settings import Settings

logger = logging.getLogger("bentoml.admin")
UNAUTHORIZED = "A valid bearer token is required."


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


class Tokens:
    """The configured tokens of each scope, and the one check every request meets."""

    def __init__(self, settings: Settings):
        admin = [settings.admin_token] if settings.admin_token and settings.admin_token.get_secret_value() else []
        self.by_scope: dict[Scope, list[SecretStr]] = {
            Scope.PREDICT: list(settings.api_tokens),
            Scope.FEEDBACK: list(settings.feedback_tokens or settings.api_tokens),
            Scope.ADMIN: admin,
        }
        self.any = any(self.by_scope.values())

    def open(self, scope: Scope) -> bool:
        """True when `scope` takes requests without a token."""
        if scope is Scope.PUBLIC:
            return True
        if scope is Scope.FEEDBACK:
            return not self.any
        return scope is Scope.PREDICT and not self.by_scope[Scope.PREDICT]

    def check(self, scope: Scope, request: dict[str, Any]) -> None:
        """Pass, or raise the route's refusal (401, 403, or 404 for the admin routes when ADMIN_TOKEN is unset)."""
        if scope is Scope.ADMIN and not self.by_scope[Scope.ADMIN]:
            raise NotFound("Not Found")
        if self.open(scope):
            return
        headers = dict(request.get("headers") or [])
        given = bearer_token(headers.get(b"authorization", b"").decode("latin-1"))
        granted = {s for s, tokens in self.by_scope.items() if token_matches(given, tokens)}  # every scope compared
        where = f"{request['method']} {request['path']}"
        if scope in granted:
            if scope is Scope.ADMIN:
                logger.info("admin %s from %s", where, client_address(request))
            return
        if scope is Scope.ADMIN:
            logger.warning("admin %s refused (no valid bearer token) from %s", where, client_address(request))
        if granted:
            raise Forbidden(f"This token does not grant the {scope.value} scope.")
        raise Unauthorized(UNAUTHORIZED)

    def describe(self) -> str:
        """One line for the start-up log: what each scope takes (never the tokens themselves)."""

        def state(scope: Scope) -> str:
            if self.open(scope):
                return "open"
            count = len(self.by_scope[scope])
            if scope is Scope.ADMIN:
                return "ADMIN_TOKEN" if count else "off"
            return f"{count} token(s)" if count else "closed: set FEEDBACK_TOKENS"

        return "bearer tokens: " + ", ".join(f"{s.value} {state(s)}" for s in Scope if s is not Scope.PUBLIC)
