"""Compressed request bodies: `Content-Encoding: gzip` and `deflate` (RFC 9110 section 8.4), decoded as they arrive.

tritonclient's `request_compression_algorithm` sends gzip or deflate (zlib's format, as the RFC means it); curl,
browsers and most HTTP libraries send gzip. The body limit applies to the decoded bytes, and is checked while
decoding: zlib is asked for at most the bytes still allowed (`max_length`), so a zip bomb is refused with a 413
after inflating at most MAX_BODY_BYTES + 1 bytes, never all of it.

A coding this module does not know is a 415 whose `Accept-Encoding` header lists the ones it does (RFC 9110
section 15.5.16, from RFC 7694). Corrupt or truncated compressed data is a 400.
"""

from __future__ import annotations

import zlib

from serving.errors import ServingError
from serving.web.errors import BodyTooLarge

SUPPORTED = ("gzip", "deflate")
ACCEPT_ENCODING = {"Accept-Encoding": ", ".join(SUPPORTED)}
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 8.4.1.3: a recipient should treat x-gzip as gzip
MAX_CODINGS = 2  # "gzip" or "deflate, gzip" are real; a longer chain is not a client, and each stage costs a pass


class CodingRefused(ServingError):
    status = 415
    reason = "content_encoding"
    headers = ACCEPT_ENCODING


class CodingInvalid(ServingError):
    status = 400
    reason = "content_encoding"


def codings_of(header: str | None) -> list[str]:
    """The codings applied to the body, in the order they were applied (`identity` is no coding)."""
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [_ALIASES.get(c, c) for c in codings if c and c != "identity"]
    unknown = [c for c in codings if c not in SUPPORTED]
    if unknown:
        raise CodingRefused(f"Content-Encoding {', '.join(map(repr, unknown))} is not supported; use "
                            f"{' or '.join(SUPPORTED)} (or none).")
    if len(codings) > MAX_CODINGS:
        raise CodingRefused(f"Content-Encoding lists {len(codings)} codings; at most {MAX_CODINGS} are decoded.")
    return codings


def _too_large(limit: int) -> BodyTooLarge:
    return BodyTooLarge(f"Request body is over the limit of {limit} bytes once decompressed.")


class _Stage:
    """One coding's decoder, producing at most `limit` bytes in all."""

    def __init__(self, coding: str, limit: int):
        self.coding, self.limit, self.produced = coding, limit, 0
        self.started = False  # compressed bytes seen: an empty body stays empty
        self.head = b""  # deflate: the first two bytes tell zlib's format from a raw stream
        self.inflater: zlib._Decompress | None = None

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(wbits=31)
        # RFC 9110's deflate is zlib's format (what tritonclient and curl send); some clients send the raw stream.
        is_zlib = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(wbits=15 if is_zlib else -15)

    def _bad(self, why: str) -> CodingInvalid:
        return CodingInvalid(f"The body is not valid {self.coding} data (Content-Encoding: {self.coding}): {why}.")

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        self.started = True
        if self.inflater is None:
            if self.coding == "deflate" and len(self.head) + len(data) < 2:
                self.head += data
                return b""
            data, self.head = self.head + data, b""
            self.inflater = self._new(data)
        out = []
        try:
            while data:
                inflater = self.inflater
                room = self.limit - self.produced
                chunk = inflater.decompress(data, room + 1)  # max_length: never more than one byte past the limit
                while len(chunk) <= room and inflater.unconsumed_tail:
                    chunk += inflater.decompress(inflater.unconsumed_tail, room + 1 - len(chunk))
                self.produced += len(chunk)
                if self.produced > self.limit:
                    raise _too_large(self.limit)
                out.append(chunk)
                data = b""
                if inflater.eof and inflater.unused_data:
                    if self.coding != "gzip":
                        raise self._bad("data follows the end of the compressed stream")
                    data = inflater.unused_data  # a gzip body may hold several members, one after another
                    self.inflater = self._new(data)
        except zlib.error as exc:
            raise self._bad(str(exc)) from None
        return b"".join(out)

    def finish(self) -> bytes:
        if not self.started:
            return b""
        if self.inflater is None or not self.inflater.eof:
            raise self._bad("it ends before the compressed stream does (truncated)")
        return b""


class Decoder:
    """Decodes a body whose Content-Encoding lists `codings`, chunk by chunk, each stage bounded by `limit`."""

    def __init__(self, codings: list[str], limit: int):
        # Codings are listed in the order they were applied: the last one is undone first.
        self.stages = [_Stage(c, limit) for c in reversed(codings)]

    def feed(self, chunk: bytes) -> bytes:
        for stage in self.stages:
            chunk = stage.feed(chunk)
        return chunk

    def finish(self) -> bytes:
        tail = b""
        for stage in self.stages:
            tail = stage.feed(tail) + stage.finish()
        return tail


def decoder(header: str | None, limit: int) -> Decoder | None:
    """A decoder for the Content-Encoding header's value, or None for a body sent as is. Raises CodingRefused (415)."""
    if not header:  # nearly every request: no parsing on /predict's path
        return None
    codings = codings_of(header)
    return Decoder(codings, limit) if codings else None
