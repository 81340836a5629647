"""The media types the service reads and writes: one registry for every door.

A route declares which of these its body may be (serving/web/policy.py); the gate refuses any other with a 415
before reading the body, and each door picks its decoder and its answer's encoding from the same names.
"""

from __future__ import annotations

from serving.codecs.errors import MediaTypeRefused

JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
OCTET_STREAM = "application/octet-stream"  # Triton's binary tensor data: a JSON header, then the raw tensors

DESCRIPTIONS = {
    JSON: "JSON",
    ARROW_STREAM: "an Arrow IPC stream, one column per model input",
    OCTET_STREAM: "a JSON inference header followed by binary tensor data (Inference-Header-Content-Length)",
}


def media_type_of(value: str | None, default: str) -> str:
    """The bare media type of a Content-Type or Accept header (its first entry, no parameters), lower case."""
    return (value or default).split(",")[0].split(";")[0].strip().lower() or default


def body_type(content_type: str | None, accepted: tuple[str, ...]) -> str:
    """The body's media type when the route accepts it (a missing Content-Type counts as JSON); else 415."""
    media_type = media_type_of(content_type, JSON)
    if media_type not in accepted:
        raise MediaTypeRefused(f"Content-Type must be {' or '.join(accepted)}, got {media_type!r}.")
    return media_type


def wants(accept: str | None, media_type: str) -> bool:
    """True when the Accept header names `media_type` (q-values are not weighed)."""
    return any(media_type_of(part, "") == media_type for part in (accept or "").split(","))
