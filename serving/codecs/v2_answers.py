"""The Open Inference Protocol's (KServe V2) answers: which outputs, as JSON or as binary tensor data.

The answer carries the outputs the client asked for (all of them when it names none), each as JSON or as binary
data as its parameters say (Triton's binary tensor extension). `prediction_id` is an output tensor (BYTES, one id
per row), since the protocol's `parameters` hold scalars only; the answer's own parameters are scalars too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from serving.codecs.v2_parameters import BINARY, BINARY_OUTPUT, ECHOED, V2Invalid, flag, request_content_type
from serving.codecs.v2_schemas import InferenceRequest
from serving.codecs.v2_tensors import BINARY_SIZE, NUMPY_TYPES


@dataclass(frozen=True)
class AnswerPlan:
    """What the client asked of the answer, read before the model runs: which outputs, which of them binary."""

    outputs: dict[str, bool]  # output name -> as binary data, in the order they are sent
    content_type: str | None = None  # the request codec, echoed when it describes the answer too


def plan_answer(request: InferenceRequest | None, names: list[str]) -> AnswerPlan:
    """The outputs to send and how; a request for an output that does not exist, or a parameter that cannot be
    read, is refused before the model runs (and nothing is logged)."""
    if request is None:  # an Arrow body: every output, as JSON unless the answer is Arrow
        return AnswerPlan({name: False for name in names})
    binary_all = bool(flag(request.parameters, BINARY_OUTPUT, "request"))
    requested = request.outputs or []
    unknown = sorted({o.name for o in requested} - set(names))
    if unknown:
        raise V2Invalid(f"requested output(s) {', '.join(map(repr, unknown))} do not exist; outputs: {', '.join(names)}.")
    wanted = {o.name: flag(o.parameters, BINARY, f"output {o.name!r}") for o in requested}
    outputs = {name: binary_all if binary is None else binary for name, binary in wanted.items()} if wanted else (
        {name: binary_all for name in names})
    codec = request_content_type(request.parameters)
    return AnswerPlan(outputs, codec if codec in ECHOED else None)


def _bytes_tensor(values: list[str]) -> bytes:
    """Triton's BYTES serialization, as `_bytes_elements` reads it."""
    encoded = [value.encode("utf-8") for value in values]
    return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)


def encode_response(
    outputs: dict[str, tuple[str, Any]],
    model_name: str,
    model_version: str | None,
    id_: str,
    plan: AnswerPlan,
    rank: int,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when outputs travel as binary tensor data.

    `outputs` maps output name -> (datatype, values: an array, or a list of str for BYTES); `plan` says which to
    send and how. Response parameters are scalars only, as the protocol says.
    """
    tensors, chunks = [], []
    for name, binary in plan.outputs.items():
        datatype, values = outputs[name]
        shape = [len(values), 1] if rank == 2 else [len(values)]
        tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        if binary:
            raw = _bytes_tensor(values) if datatype == "BYTES" else (
                np.ascontiguousarray(values, dtype=NUMPY_TYPES[datatype]).tobytes())
            tensor["parameters"] = {BINARY_SIZE: len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values if datatype == "BYTES" else np.ascontiguousarray(values)
        tensors.append(tensor)
    payload: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "id": id_, "outputs": tensors}
    if plan.content_type is not None:
        payload["parameters"] = {"content_type": plan.content_type}
    header = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)
