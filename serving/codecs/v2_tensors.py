"""The Open Inference Protocol's (KServe V2) tensors in and out (the JSON models are in `serving/codecs/v2_schemas.py`).

Inputs arrive as JSON tensors or, with Triton's binary tensor data extension (what `tritonclient` sends by
default), as a JSON header followed by raw little-endian tensor bytes. Either way each input becomes one column
for `serving.codecs.columns.validate_columns`; the declared datatype must match the values sent (an INT64 tensor
holds integers, a BYTES tensor strings), BYTES elements are decoded by their content type
(serving/codecs/v2_parameters.py: base64 among them), and the column schema then decides what the model accepts.

The answers are encoded by `serving/codecs/v2_answers.py`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from serving.codecs.v2_parameters import V2Invalid, decode_bytes, input_content_type, request_content_type
from serving.codecs.v2_schemas import InferenceRequest, RequestInput

BINARY_SIZE = "binary_data_size"
HEADER_LENGTH = "inference-header-content-length"
NUMPY_TYPES = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
# JSON values each declared datatype may hold: a bool is not an INT64, a number is not BYTES.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "BYTES": (str,), "BOOL": (bool,), **{t: (int,) for t in NUMPY_TYPES if "INT" in t},
    **{t: (int, float) for t in NUMPY_TYPES if t.startswith("FP")},
}  # fmt: skip
SCHEMA_DATATYPES = {"string": "BYTES", "integer": "INT64", "number": "FP64"}


@dataclass
class Decoded:
    columns: dict[str, Any]
    rank: int  # 1 for [rows] inputs, 2 for [rows, 1]: outputs are shaped alike


def _loc(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def parse_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, memoryview]:
    """The JSON part of the body as an InferenceRequest, and the binary part (empty without the extension)."""
    header, binary = body, memoryview(b"")
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Invalid(f"Inference-Header-Content-Length {header_length!r} does not fit the {len(body)}-byte body.")
        header, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    try:
        raw = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise V2Invalid(f"Invalid inference request: the body is not JSON ({exc}).", "invalid_json") from None
    # The tensors' data is set aside while pydantic checks the envelope: validating 70,000 values as list[Any]
    # took 20x longer than orjson's parse (10,000 rows); the values are checked by decode_inputs instead.
    inputs = raw.get("inputs") if isinstance(raw, dict) else None
    data = [tensor.pop("data", None) if isinstance(tensor, dict) else None for tensor in inputs or []] if isinstance(inputs, list) else []
    try:
        request = InferenceRequest.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        shown = "; ".join(f"{_loc(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise V2Invalid(f"Invalid inference request: {shown}.", "invalid_json") from None
    for tensor, values in zip(request.inputs, data):
        if values is not None and type(values) is not list:
            raise V2Invalid(f"input {tensor.name!r}: data must be a list, got {type(values).__name__}.")
        tensor.data = values
    return request, binary


def _rows_of(tensor: RequestInput) -> tuple[int, int]:
    shape = tensor.shape
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or any(d < 0 for d in shape):
        raise V2Invalid(f"input {tensor.name!r}: shape {shape} must be [rows, 1] or [rows] (one column per input).")
    return shape[0], len(shape)


def _flat(tensor: RequestInput) -> tuple[list[Any], set[type]]:
    data = tensor.data or []
    # Nested data ([[1], [2]]) is allowed as long as it flattens to the shape, row-major. `map(type, ...)` keeps
    # the check at C speed: a generator over 10,000 values cost more than the rest of the decoding.
    types = set(map(type, data))
    while types == {list}:
        data = list(itertools.chain.from_iterable(data))
        types = set(map(type, data))
    if list in types:
        raise V2Invalid(f"input {tensor.name!r}: data must be a flat list or nested lists matching the shape.")
    return data, types


def _json_column(tensor: RequestInput) -> Any:
    values, types = _flat(tensor)
    allowed = _JSON_TYPES[tensor.datatype]
    if not types <= set(allowed):
        bad = next(i for i, v in enumerate(values) if type(v) not in allowed)
        raise V2Invalid(
            f"input {tensor.name!r}: row {bad} holds a {type(values[bad]).__name__} ({values[bad]!r:.40}), "
            f"which is not {tensor.datatype} data.",
            "datatype",
        )
    if tensor.datatype == "BYTES":
        return values
    dtype = np.float64 if tensor.datatype.startswith("FP") else NUMPY_TYPES[tensor.datatype]
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:
        bad = next(i for i, v in enumerate(values) if _overflows(v, dtype))
        raise V2Invalid(f"input {tensor.name!r}: row {bad} ({values[bad]!r:.40}) is out of the {tensor.datatype} "
                        "range.", "datatype") from None


def _overflows(value: Any, dtype: Any) -> bool:
    try:
        np.array([value], dtype=dtype)
    except OverflowError:
        return True
    return False


def _bytes_elements(name: str, chunk: memoryview, count: int) -> list[str]:
    """Triton's BYTES serialization: each element is a 4-byte little-endian length, then that many bytes."""
    values, offset, raw = [], 0, bytes(chunk)
    for row in range(count):
        if offset + 4 > len(raw):
            raise V2Invalid(f"input {name!r}: binary BYTES data ends before row {row}.", "binary")
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        try:
            values.append(raw[offset : offset + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise V2Invalid(f"input {name!r}: row {row} is not UTF-8 text.", "binary") from None
        offset += size
    if offset != len(raw):
        raise V2Invalid(f"input {name!r}: binary BYTES data holds more than {count} elements.", "binary")
    return values


def _binary_column(tensor: RequestInput, chunk: memoryview, count: int) -> Any:
    if tensor.datatype == "BYTES":
        return _bytes_elements(tensor.name, chunk, count)
    dtype = np.dtype(NUMPY_TYPES[tensor.datatype])
    if len(chunk) != count * dtype.itemsize:
        raise V2Invalid(f"input {tensor.name!r}: {len(chunk)} bytes of binary data do not hold {count} "
                        f"{tensor.datatype} values.", "binary")
    return np.frombuffer(chunk, dtype=dtype)


def decode_inputs(request: InferenceRequest, binary: memoryview) -> Decoded:
    """One column per input tensor, checked against its declared datatype and shape."""
    columns: dict[str, Any] = {}
    ranks, offset = set(), 0
    requested_codec = request_content_type(request.parameters)
    for tensor in request.inputs:
        if tensor.name in columns:
            raise V2Invalid(f"input {tensor.name!r} is sent more than once.")
        if tensor.datatype not in _JSON_TYPES:
            raise V2Invalid(f"input {tensor.name!r}: datatype {tensor.datatype!r} is not supported; use one of "
                            f"{', '.join(_JSON_TYPES)}.", "datatype")
        codec = input_content_type(tensor.name, tensor.datatype, tensor.parameters, requested_codec)
        rows, rank = _rows_of(tensor)
        ranks.add(rank)
        size = (tensor.parameters or {}).get(BINARY_SIZE)
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise V2Invalid(f"input {tensor.name!r}: binary_data_size {size!r} does not fit the binary body.", "binary")
            column = _binary_column(tensor, binary[offset : offset + size], rows)
            offset += size
        else:
            if tensor.data is None:
                raise V2Invalid(f"input {tensor.name!r} has no data.")
            column = _json_column(tensor)
            if len(column) != rows:
                raise V2Invalid(f"input {tensor.name!r}: shape {tensor.shape} needs {rows} values, got {len(column)}.")
        columns[tensor.name] = decode_bytes(tensor.name, column, codec) if tensor.datatype == "BYTES" else column
    if offset != len(binary):
        raise V2Invalid(f"{len(binary) - offset} bytes of binary data belong to no input.", "binary")
    return Decoded(columns, 2 if 2 in ranks else 1)
