"""CPU time of each step of a 10,000-row request, in process, one OpenMP thread (docs/performance.md).

    python -m bench.request_cpu                                  # this checkout
    cd /tmp/main && PYTHONPATH=. python /path/to/this/bench/request_cpu.py   # another checkout's code

The service's own functions, in the order a request calls them: decoding and validating the body (V2 JSON tensors
as MLServer sends them, records JSON, an Arrow stream), the model call (features and predict_proba), the ids, the
live feature signals, the metrics, and encoding the answer. `time.thread_time` (the calling thread's CPU), so a
busy machine barely moves the figures; median of --reps calls. The prediction log is measured by its own bench.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp")  # prometheus_client as in the server (multiprocess mode)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args(argv)

    import orjson
    from threadpoolctl import threadpool_limits

    from bench.doors import arrow_bytes
    from bench.mlserver_peer import v2_request
    from serving.codecs import arrow
    from serving.codecs.columns import validate_columns
    from serving.codecs.records import validator_for
    from serving.codecs.v2_answers import encode_response, plan_answer
    from serving.codecs.v2_tensors import decode_inputs, parse_request
    from serving.core import metrics
    from serving.core.ids import new_ids
    from serving.web.purchase import BatchResult, _json_answer
    from training.data import generate_purchase
    from training.store import load_model

    threadpool_limits(1, user_api="openmp")
    frame = generate_purchase(args.rows, seed=7).drop(columns="purchased")
    model = load_model("purchase_gbm")
    validator = validator_for(model, max(args.rows, 10_000))
    signals = metrics.FeatureSignals(model)
    bodies = {"v2": orjson.dumps(v2_request(frame)), "records": orjson.dumps({"records": frame.to_dict("records")}),
              "arrow": arrow_bytes(frame)}
    outputs = ["predict_proba", "predicted_class", "prediction_id"]
    times: dict[str, list[float]] = {}

    def step(name: str, func: Callable, *call_args):
        started = time.thread_time()
        result = func(*call_args)
        times.setdefault(name, []).append(time.thread_time() - started)
        return result

    def v2_decode(body: bytes):
        request, binary = parse_request(body, None)
        return request, decode_inputs(request, binary)

    for _ in range(args.reps):
        request, decoded = step("V2 JSON: parse and decode the tensors", v2_decode, bodies["v2"])
        plan = plan_answer(request, outputs)
        validated = step("V2 JSON: validate the columns", validate_columns, decoded.columns, model.input_schema)
        step("records JSON: parse and validate", validator.batch_body, bodies["records"])
        step("Arrow: read and validate", arrow.batch_request, bodies["arrow"], validator)
        proba = step("model call (features, predict_proba)", model.predict_proba, validated)
        classes = model.classify(proba)
        ids = step("prediction ids", new_ids, len(validated))
        step("live feature signals", signals.observe, validated)
        step("metrics", metrics.observe_predictions, model, "/bench", proba, classes)
        answer = {"predict_proba": ("FP64", proba), "predicted_class": ("INT64", classes), "prediction_id": ("BYTES", ids)}
        step("V2 JSON: encode the answer (predict_proba asked)", encode_response, answer, model.name, model.version, "id",
             plan, decoded.rank)
        step("records JSON: encode the answer", _json_answer, BatchResult(model, proba, classes, ids, "id"))
        step("Arrow: encode the answer", arrow.predictions_stream, arrow.BATCH_COLUMNS, proba, classes, model.name,
             model.version, ids)
    print(f"`{' '.join(['python -m bench.request_cpu', *(argv if argv is not None else sys.argv[1:])])}` "
          f"({os.environ.get('PYTHONPATH') or 'this checkout'}), {time.strftime('%Y-%m-%d %H:%M')}, {args.rows:,} rows, "
          f"median of {args.reps}, load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| step | CPU ms |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
