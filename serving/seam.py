"""Every place the service relies on BentoML's or prometheus_client's internals, each with its reason. Both are
pinned (bentoml 1.4.39, prometheus-client 0.26.0) and tests/fast/test_bentoml_contract.py checks each behaviour
below against the installed library, so an upgrade that breaks one fails loudly there.

1. `AdmittedInput.from_http_request` (`_bentoml_sdk.io_models.IODescriptor`): BentoML would parse the body again
   into its own model and answer errors as 400 `{"error": ...}`; the gate (serving/web/gate.py) has already read,
   validated and typed the request, so the input spec hands that object (scope[ADMITTED]) to the API unchanged.
2. `AdmittedInput.model_json_schema` drops `root_input` from /schema.json: BentoML's own client
   (`bentoml.SyncHTTPClient`) then sends keyword arguments as the body's fields, so
   `client.batch_predict(records=[...])` posts `{"records": [...]}` and `client.predict(**record)` posts the record.
3. `BatchedOutput.to_http_response`: a batchable API hands each caller its one-item slice of the batch's answers;
   the caller's answer is that item's Response.
4. `document()` wraps `_bentoml_sdk.service.openapi.generate_spec`: BentoML documents 400/404/500 `{"error": ...}`
   for every API, flattens `X | None` to `X`, and describes the service with its own badges (five images that
   are broken offline) and "This is a Machine Learning Service created with BentoML". /docs.json says instead
   what the routes accept and answer (pydantic's schemas, the seed examples, each status with its shape).
5. `signature_once` (a workaround): `APIMethod.__get__` runs `inspect.signature` on the API function for every
   request (twice for a batchable API); under /predict load that was 15% of the worker's CPU (py-spy).
   `inspect.signature` returns a function's own `__signature__` at once.
6. `served_routes()`: the routes of the app BentoML builds (its own, the APIs', and a mounted FastAPI app's through
   `fastapi.routing.iter_route_contexts`, which flattens included routers), so each gets a declared policy.
7. `serve_address()` and `use_metrics_folder()`: in the `bentoml serve` process (its click command), the address it
   will bind and the Prometheus multiprocess folder (`BentoMLContainer.prometheus_multiproc_dir`), which BentoML's
   `serve_http` empties as its first step, even when the start then fails on a busy port (serving/web/startup.py).
8. `observe_many`: prometheus_client has no bulk observe, and one `Histogram.observe` per value cost ~20 ms for a
   10,000-row batch in multiprocess mode; this adds a whole array's bucket counts and sum at once.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import attrs
import numpy as np
from _bentoml_sdk.io_models import IODescriptor
from _bentoml_sdk.service import openapi as bentoml_openapi
from prometheus_client import Histogram

F = TypeVar("F", bound=Callable[..., Any])
ADMITTED = "purchase_serving.admitted"  # the ASGI scope key the gate writes and the input specs read


def signature_once(func: F) -> F:
    """Compute an API function's signature once, for BentoML's per-request `inspect.signature` (5. above)."""
    func.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return func


class AdmittedInput(IODescriptor):
    """An input spec whose fields document the body; the API receives what the gate admitted."""

    __root_input__ = True  # the API method takes one positional argument: the admitted input

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> Any:  # type: ignore[override]
        try:
            return request.scope[ADMITTED]
        except KeyError:
            raise RuntimeError(f"{request.url.path} was not admitted: is the gate installed?") from None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        schema = super().model_json_schema(*args, **kwargs)
        schema.pop("root_input", None)
        return schema


class BatchedInput(AdmittedInput):
    """For a batchable API: the admitted item as a one-item batch."""

    @classmethod
    async def from_http_request(cls, request: Any, serde: Any) -> list:  # type: ignore[override]
        return [await super().from_http_request(request, serde)]


class BatchedOutput(IODescriptor):
    """For a batchable API: each caller's answer is the one item of its slice; the item makes its Response."""

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Any:  # type: ignore[override]
        [item] = obj
        return item.response()


# --- /docs.json -----------------------------------------------------------------------------------------------

def schema_of(model: type) -> dict[str, Any]:
    """A pydantic model's JSON schema as BentoML's document holds it (nested models are its components)."""
    schema = model.model_json_schema(ref_template=bentoml_openapi.REF_TEMPLATE)
    schema.pop("$defs", None)
    schema.pop("root_input", None)
    return schema


