"""The V2 request parameters this server reads, checked before the model runs, and the BYTES content types.

The protocol's parameters are name/value pairs whose value is a string, a number or a boolean. Two families
change what a request means, so a value that cannot be read is a 400 naming the parameter, never a guess:

- Triton's binary tensor extension: `binary_data_output` (request) and `binary_data` (requested output) are
  booleans. Triton reads them with `AsBool`, which takes JSON `true`/`false` only; so does this server. (KServe's
  Python server takes the value's truthiness, so there the string "false" means true: the leak this closes.)
- MLServer's `content_type`: on an input it names the codec of that input's elements; on the request it names
  the request codec. For BYTES elements: `str` (the default: UTF-8 text), `base64` (MLServer's Base64Codec,
  decoded strictly as `base64.b64decode(..., validate=True)`, then read as UTF-8) and `pd_json` (each element is
  a JSON value, MLServer's pandas codec for object columns). A request-level `base64` applies to the BYTES
  inputs that name no content type of their own. Numeric inputs take `np` or nothing. Unknown names are refused:
  an element whose encoding is not understood would be scored as something it is not.

MLServer's Base64Codec passes an element that is not valid base64 through as raw bytes; here it is a 400 naming
the input and the row, since scoring "SW5kaWE" as a country is a wrong answer.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

BINARY_OUTPUT = "binary_data_output"  # request parameter: every output as binary data
BINARY = "binary_data"  # requested output parameter: this output as binary data
CONTENT_TYPE = "content_type"
REQUEST_CONTENT_TYPES = ("pd", "np", "str", "base64")
BYTES_CONTENT_TYPES = ("str", "base64", "pd_json")
NUMERIC_CONTENT_TYPES = ("np",)
ECHOED = ("pd", "np")  # request codecs that describe the answer too (MLServer decodes the response with them)


class V2Invalid(ValueError):
    """The request does not follow the protocol; the message names the input (and row) or the parameter."""

    def __init__(self, message: str, reason: str = "bad_request"):
        super().__init__(message)
        self.reason = reason


def flag(parameters: dict[str, Any] | None, key: str, where: str) -> bool | None:
    """A boolean parameter: JSON true or false, None when absent; anything else names the parameter in a 400."""
    value = (parameters or {}).get(key)
    if value is None or type(value) is bool:
        return value
    raise V2Invalid(f"{where} parameter {key!r} must be true or false (a JSON boolean), got {type(value).__name__} "
                    f"{value!r:.40}.", "parameter")


def content_type(parameters: dict[str, Any] | None, where: str, allowed: tuple[str, ...]) -> str | None:
    value = (parameters or {}).get(CONTENT_TYPE)
    if value is None:
        return None
    if type(value) is not str or value not in allowed:
        raise V2Invalid(f"{where} parameter 'content_type' {value!r:.40} is not supported here; use one of "
                        f"{', '.join(allowed)}.", "content_type")
    return value


def request_content_type(parameters: dict[str, Any] | None) -> str | None:
    return content_type(parameters, "request", REQUEST_CONTENT_TYPES)


def input_content_type(name: str, datatype: str, parameters: dict[str, Any] | None, requested: str | None) -> str:
    """The codec of one input's elements: its own content_type, else the request's base64 for BYTES, else `str`."""
    where = f"input {name!r} ({datatype})"
    if datatype != "BYTES":
        content_type(parameters, where, NUMERIC_CONTENT_TYPES)
        return "np"
    own = content_type(parameters, where, BYTES_CONTENT_TYPES)
    return own or ("base64" if requested == "base64" else "str")


def _from_base64(name: str, row: int, value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise V2Invalid(f"input {name!r}: row {row} is not valid base64 (content_type 'base64'): {exc} "
                        f"({value!r:.40}).", "base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise V2Invalid(f"input {name!r}: row {row} is valid base64, but its bytes are not UTF-8 text.", "base64") from None


def _from_json(name: str, row: int, value: str) -> str:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise V2Invalid(f"input {name!r}: row {row} is not JSON (content_type 'pd_json'): {value!r:.40}.",
                        "content_type") from None
    if type(decoded) is not str:
        raise V2Invalid(f"input {name!r}: row {row} holds JSON {type(decoded).__name__} {value!r:.40}, not a string.",
                        "content_type")
    return decoded


def decode_bytes(name: str, values: list[str], codec: str) -> list[str]:
    """BYTES elements as the text the model reads, per the input's codec; raises V2Invalid naming the row."""
    if codec == "str":
        return values
    decode = _from_base64 if codec == "base64" else _from_json
    return [decode(name, row, value) for row, value in enumerate(values)]
