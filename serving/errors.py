"""Errors that carry their HTTP status, as MLServer's do (`mlserver/errors.py`): code anywhere on the request path
raises one, and the web layer answers it in one place (serving/web/errors.py), in the shape the route declares.

The core and the codecs raise subclasses of their own (serving/core/registry.py, serving/codecs/errors.py); they know
a status and nothing else of HTTP.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """A request that cannot be answered as asked: `status`, what to tell the client (`detail`: a message, or
    FastAPI's list of field errors) and a short `reason` for the serving_validation_failures metric."""

    status = 500
    reason = "error"
    headers: dict[str, str] | None = None  # sent with the answer (WWW-Authenticate, Allow, Accept-Encoding)

    def __init__(self, detail: Any, reason: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail if isinstance(detail, str) else reason or self.reason)
        self.detail = detail
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        if headers is not None:
            self.headers = headers