def document(service: Any, description: str, routes: dict[str, dict[str, Any]]) -> None:
    """Make /docs.json describe `routes` ({path: {"request": model, "examples", "request_content",
    "responses": {status: OpenAPI response}}}) and the service, instead of BentoML's generic answers."""
    generate = bentoml_openapi.generate_spec

    def generate_spec(svc: Any, **kwargs: Any) -> Any:
        spec = generate(svc, **kwargs)
        if svc is not service:
            return spec
        version = svc.bento.tag.version if svc.bento else "dev"
        spec = attrs.evolve(spec, info=attrs.evolve(spec.info, description=description, version=version, contact=None))
        for path, documented in routes.items():
            operation = spec.paths[path].post
            content: dict[str, Any] = {"schema": schema_of(documented["request"])}
            if documented.get("examples"):
                content["examples"] = copy.deepcopy(documented["examples"])
            operation["requestBody"]["content"] = {"application/json": content, **documented.get("request_content", {})}
            operation["responses"] = copy.deepcopy(documented["responses"])
        return spec

    generate_spec.__wrapped__ = generate  # type: ignore[attr-defined]
    # Service.openapi_spec imports generate_spec at call time, so this changes every /docs.json answer.
    bentoml_openapi.generate_spec = generate_spec


# --- the app's routes ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServedRoute:
    """One route the app answers: its path template (a Mount's with `/{path:path}`), methods (None: any) and the
    function behind it (for an API, the service class's method; BentoML's own routes: its handler)."""

    path: str
    methods: frozenset[str] | None
    endpoint: Any


def served_routes(app: Any, service: Any | None) -> Iterator[ServedRoute]:
    """Every route of the ASGI app BentoML built for `service` (`service.to_asgi()`), mounted apps' included (or
    of any Starlette app, `service` None)."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Mount

    apis = {api.route: api.func for api in service.apis.values()} if service is not None else {}

    def walk(routes: Any, prefix: str) -> Iterator[ServedRoute]:
        for route in iter_route_contexts(routes):
            original = route.original_route
            if isinstance(original, Mount):
                inner = getattr(original.app, "routes", None)
                if inner is not None:  # a mounted app (BentoML's PassiveMount of the FastAPI app)
                    yield from walk(inner, prefix + original.path)
                else:  # static files
                    yield ServedRoute(prefix + original.path + "/{path:path}", None, original.app)
                continue
            path = prefix + route.path
            methods = frozenset(route.methods) if route.methods else None
            yield ServedRoute(path, methods, apis.get(path, route.endpoint))

    yield from walk(app.routes, "")


# --- `bentoml serve` ------------------------------------------------------------------------------------------

def serve_address() -> tuple[str, int] | None:
    """(host, port) when this process runs `bentoml serve` (not a worker, a build or a test import), else None."""
    import click

    context = click.get_current_context(silent=True)
    if context is None or context.command.name not in ("serve", "serve-http"):
        return None
    if not (context.command.callback and context.command.callback.__module__.startswith("bentoml_cli")):
        return None
    from bentoml._internal.configuration.containers import BentoMLContainer

    host = context.params.get("host") or BentoMLContainer.http.host.get()
    port = context.params.get("port") or BentoMLContainer.http.port.get()
    return str(host), int(port)


def use_metrics_folder(folder: str) -> None:
    """The Prometheus multiprocess folder this server's processes use (and that `serve_http` empties)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    BentoMLContainer.prometheus_multiproc_dir.set(folder)


# --- prometheus_client ----------------------------------------------------------------------------------------

def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """`Histogram.observe` for a whole array: one increment per bucket instead of one per value. Mirrors
    `Histogram.observe`: each value counts in the first bucket whose upper bound it does not exceed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return
    histogram._raise_if_not_observable()
    counts = np.bincount(np.searchsorted(np.asarray(histogram._upper_bounds), values, side="left"),
                         minlength=len(histogram._upper_bounds))
    histogram._sum.inc(float(values.sum()))
    for bucket in np.flatnonzero(counts):
        histogram._buckets[bucket].inc(int(counts[bucket]))
