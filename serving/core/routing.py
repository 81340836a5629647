"""A/B routing between purchase variants: sticky per caller, weighted, off by default."""

from __future__ import annotations

import hashlib
import random


class ABRouter:
    def __init__(self, weights: dict[str, float], default: str):
        total = sum(weights.values())
        self.default = default
        self.arms: list[tuple[float, str]] = []
        cumulative = 0.0
        for name, weight in weights.items():
            if weight > 0:
                cumulative += weight / total
                self.arms.append((cumulative, name))

    def choose(self, routing_key: str | None) -> str:
        """The variant for this caller: a hash of the key, so the same key always lands on the same variant;
        callers without a key are spread at random by the same weights."""
        if not self.arms:
            return self.default
        if routing_key:
            digest = hashlib.sha256(routing_key.encode()).digest()
            point = int.from_bytes(digest[:8], "big") / 2**64
        else:
            point = random.random()
        for cumulative, name in self.arms:
            if point < cumulative:
                return name
        return self.arms[-1][1]
