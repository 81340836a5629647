"""Contracts with BentoML internals the service relies on (serving/web/bentoml_io.py and serving/web/gate.py): each test
names the assumption and fails loudly when a BentoML upgrade breaks it."""

from __future__ import annotations

import inspect

import bentoml
from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.io_models import IODescriptor
from _bentoml_sdk.service import factory
from _bentoml_sdk.service import openapi as bentoml_openapi


def test_bentoml_is_the_pinned_version():
    assert bentoml.__version__ == "1.4.39", "re-check every contract in this file, then update the pin"


def test_api_endpoint_hands_from_http_request_result_to_the_api():
    """Override 1: the input spec's `from_http_request(request, serde)` result is the API's one argument when
    `__root_input__` is set (AdmittedInput relies on it to pass the gate's typed input through)."""
    source = inspect.getsource(ServiceAppFactory.api_endpoint)
    assert "await method.input_spec.from_http_request(request, serde)" in source
    assert 'getattr(method.input_spec, "__root_input__", False)' in source
    assert list(inspect.signature(IODescriptor.from_http_request).parameters) == ["request", "serde"]


def test_api_endpoint_passes_a_returned_response_through():
    """/batch_predict and /v1/predict return a ready Response; BentoML must send it as is."""
    assert "if isinstance(output, Response):" in inspect.getsource(ServiceAppFactory.api_endpoint)


def test_schema_json_root_input_flag_comes_from_model_json_schema():
    """Override 2: BentoML's client reads `root_input` from the schema that `model_json_schema` returns."""
    from service import BatchPredictRequest, PredictRequest

    assert "root_input" not in BatchPredictRequest.model_json_schema()
    assert "root_input" not in PredictRequest.model_json_schema()
    import _bentoml_impl.client.http as client_http

    assert 'endpoint.input.get("root_input", False)' in inspect.getsource(client_http)


def test_batchable_output_is_a_one_item_slice_per_caller():
    """Override 3: each caller of a batchable API gets its slice of the batch's answers through
    `output_spec.to_http_response`."""
    source = inspect.getsource(ServiceAppFactory.batch_infer)
    assert "AutoContainer.batch_to_batches(result, indices" in source
    assert "await method.output_spec.to_http_response(output, serde)" in inspect.getsource(ServiceAppFactory.api_endpoint)


def test_openapi_spec_looks_up_generate_spec_at_call_time():
    """Override 4: Service.openapi_spec imports generate_spec when called, so wrapping the module attribute works."""
    import service

    assert "from .openapi import generate_spec" in inspect.getsource(factory.Service.openapi_spec.fget)
    assert bentoml_openapi.generate_spec.__wrapped__ is not None
    spec = service.PurchaseService.openapi_spec
    assert "created with BentoML" not in spec.info.description
    assert "500" in {str(k) for k in spec.paths["/v1/predict"].post["responses"]}


def test_service_middlewares_run_inside_bentomls_and_unexceptional_errors_become_500():
    """The gate (an `add_asgi_middleware` middleware) sees every API request, and BentoML turns any exception in an
    API into a 500 the gate then answers in the endpoint's documented shape."""
    source = inspect.getsource(ServiceAppFactory.api_endpoint_wrapper)
    assert "except Exception:" in source and "status_code=500" in source
    middlewares = inspect.getsource(ServiceAppFactory.middlewares.fget)
    assert "for middleware_cls, options in self.service.middlewares:" in middlewares


def test_overloaded_batcher_answers_503():
    """The gate rewrites a 503 from inside a batched route as 'overloaded': BentoML's batcher raises
    ServiceUnavailable (503) past max latency."""
    from bentoml.exceptions import ServiceUnavailable

    assert ServiceUnavailable.error_code.value == 503
