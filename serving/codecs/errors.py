"""The codecs' own errors: a body that cannot become the route's input. Each carries its status (and nothing else of
HTTP); the web layer answers it in the route's shape (a V2 route says 400 where the seeds' routes say 422)."""

from __future__ import annotations

from serving.errors import ServingError


class CodecError(ServingError):
    """The body cannot be decoded as its media type says, or decodes to input the model cannot take."""

    status = 422
    reason = "invalid_body"


class MediaTypeRefused(CodecError):
    status = 415
    reason = "content_type"
