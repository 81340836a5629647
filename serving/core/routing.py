"""A/B routing between purchase variants: sticky per caller, weighted, off by default.

Only served arms get traffic. An arm of AB_WEIGHTS that no loaded model answers (its stage was emptied, say,
after a promotion and a rollback) is taken out of the split, with a warning in the server log and its
`serving_ab_arm_weight` gauge at 0; the other arms share its traffic by their own weights. It comes back, with
an info line, when a model answers to it again (the follower re-checks after every refresh). An arm nothing in
SERVED_MODELS could ever answer (a typo) stops the start instead (serving/web/startup.py).

The weights are AB_WEIGHTS until the stage book's traffic plan names the task's (training/traffic.py); then the
plan's, changed on the follower's refresh with a line in the server log giving the old and the new weights.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable

from prometheus_client import Gauge

logger = logging.getLogger("bentoml.service")

ARM_WEIGHT = Gauge(
    "serving_ab_arm_weight", "Share of /predict and /batch_predict traffic an A/B arm gets now (0: not served)",
    ["arm"], multiprocess_mode="min",
)


def describe(weights: dict[str, float]) -> str:
    total = sum(weights.values())
    return ",".join(f"{name}={weight / total:.4g}" for name, weight in sorted(weights.items())) or "no split"


class ABRouter:
    def __init__(self, weights: dict[str, float], default: str):
        self.weights = {name: weights[name] for name in sorted(weights) if weights[name] > 0}
        self.default = default
        self.out: dict[str, str] = {}  # arm -> why it is out of the split
        self.arms: list[tuple[float, str]] = []
        self._split()

    def set_weights(self, weights: dict[str, float], why: str) -> bool:
        """Route by `weights` from now on (the arms' served state is re-checked by the next `follow`); says whether
        they changed. Arms are kept in name order, so a sticky caller moves only where its arm's share shrank."""
        weights = {name: weights[name] for name in sorted(weights) if weights[name] > 0}
        if weights == self.weights:
            return False
        logger.info("A/B weights: %s -> %s (%s)", describe(self.weights), describe(weights), why)
        for name in self.weights.keys() - weights.keys():
            ARM_WEIGHT.labels(name).set(0.0)
        self.weights = weights
        self.out = {name: why_out for name, why_out in self.out.items() if name in weights}
        self._split()
        return True

    def _split(self) -> None:
        served = {name: weight for name, weight in self.weights.items() if name not in self.out}
        total = sum(served.values()) or 1.0
        arms, cumulative = [], 0.0
        for name, weight in served.items():
            cumulative += weight / total
            arms.append((cumulative, name))
        self.arms = arms  # one assignment: a request sees the old split or the new one, whole
        for name in self.weights:
            ARM_WEIGHT.labels(name).set(served[name] / total if name in served else 0.0)

    def follow(self, why_not_served: Callable[[str], str | None]) -> None:
        """Take out the arms that are not served now (`why_not_served(arm)` says why, or None) and bring back the
        ones that are again."""
        if not self.weights:
            return
        out = {name: why for name in self.weights if (why := why_not_served(name)) is not None}
        if out == self.out:
            return
        for name, why in out.items():
            if name not in self.out:
                logger.warning("A/B arm %s is not served (%s): taken out of AB_WEIGHTS; the other arms share its "
                               "traffic until it is served again", name, why)
        for name in self.out.keys() - out.keys():
            logger.info("A/B arm %s is served again: back in AB_WEIGHTS", name)
        self.out = out
        self._split()
        if not self.arms:
            logger.error("no A/B arm of AB_WEIGHTS is served: every call goes to DEFAULT_PURCHASE_MODEL=%s",
                         self.default)

    def choose(self, routing_key: str | None) -> str:
        """The variant for this caller: a hash of the key, so the same key always lands on the same variant;
        callers without a key are spread at random by the same weights."""
        arms = self.arms
        if not arms:
            return self.default
        if routing_key:
            digest = hashlib.sha256(routing_key.encode()).digest()
            point = int.from_bytes(digest[:8], "big") / 2**64
        else:
            point = random.random()
        for cumulative, name in arms:
            if point < cumulative:
                return name
        return arms[-1][1]
