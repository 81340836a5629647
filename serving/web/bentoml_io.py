"""Every place the service reaches into BentoML internals, each with its reason. bentoml is pinned (1.4.39) and
tests/test_bentoml_contract.py checks each assumption below, so an upgrade that breaks one fails loudly there.

1. `AdmittedInput.from_http_request` (`_bentoml_sdk.io_models.IODescriptor`): BentoML would parse the body again
   into its own model and answer errors as 400 `{"error": ...}`; the gate (serving/web/gate.py) has already read,
   validated and typed the request, so the input spec hands that object to the API unchanged.
2. `AdmittedInput.model_json_schema` drops `root_input` from /schema.json: BentoML's own client
   (`bentoml.SyncHTTPClient`) then sends keyword arguments as the body's fields, so
   `client.batch_predict(records=[...])` posts `{"records": [...]}` and `client.predict(**record)` posts the record.
3. `BatchedOutput.to_http_response`: a batchable API hands each caller its one-item slice of the batch's answers;
   the caller's answer is that item.
4. `document()` wraps `_bentoml_sdk.service.openapi.generate_spec`: BentoML documents 400/404/500 `{"error": ...}`
   for every API, flattens `X | None` to `X`, and describes the service with its own badges (five images that
   are broken offline) and "This is a Machine Learning Service created with BentoML". /docs.json says instead
   what the routes accept and answer (pydantic's schemas, the seed examples, each status with its shape).
5. `signature_once` (not an override, a workaround): `APIMethod.__get__` runs `inspect.signature` on the API
   function for every request (twice for a batchable API); under /predict load that was 15% of the worker's
   CPU (py-spy, /work/notes/hotpath). `inspect.signature` returns a function's own `__signature__` at once.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from _bentoml_sdk.io_models import IODescriptor
from _bentoml_sdk.service import openapi as bentoml_openapi
from starlette.requests import Request
from starlette.responses import Response

from serving.web.errors import UNEXPECTED
from serving.web.gate import ADMITTED
from serving.web.schemas import Detail


F = TypeVar("F", bound=Callable[..., Any])


def signature_once(func: F) -> F:
    """Compute an API function's signature once, for BentoML's per-request `inspect.signature` (5. above)."""
    func.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return func


class AdmittedInput(IODescriptor):
    """An input spec whose fields document the body; the API receives what the gate admitted."""

    __root_input__ = True  # the API method takes one positional argument: the admitted input

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> Any:  # type: ignore[override]
        try:
            return request.scope[ADMITTED]
        except KeyError:
            raise RuntimeError(f"{request.url.path} was not admitted: is serving.web.gate.Gate installed?") from None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema = super().model_json_schema(*args, **kwargs)
        schema.pop("root_input", None)
        return schema


class BatchedInput(AdmittedInput):
    """For a batchable API: the admitted item as a one-item batch."""

    @classmethod
    async def from_http_request(cls, request: Request, serde: Any) -> list:  # type: ignore[override]
        return [await super().from_http_request(request, serde)]


class BatchedOutput(IODescriptor):
    """For a batchable API: each caller's answer is the one item of its slice; the item makes its Response."""

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:  # type: ignore[override]
        [item] = obj
        return item.response()


# --- /docs.json -----------------------------------------------------------------------------------------------

def error_doc(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": Detail.model_json_schema()}}}


def _schema(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=bentoml_openapi.REF_TEMPLATE)
    schema.pop("$defs", None)  # BentoML already lists the nested models as components
    schema.pop("root_input", None)
    return schema


def _unexpected(path: str) -> dict[str, Any]:
    answer = UNEXPECTED[path]
    schema = {"type": "string"} if answer.media_type == "text/plain" else Detail.model_json_schema()
    return {
        "description": "Unexpected failure of the whole request; the traceback is in the server log.",
        "content": {answer.media_type: {"schema": schema, "example": answer.example}},
    }


TOO_LARGE = error_doc("Body over MAX_BODY_BYTES.")
NOT_JSON = error_doc("Content-Type is not application/json.")


def document(service: Any, description: str, routes: dict[str, dict[str, Any]]) -> None:
    """Make /docs.json describe `routes` ({path: {"request", "response", "examples", "errors"}, plus optional
    "request_content" / "response_content": other media types of the body and the 200 answer}) and the service."""
    generate = bentoml_openapi.generate_spec

    def generate_spec(svc: Any, **kwargs: Any) -> Any:
        spec = generate(svc, **kwargs)
        if svc is not service:
            return spec
        version = svc.bento.tag.version if svc.bento else "dev"
        spec = attrs.evolve(spec, info=attrs.evolve(spec.info, description=description, version=version, contact=None))
        for path, documented in routes.items():
            operation = spec.paths[path].post
            content: dict[str, Any] = {"schema": _schema(documented["request"])}
            if documented.get("examples"):
                content["examples"] = copy.deepcopy(documented["examples"])
            operation["requestBody"]["content"] = {"application/json": content, **documented.get("request_content", {})}
            operation["responses"] = {
                200: {"description": "Successful Response",
                      "content": {"application/json": {"schema": _schema(documented["response"])},
                                  **documented.get("response_content", {})}},
                **documented["errors"],
                500: _unexpected(path),
            }
        return spec

    generate_spec.__wrapped__ = generate  # type: ignore[attr-defined]
    # Service.openapi_spec imports generate_spec at call time, so this changes every /docs.json answer.
    bentoml_openapi.generate_spec = generate_spec
