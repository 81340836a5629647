"""Send synthetic student traffic to a running service, drawn like the training data or deliberately shifted.

    python -m monitoring.simulate --url http://127.0.0.1:3000 --rows 5000            # like the training data
    python -m monitoring.simulate --url http://127.0.0.1:3000 --rows 5000 --shift    # drifted traffic
    python -m monitoring.simulate --rows 5000 --outcomes --outcome-share 0.5 --delay 0   # then true outcomes

Records go to `POST {url}/batch_predict` as `{"records": [...]}` in batches of `--batch`. The draw uses
`training.data.generate_purchase` with a seed other than training's, so "normal" traffic is new data from the
same distribution; `--shift` moves the country mix towards India, Nigeria and Pakistan and triples
`minutes_watched`, which the drift job (`python -m monitoring.drift`) should then report.

`--outcomes` closes the loop: after the traffic, the generator's own labels (did the student buy?) for the
predictions that came back are posted to `POST {url}/v1/feedback` by prediction_id, `--outcome-share` of them
(a seeded random share), after `--delay` seconds, for the quality job (`python -m monitoring.quality`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import uuid

import numpy as np
import pandas as pd

from training.data import COUNTRIES, generate_purchase
from training.schema import PURCHASE

DEFAULT_SEED = 20_261_122  # anything but training's SEED (42): new draws from the training distribution
MAX_ROWS = 1_000_000  # a simulation, not a load test: bounded in records ...
MAX_BATCH = 10_000  # ... and in records per request (the service's MAX_RECORDS default)
MINUTES_FACTOR = 3.0
# Shifted traffic: India, Nigeria and Pakistan make up 70% of students instead of 25%.
SHIFTED_BOOST = {"India": 0.35, "Nigeria": 0.20, "Pakistan": 0.15}


def shifted_country_shares() -> dict[str, float]:
    """The shifted country mix: the boosted countries at their new shares, every other country scaled down."""
    base = {name: share for name, share, _ in COUNTRIES}
    rest = sum(share for name, share in base.items() if name not in SHIFTED_BOOST)
    left = 1.0 - sum(SHIFTED_BOOST.values())
    return {name: SHIFTED_BOOST.get(name, share * left / rest) for name, share in base.items()}


def draw_traffic(rows: int, seed: int = DEFAULT_SEED, shift: bool = False, with_outcome: bool = False) -> pd.DataFrame:
    """`rows` input records (the 7 request fields; with the generator's true label `purchased` when
    `with_outcome`), like the training data or shifted."""
    drawn = generate_purchase(rows, seed=seed)
    frame = drawn[[*PURCHASE.columns, PURCHASE.label] if with_outcome else PURCHASE.columns]
    if shift:
        rng = np.random.default_rng(seed + 1)
        shares = shifted_country_shares()
        names = np.asarray(list(shares), dtype=object)
        probabilities = np.asarray(list(shares.values()))
        frame["student_country"] = names[rng.choice(len(names), size=rows, p=probabilities / probabilities.sum())]
        frame["minutes_watched"] = np.round(frame["minutes_watched"] * MINUTES_FACTOR, 1)
    return frame.reset_index(drop=True)


def batches(frame: pd.DataFrame, size: int) -> list[list[dict]]:
    records = frame[PURCHASE.columns].to_dict(orient="records")  # pandas 2 gives plain Python ints/floats/strings
    return [records[i : i + size] for i in range(0, len(records), size)]


class SimulationError(RuntimeError):
    """The service could not be reached or answered with an error."""


def send(
    url: str,
    frame: pd.DataFrame,
    *,
    batch: int = 500,
    routing_key: str | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> dict[str, float]:
    """POST the frame to `{url}/batch_predict` batch by batch; returns counts of what came back."""
    import httpx
    from tqdm import tqdm

    endpoint = url.rstrip("/") + "/batch_predict"
    headers = {"content-type": "application/json"}
    if routing_key:
        headers["x-routing-key"] = routing_key
    predictions = positives = requests = 0
    ids: list[str | None] = []
    started = time.perf_counter()
    chunks = batches(frame, batch)
    with httpx.Client(timeout=timeout) as client, tqdm(
        total=len(frame), unit="rec", desc="simulate", file=sys.stderr, disable=not progress
    ) as bar:
        for chunk in chunks:
            try:
                response = client.post(
                    endpoint, json={"records": chunk}, headers={**headers, "x-request-id": uuid.uuid4().hex}
                )
            except httpx.HTTPError as exc:
                raise SimulationError(f"cannot reach {endpoint}: {exc}") from exc
            requests += 1
            if response.status_code != 200:
                raise SimulationError(
                    f"{endpoint} answered {response.status_code} after {predictions} predictions: "
                    f"{response.text[:300]}"
                )
            answers = response.json().get("predictions", [])
            ids += [answer.get("prediction_id") for answer in answers]
            predictions += len(answers)
            positives += sum(1 for answer in answers if answer.get("predicted_purchase") == 1)
            bar.update(len(chunk))
    return {
        "sent": len(frame),
        "requests": requests,
        "predictions": predictions,
        "positive_share": positives / predictions if predictions else math.nan,
        "seconds": time.perf_counter() - started,
        "prediction_ids": ids,
    }


def send_outcomes(url: str, prediction_ids: list[str | None], outcomes: np.ndarray, *, share: float = 1.0,
                  seed: int = DEFAULT_SEED, batch: int = MAX_BATCH, timeout: float = 60.0) -> dict[str, int]:
    """POST the true outcomes of (a seeded `share` of) the predictions to `{url}/v1/feedback`; returns the sums of
    the service's counts."""
    import httpx

    endpoint = url.rstrip("/") + "/v1/feedback"
    keep = np.random.default_rng(seed + 2).random(len(prediction_ids)) < share
    items = [{"prediction_id": pid, "outcome": int(y)}
             for pid, y, kept in zip(prediction_ids, outcomes, keep) if kept and pid]
    totals = {"posted": 0, "accepted": 0, "duplicates": 0, "corrections": 0}
    with httpx.Client(timeout=timeout) as client:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            try:
                response = client.post(endpoint, json={"outcomes": chunk})
            except httpx.HTTPError as exc:
                raise SimulationError(f"cannot reach {endpoint}: {exc}") from exc
            if response.status_code != 200:
                raise SimulationError(f"{endpoint} answered {response.status_code}: {response.text[:300]}")
            counts = response.json()
            totals["posted"] += len(chunk)
            for key in ("accepted", "duplicates", "corrections"):
                totals[key] += int(counts[key])
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the service's base URL")
    parser.add_argument("--rows", type=int, required=True, help=f"records to send (1..{MAX_ROWS})")
    parser.add_argument("--shift", action="store_true", help="send drifted traffic instead of training-like")
    parser.add_argument("--batch", type=int, default=500, help=f"records per request (1..{MAX_BATCH})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the draw")
    parser.add_argument("--routing-key", help="sent as the X-Routing-Key header (A/B assignment)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--outcomes", action="store_true",
                        help="then post the true outcomes of the predictions to /v1/feedback")
    parser.add_argument("--outcome-share", type=float, default=1.0, help="share of outcomes to post (0..1)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before posting outcomes (late)")
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= MAX_ROWS:
        parser.error(f"--rows must be between 1 and {MAX_ROWS}")
    if not 1 <= args.batch <= MAX_BATCH:
        parser.error(f"--batch must be between 1 and {MAX_BATCH}")

    if args.outcomes and args.shift:
        parser.error("--outcomes needs the generator's own draw: the labels do not describe --shift traffic")
    if not 0 <= args.outcome_share <= 1 or args.delay < 0:
        parser.error("--outcome-share must be in [0, 1] and --delay at least 0")
    frame = draw_traffic(args.rows, seed=args.seed, shift=args.shift, with_outcome=args.outcomes)
    try:
        result = send(args.url, frame, batch=args.batch, routing_key=args.routing_key, timeout=args.timeout)
    except SimulationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kind = "shifted" if args.shift else "training-like"
    print(
        f"sent {result['sent']} {kind} records in {result['requests']} requests "
        f"({result['seconds']:.1f} s); {result['predictions']} predictions came back, "
        f"{result['positive_share']:.1%} predicted to purchase"
    )
    if args.outcomes:
        time.sleep(args.delay)
        try:
            counts = send_outcomes(args.url, result["prediction_ids"], frame[PURCHASE.label].to_numpy(),
                                   share=args.outcome_share, seed=args.seed, timeout=args.timeout)
        except SimulationError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"posted {counts['posted']} outcomes: {counts['accepted']} accepted, {counts['duplicates']} "
              f"duplicates, {counts['corrections']} corrections")
    return 0 if result["predictions"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
