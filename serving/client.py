"""A small client: send a pandas DataFrame as an Arrow stream, get the predictions back as a DataFrame.

    from serving.client import predict_arrow
    predictions = predict_arrow("http://localhost:3000", frame)                        # POST /batch_predict
    predictions = predict_arrow("http://localhost:3000", frame, model="purchase_gbm")  # POST /v2/models/.../infer

The answer's columns are `predicted_purchase_probability`, `predicted_purchase` (/batch_predict) or
`predict_proba`, `predicted_class` (V2), in input order; `frame.attrs` holds the model's name and version.
httpx comes with bentoml; pass your own `httpx.Client` to reuse connections across calls.
"""

from __future__ import annotations

import httpx
import pandas as pd
import pyarrow as pa

ARROW_STREAM = "application/vnd.apache.arrow.stream"  # as serving.codecs.arrow; not imported so clients need no server code


class PredictionRejected(RuntimeError):
    """The service refused the request; `status` and the service's message are kept."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def to_arrow(frame: pd.DataFrame) -> bytes:
    """A DataFrame as one Arrow IPC stream (its index is not sent)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_arrow(body: bytes) -> pd.DataFrame:
    table = pa.ipc.open_stream(body).read_all()
    frame = table.to_pandas()
    frame.attrs = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return frame


def _path(model: str | None, version: str | None) -> str:
    if model is None:
        return "/batch_predict"
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"


def predict_arrow(
    url: str,
    frame: pd.DataFrame,
    *,
    model: str | None = None,
    version: str | None = None,
    client: httpx.Client | None = None,
    timeout: float = 120.0,
) -> pd.DataFrame:
    """Predict `frame`'s rows: /batch_predict when no model is named, else the model's V2 infer route."""
    headers = {"content-type": ARROW_STREAM, "accept": ARROW_STREAM}
    http = client or httpx.Client(timeout=timeout)
    try:
        response = http.post(url.rstrip("/") + _path(model, version), content=to_arrow(frame), headers=headers)
    finally:
        if client is None:
            http.close()
    if response.status_code != 200:
        try:
            body = response.json()
            message = str(body.get("detail", body.get("error", body)))
        except ValueError:
            message = response.text
        raise PredictionRejected(response.status_code, message)
    return from_arrow(response.content)
